// Copyright 2026 The ctxloop Authors.
//
// Shutdown and destruction of a Loop: one test (or more) per case [S1]..[S9]
// numbered at the top of loop/internal/loop_core.cc.

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
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
#include "ctxloop/loop/context_key.h"
#include "ctxloop/loop/fd_watch.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/loop/task.h"
#include "ctxloop/loop/testing/test_util.h"
#include "gtest/gtest.h"

namespace ctxloop {
namespace {

using testing_util::FdIsOpen;

// Where and how often one tracked object was destroyed, and whether it ran.
struct Tracking {
  std::atomic<int> ran{0};
  std::atomic<int> destroyed{0};
  std::atomic<std::thread::id> destroyed_on{};
};

// Capture a Tracker in a task or callback; moved-from trackers are silent.
class Tracker {
 public:
  explicit Tracker(Tracking* t) : t_(t) {}
  Tracker(Tracker&& other) noexcept : t_(std::exchange(other.t_, nullptr)) {}
  Tracker& operator=(Tracker&&) = delete;
  ~Tracker() {
    if (t_ != nullptr) {
      t_->destroyed_on.store(std::this_thread::get_id());
      t_->destroyed.fetch_add(1);
    }
  }
  void Ran() const { t_->ran.fetch_add(1); }

 private:
  Tracking* t_;
};

Task TrackedTask(Tracking* t) {
  return [tracker = Tracker(t)](ContextHandle) { tracker.Ran(); };
}

// --- [S1] --------------------------------------------------------------------

// [S1] Tasks posted (locally and from other threads) and not yet run when
// Shutdown() starts run during the drain, on the loop thread, with their
// handles valid, and are counted.
TEST(LoopShutdownTest, S1_PostedTasksRunDuringShutdown) {
  Loop loop;
  absl::StatusOr<ContextHandle> ctx = loop.NewContext("c");
  ASSERT_OK(ctx);
  const ContextKey<int> key("k", -1);
  ASSERT_OK(key.Set(*ctx, 9));
  const std::thread::id loop_thread = std::this_thread::get_id();
  std::vector<int> ran;
  auto task = [&](int id) {
    return [&, id](ContextHandle here) {
      EXPECT_EQ(std::this_thread::get_id(), loop_thread);
      EXPECT_EQ(here, *ctx);
      EXPECT_TRUE(IsOnLoopThread(here));
      EXPECT_TRUE(loop.ContextName(here).ok());
      absl::StatusOr<int> v = key.Get(here);
      EXPECT_TRUE(v.ok() && *v == 9) << v.status();
      ran.push_back(id);
    };
  };
  ASSERT_OK(Post(*ctx, task(0)));
  ASSERT_OK(Post(*ctx, task(1)));
  std::thread([&] {
    for (int i = 2; i < 7; ++i) EXPECT_TRUE(Post(*ctx, task(i)).ok());
  }).join();
  absl::StatusOr<ShutdownReport> report = loop.Shutdown();
  ASSERT_OK(report);
  EXPECT_EQ(ran.size(), 7u);
  EXPECT_EQ(report->tasks_run, 7u);
  EXPECT_EQ(report->tasks_dropped, 0u);
  EXPECT_EQ(report->delayed_dropped, 0u);
  EXPECT_EQ(report->watches_closed, 0u);
}

// [S1] via the destructor, which runs Shutdown().
TEST(LoopShutdownTest, S1_DestructorDrains) {
  bool ran = false;
  {
    Loop loop;
    ASSERT_OK(Post(loop.root(), [&](ContextHandle) { ran = true; }));
  }
  EXPECT_TRUE(ran);
}

// [S1] Tasks left queued by Stop() run in the drain.
TEST(LoopShutdownTest, S1_TasksLeftByStopRunInDrain) {
  Loop loop;
  std::vector<int> order;
  ASSERT_OK(Post(loop.root(), [&](ContextHandle) {
    order.push_back(1);
    loop.Stop();
  }));
  ASSERT_OK(Post(loop.root(), [&](ContextHandle) { order.push_back(2); }));
  ASSERT_OK(loop.Run());
  EXPECT_EQ(order, (std::vector<int>{1}));
  absl::StatusOr<ShutdownReport> report = loop.Shutdown();
  ASSERT_OK(report);
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
  EXPECT_EQ(report->tasks_run, 1u);
}

// --- [S2] --------------------------------------------------------------------

// [S2] Tasks posted by draining tasks run in the same drain.
TEST(LoopShutdownTest, S2_TasksPostedByDrainingTasksRun) {
  Loop loop;
  absl::StatusOr<ContextHandle> other = loop.NewContext("other");
  ASSERT_OK(other);
  std::vector<std::string> order;
  ASSERT_OK(Post(loop.root(), [&](ContextHandle here) {
    order.push_back("a");
    EXPECT_TRUE(Post(here, [&](ContextHandle h2) {
                  order.push_back("b");
                  EXPECT_TRUE(Post(*other, [&](ContextHandle h3) {
                                EXPECT_EQ(h3, *other);
                                order.push_back("c");
                              }).ok());
                  (void)h2;
                }).ok());
  }));
  absl::StatusOr<ShutdownReport> report = loop.Shutdown();
  ASSERT_OK(report);
  EXPECT_EQ(order, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(report->tasks_run, 3u);
  EXPECT_EQ(report->tasks_dropped, 0u);
}

// --- [S3] --------------------------------------------------------------------

// A task that reposts itself forever; generation g carries tracking[g].
struct Reposter {
  int* runs;
  Tracking* tracking;
  Tracker tracker;
  void operator()(ContextHandle here) && {
    tracker.Ran();
    const int next = ++*runs;
    absl::Status s =
        Post(here, Reposter{runs, tracking, Tracker(&tracking[next])});
    EXPECT_TRUE(s.ok()) << s;
  }
};

// [S3] A self-reposting task stops after max_shutdown_rounds: the rest is
// destroyed unrun on the loop thread, counted, and reported once.
TEST(LoopShutdownTest, S3_SelfRepostingTaskIsDroppedAfterMaxRounds) {
  std::vector<absl::Status> errors;
  std::vector<ContextHandle> error_ctx;
  Loop::Options options;
  options.max_shutdown_rounds = 5;
  options.error_handler = [&](ContextHandle ctx, const absl::Status& e) {
    error_ctx.push_back(ctx);
    errors.push_back(e);
  };
  Loop loop(std::move(options));
  int runs = 0;
  Tracking tracking[6];
  // The dropped task's destructor posts: refused, not queued (the loop is
  // closed to every post before the dropped tasks are destroyed).
  absl::Status post_from_destructor = absl::OkStatus();
  struct PostsOnDestruction {
    ContextHandle ctx;
    absl::Status* result;
    bool armed = true;
    PostsOnDestruction(ContextHandle c, absl::Status* r) : ctx(c), result(r) {}
    PostsOnDestruction(PostsOnDestruction&& o) noexcept
        : ctx(o.ctx), result(o.result), armed(std::exchange(o.armed, false)) {}
    ~PostsOnDestruction() {
      if (armed) *result = Post(ctx, [](ContextHandle) {});
    }
  };
  struct Chain {
    int* runs;
    PostsOnDestruction guard;
    void operator()(ContextHandle here) && {
      ++*runs;
      absl::Status s =
          Post(here, Chain{runs, PostsOnDestruction(here, guard.result)});
      EXPECT_TRUE(s.ok()) << s;
      guard.armed = false;  // Ran: only the dropped copy posts when destroyed.
    }
  };
  ASSERT_OK(
      Post(loop.root(), Reposter{&runs, tracking, Tracker(&tracking[0])}));
  int chain_runs = 0;
  ASSERT_OK(Post(loop.root(),
                 Chain{&chain_runs, PostsOnDestruction(
                                        loop.root(), &post_from_destructor)}));
  absl::StatusOr<ShutdownReport> report = loop.Shutdown();
  ASSERT_OK(report);
  EXPECT_EQ(runs, 5);
  EXPECT_EQ(chain_runs, 5);
  EXPECT_EQ(report->tasks_run, 10u);
  EXPECT_EQ(report->tasks_dropped, 2u);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].code(), absl::StatusCode::kDeadlineExceeded) << errors[0];
  EXPECT_TRUE(error_ctx[0].is_null());
  // Generations 0..4 ran; generation 5 was destroyed unrun. All on the loop
  // thread.
  for (int g = 0; g < 6; ++g) {
    EXPECT_EQ(tracking[g].ran.load(), g < 5 ? 1 : 0) << g;
    EXPECT_EQ(tracking[g].destroyed.load(), 1) << g;
    EXPECT_EQ(tracking[g].destroyed_on.load(), std::this_thread::get_id());
  }
  EXPECT_EQ(post_from_destructor.code(), absl::StatusCode::kFailedPrecondition)
      << post_from_destructor;
}

// --- [S4] --------------------------------------------------------------------

// [S4] Delayed tasks that had not fired are destroyed unrun on the loop
// thread, counted; Cancel on them is false; PostDelayed in the drain is
// refused.
TEST(LoopShutdownTest, S4_PendingDelayedTasksAreDropped) {
  Loop loop;
  absl::StatusOr<ContextHandle> ctx = loop.NewContext("c");
  ASSERT_OK(ctx);
  Tracking t1, t2, refused;
  absl::StatusOr<DelayedTaskHandle> h1 =
      PostDelayed(*ctx, absl::Hours(1), TrackedTask(&t1));
  absl::StatusOr<DelayedTaskHandle> h2 =
      PostDelayed(loop.root(), absl::Hours(2), TrackedTask(&t2));
  ASSERT_OK(h1);
  ASSERT_OK(h2);
  bool drain_task_ran = false;
  ASSERT_OK(Post(*ctx, [&](ContextHandle here) {
    drain_task_ran = true;
    // In the drain: the delayed tasks are already gone.
    EXPECT_FALSE(Cancel(*h1));
    absl::StatusOr<DelayedTaskHandle> h =
        PostDelayed(here, absl::ZeroDuration(), TrackedTask(&refused));
    EXPECT_EQ(h.status().code(), absl::StatusCode::kFailedPrecondition)
        << h.status();
    // Refused: destroyed before PostDelayed returned, here.
    EXPECT_EQ(refused.destroyed.load(), 1);
  }));
  absl::StatusOr<ShutdownReport> report = loop.Shutdown();
  ASSERT_OK(report);
  EXPECT_TRUE(drain_task_ran);
  EXPECT_EQ(report->delayed_dropped, 2u);
  EXPECT_EQ(report->tasks_run, 1u);
  for (Tracking* t : {&t1, &t2, &refused}) {
    EXPECT_EQ(t->ran.load(), 0);
    EXPECT_EQ(t->destroyed.load(), 1);
    EXPECT_EQ(t->destroyed_on.load(), std::this_thread::get_id());
  }
  EXPECT_FALSE(Cancel(*h1));
  EXPECT_FALSE(Cancel(*h2));
  std::thread([&] { EXPECT_FALSE(Cancel(*h1)); }).join();
}

// [S4] Delayed tasks that are due but have not run yet are dropped too (the
// drain runs posted tasks, not timers).
TEST(LoopShutdownTest, S4_DueButUnfiredDelayedTaskIsDropped) {
  Loop loop;
  Tracking t;
  ASSERT_OK(PostDelayed(loop.root(), absl::ZeroDuration(), TrackedTask(&t)));
  absl::StatusOr<ShutdownReport> report = loop.Shutdown();
  ASSERT_OK(report);
  EXPECT_EQ(report->delayed_dropped, 1u);
  EXPECT_EQ(t.ran.load(), 0);
  EXPECT_EQ(t.destroyed.load(), 1);
}

// --- [S5] --------------------------------------------------------------------

// [S5] Cross-thread posters hammer Post while the loop shuts down: every Post
// that returned OK ran exactly once on the loop thread; every rejected task
// was destroyed on its posting thread before Post returned; nothing lost.
TEST(LoopShutdownTest, S5_CrossThreadPostsRacingShutdown) {
  constexpr int kThreads = 4;
  constexpr int kMaxPerThread = 50000;
  constexpr int kStartShutdownAfter = 1000;  // Posts per thread.
  constexpr int kPostsAfterRejection = 10;

  auto loop = std::make_unique<Loop>();
  absl::StatusOr<ContextHandle> ctx = loop->NewContext("c");
  ASSERT_OK(ctx);
  const std::thread::id loop_thread = std::this_thread::get_id();

  struct PerThread {
    std::unique_ptr<Tracking[]> tracking{new Tracking[kMaxPerThread]};
    std::vector<char> accepted = std::vector<char>(kMaxPerThread, 0);
    std::atomic<int> posted{0};
    std::thread::id id;
    int rejected_not_destroyed_here = 0;
  };
  std::vector<PerThread> per(kThreads);
  std::atomic<int> bad_runs{0};

  std::vector<std::thread> posters;
  for (int t = 0; t < kThreads; ++t) {
    posters.emplace_back([&, t] {
      PerThread& me = per[t];
      me.id = std::this_thread::get_id();
      int after_rejection = -1;
      for (int i = 0; i < kMaxPerThread; ++i) {
        Tracking* tr = &me.tracking[i];
        absl::Status s =
            Post(*ctx, [&bad_runs, loop_thread, c = *ctx,
                        tracker = Tracker(tr)](ContextHandle here) {
              if (std::this_thread::get_id() != loop_thread || here != c) {
                bad_runs.fetch_add(1);
              }
              tracker.Ran();
            });
        me.posted.store(i + 1);
        if (s.ok()) {
          me.accepted[i] = 1;
          if (after_rejection >= 0) bad_runs.fetch_add(1000000);  // Reopened?
          continue;
        }
        EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
        if (tr->destroyed.load() != 1 ||
            tr->destroyed_on.load() != std::this_thread::get_id()) {
          ++me.rejected_not_destroyed_here;
        }
        if (after_rejection < 0) after_rejection = 0;
        if (++after_rejection > kPostsAfterRejection) break;
      }
    });
  }
  // Shut down while the posters post.
  for (;;) {
    int min_posted = kMaxPerThread;
    for (const PerThread& p : per) {
      min_posted = std::min(min_posted, p.posted.load());
    }
    if (min_posted >= kStartShutdownAfter) break;
    std::this_thread::yield();
  }
  absl::StatusOr<ShutdownReport> report = loop->Shutdown();
  ASSERT_OK(report);
  for (std::thread& p : posters) p.join();
  loop.reset();

  EXPECT_EQ(bad_runs.load(), 0);
  uint64_t accepted_total = 0;
  for (int t = 0; t < kThreads; ++t) {
    const PerThread& p = per[t];
    EXPECT_EQ(p.rejected_not_destroyed_here, 0) << "thread " << t;
    const int posted = p.posted.load();
    for (int i = 0; i < posted; ++i) {
      const Tracking& tr = p.tracking[i];
      ASSERT_EQ(tr.destroyed.load(), 1) << t << "/" << i;
      if (p.accepted[i]) {
        ++accepted_total;
        ASSERT_EQ(tr.ran.load(), 1) << t << "/" << i;
        ASSERT_EQ(tr.destroyed_on.load(), loop_thread) << t << "/" << i;
      } else {
        ASSERT_EQ(tr.ran.load(), 0) << t << "/" << i;
        ASSERT_EQ(tr.destroyed_on.load(), p.id) << t << "/" << i;
      }
    }
  }
  EXPECT_EQ(report->tasks_run, accepted_total);
  EXPECT_EQ(report->tasks_dropped, 0u);
}

// --- [S6] --------------------------------------------------------------------

// [S6] An fd watch alive at shutdown is unregistered and counted, its
// callback destroyed on the loop thread, its owned fd closed; the FdWatch is
// inert afterwards, also once the Loop object is gone.
TEST(LoopShutdownTest, S6_LiveFdWatchIsClosedAndInert) {
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
  int other[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, other), 0);
  auto loop = std::make_unique<Loop>();
  Tracking callback;
  int calls = 0;
  FdWatchOptions close_it;
  close_it.close_on_stop = true;
  absl::StatusOr<FdWatch> live = loop->WatchFd(
      loop->root(), fds[0], FdEvents::kRead,
      [&calls, t = Tracker(&callback)](ContextHandle, FdEvents) { ++calls; },
      close_it);
  ASSERT_OK(live);
  absl::StatusOr<FdWatch> stopped =
      loop->WatchFd(loop->root(), other[0], FdEvents::kRead,
                    [&calls](ContextHandle, FdEvents) { ++calls; });
  ASSERT_OK(stopped);
  stopped->Stop();  // Not counted at shutdown.
  absl::StatusOr<ShutdownReport> report = loop->Shutdown();
  ASSERT_OK(report);
  EXPECT_EQ(report->watches_closed, 1u);
  EXPECT_EQ(callback.destroyed.load(), 1);
  EXPECT_EQ(callback.destroyed_on.load(), std::this_thread::get_id());
  EXPECT_FALSE(FdIsOpen(fds[0]));
  EXPECT_TRUE(FdIsOpen(other[0]));
  EXPECT_FALSE(live->active());
  live->Stop();  // Inert.
  loop.reset();
  live->Stop();
  EXPECT_FALSE(live->active());
  EXPECT_EQ(calls, 0);
  close(fds[1]);
  close(other[0]);
  close(other[1]);
}

