// Copyright 2026 The ctxloop Authors.
//
// The trace stress run; see trace_stress_lib.h.

#include "ctxloop/tests/stress/trace_stress_lib.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/loop/loop_thread.h"
#include "ctxloop/loop/mutex.h"
#include "ctxloop/trace/batch_processor.h"
#include "ctxloop/trace/exporter.h"
#include "ctxloop/trace/tracer.h"

namespace ctxloop {
namespace stress {

std::string StressResult::Summary() const {
  return absl::StrFormat(
      "%d traces in %.2f s: %.0f span+trace ends/s; %d trace ends, %d span "
      "ends; lost %d, duplicated %d, foreign %d; batch dropped %d, failed "
      "%d; RSS baseline %.1f MB, peak %.1f MB, after %.1f MB (%s)%s",
      traces, seconds, ends_per_second, trace_ends, span_ends, lost, duplicated,
      foreign, batch_dropped, batch_failed, rss_baseline_mb, rss_peak_mb,
      rss_after_mb, rss_flat ? "flat" : "NOT flat",
      timed_out ? "; TIMED OUT" : "");
}

namespace {

using ctxloop::Mutex;
using ctxloop::MutexLock;

constexpr uint64_t kMagic = 0x5354524553530001ull;  // "STRESS" + 1

double ResidentMb() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long size = 0, resident = 0;
  const int n = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  if (n != 2) return 0;
  return static_cast<double>(resident) * sysconf(_SC_PAGESIZE) / (1 << 20);
}

// Counts each trace and span end by the trace's index. Called from the
// batch worker only; the counts are read after the processor shut down.
class CountingExporter final : public SpanExporter {
 public:
  explicit CountingExporter(uint64_t n) : traces_(n, 0), spans_(n, 0) {}

  absl::Status Export(absl::Span<const SpanData> batch) override {
    uint64_t trace_items = 0;
    for (const SpanData& item : batch) {
      if (item.is_root()) {
        Count(item.trace_id, traces_);
        ++trace_items;
      } else {
        Count(item.trace_id, spans_);
      }
    }
    traces_exported_.fetch_add(trace_items, std::memory_order_relaxed);
    items_exported_.fetch_add(batch.size(), std::memory_order_release);
    return absl::OkStatus();
  }

  uint64_t traces_exported() const {
    return traces_exported_.load(std::memory_order_relaxed);
  }
  uint64_t items_exported() const {
    return items_exported_.load(std::memory_order_acquire);
  }
  // After the worker stopped.
  const std::vector<uint8_t>& traces() const { return traces_; }
  const std::vector<uint8_t>& spans() const { return spans_; }
  uint64_t foreign() const { return foreign_; }

 private:
  void Count(const TraceId& id, std::vector<uint8_t>& seen) {
    if (id.high != kMagic || id.low == 0 || id.low > seen.size()) {
      ++foreign_;
      return;
    }
    uint8_t& c = seen[id.low - 1];
    if (c < 255) ++c;
  }

  std::vector<uint8_t> traces_;
  std::vector<uint8_t> spans_;
  uint64_t foreign_ = 0;
  std::atomic<uint64_t> traces_exported_{0};
  std::atomic<uint64_t> items_exported_{0};
};

struct Pair {
  TraceScope trace;
  SpanScope span;
};

// A plain thread that finishes what the loops hand it: each finish is posted
// back to its origin context ([F1] in trace/scope.cc).
class Finisher {
 public:
  Finisher() : thread_([this] { Run(); }) {}
  ~Finisher() {
    {
      MutexLock lock(&mu_);
      quit_ = true;
      cv_.SignalAll();
    }
    thread_.join();
  }
  void Push(std::vector<Pair>& batch) {
    MutexLock lock(&mu_);
    for (Pair& p : batch) queue_.push_back(std::move(p));
    batch.clear();
    cv_.SignalAll();
  }

