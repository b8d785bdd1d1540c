// Copyright 2026 The ctxloop Authors.
//
// How a stream ends. Each case is referenced as [En] where it is handled and
// tested in stream_test.cc, stream_trace_test.cc and stream_ending_test.cc.
// In every case the stream's trace (if it carries one) is finished exactly
// once, by `TraceScope::Finish`, which runs the reset on the trace's origin
// context (trace/scope.cc). Where [E8] cannot reach the sink's thread, the
// sink's callbacks are destroyed with the stream.
//
//  [E1] The producer completes: every event buffered before `Complete` is
//       delivered, then the sink's `on_complete(OK)`, on the sink context.
//  [E2] The producer fails (or its writer is destroyed unfinished, which
//       fails it with kAborted): as [E1] with that status.
//  [E3] The consumer cancels: events still buffered are discarded (counted
//       in `discarded`), the producer's `on_closed(kCancelled)` runs on its
//       context, the sink's `on_complete(kCancelled)` runs on the sink
//       context; later `Emit`s return kCancelled.
//  [E4] The sink throws: the stream ends with kInternal naming the
//       exception; the producer is told as in [E3]; the sink's `on_complete`
//       receives that status; the loop keeps running.
//  [E5] The consumer goes away (reader or subscription destroyed before the
//       end): as [E3] but the sink is not called again; its callbacks are
//       destroyed on the sink's loop thread.
//  [E6] The sink's context or loop goes away: `Attach` adds a destroy hook
//       to the sink context (on its loop thread; posted there if `Attach`
//       runs elsewhere), which runs when the context is destroyed (after the
//       tasks posted to it before) or its loop shuts down. The stream ends
//       with kUnavailable even if the producer is idle: buffered events are
//       discarded, the producer is told, the sink's `on_complete` gets
//       kUnavailable on the sink context, the sink is released there and the
//       trace finished. The hook is removed when the stream ends on the sink
//       side, so a long-lived sink context does not collect hooks. `Attach`
//       to a context already gone fails (kUnavailable) and ends the stream
//       without calling the sink.
//  [E7] A loop shutting down: a delivery already posted runs in the drain
//       (loop case S1), so events and the ending still arrive; a delivery
//       posted after that loop closed is refused and ends the stream as
//       [E8]. A producer whose loop is gone cannot be told anything; its
//       notifications are dropped with it.
//  [E8] A sink-side task (delivery, ending, hook installation, the hook
//       itself) destroyed unrun -- refused by `Post`, or dropped by the loop
//       at shutdown (loop case S3) -- ends the stream from its destructor:
//       kUnavailable, buffered events discarded, producer told, and the sink
//       side of the ending runs: by the destroy hook if one is installed
//       (the context or loop is on its way out, so it runs soon, on the sink
//       thread, outside whatever refused the task); else inline if this is
//       the sink's loop thread outside the sink's callbacks (`on_complete`
//       called, sink released, trace finished from the sink context); else
//       the trace is finished from here (posted to its origin) and the sink
//       is released with the stream. Counters stay whole: once ended,
//       emitted == delivered + discarded.
//       A loop whose cross-thread backlog is full
//       (`Loop::Options::max_pending_foreign`) refuses none of the posts
//       that carry an ending or a promised notification: the hook
//       installation, the ending task, the deliveries scheduled by
//       `Complete`, `Attach` and the sink's own thread, `on_writable` and
//       the producer's ending go through `loop_internal::PostNeverFull`
//       (each bounded as said where it is posted). Only the delivery an
//       `Emit` schedules is bounded: refused for a full loop, that `Emit`
//       returns kResourceExhausted and does not take the event (not counted
//       as emitted; `refused_loop_full` counts it) -- backpressure, not an
//       ending.
//  [E9] A sink's `on_complete` that throws: the ending still finishes the
//       trace and releases the sink, then the exception is rethrown from the
//       loop task so the loop reports it to its error handler. (In the
//       destructor of a dropped task [E8] there is no task boundary; the
//       exception is caught and dropped.) Producer callbacks that throw are
//       reported the same way; the producer's callbacks are dropped on its
//       context when the stream ends, so callbacks that capture the writer
//       do not keep the stream alive.
//  [E10] Endings race (a sink that cancels itself, or is cancelled from
//       another thread, and then throws; a cancel against the producer's
//       completion): the first decided wins, under the lock; the producer's
//       `on_closed` runs at most once, the sink side of the ending (and the
//       sink's `on_complete`) exactly once.