// Posts a task (that counts its runs) when destroyed, and records whether
// the post was accepted. Move-only; only the last owner posts.
struct PostsWhenDestroyed {
  ContextHandle ctx;
  int* ran;
  std::vector<absl::Status>* results;
  bool armed = true;
  PostsWhenDestroyed(ContextHandle c, int* r, std::vector<absl::Status>* out)
      : ctx(c), ran(r), results(out) {}
  PostsWhenDestroyed(PostsWhenDestroyed&& o) noexcept
      : ctx(o.ctx),
        ran(o.ran),
        results(o.results),
        armed(std::exchange(o.armed, false)) {}
  ~PostsWhenDestroyed() {
    if (!armed) return;
    int* r = ran;
    results->push_back(Post(ctx, [r](ContextHandle) { ++*r; }));
  }
};

// [S6] Tasks posted while fd watches are torn down (by the destroyed
// callbacks) are accepted and run in a drain after the teardown, and are
// counted. Before, they were accepted and then destroyed unrun, uncounted.
TEST(LoopShutdownTest, S6_TasksPostedByDestroyedWatchCallbacksRun) {
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
  int ran = 0;
  std::vector<absl::Status> posts;
  absl::StatusOr<ShutdownReport> report;
  {
    Loop loop;
    absl::StatusOr<FdWatch> watch =
        loop.WatchFd(loop.root(), fds[0], FdEvents::kRead,
                     [p = PostsWhenDestroyed(loop.root(), &ran, &posts)](
                         ContextHandle, FdEvents) {});
    ASSERT_OK(watch);
    report = loop.Shutdown();
    ASSERT_OK(report);
  }
  ASSERT_EQ(posts.size(), 1u);
  EXPECT_TRUE(posts[0].ok()) << posts[0];
  EXPECT_EQ(ran, 1);
  EXPECT_EQ(report->tasks_run, 1u);
  EXPECT_EQ(report->tasks_dropped, 0u);
  EXPECT_EQ(report->watches_closed, 1u);
  close(fds[0]);
  close(fds[1]);
}

