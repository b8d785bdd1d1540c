// Copyright 2026 The ctxloop Authors.

#include "ctxloop/trace/batch_processor.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ctxloop/loop/mutex.h"
#include "ctxloop/trace/exporter.h"
#include "ctxloop/trace/in_memory_exporter.h"
#include "ctxloop/trace/span_data.h"
#include "ctxloop/trace/testing/faulty_exporter.h"
#include "gtest/gtest.h"

namespace ctxloop {
namespace {

SpanData MakeSpan(absl::string_view name) {
  SpanData s;
  s.trace_id = TraceId{1, 2};
  s.span_id = NewSpanId();
  s.parent_span_id = SpanId{1};  // Not a root span.
  s.name = std::string(name);
  s.start_time = absl::UnixEpoch() + absl::Seconds(1);
  s.end_time = s.start_time + absl::Milliseconds(1);
  s.duration = absl::Milliseconds(1);
  return s;
}

SpanData MakeSpan(int i) { return MakeSpan(absl::StrCat("s", i)); }

SpanData MakeTrace(absl::string_view name) {
  SpanData t;
  t.trace_id = TraceId{1, 2};
  t.span_id = NewSpanId();  // A root span: no parent.
  t.name = std::string(name);
  return t;
}

std::string NameOf(const SpanData& item) { return item.name; }

std::vector<std::string> Names(const InMemoryExporter& e) {
  std::vector<std::string> out;
  for (const SpanData& item : e.spans()) out.push_back(NameOf(item));
  return out;
}

std::vector<std::string> SpanNames(int from, int to) {
  std::vector<std::string> out;
  for (int i = from; i < to; ++i) out.push_back(absl::StrCat("s", i));
  return out;
}

// Polls `pred` until it holds or `timeout` passes; the verdict is the
// predicate, the timeout only bounds a failing test.
bool WaitUntil(const std::function<bool()>& pred,
               absl::Duration timeout = absl::Seconds(20)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!pred()) {
    if (absl::Now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// Thread-safe list of reported statuses.
class ErrorLog {
 public:
  TraceErrorCallback Callback() {
    return [this](const absl::Status& s) {
      ctxloop::MutexLock lock(&mu_);
      statuses_.push_back(s);
    };
  }
  std::vector<absl::Status> statuses() const {
    ctxloop::MutexLock lock(&mu_);
    return statuses_;
  }
  size_t size() const { return statuses().size(); }

 private:
  mutable ctxloop::Mutex mu_;
  std::vector<absl::Status> statuses_ ABSL_GUARDED_BY(mu_);
};

// Forwards to an InMemoryExporter, but `Export` waits while the gate is
// closed, so a test can hold the worker inside an export.
class GatedExporter : public SpanExporter {
 public:
  absl::Status Export(absl::Span<const SpanData> batch) override {
    {
      ctxloop::MutexLock lock(&mu_);
      ++entered_;
      cv_.SignalAll();
      while (!open_) cv_.Wait(&mu_);
    }
    absl::Status status = inner.Export(batch);
    ctxloop::MutexLock lock(&mu_);
    ++left_;
    return status;
  }
  absl::Status Flush() override {
    ctxloop::MutexLock lock(&mu_);
    ++flushes_;
    exports_in_flight_at_flush_ =
        std::max(exports_in_flight_at_flush_, entered_ - left_);
    return flush_status_;
  }
  absl::Status Shutdown() override {
    {
      ctxloop::MutexLock lock(&mu_);
      exports_in_flight_at_shutdown_ = entered_ - left_;
    }
    return inner.Shutdown();
  }
  bool ExportsConcurrently() const override { return concurrent_; }

  // Call before handing the exporter to a processor.
  void SetConcurrent(bool concurrent) { concurrent_ = concurrent; }
  void SetOpen(bool open) {
    ctxloop::MutexLock lock(&mu_);
    open_ = open;
    cv_.SignalAll();
  }
  int entered() const {
    ctxloop::MutexLock lock(&mu_);
    return entered_;
  }
  int flushes() const {
    ctxloop::MutexLock lock(&mu_);
    return flushes_;
  }
  // The most exports still running when `Flush` / `Shutdown` was called.
  int exports_in_flight_at_flush() const {
    ctxloop::MutexLock lock(&mu_);
    return exports_in_flight_at_flush_;
  }
  int exports_in_flight_at_shutdown() const {
    ctxloop::MutexLock lock(&mu_);
    return exports_in_flight_at_shutdown_;
  }
  void SetFlushStatus(absl::Status s) {
    ctxloop::MutexLock lock(&mu_);
    flush_status_ = std::move(s);
  }

  InMemoryExporter inner;

 private:
  mutable ctxloop::Mutex mu_;
  ctxloop::CondVar cv_;
  bool concurrent_ = false;
  bool open_ ABSL_GUARDED_BY(mu_) = true;
  int entered_ ABSL_GUARDED_BY(mu_) = 0;
  int left_ ABSL_GUARDED_BY(mu_) = 0;
  int exports_in_flight_at_flush_ ABSL_GUARDED_BY(mu_) = 0;
  int exports_in_flight_at_shutdown_ ABSL_GUARDED_BY(mu_) = -1;
  int flushes_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status flush_status_ ABSL_GUARDED_BY(mu_);
};

// Opens the gate when the test ends, even through a failed ASSERT, so the
// processor's destructor can drain instead of waiting for a stuck export.
class OpenOnExit {
 public:
  explicit OpenOnExit(GatedExporter* e) : e_(e) {}
  ~OpenOnExit() { e_->SetOpen(true); }

 private:
  GatedExporter* e_;
};

BatchProcessor::Options NoTimer() {
  BatchProcessor::Options o;
  o.schedule_delay = absl::InfiniteDuration();
  return o;
}

std::unique_ptr<BatchProcessor> MustCreate(std::shared_ptr<SpanExporter> e,
                                           BatchProcessor::Options o) {
  auto p = BatchProcessor::Create(std::move(e), std::move(o));
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? *std::move(p) : nullptr;
}

TEST(BatchProcessorTest, CreateRejectsNullExporterAndBadOptions) {
  auto exporter = std::make_shared<InMemoryExporter>();
  EXPECT_EQ(BatchProcessor::Create(nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);

  auto bad = [&](std::function<void(BatchProcessor::Options&)> edit) {
    BatchProcessor::Options o;
    edit(o);
    return BatchProcessor::Create(exporter, std::move(o)).status().code();
  };
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  EXPECT_EQ(bad([](auto& o) { o.max_queue_size = 0; }), kInvalid);
  EXPECT_EQ(bad([](auto& o) { o.max_queue_bytes = 0; }), kInvalid);
  EXPECT_EQ(bad([](auto& o) { o.max_concurrent_exports = 0; }), kInvalid);
  EXPECT_EQ(bad([](auto& o) {
              o.max_concurrent_exports =
                  BatchProcessor::kMaxConcurrentExports + 1;
            }),
            kInvalid);
  EXPECT_EQ(bad([](auto& o) { o.max_batch_size = 0; }), kInvalid);
  EXPECT_EQ(bad([](auto& o) {
              o.max_queue_size = 10;
              o.max_batch_size = 11;
            }),
            kInvalid);
  EXPECT_EQ(bad([](auto& o) { o.schedule_delay = absl::ZeroDuration(); }),
            kInvalid);
  EXPECT_EQ(bad([](auto& o) { o.schedule_delay = -absl::Seconds(1); }),
            kInvalid);
  EXPECT_EQ(bad([](auto& o) { o.export_trigger_ratio = 0; }), kInvalid);
  EXPECT_EQ(bad([](auto& o) { o.export_trigger_ratio = 1.01; }), kInvalid);
  EXPECT_EQ(bad([](auto& o) {
              o.export_trigger_ratio = std::numeric_limits<double>::quiet_NaN();
            }),
            kInvalid);
  EXPECT_TRUE(BatchProcessor::Create(exporter).ok());
}

TEST(BatchProcessorTest, ForceFlushExportsEverythingInOrderInBoundedBatches) {
  auto exporter = std::make_shared<InMemoryExporter>();
  BatchProcessor::Options o = NoTimer();
  o.max_batch_size = 128;
  auto p = MustCreate(exporter, std::move(o));
  std::vector<std::string> expected;
  for (int i = 0; i < 300; ++i) {
    p->OnStart(MakeSpan(i));  // Start events queue nothing.
    p->OnEnd(MakeSpan(i));
    expected.push_back(absl::StrCat("s", i));
    if (i == 150) {
      p->OnStart(MakeTrace("t"));
      p->OnEnd(MakeTrace("t"));
      expected.push_back("t");
    }
  }
  ASSERT_TRUE(p->ForceFlush(absl::Seconds(20)).ok());
  EXPECT_EQ(Names(*exporter), expected);
  EXPECT_EQ(exporter->batch_sizes(), (std::vector<size_t>{128, 128, 45}));
  EXPECT_EQ(exporter->traces().size(), 1u);
  EXPECT_GE(exporter->flush_calls(), 1);  // ForceFlush flushes the exporter.
  BatchProcessor::Stats s = p->stats();
  EXPECT_EQ(s.enqueued, 301u);
  EXPECT_EQ(s.exported, 301u);
  EXPECT_EQ(s.batches_exported, 3u);
  EXPECT_EQ(s.dropped + s.failed_items + s.failed_batches, 0u);
}

TEST(BatchProcessorTest, ScheduleDelayExportsWithoutFlush) {
  auto exporter = std::make_shared<InMemoryExporter>();
  BatchProcessor::Options o;
  o.schedule_delay = absl::Milliseconds(10);
  auto p = MustCreate(exporter, std::move(o));
  for (int i = 0; i < 5; ++i) p->OnEnd(MakeSpan(i));
  ASSERT_TRUE(WaitUntil([&] { return exporter->size() == 5; }));
  EXPECT_EQ(Names(*exporter), SpanNames(0, 5));
  EXPECT_EQ(exporter->flush_calls(), 0);  // Nobody asked for a flush.
}

TEST(BatchProcessorTest, ExportsEarlyWhenQueueReachesTriggerRatio) {
  auto exporter = std::make_shared<InMemoryExporter>();
  BatchProcessor::Options o = NoTimer();
  o.max_queue_size = 100;
  o.max_batch_size = 32;
  o.export_trigger_ratio = 0.7;  // 70 items.
  auto p = MustCreate(exporter, std::move(o));
  for (int i = 0; i < 69; ++i) p->OnEnd(MakeSpan(i));
  // Below the trigger nothing may be exported (no timer, no flush). A short
  // look can only miss a bug here, never fail a correct implementation.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(exporter->export_calls(), 0);
  p->OnEnd(MakeSpan(69));
  ASSERT_TRUE(WaitUntil([&] { return exporter->size() == 70; }));
  EXPECT_EQ(Names(*exporter), SpanNames(0, 70));
  EXPECT_EQ(exporter->batch_sizes(), (std::vector<size_t>{32, 32, 6}));
  EXPECT_EQ(exporter->flush_calls(), 0);
}

TEST(BatchProcessorTest, FullQueueDropsAreCountedAndReportedRateLimited) {
  auto exporter = std::make_shared<GatedExporter>();
  exporter->SetOpen(false);
  ErrorLog errors;
  BatchProcessor::Options o = NoTimer();
  o.max_queue_size = 10;
  o.max_batch_size = 10;
  o.export_trigger_ratio = 1.0;
  o.on_error = errors.Callback();
  auto p = MustCreate(exporter, std::move(o));
  OpenOnExit open_on_exit(exporter.get());

  // 10 items reach the trigger; the worker takes them and blocks in Export.
  // Items being exported still count against max_queue_size.
  for (int i = 0; i < 10; ++i) p->OnEnd(MakeSpan(i));
  ASSERT_TRUE(WaitUntil([&] { return exporter->entered() == 1; }));
  for (int i = 10; i < 15; ++i) p->OnEnd(MakeSpan(i));
  EXPECT_EQ(p->stats().dropped, 5u);
  ASSERT_EQ(errors.size(), 1u);  // The first drop is reported...
  EXPECT_EQ(errors.statuses()[0].code(), absl::StatusCode::kResourceExhausted);
  for (int i = 15; i < 1009; ++i) p->OnEnd(MakeSpan(i));
  EXPECT_EQ(p->stats().dropped, 999u);
  EXPECT_EQ(errors.size(), 1u);  // ...then every 1000th.
  p->OnEnd(MakeSpan(1009));
  EXPECT_EQ(p->stats().dropped, 1000u);
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_NE(errors.statuses()[1].message().find("1000"), std::string::npos)
      << errors.statuses()[1];

  exporter->SetOpen(true);
  ASSERT_TRUE(p->ForceFlush(absl::Seconds(20)).ok());
  EXPECT_EQ(Names(exporter->inner), SpanNames(0, 10));
  BatchProcessor::Stats s = p->stats();
  EXPECT_EQ(s.enqueued, 10u);
  EXPECT_EQ(s.exported, 10u);
  // Space is free again once the export is done.
  p->OnEnd(MakeSpan(2000));
  ASSERT_TRUE(p->ForceFlush(absl::Seconds(20)).ok());
  EXPECT_EQ(exporter->inner.size(), 11u);
  EXPECT_EQ(p->stats().dropped, 1000u);
}

TEST(BatchProcessorTest, ForceFlushTimesOutWhileExporterIsStuckThenCompletes) {
  auto exporter = std::make_shared<GatedExporter>();
  exporter->SetOpen(false);
  auto p = MustCreate(exporter, NoTimer());
  OpenOnExit open_on_exit(exporter.get());
  p->OnEnd(MakeSpan(0));
  EXPECT_EQ(p->ForceFlush(absl::Milliseconds(30)).code(),
            absl::StatusCode::kDeadlineExceeded);
  exporter->SetOpen(true);
  EXPECT_TRUE(p->ForceFlush(absl::Seconds(20)).ok());
  EXPECT_EQ(exporter->inner.size(), 1u);
  EXPECT_GE(exporter->flushes(), 1);
}

TEST(BatchProcessorTest, ForceFlushReturnsExporterFlushError) {
  auto exporter = std::make_shared<GatedExporter>();
  exporter->SetFlushStatus(absl::DataLossError("disk gone"));
  ErrorLog errors;
  BatchProcessor::Options o = NoTimer();
  o.on_error = errors.Callback();
  auto p = MustCreate(exporter, std::move(o));
  p->OnEnd(MakeSpan(0));
  absl::Status s = p->ForceFlush(absl::Seconds(20));
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_EQ(exporter->inner.size(), 1u);  // The export itself succeeded.
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors.statuses()[0].code(), absl::StatusCode::kDataLoss);
}

TEST(BatchProcessorTest, ShutdownDrainsThenCountsLateItemsAsDropped) {
  auto exporter = std::make_shared<InMemoryExporter>();
  ErrorLog errors;
  BatchProcessor::Options o = NoTimer();
  o.max_batch_size = 16;
  o.on_error = errors.Callback();
  auto p = MustCreate(exporter, std::move(o));
  for (int i = 0; i < 50; ++i) p->OnEnd(MakeSpan(i));
  ASSERT_TRUE(p->Shutdown(absl::Seconds(20)).ok());
  EXPECT_EQ(Names(*exporter), SpanNames(0, 50));
  EXPECT_TRUE(exporter->is_shutdown());
  EXPECT_EQ(errors.size(), 0u);

  p->OnEnd(MakeSpan(50));
  p->OnEnd(MakeTrace("late"));
  p->OnEnd(MakeSpan(51));
  BatchProcessor::Stats s = p->stats();
  EXPECT_EQ(s.dropped_after_shutdown, 3u);
  EXPECT_EQ(s.dropped, 0u);
  EXPECT_EQ(s.exported, 50u);
  ASSERT_EQ(errors.size(), 1u);  // The first late item is reported.
  EXPECT_EQ(errors.statuses()[0].code(), absl::StatusCode::kFailedPrecondition);

  // Idempotent, and flushing after shutdown has nothing left to do.
  EXPECT_TRUE(p->Shutdown(absl::Seconds(1)).ok());
  EXPECT_TRUE(p->ForceFlush(absl::Seconds(1)).ok());
  EXPECT_EQ(exporter->size(), 50u);
}

TEST(BatchProcessorTest, ShutdownTimeoutThenRetrySucceeds) {
  auto exporter = std::make_shared<GatedExporter>();
  exporter->SetOpen(false);
  ErrorLog errors;
  BatchProcessor::Options o = NoTimer();
  o.on_error = errors.Callback();
  auto p = MustCreate(exporter, std::move(o));
  OpenOnExit open_on_exit(exporter.get());
  for (int i = 0; i < 3; ++i) p->OnEnd(MakeSpan(i));
  EXPECT_EQ(p->Shutdown(absl::Milliseconds(30)).code(),
            absl::StatusCode::kDeadlineExceeded);
  p->OnEnd(MakeSpan(3));  // Shutdown began: not accepted.
  EXPECT_EQ(p->stats().dropped_after_shutdown, 1u);
  exporter->SetOpen(true);
  EXPECT_TRUE(p->Shutdown(absl::Seconds(20)).ok());
  EXPECT_EQ(Names(exporter->inner), SpanNames(0, 3));
  EXPECT_TRUE(exporter->inner.is_shutdown());
}

TEST(BatchProcessorTest, DestructorShutsDownAndDrains) {
  auto exporter = std::make_shared<InMemoryExporter>();
  {
    auto p = MustCreate(exporter, NoTimer());
    for (int i = 0; i < 20; ++i) p->OnEnd(MakeSpan(i));
  }
  EXPECT_EQ(Names(*exporter), SpanNames(0, 20));
  EXPECT_TRUE(exporter->is_shutdown());
}

TEST(BatchProcessorTest, ExporterErrorLosesOnlyThatBatch) {
  auto exporter = std::make_shared<InMemoryExporter>();
  auto faulty = std::make_shared<testing::FaultyExporter>(exporter);
  faulty->FailNextExports(1, absl::UnavailableError("collector down"));
  ErrorLog errors;
  BatchProcessor::Options o = NoTimer();
  o.max_batch_size = 10;
  o.on_error = errors.Callback();
  auto p = MustCreate(faulty, std::move(o));
  for (int i = 0; i < 30; ++i) p->OnEnd(MakeSpan(i));
  absl::Status flush = p->ForceFlush(absl::Seconds(20));
  EXPECT_EQ(flush.code(), absl::StatusCode::kUnavailable) << flush;
  EXPECT_EQ(Names(*exporter), SpanNames(10, 30));  // Batch 0..9 is lost.
  BatchProcessor::Stats s = p->stats();
  EXPECT_EQ(s.failed_batches, 1u);
  EXPECT_EQ(s.failed_items, 10u);
  EXPECT_EQ(s.exported, 20u);
  EXPECT_EQ(s.batches_exported, 2u);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors.statuses()[0].code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(errors.statuses()[0].message().find("collector down"),
            std::string::npos);

  // Later batches go through.
  for (int i = 30; i < 35; ++i) p->OnEnd(MakeSpan(i));
  EXPECT_TRUE(p->ForceFlush(absl::Seconds(20)).ok());
  EXPECT_EQ(Names(*exporter), SpanNames(10, 35));
  EXPECT_EQ(p->stats().exported, 25u);
}

TEST(BatchProcessorTest, ExporterThrowLosesOnlyThatBatch) {
  auto exporter = std::make_shared<InMemoryExporter>();
  auto faulty = std::make_shared<testing::FaultyExporter>(exporter);
  ErrorLog errors;
  BatchProcessor::Options o = NoTimer();
  o.max_batch_size = 10;
  o.on_error = errors.Callback();
  auto p = MustCreate(faulty, std::move(o));
  for (int i = 0; i < 10; ++i) p->OnEnd(MakeSpan(i));
  ASSERT_TRUE(p->ForceFlush(absl::Seconds(20)).ok());
  faulty->ThrowNextExports(1);
  for (int i = 10; i < 30; ++i) p->OnEnd(MakeSpan(i));
  EXPECT_EQ(p->ForceFlush(absl::Seconds(20)).code(),
            absl::StatusCode::kInternal);
  std::vector<std::string> expected = SpanNames(0, 10);
  for (const std::string& n : SpanNames(20, 30)) expected.push_back(n);
  EXPECT_EQ(Names(*exporter), expected);  // Batch 10..19 is lost.
  BatchProcessor::Stats s = p->stats();
  EXPECT_EQ(s.failed_batches, 1u);
  EXPECT_EQ(s.failed_items, 10u);
  EXPECT_EQ(s.exported, 20u);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors.statuses()[0].message().find("injected exception"),
            std::string::npos)
      << errors.statuses()[0];
  ASSERT_TRUE(p->Shutdown(absl::Seconds(20)).ok());
}

TEST(BatchProcessorTest, ThrowingOnErrorDoesNotStopTheWorker) {
  auto exporter = std::make_shared<InMemoryExporter>();
  auto faulty = std::make_shared<testing::FaultyExporter>(exporter);
  faulty->FailNextExports(1, absl::InternalError("x"));
  BatchProcessor::Options o = NoTimer();
  o.on_error = [](const absl::Status&) { throw std::runtime_error("bad cb"); };
  auto p = MustCreate(faulty, std::move(o));
  p->OnEnd(MakeSpan(0));
  EXPECT_FALSE(p->ForceFlush(absl::Seconds(20)).ok());
  p->OnEnd(MakeSpan(1));
  EXPECT_TRUE(p->ForceFlush(absl::Seconds(20)).ok());
  EXPECT_EQ(Names(*exporter), SpanNames(1, 2));
}

TEST(BatchProcessorTest, ConcurrentProducersLoseNothing) {
  auto exporter = std::make_shared<InMemoryExporter>();
  constexpr int kThreads = 4;
  constexpr int kPerThread = 5000;
  BatchProcessor::Options o;
  o.max_queue_size = kThreads * kPerThread;
  o.max_batch_size = 256;
  o.schedule_delay = absl::Milliseconds(1);
  o.export_trigger_ratio = 0.1;
  auto p = MustCreate(exporter, std::move(o));
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&p, t] {
      for (int i = 0; i < kPerThread; ++i) {
        p->OnEnd(MakeSpan(absl::StrCat(t, ":", i)));
      }
    });
  }
  // Flushes racing with the producers must be harmless.
  for (int i = 0; i < 5; ++i)
    EXPECT_TRUE(p->ForceFlush(absl::Seconds(20)).ok());
  for (std::thread& th : threads) th.join();
  ASSERT_TRUE(p->ForceFlush(absl::Seconds(20)).ok());

