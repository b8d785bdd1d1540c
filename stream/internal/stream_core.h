// Copyright 2026 The ctxloop Authors.
//
// Internal. The type-independent half of a stream: its state machine,
// contexts, producer callbacks and trace. `StreamState<T>` (stream.h) adds
// the event buffer and the sink. See stream.h for the contract; the ending
// cases [E1]..[E7] are numbered in stream_core.cc.
//
// Cost: one mutex per Emit/Complete/Cancel and per delivered batch; one
// `Post` per batch (see stream.h).
//
// Thread-safety: `mu_` guards the state; callbacks run outside it, each on
// its own context's loop thread.

#ifndef CTXLOOP_STREAM_INTERNAL_STREAM_CORE_H_
#define CTXLOOP_STREAM_INTERNAL_STREAM_CORE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "ctxloop/loop/context_handle.h"
#include "ctxloop/trace/scope.h"

namespace ctxloop {

struct StreamOptions {
  // `Emit` refuses (kResourceExhausted) while this many events wait.
  size_t high_watermark = 1024;
  // After a refusal, `on_writable` fires once the backlog is at or below this.
  size_t low_watermark = 256;
  // Events handed to the sink per loop task; larger batches mean fewer
  // wake-ups, smaller ones let other tasks on the sink's loop run sooner.
  size_t max_batch = 1024;
};

// The producer's callbacks; each runs on the producer's context.
struct ProducerCallbacks {
  // The stream can take events again after `Emit` said it was full.
  absl::AnyInvocable<void(ContextHandle)> on_writable;
  // The consumer ended the stream: cancelled it, its sink threw, or it (or
  // its context or loop) went away. Called at most once, never after the
  // producer's own `Complete`/`Fail` was delivered.
  absl::AnyInvocable<void(ContextHandle, const absl::Status&)> on_closed;
};

struct StreamCounters {
  uint64_t emitted = 0;    // Accepted by Emit.
  uint64_t delivered = 0;  // Handed to the sink.
  uint64_t discarded = 0;  // Buffered when the consumer ended the stream.
  uint64_t refused_full = 0;
  uint64_t deliveries = 0;  // Loop tasks that delivered (batches).
};

namespace internal {

class StreamCore : public std::enable_shared_from_this<StreamCore> {
 public:
  StreamCore(ContextHandle producer, StreamOptions options,
             ProducerCallbacks callbacks, std::optional<TraceScope> trace);
  virtual ~StreamCore();

  // Producer side. Thread-safe.
  absl::Status Complete(absl::Status status);
  // Consumer side. Thread-safe.
  absl::Status Cancel(absl::Status reason);
  void ConsumerDestroyed();

  ContextHandle producer() const { return producer_; }
  ContextHandle sink_context() const;
  SpanParent trace_parent() const { return trace_parent_; }
  StreamCounters counters() const;
  bool writable() const;
  bool finished() const;

 protected:
  // Buffer operations of the typed half; called with `mu_` held.
  virtual size_t BufferedLocked() const = 0;
  virtual size_t DiscardBufferLocked() = 0;
  // Drops the sink's callbacks (on the sink's loop thread when possible).
  virtual void ReleaseSink() = 0;
  // Hands a batch to the sink; returns a status if the sink threw.
  virtual absl::Status DeliverTakenBatch(ContextHandle ctx) = 0;
  // Moves up to `max` events out of the buffer for `DeliverTakenBatch`.
  virtual void TakeBatchLocked(size_t max) = 0;
  virtual void CallSinkComplete(ContextHandle ctx, const absl::Status& s) = 0;

  // For Emit: checks and bookkeeping around the typed push, with `mu_` held.
  absl::Status CheckEmitLocked();
  bool AfterPushLocked();  // True: the caller must ScheduleDelivery().
  bool AttachLocked(ContextHandle sink_ctx, absl::Status* error);
  void ScheduleDelivery();

  mutable std::mutex mu_;
  const StreamOptions options_;
  StreamCounters counters_;                  // Guarded by mu_.
  std::atomic<bool> consumer_ended_{false};  // Read per event by delivery.

 private:
  void Deliver(ContextHandle ctx);
  void EndByConsumer(const absl::Status& reason, bool tell_sink);
  void FinishTrace(ContextHandle from);
  void NotifyProducerClosed(const absl::Status& reason);

  const ContextHandle producer_;
  ProducerCallbacks producer_callbacks_;  // Run on the producer's context.
  std::optional<TraceScope> trace_;       // Guarded by mu_.
  const SpanParent trace_parent_;

  // Guarded by mu_.
  ContextHandle sink_ctx_;
  bool attached_ = false;
  bool delivery_pending_ = false;
  bool producer_done_ = false;    // Complete/Fail called.
  absl::Status producer_status_;  // Its status.
  bool terminal_ = false;         // The ending is decided.
  absl::Status end_reason_;       // Why the consumer ended it, if it did.
  bool want_writable_ = false;
};

}  // namespace internal
}  // namespace ctxloop

#endif  // CTXLOOP_STREAM_INTERNAL_STREAM_CORE_H_
