// Copyright 2026 The ctxloop Authors.
//
// Tests for ctxloop/loop/loop.h and loop_thread.h: posting, ordering,
// contexts, errors, Run/Stop and LoopThread. Shutdown cases are in
// loop_shutdown_test.cc, timers in timer_test.cc.

#include "ctxloop/loop/loop.h"

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <limits>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ctxloop/loop/context_handle.h"
#include "ctxloop/loop/context_key.h"
#include "ctxloop/loop/fd_watch.h"
#include "ctxloop/loop/internal/handle_access.h"
#include "ctxloop/loop/internal/loop_registry.h"
#include "ctxloop/loop/internal/owned_core.h"
#include "ctxloop/loop/loop_thread.h"
#include "ctxloop/loop/task.h"
#include "ctxloop/loop/testing/test_util.h"
#include "gtest/gtest.h"

namespace ctxloop {
namespace {

using testing_util::Latch;

// --- Post --------------------------------------------------------------------

TEST(LoopTest, PostRunsOnLoopThreadWithExactHandle) {
  Loop loop;
  ASSERT_OK(loop.NewContext("a"));
  absl::StatusOr<ContextHandle> ctx = loop.NewContext("b");
  ASSERT_OK(ctx);
  const std::thread::id loop_thread = std::this_thread::get_id();
  int runs = 0;
  ASSERT_OK(Post(*ctx, [&](ContextHandle here) {
    ++runs;
    EXPECT_EQ(here, *ctx);
    EXPECT_NE(here, loop.root());
    EXPECT_EQ(std::this_thread::get_id(), loop_thread);
  }));
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(runs, 1);
}

TEST(LoopTest, PostNeverRunsInsidePost) {
  Loop loop;
  const ContextHandle root = loop.root();
  bool outer_ran = false;
  bool ran = false;
  // Outside Run().
  ASSERT_OK(Post(root, [&](ContextHandle) { ran = true; }));
  EXPECT_FALSE(ran);
  // From inside a task.
  ASSERT_OK(Post(root, [&](ContextHandle here) {
    absl::Status s = Post(here, [&](ContextHandle) { outer_ran = true; });
    EXPECT_TRUE(s.ok()) << s;
    EXPECT_FALSE(outer_ran);
  }));
  EXPECT_FALSE(ran);
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_TRUE(ran);
  EXPECT_TRUE(outer_ran);
}

TEST(LoopTest, SameThreadPostsRunInPostOrder) {
  Loop loop;
  absl::StatusOr<ContextHandle> a = loop.NewContext("a");
  absl::StatusOr<ContextHandle> b = loop.NewContext("b");
  ASSERT_OK(a);
  ASSERT_OK(b);
  std::vector<int> order;
  for (int i = 0; i < 100; ++i) {
    // Alternate contexts: the order is per loop, not per context.
    ASSERT_OK(Post(i % 2 ? *a : *b,
                   [&order, i](ContextHandle) { order.push_back(i); }));
  }
  ASSERT_OK(loop.RunUntilIdle());
  ASSERT_EQ(order.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(order[i], i);
}

TEST(LoopTest, TasksPostedDuringABatchRunAfterIt) {
  Loop loop;
  const ContextHandle root = loop.root();
  std::vector<std::string> order;
  ASSERT_OK(Post(root, [&](ContextHandle here) {
    order.push_back("a");
    ASSERT_OK(Post(here, [&](ContextHandle) { order.push_back("a.child"); }));
    order.push_back("a.end");
  }));
  ASSERT_OK(Post(root, [&](ContextHandle) { order.push_back("b"); }));
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(order, (std::vector<std::string>{"a", "a.end", "b", "a.child"}));
}

// "Tasks posted during a batch run in the next batch, after libevent has had
// a chance to dispatch ready fds": a task chain that keeps reposting itself
// must not starve an fd that became readable.
TEST(LoopTest, RepostingTaskChainDoesNotStarveReadyFds) {
  Loop loop;
  const ContextHandle root = loop.root();
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
  constexpr int kGenerations = 200;
  int generation = 0;
  int generation_at_fd = -1;
  absl::StatusOr<FdWatch> watch =
      loop.WatchFd(root, fds[0], FdEvents::kRead, [&](ContextHandle, FdEvents) {
        char c;
        EXPECT_EQ(read(fds[0], &c, 1), 1);
        if (generation_at_fd < 0) generation_at_fd = generation;
      });
  ASSERT_OK(watch);
  struct Chain {
    int* generation;
    int fd;
    void operator()(ContextHandle here) && {
      ++*generation;
      if (*generation == 1) {
        ASSERT_EQ(write(fd, "x", 1), 1);  // Readable from now on.
      }
      if (*generation < kGenerations) {
        ASSERT_OK(Post(here, Chain{generation, fd}));
      }
    }
  };
  ASSERT_OK(Post(root, Chain{&generation, fds[1]}));
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(generation, kGenerations);
  // The fd was polled right after the generation that made it readable (with
  // libevent's same-pass reactivation of the batch event, the callback would
  // run only after all 200 generations).
  EXPECT_GE(generation_at_fd, 1);
  EXPECT_LE(generation_at_fd, 2);
  watch->Stop();
  close(fds[0]);
  close(fds[1]);
}

TEST(LoopTest, CrossThreadPostsRunExactlyOnceFifoPerProducer) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 10000;
  Loop loop;
  absl::StatusOr<ContextHandle> ctx = loop.NewContext("x");
  ASSERT_OK(ctx);
  const std::thread::id loop_thread = std::this_thread::get_id();
  // Loop thread only.
  std::vector<int> next_expected(kThreads, 0);
  int total = 0;
  int errors = 0;
  std::atomic<int> failed_posts{0};
  std::vector<std::thread> producers;
  for (int t = 0; t < kThreads; ++t) {
    producers.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        absl::Status s = Post(*ctx, [&, t, i](ContextHandle here) {
          if (std::this_thread::get_id() != loop_thread || here != *ctx ||
              next_expected[t] != i) {
            ++errors;
          }
          next_expected[t] = i + 1;
          if (++total == kThreads * kPerThread) loop.Stop();
        });
        if (!s.ok()) failed_posts.fetch_add(1);
      }
    });
  }
  ASSERT_OK(loop.Run());
  for (std::thread& p : producers) p.join();
  EXPECT_EQ(failed_posts.load(), 0);
  EXPECT_EQ(errors, 0);
  EXPECT_EQ(total, kThreads * kPerThread);
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(next_expected[t], kPerThread);
  // Nothing left over: exactly once.
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(total, kThreads * kPerThread);
}

