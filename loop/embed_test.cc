// Copyright 2026 The ctxloop Authors.
//
// Embedding a Loop in a host's event loop: a Loop on the host's own libevent
// base (`Options::host_base`, cases [S17]-[S20] of loop/internal/
// loop_core.cc), and a Loop driven by another loop through `BackendFd()`,
// `BackendTimeout()` and `RunReady()` ([S21]), here a plain poll() host
// (testing/poll_driver.h).

#include <arpa/inet.h>
#include <event2/event.h>
#include <event2/http.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "ctxloop/loop/context_handle.h"
#include "ctxloop/loop/fd_watch.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/loop/task.h"
#include "ctxloop/loop/testing/poll_driver.h"
#include "ctxloop/loop/testing/test_util.h"
#include "gtest/gtest.h"

namespace ctxloop {
namespace {

using testing_util::PollDriver;

// A host's own libevent base and a repeating host event on it, counting its
// runs (the host keeps its own work on the base the Loop adopts).
struct HostBase {
  HostBase() : base(event_base_new()) {}
  ~HostBase() {
    if (tick != nullptr) event_free(tick);
    event_base_free(base);
  }
  HostBase(const HostBase&) = delete;
  HostBase& operator=(const HostBase&) = delete;

  // A host timer every `period`, counted in `ticks`.
  void StartTicking(absl::Duration period) {
    tick = event_new(base, -1, EV_PERSIST, &HostBase::OnTick, this);
    const timeval tv = absl::ToTimeval(period);
    event_add(tick, &tv);
  }
  static void OnTick(int, short, void* arg) {
    static_cast<HostBase*>(arg)->ticks++;
  }
  // Dispatches the base (the host's own loop) until `done()` or `limit`;
  // true if `done()`.
  bool DispatchUntil(const std::function<bool()>& done, absl::Duration limit) {
    const absl::Time end = absl::Now() + limit;
    while (!done() && absl::Now() < end) {
      event_base_loop(base, EVLOOP_ONCE);
    }
    return done();
  }
  int AddedEvents() {
    return event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED);
  }

