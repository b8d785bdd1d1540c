// Checks that a host workspace can build and use ctxloop's public API.
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "ctxloop/loop/loop.h"
#include "gtest/gtest.h"
#include "loop/loop.h"  // The host's own header of the same name.

namespace {

TEST(HostAppTest, PostedTaskRuns) {
  ctxloop::Loop loop;
  absl::StatusOr<ctxloop::ContextHandle> ctx = loop.NewContext();
  ASSERT_TRUE(ctx.ok()) << ctx.status();
  bool ran = false;
  absl::Status s =
      ctxloop::Post(*ctx, [&](ctxloop::ContextHandle c) { ran = true; });
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(loop.RunUntilIdle().ok());
  EXPECT_TRUE(ran);
}

TEST(HostAppTest, PostToEmptyHandleFails) {
  bool ran = false;
  absl::Status s = ctxloop::Post(ctxloop::ContextHandle{},
                                 [&](ctxloop::ContextHandle c) { ran = true; });
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(ran);
}

TEST(HostAppTest, HostHeaderIsItsOwn) {
  EXPECT_STREQ(host_loop::Name(), "host_app");
}

}  // namespace