TEST(LoopTest, PostInvalidArguments) {
  Loop loop;
  absl::Status s = Post(ContextHandle(), [](ContextHandle) {});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  s = Post(loop.root(), Task());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  s = Post(loop.root(), nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_TRUE(ContextHandle().is_null());
  EXPECT_FALSE(loop.root().is_null());
  EXPECT_EQ(ContextHandle().DebugString(), "ctx null");
}

TEST(LoopTest, PostToDestroyedOrClosingContextFails) {
  Loop loop;
  absl::StatusOr<ContextHandle> ctx = loop.NewContext("doomed");
  ASSERT_OK(ctx);
  ASSERT_OK(loop.DestroyContext(*ctx));
  // Closing: the destroy marker has not run yet.
  bool ran = false;
  absl::Status s = Post(*ctx, [&](ContextHandle) { ran = true; });
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), ctx->DebugString())) << s;
  // Closing, from another thread.
  std::thread([&] {
    absl::Status f = Post(*ctx, [&](ContextHandle) { ran = true; });
    EXPECT_EQ(f.code(), absl::StatusCode::kFailedPrecondition) << f;
  }).join();
  ASSERT_OK(loop.RunUntilIdle());
  // Destroyed.
  s = Post(*ctx, [&](ContextHandle) { ran = true; });
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  std::thread([&] {
    absl::Status f = Post(*ctx, [&](ContextHandle) { ran = true; });
    EXPECT_EQ(f.code(), absl::StatusCode::kFailedPrecondition) << f;
  }).join();
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_FALSE(ran);
}

