// Copyright 2026 The ctxloop Authors.
//
// The stream's lock-free paths (internal/stream_core.h, "Buffer operations"):
// the sink thread's ring and one producer thread's lane, next to the shared
// buffer. Order across them (hand-offs between producers), the exact high
// watermark with producers on both, allocation per event on one loop, and
// what an ending does with events still in the ring or the lane.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/loop/testing/alloc_count.h"
#include "ctxloop/stream/stream.h"
#include "gtest/gtest.h"

namespace ctxloop {
namespace {

struct Recorder {
  std::vector<int> events;
  std::vector<absl::Status> completions;
  Sink<int> MakeSink(Loop* stop_on_complete = nullptr) {
    Sink<int> sink;
    sink.on_event = [this](ContextHandle, int&& v) { events.push_back(v); };
    sink.on_complete = [this, stop_on_complete](ContextHandle,
                                                const absl::Status& s) {
      completions.push_back(s);
      if (stop_on_complete != nullptr) stop_on_complete->Stop();
    };
    return sink;
  }
};

// One thread that runs jobs for the test, one at a time, each to its end
// (the first thread other than the sink's to emit owns the stream's lane,
// so the same thread must come back).
class Worker {
 public:
  Worker() : thread_([this] { Main(); }) {}
  ~Worker() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      quit_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void Run(std::function<void()> job) {
    std::unique_lock<std::mutex> lock(mu_);
    job_ = std::move(job);
    cv_.notify_all();
    cv_.wait(lock, [&] { return job_ == nullptr; });
  }