  BatchProcessor::Stats s = p->stats();
  EXPECT_EQ(s.enqueued, uint64_t{kThreads * kPerThread});
  EXPECT_EQ(s.exported, uint64_t{kThreads * kPerThread});
  EXPECT_EQ(s.dropped, 0u);
  for (size_t n : exporter->batch_sizes()) EXPECT_LE(n, 256u);
  // Every item exactly once, each producer's items in its order.
  std::vector<int> next(kThreads, 0);
  for (const std::string& name : Names(*exporter)) {
    const size_t colon = name.find(':');
    int t = 0, i = 0;
    ASSERT_TRUE(absl::SimpleAtoi(name.substr(0, colon), &t));
    ASSERT_TRUE(absl::SimpleAtoi(name.substr(colon + 1), &i));
    ASSERT_EQ(i, next[t]) << "producer " << t;
    ++next[t];
  }
  EXPECT_EQ(next, std::vector<int>(kThreads, kPerThread));
  EXPECT_TRUE(p->Shutdown(absl::Seconds(20)).ok());
}

TEST(BatchProcessorTest, FlushAndShutdownFromOnErrorAreRefused) {
  auto exporter = std::make_shared<InMemoryExporter>();
  auto faulty = std::make_shared<testing::FaultyExporter>(exporter);
  faulty->FailNextExports(1, absl::InternalError("x"));
  std::atomic<BatchProcessor*> self{nullptr};
  std::atomic<int> refused{0};
  BatchProcessor::Options o = NoTimer();
  o.on_error = [&](const absl::Status&) {
    BatchProcessor* p = self.load();
    if (p->ForceFlush(absl::Seconds(1)).code() ==
        absl::StatusCode::kFailedPrecondition) {
      ++refused;
    }
    if (p->Shutdown(absl::Seconds(1)).code() ==
        absl::StatusCode::kFailedPrecondition) {
      ++refused;
    }
  };
  auto p = MustCreate(faulty, std::move(o));
  self = p.get();
  p->OnEnd(MakeSpan(0));
  EXPECT_FALSE(p->ForceFlush(absl::Seconds(20)).ok());
  EXPECT_EQ(refused.load(), 2);
  EXPECT_TRUE(p->Shutdown(absl::Seconds(20)).ok());
}

}  // namespace
}  // namespace ctxloop

