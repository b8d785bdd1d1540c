// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/benchmarks/icount_hot_paths.cc
// -----------------------------------------------------------------------------
//
// The hot paths of ctxloop, each run a fixed number of times outside any
// timing harness, for counting instructions under
// `valgrind --tool=callgrind` (instruction counts repeat exactly where wall
// time on a shared 2-core machine does not). `tools/icount_guard.py` runs it
// and compares with `benchmarks/icount_baseline.json`.
//
//   icount_hot_paths --list
//   icount_hot_paths --op=post_same_thread [--n=2000] [--rounds=3]
//
// For one `--op`, the binary sets the operation up, runs `--rounds` rounds of
// `--n` operations each, and exits non-zero (with a message) if the work did
// not happen. Only the last round runs inside the function
// `ctxloop_icount_measured`; the earlier ones warm up (vectors reach their
// capacity, lazily created state exists). Measure with
//
//   valgrind --tool=callgrind --collect-atstart=no
//       --toggle-collect=ctxloop_icount_measured icount_hot_paths --op=...
//
// which counts exactly the instructions of that one round: `n` operations
// plus the round's fixed overhead (for batch operations, one RunUntilIdle).
// The op `empty` is the same round with nothing in its loop body; the guard
// subtracts it and divides by n, giving instructions per operation.
//
// Operations (what one operation is):
//   empty                        one iteration of an empty loop (the baseline)
//   post_same_thread             Post on the loop thread + its run
//                                (RunUntilIdle per round)
//   post_cross_thread_producer   Post from another thread (the producer side;
//                                the loop is idle, so the first post of the
//                                round writes the eventfd)
//   post_cross_thread_loop       the loop side: the round's RunUntilIdle
//                                takes and runs n tasks posted from another
//                                thread
//   zero_delay_timer             PostDelayed(0) + its run (RunUntilIdle)
//   timer_schedule_cancel        PostDelayed(1 s) + Cancel
//   context_key_set_reset        ContextKey<int>::Set + Reset
//   context_key_get              ContextKey<int>::Get of a set key
//   span_start_finish            StartSpan (made current) + Finish on its own
//                                context, no processor
//   disabled_span_start_finish   the same on a disabled tracer
//   stream_same_loop_event       Emit on a stream whose sink is on the same
//                                loop + its delivery (RunUntilIdle per round)
//
// Not a Google Benchmark binary and not linked with the allocation counter
// (alloc_counter.h): nothing here but the paths themselves is counted.
//
// Threads: the loop runs on the main thread; the cross-thread operations use
// one worker thread that lives for the whole run.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/attributes.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "ctxloop/loop/context_handle.h"
#include "ctxloop/loop/context_key.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/loop/mutex.h"
#include "ctxloop/stream/stream.h"
#include "ctxloop/trace/tracer.h"

namespace ctxloop_icount {

using ctxloop::CondVar;
using ctxloop::Mutex;
using ctxloop::MutexLock;

// One hot path. `Round(n)` does n operations; the driver calls `Prepare`
// before and `Settle` after every round, outside the measured function.
class Op {
 public:
  virtual ~Op() = default;
  // Where the measured round runs: the main (loop) thread or the worker.
  virtual bool OnWorker() const { return false; }
  virtual void Prepare(int n) {}
  virtual void Round(int n) = 0;
  virtual void Settle(int n) {}
  // After all rounds: empty if the work happened, else what went wrong.
  virtual std::string Check(int rounds, int n) = 0;
};

// Measured: callgrind collects from entry to exit of this function only
// (--toggle-collect), on whichever thread calls it. Outside any anonymous
// namespace so that its symbol keeps this exact name.
extern "C" ABSL_ATTRIBUTE_NOINLINE void ctxloop_icount_measured(Op* op, int n) {
  op->Round(n);
  // Keep the call a real call (no tail call into Round).
  asm volatile("" ::: "memory");
}

namespace {

// A thread that runs one job at a time for the main thread.
class Worker {
 public:
  Worker() : thread_([this] { Main(); }) {}
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;
  ~Worker() {
    {
      MutexLock lock(&mu_);
      quit_ = true;
    }
    cv_.SignalAll();
    thread_.join();
  }

  // Runs `job` on the worker and waits until it has returned.
  void RunAndWait(absl::AnyInvocable<void() &&> job) {
    MutexLock lock(&mu_);
    job_ = std::move(job);
    busy_ = true;
    cv_.SignalAll();
    // Not `job_ != nullptr`: the worker empties job_ when it takes the job,
    // before running it.
    while (busy_) cv_.Wait(&mu_);
  }

