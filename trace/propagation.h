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
//     and 2 lowercase hex digits. Invalid, so ignored (an empty optional,
//     never an error to the caller: a new trace starts): version "ff" or not
//     hex, upper-case hex, wrong field lengths or separators, an all-zero
//     trace id or parent id, flags that are not hex, and for version 00 any
//     trailing characters. A higher (unknown) version is parsed by its first
//     four fields: it may go on with "-<more>" after them.
//   * tracestate is a comma-separated list of at most 32 `key=value`
//     members; a valid one is passed on unchanged (`SpanContext::
//     trace_state`), an invalid one or one with more than 32 members is
//     dropped (the traceparent still counts).
//   * Injected: version 00, the context's ids and flags, lowercase.
//
// Cost: a linear scan of the header values; no allocation beyond the
// returned strings. Thread-safety: pure functions.

#ifndef CTXLOOP_TRACE_PROPAGATION_H_
#define CTXLOOP_TRACE_PROPAGATION_H_

#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "ctxloop/trace/span_context.h"

namespace ctxloop {

// Most members a tracestate may have.
inline constexpr int kMaxTraceStateMembers = 32;

// The remote parent named by `traceparent` (with `tracestate`, if valid),
// `remote` set; nullopt if `traceparent` is absent or invalid.
std::optional<SpanContext> ExtractTraceContext(
    absl::string_view traceparent, absl::string_view tracestate = {});

// `tracestate` if it is a valid list of at most 32 members (surrounding
// whitespace removed), else nullopt. Empty input gives "".
std::optional<std::string> ValidTraceState(absl::string_view tracestate);

struct TraceContextHeaders {
  std::string traceparent;  // Empty if the context is not valid.
  std::string tracestate;   // Empty if none.
};

// The header values that continue `context` elsewhere.
TraceContextHeaders InjectTraceContext(const SpanContext& context);

// Just the traceparent value (empty if `context` is not valid).
std::string FormatTraceparent(const SpanContext& context);

}  // namespace ctxloop

#endif  // CTXLOOP_TRACE_PROPAGATION_H_
