// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/trace/otlp/otlp_http_exporter.h
// -----------------------------------------------------------------------------
//
// `OtlpHttpExporter` sends traces to an OpenTelemetry collector (the
// OpenTelemetry Collector, Jaeger v2, Tempo, ...): each `Export` POSTs one
// `ExportTraceServiceRequest` as OTLP/JSON (`otlp_json.h`) to
// `<endpoint>/v1/traces`. Put it behind a `BatchProcessor`:
//
//   absl::StatusOr<ctxloop::OtlpHttpExporter::Options> options =
//       ctxloop::OtlpHttpExporter::OptionsFromEnvironment();
//   if (!options.ok()) return options.status();
//   absl::StatusOr<std::unique_ptr<ctxloop::OtlpHttpExporter>> otlp =
//       ctxloop::OtlpHttpExporter::Create(*std::move(options));
//   if (!otlp.ok()) return otlp.status();
//   auto batch = ctxloop::BatchProcessor::Create(*std::move(otlp));
//
// `Options` is an ordinary copyable value. To keep `stats()` (or an early
// `Shutdown()`) after handing the exporter to a processor, keep a
// `std::shared_ptr` to it: the processor holds another.
//
//   std::shared_ptr<ctxloop::OtlpHttpExporter> exporter = *std::move(otlp);
//   auto batch = ctxloop::BatchProcessor::Create(exporter);
//   ...
//   (void)tracer.Shutdown();  // The processor drains and shuts the exporter.
//   ctxloop::OtlpHttpExporter::Stats stats = exporter->stats();
//
// It runs on ctxloop itself: a `LoopThread` of its own drives libevent's
// HTTP client on that loop's `event_base` (HTTP/1.1 keep-alive: an answered
// request's connection is reused by the next; one that failed or timed out
// is closed, and so is one the collector answers with `Connection: close`), so
// no caller's loop ever waits for the network. `Export` blocks its caller
// (the batch processor's worker) until the batch is delivered, failed for
// good or out of time.
//
// Delivery rules (the OTLP/HTTP specification's):
//   * 2xx: delivered. A body with `partialSuccess.rejectedSpans` is read;
//     those spans are counted in `Stats::spans_rejected` and reported to
//     `Options::on_error`, the rest count as exported.
//   * 429, 502, 503, 504, a connection error, an attempt past its deadline
//     or a response over a size cap (below): retried after the `Retry-After`
//     response header (seconds or an HTTP date) if there is one, else after an
//     exponential backoff with jitter
//     (`initial_backoff` doubling to `max_backoff`, each multiplied by a
//     random factor in [0.5, 1]); at most `max_attempts` attempts, all
//     within `timeout` of the `Export` call.
//   * Any other status: permanent for that batch (no retry).
//   A batch that is not delivered makes `Export` return an error (so the
//   batch processor counts it as failed) and is counted in `Stats`; nothing
//   is dropped without being counted.
//
// Memory is bounded: the exporter holds only the batch being exported (its
// encoded body, at most one per concurrent `Export` caller); the batch
// processor bounds everything queued before it. A response is read up to
// `Options::max_response_headers` bytes of status line and headers (default
// 16 KiB) and `Options::max_response_body` bytes of body (default 64 KiB,
// after de-chunking; the partial-success JSON it carries is tens of bytes),
// and at most that plus 64 KiB sits unparsed in the connection's input
// buffer (an endless chunk-size line stops being read there until the
// deadline). A response over either cap ends the attempt at once: the
// connection is closed, `Stats::responses_too_large` counts it, and the
// attempt counts as failed and retryable like a connection error (the
// answer could not be read, so whether the batch arrived is unknown; OTLP
// retries such failures, at the price of a possible duplicate).
//
// Time is bounded: each attempt has a deadline (`attempt_timeout`, cut to
// what is left of `timeout`) for the whole of connect, send and response,
// however slowly the collector trickles bytes. At the deadline the request
// is cancelled (`evhttp_cancel_request`) and its connection freed (closed),
// and `Stats::attempts_timed_out` counts it; `Export` returns within
// `timeout` plus scheduling slack.
//
// The partial-success body is parsed without recursion (see
// `otlp_response.h`: an explicit heap stack, at most 32 levels deep); a 2xx
// body that is not a readable ExportTraceServiceResponse counts its spans as
// exported, is counted in `Stats::responses_unparsable` and reported.
//
// Configuration: `Options`, or the standard environment variables through
// `OptionsFromEnvironment`: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as
// is), else `OTEL_EXPORTER_OTLP_ENDPOINT` (a base URL; "/v1/traces" is
// appended), `OTEL_EXPORTER_OTLP_HEADERS` ("k=v,k2=v2", percent-decoded),
// `OTEL_EXPORTER_OTLP_TIMEOUT` (milliseconds), `OTEL_EXPORTER_OTLP_COMPRESSION`
// ("gzip" or "none"), `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`; the
// `_TRACES_` variants of headers, timeout and compression win over the
// general ones. Only `http://` endpoints are supported (no TLS).
//
// Shutdown cases:
//   [H1] `Shutdown` during an `Export`'s backoff or request: the `Export`
//        stops at once and returns `kCancelled`; its spans count as failed.
//   [H2] `Export` after `Shutdown`: `kFailedPrecondition`, counted as failed.
//   [H3] A request still in flight at `Shutdown`: its connection is freed on
//        the exporter's loop before the loop ends; its callback never runs,
//        and its deadline is cancelled.
//   [H5] An attempt's deadline passes before its answer is complete: the
//        request is cancelled and its connection freed on the loop thread
//        (never inside one of libevent's callbacks for that connection);
//        an answer completing first cancels the deadline instead.
//   [H4] The destructor calls `Shutdown`.
//
// Cost: per `Export`, one JSON encoding of the batch (and a gzip pass if
// enabled) on the caller's thread, one HTTP request per attempt on the
// exporter's loop thread. One thread for the exporter's lifetime.
//
// Thread-safety: every method is thread-safe. `Export` may be called
// concurrently (each call is its own request); `Shutdown` from any thread
// except the exporter's own loop thread (callbacks never run user code
// there).

