// Copyright 2026 The ctxloop Authors.

#include "ctxloop/trace/propagation.h"

#include <cstdint>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace ctxloop {
namespace {

bool IsLowerHex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

// Parses exactly `s.size()` lowercase hex digits (at most 16).
bool ParseHex(absl::string_view s, uint64_t* out) {
  uint64_t v = 0;
  for (char c : s) {
    if (!IsLowerHex(c)) return false;
    v = (v << 4) | static_cast<uint64_t>(c <= '9' ? c - '0' : c - 'a' + 10);
  }
  *out = v;
  return true;
}

// W3C tracestate key: simple-key = lcalpha 0*255(lcalpha / DIGIT / "_" /
// "-" / "*" / "/"); multi-tenant key = tenant "@" system (tenant may start
// with a digit, up to 241 chars; system up to 14 chars).
bool KeyChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-' || c == '*' || c == '/';
}

bool ValidKey(absl::string_view key) {
  if (key.empty() || key.size() > 256) return false;
  const size_t at = key.find('@');
  if (at == absl::string_view::npos) {
    if (!(key[0] >= 'a' && key[0] <= 'z')) return false;
    for (char c : key) {
      if (!KeyChar(c)) return false;
    }
    return true;
  }
  const absl::string_view tenant = key.substr(0, at);
  const absl::string_view system = key.substr(at + 1);
  if (tenant.empty() || tenant.size() > 241 || system.empty() ||
      system.size() > 14) {
    return false;
  }
  if (!((tenant[0] >= 'a' && tenant[0] <= 'z') ||
        (tenant[0] >= '0' && tenant[0] <= '9'))) {
    return false;
  }
  if (!(system[0] >= 'a' && system[0] <= 'z')) return false;
  for (char c : tenant) {
    if (!KeyChar(c)) return false;
  }
  for (char c : system) {
    if (!KeyChar(c)) return false;
  }
  return true;
}

// value = 0*255(chr) nblk-chr; chr = %x20 / nblk-chr; nblk-chr = %x21-2B /
// %x2D-3C / %x3E-7E (no ',' or '=').
bool ValidValue(absl::string_view value) {
  if (value.empty() || value.size() > 256) return false;
  for (char c : value) {
    if (c < 0x20 || c > 0x7E || c == ',' || c == '=') return false;
  }
  return value.back() != ' ';
}

}  // namespace

std::optional<std::string> ValidTraceState(absl::string_view tracestate) {
  tracestate = absl::StripAsciiWhitespace(tracestate);
  if (tracestate.empty()) return std::string();
  int members = 0;
  for (absl::string_view member : absl::StrSplit(tracestate, ',')) {
    member = absl::StripAsciiWhitespace(member);
    if (member.empty()) continue;  // Empty list elements are allowed.
    const size_t eq = member.find('=');
    if (eq == absl::string_view::npos) return std::nullopt;
    if (!ValidKey(member.substr(0, eq)) || !ValidValue(member.substr(eq + 1))) {
      return std::nullopt;
    }
    if (++members > kMaxTraceStateMembers) return std::nullopt;
  }
  return std::string(tracestate);
}

std::optional<SpanContext> ExtractTraceContext(absl::string_view traceparent,
                                               absl::string_view tracestate) {
  const absl::string_view tp = absl::StripAsciiWhitespace(traceparent);
  // "vv-" + 32 + "-" + 16 + "-" + 2 = 55 characters.
  constexpr size_t kLength = 55;
  if (tp.size() < kLength) return std::nullopt;
  uint64_t version = 0;
  if (!ParseHex(tp.substr(0, 2), &version) || version == 0xff) {
    return std::nullopt;
  }
  if (tp[2] != '-' || tp[35] != '-' || tp[52] != '-') return std::nullopt;
  if (version == 0 && tp.size() != kLength) return std::nullopt;
  if (version > 0 && tp.size() > kLength && tp[kLength] != '-') {
    return std::nullopt;
  }
  SpanContext ctx;
  uint64_t flags = 0;
  if (!ParseHex(tp.substr(3, 16), &ctx.trace_id.high) ||
      !ParseHex(tp.substr(19, 16), &ctx.trace_id.low) ||
      !ParseHex(tp.substr(36, 16), &ctx.span_id.value) ||
      !ParseHex(tp.substr(53, 2), &flags)) {
    return std::nullopt;
  }
  if (!ctx.valid()) return std::nullopt;  // All-zero trace or parent id.
  ctx.trace_flags = static_cast<uint8_t>(flags);
  ctx.remote = true;
  if (std::optional<std::string> ts = ValidTraceState(tracestate)) {
    ctx.trace_state = *std::move(ts);
  }
  return ctx;
}

std::string FormatTraceparent(const SpanContext& context) {
  if (!context.valid()) return std::string();
  return absl::StrFormat("00-%016x%016x-%016x-%02x", context.trace_id.high,
                         context.trace_id.low, context.span_id.value,
                         context.trace_flags);
}

TraceContextHeaders InjectTraceContext(const SpanContext& context) {
  TraceContextHeaders h;
  h.traceparent = FormatTraceparent(context);
  if (!h.traceparent.empty()) h.tracestate = context.trace_state;
  return h;
}

}  // namespace ctxloop