 private:
  void Run() {
    std::vector<Pair> work;
    for (;;) {
      {
        MutexLock lock(&mu_);
        while (queue_.empty() && !quit_) cv_.Wait(&mu_);
        if (queue_.empty()) return;
        work.swap(queue_);
      }
      for (Pair& p : work) {
        (void)p.span.Finish();
        (void)p.trace.Finish();
      }
      work.clear();
    }
  }

  Mutex mu_;
  ctxloop::CondVar cv_;
  std::vector<Pair> queue_ ABSL_GUARDED_BY(mu_);
  bool quit_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

class Run {
 public:
  Run(const StressOptions& o, Tracer* tracer, CountingExporter* exporter,
      std::vector<std::unique_ptr<Finisher>>* finishers)
      : o_(o), tracer_(tracer), exporter_(exporter), finishers_(finishers) {}

  // Starts traces on `loop` in batches, reposting itself until all are
  // started; throttled while `max_in_flight` traces are unexported.
  void Drive(int loop, const std::vector<ContextHandle>* ctxs,
             ContextHandle here) {
    // The newest trace of each context is held back until the next one on
    // that context starts, so every context always has a request in flight
    // above the ones being finished (as a busy server does): out-of-order
    // resets happen all the time and the context never goes idle.
    std::vector<std::optional<Pair>>& held = held_[loop];
    if (held.empty()) held.resize(ctxs->size());
    std::vector<Pair> batch;
    bool throttled = false, done = false;
    for (int j = 0; j < 64; ++j) {
      if (next_.load(std::memory_order_relaxed) -
              exporter_->traces_exported() >=
          o_.max_in_flight) {
        throttled = true;
        break;
      }
      const uint64_t idx = next_.fetch_add(1, std::memory_order_relaxed);
      if (idx >= o_.traces) {
        done = true;
        break;
      }
      const size_t c = (idx / o_.loops) % ctxs->size();
      const ContextHandle ctx = (*ctxs)[c];
      TraceOptions to;
      to.trace_id = TraceId{kMagic, idx + 1};
      TraceScope t = tracer_->StartTrace(ctx, "stress", to);
      SpanScope s = tracer_->StartSpan(ctx, "work");
      if (held[c].has_value()) batch.push_back(std::move(*held[c]));
      held[c].emplace(Pair{std::move(t), std::move(s)});
    }
    if (done) {  // Nothing newer will come: let the held ones finish.
      for (std::optional<Pair>& h : held) {
        if (h.has_value()) batch.push_back(std::move(*h));
        h.reset();
      }
    }
    if (!batch.empty()) {
      const uint64_t f = handoffs_.fetch_add(1) % finishers_->size();
      (*finishers_)[f]->Push(batch);
    }
    if (done) return;
    auto again = [this, loop, ctxs](ContextHandle c) { Drive(loop, ctxs, c); };
    if (throttled) {
      (void)PostDelayed(here, absl::Microseconds(200), again);
    } else {
      (void)Post(here, again);
    }
  }

  uint64_t start_errors() const { return start_errors_.load(); }