#include "ctxloop/stream/internal/stream_core.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace ctxloop {
namespace stream_internal {

absl::Status NoStream() {
  return absl::FailedPreconditionError(
      "no stream: this handle was moved from or already attached");
}

namespace {

using Kind = StreamCore::SinkTaskKind;

// Set on a thread while it posts the delivery an `Emit` scheduled, with the
// bounded `Post`: a delivery task of that stream destroyed on this thread
// meanwhile was refused by that `Post` (a task the loop accepted is never
// destroyed inside `Post`), and the poster decides what the refusal means
// (backpressure for a full loop, [E8] for a closed one).
struct EmitPost {
  const StreamCore* core;
  bool refused;
};
thread_local EmitPost* t_emit_post = nullptr;

// A task for the sink's context. Destroyed unrun, it ends the stream [E8]
// (unless it is the delivery of an `Emit` refused by its `Post`: above).
class SinkTask {
 public:
  SinkTask(std::shared_ptr<StreamCore> core, Kind kind,
           absl::Status status = absl::OkStatus(), bool tell_sink = true)
      : core_(std::move(core)),
        kind_(kind),
        status_(std::move(status)),
        tell_sink_(tell_sink) {}
  SinkTask(SinkTask&& other) noexcept
      : core_(std::move(other.core_)),
        kind_(other.kind_),
        status_(std::move(other.status_)),
        tell_sink_(other.tell_sink_) {}
  SinkTask& operator=(SinkTask&&) = delete;
  ~SinkTask() {
    if (core_ == nullptr) return;
    std::shared_ptr<StreamCore> core = std::move(core_);
    if (kind_ == Kind::kDeliver && t_emit_post != nullptr &&
        t_emit_post->core == core.get()) {
      t_emit_post->refused = true;  // The poster holds a reference too.
      return;
    }
    core->SinkTaskDropped(kind_, status_, tell_sink_);  // [E8]
  }

  void operator()(ContextHandle ctx) && {
    std::shared_ptr<StreamCore> core = std::move(core_);
    core->RunSinkTask(kind_, ctx, status_, tell_sink_);
  }

