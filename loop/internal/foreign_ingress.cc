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

// A thread's private stack of free nodes; returned to the pool when the
// thread exits.
struct ThreadCache {
  IngressNode* head = nullptr;
  ~ThreadCache() {
    if (head == nullptr) return;
    IngressNode* last = head;
    while (last->next != nullptr) last = last->next;
    PushChain(head, last);
  }
};

ThreadCache& Cache() {
  static thread_local ThreadCache cache;
  return cache;
}

}  // namespace

IngressNode* AllocIngressNode() {
  ThreadCache& cache = Cache();
  if (ABSL_PREDICT_FALSE(cache.head == nullptr)) {
    cache.head = g_pool.exchange(nullptr, std::memory_order_acquire);
    if (cache.head == nullptr) cache.head = NewBlock();
  }
  IngressNode* n = cache.head;
  cache.head = n->next;
  n->next = nullptr;
  n->kind = IngressNode::Kind::kTask;
  n->timer_index = ~uint32_t{0};
  return n;
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
