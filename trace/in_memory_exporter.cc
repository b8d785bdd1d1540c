// Copyright 2026 The ctxloop Authors.

#include "ctxloop/trace/in_memory_exporter.h"

#include <stdexcept>
#include <string>
#include <utility>

namespace ctxloop {

absl::Status InMemoryExporter::Export(absl::Span<const ExportItem> batch) {
  std::lock_guard<std::mutex> lock(mu_);
  ++export_calls_;
  if (throw_next_ > 0) {
    --throw_next_;
    throw std::runtime_error("InMemoryExporter: injected exception");
  }
  if (fail_next_ > 0) {
    --fail_next_;
    return fail_status_;
  }
  if (shutdown_) {
    return absl::FailedPreconditionError(
        "InMemoryExporter: Export after Shutdown");
  }
  items_.insert(items_.end(), batch.begin(), batch.end());
  batch_sizes_.push_back(batch.size());
  return absl::OkStatus();
}

absl::Status InMemoryExporter::Flush() {
  std::lock_guard<std::mutex> lock(mu_);
  ++flush_calls_;
  return absl::OkStatus();
}

absl::Status InMemoryExporter::Shutdown() {
  std::lock_guard<std::mutex> lock(mu_);
  shutdown_ = true;
  return absl::OkStatus();
}

std::vector<ExportItem> InMemoryExporter::items() const {
  std::lock_guard<std::mutex> lock(mu_);
  return items_;
}

std::vector<TraceData> InMemoryExporter::traces() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<TraceData> out;
  for (const ExportItem& item : items_) {
    if (const auto* t = std::get_if<TraceData>(&item)) out.push_back(*t);
  }
  return out;
}

std::vector<SpanData> InMemoryExporter::spans() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<SpanData> out;
  for (const ExportItem& item : items_) {
    if (const auto* s = std::get_if<SpanData>(&item)) out.push_back(*s);
  }
  return out;
}

size_t InMemoryExporter::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return items_.size();
}

void InMemoryExporter::Clear() {
  std::lock_guard<std::mutex> lock(mu_);
  items_.clear();
  batch_sizes_.clear();
}

int64_t InMemoryExporter::export_calls() const {
  std::lock_guard<std::mutex> lock(mu_);
  return export_calls_;
}

std::vector<size_t> InMemoryExporter::batch_sizes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return batch_sizes_;
}

int64_t InMemoryExporter::flush_calls() const {
  std::lock_guard<std::mutex> lock(mu_);
  return flush_calls_;
}

bool InMemoryExporter::is_shutdown() const {
  std::lock_guard<std::mutex> lock(mu_);
  return shutdown_;
}

void InMemoryExporter::FailNextExports(int n, absl::Status status) {
  std::lock_guard<std::mutex> lock(mu_);
  fail_next_ = n > 0 ? n : 0;
  fail_status_ = status.ok()
                     ? absl::InternalError("InMemoryExporter: injected failure")
                     : std::move(status);
}

void InMemoryExporter::ThrowNextExports(int n) {
  std::lock_guard<std::mutex> lock(mu_);
  throw_next_ = n > 0 ? n : 0;
}

}  // namespace ctxloop
