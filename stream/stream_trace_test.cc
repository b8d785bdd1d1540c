// Copyright 2026 The ctxloop Authors.
//
// A stream that carries its run's trace: however the stream ends, the trace
// is finished once, on its origin context (the seed bug cannot happen), and
// the consumer can trace its own work under the producer's trace.

#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <optional>
#include <stdexcept>
#include <thread>

#include "ctxloop/loop/loop.h"
#include "ctxloop/loop/loop_thread.h"
#include "ctxloop/stream/stream.h"
#include "ctxloop/trace/testing/recording_processor.h"
#include "ctxloop/trace/tracer.h"
#include "gtest/gtest.h"

namespace ctxloop {
namespace {

using testing_util::RecordingProcessor;
using Kind = RecordingProcessor::Kind;

enum class Ending {
  kComplete,
  kFail,
  kCancel,
  kConsumerDestroyed,
  kSinkThrows
};

// The FastAPI shape: the request handler starts the run's trace on context A
// of loop 1 and makes it current; the agent produces on loop 1; the response
// writer consumes on context B of loop 2, another thread.
class StreamTraceTest : public ::testing::TestWithParam<Ending> {
 protected:
  StreamTraceTest() : tracer_(Options()) {
    EXPECT_TRUE(loop1_
                    .Invoke([&](Loop& l) {
                      a_ = *l.NewContext("A");
                      loop1_tid_ = RecordingProcessor::ThisTid();
                    })
                    .ok());
    EXPECT_TRUE(loop2_.Invoke([&](Loop& l) { b_ = *l.NewContext("B"); }).ok());
  }
  Tracer::Options Options() {
    Tracer::Options o;
    o.processors.push_back(rec_);
    return o;
  }

