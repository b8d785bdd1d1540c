// Copyright 2026 The ctxloop Authors.
//
// Internal. `LoopCore` is everything a `Loop` is: the libevent base, the task
// queues, the timer table, the contexts and the fd watches. `Loop` and the
// handle-taking free functions are thin front ends over it.
//
// Cost: see loop.h; the per-operation costs are measured in
// benchmarks/loop_benchmark.cc. The context-local value fast paths
// (`FindValueFast`, `SetValueFast`, `ResetValueFast`) are inline here so
// that `ContextKey`'s header code reaches a context's table without a call.
//
// Thread-safety: members named `*Pinned`/`*Foreign` run on any thread that
// holds a registry pin of this loop (loop_registry.h); everything else runs
// on the owner (loop) thread. Foreign threads reach the loop only through
// the lock-free `ForeignIngress` and read only `ForeignAcceptTable`
// (foreign_ingress.h), plus one atomic per delayed task (its cancel claim,
// see "Delayed tasks" below); the context records and the timer heap are
// owner-only, with no lock.

#ifndef CTXLOOP_LOOP_INTERNAL_LOOP_CORE_H_
#define CTXLOOP_LOOP_INTERNAL_LOOP_CORE_H_

#include <atomic>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/attributes.h"
#include "absl/base/optimization.h"
#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ctxloop/loop/context_handle.h"
#include "ctxloop/loop/fd_watch.h"
#include "ctxloop/loop/internal/foreign_ingress.h"
#include "ctxloop/loop/internal/handle_access.h"
#include "ctxloop/loop/internal/local_post.h"
#include "ctxloop/loop/internal/value_table.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/loop/mutex.h"
#include "ctxloop/loop/task.h"
#include "ctxloop/loop/token.h"

struct event;
struct event_base;

namespace ctxloop {
namespace loop_internal {

// The fence between a foreign `FdWatch::Stop()` and the loop's dispatch of
// that watch, shared by the `FdWatch` and the loop's record (one allocation
// per `WatchFd`). Dekker-style with sequentially consistent atomics: the
// dispatcher sets `in_callback` then reads `stopped`; the stopper sets
// `stopped` then reads `in_callback`; at least one sees the other's store, so
// either the callback is not called or the stopper waits for it to return.
struct WatchControl {
  std::atomic<bool> stopped{false};
  std::atomic<bool> in_callback{false};
  // Foreign stopper: waits (yielding, then sleeping briefly) until no call
  // of the callback is running.
  void WaitForCallback() const;
};

// Where producers waiting for room in a full loop (`WaitForRoom`) sleep.
// Shared (a `shared_ptr` a waiter copies while pinned), so a waiter never
// touches a destroyed loop: it waits here with no pin held, and shutdown
// closes it. The loop thread takes `mu` only while `waiters` is non-zero
// and its backlog is at the low-water mark; a waiter registers (`waiters`,
// sequentially consistent) before it reads the loop's pending count, and the
// loop releases pending work (sequentially consistent) before it reads
// `waiters`, so at least one of them sees the other: no lost wake-up.
struct RoomSignal {
  std::atomic<int> waiters{0};
  Mutex mu;
  CondVar cv;
  uint64_t epoch ABSL_GUARDED_BY(mu) = 0;  // Bumped by each wake-up.
  bool closed ABSL_GUARDED_BY(mu) = false;
  void WakeAll() {
    MutexLock lock(&mu);
    ++epoch;
    cv.SignalAll();
  }
  void Close() {
    MutexLock lock(&mu);
    closed = true;
    cv.SignalAll();
  }
};

class LoopCore {
 public:
  static absl::StatusOr<std::unique_ptr<LoopCore>> Create(
      Loop::Options options);
  ~LoopCore();

  ContextHandle root() const { return MakeHandle(0); }
  bool IsOwnerThread() const;
  uint32_t slot_index() const { return slot_index_; }
  uint32_t generation() const { return generation_; }
  event_base* base() const { return base_; }

