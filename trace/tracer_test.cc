// Copyright 2026 The ctxloop Authors.
//
// Parent resolution, "current" bookkeeping, span-before-trace ordering,
// no-op and disabled scopes.

#include "ctxloop/trace/tracer.h"

#include <memory>
#include <optional>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/strings/string_view.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/loop/loop_thread.h"
#include "ctxloop/trace/testing/recording_processor.h"
#include "gtest/gtest.h"

namespace ctxloop {
namespace {

using testing_util::RecordingProcessor;
using Kind = RecordingProcessor::Kind;

class TracerTest : public ::testing::Test {
 protected:
  TracerTest() : tracer_(Options()) { ctx_ = *loop_.NewContext("A"); }
  Tracer::Options Options() {
    Tracer::Options o;
    o.processors.push_back(rec_);
    return o;
  }
  SpanId Current() { return *tracer_.CurrentSpanId(ctx_); }
  TraceId CurrentTrace() { return *tracer_.CurrentTraceId(ctx_); }

  std::shared_ptr<RecordingProcessor> rec_ =
      std::make_shared<RecordingProcessor>();
  Loop loop_;
  ContextHandle ctx_;
  Tracer tracer_;
};

TEST_F(TracerTest, RootSpanIsFilledIn) {
  TraceOptions o;
  o.attributes.emplace_back(kGroupIdAttribute, std::string("thread-42"));
  TraceScope run = tracer_.StartTrace(ctx_, "agent run", o);
  ASSERT_TRUE(run.Finish(ctx_).ok());
  const auto ends = rec_->events(Kind::kTraceEnd);
  ASSERT_EQ(ends.size(), 1u);
  const SpanData& t = ends[0].trace();
  EXPECT_EQ(t.trace_id.ToHex().size(), 32u);
  EXPECT_TRUE(t.trace_id.valid());
  EXPECT_TRUE(t.is_root());
  EXPECT_TRUE(t.span_id.valid());
  EXPECT_EQ(t.span_id, run.span_context().span_id);
  EXPECT_FALSE(t.parent_span_id.valid());
  EXPECT_FALSE(t.parent_is_remote);
  EXPECT_EQ(t.trace_flags, kTraceFlagSampled);
  EXPECT_EQ(t.started.context_name, "A");
  EXPECT_EQ(t.finish_ran.context_name, "A");
  EXPECT_EQ(t.name, "agent run");
  ASSERT_EQ(t.attributes.size(), 1u);
  EXPECT_EQ(t.attributes[0].first, "ctxloop.group_id");
  EXPECT_EQ(std::get<std::string>(t.attributes[0].second), "thread-42");
  EXPECT_LE(t.start_time, t.end_time);
  EXPECT_GE(t.duration, absl::ZeroDuration());
  EXPECT_EQ(t.started.ctx, ctx_);
}

TEST_F(TracerTest, ParentResolution) {
  TraceScope run = tracer_.StartTrace(ctx_, "run");
  // Current trace, no current span: a top-level span.
  SpanScope top = tracer_.StartSpan(ctx_, "top");
  EXPECT_EQ(top.trace_id(), run.trace_id());
  // Current span: its child.
  SpanScope child = tracer_.StartSpan(ctx_, "child");
  // Explicit parent wins over the current span.
  SpanOptions explicit_parent;
  explicit_parent.parent = top.AsParent();
  explicit_parent.make_current = false;
  SpanScope sibling = tracer_.StartSpan(ctx_, "sibling", explicit_parent);
  EXPECT_EQ(Current(), child.span_id());  // make_current = false kept it.
  ASSERT_TRUE(sibling.Finish(ctx_).ok());
  ASSERT_TRUE(child.Finish(ctx_).ok());
  ASSERT_TRUE(top.Finish(ctx_).ok());
  ASSERT_TRUE(run.Finish(ctx_).ok());

  const auto starts = rec_->events(Kind::kSpanStart);
  ASSERT_EQ(starts.size(), 3u);
  // A top-level span's parent is the trace's root span.
  EXPECT_EQ(starts[0].span().parent_span_id, run.span_id());
  EXPECT_EQ(starts[1].span().parent_span_id, starts[0].span().span_id);
  EXPECT_EQ(starts[2].span().parent_span_id, starts[0].span().span_id);
  for (const auto& s : starts) EXPECT_EQ(s.span().trace_id, run.trace_id());
}

TEST_F(TracerTest, ExplicitParentFromAnotherLoop) {
  LoopThread other;
  ContextHandle b;
  ASSERT_TRUE(other.Invoke([&](Loop& l) { b = *l.NewContext("B"); }).ok());
  TraceScope run = tracer_.StartTrace(ctx_, "run");
  SpanParent parent = run.AsParent();
  SpanId remote_span;
  ASSERT_TRUE(other
                  .Invoke([&](Loop&) {
                    SpanOptions o;
                    o.parent = parent;
                    SpanScope s = tracer_.StartSpan(b, "remote", o);
                    remote_span = s.span_id();
                    // B now has the producer's trace as current.
                    EXPECT_EQ(*tracer_.CurrentTraceId(b), parent.trace_id());
                    ASSERT_TRUE(s.Finish(b).ok());
                    EXPECT_FALSE(tracer_.CurrentTraceId(b)->valid());
                  })
                  .ok());
  ASSERT_TRUE(run.Finish(ctx_).ok());
  const auto ends = rec_->events(Kind::kSpanEnd);
  ASSERT_EQ(ends.size(), 1u);
  EXPECT_EQ(ends[0].span().span_id, remote_span);
  EXPECT_EQ(ends[0].span().trace_id, run.trace_id());
}

TEST_F(TracerTest, NoTraceMeansCountedNoOpSpan) {
  SpanScope s = tracer_.StartSpan(ctx_, "orphan");
  EXPECT_FALSE(s.recording());
  s.SetAttribute("k", true);
  EXPECT_TRUE(s.Finish(ctx_).ok());
  EXPECT_EQ(s.Finish(ctx_).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(tracer_.stats().noop_spans, 1u);
  EXPECT_TRUE(rec_->events().empty());
  EXPECT_FALSE(Current().valid());
}

// StartSpan never aborts a user; it counts why it cannot record.
TEST_F(TracerTest, SpanUnderFinishedTraceIsNonRecordingAndCounted) {
  TraceScope run = tracer_.StartTrace(ctx_, "run");
  SpanParent parent = run.AsParent();
  ASSERT_TRUE(run.Finish(ctx_).ok());
  SpanOptions o;
  o.parent = parent;
  SpanScope late = tracer_.StartSpan(ctx_, "late", o);
  EXPECT_FALSE(late.recording());
  late.SetAttribute("k", true);
  late.AddEvent("e");
  EXPECT_TRUE(late.Finish(ctx_).ok());
  EXPECT_EQ(late.Finish(ctx_).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(tracer_.stats().rejected_spans, 1u);
  EXPECT_EQ(rec_->count(Kind::kSpanStart), 0u);
}

// Out-of-order finishes never make a finished scope current again, and once
// all finished "current" is back to what it was.
TEST_F(TracerTest, OutOfOrderFinishesRestoreCurrent) {
  TraceScope outer = tracer_.StartTrace(ctx_, "outer");
  SpanScope before = tracer_.StartSpan(ctx_, "before");  // Pre-existing.
  const SpanId before_id = before.span_id();

  TraceScope run = tracer_.StartTrace(ctx_, "run");
  SpanScope s1 = tracer_.StartSpan(ctx_, "s1");
  SpanScope s2 = tracer_.StartSpan(ctx_, "s2");
  const SpanId s2_id = s2.span_id();
  EXPECT_EQ(Current(), s2_id);

  ASSERT_TRUE(run.Finish(ctx_).ok());  // Oldest first.
  EXPECT_EQ(Current(), s2_id);         // Still the newest live one.
  ASSERT_TRUE(s1.Finish(ctx_).ok());
  EXPECT_EQ(Current(), s2_id);  // s1 never comes back.
  ASSERT_TRUE(s2.Finish(ctx_).ok());
  // Back to what it was before `run` started.
  EXPECT_EQ(Current(), before_id);
  EXPECT_EQ(CurrentTrace(), outer.trace_id());

  ASSERT_TRUE(before.Finish(ctx_).ok());
  ASSERT_TRUE(outer.Finish(ctx_).ok());
  EXPECT_FALSE(CurrentTrace().valid());
  EXPECT_FALSE(Current().valid());
}

TEST_F(TracerTest, ResetCurrentFalseLeavesScopeCurrent) {
  TraceScope run = tracer_.StartTrace(ctx_, "run");
  FinishOptions keep;
  keep.reset_current = false;
  const TraceId id = run.trace_id();
  ASSERT_TRUE(run.Finish(ctx_, keep).ok());
  EXPECT_EQ(CurrentTrace(), id);
}

// Span ends precede their trace's end, even when the trace finishes first,
// from another thread.
TEST_F(TracerTest, TraceEndWaitsForOpenSpans) {
  TraceScope run = tracer_.StartTrace(ctx_, "run");
  SpanScope a = tracer_.StartSpan(ctx_, "a");
  SpanScope b = tracer_.StartSpan(ctx_, "b");
  std::thread other([&] { EXPECT_TRUE(run.Finish().ok()); });
  other.join();
  ASSERT_TRUE(loop_.RunUntilIdle().ok());  // The trace's finish has run.
  EXPECT_EQ(rec_->count(Kind::kTraceEnd), 0u);
  EXPECT_EQ(Current(), b.span_id());  // The trace's reset left b current.
  ASSERT_TRUE(a.Finish(ctx_).ok());
  EXPECT_EQ(rec_->count(Kind::kTraceEnd), 0u);
  ASSERT_TRUE(b.Finish(ctx_).ok());
  const auto events = rec_->events();
  ASSERT_EQ(rec_->count(Kind::kTraceEnd), 1u);
  EXPECT_EQ(events.back().kind, Kind::kTraceEnd);
  // The trace's end time is when its Finish was called, not when delivered.
  EXPECT_LE(events.back().trace().end_time,
            rec_->events(Kind::kSpanEnd).back().span().end_time);
}

TEST_F(TracerTest, ConcurrentSpanEndsOfOneTrace) {
  constexpr int kPerLoop = 500;
  LoopThread loops[2];
  ContextHandle ctx[2];
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(
        loops[i].Invoke([&](Loop& l) { ctx[i] = *l.NewContext(); }).ok());
  }
  TraceScope run = tracer_.StartTrace(ctx_, "run");
  const TraceId id = run.trace_id();
  const SpanParent parent = run.AsParent();
  std::vector<SpanScope> spans[2];
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(loops[i]
                    .Invoke([&, i](Loop&) {
                      SpanOptions o;
                      o.parent = parent;
                      o.make_current = false;
                      for (int k = 0; k < kPerLoop; ++k) {
                        spans[i].push_back(tracer_.StartSpan(ctx[i], "s", o));
                      }
                    })
                    .ok());
  }
  // The trace finishes first; its spans then end on two threads at once.
  ASSERT_TRUE(run.Finish(ctx_).ok());
  EXPECT_EQ(rec_->count(Kind::kTraceEnd), 0u);
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(Post(ctx[i], [&, i](ContextHandle c) {
                  for (SpanScope& s : spans[i]) {
                    EXPECT_TRUE(s.Finish(c).ok());
                  }
                }).ok());
  }
  // Both loops have run those tasks (FIFO); the trace's end was posted to
  // its origin, this thread's loop [F5].
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(loops[i].Invoke([](Loop&) {}).ok());
  EXPECT_EQ(rec_->count(Kind::kTraceEnd), 0u);
  ASSERT_TRUE(loop_.RunUntilIdle().ok());
  ASSERT_EQ(rec_->count(Kind::kTraceEnd), 1u);
  EXPECT_EQ(rec_->events(Kind::kTraceEnd)[0].tid,
            RecordingProcessor::ThisTid());
  const auto events = rec_->events();
  EXPECT_EQ(events.back().kind, Kind::kTraceEnd);
  EXPECT_EQ(events.back().trace().trace_id, id);
  EXPECT_EQ(rec_->count(Kind::kSpanEnd), 2u * kPerLoop);
  EXPECT_EQ(rec_->count(Kind::kTraceEnd), 1u);
}

TEST_F(TracerTest, DisabledTracerScopesAreNoOps) {
  tracer_.SetEnabled(false);
  TraceScope run = tracer_.StartTrace(ctx_, "run");
  SpanScope s = tracer_.StartSpan(ctx_, "s");
  EXPECT_FALSE(run.recording());
  EXPECT_FALSE(s.recording());
  EXPECT_TRUE(s.Finish(ctx_).ok());
  EXPECT_TRUE(run.Finish(ctx_).ok());
  EXPECT_EQ(run.Finish(ctx_).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(rec_->events().empty());
  EXPECT_FALSE(CurrentTrace().valid());
}

TEST_F(TracerTest, StartOffLoopThreadIsNonRecordingAndCounted) {
  TraceScope run = tracer_.StartTrace(ctx_, "run");
  std::thread other([&] {
    TraceScope t = tracer_.StartTrace(ctx_, "run");
    SpanScope s = tracer_.StartSpan(ctx_, "s");
    EXPECT_FALSE(t.recording());
    EXPECT_FALSE(s.recording());
    EXPECT_TRUE(s.Finish().ok());
    EXPECT_TRUE(t.Finish().ok());
  });
  other.join();
  EXPECT_EQ(tracer_.stats().traces_off_loop_thread, 1u);
  EXPECT_EQ(tracer_.stats().spans_off_loop_thread, 1u);
  EXPECT_EQ(rec_->count(Kind::kSpanStart), 0u);
  EXPECT_EQ(rec_->count(Kind::kTraceStart), 1u);
  // A null handle: a non-recording scope too. Every misuse is counted as
  // refused: the two starts off the loop thread and these two.
  EXPECT_EQ(tracer_.stats().start_refused, 2u);
  TraceScope null_trace = tracer_.StartTrace(ContextHandle(), "x");
  SpanScope null_span = tracer_.StartSpan(ContextHandle(), "x");
  EXPECT_FALSE(null_trace.recording());
  EXPECT_TRUE(null_trace.trace_id().valid());  // Ids still propagate.
  EXPECT_FALSE(null_span.recording());
  EXPECT_TRUE(null_span.Finish().ok());
  EXPECT_TRUE(null_trace.Finish().ok());
  EXPECT_EQ(tracer_.stats().start_refused, 4u);
  EXPECT_EQ(tracer_.stats().traces_off_loop_thread, 1u);
  ASSERT_TRUE(run.Finish(ctx_).ok());
}

TEST_F(TracerTest, StartOnStaleContextIsNonRecordingAndCounted) {
  const ContextHandle gone = *loop_.NewContext("gone");
  TraceScope run = tracer_.StartTrace(gone, "run");
  SpanParent parent = run.AsParent();
  ASSERT_TRUE(run.Finish(gone).ok());
  ASSERT_TRUE(loop_.DestroyContext(gone).ok());
  ASSERT_TRUE(loop_.RunUntilIdle().ok());  // The destroy marker ran.
  TraceScope t = tracer_.StartTrace(gone, "late");
  SpanScope s = tracer_.StartSpan(gone, "late");
  EXPECT_FALSE(t.recording());
  EXPECT_FALSE(s.recording());
  EXPECT_EQ(tracer_.stats().traces_on_stale_context, 1u);
  EXPECT_EQ(tracer_.stats().spans_on_stale_context, 1u);
  EXPECT_EQ(rec_->count(Kind::kTraceStart), 1u);
}

TEST_F(TracerTest, ChildContextInheritsCurrentSpan) {
  TraceScope run = tracer_.StartTrace(ctx_, "run");
  SpanScope parent = tracer_.StartSpan(ctx_, "parent");
  ContextHandle child = *loop_.NewChildContext(ctx_, "child");
  SpanScope in_child = tracer_.StartSpan(child, "in child");
  ASSERT_TRUE(in_child.Finish(child).ok());
  ASSERT_TRUE(parent.Finish(ctx_).ok());
  ASSERT_TRUE(run.Finish(ctx_).ok());
  const auto starts = rec_->events(Kind::kSpanStart);
  ASSERT_EQ(starts.size(), 2u);
  EXPECT_EQ(starts[1].span().parent_span_id, starts[0].span().span_id);
}

TEST_F(TracerTest, AttributesAndErrorsReachProcessors) {
  TraceScope run = tracer_.StartTrace(ctx_, "run");
  SpanOptions o;
  o.attributes.emplace_back("model", std::string("m1"));
  SpanScope s = tracer_.StartSpan(ctx_, "llm", o);
  s.SetAttribute("tokens", int64_t{12});
  s.SetAttribute("temp", 0.5);
  s.SetError("rate limited");
  ASSERT_TRUE(s.Finish(ctx_).ok());
  ASSERT_TRUE(run.Finish(ctx_).ok());
  const SpanData d = rec_->events(Kind::kSpanEnd)[0].span();
  ASSERT_EQ(d.attributes.size(), 3u);
  EXPECT_EQ(std::get<std::string>(d.attributes[0].second), "m1");
  EXPECT_EQ(std::get<int64_t>(d.attributes[1].second), 12);
  EXPECT_EQ(std::get<double>(d.attributes[2].second), 0.5);
  EXPECT_EQ(d.status.code, StatusCode::kError);
  EXPECT_EQ(d.status.message, "rate limited");
}

// Ids and span contexts print (gtest uses operator<<; AbslStringify is what
// newer Abseil's StrCat/StrFormat use).
struct StringSink {
  std::string out;
  void Append(absl::string_view s) { out.append(s.data(), s.size()); }
};

TEST(IdsPrintTest, OperatorAndAbslStringify) {
  const TraceId t{0x0123456789abcdefULL, 0x1ULL};
  const SpanId s{0xabcULL};
  std::ostringstream os;
  os << t << " " << s;
  EXPECT_EQ(os.str(), "0123456789abcdef0000000000000001 0000000000000abc");
  EXPECT_EQ(::testing::PrintToString(s), "0000000000000abc");
  StringSink sink;
  AbslStringify(sink, t);
  AbslStringify(sink, s);
  EXPECT_EQ(sink.out, "0123456789abcdef00000000000000010000000000000abc");
  SpanContext c{t, s, kTraceFlagSampled, "k=v", true};
  EXPECT_EQ(::testing::PrintToString(c),
            "00-0123456789abcdef0000000000000001-0000000000000abc-01 "
            "tracestate=k=v remote");
  StringSink csink;
  AbslStringify(csink, SpanContext{t, s, 0, "", false});
  EXPECT_EQ(csink.out,
            "00-0123456789abcdef0000000000000001-0000000000000abc-00");
}

}  // namespace
}  // namespace ctxloop
