// Copyright 2026 The ctxloop Authors.
//
// The CI-sized trace stress run: 400,000 traces (50,000 under
// sanitizers) with spans on 4 loops, finished from 2 other threads, through a
// BatchProcessor: nothing lost, nothing duplicated, nothing dropped, resident
// memory flat (checked only without sanitizers). The full run is
// //tests/stress:trace_stress.

#include "ctxloop/tests/stress/trace_stress_lib.h"
#include "gtest/gtest.h"

namespace ctxloop {
namespace stress {
namespace {

// Sanitizer runtimes keep freed memory (ASan's quarantine) and shadow
// memory grows with use: resident memory says nothing there.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

// Without sanitizers the run is long enough for leaked context values (kept
// by out-of-order resets on a context that never goes idle: about 150 bytes
// per trace) to exceed the slack: 400,000 traces.
TEST(TraceStressTest, TracesNothingLostMemoryFlat) {
  StressOptions o;
  o.traces = kSanitized ? 50000 : 400000;
  o.max_in_flight = 4096;
  const StressResult r = RunTraceStress(o);
  std::printf("trace_stress_test: %s\n", r.Summary().c_str());
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.lost, 0u);
  EXPECT_EQ(r.duplicated, 0u);
  EXPECT_EQ(r.foreign, 0u);
  EXPECT_EQ(r.batch_dropped, 0u);
  EXPECT_EQ(r.batch_failed, 0u);
  EXPECT_EQ(r.trace_ends, o.traces);
  EXPECT_EQ(r.span_ends, o.traces);
  if (kSanitized) return;
  EXPECT_TRUE(r.rss_flat) << "baseline " << r.rss_baseline_mb << " MB, peak "
                          << r.rss_peak_mb
                          << " MB (context values must stay bounded)";
}

}  // namespace
}  // namespace stress
}  // namespace ctxloop
