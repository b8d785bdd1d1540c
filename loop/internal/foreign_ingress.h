// Copyright 2026 The ctxloop Authors.
//
// Internal. The loop's one way in from other threads: `ForeignIngress`, an
// intrusive multi-producer, single-consumer lock-free list of `IngressNode`s
// (a foreign post, a delayed post, a cancel, a stop, an fd-watch
// unregistration), the recycled node pool behind it,
// and `ForeignAcceptTable`, which contexts a foreign post may target.
//
// The lock-free rule, in one place:
//  * Producers (any thread) only ever push: one compare-and-swap of `head_`
//    that links the node in front of what is there (a Treiber push). They
//    never read a node other than their own, so there is no ABA.
//  * The consumer (the loop thread) takes the whole list with one exchange
//    and reverses it to FIFO (in the same pass that sorts its nodes); it
//    never pops single nodes.
//  * `head_` holds a node pointer or one of three tags: kEmpty (the consumer
//    is busy and will look again at the end of its current batch), kArmed
//    (the consumer found the list empty and may sleep in epoll), kClosed
//    (shutdown; every push is refused). Only the push that replaces kArmed
//    gets `kQueuedWake` and writes the loop's eventfd: one syscall per idle
//    period, none while the loop is busy (folly's notification queue).
//  * A bounded user post reserves first: one relaxed compare-and-swap of
//    `pending_` to one more (same cache line as `head_`), refused without
//    touching it if the loop already holds its bound; the loop releases (a
//    sequentially consistent fetch_sub) once per 64 posts run, at a segment's
//    end, and for delayed posts when it takes them (they become timers). Stop,
//    cancel and internal nodes do not reserve, so they are never refused for
//    fullness.
//  * The consumer arms only by a compare-and-swap from kEmpty, so it can
//    never arm over a node, and every batch end takes or arms: a push into
//    an unarmed list is always seen by a take that is still to come.
//  * A producer touches the loop's memory (this list, the eventfd, the
//    accept table) only while it holds a registry pin (loop_registry.h):
//    shutdown closes the slot and waits for pins before it closes this list
//    and frees anything, so a poster never touches freed memory, and a slot
//    reused by a later loop cannot take a push meant for an earlier one (the
//    pin compares the full 32-bit generation in the same compare-and-swap
//    that takes it).
//
// Cost: a push is one node from a per-thread cache (refilled from the global
// pool a batch at a time, under the pool's mutex; new nodes, one slab of 64
// adjacent nodes, when the pool is empty, so no allocation per post once the
// pool holds the most nodes in flight), the task moved into it, and one
// compare-and-swap. A
// take is one exchange plus one pass over the list; the consumer returns the
// nodes of a finished segment to the pool under its mutex, once per segment.
//
// Memory bounds of the node pool (a node is `sizeof(IngressNode)`, 128
// bytes):
//  * Each thread's cache holds at most `kThreadCacheMaxNodes` (256 nodes,
//    32 KiB): refills take `kIngressNodeBatch` (64) nodes, and a cache past
//    its bound spills a batch back. A thread's cache goes back to the pool
//    when the thread exits; a post from a `thread_local` destructor after
//    that takes and returns single nodes from the pool.
//  * The global pool keeps what consumers return while loops are busy (so a
//    steady flow allocates nothing); when a loop finds its ingress empty
//    (arms it: the burst has drained) it trims the pool to
//    `kPoolMaxFreeNodes` (16,384 nodes, 2 MiB) free nodes and deletes the
//    rest, once the pool has been quiet (no thread drew a batch) for
//    `kPoolTrimIntervalNs` (1 s): a one-shot timer of that loop checks, and
//    checks again a second later while draws go on, so memory returns about
//    a second after the last burst even if the loop then sleeps. Nodes are
//    allocated and deleted in slabs of `kIngressSlabNodes` (64 nodes, 8 KiB,
//    adjacent in memory: what producers fill and the loop runs one after the
//    other shares pages and cache-line pairs), and the trim deletes a slab
//    only when all its nodes are free in the pool: a node in use (in flight,
//    in a thread cache, kept forever) keeps the other 63 of its slab, so
//    after a trim the pool holds at most `kPoolMaxFreeNodes` free nodes plus
//    63 per node in use. Nodes that
//    ever carried a foreign delayed task are never deleted (a
//    `DelayedTaskHandle` names its node and may compare its claim at any later
//    time): they are kept in the pool beyond that bound and reused, so they
//    number at most the most foreign delayed tasks ever pending at once.
//  * Nodes in flight (in an ingress or a taken segment) are bounded per
//    loop by `Loop::Options::max_pending_foreign` (see loop.h).
//
// Thread-safety: `Push` and `ForeignAcceptTable::Accepts` on any thread
// holding a pin of the loop; everything else on the loop thread. The node
// pool functions on any thread (the pool's own state is under its mutex; a
// thread's cache is its own).

