// Copyright 2026 The ctxloop Authors.

#include "ctxloop/examples/fanout_exporter.h"

#include <exception>
#include <utility>

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

absl::Status FanOutExporter::Export(absl::Span<const ExportItem> batch) {
  return ForEach("Export", [&](SpanExporter& e) { return e.Export(batch); });
}

absl::Status FanOutExporter::Flush() {
  return ForEach("Flush", [](SpanExporter& e) { return e.Flush(); });
}

absl::Status FanOutExporter::Shutdown() {
  return ForEach("Shutdown", [](SpanExporter& e) { return e.Shutdown(); });
}

}  // namespace examples
}  // namespace ctxloop
