// Copyright 2026 The ctxloop Authors.
//
// The foreign ingress (internal/foreign_ingress.h) under concurrent push,
// close and stop: seeded stress tests plus one deterministic interleaving.
// Each wait is bounded, so a lost wake-up or a lost stop fails instead of
// hanging. Meant to run plain, under --config=asan and under --config=tsan.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "ctxloop/loop/context_handle.h"
#include "ctxloop/loop/internal/foreign_ingress.h"
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
using std::chrono::milliseconds;
using std::chrono::seconds;
using testing_util::HoldAtHook;
using testing_util::Latch;
using testing_util::RunningLoop;

// Spins (yielding) until `pred` holds or `timeout` passes; returns `pred()`.
template <typename Pred>
bool WaitUntil(Pred pred, milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return pred();
    std::this_thread::yield();
  }
  return true;
}

// --- [S7] exactness: a foreign Post racing DestroyContext -------------------

// The poster is held after it found the context open and before it pushed;
// meanwhile the loop destroys the context. The post was accepted, so its task
// must run, with the context's handle still valid (before the destroy marker
// frees it). Without DestroyContext's wait for earlier pins the task arrives
// after the marker and runs on a freed context.
TEST(IngressTest, PostRacingDestroyContextRunsBeforeTheContextIsFreed) {
  HoldAtHook hold(&TestHooks::foreign_post_checked);
  LoopThread worker;
  Loop* loop = nullptr;
  ContextHandle ctx;
  ASSERT_OK(worker.Invoke([&](Loop& l) {
    loop = &l;
    ctx = *l.NewContext("doomed");
  }));
  std::atomic<int> ran{0};
  std::atomic<bool> valid{false};
  absl::Status posted;
  hold.Arm();
  std::thread poster([&] {
    posted = Post(ctx, [&, loop](ContextHandle here) {
      valid.store(loop->ContextName(here).ok());
      ran.fetch_add(1);
    });
  });
  ASSERT_TRUE(hold.WaitReached(seconds(10)));
  ASSERT_OK(Post(worker.root(), [loop, ctx](ContextHandle) {
    EXPECT_TRUE(loop->DestroyContext(ctx).ok());
  }));
  // Give the loop time to destroy (and, were the wait missing, free) the
  // context while the poster is held; the check below does not depend on it.
  std::this_thread::sleep_for(milliseconds(100));
  hold.Resume();
  poster.join();
  ASSERT_OK(posted);
  EXPECT_TRUE(WaitUntil([&] { return ran.load() == 1; }, milliseconds(10000)));
  EXPECT_TRUE(valid.load()) << "the accepted task ran after its context was "
                               "freed";
  // Later posts are refused.
  EXPECT_EQ(Post(ctx, [](ContextHandle) {}).code(),
            absl::StatusCode::kFailedPrecondition);
}

// --- Seeded: posters racing LoopThread destruction ([S1] [S5]) --------------

// Records on which side a task was destroyed.
struct Tally {
  std::atomic<int64_t> ran{0};
  std::atomic<int64_t> destroyed_unrun{0};
};

class Counted {
 public:
  Counted(Tally* t, std::vector<int>* order, int producer, int seq)
      : tally_(t), order_(order), producer_(producer), seq_(seq) {}
  Counted(Counted&& o) noexcept
      : tally_(std::exchange(o.tally_, nullptr)),
        order_(o.order_),
        producer_(o.producer_),
        seq_(o.seq_) {}
  Counted& operator=(Counted&&) = delete;
  ~Counted() {
    if (tally_ != nullptr) tally_->destroyed_unrun.fetch_add(1);
  }
  void operator()(ContextHandle) && {
    Tally* t = std::exchange(tally_, nullptr);
    t->ran.fetch_add(1);
    // Loop thread only: per-producer order.
    order_[producer_].push_back(seq_);
  }

 private:
  Tally* tally_;
  std::vector<int>* order_;
  int producer_;
  int seq_;
};

