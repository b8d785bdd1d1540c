// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/trace/processor.h
// -----------------------------------------------------------------------------
//
// `TraceProcessor` receives span lifecycle events from a `Tracer`: `OnStart`
// and `OnEnd` for every recorded span, a trace's root span included (a trace
// is its root span, `SpanData::is_root()`).
//
// Guarantees a processor can rely on:
//   * each event is delivered exactly once;
//   * a root span's `OnStart` before any other `OnStart` of its trace;
//   * a span's `OnStart` before its `OnEnd`;
//   * every other `OnEnd` of a trace before its root span's `OnEnd` (a root
//     finished while spans are open delivers its end when the last one
//     ends);
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

#include <functional>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "ctxloop/trace/span_data.h"

namespace ctxloop {

// Receives failures that have no caller to return to: an exception from a
// processor, a batch an exporter could not deliver, items dropped. The one
// error-callback type of `Tracer`, the processors and the exporters. May be
// called from several threads (each owner says which); must not throw.
// Unset: the owner prints to stderr. A `std::function`, so that options
// holding one (e.g. `OtlpHttpExporter::Options`) stay copyable; a callback
// that owns move-only state holds it through a `std::shared_ptr`.
using TraceErrorCallback = std::function<void(const absl::Status&)>;

class TraceProcessor {
 public:
  virtual ~TraceProcessor() = default;

  // `span.end_time` is InfiniteFuture() at the start.
  virtual void OnStart(const SpanData& span) = 0;
  virtual void OnEnd(const SpanData& span) = 0;

  // Exports everything received so far; waits at most `timeout`.
  // Thread-safe.
  virtual absl::Status ForceFlush(absl::Duration timeout) = 0;

  // Flushes, then stops. Events after shutdown are counted as dropped by
  // processors that queue. Idempotent. Thread-safe.
  virtual absl::Status Shutdown(absl::Duration timeout) = 0;
};

}  // namespace ctxloop

#endif  // CTXLOOP_TRACE_PROCESSOR_H_