  event_base* base;
  event* tick = nullptr;
  int ticks = 0;
};

std::unique_ptr<Loop> AdoptingLoop(event_base* base) {
  Loop::Options options;
  options.host_base = base;
  absl::StatusOr<std::unique_ptr<Loop>> loop = Loop::Create(std::move(options));
  EXPECT_TRUE(loop.ok()) << loop.status();
  return loop.ok() ? *std::move(loop) : nullptr;
}

// --- Adopting the host's base ------------------------------------------------

TEST(AdoptedBase, PostsTimersWatchesAndHostEventsRunUnderTheHostsDispatch) {
  HostBase host;
  host.StartTicking(absl::Milliseconds(2));
  std::unique_ptr<Loop> loop = AdoptingLoop(host.base);
  ASSERT_NE(loop, nullptr);
  EXPECT_EQ(loop->base(), host.base);
  ContextHandle ctx = *loop->NewContext("guest");

  int local = 0, follow_up = 0, delayed = 0, fd_ready = 0;
  std::atomic<int> foreign{0};
  ASSERT_OK(Post(ctx, [&](ContextHandle here) {
    EXPECT_EQ(here, ctx);
    ++local;
    ASSERT_OK(Post(here, [&](ContextHandle) { ++follow_up; }));
  }));
  const absl::Time posted = absl::Now();
  absl::Time fired;
  ASSERT_OK(PostDelayed(ctx, absl::Milliseconds(20), [&](ContextHandle) {
    fired = absl::Now();
    ++delayed;
  }));
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  absl::StatusOr<FdWatch> watch =
      loop->WatchFd(ctx, fds[0], FdEvents::kRead, [&](ContextHandle, FdEvents) {
        char c;
        (void)!read(fds[0], &c, 1);
        ++fd_ready;
      });
  ASSERT_OK(watch);
  std::thread producer([&] {
    for (int i = 0; i < 100; ++i) {
      ASSERT_OK(Post(ctx, [&](ContextHandle) { foreign.fetch_add(1); }));
    }
    (void)!write(fds[1], "x", 1);
  });
  EXPECT_TRUE(host.DispatchUntil(
      [&] {
        return local == 1 && follow_up == 1 && delayed == 1 && fd_ready == 1 &&
               foreign.load() == 100 && host.ticks >= 5;
      },
      absl::Seconds(10)));
  producer.join();
  EXPECT_GE(fired - posted, absl::Milliseconds(20));
  watch->Stop();
  loop.reset();
  close(fds[0]);
  close(fds[1]);
}

TEST(AdoptedBase, LoopsOwnBaseIsRefused) {  // [S18]
  Loop owner;
  Loop::Options options;
  options.host_base = owner.base();
  absl::StatusOr<std::unique_ptr<Loop>> loop = Loop::Create(std::move(options));
  ASSERT_FALSE(loop.ok());
  EXPECT_EQ(loop.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(loop.status().message(), "host_base"));
}

TEST(AdoptedBase, TwoLoopsMayShareOneHostBase) {
  HostBase host;
  std::unique_ptr<Loop> a = AdoptingLoop(host.base);
  std::unique_ptr<Loop> b = AdoptingLoop(host.base);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  int ran = 0;
  ASSERT_OK(Post(a->root(), [&](ContextHandle) { ++ran; }));
  ASSERT_OK(Post(b->root(), [&](ContextHandle) { ++ran; }));
  EXPECT_TRUE(host.DispatchUntil([&] { return ran == 2; }, absl::Seconds(5)));
}

// [S17] Destroying the Loop leaves the host's base as it found it: every
// event the Loop added is gone (the count of added events is back to what it
// was), and the host's own events keep running.
TEST(AdoptedBase, DestructionFreesEveryLoopEventAndNeverTheBase) {
  HostBase host;
  host.StartTicking(absl::Milliseconds(1));
  const int before = host.AddedEvents();
  std::unique_ptr<Loop> loop = AdoptingLoop(host.base);
  ASSERT_NE(loop, nullptr);
  ContextHandle ctx = *loop->NewContext();
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  absl::StatusOr<FdWatch> watch = loop->WatchFd(ctx, fds[0], FdEvents::kRead,
                                                [](ContextHandle, FdEvents) {});
  ASSERT_OK(watch);
  int ran = 0;
  ASSERT_OK(PostDelayed(ctx, absl::Hours(1), [&](ContextHandle) { ++ran; }));
  ASSERT_OK(PostDelayed(ctx, absl::Milliseconds(1), [&](ContextHandle) {}));
  ASSERT_OK(Post(ctx, [&](ContextHandle) { ++ran; }));
  EXPECT_GT(host.AddedEvents(), before);
  loop.reset();  // [S1] drains the posted task; [S4] drops the delayed one.
  EXPECT_EQ(ran, 1);
  EXPECT_EQ(host.AddedEvents(), before);
  const int ticks = host.ticks;
  EXPECT_TRUE(host.DispatchUntil([&] { return host.ticks >= ticks + 5; },
                                 absl::Seconds(5)));
  close(fds[0]);
  close(fds[1]);
}

// [S17] The node pool's idle trim is a one-second timer of the loop: after a
// burst of cross-thread posts it is pending when the loop goes. On an adopted
// base it must go with the loop (a one-shot `event_base_once` would stay on
// the host's base and call into the destroyed loop a second later).
TEST(AdoptedBase, PoolTrimTimerGoesWithTheLoop) {
  HostBase host;
  host.StartTicking(absl::Milliseconds(5));
  const int before = host.AddedEvents();
  std::unique_ptr<Loop> loop = AdoptingLoop(host.base);
  ASSERT_NE(loop, nullptr);
  ContextHandle ctx = loop->root();
  constexpr int kBurst = 40000;  // Past the pool's bound of free nodes.
  std::atomic<int> ran{0};
  std::thread producer([&] {
    for (int i = 0; i < kBurst; ++i) {
      ASSERT_OK(Post(ctx, [&](ContextHandle) { ran.fetch_add(1); }));
    }
  });
  producer.join();
  ASSERT_TRUE(host.DispatchUntil([&] { return ran.load() == kBurst; },
                                 absl::Seconds(20)));
  // Let the loop find its ingress empty (it arms it, and sets the trim
  // timer if the pool is over its bound).
  host.DispatchUntil([] { return false; }, absl::Milliseconds(20));
  loop.reset();
  EXPECT_EQ(host.AddedEvents(), before);
  // Past the trim interval: nothing of the loop may run now.
  const absl::Time end = absl::Now() + absl::Milliseconds(1300);
  host.DispatchUntil([&] { return absl::Now() >= end; }, absl::Seconds(3));
}

// [S20] Stop() from a task while the host dispatches: the host's loop goes
// on (its timer keeps firing, later tasks run); the stop is kept for the next
// Run(), which returns at once.
TEST(AdoptedBase, StopNeverBreaksTheHostsDispatch) {
  HostBase host;
  host.StartTicking(absl::Milliseconds(1));
  std::unique_ptr<Loop> loop = AdoptingLoop(host.base);
  ASSERT_NE(loop, nullptr);
  int after_stop = 0;
  ASSERT_OK(Post(loop->root(), [&](ContextHandle) { loop->Stop(); }));
  ASSERT_OK(Post(loop->root(), [&](ContextHandle) { ++after_stop; }));
  // One dispatch of the host's own: it must not be broken out of.
  event* done = evtimer_new(
      host.base,
      [](int, short, void* b) {
        event_base_loopbreak(static_cast<event_base*>(b));
      },
      host.base);
  const timeval tv = {0, 30000};
  evtimer_add(done, &tv);
  const absl::Time start = absl::Now();
  event_base_dispatch(host.base);
  event_free(done);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(25));
  EXPECT_EQ(after_stop, 1);  // The batch was not cut short either.
  EXPECT_GE(host.ticks, 5);
  // The stop is kept for ctxloop's own Run(), which returns at once.
  ASSERT_OK(loop->Run());
}

