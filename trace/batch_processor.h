// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/trace/batch_processor.h
// -----------------------------------------------------------------------------
//
// `BatchProcessor` queues finished traces and spans and exports them in
// batches from a worker thread of its own, so the loops that end them never
// wait for I/O.
//
//   absl::StatusOr<std::unique_ptr<ctxloop::JsonLinesExporter>> file =
//       ctxloop::JsonLinesExporter::Create("/tmp/trace.jsonl");
//   if (!file.ok()) return file.status();
//   absl::StatusOr<std::unique_ptr<ctxloop::BatchProcessor>> batch =
//       ctxloop::BatchProcessor::Create(*std::move(file));
//   if (!batch.ok()) return batch.status();
//   ctxloop::Tracer::Options options;
//   options.processors.push_back(*std::move(batch));
//   ctxloop::Tracer tracer(std::move(options));
//
// The processor shares its exporter (`std::shared_ptr`). A host that wants
// the exporter's own `stats()` later, or to call its `Shutdown()` itself
// (an OTLP exporter's cuts a retry short), keeps a `std::shared_ptr` too:
//
//   std::shared_ptr<ctxloop::OtlpHttpExporter> otlp = *std::move(created);
//   auto batch = ctxloop::BatchProcessor::Create(otlp);  // Shares it.
//   ...
//   (void)tracer.Shutdown();  // Drains the queue, shuts the exporter down.
//   ctxloop::OtlpHttpExporter::Stats stats = otlp->stats();  // Still valid.
//
// What is queued: `OnEnd` queues a copy of the span's record; `OnStart`
// does nothing. Items are handed to the
// exporter in the order they were queued, each in exactly one batch; with
// several exports in flight (below) batches may complete out of order.
//
// When the worker exports: every `schedule_delay`; as soon as the queue
// holds `export_trigger_ratio * max_queue_size` items (rounded up) or
// `export_trigger_ratio * max_queue_bytes` estimated bytes; on `ForceFlush`;
// and on `Shutdown`. Each time it exports everything queued at that moment
// (a round), in batches of at most `max_batch_size` items.
//
// Bounds (a burst past them is dropped and counted, never buffered):
//   * `max_queue_size` items queued or being exported (default 262,144);
//   * `max_queue_bytes` estimated bytes queued or being exported (default
//     128 MiB). The estimate (`EstimateBytes`) is the record's own size plus
//     the heap its strings, attributes, events and links hold, so memory is
//     bounded however large a hostile workload makes its attributes; a
//     record larger than the whole bound is dropped. A typical span of a few
//     attributes estimates at under 1 KiB, so the defaults absorb a burst of
//     more than 130,000 spans while the exporter catches up. The estimate
//     leaves out the allocator's own overhead: resident memory at the bound
//     measured about 1.75x it. The item bound stays as a second limit: it
//     caps the per-item bookkeeping and lets hosts keep their old settings;
//     a round's vectors grown by a burst are released after it;
//   * `max_concurrent_exports` `Export` calls in flight (default 2, at most
//     `kMaxConcurrentExports`), only if the exporter says
//     `ExportsConcurrently()`; otherwise one. Each extra export slot is one
//     helper thread started by `Create`, idle between rounds.
//
// Nothing is lost silently. Every item is counted in `stats()` as exported,
// failed (its batch's `Export` returned an error or threw), dropped (the
// queue was full) or dropped after shutdown, and each kind of loss is
// reported to `Options::on_error`: every failed batch; drops rate-limited
// to the 1st, 1000th, 2000th... of each kind. A failed batch loses only its
// own items; the worker goes on with the next.
//
// Cost: `OnEnd` copies the item (outside any lock), then take
// one mutex and move it into a vector whose capacity is reused between
// rounds; they wake the worker only when the queue reaches the trigger size,
// not per item. The worker takes the whole queue with one swap, so producers
// never wait for an export. Estimating an item's size walks its strings and
// attributes once, before the lock. Memory: at most `max_queue_size` items
// and `max_queue_bytes` estimated bytes, counting the ones being exported.
//
// Threading: the `TraceProcessor` methods and `stats()` are thread-safe.
// `ForceFlush` and `Shutdown` block the caller (up to their timeout); do not
// call them from a loop thread that must stay responsive, nor from
// `on_error` or the exporter (they return `kFailedPrecondition` there). The
// exporter's `Export` is called from the worker and its helper threads, at
// most `max_concurrent_exports` at once (one unless the exporter
// `ExportsConcurrently()`); `Flush` and `Shutdown` from the worker only, when
// no `Export` is in flight.
// `on_error` is called from producer threads (drops) and from the worker and
// its helpers (failed exports, exporter `Flush`/`Shutdown` errors), never
// concurrently with itself; it must not call back into this processor.

