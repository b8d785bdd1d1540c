// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/benchmarks/growth_benchmark.cc
// -----------------------------------------------------------------------------
//
// How ctxloop's costs grow with the state a loop holds (ctxloop only; the
// peers are in loop_benchmark.cc). Each benchmark reports `ns_per_item` and
// `allocs_per_item` like every other (bench_util.h); the memory ones also
// report bytes. `tools/plot_growth.py` draws the curves from this binary's
// JSON output (see benchmarks/README.md for the command).
//
// Groups (labels):
//
//   growth_post_pending_timers     same-thread Post + run (batches of 10,000)
//                                  on a loop with 0, 1k, 100k or 1M timers
//                                  pending (1 hour out).
//   growth_cancel_pending_timers   PostDelayed(1 s) + Cancel (batches of
//                                  10,000) with the same pending timers.
//   growth_post_burst_fresh        a burst of N same-thread posts, then
//                                  RunUntilIdle, into a loop that never held
//                                  N tasks (a new loop per burst, made and
//                                  destroyed outside the timing).
//   growth_post_burst_fresh_trimmed  the same, with the freed heap handed
//                                  back to the kernel after each burst
//                                  (malloc_trim): every burst faults in fresh
//                                  pages, as a process's first burst does.
//   growth_post_burst_warm         the same burst into a loop that already ran
//                                  one burst of N (capacity reached).
//   growth_context_create_destroy  create 1M contexts, then destroy them, with
//                                  0 or 1M other contexts live (and a batch of
//                                  10k with none live, cheap enough for the
//                                  smoke test); the counters
//                                  `create_ns` and `destroy_ns` split the
//                                  per-context wall time, `create_cpu_ns` and
//                                  `destroy_cpu_ns` the thread's CPU time.
//   growth_context_memory          NewContext, 100,000 on a fresh loop; the
//                                  counter `bytes_per_item` is the heap the
//                                  contexts and the loop's growing tables
//                                  hold (glibc's in-use bytes, chunk headers
//                                  included) per context.
//   growth_idle_stream_memory      MakeStream + Attach of a sink, nothing
//                                  emitted, 1,000 per batch; `bytes_per_item`
//                                  per idle stream (writer + subscription).
//
// Sizes above 100k take seconds each: the smoke test skips the 1M variants
// (BUILD.bazel); run.sh and a plain run include them.

#include <malloc.h>
#include <time.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "benchmark/benchmark.h"
#include "ctxloop/benchmarks/alloc_counter.h"
#include "ctxloop/benchmarks/bench_util.h"
#include "ctxloop/loop/context_handle.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/stream/stream.h"

namespace {

using ctxloop_bench::AllocWindow;
using ctxloop_bench::CheckCount;
using ctxloop_bench::HeapBytesInUse;
using ctxloop_bench::ReportItems;

constexpr int kBatch = 10000;

// Schedules `n` delayed tasks one hour out on `ctx` (they stay pending for
// the whole benchmark and are dropped when the loop is destroyed). Returns
// the number that failed.
int64_t AddPendingTimers(ctxloop::ContextHandle ctx, int64_t n,
                         int64_t* fired) {
  int64_t errors = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (!ctxloop::PostDelayed(ctx, absl::Hours(1),
                              [fired](ctxloop::ContextHandle) { ++*fired; })
             .ok()) {
      ++errors;
    }
  }
  return errors;
}

// --- Pending timers
// ------------------------------------------------------------

void BM_Ctxloop_PostRun_PendingTimers(benchmark::State& state) {
  state.SetLabel("growth_post_pending_timers");
  ctxloop::Loop loop;
  const ctxloop::ContextHandle ctx = *loop.NewContext("bench");
  int64_t fired = 0;
  int64_t errors = AddPendingTimers(ctx, state.range(0), &fired);
  int64_t ran = 0;
  AllocWindow allocs;
  for (auto _ : state) {
    for (int i = 0; i < kBatch; ++i) {
      if (!ctxloop::Post(ctx, [&ran](ctxloop::ContextHandle) { ++ran; }).ok()) {
        ++errors;
      }
    }
    if (!loop.RunUntilIdle().ok()) ++errors;
  }
  ReportItems(state, kBatch, allocs);
  CheckCount(state, "failed calls", errors, 0) &&
      CheckCount(state, "tasks run", ran,
                 int64_t{kBatch} * state.iterations()) &&
      CheckCount(state, "pending timers that fired", fired, 0);
}

