// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/trace/span_data.h
// -----------------------------------------------------------------------------
//
// The records processors and exporters receive: `TraceData` for a trace (a
// workflow run), `SpanData` for one operation inside it. Both are plain
// values, copied or moved freely; processors get them by const reference.
//
// Times: wall-clock times (`absl::Time`) say when; `duration` is measured on
// the monotonic clock, so it is right even if the wall clock steps. (The
// tracer samples the wall clock once and derives the others from the
// monotonic clock: one clock read per event.)
//
// Cost: a `SpanData` is a few hundred bytes plus its strings and attributes;
// processors that keep one copy it. Thread-safety: plain values.
//
// `ExecutionSite`s record where things happened, for tools that draw them
// (the Chrome trace exporter draws a flow arrow from `finish_called` to
// `finish_ran`): a finish called on context B of loop 2 and run, as ctxloop
// guarantees, on the origin context A of loop 1.

#ifndef CTXLOOP_TRACE_SPAN_DATA_H_
#define CTXLOOP_TRACE_SPAN_DATA_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/time/time.h"
#include "ctxloop/loop/context_handle.h"
#include "ctxloop/trace/ids.h"

namespace ctxloop {

using AttributeValue = std::variant<std::string, int64_t, double, bool>;
using Attributes = std::vector<std::pair<std::string, AttributeValue>>;

struct SpanError {
  std::string message;
  std::string data;  // Free-form details (e.g. JSON), may be empty.
};

// Where and when something ran. `ctx` is null for a plain (non-loop) thread
// or when the caller did not say which context it was on.
struct ExecutionSite {
  ContextHandle ctx;
  int64_t thread_id = 0;  // Linux tid.
  absl::Time time;
};

struct TraceData {
  TraceId trace_id;
  // The span id the trace itself has in span-based formats (OTLP, Chrome):
  // spans with no parent span are its children there.
  SpanId root_span_id;
  std::string workflow_name;
  std::string group_id;  // Free string, e.g. a chat thread id; may be empty.
  std::map<std::string, std::string> metadata;
  absl::Time start_time;
  absl::Time end_time;  // InfiniteFuture() until the trace ends.
  absl::Duration duration;
  ExecutionSite started;        // On the origin context.
  ExecutionSite finish_called;  // Where Finish() was called (or destroyed).
  ExecutionSite finish_ran;     // On the origin context, unless it was gone.
  // True if the finish could not run on the origin (origin loop gone or
  // shutting down): it was exported where it was called, without a reset.
  bool finished_off_origin = false;
};

struct SpanData {
  TraceId trace_id;
  SpanId span_id;
  SpanId parent_span_id;  // Invalid (0): a direct child of the trace.
  std::string name;
  Attributes attributes;
  absl::Time start_time;
  absl::Time end_time;  // InfiniteFuture() until the span ends.
  absl::Duration duration;
  std::optional<SpanError> error;
  ExecutionSite started;
  ExecutionSite finish_called;
  ExecutionSite finish_ran;
  bool finished_off_origin = false;
};

}  // namespace ctxloop

#endif  // CTXLOOP_TRACE_SPAN_DATA_H_
