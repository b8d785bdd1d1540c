// Copyright 2026 The ctxloop Authors.

#include "ctxloop/trace/batch_processor.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <string>
#include <system_error>
#include <utility>
#include <variant>
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

size_t StringBytes(const std::string& str) {
  // A string's heap block, if it has one (beyond the small-string buffer).
  return str.capacity() > 15 ? str.capacity() + 1 : 0;
}

size_t AttributesBytes(const Attributes& attributes) {
  size_t n = attributes.capacity() * sizeof(Attributes::value_type);
  for (const auto& [key, value] : attributes) {
    n += StringBytes(key);
    if (const auto* str = std::get_if<std::string>(&value)) {
      n += StringBytes(*str);
    } else if (const auto* strs =
                   std::get_if<std::vector<std::string>>(&value)) {
      n += strs->capacity() * sizeof(std::string);
      for (const std::string& e : *strs) n += StringBytes(e);
    } else if (const auto* ints = std::get_if<std::vector<int64_t>>(&value)) {
      n += ints->capacity() * sizeof(int64_t);
    } else if (const auto* dbls = std::get_if<std::vector<double>>(&value)) {
      n += dbls->capacity() * sizeof(double);
    } else if (const auto* bools = std::get_if<std::vector<bool>>(&value)) {
      n += bools->capacity() / 8 + sizeof(uint64_t);
    }
  }
  return n;
}

size_t SiteBytes(const ExecutionSite& site) {
  return StringBytes(site.context_name);
}

}  // namespace

size_t BatchProcessor::EstimateBytes(const SpanData& r) {
  size_t n = sizeof(SpanData) + StringBytes(r.name) +
             AttributesBytes(r.attributes) + StringBytes(r.status.message) +
             StringBytes(r.scope.name) + StringBytes(r.scope.version) +
             StringBytes(r.trace_state) +
             r.events.capacity() * sizeof(SpanEvent) +
             r.links.capacity() * sizeof(SpanLink) + SiteBytes(r.started) +
             SiteBytes(r.finish_called) + SiteBytes(r.finish_ran);
  for (const SpanEvent& e : r.events) {
    n += StringBytes(e.name) + AttributesBytes(e.attributes);
  }
  for (const SpanLink& l : r.links) n += AttributesBytes(l.attributes);
  return n;
}

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
  if (options.max_queue_bytes == 0) {
    return absl::InvalidArgumentError(
        "BatchProcessor: max_queue_bytes must be > 0");
  }
  if (options.max_concurrent_exports < 1 ||
      options.max_concurrent_exports > kMaxConcurrentExports) {
    return absl::InvalidArgumentError(absl::StrCat(
        "BatchProcessor: max_concurrent_exports must be in [1, ",
        kMaxConcurrentExports, "], got ", options.max_concurrent_exports));
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
    for (int i = 1; i < p->concurrent_exports_; ++i) {
      p->helpers_.emplace_back([raw = p.get()] { raw->HelperLoop(); });
      p->helper_ids_.push_back(p->helpers_.back().get_id());
    }
    p->worker_ = std::thread([raw = p.get()] { raw->WorkerLoop(); });
    // Written before `p` is shared with any other thread; the worker itself
    // reads it only when called back from items queued after that.
    p->worker_id_ = p->worker_.get_id();
  } catch (const std::system_error& e) {
    // No worker: mark it done so the destructor does not wait for one.
    p->StopHelpers();
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
      max_queue_bytes_(options.max_queue_bytes),
      max_batch_size_(options.max_batch_size),
      concurrent_exports_(exporter_->ExportsConcurrently()
                              ? options.max_concurrent_exports
                              : 1),
      trigger_bytes_(
          TriggerSize(options.export_trigger_ratio, options.max_queue_bytes)),
      schedule_delay_(options.schedule_delay),
      trigger_size_(
          TriggerSize(options.export_trigger_ratio, options.max_queue_size)),
      on_error_(std::move(options.on_error)) {
  const size_t reserve =
      std::min(max_queue_size_, trigger_size_ + max_batch_size_);
  queue_.reserve(reserve);
  queue_item_bytes_.reserve(reserve);
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

void BatchProcessor::OnStart(const SpanData&) {}

void BatchProcessor::OnEnd(const SpanData& span) {
  SpanData item(span);
  const size_t bytes = EstimateBytes(item);
  Enqueue(std::move(item), bytes);
}

void BatchProcessor::Enqueue(SpanData&& item, size_t bytes) {
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
    } else if (queue_.size() + in_flight_ >= max_queue_size_ ||
               bytes > max_queue_bytes_ - queue_bytes_ - in_flight_bytes_) {
      const bool by_bytes = queue_.size() + in_flight_ < max_queue_size_;
      if (by_bytes) ++stats_.dropped_bytes_bound;
      const uint64_t n = ++stats_.dropped;
      if (ShouldReportDrop(n)) {
        report = absl::ResourceExhaustedError(absl::StrCat(
            "BatchProcessor: queue full (max_queue_size=", max_queue_size_,
            ", max_queue_bytes=", max_queue_bytes_, ", bound hit: ",
            by_bytes ? "bytes" : "items", "), item dropped (", n, " so far)"));
      }
    } else {
      const bool below_bytes = queue_bytes_ < trigger_bytes_;
      queue_.push_back(std::move(item));
      queue_item_bytes_.push_back(bytes);
      queue_bytes_ += bytes;
      ++stats_.enqueued;
      stats_.peak_queued_bytes = std::max<uint64_t>(
          stats_.peak_queued_bytes, queue_bytes_ + in_flight_bytes_);
      wake = queue_.size() == trigger_size_ ||
             (below_bytes && queue_bytes_ >= trigger_bytes_);
    }
  }
  if (wake) worker_cv_.Signal();
  if (!report.ok()) Report(report);
  // `item`, if dropped, is destroyed by the caller, outside the lock.
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
  Stats s = stats_;
  s.queued_bytes = queue_bytes_ + in_flight_bytes_;
  return s;
}