 private:
  std::shared_ptr<StreamCore> core_;
  Kind kind_;
  absl::Status status_;
  bool tell_sink_;
};

absl::Status SinkGone(absl::string_view how) {
  return absl::UnavailableError(
      absl::StrCat("the stream's sink is gone: ", how));
}

}  // namespace

StreamCore::StreamCore(ContextHandle producer, StreamOptions options,
                       ProducerCallbacks callbacks,
                       std::optional<TraceScope> trace,
                       FinishOptions trace_finish)
    : options_(options),
      producer_(producer),
      producer_callbacks_(std::move(callbacks)),
      has_producer_callbacks_(producer_callbacks_.on_writable != nullptr ||
                              producer_callbacks_.on_closed != nullptr),
      trace_(std::move(trace)),
      trace_finish_(std::move(trace_finish)),
      trace_parent_(trace_.has_value() ? trace_->AsParent() : SpanParent()) {}

StreamCore::~StreamCore() = default;

ContextHandle StreamCore::sink_context() const {
  ctxloop::MutexLock lock(&mu_);
  return sink_ctx_;
}

StreamCounters StreamCore::counters() const {
  ctxloop::MutexLock lock(&mu_);
  return counters_;
}

bool StreamCore::writable() const {
  ctxloop::MutexLock lock(&mu_);
  return !terminal_ && !producer_done_ &&
         BufferedLocked() < options_.high_watermark;
}

bool StreamCore::finished() const {
  ctxloop::MutexLock lock(&mu_);
  return terminal_;
}

absl::Status StreamCore::CheckEmitLocked() {
  if (consumer_ended_.load(std::memory_order_relaxed)) {
    return absl::CancelledError(
        absl::StrCat("stream ended by its consumer: ", end_reason_.ToString()));
  }
  if (producer_done_) {
    return absl::FailedPreconditionError(
        "Emit after Complete/Fail on this stream");
  }
  if (BufferedLocked() >= options_.high_watermark) {
    want_writable_ = true;
    ++counters_.refused_full;
    return absl::ResourceExhaustedError(absl::StrCat(
        "stream full: ", BufferedLocked(),
        " events buffered (high watermark); the event was not taken, retry "
        "after on_writable"));
  }
  return absl::OkStatus();
}

bool StreamCore::AfterPushLocked() {
  ++counters_.emitted;
  if (!attached_ || delivery_pending_) return false;
  delivery_pending_ = true;
  return true;
}

bool StreamCore::AttachLocked(ContextHandle sink_ctx, absl::Status* error) {
  if (attached_) {
    *error = absl::FailedPreconditionError("stream already has a sink");
    return false;
  }
  if (terminal_) {
    *error = absl::CancelledError("stream already ended");
    return false;
  }
  attached_ = true;
  sink_ctx_ = sink_ctx;
  if (delivery_pending_ || (BufferedLocked() == 0 && !producer_done_)) {
    return false;
  }
  delivery_pending_ = true;
  return true;
}

absl::Status StreamCore::AfterAttach(bool schedule) {
  const ContextHandle sink = sink_context();
  if (IsOnLoopThread(sink)) {
    // Not called back from here: `Attach` reports the error instead [E6].
    absl::Status watched = WatchSinkNow(sink, /*tell_sink_if_gone=*/false);
    if (!watched.ok()) return watched;
  } else {
    // Refused: the task's destructor ends the stream [E6] [E8]. Never for a
    // full loop (PostNeverFull): one per stream, at `Attach`.
    absl::Status posted = loop_internal::PostNeverFull(
        sink, SinkTask(shared_from_this(), Kind::kWatchSink));
    if (!posted.ok()) return SinkGone(posted.message());
  }
  if (schedule) ScheduleDelivery();
  return absl::OkStatus();
}

absl::Status StreamCore::WatchSinkNow(ContextHandle ctx,
                                      bool tell_sink_if_gone) {
  {
    ctxloop::MutexLock lock(&mu_);
    if (terminal_) return absl::OkStatus();  // Its ending is under way.
  }
  // Refused: the hook's destructor ends the stream [E6] [E8].
  absl::StatusOr<DestroyHookId> id =
      AddDestroyHook(ctx, SinkTask(shared_from_this(), Kind::kHook,
                                   absl::OkStatus(), tell_sink_if_gone));
  if (!id.ok()) return SinkGone(id.status().message());
  bool remove_now;
  {
    ctxloop::MutexLock lock(&mu_);
    remove_now = sink_side_ended_;
    if (!remove_now) sink_hook_ = *id;
  }
  if (remove_now) (void)RemoveDestroyHook(ctx, *id);
  return absl::OkStatus();
}

void StreamCore::ScheduleDelivery() {
  // Refused: the task's destructor ends the stream [E6] [E8]. Never for a
  // full loop (PostNeverFull): a stream has at most one delivery pending
  // (`delivery_pending_`), so these are bounded by the live streams; and a
  // refusal here would lose what `Complete` or `Attach` promised.
  (void)loop_internal::PostNeverFull(
      sink_context(), SinkTask(shared_from_this(), Kind::kDeliver));
}

absl::Status StreamCore::ScheduleDeliveryForEmit() {
  // On the sink's loop thread (a stream within one loop) a post is never
  // refused for a full loop: the plain delivery, no refusal marker (this is
  // the same-loop hot path).
  if (loop_internal::CachedLocalPoster(sink_context()) != nullptr) {
    ScheduleDelivery();
    return absl::OkStatus();
  }
  EmitPost post{this, false};
  EmitPost* const outer = t_emit_post;
  t_emit_post = &post;
  const absl::Status s =
      Post(sink_context(), SinkTask(shared_from_this(), Kind::kDeliver));
  t_emit_post = outer;
  if (!post.refused) return absl::OkStatus();
  // The sink's loop is full: the caller takes the event back.
  if (s.code() == absl::StatusCode::kResourceExhausted) return s;
  // Closed: what the task's destructor does for any other refusal [E6] [E8].
  SinkTaskDropped(Kind::kDeliver, absl::OkStatus(), /*tell_sink=*/true);
  return absl::OkStatus();
}

bool StreamCore::AfterRefusedEmitLocked(bool taken_back) {
  delivery_pending_ = false;
  if (taken_back) {
    --counters_.emitted;
    ++counters_.refused_loop_full;
  }
  // Events other producer threads emitted meanwhile, or a `Complete` that
  // saw our delivery pending, still need one.
  if (terminal_ || (BufferedLocked() == 0 && !producer_done_)) return false;
  delivery_pending_ = true;
  return true;
}

void StreamCore::RunSinkTask(SinkTaskKind kind, ContextHandle ctx,
                             const absl::Status& status, bool tell_sink) {
  switch (kind) {
    case Kind::kDeliver:
      Deliver(ctx);
      return;
    case Kind::kWatchSink:
      (void)WatchSinkNow(ctx, /*tell_sink_if_gone=*/true);
      return;
    case Kind::kHook:
      SinkContextGone(ctx);
      return;
    case Kind::kEnd: {
      std::exception_ptr thrown = EndSinkSide(ctx, status, tell_sink);
      if (thrown) std::rethrow_exception(thrown);  // [E9]
      return;
    }
  }
}

void StreamCore::Deliver(ContextHandle ctx) {
  if (consumer_ended_.load(std::memory_order_acquire)) return;  // [E3]-[E6]
  bool more, notify_writable, complete_now;
  absl::Status producer_status;
  {
    ctxloop::MutexLock lock(&mu_);
    if (terminal_) return;
    TakeBatchLocked(options_.max_batch);
    ++counters_.deliveries;
    more = BufferedLocked() > 0;
    if (!more) delivery_pending_ = false;
    notify_writable =
        want_writable_ && BufferedLocked() <= options_.low_watermark;
    if (notify_writable) want_writable_ = false;
    // Nothing can be emitted after Complete: this batch is the last.
    complete_now = !more && producer_done_;
    producer_status = producer_status_;
  }
  if (notify_writable) {
    std::shared_ptr<StreamCore> self = shared_from_this();
    // Never refused for a full loop (PostNeverFull): at most one per
    // delivered batch, and a producer that was refused waits for it.
    (void)loop_internal::PostNeverFull(producer_, [self](ContextHandle p) {
      if (self->producer_callbacks_.on_writable) {
        self->producer_callbacks_.on_writable(p);
      }
    });
  }
  const absl::Status sink_status = DeliverTakenBatch(ctx);
  bool sink_threw = false, completed = false, next = false;
  {
    ctxloop::MutexLock lock(&mu_);
    if (!sink_status.ok()) {
      sink_threw = EndByConsumerLocked(sink_status);  // [E4] [E10]
    } else if (complete_now) {
      completed = !terminal_;  // [E1] [E2]
      terminal_ = true;
    } else {
      next = more && !terminal_;
    }
  }
  // If another ending won meanwhile [E10], its task ends the sink side.
  std::exception_ptr thrown;
  if (sink_threw) {
    NotifyProducerEnded(sink_status);
    thrown = EndSinkSide(ctx, sink_status, /*tell_sink=*/true);
  } else if (completed) {
    NotifyProducerEnded(std::nullopt);
    thrown = EndSinkSide(ctx, producer_status, /*tell_sink=*/true);
  } else if (next) {
    ScheduleDelivery();  // Next batch in a later task: the loop stays fair.
  }
  if (thrown) std::rethrow_exception(thrown);  // [E9]
}

absl::Status StreamCore::Complete(absl::Status status) {
  bool schedule = false;
  {
    ctxloop::MutexLock lock(&mu_);
    if (producer_done_) {
      return absl::FailedPreconditionError("stream already completed/failed");
    }
    if (terminal_) {
      return absl::CancelledError(absl::StrCat("stream ended by its consumer: ",
                                               end_reason_.ToString()));
    }
    producer_done_ = true;
    producer_status_ = std::move(status);
    if (attached_ && !delivery_pending_) {
      delivery_pending_ = true;
      schedule = true;
    }
  }
  if (schedule) ScheduleDelivery();
  return absl::OkStatus();
}

absl::Status StreamCore::Cancel(absl::Status reason) {
  if (!EndByConsumer(reason, /*tell_sink=*/true)) {  // [E3]
    return absl::FailedPreconditionError("stream already ended");
  }
  return absl::OkStatus();
}

void StreamCore::ConsumerDestroyed() {  // [E5]
  (void)EndByConsumer(
      absl::CancelledError("the stream's consumer was destroyed"),
      /*tell_sink=*/false);
}

bool StreamCore::EndByConsumerLocked(const absl::Status& reason) {
  if (terminal_) return false;  // Someone else ended it first [E10].
  terminal_ = true;
  end_reason_ = reason;
  consumer_ended_.store(true, std::memory_order_release);
  counters_.discarded += DiscardBufferLocked();
  return true;
}

bool StreamCore::EndByConsumer(const absl::Status& reason, bool tell_sink) {
  ContextHandle sink;
  bool attached;
  {
    ctxloop::MutexLock lock(&mu_);
    if (!EndByConsumerLocked(reason)) return false;
    sink = sink_ctx_;
    attached = attached_;
    if (!attached) sink_side_ended_ = true;
  }
  NotifyProducerEnded(reason);
  if (!attached) {
    FinishTrace(ContextHandle());
    ReleaseSink();  // Never attached: no sink thread to prefer.
    return true;
  }
  // Always posted, even on the sink's thread: we may be inside its callback.
  // Refused: the task's destructor ends the sink side [E8]. Never for a full
  // loop (PostNeverFull): one per stream, for its ending.
  (void)loop_internal::PostNeverFull(
      sink, SinkTask(shared_from_this(), Kind::kEnd, reason, tell_sink));
  return true;
}

void StreamCore::SinkContextGone(ContextHandle ctx) {  // [E6]
  const absl::Status gone =
      SinkGone("its context was destroyed or its loop shut down");
  bool decided;
  std::optional<SinkEnd> deferred;
  {
    ctxloop::MutexLock lock(&mu_);
    sink_hook_.reset();  // Running now: nothing to remove.
    decided = EndByConsumerLocked(gone);
    if (!decided) deferred.swap(deferred_sink_end_);
  }
  std::exception_ptr thrown;
  if (decided) {
    NotifyProducerEnded(gone);
    thrown = EndSinkSide(ctx, gone, /*tell_sink=*/true);
  } else if (deferred.has_value()) {  // [E8]
    thrown = EndSinkSide(ctx, deferred->status, deferred->tell_sink);
  }
  if (thrown) std::rethrow_exception(thrown);  // [E9]
}

void StreamCore::SinkTaskDropped(SinkTaskKind kind, const absl::Status& status,
                                 bool tell_sink) {  // [E8]
  const absl::Status gone =
      SinkGone(kind == Kind::kHook
                   ? "its destroy hook was dropped unrun"
                   : "a task for its context was refused or dropped unrun "
                     "(its context was destroyed or its loop shut down)");
  bool decided;
  std::optional<SinkEnd> end;
  {
    ctxloop::MutexLock lock(&mu_);
    if (kind == Kind::kHook) sink_hook_.reset();
    decided = EndByConsumerLocked(gone);
    if (decided) {
      end = SinkEnd{gone, tell_sink};
    } else if (kind == Kind::kEnd) {
      end = SinkEnd{status, tell_sink};
    } else if (kind == Kind::kHook) {
      end.swap(deferred_sink_end_);
    }
  }
  if (decided) NotifyProducerEnded(gone);
  if (end.has_value()) EndSinkSideFromHere(*std::move(end));
}

void StreamCore::EndSinkSideFromHere(SinkEnd end) {
  ContextHandle sink;
  bool sink_running;
  {
    ctxloop::MutexLock lock(&mu_);
    if (sink_side_ended_) return;
    if (sink_hook_.has_value()) {
      // The sink's context or loop is on its way out (that is why the task
      // was refused or dropped): its hook ends the sink side, on the sink's
      // thread, outside whatever runs now.
      deferred_sink_end_ = std::move(end);
      return;
    }
    sink = sink_ctx_;
    sink_running = sink_running_;
  }
  if (!sink_running && IsOnLoopThread(sink)) {
    // No task boundary to rethrow at (a destructor): dropped [E9].
    (void)EndSinkSide(sink, end.status, end.tell_sink);
    return;
  }
  {
    ctxloop::MutexLock lock(&mu_);
    if (sink_side_ended_) return;
    sink_side_ended_ = true;
  }
  FinishTrace(ContextHandle());  // The sink goes with the stream.
}

std::exception_ptr StreamCore::EndSinkSide(ContextHandle ctx,
                                           const absl::Status& s,
                                           bool tell_sink) {
  std::optional<DestroyHookId> hook;
  ContextHandle sink;
  {
    ctxloop::MutexLock lock(&mu_);
    if (sink_side_ended_) return nullptr;
    sink_side_ended_ = true;
    hook.swap(sink_hook_);
    deferred_sink_end_.reset();
    sink = sink_ctx_;
  }
  // Destroys the hook (and its reference to us) unrun; the caller holds one.
  if (hook.has_value()) (void)RemoveDestroyHook(sink, *hook);
  std::exception_ptr thrown;
  if (tell_sink) thrown = CallSinkComplete(ctx, s);
  FinishTrace(ctx);
  ReleaseSink();
  return thrown;
}

void StreamCore::NotifyProducerEnded(std::optional<absl::Status> closed) {
  if (!has_producer_callbacks_) return;
  std::shared_ptr<StreamCore> self = shared_from_this();
  // Dropped if the producer's context or loop is gone [E7]. Never for a full
  // loop (PostNeverFull): one per stream, for its ending.
  (void)loop_internal::PostNeverFull(
      producer_, [self, closed = std::move(closed)](ContextHandle p) {
        ProducerCallbacks callbacks = std::move(self->producer_callbacks_);
        self->producer_callbacks_ = ProducerCallbacks();
        if (closed.has_value() && callbacks.on_closed) {
          callbacks.on_closed(p, *closed);  // Throws to the loop [E9].
        }
      });
}

void StreamCore::FinishTrace(ContextHandle from) {
  std::optional<TraceScope> trace;
  FinishOptions finish;
  {
    ctxloop::MutexLock lock(&mu_);
    trace.swap(trace_);
    finish = std::move(trace_finish_);
  }
  // Runs on the trace's origin: inline if `from` is it, else posted there.
  if (trace.has_value()) (void)trace->Finish(from, std::move(finish));
}

}  // namespace stream_internal
}  // namespace ctxloop