// [S20] A foreign Stop() while the host dispatches: same.
TEST(AdoptedBase, ForeignStopNeverBreaksTheHostsDispatch) {
  HostBase host;
  std::unique_ptr<Loop> loop = AdoptingLoop(host.base);
  ASSERT_NE(loop, nullptr);
  std::atomic<bool> stopped{false};
  int ticks_after = 0;
  std::thread stopper([&] {
    loop->Stop();
    stopped.store(true);
  });
  stopper.join();
  host.StartTicking(absl::Milliseconds(1));
  const timeval tv = {0, 30000};
  event* done = evtimer_new(
      host.base,
      [](int, short, void* b) {
        event_base_loopbreak(static_cast<event_base*>(b));
      },
      host.base);
  evtimer_add(done, &tv);
  event_base_dispatch(host.base);
  event_free(done);
  ticks_after = host.ticks;
  EXPECT_GE(ticks_after, 5);
  ASSERT_OK(loop->Run());  // Kept: returns at once.
}

// Run() on an adopted base dispatches the host's base (its events too) until
// Stop(), and Stop() ends it.
TEST(AdoptedBase, RunDispatchesTheHostBaseUntilStop) {
  HostBase host;
  host.StartTicking(absl::Milliseconds(1));
  std::unique_ptr<Loop> loop = AdoptingLoop(host.base);
  ASSERT_NE(loop, nullptr);
  ASSERT_OK(PostDelayed(loop->root(), absl::Milliseconds(30),
                        [&](ContextHandle) { loop->Stop(); }));
  ASSERT_OK(loop->Run());
  EXPECT_GE(host.ticks, 5);
}

