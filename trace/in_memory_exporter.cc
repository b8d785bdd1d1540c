// Copyright 2026 The ctxloop Authors.

#include "ctxloop/trace/in_memory_exporter.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace ctxloop {

InMemoryExporter::InMemoryExporter() : InMemoryExporter(Options()) {}

InMemoryExporter::InMemoryExporter(Options options)
    : max_items_(options.max_items) {}

absl::Status InMemoryExporter::Export(absl::Span<const SpanData> batch) {
  ctxloop::MutexLock lock(&mu_);
  ++export_calls_;
  if (shutdown_) {
    return absl::FailedPreconditionError(
        "InMemoryExporter: Export after Shutdown");
  }
  const size_t room = max_items_ - std::min(items_.size(), max_items_);
  const size_t keep = std::min(room, batch.size());
  items_.insert(items_.end(), batch.begin(), batch.begin() + keep);
  if (keep < batch.size()) {
    dropped_ += batch.size() - keep;
    return absl::ResourceExhaustedError(absl::StrCat(
        "InMemoryExporter: holds max_items (", max_items_, "); dropped ",
        batch.size() - keep, " of ", batch.size(), " items"));
  }
  // Bounded too (an empty batch adds no item).
  if (batch_sizes_.size() < max_items_) batch_sizes_.push_back(batch.size());
  return absl::OkStatus();
}

uint64_t InMemoryExporter::dropped() const {
  ctxloop::MutexLock lock(&mu_);
  return dropped_;
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

std::vector<SpanData> InMemoryExporter::spans() const {
  ctxloop::MutexLock lock(&mu_);
  return items_;
}

std::vector<SpanData> InMemoryExporter::traces() const {
  ctxloop::MutexLock lock(&mu_);
  std::vector<SpanData> out;
  for (const SpanData& span : items_) {
    if (span.is_root()) out.push_back(span);
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
