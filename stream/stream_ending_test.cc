// Copyright 2026 The ctxloop Authors.
//
// Stream endings beyond stream_test.cc's: [E6] the sink context's destroy
// hook, [E8] sink-side tasks destroyed unrun and a full sink loop, [E9] a
// throwing `on_complete`, [E10] racing endings. Each test names its case.

#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "ctxloop/loop/internal/loop_core.h"
#include "ctxloop/loop/internal/owned_core.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/loop/loop_thread.h"
#include "ctxloop/loop/mutex.h"
#include "ctxloop/stream/stream.h"
#include "ctxloop/trace/testing/recording_processor.h"
#include "ctxloop/trace/tracer.h"
#include "gtest/gtest.h"

namespace ctxloop {
namespace {

using ctxloop::CondVar;
using ctxloop::Mutex;
using ctxloop::MutexLock;

using testing_util::RecordingProcessor;
using RecKind = RecordingProcessor::Kind;

int64_t Tid() { return static_cast<int64_t>(syscall(SYS_gettid)); }

// Sets `*destroyed` when the callable holding it is destroyed.
struct Probe {
  std::shared_ptr<std::atomic<bool>> destroyed;
  explicit Probe(std::shared_ptr<std::atomic<bool>> d)
      : destroyed(std::move(d)) {}
  Probe(Probe&& o) noexcept : destroyed(std::move(o.destroyed)) {}
  ~Probe() {
    if (destroyed != nullptr) destroyed->store(true);
  }
};

// The producer's side of a test: every on_closed it got, and where.
struct Closed {
  std::vector<absl::Status> statuses;
  std::vector<ContextHandle> on;
  ProducerCallbacks Callbacks() {
    ProducerCallbacks callbacks;
    callbacks.on_closed = [this](ContextHandle c, const absl::Status& s) {
      statuses.push_back(s);
      on.push_back(c);
    };
    return callbacks;
  }
};

class Traced {
 public:
  Traced() : tracer_(Options()) {}
  Tracer& tracer() { return tracer_; }
  RecordingProcessor& rec() { return *rec_; }

