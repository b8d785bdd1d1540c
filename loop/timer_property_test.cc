// Copyright 2026 The ctxloop Authors.
//
// Seeded property test of delayed tasks (PostDelayed, Cancel; loop.h) against
// a reference model, public API only. Each seed drives one loop with a random
// sequence of operations, issued before the loop runs and from inside the
// timers and tasks it runs: post timers (zero, short and never-due delays,
// to live and destroyed contexts), cancel other timers (pending, running,
// run, cancelled), cancel the running timer itself, post tasks that issue
// more operations, stop the loop, make and destroy contexts. The model says
// what must hold:
//   * every timer not cancelled runs exactly once, on its context, and a
//     cancelled one (by Cancel or by destroying its context) never runs;
//   * `Cancel` returns true exactly when the timer had neither started to
//     run nor been cancelled;
//   * a post to a destroyed context fails, any other post succeeds;
//   * order: a timer posted before another with a delay no longer runs
//     first (deadlines count from a loop time that never decreases, and
//     equal deadlines run in post order);
//   * every posted task runs once; `LoopStats::tasks_run` counts them all;
//   * the loop's count of pending timers is the model's, after every
//     operation, and the heap and the due list stay within the bounds
//     loop_core.h states (internal sizes, read for the check only).
// The run order depends on the clock (delays are real), so a seed replays the
// same choices but not always the same interleaving; a failure names the
// seed. Cost: the seeds of one test take a few seconds (the longest delay
// that is ever due is 1 ms). Seeds: CTXLOOP_TIMER_PROPERTY_SEEDS (count,
// default below) and CTXLOOP_TIMER_PROPERTY_FIRST_SEED.

#include <cstdint>
#include <cstdlib>
#include <deque>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "ctxloop/loop/context_handle.h"
#include "ctxloop/loop/internal/loop_core.h"
#include "ctxloop/loop/internal/owned_core.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/loop/task.h"
#include "ctxloop/loop/testing/test_util.h"
#include "gtest/gtest.h"

namespace ctxloop {
namespace {

// Never due while a seed runs: cancelled at its end.
constexpr absl::Duration kNever = absl::Hours(1);
// A seed that has not finished by then lost a timer (or hangs).
constexpr absl::Duration kGuard = absl::Seconds(5);
constexpr int kMaxTimers = 64;   // Timers posted per seed.
constexpr int kMaxTasks = 24;    // Tasks posted per seed.
constexpr int kMaxContexts = 6;  // Contexts made per seed (with root).
constexpr int kDefaultSeeds = 3000;

uint32_t EnvOr(const char* name, uint32_t fallback) {
  const char* v = std::getenv(name);
  return v == nullptr || *v == '\0'
             ? fallback
             : static_cast<uint32_t>(std::strtoul(v, nullptr, 10));
}

class TimerModel {
 public:
  explicit TimerModel(uint32_t seed) : rng_(seed) {}

  // Runs the seed's operations to the end and checks the model.
  void Check() {
    contexts_.push_back(Ctx{loop_.root(), true});
    const int initial = Uniform(1, 10);
    for (int i = 0; i < initial; ++i) {
      RandomOp(/*self=*/-1);
      CheckSizes(/*in_timer_run=*/false);
    }
    absl::StatusOr<DelayedTaskHandle> guard =
        PostDelayed(loop_.root(), kGuard, [this](ContextHandle) {
          guard_fired_ = true;
          loop_.Stop();
        });
    ASSERT_OK(guard);
    guard_pending_ = true;
    for (int rounds = 0; !Done() && !guard_fired_ && rounds < 10000; ++rounds) {
      // RunUntilIdle returns with timers not yet due; Run waits for them
      // (the callback that leaves nothing due stops it).
      if (Uniform(0, 3) == 0) {
        ASSERT_OK(loop_.RunUntilIdle());
      } else {
        ASSERT_OK(loop_.Run());
      }
      CheckSizes(/*in_timer_run=*/false);
    }
    ASSERT_FALSE(guard_fired_)
        << "timers lost: " << finite_pending_ << " pending, " << tasks_pending_
        << " tasks pending";
    ASSERT_TRUE(Done());
    EXPECT_TRUE(Cancel(*guard));
    guard_pending_ = false;
    // Only never-due timers may be pending now; cancelling them succeeds
    // exactly once.
    uint64_t ran = 0;
    for (size_t i = 0; i < timers_.size(); ++i) {
      Timer& t = timers_[i];
      const bool pending = t.state == State::kPending;
      EXPECT_EQ(Cancel(t.handle), pending) << "timer " << i;
      EXPECT_FALSE(Cancel(t.handle)) << "timer " << i;
      if (pending) {
        EXPECT_EQ(t.delay, kNever) << "timer " << i;
        t.state = State::kCancelled;
      }
      EXPECT_TRUE(t.state == State::kRan || t.state == State::kCancelled)
          << "timer " << i;
      EXPECT_EQ(t.runs, t.state == State::kRan ? 1 : 0) << "timer " << i;
      if (t.state == State::kRan) ++ran;
    }
    EXPECT_EQ(tasks_posted_, tasks_run_);
    EXPECT_EQ(loop_.stats().tasks_run, ran + tasks_run_);  // Not the guard.
  }

