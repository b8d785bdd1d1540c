// Copyright 2026 The ctxloop Authors.
//
// Non-recording scopes cost next to nothing: no allocation and no processor
// call, whatever made them non-recording (disabled tracer, no trace, wrong
// thread, stale context, finished parent, sampler). Counts the calling
// thread's heap allocations with the replaced global operator new of
// //loop:alloc_count_for_testing (ctxloop/loop/testing/alloc_count.h).

#include <memory>
#include <thread>
#include <utility>

#include "ctxloop/loop/loop.h"
#include "ctxloop/loop/testing/alloc_count.h"
#include "ctxloop/trace/sampler.h"
#include "ctxloop/trace/testing/recording_processor.h"
#include "ctxloop/trace/tracer.h"
#include "gtest/gtest.h"

namespace ctxloop {
namespace {

using testing_util::AllocationWindow;
using testing_util::RecordingProcessor;

// Allocations made by one StartSpan + Finish.
long SpanAllocations(Tracer& tracer, ContextHandle ctx, SpanOptions options) {
  const AllocationWindow window;
  {
    absl::StatusOr<SpanScope> span = tracer.StartSpan(ctx, "s", options);
    EXPECT_TRUE(span.ok());
    EXPECT_FALSE(span->recording());
    EXPECT_TRUE(span->SetAttribute("k", int64_t{1}).ok());
    EXPECT_TRUE(span->Finish(ctx).ok());
  }
  return window.count();
}

class NonRecordingTest : public ::testing::Test {
 protected:
  Tracer::Options WithRecorder() {
    Tracer::Options o;
    o.processors.push_back(rec_);
    return o;
  }
  void SetUp() override {
    // The tracing key is made on first use: not part of any span's cost.
    Tracer warm_up(Tracer::Options{});
    (void)warm_up.CurrentTraceId(ctx_);
  }
  std::shared_ptr<RecordingProcessor> rec_ =
      std::make_shared<RecordingProcessor>();
  Loop loop_;
  ContextHandle ctx_ = *loop_.NewContext("A");
};

TEST_F(NonRecordingTest, DisabledTracer) {
  Tracer tracer(WithRecorder());
  tracer.SetEnabled(false);
  EXPECT_EQ(SpanAllocations(tracer, ctx_, {}), 0);
  const AllocationWindow window;
  {
    TraceScope run = *tracer.StartTrace(ctx_, "run");
    EXPECT_TRUE(run.Finish().ok());
  }
  EXPECT_EQ(window.count(), 0);
  EXPECT_TRUE(rec_->events().empty());
}

// A disabled tracer's scope is inert (an inline start, nothing allocated)
// yet keeps every documented status: OK once, then kFailedPrecondition for a
// second finish, setters after it and a moved-from scope; `on_finished` is
// still called; a null context is still an error.
TEST_F(NonRecordingTest, DisabledTracerScopeKeepsItsStatuses) {
  Tracer tracer(WithRecorder());
  tracer.SetEnabled(false);
  EXPECT_EQ(tracer.StartSpan(ContextHandle(), "s").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(tracer.StartTrace(ContextHandle(), "t").status().code(),
            absl::StatusCode::kInvalidArgument);
  // Nothing allocated by the calls that succeed (error statuses carry a
  // message, so they are checked apart).
  const AllocationWindow window;
  {
    SpanScope span = *tracer.StartSpan(ctx_, "s");
    EXPECT_FALSE(span.recording());
    EXPECT_FALSE(span.trace_id().valid());
    EXPECT_FALSE(span.span_id().valid());
    EXPECT_TRUE(span.origin().is_null());
    EXPECT_TRUE(span.SetStatus(StatusCode::kError, "e").ok());
    EXPECT_TRUE(span.Finish(ctx_).ok());
    TraceScope run = *tracer.StartTrace(ctx_, "run");
    EXPECT_FALSE(run.recording());
    EXPECT_TRUE(run.Finish(ctx_).ok());
    SpanScope unfinished = *tracer.StartSpan(ctx_, "destroyed unfinished");
  }
  EXPECT_EQ(window.count(), 0);
  {
    SpanScope span = *tracer.StartSpan(ctx_, "s");
    EXPECT_FALSE(span.span_context().valid());
    EXPECT_FALSE(span.AsParent().valid());
    EXPECT_TRUE(span.Finish(ctx_).ok());
    EXPECT_EQ(span.Finish(ctx_).code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(span.SetError("late").code(),
              absl::StatusCode::kFailedPrecondition);

    SpanScope moved_from = *tracer.StartSpan(ctx_, "s2");
    SpanScope owner = std::move(moved_from);
    EXPECT_EQ(moved_from.Finish().code(),  // NOLINT(bugprone-use-after-move)
              absl::StatusCode::kFailedPrecondition);
    EXPECT_TRUE(owner.Finish().ok());

    TraceScope run = *tracer.StartTrace(ctx_, "run");
    EXPECT_TRUE(run.Finish(ctx_).ok());
    EXPECT_EQ(run.Finish().code(), absl::StatusCode::kFailedPrecondition);
  }
  int called = 0;
  {
    SpanScope span = *tracer.StartSpan(ctx_, "s");
    FinishOptions options;
    options.on_finished = [&called](const ExecutionSite&) { ++called; };
    EXPECT_TRUE(span.Finish(ctx_, std::move(options)).ok());
  }
  EXPECT_EQ(called, 1);
  // Turned on again: records.
  tracer.SetEnabled(true);
  {
    TraceScope run = *tracer.StartTrace(ctx_, "run");
    EXPECT_TRUE(run.recording());
    SpanScope span = *tracer.StartSpan(ctx_, "s");
    EXPECT_TRUE(span.recording());
  }
  EXPECT_FALSE(rec_->events().empty());
}

TEST_F(NonRecordingTest, NoTrace) {
  Tracer tracer(WithRecorder());
  EXPECT_EQ(SpanAllocations(tracer, ctx_, {}), 0);
  EXPECT_EQ(tracer.stats().noop_spans, 1u);
  EXPECT_TRUE(rec_->events().empty());
}

TEST_F(NonRecordingTest, WrongThread) {
  Tracer tracer(WithRecorder());
  long n = -1;
  std::thread other([&] { n = SpanAllocations(tracer, ctx_, {}); });
  other.join();
  EXPECT_EQ(n, 0);
  EXPECT_EQ(tracer.stats().spans_off_loop_thread, 1u);
  EXPECT_TRUE(rec_->events().empty());
}

TEST_F(NonRecordingTest, FinishedParentAndStaleContext) {
  Tracer tracer(WithRecorder());
  TraceScope run = *tracer.StartTrace(ctx_, "run");
  SpanOptions o;
  o.parent = run.AsParent();
  ASSERT_TRUE(run.Finish().ok());
  const size_t events = rec_->events().size();
  EXPECT_EQ(SpanAllocations(tracer, ctx_, o), 0);
  EXPECT_EQ(tracer.stats().rejected_spans, 1u);

  // A stale context: only the loop's error status for the handle is built
  // (its message); no record, no processor call.
  const ContextHandle gone = *loop_.NewContext("gone");
  ASSERT_TRUE(loop_.DestroyContext(gone).ok());
  ASSERT_TRUE(loop_.RunUntilIdle().ok());
  EXPECT_LE(SpanAllocations(tracer, gone, {}), 4);
  EXPECT_EQ(tracer.stats().spans_on_stale_context, 1u);
  EXPECT_EQ(rec_->events().size(), events);
}

TEST_F(NonRecordingTest, UnsampledNotCurrent) {
  Tracer::Options options = WithRecorder();
  options.sampler = AlwaysOffSampler();
  Tracer tracer(std::move(options));
  const AllocationWindow window;
  TraceOptions to;
  to.make_current = false;
  TraceScope run = *tracer.StartTrace(ctx_, "run", to);
  EXPECT_FALSE(run.recording());
  SpanOptions o;
  o.parent = run.AsParent();
  o.make_current = false;
  EXPECT_EQ(SpanAllocations(tracer, ctx_, o), 0);
  EXPECT_TRUE(run.Finish().ok());
  EXPECT_EQ(window.count(), 0);
  EXPECT_TRUE(rec_->events().empty());
  EXPECT_EQ(tracer.stats().unsampled_traces, 1u);
  EXPECT_EQ(tracer.stats().unsampled_spans, 1u);
}

}  // namespace
}  // namespace ctxloop
