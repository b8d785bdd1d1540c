// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/benchmarks/trace_benchmark.cc
// -----------------------------------------------------------------------------
//
// What tracing costs. Groups (labels; `run.sh` compares within a group):
//
//   span_no_exporter      StartSpan + Finish on the span's own context, the
//                         span made current and reset, no processor.
//   span_not_current      The same without making the span current.
//   span_in_memory        With SimpleProcessor + InMemoryExporter.
//   span_batch            With BatchProcessor + a discarding exporter.
//   disabled_tracer       StartSpan + Finish on a disabled tracer.
//   finish_home           A span finished from another context of the same
//                         loop: the finish is posted to its origin and runs
//                         there (batch of 1,000, then RunUntilIdle), against
//                         a plain same-thread Post + run of the same batch.
//                         Target: at most 2x.
//   finish_home_inline    The same batch finished on its own context (runs
//                         inline): cross minus inline is the trip home.
//
// OpenTelemetry C++ runs the same workloads, in the same groups, as a peer
// built outside Bazel from its source archive (otel_peer/otel_benchmark.cc,
// which says what each of its benchmarks holds against which of these);
// run.sh runs it interleaved with this binary and prints the ratios.
//
// Each benchmark checks afterwards that every span reached the processors
// (or, for the no-processor ones, that the context's current span is back to
// the trace), and reports an error instead of a number otherwise.

#include <atomic>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "benchmark/benchmark.h"
#include "ctxloop/benchmarks/bench_util.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/trace/batch_processor.h"
#include "ctxloop/trace/exporter.h"
#include "ctxloop/trace/in_memory_exporter.h"
#include "ctxloop/trace/processor.h"
#include "ctxloop/trace/simple_processor.h"
#include "ctxloop/trace/tracer.h"

