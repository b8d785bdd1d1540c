// Copyright 2026 The ctxloop Authors.

#include "ctxloop/benchmarks/bench_util.h"

#include <malloc.h>
#include <pthread.h>
#include <sched.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "ctxloop/benchmarks/alloc_counter.h"

namespace ctxloop_bench {

AllocWindow::AllocWindow() : started_at_(AllocationsSoFar()) {}

void AllocWindow::Pause() {
  if (!running_) return;
  counted_ += AllocationsSoFar() - started_at_;
  running_ = false;
}

void AllocWindow::Resume() {
  if (running_) return;
  started_at_ = AllocationsSoFar();
  running_ = true;
}

int64_t AllocWindow::count() const {
  return counted_ + (running_ ? AllocationsSoFar() - started_at_ : 0);
}

namespace {

double PerItem(benchmark::State& state, int64_t count,
               int64_t items_per_iteration) {
  const double items = static_cast<double>(state.iterations()) *
                       static_cast<double>(items_per_iteration);
  return items > 0 ? static_cast<double>(count) / items : 0.0;
}

}  // namespace

void ReportItems(benchmark::State& state, int64_t items_per_iteration,
                 const AllocWindow& allocs) {
  const int64_t count = allocs.count();  // First: ReportItems allocates.
  ReportItems(state, items_per_iteration);
  if (AllocCountingEnabled()) {
    state.counters["allocs_per_item"] =
        benchmark::Counter(PerItem(state, count, items_per_iteration));
  }
}

bool CheckAllocsPerItem(benchmark::State& state, const AllocWindow& allocs,
                        int64_t items_per_iteration, double lo, double hi) {
  if (!AllocCountingEnabled()) return true;
  const double per_item = PerItem(state, allocs.count(), items_per_iteration);
  if (per_item >= lo && per_item <= hi) return true;
  const std::string msg = absl::StrCat("allocations per item: got ", per_item,
                                       ", expected ", lo, "..", hi);
  state.SkipWithError(msg.c_str());
  return false;
}

void ReportItems(benchmark::State& state, int64_t items_per_iteration) {
  const int64_t items =
      static_cast<int64_t>(state.iterations()) * items_per_iteration;
  state.SetItemsProcessed(items);
  // kIsRate divides by the benchmark's time (real time: UseRealTime), kInvert
  // turns items/s into s/item.
  state.counters["ns_per_item"] = benchmark::Counter(
      static_cast<double>(items),
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

bool CheckCount(benchmark::State& state, const char* what, int64_t actual,
                int64_t expected) {
  if (actual == expected) return true;
  const std::string msg =
      absl::StrCat(what, ": got ", actual, ", expected ", expected);
  state.SkipWithError(msg.c_str());
  return false;
}

std::string CpuPlan::Describe() const {
  if (loop_cpu < 0 && producer_cpu < 0) return "off";
  return absl::StrCat("loop thread on CPU ", loop_cpu, ", producer on CPU ",
                      producer_cpu);
}

namespace {

CpuPlan ComputeCpus() {
  CpuPlan plan;
  if (const char* env = std::getenv("CTXLOOP_BENCH_CPUS")) {
    if (absl::string_view(env) == "off") return plan;
    std::pair<std::string, std::string> parts = absl::StrSplit(env, ',');
    int loop = -1;
    int producer = -1;
    if (absl::SimpleAtoi(parts.first, &loop) &&
        absl::SimpleAtoi(parts.second, &producer) && loop >= 0 &&
        producer >= 0) {
      plan.loop_cpu = loop;
      plan.producer_cpu = producer;
      return plan;
    }
    std::fprintf(stderr,
                 "bench: ignoring CTXLOOP_BENCH_CPUS=%s (want \"L,P\" or "
                 "\"off\")\n",
                 env);
  }
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return plan;
  int found[2] = {-1, -1};
  int n = 0;
  for (int cpu = 0; cpu < CPU_SETSIZE && n < 2; ++cpu) {
    if (CPU_ISSET(cpu, &allowed)) found[n++] = cpu;
  }
  if (n == 2) {
    plan.loop_cpu = found[0];
    plan.producer_cpu = found[1];
  }
  return plan;
}

}  // namespace

const CpuPlan& BenchCpus() {
  static const CpuPlan* plan = new CpuPlan(ComputeCpus());
  return *plan;
}

bool PinCurrentThread(int cpu) {
  if (cpu < 0) return true;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof(set), &set) == 0;
}

PinnedWorker::PinnedWorker(int cpu) {
  std::mutex started_mu;
  std::condition_variable started_cv;
  bool started = false;
  thread_ = std::thread([&, cpu] {
    {
      std::lock_guard<std::mutex> lock(started_mu);
      pinned_ = PinCurrentThread(cpu);
      started = true;
      // Under the lock: the constructor (and these locals) outlive the call.
      started_cv.notify_one();
    }
    Main();
  });
  std::unique_lock<std::mutex> lock(started_mu);
  started_cv.wait(lock, [&] { return started; });
}

PinnedWorker::~PinnedWorker() {
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return !busy_; });
    quit_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void PinnedWorker::Start(absl::AnyInvocable<void() &&> job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = std::move(job);
    busy_ = true;
  }
  cv_.notify_all();
}

void PinnedWorker::Wait() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return !busy_; });
}

void PinnedWorker::Main() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return quit_ || (busy_ && job_ != nullptr); });
    if (quit_) return;
    absl::AnyInvocable<void()&&> job = std::move(job_);
    job_ = nullptr;
    lock.unlock();
    std::move(job)();
    job = nullptr;
    lock.lock();
    busy_ = false;
    cv_.notify_all();
  }
}

void PrepareProcess() {
  // Keep freed memory in the process: with glibc's defaults, freeing a large
  // batch buffer can trim the heap (or munmap an mmapped chunk) and the next
  // batch faults it back in, which can double per-item times and punishes
  // whichever contender happens to cross a threshold. run.sh sets the same
  // values through GLIBC_TUNABLES for every contender; this covers running a
  // binary directly.
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  std::string malloc_mode;
  if (tunables != nullptr && *tunables != '\0') {
    malloc_mode = absl::StrCat("GLIBC_TUNABLES=", tunables);
  } else {
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    mallopt(M_TOP_PAD, 64 << 20);
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    malloc_mode =
        "mallopt(M_TRIM_THRESHOLD=256MiB, M_TOP_PAD=64MiB, "
        "M_MMAP_THRESHOLD=32MiB)";
  }
  benchmark::AddCustomContext("ctxloop_malloc", malloc_mode);

  const CpuPlan& cpus = BenchCpus();
  std::string pinning = cpus.Describe();
  if (!PinCurrentThread(cpus.loop_cpu)) {
    pinning += " (pinning the loop thread FAILED)";
  }
  benchmark::AddCustomContext("ctxloop_cpu_pinning", pinning);

  benchmark::AddCustomContext(
      "ctxloop_alloc_counting",
      AllocCountingEnabled()
          ? "allocs_per_item counts malloc/calloc/realloc/aligned "
            "allocations of all threads (operator new included)"
          : "off (sanitizer build)");

#if defined(__OPTIMIZE__) && defined(NDEBUG)
  benchmark::AddCustomContext("ctxloop_build", "optimized (-c opt)");
#else
  benchmark::AddCustomContext(
      "ctxloop_build",
      "NOT OPTIMIZED: numbers are meaningless; build with --config=opt");
#endif
}

}  // namespace ctxloop_bench
