// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/stream/stream.h
// -----------------------------------------------------------------------------
//
// A typed event stream from a producer to one sink, across contexts, loops
// and threads:
//
//   auto [writer, reader] = *ctxloop::MakeStream<Event>(producer_ctx);
//   ctxloop::Sink<Event> sink;
//   sink.on_event = [](ctxloop::ContextHandle ctx, Event&& e) { ... };
//   sink.on_complete = [](ctxloop::ContextHandle ctx, const absl::Status& s) {
//     ...  // Exactly once: OK, the producer's failure, or why it was cut.
//   };
//   ctxloop::StreamSubscription sub = *std::move(reader).Attach(sink_ctx,
//                                                             std::move(sink));
//   writer.Emit(Event{...});  // From the producer, on any thread.
//   writer.Complete();
//
// Delivery: events reach the sink on the sink's context, on its loop thread,
// in emit order, exactly once, followed by exactly one `on_complete`. Events
// are handed over in batches: one loop task (one wake-up if the sink's loop
// is idle on another thread) carries everything buffered, up to
// `StreamOptions::max_batch`.
//
// Backpressure: at most `high_watermark` events wait in the buffer. `Emit`
// then returns kResourceExhausted and does not take the event (the caller
// keeps it); `ProducerCallbacks::on_writable` runs on the producer's context
// once the backlog is down to `low_watermark`. Nothing grows without bound;
// nothing is dropped silently. An `Emit` from another thread that has to
// wake the sink's loop is also refused (kResourceExhausted, the event not
// taken and not counted as emitted, `refused_loop_full` counted) when that
// loop already holds `Loop::Options::max_pending_foreign` cross-thread
// posts; no `on_writable` follows that one: retry after `WaitForRoom` on
// the sink's context (a thread that may block) or a timer. Endings and the
// producer's notifications are never refused for a full loop.
//
// Endings (numbered [E1]..[E10] in internal/stream_core.cc): complete, fail,
// consumer cancel, sink throws, consumer destroyed, sink context/loop gone
// (noticed when it goes, through a destroy hook on the sink context, even if
// the producer is idle), loop shutdown, a delivery the loop could not run, a
// throwing `on_complete`, racing endings. In every case the stream ends
// exactly once: the producer learns it on its own context (`on_closed`, at
// most once), later emits return kCancelled, the sink is released on its
// loop thread when that thread can still be reached, and the stream's trace,
// if it carries one, is finished on the trace's origin context -- the
// "Token was created in a different Context" bug cannot happen here. Once
// ended, `emitted == delivered + discarded`.
//
// Tracing the consumer: `trace_parent()` hands the producer's trace to the
// sink, which opens its own spans under it on its own context:
//   ctxloop::SpanOptions o;
//   o.parent = sub.trace_parent();
//   ctxloop::SpanScope span = tracer.StartSpan(ctx, "render event", o);
//
// Re-entrancy (tested): a sink may `Cancel` its own stream, or emit into
// another stream, from inside `on_event`; a producer may `Emit` from inside
// `on_writable`.
//
// Cost: `Emit` is one uncontended mutex and a deque push; per batch, one
// `Post`. `benchmarks/stream_benchmark.cc` measures events per second.
//
// Settings: buffer limits, producer callbacks and a trace for the stream to
// carry go in one `StreamConfig` (stream_options.h):
//   ctxloop::StreamConfig config;
//   config.trace = tracer.StartTrace(producer_ctx, "run");
//   auto [writer, reader] =
//       *ctxloop::MakeStream<Event>(producer_ctx, std::move(config));
//
// Values: `StreamWriter`, `StreamReader` and `StreamSubscription` are
// default-constructible (empty) and movable, also by assignment; assigning
// over one that holds a stream ends that stream as its destructor would. An
// empty or moved-from handle returns kFailedPrecondition (getters: empty
// values); it never crashes.
//
// Thread-safety: `StreamWriter`, `StreamReader` and `StreamSubscription`
// methods are thread-safe; each object is moved, not shared. Sink callbacks
// run on the sink context's loop thread, producer callbacks on the producer
// context's.

#ifndef CTXLOOP_STREAM_STREAM_H_
#define CTXLOOP_STREAM_STREAM_H_

