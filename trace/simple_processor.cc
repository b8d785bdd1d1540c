// Copyright 2026 The ctxloop Authors.

#include "ctxloop/trace/simple_processor.h"

#include <cstdio>
#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"

namespace ctxloop {

SimpleProcessor::SimpleProcessor(std::shared_ptr<SpanExporter> exporter,
                                 TraceErrorCallback on_error)
    : exporter_(std::move(exporter)), on_error_(std::move(on_error)) {}

void SimpleProcessor::OnEnd(const SpanData& item) {
  absl::Status s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (shut_down_ || exporter_ == nullptr) {
      ++dropped_after_shutdown_;
      s = absl::FailedPreconditionError(
          "SimpleProcessor: item ended after shutdown (or no exporter); "
          "dropped");
    } else {
      try {
        s = exporter_->Export(absl::MakeConstSpan(&item, 1));
      } catch (const std::exception& e) {
        s = absl::InternalError(absl::StrCat("exporter threw: ", e.what()));
      } catch (...) {
        s = absl::InternalError("exporter threw a non-std::exception");
      }
      if (!s.ok()) ++failed_items_;
    }
    if (s.ok()) return;
    if (on_error_) {
      on_error_(s);
      return;
    }
  }
  std::fprintf(stderr, "ctxloop: %s\n", s.ToString().c_str());
}

absl::Status SimpleProcessor::ForceFlush(absl::Duration) {
  std::lock_guard<std::mutex> lock(mu_);
  if (shut_down_ || exporter_ == nullptr) return absl::OkStatus();
  return exporter_->Flush();
}

absl::Status SimpleProcessor::Shutdown(absl::Duration) {
  std::lock_guard<std::mutex> lock(mu_);
  if (shut_down_) return absl::OkStatus();
  shut_down_ = true;
  return exporter_ == nullptr ? absl::OkStatus() : exporter_->Shutdown();
}

uint64_t SimpleProcessor::failed_items() const {
  std::lock_guard<std::mutex> lock(mu_);
  return failed_items_;
}

uint64_t SimpleProcessor::dropped_after_shutdown() const {
  std::lock_guard<std::mutex> lock(mu_);
  return dropped_after_shutdown_;
}

}  // namespace ctxloop