#ifndef CTXLOOP_LOOP_INTERNAL_FOREIGN_INGRESS_H_
#define CTXLOOP_LOOP_INTERNAL_FOREIGN_INGRESS_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/base/optimization.h"
#include "ctxloop/loop/context_handle.h"
#include "ctxloop/loop/internal/handle_access.h"
#include "ctxloop/loop/task.h"

namespace ctxloop {
namespace loop_internal {

// One command from another thread. Nodes come from a process-wide pool and
// are recycled; the pool deletes free nodes past its bound (see above).
struct alignas(64) IngressNode {
  enum class Kind : uint8_t {
    kTask,     // Run `task` on `ctx` (an internal task: context generation 0).
    kDestroy,  // Destroy `task` unrun, on the loop thread, in queue order.
    kStop,     // A foreign Loop::Stop(): look at the stop flag now.
    kDelayed,  // A foreign PostDelayed: `task` on `ctx` at `deadline_ns`.
    kCancel,   // A foreign Cancel won a claim: destroy that task (below).
  };
  // The claim values of a kDelayed node besides its id (ids start at 2).
  static constexpr uint64_t kCancelledByForeign = 0;
  static constexpr uint64_t kTakenByLoop = 1;

  // The fields a post writes and the loop reads come first and fill one
  // cache line (checked below); the rest is for delayed posts and cancels.
  IngressNode* next = nullptr;
  Kind kind = Kind::kTask;
  // Once it carried a foreign delayed task: never deleted (see above). Set
  // by the poster before the push (never cleared once the node was pushed
  // with it), so freeing a node never looks at its kind.
  bool kept_forever = false;
  // Counted in its loop's pending foreign work (a user post that took a
  // reservation); the loop releases it when the node leaves the ingress's
  // accounting (a task run or dropped, a delayed task made a timer).
  bool counted = false;
  // Its place in the slab of nodes allocated with it (set once, at
  // allocation; see kIngressSlabNodes).
  uint8_t slab_index = 0;
  // kDelayed, loop thread only: the slab node of its timer once inserted,
  // else ~0.
  uint32_t timer_index = ~uint32_t{0};
  ContextHandle ctx;
  Task task;
  // kDelayed: its cancel claim. `timer_id` (never reused: see
  // NewForeignTimerId) while the task may still run or be cancelled; then
  // kTakenByLoop (ran, dropped, or cancelled on the loop thread) or
  // kCancelledByForeign (a foreign Cancel won; its kCancel node follows).
  // The handle names this node and `timer_id`, and such a node is never
  // deleted (`kept_forever`), so a stale handle's compare-and-swap just
  // fails.
  std::atomic<uint64_t> claim{0};
  uint64_t timer_id = 0;
  int64_t deadline_ns = 0;
  // kCancel: the foreign task whose claim was won (`target`), or else the
  // slab node and id of a task posted on the loop thread.
  IngressNode* target = nullptr;
  uint32_t cancel_node = 0;
  uint64_t cancel_id = 0;
  // Free, in the global pool: the first node of a batch (a chain of at most
  // kIngressNodeBatch nodes linked by `next`) links the next batch and
  // counts its own nodes (and those kept forever), so the pool's mutex is
  // held for O(1) per batch.
  IngressNode* batch_next = nullptr;
  uint32_t batch_size = 0;
  uint32_t batch_kept = 0;
};

static_assert(sizeof(IngressNode*) + 2 * sizeof(uint32_t) +
                      sizeof(ContextHandle) + sizeof(Task) <=
                  64,
              "a post's fields (next, kind, timer_index, ctx, task) fit the "
              "node's first cache line");

// A process-wide timer id for a foreign PostDelayed: never 0 or 1, never
// reused.
uint64_t NewForeignTimerId();

// The pool's bounds (see the top of this file).
inline constexpr size_t kIngressNodeBatch = 64;
inline constexpr size_t kThreadCacheMaxNodes = 256;
inline constexpr size_t kPoolMaxFreeNodes = 16384;
// Nodes are allocated in slabs of this many (8 KiB), adjacent in memory, and
// deleted a whole slab at a time.
inline constexpr size_t kIngressSlabNodes = 64;

// A thread's private stack of free nodes (at most kThreadCacheMaxNodes).
// Constant-initialized and trivially destructible, so it stays usable for
// the whole life of the thread, even from `thread_local` destructors that
// run after the one that returns it to the pool at thread exit.
struct IngressNodeCache {
  IngressNode* head = nullptr;
  size_t count = 0;
  // Set once the nodes went back to the pool at thread exit: from then on
  // this thread's nodes come from and go to the pool.
  bool torn_down = false;
};
inline IngressNodeCache& ThisThreadIngressNodeCache() {
  static thread_local IngressNodeCache cache;  // Constant-initialized.
  return cache;
}
// The cache is empty: refills it (a batch from the pool, or new nodes) and
// returns one node.
IngressNode* RefillIngressNodeCacheAndPop(IngressNodeCache& cache);

// A node for a push: from this thread's cache, refilled from the pool. Inline:
// a pop and three stores while the cache holds nodes.
inline IngressNode* AllocIngressNode() {
  IngressNodeCache& cache = ThisThreadIngressNodeCache();
  IngressNode* n = cache.head;
  if (ABSL_PREDICT_FALSE(n == nullptr)) {
    n = RefillIngressNodeCacheAndPop(cache);
  } else {
    cache.head = n->next;
    --cache.count;
  }
  n->next = nullptr;
  n->kind = IngressNode::Kind::kTask;
  n->counted = false;
  n->timer_index = ~uint32_t{0};
  return n;
}
// Returns one node (its task empty) to this thread's cache: a producer's
// node that was never pushed.
void ReturnIngressNode(IngressNode* node);
// Returns the chain `first`..`last` (linked by `next`, tasks already
// destroyed) to the pool: one pass to split it into batches, then the pool's
// mutex once.
void FreeIngressNodes(IngressNode* first, IngressNode* last);
// Returns ready-made batches to the pool (each the first node of a chain of
// at most kIngressNodeBatch nodes with `batch_size` and `batch_kept` set,
// batches linked by `batch_next`): one step per batch, then the pool's mutex
// once. See `IngressBatchBuilder`.
void FreeIngressBatches(IngressNode* batches);

// Loop thread: collects freed nodes into pool batches as they are freed, so
// returning them to the pool walks batches, not nodes. A node that carried a
// foreign delayed task has `kept_forever` set already (when it was posted).
class IngressBatchBuilder {
 public:
  void Add(IngressNode* n) {
    IngressNode* b = current_;
    if (b == nullptr || b->batch_size == kIngressNodeBatch) {
      n->next = nullptr;
      n->batch_next = b;
      n->batch_size = 1;
      n->batch_kept = n->kept_forever;
      current_ = n;
      return;
    }
    n->next = b->next;
    b->next = n;
    ++b->batch_size;
    b->batch_kept += n->kept_forever;
  }
  // Adds a ready-made batch `b` (`next` chain of at most kIngressNodeBatch
  // nodes, `batch_size` and `batch_kept` set), behind the one `Add` fills.
  void AddBatch(IngressNode* b) {
    if (current_ == nullptr) {
      b->batch_next = nullptr;
      current_ = b;
      return;
    }
    b->batch_next = current_->batch_next;
    current_->batch_next = b;
  }
  // Returns everything added to the pool.
  void Flush() {
    if (current_ == nullptr) return;
    FreeIngressBatches(current_);
    current_ = nullptr;
  }