class SeededIngressTest : public ::testing::TestWithParam<uint32_t> {};

// Every accepted post runs exactly once, in per-producer order; every refused
// one is destroyed unrun by Post itself; nothing is both or neither.
TEST_P(SeededIngressTest, PostersRacingShutdownLoseNothing) {
  std::mt19937 rng(GetParam());
  constexpr int kProducers = 3;
  for (int round = 0; round < 10; ++round) {
    Tally tally;
    std::vector<int> order[kProducers];
    std::atomic<int64_t> accepted{0};
    std::atomic<int64_t> refused{0};
    auto worker = std::make_unique<LoopThread>();
    const ContextHandle root = worker->root();
    std::atomic<int> started{0};
    std::vector<std::thread> posters;
    for (int p = 0; p < kProducers; ++p) {
      const uint32_t seed = rng();
      posters.emplace_back([&, p, seed] {
        std::mt19937 local(seed);
        started.fetch_add(1);
        for (int seq = 0;; ++seq) {
          const int64_t before = tally.destroyed_unrun.load();
          absl::Status s = Post(root, Counted(&tally, order, p, seq));
          if (!s.ok()) {
            // Destroyed here, before Post returned.
            EXPECT_GE(tally.destroyed_unrun.load(), before + 1);
            refused.fetch_add(1);
            return;
          }
          accepted.fetch_add(1);
          if (local() % 8 == 0) std::this_thread::yield();
        }
      });
    }
    while (started.load() < kProducers) std::this_thread::yield();
    const int spins = static_cast<int>(rng() % 2000);
    for (int i = 0; i < spins; ++i) std::this_thread::yield();
    worker.reset();  // Shutdown: drains what was accepted, refuses the rest.
    for (std::thread& t : posters) t.join();
    EXPECT_EQ(tally.ran.load(), accepted.load()) << "round " << round;
    EXPECT_EQ(tally.destroyed_unrun.load(), refused.load())
        << "round " << round;
    for (int p = 0; p < kProducers; ++p) {
      for (size_t i = 0; i < order[p].size(); ++i) {
        ASSERT_EQ(order[p][i], static_cast<int>(i))
            << "producer " << p << " out of order, round " << round;
      }
    }
  }
}

// --- Seeded: wake-ups and stops are never lost ([S12]) ----------------------

// One foreign thread posts and waits for each task (the loop goes idle and
// arms the ingress between most of them), another posts freely (even seeds),
// and foreign
// Stop()s come in between; every task must run and every Stop must make
// Run() return, within a bound.
TEST_P(SeededIngressTest, WakeUpsAndStopsAreNeverLost) {
  std::mt19937 rng(GetParam());
  RunningLoop running;
  const ContextHandle root = running.loop().root();
  // Odd seeds without the flood: then nothing but the stop itself can wake
  // an idle loop for it.
  std::atomic<bool> flooding{GetParam() % 2 == 0};
  std::thread flooder([&] {
    while (flooding.load()) {
      (void)Post(root, [](ContextHandle) {});
      std::this_thread::yield();
    }
  });
  int lost_tasks = 0;
  int lost_stops = 0;
  for (int i = 0; i < 1000; ++i) {
    const uint32_t r = rng();
    if (r % 16 == 0) {
      const int64_t before = running.returns();
      running.loop().Stop();
      if (!WaitUntil([&] { return running.returns() > before; },
                     milliseconds(10000))) {
        ++lost_stops;
        break;
      }
    } else {
      std::atomic<bool> ran{false};
      ASSERT_OK(Post(root, [&ran](ContextHandle) { ran.store(true); }));
      if (!WaitUntil([&] { return ran.load(); }, milliseconds(10000))) {
        ++lost_tasks;
        break;
      }
      for (uint32_t s = r % 64; s > 48; --s) std::this_thread::yield();
    }
  }
  flooding.store(false);
  flooder.join();
  EXPECT_EQ(lost_tasks, 0);
  EXPECT_EQ(lost_stops, 0);
}

