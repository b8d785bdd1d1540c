// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/trace/otlp/otlp_response.h
// -----------------------------------------------------------------------------
//
// Private to `OtlpHttpExporter` (and its tests and fuzzer): how the exporter
// reads a collector's answer, as pure functions over bytes the peer chose.
// None of them may crash, recurse on input, or allocate more than a small
// multiple of its input; each is fuzzed directly
// (//tests/fuzz/otlp_response).
//
//   * `ParseRetryAfter`: the `Retry-After` header (delay-seconds or an
//     IMF-fixdate HTTP date).
//   * `IsRetryableHttpStatus` / `StatusCodeForHttp`: the OTLP/HTTP retry
//     rules (retry exactly on 429, 502, 503, 504 and on "no answer").
//   * `ParsePartialSuccess`: `partialSuccess` of an ExportTraceServiceResponse
//     (OTLP/JSON), parsed iteratively (RapidJSON's `kParseIterativeFlag`,
//     an explicit stack on the heap) with a nesting limit of
//     `kMaxPartialSuccessDepth` and a size limit of `kMaxPartialSuccessBytes`.
//
// Cost: each is linear in its input; nothing is kept between calls.
// Thread-safety: every function is thread-safe (no shared state).

#ifndef CTXLOOP_TRACE_OTLP_OTLP_RESPONSE_H_
#define CTXLOOP_TRACE_OTLP_OTLP_RESPONSE_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace ctxloop {
namespace trace_internal {

// A body longer than this is not parsed (the exporter never reads more: it
// caps the response body at `OtlpHttpExporter::Options::max_response_body`,
// whose default is this).
inline constexpr size_t kMaxPartialSuccessBytes = 64 * 1024;
// Objects/arrays nested deeper than this make the body unparseable. A real
// ExportTraceServiceResponse nests 2 deep.
inline constexpr int kMaxPartialSuccessDepth = 32;

// `Retry-After`: delay-seconds ("120") or an HTTP date
// ("Wed, 21 Oct 2015 07:28:00 GMT", as a delay from `now`, 0 if past).
// nullopt if empty, negative or unparsable. Never negative.
std::optional<absl::Duration> ParseRetryAfter(absl::string_view value,
                                              absl::Time now);

// True for the statuses OTLP/HTTP retries: 0 (no answer: connection error,
// timeout, unreadable response), 429, 502, 503, 504.
bool IsRetryableHttpStatus(int http_status);

// The `absl::StatusCode` an attempt that ended with `http_status` reports
// (0: no answer, `kUnavailable`).
absl::StatusCode StatusCodeForHttp(int http_status);

struct PartialSuccess {
  enum class Outcome {
    kNone,        // Empty body, or a JSON object without `partialSuccess`.
    kParsed,      // `partialSuccess` read (`rejected_spans`, `message`).
    kUnparsable,  // Not JSON, not an object, too deep or too long.
  };
  Outcome outcome = Outcome::kNone;
  int64_t rejected_spans = 0;  // >= 0; a negative or unreadable count is 0.
  std::string message;         // `errorMessage`, at most 1 KiB of it.
  std::string error;           // Why kUnparsable.
};

// Reads `partialSuccess.{rejectedSpans,errorMessage}` (rejectedSpans as a
// JSON number or a decimal string, as OTLP/JSON encodes int64).
PartialSuccess ParsePartialSuccess(absl::string_view body);

}  // namespace trace_internal
}  // namespace ctxloop

#endif  // CTXLOOP_TRACE_OTLP_OTLP_RESPONSE_H_