// [S4] Dropped delayed tasks whose destructors post: those tasks run in the
// drain.
TEST(LoopShutdownTest, S4_TasksPostedByDroppedDelayedTasksRun) {
  int ran = 0;
  std::vector<absl::Status> posts;
  absl::StatusOr<ShutdownReport> report;
  {
    Loop loop;
    ASSERT_OK(PostDelayed(
        loop.root(), absl::Hours(1),
        [p = PostsWhenDestroyed(loop.root(), &ran, &posts)](ContextHandle) {}));
    report = loop.Shutdown();
    ASSERT_OK(report);
  }
  ASSERT_EQ(posts.size(), 1u);
  EXPECT_TRUE(posts[0].ok()) << posts[0];
  EXPECT_EQ(ran, 1);
  EXPECT_EQ(report->delayed_dropped, 1u);
  EXPECT_EQ(report->tasks_run, 1u);
}

// [S3] [S6] The round budget covers every drain: a task that reposts itself
// forever, started by a destroyed watch callback, is dropped, counted and
// reported once; after the final close a post is refused, never accepted and
// lost.
TEST(LoopShutdownTest, S3_BudgetCoversTheDrainAfterWatchTeardown) {
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
  std::vector<absl::Status> errors;
  Loop::Options options;
  options.max_shutdown_rounds = 4;
  options.error_handler = [&](ContextHandle, const absl::Status& e) {
    errors.push_back(e);
  };
  struct Forever {
    int* runs;
    void operator()(ContextHandle here) && {
      ++*runs;
      (void)Post(here, Forever{runs});
    }
  };
  int runs = 0;
  absl::Status late = absl::OkStatus();
  absl::StatusOr<ShutdownReport> report;
  {
    Loop loop(std::move(options));
    struct StartsForever {
      ContextHandle ctx;
      int* runs;
      bool armed = true;
      StartsForever(ContextHandle c, int* r) : ctx(c), runs(r) {}
      StartsForever(StartsForever&& o) noexcept
          : ctx(o.ctx), runs(o.runs), armed(std::exchange(o.armed, false)) {}
      ~StartsForever() {
        if (armed) {
          EXPECT_TRUE(Post(ctx, Forever{runs}).ok());
        }
      }
    };
    absl::StatusOr<FdWatch> watch = loop.WatchFd(
        loop.root(), fds[0], FdEvents::kRead,
        [s = StartsForever(loop.root(), &runs)](ContextHandle, FdEvents) {});
    ASSERT_OK(watch);
    report = loop.Shutdown();
    ASSERT_OK(report);
    late = Post(loop.root(), [](ContextHandle) {});
  }
  EXPECT_EQ(runs, 4);
  EXPECT_EQ(report->tasks_run, 4u);
  EXPECT_EQ(report->tasks_dropped, 1u);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(late.code(), absl::StatusCode::kFailedPrecondition);
  close(fds[0]);
  close(fds[1]);
}