void BM_Ctxloop_TimerScheduleCancel_PendingTimers(benchmark::State& state) {
  state.SetLabel("growth_cancel_pending_timers");
  ctxloop::Loop loop;
  const ctxloop::ContextHandle ctx = *loop.NewContext("bench");
  int64_t fired = 0;
  int64_t errors = AddPendingTimers(ctx, state.range(0), &fired);
  std::vector<ctxloop::DelayedTaskHandle> handles;
  handles.reserve(kBatch);
  AllocWindow allocs;
  for (auto _ : state) {
    for (int i = 0; i < kBatch; ++i) {
      absl::StatusOr<ctxloop::DelayedTaskHandle> h = ctxloop::PostDelayed(
          ctx, absl::Seconds(1), [&fired](ctxloop::ContextHandle) { ++fired; });
      if (h.ok()) {
        handles.push_back(*h);
      } else {
        ++errors;
      }
    }
    for (const ctxloop::DelayedTaskHandle& h : handles) {
      if (!ctxloop::Cancel(h)) ++errors;
    }
    handles.clear();
  }
  ReportItems(state, kBatch, allocs);
  if (!loop.RunUntilIdle().ok()) ++errors;
  CheckCount(state, "failed calls", errors, 0) &&
      CheckCount(state, "timers that fired", fired, 0);
}

// --- Post bursts
// ---------------------------------------------------------------

// Posts `n` tasks to `ctx` and runs them; returns the number of failed calls.
int64_t Burst(ctxloop::Loop& loop, ctxloop::ContextHandle ctx, int64_t n,
              int64_t* ran) {
  int64_t errors = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (!ctxloop::Post(ctx, [ran](ctxloop::ContextHandle) { ++*ran; }).ok()) {
      ++errors;
    }
  }
  if (!loop.RunUntilIdle().ok()) ++errors;
  return errors;
}

// `trim`: after each burst, also hand the freed heap back to the kernel
// (malloc_trim), so that the next burst faults in fresh pages as the first
// burst of a process does; without it, run.sh's malloc tunables keep the
// freed memory in the process and the next fresh loop reuses warm pages.
void PostBurstFreshLoop(benchmark::State& state, bool trim) {
  const int64_t n = state.range(0);
  int64_t ran = 0;
  int64_t errors = 0;
  AllocWindow allocs;
  for (auto _ : state) {
    allocs.Pause();
    state.PauseTiming();
    auto loop = std::make_unique<ctxloop::Loop>();
    const ctxloop::ContextHandle ctx = *loop->NewContext("bench");
    state.ResumeTiming();
    allocs.Resume();
    errors += Burst(*loop, ctx, n, &ran);
    allocs.Pause();
    state.PauseTiming();
    loop.reset();
    if (trim) malloc_trim(0);
    state.ResumeTiming();
    allocs.Resume();
  }
  ReportItems(state, n, allocs);
  CheckCount(state, "failed calls", errors, 0) &&
      CheckCount(state, "tasks run", ran, n * state.iterations());
}

void BM_Ctxloop_PostBurst_FreshLoop(benchmark::State& state) {
  state.SetLabel("growth_post_burst_fresh");
  PostBurstFreshLoop(state, /*trim=*/false);
}

void BM_Ctxloop_PostBurst_FreshLoopTrimmed(benchmark::State& state) {
  state.SetLabel("growth_post_burst_fresh_trimmed");
  PostBurstFreshLoop(state, /*trim=*/true);
}

void BM_Ctxloop_PostBurst_WarmLoop(benchmark::State& state) {
  state.SetLabel("growth_post_burst_warm");
  const int64_t n = state.range(0);
  ctxloop::Loop loop;
  const ctxloop::ContextHandle ctx = *loop.NewContext("bench");
  int64_t ran = 0;
  int64_t errors = Burst(loop, ctx, n, &ran);  // The loop has held n tasks.
  ran = 0;
  AllocWindow allocs;
  for (auto _ : state) {
    errors += Burst(loop, ctx, n, &ran);
  }
  ReportItems(state, n, allocs);
  CheckCount(state, "failed calls", errors, 0) &&
      CheckCount(state, "tasks run", ran, n * state.iterations());
}