 private:
  enum class State { kPending, kRunning, kRan, kCancelled };
  struct Timer {
    DelayedTaskHandle handle;
    int ctx = 0;  // Index in contexts_.
    absl::Duration delay;
    State state = State::kPending;
    int runs = 0;
  };
  struct Ctx {
    ContextHandle handle;
    bool live;
  };

  int Uniform(int lo, int hi) {  // In [lo, hi].
    return std::uniform_int_distribution<int>(lo, hi)(rng_);
  }
  bool Done() const { return finite_pending_ == 0 && tasks_pending_ == 0; }
  void StopIfDone() {
    if (Done()) loop_.Stop();
  }

  // One random operation; `self` is the running timer's index, or -1.
  void RandomOp(int self) {
    const int op = Uniform(0, 99);
    if (op < 40) {
      PostTimer();
    } else if (op < 62) {
      CancelTimer(timers_.empty()
                      ? -1
                      : Uniform(0, static_cast<int>(timers_.size()) - 1));
    } else if (op < 72) {
      CancelTimer(self >= 0 ? self : -1);
    } else if (op < 82) {
      PostTask();
    } else if (op < 87) {
      loop_.Stop();
    } else if (op < 93) {
      DestroyContext();
    } else {
      NewContext();
    }
  }

  void RandomOps(int self) {
    const int n = Uniform(0, 3);
    for (int i = 0; i < n; ++i) {
      RandomOp(self);
      CheckSizes(/*in_timer_run=*/self >= 0);
    }
  }

  // The loop's pending timers are the model's; the heap and (outside a
  // timer run, which may hold the entries it started with) the due list
  // are within their bounds.
  void CheckSizes(bool in_timer_run) {
    size_t pending = guard_pending_ ? 1 : 0;
    size_t zero_delay = 0;
    for (const Timer& t : timers_) {
      if (t.state != State::kPending) continue;
      ++pending;
      if (t.delay == absl::ZeroDuration()) ++zero_delay;
    }
    const loop_internal::LoopCore::TimerSizes sizes =
        loop_internal::FindOwnedCore(loop_.root())->TimerSizesForTesting();
    EXPECT_EQ(sizes.live_timers, pending);
    EXPECT_GE(sizes.slab_nodes, pending);
    EXPECT_LE(sizes.heap_entries, 2 * pending + 63);
    if (!in_timer_run) {
      EXPECT_LE(sizes.due_entries, 4 * zero_delay + 192);
    }
  }

  void PostTimer() {
    if (timers_.size() >= kMaxTimers) return;
    static const absl::Duration kDelays[] = {absl::ZeroDuration(),
                                             absl::ZeroDuration(),
                                             absl::ZeroDuration(),
                                             absl::Nanoseconds(-5),
                                             absl::Microseconds(20),
                                             absl::Microseconds(100),
                                             absl::Microseconds(300),
                                             absl::Milliseconds(1),
                                             kNever};
    const absl::Duration delay = kDelays[Uniform(
        0, static_cast<int>(sizeof(kDelays) / sizeof(kDelays[0])) - 1)];
    // Mostly the root; any context made, destroyed ones included.
    const int ctx = Uniform(0, 2) == 0
                        ? 0
                        : Uniform(0, static_cast<int>(contexts_.size()) - 1);
    const int index = static_cast<int>(timers_.size());
    absl::StatusOr<DelayedTaskHandle> h = PostDelayed(
        contexts_[ctx].handle, delay,
        [this, index](ContextHandle here) { OnTimer(index, here); });
    if (!contexts_[ctx].live) {
      EXPECT_FALSE(h.ok()) << "post to destroyed context " << ctx;
      return;
    }
    ASSERT_OK(h);
    Timer t;
    t.handle = *h;
    t.ctx = ctx;
    t.delay = delay <= absl::ZeroDuration() ? absl::ZeroDuration() : delay;
    timers_.push_back(t);
    if (t.delay != kNever) ++finite_pending_;
  }

