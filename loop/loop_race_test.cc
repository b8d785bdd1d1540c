// Copyright 2026 The ctxloop Authors.
//
// The loop's cross-thread races (cases in loop/internal/loop_core.cc):
// a foreign `Post` is done with a loop before it can be destroyed [S11], a
// foreign `Loop::Stop()` is never lost [S12], a foreign `FdWatch::Stop()`
// does not return while the callback runs [S13], and the loop thread is not
// recognised by a reused `pthread_self()` [S14]. They are meant to run under
// --config=asan and --config=tsan as well as plain; each bounds its waits,
// so a regression fails instead of hanging.

#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "ctxloop/loop/context_handle.h"
#include "ctxloop/loop/context_key.h"
#include "ctxloop/loop/internal/test_hooks.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/loop/loop_thread.h"
#include "ctxloop/loop/mutex.h"
#include "ctxloop/loop/task.h"
#include "ctxloop/loop/testing/hold_at_hook.h"
#include "ctxloop/loop/testing/running_loop.h"
#include "ctxloop/loop/testing/test_util.h"
#include "gtest/gtest.h"

namespace ctxloop {
namespace {

using loop_internal::TestHooks;
using std::chrono::seconds;
using testing_util::HoldAtHook;
using testing_util::Latch;
using testing_util::RunningLoop;

// --- [S11] A foreign Post is done with the loop before it can go ------------

// Deterministic form: a poster is held right after it released the queue
// lock, while the loop takes its task, shuts down and is destroyed. It must
// have nothing left to do with the loop: were it then to update the loop's
// counter or write its eventfd, ASan would report a heap use-after-free.
TEST(LoopRaceTest, ForeignPostIsDoneWithTheLoopWhenItReleasesTheLock) {
  HoldAtHook hold(&TestHooks::after_foreign_unlock);
  auto worker = std::make_unique<LoopThread>();
  const ContextHandle root = worker->root();
  // Keep the loop busy (a task that reposts itself until the poster's task
  // ran), so it takes foreign tasks at batch ends without being woken.
  auto poster_task_ran = std::make_shared<std::atomic<bool>>(false);
  Latch spinning;
  struct Spinner {
    std::shared_ptr<std::atomic<bool>> done;
    Latch* spinning;
    int runs = 0;
    void operator()(ContextHandle here) && {
      // After a few batches with no foreign post the loop has found its
      // queue empty: the next foreign post is the one that wakes it.
      if (++runs == 3) spinning->Open();
      if (!done->load()) (void)Post(here, std::move(*this));
    }
  };
  ASSERT_OK(Post(root, Spinner{poster_task_ran, &spinning}));
  ASSERT_TRUE(spinning.WaitFor(seconds(10)));
  std::thread poster([&] {
    hold.ArmFor(std::this_thread::get_id());
    EXPECT_TRUE(Post(root, [poster_task_ran](ContextHandle) {
                  poster_task_ran->store(true);
                }).ok());
  });
  ASSERT_TRUE(hold.WaitReached(seconds(10)));
  worker.reset();  // Runs the poster's task, shuts down, frees the loop.
  EXPECT_TRUE(poster_task_ran->load());
  hold.Resume();  // The poster returns from Post now.
  poster.join();
}

// Posters keep posting into a LoopThread while it is destroyed. A foreign
// Post must be done with the loop (its counters and eventfd) before the loop
// can finish shutting down (a late wake-up would be a heap use-after-free
// under ASan) [S11], and every post that was accepted runs exactly once:
// before the loop's thread ends, or in its shutdown's drain [S1] [S5].
TEST(LoopRaceTest, PostersRacingLoopThreadDestruction) {
  for (int round = 0; round < 100; ++round) {
    std::atomic<int64_t> accepted{0};
    std::atomic<int64_t> ran{0};
    auto worker = std::make_unique<LoopThread>();
    const ContextHandle root = worker->root();
    std::atomic<int> started{0};
    std::vector<std::thread> posters;
    posters.reserve(3);
    for (int i = 0; i < 3; ++i) {
      posters.emplace_back([&] {
        started.fetch_add(1);
        while (Post(root, [&ran](ContextHandle) { ran.fetch_add(1); }).ok()) {
          accepted.fetch_add(1);
          std::this_thread::yield();
        }
      });
    }
    while (started.load() < 3) std::this_thread::yield();
    // Some posts accepted before the destruction starts.
    while (accepted.load() < 10) std::this_thread::yield();
    worker.reset();  // Posts refused from now on, so the posters end.
    for (std::thread& t : posters) t.join();
    // The loop is gone: nothing can run any more.
    ASSERT_EQ(ran.load(), accepted.load()) << "round " << round;
  }
}

// --- [S12] A foreign Stop is never lost -------------------------------------

// Deterministic form: the loop is held at the end of a batch of foreign
// tasks (after its last look at the stop flag, before it looks for more
// foreign tasks) while another thread calls Stop(). A Stop() that only set
// the flag (a wake-up seemed pending) would leave the loop asleep with no
// tasks: Run() would never return.
TEST(LoopRaceTest, ForeignStopAtABatchEndIsNotLost) {
  HoldAtHook hold(&TestHooks::before_batch_end_take);
  RunningLoop running;
  Latch returned;
  running.NotifyOnReturn(&returned);
  // A foreign task; it arms the hook for its own batch end.
  ASSERT_OK(Post(running.loop().root(), [&hold](ContextHandle) {
    hold.ArmFor(std::this_thread::get_id());
  }));
  ASSERT_TRUE(hold.WaitReached(seconds(10)));
  running.loop().Stop();
  hold.Resume();
  if (!returned.WaitFor(seconds(10))) {
    ADD_FAILURE() << "a foreign Stop() was lost: Run() did not return";
    running.Unstick();
    EXPECT_TRUE(returned.WaitFor(seconds(10)));
  }
}

// Stress form: Stop() from a control thread while two threads post.
TEST(LoopRaceTest, ForeignStopWhilePostsFlowAlwaysReturns) {
  RunningLoop running;
  const ContextHandle root = running.loop().root();
  std::atomic<bool> posting{true};
  std::vector<std::thread> posters;
  posters.reserve(2);
  for (int i = 0; i < 2; ++i) {
    posters.emplace_back([&] {
      while (posting.load()) {
        (void)Post(root, [](ContextHandle) {});
        std::this_thread::yield();
      }
    });
  }
  int lost = 0;
  for (int round = 0; round < 500; ++round) {
    Latch returned;
    running.NotifyOnReturn(&returned);
    running.loop().Stop();
    if (!returned.WaitFor(seconds(10))) {
      ++lost;
      running.Unstick();
      ASSERT_TRUE(returned.WaitFor(seconds(10)));
    }
  }
  posting.store(false);
  for (std::thread& t : posters) t.join();
  EXPECT_EQ(lost, 0);
}

// --- [S13] A foreign FdWatch::Stop waits for the running callback ----------

// A connection a callback uses; the stopping thread frees it.
struct Conn {
  int fd = -1;
  std::atomic<int> reads{0};
};

// `watch.Stop(); delete conn;` from another thread while the callback runs:
// Stop() must not return before the callback did; were it to return at once,
// the callback would use the freed Conn (ASan).
TEST(LoopRaceTest, ForeignWatchStopWaitsForTheRunningCallback) {
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  RunningLoop running;
  auto* conn = new Conn;
  conn->fd = fds[0];
  Latch in_callback, watch_made;
  std::atomic<bool> stopping{false};
  FdWatch watch;
  ASSERT_OK(Post(running.loop().root(), [&](ContextHandle root) {
    // The watch owns fds[0]: after a foreign Stop() the loop thread still
    // unregisters it, and closes it only then (fd_watch.h).
    FdWatchOptions owned;
    owned.close_on_stop = true;
    absl::StatusOr<FdWatch> w = running.loop().WatchFd(
        root, fds[0], FdEvents::kRead,
        [&, conn](ContextHandle, FdEvents) {
          char byte;
          (void)read(conn->fd, &byte, 1);
          in_callback.Open();
          // Give a Stop() that does not wait every chance to return and the
          // Conn to be freed (bounded: never waits for the stopper itself).
          for (int i = 0; i < 1000 && !stopping.load(); ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
          conn->reads.fetch_add(1);  // Use after free if Stop() returned.
        },
        owned);
    EXPECT_TRUE(w.ok()) << w.status();
    if (w.ok()) watch = *std::move(w);
    watch_made.Open();
  }));
  ASSERT_TRUE(watch_made.WaitFor(seconds(10)));
  ASSERT_EQ(write(fds[1], "x", 1), 1);
  ASSERT_TRUE(in_callback.WaitFor(seconds(10)));
  stopping.store(true);
  watch.Stop();  // Foreign: waits until the callback returned.
  EXPECT_EQ(conn->reads.load(), 1);
  delete conn;
  close(fds[1]);
}

// Stop from inside its own callback, on the loop thread, never waits.
TEST(LoopRaceTest, WatchStopInsideItsOwnCallbackDoesNotWait) {
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  Loop loop;
  FdWatch watch;
  int calls = 0;
  absl::StatusOr<FdWatch> w = loop.WatchFd(loop.root(), fds[0], FdEvents::kRead,
                                           [&](ContextHandle, FdEvents) {
                                             ++calls;
                                             watch.Stop();
                                           });
  ASSERT_OK(w);
  watch = *std::move(w);
  ASSERT_EQ(write(fds[1], "x", 1), 1);
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE(watch.active());
  close(fds[0]);
  close(fds[1]);
}

// --- [S14] The loop thread's identity is never reused ----------------------

// A loop made on thread T1, T1 joined; a new thread that glibc gave T1's
// pthread_t must not be taken for the loop thread: with pthread_self() as
// the identity, every call below would succeed from it.
TEST(LoopRaceTest, ThreadWithAReusedPthreadIdIsNotTheLoopThread) {
  std::unique_ptr<Loop> loop;
  pthread_t t1_id;
  std::thread t1([&] {
    loop = std::make_unique<Loop>();
    t1_id = pthread_self();
  });
  t1.join();
  const ContextHandle root = loop->root();
  const ContextKey<int> key("k");
  bool found = false;
  for (int attempt = 0; attempt < 200 && !found; ++attempt) {
    std::thread t([&] {
      if (!pthread_equal(pthread_self(), t1_id)) return;
      found = true;
      EXPECT_FALSE(IsOnLoopThread(root));
      EXPECT_FALSE(loop->IsOnLoopThread());
      EXPECT_EQ(key.Set(root, 1).status().code(),
                absl::StatusCode::kFailedPrecondition);
      EXPECT_EQ(key.Get(root).status().code(),
                absl::StatusCode::kFailedPrecondition);
      EXPECT_EQ(loop->NewContext().status().code(),
                absl::StatusCode::kFailedPrecondition);
      loop->Stop();  // So that a wrongly accepted Run() returns at once.
      EXPECT_EQ(loop->Run().code(), absl::StatusCode::kFailedPrecondition);
    });
    t.join();
  }
  if (!found) GTEST_SKIP() << "no thread reused the joined thread's pthread_t";
  loop.reset();  // Its thread was joined: the destructor becomes the owner.
}

}  // namespace
}  // namespace ctxloop
