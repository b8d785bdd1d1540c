// Copyright 2026 The ctxloop Authors.
//
// Tests for delayed tasks: PostDelayed and Cancel (ctxloop/loop/loop.h).

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "ctxloop/loop/context_handle.h"
#include "ctxloop/loop/internal/loop_core.h"
#include "ctxloop/loop/internal/owned_core.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/loop/loop_thread.h"
#include "ctxloop/loop/mutex.h"
#include "ctxloop/loop/task.h"
#include "ctxloop/loop/testing/test_util.h"
#include "gtest/gtest.h"

namespace ctxloop {
namespace {

using testing_util::Latch;

// Records on which threads the objects it tracks were destroyed.
class DestructionLog {
 public:
  void Record() {
    ctxloop::MutexLock lock(&mu_);
    threads_.push_back(std::this_thread::get_id());
  }
  std::vector<std::thread::id> threads() const {
    ctxloop::MutexLock lock(&mu_);
    return threads_;
  }
  size_t count() const { return threads().size(); }

 private:
  mutable ctxloop::Mutex mu_;
  std::vector<std::thread::id> threads_ ABSL_GUARDED_BY(mu_);
};

// Capture this in a task to see when and where the task is destroyed.
class Probe {
 public:
  explicit Probe(DestructionLog* log) : log_(log) {}
  Probe(Probe&& other) noexcept : log_(std::exchange(other.log_, nullptr)) {}
  Probe& operator=(Probe&&) = delete;
  ~Probe() {
    if (log_ != nullptr) log_->Record();
  }

 private:
  DestructionLog* log_;
};

using Clock = std::chrono::steady_clock;

TEST(TimerTest, RunsAfterTheDelay) {
  Loop loop;
  const ContextHandle root = loop.root();
  const std::thread::id loop_thread = std::this_thread::get_id();
  const Clock::time_point start = Clock::now();
  Clock::time_point ran_at;
  ContextHandle seen;
  ASSERT_OK(PostDelayed(root, absl::Milliseconds(30), [&](ContextHandle here) {
    ran_at = Clock::now();
    seen = here;
    EXPECT_EQ(std::this_thread::get_id(), loop_thread);
    loop.Stop();
  }));
  // Not yet due: RunUntilIdle does not wait for it (unless a slow start,
  // e.g. under TSan on a loaded machine, took the delay: then it ran, and
  // Run would wait for a Stop that already came).
  ASSERT_OK(loop.RunUntilIdle());
  if (Clock::now() - start < std::chrono::milliseconds(30)) {
    EXPECT_EQ(seen, ContextHandle());
  }
  if (seen == ContextHandle()) ASSERT_OK(loop.Run());
  EXPECT_EQ(seen, root);
  EXPECT_GE(ran_at - start, std::chrono::milliseconds(30));
  EXPECT_EQ(loop.stats().tasks_run, 1u);
}

TEST(TimerTest, ZeroDelayTasksRunInPostOrder) {
  Loop loop;
  std::vector<int> order;
  for (int i = 0; i < 50; ++i) {
    ASSERT_OK(PostDelayed(loop.root(), absl::ZeroDuration(),
                          [&order, i](ContextHandle) { order.push_back(i); }));
  }
  ASSERT_OK(loop.RunUntilIdle());
  ASSERT_EQ(order.size(), 50u);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(order[i], i);
}

TEST(TimerTest, IncreasingDelaysRunInDeadlineOrder) {
  Loop loop;
  std::vector<int> order;
  // Posted longest first.
  for (int ms : {40, 30, 20, 10}) {
    ASSERT_OK(PostDelayed(loop.root(), absl::Milliseconds(ms),
                          [&order, &loop, ms](ContextHandle) {
                            order.push_back(ms);
                            if (ms == 40) loop.Stop();
                          }));
  }
  ASSERT_OK(loop.Run());
  EXPECT_EQ(order, (std::vector<int>{10, 20, 30, 40}));
}

TEST(TimerTest, NonPositiveDelayRuns) {
  Loop loop;
  std::vector<std::string> ran;
  ASSERT_OK(PostDelayed(loop.root(), absl::ZeroDuration(),
                        [&](ContextHandle) { ran.push_back("zero"); }));
  ASSERT_OK(PostDelayed(loop.root(), absl::Seconds(-5),
                        [&](ContextHandle) { ran.push_back("negative"); }));
  ASSERT_OK(PostDelayed(loop.root(), -absl::InfiniteDuration(),
                        [&](ContextHandle) { ran.push_back("-inf"); }));
  EXPECT_TRUE(ran.empty());  // Never inside PostDelayed.
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(ran, (std::vector<std::string>{"zero", "negative", "-inf"}));
}

TEST(TimerTest, CancelBeforeItRuns) {
  Loop loop;
  DestructionLog log;
  bool ran = false;
  absl::StatusOr<DelayedTaskHandle> h =
      PostDelayed(loop.root(), absl::ZeroDuration(),
                  [&ran, p = Probe(&log)](ContextHandle) { ran = true; });
  ASSERT_OK(h);
  EXPECT_EQ(log.count(), 0u);
  EXPECT_TRUE(Cancel(*h));
  // Cancelled on the loop thread: destroyed right away, here.
  ASSERT_EQ(log.count(), 1u);
  EXPECT_EQ(log.threads()[0], std::this_thread::get_id());
  EXPECT_FALSE(Cancel(*h));  // Twice.
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_FALSE(ran);
  EXPECT_EQ(loop.stats().tasks_run, 0u);
  EXPECT_FALSE(Cancel(DelayedTaskHandle()));
}

TEST(TimerTest, CancelAfterItRanReturnsFalse) {
  Loop loop;
  int runs = 0;
  absl::StatusOr<DelayedTaskHandle> h = PostDelayed(
      loop.root(), absl::ZeroDuration(), [&](ContextHandle) { ++runs; });
  ASSERT_OK(h);
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(runs, 1);
  EXPECT_FALSE(Cancel(*h));
  EXPECT_FALSE(Cancel(*h));
}

TEST(TimerTest, CancelWhileRunningReturnsFalse) {
  Loop loop;
  DelayedTaskHandle self;
  bool checked = false;
  absl::StatusOr<DelayedTaskHandle> h =
      PostDelayed(loop.root(), absl::ZeroDuration(), [&](ContextHandle) {
        EXPECT_FALSE(Cancel(self));
        checked = true;
      });
  ASSERT_OK(h);
  self = *h;
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_TRUE(checked);
}

TEST(TimerTest, CancelOneOfSeveral) {
  Loop loop;
  std::vector<int> ran;
  std::vector<DelayedTaskHandle> handles;
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<DelayedTaskHandle> h =
        PostDelayed(loop.root(), absl::ZeroDuration(),
                    [&ran, i](ContextHandle) { ran.push_back(i); });
    ASSERT_OK(h);
    handles.push_back(*h);
  }
  EXPECT_TRUE(Cancel(handles[0]));  // The earliest (armed) one.
  EXPECT_TRUE(Cancel(handles[3]));
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(ran, (std::vector<int>{1, 2, 4}));
}

// The cancelled task is destroyed on the loop thread, not on the cancelling
// thread.
TEST(TimerTest, CancelFromAnotherThreadDestroysOnLoopThread) {
  Loop loop;
  DestructionLog log;
  bool ran = false;
  absl::StatusOr<DelayedTaskHandle> h =
      PostDelayed(loop.root(), absl::Hours(1),
                  [&ran, p = Probe(&log)](ContextHandle) { ran = true; });
  ASSERT_OK(h);
  bool cancelled = false;
  bool cancelled_again = true;
  std::thread([&] {
    cancelled = Cancel(*h);
    cancelled_again = Cancel(*h);
  }).join();
  EXPECT_TRUE(cancelled);
  EXPECT_FALSE(cancelled_again);
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_FALSE(ran);
  const std::vector<std::thread::id> threads = log.threads();
  ASSERT_EQ(threads.size(), 1u);
  EXPECT_EQ(threads[0], std::this_thread::get_id());
  // Handing the task back for destruction is not a task run.
  EXPECT_EQ(loop.stats().tasks_run, 0u);
}

TEST(TimerTest, CancelFromAnotherThreadWhileRunning) {
  Loop loop;
  DestructionLog log;
  bool ran = false;
  absl::StatusOr<DelayedTaskHandle> h =
      PostDelayed(loop.root(), absl::Milliseconds(50),
                  [&ran, p = Probe(&log)](ContextHandle) { ran = true; });
  ASSERT_OK(h);
  // Runs after the cancel and stops the loop.
  std::thread canceller([&] {
    EXPECT_TRUE(Cancel(*h));
    EXPECT_TRUE(Post(loop.root(), [&](ContextHandle) { loop.Stop(); }).ok());
  });
  ASSERT_OK(loop.Run());
  canceller.join();
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_FALSE(ran);
  const std::vector<std::thread::id> threads = log.threads();
  ASSERT_EQ(threads.size(), 1u);
  EXPECT_EQ(threads[0], std::this_thread::get_id());
}

TEST(TimerTest, PostDelayedFromAnotherThreadFires) {
  Loop loop;
  const std::thread::id loop_thread = std::this_thread::get_id();
  Clock::time_point posted_at;
  Clock::time_point ran_at;
  std::thread::id ran_on;
  // The loop is in Run() (a task signals it) before the foreign post.
  Latch running;
  ASSERT_OK(Post(loop.root(), [&](ContextHandle) { running.Open(); }));
  std::thread poster([&] {
    running.Wait();
    posted_at = Clock::now();
    absl::StatusOr<DelayedTaskHandle> h =
        PostDelayed(loop.root(), absl::Milliseconds(5), [&](ContextHandle) {
          ran_at = Clock::now();
          ran_on = std::this_thread::get_id();
          loop.Stop();
        });
    EXPECT_TRUE(h.ok()) << h.status();
  });
  ASSERT_OK(loop.Run());
  poster.join();
  EXPECT_EQ(ran_on, loop_thread);
  EXPECT_GE(ran_at - posted_at, std::chrono::milliseconds(5));
}

// A foreign PostDelayed that is earlier than the armed timer re-arms it.
TEST(TimerTest, ForeignEarlierTimerRearms) {
  Loop loop;
  bool late_ran = false;
  ASSERT_OK(PostDelayed(loop.root(), absl::Hours(1),
                        [&](ContextHandle) { late_ran = true; }));
  const ContextHandle root = loop.root();
  std::thread poster;
  ASSERT_OK(Post(root, [&](ContextHandle) {
    // The loop is in Run() with the one-hour timer armed.
    poster = std::thread([&] {
      EXPECT_TRUE(PostDelayed(root, absl::Milliseconds(1), [&](ContextHandle) {
                    loop.Stop();
                  }).ok());
    });
  }));
  ASSERT_OK(loop.Run());  // Would hang for an hour if not re-armed.
  poster.join();
  EXPECT_FALSE(late_ran);
}

TEST(TimerTest, InvalidArguments) {
  Loop loop;
  absl::StatusOr<DelayedTaskHandle> h =
      PostDelayed(ContextHandle(), absl::ZeroDuration(), [](ContextHandle) {});
  EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument);
  h = PostDelayed(loop.root(), absl::ZeroDuration(), Task());
  EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument);
  std::thread([&] {
    absl::StatusOr<DelayedTaskHandle> f =
        PostDelayed(loop.root(), absl::ZeroDuration(), nullptr);
    EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
  }).join();
}

