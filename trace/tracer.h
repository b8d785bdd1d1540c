// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/trace/tracer.h
// -----------------------------------------------------------------------------
//
// `Tracer` starts traces and spans on contexts and delivers their lifecycle
// to processors. A host makes one (or several) with its processors; there is
// no global tracer.
//
//   auto exporter = std::make_shared<ctxloop::InMemoryExporter>();
//   ctxloop::Tracer::Options options;
//   options.processors.push_back(
//       std::make_shared<ctxloop::SimpleProcessor>(exporter));
//   ctxloop::Tracer tracer(std::move(options));
//   // On ctx's loop thread:
//   ctxloop::TraceScope run = tracer.StartTrace(ctx, "agent run");
//   ctxloop::SpanScope step = tracer.StartSpan(ctx, "tool call");
//   step.Finish(ctx);
//   run.Finish(ctx);  // or from any other thread/context: see scope.h
//
// Parents and "current"
// ---------------------
// Each context has a current trace and, inside it, possibly a current span
// (one context-local value, see `ContextKey`). `StartTrace` makes the new
// trace current (its spans are not current any more) unless
// `make_current = false`; `StartSpan` makes the new span current likewise.
// A span's parent is, in order: `SpanOptions::parent` if valid; else the
// context's current span; else its current trace (the span is then a
// top-level span of it). Finishes restore "current" on the origin context in
// any order without ever making a finished scope current again (see
// context_key.h).
//
// Never aborting a user
// ---------------------
// `StartTrace`/`StartSpan` return a scope, never an error. Where a span
// cannot be recorded it is non-recording (no allocation, no processor call;
// its setters do nothing and `Finish` succeeds) and `stats()` counts why:
// misuse -- a null context handle, a call off the context's loop thread, a
// destroyed or closing context -- in `start_refused`, and by reason: no
// trace to belong to (`noop_spans`), parent trace already finished
// (`rejected_spans`: its end could not follow the trace's), off the loop
// thread (`spans_off_loop_thread`), stale or closing context
// (`spans_on_stale_context`); `StartTrace` likewise
// (`traces_off_loop_thread`, `traces_on_stale_context`).
//
// Ids of non-recording scopes: propagation never breaks
// -----------------------------------------------------
// A non-recording scope still has a `span_context()` to inject, by
// OpenTelemetry's rules for a span its SDK does not record:
//   * Under a parent -- `SpanOptions::parent`, the context's current span or
//     trace, or `TraceOptions::remote_parent` -- it carries the parent's
//     trace id and trace state, a span id of its own (fresh: every span has
//     its own id, recorded or not) and the parent's trace flags with the
//     sampled flag clear. Not "sampled", because it is not recorded:
//     OpenTelemetry forbids sampled-but-not-recording, since a callee would
//     record children of a span no one exports (a gap in the trace). So it
//     injects "00-<parent's trace id>-<own span id>-00" (other flag bits
//     kept), and `AsParent()` gives it unsampled children. Cases: unsampled
//     by the sampler, finished parent trace, a destroyed or closing context,
//     another thread (with an explicit parent, see below).
//   * `StartTrace` without a remote parent starts a root: a new trace id
//     (or `TraceOptions::trace_id`) and root span id, sampled flag clear,
//     as OpenTelemetry gives a root span its sampler dropped.
//   * `StartSpan` with no parent it can see carries no ids (an invalid
//     `span_context()`; `InjectTraceContext` injects nothing): no current
//     trace (`noop_spans`), or, without `SpanOptions::parent`, another
//     thread (a context's current value is read only on its loop thread)
//     or a context whose values are gone. The span belongs to no trace; a
//     made-up trace id flagged unsampled would make a parent-based callee
//     drop its spans, while with no traceparent the callee starts and
//     samples a trace of its own -- what OpenTelemetry's API does for a span
//     it does not create. Pass `SpanOptions::parent` (`CurrentParent` on
//     the loop thread, or a scope's `AsParent()`) to start spans elsewhere.
//   * A disabled tracer is OpenTelemetry's API with no SDK: given an
//     explicit parent (`SpanOptions::parent`, `TraceOptions::remote_parent`)
//     its scope carries that parent's context unchanged (same span id and
//     flags), so a process with tracing off passes a trace through
//     untouched; otherwise it is inert (no ids, nothing read: the inline
//     fast path; `CurrentSpanContext` still names what is current).

