// Copyright 2026 The ctxloop Authors.

#include "ctxloop/trace/in_memory_exporter.h"

#include <string>
#include <utility>

namespace ctxloop {

absl::Status InMemoryExporter::Export(absl::Span<const ExportItem> batch) {
  ctxloop::MutexLock lock(&mu_);
  ++export_calls_;
  if (shutdown_) {
    return absl::FailedPreconditionError(
        "InMemoryExporter: Export after Shutdown");
  }
  items_.insert(items_.end(), batch.begin(), batch.end());
  batch_sizes_.push_back(batch.size());
  return absl::OkStatus();
}

absl::Status InMemoryExporter::Flush() {
  ctxloop::MutexLock lock(&mu_);
  ++flush_calls_;
  return absl::OkStatus();
}

absl::Status InMemoryExporter::Shutdown() {
  ctxloop::MutexLock lock(&mu_);
  shutdown_ = true;
  return absl::OkStatus();
}

std::vector<ExportItem> InMemoryExporter::items() const {
  ctxloop::MutexLock lock(&mu_);
  return items_;
}

std::vector<TraceData> InMemoryExporter::traces() const {
  ctxloop::MutexLock lock(&mu_);
  std::vector<TraceData> out;
  for (const ExportItem& item : items_) {
    if (const auto* t = std::get_if<TraceData>(&item)) out.push_back(*t);
  }
  return out;
}

std::vector<SpanData> InMemoryExporter::spans() const {
  ctxloop::MutexLock lock(&mu_);
  std::vector<SpanData> out;
  for (const ExportItem& item : items_) {
    if (const auto* s = std::get_if<SpanData>(&item)) out.push_back(*s);
  }
  return out;
}

size_t InMemoryExporter::size() const {
  ctxloop::MutexLock lock(&mu_);
  return items_.size();
}

void InMemoryExporter::Clear() {
  ctxloop::MutexLock lock(&mu_);
  items_.clear();
  batch_sizes_.clear();
}

int64_t InMemoryExporter::export_calls() const {
  ctxloop::MutexLock lock(&mu_);
  return export_calls_;
}

std::vector<size_t> InMemoryExporter::batch_sizes() const {
  ctxloop::MutexLock lock(&mu_);
  return batch_sizes_;
}

int64_t InMemoryExporter::flush_calls() const {
  ctxloop::MutexLock lock(&mu_);
  return flush_calls_;
}

bool InMemoryExporter::is_shutdown() const {
  ctxloop::MutexLock lock(&mu_);
  return shutdown_;
}

}  // namespace ctxloop
