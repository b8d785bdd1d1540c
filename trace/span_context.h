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
// Cost: a value of 40 bytes plus the trace-state string (usually empty).
// Thread-safety: a plain value.

#ifndef CTXLOOP_TRACE_SPAN_CONTEXT_H_
#define CTXLOOP_TRACE_SPAN_CONTEXT_H_

#include <cstdint>
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
};

}  // namespace ctxloop

#endif  // CTXLOOP_TRACE_SPAN_CONTEXT_H_