// --- Posts from thread_local destructors at thread exit --------------------

// Every post of the test carries an id; each accepted id must run exactly
// once.
constexpr int kExitThreads = 8;
constexpr int kExitPostsPerObject = 3;
constexpr int kHeavyPosters = 4;
constexpr int kHeavyPosts = 20000;
constexpr int kExitIds = 2 * kExitThreads * kExitPostsPerObject;
constexpr int kAllIds = kExitIds + kHeavyPosters * kHeavyPosts;

struct ExitPostState {
  ContextHandle target;
  std::atomic<int> next_id{0};
  std::atomic<int64_t> accepted{0};
  std::atomic<int> runs[kAllIds] = {};
};
ExitPostState* g_exit_state = nullptr;

void PostId(ExitPostState* st, int id) {
  if (Post(st->target, [st, id](ContextHandle) {
        st->runs[id].fetch_add(1);
      }).ok()) {
    st->accepted.fetch_add(1);
  }
}

// Posts from its destructor, i.e. during thread exit, in whatever order the
// thread's `thread_local` objects are destroyed.
struct PostsWhenDestroyed {
  ~PostsWhenDestroyed() {
    for (int i = 0; i < kExitPostsPerObject; ++i) {
      PostId(g_exit_state, g_exit_state->next_id.fetch_add(1));
    }
  }
};
// Constructed before the thread's first post: destroyed after the ingress's
// per-thread node cache.
PostsWhenDestroyed& MadeBeforeFirstPost() {
  static thread_local PostsWhenDestroyed p;
  return p;
}
// Constructed after it: destroyed before the cache.
PostsWhenDestroyed& MadeAfterFirstPost() {
  static thread_local PostsWhenDestroyed p;
  return p;
}

// Posts from thread_local destructors at thread exit, constructed before and
// after the thread's node cache (so some run after the cache has gone back
// to the pool), then heavy posting from other threads: every accepted post
// runs exactly once and the loop keeps making progress.
TEST(IngressTest, PostsFromThreadLocalDestructorsAtExitLoseNothing) {
  auto state = std::make_unique<ExitPostState>();
  g_exit_state = state.get();
  auto worker = std::make_unique<LoopThread>();
  state->target = worker->root();
  for (int t = 0; t < kExitThreads; ++t) {
    std::thread([&] {
      (void)MadeBeforeFirstPost();
      // Not counted among the ids: it only makes the thread's cache.
      ASSERT_OK(Post(state->target, [](ContextHandle) {}));
      (void)MadeAfterFirstPost();
    }).join();
  }
  ASSERT_EQ(state->next_id.load(), kExitIds);
  std::vector<std::thread> heavy;
  heavy.reserve(kHeavyPosters);
  for (int p = 0; p < kHeavyPosters; ++p) {
    heavy.emplace_back([&, p] {
      for (int i = 0; i < kHeavyPosts; ++i) {
        PostId(state.get(), kExitIds + p * kHeavyPosts + i);
      }
    });
  }
  for (std::thread& t : heavy) t.join();
  EXPECT_EQ(state->accepted.load(), kAllIds);
  const auto all_ran = [&] {
    int64_t ran = 0;
    for (const auto& r : state->runs) ran += r.load();
    return ran >= state->accepted.load();
  };
  if (!WaitUntil(all_ran, milliseconds(30000))) {
    ADD_FAILURE() << "accepted posts never ran: the loop stopped making "
                     "progress";
    // A loop stuck on a corrupted ingress would never shut down: leave it.
    (void)worker.release();
    (void)state.release();
    return;
  }
  worker.reset();
  int wrong = 0;
  for (int id = 0; id < kAllIds; ++id) {
    if (state->runs[id].load() != 1) ++wrong;
  }
  EXPECT_EQ(wrong, 0) << "posts that did not run exactly once";
  g_exit_state = nullptr;
}

// --- The node pool's bounds across bursts ----------------------------------