namespace ctxloop {
namespace {

TEST(BatchProcessorTest, DefaultsHoldABurstOfSpansWithinTheByteBound) {
  const BatchProcessor::Options o;
  const size_t span_bytes =
      BatchProcessor::EstimateBytes(SpanData(MakeSpan("GET /stream")));
  EXPECT_LT(span_bytes, size_t{1024});
  EXPECT_GE(o.max_queue_bytes / span_bytes, size_t{130000});
  EXPECT_GE(o.max_queue_size, size_t{130000});
}

TEST(BatchProcessorTest, EstimateBytesCountsHeapOfStringsAndAttributes) {
  SpanData small = MakeSpan(0);
  SpanData big = small;
  big.attributes.emplace_back("payload", std::string(1 << 20, 'x'));
  big.attributes.emplace_back(
      "list", std::vector<std::string>(100, std::string(1000, 'y')));
  const size_t small_bytes = BatchProcessor::EstimateBytes(SpanData(small));
  const size_t big_bytes = BatchProcessor::EstimateBytes(SpanData(big));
  EXPECT_GE(big_bytes - small_bytes, size_t{(1 << 20) + 100 * 1000});
  SpanData t = MakeTrace("t");
  t.attributes.emplace_back("ctxloop.metadata.k", std::string(5000, 'z'));
  EXPECT_GE(BatchProcessor::EstimateBytes(SpanData(t)),
            sizeof(SpanData) + 5000);
}

// A burst past the byte bound: what fits is kept, the rest dropped and
// counted (as a byte-bound drop), and the bytes held never pass the bound,
// however large a hostile record is.
TEST(BatchProcessorTest, BurstPastTheByteBoundIsDroppedAndCounted) {
  auto exporter = std::make_shared<GatedExporter>();
  exporter->SetOpen(false);
  ErrorLog errors;
  const size_t span_bytes =
      BatchProcessor::EstimateBytes(SpanData(MakeSpan(0)));
  BatchProcessor::Options o = NoTimer();
  o.max_queue_size = 1 << 20;  // Far away: the byte bound decides.
  o.max_batch_size = 10;
  o.max_queue_bytes = 100 * span_bytes;
  o.export_trigger_ratio = 0.1;  // 10 items: one batch goes into Export.
  o.on_error = errors.Callback();
  auto p = MustCreate(exporter, std::move(o));
  OpenOnExit open_on_exit(exporter.get());

  for (int i = 0; i < 10; ++i) p->OnEnd(MakeSpan(i));
  ASSERT_TRUE(WaitUntil([&] { return exporter->entered() == 1; }));
  for (int i = 10; i < 5000; ++i) p->OnEnd(MakeSpan(i));
  SpanData hostile = MakeSpan(5000);
  hostile.attributes.emplace_back("payload", std::string(1 << 20, 'x'));
  p->OnEnd(hostile);  // Larger than the whole bound.

  BatchProcessor::Stats s = p->stats();
  EXPECT_LE(s.queued_bytes, 100 * span_bytes);
  EXPECT_LE(s.peak_queued_bytes, 100 * span_bytes);
  EXPECT_EQ(s.enqueued, 100u);  // Items 0..99 fit (10 of them exporting).
  EXPECT_EQ(s.dropped, 4901u);
  EXPECT_EQ(s.dropped_bytes_bound, 4901u);
  ASSERT_GE(errors.size(), 1u);
  EXPECT_EQ(errors.statuses()[0].code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(errors.statuses()[0].message().find("bytes"), std::string::npos)
      << errors.statuses()[0];

  exporter->SetOpen(true);
  ASSERT_TRUE(p->ForceFlush(absl::Seconds(20)).ok());
  EXPECT_EQ(Names(exporter->inner), SpanNames(0, 100));
  s = p->stats();
  EXPECT_EQ(s.exported, 100u);
  EXPECT_EQ(s.queued_bytes, 0u);
  // The bytes are free again once exported.
  p->OnEnd(MakeSpan(6000));
  EXPECT_EQ(p->stats().enqueued, 101u);
}

// Several exports in flight take the round's batches in order: every item
// reaches exactly one batch, each batch in queue order, none lost.
TEST(BatchProcessorTest, ConcurrentExportsPutEachItemInExactlyOneBatch) {
  auto exporter = std::make_shared<GatedExporter>();
  exporter->SetConcurrent(true);
  exporter->SetOpen(false);
  BatchProcessor::Options o = NoTimer();
  o.max_queue_size = 100000;
  o.max_batch_size = 7;
  o.max_concurrent_exports = 4;
  o.export_trigger_ratio = 1.0;
  auto p = MustCreate(exporter, std::move(o));
  OpenOnExit open_on_exit(exporter.get());
  constexpr int kThreads = 2;
  constexpr int kPerThread = 5000;
  std::vector<std::thread> producers;
  for (int t = 0; t < kThreads; ++t) {
    producers.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        p->OnEnd(MakeSpan(t * kPerThread + i));
      }
    });
  }
  for (std::thread& t : producers) t.join();
  std::thread flusher(
      [&] { EXPECT_TRUE(p->ForceFlush(absl::Seconds(60)).ok()); });
  // All four slots fill while the gate is closed.
  ASSERT_TRUE(WaitUntil([&] { return exporter->entered() == 4; }));
  EXPECT_EQ(exporter->flushes(), 0);
  exporter->SetOpen(true);
  flusher.join();