// [S19] Shutdown from inside a task while the host dispatches is refused;
// from the host's own callback it drains.
TEST(AdoptedBase, ShutdownFromOwnCallbackRefusedFromHostCallbackDrains) {
  HostBase host;
  std::unique_ptr<Loop> loop = AdoptingLoop(host.base);
  ASSERT_NE(loop, nullptr);
  absl::Status inside;
  bool ran_inside = false;
  ASSERT_OK(Post(loop->root(), [&](ContextHandle) {
    inside = loop->Shutdown().status();
    EXPECT_EQ(loop->RunReady().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(loop->Run().code(), absl::StatusCode::kFailedPrecondition);
    ran_inside = true;
  }));
  ASSERT_TRUE(host.DispatchUntil([&] { return ran_inside; }, absl::Seconds(5)));
  EXPECT_EQ(inside.code(), absl::StatusCode::kFailedPrecondition);

  // From a host callback: drains what is queued ([S1]).
  struct Arg {
    Loop* loop;
    int drained = 0;
    absl::StatusOr<ShutdownReport> report;
  } arg{loop.get(), 0, absl::UnknownError("not run")};
  event_base_once(
      host.base, -1, EV_TIMEOUT,
      [](int, short, void* a) {
        auto* arg = static_cast<Arg*>(a);
        EXPECT_TRUE(Post(arg->loop->root(), [arg](ContextHandle) {
                      ++arg->drained;
                    }).ok());
        arg->report = arg->loop->Shutdown();
      },
      &arg, nullptr);
  host.DispatchUntil([&] { return arg.report.ok(); }, absl::Seconds(5));
  ASSERT_OK(arg.report);
  EXPECT_EQ(arg.drained, 1);
  EXPECT_EQ(arg.report->tasks_run, 1u);
  // Shut down: a host that keeps dispatching runs nothing of the loop.
  host.StartTicking(absl::Milliseconds(1));
  EXPECT_TRUE(
      host.DispatchUntil([&] { return host.ticks >= 3; }, absl::Seconds(5)));
}

// [S17] The Loop destroyed from a host callback while the host dispatches.
TEST(AdoptedBase, DestroyedFromAHostCallback) {
  HostBase host;
  host.StartTicking(absl::Milliseconds(1));
  const int before = host.AddedEvents();
  std::unique_ptr<Loop> loop = AdoptingLoop(host.base);
  ASSERT_NE(loop, nullptr);
  int ran = 0;
  ASSERT_OK(Post(loop->root(), [&](ContextHandle) { ++ran; }));
  ASSERT_OK(PostDelayed(loop->root(), absl::Milliseconds(1),
                        [&](ContextHandle) { ++ran; }));
  event_base_once(
      host.base, -1, EV_TIMEOUT,
      [](int, short, void* l) {
        static_cast<std::unique_ptr<Loop>*>(l)->reset();
      },
      &loop, nullptr);
  EXPECT_TRUE(
      host.DispatchUntil([&] { return loop == nullptr; }, absl::Seconds(5)));
  EXPECT_GE(ran, 1);
  EXPECT_EQ(host.AddedEvents(), before);
  const int ticks = host.ticks;
  EXPECT_TRUE(host.DispatchUntil([&] { return host.ticks >= ticks + 3; },
                                 absl::Seconds(5)));
}

// [S19] Destroying the Loop from inside one of its own callbacks while the
// host dispatches aborts with a message, as destroying it inside Run() does.
TEST(AdoptedBaseDeathTest, DestroyedFromItsOwnCallbackAborts) {
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  EXPECT_DEATH(
      {
        HostBase host;
        std::unique_ptr<Loop> loop = AdoptingLoop(host.base);
        (void)Post(loop->root(), [&](ContextHandle) { loop.reset(); });
        host.DispatchUntil([] { return false; }, absl::Seconds(2));
      },
      "destroyed from inside one of its own callbacks");
}

// --- Driven by another loop (a poll() host) ----------------------------------

TEST(Driven, BackendFdIsStableAndReadableFromAnyThread) {
  Loop loop;
  absl::StatusOr<int> fd = loop.BackendFd();
  ASSERT_OK(fd);
  EXPECT_GE(*fd, 0);
  EXPECT_EQ(*loop.BackendFd(), *fd);
  std::thread other([&] {
    absl::StatusOr<int> again = loop.BackendFd();
    ASSERT_OK(again);
    EXPECT_EQ(*again, *fd);
  });
  other.join();
}

TEST(Driven, FirstBackendFdCallOnAnotherThreadIsRefused) {
  Loop loop;
  std::thread other([&] {
    absl::StatusOr<int> fd = loop.BackendFd();
    EXPECT_EQ(fd.status().code(), absl::StatusCode::kFailedPrecondition);
  });
  other.join();
}

TEST(Driven, NonEpollBaseIsUnimplemented) {
  event_config* cfg = event_config_new();
  event_config_avoid_method(cfg, "epoll");
  event_base* base = event_base_new_with_config(cfg);
  event_config_free(cfg);
  ASSERT_NE(base, nullptr);
  {
    std::unique_ptr<Loop> loop = AdoptingLoop(base);
    ASSERT_NE(loop, nullptr);
    absl::StatusOr<int> fd = loop->BackendFd();
    EXPECT_EQ(fd.status().code(), absl::StatusCode::kUnimplemented);
    EXPECT_TRUE(absl::StrContains(fd.status().message(), "epoll"))
        << fd.status();
  }
  event_base_free(base);
}

TEST(Driven, RunReadyOnlyOnTheLoopThreadAndNotNested) {
  Loop loop;
  std::thread other([&] {
    EXPECT_EQ(loop.RunReady().code(), absl::StatusCode::kFailedPrecondition);
  });
  other.join();
  absl::Status nested;
  ASSERT_OK(
      Post(loop.root(), [&](ContextHandle) { nested = loop.RunReady(); }));
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(nested.code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_OK(loop.Shutdown());
  EXPECT_EQ(loop.RunReady().code(), absl::StatusCode::kFailedPrecondition);
}

// Everything a loop does, with the loop driven by a poll() host only.
TEST(Driven, PollHostRunsPostsTimersWatchesAndLibeventTimeouts) {
  Loop loop;
  PollDriver host(&loop);
  ASSERT_OK(host.status());
  ContextHandle ctx = *loop.NewContext("driven");
  int local = 0, follow_ups = 0, delayed = 0, fd_ready = 0, libevent_timer = 0;
  std::atomic<int> foreign{0};
  ASSERT_OK(Post(ctx, [&](ContextHandle here) {
    ++local;
    // Local posts made during RunReady, three deep.
    ASSERT_OK(Post(here, [&](ContextHandle here) {
      ++follow_ups;
      ASSERT_OK(Post(here, [&](ContextHandle) { ++follow_ups; }));
    }));
  }));
  const absl::Time start = absl::Now();
  absl::Time delayed_at, libevent_at;
  ASSERT_OK(PostDelayed(ctx, absl::Milliseconds(25), [&](ContextHandle) {
    delayed_at = absl::Now();
    ++delayed;
  }));
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  absl::StatusOr<FdWatch> watch =
      loop.WatchFd(ctx, fds[0], FdEvents::kRead, [&](ContextHandle, FdEvents) {
        char c;
        (void)!read(fds[0], &c, 1);
        ++fd_ready;
      });
  ASSERT_OK(watch);
  // A libevent timer of the host's own on base(): only BackendTimeout()
  // tells the host about it (no fd shows a libevent timeout).
  struct TimerArg {
    int* count;
    absl::Time* at;
  } timer_arg{&libevent_timer, &libevent_at};
  event* timer = evtimer_new(
      loop.base(),
      [](int, short, void* a) {
        auto* arg = static_cast<TimerArg*>(a);
        ++*arg->count;
        *arg->at = absl::Now();
      },
      &timer_arg);
  const timeval tv = {0, 40000};
  evtimer_add(timer, &tv);
  std::thread producer([&] {
    absl::SleepFor(absl::Milliseconds(5));
    for (int i = 0; i < 50; ++i) {
      ASSERT_OK(Post(ctx, [&](ContextHandle) { foreign.fetch_add(1); }));
    }
    absl::SleepFor(absl::Milliseconds(5));
    (void)!write(fds[1], "x", 1);
  });
  EXPECT_TRUE(host.RunUntil(
      [&] {
        return local == 1 && follow_ups == 2 && delayed == 1 && fd_ready == 1 &&
               foreign.load() == 50 && libevent_timer == 1;
      },
      absl::Seconds(10)))
      << local << " " << follow_ups << " " << delayed << " " << fd_ready << " "
      << foreign.load() << " " << libevent_timer;
  producer.join();
  EXPECT_GE(delayed_at - start, absl::Milliseconds(25));
  // libevent fires by its coarse clock: up to a few ms early.
  EXPECT_GE(libevent_at - start, absl::Milliseconds(30));
  // No busy-wait: a handful of wake-ups for this much work (each poll is a
  // wake-up for a reason: a post, the fd, a timer, a follow-up batch).
  EXPECT_LT(host.wakeups(), 40) << host.wakeups();
  event_free(timer);
  watch->Stop();
  close(fds[0]);
  close(fds[1]);
}

// The bar: an idle embedded loop costs the host no wake-ups.
TEST(Driven, IdleLoopCostsTheHostNoWakeUps) {
  Loop loop;
  PollDriver host(&loop);
  ASSERT_OK(host.status());
  // Some work first (posts, a timer, a watch), then idle.
  int ran = 0;
  std::thread producer([&] {
    for (int i = 0; i < 10; ++i) {
      ASSERT_OK(Post(loop.root(), [&](ContextHandle) { ++ran; }));
    }
  });
  producer.join();
  ASSERT_OK(PostDelayed(loop.root(), absl::Milliseconds(1),
                        [&](ContextHandle) { ++ran; }));
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  absl::StatusOr<FdWatch> watch = loop.WatchFd(
      loop.root(), fds[0], FdEvents::kRead, [](ContextHandle, FdEvents) {});
  ASSERT_OK(watch);
  ASSERT_TRUE(host.RunUntil([&] { return ran == 11; }, absl::Seconds(5)));
  // Settle: a last follow-up pass, and, after a burst of cross-thread posts
  // (here or by an earlier test: the node pool is the process's), the pool's
  // one trim check a second later.
  ASSERT_TRUE(host.RunUntil(
      [&] { return loop.BackendTimeout() == absl::InfiniteDuration(); },
      absl::Seconds(5)));
  const int64_t wakeups = host.wakeups();
  const int64_t polls = host.polls();
  host.RunFor(absl::Milliseconds(200));
  EXPECT_EQ(host.wakeups(), wakeups);
  EXPECT_EQ(host.polls(), polls + 1);  // One poll, for the whole 200 ms.
  watch->Stop();
  close(fds[0]);
  close(fds[1]);
}

// Loop-thread calls made by the host outside RunReady (from its own
// callbacks) show on the backend fd: the host needs no other signal.
TEST(Driven, LoopThreadPostsOutsideRunReadyShowOnTheFd) {
  Loop loop;
  PollDriver host(&loop);
  ASSERT_OK(host.status());
  host.RunFor(absl::Milliseconds(1));
  pollfd p = {host.fd(), POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 0), 0);  // Idle.

  int ran = 0;
  ASSERT_OK(Post(loop.root(), [&](ContextHandle) { ++ran; }));
  EXPECT_EQ(poll(&p, 1, 0), 1);  // Readable at once.
  ASSERT_TRUE(host.RunUntil([&] { return ran == 1; }, absl::Seconds(5)));
  host.RunFor(absl::Milliseconds(1));
  ASSERT_EQ(poll(&p, 1, 0), 0);

  // A zero-delay timer, made due outside a pass.
  ASSERT_OK(PostDelayed(loop.root(), absl::ZeroDuration(),
                        [&](ContextHandle) { ++ran; }));
  EXPECT_EQ(poll(&p, 1, 0), 1);
  ASSERT_TRUE(host.RunUntil([&] { return ran == 2; }, absl::Seconds(5)));
  host.RunFor(absl::Milliseconds(1));
  ASSERT_EQ(poll(&p, 1, 0), 0);

  // A delayed task: the fd turns readable at its deadline.
  ASSERT_OK(PostDelayed(loop.root(), absl::Milliseconds(10),
                        [&](ContextHandle) { ++ran; }));
  EXPECT_EQ(poll(&p, 1, 0), 0);
  EXPECT_EQ(poll(&p, 1, 1000), 1);
  ASSERT_TRUE(host.RunUntil([&] { return ran == 3; }, absl::Seconds(5)));

  // Work scheduled before the first BackendFd() shows too.
  Loop second;
  ASSERT_OK(Post(second.root(), [&](ContextHandle) { ++ran; }));
  absl::StatusOr<int> fd2 = second.BackendFd();
  ASSERT_OK(fd2);
  pollfd p2 = {*fd2, POLLIN, 0};
  EXPECT_EQ(poll(&p2, 1, 0), 1);
}

// BackendFd() set up from inside Run() (a task): once Run() returns, posts
// made outside a pass show on the fd too.
TEST(Driven, BackendFdSetUpInsideRunKicksAfterRunReturns) {
  Loop loop;
  int fd = -1;
  ASSERT_OK(Post(loop.root(), [&](ContextHandle) {
    fd = *loop.BackendFd();
    loop.Stop();
  }));
  ASSERT_OK(loop.Run());
  ASSERT_GE(fd, 0);
  pollfd p = {fd, POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 0), 0);  // Nothing left.
  int ran = 0;
  ASSERT_OK(Post(loop.root(), [&](ContextHandle) { ++ran; }));
  EXPECT_EQ(poll(&p, 1, 0), 1);
  ASSERT_OK(loop.RunReady());
  EXPECT_EQ(ran, 1);
}

