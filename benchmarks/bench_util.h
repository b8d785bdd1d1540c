// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/benchmarks/bench_util.h
// -----------------------------------------------------------------------------
//
// Helpers shared by ctxloop's benchmark binaries (loop_benchmark, and any
// later one built with the `ctxloop_benchmark` macro in benchmark.bzl, which
// links this library and `bench_main.cc`'s `main()` automatically).
//
// Conventions every benchmark here follows, so that `run.sh` can compare them:
//
//   * An `AllocWindow allocs;` declared right before the timing loop, and
//     `ReportItems(state, n, allocs)` after it: items/s plus the counters
//     `ns_per_item` and `allocs_per_item`. `ns_per_item` is a Google
//     Benchmark rate counter with `kIsRate | kInvert`: the console shows it
//     with its unit ("4.2ns"); in JSON its value is in SECONDS per item
//     (4.2e-09). It divides by real time, so register every benchmark with
//     `->UseRealTime()`. `allocs_per_item` is a plain number: heap
//     allocations made by any thread while the window ran, divided by the
//     items (see alloc_counter.h for what is counted; absent in sanitizer
//     builds). Untimed sections (`state.PauseTiming()`) pause the window too:
//     `allocs.Pause()` / `allocs.Resume()`.
//   * `state.SetLabel(<group>)`: benchmarks with the same label measure the
//     same work; `run.sh` reports the ratio of the `BM_Ctxloop_*` benchmark of
//     a group to every other benchmark of that group.
//   * A cheap correctness check after the loop (`CheckCount`): a benchmark
//     whose work did not happen reports an error instead of a number, and the
//     smoke tests fail on it.
//
// Cross-thread benchmarks pin the benchmark (loop) thread and the producer
// thread to two different CPUs, chosen by `BenchCpus()`.

#ifndef CTXLOOP_BENCHMARKS_BENCH_UTIL_H_
#define CTXLOOP_BENCHMARKS_BENCH_UTIL_H_

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "absl/functional/any_invocable.h"
#include "benchmark/benchmark.h"

namespace ctxloop_bench {

// Counts the heap allocations of all threads from its construction (put it
// right before `for (auto _ : state)`) until `ReportItems` reads it, except
// while paused: call `Pause()` right after the timing loop if anything but
// checks runs between it and `ReportItems`. Each start/stop/read sums 64
// per-thread counters (alloc_counter.h), nothing inside the timing loop.
// Benchmark thread only.
class AllocWindow {
 public:
  AllocWindow();
  AllocWindow(const AllocWindow&) = delete;
  AllocWindow& operator=(const AllocWindow&) = delete;

  // Stop / restart counting (around state.PauseTiming()/ResumeTiming()).
  // Pausing a paused window or resuming a running one does nothing.
  void Pause();
  void Resume();
  // Allocations counted so far.
  int64_t count() const;

 private:
  int64_t counted_ = 0;     // Allocations of finished running stretches.
  int64_t started_at_ = 0;  // AllocationsSoFar() when the stretch began.
  bool running_ = true;
};

// Sets items processed (`iterations * items_per_iteration`) and the
// `ns_per_item` and `allocs_per_item` counters described above.
void ReportItems(benchmark::State& state, int64_t items_per_iteration,
                 const AllocWindow& allocs);

// The same without `allocs_per_item`. For benchmarks that cannot delimit
// their allocations; every benchmark in this directory uses the form above.
void ReportItems(benchmark::State& state, int64_t items_per_iteration);

// Reports an error on `state` unless `lo <= allocations per item <= hi`
// (allocations counted by `allocs`); true when it holds or when allocations
// are not counted (sanitizer builds). Guards the counting itself: a benchmark
// known to allocate nothing per item (or at least one) checks it.
bool CheckAllocsPerItem(benchmark::State& state, const AllocWindow& allocs,
                        int64_t items_per_iteration, double lo, double hi);

// Reports an error on `state` unless `actual == expected`. `what` names the
// count ("tasks run", ...). Returns whether they matched.
bool CheckCount(benchmark::State& state, const char* what, int64_t actual,
                int64_t expected);

// The CPUs the loop (benchmark) thread and the producer thread run on, or -1
// for "not pinned". From $CTXLOOP_BENCH_CPUS ("LOOP,PRODUCER", e.g. "0,1", or
// "off"), else the first two CPUs this process may run on; not pinned if there
// is only one.
struct CpuPlan {
  int loop_cpu = -1;
  int producer_cpu = -1;
  std::string Describe() const;
};
const CpuPlan& BenchCpus();

// Pins the calling thread to `cpu`; no-op (true) for -1.
bool PinCurrentThread(int cpu);

// A thread, pinned to one CPU, that runs one job at a time for a benchmark
// (e.g. a producer posting to a loop on the benchmark thread). It lives for
// the whole benchmark run, so thread creation stays out of the timing; handing
// it a job costs one condition-variable wake-up, the same for every
// contender.
class PinnedWorker {
 public:
  explicit PinnedWorker(int cpu);
  PinnedWorker(const PinnedWorker&) = delete;
  PinnedWorker& operator=(const PinnedWorker&) = delete;
  ~PinnedWorker();  // Waits for the current job, then joins.

  // Starts `job` on the worker. The previous job must have been waited for.
  void Start(absl::AnyInvocable<void() &&> job);
  // Blocks until the job given to `Start` has returned.
  void Wait();
  // False if pinning the worker to its CPU failed.
  bool pinned() const { return pinned_; }

 private:
  void Main();

  std::mutex mu_;
  std::condition_variable cv_;
  absl::AnyInvocable<void() &&> job_;  // Guarded by mu_.
  bool busy_ = false;                  // Guarded by mu_.
  bool quit_ = false;                  // Guarded by mu_.
  bool pinned_ = false;  // Written before the constructor returns.
  std::thread thread_;
};

// What `main()` does before running benchmarks: unless $GLIBC_TUNABLES is set
// (run.sh sets it), stop glibc from returning memory to the kernel between
// batches (mallopt), so per-item times measure the loops, not madvise/brk;
// pin the main thread to `BenchCpus().loop_cpu`; and record both, plus the
// build mode, in the benchmark context. Call before benchmark::Initialize.
void PrepareProcess();

}  // namespace ctxloop_bench

#endif  // CTXLOOP_BENCHMARKS_BENCH_UTIL_H_
