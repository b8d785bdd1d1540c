// Copyright 2026 The ctxloop Authors.
//
// The node pool of the foreign ingress (see foreign_ingress.h for the
// lock-free rule and the pool's bounds). Each thread keeps a small private
// stack of free nodes; the process-wide pool behind them is a stack under a
// mutex, touched once per batch of nodes (a refill, a spill, a consumer's
// return of a finished segment, an idle trim), never per post.

#include "ctxloop/loop/internal/foreign_ingress.h"

#include <new>
#include <utility>

#include "absl/base/attributes.h"
#include "ctxloop/loop/mutex.h"

namespace ctxloop {
namespace loop_internal {

namespace {

// The global pool. Never destroyed: threads may exit (and return their
// caches) after static destruction; its nodes stay reachable for leak
// checkers through `g_pool`.
struct Pool {
  Mutex mu;
  IngressNode* head ABSL_GUARDED_BY(mu) = nullptr;
  size_t free ABSL_GUARDED_BY(mu) = 0;
  // Of `free`: nodes that carried a foreign delayed task (never deleted).
  size_t kept ABSL_GUARDED_BY(mu) = 0;
};
Pool* const g_pool = new Pool;
// Mirrors of the pool's counts, for the idle trim's cheap test and stats.
std::atomic<size_t> g_pool_free{0};
std::atomic<int64_t> g_nodes_live{0};  // Allocated and not deleted.

// Walks the chain `first`..: its length; marks the nodes that carried a
// foreign delayed task as kept forever (a `DelayedTaskHandle` may compare
// their claim at any later time) and counts them in `*kept`.
size_t CountAndMark(IngressNode* first, size_t* kept) {
  size_t n = 0;
  for (IngressNode* q = first; q != nullptr; q = q->next) {
    if (q->kind == IngressNode::Kind::kDelayed) q->kept_forever = true;
    if (q->kept_forever) ++*kept;
    ++n;
  }
  return n;
}

// Pushes the chain `first`..`last` (`count` nodes, `kept` of them kept
// forever) onto the pool.
void PoolPush(IngressNode* first, IngressNode* last, size_t count,
              size_t kept) {
  MutexLock lock(&g_pool->mu);
  last->next = g_pool->head;
  g_pool->head = first;
  g_pool->free += count;
  g_pool->kept += kept;
  g_pool_free.store(g_pool->free, std::memory_order_relaxed);
}

// Up to `max` nodes from the pool as a chain (null if it is empty); their
// number in `*got`.
IngressNode* PoolPop(size_t max, size_t* got) {
  MutexLock lock(&g_pool->mu);
  IngressNode* first = g_pool->head;
  IngressNode* last = nullptr;
  size_t n = 0;
  size_t kept = 0;
  for (IngressNode* q = first; q != nullptr && n < max; q = q->next) {
    last = q;
    if (q->kept_forever) ++kept;
    ++n;
  }
  if (n == 0) return nullptr;
  g_pool->head = last->next;
  last->next = nullptr;
  g_pool->free -= n;
  g_pool->kept -= kept;
  g_pool_free.store(g_pool->free, std::memory_order_relaxed);
  *got = n;
  return first;
}

// `count` new nodes as a chain.
IngressNode* NewNodes(size_t count) {
  IngressNode* chain = nullptr;
  for (size_t i = 0; i < count; ++i) {
    IngressNode* n = new IngressNode();
    n->next = chain;
    chain = n;
  }
  g_nodes_live.fetch_add(static_cast<int64_t>(count),
                         std::memory_order_relaxed);
  return chain;
}

// A thread's private stack of free nodes (at most kThreadCacheMaxNodes).
// Constant-initialized and trivially destructible, so it stays usable for
// the whole life of the thread, even from `thread_local` destructors that
// run after `CacheReaper`'s below.
struct ThreadCache {
  IngressNode* head = nullptr;
  size_t count = 0;
  // Set by `CacheReaper` once the nodes went back to the pool at thread
  // exit: from then on this thread's nodes come from and go to the pool.
  bool torn_down = false;
};
thread_local ThreadCache t_cache;

void PushAll(IngressNode* first) {
  if (first == nullptr) return;
  size_t kept = 0;
  const size_t n = CountAndMark(first, &kept);
  IngressNode* last = first;
  while (last->next != nullptr) last = last->next;
  PoolPush(first, last, n, kept);
}

// Returns this thread's cached nodes to the pool when the thread exits, and
// leaves the cache torn down (empty, never refilled), so a later post from a
// `thread_local` destructor never takes a node the pool owns.
struct CacheReaper {
  ~CacheReaper() {
    ThreadCache& cache = t_cache;
    IngressNode* head = std::exchange(cache.head, nullptr);
    cache.count = 0;
    cache.torn_down = true;
    PushAll(head);
  }
};

ABSL_ATTRIBUTE_NOINLINE IngressNode* RefillAndPop(ThreadCache& cache) {
  size_t got = 0;
  if (cache.torn_down) {
    // One node at a time, straight from the pool.
    IngressNode* n = PoolPop(1, &got);
    return n != nullptr ? n : NewNodes(1);
  }
  static thread_local CacheReaper reaper;  // Registered on the first refill.
  (void)reaper;
  IngressNode* chain = PoolPop(kIngressNodeBatch, &got);
  if (chain == nullptr) {
    got = kIngressNodeBatch;
    chain = NewNodes(got);
  }
  cache.head = chain->next;
  cache.count = got - 1;
  return chain;
}

}  // namespace

IngressNode* AllocIngressNode() {
  ThreadCache& cache = t_cache;
  IngressNode* n = cache.head;
  if (ABSL_PREDICT_FALSE(n == nullptr)) {
    n = RefillAndPop(cache);
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

void ReturnIngressNode(IngressNode* node) {
  ThreadCache& cache = t_cache;
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
  size_t kept = 0;
  last->next = nullptr;
  const size_t n = CountAndMark(first, &kept);
  PoolPush(first, last, n, kept);
}

void TrimIngressPool() {
  if (g_pool_free.load(std::memory_order_relaxed) <= kPoolMaxFreeNodes) {
    return;
  }
  IngressNode* doomed = nullptr;
  size_t deleted = 0;
  {
    MutexLock lock(&g_pool->mu);
    // Nodes kept forever go back; the others beyond the bound are deleted.
    IngressNode* keep = nullptr;
    IngressNode* keep_last = nullptr;
    size_t kept_popped = 0;
    while (g_pool->free - g_pool->kept > kPoolMaxFreeNodes) {
      IngressNode* n = g_pool->head;
      g_pool->head = n->next;
      --g_pool->free;
      if (n->kept_forever) {
        --g_pool->kept;
        ++kept_popped;
        n->next = keep;
        if (keep == nullptr) keep_last = n;
        keep = n;
      } else {
        n->next = doomed;
        doomed = n;
        ++deleted;
      }
    }
    if (keep != nullptr) {
      keep_last->next = g_pool->head;
      g_pool->head = keep;
      g_pool->free += kept_popped;
      g_pool->kept += kept_popped;
    }
    g_pool_free.store(g_pool->free, std::memory_order_relaxed);
  }
  while (doomed != nullptr) {
    IngressNode* n = doomed;
    doomed = n->next;
    delete n;
  }
  g_nodes_live.fetch_sub(static_cast<int64_t>(deleted),
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

size_t ThisThreadCachedIngressNodesForTesting() { return t_cache.count; }

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
