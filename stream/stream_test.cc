// Copyright 2026 The ctxloop Authors.
//
// Stream delivery, backpressure, endings [E1]..[E7] and re-entrancy.

#include "ctxloop/stream/stream.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

#include "ctxloop/loop/loop.h"
#include "ctxloop/loop/loop_thread.h"
#include "gtest/gtest.h"

namespace ctxloop {
namespace {

int64_t Tid() { return static_cast<int64_t>(syscall(SYS_gettid)); }

// What a sink saw, safe to read from the test thread.
struct Seen {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<int> events;
  std::vector<ContextHandle> event_ctx;
  std::vector<absl::Status> completions;
  std::vector<int64_t> tids;

  Sink<int> MakeSink() {
    Sink<int> sink;
    sink.on_event = [this](ContextHandle ctx, int&& v) {
      std::lock_guard<std::mutex> lock(mu);
      events.push_back(v);
      event_ctx.push_back(ctx);
      tids.push_back(Tid());
    };
    sink.on_complete = [this](ContextHandle, const absl::Status& s) {
      {
        std::lock_guard<std::mutex> lock(mu);
        completions.push_back(s);
      }
      cv.notify_all();
    };
    return sink;
  }
  bool WaitComplete() {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(10),
                       [&] { return !completions.empty(); });
  }
};

// A value that records where it was destroyed.
struct DestroyProbe {
  std::shared_ptr<std::atomic<int64_t>> where;
  explicit DestroyProbe(std::shared_ptr<std::atomic<int64_t>> w)
      : where(std::move(w)) {}
  DestroyProbe(DestroyProbe&& o) noexcept : where(std::move(o.where)) {}
  ~DestroyProbe() {
    if (where != nullptr) where->store(Tid());
  }
};

TEST(StreamTest, SameLoopDeliversInOrderThenCompletes) {
  Loop loop;
  ContextHandle producer = *loop.NewContext("producer");
  ContextHandle consumer = *loop.NewContext("consumer");
  auto pair = *MakeStream<int>(producer);
  Seen seen;
  StreamSubscription sub =
      *std::move(pair.reader).Attach(consumer, seen.MakeSink());
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(pair.writer.Emit(i).ok());
  EXPECT_TRUE(seen.events.empty());  // Never inside Emit.
  ASSERT_TRUE(pair.writer.Complete().ok());
  ASSERT_TRUE(loop.RunUntilIdle().ok());
  ASSERT_EQ(seen.events.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(seen.events[i], i);
  for (ContextHandle c : seen.event_ctx) EXPECT_EQ(c, consumer);
  ASSERT_EQ(seen.completions.size(), 1u);
  EXPECT_TRUE(seen.completions[0].ok());
  EXPECT_TRUE(sub.finished());
  EXPECT_EQ(sub.counters().delivered, 100u);
  EXPECT_EQ(sub.counters().deliveries, 1u);  // One batch.
  EXPECT_EQ(pair.writer.Emit(1).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(pair.writer.Complete().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(StreamTest, EventsBeforeAttachAreDelivered) {
  Loop loop;
  auto pair = *MakeStream<int>(loop.root());
  ASSERT_TRUE(pair.writer.Emit(7).ok());
  ASSERT_TRUE(pair.writer.Complete().ok());
  Seen seen;
  StreamSubscription sub =
      *std::move(pair.reader).Attach(loop.root(), seen.MakeSink());
  ASSERT_TRUE(loop.RunUntilIdle().ok());
  EXPECT_EQ(seen.events, std::vector<int>{7});
  ASSERT_EQ(seen.completions.size(), 1u);
}

TEST(StreamTest, CrossLoopDeliveryIsOrderedExactlyOnceAndBatched) {
  constexpr int kEvents = 20000;
  LoopThread producer_loop;
  Loop sink_loop;
  ContextHandle sink_ctx = *sink_loop.NewContext("sink");
  StreamOptions options;
  options.high_watermark = kEvents + 1;
  options.low_watermark = 0;
  auto pair = *MakeStream<int>(producer_loop.root(), options);
  Seen seen;
  StreamSubscription sub =
      *std::move(pair.reader).Attach(sink_ctx, seen.MakeSink());
  StreamWriter<int> writer = std::move(pair.writer);
  ASSERT_TRUE(Post(producer_loop.root(), [&](ContextHandle) {
                for (int i = 0; i < kEvents; ++i) {
                  ASSERT_TRUE(writer.Emit(i).ok());
                }
                ASSERT_TRUE(writer.Complete().ok());
              }).ok());
  // Run the sink loop until the stream completes.
  std::thread stopper([&] {
    seen.WaitComplete();
    sink_loop.Stop();
  });
  ASSERT_TRUE(sink_loop.Run().ok());
  stopper.join();
  ASSERT_EQ(seen.events.size(), static_cast<size_t>(kEvents));
  for (int i = 0; i < kEvents; ++i) ASSERT_EQ(seen.events[i], i);
  for (int64_t t : seen.tids) ASSERT_EQ(t, Tid());
  EXPECT_LT(sub.counters().deliveries, static_cast<uint64_t>(kEvents) / 10);
}

TEST(StreamTest, BackpressureRefusesWithoutTakingAndSignalsWritable) {
  Loop loop;
  ContextHandle producer = *loop.NewContext("producer");
  StreamOptions options;
  options.high_watermark = 4;
  options.low_watermark = 1;
  options.max_batch = 2;
  std::vector<ContextHandle> writable_on;
  ProducerCallbacks callbacks;
  callbacks.on_writable = [&](ContextHandle c) { writable_on.push_back(c); };
  auto pair = *MakeStream<std::unique_ptr<int>>(producer, options,
                                                std::move(callbacks));
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(pair.writer.Emit(std::make_unique<int>(i)).ok());
  }
  auto fifth = std::make_unique<int>(4);
  EXPECT_EQ(pair.writer.Emit(std::move(fifth)).code(),
            absl::StatusCode::kResourceExhausted);
  ASSERT_NE(fifth, nullptr);  // Still ours.
  EXPECT_FALSE(pair.writer.writable());
  EXPECT_EQ(pair.writer.counters().refused_full, 1u);

  std::vector<int> got;
  Sink<std::unique_ptr<int>> sink;
  sink.on_event = [&](ContextHandle, std::unique_ptr<int>&& v) {
    got.push_back(*v);
  };
  sink.on_complete = [](ContextHandle, const absl::Status&) {};
  StreamSubscription sub =
      *std::move(pair.reader).Attach(loop.root(), std::move(sink));
  ASSERT_TRUE(loop.RunUntilIdle().ok());
  EXPECT_EQ(got, (std::vector<int>{0, 1, 2, 3}));
  ASSERT_EQ(writable_on.size(), 1u);  // Once, when at or below low.
  EXPECT_EQ(writable_on[0], producer);
  EXPECT_TRUE(pair.writer.writable());
  ASSERT_TRUE(pair.writer.Emit(std::move(fifth)).ok());
}

TEST(StreamTest, ProducerEmitsFromOnWritable) {
  Loop loop;
  StreamOptions options;
  options.high_watermark = 2;
  options.low_watermark = 0;
  options.max_batch = 1;
  int next = 0;
  constexpr int kTotal = 10;
  StreamWriter<int>* writer = nullptr;
  ProducerCallbacks callbacks;
  auto pump = [&] {
    while (next < kTotal) {
      absl::Status s = writer->Emit(next);
      if (absl::IsResourceExhausted(s)) return;
      ASSERT_TRUE(s.ok());
      ++next;
    }
    ASSERT_TRUE(writer->Complete().ok());
  };
  callbacks.on_writable = [&](ContextHandle) { pump(); };
  auto pair = *MakeStream<int>(loop.root(), options, std::move(callbacks));
  writer = &pair.writer;
  Seen seen;
  StreamSubscription sub =
      *std::move(pair.reader).Attach(loop.root(), seen.MakeSink());
  pump();
  ASSERT_TRUE(loop.RunUntilIdle().ok());
  ASSERT_EQ(seen.events.size(), static_cast<size_t>(kTotal));
  for (int i = 0; i < kTotal; ++i) EXPECT_EQ(seen.events[i], i);
  ASSERT_EQ(seen.completions.size(), 1u);
}

// [E3]
TEST(StreamTest, ConsumerCancelTellsProducerOnItsContext) {
  Loop loop;
  ContextHandle producer = *loop.NewContext("producer");
  std::vector<absl::Status> closed;
  std::vector<ContextHandle> closed_on;
  ProducerCallbacks callbacks;
  callbacks.on_closed = [&](ContextHandle c, const absl::Status& s) {
    closed.push_back(s);
    closed_on.push_back(c);
  };
  auto pair = *MakeStream<int>(producer, StreamOptions(), std::move(callbacks));
  Seen seen;
  StreamSubscription sub =
      *std::move(pair.reader).Attach(loop.root(), seen.MakeSink());
  ASSERT_TRUE(pair.writer.Emit(1).ok());
  ASSERT_TRUE(loop.RunUntilIdle().ok());
  ASSERT_TRUE(pair.writer.Emit(2).ok());  // Buffered, then discarded.
  ASSERT_TRUE(sub.Cancel().ok());
  EXPECT_EQ(sub.Cancel().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(pair.writer.Emit(3).code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(pair.writer.Complete().code(), absl::StatusCode::kCancelled);
  ASSERT_TRUE(loop.RunUntilIdle().ok());
  EXPECT_EQ(seen.events, std::vector<int>{1});
  ASSERT_EQ(seen.completions.size(), 1u);
  EXPECT_EQ(seen.completions[0].code(), absl::StatusCode::kCancelled);
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(closed_on[0], producer);
  EXPECT_EQ(sub.counters().discarded, 1u);
}

// [E2]
TEST(StreamTest, ProducerFailureReachesSinkAfterBufferedEvents) {
  Loop loop;
  auto pair = *MakeStream<int>(loop.root());
  Seen seen;
  StreamSubscription sub =
      *std::move(pair.reader).Attach(loop.root(), seen.MakeSink());
  ASSERT_TRUE(pair.writer.Emit(1).ok());
  ASSERT_TRUE(pair.writer.Emit(2).ok());
  EXPECT_EQ(pair.writer.Fail(absl::OkStatus()).code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(pair.writer.Fail(absl::DataLossError("model crashed")).ok());
  ASSERT_TRUE(loop.RunUntilIdle().ok());
  EXPECT_EQ(seen.events, (std::vector<int>{1, 2}));
  ASSERT_EQ(seen.completions.size(), 1u);
  EXPECT_EQ(seen.completions[0].code(), absl::StatusCode::kDataLoss);
}

// [E2] A writer destroyed unfinished fails the stream with kAborted.
TEST(StreamTest, DestroyedWriterAborts) {
  Loop loop;
  auto pair = *MakeStream<int>(loop.root());
  Seen seen;
  StreamSubscription sub =
      *std::move(pair.reader).Attach(loop.root(), seen.MakeSink());
  { StreamWriter<int> w = std::move(pair.writer); }
  ASSERT_TRUE(loop.RunUntilIdle().ok());
  ASSERT_EQ(seen.completions.size(), 1u);
  EXPECT_EQ(seen.completions[0].code(), absl::StatusCode::kAborted);
}

// [E4]
TEST(StreamTest, ThrowingSinkFailsStreamAndLoopGoesOn) {
  Loop loop;
  std::vector<absl::Status> closed;
  ProducerCallbacks callbacks;
  callbacks.on_closed = [&](ContextHandle, const absl::Status& s) {
    closed.push_back(s);
  };
  auto pair =
      *MakeStream<int>(loop.root(), StreamOptions(), std::move(callbacks));
  std::vector<int> got;
  std::vector<absl::Status> completions;
  Sink<int> sink;
  sink.on_event = [&](ContextHandle, int&& v) {
    if (v == 2) throw std::runtime_error("bad event");
    got.push_back(v);
  };
  sink.on_complete = [&](ContextHandle, const absl::Status& s) {
    completions.push_back(s);
  };
  StreamSubscription sub =
      *std::move(pair.reader).Attach(loop.root(), std::move(sink));
  for (int i = 1; i <= 4; ++i) ASSERT_TRUE(pair.writer.Emit(i).ok());
  ASSERT_TRUE(loop.RunUntilIdle().ok());
  EXPECT_EQ(got, std::vector<int>{1});
  ASSERT_EQ(completions.size(), 1u);
  EXPECT_EQ(completions[0].code(), absl::StatusCode::kInternal);
  EXPECT_NE(completions[0].message().find("bad event"), std::string::npos);
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].code(), absl::StatusCode::kInternal);
  EXPECT_EQ(pair.writer.Emit(5).code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(sub.counters().discarded, 2u);  // 3 and 4.
  bool ran = false;
  ASSERT_TRUE(Post(loop.root(), [&](ContextHandle) { ran = true; }).ok());
  ASSERT_TRUE(loop.RunUntilIdle().ok());
  EXPECT_TRUE(ran);
}

// Re-entrancy: a sink cancels its own stream from inside on_event.
TEST(StreamTest, SinkCancelsItselfMidBatch) {
  Loop loop;
  auto pair = *MakeStream<int>(loop.root());
  StreamSubscription sub;
  std::vector<int> got;
  std::vector<absl::Status> completions;
  Sink<int> sink;
  sink.on_event = [&](ContextHandle, int&& v) {
    got.push_back(v);
    if (v == 2) {
      EXPECT_TRUE(sub.Cancel().ok());
    }
  };
  sink.on_complete = [&](ContextHandle, const absl::Status& s) {
    completions.push_back(s);
  };
  sub = *std::move(pair.reader).Attach(loop.root(), std::move(sink));
  for (int i = 1; i <= 5; ++i) ASSERT_TRUE(pair.writer.Emit(i).ok());
  ASSERT_TRUE(loop.RunUntilIdle().ok());
  EXPECT_EQ(got, (std::vector<int>{1, 2}));
  ASSERT_EQ(completions.size(), 1u);
  EXPECT_EQ(completions[0].code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(sub.counters().discarded, 3u);
}

// Re-entrancy: a sink emits into another stream from inside on_event.
TEST(StreamTest, SinkEmitsIntoAnotherStream) {
  Loop loop;
  auto first = *MakeStream<int>(loop.root());
  auto second = *MakeStream<int>(loop.root());
  Sink<int> relay;
  StreamWriter<int>* out = &second.writer;
  relay.on_event = [out](ContextHandle, int&& v) {
    EXPECT_TRUE(out->Emit(v * 10).ok());
  };
  relay.on_complete = [out](ContextHandle, const absl::Status&) {
    EXPECT_TRUE(out->Complete().ok());
  };
  StreamSubscription s1 =
      *std::move(first.reader).Attach(loop.root(), std::move(relay));
  Seen seen;
  StreamSubscription s2 =
      *std::move(second.reader).Attach(loop.root(), seen.MakeSink());
  for (int i = 1; i <= 3; ++i) ASSERT_TRUE(first.writer.Emit(i).ok());
  ASSERT_TRUE(first.writer.Complete().ok());
  ASSERT_TRUE(loop.RunUntilIdle().ok());
  EXPECT_EQ(seen.events, (std::vector<int>{10, 20, 30}));
  ASSERT_EQ(seen.completions.size(), 1u);
}

// [E5] The consumer goes away: the producer is told, the sink's callbacks
// are destroyed on the sink's loop thread and never called again.
TEST(StreamTest, DestroyedSubscriptionEndsStream) {
  LoopThread sink_loop;
  Loop loop;
  std::vector<absl::Status> closed;
  ProducerCallbacks callbacks;
  callbacks.on_closed = [&](ContextHandle, const absl::Status& s) {
    closed.push_back(s);
  };
  auto pair =
      *MakeStream<int>(loop.root(), StreamOptions(), std::move(callbacks));
  auto destroyed_on = std::make_shared<std::atomic<int64_t>>(0);
  int64_t sink_tid = 0;
  ASSERT_TRUE(sink_loop.Invoke([&](Loop&) { sink_tid = Tid(); }).ok());
  std::atomic<int> calls{0};
  Sink<int> sink;
  sink.on_event = [&calls, probe = DestroyProbe(destroyed_on)](
                      ContextHandle, int&&) { ++calls; };
  sink.on_complete = [&calls](ContextHandle, const absl::Status&) { ++calls; };
  {
    StreamSubscription sub =
        *std::move(pair.reader).Attach(sink_loop.root(), std::move(sink));
  }
  EXPECT_EQ(pair.writer.Emit(1).code(), absl::StatusCode::kCancelled);
  ASSERT_TRUE(sink_loop.Invoke([](Loop&) {}).ok());  // Release has run.
  EXPECT_EQ(destroyed_on->load(), sink_tid);
  ASSERT_TRUE(loop.RunUntilIdle().ok());
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(calls.load(), 0);
}

TEST(StreamTest, DestroyedReaderWithoutSinkEndsStream) {
  Loop loop;
  int closed = 0;
  ProducerCallbacks callbacks;
  callbacks.on_closed = [&](ContextHandle, const absl::Status&) { ++closed; };
  auto pair =
      *MakeStream<int>(loop.root(), StreamOptions(), std::move(callbacks));
  { StreamReader<int> r = std::move(pair.reader); }
  ASSERT_TRUE(loop.RunUntilIdle().ok());
  EXPECT_EQ(closed, 1);
  EXPECT_EQ(pair.writer.Emit(1).code(), absl::StatusCode::kCancelled);
}

// [E6] The sink's context is destroyed: the stream ends at once (its
// destroy hook), even with an idle producer.
TEST(StreamTest, SinkContextGoneEndsStream) {
  Loop loop;
  ContextHandle sink_ctx = *loop.NewContext("sink");
  std::vector<absl::Status> closed;
  ProducerCallbacks callbacks;
  callbacks.on_closed = [&](ContextHandle, const absl::Status& s) {
    closed.push_back(s);
  };
  auto pair =
      *MakeStream<int>(loop.root(), StreamOptions(), std::move(callbacks));
  Seen seen;
  StreamSubscription sub =
      *std::move(pair.reader).Attach(sink_ctx, seen.MakeSink());
  ASSERT_TRUE(loop.DestroyContext(sink_ctx).ok());
  ASSERT_TRUE(loop.RunUntilIdle().ok());
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].code(), absl::StatusCode::kUnavailable);
  ASSERT_EQ(seen.completions.size(), 1u);
  EXPECT_EQ(seen.completions[0].code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(seen.events.empty());
  EXPECT_EQ(pair.writer.Emit(1).code(), absl::StatusCode::kCancelled);
}

// [E7] A delivery pending when the sink's loop shuts down still arrives.
TEST(StreamTest, PendingDeliveryRunsInShutdownDrain) {
  Seen seen;
  std::optional<StreamSubscription> sub;
  Loop producer_loop;
  {
    Loop sink_loop;
    auto pair = *MakeStream<int>(producer_loop.root());
    sub.emplace(
        *std::move(pair.reader).Attach(sink_loop.root(), seen.MakeSink()));
    ASSERT_TRUE(pair.writer.Emit(1).ok());
    ASSERT_TRUE(pair.writer.Complete().ok());
  }  // Shutdown drains the delivery.
  EXPECT_EQ(seen.events, std::vector<int>{1});
  ASSERT_EQ(seen.completions.size(), 1u);
  EXPECT_TRUE(seen.completions[0].ok());
}

// Every method of a moved-from handle (and of a reader that has
// attached) returns kFailedPrecondition or an empty value, never crashes.
TEST(StreamMovedFromTest, WriterMethodsAfterMove) {
  Loop loop;
  auto pair = *MakeStream<int>(loop.root());
  StreamWriter<int> writer = std::move(pair.writer);
  const int one = 1;
  EXPECT_EQ(pair.writer.Emit(1).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(pair.writer.Emit(one).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(pair.writer.Complete().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(pair.writer.Fail(absl::InternalError("x")).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(pair.writer.writable());
  EXPECT_TRUE(pair.writer.context().is_null());
  EXPECT_EQ(pair.writer.counters().emitted, 0u);
  EXPECT_FALSE(pair.writer.trace_parent().valid());
  // The new owner still works.
  EXPECT_TRUE(writer.Emit(1).ok());
  EXPECT_EQ(writer.context(), loop.root());
}

TEST(StreamMovedFromTest, ReaderAfterAttachAndAfterMove) {
  Loop loop;
  auto pair = *MakeStream<int>(loop.root());
  StreamReader<int> moved = std::move(pair.reader);
  EXPECT_FALSE(pair.reader.trace_parent().valid());
  Seen unused;
  EXPECT_EQ(std::move(pair.reader)
                .Attach(loop.root(), unused.MakeSink())
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);
  Seen seen;
  StreamSubscription sub =
      *std::move(moved).Attach(loop.root(), seen.MakeSink());
  // The moved-from reader is under test.
  // NOLINTNEXTLINE(bugprone-use-after-move)
  EXPECT_FALSE(moved.trace_parent().valid());
  Seen second;
  EXPECT_EQ(
      std::move(moved).Attach(loop.root(), second.MakeSink()).status().code(),
      absl::StatusCode::kFailedPrecondition);
  // The first attachment is untouched.
  ASSERT_TRUE(pair.writer.Emit(5).ok());
  ASSERT_TRUE(pair.writer.Complete().ok());
  ASSERT_TRUE(loop.RunUntilIdle().ok());
  EXPECT_EQ(seen.events, std::vector<int>{5});
  EXPECT_TRUE(second.events.empty());
}

TEST(StreamMovedFromTest, SubscriptionAfterMove) {
  Loop loop;
  auto pair = *MakeStream<int>(loop.root());
  Seen seen;
  StreamSubscription sub =
      *std::move(pair.reader).Attach(loop.root(), seen.MakeSink());
  StreamSubscription other = std::move(sub);
  // The moved-from one is under test.
  // NOLINTNEXTLINE(bugprone-use-after-move)
  EXPECT_EQ(sub.Cancel().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(sub.finished());
  EXPECT_EQ(sub.counters().emitted, 0u);
  EXPECT_FALSE(sub.trace_parent().valid());
  EXPECT_FALSE(other.finished());
  ASSERT_TRUE(other.Cancel().ok());
  ASSERT_TRUE(loop.RunUntilIdle().ok());
}

// Writers and readers are ordinary values.
TEST(StreamValueTest, DefaultConstructedHandlesAreEmpty) {
  StreamWriter<int> writer;
  StreamReader<int> reader;
  EXPECT_FALSE(writer.has_stream());
  EXPECT_FALSE(reader.has_stream());
  EXPECT_EQ(writer.Emit(1).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(writer.Complete().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(writer.writable());
  Loop loop;
  Seen seen;
  EXPECT_EQ(
      std::move(reader).Attach(loop.root(), seen.MakeSink()).status().code(),
      absl::StatusCode::kFailedPrecondition);
}

TEST(StreamValueTest, MoveAssignedHandlesWork) {
  Loop loop;
  StreamWriter<int> writer;
  StreamReader<int> reader;
  {
    auto pair = *MakeStream<int>(loop.root());
    writer = std::move(pair.writer);
    reader = std::move(pair.reader);
  }
  EXPECT_TRUE(writer.has_stream());
  Seen seen;
  StreamSubscription sub =
      *std::move(reader).Attach(loop.root(), seen.MakeSink());
  // An attached reader is empty.
  // NOLINTNEXTLINE(bugprone-use-after-move)
  EXPECT_FALSE(reader.has_stream());
  ASSERT_TRUE(writer.Emit(3).ok());
  ASSERT_TRUE(writer.Complete().ok());
  ASSERT_TRUE(loop.RunUntilIdle().ok());
  EXPECT_EQ(seen.events, std::vector<int>{3});
  ASSERT_EQ(seen.completions.size(), 1u);
  EXPECT_TRUE(seen.completions[0].ok());
}

// [E2] Assigning over a live writer fails its stream as its destructor would.
TEST(StreamValueTest, AssigningOverLiveWriterAbortsItsStream) {
  Loop loop;
  auto first = *MakeStream<int>(loop.root());
  auto second = *MakeStream<int>(loop.root());
  Seen seen;
  StreamSubscription sub =
      *std::move(first.reader).Attach(loop.root(), seen.MakeSink());
  ASSERT_TRUE(first.writer.Emit(1).ok());
  first.writer = std::move(second.writer);
  ASSERT_TRUE(loop.RunUntilIdle().ok());
  EXPECT_EQ(seen.events, std::vector<int>{1});
  ASSERT_EQ(seen.completions.size(), 1u);
  EXPECT_EQ(seen.completions[0].code(), absl::StatusCode::kAborted);
  EXPECT_TRUE(first.writer.Emit(2).ok());  // Now the second stream's.
}

// [E5] Assigning over a live reader ends its stream as its destructor would.
TEST(StreamValueTest, AssigningOverLiveReaderEndsItsStream) {
  Loop loop;
  int closed = 0;
  ProducerCallbacks callbacks;
  callbacks.on_closed = [&](ContextHandle, const absl::Status&) { ++closed; };
  auto first =
      *MakeStream<int>(loop.root(), StreamOptions(), std::move(callbacks));
  auto second = *MakeStream<int>(loop.root());
  first.reader = std::move(second.reader);
  ASSERT_TRUE(loop.RunUntilIdle().ok());
  EXPECT_EQ(closed, 1);
  EXPECT_EQ(first.writer.Emit(1).code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(first.reader.has_stream());
}

// Options, callbacks and the trace in one struct.
TEST(StreamValueTest, StreamConfigCarriesOptionsAndCallbacks) {
  Loop loop;
  StreamConfig config;
  config.options.high_watermark = 1;
  config.options.low_watermark = 0;
  int writable = 0;
  config.callbacks.on_writable = [&](ContextHandle) { ++writable; };
  auto pair = *MakeStream<int>(loop.root(), std::move(config));
  ASSERT_TRUE(pair.writer.Emit(1).ok());
  EXPECT_EQ(pair.writer.Emit(2).code(), absl::StatusCode::kResourceExhausted);
  Seen seen;
  StreamSubscription sub =
      *std::move(pair.reader).Attach(loop.root(), seen.MakeSink());
  ASSERT_TRUE(loop.RunUntilIdle().ok());
  EXPECT_EQ(writable, 1);
  StreamConfig bad;
  bad.options.max_batch = 0;
  EXPECT_EQ(MakeStream<int>(loop.root(), std::move(bad)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(StreamTest, BadArguments) {
  Loop loop;
  EXPECT_EQ(MakeStream<int>(ContextHandle()).status().code(),
            absl::StatusCode::kInvalidArgument);
  StreamOptions bad;
  bad.low_watermark = bad.high_watermark;
  EXPECT_EQ(MakeStream<int>(loop.root(), bad).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto pair = *MakeStream<int>(loop.root());
  Sink<int> incomplete;
  incomplete.on_event = [](ContextHandle, int&&) {};
  EXPECT_EQ(std::move(pair.reader)
                .Attach(loop.root(), std::move(incomplete))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ctxloop