// [S7] Tasks posted before DestroyContext (locally and from another thread)
// run, with the handle still valid; then the handle goes stale.
TEST(LoopTest, DestroyContextRunsTasksAlreadyPosted) {
  Loop loop;
  absl::StatusOr<ContextHandle> ctx = loop.NewContext("doomed");
  ASSERT_OK(ctx);
  const ContextKey<int> key("k", -1);
  ASSERT_OK(key.Set(*ctx, 7));
  std::vector<int> ran;
  auto check = [&](int id) {
    return [&, id](ContextHandle here) {
      EXPECT_EQ(here, *ctx);
      absl::StatusOr<std::string> name = loop.ContextName(here);
      EXPECT_TRUE(name.ok()) << name.status();
      absl::StatusOr<int> v = key.Get(here);
      EXPECT_TRUE(v.ok() && *v == 7) << v.status();
      ran.push_back(id);
    };
  };
  ASSERT_OK(Post(*ctx, check(0)));
  std::thread([&] {
    for (int i = 1; i <= 100; ++i) {
      EXPECT_TRUE(Post(*ctx, check(i)).ok());
    }
  }).join();
  ASSERT_OK(Post(*ctx, check(101)));
  ASSERT_OK(loop.DestroyContext(*ctx));
  ASSERT_OK(loop.RunUntilIdle());
  ASSERT_EQ(ran.size(), 102u);
  // Local 0, then the cross-thread posts (taken by the loop when it destroys),
  // local 101: cross-thread vs local order is unspecified, so sort-check.
  std::vector<bool> seen(102, false);
  for (int id : ran) seen[id] = true;
  for (int i = 0; i < 102; ++i) EXPECT_TRUE(seen[i]) << i;
  // FIFO per producer.
  int last_remote = 0;
  for (int id : ran) {
    if (id >= 1 && id <= 100) {
      EXPECT_EQ(id, last_remote + 1);
      last_remote = id;
    }
  }
  EXPECT_EQ(loop.ContextName(*ctx).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(key.Get(*ctx).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// [S7] DestroyContext from inside a task: the rest of the batch and what was
// posted before still run on the context.
TEST(LoopTest, DestroyContextFromInsideATask) {
  Loop loop;
  absl::StatusOr<ContextHandle> ctx = loop.NewContext("doomed");
  ASSERT_OK(ctx);
  std::vector<std::string> order;
  ASSERT_OK(Post(*ctx, [&](ContextHandle here) {
    order.push_back("destroyer");
    EXPECT_TRUE(DestroyContext(here).ok());
    absl::Status s = Post(here, [&](ContextHandle) { order.push_back("bad"); });
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  }));
  ASSERT_OK(Post(*ctx, [&](ContextHandle here) {
    EXPECT_TRUE(loop.ContextName(here).ok());
    order.push_back("pending");
  }));
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(order, (std::vector<std::string>{"destroyer", "pending"}));
  EXPECT_FALSE(loop.ContextName(*ctx).ok());
}

// --- Errors from tasks -------------------------------------------------------

TEST(LoopTest, ThrowingTasksAreReportedAndLoopContinues) {
  struct Reported {
    ContextHandle ctx;
    absl::Status error;
  };
  std::vector<Reported> reported;
  Loop::Options options;
  options.error_handler = [&](ContextHandle ctx, const absl::Status& error) {
    reported.push_back({ctx, error});
  };
  Loop loop(std::move(options));
  absl::StatusOr<ContextHandle> a = loop.NewContext("a");
  absl::StatusOr<ContextHandle> b = loop.NewContext("b");
  ASSERT_OK(a);
  ASSERT_OK(b);
  std::vector<int> ran;
  ASSERT_OK(Post(*a, [](ContextHandle) -> void {
    throw std::runtime_error("boom-runtime");
  }));
  ASSERT_OK(Post(*a, [&](ContextHandle) { ran.push_back(1); }));
  ASSERT_OK(Post(*b, [](ContextHandle) -> void { throw 42; }));
  ASSERT_OK(Post(*b, [&](ContextHandle) { ran.push_back(2); }));
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(ran, (std::vector<int>{1, 2}));
  ASSERT_EQ(reported.size(), 2u);
  EXPECT_EQ(reported[0].ctx, *a);
  EXPECT_TRUE(absl::StrContains(reported[0].error.message(), "boom-runtime"))
      << reported[0].error;
  EXPECT_FALSE(reported[0].error.ok());
  EXPECT_EQ(reported[1].ctx, *b);
  EXPECT_FALSE(reported[1].error.ok());
  EXPECT_TRUE(absl::StrContains(reported[1].error.message(), "non-std"))
      << reported[1].error;
  EXPECT_EQ(loop.stats().tasks_run, 4u);
}

TEST(LoopTest, DefaultErrorHandlerPrintsContext) {
  Loop loop;
  absl::StatusOr<ContextHandle> ctx = loop.NewContext("thrower");
  ASSERT_OK(ctx);
  bool after = false;
  ASSERT_OK(Post(*ctx, [](ContextHandle) -> void {
    throw std::logic_error("default-handler-msg");
  }));
  ASSERT_OK(Post(*ctx, [&](ContextHandle) { after = true; }));
  testing::internal::CaptureStderr();
  absl::Status s = loop.RunUntilIdle();
  const std::string err = testing::internal::GetCapturedStderr();
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(after);
  EXPECT_TRUE(absl::StrContains(err, "default-handler-msg")) << err;
  EXPECT_TRUE(absl::StrContains(err, ctx->DebugString())) << err;
}

TEST(LoopTest, ThrowingErrorHandlerDoesNotCrash) {
  Loop::Options options;
  options.error_handler = [](ContextHandle, const absl::Status&) {
    throw std::runtime_error("handler threw");
  };
  Loop loop(std::move(options));
  bool after = false;
  ASSERT_OK(Post(loop.root(), [](ContextHandle) -> void { throw 1; }));
  ASSERT_OK(Post(loop.root(), [&](ContextHandle) { after = true; }));
  testing::internal::CaptureStderr();
  absl::Status s = loop.RunUntilIdle();
  const std::string err = testing::internal::GetCapturedStderr();
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(after);
  EXPECT_TRUE(absl::StrContains(err, "error handler threw")) << err;
}

// --- Run / Stop --------------------------------------------------------------

TEST(LoopTest, StopFromAnotherThreadMakesRunReturn) {
  Loop loop;
  Latch running;
  ASSERT_OK(Post(loop.root(), [&](ContextHandle) { running.Open(); }));
  std::thread stopper([&] {
    running.Wait();
    loop.Stop();
  });
  ASSERT_OK(loop.Run());
  stopper.join();
  // The loop still works.
  bool ran = false;
  ASSERT_OK(Post(loop.root(), [&](ContextHandle) { ran = true; }));
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_TRUE(ran);
}

// Stop() from another thread while a batch runs: the batch's other tasks stay
// queued for the next Run.
TEST(LoopTest, StopFromAnotherThreadLeavesRestOfBatchQueued) {
  Loop loop;
  Latch in_first;
  Latch release_first;
  std::vector<int> ran;
  ASSERT_OK(Post(loop.root(), [&](ContextHandle) {
    ran.push_back(1);
    in_first.Open();
    release_first.Wait();
  }));
  ASSERT_OK(Post(loop.root(), [&](ContextHandle) { ran.push_back(2); }));
  ASSERT_OK(Post(loop.root(), [&](ContextHandle) { ran.push_back(3); }));
  std::thread stopper([&] {
    in_first.Wait();
    loop.Stop();
    release_first.Open();
  });
  ASSERT_OK(loop.Run());
  stopper.join();
  EXPECT_EQ(ran, (std::vector<int>{1}));
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(ran, (std::vector<int>{1, 2, 3}));
}

TEST(LoopTest, StopBeforeRunReturnsAtOnceThenNextRunIsNormal) {
  Loop loop;
  bool ran = false;
  ASSERT_OK(Post(loop.root(), [&](ContextHandle) { ran = true; }));
  loop.Stop();
  ASSERT_OK(loop.Run());  // Returns at once; would hang otherwise.
  EXPECT_FALSE(ran);
  // The next Run runs normally until the next Stop.
  ASSERT_OK(Post(loop.root(), [&](ContextHandle) { loop.Stop(); }));
  ASSERT_OK(loop.Run());
  EXPECT_TRUE(ran);
}

TEST(LoopTest, StopFromAnotherThreadBeforeRun) {
  Loop loop;
  std::thread([&] { loop.Stop(); }).join();
  ASSERT_OK(loop.Run());  // Returns at once.
  int runs = 0;
  ASSERT_OK(Post(loop.root(), [&](ContextHandle) {
    if (++runs == 1) {
      // The stale wake-up from the earlier Stop must not end this Run.
      EXPECT_TRUE(Post(loop.root(), [&](ContextHandle) {
                    ++runs;
                    loop.Stop();
                  }).ok());
    }
  }));
  ASSERT_OK(loop.Run());
  EXPECT_EQ(runs, 2);
}

TEST(LoopTest, StopInsideTaskKeepsRestOfBatchInOrder) {
  for (bool until_idle : {false, true}) {
    SCOPED_TRACE(until_idle ? "RunUntilIdle" : "Run");
    Loop loop;
    const ContextHandle root = loop.root();
    std::vector<int> order;
    ASSERT_OK(Post(root, [&](ContextHandle here) {
      order.push_back(1);
      EXPECT_TRUE(Post(here, [&](ContextHandle) { order.push_back(4); }).ok());
      loop.Stop();
    }));
    ASSERT_OK(Post(root, [&](ContextHandle) { order.push_back(2); }));
    ASSERT_OK(Post(root, [&](ContextHandle) { order.push_back(3); }));
    ASSERT_OK(until_idle ? loop.RunUntilIdle() : loop.Run());
    EXPECT_EQ(order, (std::vector<int>{1}));
    ASSERT_OK(loop.RunUntilIdle());
    EXPECT_EQ(order, (std::vector<int>{1, 2, 3, 4}));
  }
}

TEST(LoopTest, StopInsideTaskThenNextRun) {
  Loop loop;
  std::vector<int> order;
  ASSERT_OK(Post(loop.root(), [&](ContextHandle) {
    order.push_back(1);
    loop.Stop();
  }));
  ASSERT_OK(Post(loop.root(), [&](ContextHandle) {
    order.push_back(2);
    loop.Stop();
  }));
  ASSERT_OK(loop.Run());
  EXPECT_EQ(order, (std::vector<int>{1}));
  ASSERT_OK(loop.Run());
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
}

TEST(LoopTest, RunFromAnotherThreadFails) {
  Loop loop;
  std::thread([&] {
    absl::Status s = loop.Run();
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
    s = loop.RunUntilIdle();
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
    EXPECT_EQ(loop.NewContext("x").status().code(),
              absl::StatusCode::kFailedPrecondition);
  }).join();
  ASSERT_OK(loop.RunUntilIdle());
}

TEST(LoopTest, ReentrantRunFails) {
  Loop loop;
  int checked = 0;
  ASSERT_OK(Post(loop.root(), [&](ContextHandle) {
    absl::Status s = loop.Run();
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
    s = loop.RunUntilIdle();
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
    ++checked;
    loop.Stop();
  }));
  ASSERT_OK(loop.Run());
  ASSERT_OK(Post(loop.root(), [&](ContextHandle) {
    absl::Status s = loop.Run();
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
    ++checked;
  }));
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(checked, 2);
}

TEST(LoopTest, IsOnLoopThread) {
  Loop loop;
  absl::StatusOr<ContextHandle> ctx = loop.NewContext();
  ASSERT_OK(ctx);
  EXPECT_TRUE(loop.IsOnLoopThread());
  EXPECT_TRUE(IsOnLoopThread(loop.root()));
  EXPECT_TRUE(IsOnLoopThread(*ctx));
  EXPECT_FALSE(IsOnLoopThread(ContextHandle()));
  std::thread([&] {
    EXPECT_FALSE(loop.IsOnLoopThread());
    EXPECT_FALSE(IsOnLoopThread(loop.root()));
    EXPECT_FALSE(IsOnLoopThread(*ctx));
  }).join();
  // A second loop's thread is not this loop's thread.
  std::thread([&] {
    Loop other;
    EXPECT_TRUE(other.IsOnLoopThread());
    EXPECT_TRUE(IsOnLoopThread(other.root()));
    EXPECT_FALSE(IsOnLoopThread(loop.root()));
  }).join();
}

// --- Contexts ----------------------------------------------------------------

TEST(LoopTest, NewContextsAndNames) {
  Loop loop;
  absl::StatusOr<std::string> root_name = loop.ContextName(loop.root());
  ASSERT_OK(root_name);
  EXPECT_EQ(*root_name, "root");
  absl::StatusOr<ContextHandle> a = loop.NewContext("alpha");
  absl::StatusOr<ContextHandle> anon = loop.NewContext();
  ASSERT_OK(a);
  ASSERT_OK(anon);
  EXPECT_NE(*a, *anon);
  EXPECT_NE(*a, loop.root());
  EXPECT_EQ(a->loop_id(), loop.root().loop_id());
  EXPECT_NE(a->context_id(), anon->context_id());
  EXPECT_EQ(*loop.ContextName(*a), "alpha");
  EXPECT_EQ(*loop.ContextName(*anon), "");
  absl::StatusOr<ContextHandle> child = loop.NewChildContext(*a, "beta");
  ASSERT_OK(child);
  EXPECT_EQ(*loop.ContextName(*child), "beta");
  // The free function, from a task that holds only a handle.
  ContextHandle grandchild;
  ASSERT_OK(Post(*child, [&](ContextHandle here) {
    absl::StatusOr<ContextHandle> g = NewChildContext(here, "gamma");
    ASSERT_TRUE(g.ok()) << g.status();
    grandchild = *g;
  }));
  ASSERT_OK(loop.RunUntilIdle());
  ASSERT_FALSE(grandchild.is_null());
  EXPECT_EQ(*loop.ContextName(grandchild), "gamma");
  // Not from another thread.
  std::thread([&] {
    EXPECT_EQ(NewChildContext(*a, "x").status().code(),
              absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(loop.ContextName(*a).status().code(),
              absl::StatusCode::kFailedPrecondition);
  }).join();
  EXPECT_EQ(NewChildContext(ContextHandle(), "x").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(LoopTest, NewChildContextWithParentOfAnotherLoopFails) {
  Loop loop;
  Loop other;
  absl::StatusOr<ContextHandle> foreign_parent = other.NewContext("p");
  ASSERT_OK(foreign_parent);
  absl::StatusOr<ContextHandle> child =
      loop.NewChildContext(*foreign_parent, "c");
  EXPECT_EQ(child.status().code(), absl::StatusCode::kInvalidArgument)
      << child.status();
  child = loop.NewChildContext(other.root());
  EXPECT_EQ(child.status().code(), absl::StatusCode::kInvalidArgument)
      << child.status();
  child = loop.NewChildContext(ContextHandle());
  EXPECT_FALSE(child.ok());
}

TEST(LoopTest, MembersRefuseContextsOfAnotherLoop) {
  Loop loop;
  Loop other;  // Same thread: the free functions would accept its handles.
  absl::StatusOr<ContextHandle> theirs = other.NewContext("theirs");
  ASSERT_OK(theirs);
  EXPECT_EQ(loop.DestroyContext(*theirs).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(loop.ContextName(*theirs).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Untouched: still live on its own loop.
  EXPECT_EQ(*other.ContextName(*theirs), "theirs");
  ASSERT_OK(other.DestroyContext(*theirs));
}

TEST(LoopTest, DestroyRootAndDoubleDestroyFail) {
  Loop loop;
  absl::Status s = loop.DestroyContext(loop.root());
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  // The root still works.
  bool ran = false;
  ASSERT_OK(Post(loop.root(), [&](ContextHandle) { ran = true; }));
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_TRUE(ran);

  absl::StatusOr<ContextHandle> ctx = loop.NewContext("c");
  ASSERT_OK(ctx);
  ASSERT_OK(loop.DestroyContext(*ctx));
  s = loop.DestroyContext(*ctx);  // While closing.
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  ASSERT_OK(loop.RunUntilIdle());
  s = loop.DestroyContext(*ctx);  // Stale.
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_EQ(DestroyContext(ContextHandle()).code(),
            absl::StatusCode::kInvalidArgument);
  std::thread([&] {
    absl::StatusOr<ContextHandle> other = loop.NewContext();
    EXPECT_FALSE(other.ok());
  }).join();
}

TEST(LoopTest, StaleHandleDetectedAfterContextIndexReuse) {
  Loop loop;
  absl::StatusOr<ContextHandle> old_ctx = loop.NewContext("old");
  ASSERT_OK(old_ctx);
  ASSERT_OK(loop.DestroyContext(*old_ctx));
  ASSERT_OK(loop.RunUntilIdle());
  absl::StatusOr<ContextHandle> new_ctx = loop.NewContext("new");
  ASSERT_OK(new_ctx);
  // The index is reused; the generation tells the two apart.
  ASSERT_EQ(new_ctx->context_id(), old_ctx->context_id());
  EXPECT_NE(*new_ctx, *old_ctx);
  EXPECT_NE(new_ctx->DebugString(), old_ctx->DebugString());
  bool old_ran = false;
  bool new_ran = false;
  absl::Status s = Post(*old_ctx, [&](ContextHandle) { old_ran = true; });
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  std::thread([&] {
    absl::Status f = Post(*old_ctx, [&](ContextHandle) { old_ran = true; });
    EXPECT_EQ(f.code(), absl::StatusCode::kFailedPrecondition) << f;
  }).join();
  EXPECT_FALSE(loop.ContextName(*old_ctx).ok());
  EXPECT_EQ(loop.DestroyContext(*old_ctx).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(*loop.ContextName(*new_ctx), "new");
  ASSERT_OK(Post(*new_ctx, [&](ContextHandle) { new_ran = true; }));
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_FALSE(old_ran);
  EXPECT_TRUE(new_ran);
}

// [S16] A context slot whose generation would wrap is retired: a handle of
// its first generation can never name a new context. Before, the generation
// wrapped to 1 and the new context had exactly the old handle.
TEST(LoopTest, ContextSlotIsRetiredBeforeItsGenerationWraps) {
  Loop loop;
  loop_internal::LoopCore* core = loop_internal::FindOwnedCore(loop.root());
  ASSERT_NE(core, nullptr);
  absl::StatusOr<ContextHandle> first = loop.NewContext("first");
  ASSERT_OK(first);
  const uint32_t slot = first->context_id();
  ASSERT_OK(loop.DestroyContext(*first));
  ASSERT_OK(loop.RunUntilIdle());
  core->SetFreeContextGenerationForTesting(
      slot, std::numeric_limits<uint32_t>::max() - 1);
  absl::StatusOr<ContextHandle> last = loop.NewContext("last");
  ASSERT_OK(last);
  ASSERT_EQ(last->context_id(), slot);
  EXPECT_EQ(loop_internal::HandleAccess::ContextGeneration(*last),
            std::numeric_limits<uint32_t>::max());
  ASSERT_OK(loop.DestroyContext(*last));
  ASSERT_OK(loop.RunUntilIdle());
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<ContextHandle> next = loop.NewContext("next");
    ASSERT_OK(next);
    EXPECT_NE(next->context_id(), slot);
    EXPECT_NE(*next, *first);
    EXPECT_NE(*next, *last);
  }
  const ContextKey<int> key("k");
  EXPECT_EQ(key.Get(*first).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Post(*first, [](ContextHandle) {}).code(),
            absl::StatusCode::kFailedPrecondition);
}

// [S16] The same for a loop registry slot: a stale handle of a loop whose
// slot generation would wrap never names a later loop.
TEST(LoopTest, LoopSlotIsRetiredBeforeItsGenerationWraps) {
  uint32_t slot;
  {
    Loop first;
    slot = first.root().loop_id();
  }
  loop_internal::LoopRegistry::SetGenerationForTesting(
      slot, std::numeric_limits<uint32_t>::max() - 1);
  ContextHandle last_root;
  {
    Loop last;  // Takes the free slot just released (LIFO).
    last_root = last.root();
    ASSERT_EQ(last_root.loop_id(), slot);
    EXPECT_EQ(loop_internal::HandleAccess::LoopGeneration(last_root),
              std::numeric_limits<uint32_t>::max());
  }
  for (int i = 0; i < 3; ++i) {
    Loop next;
    EXPECT_NE(next.root().loop_id(), slot);
    EXPECT_NE(next.root(), last_root);
  }
  EXPECT_EQ(Post(last_root, [](ContextHandle) {}).code(),
            absl::StatusCode::kFailedPrecondition);
}

// ContextHandle prints as its DebugString through operator<< (streams,
// gtest) and AbslStringify (absl::StrCat on newer Abseil, any Append sink).
TEST(LoopTest, ContextHandlePrints) {
  Loop loop;
  absl::StatusOr<ContextHandle> ctx = loop.NewContext("c");
  ASSERT_OK(ctx);
  std::ostringstream os;
  os << *ctx << " " << ContextHandle();
  EXPECT_EQ(os.str(), ctx->DebugString() + " ctx null");
  EXPECT_EQ(::testing::PrintToString(*ctx), ctx->DebugString());
  struct Sink {
    std::string out;
    void Append(absl::string_view s) { out.append(s.data(), s.size()); }
  } sink;
  AbslStringify(sink, *ctx);
  EXPECT_EQ(sink.out, ctx->DebugString());
#if __has_include("absl/strings/has_absl_stringify.h")
  EXPECT_EQ(absl::StrCat(*ctx), ctx->DebugString());
#endif
}

// --- Stats -------------------------------------------------------------------

TEST(LoopTest, BurstOfCrossThreadPostsWritesEventfdOnce) {
  constexpr int kPosts = 1000;
  Loop loop;
  const ContextHandle root = loop.root();
  Latch busy;
  Latch release;
  uint64_t writes_before = 0;
  int ran = 0;
  ASSERT_OK(Post(root, [&](ContextHandle) {
    writes_before = loop.stats().wake_writes;
    busy.Open();
    release.Wait();  // The loop is busy while the burst arrives.
  }));
  std::thread poster([&] {
    busy.Wait();
    for (int i = 0; i < kPosts; ++i) {
      EXPECT_TRUE(Post(root, [&](ContextHandle) {
                    if (++ran == kPosts) loop.Stop();
                  }).ok());
    }
    release.Open();
  });
  ASSERT_OK(loop.Run());
  poster.join();
  EXPECT_EQ(ran, kPosts);
  const uint64_t writes = loop.stats().wake_writes - writes_before;
  EXPECT_LE(writes, 1u);
  EXPECT_GE(writes, 1u);  // Run() needed a wake-up to see the burst.
  EXPECT_EQ(loop.stats().tasks_run, uint64_t{kPosts} + 1);
}

// --- Create / LoopThread -----------------------------------------------------

TEST(LoopTest, CreateReturnsAWorkingLoop) {
  absl::StatusOr<std::unique_ptr<Loop>> loop = Loop::Create();
  ASSERT_OK(loop);
  ASSERT_NE(*loop, nullptr);
  EXPECT_NE((*loop)->base(), nullptr);
  bool ran = false;
  ASSERT_OK(Post((*loop)->root(), [&](ContextHandle) { ran = true; }));
  ASSERT_OK((*loop)->RunUntilIdle());
  EXPECT_TRUE(ran);

  std::vector<absl::Status> errors;
  Loop::Options options;
  options.error_handler = [&](ContextHandle, const absl::Status& e) {
    errors.push_back(e);
  };
  absl::StatusOr<std::unique_ptr<Loop>> with_options =
      Loop::Create(std::move(options));
  ASSERT_OK(with_options);
  ASSERT_OK(Post((*with_options)->root(),
                 [](ContextHandle) -> void { throw std::runtime_error("x"); }));
  ASSERT_OK((*with_options)->RunUntilIdle());
  EXPECT_EQ(errors.size(), 1u);
}

TEST(LoopThreadTest, PostRunsOnWorkerThread) {
  LoopThread worker;
  const std::thread::id me = std::this_thread::get_id();
  Latch done;
  std::thread::id ran_on;
  ContextHandle seen;
  ASSERT_OK(Post(worker.root(), [&](ContextHandle here) {
    ran_on = std::this_thread::get_id();
    seen = here;
    done.Open();
  }));
  done.Wait();
  EXPECT_NE(ran_on, me);
  EXPECT_EQ(seen, worker.root());
  EXPECT_FALSE(IsOnLoopThread(worker.root()));
}

TEST(LoopThreadTest, InvokeRunsSynchronouslyAndCanCreateContexts) {
  LoopThread worker;
  const std::thread::id me = std::this_thread::get_id();
  ContextHandle ctx;
  std::thread::id ran_on;
  ASSERT_OK(worker.Invoke([&](Loop& loop) {
    ran_on = std::this_thread::get_id();
    EXPECT_TRUE(loop.IsOnLoopThread());
    absl::StatusOr<ContextHandle> c = loop.NewContext("made-in-invoke");
    ASSERT_TRUE(c.ok()) << c.status();
    ctx = *c;
  }));
  // Invoke returned: its effects are visible.
  EXPECT_NE(ran_on, me);
  ASSERT_FALSE(ctx.is_null());
  std::string name;
  ASSERT_OK(worker.Invoke([&](Loop& loop) {
    absl::StatusOr<std::string> n = loop.ContextName(ctx);
    ASSERT_TRUE(n.ok()) << n.status();
    name = *n;
    // Invoke from the loop thread runs inline.
    bool inline_ran = false;
    EXPECT_TRUE(worker.Invoke([&](Loop&) { inline_ran = true; }).ok());
    EXPECT_TRUE(inline_ran);
  }));
  EXPECT_EQ(name, "made-in-invoke");
}

TEST(LoopThreadTest, JoinReturnsShutdownReport) {
  LoopThread worker;
  ASSERT_OK(PostDelayed(worker.root(), absl::Hours(1), [](ContextHandle) {
              ADD_FAILURE() << "must not run";
            }).status());
  const ShutdownReport report = worker.Join();
  EXPECT_EQ(report.delayed_dropped, 1u);
  EXPECT_EQ(report.tasks_dropped, 0u);
  // Idempotent.
  const ShutdownReport again = worker.Join();
  EXPECT_EQ(again.delayed_dropped, 1u);
  // The loop is gone.
  absl::Status s = Post(worker.root(), [](ContextHandle) {});
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  bool called = false;
  s = worker.Invoke([&](Loop&) { called = true; });
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_FALSE(called);
}

}  // namespace
}  // namespace ctxloop