  const BatchProcessor::Stats s = p->stats();
  EXPECT_EQ(s.max_exports_in_flight, 4);
  EXPECT_EQ(s.exported, static_cast<uint64_t>(kThreads * kPerThread));
  EXPECT_EQ(s.dropped, 0u);
  std::vector<int> seen(kThreads * kPerThread, 0);
  for (const SpanData& item : exporter->inner.spans()) {
    int i = -1;
    ASSERT_TRUE(absl::SimpleAtoi(NameOf(item).substr(1), &i));
    ASSERT_GE(i, 0);
    ASSERT_LT(i, kThreads * kPerThread);
    ++seen[i];
  }
  for (int i = 0; i < kThreads * kPerThread; ++i) {
    ASSERT_EQ(seen[i], 1) << "item " << i;
  }
  for (size_t n : exporter->inner.batch_sizes()) EXPECT_LE(n, 7u);
}

// An exporter that does not say it exports concurrently gets one call at a
// time, whatever max_concurrent_exports says.
TEST(BatchProcessorTest, SerialExporterGetsOneExportAtATime) {
  auto exporter = std::make_shared<GatedExporter>();
  BatchProcessor::Options o = NoTimer();
  o.max_batch_size = 3;
  o.max_concurrent_exports = 4;
  auto p = MustCreate(exporter, std::move(o));
  for (int i = 0; i < 300; ++i) p->OnEnd(MakeSpan(i));
  ASSERT_TRUE(p->ForceFlush(absl::Seconds(20)).ok());
  EXPECT_EQ(p->stats().max_exports_in_flight, 1);
  EXPECT_EQ(Names(exporter->inner), SpanNames(0, 300));
}