  // --- Tasks ---------------------------------------------------------------
  // A post on the loop thread (the inline fast path of loop.h's `Post`
  // template goes straight to `local_poster()`; this is the checked path).
  absl::Status PostLocal(ContextHandle ctx, Task&& task);
  LocalPoster& local_poster() { return local_; }
  // Delayed tasks. `*Owned` on the loop thread (the caller found the loop by
  // `LoopRegistry::FindOwned`); `*Pinned` on a foreign thread holding a pin.
  absl::StatusOr<DelayedTaskHandle> PostDelayedOwned(ContextHandle ctx,
                                                     absl::Duration delay,
                                                     Task&& task);
  absl::StatusOr<DelayedTaskHandle> PostDelayedPinned(ContextHandle ctx,
                                                      absl::Duration delay,
                                                      Task&& task);
  // A foreign PostDelayed (no pin held by the caller): the task moves into
  // an ingress node before the loop is pinned, and a refused one is
  // destroyed after the unpin, so no user code runs under the pin.
  static absl::StatusOr<DelayedTaskHandle> PostDelayedForeign(
      ContextHandle ctx, int64_t deadline_ns, Task&& task);
  bool CancelOwned(const DelayedTaskHandle& handle);
  bool CancelPinned(const DelayedTaskHandle& handle);

  // --- Contexts (owner thread) ---------------------------------------------
  absl::StatusOr<ContextHandle> NewContext(absl::string_view name,
                                           const ContextHandle* parent);
  absl::Status DestroyContext(ContextHandle ctx);
  absl::StatusOr<std::string> ContextName(ContextHandle ctx) const;
  // OK if `ctx` is a live context of this loop (closing ones included).
  absl::Status CheckLive(ContextHandle ctx) const;
  // True if `ctx` is live and not closing: it accepts new things ([S15]).
  bool IsOpen(ContextHandle ctx) const { return AcceptsPosts(ctx); }

  // --- Context-local values (owner thread) ---------------------------------
  absl::StatusOr<const AnyValue*> GetValue(ContextHandle ctx, uint64_t key);
  absl::StatusOr<Token> SetValue(ContextHandle ctx, uint64_t key,
                                 AnyValue value);
  // False if `token` is not a live Set of `key` on `ctx`.
  bool ResetValue(ContextHandle ctx, uint64_t key, const Token& token);
  // Frames `ctx`'s table holds for `key` (0 if none). For tests.
  size_t ValueFrameCountForTesting(ContextHandle ctx, uint64_t key) const;

  // Inline fast paths of `ContextKey` (owner thread; the caller found this
  // core with `FindOwnedCore(ctx)`, so `ctx` names this loop). Each returns
  // false when the out-of-line path above must decide (stale or closing
  // context, first Set on a context, a table shared with a child, a reset
  // out of order); then nothing changed.
  //
  // `*value`: the value of `key` on live `ctx`, or null if unset.
  bool FindValueFast(ContextHandle ctx, uint64_t key,
                     const AnyValue** value) const {
    const ContextRecord* r = FindLiveRecordFast(ctx);
    if (ABSL_PREDICT_FALSE(r == nullptr)) return false;
    *value = r->values == nullptr ? nullptr : r->values->Get(key);
    return true;
  }
  // Pushes a value stored inline; `*serial`: the Set's serial.
  template <typename T, typename U>
  bool SetValueFast(ContextHandle ctx, uint64_t key, U&& value,
                    uint64_t* serial) {
    ValueTable* table = OwnTableFast(ctx);
    if (ABSL_PREDICT_FALSE(table == nullptr)) return false;
    *serial = next_value_serial_++;
    table->PushInline<T>(key, *serial, std::forward<U>(value));
    return true;
  }
  // The in-order Reset of the Set `serial` (a closing context's resets
  // take the out-of-line path).
  bool ResetValueFast(ContextHandle ctx, uint64_t key, uint64_t serial) {
    ValueTable* table = OwnTableFast(ctx);
    return table != nullptr && table->PopTopFast(key, serial);
  }

  // --- Destroy hooks (owner thread) ----------------------------------------
  absl::StatusOr<DestroyHookId> AddDestroyHook(ContextHandle ctx, Task hook);
  absl::Status RemoveDestroyHook(ContextHandle ctx, DestroyHookId id);
  // Sets the generation of the free context slot `index` (its next context
  // gets `generation + 1`). For tests of [S16].
  void SetFreeContextGenerationForTesting(uint32_t index, uint32_t generation);
  // Hooks not yet run on `ctx` (0 for a stale context). For tests.
  size_t DestroyHookCountForTesting(ContextHandle ctx) const;
  // The timer structures' lengths (entries held, dead ones included), for
  // tests of their bounds (see "Delayed tasks" below).
  struct TimerSizes {
    size_t slab_nodes;    // Nodes made (free ones included).
    size_t live_timers;   // Pending timers.
    size_t heap_entries;  // Live and stale.
    size_t due_entries;   // Before the head, unrun and stale.
  };
  TimerSizes TimerSizesForTesting() const {
    return {timer_nodes_, live_timers_, timer_heap_.size(), due_list_.size()};
  }