namespace {

using ctxloop_bench::AllocWindow;
using ctxloop_bench::CheckCount;
using ctxloop_bench::ReportItems;

constexpr int kBatch = 1000;

// Counts span ends (not root spans'); does nothing else. Thread-safe.
class CountingProcessor : public ctxloop::TraceProcessor {
 public:
  void OnStart(const ctxloop::SpanData&) override {}
  void OnEnd(const ctxloop::SpanData& span) override {
    if (!span.is_root()) ends.fetch_add(1, std::memory_order_relaxed);
  }
  absl::Status ForceFlush(absl::Duration) override { return absl::OkStatus(); }
  absl::Status Shutdown(absl::Duration) override { return absl::OkStatus(); }
  std::atomic<int64_t> ends{0};
};

// Accepts and forgets every batch.
class DiscardingExporter : public ctxloop::SpanExporter {
 public:
  absl::Status Export(absl::Span<const ctxloop::SpanData> batch) override {
    items.fetch_add(static_cast<int64_t>(batch.size()),
                    std::memory_order_relaxed);
    return absl::OkStatus();
  }
  std::atomic<int64_t> items{0};
};

ctxloop::Tracer::Options With(
    std::shared_ptr<ctxloop::TraceProcessor> processor) {
  ctxloop::Tracer::Options options;
  if (processor != nullptr) options.processors.push_back(std::move(processor));
  return options;
}

ctxloop::SpanOptions NotCurrent() {
  ctxloop::SpanOptions o;
  o.make_current = false;
  return o;
}

// Runs StartSpan + Finish(ctx) `kBatch` times per iteration under a trace.
void SpanLoop(benchmark::State& state, ctxloop::Tracer& tracer,
              ctxloop::Loop& loop, bool make_current) {
  ctxloop::ContextHandle ctx = loop.root();
  ctxloop::TraceScope run = tracer.StartTrace(ctx, "bench");
  AllocWindow allocs;
  for (auto _ : state) {
    for (int i = 0; i < kBatch; ++i) {
      // Made current is the default: no `SpanOptions` to build.
      ctxloop::SpanScope span =
          make_current ? tracer.StartSpan(ctx, "span")
                       : tracer.StartSpan(ctx, "span", NotCurrent());
      benchmark::DoNotOptimize(span.span_id());
      (void)span.Finish(ctx);
    }
  }
  ReportItems(state, kBatch, allocs);
  // Every span reset its "current": only the trace is current again.
  if (tracer.enabled() && tracer.CurrentSpanId(ctx)->valid()) {
    state.SkipWithError("a finished span is still current");
  }
  (void)run.Finish(ctx);
}

void BM_Ctxloop_SpanStartFinish_NoProcessor(benchmark::State& state) {
  ctxloop::Loop loop;
  ctxloop::Tracer tracer(With(nullptr));
  SpanLoop(state, tracer, loop, /*make_current=*/true);
  state.SetLabel("span_no_exporter");
}

void BM_Ctxloop_SpanStartFinish_NotCurrent(benchmark::State& state) {
  ctxloop::Loop loop;
  auto counter = std::make_shared<CountingProcessor>();
  ctxloop::Tracer tracer(With(counter));
  SpanLoop(state, tracer, loop, /*make_current=*/false);
  CheckCount(state, "span ends", counter->ends.load(),
             static_cast<int64_t>(state.iterations()) * kBatch);
  state.SetLabel("span_not_current");
}

void BM_Ctxloop_SpanStartFinish_InMemory(benchmark::State& state) {
  ctxloop::Loop loop;
  auto exporter = std::make_shared<ctxloop::InMemoryExporter>();
  ctxloop::Tracer tracer(
      With(std::make_shared<ctxloop::SimpleProcessor>(exporter)));
  ctxloop::ContextHandle ctx = loop.root();
  ctxloop::TraceScope run = tracer.StartTrace(ctx, "bench");
  int64_t exported = 0;
  AllocWindow allocs;
  for (auto _ : state) {
    for (int i = 0; i < kBatch; ++i) {
      ctxloop::SpanScope span = tracer.StartSpan(ctx, "span");
      (void)span.Finish(ctx);
    }
    allocs.Pause();
    state.PauseTiming();  // Keep memory bounded; not part of the span cost.
    exported += static_cast<int64_t>(exporter->size());
    exporter->Clear();
    state.ResumeTiming();
    allocs.Resume();
  }
  ReportItems(state, kBatch, allocs);
  CheckCount(state, "spans exported", exported,
             static_cast<int64_t>(state.iterations()) * kBatch);
  (void)run.Finish(ctx);
  state.SetLabel("span_in_memory");
}

void BM_Ctxloop_SpanStartFinish_Batch(benchmark::State& state) {
  ctxloop::Loop loop;
  auto exporter = std::make_shared<DiscardingExporter>();
  ctxloop::BatchProcessor::Options options;
  options.max_queue_size = 1 << 16;
  options.max_batch_size = 512;
  options.on_error = [](const absl::Status&) {};
  std::shared_ptr<ctxloop::BatchProcessor> batch =
      *ctxloop::BatchProcessor::Create(exporter, std::move(options));
  ctxloop::Tracer tracer(With(batch));
  ctxloop::ContextHandle ctx = loop.root();
  ctxloop::TraceScope run = tracer.StartTrace(ctx, "bench");
  AllocWindow allocs;
  for (auto _ : state) {
    for (int i = 0; i < kBatch; ++i) {
      ctxloop::SpanScope span = tracer.StartSpan(ctx, "span");
      (void)span.Finish(ctx);
    }
  }
  ReportItems(state, kBatch, allocs);
  (void)run.Finish(ctx);
  (void)tracer.ForceFlush(absl::Seconds(30));
  const ctxloop::BatchProcessor::Stats s = batch->stats();
  // Nothing lost silently: each span is exported or counted as dropped.
  CheckCount(state, "spans accounted for",
             static_cast<int64_t>(s.exported + s.dropped),
             static_cast<int64_t>(state.iterations()) * kBatch + 1);
  state.counters["dropped"] = static_cast<double>(s.dropped);
  state.SetLabel("span_batch");
}

void BM_Ctxloop_SpanStartFinish_Disabled(benchmark::State& state) {
  ctxloop::Loop loop;
  ctxloop::Tracer tracer(With(nullptr));
  tracer.SetEnabled(false);
  SpanLoop(state, tracer, loop, /*make_current=*/true);
  state.SetLabel("disabled_tracer");
}

// Finishes a batch of spans started on context A, from A itself (inline) or
// from context B of the same loop (posted home to A); only the finishes and
// the loop turn that runs them are timed. Spans are not made current: this
// measures the trip home, not the depth of a thousand current spans.
void FinishBatch(benchmark::State& state, bool from_other_context) {
  ctxloop::Loop loop;
  auto counter = std::make_shared<CountingProcessor>();
  ctxloop::Tracer tracer(With(counter));
  ctxloop::ContextHandle a = *loop.NewContext("A");
  ctxloop::ContextHandle b = *loop.NewContext("B");
  const ctxloop::ContextHandle from = from_other_context ? b : a;
  ctxloop::TraceScope run = tracer.StartTrace(a, "bench");
  std::vector<ctxloop::SpanScope> spans;
  spans.reserve(kBatch);
  ctxloop::SpanOptions o;
  o.make_current = false;
  AllocWindow allocs;
  for (auto _ : state) {
    allocs.Pause();
    state.PauseTiming();
    for (int i = 0; i < kBatch; ++i) {
      spans.push_back(tracer.StartSpan(a, "span", o));
    }
    state.ResumeTiming();
    allocs.Resume();
    for (ctxloop::SpanScope& s : spans) (void)s.Finish(from);
    (void)loop.RunUntilIdle();
    allocs.Pause();
    state.PauseTiming();
    spans.clear();
    state.ResumeTiming();
    allocs.Resume();
  }
  ReportItems(state, kBatch, allocs);
  CheckCount(state, "span ends", counter->ends.load(),
             static_cast<int64_t>(state.iterations()) * kBatch);
  (void)run.Finish(a);
}

// A span finished from context B of the same loop: posted home to A.
void BM_Ctxloop_CrossContextFinish(benchmark::State& state) {
  FinishBatch(state, /*from_other_context=*/true);
  state.SetLabel("finish_home");
}

// The same batch finished on its own context (inline, nothing posted): the
// difference to BM_Ctxloop_CrossContextFinish is the price of going home.
void BM_Ctxloop_SameContextFinish(benchmark::State& state) {
  FinishBatch(state, /*from_other_context=*/false);
  state.SetLabel("finish_home_inline");
}

// The reference for finish_home: the same batch as plain same-thread posts.
void BM_Reference_SameThreadPost(benchmark::State& state) {
  ctxloop::Loop loop;
  ctxloop::ContextHandle a = *loop.NewContext("A");
  int64_t ran = 0;
  AllocWindow allocs;
  for (auto _ : state) {
    for (int i = 0; i < kBatch; ++i) {
      (void)ctxloop::Post(a, [&ran](ctxloop::ContextHandle) { ++ran; });
    }
    (void)loop.RunUntilIdle();
  }
  ReportItems(state, kBatch, allocs);
  CheckCount(state, "tasks run", ran,
             static_cast<int64_t>(state.iterations()) * kBatch);
  state.SetLabel("finish_home");
}

BENCHMARK(BM_Ctxloop_SpanStartFinish_NoProcessor)->UseRealTime();
BENCHMARK(BM_Ctxloop_SpanStartFinish_NotCurrent)->UseRealTime();
BENCHMARK(BM_Ctxloop_SpanStartFinish_InMemory)->UseRealTime();
BENCHMARK(BM_Ctxloop_SpanStartFinish_Batch)->UseRealTime();
BENCHMARK(BM_Ctxloop_SpanStartFinish_Disabled)->UseRealTime();
BENCHMARK(BM_Ctxloop_CrossContextFinish)->UseRealTime();
BENCHMARK(BM_Ctxloop_SameContextFinish)->UseRealTime();
BENCHMARK(BM_Reference_SameThreadPost)->UseRealTime();

}  // namespace