#ifndef CTXLOOP_TRACE_BATCH_PROCESSOR_H_
#define CTXLOOP_TRACE_BATCH_PROCESSOR_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "ctxloop/loop/mutex.h"
#include "ctxloop/trace/exporter.h"
#include "ctxloop/trace/processor.h"
#include "ctxloop/trace/span_data.h"

namespace ctxloop {

class BatchProcessor final : public TraceProcessor {
 public:
  // The most `Export` calls a processor keeps in flight.
  static constexpr int kMaxConcurrentExports = 16;

  struct Options {
    // Items queued or being exported, at most; > 0. More are dropped.
    size_t max_queue_size = 262144;
    // Estimated bytes (`EstimateBytes`) queued or being exported, at most;
    // > 0. More are dropped.
    size_t max_queue_bytes = size_t{128} << 20;
    // Items per `Export` call, at most; <= `max_queue_size`.
    size_t max_batch_size = 512;
    // `Export` calls in flight at once, in [1, kMaxConcurrentExports]; used
    // only if the exporter `ExportsConcurrently()`, else 1.
    int max_concurrent_exports = 2;
    // Export at least this often; > 0. `absl::InfiniteDuration()`: only on
    // the trigger, `ForceFlush` and `Shutdown`.
    absl::Duration schedule_delay = absl::Seconds(5);
    // Export early when the queue is this full (items or bytes); in (0, 1].
    // The default wakes the worker at about 5,000 items or 2.6 MiB.
    double export_trigger_ratio = 0.02;
    // Receives losses (drops, failed batches); see the threading note
    // above. Default (null): one line on stderr per report.
    TraceErrorCallback on_error;
  };

  // Counters since creation; each item ends in exactly one of exported,
  // failed_items, dropped and dropped_after_shutdown (or is still queued).
  struct Stats {
    uint64_t enqueued = 0;                // Accepted into the queue.
    uint64_t exported = 0;                // In batches `Export` accepted.
    uint64_t dropped = 0;                 // Queue full (or abandoned, below).
    uint64_t dropped_bytes_bound = 0;     // Of `dropped`: the byte bound hit.
    uint64_t dropped_after_shutdown = 0;  // Ended after `Shutdown` began.
    uint64_t failed_batches = 0;          // `Export` returned error / threw.
    uint64_t failed_items = 0;            // Items in those batches.
    uint64_t batches_exported = 0;        // Successful `Export` calls.
    uint64_t queued_bytes = 0;       // Estimated bytes queued or exporting now.
    uint64_t peak_queued_bytes = 0;  // The most `queued_bytes` has been.
    int max_exports_in_flight = 0;   // The most `Export` calls seen at once.
  };

  // The estimated memory `item` holds while queued: its own size plus the
  // heap capacity of its strings, attributes, events and links.
  static size_t EstimateBytes(const SpanData& item);

  // How long the destructor waits for a `Shutdown` that was not called.
  static absl::Duration DestructorShutdownTimeout() {
    return absl::Seconds(30);
  }

  // Starts the worker thread. `kInvalidArgument` for a null exporter or
  // options outside the ranges above; `kResourceExhausted` if no thread can
  // be started.
  static absl::StatusOr<std::unique_ptr<BatchProcessor>> Create(
      std::shared_ptr<SpanExporter> exporter);
  static absl::StatusOr<std::unique_ptr<BatchProcessor>> Create(
      std::shared_ptr<SpanExporter> exporter, Options options);

  BatchProcessor(const BatchProcessor&) = delete;
  BatchProcessor& operator=(const BatchProcessor&) = delete;

  // Runs `Shutdown(DestructorShutdownTimeout())` if `Shutdown` has not
  // completed. If the queue still has not drained, the items not yet handed
  // to the exporter are dropped (counted, reported); the destructor still
  // waits for an `Export` call in progress to return, then joins the worker.
  ~BatchProcessor() override;

  void OnStart(const SpanData& span) override;
  void OnEnd(const SpanData& span) override;

  // Wakes the worker, which exports every item queued before this call and
  // then calls the exporter's `Flush()`; returns when it has. Returns the
  // first error among those exports and the `Flush()` (each also reported to
  // `on_error`), `kDeadlineExceeded` if `timeout` passes first (the flush
  // still completes in the background), OK at once after `Shutdown`
  // completed.
  absl::Status ForceFlush(absl::Duration timeout) override;