// [B2] ForceFlush with exports in flight: it waits for all of them; the
// exporter's Flush runs only after every batch of the round returned.
TEST(BatchProcessorTest, ForceFlushWaitsForEveryExportInFlight) {
  auto exporter = std::make_shared<GatedExporter>();
  exporter->SetConcurrent(true);
  exporter->SetOpen(false);
  BatchProcessor::Options o = NoTimer();
  o.max_batch_size = 10;
  o.max_concurrent_exports = 4;
  auto p = MustCreate(exporter, std::move(o));
  OpenOnExit open_on_exit(exporter.get());
  for (int i = 0; i < 60; ++i) p->OnEnd(MakeSpan(i));
  EXPECT_EQ(p->ForceFlush(absl::Milliseconds(30)).code(),
            absl::StatusCode::kDeadlineExceeded);
  ASSERT_TRUE(WaitUntil([&] { return exporter->entered() == 4; }));
  EXPECT_EQ(exporter->flushes(), 0);
  exporter->SetOpen(true);
  EXPECT_TRUE(p->ForceFlush(absl::Seconds(20)).ok());
  EXPECT_EQ(exporter->inner.size(), 60u);
  EXPECT_GE(exporter->flushes(), 1);
  EXPECT_EQ(exporter->exports_in_flight_at_flush(), 0);
}

