// Copyright 2026 The ctxloop Authors.
//
// Context destroy hooks (`AddDestroyHook` / `RemoveDestroyHook`, loop.h;
// shutdown case [S10] in loop/internal/loop_core.cc).

#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "ctxloop/loop/context_handle.h"
#include "ctxloop/loop/context_key.h"
#include "ctxloop/loop/internal/owned_core.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/loop/task.h"
#include "ctxloop/loop/testing/test_util.h"
#include "gtest/gtest.h"

namespace ctxloop {
namespace {

size_t HookCount(ContextHandle ctx) {
  loop_internal::LoopCore* core = loop_internal::FindOwnedCore(ctx);
  return core == nullptr ? 0 : core->DestroyHookCountForTesting(ctx);
}

TEST(DestroyHookTest, RunsAfterPendingTasksOfADestroyedContext) {
  Loop loop;
  absl::StatusOr<ContextHandle> ctx = loop.NewContext("c");
  ASSERT_OK(ctx);
  const ContextKey<int> key("k", -1);
  ASSERT_OK(key.Set(*ctx, 7));
  std::vector<std::string> order;
  ASSERT_OK(Post(*ctx, [&](ContextHandle) { order.push_back("local"); }));
  std::thread foreign([&] {
    ASSERT_OK(Post(*ctx, [&](ContextHandle) { order.push_back("foreign"); }));
  });
  foreign.join();
  absl::StatusOr<DestroyHookId> hook =
      AddDestroyHook(*ctx, [&](ContextHandle here) {
        order.push_back("hook");
        EXPECT_EQ(here, *ctx);
        // [S7] The handle is still valid, with its values.
        EXPECT_TRUE(loop.ContextName(here).ok());
        absl::StatusOr<int> v = key.Get(here);
        EXPECT_TRUE(v.ok() && *v == 7);
        // Posts to the dying context are refused, others run.
        EXPECT_EQ(Post(here, [](ContextHandle) {}).code(),
                  absl::StatusCode::kFailedPrecondition);
        EXPECT_EQ(AddDestroyHook(here, [](ContextHandle) {}).status().code(),
                  absl::StatusCode::kFailedPrecondition);
        EXPECT_TRUE(Post(loop.root(), [&](ContextHandle) {
                      order.push_back("posted by hook");
                    }).ok());
      });
  ASSERT_OK(hook);
  EXPECT_NE(hook->value, 0u);
  EXPECT_EQ(HookCount(*ctx), 1u);
  ASSERT_OK(loop.DestroyContext(*ctx));
  EXPECT_TRUE(order.empty());  // Not inside DestroyContext.
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(order, (std::vector<std::string>{"local", "foreign", "hook",
                                             "posted by hook"}));
  EXPECT_FALSE(loop.ContextName(*ctx).ok());  // Now stale.
  EXPECT_EQ(RemoveDestroyHook(*ctx, *hook).code(), absl::StatusCode::kNotFound);
}

TEST(DestroyHookTest, RunsAtShutdownAfterDrainBeforeWatchesAreTornDown) {
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  std::vector<std::string> order;
  FdWatch watch;
  absl::StatusOr<ShutdownReport> report;
  {
    Loop loop;
    absl::StatusOr<ContextHandle> ctx = loop.NewContext("c");
    ASSERT_OK(ctx);
    absl::StatusOr<FdWatch> w = loop.WatchFd(*ctx, fds[0], FdEvents::kRead,
                                             [](ContextHandle, FdEvents) {});
    ASSERT_OK(w);
    watch = *std::move(w);
    ASSERT_OK(Post(*ctx, [&](ContextHandle) { order.push_back("task"); }));
    ASSERT_OK(AddDestroyHook(*ctx, [&](ContextHandle here) {
      order.push_back("ctx hook");
      EXPECT_TRUE(watch.active());  // Before [S6].
      EXPECT_TRUE(Post(here, [&](ContextHandle) {
                    order.push_back("posted by ctx hook");
                  }).ok());
    }));
    ASSERT_OK(AddDestroyHook(loop.root(), [&](ContextHandle here) {
      order.push_back("root hook");
      EXPECT_EQ(here, loop.root());
    }));
    report = loop.Shutdown();
    ASSERT_OK(report);
    // After the hook phase, every AddDestroyHook is refused.
    EXPECT_EQ(AddDestroyHook(loop.root(), [](ContextHandle) {}).status().code(),
              absl::StatusCode::kFailedPrecondition);
  }
  EXPECT_EQ(order, (std::vector<std::string>{"task", "root hook", "ctx hook",
                                             "posted by ctx hook"}));
  EXPECT_EQ(report->tasks_run, 2u);
  EXPECT_EQ(report->tasks_dropped, 0u);
  EXPECT_EQ(report->watches_closed, 1u);
  close(fds[0]);
  close(fds[1]);
}

TEST(DestroyHookTest, HooksAddedByDrainedTasksRunAtShutdown) {
  int ran = 0;
  {
    Loop loop;
    ASSERT_OK(Post(loop.root(), [&](ContextHandle root) {
      absl::StatusOr<ContextHandle> c = NewChildContext(root, "late");
      ASSERT_OK(c);
      ASSERT_OK(AddDestroyHook(*c, [&](ContextHandle) { ++ran; }));
    }));
    ASSERT_OK(loop.Shutdown());
  }
  EXPECT_EQ(ran, 1);
}

TEST(DestroyHookTest, RemovedHookNeverRunsAndFreesItsCaptures) {
  auto captured = std::make_shared<int>(0);
  int ran = 0;
  Loop loop;
  absl::StatusOr<ContextHandle> ctx = loop.NewContext();
  ASSERT_OK(ctx);
  absl::StatusOr<DestroyHookId> removed =
      AddDestroyHook(*ctx, [&ran, captured](ContextHandle) { ran += 100; });
  ASSERT_OK(removed);
  ASSERT_OK(AddDestroyHook(*ctx, [&](ContextHandle) { ++ran; }));
  EXPECT_EQ(captured.use_count(), 2);
  ASSERT_OK(RemoveDestroyHook(*ctx, *removed));
  EXPECT_EQ(captured.use_count(), 1);  // Destroyed by the removal.
  EXPECT_EQ(RemoveDestroyHook(*ctx, *removed).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(RemoveDestroyHook(*ctx, DestroyHookId{12345}).code(),
            absl::StatusCode::kNotFound);
  ASSERT_OK(loop.DestroyContext(*ctx));
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(ran, 1);
}

TEST(DestroyHookTest, HookMayRemoveALaterHookOfItsContext) {
  Loop loop;
  absl::StatusOr<ContextHandle> ctx = loop.NewContext();
  ASSERT_OK(ctx);
  std::vector<int> ran;
  DestroyHookId second;
  ASSERT_OK(AddDestroyHook(*ctx, [&](ContextHandle here) {
    ran.push_back(1);
    EXPECT_TRUE(RemoveDestroyHook(here, second).ok());
  }));
  absl::StatusOr<DestroyHookId> id =
      AddDestroyHook(*ctx, [&](ContextHandle) { ran.push_back(2); });
  ASSERT_OK(id);
  second = *id;
  ASSERT_OK(AddDestroyHook(*ctx, [&](ContextHandle) { ran.push_back(3); }));
  ASSERT_OK(loop.DestroyContext(*ctx));
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(ran, (std::vector<int>{1, 3}));
}

TEST(DestroyHookTest, ThrowingHookIsReportedAndTheOthersRun) {
  std::vector<absl::Status> errors;
  Loop::Options options;
  options.error_handler = [&](ContextHandle, const absl::Status& s) {
    errors.push_back(s);
  };
  Loop loop(std::move(options));
  absl::StatusOr<ContextHandle> ctx = loop.NewContext();
  ASSERT_OK(ctx);
  int ran = 0;
  ASSERT_OK(AddDestroyHook(
      *ctx, [](ContextHandle) -> void { throw std::runtime_error("boom"); }));
  ASSERT_OK(AddDestroyHook(*ctx, [&](ContextHandle) { ++ran; }));
  ASSERT_OK(loop.DestroyContext(*ctx));
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(ran, 1);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].message().find("boom"), std::string::npos);
}

TEST(DestroyHookTest, BadArgumentsStaleClosingAndWrongThreadAreRefused) {
  Loop loop;
  absl::StatusOr<ContextHandle> ctx = loop.NewContext();
  ASSERT_OK(ctx);
  EXPECT_EQ(
      AddDestroyHook(ContextHandle(), [](ContextHandle) {}).status().code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(AddDestroyHook(*ctx, Task()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RemoveDestroyHook(ContextHandle(), DestroyHookId{1}).code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<DestroyHookId> id = AddDestroyHook(*ctx, [](ContextHandle) {});
  ASSERT_OK(id);
  std::thread other([&] {
    EXPECT_EQ(AddDestroyHook(*ctx, [](ContextHandle) {}).status().code(),
              absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(RemoveDestroyHook(*ctx, *id).code(),
              absl::StatusCode::kFailedPrecondition);
  });
  other.join();
  EXPECT_EQ(HookCount(*ctx), 1u);  // The foreign calls changed nothing.
  ASSERT_OK(loop.DestroyContext(*ctx));
  // Closing: refused at once.
  EXPECT_EQ(AddDestroyHook(*ctx, [](ContextHandle) {}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_OK(loop.RunUntilIdle());
  // Stale.
  EXPECT_EQ(AddDestroyHook(*ctx, [](ContextHandle) {}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  ContextHandle root = loop.root();
  ASSERT_OK(loop.Shutdown());
  // Loop gone: its hooks ran.
  EXPECT_EQ(RemoveDestroyHook(root, *id).code(), absl::StatusCode::kNotFound);
}

// Many short-lived users (streams) on one long-lived context: each adds a
// hook and removes it; nothing accumulates.
TEST(DestroyHookTest, AddRemoveManyTimesKeepsNothing) {
  Loop loop;
  ContextHandle root = loop.root();
  auto captured = std::make_shared<int>(0);
  std::vector<DestroyHookId> live;
  for (int i = 0; i < 200000; ++i) {
    absl::StatusOr<DestroyHookId> id =
        AddDestroyHook(root, [captured](ContextHandle) {});
    ASSERT_OK(id);
    live.push_back(*id);
    if (live.size() == 8) {  // Removed in a scrambled order.
      for (size_t j : {3, 0, 7, 1, 6, 2, 5, 4}) {
        ASSERT_OK(RemoveDestroyHook(root, live[j]));
      }
      live.clear();
      ASSERT_EQ(HookCount(root), 0u);
      ASSERT_EQ(captured.use_count(), 1);
    }
  }
  EXPECT_EQ(HookCount(root), 0u);
}

}  // namespace
}  // namespace ctxloop
