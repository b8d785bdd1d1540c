// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/embed/driver_stats.h
// -----------------------------------------------------------------------------
//
// Counters shared by the host drivers (asio_driver.h, uv_driver.h): how often
// the host loop called into the driver, and why. A test of "an idle embedded
// loop costs the host no wake-ups" reads `host_callbacks()`; a benchmark
// reads the same to show how many host turns a batch took.
//
// Cost: plain counters, bumped on the host's thread (which is the loop
// thread). Thread-safety: read them on that thread.

#ifndef CTXLOOP_EMBED_DRIVER_STATS_H_
#define CTXLOOP_EMBED_DRIVER_STATS_H_

#include <cstdint>

namespace ctxloop {

struct HostDriverStats {
  // The host reported the loop's backend fd readable.
  uint64_t fd_wakeups = 0;
  // The host's timer for the loop's next deadline fired.
  uint64_t timer_wakeups = 0;
  // Re-runs the driver queued on the host because the loop had work left
  // after a run (its backend timeout was zero).
  uint64_t immediate_runs = 0;
  // Host callbacks that found nothing to do: a timer wait the driver
  // replaced by an earlier one (Asio reports those as aborted).
  uint64_t stale_callbacks = 0;
  // `Loop::RunReady` calls.
  uint64_t run_ready_calls = 0;

  // Every callback the host made into the driver.
  uint64_t host_callbacks() const {
    return fd_wakeups + timer_wakeups + immediate_runs + stale_callbacks;
  }
};

}  // namespace ctxloop

#endif  // CTXLOOP_EMBED_DRIVER_STATS_H_