// RunReady is one pass: a task that re-posts itself forever never keeps the
// host from its own work; BackendTimeout() is zero while it goes on.
TEST(Driven, RunReadyIsBoundedAgainstSelfRepostingTasks) {
  Loop loop;
  PollDriver host(&loop);
  ASSERT_OK(host.status());
  int runs = 0;
  std::function<void(ContextHandle)> again = [&](ContextHandle here) {
    ++runs;
    (void)Post(here, again);
  };
  ASSERT_OK(Post(loop.root(), again));
  for (int i = 0; i < 5; ++i) {
    ASSERT_OK(loop.RunReady());
    EXPECT_EQ(loop.BackendTimeout(), absl::ZeroDuration());
  }
  EXPECT_GE(runs, 1);
  EXPECT_LE(runs, 5);
  ASSERT_OK(loop.Shutdown());  // [S3] ends it.
}

// Stop() from a task ends the current RunReady; the rest runs in the next
// call and the stop is not kept.
TEST(Driven, StopEndsTheCurrentRunReady) {
  Loop loop;
  PollDriver host(&loop);
  ASSERT_OK(host.status());
  int before = 0, after = 0;
  ASSERT_OK(Post(loop.root(), [&](ContextHandle) {
    ++before;
    loop.Stop();
  }));
  ASSERT_OK(Post(loop.root(), [&](ContextHandle) { ++after; }));
  ASSERT_OK(loop.RunReady());
  EXPECT_EQ(before, 1);
  EXPECT_EQ(after, 0);
  EXPECT_EQ(loop.BackendTimeout(), absl::ZeroDuration());
  ASSERT_TRUE(host.RunUntil([&] { return after == 1; }, absl::Seconds(5)));
}