 private:
  void Main() {
    for (;;) {
      absl::AnyInvocable<void() &&> job;
      {
        MutexLock lock(&mu_);
        while (!quit_ && !busy_) cv_.Wait(&mu_);
        if (quit_) return;
        job = std::move(job_);
        job_ = nullptr;
      }
      std::move(job)();
      job = nullptr;  // Destroyed before the caller is released.
      MutexLock lock(&mu_);
      busy_ = false;
      cv_.SignalAll();
    }
  }

  Mutex mu_;
  CondVar cv_;
  absl::AnyInvocable<void() &&> job_ ABSL_GUARDED_BY(mu_);
  bool busy_ ABSL_GUARDED_BY(mu_) = false;  // Given a job, not finished.
  bool quit_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // Last: starts after the members above exist.
};

// Not measured: the warm-up rounds.
ABSL_ATTRIBUTE_NOINLINE void Unmeasured(Op* op, int n) { op->Round(n); }

// --- Operations
// ----------------------------------------------------------------

class EmptyOp : public Op {
 public:
  void Round(int n) override {
    for (int i = 0; i < n; ++i) {
      asm volatile("" ::: "memory");  // The loop stays a loop.
      ++count_;
    }
  }
  std::string Check(int rounds, int n) override {
    return count_ == int64_t{rounds} * n ? "" : "empty loop miscounted";
  }

 private:
  int64_t count_ = 0;
};

// A loop and one context on the main thread; tasks count their runs.
class LoopOp : public Op {
 protected:
  LoopOp() : ctx_(*loop_.NewContext("icount")) {}
  std::string CheckRan(int64_t expected) {
    if (errors_ != 0) return absl::StrCat(errors_, " calls failed");
    if (ran_ != expected) {
      return absl::StrCat("ran ", ran_, " tasks, expected ", expected);
    }
    return "";
  }
  void Drain() {
    if (!loop_.RunUntilIdle().ok()) ++errors_;
  }

  ctxloop::Loop loop_;
  ctxloop::ContextHandle ctx_;
  int64_t ran_ = 0;
  int64_t errors_ = 0;
};

class PostSameThreadOp : public LoopOp {
 public:
  void Round(int n) override {
    for (int i = 0; i < n; ++i) {
      if (!ctxloop::Post(ctx_, [this](ctxloop::ContextHandle) {
             ++ran_;
           }).ok()) {
        ++errors_;
      }
    }
    Drain();
  }
  std::string Check(int rounds, int n) override {
    return CheckRan(int64_t{rounds} * n);
  }
};

// Posts n tasks from the worker thread (the loop is not running).
class CrossThreadOp : public LoopOp {
 protected:
  void PostFromHere(int n) {
    for (int i = 0; i < n; ++i) {
      if (!ctxloop::Post(ctx_, [this](ctxloop::ContextHandle) {
             ++ran_;
           }).ok()) {
        ++foreign_errors_;
      }
    }
  }
  std::string Check(int rounds, int n) override {
    if (foreign_errors_ != 0) {
      return absl::StrCat(foreign_errors_, " cross-thread posts failed");
    }
    return CheckRan(int64_t{rounds} * n);
  }
  // Written by the worker; read after Worker::RunAndWait synchronized.
  int64_t foreign_errors_ = 0;
};

class PostCrossThreadProducerOp : public CrossThreadOp {
 public:
  bool OnWorker() const override { return true; }
  void Round(int n) override { PostFromHere(n); }
  void Settle(int) override { Drain(); }
};

class PostCrossThreadLoopOp : public CrossThreadOp {
 public:
  explicit PostCrossThreadLoopOp(Worker* worker) : worker_(worker) {}
  void Prepare(int n) override {
    worker_->RunAndWait([this, n] { PostFromHere(n); });
  }
  void Round(int) override { Drain(); }