  // --- Fd watches -----------------------------------------------------------
  absl::StatusOr<FdWatch> WatchFd(ContextHandle ctx, int fd, FdEvents events,
                                  FdCallback callback, FdWatchOptions options);
  void StopWatch(uint64_t id);          // Any thread holding a pin/owner.
  bool WatchActive(uint64_t id) const;  // Owner thread.

  // --- Running --------------------------------------------------------------
  absl::Status Run(bool until_idle);
  void Stop();
  // --- Embedding (loop_embed.cc) --------------------------------------------
  absl::StatusOr<int> BackendFd();
  absl::Duration BackendTimeout() const;
  absl::Status RunReady();
  bool owns_base() const { return owns_base_; }
  // Driven mode: writes the wake-up eventfd so the backend fd shows work
  // scheduled outside RunReady (not counted in wake_writes).
  static void Kick(int fd);
  absl::StatusOr<ShutdownReport> Shutdown();
  void BecomeOwner();  // The destructor's thread takes over (see loop.h).
  LoopStats stats() const;
  // --- Room for cross-thread posts -----------------------------------------
  // Pinned foreign thread: whether a bounded post would be accepted now, and
  // the signal to wait on (copied while pinned).
  bool HasRoom() const { return ingress_.pending() < ingress_.limit(); }
  const std::shared_ptr<RoomSignal>& room_signal() const { return room_; }

 private:
  // 48 bytes. The loop's own bookkeeping (destroy marker, a cancelled task
  // handed back for destruction, a foreign FdWatch::Stop) is queued on
  // `InternalHandle()` (context generation 0, never a user context's) and
  // not counted in `LoopStats::tasks_run` or the shutdown report.
  struct QueuedTask {
    QueuedTask() = default;
    QueuedTask(ContextHandle c, Task&& t) : ctx(c), task(std::move(t)) {}
    ContextHandle ctx;
    Task task;
    bool internal() const;
  };
  // The foreign tasks of one take of the ingress, queued as one ready-queue
  // entry (so they keep their place among same-thread posts without being
  // moved one by one): the FIFO list of their nodes, run from `head` on by
  // RunBatch. Its context is `ForeignSegmentHandle()`. Destroying it destroys
  // the tasks not run (unrun, on the loop thread) and frees their nodes.
  struct ForeignSegment {
    explicit ForeignSegment(IngressNode* h) : head(h) {}
    ForeignSegment(ForeignSegment&& o) noexcept
        : head(std::exchange(o.head, nullptr)) {}
    ForeignSegment& operator=(ForeignSegment&&) = delete;
    ~ForeignSegment();
    IngressNode* head;
    bool done() const { return head == nullptr; }
    void operator()(ContextHandle) && {}  // Never called: RunBatch runs it.
  };
  struct ContextRecord {
    // Owner thread only, like the rest (foreign threads read
    // `ForeignAcceptTable`).
    uint32_t generation = 0;
    bool live = false;
    bool closing = false;
    // Owner thread only.
    std::string name;
    std::shared_ptr<ValueTable> values;  // Null: no values.
    bool values_inherited = false;       // Shared snapshot of a parent's.
    // `values.get()` while Sets may write that table in place (its own, not
    // inherited, not shared with a child, the context not closing); else
    // null. Cleared where one of those stops holding (a child shares the
    // table, DestroyContext, FreeContext, Shutdown); set again by the
    // out-of-line SetValue/ResetValue once they made the table writable.
    ValueTable* own_values = nullptr;
    // Destroy hooks not yet run, by id (ids grow: map order is add order).
    // A node is freed when its hook runs or is removed.
    std::map<uint64_t, Task> hooks;
    // Its hooks ran (shutdown, or being freed): AddDestroyHook is refused.
    bool hooks_ran = false;
  };
  // One delayed task, in the timer slab (see "Delayed tasks" below).
  struct TimerNode {
    uint64_t id = 0;  // The task's id; 0 while the node is free.
    // The cancel claim of a task posted on the loop thread: its id while it
    // may still run or be cancelled, 0 once the loop or a Cancel (on any
    // thread) took it. The one field foreign threads touch (pinned).
    std::atomic<uint64_t> claim{0};
    ContextHandle ctx;
    Task task;
    // A task posted from another thread: its ingress node, which holds its
    // claim (see IngressNode); null otherwise.
    IngressNode* foreign = nullptr;
    uint32_t next_free = 0;  // Free list link (while free).
    bool in_heap = false;    // Its entry is in `timer_heap_` (else due list).
  };
  // A heap (or due list) entry: the order key and the node. Equal deadlines
  // order by id, i.e. post order.
  struct TimerEntry {
    TimerEntry() = default;
    // Lets `emplace_back` write the fields in place: a braced temporary was
    // built on the stack with two 8-byte stores and copied with one 16-byte
    // load, a store-forwarding stall on every timer insert.
    TimerEntry(int64_t d, uint64_t i, uint32_t n)
        : deadline_ns(d), id(i), node(n) {}
    int64_t deadline_ns;
    uint64_t id;
    uint32_t node;
    bool operator<(const TimerEntry& o) const {
      return deadline_ns != o.deadline_ns ? deadline_ns < o.deadline_ns
                                          : id < o.id;
    }
  };
  static constexpr uint32_t kNoNode = ~uint32_t{0};
  static constexpr uint32_t kTimerChunkBits = 8;   // Chunk k: 256 << k nodes.
  static constexpr uint32_t kMaxTimerChunks = 24;  // 2^32 nodes in all.
  static void LocateTimerNode(uint32_t index, uint32_t* chunk,
                              uint32_t* offset) {
    const uint64_t i = uint64_t{index} + (uint64_t{1} << kTimerChunkBits);
    const uint32_t top = 63 - static_cast<uint32_t>(__builtin_clzll(i));
    *chunk = top - kTimerChunkBits;
    *offset = static_cast<uint32_t>(i - (uint64_t{1} << top));
  }
  struct WatchRecord;