  // Stops accepting items (later ones count as `dropped_after_shutdown`),
  // exports everything queued, calls the exporter's `Shutdown()` and joins
  // the worker. Returns the first export error after `Shutdown` began
  // (including a batch that was being exported when it was called [B1]),
  // else the exporter's `Shutdown()` status; `kDeadlineExceeded` if `timeout`
  // passes first (the drain goes on; call again to wait more). Idempotent: once
  // complete, later calls return the same status at once.
  absl::Status Shutdown(absl::Duration timeout) override;

  Stats stats() const;

 private:
  BatchProcessor(std::shared_ptr<SpanExporter> exporter, Options options);

  void Enqueue(SpanData&& item, size_t bytes);
  void WorkerLoop();
  void HelperLoop();
  // Exports batches of the current round until none is left to take (or
  // the destructor gave up); called by the worker and the helpers.
  void RunRoundBatches() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stops and joins the helpers (worker thread, or Create on failure).
  void StopHelpers();
  // Exports `batch` (no lock held); returns the export's status.
  absl::Status ExportBatch(absl::Span<const SpanData> batch);
  absl::Status CallExporter(const char* what, bool shutdown);
  void Report(const absl::Status& status);
  bool OnWorkerThread() const;
  void JoinWorker();

  const std::shared_ptr<SpanExporter> exporter_;
  const size_t max_queue_size_;
  const size_t max_queue_bytes_;
  const size_t max_batch_size_;
  const int concurrent_exports_;  // 1 unless the exporter takes more.
  const size_t trigger_bytes_;
  const absl::Duration schedule_delay_;
  const size_t trigger_size_;

  // Serializes on_error_; taken without mu_ held.
  ctxloop::Mutex report_mu_ ABSL_ACQUIRED_AFTER(mu_);
  TraceErrorCallback on_error_ ABSL_GUARDED_BY(report_mu_);

  mutable ctxloop::Mutex mu_;
  ctxloop::CondVar worker_cv_;  // Wakes the worker.
  ctxloop::CondVar done_cv_;    // Wakes ForceFlush/Shutdown waiters.
  std::vector<SpanData> queue_ ABSL_GUARDED_BY(mu_);
  std::vector<size_t> queue_item_bytes_ ABSL_GUARDED_BY(mu_);  // Per item.
  size_t queue_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  // Taken by the worker, not yet done (items, estimated bytes).
  size_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  size_t in_flight_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  // The round being exported: items [round_next_, round_size_) of
  // round_items_ are still to be taken, round_active_ exports run.
  bool round_open_ ABSL_GUARDED_BY(mu_) = false;
  const SpanData* round_items_ ABSL_GUARDED_BY(mu_) = nullptr;
  const size_t* round_item_bytes_ ABSL_GUARDED_BY(mu_) = nullptr;
  size_t round_size_ ABSL_GUARDED_BY(mu_) = 0;
  size_t round_next_ ABSL_GUARDED_BY(mu_) = 0;
  int round_active_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status round_first_error_ ABSL_GUARDED_BY(mu_);
  bool helpers_exit_ ABSL_GUARDED_BY(mu_) = false;
  ctxloop::CondVar helpers_cv_;  // Wakes helpers: a round opened, or exit.
  ctxloop::CondVar round_cv_;    // Wakes the worker: the round's last export.
  Stats stats_ ABSL_GUARDED_BY(mu_);
  // Generation of the latest ForceFlush, and the one the worker completed
  // (with its result).
  uint64_t flush_requested_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t flush_done_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status flush_status_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;     // Shutdown began.
  bool abandon_ ABSL_GUARDED_BY(mu_) = false;      // Destructor gave up.
  bool worker_done_ ABSL_GUARDED_BY(mu_) = false;  // Drained, shut down.
  absl::Status shutdown_status_ ABSL_GUARDED_BY(mu_);
  // The first export error after Shutdown began [B1].
  absl::Status drain_error_ ABSL_GUARDED_BY(mu_);

  ctxloop::Mutex join_mu_;  // Guards joining worker_.
  std::thread worker_ ABSL_GUARDED_BY(join_mu_);
  std::thread::id worker_id_;  // Set once in Create, before sharing.
  // Set in Create before sharing; joined by the worker as it ends.
  std::vector<std::thread> helpers_;
  std::vector<std::thread::id> helper_ids_;
};

}  // namespace ctxloop

#endif  // CTXLOOP_TRACE_BATCH_PROCESSOR_H_