// Nodes the process holds beyond what the pool's bounds allow right now:
// at most kPoolMaxFreeNodes free (plus those kept forever), a cache of at
// most kThreadCacheMaxNodes per thread that posted and is still alive, and
// whatever `others` (caches of earlier tests' live threads) held before.
int64_t NodesOverBound(int64_t others, int caching_threads) {
  const loop_internal::IngressPoolStats st =
      loop_internal::IngressPoolStatsForTesting();
  const int64_t bound =
      others + static_cast<int64_t>(loop_internal::kPoolMaxFreeNodes) +
      static_cast<int64_t>(st.pool_kept_forever) +
      static_cast<int64_t>(loop_internal::kThreadCacheMaxNodes) *
          caching_threads;
  return st.nodes_live - bound;
}

// Bursts from four producers into a loop held busy (so every post of a
// burst is in flight at once), each followed by new producer threads that
// post once and then stay alive, idle: after each burst drains, the nodes
// held (in flight, in caches, in the pool) fall back under the pool's bound
// instead of growing by a burst's worth each time.
TEST(IngressTest, NodePoolStaysBoundedAcrossBursts) {
  constexpr int kProducers = 4;
  constexpr int kPostsEach = 25000;
  constexpr int kBursts = 4;
  constexpr int kIdlePerBurst = 2;
  LoopThread worker;
  const ContextHandle root = worker.root();
  const loop_internal::IngressPoolStats before =
      loop_internal::IngressPoolStatsForTesting();
  const int64_t others =
      before.nodes_live - static_cast<int64_t>(before.pool_free);
  std::atomic<int64_t> ran{0};
  Latch release_idle;
  std::vector<std::thread> idle;
  int64_t posted = 0;
  for (int burst = 0; burst < kBursts; ++burst) {
    Latch unblock;
    ASSERT_OK(Post(root, [&unblock](ContextHandle) {
      EXPECT_TRUE(unblock.WaitFor(milliseconds(60000)));
    }));
    std::vector<std::thread> producers;
    producers.reserve(kProducers);
    for (int p = 0; p < kProducers; ++p) {
      producers.emplace_back([&] {
        for (int i = 0; i < kPostsEach; ++i) {
          ASSERT_OK(Post(root, [&ran](ContextHandle) { ran.fetch_add(1); }));
        }
      });
    }
    for (std::thread& t : producers) t.join();
    posted += int64_t{kProducers} * kPostsEach;
    unblock.Open();
    ASSERT_TRUE(
        WaitUntil([&] { return ran.load() == posted; }, milliseconds(60000)));
    for (int i = 0; i < kIdlePerBurst; ++i) {
      Latch did_post;
      idle.emplace_back([&] {
        ASSERT_OK(Post(root, [&ran](ContextHandle) { ran.fetch_add(1); }));
        did_post.Open();
        release_idle.Wait();
      });
      ASSERT_TRUE(did_post.WaitFor(milliseconds(10000)));
      ++posted;
    }
    ASSERT_TRUE(
        WaitUntil([&] { return ran.load() == posted; }, milliseconds(60000)));
    // The loop trims the pool once it finds its ingress empty.
    const int caching = static_cast<int>(idle.size()) + 1;
    EXPECT_TRUE(WaitUntil([&] { return NodesOverBound(others, caching) <= 0; },
                          milliseconds(10000)))
        << "burst " << burst << ": " << NodesOverBound(others, caching)
        << " nodes over the bound";
  }
  release_idle.Open();
  for (std::thread& t : idle) t.join();
}

// --- Overload: the bound on pending cross-thread work ---------------------

Loop::Options BoundedOptions(int64_t bound) {
  Loop::Options options;
  options.max_pending_foreign = bound;
  return options;
}

// Holds the loop of `root` in a task (one foreign post) until `release`
// opens, so nothing leaves its ingress meanwhile; returns once the task runs.
void HoldLoop(ContextHandle root, Latch& release) {
  auto held = std::make_shared<Latch>();  // Outlives this call if need be.
  ASSERT_OK(Post(root, [held, &release](ContextHandle) {
    held->Open();
    EXPECT_TRUE(release.WaitFor(milliseconds(60000)));
  }));
  ASSERT_TRUE(held->WaitFor(milliseconds(30000)));
}

