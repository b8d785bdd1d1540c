// Copyright 2026 The ctxloop Authors.
//
// A trace finished from another thread still runs its finish on its origin
// context when the origin loop is embedded in a host's loop: on a base the
// host owns and dispatches (`Loop::Options::host_base`), and driven by a
// poll() host (`BackendFd`/`BackendTimeout`/`RunReady`), also after the host
// let the cross-thread bound fill up ([S21]: finishes skip it).

#include <event2/event.h>

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/loop/loop_thread.h"
#include "ctxloop/loop/testing/poll_driver.h"
#include "ctxloop/trace/testing/recording_processor.h"
#include "ctxloop/trace/tracer.h"
#include "gtest/gtest.h"

namespace ctxloop {
namespace {

using testing_util::PollDriver;
using testing_util::RecordingProcessor;
using Kind = RecordingProcessor::Kind;

Tracer::Options WithProcessor(std::shared_ptr<RecordingProcessor> p) {
  Tracer::Options options;
  options.processors.push_back(std::move(p));
  return options;
}

// Starts a trace and a span on `a` (the host's thread, current on `a`),
// then finishes both from context `b` of another loop thread with
// reset_current, as a consumer on another thread would.
void StartHereFinishThere(Tracer& tracer, ContextHandle a, LoopThread& other,
                          ContextHandle b) {
  std::optional<TraceScope> run(tracer.StartTrace(a, "run"));
  std::optional<SpanScope> span(tracer.StartSpan(a, "step"));
  ASSERT_TRUE(tracer.CurrentTraceId(a)->valid());
  ASSERT_TRUE(other
                  .Invoke([&](Loop&) {
                    FinishOptions reset;
                    reset.reset_current = true;
                    EXPECT_TRUE(span->Finish(b, reset).ok());
                    EXPECT_TRUE(run->Finish(b, reset).ok());
                  })
                  .ok());
}

void ExpectFinishedHome(RecordingProcessor& rec, ContextHandle a,
                        ContextHandle b, int64_t host_tid) {
  const auto ends = rec.events(Kind::kTraceEnd);
  ASSERT_EQ(ends.size(), 1u);
  EXPECT_EQ(ends[0].tid, host_tid);
  EXPECT_EQ(ends[0].trace().finish_called.ctx, b);
  EXPECT_EQ(ends[0].trace().finish_ran.ctx, a);
  EXPECT_EQ(ends[0].trace().finish_ran.thread_id, host_tid);
  EXPECT_FALSE(ends[0].trace().finished_off_origin);
  const auto spans = rec.events(Kind::kSpanEnd);
  ASSERT_EQ(spans.size(), 1u);
  EXPECT_EQ(spans[0].tid, host_tid);
  EXPECT_EQ(spans[0].span().finish_ran.ctx, a);
}

TEST(EmbeddedFinishTest, AdoptedBaseFinishRunsOnOriginContext) {
  auto rec = std::make_shared<RecordingProcessor>();
  Tracer tracer(WithProcessor(rec));
  event_base* base = event_base_new();
  ASSERT_NE(base, nullptr);
  {
    Loop::Options options;
    options.host_base = base;
    absl::StatusOr<std::unique_ptr<Loop>> loop =
        Loop::Create(std::move(options));
    ASSERT_TRUE(loop.ok()) << loop.status();
    const ContextHandle a = *(*loop)->NewContext("A");
    LoopThread other;
    ContextHandle b;
    ASSERT_TRUE(other.Invoke([&](Loop& l) { b = *l.NewContext("B"); }).ok());
    StartHereFinishThere(tracer, a, other, b);
    // The host's own dispatch runs the finish that came home.
    const absl::Time end = absl::Now() + absl::Seconds(10);
    while (rec->count(Kind::kTraceEnd) == 0 && absl::Now() < end) {
      event_base_loop(base, EVLOOP_ONCE);
    }
    ExpectFinishedHome(*rec, a, b, RecordingProcessor::ThisTid());
    EXPECT_FALSE(tracer.CurrentTraceId(a)->valid());  // Reset, on A.
  }
  event_base_free(base);
}

TEST(EmbeddedFinishTest, DrivenLoopFinishRunsOnOriginContext) {
  auto rec = std::make_shared<RecordingProcessor>();
  Tracer tracer(WithProcessor(rec));
  Loop loop;
  PollDriver host(&loop);
  ASSERT_TRUE(host.status().ok()) << host.status();
  const ContextHandle a = *loop.NewContext("A");
  LoopThread other;
  ContextHandle b;
  ASSERT_TRUE(other.Invoke([&](Loop& l) { b = *l.NewContext("B"); }).ok());
  StartHereFinishThere(tracer, a, other, b);
  ASSERT_TRUE(host.RunUntil([&] { return rec->count(Kind::kTraceEnd) == 1; },
                            absl::Seconds(10)));
  ExpectFinishedHome(*rec, a, b, RecordingProcessor::ThisTid());
  EXPECT_FALSE(tracer.CurrentTraceId(a)->valid());
}

// [S21] The host stopped driving and the cross-thread bound is full: the
// finish is still accepted (it skips the bound) and runs on its origin
// context once the host drives again.
TEST(EmbeddedFinishTest, DrivenLoopFinishGetsHomeThroughAFullBound) {
  auto rec = std::make_shared<RecordingProcessor>();
  Tracer tracer(WithProcessor(rec));
  Loop::Options options;
  options.max_pending_foreign = 1;
  absl::StatusOr<std::unique_ptr<Loop>> made = Loop::Create(std::move(options));
  ASSERT_TRUE(made.ok());
  Loop& loop = **made;
  PollDriver host(&loop);
  ASSERT_TRUE(host.status().ok()) << host.status();
  const ContextHandle a = *loop.NewContext("A");
  LoopThread other;
  ContextHandle b;
  ASSERT_TRUE(other.Invoke([&](Loop& l) { b = *l.NewContext("B"); }).ok());
  std::atomic<int> ran{0};
  ASSERT_TRUE(other
                  .Invoke([&](Loop&) {
                    EXPECT_TRUE(
                        Post(a, [&](ContextHandle) { ran.fetch_add(1); }).ok());
                    EXPECT_EQ(Post(a, [](ContextHandle) {}).code(),
                              absl::StatusCode::kResourceExhausted);
                  })
                  .ok());
  StartHereFinishThere(tracer, a, other, b);
  EXPECT_EQ(rec->count(Kind::kTraceEnd), 0u);  // Not driven yet.
  ASSERT_TRUE(host.RunUntil([&] { return rec->count(Kind::kTraceEnd) == 1; },
                            absl::Seconds(10)));
  ExpectFinishedHome(*rec, a, b, RecordingProcessor::ThisTid());
  EXPECT_EQ(ran.load(), 1);
}

}  // namespace
}  // namespace ctxloop
