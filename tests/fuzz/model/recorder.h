// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/tests/fuzz/model/recorder.h
// -----------------------------------------------------------------------------
//
// Processors for the model-based fuzzer and the fault tests:
//   * `EventRecorder` keeps, for every processor event, the Linux tid it ran
//     on, a global sequence number (from a counter the model shares, so
//     events can be ordered against the model's own actions) and the sites
//     the tracer reported (`started`, `finish_called`, `finish_ran`).
//     An optional observer runs after each event (the model's reentry from
//     processors).
//   * `ThrowingProcessor` throws from every `every`-th callback, to check the
//     tracer keeps delivering to the other processors.
//
// Cost: a mutex and a small record per event. Thread-safety: every method is
// thread-safe (processors are called from many loops at once).

#ifndef CTXLOOP_TESTS_FUZZ_MODEL_RECORDER_H_
#define CTXLOOP_TESTS_FUZZ_MODEL_RECORDER_H_

#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "ctxloop/loop/mutex.h"
#include "ctxloop/trace/processor.h"
#include "ctxloop/trace/span_data.h"

namespace ctxloop {
namespace fuzz {

inline int64_t ThisTid() { return static_cast<int64_t>(syscall(SYS_gettid)); }

// A span key ("trace hex/span hex"; span 0 for the trace itself).
inline std::string ItemKey(const TraceId& t, SpanId s) {
  return t.ToHex() + "/" + s.ToHex();
}

class EventRecorder final : public TraceProcessor {
 public:
  enum class Kind { kTraceStart, kTraceEnd, kSpanStart, kSpanEnd };
  struct Event {
    Kind kind;
    uint64_t seq;  // From the shared counter, taken under the lock.
    int64_t tid;   // Where the processor was called.
    TraceId trace_id;
    SpanId span_id;  // Invalid for trace events.
    ExecutionSite started;
    ExecutionSite finish_called;
    ExecutionSite finish_ran;
    bool finished_off_origin = false;
    bool is_end() const {
      return kind == Kind::kTraceEnd || kind == Kind::kSpanEnd;
    }
    std::string key() const { return ItemKey(trace_id, span_id); }
  };

  explicit EventRecorder(std::atomic<uint64_t>* seq) : seq_(seq) {}
  // `observer` (if set) is called after each event is recorded, outside the
  // recorder's lock, on the processor's thread, with the item's origin
  // context: the model reenters the library from there. Set it before the
  // recorder is given to a tracer.
  EventRecorder(std::atomic<uint64_t>* seq,
                std::function<void(ContextHandle origin)> observer)
      : seq_(seq), observer_(std::move(observer)) {}

  // A trace's root span is recorded as the trace's event, keyed by its
  // trace id alone (span id invalid).
  void OnStart(const SpanData& s) override {
    if (s.is_root()) {
      Add(Kind::kTraceStart, s.trace_id, SpanId(), s.started, s.finish_called,
          s.finish_ran, s.finished_off_origin);
    } else {
      Add(Kind::kSpanStart, s.trace_id, s.span_id, s.started, s.finish_called,
          s.finish_ran, s.finished_off_origin);
    }
  }
  void OnEnd(const SpanData& s) override {
    if (s.is_root()) {
      Add(Kind::kTraceEnd, s.trace_id, SpanId(), s.started, s.finish_called,
          s.finish_ran, s.finished_off_origin);
    } else {
      Add(Kind::kSpanEnd, s.trace_id, s.span_id, s.started, s.finish_called,
          s.finish_ran, s.finished_off_origin);
    }
  }
  absl::Status ForceFlush(absl::Duration) override { return absl::OkStatus(); }
  absl::Status Shutdown(absl::Duration) override { return absl::OkStatus(); }

  std::vector<Event> events() const {
    ctxloop::MutexLock lock(&mu_);
    return events_;
  }
  uint64_t count() const {
    ctxloop::MutexLock lock(&mu_);
    return events_.size();
  }

 private:
  void Add(Kind kind, const TraceId& t, SpanId s, const ExecutionSite& started,
           const ExecutionSite& called, const ExecutionSite& ran, bool off) {
    const int64_t tid = ThisTid();
    {
      ctxloop::MutexLock lock(&mu_);
      events_.push_back(Event{kind, seq_->fetch_add(1) + 1, tid, t, s, started,
                              called, ran, off});
    }
    if (observer_) observer_(started.ctx);
  }

  std::atomic<uint64_t>* const seq_;
  const std::function<void(ContextHandle)> observer_;
  mutable ctxloop::Mutex mu_;
  std::vector<Event> events_ ABSL_GUARDED_BY(mu_);
};

class ThrowingProcessor final : public TraceProcessor {
 public:
  explicit ThrowingProcessor(int every) : every_(every < 1 ? 1 : every) {}
  void OnStart(const SpanData&) override { Tick(); }
  void OnEnd(const SpanData&) override { Tick(); }
  absl::Status ForceFlush(absl::Duration) override { return absl::OkStatus(); }
  absl::Status Shutdown(absl::Duration) override { return absl::OkStatus(); }
  uint64_t thrown() const { return thrown_.load(); }

 private:
  void Tick() {
    if (calls_.fetch_add(1) % every_ == 0) {
      thrown_.fetch_add(1);
      throw std::runtime_error("fuzz: processor throws");
    }
  }
  const int every_;
  std::atomic<uint64_t> calls_{0};
  std::atomic<uint64_t> thrown_{0};
};

}  // namespace fuzz
}  // namespace ctxloop

#endif  // CTXLOOP_TESTS_FUZZ_MODEL_RECORDER_H_