TEST(TimerTest, PostDelayedToDestroyedContextFails) {
  Loop loop;
  absl::StatusOr<ContextHandle> ctx = loop.NewContext("c");
  ASSERT_OK(ctx);
  ASSERT_OK(loop.DestroyContext(*ctx));
  absl::StatusOr<DelayedTaskHandle> h =
      PostDelayed(*ctx, absl::ZeroDuration(), [](ContextHandle) {});
  EXPECT_EQ(h.status().code(), absl::StatusCode::kFailedPrecondition);
  std::thread([&] {
    absl::StatusOr<DelayedTaskHandle> f =
        PostDelayed(*ctx, absl::ZeroDuration(), [](ContextHandle) {});
    EXPECT_EQ(f.status().code(), absl::StatusCode::kFailedPrecondition);
  }).join();
  ASSERT_OK(loop.RunUntilIdle());
  h = PostDelayed(*ctx, absl::ZeroDuration(), [](ContextHandle) {});
  EXPECT_EQ(h.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(TimerTest, DestroyContextCancelsItsDelayedTasks) {
  Loop loop;
  absl::StatusOr<ContextHandle> doomed = loop.NewContext("doomed");
  absl::StatusOr<ContextHandle> kept = loop.NewContext("kept");
  ASSERT_OK(doomed);
  ASSERT_OK(kept);
  DestructionLog log;
  int doomed_runs = 0;
  int kept_runs = 0;
  std::vector<DelayedTaskHandle> handles;
  for (absl::Duration d : {absl::ZeroDuration(), absl::Hours(1)}) {
    absl::StatusOr<DelayedTaskHandle> h = PostDelayed(
        *doomed, d, [&, p = Probe(&log)](ContextHandle) { ++doomed_runs; });
    ASSERT_OK(h);
    handles.push_back(*h);
  }
  ASSERT_OK(PostDelayed(*kept, absl::ZeroDuration(),
                        [&](ContextHandle) { ++kept_runs; }));
  ASSERT_OK(loop.DestroyContext(*doomed));
  // Destroyed now, on the loop thread.
  const std::vector<std::thread::id> threads = log.threads();
  ASSERT_EQ(threads.size(), 2u);
  for (std::thread::id t : threads) EXPECT_EQ(t, std::this_thread::get_id());
  for (const DelayedTaskHandle& h : handles) EXPECT_FALSE(Cancel(h));
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(doomed_runs, 0);
  EXPECT_EQ(kept_runs, 1);
}

// One clock read per timer pass: a timer task that posts a zero-delay timer
// waits for the next pass, so a chain of them does not starve posted tasks.
TEST(TimerTest, ZeroDelayTimerChainDoesNotStarvePostedTasks) {
  Loop loop;
  constexpr int kGenerations = 200;
  int generation = 0;
  int generation_at_task = -1;
  struct Chain {
    int* generation;
    int* generation_at_task;
    void operator()(ContextHandle here) && {
      ++*generation;
      if (*generation == 1) {
        int* g = generation;
        int* at = generation_at_task;
        ASSERT_OK(Post(here, [g, at](ContextHandle) { *at = *g; }));
      }
      if (*generation < kGenerations) {
        ASSERT_OK(PostDelayed(here, absl::ZeroDuration(),
                              Chain{generation, generation_at_task}));
      }
    }
  };
  ASSERT_OK(PostDelayed(loop.root(), absl::ZeroDuration(),
                        Chain{&generation, &generation_at_task}));
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(generation, kGenerations);
  EXPECT_GE(generation_at_task, 1);
  // The posted task ran right after the generation that posted it, not after
  // the whole chain.
  EXPECT_LE(generation_at_task, 2);
}

// A delayed task runs with its context's handle; the context is still usable.
TEST(TimerTest, RunsOnItsContext) {
  Loop loop;
  absl::StatusOr<ContextHandle> ctx = loop.NewContext("timer-ctx");
  ASSERT_OK(ctx);
  std::string name;
  ASSERT_OK(PostDelayed(*ctx, absl::ZeroDuration(), [&](ContextHandle here) {
    EXPECT_EQ(here, *ctx);
    absl::StatusOr<std::string> n = loop.ContextName(here);
    ASSERT_TRUE(n.ok()) << n.status();
    name = *n;
  }));
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(name, "timer-ctx");
}

TEST(TimerTest, ThrowingDelayedTaskIsReported) {
  std::vector<ContextHandle> reported;
  Loop::Options options;
  options.error_handler = [&](ContextHandle ctx, const absl::Status&) {
    reported.push_back(ctx);
  };
  Loop loop(std::move(options));
  absl::StatusOr<ContextHandle> ctx = loop.NewContext("t");
  ASSERT_OK(ctx);
  bool after = false;
  ASSERT_OK(PostDelayed(*ctx, absl::ZeroDuration(),
                        [](ContextHandle) -> void { throw 3; }));
  ASSERT_OK(PostDelayed(*ctx, absl::ZeroDuration(),
                        [&](ContextHandle) { after = true; }));
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_TRUE(after);
  EXPECT_EQ(reported, std::vector<ContextHandle>{*ctx});
}

// Stop() from inside a delayed task: the other due timers wait for the next
// Run.
TEST(TimerTest, StopInsideDelayedTaskKeepsOtherTimers) {
  Loop loop;
  std::vector<int> order;
  ASSERT_OK(PostDelayed(loop.root(), absl::ZeroDuration(), [&](ContextHandle) {
    order.push_back(1);
    loop.Stop();
  }));
  ASSERT_OK(PostDelayed(loop.root(), absl::ZeroDuration(),
                        [&](ContextHandle) { order.push_back(2); }));
  ASSERT_OK(loop.Run());
  EXPECT_EQ(order, (std::vector<int>{1}));
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
}

// A delay too large for the clock (e.g. absl::InfiniteDuration()) means
// "never" in practice; it must not wrap around into the past.
TEST(TimerTest, HugeDelayDoesNotFireEarly) {
  Loop loop;
  int runs = 0;
  absl::StatusOr<DelayedTaskHandle> inf = PostDelayed(
      loop.root(), absl::InfiniteDuration(), [&](ContextHandle) { ++runs; });
  ASSERT_OK(inf);
  absl::StatusOr<DelayedTaskHandle> centuries = PostDelayed(
      loop.root(), absl::Hours(24 * 365 * 400), [&](ContextHandle) { ++runs; });
  ASSERT_OK(centuries);
  bool soon_ran = false;
  ASSERT_OK(PostDelayed(loop.root(), absl::Milliseconds(1), [&](ContextHandle) {
    soon_ran = true;
    loop.Stop();
  }));
  ASSERT_OK(loop.Run());
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_TRUE(soon_ran);
  EXPECT_EQ(runs, 0);
  EXPECT_TRUE(Cancel(*inf));
  EXPECT_TRUE(Cancel(*centuries));
}

// A delayed task cancelled by an earlier one due in the same pass never runs.
TEST(TimerTest, CancelFromAnotherDueTimer) {
  Loop loop;
  DelayedTaskHandle victim;
  bool victim_ran = false;
  bool cancelled = false;
  ASSERT_OK(PostDelayed(loop.root(), absl::ZeroDuration(),
                        [&](ContextHandle) { cancelled = Cancel(victim); }));
  absl::StatusOr<DelayedTaskHandle> h =
      PostDelayed(loop.root(), absl::ZeroDuration(),
                  [&](ContextHandle) { victim_ran = true; });
  ASSERT_OK(h);
  victim = *h;
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_TRUE(cancelled);
  EXPECT_FALSE(victim_ran);
}

// A delayed task that destroys its own context: the context's other delayed
// tasks, due in the same pass, are cancelled.
TEST(TimerTest, DelayedTaskDestroysItsContext) {
  Loop loop;
  absl::StatusOr<ContextHandle> ctx = loop.NewContext("c");
  ASSERT_OK(ctx);
  std::vector<int> ran;
  ASSERT_OK(PostDelayed(*ctx, absl::ZeroDuration(), [&](ContextHandle here) {
    ran.push_back(1);
    EXPECT_TRUE(DestroyContext(here).ok());
  }));
  ASSERT_OK(PostDelayed(*ctx, absl::ZeroDuration(),
                        [&](ContextHandle) { ran.push_back(2); }));
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(ran, (std::vector<int>{1}));
  EXPECT_FALSE(loop.ContextName(*ctx).ok());
}

// A handle names a node of the timer slab and the task's 64-bit id: once its
// task ran or was cancelled, the handle never cancels a later task that
// reuses the node.
TEST(TimerTest, StaleHandleNeverCancelsTheNodesNextTask) {
  Loop loop;
  std::vector<std::string> ran;
  absl::StatusOr<DelayedTaskHandle> a = PostDelayed(
      loop.root(), absl::Hours(1), [&](ContextHandle) { ran.push_back("a"); });
  ASSERT_OK(a);
  EXPECT_TRUE(Cancel(*a));
  absl::StatusOr<DelayedTaskHandle> b = PostDelayed(
      loop.root(), absl::Hours(1), [&](ContextHandle) { ran.push_back("b"); });
  ASSERT_OK(b);
  EXPECT_FALSE(Cancel(*a));  // b took a's node: a's handle is stale.
  absl::StatusOr<DelayedTaskHandle> c =
      PostDelayed(loop.root(), absl::ZeroDuration(),
                  [&](ContextHandle) { ran.push_back("c"); });
  ASSERT_OK(c);
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(ran, (std::vector<std::string>{"c"}));
  absl::StatusOr<DelayedTaskHandle> d =
      PostDelayed(loop.root(), absl::ZeroDuration(),
                  [&](ContextHandle) { ran.push_back("d"); });
  ASSERT_OK(d);
  EXPECT_FALSE(Cancel(*c));  // Ran; d may reuse its node.
  EXPECT_TRUE(Cancel(*b));
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(ran, (std::vector<std::string>{"c", "d"}));
  EXPECT_FALSE(Cancel(*d));
}

// Cancelled zero-delay tasks are skipped; the others keep post order, also
// when the first (armed) and the last ones are cancelled.
TEST(TimerTest, CancelledZeroDelayTasksAreSkipped) {
  Loop loop;
  std::vector<int> ran;
  std::vector<DelayedTaskHandle> handles;
  for (int i = 0; i < 200; ++i) {
    absl::StatusOr<DelayedTaskHandle> h =
        PostDelayed(loop.root(), absl::ZeroDuration(),
                    [&ran, i](ContextHandle) { ran.push_back(i); });
    ASSERT_OK(h);
    handles.push_back(*h);
  }
  std::vector<int> expected;
  for (int i = 0; i < 200; ++i) {
    if (i % 3 == 0 || i == 199) {
      EXPECT_TRUE(Cancel(handles[i]));
    } else {
      expected.push_back(i);
    }
  }
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(ran, expected);
  EXPECT_EQ(loop.stats().tasks_run, expected.size());
}

// Many timers on a few deadlines with a random half cancelled (enough for
// the heap to drop its cancelled entries in bulk): every other task runs
// once, tasks with the same delay run in post order, and cancelled ones never
// run.
TEST(TimerTest, RandomCancelsKeepTheRestInOrder) {
  Loop loop;
  constexpr int kTimers = 3000;
  std::mt19937 rng(12345);
  std::vector<int> delay_ms(kTimers);
  std::vector<DelayedTaskHandle> handles;
  std::vector<int> ran;
  for (int i = 0; i < kTimers; ++i) {
    delay_ms[i] = static_cast<int>(rng() % 4);  // 0..3 ms.
    absl::StatusOr<DelayedTaskHandle> h =
        PostDelayed(loop.root(), absl::Milliseconds(delay_ms[i]),
                    [&ran, i](ContextHandle) { ran.push_back(i); });
    ASSERT_OK(h);
    handles.push_back(*h);
  }
  std::vector<bool> cancelled(kTimers, false);
  size_t expected_runs = 0;
  for (int i = 0; i < kTimers; ++i) {
    if (rng() % 2 == 0) {
      EXPECT_TRUE(Cancel(handles[i]));
      cancelled[i] = true;
    } else {
      ++expected_runs;
    }
  }
  // Wait (a failure guard only) until every remaining task has run.
  const auto give_up =
      std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (ran.size() < expected_runs &&
         std::chrono::steady_clock::now() < give_up) {
    ASSERT_OK(loop.RunUntilIdle());
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  ASSERT_EQ(ran.size(), expected_runs);
  std::vector<int> last_of_delay(4, -1);
  std::vector<bool> seen(kTimers, false);
  for (int i : ran) {
    EXPECT_FALSE(cancelled[i]) << i;
    EXPECT_FALSE(seen[i]) << i;
    seen[i] = true;
    EXPECT_LT(last_of_delay[delay_ms[i]], i) << "delay " << delay_ms[i];
    last_of_delay[delay_ms[i]] = i;
  }
  for (const DelayedTaskHandle& h : handles) EXPECT_FALSE(Cancel(h));
}

// Cancelling most of many pending timers, then the rest, in a random order:
// each Cancel answers true once, nothing runs, and the heap's bulk drop of
// cancelled entries keeps the live ones.
TEST(TimerTest, CancelManyPendingInRandomOrder) {
  Loop loop;
  constexpr int kTimers = 2000;
  int fired = 0;
  std::vector<DelayedTaskHandle> handles;
  for (int i = 0; i < kTimers; ++i) {
    absl::StatusOr<DelayedTaskHandle> h =
        PostDelayed(loop.root(), absl::Seconds(3600 + i % 7),
                    [&fired](ContextHandle) { ++fired; });
    ASSERT_OK(h);
    handles.push_back(*h);
  }
  std::mt19937 rng(777);
  std::shuffle(handles.begin(), handles.end(), rng);
  for (const DelayedTaskHandle& h : handles) EXPECT_TRUE(Cancel(h));
  for (const DelayedTaskHandle& h : handles) EXPECT_FALSE(Cancel(h));
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(fired, 0);
}

// [S4] Shutdown counts (and destroys) only the delayed tasks still pending:
// cancelled ones, whose entries may still sit in the heap or the due list,
// are not counted again.
TEST(TimerTest, ShutdownCountsOnlyPendingDelayedTasks) {
  Loop loop;
  DestructionLog log;
  std::vector<DelayedTaskHandle> handles;
  for (int i = 0; i < 10; ++i) {
    absl::StatusOr<DelayedTaskHandle> h = PostDelayed(
        loop.root(), i % 2 == 0 ? absl::Hours(1) : absl::ZeroDuration(),
        [p = Probe(&log)](ContextHandle) {});
    ASSERT_OK(h);
    handles.push_back(*h);
  }
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(Cancel(handles[i]));
  EXPECT_EQ(log.count(), 4u);
  absl::StatusOr<ShutdownReport> report = loop.Shutdown();
  ASSERT_OK(report);
  EXPECT_EQ(report->delayed_dropped, 6u);
  EXPECT_EQ(report->tasks_run, 0u);
  EXPECT_EQ(log.count(), 10u);
  for (const DelayedTaskHandle& h : handles) EXPECT_FALSE(Cancel(h));
}

// A chain that alternates a zero-delay timer and a posted task (each posting
// the other) must not keep libevent from polling fds: a readable fd's
// callback runs within a few links of the fd becoming readable, not after the
// whole chain.
TEST(TimerTest, TimerAndTaskPingPongDoesNotStarveFds) {
  Loop loop;
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  constexpr int kLinks = 400;
  constexpr int kWriteAt = 20;
  int links = 0;
  int links_at_fd = -1;
  absl::StatusOr<FdWatch> watch = loop.WatchFd(
      loop.root(), fds[0], FdEvents::kRead, [&](ContextHandle, FdEvents) {
        char c;
        (void)read(fds[0], &c, 1);
        if (links_at_fd < 0) links_at_fd = links;
      });
  ASSERT_OK(watch);
  struct Link {
    Loop* loop;
    int* links;
    int write_fd;
    void operator()(ContextHandle here) && {
      const bool timer_next = (++*links % 2) == 1;
      if (*links == kWriteAt) {
        ASSERT_EQ(write(write_fd, "x", 1), 1);
      }
      if (*links >= kLinks) {
        loop->Stop();
      } else if (timer_next) {
        ASSERT_OK(PostDelayed(here, absl::ZeroDuration(),
                              Link{loop, links, write_fd}));
      } else {
        ASSERT_OK(Post(here, Link{loop, links, write_fd}));
      }
    }
  };
  ASSERT_OK(Post(loop.root(), Link{&loop, &links, fds[1]}));
  ASSERT_OK(loop.Run());
  EXPECT_EQ(links, kLinks);
  EXPECT_GE(links_at_fd, kWriteAt);
  EXPECT_LE(links_at_fd, kWriteAt + 8);
  watch->Stop();
  close(fds[0]);
  close(fds[1]);
}

// A foreign thread posts delayed tasks (zero delay and 1 ms) and cancels
// each one right away or not at all, while the loop runs them and the loop
// thread cancels others too: every task either ran once or was cancelled
// (Cancel answered true exactly once), never both, and every cancelled task
// was destroyed on the loop thread.
// A foreign PostDelayed's handle names its node and its own id, read before
// the push: once pushed, a short timer may run at once and its node go back
// to the pool for another poster's timer. A handle that read the id after
// the push could carry that other timer's id, and its Cancel would cancel
// the other timer (TSan also reports the read as a race with the reuse).
TEST(TimerTest, ForeignDelayedHandlesNeverNameAnotherPostersTimer) {
  auto thread = std::make_unique<LoopThread>();
  const ContextHandle root = thread->root();
  constexpr int kEach = 2000;
  std::atomic<int> short_ran{0};
  std::atomic<int> long_ran{0};
  std::vector<DelayedTaskHandle> short_handles, long_handles;
  std::thread shorts([&] {
    for (int i = 0; i < kEach; ++i) {
      absl::StatusOr<DelayedTaskHandle> h =
          PostDelayed(root, absl::ZeroDuration(),
                      [&short_ran](ContextHandle) { short_ran.fetch_add(1); });
      ASSERT_TRUE(h.ok());
      short_handles.push_back(*h);
    }
  });
  std::thread longs([&] {
    for (int i = 0; i < kEach; ++i) {
      absl::StatusOr<DelayedTaskHandle> h =
          PostDelayed(root, absl::Hours(1),
                      [&long_ran](ContextHandle) { long_ran.fetch_add(1); });
      ASSERT_TRUE(h.ok());
      long_handles.push_back(*h);
    }
  });
  shorts.join();
  longs.join();
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (short_ran.load() < kEach && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_EQ(short_ran.load(), kEach);
  int wrongly_cancelled = 0;
  for (const DelayedTaskHandle& h : short_handles) {
    if (Cancel(h)) ++wrongly_cancelled;  // They all ran.
  }
  EXPECT_EQ(wrongly_cancelled, 0);
  int cancelled = 0;
  for (const DelayedTaskHandle& h : long_handles) {
    if (Cancel(h)) ++cancelled;
  }
  EXPECT_EQ(cancelled, kEach);  // None was taken by a short timer's handle.
  thread.reset();
  EXPECT_EQ(long_ran.load(), 0);
}

TEST(TimerTest, ForeignPostAndCancelRaceWithTheLoop) {
  Loop loop;
  constexpr int kTasks = 3000;
  std::atomic<int> ran{0};
  std::atomic<int> cancelled{0};
  std::atomic<int> foreign_destroyed{0};
  const std::thread::id loop_thread = std::this_thread::get_id();
  struct OnDestroy {
    std::atomic<int>* foreign_destroyed;
    std::thread::id loop_thread;
    bool armed = true;
    OnDestroy(std::atomic<int>* f, std::thread::id t)
        : foreign_destroyed(f), loop_thread(t) {}
    OnDestroy(OnDestroy&& o) noexcept
        : foreign_destroyed(o.foreign_destroyed),
          loop_thread(o.loop_thread),
          armed(std::exchange(o.armed, false)) {}
    OnDestroy& operator=(OnDestroy&&) = delete;
    ~OnDestroy() {
      if (armed && std::this_thread::get_id() != loop_thread) {
        foreign_destroyed->fetch_add(1);
      }
    }
  };
  ctxloop::Mutex mu;
  std::vector<DelayedTaskHandle> for_the_loop;  // Guarded by mu.
  std::atomic<bool> producer_done{false};
  std::thread producer([&] {
    for (int i = 0; i < kTasks; ++i) {
      absl::StatusOr<DelayedTaskHandle> h =
          PostDelayed(loop.root(),
                      i % 2 == 0 ? absl::ZeroDuration() : absl::Milliseconds(1),
                      [&ran, d = OnDestroy(&foreign_destroyed, loop_thread)](
                          ContextHandle) { ran.fetch_add(1); });
      ASSERT_TRUE(h.ok());
      if (i % 3 == 0) {
        if (Cancel(*h)) cancelled.fetch_add(1);
        EXPECT_FALSE(Cancel(*h));
      } else if (i % 3 == 1) {
        ctxloop::MutexLock lock(&mu);
        for_the_loop.push_back(*h);
      }
    }
    producer_done.store(true);
    ASSERT_TRUE(Post(loop.root(), [](ContextHandle) {}).ok());  // A wake-up.
  });
  const auto give_up =
      std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < give_up) {
    std::vector<DelayedTaskHandle> mine;
    {
      ctxloop::MutexLock lock(&mu);
      mine.swap(for_the_loop);
    }
    for (const DelayedTaskHandle& h : mine) {
      if (Cancel(h)) cancelled.fetch_add(1);
    }
    ASSERT_OK(loop.RunUntilIdle());
    if (producer_done.load() && ran.load() + cancelled.load() == kTasks) break;
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  producer.join();
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(ran.load() + cancelled.load(), kTasks);
  EXPECT_GE(cancelled.load(), 1);
  EXPECT_EQ(foreign_destroyed.load(), 0);
}

// The loop thread posts delayed tasks (zero delay and 1 ms) and hands their
// handles to a foreign thread that cancels them while the loop runs them:
// a foreign Cancel that returns true is exact (the task never runs), every
// task either ran once or was cancelled, and cancelled tasks are destroyed
// on the loop thread.
TEST(TimerTest, ForeignCancelOfLoopThreadTimersIsExact) {
  Loop loop;
  constexpr int kTasks = 3000;
  std::atomic<int> ran{0};
  std::atomic<int> cancelled{0};
  DestructionLog log;
  ctxloop::Mutex mu;
  std::vector<DelayedTaskHandle> handles;  // Guarded by mu.
  std::atomic<bool> posting_done{false};
  std::atomic<bool> cancelling_done{false};
  std::thread canceller([&] {
    for (;;) {
      std::vector<DelayedTaskHandle> mine;
      {
        ctxloop::MutexLock lock(&mu);
        mine.swap(handles);
      }
      for (const DelayedTaskHandle& h : mine) {
        if (Cancel(h)) {
          cancelled.fetch_add(1);
          EXPECT_FALSE(Cancel(h));
        }
      }
      if (mine.empty() && posting_done.load()) break;
      std::this_thread::yield();
    }
    cancelling_done.store(true);
  });
  for (int i = 0; i < kTasks; ++i) {
    absl::StatusOr<DelayedTaskHandle> h = PostDelayed(
        loop.root(), i % 2 == 0 ? absl::ZeroDuration() : absl::Milliseconds(1),
        [&ran, p = Probe(&log)](ContextHandle) { ran.fetch_add(1); });
    ASSERT_OK(h);
    {
      ctxloop::MutexLock lock(&mu);
      handles.push_back(*h);
    }
    if (i % 16 == 0) ASSERT_OK(loop.RunUntilIdle());
  }
  posting_done.store(true);
  const auto give_up =
      std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < give_up &&
         !(cancelling_done.load() && ran.load() + cancelled.load() >= kTasks)) {
    ASSERT_OK(loop.RunUntilIdle());
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  canceller.join();
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(ran.load() + cancelled.load(), kTasks);
  // Every task, run or cancelled, was destroyed on the loop thread.
  const std::vector<std::thread::id> threads = log.threads();
  EXPECT_EQ(threads.size(), static_cast<size_t>(kTasks));
  for (const std::thread::id& t : threads) {
    EXPECT_EQ(t, std::this_thread::get_id());
  }
}

// loop.h: on the loop thread a delay counts from the loop's time, read once
// per callback (here at the callback's first delayed post); a timer never
// fires before that time plus its delay, even when the callback ran long
// after it read the time.
TEST(TimerTest, LoopThreadDelayCountsFromTheLoopTime) {
  Loop loop;
  using Clock = std::chrono::steady_clock;
  Clock::time_point task_start, fired;
  bool done = false;
  ASSERT_OK(Post(loop.root(), [&](ContextHandle here) {
    task_start = Clock::now();
    // Reads the loop's time (the first delayed post of this callback).
    absl::StatusOr<DelayedTaskHandle> far =
        PostDelayed(here, absl::Hours(1), [](ContextHandle) {});
    ASSERT_OK(far);
    EXPECT_TRUE(Cancel(*far));
    // The callback runs on for 20 ms; the loop's time stays put.
    while (Clock::now() - task_start < std::chrono::milliseconds(20)) {
    }
    ASSERT_OK(PostDelayed(here, absl::Milliseconds(30), [&](ContextHandle) {
      fired = Clock::now();
      done = true;
      loop.Stop();
    }));
  }));
  ASSERT_OK(PostDelayed(loop.root(), absl::Seconds(30), [&](ContextHandle) {
    loop.Stop();  // A failure guard only.
  }));
  ASSERT_OK(loop.Run());
  ASSERT_TRUE(done);
  // Never early relative to the rule: at least 30 ms after the loop's time,
  // which is no earlier than the task's start.
  EXPECT_GE(fired - task_start, std::chrono::milliseconds(30));
}

// loop.h: from another thread a delay counts from the call.
TEST(TimerTest, ForeignDelayCountsFromTheCall) {
  Loop loop;
  using Clock = std::chrono::steady_clock;
  Clock::time_point posted, fired;
  std::thread([&] {
    posted = Clock::now();
    ASSERT_OK(
        PostDelayed(loop.root(), absl::Milliseconds(20), [&](ContextHandle) {
          fired = Clock::now();
          loop.Stop();
        }));
  }).join();
  ASSERT_OK(PostDelayed(loop.root(), absl::Seconds(30), [&](ContextHandle) {
    loop.Stop();  // A failure guard only.
  }));
  ASSERT_OK(loop.Run());
  EXPECT_GE(fired - posted, std::chrono::milliseconds(20));
}

// --- Reentry: a due timer that cancels, re-arms, posts or stops --------------
//
// Timers due in one timer run, where one of them mutates the timer queue from
// inside its callback: cancels another due timer (or itself), posts a timer
// whose deadline becomes the earliest one (which re-arms the loop's timer),
// posts a zero-delay timer, stops the loop or destroys another due timer's
// context. Every timer not cancelled runs exactly once, a cancelled one never,
// and the queue keeps working afterwards.

// Posts `task`, failing the test if the post fails.
DelayedTaskHandle MustPostDelayed(ContextHandle ctx, absl::Duration delay,
                                  Task task) {
  absl::StatusOr<DelayedTaskHandle> h =
      PostDelayed(ctx, delay, std::move(task));
  EXPECT_TRUE(h.ok()) << h.status();
  return h.ok() ? *h : DelayedTaskHandle();
}

// How often each named timer ran.
using RunCounts = std::map<std::string, int>;

// A task counting its runs under `name` in `*counts`.
Task Count(RunCounts* counts, std::string name) {
  return [counts, name = std::move(name)](ContextHandle) { ++(*counts)[name]; };
}

// The queue still works: zero-delay timers and a delayed one posted now each
// run once, in deadline and post order, and a plain task runs too.
void ExpectTimersStillRun(Loop& loop) {
  std::vector<int> ran;
  for (int i = 0; i < 3; ++i) {
    MustPostDelayed(loop.root(), absl::ZeroDuration(),
                    [&ran, i](ContextHandle) { ran.push_back(i); });
  }
  MustPostDelayed(loop.root(), absl::Milliseconds(1), [&](ContextHandle) {
    ran.push_back(3);
    loop.Stop();
  });
  ASSERT_OK(Post(loop.root(), [&](ContextHandle) { ran.push_back(-1); }));
  ASSERT_OK(loop.Run());
  ASSERT_OK(loop.RunUntilIdle());
  std::sort(ran.begin(), ran.end());
  EXPECT_EQ(ran, (std::vector<int>{-1, 0, 1, 2, 3}));
}

// The most common timer pattern: a due timer cancels another due timeout and
// re-arms with a delay that becomes the earliest deadline.
TEST(TimerReentryTest, CancelAnotherDueTimerThenArmTheEarliestDeadline) {
  Loop loop;
  RunCounts runs;
  DelayedTaskHandle b;
  bool cancelled = false;
  MustPostDelayed(loop.root(), absl::ZeroDuration(), [&](ContextHandle) {
    ++runs["a"];
    cancelled = Cancel(b);
    MustPostDelayed(loop.root(), absl::Milliseconds(20), [&](ContextHandle) {
      ++runs["c"];
      loop.Stop();
    });
  });
  b = MustPostDelayed(loop.root(), absl::ZeroDuration(), Count(&runs, "b"));
  ASSERT_OK(loop.Run());
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_TRUE(cancelled);
  EXPECT_EQ(runs, (RunCounts{{"a", 1}, {"c", 1}}));
  ExpectTimersStillRun(loop);
}

// The same with more zero-delay timers due after the cancelled one, and two
// cancelled in a row: the ones after run once, in post order.
TEST(TimerReentryTest, CancelDueTimersThenArmKeepsTheLaterDueTimers) {
  Loop loop;
  std::vector<std::string> order;
  DelayedTaskHandle b, c;
  MustPostDelayed(loop.root(), absl::ZeroDuration(), [&](ContextHandle) {
    order.push_back("a");
    EXPECT_TRUE(Cancel(b));
    EXPECT_TRUE(Cancel(c));
    MustPostDelayed(loop.root(), absl::Milliseconds(20), [&](ContextHandle) {
      order.push_back("late");
      loop.Stop();
    });
  });
  b = MustPostDelayed(loop.root(), absl::ZeroDuration(),
                      [&](ContextHandle) { order.push_back("b"); });
  c = MustPostDelayed(loop.root(), absl::ZeroDuration(),
                      [&](ContextHandle) { order.push_back("c"); });
  for (const char* name : {"d", "e", "f"}) {
    MustPostDelayed(loop.root(), absl::ZeroDuration(),
                    [&order, name](ContextHandle) { order.push_back(name); });
  }
  ASSERT_OK(loop.Run());
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(order, (std::vector<std::string>{"a", "d", "e", "f", "late"}));
  ExpectTimersStillRun(loop);
}

// A due timer that cancels itself (false: it is running) and re-arms.
TEST(TimerReentryTest, CancelSelfThenArmTheEarliestDeadline) {
  Loop loop;
  RunCounts runs;
  DelayedTaskHandle a;
  a = MustPostDelayed(loop.root(), absl::ZeroDuration(), [&](ContextHandle) {
    ++runs["a"];
    EXPECT_FALSE(Cancel(a));
    MustPostDelayed(loop.root(), absl::Milliseconds(20), [&](ContextHandle) {
      ++runs["c"];
      loop.Stop();
    });
  });
  MustPostDelayed(loop.root(), absl::ZeroDuration(), Count(&runs, "b"));
  ASSERT_OK(loop.Run());
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(runs, (RunCounts{{"a", 1}, {"b", 1}, {"c", 1}}));
  ExpectTimersStillRun(loop);
}

// A due timer that cancels an earlier one of the same run (false: it ran)
// and a later one, not next in line, then re-arms.
TEST(TimerReentryTest, CancelEarlierAndLaterDueTimersThenArm) {
  Loop loop;
  RunCounts runs;
  DelayedTaskHandle a, d;
  a = MustPostDelayed(loop.root(), absl::ZeroDuration(), Count(&runs, "a"));
  MustPostDelayed(loop.root(), absl::ZeroDuration(), [&](ContextHandle) {
    ++runs["b"];
    EXPECT_FALSE(Cancel(a));
    EXPECT_TRUE(Cancel(d));
    MustPostDelayed(loop.root(), absl::Milliseconds(20), [&](ContextHandle) {
      ++runs["late"];
      loop.Stop();
    });
  });
  MustPostDelayed(loop.root(), absl::ZeroDuration(), Count(&runs, "c"));
  d = MustPostDelayed(loop.root(), absl::ZeroDuration(), Count(&runs, "d"));
  MustPostDelayed(loop.root(), absl::ZeroDuration(), Count(&runs, "e"));
  ASSERT_OK(loop.Run());
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(runs,
            (RunCounts{{"a", 1}, {"b", 1}, {"c", 1}, {"e", 1}, {"late", 1}}));
  ExpectTimersStillRun(loop);
}

// Re-arming with a long delay (the earliest deadline when no other timer is
// pending) and with a delay later than a pending one (not the earliest).
TEST(TimerReentryTest, CancelNextDueTimerThenArmLongerDelays) {
  for (const bool other_pending : {false, true}) {
    SCOPED_TRACE(other_pending ? "another timer pending" : "no other timer");
    Loop loop;
    RunCounts runs;
    DelayedTaskHandle b, longer;
    if (other_pending) {
      MustPostDelayed(loop.root(), absl::Milliseconds(5), Count(&runs, "5ms"));
    }
    MustPostDelayed(loop.root(), absl::ZeroDuration(), [&](ContextHandle) {
      ++runs["a"];
      EXPECT_TRUE(Cancel(b));
      longer = MustPostDelayed(loop.root(), absl::Hours(1), Count(&runs, "1h"));
    });
    b = MustPostDelayed(loop.root(), absl::ZeroDuration(), Count(&runs, "b"));
    MustPostDelayed(loop.root(), absl::ZeroDuration(), Count(&runs, "c"));
    ASSERT_OK(loop.RunUntilIdle());
    EXPECT_EQ(runs["a"], 1);
    EXPECT_EQ(runs["c"], 1);
    ExpectTimersStillRun(loop);
    EXPECT_TRUE(Cancel(longer));
    // Past the 5 ms timer.
    MustPostDelayed(loop.root(), absl::Milliseconds(10),
                    [&](ContextHandle) { loop.Stop(); });
    ASSERT_OK(loop.Run());
    RunCounts expected = {{"a", 1}, {"c", 1}};
    if (other_pending) expected["5ms"] = 1;
    EXPECT_EQ(runs, expected);
  }
}

// Many timers due in one run, each even one cancelling the next and
// re-arming with a deadline earlier than all pending ones.
TEST(TimerReentryTest, ManyDueTimersEachCancelTheNextAndArmEarlier) {
  Loop loop;
  constexpr int kTimers = 200;
  std::vector<int> runs(kTimers, 0);
  std::vector<int> late_runs(kTimers / 2, 0);
  std::vector<DelayedTaskHandle> handles(kTimers);
  int late_pending = kTimers / 2;
  for (int i = 0; i < kTimers; ++i) {
    handles[i] = MustPostDelayed(
        loop.root(), absl::ZeroDuration(), [&, i](ContextHandle) {
          ++runs[i];
          if (i % 2 != 0) return;
          EXPECT_TRUE(Cancel(handles[i + 1]));
          // Decreasing delays: each is the earliest deadline when posted.
          MustPostDelayed(loop.root(),
                          absl::Milliseconds(30) - absl::Microseconds(100 * i),
                          [&, i](ContextHandle) {
                            ++late_runs[i / 2];
                            if (--late_pending == 0) loop.Stop();
                          });
        });
  }
  ASSERT_OK(loop.Run());
  ASSERT_OK(loop.RunUntilIdle());
  for (int i = 0; i < kTimers; ++i) {
    EXPECT_EQ(runs[i], i % 2 == 0 ? 1 : 0) << "timer " << i;
  }
  EXPECT_EQ(late_runs, std::vector<int>(kTimers / 2, 1));
  ExpectTimersStillRun(loop);
}

// A due timer that cancels the next one, posts a zero-delay timer and a
// task, and re-arms: the new zero-delay timer runs once, in a later timer
// run (after the task, which runs after this timer run).
TEST(TimerReentryTest, CancelThenPostZeroDelayAndArm) {
  Loop loop;
  std::vector<std::string> order;
  DelayedTaskHandle b;
  MustPostDelayed(loop.root(), absl::ZeroDuration(), [&](ContextHandle) {
    order.push_back("a");
    EXPECT_TRUE(Cancel(b));
    MustPostDelayed(loop.root(), absl::ZeroDuration(),
                    [&](ContextHandle) { order.push_back("z"); });
    EXPECT_TRUE(Post(loop.root(), [&](ContextHandle) {
                  order.push_back("task");
                }).ok());
    MustPostDelayed(loop.root(), absl::Milliseconds(20), [&](ContextHandle) {
      order.push_back("late");
      loop.Stop();
    });
  });
  b = MustPostDelayed(loop.root(), absl::ZeroDuration(),
                      [&](ContextHandle) { order.push_back("b"); });
  MustPostDelayed(loop.root(), absl::ZeroDuration(),
                  [&](ContextHandle) { order.push_back("c"); });
  ASSERT_OK(loop.Run());
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(order, (std::vector<std::string>{"a", "c", "task", "z", "late"}));
  ExpectTimersStillRun(loop);
}

// A due timer that cancels the next one, re-arms and stops the loop: the
// rest of the run waits for the next Run, and runs once there.
TEST(TimerReentryTest, CancelArmAndStopKeepsTheRestForTheNextRun) {
  Loop loop;
  std::vector<std::string> order;
  DelayedTaskHandle b;
  MustPostDelayed(loop.root(), absl::ZeroDuration(), [&](ContextHandle) {
    order.push_back("a");
    EXPECT_TRUE(Cancel(b));
    MustPostDelayed(loop.root(), absl::Milliseconds(20), [&](ContextHandle) {
      order.push_back("late");
      loop.Stop();
    });
    loop.Stop();
  });
  b = MustPostDelayed(loop.root(), absl::ZeroDuration(),
                      [&](ContextHandle) { order.push_back("b"); });
  MustPostDelayed(loop.root(), absl::ZeroDuration(),
                  [&](ContextHandle) { order.push_back("c"); });
  MustPostDelayed(loop.root(), absl::ZeroDuration(),
                  [&](ContextHandle) { order.push_back("d"); });
  ASSERT_OK(loop.Run());
  EXPECT_EQ(order, (std::vector<std::string>{"a"}));
  ASSERT_OK(loop.Run());
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(order, (std::vector<std::string>{"a", "c", "d", "late"}));
  ExpectTimersStillRun(loop);
}

// A due timer that destroys the context of the next due timers (which are
// cancelled with it) and re-arms: the due timers of other contexts run once.
TEST(TimerReentryTest, DestroyAnotherDueTimersContextThenArm) {
  Loop loop;
  absl::StatusOr<ContextHandle> victim = loop.NewContext("victim");
  ASSERT_OK(victim);
  RunCounts runs;
  MustPostDelayed(loop.root(), absl::ZeroDuration(), [&](ContextHandle) {
    ++runs["a"];
    EXPECT_TRUE(loop.DestroyContext(*victim).ok());
    MustPostDelayed(loop.root(), absl::Milliseconds(20), [&](ContextHandle) {
      ++runs["late"];
      loop.Stop();
    });
  });
  MustPostDelayed(*victim, absl::ZeroDuration(), Count(&runs, "v1"));
  MustPostDelayed(*victim, absl::ZeroDuration(), Count(&runs, "v2"));
  MustPostDelayed(loop.root(), absl::ZeroDuration(), Count(&runs, "c"));
  MustPostDelayed(*victim, absl::ZeroDuration(), Count(&runs, "v3"));
  MustPostDelayed(loop.root(), absl::ZeroDuration(), Count(&runs, "d"));
  ASSERT_OK(loop.Run());
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(runs, (RunCounts{{"a", 1}, {"c", 1}, {"d", 1}, {"late", 1}}));
  ExpectTimersStillRun(loop);
}

// --- Bounds of the timer structures (loop_core.h, "Delayed tasks") -----------

loop_internal::LoopCore::TimerSizes Sizes(Loop& loop) {
  return loop_internal::FindOwnedCore(loop.root())->TimerSizesForTesting();
}

// The due list's bound after a timer run: 4 * Z + 192 entries (Z: zero-delay
// timers pending); a run adds the timers its tasks post.
constexpr size_t DueBound(size_t zero_delay_pending) {
  return 4 * zero_delay_pending + 192;
}

// Zero-delay timers that keep posting zero-delay timers never let the due
// list empty: it stays bounded (the entries before its head are dropped)
// instead of growing by one entry per timer run.
TEST(TimerBoundsTest, ZeroDelayTimerChainsKeepTheDueListBounded) {
  Loop loop;
  constexpr int kChains = 4;
  constexpr int kLinks = 5000;
  int runs = 0;
  size_t max_due = 0;
  std::function<void(int)> link = [&](int left) {
    ++runs;
    max_due = std::max(max_due, Sizes(loop).due_entries);
    if (left > 0) {
      MustPostDelayed(loop.root(), absl::ZeroDuration(),
                      [&, left](ContextHandle) { link(left - 1); });
    }
  };
  for (int c = 0; c < kChains; ++c) {
    MustPostDelayed(loop.root(), absl::ZeroDuration(),
                    [&](ContextHandle) { link(kLinks - 1); });
  }
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(runs, kChains * kLinks);
  // A run holds the kChains entries present at its start and the kChains
  // its tasks post.
  EXPECT_LE(max_due, DueBound(2 * kChains));
  EXPECT_EQ(Sizes(loop).due_entries, 0u);
  // One node per chain: a timer's node is free again before its task runs.
  EXPECT_EQ(Sizes(loop).slab_nodes, static_cast<size_t>(kChains));
}

// Zero-delay timers posted and cancelled in a loop (by a task, and by a due
// timer in the middle of a timer run) leave stale due-list entries that are
// dropped in bulk: the list stays within its bound, and the due timers after
// the canceller still run once, in post order.
TEST(TimerBoundsTest, PostAndCancelZeroDelayKeepsTheDueListBounded) {
  Loop loop;
  constexpr int kPairs = 20000;
  std::vector<std::string> order;
  size_t max_due = 0;
  auto churn = [&] {
    for (int i = 0; i < kPairs; ++i) {
      DelayedTaskHandle h =
          MustPostDelayed(loop.root(), absl::ZeroDuration(),
                          [&](ContextHandle) { order.push_back("cancelled"); });
      EXPECT_TRUE(Cancel(h));
      max_due = std::max(max_due, Sizes(loop).due_entries);
    }
  };
  MustPostDelayed(loop.root(), absl::ZeroDuration(),
                  [&](ContextHandle) { order.push_back("a"); });
  ASSERT_OK(Post(loop.root(), [&](ContextHandle) { churn(); }));
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_LE(max_due, DueBound(1));
  EXPECT_EQ(order, (std::vector<std::string>{"a"}));

  // Inside a timer run, with due timers after the churning one.
  max_due = 0;
  MustPostDelayed(loop.root(), absl::ZeroDuration(), [&](ContextHandle) {
    order.push_back("b");
    churn();
  });
  for (const char* name : {"c", "d", "e"}) {
    MustPostDelayed(loop.root(), absl::ZeroDuration(),
                    [&order, name](ContextHandle) { order.push_back(name); });
  }
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_LE(max_due, DueBound(4));
  EXPECT_EQ(order, (std::vector<std::string>{"a", "b", "c", "d", "e"}));
  EXPECT_EQ(Sizes(loop).due_entries, 0u);
  EXPECT_EQ(Sizes(loop).live_timers, 0u);
}

// Delayed timers posted and cancelled in a loop leave stale heap entries
// that are dropped in bulk: at most 2 * P + 63 entries (P: timers pending),
// and the slab reuses one node.
TEST(TimerBoundsTest, PostAndCancelDelayedKeepsTheHeapAndSlabBounded) {
  Loop loop;
  DelayedTaskHandle pending =
      MustPostDelayed(loop.root(), absl::Hours(1), [](ContextHandle) {});
  size_t max_heap = 0;
  for (int i = 0; i < 20000; ++i) {
    DelayedTaskHandle h = MustPostDelayed(loop.root(), absl::Seconds(1 + i % 7),
                                          [](ContextHandle) {});
    EXPECT_TRUE(Cancel(h));
    max_heap = std::max(max_heap, Sizes(loop).heap_entries);
  }
  EXPECT_LE(max_heap, 2u * 2 + 63);
  EXPECT_EQ(Sizes(loop).slab_nodes, 2u);
  EXPECT_TRUE(Cancel(pending));
}

// The slab grows to the most timers pending at once and reuses its nodes.
TEST(TimerBoundsTest, SlabGrowsToThePeakOfPendingTimers) {
  Loop loop;
  constexpr int kPeak = 1000;
  for (int round = 0; round < 3; ++round) {
    std::vector<DelayedTaskHandle> handles;
    for (int i = 0; i < kPeak; ++i) {
      handles.push_back(MustPostDelayed(
          loop.root(), round == 1 ? absl::ZeroDuration() : absl::Hours(1),
          [](ContextHandle) {}));
    }
    EXPECT_EQ(Sizes(loop).live_timers, static_cast<size_t>(kPeak));
    if (round == 1) {
      ASSERT_OK(loop.RunUntilIdle());
    } else {
      for (const DelayedTaskHandle& h : handles) EXPECT_TRUE(Cancel(h));
    }
    EXPECT_EQ(Sizes(loop).live_timers, 0u);
    EXPECT_EQ(Sizes(loop).slab_nodes, static_cast<size_t>(kPeak));
  }
}

}  // namespace
}  // namespace ctxloop