// [B3] Shutdown with exports in flight: it drains them all, stops the
// helpers, then calls the exporter's Shutdown with no export running.
TEST(BatchProcessorTest, ShutdownDrainsEveryExportInFlight) {
  auto exporter = std::make_shared<GatedExporter>();
  exporter->SetConcurrent(true);
  exporter->SetOpen(false);
  BatchProcessor::Options o = NoTimer();
  o.max_batch_size = 10;
  o.max_concurrent_exports = 3;
  o.export_trigger_ratio = 30.0 / 262144;  // 30 items: three batches.
  auto p = MustCreate(exporter, std::move(o));
  OpenOnExit open_on_exit(exporter.get());
  for (int i = 0; i < 30; ++i) p->OnEnd(MakeSpan(i));
  ASSERT_TRUE(WaitUntil([&] { return exporter->entered() == 3; }));
  for (int i = 30; i < 45; ++i) p->OnEnd(MakeSpan(i));
  EXPECT_EQ(p->Shutdown(absl::Milliseconds(30)).code(),
            absl::StatusCode::kDeadlineExceeded);
  exporter->SetOpen(true);
  EXPECT_TRUE(p->Shutdown(absl::Seconds(20)).ok());
  EXPECT_EQ(exporter->inner.size(), 45u);
  EXPECT_TRUE(exporter->inner.is_shutdown());
  EXPECT_EQ(exporter->exports_in_flight_at_shutdown(), 0);
  const BatchProcessor::Stats s = p->stats();
  EXPECT_EQ(s.exported, 45u);
  EXPECT_EQ(s.max_exports_in_flight, 3);
}

