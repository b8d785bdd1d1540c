// Copyright 2026 The ctxloop Authors.
//
// The node pool of the foreign ingress (see foreign_ingress.h for the
// lock-free rule). The pool is a process-wide Treiber stack that is only
// pushed to (a chain at a time, by consumers) and taken whole (by a
// producer's per-thread cache, with one exchange), so it has no ABA either.
// Nodes are allocated 64 at a time and never freed: the pool holds the most
// nodes that were ever in flight at once.

#include "ctxloop/loop/internal/foreign_ingress.h"

#include <new>
#include <utility>

#include "absl/base/attributes.h"

namespace ctxloop {
namespace loop_internal {

namespace {

constexpr int kNodesPerBlock = 64;

// The global pool; reachable for leak checkers through this pointer.
std::atomic<IngressNode*> g_pool{nullptr};

void PushChain(IngressNode* first, IngressNode* last) {
  IngressNode* h = g_pool.load(std::memory_order_relaxed);
  do {
    last->next = h;
  } while (!g_pool.compare_exchange_weak(h, first, std::memory_order_release,
                                         std::memory_order_relaxed));
}

// Blocks ever allocated, kept reachable (never freed: nodes may be named by
// nothing else while they sit in a thread's cache).
struct Block {
  Block* next;
  IngressNode nodes[kNodesPerBlock];
};
std::atomic<Block*> g_blocks{nullptr};

IngressNode* NewBlock() {
  Block* b = new Block();
  Block* h = g_blocks.load(std::memory_order_relaxed);
  do {
    b->next = h;
  } while (!g_blocks.compare_exchange_weak(h, b, std::memory_order_release,
                                           std::memory_order_relaxed));
  for (int i = 0; i + 1 < kNodesPerBlock; ++i) {
    b->nodes[i].next = &b->nodes[i + 1];
  }
  b->nodes[kNodesPerBlock - 1].next = nullptr;
  return &b->nodes[0];
}

// A thread's private stack of free nodes. Constant-initialized and trivially
// destructible, so it stays usable for the whole life of the thread, even
// from `thread_local` destructors that run after `CacheReaper`'s below.
struct ThreadCache {
  IngressNode* head = nullptr;
  // Set by `CacheReaper` once the nodes went back to the pool at thread
  // exit: from then on this thread's nodes come straight from the pool.
  bool torn_down = false;
};
thread_local ThreadCache t_cache;

// Returns this thread's cached nodes to the pool when the thread exits, and
// leaves the cache torn down (empty, never refilled), so a later post from a
// `thread_local` destructor never takes a node the pool owns.
struct CacheReaper {
  ~CacheReaper() {
    ThreadCache& cache = t_cache;
    IngressNode* head = std::exchange(cache.head, nullptr);
    cache.torn_down = true;
    if (head == nullptr) return;
    IngressNode* last = head;
    while (last->next != nullptr) last = last->next;
    PushChain(head, last);
  }
};

// One node for a thread whose cache is torn down: from the pool (taken whole
// with one exchange, the rest pushed back), else a new block's.
IngressNode* TakeOneNode() {
  IngressNode* chain = g_pool.exchange(nullptr, std::memory_order_acquire);
  if (chain == nullptr) chain = NewBlock();
  IngressNode* rest = chain->next;
  if (rest != nullptr) {
    IngressNode* last = rest;
    while (last->next != nullptr) last = last->next;
    PushChain(rest, last);
  }
  return chain;
}

ABSL_ATTRIBUTE_NOINLINE IngressNode* RefillAndPop(ThreadCache& cache) {
  if (cache.torn_down) return TakeOneNode();
  static thread_local CacheReaper reaper;  // Registered on the first refill.
  (void)reaper;
  cache.head = g_pool.exchange(nullptr, std::memory_order_acquire);
  if (cache.head == nullptr) cache.head = NewBlock();
  IngressNode* n = cache.head;
  cache.head = n->next;
  return n;
}

}  // namespace

IngressNode* AllocIngressNode() {
  ThreadCache& cache = t_cache;
  IngressNode* n = cache.head;
  if (ABSL_PREDICT_FALSE(n == nullptr)) {
    n = RefillAndPop(cache);
  } else {
    cache.head = n->next;
  }
  n->next = nullptr;
  n->kind = IngressNode::Kind::kTask;
  n->timer_index = ~uint32_t{0};
  return n;
}

void ReturnIngressNode(IngressNode* node) {
  ThreadCache& cache = t_cache;
  if (ABSL_PREDICT_FALSE(cache.torn_down)) {
    node->next = nullptr;
    PushChain(node, node);
    return;
  }
  node->next = cache.head;
  cache.head = node;
}

uint64_t NewForeignTimerId() {
  static std::atomic<uint64_t> next{2};
  return next.fetch_add(1, std::memory_order_relaxed);
}

void FreeIngressNodes(IngressNode* first, IngressNode* last) {
  PushChain(first, last);
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