  enum class Phase { kOpen, kDraining, kClosed };

  LoopCore(Loop::Options options, event_base* base, bool owns_base);
  absl::Status Init();
  // The checks shared by Run, RunUntilIdle and RunReady.
  absl::Status CheckCanRun() const;
  // True while one of this loop's own callbacks (a batch, a timer run, an fd
  // callback) is on the stack: on an adopted base the host's dispatch may be
  // running it with `running_` false [S19].
  bool InOwnCallback() const;
  // The libevent pass is ctxloop's own (Run, RunUntilIdle, RunReady): only
  // then may it break the base's loop [S20].
  void BreakOwnPass() const;
  // After a pass (Run, RunUntilIdle, RunReady): a driven loop's loop-thread
  // work scheduled outside a pass kicks the eventfd again (loop_embed.cc).
  void RestoreKick();
  // Finds libevent's epoll fd (see BackendFd); -1 if not found.
  int FindLibeventEpollFd();

  // `FindRecord` for a handle known to name this loop, inline for the
  // value fast paths: null unless `ctx` names a live context.
  ContextRecord* FindLiveRecordFast(ContextHandle ctx) const {
    const uint32_t index = HandleAccess::ContextIndex(ctx);
    if (ABSL_PREDICT_FALSE(index >= contexts_.size())) return nullptr;
    ContextRecord* r = contexts_[index].get();
    if (ABSL_PREDICT_FALSE(!r->live ||
                           r->generation !=
                               HandleAccess::ContextGeneration(ctx))) {
      return nullptr;
    }
    return r;
  }
  // The table `ctx`'s Sets may write in place: live, not closing, its own
  // and unshared; else null.
  ValueTable* OwnTableFast(ContextHandle ctx) const {
    const ContextRecord* r = FindLiveRecordFast(ctx);
    return ABSL_PREDICT_FALSE(r == nullptr) ? nullptr : r->own_values;
  }

  ContextHandle MakeHandle(uint32_t index) const;
  ContextHandle InternalHandle() const;
  ContextHandle ForeignSegmentHandle() const;
  // Inline: RunBatch (loop_ready_queue.cc) asks it for every task.
  static bool IsForeignSegment(ContextHandle ctx) {
    // No context ever gets this index (a loop would need 2^32 - 1 of them).
    return HandleAccess::ContextIndex(ctx) ==
           std::numeric_limits<uint32_t>::max();
  }
  // Null unless `ctx` names a live context of this loop.
  ContextRecord* FindRecord(ContextHandle ctx);
  const ContextRecord* FindRecord(ContextHandle ctx) const;
  bool AcceptsPosts(ContextHandle ctx) const;  // Owner thread.
  ABSL_ATTRIBUTE_NOINLINE absl::Status RejectPost(ContextHandle ctx) const;
  // The error of a foreign post the accept table refused (any thread).
  ABSL_ATTRIBUTE_NOINLINE static absl::Status RejectForeignPost(
      ContextHandle ctx);

