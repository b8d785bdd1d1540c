// Copyright 2026 The ctxloop Authors.
//
// Internal (include ctxloop/stream/stream.h). The type-independent half of a
// stream: its state machine, contexts, producer callbacks and trace.
// `StreamState<T>` (stream.h) adds the event buffer and the sink. See stream.h
// for the contract; the ending cases [E1]..[E10] are numbered in
// stream_core.cc.
//
// Cost: one mutex per Emit/Complete/Cancel and per delivered batch (two
// short holds); one `Post` per batch (see stream.h). Per stream: one destroy
// hook on the sink context (added at Attach, posted there from another
// thread; removed at the end), and, if it has producer callbacks, one `Post`
// to the producer at the end to drop them there.
//
// Thread-safety: `mu_` guards the state (annotated, checked by clang's
// -Wthread-safety); callbacks run outside it, each on its own context's loop
// thread.

#ifndef CTXLOOP_STREAM_INTERNAL_STREAM_CORE_H_
#define CTXLOOP_STREAM_INTERNAL_STREAM_CORE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "ctxloop/loop/context_handle.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/loop/mutex.h"
#include "ctxloop/stream/stream_options.h"
#include "ctxloop/trace/scope.h"

namespace ctxloop {

namespace stream_internal {

// What every method of a moved-from (or already attached) handle returns.
absl::Status NoStream();

class StreamCore : public std::enable_shared_from_this<StreamCore> {
 public:
  StreamCore(ContextHandle producer, StreamOptions options,
             ProducerCallbacks callbacks, std::optional<TraceScope> trace,
             FinishOptions trace_finish = {});
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

  // The sink-side tasks (stream_core.cc); each ends the stream if it is
  // destroyed unrun [E8].
  enum class SinkTaskKind { kDeliver, kEnd, kWatchSink, kHook };
  void RunSinkTask(SinkTaskKind kind, ContextHandle ctx,
                   const absl::Status& status, bool tell_sink);
  void SinkTaskDropped(SinkTaskKind kind, const absl::Status& status,
                       bool tell_sink);
  // The sink context's destroy hook [E6].
  void SinkContextGone(ContextHandle ctx);

