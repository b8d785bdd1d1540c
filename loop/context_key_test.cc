// Copyright 2026 The ctxloop Authors.
//
// Tests for context-local values (ctxloop/loop/context_key.h).

#include "ctxloop/loop/context_key.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "ctxloop/loop/context_handle.h"
#include "ctxloop/loop/internal/handle_access.h"
#include "ctxloop/loop/internal/owned_core.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/loop/testing/test_util.h"
#include "gtest/gtest.h"

namespace ctxloop {
namespace {

// The current value of `key` on `ctx`, or a marker string on error, so
// expectations read as values.
template <typename T>
T ValueOr(const ContextKey<T>& key, ContextHandle ctx, T on_error) {
  absl::StatusOr<T> v = key.Get(ctx);
  EXPECT_TRUE(v.ok()) << v.status();
  return v.ok() ? *v : on_error;
}

int IntOf(const ContextKey<int>& key, ContextHandle ctx) {
  return ValueOr(key, ctx, -999);
}

std::string StrOf(const ContextKey<std::string>& key, ContextHandle ctx) {
  return ValueOr(key, ctx, std::string("<error>"));
}

class ContextKeyTest : public testing::Test {
 protected:
  ContextHandle NewCtx(const char* name) {
    absl::StatusOr<ContextHandle> c = loop_.NewContext(name);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.value_or(ContextHandle());
  }
  ContextHandle NewChild(ContextHandle parent, const char* name) {
    absl::StatusOr<ContextHandle> c = loop_.NewChildContext(parent, name);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.value_or(ContextHandle());
  }

  Loop loop_;
};

TEST_F(ContextKeyTest, UnsetKeyGetsDefault) {
  const ContextKey<int> with_default("with_default", 42);
  const ContextKey<int> zero("zero");
  const ContextKey<std::string> str("str", "dflt");
  const ContextHandle ctx = NewCtx("c");
  EXPECT_EQ(IntOf(with_default, ctx), 42);
  EXPECT_EQ(IntOf(zero, ctx), 0);
  EXPECT_EQ(StrOf(str, ctx), "dflt");
  EXPECT_EQ(IntOf(with_default, loop_.root()), 42);
  EXPECT_EQ(with_default.name(), "with_default");
}

TEST_F(ContextKeyTest, SetGetResetInOrder) {
  const ContextKey<int> key("k", -1);
  const ContextHandle ctx = NewCtx("c");
  absl::StatusOr<Token> t1 = key.Set(ctx, 1);
  ASSERT_OK(t1);
  EXPECT_EQ(t1->context(), ctx);
  EXPECT_EQ(IntOf(key, ctx), 1);
  absl::StatusOr<Token> t2 = key.Set(ctx, 2);
  ASSERT_OK(t2);
  EXPECT_EQ(IntOf(key, ctx), 2);
  ASSERT_OK(key.Reset(ctx, *t2));
  EXPECT_EQ(IntOf(key, ctx), 1);
  ASSERT_OK(key.Reset(ctx, *t1));
  EXPECT_EQ(IntOf(key, ctx), -1);
}

TEST_F(ContextKeyTest, KeysAndContextsAreIndependent) {
  const ContextKey<int> a("a", -1);
  const ContextKey<int> b("b", -2);
  const ContextHandle c1 = NewCtx("c1");
  const ContextHandle c2 = NewCtx("c2");
  ASSERT_OK(a.Set(c1, 10));
  ASSERT_OK(b.Set(c1, 20));
  ASSERT_OK(a.Set(c2, 30));
  EXPECT_EQ(IntOf(a, c1), 10);
  EXPECT_EQ(IntOf(b, c1), 20);
  EXPECT_EQ(IntOf(a, c2), 30);
  EXPECT_EQ(IntOf(b, c2), -2);
  EXPECT_EQ(IntOf(a, loop_.root()), -1);
}

TEST_F(ContextKeyTest, ResetTwiceFails) {
  const ContextKey<int> key("k", -1);
  const ContextHandle ctx = NewCtx("c");
  absl::StatusOr<Token> t = key.Set(ctx, 1);
  ASSERT_OK(t);
  const Token copy = *t;
  ASSERT_OK(key.Reset(ctx, *t));
  absl::Status s = key.Reset(ctx, copy);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_EQ(IntOf(key, ctx), -1);
}

TEST_F(ContextKeyTest, EmptyTokenIsInvalid) {
  const ContextKey<int> key("k");
  const ContextHandle ctx = NewCtx("c");
  absl::Status s = key.Reset(ctx, Token());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
}

TEST_F(ContextKeyTest, ResetWithTokenFromAnotherContextNamesBoth) {
  const ContextKey<int> key("k", -1);
  const ContextHandle a = NewCtx("a");
  const ContextHandle b = NewCtx("b");
  absl::StatusOr<Token> t = key.Set(a, 1);
  ASSERT_OK(t);
  ASSERT_OK(key.Set(b, 2));
  absl::Status s = key.Reset(b, *t);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), a.DebugString())) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), b.DebugString())) << s;
  EXPECT_NE(a.DebugString(), b.DebugString());
  // Nothing changed, and the token is still good on its own context.
  EXPECT_EQ(IntOf(key, a), 1);
  EXPECT_EQ(IntOf(key, b), 2);
  ASSERT_OK(key.Reset(a, *t));
  EXPECT_EQ(IntOf(key, a), -1);
}