// [S8] Context values are destroyed after the final close: a value whose
// destructor posts is refused (the post returns an error), never accepted
// and lost.
TEST(LoopShutdownTest, S8_PostsFromValueDestructorsAfterCloseAreRefused) {
  int ran = 0;
  std::vector<absl::Status> posts;
  {
    Loop loop;
    const ContextKey<std::shared_ptr<PostsWhenDestroyed>> key("k");
    ASSERT_OK(key.Set(loop.root(), std::make_shared<PostsWhenDestroyed>(
                                       loop.root(), &ran, &posts)));
    ASSERT_OK(loop.Shutdown());
  }
  ASSERT_EQ(posts.size(), 1u);
  EXPECT_EQ(posts[0].code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ran, 0);
}

// --- [S7] --------------------------------------------------------------------

// [S7] DestroyContext with tasks pending, then Shutdown before the loop ran:
// the pending tasks run in the drain with their handle valid. The destroy
// marker is bookkeeping, not a task.
TEST(LoopShutdownTest, S7_DestroyContextThenShutdown) {
  Loop loop;
  absl::StatusOr<ContextHandle> ctx = loop.NewContext("doomed");
  ASSERT_OK(ctx);
  int ran = 0;
  auto task = [&](ContextHandle here) {
    EXPECT_TRUE(loop.ContextName(here).ok());
    ++ran;
  };
  ASSERT_OK(Post(*ctx, task));
  std::thread([&] { EXPECT_TRUE(Post(*ctx, task).ok()); }).join();
  ASSERT_OK(loop.DestroyContext(*ctx));
  EXPECT_EQ(Post(*ctx, task).code(), absl::StatusCode::kFailedPrecondition);
  absl::StatusOr<ShutdownReport> report = loop.Shutdown();
  ASSERT_OK(report);
  EXPECT_EQ(ran, 2);
  EXPECT_EQ(report->tasks_run, 2u);
}

