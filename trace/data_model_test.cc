// Copyright 2026 The ctxloop Authors.
//
// The OpenTelemetry data model as the tracer fills it (kinds, links, events,
// status, instrumentation scope, limits and dropped counts, random root span
// ids), remote parents, span contexts for injection, samplers, non-recording
// scopes, and `FinishOptions::on_finished`.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "ctxloop/loop/loop.h"
#include "ctxloop/loop/loop_thread.h"
#include "ctxloop/trace/sampler.h"
#include "ctxloop/trace/testing/recording_processor.h"
#include "ctxloop/trace/tracer.h"
#include "gtest/gtest.h"

namespace ctxloop {
namespace {

using testing_util::RecordingProcessor;
using Kind = RecordingProcessor::Kind;

class DataModelTest : public ::testing::Test {
 protected:
  std::unique_ptr<Tracer> MakeTracer(Tracer::Options options = {}) {
    options.processors.push_back(rec_);
    return std::make_unique<Tracer>(std::move(options));
  }
  const AttributeValue* Find(const Attributes& a, const std::string& key) {
    for (const auto& [k, v] : a) {
      if (k == key) return &v;
    }
    return nullptr;
  }

  std::shared_ptr<RecordingProcessor> rec_ =
      std::make_shared<RecordingProcessor>();
  Loop loop_;
  ContextHandle ctx_ = *loop_.NewContext("A");
};

TEST_F(DataModelTest, KindsLinksEventsStatusAndScopeReachProcessors) {
  Tracer::Options o;
  o.scope = InstrumentationScope{"my.lib", "1.2.3"};
  auto tracer = MakeTracer(std::move(o));
  TraceOptions to;
  to.kind = SpanKind::kServer;
  to.attributes = {{"http.method", std::string("GET")}};
  TraceScope run = tracer->StartTrace(ctx_, "request", to);
  run.SetAttribute("http.status_code", int64_t{200});
  run.AddEvent("accepted");
  run.SetStatus(StatusCode::kOk);

  const SpanContext other{TraceId{1, 2}, SpanId{3}, kTraceFlagSampled, "",
                          true};
  SpanOptions so;
  so.kind = SpanKind::kClient;
  so.links = {SpanLink{other, {{"why", std::string("batch")}}, 0}};
  SpanScope span = tracer->StartSpan(ctx_, "call", so);
  span.AddEvent("retry", {{"attempt", int64_t{2}}});
  span.SetStatus(StatusCode::kUnset);  // Ignored.
  span.SetError("timeout");
  span.SetStatus(StatusCode::kError, "still timeout");
  ASSERT_TRUE(span.Finish().ok());
  run.SetStatus(StatusCode::kError, "late");  // Ok is final.
  ASSERT_TRUE(run.Finish().ok());

  const auto spans = rec_->events(Kind::kSpanEnd);
  ASSERT_EQ(spans.size(), 1u);
  const SpanData& s = spans[0].span();
  EXPECT_EQ(s.kind, SpanKind::kClient);
  ASSERT_EQ(s.links.size(), 1u);
  EXPECT_EQ(s.links[0].context, other);
  ASSERT_EQ(s.events.size(), 1u);
  EXPECT_EQ(s.events[0].name, "retry");
  EXPECT_GE(s.events[0].time, s.start_time);
  EXPECT_LE(s.events[0].time, s.end_time);
  EXPECT_EQ(s.status.code, StatusCode::kError);
  EXPECT_EQ(s.status.message, "still timeout");
  EXPECT_EQ(s.scope.name, "my.lib");
  EXPECT_EQ(s.scope.version, "1.2.3");
  EXPECT_EQ(s.started.context_name, "A");
  EXPECT_EQ(s.finish_ran.context_name, "A");
  EXPECT_EQ(s.trace_flags, kTraceFlagSampled);

  const auto traces = rec_->events(Kind::kTraceEnd);
  ASSERT_EQ(traces.size(), 1u);
  const SpanData& t = traces[0].trace();
  EXPECT_EQ(t.kind, SpanKind::kServer);
  EXPECT_EQ(t.status.code, StatusCode::kOk);
  EXPECT_TRUE(t.status.message.empty());
  ASSERT_EQ(t.attributes.size(), 2u);
  EXPECT_EQ(std::get<int64_t>(*Find(t.attributes, "http.status_code")), 200);
  ASSERT_EQ(t.events.size(), 1u);
  EXPECT_EQ(t.scope.name, "my.lib");
  // A top-level span's parent is the trace's root span, known at its start.
  EXPECT_TRUE(t.is_root());
  EXPECT_FALSE(s.is_root());
  EXPECT_EQ(s.parent_span_id, t.span_id);
  EXPECT_EQ(rec_->events(Kind::kSpanStart)[0].span().parent_span_id, t.span_id);
}

TEST_F(DataModelTest, LimitsDropAndCount) {
  Tracer::Options o;
  o.limits.attribute_count = 2;
  o.limits.attribute_value_length = 4;
  o.limits.event_count = 1;
  o.limits.link_count = 1;
  o.limits.attributes_per_event = 1;
  o.limits.attributes_per_link = 1;
  auto tracer = MakeTracer(std::move(o));
  TraceScope run = tracer->StartTrace(ctx_, "run");
  SpanOptions so;
  so.attributes = {
      {"a", std::string("abcdefgh")}, {"b", int64_t{1}}, {"c", int64_t{2}}};
  const SpanContext l{TraceId{1, 2}, SpanId{3}, 0, "", false};
  so.links = {SpanLink{l, {{"x", true}, {"y", false}}, 0}, SpanLink{l, {}, 0}};
  SpanScope span = tracer->StartSpan(ctx_, "s", so);
  span.SetAttribute(
      "a",
      std::string(
          "\xc3\xa9\xc3\xa9\xc3\xa9"));  // Replaces; cut at a UTF-8 boundary.
  span.SetAttribute("d", int64_t{4});    // Over: dropped.
  span.AddEvent("e1", {{"p", int64_t{1}}, {"q", int64_t{2}}});
  span.AddEvent("e2");  // Over: dropped.
  ASSERT_TRUE(span.Finish().ok());
  ASSERT_TRUE(run.Finish().ok());
  const auto ends = rec_->events(Kind::kSpanEnd);
  ASSERT_EQ(ends.size(), 1u);
  const SpanData& s = ends[0].span();
  ASSERT_EQ(s.attributes.size(), 2u);
  EXPECT_EQ(std::get<std::string>(*Find(s.attributes, "a")),
            "\xc3\xa9\xc3\xa9");
  EXPECT_EQ(std::get<int64_t>(*Find(s.attributes, "b")), 1);
  EXPECT_EQ(s.dropped_attributes_count, 2u);  // "c" at start, "d" later.
  ASSERT_EQ(s.links.size(), 1u);
  EXPECT_EQ(s.dropped_links_count, 1u);
  EXPECT_EQ(s.links[0].attributes.size(), 1u);
  EXPECT_EQ(s.links[0].dropped_attributes_count, 1u);
  ASSERT_EQ(s.events.size(), 1u);
  EXPECT_EQ(s.dropped_events_count, 1u);
  EXPECT_EQ(s.events[0].attributes.size(), 1u);
  EXPECT_EQ(s.events[0].dropped_attributes_count, 1u);
}

TEST_F(DataModelTest, RemoteParentIsContinued) {
  auto tracer = MakeTracer();
  TraceOptions to;
  to.remote_parent = SpanContext{TraceId{0xaa, 0xbb}, SpanId{0xcc},
                                 kTraceFlagSampled, "vendor=x", true};
  TraceScope run = tracer->StartTrace(ctx_, "continued", to);
  SpanScope span = tracer->StartSpan(ctx_, "child");
  EXPECT_EQ(run.trace_id(), (TraceId{0xaa, 0xbb}));
  const SpanContext rc = run.span_context();
  EXPECT_EQ(rc.trace_id, (TraceId{0xaa, 0xbb}));
  EXPECT_TRUE(rc.span_id.valid());
  EXPECT_NE(rc.span_id, SpanId{0xcc});
  EXPECT_TRUE(rc.sampled());
  EXPECT_EQ(rc.trace_state, "vendor=x");
  EXPECT_FALSE(rc.remote);
  const SpanContext sc = span.span_context();
  EXPECT_EQ(sc.trace_id, rc.trace_id);
  EXPECT_EQ(sc.span_id, span.span_id());
  EXPECT_EQ(sc.trace_state, "vendor=x");
  EXPECT_EQ(*tracer->CurrentSpanContext(ctx_), sc);
  ASSERT_TRUE(span.Finish().ok());
  EXPECT_EQ(*tracer->CurrentSpanContext(ctx_), rc);
  ASSERT_TRUE(run.Finish().ok());
  const auto trace_ends = rec_->events(Kind::kTraceEnd);
  ASSERT_EQ(trace_ends.size(), 1u);
  const SpanData& t = trace_ends[0].trace();
  EXPECT_EQ(t.parent_span_id, SpanId{0xcc});
  EXPECT_TRUE(t.parent_is_remote);
  EXPECT_TRUE(t.is_root());
  EXPECT_EQ(t.span_id, rc.span_id);
  EXPECT_EQ(t.trace_state, "vendor=x");
  EXPECT_EQ(rec_->events(Kind::kSpanEnd)[0].span().parent_span_id, t.span_id);

  // Invalid remote parents are ignored: a new trace.
  TraceOptions bad;
  bad.remote_parent = SpanContext{TraceId{0xaa, 0xbb}, SpanId{}, 1, "", true};
  TraceScope fresh = tracer->StartTrace(ctx_, "fresh", bad);
  EXPECT_NE(fresh.trace_id(), (TraceId{0xaa, 0xbb}));
  ASSERT_TRUE(fresh.Finish().ok());
  EXPECT_FALSE(rec_->events(Kind::kTraceEnd)[1].trace().parent_span_id.valid());
}

// Two tracers (two "processes") continuing one remote trace export
// different root span ids.
TEST_F(DataModelTest, RootSpanIdsAreRandomPerTrace) {
  auto tracer = MakeTracer();
  TraceOptions to;
  to.remote_parent =
      SpanContext{TraceId{5, 6}, SpanId{7}, kTraceFlagSampled, "", true};
  TraceScope one = tracer->StartTrace(ctx_, "one", to);
  TraceScope two = tracer->StartTrace(ctx_, "two", to);
  EXPECT_EQ(one.trace_id(), two.trace_id());
  EXPECT_NE(one.span_context().span_id, two.span_context().span_id);
  ASSERT_TRUE(two.Finish().ok());
  ASSERT_TRUE(one.Finish().ok());
}

TEST_F(DataModelTest, UnsampledRemoteParentPropagatesWithoutRecording) {
  auto tracer = MakeTracer();  // ParentBased(AlwaysOn).
  TraceOptions to;
  to.remote_parent = SpanContext{TraceId{1, 9}, SpanId{8}, 0, "k=v", true};
  TraceScope run = tracer->StartTrace(ctx_, "unsampled", to);
  EXPECT_FALSE(run.recording());
  EXPECT_EQ(run.trace_id(), (TraceId{1, 9}));
  EXPECT_FALSE(run.span_context().sampled());
  EXPECT_EQ(run.span_context().trace_state, "k=v");
  EXPECT_EQ(*tracer->CurrentTraceId(ctx_), (TraceId{1, 9}));
  SpanScope span = tracer->StartSpan(ctx_, "child");
  EXPECT_FALSE(span.recording());
  EXPECT_EQ(span.trace_id(), (TraceId{1, 9}));
  EXPECT_TRUE(span.span_id().valid());
  EXPECT_FALSE(span.span_context().sampled());
  EXPECT_EQ(span.span_context().trace_state, "k=v");
  EXPECT_EQ(*tracer->CurrentSpanId(ctx_), span.span_id());
  EXPECT_EQ(*tracer->CurrentSpanContext(ctx_), span.span_context());
  // An explicit parent carries it too.
  SpanOptions explicit_parent;
  explicit_parent.parent = span.AsParent();
  explicit_parent.make_current = false;
  SpanScope grandchild = tracer->StartSpan(ctx_, "gc", explicit_parent);
  EXPECT_EQ(grandchild.trace_id(), (TraceId{1, 9}));
  EXPECT_EQ(grandchild.span_context().trace_state, "k=v");
  EXPECT_FALSE(grandchild.recording());
  ASSERT_TRUE(grandchild.Finish().ok());
  ASSERT_TRUE(span.Finish().ok());
  EXPECT_FALSE(tracer->CurrentSpanId(ctx_)->valid());
  ASSERT_TRUE(run.Finish().ok());
  EXPECT_FALSE(tracer->CurrentTraceId(ctx_)->valid());
  EXPECT_TRUE(rec_->events().empty());
  EXPECT_EQ(tracer->stats().unsampled_traces, 1u);
  EXPECT_EQ(tracer->stats().unsampled_spans, 2u);
}

TEST_F(DataModelTest, AlwaysOffRecordsNothingButKeepsIds) {
  Tracer::Options o;
  o.sampler = AlwaysOffSampler();
  auto tracer = MakeTracer(std::move(o));
  TraceScope run = tracer->StartTrace(ctx_, "off");
  EXPECT_FALSE(run.recording());
  EXPECT_TRUE(run.trace_id().valid());
  EXPECT_TRUE(run.span_context().valid());
  SpanOptions so;
  so.parent = run.AsParent();
  so.make_current = false;
  SpanScope span = tracer->StartSpan(ctx_, "s", so);
  EXPECT_EQ(span.trace_id(), run.trace_id());
  EXPECT_FALSE(span.recording());
  ASSERT_TRUE(span.Finish().ok());
  ASSERT_TRUE(run.Finish().ok());
  EXPECT_TRUE(rec_->events().empty());
}

TEST(SamplerTest, BuiltInDecisions) {
  SamplingParameters p;
  Attributes none;
  p.attributes = &none;
  p.trace_id = TraceId{0, 0x00ffffffffffffffULL};  // Highest random part.
  EXPECT_EQ(AlwaysOnSampler()->ShouldSample(p),
            SamplingDecision::kRecordAndSample);
  EXPECT_EQ(AlwaysOffSampler()->ShouldSample(p), SamplingDecision::kDrop);
  EXPECT_EQ(TraceIdRatioSampler(1.0)->ShouldSample(p),
            SamplingDecision::kRecordAndSample);
  EXPECT_EQ(TraceIdRatioSampler(0.5)->ShouldSample(p), SamplingDecision::kDrop);
  p.trace_id = TraceId{0, 1};
  EXPECT_EQ(TraceIdRatioSampler(0.5)->ShouldSample(p),
            SamplingDecision::kRecordAndSample);
  EXPECT_EQ(TraceIdRatioSampler(0.0)->ShouldSample(p), SamplingDecision::kDrop);
  EXPECT_EQ(TraceIdRatioSampler(-3)->ShouldSample(p), SamplingDecision::kDrop);
  // About the ratio over random ids.
  auto quarter = TraceIdRatioSampler(0.25);
  int sampled = 0;
  for (int i = 0; i < 4000; ++i) {
    p.trace_id = NewTraceId();
    sampled += quarter->ShouldSample(p) == SamplingDecision::kRecordAndSample;
  }
  EXPECT_GT(sampled, 800);
  EXPECT_LT(sampled, 1200);

  auto parent_based = ParentBasedSampler(AlwaysOffSampler());
  p.parent_span_id = SpanId();
  EXPECT_EQ(parent_based->ShouldSample(p), SamplingDecision::kDrop);  // Root.
  p.parent_span_id = SpanId{1};
  p.parent_trace_flags = kTraceFlagSampled;
  p.parent_remote = true;
  EXPECT_EQ(parent_based->ShouldSample(p), SamplingDecision::kRecordAndSample);
  p.parent_trace_flags = 0;
  EXPECT_EQ(parent_based->ShouldSample(p), SamplingDecision::kDrop);
  p.parent_remote = false;
  EXPECT_EQ(parent_based->ShouldSample(p), SamplingDecision::kDrop);
  p.parent_trace_flags = kTraceFlagSampled;
  EXPECT_EQ(parent_based->ShouldSample(p), SamplingDecision::kRecordAndSample);
  EXPECT_NE(parent_based->Description().find("ParentBased"), std::string::npos);
}

TEST_F(DataModelTest, RatioSamplerDecidesPerTraceConsistently) {
  Tracer::Options o;
  o.sampler = TraceIdRatioSampler(0.5);
  auto tracer = MakeTracer(std::move(o));
  int recorded = 0;
  for (int i = 0; i < 200; ++i) {
    TraceScope run = tracer->StartTrace(ctx_, "r");
    SpanScope span = tracer->StartSpan(ctx_, "s");
    EXPECT_EQ(span.recording(), run.recording());
    EXPECT_EQ(span.span_context().sampled(), run.span_context().sampled());
    recorded += run.recording();
  }
  EXPECT_GT(recorded, 50);
  EXPECT_LT(recorded, 150);
  EXPECT_EQ(rec_->count(Kind::kTraceEnd), static_cast<size_t>(recorded));
  EXPECT_EQ(rec_->count(Kind::kSpanEnd), static_cast<size_t>(recorded));
}

// A producer learns when its trace's finish has run, and where.
TEST_F(DataModelTest, OnFinishedRunsOnceWhereTheFinishRan) {
  auto tracer = MakeTracer();
  LoopThread other;
  TraceScope run = tracer->StartTrace(ctx_, "run");
  SpanOptions so;
  so.parent = run.AsParent();
  std::optional<SpanScope> open_span;
  ContextHandle b;
  ASSERT_TRUE(other
                  .Invoke([&](Loop& l) {
                    b = *l.NewContext("B");
                    open_span.emplace(tracer->StartSpan(b, "open", so));
                  })
                  .ok());
  int calls = 0;
  ExecutionSite ran;
  FinishOptions fo;
  fo.on_finished = [&](const ExecutionSite& site) {
    ++calls;
    ran = site;
  };
  // From another thread: posted home; runs when this loop turns.
  std::thread finisher(
      [&] { ASSERT_TRUE(run.Finish(ContextHandle(), fo).ok()); });
  finisher.join();
  EXPECT_EQ(calls, 0);
  ASSERT_TRUE(loop_.RunUntilIdle().ok());
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(ran.ctx, ctx_);
  EXPECT_EQ(ran.thread_id, RecordingProcessor::ThisTid());
  EXPECT_EQ(ran.context_name, "A");
  EXPECT_FALSE(tracer->CurrentTraceId(ctx_)->valid());
  // Its span is still open: the trace's end comes later [F5].
  EXPECT_EQ(rec_->count(Kind::kTraceEnd), 0u);
  ASSERT_TRUE(other.Invoke([&](Loop&) { open_span.reset(); }).ok());
  ASSERT_TRUE(loop_.RunUntilIdle().ok());
  EXPECT_EQ(rec_->count(Kind::kTraceEnd), 1u);
  EXPECT_EQ(calls, 1);

  // Non-recording scopes call it too.
  tracer->SetEnabled(false);
  TraceScope off = tracer->StartTrace(ctx_, "off");
  int off_calls = 0;
  FinishOptions fo2;
  fo2.on_finished = [&](const ExecutionSite&) { ++off_calls; };
  ASSERT_TRUE(off.Finish(ctx_, fo2).ok());
  EXPECT_EQ(off_calls, 1);
}

}  // namespace
}  // namespace ctxloop
