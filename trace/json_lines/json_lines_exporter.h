// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/trace/json_lines/json_lines_exporter.h
// -----------------------------------------------------------------------------
//
// `JsonLinesExporter` appends every exported span (a trace's root span among
// them) to a file as one JSON object per line (https://jsonlines.org), for
// `jq`, log shippers and ad-hoc scripts. Every line has the same fields and
// is self-contained:
//
//   {"type":"span",                      // "trace" for a trace's root span
//    "trace_id":"<32 hex>",
//    "span_id":"<16 hex>",
//    "parent_span_id":"<16 hex>"|null,   // a top-level span's: the root
//                                        // span; a root span's: null, or
//                                        // the remote parent it continues
//    "parent_is_remote":false,           // true: that remote parent
//    "name":"...",
//    "attributes":{"k":"v"|int|double|bool|[...],...},
//    "start_time":"2026-01-02T03:04:05.123456789Z", // RFC 3339, UTC, 9 digits
//    "end_time":"..."|null,              // null if not finite
//    "duration_ns":123|null,             // monotonic duration
//    "kind":"internal"|"server"|"client"|"producer"|"consumer",
//    "status":{"code":"unset"|"ok"|"error","message":"..."},  // message
//                                        // only if not empty
//    "events":[{"name":"...","time":"<RFC 3339>"|null,"attributes":{...},
//               "dropped_attributes_count":0},...],
//    "links":[{"trace_id":"<32 hex>","span_id":"<16 hex>","trace_flags":1,
//              "trace_state":"...","attributes":{...},
//              "dropped_attributes_count":0},...],
//    "scope":{"name":"...","version":"..."},  // the tracer's
//    "trace_flags":1, "trace_state":"...",   // W3C, inherited by the trace
//    "dropped":{"attributes":0,"events":0,"links":0},  // over the limits
//    "started":SITE, "finish_called":SITE, "finish_ran":SITE,
//    "finished_off_origin":false}
//
//   SITE = {"loop":<loop id>|null, "context":<context id>|null,
//           "context_name":"<name given at NewContext>",  // if any
//           "thread":<tid>, "time":"<RFC 3339>"|null}
//   (loop and context are null for a plain thread's null context).
//
// Strings are escaped fully and invalid UTF-8 is replaced with U+FFFD, so
// every line is valid JSON whatever the input. Attribute keys are unique in
// the output (the last value given for a key wins); doubles that are NaN or
// infinite are written as null.
//
// Bound: nothing is held between calls. The one string of a batch's lines
// lives only during `Export` (its size is the batch's: at most the
// processor's `max_batch_size` items).
//
// Cost: `Export` formats the whole batch into one string and appends it with
// one `write(2)`; the OS has the data when `Export` returns. `Flush` is a
// no-op unless `Options::sync_on_flush` (then `fdatasync(2)`).
//
// Thread-safety: all methods are thread-safe (one mutex). After `Shutdown`
// (which closes the file), `Export` and `Flush` return `kFailedPrecondition`.

#ifndef CTXLOOP_TRACE_JSON_LINES_JSON_LINES_EXPORTER_H_
#define CTXLOOP_TRACE_JSON_LINES_JSON_LINES_EXPORTER_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "ctxloop/trace/export_internal/append_file.h"
#include "ctxloop/trace/exporter.h"
#include "ctxloop/trace/span_data.h"

namespace ctxloop {

class JsonLinesExporter final : public SpanExporter {
 public:
  struct Options {
    // Empty the file when it is opened, instead of appending to it.
    bool truncate = false;
    // `Flush` waits until the data is on the device (`fdatasync`).
    bool sync_on_flush = false;
  };

  // Opens `path` for appending, creating it if needed. Errors: the file
  // cannot be opened (`kNotFound`, `kPermissionDenied`, ...).
  static absl::StatusOr<std::unique_ptr<JsonLinesExporter>> Create(
      const std::string& path);
  static absl::StatusOr<std::unique_ptr<JsonLinesExporter>> Create(
      const std::string& path, Options options);

  JsonLinesExporter(const JsonLinesExporter&) = delete;
  JsonLinesExporter& operator=(const JsonLinesExporter&) = delete;

  // Appends one line per item. An I/O error is returned as a status (the
  // file may then end with a partial line; later lines start on a new line).
  absl::Status Export(absl::Span<const SpanData> batch) override;
  absl::Status Flush() override;
  // Syncs if configured, then closes the file. Idempotent.
  absl::Status Shutdown() override;

  // The line written for `item`, without the trailing newline.
  static std::string FormatItem(const SpanData& item);

 private:
  explicit JsonLinesExporter(std::unique_ptr<trace_internal::AppendFile> file);

  const std::unique_ptr<trace_internal::AppendFile>
      file_;  // Closed by Shutdown.
};

}  // namespace ctxloop

#endif  // CTXLOOP_TRACE_JSON_LINES_JSON_LINES_EXPORTER_H_