 private:
  IngressNode* current_ = nullptr;  // Newest batch; older by `batch_next`.
};

// Deletes the pool's free nodes beyond `kPoolMaxFreeNodes` (not those kept
// forever). One relaxed load when there is nothing to trim. Called from a
// loop's trim timer (LoopCore::MaybeTrimPool).
void TrimIngressPool();
// One relaxed load: whether the pool holds more than `kPoolMaxFreeNodes`.
bool IngressPoolOverBound();
// How many batches thread caches have drawn (from the pool or new), ever.
uint64_t IngressPoolDraws();
// The pool is trimmed once no thread has drawn a batch for this long: a
// loop that bursts again and again (a benchmark, a periodic batch job)
// reuses its nodes instead of freeing and reallocating them every time.
inline constexpr int64_t kPoolTrimIntervalNs = 1000000000;

// For tests: nodes allocated and not deleted (in flight, in caches, in the
// pool), the pool's free nodes, and those of them kept forever.
struct IngressPoolStats {
  int64_t nodes_live = 0;
  size_t pool_free = 0;
  size_t pool_kept_forever = 0;
};
IngressPoolStats IngressPoolStatsForTesting();
// For tests: nodes in the calling thread's cache.
size_t ThisThreadCachedIngressNodesForTesting();

// A cache line of its own: producers compare-and-swap `head_` on every push,
// which must not contend with the loop thread's own fields nearby.
class alignas(64) ForeignIngress {
 public:
  enum class PushResult { kQueued, kQueuedWake, kClosed };

