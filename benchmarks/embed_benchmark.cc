// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/benchmarks/embed_benchmark.cc
// -----------------------------------------------------------------------------
//
// What it costs to run a ctxloop `Loop` inside another event loop, through
// the embed/ drivers, against the same loop run by its own `Run()` in the
// same binary and run:
//
//   embedded_post_same_thread   W1: 10,000 tasks posted on the loop thread,
//                               then the loop runs until the last task has
//                               run (it stops the loop: `Loop::Stop()`,
//                               `io_context::stop()`, `uv_stop()`). Per
//                               item: one post + one run.
//   embedded_post_cross_thread  W2: 100,000 tasks posted by a producer
//                               thread pinned to the other CPU to a loop
//                               running on the benchmark thread; timed until
//                               the last task has run.
//
// Contenders (the same ctxloop tasks in each):
//   BM_Ctxloop_*_OwnRun   the loop's own `Run()` (the reference);
//   BM_AsioDriven_*       `AsioDriver` in a `boost::asio::io_context(1)`,
//                         the host running `io.run()`;
//   BM_UvDriven_*         `UvDriver` in a `uv_loop_t`, the host running
//                         `uv_run(UV_RUN_DEFAULT)`.
// Cross-thread rows also report `wakeups_per_1k` (eventfd writes by the
// producer per 1,000 tasks: how often the idle loop had to be woken) and
// `host_callbacks_per_1k` for the driven ones (calls the host made into the
// driver per 1,000 tasks). The embedded W1 rows are expected to match the
// reference (the driver's work is per batch, not per task); W2 pays the
// host's poll and the driver's re-arm per wake-up.
//
// Pinning, malloc tunables and interleaving: bench_main / run.sh, as for
// loop_benchmark.cc (whose rows and names this binary leaves unchanged).

#include <uv.h>

#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "benchmark/benchmark.h"
#include "ctxloop/benchmarks/bench_util.h"
#include "ctxloop/embed/asio_driver.h"
#include "ctxloop/embed/uv_driver.h"
#include "ctxloop/loop/context_handle.h"
#include "ctxloop/loop/loop.h"