// --- Contexts
// ------------------------------------------------------------------

using Clock = std::chrono::steady_clock;

double NsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::nano>(Clock::now() - start).count();
}

// CPU time of the calling thread, in ns (what the phase cost this thread,
// whatever else the machine runs).
double ThreadCpuNs() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

void BM_Ctxloop_ContextCreateDestroy(benchmark::State& state) {
  state.SetLabel("growth_context_create_destroy");
  const int64_t live = state.range(0);
  const int64_t batch = state.range(1);
  ctxloop::Loop loop;
  std::vector<ctxloop::ContextHandle> others;
  others.reserve(live);
  int64_t errors = 0;
  for (int64_t i = 0; i < live; ++i) {
    absl::StatusOr<ctxloop::ContextHandle> c = loop.NewContext("live");
    if (c.ok()) {
      others.push_back(*c);
    } else {
      ++errors;
    }
  }
  std::vector<ctxloop::ContextHandle> made;
  made.reserve(batch);
  double create_ns = 0;
  double destroy_ns = 0;
  double create_cpu_ns = 0;
  double destroy_cpu_ns = 0;
  AllocWindow allocs;
  for (auto _ : state) {
    const double c0 = ThreadCpuNs();
    const Clock::time_point t0 = Clock::now();
    for (int64_t i = 0; i < batch; ++i) {
      absl::StatusOr<ctxloop::ContextHandle> c = loop.NewContext("ctx");
      if (c.ok()) {
        made.push_back(*c);
      } else {
        ++errors;
      }
    }
    create_ns += NsSince(t0);
    const double c1 = ThreadCpuNs();
    create_cpu_ns += c1 - c0;
    const Clock::time_point t1 = Clock::now();
    for (const ctxloop::ContextHandle& c : made) {
      if (!loop.DestroyContext(c).ok()) ++errors;
    }
    destroy_ns += NsSince(t1);
    destroy_cpu_ns += ThreadCpuNs() - c1;
    made.clear();
  }
  ReportItems(state, batch, allocs);
  const double items = static_cast<double>(state.iterations()) * batch;
  if (items > 0) {
    state.counters["create_ns"] = create_ns / items;
    state.counters["destroy_ns"] = destroy_ns / items;
    state.counters["create_cpu_ns"] = create_cpu_ns / items;
    state.counters["destroy_cpu_ns"] = destroy_cpu_ns / items;
  }
  CheckCount(state, "failed NewContext/DestroyContext calls", errors, 0);
}

// Heap bytes per live item, over all iterations: the in-use heap after
// creating a batch minus before it, summed, over the items created.
class BytesPerItem {
 public:
  void Before() { before_ = HeapBytesInUse(); }
  void After(int64_t items) {
    bytes_ += HeapBytesInUse() - before_;
    items_ += items;
  }
  void Report(benchmark::State& state) const {
    if (items_ > 0) {
      state.counters["bytes_per_item"] =
          static_cast<double>(bytes_) / static_cast<double>(items_);
    }
  }

 private:
  int64_t before_ = 0;
  int64_t bytes_ = 0;
  int64_t items_ = 0;
};

void BM_Ctxloop_ContextMemory(benchmark::State& state) {
  state.SetLabel("growth_context_memory");
  constexpr int kContexts = 100000;
  std::vector<ctxloop::ContextHandle> made;
  made.reserve(kContexts);
  int64_t errors = 0;
  BytesPerItem bytes;
  AllocWindow allocs;
  for (auto _ : state) {
    // A fresh loop each time, so the bytes include the growth of the loop's
    // context table, not only the contexts themselves.
    allocs.Pause();
    state.PauseTiming();
    auto loop = std::make_unique<ctxloop::Loop>();
    bytes.Before();
    state.ResumeTiming();
    allocs.Resume();
    for (int i = 0; i < kContexts; ++i) {
      absl::StatusOr<ctxloop::ContextHandle> c = loop->NewContext("ctx");
      if (c.ok()) {
        made.push_back(*c);
      } else {
        ++errors;
      }
    }
    allocs.Pause();
    state.PauseTiming();
    bytes.After(kContexts);
    made.clear();
    loop.reset();
    state.ResumeTiming();
    allocs.Resume();
  }
  ReportItems(state, kContexts, allocs);
  bytes.Report(state);
  CheckCount(state, "failed NewContext calls", errors, 0);
}

