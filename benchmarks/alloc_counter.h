// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/benchmarks/alloc_counter.h
// -----------------------------------------------------------------------------
//
// Heap-allocation counting for the benchmark binaries (linked into every
// binary the `ctxloop_benchmark` macro declares, through bench_util).
//
// What it counts: every call of the C allocation functions from outside glibc
// (`malloc`, `calloc`, `realloc` with a non-zero size, `memalign`,
// `aligned_alloc`, `posix_memalign`). The binary defines these and forwards
// them to glibc's own allocator (`__libc_malloc`, ...), so memory is
// allocated exactly as without counting and `free` needs no wrapper. The
// global `operator new` of libstdc++ allocates through `malloc`, so C++
// allocations (std::vector growth, absl::AnyInvocable heap storage,
// std::make_shared, ...) are counted as well as the C libraries' own
// (libevent's `event_new`/`event_base_once`, libuv): the peers are counted
// the same way as ctxloop.
//
// Cost: one thread-local lookup and one uncontended store per allocation
// (each thread owns a cache-line-sized slot; the 64th thread and later share
// the last slot with an atomic add). No lock, no allocation of its own.
//
// Sanitizer builds (ASan, TSan, MSan) replace malloc themselves: there the
// counting is compiled out and `AllocCountingEnabled()` is false; benchmarks
// then report no allocation counters.
//
// Thread-safety: all functions may be called from any thread. Counts from
// threads that are still allocating are read with relaxed loads: exact once
// those threads have synchronized with the reader (joined, or a
// PinnedWorker::Wait()).

#ifndef CTXLOOP_BENCHMARKS_ALLOC_COUNTER_H_
#define CTXLOOP_BENCHMARKS_ALLOC_COUNTER_H_

#include <cstdint>

namespace ctxloop_bench {

// False in sanitizer builds, where nothing is counted.
bool AllocCountingEnabled();

// Allocations made by all threads since the process started (0 if counting
// is disabled).
int64_t AllocationsSoFar();

// Bytes glibc's allocator holds for live blocks, chunk headers included
// (`mallinfo2`: in-use bytes of all arenas plus mmapped blocks). Walks the
// arenas: call it outside timing loops. Works in every build mode.
int64_t HeapBytesInUse();

}  // namespace ctxloop_bench

#endif  // CTXLOOP_BENCHMARKS_ALLOC_COUNTER_H_