// Three producers post as fast as they can into a slow loop for a bounded
// time: the loop's pending work never passes the bound, every accepted task
// runs exactly once, every refused one is destroyed before Post returns and
// counted, and the nodes go back under the pool's bound once it drained.
TEST(IngressTest, OverloadedLoopRefusesPastTheBoundAndLosesNothing) {
  constexpr int64_t kBound = 2000;
  constexpr int kProducers = 3;
  LoopThread worker(BoundedOptions(kBound));
  const ContextHandle root = worker.root();
  const loop_internal::IngressPoolStats before =
      loop_internal::IngressPoolStatsForTesting();
  const int64_t others =
      before.nodes_live - static_cast<int64_t>(before.pool_free);
  Tally tally;
  std::vector<int> order[kProducers];
  // Posts begun and not yet run or refused: an upper bound on what the loop
  // holds (it counts producers inside Post too).
  std::atomic<int64_t> in_flight{0};
  std::atomic<int64_t> max_in_flight{0};
  std::atomic<int64_t> accepted{0};
  std::atomic<int64_t> refused{0};
  std::atomic<int64_t> wrong_refusals{0};
  std::atomic<bool> go{true};
  struct SlowTask {
    Counted counted;
    std::atomic<int64_t>* in_flight;
    std::atomic<int64_t>* max_in_flight;
    void operator()(ContextHandle ctx) && {
      const int64_t now = in_flight->load();
      int64_t seen = max_in_flight->load();
      while (now > seen && !max_in_flight->compare_exchange_weak(seen, now)) {
      }
      // Slow: the producers outrun the loop.
      const auto until =
          std::chrono::steady_clock::now() + std::chrono::microseconds(20);
      while (std::chrono::steady_clock::now() < until) {
      }
      std::move(counted)(ctx);
      in_flight->fetch_sub(1);
    }
  };
  std::vector<std::thread> producers;
  producers.reserve(kProducers);
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      for (int seq = 0; go.load();) {
        in_flight.fetch_add(1);
        const int64_t destroyed = tally.destroyed_unrun.load();
        absl::Status s = Post(root, SlowTask{Counted(&tally, order, p, seq),
                                             &in_flight, &max_in_flight});
        if (s.ok()) {
          accepted.fetch_add(1);
          ++seq;
          continue;
        }
        in_flight.fetch_sub(1);
        refused.fetch_add(1);
        if (s.code() != absl::StatusCode::kResourceExhausted ||
            tally.destroyed_unrun.load() < destroyed + 1) {
          wrong_refusals.fetch_add(1);
        }
      }
    });
  }
  std::this_thread::sleep_for(milliseconds(1500));
  go.store(false);
  for (std::thread& t : producers) t.join();
  ASSERT_TRUE(WaitUntil([&] { return tally.ran.load() == accepted.load(); },
                        milliseconds(60000)));
  EXPECT_GT(refused.load(), 0) << "the bound was never reached";
  EXPECT_EQ(wrong_refusals.load(), 0);
  EXPECT_LE(max_in_flight.load(), kBound + kProducers);
  EXPECT_EQ(tally.destroyed_unrun.load(), refused.load());
  LoopStats stats;
  ASSERT_OK(worker.Invoke([&](Loop& l) { stats = l.stats(); }));
  EXPECT_EQ(stats.foreign_refused_full, static_cast<uint64_t>(refused.load()));
  // The Invoke that reads the stats is itself a pending cross-thread post.
  EXPECT_LE(stats.foreign_pending, 1u);
  for (int p = 0; p < kProducers; ++p) {
    for (size_t i = 0; i < order[p].size(); ++i) {
      ASSERT_EQ(order[p][i], static_cast<int>(i)) << "producer " << p;
    }
  }
  // Memory returns: the loop trimmed the pool when it found its ingress
  // empty (the producers have exited: their caches went back).
  EXPECT_TRUE(WaitUntil([&] { return NodesOverBound(others, 1) <= 0; },
                        milliseconds(10000)))
      << NodesOverBound(others, 1) << " nodes over the pool's bound";
}

