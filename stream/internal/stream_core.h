// Copyright 2026 The ctxloop Authors.
//
// Internal (include ctxloop/stream/stream.h). The type-independent half of a
// stream: its state machine, contexts, producer callbacks and trace.
// `StreamState<T>` (stream.h) adds the event buffer and the sink. See stream.h
// for the contract; the ending cases [E1]..[E10] are numbered in
// stream_core.cc.
//
// Cost: an `Emit` on the sink's own loop thread (a stream within one loop)
// takes no lock: it appends to a ring only that thread touches and, once
// per batch, posts a delivery to its own loop; it takes `mu_` once per
// `kLocalChunk` events to reserve room under the high watermark. An `Emit`
// from any other thread takes `mu_` once and appends to the shared buffer;
// the sink takes that buffer whole (a swap) once per batch, so a producer
// thread and the sink meet on the lock once per batch, not per event. One
// `Post` per batch (see stream.h). Per stream: one destroy hook on the sink
// context (added at Attach, posted there from another thread; removed at the
// end), and, if it has producer callbacks, one `Post` to the producer at the
// end to drop them there.
//
// Thread-safety: `mu_` guards the state (annotated, checked by clang's
// -Wthread-safety); callbacks run outside it, each on its own context's loop
// thread. The sink thread's ring (`local_tail_`, `local_head_`,
// `local_limit_`) is written by the sink's loop thread only; other threads
// read those atomics to count (under `mu_`, where the sink thread writes all
// but the tail). `fast_block_` tells an `Emit` whether the lock-free path is
// open: any bit set sends it through `mu_`.

#ifndef CTXLOOP_STREAM_INTERNAL_STREAM_CORE_H_
#define CTXLOOP_STREAM_INTERNAL_STREAM_CORE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>

