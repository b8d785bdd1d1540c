// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/loop/testing/alloc_count.h
// -----------------------------------------------------------------------------
//
// Counts the calling thread's heap allocations, for tests that assert a path
// allocates nothing (testonly, //loop:alloc_count_for_testing):
//
//   * Linking the library replaces the global `operator new(std::size_t)`
//     and the matching `operator delete`s of the whole test binary with
//     malloc/free plus a per-thread count. The array, aligned and nothrow
//     forms are not replaced (and not counted).
//   * `ThreadAllocations()`: the calling thread's count so far.
//   * `AllocationWindow`: the calling thread's allocations since it was made.
//
// The replacement is linked into the test executable itself (the library is
// static and always linked), so it also takes precedence over the
// sanitizers' own operator new under --config=asan and --config=tsan: the
// counts there are the same as in a plain build. Before the binary's first
// test, a GoogleTest environment checks that the replacement is the operator
// new in use (otherwise every count would be 0) and fails the tests if not.
//
// Cost: a thread-local increment per allocation.
//
// Thread-safety: each thread counts only its own allocations; a window is
// for the thread that made it.

#ifndef CTXLOOP_LOOP_TESTING_ALLOC_COUNT_H_
#define CTXLOOP_LOOP_TESTING_ALLOC_COUNT_H_

namespace ctxloop {
namespace testing_util {

// Global `operator new` calls made by the calling thread since it started.
long ThreadAllocations();

// The calling thread's allocations from construction on.
class AllocationWindow {
 public:
  AllocationWindow() : start_(ThreadAllocations()) {}
  AllocationWindow(const AllocationWindow&) = delete;
  AllocationWindow& operator=(const AllocationWindow&) = delete;

  // Allocations since construction (call it on the constructing thread).
  long count() const { return ThreadAllocations() - start_; }

 private:
  const long start_;
};

}  // namespace testing_util
}  // namespace ctxloop

#endif  // CTXLOOP_LOOP_TESTING_ALLOC_COUNT_H_
