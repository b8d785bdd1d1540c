// Copyright 2026 The ctxloop Authors.
//
// Direct tests of ctxloop::loop_internal::ValueTable, the per-context store
// behind ContextKey.

#include "ctxloop/loop/internal/value_table.h"

#include <algorithm>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "ctxloop/loop/internal/any_value.h"
#include "gtest/gtest.h"

namespace ctxloop {
namespace loop_internal {
namespace {

AnyValue Int(int v) { return AnyValue::Make<int>(v); }
AnyValue Str(std::string v) {
  return AnyValue::Make<std::string>(std::move(v));
}

// -1 for an unset key.
int IntAt(const ValueTable& t, uint64_t key) {
  const AnyValue* v = t.Get(key);
  return v == nullptr ? -1 : (*v->TryAs<int>());
}

// Reading a value as another type is detected, never undefined behaviour.
TEST(ValueTableTest, TryAsChecksTheType) {
  AnyValue i = Int(5);
  AnyValue str = Str("x");
  EXPECT_NE(i.TryAs<int>(), nullptr);
  EXPECT_EQ(i.TryAs<long>(), nullptr);
  EXPECT_EQ(i.TryAs<std::string>(), nullptr);
  EXPECT_EQ(str.TryAs<int>(), nullptr);
  EXPECT_EQ(*str.TryAs<std::string>(), "x");
  AnyValue moved = std::move(str);
  EXPECT_EQ(*moved.TryAs<std::string>(), "x");
  EXPECT_EQ(AnyValue().TryAs<int>(), nullptr);
  // The copy is under test.
  AnyValue copy = moved;  // NOLINT(performance-unnecessary-copy-initialization)
  EXPECT_EQ(*copy.TryAs<std::string>(), "x");
}

TEST(ValueTableTest, EmptyTable) {
  ValueTable t;
  EXPECT_TRUE(t.empty());
  EXPECT_EQ(t.Get(1), nullptr);
  EXPECT_FALSE(t.Reset(1, 1));
}

TEST(ValueTableTest, SetGetResetInOrder) {
  ValueTable t;
  t.Set(/*key=*/1, /*serial=*/10, Int(100));
  EXPECT_FALSE(t.empty());
  EXPECT_EQ(IntAt(t, 1), 100);
  t.Set(1, 11, Int(101));
  EXPECT_EQ(IntAt(t, 1), 101);
  EXPECT_TRUE(t.Reset(1, 11));
  EXPECT_EQ(IntAt(t, 1), 100);
  EXPECT_TRUE(t.Reset(1, 10));
  EXPECT_EQ(t.Get(1), nullptr);
  EXPECT_TRUE(t.empty());
}

TEST(ValueTableTest, OutOfOrderReset) {
  ValueTable t;
  t.Set(1, 10, Int(100));
  t.Set(1, 11, Int(101));
  t.Set(1, 12, Int(102));
  EXPECT_TRUE(t.Reset(1, 10));  // Oldest: the newest stays current.
  EXPECT_EQ(IntAt(t, 1), 102);
  EXPECT_TRUE(t.Reset(1, 12));  // Newest: back to 101, not to 100.
  EXPECT_EQ(IntAt(t, 1), 101);
  EXPECT_TRUE(t.Reset(1, 11));
  EXPECT_EQ(t.Get(1), nullptr);
}

TEST(ValueTableTest, ResetOfUnknownSerialOrKeyIsFalse) {
  ValueTable t;
  t.Set(1, 10, Int(100));
  EXPECT_FALSE(t.Reset(1, 99));  // No such Set.
  EXPECT_FALSE(t.Reset(2, 10));  // Serial of another key.
  EXPECT_FALSE(t.Reset(1, ValueTable::kInheritedSerial));
  EXPECT_EQ(IntAt(t, 1), 100);
  EXPECT_TRUE(t.Reset(1, 10));
  EXPECT_FALSE(t.Reset(1, 10));  // Already reset.
}

TEST(ValueTableTest, ManyKeysIndependent) {
  ValueTable t;
  for (uint32_t k = 1; k <= 10; ++k) t.Set(k, k, Int(static_cast<int>(k * 7)));
  // Remove some keys entirely (the table compacts its key list).
  EXPECT_TRUE(t.Reset(3, 3));
  EXPECT_TRUE(t.Reset(1, 1));
  EXPECT_TRUE(t.Reset(10, 10));
  for (uint32_t k = 1; k <= 10; ++k) {
    if (k == 1 || k == 3 || k == 10) {
      EXPECT_EQ(t.Get(k), nullptr) << k;
    } else {
      EXPECT_EQ(IntAt(t, k), static_cast<int>(k * 7)) << k;
    }
  }
  // Keys set again after removal.
  t.Set(3, 30, Int(3));
  EXPECT_EQ(IntAt(t, 3), 3);
  EXPECT_EQ(IntAt(t, 2), 14);
}

TEST(ValueTableTest, SnapshotFlattensToCurrentValues) {
  ValueTable t;
  t.Set(1, 10, Int(100));
  t.Set(1, 11, Int(101));
  t.Set(2, 12, Str("two"));
  std::shared_ptr<ValueTable> snap = t.Snapshot();
  ASSERT_NE(snap, nullptr);
  EXPECT_EQ(IntAt(*snap, 1), 101);
  EXPECT_EQ((*snap->Get(2)->TryAs<std::string>()), "two");
  // Inherited frames cannot be reset, by the parent's serials or serial 0.
  EXPECT_FALSE(snap->Reset(1, 11));
  EXPECT_FALSE(snap->Reset(1, 10));
  EXPECT_FALSE(snap->Reset(2, 12));
  EXPECT_FALSE(snap->Reset(1, ValueTable::kInheritedSerial));
  EXPECT_EQ(IntAt(*snap, 1), 101);
  // Only the current value was kept: a Set and its Reset on the snapshot
  // come back to 101, never to 100.
  snap->Set(1, 20, Int(200));
  EXPECT_EQ(IntAt(*snap, 1), 200);
  EXPECT_TRUE(snap->Reset(1, 20));
  EXPECT_EQ(IntAt(*snap, 1), 101);
  // Independent of the source table.
  EXPECT_TRUE(t.Reset(1, 11));
  EXPECT_TRUE(t.Reset(2, 12));
  EXPECT_EQ(IntAt(t, 1), 100);
  EXPECT_EQ(t.Get(2), nullptr);
  EXPECT_EQ(IntAt(*snap, 1), 101);
  EXPECT_EQ((*snap->Get(2)->TryAs<std::string>()), "two");
}

TEST(ValueTableTest, SnapshotOfEmptyTable) {
  ValueTable t;
  std::shared_ptr<ValueTable> snap = t.Snapshot();
  ASSERT_NE(snap, nullptr);
  EXPECT_TRUE(snap->empty());
}

TEST(ValueTableTest, CopyIsIndependent) {
  ValueTable t;
  t.Set(1, 10, Str("a"));
  ValueTable copy(t);
  EXPECT_TRUE(copy.Reset(1, 10));
  EXPECT_EQ(copy.Get(1), nullptr);
  ASSERT_NE(t.Get(1), nullptr);
  EXPECT_EQ((*t.Get(1)->TryAs<std::string>()), "a");
  t.Set(1, 11, Str("b"));
  EXPECT_EQ(copy.Get(1), nullptr);
}

TEST(AnyValueTest, InlineAndBoxed) {
  static_assert(AnyValue::kStoredInline<int>, "");
  static_assert(!AnyValue::kStoredInline<std::string>, "");
  AnyValue a = AnyValue::Make<int>(5);
  // Copies are under test.
  AnyValue b = a;  // NOLINT(performance-unnecessary-copy-initialization)
  EXPECT_EQ((*b.TryAs<int>()), 5);
  AnyValue s = AnyValue::Make<std::string>("hello");
  AnyValue s2 = s;  // NOLINT(performance-unnecessary-copy-initialization)
  // Boxed values are shared, not copied.
  EXPECT_EQ(&(*s.TryAs<std::string>()), &(*s2.TryAs<std::string>()));
  EXPECT_EQ((*s2.TryAs<std::string>()), "hello");
}

TEST(ValueTableTest, DeadFramesArePoppedOnceOnTop) {
  ValueTable t;
  for (uint64_t serial = 1; serial <= 3; ++serial) {
    t.Set(1, serial, AnyValue::Make<int>(static_cast<int>(serial)));
  }
  EXPECT_TRUE(t.Reset(1, 2));   // Middle: marked dead.
  EXPECT_FALSE(t.Reset(1, 2));  // Already reset.
  EXPECT_EQ((*t.Get(1)->TryAs<int>()), 3);
  EXPECT_TRUE(t.Reset(1, 3));  // Top: pops 3, then the dead 2.
  EXPECT_EQ((*t.Get(1)->TryAs<int>()), 1);
  EXPECT_TRUE(t.Reset(1, 1));
  EXPECT_EQ(t.Get(1), nullptr);
  EXPECT_TRUE(t.empty());
}

TEST(ValueTableTest, ResetsInStartOrderLeaveNewestCurrent) {
  // First-in-first-out resets (spans finished in start order).
  ValueTable t;
  constexpr int kDepth = 1000;
  for (int i = 1; i <= kDepth; ++i) t.Set(7, i, AnyValue::Make<int>(i));
  for (int i = 1; i < kDepth; ++i) {
    ASSERT_TRUE(t.Reset(7, i));
    ASSERT_EQ((*t.Get(7)->TryAs<int>()), kDepth);
  }
  ASSERT_TRUE(t.Reset(7, kDepth));
  EXPECT_TRUE(t.empty());
}

TEST(AnyValueTest, SmallNonTrivialValuesAreInlineAndReleased) {
  using Ref = std::shared_ptr<int>;
  static_assert(AnyValue::kStoredInline<Ref>, "");
  auto target = std::make_shared<int>(42);
  {
    AnyValue a = AnyValue::Make<Ref>(target);
    EXPECT_EQ(target.use_count(), 2);
    AnyValue b = a;  // A real copy of the shared_ptr, not a box.
    EXPECT_EQ(target.use_count(), 3);
    AnyValue c = std::move(b);
    EXPECT_EQ(target.use_count(), 3);
    EXPECT_EQ(*(*c.TryAs<Ref>()), 42);
    a = AnyValue();
    EXPECT_EQ(target.use_count(), 2);
  }
  EXPECT_EQ(target.use_count(), 1);
}

// Two overlapping requests on one context (A sets, B sets, A resets out of
// order, A sets again, B resets out of order, ...) keep the top live
// forever. A stack that kept every dead frame until everything above it was
// reset would hold 2M frames after 1M iterations; this one stays small.
TEST(ValueTableTest, OverlappingRequestsKeepTheStackSmall) {
  ValueTable t;
  uint64_t serial = 1;
  uint64_t a = serial++;
  t.Set(1, a, Int(0));
  size_t max_frames = 0;
  for (int i = 1; i <= 1000000; ++i) {
    const uint64_t b = serial++;
    t.Set(1, b, Int(2 * i));
    ASSERT_TRUE(t.Reset(1, a));  // Out of order: B is above.
    a = serial++;
    t.Set(1, a, Int(2 * i + 1));
    ASSERT_TRUE(t.Reset(1, b));  // Out of order: A is above.
    ASSERT_EQ(IntAt(t, 1), 2 * i + 1);
    max_frames = std::max(max_frames, t.FrameCountForTesting(1));
  }
  EXPECT_LE(max_frames, 4u);
  ASSERT_TRUE(t.Reset(1, a));
  EXPECT_TRUE(t.empty());
}

// Any interleaving: up to 8 requests overlap, each resets its Set at a random
// time. The current value is always the newest live Set, and the frames stay
// within twice the live Sets.
TEST(ValueTableTest, RandomInterleavingsStayBoundedAndCorrect) {
  ValueTable t;
  std::mt19937 rng(7);
  std::vector<uint64_t> live;  // Ascending serials of live Sets.
  uint64_t serial = 1;
  for (int i = 0; i < 200000; ++i) {
    if (live.size() < 8 && (live.empty() || rng() % 2 == 0)) {
      t.Set(1, serial, Int(static_cast<int>(serial)));
      live.push_back(serial++);
    } else {
      const size_t victim = rng() % live.size();
      ASSERT_TRUE(t.Reset(1, live[victim]));
      live.erase(live.begin() + static_cast<std::ptrdiff_t>(victim));
    }
    if (live.empty()) {
      ASSERT_EQ(t.Get(1), nullptr);
    } else {
      ASSERT_EQ(IntAt(t, 1), static_cast<int>(live.back()));
    }
    ASSERT_LE(t.FrameCountForTesting(1), 2 * live.size());
  }
}

// A key whose Sets were all reset keeps its empty stack (and its storage):
// it reads as unset, the table counts as empty, a snapshot leaves it out.
TEST(ValueTableTest, EmptiedStackIsKeptButReadsAsUnset) {
  ValueTable t;
  t.Set(1, 1, Int(10));
  t.Set(1, 2, Int(20));
  ASSERT_TRUE(t.Reset(1, 2));
  ASSERT_TRUE(t.Reset(1, 1));
  EXPECT_EQ(t.Get(1), nullptr);
  EXPECT_TRUE(t.empty());
  EXPECT_EQ(t.FrameCountForTesting(1), 0u);
  EXPECT_FALSE(t.Reset(1, 1));
  EXPECT_FALSE(t.PopTopFast(1, 1));
  std::shared_ptr<ValueTable> snap = t.Snapshot();
  EXPECT_TRUE(snap->empty());
  EXPECT_EQ(snap->Get(1), nullptr);
  t.PushInline<int>(1, 3, 30);
  EXPECT_EQ(IntAt(t, 1), 30);
  EXPECT_FALSE(t.empty());
  EXPECT_FALSE(t.PopTopFast(1, 2));
  EXPECT_TRUE(t.PopTopFast(1, 3));
  EXPECT_TRUE(t.empty());
}

// The fast in-order pop declines (changing nothing) whenever the slow path
// must decide: not the top, or dead frames below.
TEST(ValueTableTest, PopTopFastDeclinesOutOfOrderAndDeadFrames) {
  ValueTable t;
  t.Set(1, 1, Int(10));
  t.Set(1, 2, Int(20));
  t.Set(1, 3, Int(30));
  EXPECT_FALSE(t.PopTopFast(1, 2));  // Not the top.
  EXPECT_FALSE(t.PopTopFast(2, 3));  // Another key.
  EXPECT_EQ(t.FrameCountForTesting(1), 3u);
  ASSERT_TRUE(t.Reset(1, 2));        // Out of order: a dead frame.
  EXPECT_FALSE(t.PopTopFast(1, 3));  // Dead frame below: slow path.
  EXPECT_EQ(IntAt(t, 1), 30);
  ASSERT_TRUE(t.Reset(1, 3));  // Pops the dead frame too.
  EXPECT_EQ(IntAt(t, 1), 10);
  EXPECT_EQ(t.FrameCountForTesting(1), 1u);
  EXPECT_TRUE(t.PopTopFast(1, 1));
  EXPECT_EQ(t.Get(1), nullptr);
}

}  // namespace
}  // namespace loop_internal
}  // namespace ctxloop