  void ScheduleBatch();
  // Pinned foreign thread: pushes `node` and writes the eventfd if the loop
  // was armed (may be idle), before the caller unpins [S11]. False if the
  // ingress is closed: then the node (and its task) is the caller's again.
  bool PushForeign(IngressNode* node);
  friend class ForeignPostSlot;  // Uses PushUserNode.
  // Pinned foreign thread: a user post's node (a task or a delayed task for
  // `ctx`): pushed, or refused (the node and its task still the caller's).
  // `bounded`: counted against `Options::max_pending_foreign` (false for
  // `PostNeverFull`).
  enum class PushOutcome { kPushed, kContextClosed, kFull };
  PushOutcome PushUserNode(IngressNode* node, ContextHandle ctx,
                           bool bounded = true);
  // Loop thread: `n` counted posts left the pending count; wakes room
  // waiters at the low-water mark.
  void ReleasePending(int64_t n) {
    // ingress.pml: L-B6 (release), L-B7 (load waiters), L-B8 (WakeAll)
    if (n == 0) return;
    if (ABSL_PREDICT_FALSE(ingress_.Release(n) <= low_water_ &&
                           room_->waiters.load(std::memory_order_seq_cst) >
                               0)) {
      room_->WakeAll();
    }
  }
  // Loop thread: takes the ingress unless RunUntilIdle holds cross-thread
  // posts back (at a batch end, on a wake-up).
  bool TakeIngressUnlessHeld() {
    if (ABSL_PREDICT_FALSE(hold_foreign_) &&
        nodes_taken_ - until_idle_taken_ >=
            static_cast<uint64_t>(ingress_.limit())) {
      return false;
    }
    return TakeIngress();
  }
  // The error of a refused user post (any thread, no pin needed).
  static absl::Status RefusalStatus(PushOutcome outcome, ContextHandle ctx);
  void WriteWakeFd();
  // Takes the ingress: queues its tasks as one ForeignSegment entry and acts
  // on its commands (stop, re-arm); true if tasks were queued. When it
  // returns false the ingress is armed (the next push wakes the loop).
  bool TakeIngress();
  // Acts on the list `newest_first` as `ForeignIngress::Take` returns it
  // (reversing it to FIFO as it goes); true if it queued tasks.
  bool QueueIngress(IngressNode* newest_first);
  // Owner thread: keeps `n` (its task gone) for the pool, in the pool's
  // batches already; FlushFreeNodes returns what was kept under the pool's
  // mutex once, one step per batch.
  void KeepFreeNode(IngressNode* n) { free_nodes_.Add(n); }
  void FlushFreeNodes() { free_nodes_.Flush(); }
  void RunBatch();
  void RunOne(QueuedTask& entry);
  void RunNode(IngressNode* node);  // Runs (or destroys) a foreign node.
  void RunEntry(TaskEntry& entry);  // Runs (and destroys) a ready entry.
  // From a catch block: reports the exception a task of `ctx` threw.
  ABSL_ATTRIBUTE_NOINLINE void ReportTaskException(ContextHandle ctx);
  // Runs the foreign tasks of a segment entry (see ForeignSegment) until
  // done or Stop(); true if Stop() was asked (then some may be left).
  bool RunForeignSegment(TaskEntry& entry);
  // Inline: checked after every task (a relaxed load while no stop is
  // requested).
  bool StopRequestedInBatch() const {
    return ABSL_PREDICT_FALSE(
               stop_requested_.load(std::memory_order_relaxed)) &&
           StopInBatchSlow();
  }
  ABSL_ATTRIBUTE_NOINLINE bool StopInBatchSlow() const;
  void Report(ContextHandle ctx, const absl::Status& error);
  // Adds a timer due at `deadline` (a zero `delay_ns` goes to the due
  // list); returns its node; `*earliest` tells whether the loop must re-arm.
  uint32_t InsertTimer(ContextHandle ctx, int64_t delay_ns, int64_t deadline,
                       Task&& task, bool* earliest);
  // The loop's time for deadlines of owner-thread posts: read once per
  // libevent callback (lazily, at the first delayed post), so never earlier
  // than the start of the current loop iteration; outside Run() a fresh
  // reading.
  int64_t LoopNowNs();
  // Frees the node of a pending task into `*victim` (its heap or due-list
  // entry goes stale). The caller won the task's claim.
  void TakeTimerNode(uint32_t index, Task* victim);
  // A foreign Cancel won the claim of the task in slab node `index` with id
  // `id` (or of the foreign task `target`): destroys the task if the loop
  // has not already (loop thread, from the ingress).
  void OnForeignCancel(IngressNode* cmd, std::vector<Task>* doomed);
  // A foreign PostDelayed's node, from the ingress: inserts its task, or
  // destroys it if it was cancelled meanwhile. True if the loop must re-arm.
  bool OnForeignDelayed(IngressNode* node, std::vector<Task>* doomed);
  // Claims the task of node `index` for the loop (to run or drop it); false
  // if a foreign Cancel won it first.
  bool ClaimTimer(uint32_t index);
  // After ClaimTimer(index) returned `won`, before node `index` is freed:
  // the ingress node of a foreign task goes back to the pool if the loop
  // won (no kCancel will name it); if a foreign Cancel won, its kCancel
  // node (still to come) returns it, finding no timer.
  void ReleaseForeign(uint32_t index, bool won);
  // Pinned foreign thread: the node `index` if the slab has it (chunks never
  // move), else null.
  TimerNode* FindNodeForeign(uint32_t index) const {
    uint32_t chunk, offset;
    LocateTimerNode(index, &chunk, &offset);
    if (chunk >= kMaxTimerChunks) return nullptr;
    TimerNode* c = timer_chunks_[chunk].load(std::memory_order_acquire);
    return c == nullptr ? nullptr : &c[offset];
  }
  TimerNode& Node(uint32_t index) {
    uint32_t chunk, offset;
    LocateTimerNode(index, &chunk, &offset);
    return timer_chunks_[chunk].load(std::memory_order_relaxed)[offset];
  }
  uint32_t AllocNode() {
    if (free_timer_node_ == kNoNode) return NewTimerNode();
    const uint32_t index = free_timer_node_;
    free_timer_node_ = Node(index).next_free;
    return index;
  }
  // A node never used yet (the slab grows by a chunk when full).
  uint32_t NewTimerNode();
  void FreeNode(uint32_t index);
  // True if the entry's task was cancelled (or dropped): its node's id moved.
  // From the dense id array, not the node: compacting the heap checks every
  // entry, and the slab's nodes (task and all) would miss the cache.
  bool Stale(const TimerEntry& e) const { return timer_ids_[e.node] != e.id; }
  // Returns the position where `e` landed.
  size_t HeapSiftUp(size_t pos, TimerEntry e);
  void HeapSiftDown(size_t pos, TimerEntry e);
  // The smallest of the (up to four) children of `pos` in a heap of `n`
  // entries; `n` if it has none. Inline in loop_timers.cc's sift loops.
  size_t SmallestChild(size_t pos, size_t n) const;
  void HeapPop();
  // Drops stale entries from the top of the heap and the head of the due
  // list, so both start with a live task (or are empty), and compacts the
  // due list (see its bound below). Called by ArmTimer, so also from inside
  // a timer run (which re-reads the due list after each task).
  void TrimTimers();
  // Rebuilds the heap without its stale entries once they outnumber the live
  // ones (O(n), so O(1) amortized per cancel).
  void MaybeCompactHeap();
  // Drops the due list's stale entries (and those before its head) once the
  // cancels counted in `stale_due_entries_` reach half its unrun entries
  // (O(n), so O(1) amortized per cancel).
  void MaybeCompactDueList();
  // Compactions of the due list wait for at least this many dead entries.
  static constexpr size_t kMinDueCompaction = 64;
  void ArmTimer();
  void RunDueTimers();
  void CancelTimersOf(ContextHandle ctx);
  void FreeContext(uint32_t index);
  // Runs (and frees) the hooks of context `index`, in add order, including
  // hooks a hook removes or (for another context) adds meanwhile.
  void RunDestroyHooks(uint32_t index);
  // Shutdown: runs tasks until none are ready, within the shared round budget
  // `shutdown_rounds_`; past it, closes the loop and drops the rest [S3].
  void Drain();
  // Closes the loop to every post and destroys (counting) what is queued.
  void CloseAndDrop();
  void DispatchFd(WatchRecord* record, short what);
  void RemoveWatch(uint64_t id);

