// Copyright 2026 The ctxloop Authors.
//
// Fault injection: exporters that fail, throw or hang while the
// batch queue fills (drops are counted, loops never block); processors that
// throw; a loop destroyed while other threads keep posting and finishing; a
// watched fd closed under the loop; `Stop()` from inside a task, from another
// thread while posts flow, and racing destruction.
//
// Cases are numbered [X1]..[X9]. Nothing here sleeps to make something
// happen: gates and latches order the threads; timeouts only bound a
// failure (a hang fails the test instead of stalling CI).

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/loop/loop_thread.h"
#include "ctxloop/loop/mutex.h"
#include "ctxloop/loop/testing/test_util.h"
#include "ctxloop/tests/fuzz/model/adapter.h"
#include "ctxloop/tests/fuzz/model/recorder.h"
#include "ctxloop/trace/batch_processor.h"
#include "ctxloop/trace/exporter.h"
#include "ctxloop/trace/tracer.h"
#include "gtest/gtest.h"

namespace ctxloop {
namespace {

using ctxloop::Mutex;
using ctxloop::MutexLock;
using fuzz::EventRecorder;
using fuzz::ThisTid;
using testing_util::Latch;

// Waits for `latch`-like conditions with a bound: true if `pred` held in time.
template <typename Pred>
bool WaitUntil(Pred pred,
               std::chrono::seconds limit = std::chrono::seconds(20)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// An exporter whose `Export` can hang on a gate, fail, or throw.
class FaultyExporter final : public SpanExporter {
 public:
  enum class Mode { kOk, kHang, kFailOdd, kThrowEveryThird };
  explicit FaultyExporter(Mode mode) : mode_(mode) {}

  absl::Status Export(absl::Span<const SpanData> batch) override {
    const uint64_t n = calls_.fetch_add(1);
    if (mode_ == Mode::kHang) {
      MutexLock lock(&mu_);
      in_export_ = true;
      while (!released_) cv_.Wait(&mu_);
    }
    if (mode_ == Mode::kFailOdd && n % 2 == 1) {
      return absl::UnavailableError("fault: export fails");
    }
    if (mode_ == Mode::kThrowEveryThird && n % 3 == 2) {
      throw std::runtime_error("fault: export throws");
    }
    items_.fetch_add(batch.size());
    return absl::OkStatus();
  }
  void Release() {
    MutexLock lock(&mu_);
    released_ = true;
    cv_.SignalAll();
  }
  bool in_export() {
    MutexLock lock(&mu_);
    return in_export_;
  }
  uint64_t items() const { return items_.load(); }

 private:
  const Mode mode_;
  std::atomic<uint64_t> calls_{0};
  std::atomic<uint64_t> items_{0};
  Mutex mu_;
  ctxloop::CondVar cv_;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  bool in_export_ ABSL_GUARDED_BY(mu_) = false;
};

// Starts and finishes `n` spans (one trace) on `ctx` from a loop task.
void SpansOnLoop(Tracer& tracer, LoopThread& loop, int n) {
  ASSERT_OK(loop.Invoke([&](Loop& l) {
    ContextHandle ctx = l.root();
    TraceScope t = tracer.StartTrace(ctx, "faults");
    for (int i = 0; i < n; ++i) {
      SpanScope s = tracer.StartSpan(ctx, "span");
      ASSERT_OK(s.Finish(ctx));
    }
    ASSERT_OK(t.Finish(ctx));
  }));
}

// [X1] An exporter that hangs: the queue fills, the excess is dropped and
// counted, and the loop keeps running tasks while the worker is stuck.
TEST(FaultsTest, HangingExporterFillsTheQueueLoopNeverBlocks) {
  auto exporter = std::make_shared<FaultyExporter>(FaultyExporter::Mode::kHang);
  BatchProcessor::Options bo;
  bo.max_queue_size = 64;
  bo.max_batch_size = 16;
  bo.export_trigger_ratio = 0.25;
  bo.schedule_delay = absl::Milliseconds(1);
  std::atomic<uint64_t> reports{0};
  bo.on_error = [&reports](const absl::Status&) { reports.fetch_add(1); };
  std::shared_ptr<BatchProcessor> batch =
      *BatchProcessor::Create(exporter, std::move(bo));
  Tracer::Options to;
  to.processors.push_back(batch);
  Tracer tracer(std::move(to));
  LoopThread loop;

  SpansOnLoop(tracer, loop, 20);  // Enough to trigger an export.
  ASSERT_TRUE(WaitUntil([&] { return exporter->in_export(); }))
      << "the worker never called Export";
  // The worker is stuck in Export. 2,000 more ends: the queue fills.
  SpansOnLoop(tracer, loop, 2000);
  // The loop still answers, promptly, while the export hangs.
  Latch pong;
  const auto sent = std::chrono::steady_clock::now();
  ASSERT_OK(Post(loop.root(), [&pong](ContextHandle) { pong.Open(); }));
  pong.Wait();
  const auto latency = std::chrono::steady_clock::now() - sent;
  EXPECT_LT(latency, std::chrono::seconds(2)) << "a loop blocked on export";
  EXPECT_TRUE(exporter->in_export());  // Still hanging: nothing waited on it.

  const BatchProcessor::Stats mid = batch->stats();
  EXPECT_GT(mid.dropped, 0u) << "the queue never filled";
  EXPECT_GT(reports.load(), 0u) << "drops must be reported";
  exporter->Release();
  loop.Join();
  ASSERT_OK(tracer.Shutdown(absl::Seconds(20)));
  const BatchProcessor::Stats st = batch->stats();
  const uint64_t ends = 2 + 2020;  // Two traces, 2,020 spans.
  EXPECT_EQ(
      st.exported + st.dropped + st.dropped_after_shutdown + st.failed_items,
      ends)
      << "every end is exported, failed or dropped: exported " << st.exported
      << ", dropped " << st.dropped;
  EXPECT_EQ(st.exported, exporter->items());
}

// [X2] Exporters that fail or throw: only their batches are lost, counted
// as failed; the loop and the other batches go on.
TEST(FaultsTest, FailingAndThrowingExportersLoseOnlyTheirBatches) {
  for (auto mode : {FaultyExporter::Mode::kFailOdd,
                    FaultyExporter::Mode::kThrowEveryThird}) {
    auto exporter = std::make_shared<FaultyExporter>(mode);
    BatchProcessor::Options bo;
    bo.max_queue_size = 100000;
    bo.max_batch_size = 8;
    std::atomic<uint64_t> reports{0};
    bo.on_error = [&reports](const absl::Status&) { reports.fetch_add(1); };
    std::shared_ptr<BatchProcessor> batch =
        *BatchProcessor::Create(exporter, std::move(bo));
    Tracer::Options to;
    to.processors.push_back(batch);
    Tracer tracer(std::move(to));
    LoopThread loop;
    SpansOnLoop(tracer, loop, 199);  // 200 ends: 25 batches of 8.
    loop.Join();
    (void)tracer.Shutdown(absl::Seconds(20));  // Its drain may fail too.
    const BatchProcessor::Stats st = batch->stats();
    EXPECT_EQ(st.exported + st.failed_items, 200u);
    EXPECT_EQ(st.dropped, 0u);
    EXPECT_GT(st.failed_batches, 0u);
    EXPECT_GT(st.exported, 0u);
    EXPECT_EQ(st.exported, exporter->items());
    EXPECT_GE(reports.load(), st.failed_batches);
  }
}

// [X3] A processor that throws on every event: the tracer reports each
// throw and still delivers every event, once, on the loop thread, to the
// processors after it.
TEST(FaultsTest, ThrowingProcessorDoesNotStopTheOthers) {
  std::atomic<uint64_t> seq{0};
  auto thrower = std::make_shared<fuzz::ThrowingProcessor>(1);
  auto recorder = std::make_shared<EventRecorder>(&seq);
  std::atomic<uint64_t> errors{0};
  Tracer::Options to;
  to.processors = {thrower, recorder};
  to.on_error = [&errors](const absl::Status&) { errors.fetch_add(1); };
  Tracer tracer(std::move(to));
  LoopThread loop;
  int64_t loop_tid = 0;
  ASSERT_OK(loop.Invoke([&](Loop&) { loop_tid = ThisTid(); }));
  SpansOnLoop(tracer, loop, 10);
  loop.Join();
  const std::vector<EventRecorder::Event> events = recorder->events();
  EXPECT_EQ(events.size(), 2u + 20u);  // Trace start/end, 10 span start/end.
  for (const auto& e : events) EXPECT_EQ(e.tid, loop_tid);
  EXPECT_EQ(thrower->thrown(), events.size());
  EXPECT_EQ(errors.load(), thrower->thrown());
}

// [X4] A loop destroyed while two other threads keep posting to it and
// finishing spans started on it: every accepted post runs exactly once,
// every span ends exactly once, and an end that could not go home says so.
TEST(FaultsTest, LoopDestroyedWhileOthersPostAndFinish) {
  for (int round = 0; round < 20; ++round) {
    std::atomic<uint64_t> seq{0};
    auto recorder = std::make_shared<EventRecorder>(&seq);
    Tracer::Options to;
    to.processors.push_back(recorder);
    Tracer tracer(std::move(to));
    auto loop = std::make_unique<LoopThread>();
    const ContextHandle root = loop->root();
    int64_t loop_tid = 0;
    std::vector<SpanScope> spans;
    std::unique_ptr<TraceScope> trace;
    ASSERT_OK(loop->Invoke([&](Loop&) {
      loop_tid = ThisTid();
      trace = std::make_unique<TraceScope>(tracer.StartTrace(root, "x4"));
      for (int i = 0; i < 400; ++i) {
        spans.push_back(tracer.StartSpan(root, "s", SpanOptions{}));
      }
    }));
    std::atomic<uint64_t> accepted{0}, ran{0};
    std::atomic<bool> go{false};
    std::thread poster([&] {
      while (!go.load()) std::this_thread::yield();
      for (int i = 0; i < 4000; ++i) {
        if (Post(root, [&ran](ContextHandle) { ran.fetch_add(1); }).ok()) {
          accepted.fetch_add(1);
        }
      }
    });
    std::thread finisher([&] {
      while (!go.load()) std::this_thread::yield();
      for (SpanScope& s : spans) ASSERT_OK(s.Finish());
      ASSERT_OK(trace->Finish());
    });
    go.store(true);
    loop.reset();  // Destroyed mid-flight.
    poster.join();
    finisher.join();
    EXPECT_EQ(ran.load(), accepted.load()) << "round " << round;

    std::map<std::string, int> ends;
    for (const auto& e : recorder->events()) {
      if (!e.is_end()) continue;
      ++ends[e.key()];
      EXPECT_EQ(e.finish_ran.thread_id, e.tid)
          << "finish_ran must name the thread that ran it";
      if (e.tid != loop_tid) {
        EXPECT_TRUE(e.finished_off_origin)
            << "ran off the loop thread but claims the origin";
      }
    }
    EXPECT_EQ(ends.size(), 401u) << "round " << round;
    for (const auto& [key, n] : ends) EXPECT_EQ(n, 1) << key;
  }
}

// [X5] A watched fd closed under the loop while a peer keeps writing: the
// loop stays responsive, stopping the watch afterwards is fine, and the fd
// number can be watched again once the stale watch is stopped.
TEST(FaultsTest, WatchedFdClosedUnderTheLoop) {
  LoopThread loop;
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
  std::atomic<int> calls{0};
  FdWatch watch;
  ASSERT_OK(loop.Invoke([&](Loop& l) {
    absl::StatusOr<FdWatch> w = fuzz_adapter::Watch(
        l, l.root(), fds[0],
        [&calls, fd = fds[0]](ContextHandle, FdEvents) {
          calls.fetch_add(1);
          char buf[64];
          while (read(fd, buf, sizeof(buf)) > 0) {
          }
        },
        /*close_on_stop=*/false);
    ASSERT_OK(w);
    watch = *std::move(w);
  }));
  ASSERT_EQ(send(fds[1], "x", 1, MSG_NOSIGNAL), 1);
  ASSERT_TRUE(WaitUntil([&] { return calls.load() > 0; }));
  // Close it on the loop thread, under the live watch.
  ASSERT_OK(loop.Invoke([&](Loop&) { close(fds[0]); }));
  std::atomic<bool> stop_writing{false};
  std::thread writer([&] {
    while (!stop_writing.load()) {
      (void)send(fds[1], "y", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
      std::this_thread::yield();
    }
  });
  for (int i = 0; i < 100; ++i) {  // Still answering.
    Latch pong;
    ASSERT_OK(Post(loop.root(), [&pong](ContextHandle) { pong.Open(); }));
    pong.Wait();
  }
  stop_writing.store(true);
  writer.join();
  ASSERT_OK(loop.Invoke([&](Loop&) { watch.Stop(); }));
  EXPECT_FALSE(watch.active());
  // The number is free again: a new watch on it works.
  int again[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, again), 0);
  std::atomic<int> new_calls{0};
  FdWatch fresh;
  ASSERT_OK(loop.Invoke([&](Loop& l) {
    absl::StatusOr<FdWatch> w = fuzz_adapter::Watch(
        l, l.root(), again[0],
        [&new_calls, fd = again[0]](ContextHandle, FdEvents) {
          new_calls.fetch_add(1);
          char buf[8];
          while (read(fd, buf, sizeof(buf)) > 0) {
          }
        },
        /*close_on_stop=*/true);
    ASSERT_OK(w);
    fresh = *std::move(w);
  }));
  ASSERT_EQ(send(again[1], "z", 1, MSG_NOSIGNAL), 1);
  EXPECT_TRUE(WaitUntil([&] { return new_calls.load() > 0; }));
  ASSERT_OK(loop.Invoke([&](Loop&) { fresh.Stop(); }));
  close(again[1]);
  close(fds[1]);
}

// [X6] Stop() from inside a task: Run returns after that task; what was
// posted after it stays queued for the next Run.
TEST(FaultsTest, StopFromInsideATask) {
  Loop loop;
  int ran = 0;
  ASSERT_OK(Post(loop.root(), [&](ContextHandle) {
    ++ran;
    fuzz_adapter::StopLoop(loop);
  }));
  ASSERT_OK(loop.Run());
  EXPECT_EQ(ran, 1);
  ASSERT_OK(Post(loop.root(), [&](ContextHandle) {
    ++ran;
    fuzz_adapter::StopLoop(loop);
  }));
  ASSERT_OK(loop.Run());
  EXPECT_EQ(ran, 2);
}

// [X7] Stop() from a control thread while another thread posts: Run returns
// (a Stop that landed between the loop's last check and its sleep would be
// lost, and Run would sleep forever; [S12]). Many rounds, to hit the window; a
// lost Stop is counted, then undone by a Stop posted to the loop itself.
TEST(FaultsTest, ForeignStopWhilePostsFlowIsNeverLost) {
  int lost = 0;
  for (int round = 0; round < 300; ++round) {
    Loop* loop_ptr = nullptr;
    Latch made;
    std::atomic<bool> returned{false};
    Mutex mu;
    ctxloop::CondVar cv;
    bool may_destroy = false;
    std::thread loop_thread([&] {
      Loop loop;
      loop_ptr = &loop;
      made.Open();
      (void)loop.Run();
      returned.store(true);
      MutexLock lock(&mu);  // Destroyed only once nobody calls Stop().
      while (!may_destroy) cv.Wait(&mu);
    });
    made.Wait();
    Loop* const loop = loop_ptr;
    const ContextHandle root = loop->root();
    std::atomic<bool> stop_posting{false};
    std::thread poster([&] {
      while (!stop_posting.load()) (void)Post(root, [](ContextHandle) {});
    });
    Latch first;  // The loop is running and taking posts.
    ASSERT_OK(Post(root, [&first](ContextHandle) { first.Open(); }));
    first.Wait();
    stop_posting.store(true);  // The last posts race the Stop below.
    fuzz_adapter::StopLoop(*loop);
    poster.join();
    if (!WaitUntil([&] { return returned.load(); }, std::chrono::seconds(5))) {
      ++lost;
      (void)Post(root, [loop](ContextHandle) { loop->Stop(); });
      ASSERT_TRUE(WaitUntil([&] { return returned.load(); }));
    }
    {
      MutexLock lock(&mu);
      may_destroy = true;
      cv.SignalAll();
    }
    loop_thread.join();
  }
  EXPECT_EQ(lost, 0) << "Loop::Stop() from another thread was lost";
}

// How the threads of `PostsRacingDestruction` post ([X8], [X9]).
struct PostRace {
  int rounds = 1;
  int posters = 1;
  // Posts per poster, accepted or not; 0: until one is refused.
  int posts_each = 0;
  // Each task calls Stop() on its loop.
  bool task_stops_loop = false;
  // A poster yields after each accepted post, so the loop can go idle.
  bool yield_after_post = false;
  // The destruction waits until every poster has started; otherwise the
  // posters are released just before it.
  bool wait_for_posters = false;
};

// `race.rounds` times: a LoopThread is destroyed while `race.posters`
// threads post to it. Every accepted post runs exactly once.
void PostsRacingDestruction(const PostRace& race) {
  for (int round = 0; round < race.rounds; ++round) {
    auto lt = std::make_unique<LoopThread>();
    const ContextHandle root = lt->root();
    Loop* loop = nullptr;
    if (race.task_stops_loop) {
      ASSERT_OK(lt->Invoke([&loop](Loop& l) { loop = &l; }));
    }
    std::atomic<uint64_t> accepted{0}, ran{0};
    std::atomic<bool> go{false};
    std::atomic<int> started{0};
    std::vector<std::thread> posters;
    for (int p = 0; p < race.posters; ++p) {
      posters.emplace_back([&] {
        if (race.wait_for_posters) {
          started.fetch_add(1);
        } else {
          while (!go.load()) std::this_thread::yield();
        }
        for (int i = 0; race.posts_each == 0 || i < race.posts_each; ++i) {
          absl::Status s;
          if (race.task_stops_loop) {
            // Runs on the loop thread, so `loop` is alive when it runs.
            s = Post(root, [loop, &ran](ContextHandle) {
              ran.fetch_add(1);
              loop->Stop();
            });
          } else {
            s = Post(root, [&ran](ContextHandle) { ran.fetch_add(1); });
          }
          if (!s.ok()) {
            if (race.posts_each == 0) break;
            continue;
          }
          accepted.fetch_add(1);
          if (race.yield_after_post) std::this_thread::yield();
        }
      });
    }
    if (race.wait_for_posters) {
      while (started.load() < race.posters) std::this_thread::yield();
    } else {
      go.store(true);
    }
    lt.reset();
    for (std::thread& t : posters) t.join();
    EXPECT_EQ(ran.load(), accepted.load()) << "round " << round;
  }
}

// [X8] Stop() racing destruction: tasks that call Stop() keep arriving
// while the LoopThread is destroyed. Each accepted task runs once (inside
// the drain, Stop is harmless); refused posts are reported; Join returns.
TEST(FaultsTest, StopRacingDestruction) {
  PostRace race;
  race.rounds = 50;
  race.posters = 1;
  race.posts_each = 2000;
  race.task_stops_loop = true;
  PostsRacingDestruction(race);
}

// [X9] Posts racing a LoopThread's destruction, one at a time so the loop
// is idle and each post takes the wake-up path (a poster that wrote the
// eventfd of a loop that could already be freed would be a use-after-free
// under ASan, a race under TSan; [S11]). Every accepted post runs.
TEST(FaultsTest, WakingPostsRacingLoopDestruction) {
  PostRace race;
  race.rounds = 200;
  // More posters than cores, so one is often preempted between its post
  // and its eventfd write while the loop shuts down and is freed.
  race.posters = 6;
  race.posts_each = 0;           // Until refused.
  race.yield_after_post = true;  // Let the loop go idle again.
  race.wait_for_posters = true;
  PostsRacingDestruction(race);
}

}  // namespace
}  // namespace ctxloop