  ForeignIngress() = default;
  ForeignIngress(const ForeignIngress&) = delete;
  ForeignIngress& operator=(const ForeignIngress&) = delete;

  // Any thread holding a pin. On kClosed the node was not linked: the caller
  // still owns it (and its task). On kQueuedWake the caller must wake the
  // consumer (write the eventfd) before it unpins.
  PushResult Push(IngressNode* node) {
    // Protocol step "push": one release compare-and-swap of `head_`.
    uintptr_t h = head_.load(std::memory_order_relaxed);
    for (;;) {
      if (ABSL_PREDICT_FALSE(h == kClosed)) return PushResult::kClosed;
      node->next =
          h >= kFirstNode ? reinterpret_cast<IngressNode*>(h) : nullptr;
      // ingress.pml: P5 (push CAS)
      if (head_.compare_exchange_weak(h, reinterpret_cast<uintptr_t>(node),
                                      std::memory_order_release,
                                      std::memory_order_relaxed)) {
        return h == kArmed ? PushResult::kQueuedWake : PushResult::kQueued;
      }
    }
  }

  // Loop thread. Everything pushed so far, newest first (null if none): the
  // caller reverses it to FIFO in its own pass over the nodes (protocol step
  // "reverse", L-T2; see LoopCore::QueueIngress). If it returns null the
  // list is armed (or closed): the next push wakes the loop. If not, the
  // list is left unarmed and the caller must `Take` again before the loop
  // may sleep (at the end of the batch that runs what it took).
  IngressNode* Take() {
    // Protocol step "take-all" (an acquire exchange to kEmpty), or
    // "arm tag" (an acquire compare-and-swap kEmpty -> kArmed).
    uintptr_t h = head_.load(std::memory_order_acquire);
    for (;;) {
      if (h >= kFirstNode) {
        // ingress.pml: L-T1 (take-all exchange); L-T2 (reverse) is the
        // caller's.
        h = head_.exchange(kEmpty, std::memory_order_acquire);
        return reinterpret_cast<IngressNode*>(h);
      }
      if (h != kEmpty) return nullptr;  // Armed already, or closed.
      // ingress.pml: L-T4 (arm: CAS kEmpty -> kArmed)
      if (head_.compare_exchange_weak(h, kArmed, std::memory_order_acquire,
                                      std::memory_order_acquire)) {
        return nullptr;
      }
    }
  }

  // Loop thread, before the loop is registered: the bound on pending user
  // posts (at least 1).
  void set_limit(int64_t limit) { limit_ = limit < 1 ? 1 : limit; }
  int64_t limit() const { return limit_; }

  // Protocol step "reserve" (any thread holding a pin, before `Push` of a
  // bounded user post): a relaxed compare-and-swap of `pending_` to one
  // more, only while it is below `limit()`; `pending_` shares `head_`'s
  // cache line (the push's compare-and-swap needs the line anyway). False
  // (and nothing reserved) if the loop already holds `limit()` pending user
  // posts: the post is refused. A refused post never raises the count, not
  // even for a moment: a fetch_add undone by a fetch_sub did, and a release
  // landing between the two missed the low-water mark, so a room waiter
  // could sleep with the loop idle (the Spin model's no_stuck_waiter found
  // it; its mutant MUT_RESERVE_OVERSHOOT keeps that form).
  bool Reserve() {
    // ingress.pml: P4 (reserve: compare-and-swap below the limit)
    int64_t n = pending_.load(std::memory_order_relaxed);
    do {
      if (ABSL_PREDICT_FALSE(n >= limit_)) return false;
    } while (!pending_.compare_exchange_weak(
        n, n + 1, std::memory_order_relaxed, std::memory_order_relaxed));
    return true;
  }
  // Undoes a `Reserve` whose push failed (any thread holding a pin).
  void Unreserve() { pending_.fetch_sub(1, std::memory_order_relaxed); }
  // Protocol step "release" (loop thread): `n` reserved posts left the
  // accounting. Sequentially consistent, so that the release and a room
  // waiter's registration (see `RoomSignal` in loop_core.h) cannot both
  // miss each other. Returns the count after the release.
  int64_t Release(int64_t n) {
    // ingress.pml: L-B6 (release)
    return pending_.fetch_sub(n, std::memory_order_seq_cst) - n;
  }
  // Any thread: pending user posts (reserved and not yet released).
  int64_t pending() const { return pending_.load(std::memory_order_seq_cst); }

