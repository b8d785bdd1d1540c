// Copyright 2026 The ctxloop Authors.

#include "ctxloop/trace/batch_processor.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"

namespace ctxloop {
namespace {

// Waits on `cv` (with `mu` held) until `pred()` or `timeout`; returns
// `pred()`. An infinite (or absurdly long) timeout waits without a deadline.
template <typename Pred>
bool WaitFor(ctxloop::CondVar& cv, ctxloop::Mutex& mu, absl::Duration timeout,
             Pred pred) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
  if (timeout >= absl::Hours(24 * 365)) {
    while (!pred()) cv.Wait(&mu);
    return true;
  }
  if (timeout < absl::ZeroDuration()) timeout = absl::ZeroDuration();
  const auto deadline =
      std::chrono::steady_clock::now() +
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(
          absl::ToChronoNanoseconds(timeout));
  while (!pred()) {
    if (!cv.WaitUntil(&mu, deadline) &&
        std::chrono::steady_clock::now() >= deadline) {
      return pred();
    }
  }
  return true;
}

// Drop reports are rate-limited: the 1st, then every 1000th.
bool ShouldReportDrop(uint64_t count) {
  return count == 1 || count % 1000 == 0;
}

// ceil(ratio * queue_size) in [1, queue_size]; the small slack keeps
// 0.1 * 30 (= 3.0000000000000004) at 3.
size_t TriggerSize(double ratio, size_t queue_size) {
  const double exact = ratio * static_cast<double>(queue_size);
  const size_t n = static_cast<size_t>(std::ceil(exact - exact * 1e-12));
  return std::min(queue_size, std::max<size_t>(1, n));
}

}  // namespace

absl::StatusOr<std::unique_ptr<BatchProcessor>> BatchProcessor::Create(
    std::shared_ptr<SpanExporter> exporter) {
  return Create(std::move(exporter), Options());
}

absl::StatusOr<std::unique_ptr<BatchProcessor>> BatchProcessor::Create(
    std::shared_ptr<SpanExporter> exporter, Options options) {
  if (exporter == nullptr) {
    return absl::InvalidArgumentError("BatchProcessor: exporter is null");
  }
  if (options.max_queue_size == 0) {
    return absl::InvalidArgumentError(
        "BatchProcessor: max_queue_size must be > 0");
  }
  if (options.max_batch_size == 0 ||
      options.max_batch_size > options.max_queue_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "BatchProcessor: max_batch_size must be in [1, max_queue_size=",
        options.max_queue_size, "], got ", options.max_batch_size));
  }
  if (options.schedule_delay <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("BatchProcessor: schedule_delay must be > 0, got ",
                     absl::FormatDuration(options.schedule_delay)));
  }
  if (!(options.export_trigger_ratio > 0.0 &&
        options.export_trigger_ratio <= 1.0)) {  // Also rejects NaN.
    return absl::InvalidArgumentError(
        absl::StrCat("BatchProcessor: export_trigger_ratio must be in (0, 1], "
                     "got ",
                     options.export_trigger_ratio));
  }
  std::unique_ptr<BatchProcessor> p(
      new BatchProcessor(std::move(exporter), std::move(options)));
  try {
    ctxloop::MutexLock join_lock(&p->join_mu_);
    p->worker_ = std::thread([raw = p.get()] { raw->WorkerLoop(); });
    // Written before `p` is shared with any other thread; the worker itself
    // reads it only when called back from items queued after that.
    p->worker_id_ = p->worker_.get_id();
  } catch (const std::system_error& e) {
    // No worker: mark it done so the destructor does not wait for one.
    ctxloop::MutexLock lock(&p->mu_);
    p->stopping_ = true;
    p->worker_done_ = true;
    return absl::ResourceExhaustedError(absl::StrCat(
        "BatchProcessor: cannot start the worker thread: ", e.what()));
  }
  return p;
}

BatchProcessor::BatchProcessor(std::shared_ptr<SpanExporter> exporter,
                               Options options)
    : exporter_(std::move(exporter)),
      max_queue_size_(options.max_queue_size),
      max_batch_size_(options.max_batch_size),
      schedule_delay_(options.schedule_delay),
      trigger_size_(
          TriggerSize(options.export_trigger_ratio, options.max_queue_size)),
      on_error_(std::move(options.on_error)) {
  queue_.reserve(std::min(max_queue_size_, trigger_size_ + max_batch_size_));
}

BatchProcessor::~BatchProcessor() {
  const absl::Status status = Shutdown(DestructorShutdownTimeout());
  if (absl::IsDeadlineExceeded(status)) {
    {
      ctxloop::MutexLock lock(&mu_);
      abandon_ = true;
    }
    worker_cv_.Signal();
  }
  JoinWorker();
}

void BatchProcessor::OnTraceStart(const TraceData&) {}
void BatchProcessor::OnSpanStart(const SpanData&) {}

void BatchProcessor::OnTraceEnd(const TraceData& trace) {
  Enqueue(ExportItem(std::in_place_type<TraceData>, trace));
}

