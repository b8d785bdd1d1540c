// Copyright 2026 The ctxloop Authors.
//
// The counting global operator new of //loop:alloc_count_for_testing (see
// alloc_count.h), and a check, before any test of the binary runs, that it is
// the operator new in use.

#include "ctxloop/loop/testing/alloc_count.h"

#include <cstdlib>
#include <new>

#include "gtest/gtest.h"

namespace {
thread_local long t_allocations = 0;
}  // namespace

void* operator new(std::size_t n) {
  ++t_allocations;
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace ctxloop {
namespace testing_util {

long ThreadAllocations() { return t_allocations; }

namespace {

// If another operator new won the link (a sanitizer runtime's does when this
// file is in a shared library instead of the executable), every count is 0
// and every "allocates nothing" check passes whatever the code does: fail
// the binary's tests instead.
class ReplacementIsInUse : public ::testing::Environment {
 public:
  void SetUp() override {
    const long before = ThreadAllocations();
    // An explicit call (unlike a new-expression) is never elided.
    void* volatile p = ::operator new(1);
    ::operator delete(p);
    ASSERT_EQ(ThreadAllocations() - before, 1)
        << "//loop:alloc_count_for_testing: its operator new is not the one "
           "in use, so its counts mean nothing (is it linked statically into "
           "the test executable?)";
  }
};

::testing::Environment* const g_replacement_check =
    ::testing::AddGlobalTestEnvironment(new ReplacementIsInUse);

}  // namespace
}  // namespace testing_util
}  // namespace ctxloop
