// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/trace/testing/faulty_exporter.h
// -----------------------------------------------------------------------------
//
// `FaultyExporter` wraps another exporter and injects faults, to test what a
// processor does with a failing exporter (test-only; it was once part of
// `InMemoryExporter`, which production code may use):
//
//   auto memory = std::make_shared<ctxloop::InMemoryExporter>();
//   auto faulty = std::make_shared<ctxloop::testing::FaultyExporter>(memory);
//   faulty->FailNextExports(1, absl::UnavailableError("collector down"));
//   ... hand `faulty` to a processor, check `memory` ...
//
// `FailNextExports(n, status)` makes the next `n` `Export` calls return
// `status` and `ThrowNextExports(n)` makes them throw `std::runtime_error`
// ("FaultyExporter: injected exception"); a failed call does not reach the
// wrapped exporter. Throwing takes precedence over failing. `Flush` and
// `Shutdown` are passed through.
//
// Cost: one mutex per call on top of the wrapped exporter's.
//
// Thread-safety: every method is thread-safe; the wrapped exporter is called
// without the lock held, as its own rules allow.

#ifndef CTXLOOP_TRACE_TESTING_FAULTY_EXPORTER_H_
#define CTXLOOP_TRACE_TESTING_FAULTY_EXPORTER_H_

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/types/span.h"
#include "ctxloop/loop/mutex.h"
#include "ctxloop/trace/exporter.h"

namespace ctxloop {
namespace testing {

class FaultyExporter final : public SpanExporter {
 public:
  explicit FaultyExporter(std::shared_ptr<SpanExporter> inner)
      : inner_(std::move(inner)) {}

  absl::Status Export(absl::Span<const SpanData> batch) override {
    {
      ctxloop::MutexLock lock(&mu_);
      ++export_calls_;
      if (throw_next_ > 0) {
        --throw_next_;
        throw std::runtime_error("FaultyExporter: injected exception");
      }
      if (fail_next_ > 0) {
        --fail_next_;
        return fail_status_;
      }
    }
    return inner_->Export(batch);
  }
  absl::Status Flush() override { return inner_->Flush(); }
  absl::Status Shutdown() override { return inner_->Shutdown(); }

  // The next `n` `Export` calls return `status` (an OK `status` is turned
  // into `kInternal`). Replaces earlier pending failures.
  void FailNextExports(int n, absl::Status status) {
    ctxloop::MutexLock lock(&mu_);
    fail_next_ = n > 0 ? n : 0;
    fail_status_ = status.ok()
                       ? absl::InternalError("FaultyExporter: injected failure")
                       : std::move(status);
  }
  // The next `n` `Export` calls throw `std::runtime_error`.
  void ThrowNextExports(int n) {
    ctxloop::MutexLock lock(&mu_);
    throw_next_ = n > 0 ? n : 0;
  }
  // `Export` calls so far, including failed and thrown ones.
  int64_t export_calls() const {
    ctxloop::MutexLock lock(&mu_);
    return export_calls_;
  }

 private:
  const std::shared_ptr<SpanExporter> inner_;
  mutable ctxloop::Mutex mu_;
  int64_t export_calls_ ABSL_GUARDED_BY(mu_) = 0;
  int fail_next_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status fail_status_ ABSL_GUARDED_BY(mu_);
  int throw_next_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace testing
}  // namespace ctxloop

#endif  // CTXLOOP_TRACE_TESTING_FAULTY_EXPORTER_H_
