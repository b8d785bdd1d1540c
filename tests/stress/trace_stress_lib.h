// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/tests/stress/trace_stress_lib.h
// -----------------------------------------------------------------------------
//
// The trace stress run: `traces` traces, each with one span,
// both made current (as users do), started on 4 loops (round-robin over a
// few contexts per loop), finished from 2 other threads (so every finish is
// posted home; each context's newest trace is held back until the next one
// starts, so no context ever goes idle and resets are out of order), through a
// `BatchProcessor` whose exporter counts each trace and span by id. It reports
// span+trace ends per second, lost and duplicated ids, the batch processor's
// drops, and resident memory sampled from /proc/self/statm during and after the
// run.
//
//   ctxloop::stress::StressOptions o;
//   o.traces = 1000000;
//   ctxloop::stress::StressResult r = ctxloop::stress::RunTraceStress(o);
//   std::cout << r.Summary();
//
// Flow control: loops start new traces only while fewer than
// `max_in_flight` traces are unexported, so the batch queue never fills and
// a drop means a bug, not load.
//
// Cost: 4 loop threads, 2 finisher threads, the batch worker; 2 bytes of
// bookkeeping per trace. Thread-safety: call `RunTraceStress` from one thread.

#ifndef CTXLOOP_TESTS_STRESS_TRACE_STRESS_LIB_H_
#define CTXLOOP_TESTS_STRESS_TRACE_STRESS_LIB_H_

#include <cstdint>
#include <string>

namespace ctxloop {
namespace stress {

struct StressOptions {
  uint64_t traces = 1000000;
  int loops = 4;
  int finishers = 2;
  int contexts_per_loop = 4;
  uint64_t max_in_flight = 16384;
  // Resident memory may exceed the early-run baseline by at most this much
  // (plus `rss_slack_fraction` of the baseline).
  double rss_slack_mb = 24;
  double rss_slack_fraction = 0.25;
  // Give up (and report) after this long.
  int timeout_seconds = 600;
};

struct StressResult {
  uint64_t traces = 0;
  uint64_t trace_ends = 0;     // Distinct trace ids exported.
  uint64_t span_ends = 0;      // Distinct spans (by trace) exported.
  uint64_t lost = 0;           // Ids never exported.
  uint64_t duplicated = 0;     // Ids exported more than once.
  uint64_t foreign = 0;        // Items with ids the run never made.
  uint64_t batch_dropped = 0;  // BatchProcessor drops (all kinds).
  uint64_t batch_failed = 0;   // Items in failed batches.
  double seconds = 0;          // First start to last export.
  double ends_per_second = 0;  // (trace + span ends) / seconds.
  double rss_baseline_mb = 0;  // Max RSS in the first fifth of the run.
  double rss_peak_mb = 0;      // Max RSS after that, and after the run.
  double rss_after_mb = 0;     // Once everything ended and was exported.
  bool rss_flat = false;       // Peak and after within the slack.
  bool timed_out = false;
  bool ok() const {
    return !timed_out && lost == 0 && duplicated == 0 && foreign == 0 &&
           batch_dropped == 0 && batch_failed == 0 && rss_flat;
  }
  std::string Summary() const;
};

StressResult RunTraceStress(const StressOptions& options);

}  // namespace stress
}  // namespace ctxloop

#endif  // CTXLOOP_TESTS_STRESS_TRACE_STRESS_LIB_H_