 private:
  Worker* worker_;
};

class ZeroDelayTimerOp : public LoopOp {
 public:
  void Round(int n) override {
    for (int i = 0; i < n; ++i) {
      if (!ctxloop::PostDelayed(ctx_, absl::ZeroDuration(),
                                [this](ctxloop::ContextHandle) { ++ran_; })
               .ok()) {
        ++errors_;
      }
    }
    Drain();
  }
  std::string Check(int rounds, int n) override {
    return CheckRan(int64_t{rounds} * n);
  }
};

class TimerScheduleCancelOp : public LoopOp {
 public:
  void Prepare(int n) override { handles_.reserve(n); }
  void Round(int n) override {
    for (int i = 0; i < n; ++i) {
      absl::StatusOr<ctxloop::DelayedTaskHandle> h = ctxloop::PostDelayed(
          ctx_, absl::Seconds(1), [this](ctxloop::ContextHandle) { ++ran_; });
      if (h.ok()) {
        handles_.push_back(*std::move(h));
      } else {
        ++errors_;
      }
    }
    for (const ctxloop::DelayedTaskHandle& h : handles_) {
      if (!ctxloop::Cancel(h)) ++errors_;
    }
    handles_.clear();
  }
  void Settle(int) override { Drain(); }
  std::string Check(int, int) override { return CheckRan(0); }

 private:
  std::vector<ctxloop::DelayedTaskHandle> handles_;
};

const ctxloop::ContextKey<int>& Key() {
  static const auto* key = new ctxloop::ContextKey<int>("icount_key", 0);
  return *key;
}

class ContextKeySetResetOp : public LoopOp {
 public:
  void Round(int n) override {
    const ctxloop::ContextKey<int>& key = Key();
    for (int i = 0; i < n; ++i) {
      absl::StatusOr<ctxloop::Token> token = key.Set(ctx_, i + 1);
      if (!token.ok() || !key.Reset(ctx_, *token).ok()) ++errors_;
    }
  }
  std::string Check(int, int) override {
    absl::StatusOr<int> after = Key().Get(ctx_);
    if (!after.ok() || *after != 0) return "value not restored by Reset";
    return CheckRan(0);
  }
};

class ContextKeyGetOp : public LoopOp {
 public:
  ContextKeyGetOp() {
    absl::StatusOr<ctxloop::Token> token = Key().Set(ctx_, 42);
    if (!token.ok()) ++errors_;
  }
  void Round(int n) override {
    const ctxloop::ContextKey<int>& key = Key();
    for (int i = 0; i < n; ++i) {
      absl::StatusOr<int> v = key.Get(ctx_);
      sum_ += v.ok() ? *v : -1000000;
    }
  }
  std::string Check(int rounds, int n) override {
    if (sum_ != 42 * int64_t{rounds} * n) return "Get returned wrong values";
    return CheckRan(0);
  }

 private:
  int64_t sum_ = 0;
};

class SpanOp : public LoopOp {
 public:
  explicit SpanOp(bool enabled) : tracer_(ctxloop::Tracer::Options()) {
    tracer_.SetEnabled(enabled);
    trace_ = std::make_unique<ctxloop::TraceScope>(
        tracer_.StartTrace(ctx_, "icount"));
  }
  ~SpanOp() override {
    if (trace_ != nullptr) (void)trace_->Finish(ctx_);
  }
  void Round(int n) override {
    for (int i = 0; i < n; ++i) {
      ctxloop::SpanScope span = tracer_.StartSpan(ctx_, "span");
      if (!span.Finish(ctx_).ok()) ++errors_;
    }
  }
  std::string Check(int, int) override {
    if (tracer_.enabled() && tracer_.CurrentSpanId(ctx_)->valid()) {
      return "a finished span is still current";
    }
    return CheckRan(0);
  }

 private:
  ctxloop::Tracer tracer_;
  std::unique_ptr<ctxloop::TraceScope> trace_;
};

class StreamSameLoopOp : public LoopOp {
 public:
  explicit StreamSameLoopOp(int n) {
    ctxloop::StreamOptions options;
    options.high_watermark = n + 1;
    options.low_watermark = 0;
    options.max_batch = n;
    absl::StatusOr<ctxloop::StreamPair<int64_t>> pair =
        ctxloop::MakeStream<int64_t>(ctx_, options);
    if (!pair.ok()) {
      ++errors_;
      return;
    }
    ctxloop::Sink<int64_t> sink;
    sink.on_event = [this](ctxloop::ContextHandle, int64_t&& v) {
      if (v != ran_) ++errors_;  // In order, exactly once.
      ++ran_;
    };
    sink.on_complete = [](ctxloop::ContextHandle, const absl::Status&) {};
    absl::StatusOr<ctxloop::StreamSubscription> sub =
        std::move(pair->reader).Attach(ctx_, std::move(sink));
    if (!sub.ok()) {
      ++errors_;
      return;
    }
    sub_ = std::make_unique<ctxloop::StreamSubscription>(*std::move(sub));
    writer_ = std::make_unique<ctxloop::StreamWriter<int64_t>>(
        std::move(pair->writer));
  }
  void Round(int n) override {
    if (writer_ == nullptr) return;
    for (int i = 0; i < n; ++i) {
      if (!writer_->Emit(next_++).ok()) ++errors_;
    }
    Drain();
  }
  std::string Check(int rounds, int n) override {
    return CheckRan(int64_t{rounds} * n);
  }