#include <algorithm>
#include <cstddef>
#include <deque>
#include <exception>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/base/attributes.h"
#include "absl/base/optimization.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "ctxloop/loop/context_handle.h"
#include "ctxloop/stream/internal/stream_core.h"
#include "ctxloop/stream/stream_options.h"
#include "ctxloop/trace/scope.h"

namespace ctxloop {

template <typename T>
struct StreamPair;
template <typename T>
absl::StatusOr<StreamPair<T>> MakeStream(ContextHandle producer_ctx,
                                         StreamOptions options,
                                         ProducerCallbacks callbacks,
                                         std::optional<TraceScope> trace);
namespace stream_internal {
template <typename T>
absl::StatusOr<StreamPair<T>> MakeStreamWith(ContextHandle producer_ctx,
                                             StreamOptions options,
                                             ProducerCallbacks callbacks,
                                             std::optional<TraceScope> trace,
                                             FinishOptions trace_finish);
}  // namespace stream_internal

// The consumer's callbacks; both run on the sink's context, on its loop
// thread, and both are required. `on_complete` runs exactly once after the
// last event -- OK, the producer's failure, or why the stream was cut
// (kCancelled, kInternal for a throwing `on_event`, kUnavailable when the
// sink's context or loop went away) -- unless the consumer itself dropped its
// subscription first [E5]. Both are destroyed on the sink's loop thread when
// the stream ends (if that thread can still be reached), so they may capture
// the writer.
template <typename T>
struct Sink {
  absl::AnyInvocable<void(ContextHandle, T&&)> on_event;
  absl::AnyInvocable<void(ContextHandle, const absl::Status&)> on_complete;
};

namespace stream_internal {

template <typename T>
class StreamState final : public StreamCore {
 public:
  using StreamCore::StreamCore;

  // Inline into the caller with `StreamWriter::Emit`, as it was before its
  // cold path (below) existed: the caller then sees the OK status built here.
  ABSL_ATTRIBUTE_ALWAYS_INLINE absl::Status Emit(T&& event) {
    bool schedule;
    size_t index = 0;
    {
      ctxloop::MutexLock lock(&mu_);
      absl::Status s = CheckEmitLocked();
      if (!s.ok()) return s;
      buffer_.push_back(std::move(event));
      schedule = AfterPushLocked();
      if (schedule) index = buffer_.size() - 1;
    }
    if (!schedule) return absl::OkStatus();
    absl::Status posted = ScheduleDeliveryForEmit();
    if (ABSL_PREDICT_TRUE(posted.ok())) return posted;
    return TakeBackRefusedEmit(event, index, std::move(posted));
  }

  // The sink's loop is full (the cold path of `Emit`, out of line so the hot
  // one stays small). Our delivery was pending, so nothing took from the
  // buffer since the push: the event is still at `index`, unless the stream
  // ended meanwhile (the buffer discarded and counted).
  ABSL_ATTRIBUTE_NOINLINE absl::Status TakeBackRefusedEmit(
      T& event, size_t index, absl::Status posted) {
    bool taken_back, reschedule;
    {
      ctxloop::MutexLock lock(&mu_);
      taken_back = !TerminalLocked();
      if (taken_back) {
        const auto it = buffer_.begin() + static_cast<std::ptrdiff_t>(index);
        if constexpr (std::is_move_assignable_v<T>) event = std::move(*it);
        buffer_.erase(it);
      }
      reschedule = AfterRefusedEmitLocked(taken_back);
    }
    if (reschedule) ScheduleDelivery();
    return taken_back ? posted : absl::OkStatus();
  }

  absl::Status Attach(ContextHandle ctx, Sink<T> sink) {
    if (ctx.is_null()) return absl::InvalidArgumentError("Attach: null ctx");
    if (!sink.on_event || !sink.on_complete) {
      return absl::InvalidArgumentError(
          "Attach: the sink needs both on_event and on_complete");
    }
    absl::Status error;
    bool schedule;
    {
      ctxloop::MutexLock lock(&mu_);
      schedule = AttachLocked(ctx, &error);
      if (!error.ok()) return error;
      sink_ = std::move(sink);
    }
    return AfterAttach(schedule);
  }