// Sampling and remote parents
// ---------------------------
// `Options::sampler` (default ParentBased(AlwaysOn), see sampler.h) decides
// at each start. An unsampled trace or span is non-recording but has ids and
// is made current as usual, so spans under it (also unsampled) and
// `span_context()` propagate it (trace id, trace state) with the sampled flag
// clear.
// `TraceOptions::remote_parent` (a valid `SpanContext`, e.g. extracted from
// an incoming `traceparent` by propagation.h) makes the new trace continue
// it: same trace id, the root span's parent the remote span (`SpanData::
// parent_is_remote`), trace flags and
// trace state inherited. An invalid one is ignored: a new trace starts.
//
// Limits (OpenTelemetry's): `Options::limits` caps attributes, events and
// links per span/trace and attributes per event/link, and truncates string
// attribute values (at a UTF-8 boundary); what is dropped is counted in the
// record's `dropped_*_count` fields. Setting an existing attribute key
// replaces its value.
//
// Cost: starting a span allocates its record (one allocation) and calls the
// processors (plus, with a non-default sampler, one virtual sampler call;
// the tracer's scope name/version and the trace state are copied only when
// not empty); the context's name is looked up once per thread and context
// and copied into the record's execution sites. Making it current is one
// context-key Set of a 24-byte value stored inline (no allocation);
// finishing on its own loop thread is one inline Reset plus the processors.
// An unsampled trace made current (or a span the sampler dropped in a
// recorded trace) allocates its shared identity once; unsampled spans under
// it share it. A disabled tracer's start is an inline test that returns an
// inert scope (about 2 ns for start+finish); non-recording scopes are
// no-ops: no allocation, no processor call.
// `benchmarks/` compares these with OpenTelemetry C++'s published figures.
//
// Thread-safety: `StartTrace`/`StartSpan` record only on `ctx`'s loop thread
// (elsewhere: a counted non-recording scope). Everything else is
// thread-safe. Scopes and finishes keep the tracer's processors alive, so a
// scope may outlive the `Tracer` object; after `Shutdown`, processors count
// late events as dropped.

#ifndef CTXLOOP_TRACE_TRACER_H_
#define CTXLOOP_TRACE_TRACER_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/optimization.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ctxloop/loop/context_handle.h"
#include "ctxloop/trace/multi_processor.h"
#include "ctxloop/trace/processor.h"
#include "ctxloop/trace/sampler.h"
#include "ctxloop/trace/scope.h"
#include "ctxloop/trace/span_context.h"
#include "ctxloop/trace/span_data.h"

namespace ctxloop {

namespace trace_internal {
struct TracerCore;
}  // namespace trace_internal

struct TraceOptions {
  TraceId trace_id;  // Invalid: generate one. Ignored with a remote parent.
  bool make_current = true;
  // OpenTelemetry attributes, kind and links of the trace's root span
  // (e.g. a run's group and metadata: `kGroupIdAttribute`,
  // `kMetadataAttributePrefix` in span_data.h).
  Attributes attributes;
  SpanKind kind = SpanKind::kInternal;
  std::vector<SpanLink> links;
  // Continue this remote trace if valid (see the file comment).
  SpanContext remote_parent;
};

struct SpanOptions {
  SpanParent parent;  // Invalid: use the context's current span/trace.
  Attributes attributes;
  bool make_current = true;
  SpanKind kind = SpanKind::kInternal;
  std::vector<SpanLink> links;
};

// OpenTelemetry's span limits; what exceeds them is dropped and counted.
struct SpanLimits {
  static constexpr size_t kUnlimited = static_cast<size_t>(-1);
  size_t attribute_count = 128;
  size_t attribute_value_length = kUnlimited;  // Bytes of a string value.
  size_t event_count = 128;
  size_t link_count = 128;
  size_t attributes_per_event = 128;
  size_t attributes_per_link = 128;
};

// Rare events only: a finish on its own context (the common case) is not
// counted, so the hot path touches no shared counter.
struct TracerStats {
  // Starts that could not record because of misuse: a null context handle,
  // a call off the context's loop thread, or a destroyed or closing context
  // (the last two also counted by reason below).
  uint64_t start_refused = 0;
  // Non-recording scopes, by reason (see "Never aborting a user").
  uint64_t noop_spans = 0;              // Started with no trace to belong to.
  uint64_t rejected_spans = 0;          // Parent trace already finished.
  uint64_t spans_off_loop_thread = 0;   // Not on ctx's loop thread.
  uint64_t spans_on_stale_context = 0;  // ctx destroyed or closing.
  uint64_t traces_off_loop_thread = 0;
  uint64_t traces_on_stale_context = 0;
  // Not recorded by the sampler's decision (their ids still propagate).
  uint64_t unsampled_traces = 0;
  uint64_t unsampled_spans = 0;      // Includes every span of unsampled traces.
  uint64_t finishes_posted = 0;      // Posted to the origin context.
  uint64_t finishes_on_root = 0;     // [F1] origin context was gone.
  uint64_t finishes_off_origin = 0;  // [F2]/[F3] origin loop was gone.
  // [F5] A trace's end posted to where its finish ran, because its last open
  // span ended elsewhere.
  uint64_t trace_ends_posted = 0;
};

class Tracer {
 public:
  struct Options {
    // Called in this order for every event; see processor.h.
    std::vector<std::shared_ptr<TraceProcessor>> processors;
    // A disabled tracer's scopes cost almost nothing and record nothing.
    bool enabled = true;
    // Receives processor failures (exceptions). Default: stderr.
    TraceErrorCallback on_error;
    // Copied into every record (`SpanData::scope`).
    InstrumentationScope scope;
    SpanLimits limits;
    // Null: ParentBasedSampler(AlwaysOnSampler()).
    std::shared_ptr<const Sampler> sampler;
  };

