// Copyright 2026 The ctxloop Authors.
//
// The tracer's clock agrees with CLOCK_MONOTONIC, whichever way it reads
// time on this machine (TSC or clock_gettime), also across re-anchoring and
// from several threads at once.

#include "ctxloop/trace/internal/clock.h"

#include <time.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace ctxloop {
namespace trace_internal {
namespace {

int64_t KernelNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

// Allowed disagreement with the kernel clock: the first calibration is good
// to a few microseconds; sanitizer builds and a loaded machine add delays
// between the reads, which only widen the [before, after] window.
constexpr int64_t kToleranceNs = 200000;

TEST(ClockTest, AgreesWithClockMonotonicAcrossReanchoring) {
  std::printf("tracer clock: %s\n",
              MonotonicNsUsesTsc() ? "TSC" : "clock_gettime");
  const int64_t start = KernelNs();
  int checks = 0;
  // Past several ~100 ms re-anchors.
  while (KernelNs() - start < 350000000) {
    const int64_t before = KernelNs();
    const int64_t ours = MonotonicNs();
    const int64_t after = KernelNs();
    ASSERT_GE(ours, before - kToleranceNs) << "after " << checks << " checks";
    ASSERT_LE(ours, after + kToleranceNs) << "after " << checks << " checks";
    ++checks;
    if (checks % 1000 == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  EXPECT_GT(checks, 1000);
}

TEST(ClockTest, ElapsedTimeMatches) {
  const int64_t k0 = KernelNs();
  const int64_t m0 = MonotonicNs();
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  const int64_t k1 = KernelNs();
  const int64_t m1 = MonotonicNs();
  const int64_t kernel = k1 - k0;
  const int64_t ours = m1 - m0;
  EXPECT_NEAR(static_cast<double>(ours), static_cast<double>(kernel),
              2.0 * kToleranceNs);
}

TEST(ClockTest, ConcurrentReadersNeverGoFarBackwards) {
  std::atomic<bool> stop{false};
  std::atomic<int64_t> worst_backwards{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&] {
      int64_t last = MonotonicNs();
      while (!stop.load(std::memory_order_relaxed)) {
        const int64_t now = MonotonicNs();
        const int64_t back = last - now;
        int64_t worst = worst_backwards.load();
        while (back > worst &&
               !worst_backwards.compare_exchange_weak(worst, back)) {
        }
        last = now;
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(250));
  stop = true;
  for (auto& r : readers) r.join();
  // Re-anchoring may step back by the calibration error only.
  EXPECT_LT(worst_backwards.load(), kToleranceNs);
}

}  // namespace
}  // namespace trace_internal
}  // namespace ctxloop