// --- [S8] --------------------------------------------------------------------

void ExpectStale(ContextHandle root, ContextHandle ctx,
                 const DelayedTaskHandle& delayed, const ContextKey<int>& key) {
  for (ContextHandle h : {root, ctx}) {
    bool ran = false;
    absl::Status s = Post(h, [&](ContextHandle) { ran = true; });
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
    EXPECT_TRUE(absl::StrContains(s.message(), h.DebugString())) << s;
    absl::StatusOr<DelayedTaskHandle> d = PostDelayed(
        h, absl::ZeroDuration(), [&](ContextHandle) { ran = true; });
    EXPECT_EQ(d.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_FALSE(ran);
    EXPECT_EQ(key.Get(h).status().code(),
              absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(key.Set(h, 1).status().code(),
              absl::StatusCode::kFailedPrecondition);
    EXPECT_FALSE(IsOnLoopThread(h));
    EXPECT_EQ(NewChildContext(h, "x").status().code(),
              absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(DestroyContext(h).code(), absl::StatusCode::kFailedPrecondition);
  }
  EXPECT_FALSE(Cancel(delayed));
}

// [S8] After shutdown every handle of the loop is stale, whether the Loop
// object is alive, gone, or its registry slot reused by a new loop.
TEST(LoopShutdownTest, S8_HandlesAfterShutdownAndDestruction) {
  const ContextKey<int> key("k", -1);
  auto loop = std::make_unique<Loop>();
  const ContextHandle root = loop->root();
  absl::StatusOr<ContextHandle> ctx = loop->NewContext("c");
  ASSERT_OK(ctx);
  ASSERT_OK(key.Set(*ctx, 1));
  absl::StatusOr<DelayedTaskHandle> delayed =
      PostDelayed(*ctx, absl::Hours(1), [](ContextHandle) {});
  ASSERT_OK(delayed);
  ASSERT_OK(loop->Shutdown());

  // Shut down, object alive.
  ExpectStale(root, *ctx, *delayed, key);
  std::thread([&] { ExpectStale(root, *ctx, *delayed, key); }).join();
  EXPECT_FALSE(loop->IsOnLoopThread());
  EXPECT_EQ(loop->Run().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(loop->RunUntilIdle().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(loop->NewContext("x").ok());
  EXPECT_FALSE(loop->NewChildContext(root, "x").ok());
  EXPECT_FALSE(loop->ContextName(*ctx).ok());
  EXPECT_FALSE(loop->DestroyContext(*ctx).ok());
  loop->Stop();  // Harmless.

  // A new loop on this thread takes the freed registry slot (the free list is
  // LIFO): the generation still tells the old handles apart.
  {
    Loop next;
    EXPECT_EQ(next.root().loop_id(), root.loop_id());
    EXPECT_NE(next.root(), root);
    ExpectStale(root, *ctx, *delayed, key);
    EXPECT_FALSE(loop->IsOnLoopThread());
    EXPECT_TRUE(next.IsOnLoopThread());
    // The old loop's methods do not reach the new one.
    EXPECT_FALSE(loop->NewContext("x").ok());
    EXPECT_EQ(loop->Run().code(), absl::StatusCode::kFailedPrecondition);
    bool ran = false;
    ASSERT_OK(Post(next.root(), [&](ContextHandle) { ran = true; }));
    ASSERT_OK(next.RunUntilIdle());
    EXPECT_TRUE(ran);
  }

  // Object gone.
  loop.reset();
  ExpectStale(root, *ctx, *delayed, key);
  std::thread([&] { ExpectStale(root, *ctx, *delayed, key); }).join();
  Loop another;  // Reuses the slot again.
  ExpectStale(root, *ctx, *delayed, key);
}

// --- [S9] --------------------------------------------------------------------

// [S9] Cross-thread Cancel racing shutdown: no cancelled or dropped task
// runs, each is destroyed exactly once, on the loop thread, and every task is
// either cancelled or counted as dropped.
TEST(LoopShutdownTest, S9_CrossThreadCancelRacingShutdown) {
  constexpr int kTasks = 2000;
  constexpr int kStartShutdownAfter = 200;
  auto loop = std::make_unique<Loop>();
  const std::thread::id loop_thread = std::this_thread::get_id();
  std::unique_ptr<Tracking[]> tracking(new Tracking[kTasks]);
  std::vector<DelayedTaskHandle> handles;
  for (int i = 0; i < kTasks; ++i) {
    absl::StatusOr<DelayedTaskHandle> h =
        PostDelayed(loop->root(), absl::Hours(1), TrackedTask(&tracking[i]));
    ASSERT_OK(h);
    handles.push_back(*h);
  }
  std::vector<char> cancelled(kTasks, 0);
  std::atomic<int> progress{0};
  std::thread canceller([&] {
    for (int i = 0; i < kTasks; ++i) {
      cancelled[i] = Cancel(handles[i]) ? 1 : 0;
      progress.store(i + 1);
    }
  });
  while (progress.load() < kStartShutdownAfter) {
    ASSERT_OK(loop->RunUntilIdle());  // Destroys cancelled tasks meanwhile.
    std::this_thread::yield();
  }
  absl::StatusOr<ShutdownReport> report = loop->Shutdown();
  ASSERT_OK(report);
  canceller.join();
  loop.reset();

  int cancelled_count = 0;
  bool seen_false = false;
  for (int i = 0; i < kTasks; ++i) {
    const Tracking& t = tracking[i];
    ASSERT_EQ(t.ran.load(), 0) << i;
    ASSERT_EQ(t.destroyed.load(), 1) << i;
    ASSERT_EQ(t.destroyed_on.load(), loop_thread) << i;
    if (cancelled[i]) {
      ++cancelled_count;
      // Once shutdown closed the loop, Cancel stays false.
      ASSERT_FALSE(seen_false) << i;
    } else {
      seen_false = true;
    }
  }
  EXPECT_GE(cancelled_count, kStartShutdownAfter);
  EXPECT_EQ(cancelled_count + report->delayed_dropped,
            static_cast<uint64_t>(kTasks));
  // Handing cancelled tasks back for destruction is not running tasks.
  EXPECT_EQ(report->tasks_run, 0u);
}

// [S9] Cross-thread FdWatch::Stop racing shutdown: each callback is destroyed
// exactly once, on the loop thread, each owned fd closed, no callback runs.
TEST(LoopShutdownTest, S9_CrossThreadWatchStopRacingShutdown) {
  constexpr int kWatches = 100;
  auto loop = std::make_unique<Loop>();
  const std::thread::id loop_thread = std::this_thread::get_id();
  std::unique_ptr<Tracking[]> tracking(new Tracking[kWatches]);
  std::vector<FdWatch> watches;
  std::vector<int> owned;
  std::vector<int> peers;
  FdWatchOptions close_it;
  close_it.close_on_stop = true;
  for (int i = 0; i < kWatches; ++i) {
    int fds[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
    owned.push_back(fds[0]);
    peers.push_back(fds[1]);
    absl::StatusOr<FdWatch> w = loop->WatchFd(
        loop->root(), fds[0], FdEvents::kRead,
        [t = Tracker(&tracking[i])](ContextHandle, FdEvents) { t.Ran(); },
        close_it);
    ASSERT_OK(w);
    watches.push_back(*std::move(w));
  }
  std::atomic<int> progress{0};
  std::thread stopper([&] {
    for (int i = 0; i < kWatches; ++i) {
      watches[i].Stop();
      progress.store(i + 1);
    }
  });
  while (progress.load() < kWatches / 10) std::this_thread::yield();
  absl::StatusOr<ShutdownReport> report = loop->Shutdown();
  ASSERT_OK(report);
  stopper.join();
  loop.reset();
  EXPECT_LE(report->watches_closed, static_cast<uint64_t>(kWatches));
  for (int i = 0; i < kWatches; ++i) {
    ASSERT_EQ(tracking[i].ran.load(), 0) << i;
    ASSERT_EQ(tracking[i].destroyed.load(), 1) << i;
    ASSERT_EQ(tracking[i].destroyed_on.load(), loop_thread) << i;
    EXPECT_FALSE(FdIsOpen(owned[i])) << i;
    close(peers[i]);
  }
}

// --- Shutdown itself ---------------------------------------------------------

TEST(LoopShutdownTest, ShutdownInsideRunFails) {
  Loop loop;
  absl::Status inside = absl::OkStatus();
  ASSERT_OK(Post(loop.root(), [&](ContextHandle) {
    inside = loop.Shutdown().status();
    loop.Stop();
  }));
  bool later_ran = false;
  ASSERT_OK(loop.Run());
  EXPECT_EQ(inside.code(), absl::StatusCode::kFailedPrecondition) << inside;
  // The loop still works, then shuts down normally.
  ASSERT_OK(Post(loop.root(), [&](ContextHandle) { later_ran = true; }));
  absl::StatusOr<ShutdownReport> report = loop.Shutdown();
  ASSERT_OK(report);
  EXPECT_TRUE(later_ran);
  EXPECT_EQ(report->tasks_run, 1u);
}

TEST(LoopShutdownTest, ShutdownFromAnotherThreadFails) {
  Loop loop;
  std::thread([&] {
    absl::StatusOr<ShutdownReport> r = loop.Shutdown();
    EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  }).join();
  bool ran = false;
  ASSERT_OK(Post(loop.root(), [&](ContextHandle) { ran = true; }));
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_TRUE(ran);
}

TEST(LoopShutdownTest, ShutdownTwiceReturnsTheSameReport) {
  Loop loop;
  ASSERT_OK(Post(loop.root(), [](ContextHandle) {}));
  ASSERT_OK(PostDelayed(loop.root(), absl::Hours(1), [](ContextHandle) {}));
  absl::StatusOr<ShutdownReport> first = loop.Shutdown();
  ASSERT_OK(first);
  EXPECT_EQ(first->tasks_run, 1u);
  EXPECT_EQ(first->delayed_dropped, 1u);
  absl::StatusOr<ShutdownReport> second = loop.Shutdown();
  ASSERT_OK(second);
  EXPECT_EQ(second->tasks_run, first->tasks_run);
  EXPECT_EQ(second->tasks_dropped, first->tasks_dropped);
  EXPECT_EQ(second->delayed_dropped, first->delayed_dropped);
  EXPECT_EQ(second->watches_closed, first->watches_closed);
}

// loop.h: destroy a Loop on another thread once its thread is done with it;
// the destructor becomes the loop thread and drains there.
TEST(LoopShutdownTest, LoopDestroyedOnAnotherThread) {
  const ContextKey<int> key("k", -1);
  std::unique_ptr<Loop> loop;
  ContextHandle ctx;
  std::thread::id creator;
  std::thread::id pending_ran_on;
  bool pending_saw_valid_handle = false;
  int ran_on_creator = 0;
  std::thread([&] {
    creator = std::this_thread::get_id();
    loop = std::make_unique<Loop>();
    absl::StatusOr<ContextHandle> c = loop->NewContext("c");
    ASSERT_TRUE(c.ok()) << c.status();
    ctx = *c;
    EXPECT_TRUE(key.Set(ctx, 5).ok());
    EXPECT_TRUE(Post(ctx, [&](ContextHandle) { ++ran_on_creator; }).ok());
    EXPECT_TRUE(loop->RunUntilIdle().ok());
    EXPECT_TRUE(Post(ctx, [&](ContextHandle here) {
                  pending_ran_on = std::this_thread::get_id();
                  // `loop` is mid-destruction: use the handle only.
                  absl::StatusOr<int> v = key.Get(here);
                  pending_saw_valid_handle =
                      IsOnLoopThread(here) && v.ok() && *v == 5;
                }).ok());
  }).join();
  EXPECT_EQ(ran_on_creator, 1);
  EXPECT_FALSE(loop->IsOnLoopThread());
  loop.reset();
  EXPECT_EQ(pending_ran_on, std::this_thread::get_id());
  EXPECT_NE(pending_ran_on, creator);
  EXPECT_TRUE(pending_saw_valid_handle);
  EXPECT_EQ(Post(ctx, [](ContextHandle) {}).code(),
            absl::StatusCode::kFailedPrecondition);
}

// A shut-down Loop destroyed on another thread does not drain again or touch
// its (freed) registry slot, even if a new loop took that slot meanwhile.
TEST(LoopShutdownTest, LoopShutDownThenDestroyedOnAnotherThread) {
  auto loop = std::make_unique<Loop>();
  const ContextHandle old_root = loop->root();
  ASSERT_OK(loop->Shutdown());
  Loop next;  // Takes the freed slot.
  std::thread([&] { loop.reset(); }).join();
  EXPECT_TRUE(next.IsOnLoopThread());
  bool ran = false;
  ASSERT_OK(Post(next.root(), [&](ContextHandle) { ran = true; }));
  ASSERT_OK(next.RunUntilIdle());
  EXPECT_TRUE(ran);
  EXPECT_EQ(Post(old_root, [](ContextHandle) {}).code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace ctxloop