void BatchProcessor::OnSpanEnd(const SpanData& span) {
  Enqueue(ExportItem(std::in_place_type<SpanData>, span));
}

void BatchProcessor::Enqueue(ExportItem item) {
  absl::Status report;
  bool wake = false;
  {
    ctxloop::MutexLock lock(&mu_);
    if (stopping_) {
      const uint64_t n = ++stats_.dropped_after_shutdown;
      if (ShouldReportDrop(n)) {
        report = absl::FailedPreconditionError(absl::StrCat(
            "BatchProcessor: item ended after Shutdown was dropped (", n,
            " so far)"));
      }
    } else if (queue_.size() + in_flight_ >= max_queue_size_) {
      const uint64_t n = ++stats_.dropped;
      if (ShouldReportDrop(n)) {
        report = absl::ResourceExhaustedError(absl::StrCat(
            "BatchProcessor: queue full (max_queue_size=", max_queue_size_,
            "), item dropped (", n, " so far)"));
      }
    } else {
      queue_.push_back(std::move(item));
      ++stats_.enqueued;
      wake = queue_.size() == trigger_size_;
    }
  }
  if (wake) worker_cv_.Signal();
  if (!report.ok()) Report(report);
  // `item`, if dropped, is destroyed here, outside the lock.
}

absl::Status BatchProcessor::ForceFlush(absl::Duration timeout) {
  if (OnWorkerThread()) {
    return absl::FailedPreconditionError(
        "BatchProcessor::ForceFlush called from the worker thread (exporter "
        "or on_error)");
  }
  ctxloop::MutexLock lock(&mu_);
  if (worker_done_) return absl::OkStatus();
  if (stopping_) {
    // The shutdown drain exports everything; wait for it.
    if (!WaitFor(done_cv_, mu_, timeout, [&] {
          mu_.AssertHeld();
          return worker_done_;
        })) {
      return absl::DeadlineExceededError(
          absl::StrCat("BatchProcessor::ForceFlush: shutdown drain did not "
                       "finish within ",
                       absl::FormatDuration(timeout)));
    }
    return absl::OkStatus();
  }
  const uint64_t generation = ++flush_requested_;
  worker_cv_.Signal();
  if (!WaitFor(done_cv_, mu_, timeout, [&] {
        mu_.AssertHeld();
        return flush_done_ >= generation || worker_done_;
      })) {
    return absl::DeadlineExceededError(absl::StrCat(
        "BatchProcessor::ForceFlush: not done within ",
        absl::FormatDuration(timeout), " (", queue_.size() + in_flight_,
        " items queued or exporting)"));
  }
  // A later generation also covers ours; its status is the latest news.
  return flush_done_ >= generation ? flush_status_ : absl::OkStatus();
}

absl::Status BatchProcessor::Shutdown(absl::Duration timeout) {
  if (OnWorkerThread()) {
    return absl::FailedPreconditionError(
        "BatchProcessor::Shutdown called from the worker thread (exporter or "
        "on_error)");
  }
  absl::Status status;
  {
    ctxloop::MutexLock lock(&mu_);
    if (!stopping_) {
      stopping_ = true;
      worker_cv_.Signal();
    }
    if (!WaitFor(done_cv_, mu_, timeout, [&] {
          mu_.AssertHeld();
          return worker_done_;
        })) {
      return absl::DeadlineExceededError(absl::StrCat(
          "BatchProcessor::Shutdown: not drained within ",
          absl::FormatDuration(timeout), " (", queue_.size() + in_flight_,
          " items queued or exporting)"));
    }
    status = shutdown_status_;
  }
  JoinWorker();
  return status;
}

BatchProcessor::Stats BatchProcessor::stats() const {
  ctxloop::MutexLock lock(&mu_);
  return stats_;
}

bool BatchProcessor::OnWorkerThread() const {
  return worker_id_ == std::this_thread::get_id();
}

void BatchProcessor::JoinWorker() {
  ctxloop::MutexLock lock(&join_mu_);
  if (!worker_.joinable()) return;
  if (OnWorkerThread()) {
    // Destroyed from its own exporter or on_error: joining would deadlock.
    std::fprintf(stderr,
                 "ctxloop BatchProcessor: destroyed on its own worker thread; "
                 "detaching it\n");
    worker_.detach();
    return;
  }
  worker_.join();
}

void BatchProcessor::Report(const absl::Status& status) {
  ctxloop::MutexLock lock(&report_mu_);
  try {
    if (on_error_) {
      on_error_(status);
    } else {
      std::fprintf(stderr, "ctxloop BatchProcessor: %s\n",
                   status.ToString().c_str());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr,
                 "ctxloop BatchProcessor: on_error threw (%s) reporting: %s\n",
                 e.what(), status.ToString().c_str());
  } catch (...) {
    std::fprintf(stderr,
                 "ctxloop BatchProcessor: on_error threw reporting: %s\n",
                 status.ToString().c_str());
  }
}