// [S21] A host that stops driving: cross-thread posts queue up to the bound,
// then are refused (counted); shutdown on the loop thread drains them all.
TEST(Driven, HostThatStopsDrivingHitsTheBoundAndShutdownStillDrains) {
  Loop::Options options;
  options.max_pending_foreign = 8;
  absl::StatusOr<std::unique_ptr<Loop>> made = Loop::Create(std::move(options));
  ASSERT_OK(made);
  Loop& loop = **made;
  PollDriver host(&loop);
  ASSERT_OK(host.status());
  std::atomic<int> ran{0};
  std::thread producer([&] {
    for (int i = 0; i < 8; ++i) {
      ASSERT_OK(Post(loop.root(), [&](ContextHandle) { ran.fetch_add(1); }));
    }
    absl::Status full = Post(loop.root(), [&](ContextHandle) {});
    EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted);
  });
  producer.join();
  EXPECT_EQ(loop.stats().foreign_refused_full, 1u);
  EXPECT_EQ(loop.stats().foreign_pending, 8u);
  absl::StatusOr<ShutdownReport> report = loop.Shutdown();
  ASSERT_OK(report);
  EXPECT_EQ(ran.load(), 8);
  EXPECT_EQ(report->tasks_run, 8u);
  EXPECT_EQ(loop.BackendTimeout(), absl::InfiniteDuration());
}

