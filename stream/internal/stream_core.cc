// Copyright 2026 The ctxloop Authors.
//
// How a stream ends. Each case is referenced as [En] where it is handled and
// tested in stream_test.cc / stream_trace_test.cc. In every case the stream's
// trace (if it carries one) is finished exactly once, by `TraceScope::Finish`,
// which runs the reset on the trace's origin context (trace/scope.cc).
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
//  [E6] The sink's context or loop is gone when a delivery must be posted:
//       the stream ends with kUnavailable, the producer is told, the trace is
//       finished from here (posted to its origin).
//  [E7] A loop shutting down: a delivery already posted runs in the drain
//       (loop case S1), so events and the ending still arrive; a delivery
//       posted after that loop closed is [E6]. A producer whose loop is gone
//       cannot be told anything; its notifications are dropped with it.

#include "ctxloop/stream/internal/stream_core.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "ctxloop/loop/loop.h"

namespace ctxloop {
namespace internal {

StreamCore::StreamCore(ContextHandle producer, StreamOptions options,
                       ProducerCallbacks callbacks,
                       std::optional<TraceScope> trace)
    : options_(options),
      producer_(producer),
      producer_callbacks_(std::move(callbacks)),
      trace_(std::move(trace)),
      trace_parent_(trace_.has_value() ? trace_->AsParent() : SpanParent()) {}

StreamCore::~StreamCore() = default;

ContextHandle StreamCore::sink_context() const {
  std::lock_guard<std::mutex> lock(mu_);
  return sink_ctx_;
}

StreamCounters StreamCore::counters() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counters_;
}

bool StreamCore::writable() const {
  std::lock_guard<std::mutex> lock(mu_);
  return !terminal_ && !producer_done_ &&
         BufferedLocked() < options_.high_watermark;
}

bool StreamCore::finished() const {
  std::lock_guard<std::mutex> lock(mu_);
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

void StreamCore::ScheduleDelivery() {
  ContextHandle sink;
  {
    std::lock_guard<std::mutex> lock(mu_);
    sink = sink_ctx_;
  }
  std::shared_ptr<StreamCore> self = shared_from_this();
  absl::Status s =
      Post(sink, [self](ContextHandle ctx) { self->Deliver(ctx); });
  if (!s.ok()) {  // [E6]
    EndByConsumer(absl::UnavailableError(absl::StrCat(
                      "the stream's consumer is gone: ", s.message())),
                  /*tell_sink=*/false);
  }
}

void StreamCore::Deliver(ContextHandle ctx) {
  if (consumer_ended_.load(std::memory_order_acquire)) return;  // [E3]-[E6]
  bool more, notify_writable, end_now = false;
  absl::Status end_status;
  {
    std::lock_guard<std::mutex> lock(mu_);
    TakeBatchLocked(options_.max_batch);
    ++counters_.deliveries;
    more = BufferedLocked() > 0;
    if (!more) delivery_pending_ = false;
    notify_writable =
        want_writable_ && BufferedLocked() <= options_.low_watermark;
    if (notify_writable) want_writable_ = false;
    if (!more && producer_done_ && !terminal_) {  // [E1] [E2]
      terminal_ = end_now = true;
      end_status = producer_status_;
    }
  }
  if (notify_writable) {
    std::shared_ptr<StreamCore> self = shared_from_this();
    (void)Post(producer_, [self](ContextHandle p) {
      if (self->producer_callbacks_.on_writable) {
        self->producer_callbacks_.on_writable(p);
      }
    });
  }
  absl::Status sink_status = DeliverTakenBatch(ctx);
  if (!sink_status.ok()) {  // [E4]
    {
      std::lock_guard<std::mutex> lock(mu_);
      terminal_ = true;
      end_reason_ = sink_status;
      consumer_ended_.store(true, std::memory_order_release);
      counters_.discarded += DiscardBufferLocked();
    }
    NotifyProducerClosed(sink_status);
    CallSinkComplete(ctx, sink_status);
    FinishTrace(ctx);
    ReleaseSink();
    return;
  }
  if (more && !consumer_ended_.load(std::memory_order_acquire)) {
    ScheduleDelivery();  // Next batch in a later task: the loop stays fair.
  }
  if (end_now) {
    CallSinkComplete(ctx, end_status);
    FinishTrace(ctx);
    ReleaseSink();
  }
}

absl::Status StreamCore::Complete(absl::Status status) {
  bool schedule = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
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
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (terminal_) {
      return absl::FailedPreconditionError("stream already ended");
    }
  }
  EndByConsumer(reason, /*tell_sink=*/true);  // [E3]
  return absl::OkStatus();
}

void StreamCore::ConsumerDestroyed() {  // [E5]
  EndByConsumer(absl::CancelledError("the stream's consumer was destroyed"),
                /*tell_sink=*/false);
}

void StreamCore::EndByConsumer(const absl::Status& reason, bool tell_sink) {
  ContextHandle sink;
  bool attached;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (terminal_) return;  // Someone else ended it first.
    terminal_ = true;
    end_reason_ = reason;
    consumer_ended_.store(true, std::memory_order_release);
    counters_.discarded += DiscardBufferLocked();
    sink = sink_ctx_;
    attached = attached_;
  }
  NotifyProducerClosed(reason);
  if (!attached) {
    FinishTrace(ContextHandle());
    ReleaseSink();  // Never attached: no sink thread to prefer.
    return;
  }
  std::shared_ptr<StreamCore> self = shared_from_this();
  absl::Status posted = Post(sink, [self, reason, tell_sink](ContextHandle c) {
    if (tell_sink) self->CallSinkComplete(c, reason);
    self->FinishTrace(c);
    self->ReleaseSink();
  });
  if (!posted.ok()) FinishTrace(ContextHandle());  // [E6] sink is gone.
}

void StreamCore::NotifyProducerClosed(const absl::Status& reason) {
  std::shared_ptr<StreamCore> self = shared_from_this();
  // Dropped if the producer's context or loop is gone [E7].
  (void)Post(producer_, [self, reason](ContextHandle p) {
    if (self->producer_callbacks_.on_closed) {
      self->producer_callbacks_.on_closed(p, reason);
    }
  });
}

void StreamCore::FinishTrace(ContextHandle from) {
  std::optional<TraceScope> trace;
  {
    std::lock_guard<std::mutex> lock(mu_);
    trace.swap(trace_);
  }
  // Runs on the trace's origin: inline if `from` is it, else posted there.
  if (trace.has_value()) (void)trace->Finish(from);
}

}  // namespace internal
}  // namespace ctxloop
