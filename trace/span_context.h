// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/trace/span_context.h
// -----------------------------------------------------------------------------
//
// `SpanContext`: the part of a span that crosses process boundaries, as W3C
// Trace Context defines it (`traceparent` / `tracestate`): trace id, span
// id, trace flags and trace state. It names a span of this process (a
// scope's `span_context()`) or of another one (`remote`, e.g. extracted from
// an incoming HTTP request's headers by `propagation.h`), and is accepted as
// a parent by `Tracer::StartTrace` / `Tracer::StartSpan`.
//
// Printed (by `operator<<`, so gtest, and `AbslStringify`) in `traceparent`
// form plus the rest: "00-<trace id>-<span id>-<flags>", then
// " tracestate=..." if any and " remote" if remote.
//
// Cost: a value of 40 bytes plus the trace-state string (usually empty).
// Thread-safety: a plain value.

#ifndef CTXLOOP_TRACE_SPAN_CONTEXT_H_
#define CTXLOOP_TRACE_SPAN_CONTEXT_H_

#include <cstdint>
#include <iosfwd>
#include <string>

#include "ctxloop/trace/ids.h"

namespace ctxloop {

// W3C trace-flags bit 0: the caller may have recorded this span.
inline constexpr uint8_t kTraceFlagSampled = 0x01;

struct SpanContext {
  TraceId trace_id;
  SpanId span_id;
  uint8_t trace_flags = 0;
  // The W3C `tracestate` header value, passed on unchanged; may be empty.
  std::string trace_state;
  // True if it came from another process.
  bool remote = false;

  // Both ids valid (non-zero): only then is it usable as a parent.
  bool valid() const { return trace_id.valid() && span_id.valid(); }
  bool sampled() const { return (trace_flags & kTraceFlagSampled) != 0; }

  // See the file comment.
  std::string DebugString() const;
  template <typename Sink>
  friend void AbslStringify(Sink& sink, const SpanContext& c) {
    sink.Append(c.DebugString());
  }
  friend bool operator==(const SpanContext& a, const SpanContext& b) {
    return a.trace_id == b.trace_id && a.span_id == b.span_id &&
           a.trace_flags == b.trace_flags && a.trace_state == b.trace_state &&
           a.remote == b.remote;
  }
  friend bool operator!=(const SpanContext& a, const SpanContext& b) {
    return !(a == b);
  }
};
std::ostream& operator<<(std::ostream& os, const SpanContext& c);

}  // namespace ctxloop

#endif  // CTXLOOP_TRACE_SPAN_CONTEXT_H_
