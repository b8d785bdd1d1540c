// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/trace/otlp/otlp_json.h
// -----------------------------------------------------------------------------
//
// The OTLP/JSON encoding of ctxloop's trace records, shared by the OTLP/JSON
// file exporter (`otlp_json_exporter.h`) and the OTLP/HTTP exporter
// (`otlp_http_exporter.h`): `EncodeTraceRequest` turns a batch into one
// `ExportTraceServiceRequest` (opentelemetry.proto.collector.trace.v1) in
// the protobuf JSON mapping as OTLP/JSON specifies it: lowerCamelCase field
// names, trace and span ids as lowercase hex (not base64), enums as
// integers, 64-bit integers as decimal strings.
//
//   {"resourceSpans":[{
//     "resource":{"attributes":[{"key":"service.name",
//                                "value":{"stringValue":"svc"}},...]},
//     "scopeSpans":[{"scope":{"name":"<tracer's scope>","version":"..."},
//                    "spans":[SPAN,...]}, ...]}]}
//
//   SPAN = {"traceId":"<32 hex>","spanId":"<16 hex>",
//           "traceState":"...",                  // if not empty
//           "parentSpanId":"<16 hex>",           // if it has a parent
//           "flags":<W3C flags | 0x100 | 0x200 if the parent is remote>,
//           "name":"...","kind":<SpanKind: 1..5>,
//           "startTimeUnixNano":"<decimal>","endTimeUnixNano":"<decimal>",
//           "attributes":[KEYVALUE,...],"droppedAttributesCount":n,
//           "events":[{"timeUnixNano":"..","name":"..","attributes":[..],
//                      "droppedAttributesCount":n},...],
//           "droppedEventsCount":n,
//           "links":[{"traceId":"..","spanId":"..","traceState":"..",
//                     "attributes":[..],"droppedAttributesCount":n,
//                     "flags":n},...],
//           "droppedLinksCount":n,
//           "status":{"code":<0 unset, 1 ok, 2 error>,"message":"..."}}
//   KEYVALUE = {"key":"k","value":ANYVALUE}
//   ANYVALUE = {"stringValue":".."} | {"intValue":"<decimal>"}
//            | {"doubleValue":d or "NaN"/"Infinity"/"-Infinity"}
//            | {"boolValue":b} | {"arrayValue":{"values":[ANYVALUE,...]}}
//   Zero counts, empty lists and an unset status are left out (the proto3
//   JSON default).
//
// Mapping of ctxloop's model (one `SpanData` per span, a trace being its
// root span):
//   * parentSpanId = `parent_span_id` if valid (a root span's is the W3C
//     remote parent it continues, if any; its flags then say "remote").
//   * Spans are grouped by their `InstrumentationScope` (one `scopeSpans`
//     per distinct name and version, in order of first appearance); an
//     empty scope name becomes "ctxloop", version "0.1".
//   * Status: `SpanData::status`.
//   * Attribute keys are unique (the last value given wins). Added unless
//     the span already has the key: "thread.id" (where it started),
//     "ctxloop.loop_id" / "ctxloop.context_id" / "ctxloop.context_name" (if
//     started on a context), "ctxloop.finished_off_origin" (only if true).
//   * Times: start_time, and end_time (or start_time + duration if end_time
//     is not finite), as Unix nanoseconds; times before 1970 become "0".
//
// An item with an invalid (all-zero) trace id or span id cannot be
// represented in OTLP: it is left out and counted in `*skipped`.
//
// Also here: the resource, from code or from the standard environment
// variables `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`.
//
// Cost: `EncodeTraceRequest` appends to one string, linear in the batch; no
// state is kept. Thread-safety: every function is thread-safe.

#ifndef CTXLOOP_TRACE_OTLP_OTLP_JSON_H_
#define CTXLOOP_TRACE_OTLP_OTLP_JSON_H_

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "ctxloop/trace/exporter.h"
#include "ctxloop/trace/span_data.h"

namespace ctxloop {
namespace otlp {

// The OpenTelemetry resource: attributes describing the process (at least
// "service.name").
struct Resource {
  Attributes attributes;

  // {"service.name": service_name}.
  static Resource WithServiceName(absl::string_view service_name);
};

// Parses `OTEL_RESOURCE_ATTRIBUTES` syntax: "k1=v1,k2=v2", keys and values
// trimmed and percent-decoded; values are strings. Empty input: none.
// `kInvalidArgument` for a member without '=' or an empty key, or a bad
// percent escape (the OpenTelemetry spec says to discard the whole value
// then; callers do, reporting the status).
absl::StatusOr<Attributes> ParseResourceAttributes(absl::string_view text);

// The resource from the environment: the attributes of
// `OTEL_RESOURCE_ATTRIBUTES` (discarded whole if invalid: `*warning` says
// why), then "service.name" from `OTEL_SERVICE_NAME` if set and not empty,
// else from `OTEL_RESOURCE_ATTRIBUTES`, else `default_service_name`.
Resource ResourceFromEnvironment(absl::string_view default_service_name,
                                 std::string* warning = nullptr);

// One `ExportTraceServiceRequest` for `batch` (see above), without a
// trailing newline. `*skipped` (optional) receives the number of items left
// out for invalid ids.
std::string EncodeTraceRequest(absl::Span<const SpanData> batch,
                               const Resource& resource,
                               size_t* skipped = nullptr);

}  // namespace otlp
}  // namespace ctxloop

#endif  // CTXLOOP_TRACE_OTLP_OTLP_JSON_H_
