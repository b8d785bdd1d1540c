// Copyright 2026 The ctxloop Authors.

#include "ctxloop/trace/propagation.h"

#include <cstdint>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

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

// Optional whitespace in W3C Trace Context: space and horizontal tab only
// (never CR, LF or another control character).
bool IsOws(char c) { return c == ' ' || c == '\t'; }

absl::string_view TrimOws(absl::string_view s) {
  while (!s.empty() && IsOws(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsOws(s.back())) s.remove_suffix(1);
  return s;
}

bool IsLcAlpha(char c) { return c >= 'a' && c <= 'z'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// The characters after the first of a key, a tenant or a system id.
bool KeyChar(char c) {
  return IsLcAlpha(c) || IsDigit(c) || c == '_' || c == '-' || c == '*' ||
         c == '/';
}

// A byte for an error message: printable ones quoted, others in hex (never
// echoed raw: they may be CR, LF or worse).
std::string Describe(char c) {
  const unsigned char u = static_cast<unsigned char>(c);
  if (u >= 0x21 && u <= 0x7E) return absl::StrFormat("'%c'", c);
  return absl::StrFormat("byte 0x%02x", u);
}

absl::Status MemberError(size_t member, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("tracestate: list member ", member, ": ", what));
}

// `part` of a key: first character `first_ok`, the rest `KeyChar`, at most
// `max` characters.
absl::Status CheckKeyPart(size_t member, absl::string_view part,
                          absl::string_view name, bool (*first_ok)(char),
                          size_t max) {
  if (part.empty()) return MemberError(member, absl::StrCat("empty ", name));
  if (part.size() > max) {
    return MemberError(member,
                       absl::StrCat(name, " longer than ", max, " characters"));
  }
  if (!first_ok(part[0])) {
    return MemberError(member,
                       absl::StrCat(name, " starts with ", Describe(part[0])));
  }
  for (char c : part.substr(1)) {
    if (!KeyChar(c)) {
      return MemberError(member,
                         absl::StrCat(Describe(c), " not allowed in ", name));
    }
  }
  return absl::OkStatus();
}

bool TenantFirst(char c) { return IsLcAlpha(c) || IsDigit(c); }

// key = simple-key / tenant "@" system (see propagation.h).
absl::Status CheckKey(size_t member, absl::string_view key) {
  const size_t at = key.find('@');
  if (at == absl::string_view::npos) {
    return CheckKeyPart(member, key, "key", IsLcAlpha, kMaxTraceStateKeyBytes);
  }
  absl::Status s =
      CheckKeyPart(member, key.substr(0, at), "tenant id", TenantFirst, 241);
  if (!s.ok()) return s;
  return CheckKeyPart(member, key.substr(at + 1), "system id", IsLcAlpha, 14);
}

// value = 0*255(chr) nblk-chr; chr = %x20 / nblk-chr; nblk-chr = %x21-2B /
// %x2D-3C / %x3E-7E (printable ASCII but ',' and '=').
absl::Status CheckValue(size_t member, absl::string_view value) {
  if (value.empty()) return MemberError(member, "empty value");
  if (value.size() > kMaxTraceStateValueBytes) {
    return MemberError(
        member, absl::StrCat("value longer than ", kMaxTraceStateValueBytes,
                             " characters"));
  }
  for (char c : value) {
    if (c < 0x20 || c > 0x7E || c == ',' || c == '=') {
      return MemberError(member,
                         absl::StrCat(Describe(c), " not allowed in a value"));
    }
  }
  // Not reached for a member trimmed of OWS (its trailing spaces), kept
  // for the grammar's sake.
  if (value.back() == ' ') return MemberError(member, "value ends in a space");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> ParseTraceState(absl::string_view tracestate) {
  std::string out;
  // The keys seen so far, to refuse a key given twice.
  absl::string_view keys[kMaxTraceStateMembers];
  int members = 0;
  size_t index = 0;  // 1-based position in the list, empty members included.
  while (true) {
    const size_t comma = tracestate.find(',');
    const absl::string_view member = TrimOws(tracestate.substr(0, comma));
    ++index;
    if (!member.empty()) {  // Empty members are allowed and dropped.
      if (members == kMaxTraceStateMembers) {
        return absl::InvalidArgumentError(absl::StrCat(
            "tracestate: more than ", kMaxTraceStateMembers, " list members"));
      }
      const size_t eq = member.find('=');
      if (eq == absl::string_view::npos) {
        return MemberError(index, "no '=' between key and value");
      }
      const absl::string_view key = member.substr(0, eq);
      const absl::string_view value = member.substr(eq + 1);
      absl::Status s = CheckKey(index, key);
      if (s.ok()) s = CheckValue(index, value);
      if (!s.ok()) return s;
      for (int i = 0; i < members; ++i) {
        if (keys[i] == key) return MemberError(index, "key given twice");
      }
      keys[members++] = key;
      // Built from what was parsed: key, '=', value, one ',' between.
      if (!out.empty()) out.push_back(',');
      out.append(key.data(), key.size());
      out.push_back('=');
      out.append(value.data(), value.size());
    }
    if (comma == absl::string_view::npos) break;
    tracestate.remove_prefix(comma + 1);
  }
  return out;
}

std::optional<std::string> ValidTraceState(absl::string_view tracestate) {
  absl::StatusOr<std::string> parsed = ParseTraceState(tracestate);
  if (!parsed.ok()) return std::nullopt;
  return *std::move(parsed);
}

std::optional<SpanContext> ExtractTraceContext(absl::string_view traceparent,
                                               absl::string_view tracestate) {
  const absl::string_view tp = TrimOws(traceparent);
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
  // An invalid tracestate is discarded whole; the traceparent still counts.
  absl::StatusOr<std::string> state = ParseTraceState(tracestate);
  if (state.ok()) ctx.trace_state = *std::move(state);
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
  if (h.traceparent.empty() || context.trace_state.empty()) return h;
  // Re-serialized, never passed on as held: a `SpanContext` built by hand
  // may hold anything.
  absl::StatusOr<std::string> state = ParseTraceState(context.trace_state);
  if (state.ok()) h.tracestate = *std::move(state);
  return h;
}

}  // namespace ctxloop