 private:
  size_t BufferedLocked() const override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return buffer_.size();
  }
  size_t DiscardBufferLocked() override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const size_t n = buffer_.size();
    buffer_.clear();
    return n;
  }
  void TakeBatchLocked(size_t max) override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const size_t n = std::min(max, buffer_.size());
    for (size_t i = 0; i < n; ++i) {
      batch_.push_back(std::move(buffer_.front()));
      buffer_.pop_front();
    }
    counters_.delivered += n;
  }
  absl::Status DeliverTakenBatch(ContextHandle ctx) override {
    absl::Status status;
    size_t i = 0;
    SetSinkRunning(true);
    try {
      for (; i < batch_.size(); ++i) {
        if (consumer_ended_.load(std::memory_order_acquire)) break;  // [E3]
        sink_.on_event(ctx, std::move(batch_[i]));
      }
    } catch (const std::exception& e) {  // [E4]
      status =
          absl::InternalError(absl::StrCat("stream sink threw: ", e.what()));
      ++i;
    } catch (...) {
      status = absl::InternalError("stream sink threw a non-std::exception");
      ++i;
    }
    SetSinkRunning(false);
    if (i < batch_.size()) {  // Cut short: these never reached the sink.
      ctxloop::MutexLock lock(&mu_);
      counters_.delivered -= batch_.size() - i;
      counters_.discarded += batch_.size() - i;
    }
    batch_.clear();
    return status;
  }
  std::exception_ptr CallSinkComplete(ContextHandle ctx,
                                      const absl::Status& s) override {
    if (!sink_.on_complete) return nullptr;
    auto on_complete = std::move(sink_.on_complete);  // Exactly once.
    sink_.on_complete = nullptr;
    std::exception_ptr thrown;
    SetSinkRunning(true);
    try {
      on_complete(ctx, s);
    } catch (...) {  // [E9] Rethrown by the caller once the ending is done.
      thrown = std::current_exception();
    }
    SetSinkRunning(false);
    return thrown;
  }
  void ReleaseSink() override { sink_ = Sink<T>(); }

  std::deque<T> buffer_ ABSL_GUARDED_BY(mu_);
  std::vector<T> batch_;  // Sink thread only.
  // Set under mu_ by Attach; then used on the sink thread only (or released
  // where the stream ends if that thread cannot be reached).
  Sink<T> sink_;
};

}  // namespace stream_internal

// The consumer's handle after `Attach`: cancels the stream when destroyed
// unfinished [E5].
class StreamSubscription {
 public:
  StreamSubscription() = default;
  StreamSubscription(StreamSubscription&&) noexcept = default;
  StreamSubscription& operator=(StreamSubscription&& other) noexcept {
    if (this != &other) {
      Release();
      core_ = std::move(other.core_);
    }
    return *this;
  }
  ~StreamSubscription() { Release(); }

  // Ends the stream from the consumer side [E3]: kFailedPrecondition if it
  // already ended. Thread-safe; fine from inside the sink's callbacks.
  absl::Status Cancel() {
    if (core_ == nullptr) return stream_internal::NoStream();
    return core_->Cancel(absl::CancelledError("cancelled by the consumer"));
  }

  SpanParent trace_parent() const {
    return core_ == nullptr ? SpanParent() : core_->trace_parent();
  }
  StreamCounters counters() const {
    return core_ == nullptr ? StreamCounters() : core_->counters();
  }
  bool finished() const { return core_ == nullptr || core_->finished(); }

 private:
  template <typename T>
  friend class StreamReader;
  explicit StreamSubscription(std::shared_ptr<stream_internal::StreamCore> core)
      : core_(std::move(core)) {}
  void Release() {
    if (core_ != nullptr) core_->ConsumerDestroyed();
    core_.reset();
  }
  std::shared_ptr<stream_internal::StreamCore> core_;
};

