// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/trace/processor.h
// -----------------------------------------------------------------------------
//
// `TraceProcessor` receives trace and span lifecycle events from a `Tracer`.
//
// Guarantees a processor can rely on:
//   * each event is delivered exactly once;
//   * `OnTraceStart` before any `OnSpanStart` of that trace;
//   * `OnSpanStart` before that span's `OnSpanEnd`;
//   * every `OnSpanEnd` of a trace before its `OnTraceEnd` (a trace finished
//     while spans are open delivers its end when the last span ends);
//   * events run on the origin context's loop thread, except the documented
//     fallback when that loop is gone (then on the thread that finished).
//
// Threading: a tracer serves many loops, so callbacks arrive concurrently
// from several threads. Implementations must be thread-safe, and should be
// quick: they run on event loops. Queue work for a background thread
// (`BatchProcessor` does) rather than doing I/O in a callback.
//
// Exceptions thrown by a callback are caught by the tracer and reported; the
// other processors still run.
//
// Cost: one virtual call per event per processor, on the thread that ended
// the item; nothing else is added by the interface.

#ifndef CTXLOOP_TRACE_PROCESSOR_H_
#define CTXLOOP_TRACE_PROCESSOR_H_

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "ctxloop/trace/span_data.h"

namespace ctxloop {

class TraceProcessor {
 public:
  virtual ~TraceProcessor() = default;

  virtual void OnTraceStart(const TraceData& trace) = 0;
  virtual void OnTraceEnd(const TraceData& trace) = 0;
  virtual void OnSpanStart(const SpanData& span) = 0;
  virtual void OnSpanEnd(const SpanData& span) = 0;

  // Exports everything received so far; waits at most `timeout`.
  // Thread-safe.
  virtual absl::Status ForceFlush(absl::Duration timeout) = 0;

  // Flushes, then stops. Events after shutdown are counted as dropped by
  // processors that queue. Idempotent. Thread-safe.
  virtual absl::Status Shutdown(absl::Duration timeout) = 0;
};

}  // namespace ctxloop

#endif  // CTXLOOP_TRACE_PROCESSOR_H_
