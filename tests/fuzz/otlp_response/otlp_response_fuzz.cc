// Copyright 2026 The ctxloop Authors.

#include "ctxloop/tests/fuzz/otlp_response/otlp_response_fuzz.h"

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "ctxloop/tests/otlp/raw_http_peer.h"
#include "ctxloop/trace/exporter.h"
#include "ctxloop/trace/otlp/otlp_http_exporter.h"
#include "ctxloop/trace/otlp/otlp_response.h"
#include "ctxloop/trace/span_data.h"

namespace ctxloop {
namespace testing {
namespace {

[[noreturn]] void Broken(const char* invariant, const std::string& detail) {
  std::fprintf(stderr, "otlp_response fuzz: BROKEN %s: %s\n", invariant,
               detail.c_str());
  std::abort();
}

void FuzzParsers(absl::string_view in) {
  const absl::Time now = absl::FromUnixSeconds(1767225600);
  if (std::optional<absl::Duration> d =
          trace_internal::ParseRetryAfter(in, now)) {
    if (*d < absl::ZeroDuration()) {
      Broken("retry_after.non_negative", absl::FormatDuration(*d));
    }
  }
  const trace_internal::PartialSuccess p =
      trace_internal::ParsePartialSuccess(in);
  if (p.rejected_spans < 0) Broken("partial.rejected_non_negative", "");
  if (p.message.size() > 1024) Broken("partial.message_bounded", "");
  if (p.outcome == trace_internal::PartialSuccess::Outcome::kUnparsable) {
    if (p.error.empty()) Broken("partial.unparsable_says_why", "");
    if (p.rejected_spans != 0) Broken("partial.unparsable_rejects_none", "");
  }
  // Status classification over the first three bytes as a status code.
  int code = 0;
  for (size_t i = 0; i < in.size() && i < 3; ++i) {
    code = code * 10 + static_cast<unsigned char>(in[i]) % 10;
  }
  const bool retry = trace_internal::IsRetryableHttpStatus(code);
  if (retry != (trace_internal::StatusCodeForHttp(code) ==
                absl::StatusCode::kUnavailable)) {
    Broken("status.retry_iff_unavailable", std::to_string(code));
  }
}

std::vector<SpanData> Batch() {
  std::vector<SpanData> batch;
  for (uint64_t i = 1; i <= 2; ++i) {
    SpanData s;
    s.trace_id = TraceId{0x1234, 0x5678};
    s.span_id = SpanId{0x1000 + i};
    s.parent_span_id = SpanId{0x1001};
    s.name = "fuzz";
    s.start_time = absl::FromUnixSeconds(1767225600);
    s.end_time = s.start_time + absl::Milliseconds(1);
    batch.push_back(std::move(s));
  }
  return batch;
}

void FuzzPeer(absl::string_view in) {
  static RawHttpPeer* peer = [] {
    absl::StatusOr<std::unique_ptr<RawHttpPeer>> p =
        RawHttpPeer::Start(RawHttpPeer::Script());
    if (!p.ok()) Broken("setup.peer", std::string(p.status().message()));
    return p->release();  // Process lifetime.
  }();
  RawHttpPeer::Script script;
  script.head = std::string(in);
  script.close = true;
  peer->SetScript(std::move(script));

  constexpr absl::Duration kAttempt = absl::Milliseconds(300);
  OtlpHttpExporter::Options o;
  o.endpoint = peer->traces_url();
  o.timeout = absl::Seconds(2);
  o.attempt_timeout = kAttempt;
  o.max_attempts = 2;  // A retryable answer is retried once...
  o.initial_backoff = absl::Milliseconds(1);
  o.max_backoff = absl::Milliseconds(1);
  o.max_retry_after = absl::Milliseconds(1);  // ... without waiting long.
  o.on_error = [](const absl::Status&) {};
  absl::StatusOr<std::unique_ptr<OtlpHttpExporter>> e =
      OtlpHttpExporter::Create(std::move(o));
  if (!e.ok()) Broken("setup.exporter", std::string(e.status().message()));
  const std::vector<SpanData> batch = Batch();
  const absl::Time start = absl::Now();
  const absl::Status s = (*e)->Export(batch);
  const absl::Duration took = absl::Now() - start;
  const OtlpHttpExporter::Stats st = (*e)->stats();
  (*e).reset();
  // Two attempts, each within its deadline, a 1 ms wait between them, and
  // scheduling slack (sanitizers, a loaded machine).
  if (took > 2 * kAttempt + absl::Seconds(3)) {
    Broken("export.bounded_time", absl::FormatDuration(took));
  }
  if (st.spans_exported + st.spans_rejected + st.spans_failed != 2) {
    Broken("export.spans_counted_once", s.ToString());
  }
  if (s.ok() != (st.batches_exported == 1)) {
    Broken("export.ok_iff_delivered", s.ToString());
  }
  if (st.requests == 0 || st.requests > 2) {
    Broken("export.attempts_bounded", std::to_string(st.requests));
  }
  // Each attempt's connection carries the input once.
  if (st.response_bytes_read > st.requests * in.size()) {
    Broken("export.reads_only_what_was_sent",
           std::to_string(st.response_bytes_read));
  }
}

}  // namespace

void FuzzOtlpResponse(const uint8_t* data, size_t size) {
  const absl::string_view in(reinterpret_cast<const char*>(data), size);
  FuzzParsers(in);
  static const bool parsers_only = [] {
    const char* v = std::getenv("CTXLOOP_OTLP_FUZZ_PARSERS_ONLY");
    return v != nullptr && *v == '1';
  }();
  if (!parsers_only && absl::StartsWith(in, "HTTP/")) FuzzPeer(in);
}

}  // namespace testing
}  // namespace ctxloop