// The consumer's side before it attaches a sink.
template <typename T>
class StreamReader {
 public:
  // An empty reader (as after a move): `Attach` returns kFailedPrecondition.
  StreamReader() = default;
  StreamReader(StreamReader&&) noexcept = default;
  // Assigning over a reader that still holds a stream ends that stream as
  // the destructor would [E5].
  StreamReader& operator=(StreamReader&& other) noexcept {
    if (this != &other) {
      Release();
      state_ = std::move(other.state_);
    }
    return *this;
  }
  ~StreamReader() { Release(); }

  // True while this reader holds a stream (not moved from, not attached).
  bool has_stream() const { return state_ != nullptr; }

  // Attaches the sink; events buffered so far are delivered at once.
  // kInvalidArgument for a null context or missing callbacks;
  // kCancelled if the stream already ended; kFailedPrecondition on a reader
  // that was moved from or already attached; kUnavailable if `sink_ctx` (or
  // its loop) is already gone [E6]. On any error the sink is not called and
  // the stream ends as if the reader were destroyed [E5].
  absl::StatusOr<StreamSubscription> Attach(ContextHandle sink_ctx,
                                            Sink<T> sink) && {
    if (state_ == nullptr) return stream_internal::NoStream();
    std::shared_ptr<stream_internal::StreamState<T>> state = std::move(state_);
    absl::Status s = state->Attach(sink_ctx, std::move(sink));
    if (!s.ok()) {
      state->ConsumerDestroyed();
      return s;
    }
    return StreamSubscription(std::move(state));
  }

  // The producer's trace, for the sink's spans; empty once attached or moved
  // from (then ask the subscription).
  SpanParent trace_parent() const {
    return state_ == nullptr ? SpanParent() : state_->trace_parent();
  }

 private:
  template <typename U>
  friend absl::StatusOr<StreamPair<U>> stream_internal::MakeStreamWith(
      ContextHandle, StreamOptions, ProducerCallbacks,
      std::optional<TraceScope>, FinishOptions);
  explicit StreamReader(std::shared_ptr<stream_internal::StreamState<T>> s)
      : state_(std::move(s)) {}
  void Release() {
    if (state_ != nullptr) state_->ConsumerDestroyed();  // [E5]
    state_.reset();
  }
  std::shared_ptr<stream_internal::StreamState<T>> state_;
};

// The producer's side.
template <typename T>
class StreamWriter {
 public:
  // An empty writer (as after a move): every method returns
  // kFailedPrecondition or an empty value.
  StreamWriter() = default;
  StreamWriter(StreamWriter&&) noexcept = default;
  // Assigning over a writer that still holds a stream ends that stream as
  // the destructor would [E2].
  StreamWriter& operator=(StreamWriter&& other) noexcept {
    if (this != &other) {
      Release();
      state_ = std::move(other.state_);
    }
    return *this;
  }
  // Fails the stream with kAborted if neither Complete nor Fail ran [E2].
  ~StreamWriter() { Release(); }

  // True while this writer holds a stream (not moved from).
  bool has_stream() const { return state_ != nullptr; }

  // Queues `event` for the sink. On kResourceExhausted (the stream is full,
  // or the sink's loop is: see "Backpressure" above) `event` is left in the
  // caller's hands (if `T` is move-assignable; else destroyed) and not
  // counted as emitted; kCancelled once the consumer ended the stream;
  // kFailedPrecondition after Complete/Fail. Thread-safe.
  ABSL_ATTRIBUTE_ALWAYS_INLINE absl::Status Emit(T&& event) {
    if (state_ == nullptr) return stream_internal::NoStream();
    return state_->Emit(std::move(event));
  }
  absl::Status Emit(const T& event) {
    if (state_ == nullptr) return stream_internal::NoStream();
    T copy(event);
    return state_->Emit(std::move(copy));
  }

  // Ends the stream after the events already emitted [E1].
  absl::Status Complete() {
    if (state_ == nullptr) return stream_internal::NoStream();
    return state_->Complete(absl::OkStatus());
  }
  // Ends it with `error`, which must not be OK [E2].
  absl::Status Fail(absl::Status error) {
    if (state_ == nullptr) return stream_internal::NoStream();
    if (error.ok()) {
      return absl::InvalidArgumentError("Fail needs a non-OK status");
    }
    return state_->Complete(std::move(error));
  }

