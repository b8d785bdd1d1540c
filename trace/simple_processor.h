// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/trace/simple_processor.h
// -----------------------------------------------------------------------------
//
// `SimpleProcessor` exports each ended trace and span at once, on the thread
// that ended it, through one exporter. For tests, debugging and exporters
// that are themselves cheap (in-memory); use `BatchProcessor` for I/O.
//
// Bound: holds no items; each is exported before its `OnEnd` returns.
//
// Cost: one mutex acquisition plus one `Export` call per ended item.
//
// Thread-safety: thread-safe; `Export` calls are serialized by the mutex.
// A failing or throwing exporter loses that item; failures are counted and
// reported through the error callback.

#ifndef CTXLOOP_TRACE_SIMPLE_PROCESSOR_H_
#define CTXLOOP_TRACE_SIMPLE_PROCESSOR_H_

#include <cstdint>
#include <memory>
#include <mutex>

#include "absl/functional/any_invocable.h"
#include "ctxloop/trace/exporter.h"
#include "ctxloop/trace/processor.h"

namespace ctxloop {

class SimpleProcessor final : public TraceProcessor {
 public:
  // `exporter` must not be null. `on_error` is called (under the processor's
  // mutex, on the thread that ended the span) for each failed export.
  explicit SimpleProcessor(std::shared_ptr<SpanExporter> exporter,
                           TraceErrorCallback on_error = nullptr);

  void OnStart(const SpanData&) override {}
  void OnEnd(const SpanData& span) override;
  absl::Status ForceFlush(absl::Duration timeout) override;
  absl::Status Shutdown(absl::Duration timeout) override;

  uint64_t failed_items() const;
  uint64_t dropped_after_shutdown() const;

 private:
  mutable std::mutex mu_;
  std::shared_ptr<SpanExporter> exporter_;
  TraceErrorCallback on_error_;
  bool shut_down_ = false;
  uint64_t failed_items_ = 0;
  uint64_t dropped_after_shutdown_ = 0;
};

}  // namespace ctxloop

#endif  // CTXLOOP_TRACE_SIMPLE_PROCESSOR_H_