  static void OnBatch(int fd, short what, void* arg);
  static void OnWake(int fd, short what, void* arg);
  // Loop thread, its ingress found empty and the node pool over its bound:
  // sets a one-shot libevent timer (kPoolTrimIntervalNs) that trims the pool
  // if no thread drew from it meanwhile, else sets itself again.
  void MaybeTrimPool();
  static void OnTrimTimer(int fd, short what, void* arg);
  static void OnTimer(int fd, short what, void* arg);
  static void OnTimerFd(int fd, short what, void* arg);
  static void OnFd(int fd, short what, void* arg);

  Loop::Options options_;
  event_base* base_;
  // False for an adopted base (Options::host_base): never freed here [S17].
  const bool owns_base_;
  // Driven mode: the epoll fd BackendFd returns (-1 until its first call);
  // written once on the owner thread, read by any thread.
  std::atomic<int> backend_fd_{-1};
  // The node pool's idle trim timer (see MaybeTrimPool); made on first use,
  // freed by the destructor, so nothing of this loop stays on an adopted
  // base [S17].
  event* trim_event_ = nullptr;
  // BackendTimeout's reference for "now" on the base's own clock (a timer
  // added with a zero timeout and removed at once); made on first use.
  mutable event* now_probe_ = nullptr;
  uint32_t slot_index_ = 0;
  uint32_t generation_ = 0;
  int wake_fd_ = -1;
  event* batch_event_ = nullptr;
  event* wake_event_ = nullptr;
  event* timer_event_ = nullptr;
  // Timers with a delay: a timerfd on CLOCK_MONOTONIC with an absolute
  // deadline, programmed only when the earliest deadline moves earlier (see
  // ArmTimer). libevent's own precise-timer mode would instead reprogram its
  // timerfd with one syscall on every loop iteration, timers or not.
  int timer_fd_ = -1;
  event* timer_fd_event_ = nullptr;
  int64_t timer_fd_deadline_ns_ = -1;  // Owner thread; -1: not armed.