TEST_F(ContextKeyTest, ResetWithTokenOfAnotherKeyFails) {
  const ContextKey<int> k1("k1", -1);
  const ContextKey<int> k2("k2", -2);
  const ContextHandle ctx = NewCtx("c");
  absl::StatusOr<Token> t1 = k1.Set(ctx, 1);
  ASSERT_OK(t1);
  ASSERT_OK(k2.Set(ctx, 2));
  absl::Status s = k2.Reset(ctx, *t1);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_EQ(IntOf(k1, ctx), 1);
  EXPECT_EQ(IntOf(k2, ctx), 2);
  ASSERT_OK(k1.Reset(ctx, *t1));
}

TEST_F(ContextKeyTest, ForeignThreadOpsFail) {
  const ContextKey<int> key("k", -1);
  const ContextHandle ctx = NewCtx("c");
  absl::StatusOr<Token> t = key.Set(ctx, 1);
  ASSERT_OK(t);
  std::thread([&] {
    absl::StatusOr<int> g = key.Get(ctx);
    EXPECT_EQ(g.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_TRUE(absl::StrContains(g.status().message(), ctx.DebugString()))
        << g.status();
    absl::StatusOr<Token> st = key.Set(ctx, 5);
    EXPECT_EQ(st.status().code(), absl::StatusCode::kFailedPrecondition);
    absl::Status r = key.Reset(ctx, *t);
    EXPECT_EQ(r.code(), absl::StatusCode::kFailedPrecondition) << r;
    // Names the context and the token's context (here the same one).
    EXPECT_TRUE(absl::StrContains(r.message(), ctx.DebugString())) << r;
    EXPECT_TRUE(absl::StrContains(r.message(), t->context().DebugString()))
        << r;
  }).join();
  // Nothing changed; the token still works on the loop thread.
  EXPECT_EQ(IntOf(key, ctx), 1);
  ASSERT_OK(key.Reset(ctx, *t));
  EXPECT_EQ(IntOf(key, ctx), -1);
}

// context_key.h: an out-of-order reset of an older token leaves the newer
// value current, and once every Set is reset the key is back to its value
// before the first one.
//
// Python's contextvars would differ: `var.reset(t1)` restores the value from
// before t1's Set (the original), and a later `var.reset(t2)` restores the
// value from before t2's Set, i.e. A -- resurrecting a value whose Set was
// already reset.
TEST_F(ContextKeyTest, OutOfOrderResets) {
  const ContextKey<std::string> key("k", "orig");
  const ContextHandle ctx = NewCtx("c");
  absl::StatusOr<Token> t1 = key.Set(ctx, "A");
  ASSERT_OK(t1);
  absl::StatusOr<Token> t2 = key.Set(ctx, "B");
  ASSERT_OK(t2);
  ASSERT_OK(key.Reset(ctx, *t1));
  EXPECT_EQ(StrOf(key, ctx), "B");  // Python: "orig".
  ASSERT_OK(key.Reset(ctx, *t2));
  EXPECT_EQ(StrOf(key, ctx), "orig");  // Python: "A".
}

TEST_F(ContextKeyTest, OutOfOrderResetsInTheMiddle) {
  const ContextKey<int> key("k", 0);
  const ContextHandle ctx = NewCtx("c");
  std::vector<Token> tokens;
  for (int v = 1; v <= 4; ++v) {
    absl::StatusOr<Token> t = key.Set(ctx, v);
    ASSERT_OK(t);
    tokens.push_back(*t);
  }
  ASSERT_OK(key.Reset(ctx, tokens[1]));  // 2
  EXPECT_EQ(IntOf(key, ctx), 4);
  ASSERT_OK(key.Reset(ctx, tokens[3]));  // 4
  EXPECT_EQ(IntOf(key, ctx), 3);
  EXPECT_EQ(key.Reset(ctx, tokens[1]).code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_OK(key.Reset(ctx, tokens[2]));  // 3
  EXPECT_EQ(IntOf(key, ctx), 1);
  ASSERT_OK(key.Reset(ctx, tokens[0]));  // 1
  EXPECT_EQ(IntOf(key, ctx), 0);
}

// A child starts from the parent's values at creation; later writes on either
// side are not seen by the other (copy-on-write both ways).
TEST_F(ContextKeyTest, ChildSnapshotIsolatedBothWays) {
  const ContextKey<int> key("k", -1);
  const ContextKey<int> other("other", -2);
  const ContextHandle parent = NewCtx("parent");
  absl::StatusOr<Token> tp = key.Set(parent, 1);
  ASSERT_OK(tp);
  const ContextHandle child = NewChild(parent, "child");
  EXPECT_EQ(IntOf(key, child), 1);
  EXPECT_EQ(IntOf(other, child), -2);

  // Parent writes after creation: not visible in the child.
  absl::StatusOr<Token> tp2 = key.Set(parent, 2);
  ASSERT_OK(tp2);
  ASSERT_OK(other.Set(parent, 20));
  EXPECT_EQ(IntOf(key, child), 1);
  EXPECT_EQ(IntOf(other, child), -2);

  // Child writes: not visible in the parent.
  absl::StatusOr<Token> tc = key.Set(child, 3);
  ASSERT_OK(tc);
  EXPECT_EQ(IntOf(key, parent), 2);
  EXPECT_EQ(IntOf(key, child), 3);

  // Parent resets: the child keeps its snapshot.
  ASSERT_OK(key.Reset(parent, *tp2));
  ASSERT_OK(key.Reset(parent, *tp));
  EXPECT_EQ(IntOf(key, parent), -1);
  EXPECT_EQ(IntOf(key, child), 3);
  // Child resets its own Set: back to the inherited value, not the default.
  ASSERT_OK(key.Reset(child, *tc));
  EXPECT_EQ(IntOf(key, child), 1);
  // The parent's token cannot undo the inherited value in the child.
  absl::Status s = key.Reset(child, *tp);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_EQ(IntOf(key, child), 1);
}

// The parent's first write after creating a child must not leak into the
// child even when the child never writes (parent copies, child keeps).
TEST_F(ContextKeyTest, ParentResetAfterChildCreationNotVisibleInChild) {
  const ContextKey<int> key("k", -1);
  const ContextHandle parent = NewCtx("parent");
  absl::StatusOr<Token> t1 = key.Set(parent, 1);
  absl::StatusOr<Token> t2 = key.Set(parent, 2);
  ASSERT_OK(t1);
  ASSERT_OK(t2);
  const ContextHandle child = NewChild(parent, "child");
  ASSERT_OK(key.Reset(parent, *t2));
  EXPECT_EQ(IntOf(key, parent), 1);
  EXPECT_EQ(IntOf(key, child), 2);
  ASSERT_OK(key.Reset(parent, *t1));
  EXPECT_EQ(IntOf(key, child), 2);
}

TEST_F(ContextKeyTest, ChildOfParentWithoutValues) {
  const ContextKey<int> key("k", -1);
  const ContextHandle parent = NewCtx("parent");
  const ContextHandle child = NewChild(parent, "child");
  ASSERT_OK(key.Set(parent, 1));
  EXPECT_EQ(IntOf(key, child), -1);
  ASSERT_OK(key.Set(child, 2));
  EXPECT_EQ(IntOf(key, parent), 1);
}

TEST_F(ContextKeyTest, ThreeLevelInterleavings) {
  const ContextKey<std::string> key("k", "default");
  const ContextHandle a = NewCtx("a");
  absl::StatusOr<Token> ta1 = key.Set(a, "a1");
  ASSERT_OK(ta1);
  const ContextHandle b = NewChild(a, "b");  // Sees a1.
  absl::StatusOr<Token> ta2 = key.Set(a, "a2");
  ASSERT_OK(ta2);
  const ContextHandle c = NewChild(b, "c");  // Sees b's a1, not a2.
  EXPECT_EQ(StrOf(key, b), "a1");
  EXPECT_EQ(StrOf(key, c), "a1");
  absl::StatusOr<Token> tb = key.Set(b, "b1");
  ASSERT_OK(tb);
  const ContextHandle d = NewChild(b, "d");  // Sees b1.
  absl::StatusOr<Token> tc = key.Set(c, "c1");
  ASSERT_OK(tc);
  EXPECT_EQ(StrOf(key, a), "a2");
  EXPECT_EQ(StrOf(key, b), "b1");
  EXPECT_EQ(StrOf(key, c), "c1");
  EXPECT_EQ(StrOf(key, d), "b1");
  ASSERT_OK(key.Reset(b, *tb));
  EXPECT_EQ(StrOf(key, b), "a1");
  EXPECT_EQ(StrOf(key, d), "b1");
  ASSERT_OK(key.Reset(a, *ta1));  // Out of order in a.
  EXPECT_EQ(StrOf(key, a), "a2");
  ASSERT_OK(key.Reset(a, *ta2));
  EXPECT_EQ(StrOf(key, a), "default");
  EXPECT_EQ(StrOf(key, b), "a1");
  ASSERT_OK(key.Reset(c, *tc));
  EXPECT_EQ(StrOf(key, c), "a1");
  // Tokens are bound to their context.
  EXPECT_EQ(key.Reset(c, *tb).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(key.Reset(d, *ta1).code(), absl::StatusCode::kInvalidArgument);
  // A grandchild made from a child that inherited (never wrote) sees it.
  const ContextHandle e = NewChild(d, "e");
  EXPECT_EQ(StrOf(key, e), "b1");
}

TEST_F(ContextKeyTest, NonTriviallyCopyableValues) {
  const ContextKey<std::vector<std::string>> list("list");
  const ContextKey<std::string> big("big", "");
  const std::string long_value(1000, 'x');
  const ContextHandle parent = NewCtx("parent");
  absl::StatusOr<Token> tl = list.Set(parent, {"a", "b", "c"});
  absl::StatusOr<Token> tb = big.Set(parent, long_value);
  ASSERT_OK(tl);
  ASSERT_OK(tb);
  const ContextHandle child = NewChild(parent, "child");
  ASSERT_OK(list.Reset(parent, *tl));
  ASSERT_OK(big.Reset(parent, *tb));
  EXPECT_TRUE(ValueOr(list, parent, {"<error>"}).empty());
  EXPECT_EQ(StrOf(big, parent), "");
  // The child's snapshot survives the parent's resets.
  EXPECT_EQ(ValueOr(list, child, {}),
            (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(StrOf(big, child), long_value);
  // And the parent's destruction.
  ASSERT_OK(loop_.DestroyContext(parent));
  ASSERT_OK(loop_.RunUntilIdle());
  EXPECT_EQ(StrOf(big, child), long_value);
  absl::StatusOr<Token> tc = big.Set(child, "child-value");
  ASSERT_OK(tc);
  EXPECT_EQ(StrOf(big, child), "child-value");
  ASSERT_OK(big.Reset(child, *tc));
  EXPECT_EQ(StrOf(big, child), long_value);
}

// Values that fit inline (trivially copyable, <= 32 bytes) and ones that do
// not round-trip.
TEST_F(ContextKeyTest, InlineAndBoxedPlainValues) {
  struct Small {
    int64_t a, b, c, d;
  };
  struct Large {
    int64_t v[8];
  };
  const ContextKey<Small> small("small");
  const ContextKey<Large> large("large");
  const ContextHandle ctx = NewCtx("c");
  ASSERT_OK(small.Set(ctx, Small{1, 2, 3, 4}));
  Large l{};
  for (int i = 0; i < 8; ++i) l.v[i] = int64_t{i} * 11;
  ASSERT_OK(large.Set(ctx, l));
  absl::StatusOr<Small> s = small.Get(ctx);
  ASSERT_OK(s);
  EXPECT_EQ(s->d, 4);
  absl::StatusOr<Large> g = large.Get(ctx);
  ASSERT_OK(g);
  EXPECT_EQ(g->v[7], 77);
}

TEST_F(ContextKeyTest, DestroyedContextAndNullHandle) {
  const ContextKey<int> key("k", -1);
  const ContextHandle ctx = NewCtx("c");
  absl::StatusOr<Token> t = key.Set(ctx, 1);
  ASSERT_OK(t);
  ASSERT_OK(loop_.DestroyContext(ctx));
  ASSERT_OK(loop_.RunUntilIdle());
  EXPECT_EQ(key.Get(ctx).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(key.Set(ctx, 2).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(key.Reset(ctx, *t).code(), absl::StatusCode::kFailedPrecondition);
  // A new context in the reused slot does not see the old values or accept
  // the old token.
  const ContextHandle reused = NewCtx("reused");
  ASSERT_EQ(reused.context_id(), ctx.context_id());
  EXPECT_EQ(IntOf(key, reused), -1);
  EXPECT_EQ(key.Reset(reused, *t).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(key.Get(ContextHandle()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(key.Set(ContextHandle(), 1).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// `Peek` reads what `Get` returns without copying it, and is null exactly
// where `Get` fails: a foreign thread, a freed context, a null handle.
TEST_F(ContextKeyTest, PeekAgreesWithGet) {
  const ContextKey<std::string> key("k", "dflt");
  const ContextHandle ctx = NewCtx("c");
  const std::string* p = key.Peek(ctx);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(*p, "dflt");
  absl::StatusOr<Token> t = key.Set(ctx, std::string(100, 'x'));  // Boxed.
  ASSERT_OK(t);
  p = key.Peek(ctx);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(*p, std::string(100, 'x'));
  const ContextKey<int> small("small", 7);
  absl::StatusOr<Token> ts = small.Set(ctx, 8);  // Inline.
  ASSERT_OK(ts);
  ASSERT_NE(small.Peek(ctx), nullptr);
  EXPECT_EQ(*small.Peek(ctx), 8);
  std::thread([&] {
    EXPECT_EQ(key.Peek(ctx), nullptr);
    EXPECT_FALSE(key.Get(ctx).ok());
  }).join();
  ASSERT_OK(small.Reset(ctx, *ts));
  EXPECT_EQ(*small.Peek(ctx), 7);
  ASSERT_OK(key.Reset(ctx, *t));
  EXPECT_EQ(*key.Peek(ctx), "dflt");
  ASSERT_OK(loop_.DestroyContext(ctx));
  ASSERT_OK(loop_.RunUntilIdle());
  EXPECT_EQ(key.Peek(ctx), nullptr);
  EXPECT_FALSE(key.Get(ctx).ok());
  EXPECT_EQ(key.Peek(ContextHandle()), nullptr);
}

// [S15] A destroyed (closing) context refuses everything new at once, while
// Get and Reset keep working for the tasks already queued to it and its
// destroy hooks, until it is freed.
TEST_F(ContextKeyTest, ClosingContextRefusesNewThingsButGetAndResetWork) {
  const ContextKey<int> key("k", -1);
  const ContextHandle ctx = NewCtx("c");
  absl::StatusOr<Token> outer = key.Set(ctx, 1);
  ASSERT_OK(outer);
  absl::StatusOr<Token> inner = key.Set(ctx, 2);
  ASSERT_OK(inner);
  int queued_ran = 0;
  ASSERT_OK(Post(ctx, [&](ContextHandle here) {
    ++queued_ran;
    EXPECT_EQ(IntOf(key, here), 2);
    EXPECT_TRUE(key.Reset(here, *inner).ok());  // Restores the outer value.
    EXPECT_EQ(IntOf(key, here), 1);
    EXPECT_EQ(key.Set(here, 3).status().code(),
              absl::StatusCode::kFailedPrecondition);
  }));
  int hook_ran = 0;
  ASSERT_OK(AddDestroyHook(ctx, [&](ContextHandle here) {
    ++hook_ran;
    EXPECT_EQ(IntOf(key, here), 1);
    EXPECT_TRUE(key.Reset(here, *outer).ok());
    EXPECT_EQ(IntOf(key, here), -1);
  }));
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  ASSERT_OK(loop_.DestroyContext(ctx));
  // New things: refused at once.
  const auto refused = absl::StatusCode::kFailedPrecondition;
  EXPECT_EQ(key.Set(ctx, 4).status().code(), refused);
  EXPECT_EQ(Post(ctx, [](ContextHandle) {}).code(), refused);
  EXPECT_EQ(
      PostDelayed(ctx, absl::Seconds(1), [](ContextHandle) {}).status().code(),
      refused);
  EXPECT_EQ(NewChildContext(ctx, "child").status().code(), refused);
  EXPECT_EQ(loop_.NewChildContext(ctx, "child").status().code(), refused);
  EXPECT_EQ(
      loop_
          .WatchFd(ctx, fds[0], FdEvents::kRead, [](ContextHandle, FdEvents) {})
          .status()
          .code(),
      refused);
  EXPECT_EQ(AddDestroyHook(ctx, [](ContextHandle) {}).status().code(), refused);
  // Reading still works until the context is freed.
  EXPECT_EQ(IntOf(key, ctx), 2);
  EXPECT_TRUE(loop_.ContextName(ctx).ok());
  ASSERT_OK(loop_.RunUntilIdle());
  EXPECT_EQ(queued_ran, 1);
  EXPECT_EQ(hook_ran, 1);
  // Freed: stale.
  EXPECT_EQ(key.Get(ctx).status().code(), refused);
  close(fds[0]);
  close(fds[1]);
}

// Key ids are 64-bit: 2^32 key constructions after key A, a new key does not
// alias A (before, the 32-bit counter wrapped and B read and reset A's
// value).
TEST_F(ContextKeyTest, KeyIdsDoNotWrapAt32Bits) {
  const ContextHandle ctx = NewCtx("c");
  const ContextKey<int> a("a", -1);
  absl::StatusOr<Token> ta = a.Set(ctx, 7);
  ASSERT_OK(ta);
  const uint64_t a_id = loop_internal::HandleAccess::TokenKey(*ta);
  loop_internal::SetNextContextKeyIdForTesting(a_id + (uint64_t{1} << 32));
  const ContextKey<int> b("b", -2);
  EXPECT_EQ(IntOf(b, ctx), -2);
  EXPECT_EQ(b.Reset(ctx, *ta).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(IntOf(a, ctx), 7);
  absl::StatusOr<Token> tb = b.Set(ctx, 8);
  ASSERT_OK(tb);
  EXPECT_EQ(IntOf(a, ctx), 7);
  EXPECT_NE(loop_internal::HandleAccess::TokenKey(*tb), a_id);
}

// Two keys that share an id (impossible with 64-bit ids; forced here) and
// have different types: Get reports the mismatch as a status, never UB.
TEST_F(ContextKeyTest, ValueOfAnotherTypeIsAStatusNotUB) {
  const ContextHandle ctx = NewCtx("c");
  const uint64_t shared_id = uint64_t{1} << 48;
  loop_internal::SetNextContextKeyIdForTesting(shared_id);
  const ContextKey<int> as_int("as_int", 0);
  loop_internal::SetNextContextKeyIdForTesting(shared_id);
  const ContextKey<std::string> as_string("as_string", "");
  loop_internal::SetNextContextKeyIdForTesting(shared_id + 1);
  ASSERT_OK(as_int.Set(ctx, 5));
  absl::StatusOr<std::string> wrong = as_string.Get(ctx);
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInternal)
      << wrong.status();
  EXPECT_TRUE(absl::StrContains(wrong.status().message(), "as_string"));
  EXPECT_EQ(IntOf(as_int, ctx), 5);
}

// Through ContextKey: two overlapping requests on one busy
// context keep its memory flat (a bounded stack, not one frame per request).
TEST_F(ContextKeyTest, OverlappingRequestsKeepMemoryFlat) {
  const ContextHandle ctx = NewCtx("busy");
  const ContextKey<std::string> key("request", "");
  loop_internal::LoopCore* core = loop_internal::FindOwnedCore(ctx);
  ASSERT_NE(core, nullptr);
  absl::StatusOr<Token> a = key.Set(ctx, "a0");
  ASSERT_OK(a);
  const uint64_t id = loop_internal::HandleAccess::TokenKey(*a);
  size_t max_frames = 0;
  for (int i = 1; i <= 100000; ++i) {
    absl::StatusOr<Token> b = key.Set(ctx, "b");
    ASSERT_OK(b);
    ASSERT_OK(key.Reset(ctx, *a));
    a = key.Set(ctx, "a");
    ASSERT_OK(a);
    ASSERT_OK(key.Reset(ctx, *b));
    max_frames = std::max(max_frames, core->ValueFrameCountForTesting(ctx, id));
  }
  EXPECT_LE(max_frames, 4u);
  EXPECT_EQ(StrOf(key, ctx), "a");
}

TEST(ContextKeyShutdownTest, OpsAfterLoopShutdownFail) {
  const ContextKey<std::string> key("k", "d");
  ContextHandle ctx;
  Token t;
  {
    Loop loop;
    absl::StatusOr<ContextHandle> c = loop.NewContext("c");
    ASSERT_OK(c);
    ctx = *c;
    absl::StatusOr<Token> tok = key.Set(ctx, "v");
    ASSERT_OK(tok);
    t = *tok;
    ASSERT_OK(loop.Shutdown());
    // Shut down, object alive.
    EXPECT_EQ(key.Get(ctx).status().code(),
              absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(key.Set(ctx, "w").status().code(),
              absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(key.Reset(ctx, t).code(), absl::StatusCode::kFailedPrecondition);
  }
  // Loop object gone.
  EXPECT_EQ(key.Get(ctx).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(key.Set(ctx, "w").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(key.Reset(ctx, t).code(), absl::StatusCode::kFailedPrecondition);
  // Also with a new loop on this thread (maybe in the same registry slot).
  Loop next;
  EXPECT_EQ(key.Get(ctx).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(key.Reset(ctx, t).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(StrOf(key, next.root()), "d");
}

// Serials count per loop, so a Set on another loop's context can carry the
// same serial as the top Set here: Reset must still refuse its token (the
// inline fast path compares the whole handle), and change nothing.
TEST(ContextKeyTwoLoopsTest, TokenOfAnotherLoopWithTheSameSerialIsRefused) {
  const ContextKey<int> key("k", -1);
  Loop first;
  Loop second;
  absl::StatusOr<ContextHandle> a = first.NewContext("a");
  absl::StatusOr<ContextHandle> b = second.NewContext("b");
  ASSERT_OK(a);
  ASSERT_OK(b);
  absl::StatusOr<Token> ta = key.Set(*a, 1);
  absl::StatusOr<Token> tb = key.Set(*b, 2);
  ASSERT_OK(ta);
  ASSERT_OK(tb);
  ASSERT_EQ(loop_internal::HandleAccess::TokenSerial(*ta),
            loop_internal::HandleAccess::TokenSerial(*tb));
  absl::Status s = key.Reset(*b, *ta);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_EQ(IntOf(key, *b), 2);
  EXPECT_EQ(IntOf(key, *a), 1);
  ASSERT_OK(key.Reset(*b, *tb));
  ASSERT_OK(key.Reset(*a, *ta));
  EXPECT_EQ(IntOf(key, *a), -1);
  EXPECT_EQ(IntOf(key, *b), -1);
}

// A key whose Sets were all reset keeps its (empty) stack for the next Set:
// it reads as unset, a child inherits nothing for it, and a token of the
// earlier Sets stays used up.
TEST_F(ContextKeyTest, EmptiedKeyReadsAsUnsetAndIsNotInherited) {
  const ContextKey<int> key("k", -1);
  const ContextKey<int> other("other", -2);
  const ContextHandle ctx = NewCtx("c");
  absl::StatusOr<Token> t = key.Set(ctx, 1);
  ASSERT_OK(t);
  ASSERT_OK(other.Set(ctx, 5));
  ASSERT_OK(key.Reset(ctx, *t));
  EXPECT_EQ(IntOf(key, ctx), -1);
  const ContextHandle child = NewChild(ctx, "child");
  EXPECT_EQ(IntOf(key, child), -1);
  EXPECT_EQ(IntOf(other, child), 5);
  EXPECT_EQ(key.Reset(ctx, *t).code(), absl::StatusCode::kFailedPrecondition);
  absl::StatusOr<Token> again = key.Set(ctx, 3);
  ASSERT_OK(again);
  EXPECT_EQ(IntOf(key, ctx), 3);
  EXPECT_EQ(IntOf(key, child), -1);
  EXPECT_EQ(key.Reset(ctx, *t).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_OK(key.Reset(ctx, *again));
  EXPECT_EQ(IntOf(key, ctx), -1);
}

// A context made in the slot of a freed one starts with no values, and its
// first Set makes its own table (the freed context's table is gone: the inline
// Set path must not write into it; ASan reports it if it does).
TEST_F(ContextKeyTest, ContextInAFreedSlotStartsWithoutValues) {
  const ContextKey<int> key("k", -1);
  const ContextHandle old = NewCtx("old");
  absl::StatusOr<Token> t = key.Set(old, 1);
  ASSERT_OK(t);
  ASSERT_OK(loop_.DestroyContext(old));
  ASSERT_OK(loop_.RunUntilIdle());  // Frees it.
  const ContextHandle fresh = NewCtx("fresh");
  ASSERT_EQ(fresh.context_id(), old.context_id());  // The same slot.
  EXPECT_EQ(IntOf(key, fresh), -1);
  absl::StatusOr<Token> tf = key.Set(fresh, 2);
  ASSERT_OK(tf);
  EXPECT_EQ(IntOf(key, fresh), 2);
  absl::StatusOr<Token> tf2 = key.Set(fresh, 3);
  ASSERT_OK(tf2);
  EXPECT_EQ(IntOf(key, fresh), 3);
  ASSERT_OK(key.Reset(fresh, *tf2));
  ASSERT_OK(key.Reset(fresh, *tf));
  EXPECT_EQ(IntOf(key, fresh), -1);
  EXPECT_EQ(key.Get(old).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// Values are usable from tasks, with the handle the task receives.
TEST_F(ContextKeyTest, UsableFromTasks) {
  const ContextKey<int> key("k", -1);
  const ContextHandle ctx = NewCtx("c");
  ASSERT_OK(key.Set(ctx, 5));
  int seen = 0;
  ASSERT_OK(Post(ctx, [&](ContextHandle here) {
    seen = IntOf(key, here);
    absl::StatusOr<ContextHandle> child = NewChildContext(here, "child");
    ASSERT_TRUE(child.ok()) << child.status();
    EXPECT_EQ(IntOf(key, *child), 5);
  }));
  ASSERT_OK(loop_.RunUntilIdle());
  EXPECT_EQ(seen, 5);
}

}  // namespace
}  // namespace ctxloop