absl::Status BatchProcessor::ExportBatch(absl::Span<const ExportItem> batch) {
  try {
    return exporter_->Export(batch);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("exporter threw: ", e.what()));
  } catch (...) {
    return absl::InternalError("exporter threw a non-std::exception");
  }
}

absl::Status BatchProcessor::CallExporter(const char* what, bool shutdown) {
  absl::Status status;
  try {
    status = shutdown ? exporter_->Shutdown() : exporter_->Flush();
  } catch (const std::exception& e) {
    status = absl::InternalError(absl::StrCat("threw: ", e.what()));
  } catch (...) {
    status = absl::InternalError("threw a non-std::exception");
  }
  if (!status.ok()) {
    status = absl::Status(status.code(),
                          absl::StrCat("BatchProcessor: exporter ", what,
                                       " failed: ", status.message()));
    Report(status);
  }
  return status;
}

void BatchProcessor::WorkerLoop() {
  using Clock = std::chrono::steady_clock;
  const bool timed = schedule_delay_ < absl::Hours(24 * 365);
  const Clock::duration delay =
      timed ? std::chrono::duration_cast<Clock::duration>(
                  absl::ToChronoNanoseconds(schedule_delay_))
            : Clock::duration::zero();
  Clock::time_point deadline = Clock::now() + delay;

  std::vector<ExportItem> taken;
  mu_.Lock();
  taken.reserve(queue_.capacity());
  while (true) {
    auto ready = [&] {
      mu_.AssertHeld();
      return stopping_ || flush_requested_ > flush_done_ ||
             queue_.size() >= trigger_size_;
    };
    while (!ready()) {
      if (!timed) {
        worker_cv_.Wait(&mu_);
      } else if (!worker_cv_.WaitUntil(&mu_, deadline) &&
                 Clock::now() >= deadline) {
        break;
      }
    }
    const uint64_t flush_generation = flush_requested_;
    const bool flushing = flush_generation > flush_done_;
    const bool stopping = stopping_;

    // Take everything queued now (one swap: producers never wait for us).
    taken.swap(queue_);
    in_flight_ = taken.size();
    absl::Status first_error;
    size_t done = 0;
    while (done < taken.size() && !abandon_) {
      const size_t n = std::min(max_batch_size_, taken.size() - done);
      mu_.Unlock();
      absl::Status status =
          ExportBatch(absl::MakeConstSpan(taken.data() + done, n));
      mu_.Lock();
      done += n;
      in_flight_ -= n;
      if (status.ok()) {
        stats_.exported += n;
        ++stats_.batches_exported;
        continue;
      }
      ++stats_.failed_batches;
      stats_.failed_items += n;
      const uint64_t failed_so_far = stats_.failed_batches;
      status = absl::Status(
          status.code(),
          absl::StrCat("BatchProcessor: export of a batch of ", n,
                       " items failed; they are lost (", failed_so_far,
                       " failed batches so far): ", status.message()));
      // [B1] A batch that fails after Shutdown began (even in a round that
      // started before) is part of the shutdown's result.
      if (stopping_ && drain_error_.ok()) drain_error_ = status;
      mu_.Unlock();
      Report(status);
      if (first_error.ok()) first_error = status;
      mu_.Lock();
    }
    if (done < taken.size()) {  // abandon_: the destructor gave up waiting.
      const size_t n = taken.size() - done;
      in_flight_ = 0;
      stats_.dropped += n;
      mu_.Unlock();
      Report(absl::CancelledError(
          absl::StrCat("BatchProcessor: destroyed before the queue drained; ",
                       n, " items dropped")));
      mu_.Lock();
    }
    if (abandon_ && !queue_.empty()) {
      stats_.dropped += queue_.size();  // Cannot happen (stopping_), be safe.
      queue_.clear();
    }
    mu_.Unlock();
    taken.clear();  // Destroy the items without holding the lock.
    if (taken.capacity() > 4 * max_queue_size_) {
      std::vector<ExportItem>().swap(taken);
    }

    if (flushing) {
      absl::Status status = CallExporter("Flush", /*shutdown=*/false);
      if (first_error.ok()) first_error = status;
      mu_.Lock();
      flush_done_ = std::max(flush_done_, flush_generation);
      flush_status_ = first_error;
      mu_.Unlock();
      done_cv_.SignalAll();
    }
    if (stopping) {
      // stopping_ was set before the swap above, under the lock, so no item
      // was queued since: the queue is drained.
      absl::Status status = CallExporter("Shutdown", /*shutdown=*/true);
      mu_.Lock();
      shutdown_status_ = !drain_error_.ok()  ? drain_error_
                         : !first_error.ok() ? first_error
                                             : status;
      worker_done_ = true;
      mu_.Unlock();
      done_cv_.SignalAll();
      return;
    }
    mu_.Lock();
    if (timed) deadline = Clock::now() + delay;
  }
}

}  // namespace ctxloop
