// Copyright 2026 The ctxloop Authors.

#include "ctxloop/examples/fanout_exporter.h"

#include <exception>
#include <string>
#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"

namespace ctxloop {
namespace examples {

FanOutExporter::FanOutExporter(
    std::vector<std::shared_ptr<SpanExporter>> exporters)
    : exporters_([&] {
        std::vector<std::shared_ptr<SpanExporter>> live;
        for (auto& e : exporters) {
          if (e != nullptr) live.push_back(std::move(e));
        }
        return live;
      }()) {}

template <typename Fn>
absl::Status FanOutExporter::ForEach(const char* what, Fn fn) {
  MutexLock lock(&mu_);
  absl::Status first;
  for (size_t i = 0; i < exporters_.size(); ++i) {
    absl::Status s;
    try {
      s = fn(*exporters_[i]);
    } catch (const std::exception& e) {
      s = absl::InternalError(
          absl::StrCat("exporter ", i, " threw in ", what, ": ", e.what()));
    } catch (...) {
      s = absl::InternalError(absl::StrCat("exporter ", i, " threw in ", what));
    }
    if (first.ok() && !s.ok()) first = s;
  }
  return first;
}

absl::Status FanOutExporter::Export(absl::Span<const SpanData> batch) {
  return ForEach("Export", [&](SpanExporter& e) { return e.Export(batch); });
}

absl::Status FanOutExporter::Flush() {
  return ForEach("Flush", [](SpanExporter& e) { return e.Flush(); });
}

absl::Status FanOutExporter::Shutdown() {
  return ForEach("Shutdown", [](SpanExporter& e) { return e.Shutdown(); });
}

absl::Status ExportLedger::Export(absl::Span<const SpanData> batch) {
  MutexLock lock(&mu_);
  for (const SpanData& item : batch) {
    if (item.is_root()) {  // A trace.
      ++stats_.traces;
      std::string id = item.trace_id.ToHex();
      int& count = trace_count_[id];
      if (++count > 1) {
        ++stats_.duplicate_traces;
        continue;
      }
      trace_order_.push_back(std::move(id));
      while (trace_order_.size() > options_.max_traces) {
        trace_count_.erase(trace_order_.front());
        trace_order_.pop_front();
        ++stats_.forgotten_traces;
      }
    } else {
      ++stats_.spans;
      if (!span_ids_.insert(item.span_id.value).second) {
        ++stats_.duplicate_spans;
        continue;
      }
      span_order_.push_back(item.span_id.value);
      while (span_order_.size() > options_.max_spans) {
        span_ids_.erase(span_order_.front());
        span_order_.pop_front();
        ++stats_.forgotten_spans;
      }
    }
  }
  return absl::OkStatus();
}

ExportLedger::Stats ExportLedger::stats() const {
  MutexLock lock(&mu_);
  return stats_;
}

size_t ExportLedger::held() const {
  MutexLock lock(&mu_);
  return trace_count_.size() + span_ids_.size();
}

int ExportLedger::ExportCount(const std::string& trace_hex) const {
  MutexLock lock(&mu_);
  auto it = trace_count_.find(trace_hex);
  return it == trace_count_.end() ? -1 : it->second;
}

}  // namespace examples
}  // namespace ctxloop
