// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/trace/propagation.h
// -----------------------------------------------------------------------------
//
// W3C Trace Context (https://www.w3.org/TR/trace-context/): the
// `traceparent` and `tracestate` HTTP header values, to continue a trace
// across processes.
//
//   // Server side: continue the caller's trace, if it sent a valid one.
//   std::optional<ctxloop::SpanContext> remote = ctxloop::ExtractTraceContext(
//       request_header("traceparent"), request_header("tracestate"));
//   ctxloop::TraceOptions options;
//   if (remote.has_value()) options.remote_parent = *remote;
//
//   // Client side (or a response): the span to continue from.
//   ctxloop::TraceContextHeaders h = ctxloop::InjectTraceContext(span_context);
//   add_header("traceparent", h.traceparent);
//   if (!h.tracestate.empty()) add_header("tracestate", h.tracestate);
//
// Rules, as the specification says:
//   * traceparent = "<version>-<trace id>-<parent id>-<flags>", 2, 32, 16
//     and 2 lowercase hex digits, with optional space/tab around it (no
//     other whitespace). Invalid, so ignored (an empty optional, never an
//     error to the caller: a new trace starts): version "ff" or not hex,
//     upper-case hex, wrong field lengths or separators, an all-zero trace
//     id or parent id, flags that are not hex, and for version 00 any
//     trailing characters. A higher (unknown) version is parsed by its first
//     four fields; what follows them must be nothing or "-<anything>", which
//     is ignored (never passed on: injection writes version 00).
//   * tracestate is validated as a whole against the W3C grammar:
//       list        = member *( OWS "," OWS member ), OWS = *(SP / HTAB)
//       member      = key "=" value, or empty (empty members are dropped)
//       key         = simple-key / tenant "@" system
//       simple-key  = lcalpha 0*255( lcalpha / DIGIT / "_" / "-" / "*" / "/" )
//       tenant      = ( lcalpha / DIGIT ) 0*240( same set )
//       system      = lcalpha 0*13( same set )
//       value       = 0*255( %x20-7E except "," and "=" ), not ending in SP
//     at most 32 non-empty members and no key twice. CR, LF, NUL, DEL, any
//     other control or non-ASCII byte anywhere makes it invalid. A valid
//     tracestate is re-serialized from its parsed members ("k=v,k2=v2": no
//     whitespace, no empty members, order kept): the bytes received are
//     never what is passed on. An invalid one is discarded whole and the
//     traceparent still counts, as the specification asks ("MUST NOT
//     attempt to propagate the invalid tracestate"); `ParseTraceState`
//     says why it was invalid.
//   * Injected: version 00, the context's ids and flags, lowercase; the
//     trace state re-serialized as above, or none if it is not valid (a
//     `SpanContext` built by hand may hold anything).
//
// Bounds: a passed-on tracestate is at most `kMaxTraceStateBytes` (32
// members of a 256-character key, "=" and a 256-character value, and 31
// commas); the input may be longer (whitespace, empty members) and is read
// once.
//
// Cost: a linear scan of the header values; no allocation beyond the
// returned strings. Thread-safety: pure functions.

#ifndef CTXLOOP_TRACE_PROPAGATION_H_
#define CTXLOOP_TRACE_PROPAGATION_H_

#include <cstddef>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ctxloop/trace/span_context.h"

namespace ctxloop {

// Most (non-empty) members a tracestate may have.
inline constexpr int kMaxTraceStateMembers = 32;
// Longest key and value of a tracestate member.
inline constexpr size_t kMaxTraceStateKeyBytes = 256;
inline constexpr size_t kMaxTraceStateValueBytes = 256;
// Longest tracestate value `ParseTraceState` returns.
inline constexpr size_t kMaxTraceStateBytes =
    kMaxTraceStateMembers *
        (kMaxTraceStateKeyBytes + 1 + kMaxTraceStateValueBytes) +
    (kMaxTraceStateMembers - 1);

// The remote parent named by `traceparent` (with `tracestate`, if valid),
// `remote` set; nullopt if `traceparent` is absent or invalid.
std::optional<SpanContext> ExtractTraceContext(
    absl::string_view traceparent, absl::string_view tracestate = {});

// `tracestate` re-serialized from its parsed members if it is valid (see
// the file comment), else `kInvalidArgument` naming the list member and the
// rule it breaks (offending bytes are named in hex, never echoed). Empty (or
// whitespace-only) input gives "".
absl::StatusOr<std::string> ParseTraceState(absl::string_view tracestate);

// `ParseTraceState` without the reason: nullopt if invalid.
std::optional<std::string> ValidTraceState(absl::string_view tracestate);

struct TraceContextHeaders {
  std::string traceparent;  // Empty if the context is not valid.
  std::string tracestate;   // Empty if none (or not valid).
};

// The header values that continue `context` elsewhere.
TraceContextHeaders InjectTraceContext(const SpanContext& context);

// Just the traceparent value (empty if `context` is not valid).
std::string FormatTraceparent(const SpanContext& context);

}  // namespace ctxloop

#endif  // CTXLOOP_TRACE_PROPAGATION_H_
