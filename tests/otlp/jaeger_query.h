// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/tests/otlp/jaeger_query.h
// -----------------------------------------------------------------------------
//
// Test-only. Reads traces back from a real Jaeger (tools/jaeger.sh) through
// its HTTP query API (`GET /api/traces/<trace id hex>` on 127.0.0.1:16686),
// parsed with RapidJSON, and decides whether Jaeger tests run:
//
//   CTXLOOP_JAEGER_OR_SKIP();  // GTEST_SKIP unless Jaeger answers; a
//                              // failure instead with CTXLOOP_REQUIRE_JAEGER=1
//   std::vector<JaegerSpan> spans =
//       *WaitForJaegerSpans(trace_id_hex, 5, absl::Seconds(30));
//
// Cost: blocking HTTP requests (a poll every 100 ms while waiting).
// Thread-safety: functions without shared state.

#ifndef CTXLOOP_TESTS_OTLP_JAEGER_QUERY_H_
#define CTXLOOP_TESTS_OTLP_JAEGER_QUERY_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace ctxloop {
namespace testing {

inline constexpr int kJaegerOtlpHttpPort = 4318;
inline constexpr int kJaegerQueryPort = 16686;

// "http://127.0.0.1:4318".
std::string JaegerOtlpBaseUrl();

// True if Jaeger's query API and OTLP/HTTP receiver both answer.
bool JaegerAnswers();
// True if CTXLOOP_REQUIRE_JAEGER=1.
bool JaegerRequired();

struct JaegerSpan {
  std::string trace_id;
  std::string span_id;
  std::string operation;
  std::string parent_span_id;  // The CHILD_OF reference, if any.
  std::string service;         // The process's serviceName.
  // Tags as strings ("span.kind", "otel.status_code", "error", user
  // attributes...); values of non-string tags in their JSON text.
  std::map<std::string, std::string> tags;
  std::vector<std::string> events;  // Log "event" fields, in order.
};

// The spans Jaeger has for `trace_id_hex` (empty if it has none yet).
absl::StatusOr<std::vector<JaegerSpan>> FetchJaegerTrace(
    absl::string_view trace_id_hex);

// Polls until Jaeger has at least `min_spans` spans of the trace, then
// returns them; `kDeadlineExceeded` (with what it had) after `timeout`.
absl::StatusOr<std::vector<JaegerSpan>> WaitForJaegerSpans(
    absl::string_view trace_id_hex, size_t min_spans, absl::Duration timeout);

// A blocking GET on 127.0.0.1:`port`; the body.
absl::StatusOr<std::string> HttpGet(int port, absl::string_view target,
                                    int* status = nullptr);

}  // namespace testing
}  // namespace ctxloop

// Skips the test unless Jaeger answers; fails it instead when required.
#define CTXLOOP_JAEGER_OR_SKIP()                                          \
  do {                                                                    \
    if (!::ctxloop::testing::JaegerAnswers()) {                           \
      if (::ctxloop::testing::JaegerRequired()) {                         \
        FAIL() << "Jaeger does not answer on 127.0.0.1:4318/16686 and "   \
                  "CTXLOOP_REQUIRE_JAEGER=1 (run tools/jaeger.sh start)"; \
      }                                                                   \
      GTEST_SKIP() << "Jaeger does not answer on 127.0.0.1:4318/16686; "  \
                      "run tools/jaeger.sh start to run this test";       \
    }                                                                     \
  } while (0)

#endif  // CTXLOOP_TESTS_OTLP_JAEGER_QUERY_H_