// A full loop still takes Stop, Cancel and the library's own posts
// (PostNeverFull: a trace's finish going home); user posts and delayed posts
// are refused with kResourceExhausted; WaitForRoom waits (without spinning)
// until the backlog falls to the low-water mark, and fails once the loop is
// gone.
TEST(IngressTest, AFullLoopRefusesUserPostsOnlyAndWakesRoomWaiters) {
  constexpr int64_t kBound = 10;
  auto worker = std::make_unique<LoopThread>(BoundedOptions(kBound));
  const ContextHandle root = worker->root();
  // The loop is held in a task, so nothing leaves the ingress meanwhile (a
  // delayed post leaves the count when the loop takes it).
  Latch unblock;
  ASSERT_NO_FATAL_FAILURE(HoldLoop(root, unblock));
  std::atomic<int> ran{0};
  absl::StatusOr<DelayedTaskHandle> delayed;
  std::thread([&] {
    delayed = PostDelayed(root, absl::Hours(1), [](ContextHandle) {});
    ASSERT_OK(delayed);
    // The blocking task itself was a foreign post, run already: kBound - 1
    // more fit.
    int accepted = 1;
    while (Post(root, [&ran](ContextHandle) { ran.fetch_add(1); }).ok()) {
      ++accepted;
    }
    EXPECT_EQ(accepted, kBound - 1);
    EXPECT_EQ(Post(root, [](ContextHandle) {}).code(),
              absl::StatusCode::kResourceExhausted);
    EXPECT_EQ(PostDelayed(root, absl::ZeroDuration(), [](ContextHandle) {})
                  .status()
                  .code(),
              absl::StatusCode::kResourceExhausted);
    EXPECT_EQ(WaitForRoom(root, absl::Now() + absl::Milliseconds(50)).code(),
              absl::StatusCode::kDeadlineExceeded);
    // Never refused for fullness.
    EXPECT_TRUE(Cancel(*delayed));
    EXPECT_TRUE(loop_internal::PostNeverFull(root, [&ran](ContextHandle) {
                  ran.fetch_add(100);
                }).ok());
  }).join();
  Latch room;
  std::thread waiter([&] {
    const absl::Status s = WaitForRoom(root, absl::InfiniteFuture());
    EXPECT_TRUE(s.ok()) << s;
    room.Open();
  });
  EXPECT_FALSE(room.WaitFor(milliseconds(100)));
  unblock.Open();
  EXPECT_TRUE(room.WaitFor(milliseconds(30000)));
  waiter.join();
  EXPECT_TRUE(WaitUntil([&] { return ran.load() == kBound - 2 + 100; },
                        milliseconds(30000)));
  // Full again: a waiter blocks until the loop drains to the low-water
  // mark; once the loop is gone, WaitForRoom fails at once.
  Latch full;
  ASSERT_NO_FATAL_FAILURE(HoldLoop(root, full));
  std::thread([&] {
    while (Post(root, [](ContextHandle) {}).ok()) {
    }
  }).join();
  std::atomic<int> code{-1};
  std::thread late([&] {
    code.store(
        static_cast<int>(WaitForRoom(root, absl::InfiniteFuture()).code()));
  });
  std::this_thread::sleep_for(milliseconds(50));
  full.Open();
  late.join();  // Woken at the low-water mark (the loop drains).
  EXPECT_EQ(code.load(), static_cast<int>(absl::StatusCode::kOk));
  worker.reset();
  EXPECT_EQ(WaitForRoom(root, absl::InfiniteFuture()).code(),
            absl::StatusCode::kFailedPrecondition);
}