 private:
  void Main() {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      cv_.wait(lock, [&] { return quit_ || job_ != nullptr; });
      if (job_ == nullptr) return;
      job_();
      job_ = nullptr;
      cv_.notify_all();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::function<void()> job_;
  bool quit_ = false;
  std::thread thread_;  // Last: starts after the members above exist.
};

// Emits [from, to) and expects every one accepted.
void EmitRange(StreamWriter<int>& writer, int from, int to) {
  for (int i = from; i < to; ++i) ASSERT_TRUE(writer.Emit(i).ok()) << i;
}

TEST(StreamFastPathTest, SameLoopEmitsAllocateNothingOnceWarm) {
  constexpr int kRound = 4096;
  Loop loop;
  ContextHandle producer = *loop.NewContext("producer");
  ContextHandle consumer = *loop.NewContext("consumer");
  StreamOptions options;
  options.high_watermark = kRound + 1;
  options.low_watermark = 0;
  options.max_batch = kRound;
  auto pair = *MakeStream<int>(producer, options);
  int64_t seen = 0;
  Sink<int> sink;
  sink.on_event = [&seen](ContextHandle, int&&) { ++seen; };
  sink.on_complete = [](ContextHandle, const absl::Status&) {};
  StreamSubscription sub =
      *std::move(pair.reader).Attach(consumer, std::move(sink));
  int next = 0;
  auto round = [&] {
    EmitRange(pair.writer, next, next + kRound);
    next += kRound;
    ASSERT_TRUE(loop.RunUntilIdle().ok());
  };
  round();  // Warm-up: the ring and the batch grow to a round.
  const testing_util::AllocationWindow window;
  for (int r = 0; r < 8; ++r) round();
  // A few per round (the delivery task), none per event: a buffer that
  // allocated per event (or per block of events) would show thousands here.
  EXPECT_LE(window.count(), 8 * 4);
  EXPECT_EQ(seen, next);
  EXPECT_EQ(sub.counters().delivered, static_cast<uint64_t>(next));
}

// A producer thread (the lane) emits, then hands the writer to the sink's
// thread (the ring), which emits after it; then the other way round. Each
// hand-off orders the emits, so the sink sees them in that order.
TEST(StreamFastPathTest, HandOffsBetweenLaneAndRingKeepEmitOrder) {
  Loop loop;
  ContextHandle sink_ctx = *loop.NewContext("sink");
  StreamOptions options;
  options.high_watermark = 10000;
  options.low_watermark = 0;
  options.max_batch = 7;  // Several batches, several hand-offs mid-stream.
  auto pair = *MakeStream<int>(loop.root(), options);
  Recorder rec;
  StreamSubscription sub =
      *std::move(pair.reader).Attach(sink_ctx, rec.MakeSink(&loop));
  StreamWriter<int> writer = std::move(pair.writer);
  Worker worker;
  int next = 0;
  for (int hop = 0; hop < 6; ++hop) {
    worker.Run([&] { EmitRange(writer, next, next + 50); });
    next += 50;
    // On the sink's thread, with the lane's events still waiting.
    EmitRange(writer, next, next + 50);
    next += 50;
    if (hop % 2 == 0) ASSERT_TRUE(loop.RunUntilIdle().ok());
  }
  ASSERT_TRUE(writer.Complete().ok());
  ASSERT_TRUE(loop.RunUntilIdle().ok());
  ASSERT_EQ(rec.events.size(), static_cast<size_t>(next));
  for (int i = 0; i < next; ++i) ASSERT_EQ(rec.events[i], i);
  ASSERT_EQ(rec.completions.size(), 1u);
  EXPECT_TRUE(rec.completions[0].ok());
}

// Producers on the sink's thread and on another thread at once: each one's
// events arrive in its order, all exactly once, and what waits never exceeds
// the high watermark (emitted - delivered, checked by both producers and by
// the sink as they go).
TEST(StreamFastPathTest, ProducersOnBothThreadsKeepTheirOrderAndTheBound) {
  constexpr int kPerProducer = 20000;
  constexpr uint64_t kHigh = 100;
  Loop loop;
  ContextHandle sink_ctx = *loop.NewContext("sink");
  StreamOptions options;
  options.high_watermark = kHigh;
  options.low_watermark = 10;
  options.max_batch = 16;
  auto pair = *MakeStream<int>(loop.root(), options);
  std::atomic<uint64_t> worst{0};
  auto check_bound = [&worst](const StreamCounters& c) {
    const uint64_t waiting = c.emitted - c.delivered - c.discarded;
    uint64_t w = worst.load();
    while (waiting > w && !worst.compare_exchange_weak(w, waiting)) {
    }
  };
  std::vector<int> from_sink_thread, from_other_thread;
  std::atomic<int> producers_done{0};
  StreamWriter<int> writer = std::move(pair.writer);
  StreamSubscription* sub_ptr = nullptr;
  Sink<int> sink;
  sink.on_event = [&](ContextHandle, int&& v) {
    (v < 0 ? from_other_thread : from_sink_thread).push_back(v);
    check_bound(sub_ptr->counters());
  };
  sink.on_complete = [&loop](ContextHandle, const absl::Status&) {
    loop.Stop();
  };
  StreamSubscription sub =
      *std::move(pair.reader).Attach(sink_ctx, std::move(sink));
  sub_ptr = &sub;
  // The other thread: -1, -2, ... ; retries while full.
  std::thread other([&] {
    for (int i = 1; i <= kPerProducer;) {
      if (writer.Emit(-i).ok()) {
        ++i;
        check_bound(writer.counters());
      } else {
        std::this_thread::yield();
      }
    }
    if (producers_done.fetch_add(1) == 1) (void)writer.Complete();
  });
  // The sink's thread: 0, 1, ... from a task that re-posts itself.
  int next = 0;
  std::function<void(ContextHandle)> emit_some = [&](ContextHandle c) {
    for (int k = 0; k < 8 && next < kPerProducer; ++k) {
      if (!writer.Emit(next).ok()) break;  // Full: the next turn retries.
      ++next;
      check_bound(writer.counters());
    }
    if (next < kPerProducer) {
      (void)Post(c, [&](ContextHandle c2) { emit_some(c2); });
    } else if (producers_done.fetch_add(1) == 1) {
      (void)writer.Complete();
    }
  };
  ASSERT_TRUE(Post(loop.root(), [&](ContextHandle c) { emit_some(c); }).ok());
  ASSERT_TRUE(loop.Run().ok());
  other.join();
  ASSERT_EQ(from_sink_thread.size(), static_cast<size_t>(kPerProducer));
  ASSERT_EQ(from_other_thread.size(), static_cast<size_t>(kPerProducer));
  for (int i = 0; i < kPerProducer; ++i) {
    ASSERT_EQ(from_sink_thread[i], i);
    ASSERT_EQ(from_other_thread[i], -(i + 1));
  }
  EXPECT_LE(worst.load(), kHigh);
  const StreamCounters c = sub.counters();
  EXPECT_EQ(c.emitted, 2u * kPerProducer);
  EXPECT_EQ(c.delivered, 2u * kPerProducer);
}

// Events waiting in the lane, the ring and the shared buffer when another
// thread cancels: counted as discarded at once (emitted == delivered +
// discarded right after the cancel), destroyed exactly once, on_complete
// once.
TEST(StreamFastPathTest, CancelCountsAndDestroysWhatWaitsInEveryBuffer) {
  Loop loop;
  ContextHandle sink_ctx = *loop.NewContext("sink");
  auto live = std::make_shared<int>(0);
  auto pair = *MakeStream<std::shared_ptr<int>>(loop.root());
  std::vector<absl::Status> completions;
  Sink<std::shared_ptr<int>> sink;
  sink.on_event = [](ContextHandle, std::shared_ptr<int>&&) {};
  sink.on_complete = [&](ContextHandle, const absl::Status& s) {
    completions.push_back(s);
  };
  StreamSubscription sub =
      *std::move(pair.reader).Attach(sink_ctx, std::move(sink));
  StreamWriter<std::shared_ptr<int>> writer = std::move(pair.writer);
  Worker worker;
  // The sink's thread first (its ring), then the worker (it claims the lane,
  // but the ring is not empty: the shared buffer).
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(writer.Emit(live).ok());
  worker.Run([&] {
    for (int i = 0; i < 10; ++i) ASSERT_TRUE(writer.Emit(live).ok());
  });
  ASSERT_TRUE(loop.RunUntilIdle().ok());  // Everything delivered so far.
  // The worker fills its lane; then the sink's thread adds behind it (the
  // shared buffer) and again (the shared buffer is not empty).
  worker.Run([&] {
    for (int i = 0; i < 10; ++i) ASSERT_TRUE(writer.Emit(live).ok());
  });
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(writer.Emit(live).ok());
  EXPECT_EQ(live.use_count(), 1 + 15);
  std::thread([&] { ASSERT_TRUE(sub.Cancel().ok()); }).join();
  StreamCounters c = writer.counters();
  EXPECT_EQ(c.emitted, 35u);
  EXPECT_EQ(c.delivered, 20u);
  EXPECT_EQ(c.emitted, c.delivered + c.discarded);
  EXPECT_EQ(writer.Emit(live).code(), absl::StatusCode::kCancelled);
  ASSERT_TRUE(loop.RunUntilIdle().ok());
  EXPECT_EQ(live.use_count(), 1);  // Dropped on the sink's thread.
  c = writer.counters();
  EXPECT_EQ(c.discarded, 15u);
  EXPECT_EQ(c.emitted, c.delivered + c.discarded);
  ASSERT_EQ(completions.size(), 1u);
  EXPECT_EQ(completions[0].code(), absl::StatusCode::kCancelled);
}

// The lane grows with what its producer emits while the sink's loop is not
// running (from a few slots up to the high watermark) and keeps the order.
TEST(StreamFastPathTest, LaneGrowsToTheHighWatermarkAndKeepsOrder) {
  constexpr int kEvents = 5000;
  Loop loop;
  StreamOptions options;
  options.high_watermark = kEvents;
  options.low_watermark = 0;
  auto pair = *MakeStream<int>(loop.root(), options);
  Recorder rec;
  StreamSubscription sub =
      *std::move(pair.reader).Attach(loop.root(), rec.MakeSink());
  StreamWriter<int> writer = std::move(pair.writer);
  std::thread([&] {
    EmitRange(writer, 0, kEvents);
    // Full now: refused, not taken.
    EXPECT_EQ(writer.Emit(kEvents).code(),
              absl::StatusCode::kResourceExhausted);
    ASSERT_TRUE(writer.Complete().ok());
  }).join();
  ASSERT_TRUE(loop.RunUntilIdle().ok());
  ASSERT_EQ(rec.events.size(), static_cast<size_t>(kEvents));
  for (int i = 0; i < kEvents; ++i) ASSERT_EQ(rec.events[i], i);
  ASSERT_EQ(rec.completions.size(), 1u);
  EXPECT_EQ(sub.counters().refused_full, 1u);
}

}  // namespace
}  // namespace ctxloop
