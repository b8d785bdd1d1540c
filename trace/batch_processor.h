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
// What is queued: `OnSpanEnd` and `OnTraceEnd` queue a copy of the item;
// `OnSpanStart` and `OnTraceStart` do nothing. Items are exported in the
// order they were queued.
//
// When the worker exports: every `schedule_delay`; as soon as the queue
// holds `export_trigger_ratio * max_queue_size` items (rounded up); on
// `ForceFlush`; and on `Shutdown`. Each time it exports everything queued at
// that moment, in batches of at most `max_batch_size` items.
//
// Nothing is lost silently. Every item is counted in `stats()` as exported,
// failed (its batch's `Export` returned an error or threw), dropped (the
// queue was full) or dropped after shutdown, and each kind of loss is
// reported to `Options::on_error`: every failed batch; drops rate-limited
// to the 1st, 1000th, 2000th... of each kind. A failed batch loses only its
// own items; the worker goes on with the next.
//
// Cost: `OnSpanEnd`/`OnTraceEnd` copy the item (outside any lock), then take
// one mutex and move it into a vector whose capacity is reused between
// rounds; they wake the worker only when the queue reaches the trigger size,
// not per item. The worker takes the whole queue with one swap, so producers
// never wait for an export. Memory: at most `max_queue_size` items, counting
// the ones being exported.
//
// Threading: the `TraceProcessor` methods and `stats()` are thread-safe.
// `ForceFlush` and `Shutdown` block the caller (up to their timeout); do not
// call them from a loop thread that must stay responsive, nor from
// `on_error` or the exporter (they return `kFailedPrecondition` there). The
// exporter is called from the worker thread only, never concurrently.
// `on_error` is called from producer threads (drops) and from the worker
// (failed exports, exporter `Flush`/`Shutdown` errors), never concurrently
// with itself; it must not call back into this processor.

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
  // Receives losses (drops, failed batches); see the threading note above.
  using ErrorCallback = absl::AnyInvocable<void(const absl::Status&)>;

  struct Options {
    // Items queued or being exported, at most. More are dropped.
    size_t max_queue_size = 8192;
    // Items per `Export` call, at most; <= `max_queue_size`.
    size_t max_batch_size = 128;
    // Export at least this often; > 0. `absl::InfiniteDuration()`: only on
    // the trigger, `ForceFlush` and `Shutdown`.
    absl::Duration schedule_delay = absl::Seconds(5);
    // Export early when the queue is this full; in (0, 1].
    double export_trigger_ratio = 0.7;
    // Default (null): one line on stderr per report.
    ErrorCallback on_error;
  };

  // Counters since creation; each item ends in exactly one of exported,
  // failed_items, dropped and dropped_after_shutdown (or is still queued).
  struct Stats {
    uint64_t enqueued = 0;                // Accepted into the queue.
    uint64_t exported = 0;                // In batches `Export` accepted.
    uint64_t dropped = 0;                 // Queue full (or abandoned, below).
    uint64_t dropped_after_shutdown = 0;  // Ended after `Shutdown` began.
    uint64_t failed_batches = 0;          // `Export` returned error / threw.
    uint64_t failed_items = 0;            // Items in those batches.
    uint64_t batches_exported = 0;        // Successful `Export` calls.
  };

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

  void OnTraceStart(const TraceData& trace) override;
  void OnTraceEnd(const TraceData& trace) override;
  void OnSpanStart(const SpanData& span) override;
  void OnSpanEnd(const SpanData& span) override;

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

  void Enqueue(ExportItem item);
  void WorkerLoop();
  // Exports `batch` (no lock held); returns the export's status.
  absl::Status ExportBatch(absl::Span<const ExportItem> batch);
  absl::Status CallExporter(const char* what, bool shutdown);
  void Report(const absl::Status& status);
  bool OnWorkerThread() const;
  void JoinWorker();

  const std::shared_ptr<SpanExporter> exporter_;
  const size_t max_queue_size_;
  const size_t max_batch_size_;
  const absl::Duration schedule_delay_;
  const size_t trigger_size_;

  // Serializes on_error_; taken without mu_ held.
  ctxloop::Mutex report_mu_ ABSL_ACQUIRED_AFTER(mu_);
  ErrorCallback on_error_ ABSL_GUARDED_BY(report_mu_);

  mutable ctxloop::Mutex mu_;
  ctxloop::CondVar worker_cv_;  // Wakes the worker.
  ctxloop::CondVar done_cv_;    // Wakes ForceFlush/Shutdown waiters.
  std::vector<ExportItem> queue_ ABSL_GUARDED_BY(mu_);
  // Taken by the worker, not yet done.
  size_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
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
};

}  // namespace ctxloop

#endif  // CTXLOOP_TRACE_BATCH_PROCESSOR_H_