  explicit Tracer(Options options);
  Tracer(const Tracer&) = delete;
  Tracer& operator=(const Tracer&) = delete;
  // Runs `Shutdown()` if it has not run.
  ~Tracer();

  // Starts a trace on `ctx` (its loop thread): its root span, named `name`
  // (e.g. the workflow's name); calls `OnStart` for it if sampled. Never fails:
  // where it cannot record -- a null or stale `ctx`, another thread (counted in
  // `stats().start_refused` and by reason) or an unsampled trace -- the scope
  // is non-recording (see "Never aborting a user"). On a disabled tracer this
  // is an inline test that returns an inert scope (no ids, no allocation,
  // nothing shared written), or with a valid `remote_parent` one that carries
  // it unchanged.
  TraceScope StartTrace(ContextHandle ctx, absl::string_view name) {
    if (ABSL_PREDICT_FALSE(!enabled_.load(std::memory_order_relaxed))) {
      return TraceScope::Inert();
    }
    return StartTraceImpl(ctx, name, TraceOptions());
  }
  TraceScope StartTrace(ContextHandle ctx, absl::string_view name,
                        TraceOptions options) {
    if (ABSL_PREDICT_FALSE(!enabled_.load(std::memory_order_relaxed))) {
      if (ABSL_PREDICT_FALSE(options.remote_parent.valid())) {
        return PassedThrough(options.remote_parent);
      }
      return TraceScope::Inert();
    }
    return StartTraceImpl(ctx, name, std::move(options));
  }

  // Starts a span on `ctx` (its loop thread) and calls `OnStart` if
  // recorded. Never fails: where it cannot record the scope is
  // non-recording, counted (as `StartTrace`). On a disabled tracer this is
  // an inline test that returns an inert scope (no ids, no allocation,
  // nothing shared written); without `options` no `SpanOptions` is built
  // either. With a valid `options.parent` the scope carries that parent's
  // context unchanged (see the file comment).
  SpanScope StartSpan(ContextHandle ctx, absl::string_view name) {
    if (ABSL_PREDICT_FALSE(!enabled_.load(std::memory_order_relaxed))) {
      return SpanScope::Inert();
    }
    return StartSpanImpl(ctx, name, nullptr);
  }
  SpanScope StartSpan(ContextHandle ctx, absl::string_view name,
                      SpanOptions options) {
    if (ABSL_PREDICT_FALSE(!enabled_.load(std::memory_order_relaxed))) {
      if (ABSL_PREDICT_FALSE(options.parent.valid())) {
        return PassedThrough(options.parent);
      }
      return SpanScope::Inert();
    }
    return StartSpanImpl(ctx, name, &options);
  }

  // The context's current span (or trace) as an explicit parent; invalid if
  // none. Loop thread of `ctx`.
  // (Its `span_context()`, e.g. to inject into an outgoing request:
  // `CurrentSpanContext`.)
  absl::StatusOr<SpanParent> CurrentParent(ContextHandle ctx) const;
  // Ids of the current trace/span on `ctx` (invalid if none). Loop thread.
  absl::StatusOr<TraceId> CurrentTraceId(ContextHandle ctx) const;
  absl::StatusOr<SpanId> CurrentSpanId(ContextHandle ctx) const;
  // The current span's (else trace's root span's) context; invalid if none.
  absl::StatusOr<SpanContext> CurrentSpanContext(ContextHandle ctx) const;

  // Turns recording on or off for scopes started from now on. Thread-safe.
  void SetEnabled(bool enabled);
  bool enabled() const;

  // Exports everything the processors hold. Thread-safe. Call it from a
  // thread that no loop depends on: it blocks up to `timeout`.
  absl::Status ForceFlush(absl::Duration timeout = absl::Seconds(5));
  // Flushes and shuts the processors down; idempotent. Thread-safe.
  absl::Status Shutdown(absl::Duration timeout = absl::Seconds(5));

  TracerStats stats() const;

 private:
  // The out-of-line starts.
  TraceScope StartTraceImpl(ContextHandle ctx, absl::string_view name,
                            TraceOptions options);
  // `options`: null for the defaults; may be moved from.
  SpanScope StartSpanImpl(ContextHandle ctx, absl::string_view name,
                          SpanOptions* options);
  // The non-recording scopes of starts that could not record: ids only (see
  // "Never aborting a user").
  static SpanScope UnrecordedSpan(const SpanParent& parent);
  static SpanScope UnrecordedSpan(TraceId trace_id, SpanId root_span_id,
                                  uint8_t trace_flags,
                                  const std::string& trace_state);
  static SpanScope UnrecordedTrace(const TraceOptions& options);
  // A disabled tracer's scope under an explicit parent: the parent's own
  // context, unchanged.
  static SpanScope PassedThrough(const SpanContext& remote_parent);
  static SpanScope PassedThrough(const SpanParent& parent);

  // Read inline by every start (relaxed: a start racing `SetEnabled` may
  // see either value).
  std::atomic<bool> enabled_;
  std::shared_ptr<trace_internal::TracerCore> core_;
  std::atomic<bool> shut_down_{false};
};

}  // namespace ctxloop

#endif  // CTXLOOP_TRACE_TRACER_H_