  std::shared_ptr<RecordingProcessor> rec_ =
      std::make_shared<RecordingProcessor>();
  Tracer tracer_;
  LoopThread loop1_, loop2_;
  ContextHandle a_, b_;
  int64_t loop1_tid_ = 0;
};

TEST_P(StreamTraceTest, TraceFinishesOnceOnOriginWhateverTheEnding) {
  const Ending ending = GetParam();
  StreamWriter<int> writer;
  StreamReader<int> reader;
  TraceId id;
  // The producer learns when and where the stream's finish of its trace ran
  // once, on A's loop thread, with A's "current" already reset.
  struct Finished {
    std::atomic<int> calls{0};
    int64_t tid = 0;
    ContextHandle ran;
    bool reset_before = false;
  };
  auto finished = std::make_shared<Finished>();
  ASSERT_TRUE(loop1_
                  .Invoke([&](Loop&) {
                    StreamConfig config;
                    config.trace_finish.on_finished =
                        [this, finished](const ExecutionSite& ran) {
                          finished->tid = RecordingProcessor::ThisTid();
                          finished->ran = ran.ctx;
                          absl::StatusOr<TraceId> current =
                              tracer_.CurrentTraceId(a_);
                          finished->reset_before =
                              current.ok() && !current->valid();
                          finished->calls.fetch_add(1);
                        };
                    config.trace = tracer_.StartTrace(a_, "agent run");
                    id = config.trace->trace_id();
                    auto pair = *MakeStream<int>(a_, std::move(config));
                    writer = std::move(pair.writer);
                    reader = std::move(pair.reader);
                  })
                  .ok());

  std::optional<StreamSubscription> sub;
  ASSERT_TRUE(
      loop2_
          .Invoke([&](Loop&) {
            const SpanParent parent = reader.trace_parent();
            ASSERT_EQ(parent.trace_id(), id);
            Sink<int> sink;
            sink.on_event = [this, parent, ending](ContextHandle ctx, int&& v) {
              // The consumer traces its own work, on its own context, under the
              // producer's trace: what openai-agents-python's fix gave up.
              SpanOptions o;
              o.parent = parent;
              SpanScope span = tracer_.StartSpan(ctx, "render event", o);
              EXPECT_EQ(*tracer_.CurrentTraceId(ctx), parent.trace_id());
              EXPECT_TRUE(span.Finish(ctx).ok());
              if (ending == Ending::kSinkThrows && v == 1) {
                throw std::runtime_error("render failed");
              }
            };
            sink.on_complete = [](ContextHandle, const absl::Status&) {};
            sub.emplace(*std::move(reader).Attach(b_, std::move(sink)));
          })
          .ok());

  ASSERT_TRUE(loop1_
                  .Invoke([&](Loop&) {
                    ASSERT_TRUE(writer.Emit(0).ok());
                    ASSERT_TRUE(writer.Emit(1).ok());
                    if (ending == Ending::kComplete) {
                      ASSERT_TRUE(writer.Complete().ok());
                    }
                    if (ending == Ending::kFail) {
                      ASSERT_TRUE(writer.Fail(absl::InternalError("x")).ok());
                    }
                  })
                  .ok());
  if (ending == Ending::kCancel || ending == Ending::kConsumerDestroyed) {
    ASSERT_TRUE(rec_->WaitFor(Kind::kSpanEnd, 2));  // Both events consumed.
    if (ending == Ending::kCancel) {
      ASSERT_TRUE(sub->Cancel().ok());
    } else {
      sub.reset();
    }
  }

  ASSERT_TRUE(rec_->WaitFor(Kind::kTraceEnd, 1));
  ASSERT_TRUE(loop1_.Invoke([](Loop&) {}).ok());
  ASSERT_TRUE(loop2_.Invoke([](Loop&) {}).ok());
  const auto ends = rec_->events(Kind::kTraceEnd);
  ASSERT_EQ(ends.size(), 1u);
  EXPECT_EQ(ends[0].tid, loop1_tid_);
  EXPECT_EQ(ends[0].trace().finish_ran.ctx, a_);
  EXPECT_FALSE(ends[0].trace().finished_off_origin);
  // Every consumer span ended before the trace did.
  EXPECT_EQ(rec_->events().back().kind, Kind::kTraceEnd);
  EXPECT_GE(rec_->count(Kind::kSpanEnd), 1u);
  for (const auto& e : rec_->events(Kind::kSpanEnd)) {
    EXPECT_EQ(e.span().trace_id, id);
    EXPECT_EQ(e.span().started.ctx, b_);
  }
  // A's current trace is restored, on A.
  ASSERT_TRUE(loop1_
                  .Invoke([&](Loop&) {
                    EXPECT_FALSE(tracer_.CurrentTraceId(a_)->valid());
                  })
                  .ok());
  ASSERT_EQ(finished->calls.load(), 1);
  EXPECT_EQ(finished->tid, loop1_tid_);
  EXPECT_EQ(finished->ran, a_);
  EXPECT_TRUE(finished->reset_before);
}

INSTANTIATE_TEST_SUITE_P(Endings, StreamTraceTest,
                         ::testing::Values(Ending::kComplete, Ending::kFail,
                                           Ending::kCancel,
                                           Ending::kConsumerDestroyed,
                                           Ending::kSinkThrows));

// The sink's loop is shut down with the stream open: the trace still ends,
// once, on its origin.
TEST(StreamTraceShutdownTest, SinkLoopShutdownFinishesTrace) {
  auto rec = std::make_shared<RecordingProcessor>();
  Tracer::Options o;
  o.processors.push_back(rec);
  Tracer tracer(std::move(o));
  Loop origin;
  ContextHandle a = *origin.NewContext("A");
  StreamConfig config;
  config.trace = tracer.StartTrace(a, "run");
  auto pair = *MakeStream<int>(a, std::move(config));
  std::optional<StreamSubscription> sub;
  {
    LoopThread sink_loop;
    Sink<int> sink;
    sink.on_event = [](ContextHandle, int&&) {};
    sink.on_complete = [](ContextHandle, const absl::Status&) {};
    sub.emplace(
        *std::move(pair.reader).Attach(sink_loop.root(), std::move(sink)));
  }
  // The sink loop's shutdown ran the sink context's destroy hook [E6]: the
  // stream has ended without an Emit; the trace finish is posted to A.
  EXPECT_TRUE(sub->finished());
  EXPECT_EQ(pair.writer.Emit(1).code(), absl::StatusCode::kCancelled);
  ASSERT_TRUE(origin.RunUntilIdle().ok());
  ASSERT_EQ(rec->count(Kind::kTraceEnd), 1u);
  EXPECT_EQ(rec->events(Kind::kTraceEnd)[0].trace().finish_ran.ctx, a);
  EXPECT_FALSE(tracer.CurrentTraceId(a)->valid());
}

}  // namespace
}  // namespace ctxloop
