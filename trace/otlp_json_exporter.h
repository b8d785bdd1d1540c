// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/trace/otlp_json_exporter.h
// -----------------------------------------------------------------------------
//
// `OtlpJsonExporter` appends OTLP/JSON to a file: each non-empty `Export`
// call writes one line holding one `ExportTraceServiceRequest`
// (opentelemetry.proto.collector.trace.v1) in the protobuf JSON mapping, the
// format the OpenTelemetry Collector's `otlpjsonfile` receiver reads and
// `otlphttp` accepts with `Content-Type: application/json`:
//
//   {"resourceSpans":[{
//     "resource":{"attributes":[
//       {"key":"service.name","value":{"stringValue":"<service_name>"}}]},
//     "scopeSpans":[{"scope":{"name":"ctxloop","version":"0.1"},
//                    "spans":[SPAN,...]}]}]}
//
//   SPAN = {"traceId":"<32 lowercase hex>","spanId":"<16 hex>",
//           "parentSpanId":"<16 hex>",         // omitted for a trace
//           "name":"...","kind":1,               // SPAN_KIND_INTERNAL
//           "startTimeUnixNano":"<decimal>",     // fixed64: a JSON string
//           "endTimeUnixNano":"<decimal>",
//           "attributes":[{"key":"k","value":{"stringValue":"v"}},...],
//           "status":{"code":2,"message":"..."}} // only for an error
//
// Mapping of ctxloop's model:
//   * A trace becomes a span too: spanId = `TraceData::root_span_id` (which
//     is `RootSpanIdFor(trace_id)`), no parent, name = workflow_name, with
//     attributes "ctxloop.group_id" (if not empty) and
//     "ctxloop.metadata.<key>" for each metadata entry.
//   * A span without a parent span (a direct child of its trace) gets
//     parentSpanId = `RootSpanIdFor(trace_id)`: the trace's span, although
//     the trace itself ends, and so is exported, after its spans.
//   * Attribute values: string -> stringValue, int64 -> intValue (a decimal
//     string, as the JSON mapping requires for 64-bit integers), double ->
//     doubleValue ("NaN", "Infinity", "-Infinity" as strings), bool ->
//     boolValue. Keys are unique (the last value given wins). Added unless
//     the span already has the key: "thread.id" (where it started),
//     "ctxloop.loop_id" / "ctxloop.context_id" (if started on a context),
//     "ctxloop.finished_off_origin" (only if true), "ctxloop.error.data"
//     (an error's data, if any).
//   * Times: start_time, and end_time (or start_time + duration if end_time
//     is not finite), as Unix nanoseconds; times before 1970 become "0".
//   * Status: {"code":2 (ERROR),"message":...} for a span with an error;
//     omitted (UNSET) otherwise.
//
// An item with an invalid (all-zero) trace id or span id cannot be
// represented in OTLP: it is left out, the rest of the batch is written,
// and `Export` returns `kInvalidArgument` saying how many were left out.
//
// Cost: `Export` formats the batch into one string and appends it with one
// `write(2)`. `Flush` is a no-op unless `Options::sync_on_flush`.
//
// Thread-safety: all methods are thread-safe (one mutex). After `Shutdown`
// (which closes the file), `Export` and `Flush` return `kFailedPrecondition`.

#ifndef CTXLOOP_TRACE_OTLP_JSON_EXPORTER_H_
#define CTXLOOP_TRACE_OTLP_JSON_EXPORTER_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "ctxloop/trace/exporter.h"
#include "ctxloop/trace/internal/append_file.h"
#include "ctxloop/trace/span_data.h"

namespace ctxloop {

class OtlpJsonExporter final : public SpanExporter {
 public:
  struct Options {
    // The resource's "service.name".
    std::string service_name = "ctxloop";
    // Empty the file when it is opened, instead of appending to it.
    bool truncate = false;
    // `Flush` waits until the data is on the device (`fdatasync`).
    bool sync_on_flush = false;
  };

  // Opens `path` for appending, creating it if needed. Errors: the file
  // cannot be opened (`kNotFound`, `kPermissionDenied`, ...).
  static absl::StatusOr<std::unique_ptr<OtlpJsonExporter>> Create(
      const std::string& path);
  static absl::StatusOr<std::unique_ptr<OtlpJsonExporter>> Create(
      const std::string& path, Options options);

  OtlpJsonExporter(const OtlpJsonExporter&) = delete;
  OtlpJsonExporter& operator=(const OtlpJsonExporter&) = delete;

  absl::Status Export(absl::Span<const ExportItem> batch) override;
  absl::Status Flush() override;
  // Syncs if configured, then closes the file. Idempotent.
  absl::Status Shutdown() override;

  // The request for `batch`, without the trailing newline; `*skipped`
  // (optional) receives the number of items left out for invalid ids.
  static std::string FormatRequest(absl::Span<const ExportItem> batch,
                                   const std::string& service_name,
                                   size_t* skipped = nullptr);

 private:
  OtlpJsonExporter(std::unique_ptr<internal::AppendFile> file,
                   std::string service_name);

  const std::string service_name_;
  const std::unique_ptr<internal::AppendFile> file_;  // Closed by Shutdown.
};

}  // namespace ctxloop

#endif  // CTXLOOP_TRACE_OTLP_JSON_EXPORTER_H_