 private:
  const StressOptions& o_;
  Tracer* const tracer_;
  CountingExporter* const exporter_;
  std::vector<std::unique_ptr<Finisher>>* const finishers_;
  std::vector<std::vector<std::optional<Pair>>> held_ =
      std::vector<std::vector<std::optional<Pair>>>(o_.loops);  // Per loop.
  std::atomic<uint64_t> next_{0};
  std::atomic<uint64_t> handoffs_{0};
  std::atomic<uint64_t> start_errors_{0};
};

}  // namespace

StressResult RunTraceStress(const StressOptions& o) {
  StressResult r;
  r.traces = o.traces;
  auto exporter = std::make_shared<CountingExporter>(o.traces);
  BatchProcessor::Options bo;
  bo.max_queue_size = std::max<size_t>(65536, 4 * o.max_in_flight);
  bo.max_batch_size = 4096;
  bo.schedule_delay = absl::Milliseconds(10);
  // Export once half the in-flight items (a trace and a span each) queue.
  bo.export_trigger_ratio =
      static_cast<double>(o.max_in_flight) / bo.max_queue_size;
  std::shared_ptr<BatchProcessor> batch =
      *BatchProcessor::Create(exporter, std::move(bo));
  Tracer::Options to;
  to.processors.push_back(batch);
  Tracer tracer(std::move(to));

  std::vector<std::unique_ptr<LoopThread>> loops;
  std::vector<std::vector<ContextHandle>> ctxs(o.loops);
  for (int i = 0; i < o.loops; ++i) {
    loops.push_back(std::make_unique<LoopThread>());
    std::vector<ContextHandle>* mine = &ctxs[i];
    (void)loops.back()->Invoke([mine, &o](Loop& loop) {
      for (int c = 0; c < o.contexts_per_loop; ++c) {
        mine->push_back(*loop.NewContext("stress"));
      }
    });
  }
  {
    std::vector<std::unique_ptr<Finisher>> finishers;
    for (int i = 0; i < o.finishers; ++i) {
      finishers.push_back(std::make_unique<Finisher>());
    }
    Run run(o, &tracer, exporter.get(), &finishers);
    double baseline = ResidentMb(), peak = 0;
    const auto start = std::chrono::steady_clock::now();
    const auto deadline = start + std::chrono::seconds(o.timeout_seconds);
    for (int i = 0; i < o.loops; ++i) {
      const std::vector<ContextHandle>* mine = &ctxs[i];
      (void)Post(loops[i]->root(),
                 [&run, i, mine](ContextHandle c) { run.Drive(i, mine, c); });
    }
    const uint64_t want_items = 2 * o.traces;
    while (exporter->items_exported() < want_items) {
      if (std::chrono::steady_clock::now() > deadline) {
        r.timed_out = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      const double rss = ResidentMb();
      if (getenv("STRESS_VERBOSE") != nullptr) {
        std::fprintf(stderr, "%.2f %.1f\n",
                     double(exporter->traces_exported()) / o.traces, rss);
      }
      if (exporter->traces_exported() * 5 < o.traces) {
        baseline = std::max(baseline, rss);
      } else {
        peak = std::max(peak, rss);
      }
    }
    r.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count();
    // Let every loop settle (the resets posted home have run by now: each
    // ran before its processors), then sample once more.
    for (auto& l : loops) (void)l->Invoke([](Loop&) {});
    r.rss_after_mb = ResidentMb();
    peak = std::max(peak, r.rss_after_mb);
    r.rss_baseline_mb = baseline;
    r.rss_peak_mb = peak;
    const double slack = o.rss_slack_mb + o.rss_slack_fraction * baseline;
    r.rss_flat = peak <= baseline + slack;
    if (run.start_errors() > 0) r.lost += run.start_errors();
  }  // Finishers joined.
  for (auto& l : loops) l->Join();
  (void)tracer.Shutdown(absl::Seconds(30));

  const BatchProcessor::Stats st = batch->stats();
  r.batch_dropped = st.dropped + st.dropped_after_shutdown;
  r.batch_failed = st.failed_items;
  for (uint64_t i = 0; i < o.traces; ++i) {
    const uint8_t t = exporter->traces()[i], s = exporter->spans()[i];
    r.trace_ends += t > 0;
    r.span_ends += s > 0;
    r.lost += (t == 0) + (s == 0);
    r.duplicated += (t > 1 ? t - 1 : 0) + (s > 1 ? s - 1 : 0);
  }
  r.foreign = exporter->foreign();
  r.ends_per_second =
      r.seconds > 0 ? (r.trace_ends + r.span_ends) / r.seconds : 0;
  return r;
}

}  // namespace stress
}  // namespace ctxloop
