// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/benchmarks/stream_benchmark.cc
// -----------------------------------------------------------------------------
//
// Events per second through a stream sink. Groups:
//
//   stream_same_loop   10,000 events emitted and delivered on one loop,
//                      against 10,000 plain same-thread posts + runs (the
//                      reference). Target: at most 2x a post per event.
//   stream_cross_loop  200,000 events emitted by a producer thread pinned to
//                      the other CPU into a sink on a loop running on the
//                      benchmark thread, delivered in batches (one post per
//                      batch); timed until the sink's on_complete. Target: at
//                      least 10 million events per second.
//
// Each checks that every event arrived, in order, exactly once.

#include <sched.h>

#include <cstdint>
#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "benchmark/benchmark.h"
#include "ctxloop/benchmarks/bench_util.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/stream/stream.h"

namespace {

using ctxloop_bench::AllocWindow;
using ctxloop_bench::BenchCpus;
using ctxloop_bench::CheckCount;
using ctxloop_bench::PinnedWorker;
using ctxloop_bench::ReportItems;

constexpr int kSameLoopBatch = 10000;
constexpr int kCrossLoopEvents = 200000;

// Counts events and checks their order.
struct OrderedCount {
  int64_t next = 0;
  int64_t out_of_order = 0;
  void See(int64_t v) {
    if (v != next) ++out_of_order;
    next = v + 1;
  }
};

void BM_Ctxloop_StreamSameLoop(benchmark::State& state) {
  ctxloop::Loop loop;
  ctxloop::ContextHandle producer = *loop.NewContext("producer");
  ctxloop::ContextHandle consumer = *loop.NewContext("consumer");
  ctxloop::StreamOptions options;
  options.high_watermark = kSameLoopBatch + 1;
  options.low_watermark = 0;
  options.max_batch = kSameLoopBatch;
  auto pair = *ctxloop::MakeStream<int64_t>(producer, options);
  OrderedCount seen;
  ctxloop::Sink<int64_t> sink;
  sink.on_event = [&seen](ctxloop::ContextHandle, int64_t&& v) { seen.See(v); };
  sink.on_complete = [](ctxloop::ContextHandle, const absl::Status&) {};
  ctxloop::StreamSubscription sub =
      *std::move(pair.reader).Attach(consumer, std::move(sink));
  int64_t v = 0;
  AllocWindow allocs;
  for (auto _ : state) {
    for (int i = 0; i < kSameLoopBatch; ++i) {
      if (!pair.writer.Emit(v++).ok()) state.SkipWithError("emit refused");
    }
    (void)loop.RunUntilIdle();
  }
  ReportItems(state, kSameLoopBatch, allocs);
  CheckCount(state, "events delivered", seen.next, v);
  CheckCount(state, "events out of order", seen.out_of_order, 0);
  state.SetLabel("stream_same_loop");
}

void BM_Reference_SameThreadPostForStream(benchmark::State& state) {
  ctxloop::Loop loop;
  ctxloop::ContextHandle consumer = *loop.NewContext("consumer");
  OrderedCount seen;
  int64_t v = 0;
  AllocWindow allocs;
  for (auto _ : state) {
    for (int i = 0; i < kSameLoopBatch; ++i) {
      (void)ctxloop::Post(
          consumer, [&seen, e = v++](ctxloop::ContextHandle) { seen.See(e); });
    }
    (void)loop.RunUntilIdle();
  }
  ReportItems(state, kSameLoopBatch, allocs);
  CheckCount(state, "tasks run", seen.next, v);
  state.SetLabel("stream_same_loop");
}

void BM_Ctxloop_StreamCrossLoop(benchmark::State& state) {
  PinnedWorker worker(BenchCpus().producer_cpu);
  ctxloop::Loop loop;  // The sink's loop, on the benchmark thread.
  ctxloop::ContextHandle consumer = *loop.NewContext("consumer");
  int64_t delivered = 0, out_of_order = 0, refusals = 0;
  AllocWindow allocs;
  for (auto _ : state) {
    ctxloop::StreamOptions options;
    options.high_watermark = 1 << 16;
    options.low_watermark = 1 << 14;
    options.max_batch = 1 << 14;
    // The producer emits from a plain thread; its context only hosts
    // callbacks, which this producer does not use (it retries when full).
    auto pair = *ctxloop::MakeStream<int64_t>(loop.root(), options);
    OrderedCount seen;
    ctxloop::Sink<int64_t> sink;
    sink.on_event = [&seen](ctxloop::ContextHandle, int64_t&& v) {
      seen.See(v);
    };
    sink.on_complete = [&loop](ctxloop::ContextHandle, const absl::Status&) {
      loop.Stop();
    };
    ctxloop::StreamSubscription sub =
        *std::move(pair.reader).Attach(consumer, std::move(sink));
    ctxloop::StreamWriter<int64_t> writer = std::move(pair.writer);
    worker.Start([&writer, &refusals] {
      for (int64_t i = 0; i < kCrossLoopEvents;) {
        int64_t v = i;
        absl::Status s = writer.Emit(std::move(v));
        if (s.ok()) {
          ++i;
        } else {
          ++refusals;  // Full: the sink is behind; let it catch up.
          sched_yield();
        }
      }
      (void)writer.Complete();
    });
    (void)loop.Run();
    worker.Wait();
    delivered += seen.next;
    out_of_order += seen.out_of_order;
  }
  ReportItems(state, kCrossLoopEvents, allocs);
  CheckCount(state, "events delivered", delivered,
             static_cast<int64_t>(state.iterations()) * kCrossLoopEvents);
  CheckCount(state, "events out of order", out_of_order, 0);
  state.counters["refusals"] = static_cast<double>(refusals);
  state.SetLabel("stream_cross_loop");
}

BENCHMARK(BM_Ctxloop_StreamSameLoop)->UseRealTime();
BENCHMARK(BM_Reference_SameThreadPostForStream)->UseRealTime();
BENCHMARK(BM_Ctxloop_StreamCrossLoop)->UseRealTime();

}  // namespace
