// Copyright 2026 The ctxloop Authors.

#include "ctxloop/tests/fuzz/propagation/round_trip.h"

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "ctxloop/trace/propagation.h"
#include "ctxloop/trace/span_context.h"

namespace ctxloop {
namespace fuzz {
namespace {

constexpr char kValidTraceparent[] =
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

bool LowerHex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

// `n` lowercase hex digits at `s[pos]`, not all '0'.
bool HexField(absl::string_view s, size_t pos, size_t n, bool nonzero) {
  bool any = false;
  for (size_t i = pos; i < pos + n; ++i) {
    if (!LowerHex(s[i])) return false;
    any |= s[i] != '0';
  }
  return any || !nonzero;
}

// The injected traceparent, checked without the parser.
std::string TraceparentProblem(absl::string_view tp) {
  if (tp.size() != 55) return "traceparent is not 55 characters";
  if (tp.substr(0, 3) != "00-" || tp[35] != '-' || tp[52] != '-') {
    return "traceparent: version or separators";
  }
  if (!HexField(tp, 3, 32, true)) return "traceparent: trace id";
  if (!HexField(tp, 36, 16, true)) return "traceparent: parent id";
  if (!HexField(tp, 53, 2, false)) return "traceparent: flags";
  return "";
}

// The injected tracestate, checked without the parser.
std::string TracestateProblem(absl::string_view ts) {
  if (ts.size() > kMaxTraceStateBytes) return "tracestate too long";
  if (ts.empty()) return "";
  for (char c : ts) {
    if (c == '\r' || c == '\n') return "tracestate has CR or LF";
    if (c < 0x20 || c > 0x7E) return "tracestate has a byte outside 0x20-0x7e";
  }
  if (ts.front() == ' ' || ts.back() == ' ') {
    return "tracestate starts or ends with a space";
  }
  int members = 0;
  size_t start = 0;
  while (true) {
    const size_t comma = ts.find(',', start);
    const absl::string_view m = ts.substr(
        start, comma == absl::string_view::npos ? comma : comma - start);
    ++members;
    if (m.empty()) return "tracestate has an empty member";
    const size_t eq = m.find('=');
    if (eq == absl::string_view::npos || eq == 0 || eq + 1 == m.size() ||
        m.find('=', eq + 1) != absl::string_view::npos) {
      return "tracestate member is not key=value";
    }
    if (m[0] == ' ' || m[eq - 1] == ' ' || m.back() == ' ') {
      return "tracestate member has a space at an edge";
    }
    const char k = m[0];
    if (!((k >= 'a' && k <= 'z') || (k >= '0' && k <= '9'))) {
      return "tracestate key starts badly";
    }
    if (comma == absl::string_view::npos) break;
    start = comma + 1;
  }
  if (members > kMaxTraceStateMembers) return "tracestate has > 32 members";
  return "";
}

std::string Check(absl::string_view traceparent, absl::string_view tracestate) {
  const auto where = [&](absl::string_view what) {
    return absl::StrCat(what, " (traceparent \"", absl::CEscape(traceparent),
                        "\", tracestate \"", absl::CEscape(tracestate), "\")");
  };
  const std::optional<SpanContext> first =
      ExtractTraceContext(traceparent, tracestate);
  const absl::StatusOr<std::string> parsed = ParseTraceState(tracestate);
  if (parsed.ok()) {
    const std::string problem = TracestateProblem(*parsed);
    if (!problem.empty()) return where(absl::StrCat("parsed: ", problem));
  }
  if (!first.has_value()) return "";
  if (!first->valid() || !first->remote) {
    return where("extracted an invalid or non-remote context");
  }
  // Extract keeps exactly what the parser gives, or nothing.
  if (first->trace_state != (parsed.ok() ? *parsed : std::string())) {
    return where("extracted trace state differs from ParseTraceState");
  }
  const TraceContextHeaders h = InjectTraceContext(*first);
  std::string problem = TraceparentProblem(h.traceparent);
  if (problem.empty()) problem = TracestateProblem(h.tracestate);
  if (!problem.empty()) {
    return where(absl::StrCat(problem, ": injected \"",
                              absl::CEscape(h.traceparent), "\" / \"",
                              absl::CEscape(h.tracestate), "\""));
  }
  const absl::StatusOr<std::string> reparsed = ParseTraceState(h.tracestate);
  if (!reparsed.ok() || *reparsed != h.tracestate) {
    return where("injected tracestate is not a fixed point of the parser");
  }
  const std::optional<SpanContext> second =
      ExtractTraceContext(h.traceparent, h.tracestate);
  if (!second.has_value()) return where("injected headers do not extract");
  if (*second != *first) {
    return where(
        absl::StrCat("extract(inject(extract(x))) = ", second->DebugString(),
                     " != ", first->DebugString()));
  }
  const TraceContextHeaders h2 = InjectTraceContext(*second);
  if (h2.traceparent != h.traceparent || h2.tracestate != h.tracestate) {
    return where("second injection differs from the first");
  }
  return "";
}

}  // namespace

std::string RoundTripViolation(absl::string_view input) {
  const size_t nl = input.find('\n');
  std::string v = nl == absl::string_view::npos
                      ? Check(input, absl::string_view())
                      : Check(input.substr(0, nl), input.substr(nl + 1));
  if (v.empty()) v = Check(input, absl::string_view());
  if (v.empty()) v = Check(kValidTraceparent, input);
  return v;
}

}  // namespace fuzz
}  // namespace ctxloop