#include "absl/base/attributes.h"
#include "absl/base/optimization.h"
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
  // kDeliver: the delivery scheduled under `mu_` (`delivery_pending_`), for
  // everything buffered; kDeliverLocal: the one the sink thread's lock-free
  // `Emit` posted (`local_delivery_pending_`), for its ring only;
  // kDeliverLane: the one the lane's producer posted (`lane_pending_`), for
  // the lane only.
  enum class SinkTaskKind {
    kDeliver,
    kDeliverLocal,
    kDeliverLane,
    kEnd,
    kWatchSink,
    kHook
  };
  void RunSinkTask(SinkTaskKind kind, ContextHandle ctx,
                   const absl::Status& status, bool tell_sink);
  void SinkTaskDropped(SinkTaskKind kind, const absl::Status& status,
                       bool tell_sink);
  // The sink context's destroy hook [E6].
  void SinkContextGone(ContextHandle ctx);

 protected:
  // Room an `Emit` on the sink thread reserves under `mu_` at a time; the
  // events then go into the ring without the lock. Another thread's `Emit`
  // counts the unused part of a reservation as buffered (the bound stays
  // strict), so while the sink's own thread also emits into the stream, an
  // `Emit` from another thread can be refused up to this many events before
  // the high watermark is reached.
  static constexpr uint64_t kLocalChunk = 64;

  // The lane's first capacity (slots); it doubles as its producer needs
  // room, up to the high watermark rounded up to a power of two.
  static constexpr uint64_t kLaneFirstCapacity = 64;

  // `fast_block_` bits: any set closes the lock-free `Emit` paths.
  static constexpr uint32_t kNotAttached = 1;     // No sink yet.
  static constexpr uint32_t kClosed = 2;          // Ended, or Complete/Fail.
  static constexpr uint32_t kSharedNonEmpty = 4;  // Events wait in shared_.
  static constexpr uint32_t kStaged = 8;          // ... or in the staged batch.

  // Buffer operations of the typed half. Four buffers:
  //   the ring   the sink thread's own `Emit`s, no lock (a single-thread
  //              queue);
  //   the lane   one other producer thread's `Emit`s, no lock (a
  //              single-producer single-consumer ring: the first thread
  //              other than the sink's to emit after Attach owns it for the
  //              stream's life);
  //   `shared_`  every other `Emit`, under `mu_`;
  //   the staged batch  `shared_` taken whole by the sink thread
  //              (`StageSharedLocked`), delivered from there.
  // Delivery order: ring and lane, then the staged batch, then `shared_`.
  // It is emit order because an `Emit` appends to the ring or the lane only
  // while every other buffer is empty as that thread sees it (so whatever
  // happened before it was taken already); the ring's and the lane's
  // events, when both wait, were emitted concurrently.
  virtual size_t SharedSizeLocked() const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) = 0;
  // Drops `shared_` (any thread); returns how many it held.
  virtual size_t DiscardSharedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) = 0;
  // Swaps `shared_` into the (empty) staged batch; returns its size. Sink
  // thread.
  virtual size_t StageSharedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) = 0;
  // Moves `from_ring` events out of the ring from `ring_head` and
  // `from_staged` out of the staged batch into the batch `DeliverTakenBatch`
  // hands over. Sink thread, outside `mu_` (these are its own).
  virtual void TakeBatch(uint64_t ring_head, uint64_t from_ring,
                         uint64_t lane_head, uint64_t from_lane,
                         size_t from_staged) = 0;
  // Destroys the ring's events in [ring_head, ring_tail), the lane's in
  // [lane_head, lane_tail) and the staged batch (counted as discarded by the
  // caller). Sink thread, outside `mu_`.
  virtual void DestroySinkBuffers(uint64_t ring_head, uint64_t ring_tail,
                                  uint64_t lane_head, uint64_t lane_tail) = 0;
  // Allocates the lane with `capacity` slots (a power of two) or grows it
  // to that, moving the events waiting in it. Called by the lane's producer
  // while the sink thread is not moving events out of it (`lane_taking_` is
  // 0; the sink thread reads the slots only while it is not).
  virtual void ResizeLaneLocked(uint64_t capacity)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) = 0;
  // Drops the sink's callbacks (on the sink's loop thread when possible).
  virtual void ReleaseSink() = 0;
  // Hands a batch to the sink; returns a status if the sink threw. Sets
  // `sink_running_` around each call into the sink.
  virtual absl::Status DeliverTakenBatch(ContextHandle ctx) = 0;
  // Calls `on_complete` at most once; returns what it threw, if it threw.
  virtual std::exception_ptr CallSinkComplete(ContextHandle ctx,
                                              const absl::Status& s) = 0;

  // True if the calling thread is the sink's loop thread (the stream is
  // attached): the ring is this thread's. Thread-safe.
  bool OnSinkThread() const {
    return (fast_block_.load(std::memory_order_acquire) & kNotAttached) == 0 &&
           loop_internal::CachedLocalPoster(sink_fast_) != nullptr;
  }
  // The lock-free `Emit` may append to the ring now (the sink-thread check
  // first: the ring's counters are the sink thread's).
  ABSL_ATTRIBUTE_ALWAYS_INLINE bool RingOpenForEmit() const {
    if (ABSL_PREDICT_FALSE(fast_block_.load(std::memory_order_acquire) != 0)) {
      return false;
    }
    if (ABSL_PREDICT_FALSE(loop_internal::CachedLocalPoster(sink_fast_) ==
                           nullptr)) {
      return false;
    }
    // The lane's events come first when it has any.
    if (ABSL_PREDICT_FALSE(lane_tail_.load(std::memory_order_acquire) !=
                           lane_head_.load(std::memory_order_relaxed))) {
      return false;
    }
    const uint64_t tail = local_tail_.load(std::memory_order_relaxed);
    return tail - local_head_.load(std::memory_order_relaxed) <
           local_limit_.load(std::memory_order_relaxed);
  }
  // The lock-free `Emit` may append to the lane now: this thread owns it,
  // it has reserved room, and nothing waits elsewhere.
  ABSL_ATTRIBUTE_ALWAYS_INLINE bool LaneOpenForEmit() const {
    if (ABSL_PREDICT_FALSE(fast_block_.load(std::memory_order_acquire) != 0)) {
      return false;
    }
    if (lane_owner_.load(std::memory_order_relaxed) != ThisThreadToken()) {
      return false;
    }
    // The sink thread's ring: its events come first when it has any.
    if (local_tail_.load(std::memory_order_acquire) !=
        local_head_.load(std::memory_order_acquire)) {
      return false;
    }
    return lane_tail_.load(std::memory_order_relaxed) <
           lane_limit_.load(std::memory_order_relaxed);
  }
  // The lane's producer, with its event written into the slot at
  // `lane_tail_` but not yet published: makes sure a delivery will run
  // (posting one, bounded by the sink loop's `max_pending_foreign`).
  // kResourceExhausted: refused for a full loop (counted); the caller takes
  // its event back out of the slot and does not publish it.
  absl::Status WakeForLane();
  // After publishing: a delivery that cleared `lane_pending_` before seeing
  // the new tail is covered by posting another (never refused for a full
  // loop: at most one pending per stream).
  void RewakeForLane();
  // A number for this thread, never reused (0 is none).
  static uint64_t ThisThreadToken() {
    uint64_t token = t_thread_token;
    if (ABSL_PREDICT_FALSE(token == 0)) token = NewThreadToken();
    return token;
  }
  static uint64_t NewThreadToken();
  static inline thread_local uint64_t t_thread_token = 0;
  // After an append to the ring at `tail` (sink thread): publishes it and
  // makes sure a delivery will take it.
  ABSL_ATTRIBUTE_ALWAYS_INLINE void AfterRingPush(uint64_t tail) {
    local_tail_.store(tail + 1, std::memory_order_relaxed);
    if (ABSL_PREDICT_FALSE(!local_delivery_pending_)) ScheduleLocalDelivery();
  }
  // Posts the sink thread's own delivery (kDeliverLocal) to its loop.
  void ScheduleLocalDelivery();

  // For an `Emit` through `mu_`: checks, the bound, and where the event
  // goes: the ring (sink thread) or the lane (its owner), room reserved (the
  // caller appends it after unlocking), or else `shared_`.
  enum class EmitTo { kShared, kRing, kLane };
  absl::Status BeginEmitLocked(bool on_sink, EmitTo* to)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // After an append to `shared_`. True: the caller must ScheduleDelivery().
  bool AfterPushLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `shared_` shrank (a refused event taken back): keeps its bit right.
  void SharedShrankLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
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
  // What happened to events; the ring's appends are counted by
  // `local_tail_` instead of `emitted` (see counters()).
  StreamCounters counters_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> consumer_ended_{false};  // Read per event by delivery.
  std::atomic<uint32_t> fast_block_{kNotAttached};
  // The sink context, for the lock-free path: set once by Attach before it
  // clears kNotAttached (release); read only after seeing that bit clear.
  ContextHandle sink_fast_;
  // The sink thread's ring: events [local_head_, local_tail_) wait in it;
  // it may hold up to local_limit_ (room reserved under `mu_`, counted by
  // other threads' `Emit` as buffered). Written by the sink thread only,
  // all but the tail under `mu_`.
  std::atomic<uint64_t> local_tail_{0};
  std::atomic<uint64_t> local_head_{0};
  std::atomic<uint64_t> local_limit_{0};
  // Events in the staged batch not yet taken. Written by the sink thread.
  size_t staged_ ABSL_GUARDED_BY(mu_) = 0;
  // The lane: events [lane_head_, lane_tail_) wait in it; its producer may
  // append up to the index lane_limit_ (room it reserved under `mu_`, an
  // index rather than a count so that what the sink takes out does not
  // give it room without asking: others count lane_limit_ - lane_head_ as
  // buffered, at most kLocalChunk - 1 more than the lane holds). lane_owner_ is
  // the producer thread's token (0: unclaimed), set once under `mu_`, as is
  // lane_mask_ (capacity - 1). The producer writes lane_tail_ (seq_cst:
  // against lane_pending_) and lane_limit_ (under `mu_`); the sink thread
  // writes lane_head_ under `mu_`, after moving the events out.
  std::atomic<uint64_t> lane_owner_{0};
  std::atomic<uint64_t> lane_tail_{0};
  std::atomic<uint64_t> lane_head_{0};
  std::atomic<uint64_t> lane_limit_{0};
  uint64_t lane_mask_ = 0;
  // Events taken from the lane whose head has not moved yet (Deliver,
  // DiscardSinkBuffers): nonzero while the sink thread reads the slots.
  uint64_t lane_taking_ ABSL_GUARDED_BY(mu_) = 0;
  // A kDeliverLane task is posted and has not started.
  std::atomic<bool> lane_pending_{false};
  // A kDeliverLocal task is posted and has not started. Sink thread only.
  bool local_delivery_pending_ = false;

 private:
  void Deliver(ContextHandle ctx, SinkTaskKind kind);
  // Events buffered anywhere, exactly (the sink thread, or before Attach).
  uint64_t BufferedExactLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sets or clears a `fast_block_` bit (under `mu_`, so that the bits
  // change in step with what they describe).
  void SetBlockLocked(uint32_t bit, bool on) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The ending's discard of the sink thread's ring and staged batch (sink
  // thread; counted as discarded).
  void DiscardSinkBuffers();
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