 private:
  Tracer::Options Options() {
    Tracer::Options o;
    o.processors.push_back(rec_);
    return o;
  }
  std::shared_ptr<RecordingProcessor> rec_ =
      std::make_shared<RecordingProcessor>();
  Tracer tracer_;
};

// [E10] A sink that cancels its own subscription and then throws: the
// producer's on_closed runs exactly once, the sink's on_complete once.
TEST(StreamEndingTest, SinkCancelsItselfThenThrowsTellsProducerOnce) {
  Loop loop;
  ContextHandle producer = *loop.NewContext("producer");
  Closed closed;
  auto pair = *MakeStream<int>(producer, StreamOptions(), closed.Callbacks());
  StreamSubscription sub;
  std::vector<absl::Status> completions;
  Sink<int> sink;
  sink.on_event = [&](ContextHandle, int&& v) {
    if (v == 2) {
      EXPECT_TRUE(sub.Cancel().ok());
      throw std::runtime_error("after cancel");
    }
  };
  sink.on_complete = [&](ContextHandle, const absl::Status& s) {
    completions.push_back(s);
  };
  sub = *std::move(pair.reader).Attach(loop.root(), std::move(sink));
  for (int i = 1; i <= 4; ++i) ASSERT_TRUE(pair.writer.Emit(i).ok());
  ASSERT_TRUE(loop.RunUntilIdle().ok());
  ASSERT_EQ(closed.statuses.size(), 1u);
  EXPECT_EQ(closed.statuses[0].code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(closed.on[0], producer);
  ASSERT_EQ(completions.size(), 1u);
  EXPECT_EQ(completions[0].code(), absl::StatusCode::kCancelled);
  const StreamCounters c = sub.counters();
  EXPECT_EQ(c.emitted, c.delivered + c.discarded);
  EXPECT_EQ(c.delivered, 2u);
}

// [E10] A foreign Cancel while the sink runs, then the sink throws.
TEST(StreamEndingTest, ForeignCancelRacingThrowingSinkTellsProducerOnce) {
  Loop loop;
  Closed closed;
  auto pair =
      *MakeStream<int>(loop.root(), StreamOptions(), closed.Callbacks());
  StreamSubscription sub;
  std::vector<absl::Status> completions;
  Sink<int> sink;
  sink.on_event = [&](ContextHandle, int&&) {
    // Another thread cancels while this callback runs; then it throws.
    std::thread canceller([&] { EXPECT_TRUE(sub.Cancel().ok()); });
    canceller.join();
    throw std::runtime_error("sink failed");
  };
  sink.on_complete = [&](ContextHandle, const absl::Status& s) {
    completions.push_back(s);
  };
  sub = *std::move(pair.reader).Attach(loop.root(), std::move(sink));
  ASSERT_TRUE(pair.writer.Emit(1).ok());
  ASSERT_TRUE(pair.writer.Emit(2).ok());
  ASSERT_TRUE(loop.RunUntilIdle().ok());
  ASSERT_EQ(closed.statuses.size(), 1u);
  EXPECT_EQ(closed.statuses[0].code(), absl::StatusCode::kCancelled);
  ASSERT_EQ(completions.size(), 1u);
  const StreamCounters c = sub.counters();
  EXPECT_EQ(c.emitted, c.delivered + c.discarded);
}

// [E9] A throwing on_complete: the trace still finishes, the sink (which
// holds the writer: a cycle) is still released, and the loop's error handler
// hears about the exception. Parameter: end by Complete (the delivery task)
// or by Cancel (the posted ending task).
class ThrowingOnCompleteTest : public ::testing::TestWithParam<bool> {};

TEST_P(ThrowingOnCompleteTest, FinishesTraceReleasesSinkReportsError) {
  const bool by_cancel = GetParam();
  Traced traced;
  std::vector<absl::Status> errors;
  Loop::Options options;
  options.error_handler = [&](ContextHandle, const absl::Status& s) {
    errors.push_back(s);
  };
  Loop loop(std::move(options));
  ContextHandle origin = *loop.NewContext("origin");
  TraceScope run = traced.tracer().StartTrace(origin, "run");
  auto pair = *MakeStream<int>(origin, StreamOptions(), ProducerCallbacks(),
                               std::move(run));
  auto writer = std::make_shared<StreamWriter<int>>(std::move(pair.writer));
  auto released = std::make_shared<std::atomic<bool>>(false);
  Sink<int> sink;
  sink.on_event = [writer, probe = Probe(released)](ContextHandle, int&&) {};
  sink.on_complete = [writer](ContextHandle, const absl::Status&) {
    throw std::runtime_error("on_complete failed");
  };
  StreamSubscription sub =
      *std::move(pair.reader).Attach(loop.root(), std::move(sink));
  ASSERT_TRUE(writer->Emit(1).ok());
  if (by_cancel) {
    ASSERT_TRUE(loop.RunUntilIdle().ok());
    ASSERT_TRUE(sub.Cancel().ok());
  } else {
    ASSERT_TRUE(writer->Complete().ok());
  }
  ASSERT_TRUE(loop.RunUntilIdle().ok());
  EXPECT_EQ(traced.rec().count(RecKind::kTraceEnd), 1u);
  EXPECT_TRUE(released->load());
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].ToString().find("on_complete failed"), std::string::npos)
      << errors[0];
  EXPECT_TRUE(sub.finished());
}

INSTANTIATE_TEST_SUITE_P(Endings, ThrowingOnCompleteTest,
                         ::testing::Values(false, true));

// [E9] Producer callbacks that capture the writer (a cycle through the
// stream) are dropped on the producer's context once the stream has ended,
// so the stream is freed (LeakSanitizer would report it otherwise).
TEST(StreamEndingTest, ProducerCallbacksAreDroppedOnProducerWhenStreamEnds) {
  Loop loop;
  ContextHandle producer = *loop.NewContext("producer");
  auto dropped = std::make_shared<std::atomic<bool>>(false);
  // Filled once the stream exists: the callback owns the writer.
  auto writer = std::make_shared<std::unique_ptr<StreamWriter<int>>>();
  ProducerCallbacks callbacks;
  callbacks.on_writable = [writer, probe = Probe(dropped)](ContextHandle) {
    (void)(*writer)->Emit(0);
  };
  auto made = *MakeStream<int>(producer, StreamOptions(), std::move(callbacks));
  *writer = std::make_unique<StreamWriter<int>>(std::move(made.writer));
  int completions = 0;
  Sink<int> sink;
  sink.on_event = [](ContextHandle, int&&) {};
  sink.on_complete = [&](ContextHandle, const absl::Status&) { ++completions; };
  StreamSubscription sub =
      *std::move(made.reader).Attach(loop.root(), std::move(sink));
  ASSERT_TRUE((*writer)->Emit(1).ok());
  ASSERT_TRUE((*writer)->Complete().ok());
  writer.reset();  // Now only the stream's callbacks hold the writer.
  EXPECT_FALSE(dropped->load());
  ASSERT_TRUE(loop.RunUntilIdle().ok());
  EXPECT_EQ(completions, 1);
  EXPECT_TRUE(dropped->load());
}

// [E6] An idle stream whose sink context is destroyed ends at once: the
// producer is told without emitting, the sink hears kUnavailable on its
// context, the trace ends.
TEST(StreamEndingTest, IdleStreamEndsWhenSinkContextIsDestroyed) {
  Traced traced;
  Loop loop;
  ContextHandle origin = *loop.NewContext("origin");
  ContextHandle sink_ctx = *loop.NewContext("sink");
  Closed closed;
  TraceScope run = traced.tracer().StartTrace(origin, "run");
  auto pair = *MakeStream<int>(origin, StreamOptions(), closed.Callbacks(),
                               std::move(run));
  std::vector<absl::Status> completions;
  std::vector<ContextHandle> completed_on;
  Sink<int> sink;
  sink.on_event = [](ContextHandle, int&&) {};
  sink.on_complete = [&](ContextHandle c, const absl::Status& s) {
    completions.push_back(s);
    completed_on.push_back(c);
  };
  StreamSubscription sub =
      *std::move(pair.reader).Attach(sink_ctx, std::move(sink));
  ASSERT_TRUE(pair.writer.Emit(1).ok());
  ASSERT_TRUE(loop.RunUntilIdle().ok());  // Delivered; now idle.
  ASSERT_TRUE(loop.DestroyContext(sink_ctx).ok());
  ASSERT_TRUE(loop.RunUntilIdle().ok());
  ASSERT_EQ(closed.statuses.size(), 1u);
  EXPECT_EQ(closed.statuses[0].code(), absl::StatusCode::kUnavailable);
  ASSERT_EQ(completions.size(), 1u);
  EXPECT_EQ(completions[0].code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(completed_on[0], sink_ctx);
  EXPECT_EQ(traced.rec().count(RecKind::kTraceEnd), 1u);
  EXPECT_TRUE(sub.finished());
  EXPECT_EQ(pair.writer.Emit(2).code(), absl::StatusCode::kCancelled);
}

// [E6] The same when the sink's loop (another thread) shuts down; the stream
// was attached from this thread, so the hook was installed by a posted task.
TEST(StreamEndingTest, IdleStreamEndsWhenSinkLoopShutsDown) {
  Traced traced;
  Loop origin_loop;
  ContextHandle origin = *origin_loop.NewContext("origin");
  Closed closed;
  TraceScope run = traced.tracer().StartTrace(origin, "run");
  auto pair = *MakeStream<int>(origin, StreamOptions(), closed.Callbacks(),
                               std::move(run));
  std::atomic<int> completions{0};
  std::atomic<int64_t> completed_tid{0};
  auto released = std::make_shared<std::atomic<bool>>(false);
  std::optional<StreamSubscription> sub;
  int64_t sink_tid = 0;
  {
    LoopThread sink_loop;
    ASSERT_TRUE(sink_loop.Invoke([&](Loop&) { sink_tid = Tid(); }).ok());
    Sink<int> sink;
    sink.on_event = [probe = Probe(released)](ContextHandle, int&&) {};
    sink.on_complete = [&](ContextHandle, const absl::Status& s) {
      EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
      completed_tid.store(Tid());
      ++completions;
    };
    sub.emplace(
        *std::move(pair.reader).Attach(sink_loop.root(), std::move(sink)));
    ASSERT_TRUE(sink_loop.Invoke([](Loop&) {}).ok());  // Hook installed.
  }
  EXPECT_EQ(completions.load(), 1);
  EXPECT_EQ(completed_tid.load(), sink_tid);
  EXPECT_TRUE(released->load());
  ASSERT_TRUE(origin_loop.RunUntilIdle().ok());
  ASSERT_EQ(closed.statuses.size(), 1u);
  EXPECT_EQ(closed.statuses[0].code(), absl::StatusCode::kUnavailable);
  ASSERT_EQ(traced.rec().count(RecKind::kTraceEnd), 1u);
  EXPECT_EQ(traced.rec().events(RecKind::kTraceEnd)[0].trace().finish_ran.ctx,
            origin);
  EXPECT_EQ(pair.writer.Emit(1).code(), absl::StatusCode::kCancelled);
}

size_t HooksOn(ContextHandle ctx) {
  return loop_internal::FindOwnedCore(ctx)->DestroyHookCountForTesting(ctx);
}

// [E6] A long-lived sink context does not collect hooks: each stream removes
// its hook when it ends on the sink side, however it ends.
TEST(StreamEndingTest, HookIsRemovedWhenStreamEnds) {
  Loop loop;
  ContextHandle sink_ctx = *loop.NewContext("long-lived sink");
  int completions = 0;
  for (int i = 0; i < 30; ++i) {
    {
      auto pair = *MakeStream<int>(loop.root());
      Sink<int> sink;
      sink.on_event = [](ContextHandle, int&&) {};
      sink.on_complete = [&](ContextHandle, const absl::Status&) {
        ++completions;
      };
      StreamSubscription sub =
          *std::move(pair.reader).Attach(sink_ctx, std::move(sink));
      EXPECT_EQ(HooksOn(sink_ctx), 1u);
      ASSERT_TRUE(pair.writer.Emit(i).ok());
      switch (i % 3) {
        case 0:
          ASSERT_TRUE(pair.writer.Complete().ok());
          break;
        case 1:
          ASSERT_TRUE(sub.Cancel().ok());
          break;
        case 2:
          break;  // The subscription is destroyed here [E5].
      }
      if (i % 3 != 2) {
        ASSERT_TRUE(loop.RunUntilIdle().ok());
      }
    }
    ASSERT_TRUE(loop.RunUntilIdle().ok());
    EXPECT_EQ(HooksOn(sink_ctx), 0u);
  }
  EXPECT_EQ(completions, 20);  // [E5] does not call the sink.
  ASSERT_TRUE(loop.DestroyContext(sink_ctx).ok());
  ASSERT_TRUE(loop.RunUntilIdle().ok());
  EXPECT_EQ(completions, 20);
}

// [E6] Attach (on the sink's thread) to a context already destroyed fails;
// the stream ends, the producer is told, the sink is never called.
TEST(StreamEndingTest, AttachToDestroyedContextFails) {
  Loop loop;
  ContextHandle sink_ctx = *loop.NewContext("sink");
  Closed closed;
  auto pair =
      *MakeStream<int>(loop.root(), StreamOptions(), closed.Callbacks());
  ASSERT_TRUE(loop.DestroyContext(sink_ctx).ok());
  int calls = 0;
  Sink<int> sink;
  sink.on_event = [&](ContextHandle, int&&) { ++calls; };
  sink.on_complete = [&](ContextHandle, const absl::Status&) { ++calls; };
  absl::StatusOr<StreamSubscription> sub =
      std::move(pair.reader).Attach(sink_ctx, std::move(sink));
  EXPECT_FALSE(sub.ok());
  ASSERT_TRUE(loop.RunUntilIdle().ok());
  EXPECT_EQ(calls, 0);
  ASSERT_EQ(closed.statuses.size(), 1u);
  EXPECT_EQ(pair.writer.Emit(1).code(), absl::StatusCode::kCancelled);
}

// [E8] A stream whose delivery needs more rounds than the sink
// loop's shutdown drain allows still ends: on_complete (kUnavailable) on the
// sink's thread, the producer told, the trace finished on its origin, and
// emitted == delivered + discarded.
TEST(StreamEndingTest, DeliveryDroppedAtShutdownEndsStream) {
  Traced traced;
  Loop origin_loop;
  ContextHandle origin = *origin_loop.NewContext("origin");
  Closed closed;
  TraceScope run = traced.tracer().StartTrace(origin, "run");
  StreamOptions stream_options;
  stream_options.max_batch = 1;
  auto pair = *MakeStream<int>(origin, stream_options, closed.Callbacks(),
                               std::move(run));
  std::vector<int> events;
  std::vector<absl::Status> completions;
  std::optional<StreamSubscription> sub;
  {
    Loop::Options options;
    options.max_shutdown_rounds = 3;
    options.error_handler = [](ContextHandle, const absl::Status&) {};
    Loop sink_loop(std::move(options));
    Sink<int> sink;
    sink.on_event = [&](ContextHandle, int&& v) { events.push_back(v); };
    sink.on_complete = [&](ContextHandle, const absl::Status& s) {
      completions.push_back(s);
    };
    sub.emplace(
        *std::move(pair.reader).Attach(sink_loop.root(), std::move(sink)));
    for (int i = 0; i < 10; ++i) ASSERT_TRUE(pair.writer.Emit(i).ok());
    ASSERT_TRUE(pair.writer.Complete().ok());
  }  // The drain runs out of rounds with events still buffered.
  EXPECT_LT(events.size(), 10u);
  ASSERT_EQ(completions.size(), 1u);
  EXPECT_EQ(completions[0].code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(sub->finished());
  const StreamCounters c = sub->counters();
  EXPECT_EQ(c.emitted, 10u);
  EXPECT_EQ(c.delivered, events.size());
  EXPECT_EQ(c.emitted, c.delivered + c.discarded);
  ASSERT_TRUE(origin_loop.RunUntilIdle().ok());
  ASSERT_EQ(closed.statuses.size(), 1u);
  EXPECT_EQ(closed.statuses[0].code(), absl::StatusCode::kUnavailable);
  ASSERT_EQ(traced.rec().count(RecKind::kTraceEnd), 1u);
  EXPECT_EQ(traced.rec().events(RecKind::kTraceEnd)[0].trace().finish_ran.ctx,
            origin);
}

// [E8] A delivery refused because the sink's context is closing (destroyed,
// its destroy hook not yet run) ends the stream; the sink side is left to
// the hook, so the sink is not called back inside `Emit`.
TEST(StreamEndingTest, DeliveryRefusedByClosingContextEndsStream) {
  Loop loop;
  ContextHandle sink_ctx = *loop.NewContext("sink");
  Closed closed;
  auto pair =
      *MakeStream<int>(loop.root(), StreamOptions(), closed.Callbacks());
  std::vector<absl::Status> completions;
  Sink<int> sink;
  sink.on_event = [](ContextHandle, int&&) {};
  sink.on_complete = [&](ContextHandle, const absl::Status& s) {
    completions.push_back(s);
  };
  StreamSubscription sub =
      *std::move(pair.reader).Attach(sink_ctx, std::move(sink));
  ASSERT_TRUE(loop.DestroyContext(sink_ctx).ok());
  ASSERT_TRUE(pair.writer.Emit(1).ok());  // Its delivery is refused.
  EXPECT_TRUE(sub.finished());
  EXPECT_TRUE(completions.empty());  // Not inside Emit.
  EXPECT_EQ(pair.writer.Emit(2).code(), absl::StatusCode::kCancelled);
  ASSERT_TRUE(loop.RunUntilIdle().ok());
  ASSERT_EQ(completions.size(), 1u);
  EXPECT_EQ(completions[0].code(), absl::StatusCode::kUnavailable);
  ASSERT_EQ(closed.statuses.size(), 1u);
  EXPECT_EQ(closed.statuses[0].code(), absl::StatusCode::kUnavailable);
  const StreamCounters c = sub.counters();
  EXPECT_EQ(c.emitted, 1u);
  EXPECT_EQ(c.discarded, 1u);
}

// Every ending at once, across threads: 200 streams from a producer loop to
// a sink loop (another thread), attached from either thread, ended by
// completion, cancel from a foreign thread, a throwing sink, or the sink
// context's destruction, all racing with delivery. Whatever the interleaving:
// each stream's on_complete runs exactly once on the sink thread, on_closed
// at most once (never after an OK completion), its trace ends exactly once on
// its origin loop, and emitted == delivered + discarded.
TEST(StreamEndingStressTest, RacingEndingsEachEndOnce) {
  constexpr int kStreams = 200;
  constexpr int kEvents = 20;
  Traced traced;
  LoopThread producer_loop, sink_loop;
  int64_t producer_tid = 0, sink_tid = 0;
  struct PerStream {
    std::atomic<int> completes{0};
    std::atomic<int> closed{0};
    std::atomic<bool> completed_ok{false};
    std::atomic<bool> wrong_thread{false};
    ContextHandle origin, sink_ctx;
    StreamWriter<int> writer;
    StreamReader<int> reader;
    StreamSubscription sub;
  };
  std::vector<std::unique_ptr<PerStream>> streams;
  streams.reserve(kStreams);
  for (int i = 0; i < kStreams; ++i) {
    streams.push_back(std::make_unique<PerStream>());
  }
  Mutex mu;
  CondVar all_done;
  int done = 0;
  ASSERT_TRUE(sink_loop
                  .Invoke([&](Loop& l) {
                    sink_tid = Tid();
                    for (auto& ps : streams) ps->sink_ctx = *l.NewContext();
                  })
                  .ok());
  ASSERT_TRUE(
      producer_loop
          .Invoke([&](Loop& l) {
            producer_tid = Tid();
            for (int i = 0; i < kStreams; ++i) {
              PerStream* ps = streams[i].get();
              ps->origin = *l.NewContext();
              StreamConfig config;
              config.options.max_batch = 1 + i % 4;
              config.options.high_watermark = 8;
              config.options.low_watermark = 2;
              config.callbacks.on_closed =
                  [ps](ContextHandle, const absl::Status&) { ++ps->closed; };
              config.trace = traced.tracer().StartTrace(ps->origin, "run");
              auto pair = *MakeStream<int>(ps->origin, std::move(config));
              ps->writer = std::move(pair.writer);
              ps->reader = std::move(pair.reader);
            }
          })
          .ok());
  auto make_sink = [&](int i) {
    PerStream* ps = streams[i].get();
    Sink<int> sink;
    sink.on_event = [ps, i, &sink_tid](ContextHandle, int&& v) {
      if (Tid() != sink_tid) ps->wrong_thread = true;
      if (i % 5 == 3 && v == 5) throw std::runtime_error("sink failed");
    };
    sink.on_complete = [ps, &mu, &all_done, &done, &sink_tid](
                           ContextHandle, const absl::Status& s) {
      if (Tid() != sink_tid) ps->wrong_thread = true;
      if (s.ok()) ps->completed_ok = true;
      ++ps->completes;
      MutexLock lock(&mu);
      ++done;
      all_done.SignalAll();
    };
    return sink;
  };
  // Half attach from here (the hook is installed by a posted task), half on
  // the sink's thread.
  for (int i = 0; i < kStreams; i += 2) {
    streams[i]->sub = *std::move(streams[i]->reader)
                           .Attach(streams[i]->sink_ctx, make_sink(i));
  }
  ASSERT_TRUE(sink_loop
                  .Invoke([&](Loop&) {
                    for (int i = 1; i < kStreams; i += 2) {
                      streams[i]->sub =
                          *std::move(streams[i]->reader)
                               .Attach(streams[i]->sink_ctx, make_sink(i));
                    }
                  })
                  .ok());
  // The producers emit (as much as backpressure takes) and most complete.
  ASSERT_TRUE(Post(producer_loop.root(), [&](ContextHandle) {
                for (int i = 0; i < kStreams; ++i) {
                  PerStream* ps = streams[i].get();
                  for (int v = 0; v < kEvents; ++v) {
                    if (!ps->writer.Emit(v).ok()) break;
                  }
                  if (i % 5 != 0) (void)ps->writer.Complete();
                }
              }).ok());
  // Meanwhile: cancels from this thread, sink contexts destroyed on theirs.
  for (int i = 0; i < kStreams; ++i) {
    if (i % 5 == 0 || i % 5 == 1) (void)streams[i]->sub.Cancel();
    if (i % 5 == 2) {
      ContextHandle ctx = streams[i]->sink_ctx;
      ASSERT_TRUE(Post(sink_loop.root(), [ctx](ContextHandle) {
                    ASSERT_TRUE(DestroyContext(ctx).ok());
                  }).ok());
    }
  }
  {
    MutexLock lock(&mu);
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (done < kStreams) {
      if (!all_done.WaitUntil(&mu, deadline)) break;  // Failure guard only.
    }
    ASSERT_EQ(done, kStreams);
  }
  ASSERT_TRUE(traced.rec().WaitFor(RecKind::kTraceEnd, kStreams));
  ASSERT_TRUE(producer_loop.Invoke([](Loop&) {}).ok());  // on_closed ran.
  for (int i = 0; i < kStreams; ++i) {
    PerStream& ps = *streams[i];
    SCOPED_TRACE(i);
    EXPECT_EQ(ps.completes.load(), 1);
    EXPECT_LE(ps.closed.load(), 1);
    if (ps.completed_ok) {
      EXPECT_EQ(ps.closed.load(), 0);
    }
    EXPECT_FALSE(ps.wrong_thread.load());
    EXPECT_TRUE(ps.sub.finished());
    const StreamCounters c = ps.sub.counters();
    EXPECT_EQ(c.emitted, c.delivered + c.discarded);
  }
  const auto ends = traced.rec().events(RecKind::kTraceEnd);
  EXPECT_EQ(ends.size(), static_cast<size_t>(kStreams));
  for (const auto& e : ends) EXPECT_EQ(e.tid, producer_tid);
}

// --- A full loop: the bound on pending cross-thread work ----------------
// (`Loop::Options::max_pending_foreign`). Each test floods a loop that is
// not running (so it cannot drain) from another thread, up to a bound of 2.

Loop::Options TinyBound() {
  Loop::Options options;
  options.max_pending_foreign = 2;
  return options;
}

// Posts no-ops from this (foreign) thread until `ctx`'s loop is full.
void Flood(ContextHandle ctx) {
  while (Post(ctx, [](ContextHandle) {}).ok()) {
  }
}

// Records the sink's calls; the sink loop's thread only.
struct Recorded {
  std::vector<int> events;
  std::vector<absl::Status> completions;
  Sink<int> MakeSink() {
    Sink<int> sink;
    sink.on_event = [this](ContextHandle, int&& v) { events.push_back(v); };
    sink.on_complete = [this](ContextHandle, const absl::Status& s) {
      completions.push_back(s);
    };
    return sink;
  }
};

// An `Emit` whose delivery a full sink loop refuses is backpressure, not an
// ending: kResourceExhausted, the event not taken nor counted as emitted,
// the stream still open; its `Complete` is never refused, so every event
// accepted arrives and `on_complete` runs once.
TEST(StreamFullLoopTest, EmitIntoAFullSinkLoopIsRefusedAndNothingIsLost) {
  Loop sink_loop(TinyBound());
  LoopThread producer_loop;
  auto pair = *MakeStream<int>(producer_loop.root());
  Recorded rec;
  StreamSubscription sub =
      *std::move(pair.reader).Attach(sink_loop.root(), rec.MakeSink());
  StreamWriter<int> writer = std::move(pair.writer);
  std::thread([&] {
    Flood(sink_loop.root());
    EXPECT_EQ(writer.Emit(0).code(), absl::StatusCode::kResourceExhausted);
    EXPECT_EQ(writer.Emit(0).code(), absl::StatusCode::kResourceExhausted);
    const StreamCounters c = writer.counters();
    EXPECT_EQ(c.emitted, 0u);
    EXPECT_EQ(c.refused_loop_full, 2u);
  }).join();
  EXPECT_FALSE(sub.finished());
  ASSERT_TRUE(sink_loop.RunUntilIdle().ok());  // Drains the flood.
  EXPECT_TRUE(rec.completions.empty());
  std::thread([&] {
    ASSERT_TRUE(writer.Emit(0).ok());  // Schedules a delivery.
    ASSERT_TRUE(writer.Emit(1).ok());  // Rides on it.
    Flood(sink_loop.root());
    ASSERT_TRUE(writer.Complete().ok());
  }).join();
  ASSERT_TRUE(sink_loop.RunUntilIdle().ok());
  EXPECT_EQ(rec.events, (std::vector<int>{0, 1}));
  ASSERT_EQ(rec.completions.size(), 1u);
  EXPECT_TRUE(rec.completions[0].ok()) << rec.completions[0];
  const StreamCounters c = sub.counters();
  EXPECT_EQ(c.emitted, 2u);
  EXPECT_EQ(c.emitted, c.delivered + c.discarded);
  EXPECT_TRUE(sub.finished());
}

// Endings cross into a full sink loop: an `Attach` from another thread
// (the hook installation [E6]), a cancel from another thread [E3] and the
// producer's completion [E1] are never refused for the bound; each stream
// ends once, `on_complete` once, and the producer is told once.
TEST(StreamFullLoopTest, EndingsReachAFullSinkLoop) {
  Loop sink_loop(TinyBound());
  LoopThread producer_loop;
  Closed closed;
  auto cancelled_pair =
      *MakeStream<int>(producer_loop.root(), {}, closed.Callbacks());
  auto completed_pair = *MakeStream<int>(producer_loop.root());
  Recorded cancelled_rec, completed_rec;
  std::optional<StreamSubscription> cancelled_sub, completed_sub;
  std::thread([&] {
    Flood(sink_loop.root());
    absl::StatusOr<StreamSubscription> a =
        std::move(cancelled_pair.reader)
            .Attach(sink_loop.root(), cancelled_rec.MakeSink());
    ASSERT_TRUE(a.ok()) << a.status();
    cancelled_sub.emplace(*std::move(a));
    absl::StatusOr<StreamSubscription> b =
        std::move(completed_pair.reader)
            .Attach(sink_loop.root(), completed_rec.MakeSink());
    ASSERT_TRUE(b.ok()) << b.status();
    completed_sub.emplace(*std::move(b));
    ASSERT_TRUE(cancelled_sub->Cancel().ok());
    ASSERT_TRUE(completed_pair.writer.Complete().ok());
  }).join();
  ASSERT_TRUE(cancelled_sub.has_value() && completed_sub.has_value());
  ASSERT_TRUE(sink_loop.RunUntilIdle().ok());
  ASSERT_EQ(cancelled_rec.completions.size(), 1u);
  EXPECT_EQ(cancelled_rec.completions[0].code(), absl::StatusCode::kCancelled);
  ASSERT_EQ(completed_rec.completions.size(), 1u);
  EXPECT_TRUE(completed_rec.completions[0].ok());
  ASSERT_TRUE(producer_loop.Invoke([](Loop&) {}).ok());  // on_closed ran.
  ASSERT_EQ(closed.statuses.size(), 1u);
  EXPECT_EQ(closed.statuses[0].code(), absl::StatusCode::kCancelled);
  for (StreamSubscription* sub : {&*cancelled_sub, &*completed_sub}) {
    EXPECT_TRUE(sub->finished());
    const StreamCounters c = sub->counters();
    EXPECT_EQ(c.emitted, c.delivered + c.discarded);
  }
}

// The producer's notifications cross into a full producer loop: the
// `on_writable` a refused `Emit` waits for, and `on_closed` [E3], are never
// refused for the bound.
TEST(StreamFullLoopTest, ProducerNotificationsReachAFullProducerLoop) {
  Loop producer_loop(TinyBound());
  LoopThread sink_loop;
  StreamOptions options;
  options.high_watermark = 2;
  options.low_watermark = 0;
  int writable = 0;
  Closed closed;
  ProducerCallbacks callbacks = closed.Callbacks();
  callbacks.on_writable = [&writable](ContextHandle) { ++writable; };
  auto pair =
      *MakeStream<int>(producer_loop.root(), options, std::move(callbacks));
  ASSERT_TRUE(pair.writer.Emit(0).ok());
  ASSERT_TRUE(pair.writer.Emit(1).ok());
  EXPECT_EQ(pair.writer.Emit(2).code(), absl::StatusCode::kResourceExhausted);
  std::thread([&] { Flood(producer_loop.root()); }).join();
  std::atomic<int> seen{0};
  Sink<int> sink;
  sink.on_event = [&seen](ContextHandle, int&&) { seen.fetch_add(1); };
  sink.on_complete = [](ContextHandle, const absl::Status&) {};
  StreamSubscription sub =
      *std::move(pair.reader).Attach(sink_loop.root(), std::move(sink));
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (seen.load() < 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_EQ(seen.load(), 2);  // on_writable was posted before.
  ASSERT_TRUE(producer_loop.RunUntilIdle().ok());
  EXPECT_EQ(writable, 1);
  std::thread([&] {
    Flood(producer_loop.root());
    ASSERT_TRUE(sub.Cancel().ok());  // Tells the producer from here.
  }).join();
  ASSERT_TRUE(sink_loop.Invoke([](Loop&) {}).ok());  // The ending ran.
  ASSERT_TRUE(producer_loop.RunUntilIdle().ok());
  ASSERT_EQ(closed.statuses.size(), 1u);
  EXPECT_EQ(closed.statuses[0].code(), absl::StatusCode::kCancelled);
  const StreamCounters c = sub.counters();
  EXPECT_EQ(c.emitted, c.delivered + c.discarded);
}

}  // namespace
}  // namespace ctxloop