bool BatchProcessor::OnWorkerThread() const {
  const std::thread::id self = std::this_thread::get_id();
  if (worker_id_ == self) return true;
  for (const std::thread::id& id : helper_ids_) {
    if (id == self) return true;
  }
  return false;
}

void BatchProcessor::StopHelpers() {
  {
    ctxloop::MutexLock lock(&mu_);
    helpers_exit_ = true;
  }
  helpers_cv_.SignalAll();
  for (std::thread& t : helpers_) {
    if (t.joinable()) t.join();
  }
}

void BatchProcessor::HelperLoop() {
  ctxloop::MutexLock lock(&mu_);
  while (true) {
    while (!helpers_exit_ && !(round_open_ && round_next_ < round_size_)) {
      helpers_cv_.Wait(&mu_);
    }
    if (helpers_exit_) return;
    RunRoundBatches();
  }
}

void BatchProcessor::RunRoundBatches() {
  while (round_open_ && round_next_ < round_size_ && !abandon_) {
    const size_t begin = round_next_;
    const size_t n = std::min(max_batch_size_, round_size_ - begin);
    round_next_ += n;
    ++round_active_;
    stats_.max_exports_in_flight =
        std::max(stats_.max_exports_in_flight, round_active_);
    const SpanData* items = round_items_ + begin;
    size_t bytes = 0;
    for (size_t i = 0; i < n; ++i) bytes += round_item_bytes_[begin + i];
    // More batches left: let an idle helper take the next one.
    if (round_next_ < round_size_) helpers_cv_.Signal();
    mu_.Unlock();
    absl::Status status = ExportBatch(absl::MakeConstSpan(items, n));
    mu_.Lock();
    --round_active_;
    in_flight_ -= n;
    in_flight_bytes_ -= bytes;
    if (status.ok()) {
      stats_.exported += n;
      ++stats_.batches_exported;
    } else {
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
      if (round_first_error_.ok()) round_first_error_ = status;
      mu_.Unlock();
      Report(status);
      mu_.Lock();
    }
    if (round_active_ == 0) round_cv_.SignalAll();
  }
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

absl::Status BatchProcessor::ExportBatch(absl::Span<const SpanData> batch) {
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

  std::vector<SpanData> taken;
  std::vector<size_t> taken_bytes;
  mu_.Lock();
  const size_t reserve = queue_.capacity();
  taken.reserve(reserve);
  taken_bytes.reserve(reserve);
  while (true) {
    auto ready = [&] {
      mu_.AssertHeld();
      return stopping_ || flush_requested_ > flush_done_ ||
             queue_.size() >= trigger_size_ || queue_bytes_ >= trigger_bytes_;
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
    taken_bytes.swap(queue_item_bytes_);
    in_flight_ = taken.size();
    in_flight_bytes_ = queue_bytes_;
    queue_bytes_ = 0;
    // Open the round: the worker and up to concurrent_exports_ - 1 helpers
    // take its batches in order, each item in exactly one batch.
    round_items_ = taken.data();
    round_item_bytes_ = taken_bytes.data();
    round_size_ = taken.size();
    round_next_ = 0;
    round_first_error_ = absl::OkStatus();
    round_open_ = true;
    RunRoundBatches();
    // [B2] Wait for the exports helpers still run: ForceFlush's `Flush` and
    // Shutdown's exporter `Shutdown` come only after every batch of the
    // round returned, and the items stay alive until then.
    while (round_active_ > 0) round_cv_.Wait(&mu_);
    round_open_ = false;
    absl::Status first_error = round_first_error_;
    const size_t done = round_next_;
    round_items_ = nullptr;
    round_item_bytes_ = nullptr;
    round_size_ = 0;
    round_next_ = 0;
    if (done < taken.size()) {  // abandon_: the destructor gave up waiting.
      const size_t n = taken.size() - done;
      in_flight_ = 0;
      in_flight_bytes_ = 0;
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
      queue_item_bytes_.clear();
      queue_bytes_ = 0;
    }
    mu_.Unlock();
    taken.clear();  // Destroy the items without holding the lock.
    taken_bytes.clear();
    // A burst grew the round's vectors: give the memory back.
    if (taken.capacity() > 4 * reserve) {
      std::vector<SpanData>().swap(taken);
      std::vector<size_t>().swap(taken_bytes);
      taken.reserve(reserve);
      taken_bytes.reserve(reserve);
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
      // was queued since: the queue is drained. [B3] The helpers are idle
      // (the round ended above); they end before the exporter's Shutdown.
      StopHelpers();
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