  // Loop thread: arms the ingress if it holds nothing (protocol step "arm
  // tag", as in `Take`); false if nodes are waiting (then the caller must
  // make sure a take comes: see RunUntilIdle).
  bool ArmIfEmpty() {
    uintptr_t h = head_.load(std::memory_order_acquire);
    for (;;) {
      if (h >= kFirstNode) return false;
      if (h != kEmpty) return true;  // Armed already, or closed.
      if (head_.compare_exchange_weak(h, kArmed, std::memory_order_acquire,
                                      std::memory_order_acquire)) {
        return true;
      }
    }
  }

  // Loop thread: true if a node is waiting (a hint; `Take` decides).
  bool HasNodes() const {
    return head_.load(std::memory_order_relaxed) >= kFirstNode;
  }

  // Loop thread, at shutdown after the registry slot is closed and its pins
  // ended: refuses every later push with one exchange and returns what was
  // still queued, newest first (as `Take`).
  IngressNode* Close() {
    // ingress.pml: L-S4 (close exchange)
    // Protocol step "close": an acquire exchange to kClosed.
    const uintptr_t h = head_.exchange(kClosed, std::memory_order_acquire);
    return h >= kFirstNode ? reinterpret_cast<IngressNode*>(h) : nullptr;
  }

 private:
  static constexpr uintptr_t kEmpty = 0;
  static constexpr uintptr_t kArmed = 1;
  static constexpr uintptr_t kClosed = 2;
  static constexpr uintptr_t kFirstNode = 64;  // Nodes are 64-byte aligned.

  // Starts armed: the loop is idle until something arrives.
  std::atomic<uintptr_t> head_{kArmed};
  // Reserved user posts not yet released (see `Reserve`/`Release`).
  std::atomic<int64_t> pending_{0};
  int64_t limit_ = int64_t{1} << 20;  // Set before any pin; then read-only.
};

// Which contexts accept foreign posts: by context index, the generation of a
// live context that is not closing, else 0. The loop thread writes it; pinned
// foreign threads read it. Chunks double in size (chunk k holds 1024 << k
// entries) and never move or shrink while the loop lives, so a reader never
// sees storage being reallocated.
// Cache lines of its own: pinned posters read `chunks_` on every post, so
// no field the loop thread writes may share them.
class alignas(64) ForeignAcceptTable {
 public:
  ForeignAcceptTable() = default;
  ForeignAcceptTable(const ForeignAcceptTable&) = delete;
  ForeignAcceptTable& operator=(const ForeignAcceptTable&) = delete;
  ~ForeignAcceptTable();

  // Any thread holding a pin.
  bool Accepts(ContextHandle ctx) const {
    const uint32_t gen = HandleAccess::ContextGeneration(ctx);
    if (ABSL_PREDICT_FALSE(gen == 0)) return false;
    uint32_t chunk, offset;
    Locate(HandleAccess::ContextIndex(ctx), &chunk, &offset);
    if (ABSL_PREDICT_FALSE(chunk >= kMaxChunks)) return false;
    const std::atomic<uint32_t>* c =
        chunks_[chunk].load(std::memory_order_acquire);
    return c != nullptr && c[offset].load(std::memory_order_acquire) == gen;
  }
  // Loop thread. A store to 0 becomes exact for every foreign post only
  // after `LoopRegistry::WaitForEarlierPins` (see DestroyContext).
  void Set(uint32_t index, uint32_t generation);

 private:
  static constexpr uint32_t kBaseBits = 10;
  static constexpr uint32_t kMaxChunks = 23;  // 2^32 entries in all.
  static void Locate(uint32_t index, uint32_t* chunk, uint32_t* offset) {
    const uint64_t i = uint64_t{index} + (uint64_t{1} << kBaseBits);
    const uint32_t top = 63 - static_cast<uint32_t>(__builtin_clzll(i));
    *chunk = top - kBaseBits;
    *offset = static_cast<uint32_t>(i - (uint64_t{1} << top));
  }
  std::atomic<std::atomic<uint32_t>*> chunks_[kMaxChunks] = {};
};

}  // namespace loop_internal
}  // namespace ctxloop

#endif  // CTXLOOP_LOOP_INTERNAL_FOREIGN_INGRESS_H_
