// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/benchmarks/otel_peer/otel_benchmark.cc
// -----------------------------------------------------------------------------
//
// OpenTelemetry C++ as a benchmark peer of ctxloop's tracing: the same span
// workloads as trace_benchmark.cc (and the ContextKey Set+Reset of
// loop_benchmark.cc) against OpenTelemetry's SDK, so that `run.sh` prints
// both from one run with the ratio "ctxloop / OTel".
//
// Not part of the library and not a Bazel target: `build.sh` in this
// directory builds OpenTelemetry's SDK from a source archive and compiles
// this file against it, with the same conventions as every other benchmark
// binary (bench_util.h: `ns_per_item`, `allocs_per_item` from the counting
// allocator of alloc_counter.cc, one group label per workload; bench_main.cc's
// main()). A host without the archive skips this peer.
//
// Groups (labels) and what each OpenTelemetry benchmark holds against
// ctxloop's benchmark of the same group:
//
//   span_not_current       BM_OTel_SpanStartEnd_Simple: StartSpan + End, the
//                          span not made current, under an active parent
//                          span, SimpleSpanProcessor + an exporter that
//                          discards (it still makes a SpanData recordable per
//                          span, as every SDK exporter does). ctxloop: start +
//                          finish, not current, a processor that counts ends.
//   span_no_exporter       BM_OTel_SpanStartScopeEnd_Simple: the same with the
//                          span made current (a Scope) and reset before End.
//                          ctxloop: start + finish made current, no processor.
//   span_batch             BM_OTel_SpanStartEnd_Batch: StartSpan + End through
//                          BatchSpanProcessor (queue 65536, batches of 512, as
//                          ctxloop's) and a discarding exporter; spans the
//                          queue refused are reported as `dropped`. ctxloop's
//                          spans there are made current (more work for it).
//   disabled_tracer        BM_OTel_SpanStartEnd_NoopTracer: StartSpan + End on
//                          the API's no-op tracer (one shared static span).
//                          ctxloop: a disabled tracer.
//   context_key_set_reset  BM_OTel_ContextSetValueAttachDetach: a new Context
//                          with one value set on the current one, attached
//                          (RuntimeContext::Attach), then its token detached:
//                          what ctxloop's ContextKey Set + Reset does.
//                          BM_OTel_ContextAttachDetach: Attach + detach of a
//                          prebuilt context only (no value set per item).
//
// Every benchmark checks afterwards that its work happened (spans exported,
// the current span or context restored) and reports an error otherwise.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "benchmark/benchmark.h"
#include "ctxloop/benchmarks/bench_util.h"
#include "opentelemetry/context/context.h"
#include "opentelemetry/context/runtime_context.h"
#include "opentelemetry/nostd/shared_ptr.h"
#include "opentelemetry/nostd/span.h"
#include "opentelemetry/nostd/unique_ptr.h"
#include "opentelemetry/sdk/common/exporter_utils.h"
#include "opentelemetry/sdk/resource/resource.h"
#include "opentelemetry/sdk/trace/batch_span_processor.h"
#include "opentelemetry/sdk/trace/batch_span_processor_options.h"
#include "opentelemetry/sdk/trace/exporter.h"
#include "opentelemetry/sdk/trace/processor.h"
#include "opentelemetry/sdk/trace/recordable.h"
#include "opentelemetry/sdk/trace/simple_processor.h"
#include "opentelemetry/sdk/trace/span_data.h"
#include "opentelemetry/sdk/trace/tracer_provider.h"
#include "opentelemetry/trace/noop.h"
#include "opentelemetry/trace/scope.h"
#include "opentelemetry/trace/span.h"
#include "opentelemetry/trace/tracer.h"

namespace {

namespace context = opentelemetry::context;
namespace nostd = opentelemetry::nostd;
namespace sdktrace = opentelemetry::sdk::trace;
namespace trace_api = opentelemetry::trace;

using ctxloop_bench::AllocWindow;
using ctxloop_bench::CheckCount;
using ctxloop_bench::ReportItems;

constexpr int kBatch = 1000;  // Spans per iteration, as trace_benchmark.cc.

// Makes a SpanData per span (what the SDK's exporters do), counts the spans
// it is given and forgets them. Thread-safe (the batch processor exports from
// its own thread).
class DiscardingExporter final : public sdktrace::SpanExporter {
 public:
  explicit DiscardingExporter(std::shared_ptr<std::atomic<int64_t>> exported)
      : exported_(std::move(exported)) {}