 private:
  int64_t next_ = 0;
  std::unique_ptr<ctxloop::StreamSubscription> sub_;
  std::unique_ptr<ctxloop::StreamWriter<int64_t>> writer_;
};

constexpr const char* kOps[] = {
    "empty",
    "post_same_thread",
    "post_cross_thread_producer",
    "post_cross_thread_loop",
    "zero_delay_timer",
    "timer_schedule_cancel",
    "context_key_set_reset",
    "context_key_get",
    "span_start_finish",
    "disabled_span_start_finish",
    "stream_same_loop_event",
};

std::unique_ptr<Op> MakeOp(absl::string_view name, int n, Worker* worker) {
  if (name == "empty") return std::make_unique<EmptyOp>();
  if (name == "post_same_thread") return std::make_unique<PostSameThreadOp>();
  if (name == "post_cross_thread_producer") {
    return std::make_unique<PostCrossThreadProducerOp>();
  }
  if (name == "post_cross_thread_loop") {
    return std::make_unique<PostCrossThreadLoopOp>(worker);
  }
  if (name == "zero_delay_timer") return std::make_unique<ZeroDelayTimerOp>();
  if (name == "timer_schedule_cancel") {
    return std::make_unique<TimerScheduleCancelOp>();
  }
  if (name == "context_key_set_reset") {
    return std::make_unique<ContextKeySetResetOp>();
  }
  if (name == "context_key_get") return std::make_unique<ContextKeyGetOp>();
  if (name == "span_start_finish") return std::make_unique<SpanOp>(true);
  if (name == "disabled_span_start_finish") {
    return std::make_unique<SpanOp>(false);
  }
  if (name == "stream_same_loop_event") {
    return std::make_unique<StreamSameLoopOp>(n);
  }
  return nullptr;
}

int Usage(const char* why) {
  std::fprintf(stderr,
               "icount_hot_paths: %s\n"
               "usage: icount_hot_paths --list | --op=NAME [--n=N] "
               "[--rounds=R]\n",
               why);
  return 2;
}

int Main(int argc, char** argv) {
  std::string op_name;
  int n = 2000;
  int rounds = 3;
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    if (arg == "--list") {
      for (const char* name : kOps) std::printf("%s\n", name);
      return 0;
    }
    absl::string_view rest = arg;
    if (absl::ConsumePrefix(&rest, "--op=")) {
      op_name = std::string(rest);
    } else if (absl::ConsumePrefix(&rest, "--n=")) {
      if (!absl::SimpleAtoi(rest, &n) || n < 1 || n > 10000000) {
        return Usage("--n wants an integer in 1..10000000");
      }
    } else if (absl::ConsumePrefix(&rest, "--rounds=")) {
      if (!absl::SimpleAtoi(rest, &rounds) || rounds < 1 || rounds > 1000) {
        return Usage("--rounds wants an integer in 1..1000");
      }
    } else {
      return Usage(absl::StrCat("unknown argument ", arg).c_str());
    }
  }
  if (op_name.empty()) return Usage("--op is required");

  Worker worker;
  std::unique_ptr<Op> op = MakeOp(op_name, n, &worker);
  if (op == nullptr) {
    return Usage(absl::StrCat("unknown op ", op_name, " (see --list)").c_str());
  }
  for (int r = 0; r < rounds; ++r) {
    const bool measured = r == rounds - 1;
    op->Prepare(n);
    Op* p = op.get();
    if (op->OnWorker()) {
      worker.RunAndWait([p, n, measured] {
        measured ? ctxloop_icount_measured(p, n) : Unmeasured(p, n);
      });
    } else {
      measured ? ctxloop_icount_measured(p, n) : Unmeasured(p, n);
    }
    op->Settle(n);
  }
  const std::string error = op->Check(rounds, n);
  if (!error.empty()) {
    std::fprintf(stderr, "icount_hot_paths: %s: %s\n", op_name.c_str(),
                 error.c_str());
    return 1;
  }
  std::printf("icount_hot_paths: %s: %d rounds of %d ok\n", op_name.c_str(),
              rounds, n);
  return 0;
}

}  // namespace
}  // namespace ctxloop_icount

int main(int argc, char** argv) { return ctxloop_icount::Main(argc, argv); }
