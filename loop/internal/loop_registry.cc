// Copyright 2026 The ctxloop Authors.

#include "ctxloop/loop/internal/loop_registry.h"

#include <sched.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <vector>

#include "ctxloop/loop/internal/local_post.h"

namespace ctxloop {
namespace loop_internal {

namespace registry_internal {
// Chunks are published once and never freed (see the header).
std::atomic<Chunk*> g_chunks[kMaxChunks] = {};
}  // namespace registry_internal

namespace {

using registry_internal::Chunk;
using registry_internal::g_chunks;
using registry_internal::kChunkBits;
using registry_internal::kChunkSize;
using registry_internal::kMaxChunks;

struct FreeList {
  Mutex mu;
  std::vector<uint32_t> free ABSL_GUARDED_BY(mu);  // Indices ready for reuse.
  // Index 0 is never used: it means "null".
  uint32_t next_unused ABSL_GUARDED_BY(mu) = 1;
};

FreeList& GetFreeList() {
  static FreeList* list = new FreeList();  // Never destroyed: see above.
  return *list;
}

}  // namespace

uint64_t NewThreadTag() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

void LoopRegistry::Register(LoopCore* core, uint32_t* index,
                            uint32_t* generation) {
  FreeList& list = GetFreeList();
  uint32_t i;
  {
    MutexLock lock(&list.mu);
    if (!list.free.empty()) {
      i = list.free.back();
      list.free.pop_back();
    } else {
      i = list.next_unused++;
      const uint32_t chunk = i >> kChunkBits;
      if (chunk >= kMaxChunks) {
        std::fprintf(stderr, "ctxloop: more than %u live loops\n",
                     kMaxChunks * kChunkSize);
        std::abort();
      }
      if (g_chunks[chunk].load(std::memory_order_relaxed) == nullptr) {
        g_chunks[chunk].store(new Chunk(), std::memory_order_release);
      }
    }
  }
  LoopSlot* slot = Find(i);
  // Never wraps (0 is the null handle's): see Unregister [S16].
  const uint32_t gen = LoopSlot::GenerationOf(slot->state.load()) + 1;
  slot->core.store(core, std::memory_order_relaxed);
  slot->owner_thread.store(ThisThreadTag(), std::memory_order_relaxed);
  slot->state.store(uint64_t{gen} << 32, std::memory_order_release);
  *index = i;
  *generation = gen;
}

void LoopRegistry::CloseAndWaitForPins(LoopSlot* slot) {
  // A foreign operation either pinned before this (and is waited for), or
  // its pin fails: nothing foreign starts after the close.
  // ingress.pml: L-S2 (close), L-S3 (wait for pins)
  uint64_t s =
      slot->state.fetch_or(LoopSlot::kClosedBit, std::memory_order_acq_rel);
  while ((s & LoopSlot::kPinMask) != 0) {
    sched_yield();  // A pin lasts one queue push; this spins rarely and
                    // briefly.
    s = slot->state.load(std::memory_order_acquire);
  }
}

void LoopRegistry::WaitForEarlierPins(LoopSlot* slot) {
  // The flip is a read-modify-write of `state`, like every pin: a pin ordered
  // before it counts in the old epoch (and is waited for); one ordered after
  // it reads the flip (acquire), so it sees what the caller did before.
  // ingress.pml: L-D2 (flip), L-D3 (wait)
  const uint64_t s =
      slot->state.fetch_xor(LoopSlot::kEpochBit, std::memory_order_acq_rel);
  const int shift = (s & LoopSlot::kEpochBit) != 0 ? LoopSlot::kEpochShift : 0;
  for (uint64_t now = s; ((now >> shift) & LoopSlot::kEpochCountMask) != 0;
       now = slot->state.load(std::memory_order_acquire)) {
    sched_yield();  // A pin lasts one queue push: rare and brief.
  }
}

void LoopRegistry::Unregister(uint32_t index) {
  LoopSlot* slot = Find(index);
  CloseAndWaitForPins(slot);
  slot->core.store(nullptr, std::memory_order_release);
  slot->owner_thread.store(0, std::memory_order_relaxed);
  // No thread's cached "this loop is mine" (local_post.h) survives this.
  InvalidateOwnerCaches();
  // [S16] Retire a slot whose generation would wrap: a handle of an earlier
  // loop in it must never name a new one. (The slot's memory is never freed
  // anyway; a retired slot costs its few bytes.)
  if (LoopSlot::GenerationOf(slot->state.load()) ==
      std::numeric_limits<uint32_t>::max()) {
    return;
  }
  FreeList& list = GetFreeList();
  MutexLock lock(&list.mu);
  list.free.push_back(index);
}

void LoopRegistry::SetGenerationForTesting(uint32_t index,
                                           uint32_t generation) {
  LoopSlot* slot = Find(index);
  const uint64_t low = slot->state.load() & 0xffffffffu;
  slot->state.store((uint64_t{generation} << 32) | low);
}

LoopCore* LoopRegistry::Pin(uint32_t index, uint32_t generation, uint64_t* unit,
                            bool* owner) {
  LoopSlot* slot = Find(index);
  if (slot == nullptr) return nullptr;
  uint64_t s = slot->state.load(std::memory_order_acquire);
  for (;;) {
    if (LoopSlot::GenerationOf(s) != generation ||
        (s & LoopSlot::kClosedBit) != 0) {
      return nullptr;
    }
    const uint64_t u = LoopSlot::PinUnit(s);
    // ingress.pml: P1, X1, W1 (pin CAS)
    if (slot->state.compare_exchange_weak(s, s + u, std::memory_order_acq_rel,
                                          std::memory_order_acquire)) {
      *unit = u;
      if (owner != nullptr) {
        *owner = slot->owner_thread.load(std::memory_order_relaxed) ==
                 ThisThreadTag();
      }
      return slot->core.load(std::memory_order_acquire);
    }
  }
}

void LoopRegistry::Unpin(uint32_t index, uint64_t unit) {
  // ingress.pml: P7, X5, W5 (unpin)
  Find(index)->state.fetch_sub(unit, std::memory_order_release);
}

}  // namespace loop_internal
}  // namespace ctxloop