  std::unique_ptr<sdktrace::Recordable> MakeRecordable() noexcept override {
    return std::unique_ptr<sdktrace::Recordable>(new sdktrace::SpanData());
  }

  opentelemetry::sdk::common::ExportResult Export(
      const nostd::span<std::unique_ptr<sdktrace::Recordable>>& spans) noexcept
      override {
    exported_->fetch_add(static_cast<int64_t>(spans.size()),
                         std::memory_order_relaxed);
    return opentelemetry::sdk::common::ExportResult::kSuccess;
  }

  bool ForceFlush(std::chrono::microseconds) noexcept override { return true; }
  bool Shutdown(std::chrono::microseconds) noexcept override { return true; }

 private:
  std::shared_ptr<std::atomic<int64_t>> exported_;
};

enum class Pipeline { kSimple, kBatch };

// A tracer provider with one processor (simple or batch) in front of a
// DiscardingExporter that adds to `exported`.
std::unique_ptr<sdktrace::TracerProvider> MakeProvider(
    Pipeline pipeline, std::shared_ptr<std::atomic<int64_t>> exported) {
  auto exporter = std::unique_ptr<sdktrace::SpanExporter>(
      new DiscardingExporter(std::move(exported)));
  std::unique_ptr<sdktrace::SpanProcessor> processor;
  if (pipeline == Pipeline::kSimple) {
    processor.reset(new sdktrace::SimpleSpanProcessor(std::move(exporter)));
  } else {
    sdktrace::BatchSpanProcessorOptions options;
    options.max_queue_size = 1 << 16;
    options.max_export_batch_size = 512;
    processor.reset(
        new sdktrace::BatchSpanProcessor(std::move(exporter), options));
  }
  return std::unique_ptr<sdktrace::TracerProvider>(
      new sdktrace::TracerProvider(std::move(processor)));
}

// Runs StartSpan + End `kBatch` times per iteration under an active parent
// span (the counterpart of ctxloop's trace), the child made current or not.
void SpanLoop(benchmark::State& state, trace_api::Tracer& tracer,
              bool make_current) {
  nostd::shared_ptr<trace_api::Span> parent = tracer.StartSpan("bench");
  {
    trace_api::Scope parent_scope(parent);
    AllocWindow allocs;
    for (auto _ : state) {
      for (int i = 0; i < kBatch; ++i) {
        nostd::shared_ptr<trace_api::Span> span = tracer.StartSpan("span");
        benchmark::DoNotOptimize(span.get());
        if (make_current) {
          trace_api::Scope scope(span);
          benchmark::ClobberMemory();
        }
        span->End();
      }
    }
    allocs.Pause();  // What follows is not timed.
    ReportItems(state, kBatch, allocs);
    // Every child reset its "current": the parent is current again.
    if (trace_api::Tracer::GetCurrentSpan()->GetContext().span_id() !=
        parent->GetContext().span_id()) {
      state.SkipWithError("a finished span is still current");
    }
  }
  parent->End();
}

void SimpleSpans(benchmark::State& state, bool make_current) {
  auto exported = std::make_shared<std::atomic<int64_t>>(0);
  std::unique_ptr<sdktrace::TracerProvider> provider =
      MakeProvider(Pipeline::kSimple, exported);
  nostd::shared_ptr<trace_api::Tracer> tracer = provider->GetTracer("bench");
  SpanLoop(state, *tracer, make_current);
  // The children and the parent.
  CheckCount(state, "spans exported", exported->load(),
             static_cast<int64_t>(state.iterations()) * kBatch + 1);
  provider->Shutdown();
}

void BM_OTel_SpanStartEnd_Simple(benchmark::State& state) {
  SimpleSpans(state, /*make_current=*/false);
  state.SetLabel("span_not_current");
}

void BM_OTel_SpanStartScopeEnd_Simple(benchmark::State& state) {
  SimpleSpans(state, /*make_current=*/true);
  state.SetLabel("span_no_exporter");
}

void BM_OTel_SpanStartEnd_Batch(benchmark::State& state) {
  auto exported = std::make_shared<std::atomic<int64_t>>(0);
  std::unique_ptr<sdktrace::TracerProvider> provider =
      MakeProvider(Pipeline::kBatch, exported);
  nostd::shared_ptr<trace_api::Tracer> tracer = provider->GetTracer("bench");
  SpanLoop(state, *tracer, /*make_current=*/false);
  provider->ForceFlush();
  provider->Shutdown();
  // OpenTelemetry's batch processor drops what does not fit its queue without
  // a counter of its own: dropped = started - exported.
  const int64_t started = static_cast<int64_t>(state.iterations()) * kBatch + 1;
  const int64_t done = exported->load();
  state.counters["dropped"] = static_cast<double>(started - done);
  if (done > started) CheckCount(state, "spans exported", done, started);
  state.SetLabel("span_batch");
}

void BM_OTel_SpanStartEnd_NoopTracer(benchmark::State& state) {
  trace_api::NoopTracerProvider provider;
  nostd::shared_ptr<trace_api::Tracer> tracer =
      provider.GetTracer("bench", "", "");
  int64_t invalid = 0;
  AllocWindow allocs;
  for (auto _ : state) {
    for (int i = 0; i < kBatch; ++i) {
      nostd::shared_ptr<trace_api::Span> span = tracer->StartSpan("span");
      benchmark::DoNotOptimize(span.get());
      span->End();
    }
  }
  allocs.Pause();  // What follows is not timed.
  if (tracer->StartSpan("span")->GetContext().IsValid()) ++invalid;
  CheckCount(state, "valid no-op spans", invalid, 0);
  ReportItems(state, kBatch, allocs);
  state.SetLabel("disabled_tracer");
}

constexpr char kKey[] = "bench_key";

// SetValue + Attach + detach per item: ctxloop's ContextKey Set + Reset.
void BM_OTel_ContextSetValueAttachDetach(benchmark::State& state) {
  int64_t value = 1;
  AllocWindow allocs;
  for (auto _ : state) {
    context::Context ctx =
        context::RuntimeContext::GetCurrent().SetValue(kKey, value++);
    nostd::unique_ptr<context::Token> token =
        context::RuntimeContext::Attach(ctx);
    benchmark::DoNotOptimize(token.get());
    token.reset();  // The token's destructor detaches it.
  }
  allocs.Pause();  // What follows is not timed.
  CheckCount(state, "key set after all detaches",
             context::RuntimeContext::GetCurrent().HasKey(kKey) ? 1 : 0, 0);
  ReportItems(state, 1, allocs);
  state.SetLabel("context_key_set_reset");
}

// Attach + detach of a context built once: the runtime-context stack alone.
void BM_OTel_ContextAttachDetach(benchmark::State& state) {
  const context::Context ctx =
      context::RuntimeContext::GetCurrent().SetValue(kKey, int64_t{42});
  AllocWindow allocs;
  for (auto _ : state) {
    nostd::unique_ptr<context::Token> token =
        context::RuntimeContext::Attach(ctx);
    benchmark::DoNotOptimize(token.get());
    token.reset();
  }
  allocs.Pause();  // What follows is not timed.
  CheckCount(state, "key set after all detaches",
             context::RuntimeContext::GetCurrent().HasKey(kKey) ? 1 : 0, 0);
  ReportItems(state, 1, allocs);
  state.SetLabel("context_key_set_reset");
}

BENCHMARK(BM_OTel_SpanStartEnd_Simple)->UseRealTime();
BENCHMARK(BM_OTel_SpanStartScopeEnd_Simple)->UseRealTime();
BENCHMARK(BM_OTel_SpanStartEnd_Batch)->UseRealTime();
BENCHMARK(BM_OTel_SpanStartEnd_NoopTracer)->UseRealTime();
BENCHMARK(BM_OTel_ContextSetValueAttachDetach)->UseRealTime();
BENCHMARK(BM_OTel_ContextAttachDetach)->UseRealTime();

}  // namespace
