// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/trace/span_data.h
// -----------------------------------------------------------------------------
//
// The record processors and exporters receive: `SpanData`, one operation.
// A trace (e.g. a workflow run) is its root span, with the same record.
// Plain values, copied or moved freely; processors get them by const
// reference.
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
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/time/time.h"
#include "ctxloop/loop/context_handle.h"
#include "ctxloop/trace/ids.h"
#include "ctxloop/trace/span_context.h"

namespace ctxloop {

// Attribute values: the OpenTelemetry set. Scalars keep their indices 0..3;
// homogeneous arrays of each follow.
using AttributeValue =
    std::variant<std::string, int64_t, double, bool, std::vector<std::string>,
                 std::vector<int64_t>, std::vector<double>, std::vector<bool>>;
using Attributes = std::vector<std::pair<std::string, AttributeValue>>;

// What a span does, as OpenTelemetry's SpanKind (values are OTLP's enum).
enum class SpanKind : uint8_t {
  kInternal = 1,
  kServer = 2,
  kClient = 3,
  kProducer = 4,
  kConsumer = 5,
};

// A span's outcome, as OpenTelemetry's Status (codes are OTLP's enum). The
// message is kept only with kError.
enum class StatusCode : uint8_t { kUnset = 0, kOk = 1, kError = 2 };
struct SpanStatus {
  StatusCode code = StatusCode::kUnset;
  std::string message;
};

// Something that happened at one moment during a span.
struct SpanEvent {
  std::string name;
  absl::Time time;
  Attributes attributes;
  uint32_t dropped_attributes_count = 0;  // Over the tracer's limits.
};

// A causal link to a span of this or another trace.
struct SpanLink {
  SpanContext context;
  Attributes attributes;
  uint32_t dropped_attributes_count = 0;
};

// The instrumentation library that produced a span (one per `Tracer`).
struct InstrumentationScope {
  std::string name;
  std::string version;
};

// Where and when something ran. `ctx` is null for a plain (non-loop) thread
// or when the caller did not say which context it was on.
struct ExecutionSite {
  ContextHandle ctx;
  int64_t thread_id = 0;  // Linux tid.
  absl::Time time;
  // The name `ctx` was given at `NewContext` (empty if none, or unknown).
  std::string context_name;
};

// What processors and exporters receive for every span. A trace is its
// root span: the span `StartTrace` starts, whose `parent_span_id` is
// invalid (a new trace) or a remote span (`parent_is_remote`: it continues
// a W3C `traceparent`). Every other span of the trace has a local parent:
// another span, or the root span for a top-level span.
struct SpanData {
  TraceId trace_id;
  SpanId span_id;  // Random per span (a root span's too: two processes
                   // continuing one remote trace never export the same id).
  SpanId parent_span_id;          // Invalid: a root span with no remote parent.
  bool parent_is_remote = false;  // A root span continuing a remote trace.
  std::string name;
  SpanKind kind = SpanKind::kInternal;
  Attributes attributes;
  std::vector<SpanEvent> events;
  std::vector<SpanLink> links;
  SpanStatus status;
  InstrumentationScope scope;  // The tracer's.
  // W3C trace flags and trace state of the trace (inherited from a remote
  // parent or set by the sampler); bit 0x01 = sampled.
  uint8_t trace_flags = kTraceFlagSampled;
  std::string trace_state;
  // Items dropped because they exceeded the tracer's limits.
  uint32_t dropped_attributes_count = 0;
  uint32_t dropped_events_count = 0;
  uint32_t dropped_links_count = 0;
  absl::Time start_time;
  absl::Time end_time;  // InfiniteFuture() until the span ends.
  absl::Duration duration;
  ExecutionSite started;        // On the origin context.
  ExecutionSite finish_called;  // Where Finish() was called (or destroyed).
  // Where the finish ran (reset of "current", then the processors): the
  // origin context on its loop thread; that loop's root if the origin context
  // was gone [F1]; the finishing thread (null ctx) if the loop was gone
  // [F2]/[F3] (cases in scope.cc). A root span's end that waited for open
  // spans [F5] runs on the same loop thread; if that loop was gone by then,
  // this names the thread that delivered it.
  ExecutionSite finish_ran;
  // True if the finish could not run on the origin context (gone, or its
  // loop gone or shutting down): processors only, without a reset.
  bool finished_off_origin = false;

  // True for the span `StartTrace` started (no local parent).
  bool is_root() const { return !parent_span_id.valid() || parent_is_remote; }
};

// Attribute keys ctxloop's own callers use for what agent frameworks call a
// run's group (e.g. a chat thread id) and metadata ("ctxloop.metadata." +
// key): plain attributes of the root span.
inline constexpr char kGroupIdAttribute[] = "ctxloop.group_id";
inline constexpr char kMetadataAttributePrefix[] = "ctxloop.metadata.";

}  // namespace ctxloop

#endif  // CTXLOOP_TRACE_SPAN_DATA_H_
