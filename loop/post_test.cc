// Copyright 2026 The ctxloop Authors.
//
// Tests for the same-thread post path: the `Post` template that
// builds the callable in place in the loop's ready queue, the queue of
// chunks, and the per-thread owner cache (loop/internal/local_post.h). The
// general behaviour of `Post` is tested in loop_test.cc. Allocations are
// counted with //loop:alloc_count_for_testing.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "ctxloop/loop/context_handle.h"
#include "ctxloop/loop/internal/ready_queue.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/loop/loop_thread.h"
#include "ctxloop/loop/mutex.h"
#include "ctxloop/loop/task.h"
#include "ctxloop/loop/testing/alloc_count.h"
#include "ctxloop/loop/testing/test_util.h"
#include "gtest/gtest.h"

namespace ctxloop {
namespace {

// Sets `*destroyed` when the last live copy goes away (moved-from ones do
// not count).
struct DestroyFlag {
  explicit DestroyFlag(bool* d) : destroyed(d) {}
  DestroyFlag(DestroyFlag&& o) noexcept : destroyed(o.destroyed) {
    o.destroyed = nullptr;
  }
  DestroyFlag(const DestroyFlag&) = delete;
  ~DestroyFlag() {
    if (destroyed != nullptr) *destroyed = true;
  }
  bool* destroyed;
};

TEST(PostTest, ThreePointerCapturesCostNoAllocation) {
  Loop loop;
  const ContextHandle ctx = loop.root();
  int64_t a = 0, b = 0, c = 0;
  constexpr int kTasks = 1000;  // Many chunks.
  for (int round = 0; round < 3; ++round) {
    long news;
    {
      testing_util::AllocationWindow counting;
      for (int i = 0; i < kTasks; ++i) {
        absl::Status s = Post(ctx, [pa = &a, pb = &b, pc = &c](ContextHandle) {
          ++*pa;
          ++*pb;
          ++*pc;
        });
        if (!s.ok()) ADD_FAILURE() << s;
      }
      news = counting.count();
    }
    ASSERT_OK(loop.RunUntilIdle());
    // The first round takes the queue's chunks; later rounds reuse them.
    if (round > 0) {
      EXPECT_EQ(news, 0) << "round " << round;
    }
  }
  EXPECT_EQ(a + b + c, 3 * 3 * kTasks);
}

TEST(PostTest, ATaskPostedAsTaskIsNotAllocatedAgain) {
  Loop loop;
  int ran = 0;
  for (int round = 0; round < 2; ++round) {
    Task task = [&ran](ContextHandle) { ++ran; };
    long news;
    {
      testing_util::AllocationWindow counting;
      ASSERT_OK(Post(loop.root(), std::move(task)));
      news = counting.count();
    }
    if (round > 0) {
      EXPECT_EQ(news, 0);
    }
    ASSERT_OK(loop.RunUntilIdle());
  }
  EXPECT_EQ(ran, 2);
}

TEST(PostTest, BurstsKeepFifoAcrossChunksAndRoundsAndPostsRunNextBatch) {
  Loop loop;
  const ContextHandle ctx = loop.root();
  std::vector<int> order;
  constexpr int n = 5 * loop_internal::ReadyQueue::kChunkEntries + 7;
  for (int round = 0; round < 3; ++round) {
    order.clear();
    for (int i = 0; i < n; ++i) {
      ASSERT_OK(Post(ctx, [&order, i](ContextHandle here) {
        order.push_back(i);
        // Posted during the batch: runs after every task of this batch.
        if (i % 50 == 0) {
          EXPECT_TRUE(Post(here, [&order, i](ContextHandle) {
                        order.push_back(n + i);
                      }).ok());
        }
      }));
    }
    ASSERT_OK(loop.RunUntilIdle());
    std::vector<int> want;
    want.reserve(n + n / 50 + 1);
    for (int i = 0; i < n; ++i) want.push_back(i);
    for (int i = 0; i < n; i += 50) want.push_back(n + i);
    EXPECT_EQ(order, want) << "round " << round;
  }
}

TEST(PostTest, StopInsideABatchAcrossChunksKeepsTheRestInOrder) {
  Loop loop;
  const ContextHandle ctx = loop.root();
  std::vector<int> order;
  const int n = 3 * loop_internal::ReadyQueue::kChunkEntries;
  const int stop_at = loop_internal::ReadyQueue::kChunkEntries + 5;
  for (int i = 0; i < n; ++i) {
    ASSERT_OK(Post(ctx, [&, i](ContextHandle) {
      order.push_back(i);
      if (i == stop_at) loop.Stop();
    }));
  }
  ASSERT_OK(loop.Run());
  ASSERT_EQ(order.size(), static_cast<size_t>(stop_at + 1));
  ASSERT_OK(Post(ctx, [&](ContextHandle) { order.push_back(-1); }));
  ASSERT_OK(loop.RunUntilIdle());
  std::vector<int> want;
  want.reserve(n + 1);
  for (int i = 0; i < n; ++i) want.push_back(i);
  want.push_back(-1);
  EXPECT_EQ(order, want);
}

TEST(PostTest, LargeAndOverAlignedCallablesRunAndAreDestroyedOnTheLoop) {
  Loop loop;
  bool big_destroyed = false;
  bool aligned_destroyed = false;
  std::string seen;
  struct alignas(64) Aligned {
    char pad[8];
  };
  {
    char big[200] = "big";
    ASSERT_OK(Post(loop.root(), [big, flag = DestroyFlag(&big_destroyed),
                                 &seen](ContextHandle) { seen += big; }));
    ASSERT_OK(Post(loop.root(),
                   [al = Aligned{}, flag = DestroyFlag(&aligned_destroyed),
                    &seen](ContextHandle) {
                     EXPECT_EQ(reinterpret_cast<uintptr_t>(&al) % 64, 0u);
                     seen += "+aligned";
                   }));
  }
  EXPECT_FALSE(big_destroyed);
  EXPECT_FALSE(aligned_destroyed);
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(seen, "big+aligned");
  EXPECT_TRUE(big_destroyed);
  EXPECT_TRUE(aligned_destroyed);
}

TEST(PostTest, CallablesNeverRunAreDestroyedByTheDrain) {
  bool destroyed = false;
  bool ran = false;
  {
    Loop loop;
    ASSERT_OK(Post(loop.root(), [flag = DestroyFlag(&destroyed),
                                 &ran](ContextHandle) { ran = true; }));
    EXPECT_FALSE(destroyed);
  }
  EXPECT_TRUE(ran);  // [S1]
  EXPECT_TRUE(destroyed);
}

TEST(PostTest, AThrowingTaskIsReportedDestroyedAndTheNextOnesRun) {
  std::vector<std::string> errors;
  Loop::Options options;
  options.error_handler = [&](ContextHandle, const absl::Status& s) {
    errors.push_back(std::string(s.message()));
  };
  Loop loop(std::move(options));
  bool destroyed = false;
  bool after = false;
  ASSERT_OK(Post(loop.root(), [flag = DestroyFlag(&destroyed)](ContextHandle) {
    throw std::runtime_error("boom");
  }));
  ASSERT_OK(Post(loop.root(), [&](ContextHandle) { after = true; }));
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_TRUE(destroyed);
  EXPECT_TRUE(after);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("boom"), std::string::npos) << errors[0];
  EXPECT_EQ(loop.stats().tasks_run, 2u);
}

TEST(PostTest, EmptyCallablesAndNullHandlesAreInvalidArguments) {
  Loop loop;
  void (*null_fn)(ContextHandle) = nullptr;
  EXPECT_EQ(Post(loop.root(), null_fn).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Post(loop.root(), std::function<void(ContextHandle)>()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Post(loop.root(), absl::AnyInvocable<void(ContextHandle)>()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Post(loop.root(), Task()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Post(ContextHandle(), [](ContextHandle) {}).code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(loop.stats().tasks_run, 0u);
}

TEST(PostTest, RefusedCallablesAreDestroyedBeforePostReturns) {
  Loop loop;
  const ContextHandle ctx = *loop.NewContext("c");
  ASSERT_OK(loop.DestroyContext(ctx));  // Closing: refused [S15].
  bool destroyed = false;
  auto task = [flag = DestroyFlag(&destroyed)](ContextHandle) {
    ADD_FAILURE() << "ran";
  };
  EXPECT_EQ(Post(ctx, std::move(task)).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(destroyed);
  ASSERT_OK(loop.RunUntilIdle());
  // Stale now (freed): refused the same way.
  destroyed = false;
  EXPECT_EQ(Post(ctx, [flag = DestroyFlag(&destroyed)](
                          ContextHandle) { ADD_FAILURE() << "ran"; })
                .code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(destroyed);
}

TEST(PostTest, AnLvalueCallableIsCopiedAndLeftAlone) {
  Loop loop;
  auto shared = std::make_shared<int>(0);
  auto task = [shared](ContextHandle) { ++*shared; };
  ASSERT_OK(Post(loop.root(), task));
  EXPECT_EQ(shared.use_count(), 3);  // `shared`, `task` and the queued copy.
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(*shared, 1);
  EXPECT_EQ(shared.use_count(), 2);  // The copy died after running.
}

// The owner cache must not outlive its loop: with a cache filled by posts, a
// stale handle of a destroyed loop (whose slot may hold a new loop) is
// refused, never resolved to freed memory (ASan would see it).
TEST(PostTest, StaleHandleOfADestroyedLoopIsRefusedAfterCachedPosts) {
  ContextHandle stale;
  {
    auto loop = std::make_unique<Loop>();
    stale = loop->root();
    ASSERT_OK(Post(stale, [](ContextHandle) {}));  // Fills the cache.
    ASSERT_OK(Post(stale, [](ContextHandle) {}));  // Hits it.
  }
  EXPECT_EQ(Post(stale, [](ContextHandle) {}).code(),
            absl::StatusCode::kFailedPrecondition);
  Loop next;  // May take the same slot, with a new generation.
  EXPECT_EQ(Post(stale, [](ContextHandle) {}).code(),
            absl::StatusCode::kFailedPrecondition);
  int ran = 0;
  ASSERT_OK(Post(next.root(), [&](ContextHandle) { ++ran; }));
  ASSERT_OK(next.RunUntilIdle());
  EXPECT_EQ(ran, 1);
}

// The same after an explicit Shutdown(), then the destruction.
TEST(PostTest, StaleHandleAfterShutdownThenDestructionIsRefused) {
  auto loop = std::make_unique<Loop>();
  const ContextHandle ctx = loop->root();
  ASSERT_OK(Post(ctx, [](ContextHandle) {}));  // Fills the cache.
  ASSERT_OK(loop->Shutdown());
  EXPECT_EQ(Post(ctx, [](ContextHandle) {}).code(),
            absl::StatusCode::kFailedPrecondition);
  loop.reset();
  EXPECT_EQ(Post(ctx, [](ContextHandle) {}).code(),
            absl::StatusCode::kFailedPrecondition);
}

// The same when the loop is destroyed by another thread (its destructor
// becomes the owner): the old owner's cache is not used again.
TEST(PostTest, StaleHandleAfterDestructionOnAnotherThreadIsRefused) {
  auto loop = std::make_unique<Loop>();
  const ContextHandle ctx = loop->root();
  ASSERT_OK(Post(ctx, [](ContextHandle) {}));  // Fills this thread's cache.
  std::thread([&] { loop.reset(); }).join();   // Drains; runs the task.
  EXPECT_EQ(Post(ctx, [](ContextHandle) {}).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(PostTest, TwoLoopsOnOneThreadEachRunTheirOwnTasks) {
  Loop one;
  Loop two;
  std::vector<int> ran_one, ran_two;
  for (int i = 0; i < 100; ++i) {
    ASSERT_OK(Post(one.root(), [&, i](ContextHandle here) {
      EXPECT_EQ(here, one.root());
      ran_one.push_back(i);
    }));
    ASSERT_OK(Post(two.root(), [&, i](ContextHandle here) {
      EXPECT_EQ(here, two.root());
      ran_two.push_back(i);
    }));
  }
  ASSERT_OK(one.RunUntilIdle());
  EXPECT_EQ(ran_one.size(), 100u);
  EXPECT_TRUE(ran_two.empty());
  ASSERT_OK(two.RunUntilIdle());
  EXPECT_EQ(ran_two.size(), 100u);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(ran_one[i], i);
    EXPECT_EQ(ran_two[i], i);
  }
}

TEST(PostTest, ForeignTemplatePostsRunInOrderBetweenLocalOnes) {
  Loop loop;
  std::vector<std::string> order;
  ASSERT_OK(
      Post(loop.root(), [&](ContextHandle) { order.emplace_back("l1"); }));
  std::thread([&] {
    for (int i = 0; i < 3; ++i) {
      EXPECT_TRUE(Post(loop.root(), [&, i](ContextHandle) {
                    order.push_back("f" + std::to_string(i));
                  }).ok());
    }
  }).join();
  ASSERT_OK(loop.RunUntilIdle());
  ASSERT_OK(
      Post(loop.root(), [&](ContextHandle) { order.emplace_back("l2"); }));
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(order, (std::vector<std::string>{"l1", "f0", "f1", "f2", "l2"}));
}

// A foreign post builds the callable in its ingress node while it holds a
// pin of the loop (local_post.h, ForeignPostSlot). If that construction
// throws, the exception reaches the poster and the pin and node are returned:
// otherwise the loop's shutdown would wait for the pin forever (the test
// would time out), and the next posts would not run.
TEST(PostTest, AForeignPostWhoseCallableThrowsWhileBuiltReleasesItsPin) {
  struct ThrowsOnCopy {
    ThrowsOnCopy() = default;
    ThrowsOnCopy(const ThrowsOnCopy&) { throw std::runtime_error("copy"); }
    ThrowsOnCopy(ThrowsOnCopy&&) = default;
    void operator()(ContextHandle) && { ADD_FAILURE() << "ran"; }
  };
  auto loop = std::make_unique<Loop>();
  const ContextHandle ctx = loop->root();
  int ran = 0;
  std::thread([&] {
    const ThrowsOnCopy callable;
    for (int i = 0; i < 100; ++i) {
      EXPECT_THROW((void)Post(ctx, callable), std::runtime_error);
      EXPECT_TRUE(Post(ctx, [&ran](ContextHandle) { ++ran; }).ok());
    }
  }).join();
  ASSERT_OK(loop->RunUntilIdle());
  EXPECT_EQ(ran, 100);
  ASSERT_OK(loop->Shutdown());  // Would wait forever for a leaked pin.
}

// No user code runs while a foreign post holds its pin of the loop: the
// callable is built before the pin, so a move constructor that blocks on a
// lock the loop thread holds (while it destroys an unrelated context, which
// waits for earlier pins) does not deadlock the two threads. Bounded: a
// deadlock fails the test by timeout and leaves the stuck threads behind.
TEST(PostTest, AForeignCallableMovedUnderALoopThreadLockDoesNotDeadlock) {
  struct Shared {
    Mutex mu;
    std::atomic<bool> arm{false};
    std::atomic<bool> moving{false};
    testing_util::Latch loop_holds;
    testing_util::Latch loop_done;
    testing_util::Latch posted;
    std::atomic<int> ran{0};
  };
  struct LocksWhenMoved {
    explicit LocksWhenMoved(Shared* s) : shared(s) {}
    LocksWhenMoved(LocksWhenMoved&& o) noexcept : shared(o.shared) {
      if (shared->arm.load()) {
        shared->moving.store(true);
        MutexLock lock(&shared->mu);  // Held by the loop thread meanwhile.
      }
    }
    void operator()(ContextHandle) && { shared->ran.fetch_add(1); }
    Shared* shared;
  };
  auto shared = std::make_unique<Shared>();
  auto worker = std::make_unique<LoopThread>();
  ContextHandle unrelated;
  ASSERT_OK(worker->Invoke([&](Loop& l) { unrelated = *l.NewContext("x"); }));
  const ContextHandle target = worker->root();
  Shared* sh = shared.get();
  // The loop thread takes the lock, waits until the poster is inside the
  // callable's move, then destroys an unrelated context.
  ASSERT_OK(Post(target, [sh, unrelated](ContextHandle) {
    MutexLock lock(&sh->mu);
    sh->loop_holds.Open();
    for (int i = 0; i < 2000 && !sh->moving.load(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    EXPECT_TRUE(DestroyContext(unrelated).ok());
    sh->loop_done.Open();
  }));
  ASSERT_TRUE(sh->loop_holds.WaitFor(std::chrono::seconds(10)));
  std::thread poster([sh, target] {
    sh->arm.store(true);
    EXPECT_TRUE(Post(target, LocksWhenMoved(sh)).ok());
    sh->arm.store(false);
    sh->posted.Open();
  });
  const bool done = sh->posted.WaitFor(std::chrono::seconds(20)) &&
                    sh->loop_done.WaitFor(std::chrono::seconds(20));
  EXPECT_TRUE(done) << "the poster and the loop thread deadlocked";
  if (!done) {
    poster.detach();
    (void)worker.release();
    (void)shared.release();
    return;
  }
  poster.join();
  worker.reset();
  EXPECT_EQ(shared->ran.load(), 1);
}

}  // namespace
}  // namespace ctxloop
