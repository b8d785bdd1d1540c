// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/examples/fanout_exporter.h
// -----------------------------------------------------------------------------
//
// `FanOutExporter` hands every batch to several exporters, in order, so one
// `BatchProcessor` can feed, say, a Chrome trace file and an in-memory
// exporter that a program inspects afterwards:
//
//   auto fan = std::make_shared<ctxloop::examples::FanOutExporter>(
//       std::vector<std::shared_ptr<ctxloop::SpanExporter>>{chrome, memory});
//   auto batch = *ctxloop::BatchProcessor::Create(fan);
//
// Errors: every exporter gets every call even if an earlier one failed or
// threw; the first failure is returned (a throw becomes `kInternal`).
//
// Cost: one mutex and one call per exporter per batch.
//
// Thread-safety: thread-safe; calls are serialized by a mutex.
//
// `ExportLedger` is the bounded check a long-running server keeps instead
// of an in-memory exporter: it counts every trace and span exported and
// remembers the ids of only the most recent `max_traces` traces and
// `max_spans` spans, enough to see a duplicate export or a missing trace
// among recent runs. Held memory: at most max_traces + max_spans ids (about
// 64 bytes each with the map overhead: 4.5 MiB with the defaults); older
// ids are forgotten (counted), never an error.
//
// Cost: per item one hash-set insert and, past the bound, one erase.
// Thread-safety: thread-safe (one mutex).

#ifndef CTXLOOP_EXAMPLES_FANOUT_EXPORTER_H_
#define CTXLOOP_EXAMPLES_FANOUT_EXPORTER_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/types/span.h"
#include "ctxloop/loop/mutex.h"
#include "ctxloop/trace/exporter.h"

namespace ctxloop {
namespace examples {

class FanOutExporter final : public SpanExporter {
 public:
  // Null entries are ignored.
  explicit FanOutExporter(std::vector<std::shared_ptr<SpanExporter>> exporters);

  absl::Status Export(absl::Span<const SpanData> batch) override;
  absl::Status Flush() override;
  absl::Status Shutdown() override;

 private:
  template <typename Fn>
  absl::Status ForEach(const char* what, Fn fn);

  Mutex mu_;  // Held across each ForEach.
  const std::vector<std::shared_ptr<SpanExporter>> exporters_;
};

class ExportLedger final : public SpanExporter {
 public:
  struct Options {
    size_t max_traces = 4096;  // Trace ids remembered, most recent.
    size_t max_spans = 65536;  // Span ids remembered, most recent.
  };
  struct Stats {
    uint64_t traces = 0;  // Exported, all time.
    uint64_t spans = 0;
    uint64_t duplicate_traces = 0;  // Exported again while remembered.
    uint64_t duplicate_spans = 0;
    uint64_t forgotten_traces = 0;  // Ids dropped past the bound.
    uint64_t forgotten_spans = 0;
  };

  ExportLedger() : ExportLedger(Options()) {}
  explicit ExportLedger(Options options) : options_(options) {}

  absl::Status Export(absl::Span<const SpanData> batch) override;

  Stats stats() const;
  // Ids held now: at most max_traces + max_spans.
  size_t held() const;
  // Times `trace_hex` was exported; -1 if it is not (or no longer) known.
  int ExportCount(const std::string& trace_hex) const;

 private:
  const Options options_;
  mutable Mutex mu_;
  Stats stats_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int> trace_count_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> trace_order_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<uint64_t> span_ids_ ABSL_GUARDED_BY(mu_);
  std::deque<uint64_t> span_order_ ABSL_GUARDED_BY(mu_);
};

}  // namespace examples
}  // namespace ctxloop

#endif  // CTXLOOP_EXAMPLES_FANOUT_EXPORTER_H_