namespace {

using ctxloop_bench::AllocWindow;
using ctxloop_bench::CheckCount;
using ctxloop_bench::ReportItems;

constexpr int kSameThreadBatch = 10000;
constexpr int kCrossThreadBatch = 100000;

// How each contender's host runs until the last task and how that task
// stops it.
struct OwnRun {
  ctxloop::Loop& loop;
  bool ok() const { return true; }
  void Stop() { loop.Stop(); }
  bool Run() { return loop.Run().ok(); }
  uint64_t host_callbacks() const { return 0; }
};

struct AsioHost {
  explicit AsioHost(ctxloop::Loop& loop) : io(1) {
    auto d = ctxloop::AsioDriver::Create(loop, io);
    if (d.ok()) driver = *std::move(d);
  }
  bool ok() const { return driver != nullptr; }
  void Stop() { io.stop(); }
  bool Run() {
    io.restart();
    io.run();
    return driver->status().ok();
  }
  uint64_t host_callbacks() const { return driver->stats().host_callbacks(); }
  boost::asio::io_context io;
  std::unique_ptr<ctxloop::AsioDriver> driver;
};

struct UvHost {
  explicit UvHost(ctxloop::Loop& loop) {
    if (uv_loop_init(&uv) != 0) return;
    initialized = true;
    auto d = ctxloop::UvDriver::Create(loop, &uv);
    if (d.ok()) driver = *std::move(d);
  }
  ~UvHost() {
    if (!initialized) return;
    driver.reset();
    uv_run(&uv, UV_RUN_NOWAIT);  // The driver's close callbacks.
    uv_loop_close(&uv);
  }
  bool ok() const { return driver != nullptr; }
  void Stop() { uv_stop(&uv); }
  bool Run() {
    uv_run(&uv, UV_RUN_DEFAULT);
    return driver->status().ok();
  }
  uint64_t host_callbacks() const { return driver->stats().host_callbacks(); }
  uv_loop_t uv;
  bool initialized = false;
  std::unique_ptr<ctxloop::UvDriver> driver;
};

// ============================================================================
// embedded_post_same_thread (W1)
// ============================================================================

template <typename Host>
void SameThread(benchmark::State& state, ctxloop::Loop& loop, Host& host) {
  state.SetLabel("embedded_post_same_thread");
  if (!host.ok()) {
    state.SkipWithError("cannot create the driver");
    return;
  }
  const ctxloop::ContextHandle ctx = *loop.NewContext("bench");
  struct Sink {
    int64_t ran = 0;
    Host* host;
  } sink{0, &host};
  int64_t errors = 0;
  AllocWindow allocs;
  for (auto _ : state) {
    sink.ran = 0;
    for (int i = 0; i < kSameThreadBatch; ++i) {
      if (!ctxloop::Post(ctx, [&sink](ctxloop::ContextHandle) {
             if (++sink.ran == kSameThreadBatch) sink.host->Stop();
           }).ok()) {
        ++errors;
      }
    }
    if (!host.Run()) ++errors;
    if (sink.ran != kSameThreadBatch) break;
  }
  CheckCount(state, "failed Post/Run calls", errors, 0) &&
      CheckCount(state, "tasks run in the last iteration", sink.ran,
                 kSameThreadBatch);
  ReportItems(state, kSameThreadBatch, allocs);
}

void BM_Ctxloop_PostRun_SameThread_OwnRun(benchmark::State& state) {
  ctxloop::Loop loop;
  OwnRun host{loop};
  SameThread(state, loop, host);
}

void BM_AsioDriven_PostRun_SameThread(benchmark::State& state) {
  ctxloop::Loop loop;
  AsioHost host(loop);
  SameThread(state, loop, host);
}

void BM_UvDriven_PostRun_SameThread(benchmark::State& state) {
  ctxloop::Loop loop;
  UvHost host(loop);
  SameThread(state, loop, host);
}

// ============================================================================
// embedded_post_cross_thread (W2)
// ============================================================================

template <typename Host>
void CrossThread(benchmark::State& state, ctxloop::Loop& loop, Host& host) {
  state.SetLabel("embedded_post_cross_thread");
  if (!host.ok()) {
    state.SkipWithError("cannot create the driver");
    return;
  }
  ctxloop_bench::PinnedWorker producer(ctxloop_bench::BenchCpus().producer_cpu);
  const ctxloop::ContextHandle ctx = *loop.NewContext("bench");
  struct Sink {
    int64_t ran = 0;
    Host* host;
  } sink{0, &host};
  int64_t post_errors = 0;  // Written by the producer, read after Wait().
  int64_t run_errors = 0;
  const uint64_t wakes_before = loop.stats().wake_writes;
  const uint64_t callbacks_before = host.host_callbacks();
  AllocWindow allocs;
  for (auto _ : state) {
    sink.ran = 0;
    producer.Start([&] {
      for (int i = 0; i < kCrossThreadBatch; ++i) {
        absl::Status s = ctxloop::Post(ctx, [&sink](ctxloop::ContextHandle) {
          if (++sink.ran == kCrossThreadBatch) sink.host->Stop();
        });
        if (!s.ok()) {
          ++post_errors;
          return;  // The count check reports it.
        }
      }
    });
    if (!host.Run()) ++run_errors;
    producer.Wait();
    if (sink.ran != kCrossThreadBatch) break;
  }
  allocs.Pause();
  CheckCount(state, "failed Post calls", post_errors, 0) &&
      CheckCount(state, "failed Run calls", run_errors, 0) &&
      CheckCount(state, "tasks run in the last iteration", sink.ran,
                 kCrossThreadBatch);
  ReportItems(state, kCrossThreadBatch, allocs);
  const double items =
      static_cast<double>(state.iterations()) * kCrossThreadBatch;
  if (items > 0) {
    state.counters["wakeups_per_1k"] =
        static_cast<double>(loop.stats().wake_writes - wakes_before) * 1000.0 /
        items;
    state.counters["host_callbacks_per_1k"] =
        static_cast<double>(host.host_callbacks() - callbacks_before) * 1000.0 /
        items;
  }
}

void BM_Ctxloop_PostCrossThread_OwnRun(benchmark::State& state) {
  ctxloop::Loop loop;
  OwnRun host{loop};
  CrossThread(state, loop, host);
}

void BM_AsioDriven_PostCrossThread(benchmark::State& state) {
  ctxloop::Loop loop;
  AsioHost host(loop);
  CrossThread(state, loop, host);
}

void BM_UvDriven_PostCrossThread(benchmark::State& state) {
  ctxloop::Loop loop;
  UvHost host(loop);
  CrossThread(state, loop, host);
}

// Real time everywhere: cross-thread benchmarks wait for another thread,
// and `ns_per_item` divides by the benchmark's time.
BENCHMARK(BM_Ctxloop_PostRun_SameThread_OwnRun)->UseRealTime();
BENCHMARK(BM_AsioDriven_PostRun_SameThread)->UseRealTime();
BENCHMARK(BM_UvDriven_PostRun_SameThread)->UseRealTime();

BENCHMARK(BM_Ctxloop_PostCrossThread_OwnRun)->UseRealTime();
BENCHMARK(BM_AsioDriven_PostCrossThread)->UseRealTime();
BENCHMARK(BM_UvDriven_PostCrossThread)->UseRealTime();

}  // namespace