#ifndef CTXLOOP_TRACE_OTLP_OTLP_HTTP_EXPORTER_H_
#define CTXLOOP_TRACE_OTLP_OTLP_HTTP_EXPORTER_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "ctxloop/loop/mutex.h"
#include "ctxloop/trace/exporter.h"
#include "ctxloop/trace/otlp/otlp_json.h"

namespace ctxloop {

class OtlpHttpExporter final : public SpanExporter {
 public:
  struct Options {
    // The full URL requests go to, e.g. "http://127.0.0.1:4318/v1/traces"
    // (see `TracesUrl` for a base URL).
    std::string endpoint = "http://localhost:4318/v1/traces";
    // Extra request headers (e.g. {"authorization", "Bearer ..."}).
    std::vector<std::pair<std::string, std::string>> headers;
    // Time for one `Export`, all attempts and backoffs included; > 0.
    absl::Duration timeout = absl::Seconds(10);
    // Deadline for one attempt (connect, send, answer: the whole of it, not
    // an inactivity timeout), at most what is left of `timeout`; > 0. A slow
    // collector then costs one attempt, not the whole budget.
    absl::Duration attempt_timeout = absl::InfiniteDuration();
    // Compress request bodies (Content-Encoding: gzip).
    bool gzip = false;
    // Retries: at most this many attempts per batch (>= 1), backoff between
    // them (both > 0, initial <= max).
    int max_attempts = 5;
    absl::Duration initial_backoff = absl::Seconds(1);
    absl::Duration max_backoff = absl::Seconds(5);
    // Caps on what a response may make the exporter buffer (> 0): the
    // status line plus headers, and the body (after de-chunking). Over
    // either, the attempt ends as a failed, retryable one.
    size_t max_response_headers = size_t{16} * 1024;
    size_t max_response_body = size_t{64} * 1024;
    // The longest `Retry-After` honoured; longer ones are cut to this (and
    // to what remains of `timeout`).
    absl::Duration max_retry_after = absl::Seconds(30);
    // The resource; empty: {"service.name": "ctxloop"}.
    otlp::Resource resource;
    // Receives every failed batch, rejected spans (partial success) and
    // environment problems; called from the `Export` caller's thread, never
    // concurrently with itself. Default (null): one line on stderr.
    // A `TraceErrorCallback` (a `std::function`), so that `Options` is
    // copyable: one set of options for several exporters, or kept after
    // `Create`.
    TraceErrorCallback on_error;
  };

