// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/trace/exporter.h
// -----------------------------------------------------------------------------
//
// `SpanExporter` writes finished spans (a trace's root span among them)
// somewhere (memory, a file, a collector). Exporters are driven by a processor:
// `BatchProcessor` calls `Export` from its worker thread with batches,
// `SimpleProcessor` from the thread that ended the item.
//
// Threading: `Export`, `Flush` and `Shutdown` may be called from different
// threads but never concurrently by ctxloop's processors (they serialize
// calls), unless the exporter says `ExportsConcurrently()`: then
// `BatchProcessor` may have several `Export` calls in flight at once (never
// concurrently with `Flush` or `Shutdown`). An exporter shared by several
// processors must be thread-safe.
//
// Errors: a failing `Export` returns a status (or throws); the processor
// reports it and drops only that batch.
//
// Cost: whatever the exporter does, off the loops when driven by
// `BatchProcessor`; each item is a copy of the ended span's record.

#ifndef CTXLOOP_TRACE_EXPORTER_H_
#define CTXLOOP_TRACE_EXPORTER_H_

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "ctxloop/trace/processor.h"  // TraceErrorCallback
#include "ctxloop/trace/span_data.h"

namespace ctxloop {

class SpanExporter {
 public:
  virtual ~SpanExporter() = default;

  // Exports `batch`, in order. Returns an error if it could not.
  virtual absl::Status Export(absl::Span<const SpanData> batch) = 0;

  // Makes exported items durable/visible (e.g. rewrites or syncs a file).
  virtual absl::Status Flush() { return absl::OkStatus(); }

  // Flushes and releases resources. Later `Export`s return an error.
  virtual absl::Status Shutdown() { return Flush(); }

  // True if `Export` may be called from several threads at once (each call
  // its own delivery). Default: false, calls are serialized.
  virtual bool ExportsConcurrently() const { return false; }
};

}  // namespace ctxloop

#endif  // CTXLOOP_TRACE_EXPORTER_H_