// LoopThread::Join on a loop whose cross-thread backlog is full: its stop is
// never refused by the bound, so Join returns once the loop has drained (a
// refused stop would leave the thread running and Join waiting forever).
// Join's stop is posted while the loop is held full (a 200 ms head start);
// a Join still waiting after 30 s aborts the test with a message.
TEST(IngressTest, LoopThreadJoinReturnsWhenTheLoopIsFull) {
  constexpr int64_t kBound = 4;
  auto worker = std::make_unique<LoopThread>(BoundedOptions(kBound));
  const ContextHandle root = worker->root();
  Latch unblock;
  ASSERT_NO_FATAL_FAILURE(HoldLoop(root, unblock));
  std::atomic<int> ran{0};
  int accepted = 1;  // The blocking task, run already.
  while (Post(root, [&ran](ContextHandle) { ran.fetch_add(1); }).ok()) {
    ++accepted;
  }
  ASSERT_EQ(accepted, kBound);
  Latch joined;
  std::thread joiner([&] {
    (void)worker->Join();
    joined.Open();
  });
  std::this_thread::sleep_for(milliseconds(200));  // Join posts its stop.
  unblock.Open();
  if (!joined.WaitFor(milliseconds(30000))) {
    std::fprintf(stderr, "LoopThread::Join on a full loop never returned\n");
    std::abort();
  }
  joiner.join();
  EXPECT_EQ(ran.load(), kBound - 1);  // The flood ran before the stop.
}

// RunUntilIdle runs what was ready when it was called, its loop-thread
// follow-ups and at most one bound's worth of cross-thread posts arriving
// meanwhile, then returns, however fast other threads keep posting. A
// watchdog stops the loop after 10 s, so a RunUntilIdle that would never
// return fails the test instead of hanging it.
TEST(IngressTest, RunUntilIdleReturnsWhileProducersNeverStop) {
  Loop loop(BoundedOptions(200));
  const ContextHandle root = loop.root();
  std::atomic<bool> go{true};
  std::atomic<int64_t> ran{0};
  std::vector<std::thread> producers;
  producers.reserve(3);
  for (int p = 0; p < 3; ++p) {
    producers.emplace_back([&] {
      while (go.load()) {
        // Slow tasks: the producers stay ahead of the loop.
        if (!Post(root, [&ran](ContextHandle) {
               const auto until = std::chrono::steady_clock::now() +
                                  std::chrono::microseconds(50);
               while (std::chrono::steady_clock::now() < until) {
               }
               ran.fetch_add(1);
             }).ok()) {
          std::this_thread::yield();
        }
      }
    });
  }
  // A backlog first: the producers are ahead before RunUntilIdle starts.
  ASSERT_TRUE(WaitUntil([&] { return loop.stats().foreign_pending >= 100; },
                        milliseconds(30000)));
  std::atomic<bool> fired{false};
  Latch done;
  std::thread watchdog([&] {
    if (!done.WaitFor(milliseconds(10000))) {
      fired.store(true);
      loop.Stop();
    }
  });
  for (int i = 0; i < 5 && !fired.load(); ++i) {
    ASSERT_OK(loop.RunUntilIdle());
    // A local follow-up of a task posted now runs in the same call.
    bool follow_up = false;
    ASSERT_OK(Post(root, [&follow_up](ContextHandle here) {
      (void)Post(here, [&follow_up](ContextHandle) { follow_up = true; });
    }));
    ASSERT_OK(loop.RunUntilIdle());
    EXPECT_TRUE(follow_up);
  }
  done.Open();
  watchdog.join();
  EXPECT_FALSE(fired.load()) << "RunUntilIdle never returned";
  go.store(false);
  for (std::thread& t : producers) t.join();
  EXPECT_GT(ran.load(), 0);
  ASSERT_OK(loop.RunUntilIdle());  // Everything accepted runs.
}

INSTANTIATE_TEST_SUITE_P(Seeds, SeededIngressTest,
                         ::testing::Values(1u, 2u, 3u, 4u));

}  // namespace
}  // namespace ctxloop