  // Counters since creation. Every span handed to `Export` ends in exactly
  // one of spans_exported, spans_rejected, spans_failed.
  struct Stats {
    uint64_t export_calls = 0;
    uint64_t requests = 0;  // HTTP attempts made.
    uint64_t retries = 0;   // Attempts after the first.
    uint64_t retry_after_honoured = 0;
    uint64_t batches_exported = 0;
    uint64_t batches_failed = 0;
    uint64_t spans_exported = 0;  // Accepted by the collector.
    uint64_t spans_rejected = 0;  // Refused in a partial success.
    uint64_t spans_failed = 0;    // In batches not delivered.
    uint64_t bytes_sent = 0;      // Request bodies (after gzip).
    // Attempts whose response exceeded `max_response_headers` or
    // `max_response_body` (refused, connection closed).
    uint64_t responses_too_large = 0;
    // Bytes read from the collector (status lines, headers, bodies).
    uint64_t response_bytes_read = 0;
    // Attempts cancelled at their deadline (connection closed).
    uint64_t attempts_timed_out = 0;
    // 2xx responses whose body was not a readable ExportTraceServiceResponse
    // (not JSON, not an object, nested too deep); their spans count as
    // exported.
    uint64_t responses_unparsable = 0;
  };

  // `base` + "/v1/traces" (one slash between them).
  static std::string TracesUrl(absl::string_view base);

  // `base` with the environment variables above applied over it. Errors:
  // an unparsable `OTEL_EXPORTER_OTLP_TIMEOUT` / `_HEADERS` /
  // `_COMPRESSION` (`kInvalidArgument`, naming the variable).
  static absl::StatusOr<Options> OptionsFromEnvironment(Options base);
  static absl::StatusOr<Options> OptionsFromEnvironment() {
    return OptionsFromEnvironment(Options());
  }

  // Starts the exporter's loop thread. `kInvalidArgument` for an endpoint
  // that is not an http:// URL with a host, or options out of range.
  static absl::StatusOr<std::unique_ptr<OtlpHttpExporter>> Create(
      Options options);

  OtlpHttpExporter(const OtlpHttpExporter&) = delete;
  OtlpHttpExporter& operator=(const OtlpHttpExporter&) = delete;
  ~OtlpHttpExporter() override;  // [H4]

  // Delivers `batch` (see the rules above). OK once delivered (even with
  // rejected spans, which are counted and reported); otherwise the last
  // attempt's error: `kUnavailable` (connection error, retryable status),
  // `kDeadlineExceeded` (out of time), `kInvalidArgument`/`kPermissionDenied`
  // /... (permanent HTTP status), `kCancelled` [H1], `kFailedPrecondition`
  // [H2]. Items with invalid ids are left out and counted as failed.
  absl::Status Export(absl::Span<const SpanData> batch) override;
  // Nothing is buffered between calls: OK.
  absl::Status Flush() override;
  // True: each `Export` is its own request, so a `BatchProcessor` may keep
  // several in flight (`Options::max_concurrent_exports`).
  bool ExportsConcurrently() const override { return true; }
  // Cancels exports in progress [H1], frees in-flight requests [H3] and
  // stops the loop thread. Idempotent.
  absl::Status Shutdown() override;

  Stats stats() const;

 private:
  struct Impl;
  explicit OtlpHttpExporter(std::unique_ptr<Impl> impl);
  void Report(const absl::Status& status);

  const std::unique_ptr<Impl> impl_;
};

}  // namespace ctxloop

#endif  // CTXLOOP_TRACE_OTLP_OTLP_HTTP_EXPORTER_H_