// libevent's own timeouts on base() (here an evhttp connection's read
// timeout, as the OTLP exporter uses) show on no fd: the host learns of them
// only through BackendTimeout(), and must wake for them.
TEST(Driven, LibeventInternalTimeoutsReachTheHost) {
  Loop loop;
  PollDriver host(&loop);
  ASSERT_OK(host.status());
  // A peer whose kernel accepts the connection and that never answers.
  const int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)),
            0);
  ASSERT_EQ(listen(listener, 4), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  evhttp_connection* conn = evhttp_connection_base_new(
      loop.base(), nullptr, "127.0.0.1", ntohs(addr.sin_port));
  ASSERT_NE(conn, nullptr);
  const timeval timeout = {0, 100000};
  evhttp_connection_set_timeout_tv(conn, &timeout);
  evhttp_connection_set_retries(conn, 0);
  struct State {
    bool done = false;
    absl::Time at;
  } state;
  evhttp_request* req = evhttp_request_new(
      [](evhttp_request*, void* arg) {
        auto* st = static_cast<State*>(arg);
        st->done = true;
        st->at = absl::Now();
      },
      &state);
  const absl::Time start = absl::Now();
  ASSERT_EQ(evhttp_make_request(conn, req, EVHTTP_REQ_GET, "/"), 0);
  ASSERT_TRUE(host.RunUntil([&] { return state.done; }, absl::Seconds(5)));
  EXPECT_GE(state.at - start, absl::Milliseconds(90));
  EXPECT_LT(state.at - start, absl::Seconds(2));
  EXPECT_LT(host.wakeups(), 20) << host.wakeups();
  evhttp_connection_free(conn);
  close(listener);
}

