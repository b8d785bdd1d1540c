// Copyright 2026 The ctxloop Authors.
//
// Non-recording scopes cost next to nothing: no allocation and no processor
// call, whatever made them non-recording (disabled tracer, no trace, wrong
// thread, stale context, finished parent, sampler). Counts the calling
// thread's heap allocations with the replaced global operator new of
// //loop:alloc_count_for_testing (ctxloop/loop/testing/alloc_count.h).
//
// And they still carry ids for propagation (tracer.h, "Ids of non-recording
// scopes"): the parent's trace id and trace state, a span id of their own,
// the sampled flag clear; checked through the public API and the injected
// traceparent.

#include <memory>
#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/loop/testing/alloc_count.h"
#include "ctxloop/trace/propagation.h"
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
    SpanScope span = tracer.StartSpan(ctx, "s", options);
    EXPECT_FALSE(span.recording());
    span.SetAttribute("k", int64_t{1});
    EXPECT_TRUE(span.Finish(ctx).ok());
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
    TraceScope run = tracer.StartTrace(ctx_, "run");
    EXPECT_TRUE(run.Finish().ok());
  }
  EXPECT_EQ(window.count(), 0);
  EXPECT_TRUE(rec_->events().empty());
}

// A disabled tracer's scope is inert (an inline start, nothing allocated)
// yet keeps every documented status: OK once, then kFailedPrecondition for a
// second finish, setters after it and a moved-from scope; `on_finished` is
// still called; a null context gives an inert scope too.
TEST_F(NonRecordingTest, DisabledTracerScopeKeepsItsStatuses) {
  Tracer tracer(WithRecorder());
  tracer.SetEnabled(false);
  const AllocationWindow window;  // Nothing allocated by any call below.
  EXPECT_FALSE(tracer.StartSpan(ContextHandle(), "s").recording());
  EXPECT_FALSE(tracer.StartTrace(ContextHandle(), "t").recording());
  {
    SpanScope span = tracer.StartSpan(ctx_, "s");
    EXPECT_FALSE(span.recording());
    EXPECT_FALSE(span.trace_id().valid());
    EXPECT_FALSE(span.span_id().valid());
    EXPECT_TRUE(span.origin().is_null());
    span.SetStatus(StatusCode::kError, "e");
    EXPECT_TRUE(span.Finish(ctx_).ok());
    TraceScope run = tracer.StartTrace(ctx_, "run");
    EXPECT_FALSE(run.recording());
    EXPECT_TRUE(run.Finish(ctx_).ok());
    SpanScope unfinished = tracer.StartSpan(ctx_, "destroyed unfinished");
  }
  EXPECT_EQ(window.count(), 0);
  {
    SpanScope span = tracer.StartSpan(ctx_, "s");
    EXPECT_FALSE(span.span_context().valid());
    EXPECT_FALSE(span.AsParent().valid());
    EXPECT_TRUE(span.Finish(ctx_).ok());
    EXPECT_EQ(span.Finish(ctx_).code(), absl::StatusCode::kFailedPrecondition);
    span.SetError("late");  // Ignored once finished.

    SpanScope moved_from = tracer.StartSpan(ctx_, "s2");
    SpanScope owner = std::move(moved_from);
    EXPECT_EQ(moved_from.Finish().code(),  // NOLINT(bugprone-use-after-move)
              absl::StatusCode::kFailedPrecondition);
    EXPECT_TRUE(owner.Finish().ok());

    TraceScope run = tracer.StartTrace(ctx_, "run");
    EXPECT_TRUE(run.Finish(ctx_).ok());
    EXPECT_EQ(run.Finish().code(), absl::StatusCode::kFailedPrecondition);
  }
  int called = 0;
  {
    SpanScope span = tracer.StartSpan(ctx_, "s");
    FinishOptions options;
    options.on_finished = [&called](const ExecutionSite&) { ++called; };
    EXPECT_TRUE(span.Finish(ctx_, std::move(options)).ok());
  }
  EXPECT_EQ(called, 1);
  // Turned on again: records.
  tracer.SetEnabled(true);
  {
    TraceScope run = tracer.StartTrace(ctx_, "run");
    EXPECT_TRUE(run.recording());
    SpanScope span = tracer.StartSpan(ctx_, "s");
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
  TraceScope run = tracer.StartTrace(ctx_, "run");
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
  TraceScope run = tracer.StartTrace(ctx_, "run", to);
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

// `got` continues `parent`'s trace as a non-recording span must: the same
// trace id and trace state, a valid span id of its own, the sampled flag
// clear, and a traceparent that a callee can extract.
void ExpectContinues(const SpanContext& got, const SpanContext& parent) {
  SCOPED_TRACE(::testing::Message() << "got " << got << ", parent " << parent);
  ASSERT_TRUE(parent.valid());
  EXPECT_TRUE(got.valid());
  EXPECT_EQ(got.trace_id, parent.trace_id);
  EXPECT_TRUE(got.span_id.valid());
  EXPECT_NE(got.span_id, parent.span_id);
  EXPECT_FALSE(got.sampled());
  EXPECT_EQ(got.trace_flags, parent.trace_flags & ~kTraceFlagSampled);
  EXPECT_EQ(got.trace_state, parent.trace_state);
  const TraceContextHeaders h = InjectTraceContext(got);
  EXPECT_EQ(h.traceparent, absl::StrCat("00-", parent.trace_id.ToHex(), "-",
                                        got.span_id.ToHex(), "-00"));
  EXPECT_EQ(h.tracestate, parent.trace_state);
  std::optional<SpanContext> back =
      ExtractTraceContext(h.traceparent, h.tracestate);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->trace_id, parent.trace_id);
  EXPECT_EQ(back->span_id, got.span_id);
}

// A remote caller's context, sampled, with a trace state.
SpanContext Caller() {
  return *ExtractTraceContext(
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
      "vendor=opaque");
}

TEST_F(NonRecordingTest, FinishedParentTraceCarriesItsIds) {
  Tracer tracer(WithRecorder());
  TraceOptions to;
  to.remote_parent = Caller();
  TraceScope run = tracer.StartTrace(ctx_, "run", to);
  ASSERT_TRUE(run.recording());
  SpanOptions o;
  o.parent = run.AsParent();
  SpanOptions under_span;
  SpanScope step = tracer.StartSpan(ctx_, "step");
  under_span.parent = step.AsParent();
  ASSERT_TRUE(run.Finish().ok());
  SpanScope late = tracer.StartSpan(ctx_, "late", o);
  EXPECT_FALSE(late.recording());
  EXPECT_EQ(late.trace_id(), run.trace_id());
  ExpectContinues(late.span_context(), run.span_context());
  ASSERT_TRUE(step.Finish().ok());
  SpanScope late_child = tracer.StartSpan(ctx_, "late child", under_span);
  EXPECT_FALSE(late_child.recording());
  ExpectContinues(late_child.span_context(), step.span_context());
  EXPECT_EQ(tracer.stats().rejected_spans, 2u);
  // Its children continue it too (unsampled).
  SpanOptions under_late;
  under_late.parent = late.AsParent();
  ASSERT_TRUE(under_late.parent.valid());
  SpanScope grandchild = tracer.StartSpan(ctx_, "grandchild", under_late);
  ExpectContinues(grandchild.span_context(), late.span_context());
}

TEST_F(NonRecordingTest, DestroyedContextCarriesItsParentsIds) {
  Tracer tracer(WithRecorder());
  const ContextHandle gone = *loop_.NewContext("gone");
  TraceScope run = tracer.StartTrace(gone, "run");
  ASSERT_TRUE(run.recording());
  SpanOptions explicit_parent;
  explicit_parent.parent = run.AsParent();
  ASSERT_TRUE(loop_.DestroyContext(gone).ok());
  // Closing: its current trace is still readable, the span cannot be made
  // current there.
  SpanScope implicit = tracer.StartSpan(gone, "implicit");
  EXPECT_FALSE(implicit.recording());
  ExpectContinues(implicit.span_context(), run.span_context());
  for (bool make_current : {true, false}) {
    SpanOptions o = explicit_parent;
    o.make_current = make_current;
    SpanScope s = tracer.StartSpan(gone, "explicit", o);
    EXPECT_FALSE(s.recording());
    ExpectContinues(s.span_context(), run.span_context());
  }
  // A trace on it: the remote parent continued, else a new trace id.
  for (bool make_current : {true, false}) {
    TraceOptions to;
    to.remote_parent = Caller();
    to.make_current = make_current;
    TraceScope t = tracer.StartTrace(gone, "t", to);
    EXPECT_FALSE(t.recording());
    ExpectContinues(t.span_context(), Caller());
    to.remote_parent = SpanContext();
    TraceScope root = tracer.StartTrace(gone, "root", to);
    EXPECT_FALSE(root.recording());
    EXPECT_TRUE(root.span_context().valid());
    EXPECT_FALSE(root.span_context().sampled());
    EXPECT_NE(root.trace_id(), run.trace_id());
  }
  EXPECT_EQ(tracer.stats().spans_on_stale_context, 3u);
  EXPECT_EQ(tracer.stats().traces_on_stale_context, 4u);
  ASSERT_TRUE(run.Finish().ok());
  ASSERT_TRUE(loop_.RunUntilIdle().ok());
  // Freed: an explicit parent still counts.
  SpanScope after = tracer.StartSpan(gone, "after", explicit_parent);
  ExpectContinues(after.span_context(), run.span_context());
}

TEST_F(NonRecordingTest, AnotherThreadCarriesItsParentsIds) {
  Tracer tracer(WithRecorder());
  TraceScope run = tracer.StartTrace(ctx_, "run");
  ASSERT_TRUE(run.recording());
  SpanScope step = tracer.StartSpan(ctx_, "step");
  SpanOptions o;
  o.parent = step.AsParent();
  TraceOptions remote;
  remote.remote_parent = Caller();
  SpanContext span, trace, root, parentless;
  std::thread other([&] {
    SpanScope s = tracer.StartSpan(ctx_, "off loop", o);
    EXPECT_FALSE(s.recording());
    span = s.span_context();
    TraceScope t = tracer.StartTrace(ctx_, "remote off loop", remote);
    EXPECT_FALSE(t.recording());
    trace = t.span_context();
    root = tracer.StartTrace(ctx_, "root off loop").span_context();
    parentless = tracer.StartSpan(ctx_, "no parent").span_context();
  });
  other.join();
  ExpectContinues(span, step.span_context());
  ExpectContinues(trace, Caller());
  EXPECT_TRUE(root.valid());
  EXPECT_FALSE(root.sampled());
  // A context's current span cannot be read off its loop thread: no ids.
  EXPECT_FALSE(parentless.valid());
  EXPECT_EQ(InjectTraceContext(parentless).traceparent, "");
  EXPECT_EQ(tracer.stats().spans_off_loop_thread, 2u);
  EXPECT_EQ(tracer.stats().traces_off_loop_thread, 2u);
}

TEST_F(NonRecordingTest, UnsampledCarriesIdsWithFlagsClear) {
  Tracer::Options options = WithRecorder();
  options.sampler = AlwaysOffSampler();
  Tracer tracer(std::move(options));
  TraceOptions to;
  to.remote_parent = Caller();
  TraceScope run = tracer.StartTrace(ctx_, "run", to);
  EXPECT_FALSE(run.recording());
  ExpectContinues(run.span_context(), Caller());
  SpanScope span = tracer.StartSpan(ctx_, "s");
  ExpectContinues(span.span_context(), run.span_context());
}

// No parent it can see: nothing to continue, so nothing is injected and a
// callee starts a trace of its own.
TEST_F(NonRecordingTest, NoParentCarriesNoIds) {
  Tracer tracer(WithRecorder());
  SpanScope span = tracer.StartSpan(ctx_, "s");
  EXPECT_FALSE(span.span_context().valid());
  EXPECT_EQ(InjectTraceContext(span.span_context()).traceparent, "");
  EXPECT_EQ(tracer.stats().noop_spans, 1u);
}

// A disabled tracer passes an explicit parent through unchanged.
TEST_F(NonRecordingTest, DisabledTracerPassesAnExplicitParentThrough) {
  Tracer tracer(WithRecorder());
  TraceScope run = tracer.StartTrace(ctx_, "run");
  SpanOptions o;
  o.parent = run.AsParent();
  tracer.SetEnabled(false);
  TraceOptions to;
  to.remote_parent = Caller();
  TraceScope t = tracer.StartTrace(ctx_, "t", to);
  EXPECT_FALSE(t.recording());
  SpanContext expected = Caller();
  expected.remote = false;
  EXPECT_EQ(t.span_context(), expected);
  SpanScope s = tracer.StartSpan(ctx_, "s", o);
  EXPECT_FALSE(s.recording());
  EXPECT_EQ(s.span_context(), run.span_context());
  EXPECT_FALSE(tracer.StartTrace(ctx_, "no parent").span_context().valid());
}

}  // namespace
}  // namespace ctxloop