  // Owner thread.
  // Written on the owner thread; read by foreign posters building errors.
  std::atomic<Phase> phase_{Phase::kOpen};
  bool running_ = false;
  uint64_t callbacks_dispatched_ = 0;  // For RunUntilIdle.
  // The ready queue, which contexts accept same-thread posts (kept in step
  // with the records' `live`/`closing` and with `phase_`), and the batch
  // flags.
  LocalPoster local_{this};
  std::vector<uint32_t> free_contexts_;
  uint64_t next_value_serial_ = 1;
  uint64_t next_hook_id_ = 1;
  bool hooks_closed_ = false;  // Shutdown passed its hook phase [S10].
  int shutdown_rounds_ = 0;    // Drain rounds used by Shutdown() so far.
  uint64_t tasks_run_total_ = 0;
  ShutdownReport report_;
  std::atomic<bool> stop_requested_{false};
  std::atomic<uint64_t> wake_writes_{0};  // Eventfd writes by foreign posts.
  // Cross-thread posts refused by the bound (any thread, relaxed).
  std::atomic<uint64_t> refused_full_{0};
  int64_t low_water_ = 0;  // Half the bound: room waiters wake below it.
  std::shared_ptr<RoomSignal> room_ = std::make_shared<RoomSignal>();
  // Owner thread: RunUntilIdle is running; once it has taken one bound's
  // worth of cross-thread nodes since its start (`until_idle_taken_` is
  // `nodes_taken_` then), it takes no more.
  bool hold_foreign_ = false;
  uint64_t nodes_taken_ = 0;  // Nodes taken off the ingress so far.
  // The node pool's idle trim (see MaybeTrimPool).
  uint64_t trim_draws_ = 0;  // IngressPoolDraws() when the timer was set.
  bool trim_scheduled_ = false;
  uint64_t until_idle_taken_ = 0;

  // Everything from other threads (foreign_ingress.h), and which contexts
  // foreign posts may target (written by the owner, read by pinned posters).
  ForeignIngress ingress_;
  ForeignAcceptTable accept_;
  // Owner thread: nodes run and not yet returned to the pool.
  IngressBatchBuilder free_nodes_;
  // Records never move (handles of the value fast paths point into them).
  std::vector<std::unique_ptr<ContextRecord>> contexts_;