// Flush and Shutdown from an export running on a helper thread are refused
// like those from the worker.
TEST(BatchProcessorTest, FlushFromAConcurrentExportIsRefused) {
  class Reentrant : public SpanExporter {
   public:
    absl::Status Export(absl::Span<const SpanData>) override {
      const absl::Status a = processor.load()->ForceFlush(absl::Seconds(1));
      const absl::Status b = processor.load()->Shutdown(absl::Seconds(1));
      if (a.code() != absl::StatusCode::kFailedPrecondition ||
          b.code() != absl::StatusCode::kFailedPrecondition) {
        wrong.fetch_add(1);
      }
      return absl::OkStatus();
    }
    bool ExportsConcurrently() const override { return true; }
    std::atomic<BatchProcessor*> processor{nullptr};
    std::atomic<int> wrong{0};
  };
  auto exporter = std::make_shared<Reentrant>();
  BatchProcessor::Options o = NoTimer();
  o.max_batch_size = 1;
  o.max_concurrent_exports = 4;
  auto p = MustCreate(exporter, std::move(o));
  exporter->processor = p.get();
  for (int i = 0; i < 64; ++i) p->OnEnd(MakeSpan(i));
  EXPECT_TRUE(p->ForceFlush(absl::Seconds(20)).ok());
  EXPECT_EQ(exporter->wrong.load(), 0);
  EXPECT_EQ(p->stats().exported, 64u);
}

}  // namespace
}  // namespace ctxloop
