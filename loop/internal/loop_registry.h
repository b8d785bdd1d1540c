// Copyright 2026 The ctxloop Authors.
//
// Internal. The process-wide table that turns the loop part of a
// `ContextHandle` into a live loop, or into a clear "loop gone" answer.
//
// Why a table: a handle is 16 plain bytes that may outlive its loop, be copied
// to any thread and used there at any time. Each loop occupies one `LoopSlot`;
// slots live in chunks that are allocated once and never freed, so reading a
// slot through a stale handle is always defined. A slot carries the loop's
// generation; a handle whose generation differs is stale.
//
// Cost: resolving a handle on the loop's own thread is two relaxed loads and
// two compares. Every foreign operation (`Post`, `PostDelayed`, `Cancel`,
// `Stop`, `FdWatch::Stop`) `Pin`s the loop: one compare-and-swap on the slot
// that also checks the loop's generation and the closed bit (and `Unpin` one
// atomic decrement), so the loop cannot finish shutting down, and its memory
// cannot be freed, while one is inside. No lock anywhere.
//
// Pins are counted in two epochs. `WaitForEarlierPins` (loop thread) flips
// the epoch and waits only for the pins of the old one, i.e. for the foreign
// operations that started before the flip: a grace period that new pins
// cannot prolong (see `ForeignAcceptTable` in foreign_ingress.h, which uses
// it to make a foreign `Post` racing `DestroyContext` exact).
//
// Thread-safety: everything here is thread-safe.

#ifndef CTXLOOP_LOOP_INTERNAL_LOOP_REGISTRY_H_
#define CTXLOOP_LOOP_INTERNAL_LOOP_REGISTRY_H_

#include <atomic>
#include <cstdint>

#include "absl/base/optimization.h"
#include "absl/base/thread_annotations.h"
#include "ctxloop/loop/mutex.h"

namespace ctxloop {
namespace loop_internal {

class LoopCore;

// Draws a new thread tag from a process-wide 64-bit counter (never 0, never
// reused).
uint64_t NewThreadTag();

// A tag for the calling thread, comparable with `LoopSlot::owner_thread`.
// Unlike `pthread_self()`, which glibc hands to the next thread as soon as
// one is joined, a tag is never reused, so a new thread is never taken for a
// joined loop thread [S14]. Cost: a thread-local load (and one atomic
// increment the first time on each thread).
inline uint64_t ThisThreadTag() {
  static thread_local uint64_t tag = 0;  // Zero-initialized: no TLS guard.
  if (ABSL_PREDICT_FALSE(tag == 0)) tag = NewThreadTag();
  return tag;
}

// One cache line per slot: foreign posters pin a slot with a
// compare-and-swap, which must not contend with another loop's slot.
struct alignas(64) LoopSlot {
  // Bits 63..32: generation of the loop in this slot (0: never used).
  // Bit 31: closed to foreign operations (set when shutdown starts, kept
  // after). Bit 30: the current pin epoch. Bits 29..15: pins taken in epoch
  // 1; bits 14..0: pins taken in epoch 0 (foreign threads inside the loop at
  // once, at most 32767 per epoch).
  std::atomic<uint64_t> state{0};
  // The loop, or null once it is gone. Read only by its owner thread or by a
  // thread that holds a pin.
  std::atomic<LoopCore*> core{nullptr};
  // `ThisThreadTag()` of the thread that drives the loop.
  std::atomic<uint64_t> owner_thread{0};

  static constexpr uint64_t kClosedBit = uint64_t{1} << 31;
  static constexpr uint64_t kEpochBit = uint64_t{1} << 30;
  static constexpr int kEpochShift = 15;
  static constexpr uint64_t kEpochCountMask = (uint64_t{1} << kEpochShift) - 1;
  static constexpr uint64_t kPinMask = kEpochBit - 1;  // Both counts.
  // What one pin adds to `state` in the epoch of `state`.
  static uint64_t PinUnit(uint64_t state) {
    return (state & kEpochBit) != 0 ? uint64_t{1} << kEpochShift : 1;
  }
  static uint32_t GenerationOf(uint64_t state) {
    return static_cast<uint32_t>(state >> 32);
  }
};

namespace registry_internal {
constexpr uint32_t kChunkBits = 8;
constexpr uint32_t kChunkSize = 1u << kChunkBits;  // Slots per chunk.
constexpr uint32_t kMaxChunks = 4096;              // ~1M loops at once.
struct Chunk {
  LoopSlot slots[kChunkSize];
};
extern std::atomic<Chunk*> g_chunks[kMaxChunks];
}  // namespace registry_internal

class LoopRegistry {
 public:
  // Takes a free slot for `core`; returns its index and new generation.
  static void Register(LoopCore* core, uint32_t* index, uint32_t* generation);
  // Returns the slot at `index`, or null if no loop ever used that index.
  // Inline: every handle operation starts here.
  static LoopSlot* Find(uint32_t index) {
    using namespace registry_internal;  // NOLINT(build/namespaces)
    const uint32_t chunk = index >> kChunkBits;
    if (chunk >= kMaxChunks) return nullptr;
    Chunk* c = g_chunks[chunk].load(std::memory_order_acquire);
    if (c == nullptr) return nullptr;
    return &c->slots[index & (kChunkSize - 1)];
  }
  // Closes the slot to new pins (one atomic or of the closed bit), then waits
  // (yielding) until current pins end.
  static void CloseAndWaitForPins(LoopSlot* slot);
  // Loop thread: flips the pin epoch and waits (yielding) until every pin
  // taken before the flip has ended. Pins taken after the flip do not delay
  // it, and they observe everything the caller did before the call.
  static void WaitForEarlierPins(LoopSlot* slot);
  // Marks the slot's loop gone and returns the slot to the free list, unless
  // its generation would wrap: then the slot is retired for good [S16].
  static void Unregister(uint32_t index);
  // Sets the generation of the free slot `index` (its next loop gets
  // `generation + 1`). For tests of [S16].
  static void SetGenerationForTesting(uint32_t index, uint32_t generation);

  // Pins the loop `(index, generation)` from any thread. Returns the core, or
  // null if the loop is gone, shutting down, or never existed. A non-null
  // result must be released with `Unpin(index, *unit)`.
  // With `owner`, also sets `*owner` on success: whether the calling thread
  // drives the loop (its `owner_thread`, read from the line the pin wrote).
  static LoopCore* Pin(uint32_t index, uint32_t generation, uint64_t* unit,
                       bool* owner = nullptr);
  static void Unpin(uint32_t index, uint64_t unit);

  // The loop `(index, generation)` if the calling thread is its owner and it
  // is alive (including while it drains during shutdown); null otherwise.
  // Needs no pin: a loop is destroyed only on, or sequenced with, its owner.
  static LoopCore* FindOwned(uint32_t index, uint32_t generation) {
    LoopSlot* slot = Find(index);
    if (slot == nullptr ||
        slot->owner_thread.load(std::memory_order_relaxed) != ThisThreadTag() ||
        LoopSlot::GenerationOf(slot->state.load(std::memory_order_relaxed)) !=
            generation) {
      return nullptr;
    }
    return slot->core.load(std::memory_order_relaxed);
  }
};

}  // namespace loop_internal
}  // namespace ctxloop

#endif  // CTXLOOP_LOOP_INTERNAL_LOOP_REGISTRY_H_