  // Delayed tasks. A 4-ary min-heap of entries (deadline, id, node) over a
  // slab of nodes that never move (chunks of 256, recycled through a free
  // list: no allocation per timer once the slab has grown). The handle names
  // the node and the task's id: a cancel is O(1) without a search. It frees
  // the node (taking its task), which leaves the heap entry stale (its id no
  // longer matches the node's); stale entries are skipped when they reach the
  // top and dropped in bulk once they outnumber the live ones.
  // Zero-delay tasks skip the heap: they go to the due list, a FIFO that the
  // next timer run drains (merged with the due heap entries by deadline and
  // id), with stale entries skipped the same way. All of it is owner-only,
  // with no lock: a foreign `PostDelayed` is a node on the ingress (the
  // loop inserts it when it takes the ingress), a foreign `Cancel` wins the
  // task's claim with one compare-and-swap and pushes a node asking the loop
  // to destroy the task. The loop claims a task the same way before it runs
  // or drops it, so exactly one side gets it: a Cancel that returns true on
  // any thread means the task never runs.
  // Bounds (P: timers pending at once, at their peak; nothing caps P, see
  // loop.h's PostDelayed; all of it is freed only with the loop):
  //   * slab: one node (80 bytes with its task's inline storage) per timer
  //     pending at once: `timer_nodes_` is P's peak, the chunks hold fewer
  //     than 2 * peak + 256 nodes; plus `timer_ids_`, 8 bytes per node.
  //   * heap: the pending timers with a delay plus stale entries, which
  //     MaybeCompactHeap keeps below max(64, the live ones): at most
  //     2 * P + 63 entries of 24 bytes.
  //   * due list: the unrun entries, with stale ones kept below max(64, half
  //     of them) by MaybeCompactDueList, plus the run entries before the head,
  //     dropped by TrimTimers once they number 64 and as many as the unrun
  //     ones: after each timer run at most 4 * Z + 192 entries of 24 bytes (Z:
  //     zero-delay timers pending); a run adds the ones its tasks post.
  //   * the vectors keep their capacity (their peak length): no allocation
  //     in steady state.
  // Chunks double in size and never move (foreign cancellers read claims).
  std::atomic<TimerNode*> timer_chunks_[kMaxTimerChunks] = {};
  uint32_t timer_nodes_ = 0;  // Nodes made.
  // By node: its `id` (0 while free), kept in step by InsertTimer and
  // FreeNode; 8 bytes per node, so stale checks stay in cache.
  std::vector<uint64_t> timer_ids_;
  uint32_t free_timer_node_ = kNoNode;
  std::vector<TimerEntry> timer_heap_;
  // Sorted by (deadline, id) and so by id alone: InsertTimer appends with a
  // fresh id. A timer run takes the entries present at its start by id (see
  // RunDueTimers), so trims, clears and compactions by the tasks it runs
  // never invalidate it.
  std::vector<TimerEntry> due_list_;
  size_t due_head_ = 0;  // First unrun entry.
  size_t live_timers_ = 0;
  size_t stale_heap_entries_ = 0;
  // Due-list entries cancelled since its last compaction or clear (some may
  // have been passed by the head since: an upper bound of the stale ones).
  size_t stale_due_entries_ = 0;
  uint64_t next_timer_id_ = 1;
  // The latest clock reading (never decreases); zero-delay tasks take it as
  // their deadline when no heap entry could be due before them.
  int64_t timer_now_ns_ = 0;
  // The loop's time in the current libevent callback (see LoopNowNs); -1
  // until the callback's first delayed post reads the clock.
  int64_t cached_now_ns_ = -1;
  int64_t armed_deadline_ns_ = -1;  // Owner thread; -1: not armed.
  bool running_timers_ = false;     // Owner thread; RunDueTimers is running.

  // Fd watches (owner thread).
  absl::flat_hash_map<uint64_t, std::unique_ptr<WatchRecord>> watches_;
  absl::flat_hash_map<int, uint64_t> watch_by_fd_;
  uint64_t next_watch_id_ = 1;
};

// One fd watch (owner thread; see loop_fd_watches.cc).
struct LoopCore::WatchRecord {
  LoopCore* core;
  uint64_t id;
  event* ev = nullptr;
  ContextHandle ctx;
  int fd;
  FdCallback callback;
  bool close_on_stop;
  bool dispatching = false;
  bool removed = false;
  std::shared_ptr<WatchControl> control;  // Shared with the FdWatch.
};

// Monotonic clock shared by timers and tests, in nanoseconds.
int64_t MonotonicNowNs();

}  // namespace loop_internal
}  // namespace ctxloop

#endif  // CTXLOOP_LOOP_INTERNAL_LOOP_CORE_H_
