// Copyright 2026 The ctxloop Authors.
//
// Internal. The monotonic clock spans and traces are timed with.
//
// `MonotonicNs()` is CLOCK_MONOTONIC in nanoseconds. When the kernel itself
// keeps time with the TSC (its clocksource is "tsc": the counter is invariant
// and synchronized across CPUs, or the kernel would have switched away), it
// is computed from the TSC directly, which costs about half a
// `clock_gettime` (~8 ns against ~16 ns measured on this project's machines;
// a span reads the clock twice). Otherwise it is `clock_gettime`.
//
// Accuracy: the TSC rate is calibrated against CLOCK_MONOTONIC once (a ~2 ms
// spin on first use in the process) and refined every ~100 ms over the
// whole baseline since then, by whichever thread notices; each refinement
// re-anchors to CLOCK_MONOTONIC, so readings stay within microseconds of it
// (at first) and well under one after a few seconds. A re-anchor may move
// readings backwards by that error, so callers clamp durations at zero.
//
// Thread-safety: thread-safe; readers take no lock (a sequence counter).

#ifndef CTXLOOP_TRACE_INTERNAL_CLOCK_H_
#define CTXLOOP_TRACE_INTERNAL_CLOCK_H_

#include <cstdint>

namespace ctxloop {
namespace trace_internal {

int64_t MonotonicNs();

// For tests: true if `MonotonicNs` reads the TSC on this machine.
bool MonotonicNsUsesTsc();

}  // namespace trace_internal
}  // namespace ctxloop

#endif  // CTXLOOP_TRACE_INTERNAL_CLOCK_H_