void BM_Ctxloop_IdleStreamMemory(benchmark::State& state) {
  state.SetLabel("growth_idle_stream_memory");
  constexpr int kStreams = 1000;
  ctxloop::Loop loop;
  const ctxloop::ContextHandle producer = *loop.NewContext("producer");
  const ctxloop::ContextHandle consumer = *loop.NewContext("consumer");
  std::vector<ctxloop::StreamWriter<int64_t>> writers;
  std::vector<ctxloop::StreamSubscription> subs;
  writers.reserve(kStreams);
  subs.reserve(kStreams);
  int64_t errors = 0;
  int64_t events = 0;
  BytesPerItem bytes;
  AllocWindow allocs;
  for (auto _ : state) {
    allocs.Pause();
    state.PauseTiming();
    bytes.Before();
    state.ResumeTiming();
    allocs.Resume();
    for (int i = 0; i < kStreams; ++i) {
      absl::StatusOr<ctxloop::StreamPair<int64_t>> pair =
          ctxloop::MakeStream<int64_t>(producer);
      if (!pair.ok()) {
        ++errors;
        continue;
      }
      ctxloop::Sink<int64_t> sink;
      sink.on_event = [&events](ctxloop::ContextHandle, int64_t&&) {
        ++events;
      };
      sink.on_complete = [](ctxloop::ContextHandle, const absl::Status&) {};
      absl::StatusOr<ctxloop::StreamSubscription> sub =
          std::move(pair->reader).Attach(consumer, std::move(sink));
      if (!sub.ok()) {
        ++errors;
        continue;
      }
      writers.push_back(std::move(pair->writer));
      subs.push_back(*std::move(sub));
    }
    allocs.Pause();
    state.PauseTiming();
    bytes.After(kStreams);
    subs.clear();
    writers.clear();
    if (!loop.RunUntilIdle().ok()) ++errors;
    state.ResumeTiming();
    allocs.Resume();
  }
  ReportItems(state, kStreams, allocs);
  bytes.Report(state);
  CheckCount(state, "failed MakeStream/Attach calls", errors, 0) &&
      CheckCount(state, "events delivered", events, 0);
}

// Pending timers / burst sizes: 0 (or 1k) to 1M, one decade apart where it
// is cheap, then 100k and 1M.
BENCHMARK(BM_Ctxloop_PostRun_PendingTimers)
    ->ArgName("pending_timers")
    ->Arg(0)
    ->Arg(1000)
    ->Arg(100000)
    ->Arg(1000000)
    ->UseRealTime();
BENCHMARK(BM_Ctxloop_TimerScheduleCancel_PendingTimers)
    ->ArgName("pending_timers")
    ->Arg(0)
    ->Arg(1000)
    ->Arg(100000)
    ->Arg(1000000)
    ->UseRealTime();
BENCHMARK(BM_Ctxloop_PostBurst_FreshLoop)
    ->ArgName("burst")
    ->Arg(1000)
    ->Arg(10000)
    ->Arg(100000)
    ->Arg(1000000)
    ->UseRealTime();
BENCHMARK(BM_Ctxloop_PostBurst_FreshLoopTrimmed)
    ->ArgName("burst")
    ->Arg(1000)
    ->Arg(10000)
    ->Arg(100000)
    ->Arg(1000000)
    ->UseRealTime();
BENCHMARK(BM_Ctxloop_PostBurst_WarmLoop)
    ->ArgName("burst")
    ->Arg(1000)
    ->Arg(10000)
    ->Arg(100000)
    ->Arg(1000000)
    ->UseRealTime();
BENCHMARK(BM_Ctxloop_ContextCreateDestroy)
    ->ArgNames({"live", "batch"})
    ->Args({0, 10000})
    ->Args({0, 1000000})
    ->Args({1000000, 1000000})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_Ctxloop_ContextMemory)->UseRealTime();
BENCHMARK(BM_Ctxloop_IdleStreamMemory)->UseRealTime();

}  // namespace
