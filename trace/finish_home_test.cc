// Copyright 2026 The ctxloop Authors.
//
// Where finishes run: the seed scenario (openai-agents-python's "Token was
// created in a different Context") and every case [F0]..[F5] of scope.cc.

#include <atomic>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/loop/loop_thread.h"
#include "ctxloop/trace/testing/recording_processor.h"
#include "ctxloop/trace/tracer.h"
#include "gtest/gtest.h"

namespace ctxloop {
namespace {

using testing_util::RecordingProcessor;
using Kind = RecordingProcessor::Kind;

Tracer::Options WithProcessor(std::shared_ptr<RecordingProcessor> p) {
  Tracer::Options options;
  options.processors.push_back(std::move(p));
  return options;
}

int64_t TidOf(LoopThread& t) {
  int64_t tid = 0;
  EXPECT_TRUE(
      t.Invoke([&](Loop&) { tid = RecordingProcessor::ThisTid(); }).ok());
  return tid;
}

ContextHandle NewCtx(LoopThread& t, const char* name) {
  ContextHandle ctx;
  EXPECT_TRUE(t.Invoke([&](Loop& loop) { ctx = *loop.NewContext(name); }).ok());
  return ctx;
}

// On `t`'s loop thread: starts trace "run" on `ctx` into `run`, then span
// `span_name` on `ctx` into `span`.
absl::Status StartRunAndSpan(LoopThread& t, Tracer& tracer, ContextHandle ctx,
                             const char* span_name,
                             std::optional<TraceScope>& run,
                             std::optional<SpanScope>& span) {
  return t.Invoke([&](Loop&) {
    run.emplace(tracer.StartTrace(ctx, "run"));
    span.emplace(tracer.StartSpan(ctx, span_name));
  });
}

// The seed scenario: started and current on A (loop 1), consumed and
// finished on B (loop 2, another thread) with reset_current = true.
TEST(FinishHomeTest, SeedScenarioResetRunsOnOriginLoopThread) {
  auto rec = std::make_shared<RecordingProcessor>();
  Tracer tracer(WithProcessor(rec));
  LoopThread loop1, loop2;
  const ContextHandle a = NewCtx(loop1, "A");
  const ContextHandle b = NewCtx(loop2, "B");
  const int64_t loop1_tid = TidOf(loop1);

  std::optional<TraceScope> run;
  TraceId id;
  ASSERT_TRUE(loop1
                  .Invoke([&](Loop&) {
                    run.emplace(tracer.StartTrace(a, "agent run"));
                    id = run->trace_id();
                    EXPECT_EQ(*tracer.CurrentTraceId(a), id);
                  })
                  .ok());

  // The consumer on B: the trace is visible to it as an explicit parent, so
  // its own per-event spans belong to the producer's trace.
  absl::Status finish_status;
  ASSERT_TRUE(loop2
                  .Invoke([&](Loop&) {
                    SpanOptions options;
                    options.parent = run->AsParent();
                    SpanScope event_span =
                        tracer.StartSpan(b, "consume event", options);
                    EXPECT_EQ(event_span.trace_id(), id);
                    EXPECT_TRUE(event_span.Finish(b).ok());
                    FinishOptions reset;
                    reset.reset_current = true;
                    finish_status = run->Finish(b, reset);
                  })
                  .ok());
  EXPECT_TRUE(finish_status.ok()) << finish_status;

  ASSERT_TRUE(rec->WaitFor(Kind::kTraceEnd, 1));
  const auto ends = rec->events(Kind::kTraceEnd);
  ASSERT_EQ(ends.size(), 1u);
  EXPECT_EQ(ends[0].tid, loop1_tid);  // Processors ran on loop 1's thread.
  EXPECT_EQ(ends[0].trace().finish_called.ctx, b);
  EXPECT_EQ(ends[0].trace().finish_ran.ctx, a);
  EXPECT_EQ(ends[0].trace().finish_ran.thread_id, loop1_tid);
  EXPECT_FALSE(ends[0].trace().finished_off_origin);
  // A's current trace is restored, on A.
  ASSERT_TRUE(loop1
                  .Invoke([&](Loop&) {
                    EXPECT_FALSE(tracer.CurrentTraceId(a)->valid());
                  })
                  .ok());
  EXPECT_EQ(tracer.stats().finishes_posted, 1u);
}

// [F0] Same context, its loop thread: runs at once.
TEST(FinishHomeTest, SameContextFinishRunsInline) {
  auto rec = std::make_shared<RecordingProcessor>();
  Tracer tracer(WithProcessor(rec));
  Loop loop;
  ContextHandle a = *loop.NewContext("A");
  TraceScope run = tracer.StartTrace(a, "run");
  ASSERT_TRUE(run.Finish(a).ok());
  EXPECT_EQ(rec->count(Kind::kTraceEnd), 1u);  // Before any loop turn.
  EXPECT_FALSE(tracer.CurrentTraceId(a)->valid());
  EXPECT_EQ(tracer.stats().finishes_posted, 0u);
}

// [F0] Finish without a caller context, on the origin's loop thread: runs
// at once, as from the origin itself.
TEST(FinishHomeTest, FinishWithoutContextOnLoopThreadRunsInline) {
  auto rec = std::make_shared<RecordingProcessor>();
  Tracer tracer(WithProcessor(rec));
  Loop loop;
  ContextHandle a = *loop.NewContext("A");
  TraceScope run = tracer.StartTrace(a, "run");
  ASSERT_TRUE(run.Finish().ok());
  EXPECT_EQ(rec->count(Kind::kTraceEnd), 1u);  // Inside Finish.
  EXPECT_FALSE(tracer.CurrentTraceId(a)->valid());
  const auto ends = rec->events(Kind::kTraceEnd);
  EXPECT_EQ(ends[0].trace().finish_ran.ctx, a);
  EXPECT_EQ(ends[0].trace().finish_ran.context_name, "A");
  EXPECT_EQ(ends[0].trace().started.context_name, "A");
  EXPECT_TRUE(ends[0].trace().finish_called.ctx.is_null());
  EXPECT_EQ(tracer.stats().finishes_posted, 0u);
}

TEST(FinishHomeTest, FinishFromPlainThread) {
  auto rec = std::make_shared<RecordingProcessor>();
  Tracer tracer(WithProcessor(rec));
  LoopThread loop1;
  const ContextHandle a = NewCtx(loop1, "A");
  const int64_t loop1_tid = TidOf(loop1);
  std::optional<SpanScope> span;
  std::optional<TraceScope> run;
  ASSERT_TRUE(StartRunAndSpan(loop1, tracer, a, "work", run, span).ok());
  std::thread plain([&] {
    EXPECT_TRUE(span->Finish().ok());
    EXPECT_TRUE(run->Finish().ok());
  });
  plain.join();
  ASSERT_TRUE(rec->WaitFor(Kind::kTraceEnd, 1));
  for (const auto& e : rec->events()) EXPECT_EQ(e.tid, loop1_tid);
  ASSERT_TRUE(loop1
                  .Invoke([&](Loop&) {
                    EXPECT_FALSE(tracer.CurrentTraceId(a)->valid());
                    EXPECT_FALSE(tracer.CurrentSpanId(a)->valid());
                  })
                  .ok());
  const auto span_end = rec->events(Kind::kSpanEnd);
  ASSERT_EQ(span_end.size(), 1u);
  EXPECT_TRUE(span_end[0].span().finish_called.ctx.is_null());
  EXPECT_EQ(span_end[0].span().finish_ran.ctx, a);
}

TEST(FinishHomeTest, DoubleFinishIsAnError) {
  auto rec = std::make_shared<RecordingProcessor>();
  Tracer tracer(WithProcessor(rec));
  Loop loop;
  ContextHandle a = loop.root();
  TraceScope run = tracer.StartTrace(a, "run");
  SpanScope span = tracer.StartSpan(a, "s");
  ASSERT_TRUE(span.Finish(a).ok());
  EXPECT_EQ(span.Finish(a).code(), absl::StatusCode::kFailedPrecondition);
  span.SetAttribute("k", int64_t{1});  // Ignored once finished.
  ASSERT_TRUE(run.Finish(a).ok());
  EXPECT_EQ(run.Finish().code(), absl::StatusCode::kFailedPrecondition);
  TraceScope moved_to = std::move(run);
  EXPECT_EQ(moved_to.Finish(a).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(rec->count(Kind::kSpanEnd), 1u);
  EXPECT_EQ(rec->count(Kind::kTraceEnd), 1u);
}

// [F4] A scope destroyed unfinished finishes itself, on its origin.
TEST(FinishHomeTest, DestroyedUnfinishedScopesFinishOnOrigin) {
  auto rec = std::make_shared<RecordingProcessor>();
  Tracer tracer(WithProcessor(rec));
  LoopThread loop1;
  const ContextHandle a = NewCtx(loop1, "A");
  const int64_t loop1_tid = TidOf(loop1);
  std::optional<TraceScope> run;
  std::optional<SpanScope> span;
  ASSERT_TRUE(StartRunAndSpan(loop1, tracer, a, "s", run, span).ok());
  span.reset();  // Destroyed on this (non-loop) thread.
  run.reset();
  ASSERT_TRUE(rec->WaitFor(Kind::kTraceEnd, 1));
  EXPECT_EQ(rec->count(Kind::kSpanEnd), 1u);
  for (const auto& e : rec->events()) EXPECT_EQ(e.tid, loop1_tid);
  ASSERT_TRUE(loop1
                  .Invoke([&](Loop&) {
                    EXPECT_FALSE(tracer.CurrentTraceId(a)->valid());
                  })
                  .ok());

  // Assigning over an unfinished scope finishes the old one too.
  std::optional<SpanScope> first;
  ASSERT_TRUE(loop1
                  .Invoke([&](Loop&) {
                    TraceScope again = tracer.StartTrace(a, "again");
                    first.emplace(tracer.StartSpan(a, "first"));
                    *first = tracer.StartSpan(a, "second");
                    ASSERT_TRUE(first->Finish(a).ok());
                    ASSERT_TRUE(again.Finish(a).ok());
                  })
                  .ok());
  ASSERT_TRUE(rec->WaitFor(Kind::kTraceEnd, 2));
  EXPECT_EQ(rec->count(Kind::kSpanEnd), 3u);
}

// [F1] Origin context destroyed before the finish could be posted.
TEST(FinishHomeTest, OriginContextGoneFinishesOnLoopRoot) {
  auto rec = std::make_shared<RecordingProcessor>();
  Tracer tracer(WithProcessor(rec));
  LoopThread loop1;
  const ContextHandle a = NewCtx(loop1, "A");
  const int64_t loop1_tid = TidOf(loop1);
  std::optional<TraceScope> run;
  ASSERT_TRUE(loop1
                  .Invoke([&](Loop& loop) {
                    run.emplace(tracer.StartTrace(a, "run"));
                    ASSERT_TRUE(loop.DestroyContext(a).ok());
                  })
                  .ok());
  ASSERT_TRUE(loop1.Invoke([](Loop&) {}).ok());  // The destroy marker ran.
  ASSERT_TRUE(run->Finish().ok());
  ASSERT_TRUE(rec->WaitFor(Kind::kTraceEnd, 1));
  const auto ends = rec->events(Kind::kTraceEnd);
  ASSERT_EQ(ends.size(), 1u);
  EXPECT_EQ(ends[0].tid, loop1_tid);
  EXPECT_TRUE(ends[0].trace().finished_off_origin);
  EXPECT_EQ(ends[0].trace().finish_ran.ctx, loop1.root());
  EXPECT_EQ(tracer.stats().finishes_on_root, 1u);
}

// A finish posted before the origin context is destroyed runs on it (S7).
TEST(FinishHomeTest, FinishPostedBeforeContextDestroyRunsOnContext) {
  auto rec = std::make_shared<RecordingProcessor>();
  Tracer tracer(WithProcessor(rec));
  Loop loop;
  ContextHandle a = *loop.NewContext("A");
  TraceScope run = tracer.StartTrace(a, "run");
  std::thread other([&] { ASSERT_TRUE(run.Finish().ok()); });  // Posted.
  other.join();
  ASSERT_TRUE(loop.DestroyContext(a).ok());
  ASSERT_TRUE(loop.RunUntilIdle().ok());
  const auto ends = rec->events(Kind::kTraceEnd);
  ASSERT_EQ(ends.size(), 1u);
  EXPECT_FALSE(ends[0].trace().finished_off_origin);
  EXPECT_EQ(ends[0].trace().finish_ran.ctx, a);
}

// [F2] Origin loop destroyed: the finish runs on the caller's thread.
TEST(FinishHomeTest, OriginLoopGoneFinishesOnCaller) {
  auto rec = std::make_shared<RecordingProcessor>();
  Tracer tracer(WithProcessor(rec));
  std::optional<TraceScope> run;
  std::optional<SpanScope> span;
  {
    LoopThread loop1;
    const ContextHandle a = NewCtx(loop1, "A");
    ASSERT_TRUE(StartRunAndSpan(loop1, tracer, a, "s", run, span).ok());
  }
  ASSERT_TRUE(span->Finish().ok());
  ASSERT_TRUE(run->Finish().ok());
  const int64_t me = RecordingProcessor::ThisTid();
  ASSERT_EQ(rec->count(Kind::kSpanEnd), 1u);
  ASSERT_EQ(rec->count(Kind::kTraceEnd), 1u);
  for (const auto& e : rec->events(Kind::kTraceEnd)) {
    EXPECT_EQ(e.tid, me);
    EXPECT_TRUE(e.trace().finished_off_origin);
    EXPECT_TRUE(e.trace().finish_ran.ctx.is_null());
  }
  EXPECT_EQ(tracer.stats().finishes_off_origin, 2u);
}

// [F3]/[F4] A scope owned by a task the loop drops unrun at shutdown is
// still delivered, once.
TEST(FinishHomeTest, ScopeInTaskDroppedByShutdownIsDeliveredOnce) {
  auto rec = std::make_shared<RecordingProcessor>();
  Tracer tracer(WithProcessor(rec));
  Loop::Options options;
  options.max_shutdown_rounds = 1;
  options.error_handler = [](ContextHandle, const absl::Status&) {};
  Loop loop(std::move(options));
  ContextHandle a = *loop.NewContext("A");
  auto run =
      std::make_shared<std::optional<TraceScope>>(tracer.StartTrace(a, "run"));
  // Round 0 of the drain posts a task owning the scope, which lands in round
  // 1: dropped, and the scope with it.
  ASSERT_TRUE(Post(a, [run](ContextHandle here) mutable {
                (void)Post(here, [run = std::move(run)](ContextHandle) {
                  (void)(*run)->Finish();
                });
              }).ok());
  run.reset();
  absl::StatusOr<ShutdownReport> report = loop.Shutdown();
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->tasks_dropped, 1u);
  const auto ends = rec->events(Kind::kTraceEnd);
  ASSERT_EQ(ends.size(), 1u);
  EXPECT_EQ(ends[0].tid, RecordingProcessor::ThisTid());
}

// Finishes racing the origin loop's shutdown: each end exactly once.
TEST(FinishHomeTest, FinishesRacingShutdownDeliverExactlyOnce) {
  constexpr int kSpans = 400;
  auto rec = std::make_shared<RecordingProcessor>();
  Tracer tracer(WithProcessor(rec));
  auto loop1 = std::make_unique<LoopThread>();
  const ContextHandle a = NewCtx(*loop1, "A");
  std::vector<SpanScope> spans;
  std::optional<TraceScope> run;
  ASSERT_TRUE(loop1
                  ->Invoke([&](Loop&) {
                    run.emplace(tracer.StartTrace(a, "run"));
                    for (int i = 0; i < kSpans; ++i) {
                      SpanOptions o;
                      o.make_current = (i % 2) == 0;
                      spans.push_back(tracer.StartSpan(a, "s", o));
                    }
                  })
                  .ok());
  std::atomic<bool> go{false};
  std::vector<std::thread> finishers;
  finishers.reserve(4);
  for (int t = 0; t < 4; ++t) {
    finishers.emplace_back([&, t] {
      while (!go.load()) std::this_thread::yield();
      for (int i = t; i < kSpans; i += 4) EXPECT_TRUE(spans[i].Finish().ok());
    });
  }
  go = true;
  loop1.reset();  // Shuts down while the finishers run.
  for (auto& f : finishers) f.join();
  ASSERT_TRUE(run->Finish().ok());
  const auto ends = rec->events(Kind::kSpanEnd);
  ASSERT_EQ(ends.size(), static_cast<size_t>(kSpans));
  absl::flat_hash_map<uint64_t, int> seen;
  for (const auto& e : ends) ++seen[e.span().span_id.value];
  EXPECT_EQ(seen.size(), static_cast<size_t>(kSpans));
  ASSERT_EQ(rec->count(Kind::kTraceEnd), 1u);
  EXPECT_EQ(rec->events().back().kind, Kind::kTraceEnd);
}

// [F5] A trace finished on its origin A (loop 1) while
// a span of it is open on loop 2. The span's end runs on loop 2; the trace's
// end, which waited for it, runs on loop 1, after it, and `finish_ran` says
// so.
TEST(FinishHomeTest, DeferredTraceEndRunsOnTraceOriginLoop) {
  auto rec = std::make_shared<RecordingProcessor>();
  Tracer tracer(WithProcessor(rec));
  LoopThread loop1, loop2;
  const ContextHandle a = NewCtx(loop1, "A");
  const ContextHandle b = NewCtx(loop2, "B");
  const int64_t loop1_tid = TidOf(loop1);
  const int64_t loop2_tid = TidOf(loop2);
  std::optional<TraceScope> run;
  std::optional<SpanScope> span;
  ASSERT_TRUE(
      loop1.Invoke([&](Loop&) { run.emplace(tracer.StartTrace(a, "run")); })
          .ok());
  ASSERT_TRUE(loop2
                  .Invoke([&](Loop&) {
                    SpanOptions o;
                    o.parent = run->AsParent();
                    span.emplace(tracer.StartSpan(b, "on b", o));
                  })
                  .ok());
  ASSERT_TRUE(
      loop1.Invoke([&](Loop&) { ASSERT_TRUE(run->Finish(a).ok()); }).ok());
  EXPECT_EQ(rec->count(Kind::kTraceEnd), 0u);  // Waits for the open span.
  ASSERT_TRUE(
      loop2.Invoke([&](Loop&) { ASSERT_TRUE(span->Finish(b).ok()); }).ok());
  ASSERT_TRUE(rec->WaitFor(Kind::kTraceEnd, 1));
  const auto events = rec->events();
  ASSERT_EQ(events.size(), 4u);
  for (const auto& e : events) {
    const bool trace_event =
        e.kind == Kind::kTraceStart || e.kind == Kind::kTraceEnd;
    EXPECT_EQ(e.tid, trace_event ? loop1_tid : loop2_tid)
        << static_cast<int>(e.kind);
  }
  EXPECT_EQ(events[2].kind, Kind::kSpanEnd);
  EXPECT_EQ(events[3].kind, Kind::kTraceEnd);
  const SpanData& t = events[3].trace();
  EXPECT_EQ(t.finish_ran.ctx, a);
  EXPECT_EQ(t.finish_ran.thread_id, loop1_tid);
  EXPECT_FALSE(t.finished_off_origin);
  EXPECT_EQ(tracer.stats().trace_ends_posted, 1u);
}

// [F5] The same, with the trace's origin context destroyed before the span
// ends: the trace end still runs on loop 1's thread (its root context), and
// `finish_ran` still names A, where the finish ran; with loop 1 gone: where
// the span ended, saying so.
TEST(FinishHomeTest, DeferredTraceEndFallsBackLikeAFinish) {
  auto rec = std::make_shared<RecordingProcessor>();
  Tracer tracer(WithProcessor(rec));
  auto loop1 = std::make_unique<LoopThread>();
  LoopThread loop2;
  const ContextHandle b = NewCtx(loop2, "B");
  const int64_t loop1_tid = TidOf(*loop1);
  const int64_t loop2_tid = TidOf(loop2);
  // Twice: origin context destroyed, then origin loop destroyed.
  for (int round = 0; round < 2; ++round) {
    const ContextHandle a = NewCtx(*loop1, "A");
    std::optional<TraceScope> run;
    std::optional<SpanScope> span;
    ASSERT_TRUE(
        loop1->Invoke([&](Loop&) { run.emplace(tracer.StartTrace(a, "run")); })
            .ok());
    ASSERT_TRUE(loop2
                    .Invoke([&](Loop&) {
                      SpanOptions o;
                      o.parent = run->AsParent();
                      span.emplace(tracer.StartSpan(b, "on b", o));
                    })
                    .ok());
    ASSERT_TRUE(loop1
                    ->Invoke([&](Loop& loop) {
                      ASSERT_TRUE(run->Finish(a).ok());
                      ASSERT_TRUE(loop.DestroyContext(a).ok());
                    })
                    .ok());
    ASSERT_TRUE(loop1->Invoke([](Loop&) {}).ok());  // The destroy marker ran.
    if (round == 1) loop1.reset();
    ASSERT_TRUE(
        loop2.Invoke([&](Loop&) { ASSERT_TRUE(span->Finish(b).ok()); }).ok());
    ASSERT_TRUE(rec->WaitFor(Kind::kTraceEnd, round + 1));
    const auto ends = rec->events(Kind::kTraceEnd);
    ASSERT_EQ(ends.size(), static_cast<size_t>(round + 1));
    const SpanData& t = ends.back().trace();
    if (round == 0) {
      EXPECT_EQ(ends.back().tid, loop1_tid);
      EXPECT_EQ(t.finish_ran.ctx, a);
      EXPECT_EQ(t.finish_ran.thread_id, loop1_tid);
      EXPECT_FALSE(t.finished_off_origin);
    } else {
      EXPECT_TRUE(t.finished_off_origin);
      EXPECT_EQ(ends.back().tid, loop2_tid);
      EXPECT_TRUE(t.finish_ran.ctx.is_null());
      EXPECT_EQ(t.finish_ran.thread_id, loop2_tid);
    }
    EXPECT_EQ(rec->events().back().kind, Kind::kTraceEnd);
  }
}

// [F0]/[F1] `Finish(origin)` with the origin context destroyed
// behaves as [F1] says, whether called from another thread or inline on the
// loop thread.
TEST(FinishHomeTest, FinishOnDestroyedOriginFromAnotherThreadRunsOnRoot) {
  auto rec = std::make_shared<RecordingProcessor>();
  Tracer tracer(WithProcessor(rec));
  LoopThread loop1;
  const ContextHandle a = NewCtx(loop1, "A");
  const int64_t loop1_tid = TidOf(loop1);
  std::optional<TraceScope> run;
  ASSERT_TRUE(loop1
                  .Invoke([&](Loop& loop) {
                    run.emplace(tracer.StartTrace(a, "run"));
                    ASSERT_TRUE(loop.DestroyContext(a).ok());
                  })
                  .ok());
  ASSERT_TRUE(loop1.Invoke([](Loop&) {}).ok());  // The destroy marker ran.
  ASSERT_TRUE(run->Finish(a).ok());              // From this thread.
  ASSERT_TRUE(rec->WaitFor(Kind::kTraceEnd, 1));
  const auto ends = rec->events(Kind::kTraceEnd);
  ASSERT_EQ(ends.size(), 1u);
  EXPECT_EQ(ends[0].tid, loop1_tid);
  EXPECT_TRUE(ends[0].trace().finished_off_origin);
  EXPECT_EQ(ends[0].trace().finish_ran.ctx, loop1.root());
  EXPECT_EQ(ends[0].trace().finish_ran.thread_id, loop1_tid);
  EXPECT_EQ(ends[0].trace().finish_called.ctx, a);
  EXPECT_EQ(tracer.stats().finishes_on_root, 1u);
}

TEST(FinishHomeTest, InlineFinishOnDestroyedOriginRunsAsOnRoot) {
  auto rec = std::make_shared<RecordingProcessor>();
  Tracer tracer(WithProcessor(rec));
  Loop loop;
  const ContextHandle a = *loop.NewContext("A");
  TraceScope run = tracer.StartTrace(a, "run");
  SpanOptions not_current;
  not_current.make_current = false;
  SpanScope span = tracer.StartSpan(a, "s", not_current);
  ASSERT_TRUE(loop.DestroyContext(a).ok());
  ASSERT_TRUE(loop.RunUntilIdle().ok());  // The destroy marker ran.
  ASSERT_TRUE(span.Finish(a).ok());
  ASSERT_TRUE(run.Finish(a).ok());
  ASSERT_TRUE(loop.RunUntilIdle().ok());
  const auto events = rec->events();
  ASSERT_EQ(events.size(), 4u);
  EXPECT_TRUE(events[2].span().finished_off_origin);
  EXPECT_EQ(events[2].span().finish_ran.ctx, loop.root());
  EXPECT_TRUE(events[3].trace().finished_off_origin);
  EXPECT_EQ(events[3].trace().finish_ran.ctx, loop.root());
  EXPECT_EQ(tracer.stats().finishes_on_root, 2u);
}

// Found by the fuzzer: the origin destroyed but not yet freed
// (a task posted before the destroy keeps it closing, [S7]). It takes nothing
// new [S15], so a finish called now runs as [F1], on the root; its "current"
// is still undone for the task that is queued there.
TEST(FinishHomeTest, InlineFinishOnClosingOriginRunsAsOnRoot) {
  auto rec = std::make_shared<RecordingProcessor>();
  Tracer tracer(WithProcessor(rec));
  Loop loop;
  const ContextHandle a = *loop.NewContext("A");
  TraceScope run = tracer.StartTrace(a, "run");
  bool queued_task_saw_no_trace = false;
  ASSERT_TRUE(Post(a, [&](ContextHandle ctx) {
                queued_task_saw_no_trace = !tracer.CurrentTraceId(ctx)->valid();
              }).ok());
  ASSERT_TRUE(loop.DestroyContext(a).ok());   // Closing: the task is queued.
  ASSERT_TRUE(run.Finish(loop.root()).ok());  // Inline: the loop thread.
  const auto ends = rec->events(Kind::kTraceEnd);
  ASSERT_EQ(ends.size(), 1u);
  EXPECT_TRUE(ends[0].trace().finished_off_origin);
  EXPECT_EQ(ends[0].trace().finish_ran.ctx, loop.root());
  EXPECT_EQ(tracer.stats().finishes_on_root, 1u);
  ASSERT_TRUE(loop.RunUntilIdle().ok());
  EXPECT_TRUE(queued_task_saw_no_trace);
}

// Found by the fuzzer: a trace finished on its loop's root [F1] while a span
// on another loop was open; then its loop went away; the span's end delivers
// the trace end off that loop [F5]. The counters say where the end event
// ran, once: off origin, no longer on the root.
TEST(FinishHomeTest, DeferredEndOffLoopAfterRootFinishIsCountedOnce) {
  auto rec = std::make_shared<RecordingProcessor>();
  Tracer tracer(WithProcessor(rec));
  auto loop1 = std::make_unique<Loop>();
  LoopThread loop2;
  const ContextHandle a = *loop1->NewContext("A");
  TraceScope run = tracer.StartTrace(a, "run");
  const SpanParent parent = run.AsParent();
  std::optional<SpanScope> span;
  ASSERT_TRUE(loop2
                  .Invoke([&](Loop& l) {
                    SpanOptions o;
                    o.parent = parent;
                    o.make_current = false;
                    span.emplace(tracer.StartSpan(l.root(), "s", o));
                  })
                  .ok());
  ASSERT_TRUE(loop1->DestroyContext(a).ok());
  ASSERT_TRUE(loop1->RunUntilIdle().ok());  // A is freed.
  ASSERT_TRUE(run.Finish(a).ok());          // [F1]; the end waits [F5].
  EXPECT_EQ(tracer.stats().finishes_on_root, 1u);
  loop1.reset();  // The trace's loop is gone.
  ASSERT_TRUE(
      loop2.Invoke([&](Loop& l) { EXPECT_TRUE(span->Finish(l.root()).ok()); })
          .ok());
  const auto ends = rec->events(Kind::kTraceEnd);
  ASSERT_EQ(ends.size(), 1u);
  EXPECT_TRUE(ends[0].trace().finished_off_origin);
  EXPECT_TRUE(ends[0].trace().finish_ran.ctx.is_null());
  EXPECT_EQ(tracer.stats().finishes_on_root, 0u);
  EXPECT_EQ(tracer.stats().finishes_off_origin, 1u);
}

// [F4] A scope that goes out of scope on its origin's loop thread ends
// there and then: "current" no longer names it, and the next span in the
// same task is not its child.
TEST(FinishHomeTest, ScopeDestroyedOnOriginLoopThreadEndsInline) {
  auto rec = std::make_shared<RecordingProcessor>();
  Tracer tracer(WithProcessor(rec));
  Loop loop;
  const ContextHandle a = *loop.NewContext("A");
  TraceScope run = tracer.StartTrace(a, "run");
  SpanId first_id;
  {
    SpanScope first = tracer.StartSpan(a, "first");
    first_id = first.span_id();
    EXPECT_EQ(*tracer.CurrentSpanId(a), first_id);
  }
  EXPECT_EQ(rec->count(Kind::kSpanEnd), 1u);  // Before any loop turn.
  EXPECT_FALSE(tracer.CurrentSpanId(a)->valid());
  SpanScope second = tracer.StartSpan(a, "second");
  ASSERT_TRUE(second.Finish().ok());
  EXPECT_EQ(rec->count(Kind::kSpanEnd), 2u);
  ASSERT_TRUE(run.Finish(loop.root()).ok());  // Another context, same loop.
  EXPECT_EQ(rec->count(Kind::kTraceEnd), 1u);
  EXPECT_FALSE(tracer.CurrentTraceId(a)->valid());
  const auto starts = rec->events(Kind::kSpanStart);
  ASSERT_EQ(starts.size(), 2u);
  // A top-level span again: its parent is the root span, not the first.
  EXPECT_EQ(starts[1].span().parent_span_id, run.span_id());
  EXPECT_NE(starts[1].span().parent_span_id, first_id);
  EXPECT_EQ(tracer.stats().finishes_posted, 0u);
}

// [F5] Trace finishes on loop 1 racing their spans' ends on loop 2: every
// trace end exactly once, on loop 1's thread, after its span's end.
TEST(FinishHomeTest, TraceFinishesRacingForeignSpanEndsStayHome) {
  constexpr int kTraces = 300;
  auto rec = std::make_shared<RecordingProcessor>();
  Tracer tracer(WithProcessor(rec));
  LoopThread loop1, loop2;
  const ContextHandle a = NewCtx(loop1, "A");
  const ContextHandle b = NewCtx(loop2, "B");
  const int64_t loop1_tid = TidOf(loop1);
  std::vector<TraceScope> runs(kTraces);
  std::vector<SpanScope> spans(kTraces);
  ASSERT_TRUE(loop1
                  .Invoke([&](Loop&) {
                    TraceOptions o;
                    o.make_current = false;
                    for (auto& r : runs) r = tracer.StartTrace(a, "run", o);
                  })
                  .ok());
  ASSERT_TRUE(loop2
                  .Invoke([&](Loop&) {
                    for (int i = 0; i < kTraces; ++i) {
                      SpanOptions o;
                      o.parent = runs[i].AsParent();
                      o.make_current = false;
                      spans[i] = tracer.StartSpan(b, "s", o);
                    }
                  })
                  .ok());
  // Both loops finish at once.
  ASSERT_TRUE(Post(a, [&](ContextHandle here) {
                for (auto& r : runs) {
                  EXPECT_TRUE(r.Finish(here).ok());
                }
              }).ok());
  ASSERT_TRUE(Post(b, [&](ContextHandle here) {
                for (auto& s : spans) {
                  EXPECT_TRUE(s.Finish(here).ok());
                }
              }).ok());
  ASSERT_TRUE(rec->WaitFor(Kind::kTraceEnd, kTraces));
  absl::flat_hash_map<uint64_t, int> span_end_at;
  const auto events = rec->events();
  for (size_t i = 0; i < events.size(); ++i) {
    if (events[i].kind == Kind::kSpanEnd) {
      span_end_at[events[i].span().trace_id.low] = static_cast<int>(i);
    }
  }
  int ends = 0;
  for (size_t i = 0; i < events.size(); ++i) {
    if (events[i].kind != Kind::kTraceEnd) continue;
    ++ends;
    const SpanData& t = events[i].trace();
    EXPECT_EQ(events[i].tid, loop1_tid);
    EXPECT_EQ(t.finish_ran.ctx, a);
    EXPECT_EQ(t.finish_ran.thread_id, loop1_tid);
    ASSERT_TRUE(span_end_at.contains(t.trace_id.low));
    EXPECT_LT(span_end_at[t.trace_id.low], static_cast<int>(i));
  }
  EXPECT_EQ(ends, kTraces);
}

}  // namespace
}  // namespace ctxloop
