// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/trace/multi_processor.h
// -----------------------------------------------------------------------------
//
// `MultiProcessor` fans each event out to a fixed list of processors, in
// registration order, and isolates them from each other: an exception from
// one is caught, reported through its `TraceErrorCallback` (naming the
// processor's index and the event) and does not stop the others.
//
// Bound: holds no items; the processor list is fixed at construction.
//
// Cost: one virtual call per processor per event, plus a try block (free
// unless something throws). The list is fixed at construction, so dispatch
// takes no lock.
//
// Thread-safety: all methods are thread-safe if the processors are.

#ifndef CTXLOOP_TRACE_MULTI_PROCESSOR_H_
#define CTXLOOP_TRACE_MULTI_PROCESSOR_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "ctxloop/trace/processor.h"

namespace ctxloop {

class MultiProcessor final : public TraceProcessor {
 public:
  // `on_error` receives processor failures, from whichever thread delivered
  // the event (so must be thread-safe). Unset: stderr.
  explicit MultiProcessor(
      std::vector<std::shared_ptr<TraceProcessor>> processors,
      TraceErrorCallback on_error = nullptr);

  void OnStart(const SpanData& span) override;
  void OnEnd(const SpanData& span) override;
  // Flushes every processor, sharing `timeout`; the first error is returned
  // after all were tried.
  absl::Status ForceFlush(absl::Duration timeout) override;
  absl::Status Shutdown(absl::Duration timeout) override;

  size_t size() const { return processors_.size(); }
  // Exceptions caught so far.
  uint64_t failures() const {
    return failures_.load(std::memory_order_relaxed);
  }

 private:
  template <typename Fn>
  void ForEach(const char* event, Fn&& fn);
  absl::Status ForEachWithStatus(const char* what, absl::Duration timeout,
                                 bool shutdown);
  void Fail(size_t index, const char* event, const char* what);

  const std::vector<std::shared_ptr<TraceProcessor>> processors_;
  TraceErrorCallback on_error_;
  std::atomic<uint64_t> failures_{0};
};

}  // namespace ctxloop

#endif  // CTXLOOP_TRACE_MULTI_PROCESSOR_H_