  // False while full (after a refusal) or once ended. The getters of a
  // moved-from writer return empty values.
  bool writable() const { return state_ != nullptr && state_->writable(); }
  ContextHandle context() const {
    return state_ == nullptr ? ContextHandle() : state_->producer();
  }
  StreamCounters counters() const {
    return state_ == nullptr ? StreamCounters() : state_->counters();
  }
  SpanParent trace_parent() const {
    return state_ == nullptr ? SpanParent() : state_->trace_parent();
  }

 private:
  template <typename U>
  friend absl::StatusOr<StreamPair<U>> stream_internal::MakeStreamWith(
      ContextHandle, StreamOptions, ProducerCallbacks,
      std::optional<TraceScope>, FinishOptions);
  explicit StreamWriter(std::shared_ptr<stream_internal::StreamState<T>> s)
      : state_(std::move(s)) {}
  void Release() {
    if (state_ != nullptr) {
      (void)state_->Complete(
          absl::AbortedError("the stream's producer was destroyed"));
    }
    state_.reset();
  }
  std::shared_ptr<stream_internal::StreamState<T>> state_;
};

template <typename T>
struct StreamPair {
  StreamWriter<T> writer;
  StreamReader<T> reader;
};

// Makes a stream whose producer lives on `producer_ctx` (where its callbacks
// run). If `trace` is given, the stream owns it and finishes it when the
// stream ends, however it ends. kInvalidArgument for a null context or bad
// options (see StreamOptions). Thread-safe. The overloads below take the
// same arguments; prefer the one taking a `StreamConfig`.
namespace stream_internal {
template <typename T>
absl::StatusOr<StreamPair<T>> MakeStreamWith(ContextHandle producer_ctx,
                                             StreamOptions options,
                                             ProducerCallbacks callbacks,
                                             std::optional<TraceScope> trace,
                                             FinishOptions trace_finish) {
  if (producer_ctx.is_null()) {
    return absl::InvalidArgumentError("MakeStream: null producer context");
  }
  if (options.high_watermark == 0 || options.max_batch == 0 ||
      options.low_watermark >= options.high_watermark) {
    return absl::InvalidArgumentError(
        "MakeStream: need high_watermark > low_watermark and max_batch > 0");
  }
  auto state = std::make_shared<stream_internal::StreamState<T>>(
      producer_ctx, options, std::move(callbacks), std::move(trace),
      std::move(trace_finish));
  return StreamPair<T>{StreamWriter<T>(state), StreamReader<T>(state)};
}
}  // namespace stream_internal

template <typename T>
absl::StatusOr<StreamPair<T>> MakeStream(ContextHandle producer_ctx,
                                         StreamOptions options,
                                         ProducerCallbacks callbacks,
                                         std::optional<TraceScope> trace) {
  return stream_internal::MakeStreamWith<T>(producer_ctx, options,
                                            std::move(callbacks),
                                            std::move(trace), FinishOptions());
}

// All settings in one struct (stream_options.h): options, producer callbacks
// and the trace the stream carries; leave out what you do not need.
template <typename T>
absl::StatusOr<StreamPair<T>> MakeStream(ContextHandle producer_ctx,
                                         StreamConfig config) {
  return stream_internal::MakeStreamWith<T>(
      producer_ctx, config.options, std::move(config.callbacks),
      std::move(config.trace), std::move(config.trace_finish));
}

template <typename T>
absl::StatusOr<StreamPair<T>> MakeStream(ContextHandle producer_ctx) {
  return MakeStream<T>(producer_ctx, StreamOptions(), ProducerCallbacks(),
                       std::nullopt);
}
template <typename T>
absl::StatusOr<StreamPair<T>> MakeStream(ContextHandle producer_ctx,
                                         StreamOptions options) {
  return MakeStream<T>(producer_ctx, options, ProducerCallbacks(),
                       std::nullopt);
}
template <typename T>
absl::StatusOr<StreamPair<T>> MakeStream(ContextHandle producer_ctx,
                                         StreamOptions options,
                                         ProducerCallbacks callbacks) {
  return MakeStream<T>(producer_ctx, options, std::move(callbacks),
                       std::nullopt);
}

}  // namespace ctxloop

#endif  // CTXLOOP_STREAM_STREAM_H_
