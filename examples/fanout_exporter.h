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

#ifndef CTXLOOP_EXAMPLES_FANOUT_EXPORTER_H_
#define CTXLOOP_EXAMPLES_FANOUT_EXPORTER_H_

#include <memory>
#include <vector>

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

  absl::Status Export(absl::Span<const ExportItem> batch) override;
  absl::Status Flush() override;
  absl::Status Shutdown() override;

 private:
  template <typename Fn>
  absl::Status ForEach(const char* what, Fn fn);

  Mutex mu_;  // Held across each ForEach.
  const std::vector<std::shared_ptr<SpanExporter>> exporters_;
};

}  // namespace examples
}  // namespace ctxloop

#endif  // CTXLOOP_EXAMPLES_FANOUT_EXPORTER_H_