  void CancelTimer(int index) {
    if (index < 0) return;
    Timer& t = timers_[index];
    const bool expected = t.state == State::kPending;
    EXPECT_EQ(Cancel(t.handle), expected)
        << "timer " << index << " state " << static_cast<int>(t.state);
    if (expected) MarkCancelled(t);
  }

  void MarkCancelled(Timer& t) {
    t.state = State::kCancelled;
    if (t.delay != kNever) --finite_pending_;
  }

  void PostTask() {
    if (tasks_posted_ >= kMaxTasks) return;
    ++tasks_posted_;
    ++tasks_pending_;
    ASSERT_OK(Post(loop_.root(), [this](ContextHandle) {
      --tasks_pending_;
      ++tasks_run_;
      RandomOps(/*self=*/-1);
      StopIfDone();
    }));
  }

  void NewContext() {
    if (contexts_.size() >= kMaxContexts) return;
    absl::StatusOr<ContextHandle> c =
        loop_.NewContext(absl::StrCat("c", contexts_.size()));
    ASSERT_OK(c);
    contexts_.push_back(Ctx{*c, true});
  }

  // Destroys a live context other than the root: its pending timers are
  // cancelled (a running one finishes).
  void DestroyContext() {
    std::vector<int> live;
    for (size_t i = 1; i < contexts_.size(); ++i) {
      if (contexts_[i].live) live.push_back(static_cast<int>(i));
    }
    if (live.empty()) return;
    const int ctx = live[Uniform(0, static_cast<int>(live.size()) - 1)];
    ASSERT_OK(loop_.DestroyContext(contexts_[ctx].handle));
    contexts_[ctx].live = false;
    for (Timer& t : timers_) {
      if (t.ctx == ctx && t.state == State::kPending) MarkCancelled(t);
    }
  }

  void OnTimer(int index, ContextHandle here) {
    Timer& t = timers_[index];
    ASSERT_EQ(t.state, State::kPending)
        << "timer " << index << " ran " << t.runs + 1 << " times";
    EXPECT_EQ(here, contexts_[t.ctx].handle) << "timer " << index;
    EXPECT_NE(t.delay, kNever) << "timer " << index;
    // Order: no timer posted earlier with a delay no longer is still pending.
    for (int j = 0; j < index; ++j) {
      const Timer& e = timers_[j];
      if (e.state == State::kPending && e.delay <= t.delay) {
        ADD_FAILURE() << "timer " << index << " (delay " << t.delay
                      << ") ran before timer " << j << " (delay " << e.delay
                      << ")";
      }
    }
    t.state = State::kRunning;
    ++t.runs;
    --finite_pending_;
    RandomOps(index);
    timers_[index].state = State::kRan;
    StopIfDone();
  }

  std::mt19937 rng_;
  Loop loop_;
  std::deque<Timer> timers_;  // Never moves its elements.
  std::vector<Ctx> contexts_;
  int finite_pending_ = 0;  // Timers neither run nor cancelled, not kNever.
  int tasks_posted_ = 0;
  int tasks_pending_ = 0;
  uint64_t tasks_run_ = 0;
  bool guard_pending_ = false;
  bool guard_fired_ = false;
};

TEST(TimerPropertyTest, RandomOperationsIncludingReentryMatchTheModel) {
  const uint32_t first = EnvOr("CTXLOOP_TIMER_PROPERTY_FIRST_SEED", 1);
  const uint32_t seeds = EnvOr("CTXLOOP_TIMER_PROPERTY_SEEDS", kDefaultSeeds);
  for (uint32_t seed = first; seed < first + seeds; ++seed) {
    SCOPED_TRACE(absl::StrCat("seed ", seed));
    TimerModel(seed).Check();
    if (::testing::Test::HasFailure()) break;  // One seed's failures.
  }
}

}  // namespace
}  // namespace ctxloop
