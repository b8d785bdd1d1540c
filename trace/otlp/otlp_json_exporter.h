// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/trace/otlp/otlp_json_exporter.h
// -----------------------------------------------------------------------------
//
// `OtlpJsonExporter` appends OTLP/JSON to a file: each non-empty `Export`
// call writes one line holding one `ExportTraceServiceRequest` in the
// encoding of `otlp_json.h` (the whole data model: resource, scopes, kinds,
// status, events, links, flags, trace state, dropped counts, arrays), the
// format the OpenTelemetry Collector's `otlpjsonfile` receiver reads and
// `otlphttp` accepts with `Content-Type: application/json`.
//
// An item with an invalid (all-zero) trace id or span id cannot be
// represented in OTLP: it is left out, the rest of the batch is written,
// and `Export` returns `kInvalidArgument` saying how many were left out.
//
// Cost: `Export` formats the batch into one string and appends it with one
// `write(2)`. `Flush` is a no-op unless `Options::sync_on_flush`.
//
// Thread-safety: all methods are thread-safe (the file's mutex). After
// `Shutdown` (which closes the file), `Export` and `Flush` return
// `kFailedPrecondition`.

#ifndef CTXLOOP_TRACE_OTLP_OTLP_JSON_EXPORTER_H_
#define CTXLOOP_TRACE_OTLP_OTLP_JSON_EXPORTER_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "ctxloop/trace/export_internal/append_file.h"
#include "ctxloop/trace/exporter.h"
#include "ctxloop/trace/otlp/otlp_json.h"
#include "ctxloop/trace/span_data.h"

namespace ctxloop {

class OtlpJsonExporter final : public SpanExporter {
 public:
  struct Options {
    // The resource's "service.name" (used when `resource` is empty).
    std::string service_name = "ctxloop";
    // The whole resource; empty: {"service.name": service_name}.
    otlp::Resource resource;
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

  absl::Status Export(absl::Span<const SpanData> batch) override;
  absl::Status Flush() override;
  // Syncs if configured, then closes the file. Idempotent.
  absl::Status Shutdown() override;

  // The request for `batch`, without the trailing newline; `*skipped`
  // (optional) receives the number of items left out for invalid ids.
  static std::string FormatRequest(absl::Span<const SpanData> batch,
                                   const std::string& service_name,
                                   size_t* skipped = nullptr);

 private:
  OtlpJsonExporter(std::unique_ptr<trace_internal::AppendFile> file,
                   otlp::Resource resource);

  const otlp::Resource resource_;
  const std::unique_ptr<trace_internal::AppendFile>
      file_;  // Closed by Shutdown.
};

}  // namespace ctxloop

#endif  // CTXLOOP_TRACE_OTLP_OTLP_JSON_EXPORTER_H_