TEST(Driven, TimeoutMsRoundsUp) {
  EXPECT_EQ(Loop::TimeoutMs(absl::InfiniteDuration()), -1);
  EXPECT_EQ(Loop::TimeoutMs(absl::ZeroDuration()), 0);
  EXPECT_EQ(Loop::TimeoutMs(-absl::Seconds(1)), 0);
  EXPECT_EQ(Loop::TimeoutMs(absl::Microseconds(1)), 1);
  EXPECT_EQ(Loop::TimeoutMs(absl::Milliseconds(5)), 5);
  EXPECT_EQ(Loop::TimeoutMs(absl::Microseconds(5001)), 6);
  EXPECT_EQ(Loop::TimeoutMs(absl::Hours(24 * 365)), INT_MAX);
}

// An adopted base can be driven too (a host whose libevent base is itself
// run by yet another loop).
TEST(Driven, AdoptedEpollBaseCanBeDriven) {
  HostBase host;
  std::unique_ptr<Loop> loop = AdoptingLoop(host.base);
  ASSERT_NE(loop, nullptr);
  PollDriver driver(loop.get());
  ASSERT_OK(driver.status());
  std::atomic<int> ran{0};
  std::thread producer([&] {
    ASSERT_OK(Post(loop->root(), [&](ContextHandle) { ran.fetch_add(1); }));
  });
  producer.join();
  EXPECT_TRUE(
      driver.RunUntil([&] { return ran.load() == 1; }, absl::Seconds(5)));
}

}  // namespace
}  // namespace ctxloop
