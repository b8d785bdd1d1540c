// Copyright 2026 The ctxloop Authors.
//
// Allocations of `ContextKey` Set/Reset: once a key was set on a
// context, a Set of a small value and its Reset neither allocate nor free,
// also when Sets nest (the key's emptied stack keeps its storage). The
// calling thread's allocations are counted by the global `operator new` of
// //loop:alloc_count_for_testing (testing/alloc_count.h).

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "ctxloop/loop/context_key.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/loop/testing/alloc_count.h"
#include "ctxloop/loop/testing/test_util.h"
#include "gtest/gtest.h"

namespace ctxloop {
namespace {

struct Ref {  // Small, not trivially copyable: stored inline.
  std::shared_ptr<int> target;
  int tag = 0;
};

template <typename T>
long AllocsOfNestedCycles(const ContextKey<T>& key, ContextHandle ctx,
                          const T& value, int depth, int cycles) {
  std::vector<Token> tokens(static_cast<size_t>(depth));
  const testing_util::AllocationWindow window;
  for (int c = 0; c < cycles; ++c) {
    for (int d = 0; d < depth; ++d) {
      absl::StatusOr<Token> t = key.Set(ctx, value);
      if (!t.ok()) return -1;
      tokens[static_cast<size_t>(d)] = *t;
    }
    for (int d = depth - 1; d >= 0; --d) {
      if (!key.Reset(ctx, tokens[static_cast<size_t>(d)]).ok()) return -1;
    }
  }
  return window.count();
}

TEST(ContextKeyAllocTest, SetResetCyclesDoNotAllocate) {
  Loop loop;
  absl::StatusOr<ContextHandle> ctx = loop.NewContext("c");
  ASSERT_OK(ctx);
  const ContextKey<int> key("k", -1);
  // Warm-up: the first Sets make the context's table and the key's stack,
  // with room for three frames.
  ASSERT_GE(AllocsOfNestedCycles(key, *ctx, 7, 3, 1), 0);
  EXPECT_EQ(AllocsOfNestedCycles(key, *ctx, 7, 1, 1000), 0);
  EXPECT_EQ(AllocsOfNestedCycles(key, *ctx, 7, 3, 1000), 0);
  EXPECT_EQ(key.Get(*ctx).value_or(0), -1);

  const ContextKey<Ref> ref_key("ref");
  const Ref ref{std::make_shared<int>(1), 2};
  ASSERT_GE(AllocsOfNestedCycles(ref_key, *ctx, ref, 2, 1), 0);
  EXPECT_EQ(AllocsOfNestedCycles(ref_key, *ctx, ref, 2, 1000), 0);
  EXPECT_EQ(ref.target.use_count(), 1);  // Every stored copy was released.
}

}  // namespace
}  // namespace ctxloop
