// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/trace/in_memory_exporter.h
// -----------------------------------------------------------------------------
//
// `InMemoryExporter` keeps every exported span (a trace's root span among
// them) in memory, in export order, for tests (ctxloop's and its users') and
// for tools that inspect traces in-process.
//
//   auto exporter = std::make_shared<ctxloop::InMemoryExporter>();
//   ... run traced code, flush the processor ...
//   EXPECT_EQ(exporter->spans().size(), 3);
//
// Fault injection lives in the test-only `//trace:testing` target
// (`testing/faulty_exporter.h`, which wraps this or any exporter).
//
// Bound: at most `Options::max_items` items (default 1,000,000) and as many
// recorded batch sizes. An `Export` that does not fit keeps what fits,
// drops the rest, counts it in `dropped()` and returns `kResourceExhausted`;
// `Clear()` makes room again. Not for long-running production use: it holds
// everything up to the bound.
//
// Cost: `Export` copies the batch into a vector under a mutex.
//
// Thread-safety: every method is thread-safe. The accessors return copies.
// After `Shutdown()`, `Export` returns `kFailedPrecondition` (nothing is
// stored) but the accessors still work.

#ifndef CTXLOOP_TRACE_IN_MEMORY_EXPORTER_H_
#define CTXLOOP_TRACE_IN_MEMORY_EXPORTER_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/types/span.h"
#include "ctxloop/loop/mutex.h"
#include "ctxloop/trace/exporter.h"
#include "ctxloop/trace/span_data.h"

namespace ctxloop {

class InMemoryExporter final : public SpanExporter {
 public:
  struct Options {
    // Items held at most; more are dropped and counted (see above).
    size_t max_items = 1000000;
  };
  InMemoryExporter();
  explicit InMemoryExporter(Options options);
  InMemoryExporter(const InMemoryExporter&) = delete;
  InMemoryExporter& operator=(const InMemoryExporter&) = delete;

  absl::Status Export(absl::Span<const SpanData> batch) override;
  absl::Status Flush() override;
  absl::Status Shutdown() override;

  // Every span stored (root spans included), in export order.
  std::vector<SpanData> spans() const;
  // Only the root spans (one per trace), in export order.
  std::vector<SpanData> traces() const;
  // Number of items stored.
  size_t size() const;
  // Forgets the stored items and batch sizes (not the counters).
  void Clear();

  // `Export` calls so far, including those after `Shutdown`.
  int64_t export_calls() const;
  // Batch sizes of the successful `Export` calls, in order.
  std::vector<size_t> batch_sizes() const;
  int64_t flush_calls() const;
  bool is_shutdown() const;
  // Items `Export` could not keep (the bound was reached).
  uint64_t dropped() const;

 private:
  const size_t max_items_;
  mutable ctxloop::Mutex mu_;
  std::vector<SpanData> items_ ABSL_GUARDED_BY(mu_);
  std::vector<size_t> batch_sizes_ ABSL_GUARDED_BY(mu_);
  int64_t export_calls_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t flush_calls_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace ctxloop

#endif  // CTXLOOP_TRACE_IN_MEMORY_EXPORTER_H_
