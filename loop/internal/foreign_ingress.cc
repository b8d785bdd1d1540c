// Copyright 2026 The ctxloop Authors.
//
// The node pool of the foreign ingress (see foreign_ingress.h for the
// lock-free rule and the pool's bounds). Each thread keeps a small private
// stack of free nodes; the process-wide pool behind them is a stack under a
// mutex, touched once per batch of nodes (a refill, a spill, a consumer's
// return of a finished segment, an idle trim), never per post.

#include "ctxloop/loop/internal/foreign_ingress.h"

#include <algorithm>
#include <new>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/base/attributes.h"
#include "ctxloop/loop/mutex.h"

namespace ctxloop {
namespace loop_internal {

namespace {

// The global pool: a stack of batches (see `IngressNode::batch_next`).
// Never destroyed: threads may exit (and return their caches) after static
// destruction; its nodes stay reachable for leak checkers through `g_pool`.
struct Pool {
  Mutex mu;
  IngressNode* batches ABSL_GUARDED_BY(mu) = nullptr;
  size_t free ABSL_GUARDED_BY(mu) = 0;
  // Of `free`: nodes that carried a foreign delayed task (never deleted).
  size_t kept ABSL_GUARDED_BY(mu) = 0;
};
Pool* const g_pool = new Pool;
// Mirrors of the pool's counts, for the idle trim's cheap test and stats.
std::atomic<size_t> g_pool_free{0};
std::atomic<int64_t> g_nodes_live{0};  // Allocated and not deleted.
// Batches taken from the pool or allocated by thread caches, ever.
std::atomic<uint64_t> g_pool_draws{0};

// Splits the null-terminated chain `first`.. into batches (outside the
// lock: the caller just touched these nodes), marking the nodes that carried
// a foreign delayed task as kept forever (a `DelayedTaskHandle` may compare
// their claim at any later time), and pushes them onto the pool.
void PushAll(IngressNode* first) {
  if (first == nullptr) return;
  IngressNode* head_batch = nullptr;
  IngressNode* last_batch = nullptr;
  IngressNode* batch = nullptr;
  IngressNode* prev = nullptr;
  size_t count = 0;
  size_t kept = 0;
  for (IngressNode* q = first; q != nullptr;) {
    IngressNode* next = q->next;
    if (batch == nullptr || batch->batch_size == kIngressNodeBatch) {
      if (prev != nullptr) prev->next = nullptr;  // Ends the last batch.
      q->batch_next = nullptr;
      q->batch_size = 0;
      q->batch_kept = 0;
      if (last_batch != nullptr) last_batch->batch_next = q;
      if (head_batch == nullptr) head_batch = q;
      last_batch = q;
      batch = q;
    }
    if (q->kind == IngressNode::Kind::kDelayed) q->kept_forever = true;
    if (q->kept_forever) {
      ++batch->batch_kept;
      ++kept;
    }
    ++batch->batch_size;
    ++count;
    prev = q;
    q = next;
  }
  MutexLock lock(&g_pool->mu);
  last_batch->batch_next = g_pool->batches;
  g_pool->batches = head_batch;
  g_pool->free += count;
  g_pool->kept += kept;
  g_pool_free.store(g_pool->free, std::memory_order_relaxed);
}

// One batch from the pool (a chain; its size in `*got`), or null.
// Inline: on the refill path (once per 64 posts), a call costs a tenth of it.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline IngressNode* PoolPopBatch(size_t* got) {
  MutexLock lock(&g_pool->mu);
  IngressNode* b = g_pool->batches;
  if (b == nullptr) return nullptr;
  g_pool->batches = b->batch_next;
  g_pool->free -= b->batch_size;
  g_pool->kept -= b->batch_kept;
  g_pool_free.store(g_pool->free, std::memory_order_relaxed);
  *got = b->batch_size;
  return b;
}

// The nodes of one allocation. Nodes are allocated a slab at a time, so the
// nodes a producer fills and the loop runs one after the other sit next to
// each other in memory (one `new` per node put each 128-byte node on its own
// 256 bytes, as the aligned allocation rounds up, and scattered them: posts
// and runs then cost about twice the memory traffic and page faults). A node
// knows its place in its slab (`slab_index`); the trim deletes a slab only
// when all its nodes are free in the pool.
struct NodeSlab {
  IngressNode nodes[kIngressSlabNodes];
};
static_assert(kIngressNodeBatch % kIngressSlabNodes == 0,
              "a refill of new nodes is whole slabs");

IngressNode* SlabOf(IngressNode* n) { return n - n->slab_index; }

// `count` (a multiple of kIngressSlabNodes) new nodes as a chain, in address
// order.
IngressNode* NewNodes(size_t count) {
  IngressNode* chain = nullptr;
  for (size_t s = 0; s < count / kIngressSlabNodes; ++s) {
    NodeSlab* slab = new NodeSlab;  // Every field has its initializer.
    for (size_t i = kIngressSlabNodes; i-- > 0;) {
      IngressNode* n = &slab->nodes[i];
      n->slab_index = static_cast<uint8_t>(i);
      n->next = chain;
      chain = n;
    }
  }
  g_nodes_live.fetch_add(static_cast<int64_t>(count),
                         std::memory_order_relaxed);
  return chain;
}

// Returns this thread's cached nodes to the pool when the thread exits, and
// leaves the cache torn down (empty, never refilled), so a later post from a
// `thread_local` destructor never takes a node the pool owns.
struct CacheReaper {
  ~CacheReaper() {
    IngressNodeCache& cache = ThisThreadIngressNodeCache();
    IngressNode* head = std::exchange(cache.head, nullptr);
    cache.count = 0;
    cache.torn_down = true;
    PushAll(head);
  }
};

}  // namespace

IngressNode* RefillIngressNodeCacheAndPop(IngressNodeCache& cache) {
  // A torn-down cache takes single new nodes (returned to the pool, which
  // trims them).
  if (cache.torn_down) {
    // A torn-down cache takes single nodes: one of a batch from the pool
    // (or of a new slab), the rest going straight back.
    size_t got = 0;
    IngressNode* chain = PoolPopBatch(&got);
    if (chain == nullptr) chain = NewNodes(kIngressSlabNodes);
    PushAll(chain->next);
    return chain;
  }
  static thread_local CacheReaper reaper;  // Registered on the first refill.
  (void)reaper;
  g_pool_draws.fetch_add(1, std::memory_order_relaxed);
  size_t got = 0;
  IngressNode* chain = PoolPopBatch(&got);
  if (chain == nullptr) {
    got = kIngressNodeBatch;
    chain = NewNodes(got);
  }
  cache.head = chain->next;
  cache.count = got - 1;
  return chain;
}

void ReturnIngressNode(IngressNode* node) {
  IngressNodeCache& cache = ThisThreadIngressNodeCache();
  node->next = nullptr;
  if (ABSL_PREDICT_FALSE(cache.torn_down)) {
    PushAll(node);
    return;
  }
  node->next = cache.head;
  cache.head = node;
  if (ABSL_PREDICT_FALSE(++cache.count > kThreadCacheMaxNodes)) {
    // Spill a batch: the cache keeps the rest.
    IngressNode* first = cache.head;
    IngressNode* last = first;
    for (size_t i = 1; i < kIngressNodeBatch; ++i) last = last->next;
    cache.head = last->next;
    cache.count -= kIngressNodeBatch;
    last->next = nullptr;
    PushAll(first);
  }
}

void FreeIngressNodes(IngressNode* first, IngressNode* last) {
  last->next = nullptr;
  PushAll(first);
}

void FreeIngressBatches(IngressNode* batches) {
  size_t count = 0;
  size_t kept = 0;
  IngressNode* last = batches;
  for (IngressNode* b = batches; b != nullptr; b = b->batch_next) {
    count += b->batch_size;
    kept += b->batch_kept;
    last = b;
  }
  MutexLock lock(&g_pool->mu);
  last->batch_next = g_pool->batches;
  g_pool->batches = batches;
  g_pool->free += count;
  g_pool->kept += kept;
  g_pool_free.store(g_pool->free, std::memory_order_relaxed);
}

uint64_t IngressPoolDraws() {
  return g_pool_draws.load(std::memory_order_relaxed);
}

bool IngressPoolOverBound() {
  return g_pool_free.load(std::memory_order_relaxed) > kPoolMaxFreeNodes;
}

void TrimIngressPool() {
  if (!IngressPoolOverBound()) return;
  // The whole pool, taken under the lock in O(1); sorted outside it. Posts
  // that refill meanwhile find the pool empty and allocate: a trim runs only
  // after a second in which no thread drew a batch.
  IngressNode* all;
  size_t free_count;
  size_t kept_count;
  {
    MutexLock lock(&g_pool->mu);
    if (g_pool->free - g_pool->kept <= kPoolMaxFreeNodes) return;
    all = std::exchange(g_pool->batches, nullptr);
    free_count = std::exchange(g_pool->free, 0);
    kept_count = std::exchange(g_pool->kept, 0);
    g_pool_free.store(0, std::memory_order_relaxed);
  }
  // Free nodes per slab; a slab with a node kept forever is never deleted.
  constexpr uint32_t kPinned = ~uint32_t{0};
  std::unordered_map<IngressNode*, uint32_t> free_in_slab;
  free_in_slab.reserve(free_count / kIngressSlabNodes + 1);
  for (IngressNode* b = all; b != nullptr; b = b->batch_next) {
    for (IngressNode* q = b; q != nullptr; q = q->next) {
      uint32_t& c = free_in_slab[SlabOf(q)];
      if (q->kept_forever) {
        c = kPinned;
      } else if (c != kPinned) {
        ++c;
      }
    }
  }
  // Whole free slabs, until the pool is back at its bound.
  constexpr uint32_t kDoomed = kPinned - 1;
  size_t excess = free_count - kept_count - kPoolMaxFreeNodes;
  std::vector<NodeSlab*> doomed;
  for (auto& [slab, c] : free_in_slab) {
    if (excess == 0) break;
    if (c != kIngressSlabNodes) continue;
    c = kDoomed;
    doomed.push_back(reinterpret_cast<NodeSlab*>(slab));
    excess -= std::min(excess, kIngressSlabNodes);
  }
  // The rest goes back to the pool.
  IngressNode* keep = nullptr;
  for (IngressNode* b = all; b != nullptr;) {
    IngressNode* next_batch = b->batch_next;
    for (IngressNode* q = b; q != nullptr;) {
      IngressNode* next = q->next;
      if (free_in_slab[SlabOf(q)] != kDoomed) {
        q->next = keep;
        keep = q;
      }
      q = next;
    }
    b = next_batch;
  }
  PushAll(keep);
  for (NodeSlab* slab : doomed) delete slab;
  g_nodes_live.fetch_sub(
      static_cast<int64_t>(doomed.size() * kIngressSlabNodes),
      std::memory_order_relaxed);
}

IngressPoolStats IngressPoolStatsForTesting() {
  IngressPoolStats stats;
  stats.nodes_live = g_nodes_live.load(std::memory_order_relaxed);
  MutexLock lock(&g_pool->mu);
  stats.pool_free = g_pool->free;
  stats.pool_kept_forever = g_pool->kept;
  return stats;
}

size_t ThisThreadCachedIngressNodesForTesting() {
  return ThisThreadIngressNodeCache().count;
}

uint64_t NewForeignTimerId() {
  static std::atomic<uint64_t> next{2};
  return next.fetch_add(1, std::memory_order_relaxed);
}

ForeignAcceptTable::~ForeignAcceptTable() {
  for (auto& c : chunks_) delete[] c.load(std::memory_order_relaxed);
}

void ForeignAcceptTable::Set(uint32_t index, uint32_t generation) {
  uint32_t chunk, offset;
  Locate(index, &chunk, &offset);
  std::atomic<uint32_t>* c = chunks_[chunk].load(std::memory_order_relaxed);
  if (c == nullptr) {
    if (generation == 0) return;  // Nothing to close.
    const size_t n = size_t{1} << (kBaseBits + chunk);
    c = new std::atomic<uint32_t>[n];
    for (size_t i = 0; i < n; ++i) c[i].store(0, std::memory_order_relaxed);
    chunks_[chunk].store(c, std::memory_order_release);
  }
  c[offset].store(generation, std::memory_order_release);
}

}  // namespace loop_internal
}  // namespace ctxloop