 protected:
  // Buffer operations of the typed half.
  virtual size_t BufferedLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) = 0;
  virtual size_t DiscardBufferLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) = 0;
  // Drops the sink's callbacks (on the sink's loop thread when possible).
  virtual void ReleaseSink() = 0;
  // Hands a batch to the sink; returns a status if the sink threw. Sets
  // `sink_running_` around each call into the sink.
  virtual absl::Status DeliverTakenBatch(ContextHandle ctx) = 0;
  // Moves up to `max` events out of the buffer for `DeliverTakenBatch`.
  virtual void TakeBatchLocked(size_t max)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) = 0;
  // Calls `on_complete` at most once; returns what it threw, if it threw.
  virtual std::exception_ptr CallSinkComplete(ContextHandle ctx,
                                              const absl::Status& s) = 0;

  // For Emit: checks and bookkeeping around the typed push, with `mu_` held.
  absl::Status CheckEmitLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // True: the caller must ScheduleDelivery().
  bool AfterPushLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool AttachLocked(ContextHandle sink_ctx, absl::Status* error)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // After a successful AttachLocked: watches the sink context for its end
  // (destroy hook) and schedules the first delivery if `schedule`. An error
  // (the sink context is already gone, seen on its loop thread) means the
  // stream has ended [E6].
  absl::Status AfterAttach(bool schedule);
  // Posts the next delivery; never refused for a full loop [E8].
  void ScheduleDelivery();
  // Posts the delivery an `Emit` scheduled, bounded by the sink loop's
  // `max_pending_foreign`: kResourceExhausted if refused for that (the
  // delivery is still marked pending: the caller takes its event back and
  // calls AfterRefusedEmitLocked); otherwise OK (a closed loop ends the
  // stream [E8]).
  absl::Status ScheduleDeliveryForEmit();
  // After a refused ScheduleDeliveryForEmit, once the caller took its event
  // back out of the buffer (`taken_back`; not if the stream ended meanwhile,
  // which discarded and counted it): uncounts it and clears the pending
  // delivery. True: the caller must ScheduleDelivery() (other events or a
  // `Complete` still need a delivery).
  bool AfterRefusedEmitLocked(bool taken_back)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool TerminalLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return terminal_;
  }
  void SetSinkRunning(bool running) {
    ctxloop::MutexLock lock(&mu_);
    sink_running_ = running;
  }

  mutable ctxloop::Mutex mu_;
  const StreamOptions options_;
  StreamCounters counters_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> consumer_ended_{false};  // Read per event by delivery.

 private:
  void Deliver(ContextHandle ctx);
  // Decides a consumer-side ending if none is decided yet: discards the
  // buffer and tells the producer. True if this call decided it.
  bool EndByConsumerLocked(const absl::Status& reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Cancel, consumer destroyed: the sink side is ended in a posted task.
  // False if the stream had already ended.
  bool EndByConsumer(const absl::Status& reason, bool tell_sink);
  // The sink side of an ending, on the sink's loop thread outside any sink
  // callback: on_complete (if `tell_sink`), trace finish, sink release,
  // destroy hook removal. Runs at most once. Returns what on_complete threw.
  std::exception_ptr EndSinkSide(ContextHandle ctx, const absl::Status& s,
                                 bool tell_sink);
  // Installs the sink context's destroy hook (sink thread). An error: the
  // context is gone and the stream has ended [E6].
  absl::Status WatchSinkNow(ContextHandle ctx, bool tell_sink_if_gone);
  struct SinkEnd {
    absl::Status status;
    bool tell_sink = false;
  };
  // A sink-side ending handed over by a dropped task [E8]: here if this is
  // the sink's thread outside its callbacks, else by the destroy hook, else
  // (no hook) the trace is finished from here.
  void EndSinkSideFromHere(SinkEnd end);
  void FinishTrace(ContextHandle from);
  // Tells the producer `on_closed(*closed)` if set, then drops its
  // callbacks, on its context.
  void NotifyProducerEnded(std::optional<absl::Status> closed);

  const ContextHandle producer_;
  // Run on the producer's context; dropped there when the stream ends.
  ProducerCallbacks producer_callbacks_;
  const bool has_producer_callbacks_;
  std::optional<TraceScope> trace_ ABSL_GUARDED_BY(mu_);
  FinishOptions trace_finish_ ABSL_GUARDED_BY(mu_);  // How to finish trace_.
  const SpanParent trace_parent_;

  ContextHandle sink_ctx_ ABSL_GUARDED_BY(mu_);
  bool attached_ ABSL_GUARDED_BY(mu_) = false;
  bool delivery_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool producer_done_ ABSL_GUARDED_BY(mu_) = false;    // Complete/Fail called.
  absl::Status producer_status_ ABSL_GUARDED_BY(mu_);  // Its status.
  bool terminal_ ABSL_GUARDED_BY(mu_) = false;         // The ending is decided.
  absl::Status end_reason_ ABSL_GUARDED_BY(mu_);  // Why the consumer ended it.
  bool want_writable_ ABSL_GUARDED_BY(mu_) = false;
  // The sink side of the ending ran (or was handed elsewhere) [E10].
  bool sink_side_ended_ ABSL_GUARDED_BY(mu_) = false;
  // A sink callback is running (sink thread): the sink may not be released.
  bool sink_running_ ABSL_GUARDED_BY(mu_) = false;
  // The sink context's destroy hook, while installed.
  std::optional<DestroyHookId> sink_hook_ ABSL_GUARDED_BY(mu_);
  // A sink-side ending left to the destroy hook [E8].
  std::optional<SinkEnd> deferred_sink_end_ ABSL_GUARDED_BY(mu_);
};

}  // namespace stream_internal
}  // namespace ctxloop

#endif  // CTXLOOP_STREAM_INTERNAL_STREAM_CORE_H_
