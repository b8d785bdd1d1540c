// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/trace/testing/recording_processor.h
// -----------------------------------------------------------------------------
//
// `RecordingProcessor`: a test processor that records every event, in the
// order delivered, with the Linux tid of the thread it arrived on, and lets a
// test wait for a number of events. For ctxloop's tests and for users'.
//
// Cost: a mutex and a copy of the record per event. Thread-safe (every
// member is guarded by `mu_`, checked by -Wthread-safety).

#ifndef CTXLOOP_TRACE_TESTING_RECORDING_PROCESSOR_H_
#define CTXLOOP_TRACE_TESTING_RECORDING_PROCESSOR_H_

#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "ctxloop/loop/mutex.h"
#include "ctxloop/trace/processor.h"

namespace ctxloop {
namespace testing_util {

class RecordingProcessor : public TraceProcessor {
 public:
  // Events are classified for tests: a trace's root span's start and end
  // are kTraceStart and kTraceEnd, every other span's kSpanStart and
  // kSpanEnd.
  enum class Kind { kTraceStart, kTraceEnd, kSpanStart, kSpanEnd };
  struct Event {
    Kind kind;
    int64_t tid;  // Where the processor was called.
    SpanData data;
    const SpanData& trace() const { return data; }
    const SpanData& span() const { return data; }
  };

  void OnStart(const SpanData& s) override {
    Add(s.is_root() ? Kind::kTraceStart : Kind::kSpanStart, s);
  }
  void OnEnd(const SpanData& s) override {
    Add(s.is_root() ? Kind::kTraceEnd : Kind::kSpanEnd, s);
  }
  absl::Status ForceFlush(absl::Duration) override { return absl::OkStatus(); }
  absl::Status Shutdown(absl::Duration) override { return absl::OkStatus(); }

  std::vector<Event> events() const {
    ctxloop::MutexLock lock(&mu_);
    return events_;
  }
  std::vector<Event> events(Kind kind) const {
    std::vector<Event> out;
    for (Event& e : events()) {
      if (e.kind == kind) out.push_back(std::move(e));
    }
    return out;
  }
  size_t count(Kind kind) const { return events(kind).size(); }

  // Waits until at least `n` events of `kind` arrived; false after 10 s.
  bool WaitFor(Kind kind, size_t n) {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(10);
    ctxloop::MutexLock lock(&mu_);
    while (CountLocked(kind) < n) {
      if (!cv_.WaitUntil(&mu_, deadline)) return CountLocked(kind) >= n;
    }
    return true;
  }

  static int64_t ThisTid() { return static_cast<int64_t>(syscall(SYS_gettid)); }

 private:
  size_t CountLocked(Kind kind) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    size_t c = 0;
    for (const Event& e : events_) c += e.kind == kind;
    return c;
  }

  void Add(Kind kind, const SpanData& data) {
    {
      ctxloop::MutexLock lock(&mu_);
      events_.push_back(Event{kind, ThisTid(), data});
    }
    cv_.SignalAll();
  }

  mutable ctxloop::Mutex mu_;
  ctxloop::CondVar cv_;
  std::vector<Event> events_ ABSL_GUARDED_BY(mu_);
};

}  // namespace testing_util
}  // namespace ctxloop

#endif  // CTXLOOP_TRACE_TESTING_RECORDING_PROCESSOR_H_
