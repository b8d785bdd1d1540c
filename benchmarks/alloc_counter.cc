// Copyright 2026 The ctxloop Authors.
//
// The counting allocation functions described in alloc_counter.h. This file
// must be linked with alwayslink (benchmarks/BUILD.bazel): nothing refers to
// its `malloc` by name, the dynamic linker binds every `malloc` call in the
// process to the executable's definition.

#include "ctxloop/benchmarks/alloc_counter.h"

#include <errno.h>
#include <malloc.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CTXLOOP_BENCH_NO_ALLOC_COUNTING 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define CTXLOOP_BENCH_NO_ALLOC_COUNTING 1
#endif
#endif

namespace ctxloop_bench {

#ifndef CTXLOOP_BENCH_NO_ALLOC_COUNTING

namespace {

constexpr int kSlots = 64;

// One counter per thread (the last one shared by threads 64 and later), each
// on its own cache line so that two allocating threads do not bounce a line.
struct alignas(64) Slot {
  std::atomic<int64_t> count{0};
};

// Constant-initialized: usable by the first malloc of the process.
Slot g_slots[kSlots];
std::atomic<int> g_next_slot{0};
// -1 until this thread's first allocation. Trivial type: no TLS constructor
// or destructor, safe inside malloc at any point of a thread's life.
thread_local int t_slot = -1;

inline void CountAllocation() {
  int slot = t_slot;
  if (slot < 0) {
    slot = g_next_slot.fetch_add(1, std::memory_order_relaxed);
    if (slot >= kSlots - 1) slot = kSlots - 1;
    t_slot = slot;
  }
  std::atomic<int64_t>& c = g_slots[slot].count;
  if (slot == kSlots - 1) {
    c.fetch_add(1, std::memory_order_relaxed);  // Shared slot.
  } else {
    // Only this thread writes its slot: no read-modify-write needed.
    c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
}

}  // namespace

bool AllocCountingEnabled() { return true; }

int64_t AllocationsSoFar() {
  int64_t sum = 0;
  for (const Slot& s : g_slots) sum += s.count.load(std::memory_order_relaxed);
  return sum;
}

#else  // CTXLOOP_BENCH_NO_ALLOC_COUNTING

bool AllocCountingEnabled() { return false; }
int64_t AllocationsSoFar() { return 0; }

#endif  // CTXLOOP_BENCH_NO_ALLOC_COUNTING

int64_t HeapBytesInUse() {
  const struct mallinfo2 info = mallinfo2();
  return static_cast<int64_t>(info.uordblks + info.hblkhd);
}

}  // namespace ctxloop_bench

#ifndef CTXLOOP_BENCH_NO_ALLOC_COUNTING

// glibc's allocator under its exported internal names (GLIBC_2.2.5).
extern "C" {
void* __libc_malloc(size_t size);
void* __libc_calloc(size_t n, size_t size);
void* __libc_realloc(void* ptr, size_t size);
void* __libc_memalign(size_t alignment, size_t size);

void* malloc(size_t size) noexcept {
  ctxloop_bench::CountAllocation();
  return __libc_malloc(size);
}

void* calloc(size_t n, size_t size) noexcept {
  ctxloop_bench::CountAllocation();
  return __libc_calloc(n, size);
}

void* realloc(void* ptr, size_t size) noexcept {
  if (size != 0) ctxloop_bench::CountAllocation();
  return __libc_realloc(ptr, size);
}

void* memalign(size_t alignment, size_t size) noexcept {
  ctxloop_bench::CountAllocation();
  return __libc_memalign(alignment, size);
}

void* aligned_alloc(size_t alignment, size_t size) noexcept {
  ctxloop_bench::CountAllocation();
  return __libc_memalign(alignment, size);
}

int posix_memalign(void** out, size_t alignment, size_t size) noexcept {
  // The same checks as glibc's: a power of two, a multiple of sizeof(void*).
  if (alignment % sizeof(void*) != 0 || (alignment & (alignment - 1)) != 0 ||
      alignment == 0) {
    return EINVAL;
  }
  ctxloop_bench::CountAllocation();
  void* p = __libc_memalign(alignment, size);
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}
}  // extern "C"

#endif  // CTXLOOP_BENCH_NO_ALLOC_COUNTING
