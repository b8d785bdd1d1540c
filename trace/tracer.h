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
//   ctxloop::TraceScope run = *tracer.StartTrace(ctx, "agent run");
//   ctxloop::SpanScope step = *tracer.StartSpan(ctx, "tool call");
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
// top-level span of it); with no trace at all the span is a no-op, counted
// in `stats().noop_spans`. A span whose parent trace has already finished is
// refused with `kFailedPrecondition` (its end could not precede the trace's).
// Finishes restore "current" on the origin context in any order without ever
// making a finished scope current again (see context_key.h).
//
// Cost: starting a span allocates its record and calls the processors;
// making it current is one context-key Set (one small allocation); finishing
// on its own context is one Reset plus the processors. A disabled tracer's
// scopes are no-ops: no allocation, no processor call. `benchmarks/`
// compares these with OpenTelemetry C++'s published figures.
//
// Thread-safety: `StartTrace`/`StartSpan` run on `ctx`'s loop thread
// (`kFailedPrecondition` elsewhere). Everything else is thread-safe. Scopes
// and finishes keep the tracer's processors alive, so a scope may outlive
// the `Tracer` object; after `Shutdown`, processors count late events as
// dropped.

#ifndef CTXLOOP_TRACE_TRACER_H_
#define CTXLOOP_TRACE_TRACER_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ctxloop/loop/context_handle.h"
#include "ctxloop/trace/multi_processor.h"
#include "ctxloop/trace/processor.h"
#include "ctxloop/trace/scope.h"

namespace ctxloop {

namespace internal {
struct TracerCore;
}  // namespace internal

struct TraceOptions {
  std::string group_id;
  std::map<std::string, std::string> metadata;
  TraceId trace_id;  // Invalid: generate one.
  bool make_current = true;
};

struct SpanOptions {
  SpanParent parent;  // Invalid: use the context's current span/trace.
  Attributes attributes;
  bool make_current = true;
};

// Rare events only: a finish on its own context (the common case) is not
// counted, so the hot path touches no shared counter.
struct TracerStats {
  uint64_t noop_spans = 0;           // Started with no trace to belong to.
  uint64_t rejected_spans = 0;       // Parent trace already finished.
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
    MultiProcessor::ErrorCallback on_error;
  };

  explicit Tracer(Options options);
  Tracer(const Tracer&) = delete;
  Tracer& operator=(const Tracer&) = delete;
  // Runs `Shutdown()` if it has not run.
  ~Tracer();

  // Starts a trace on `ctx` (its loop thread) and calls `OnTraceStart`.
  absl::StatusOr<TraceScope> StartTrace(ContextHandle ctx,
                                        absl::string_view workflow_name,
                                        TraceOptions options = {});

  // Starts a span on `ctx` (its loop thread) and calls `OnSpanStart`.
  absl::StatusOr<SpanScope> StartSpan(ContextHandle ctx, absl::string_view name,
                                      SpanOptions options = {});

  // The context's current span (or trace) as an explicit parent; invalid if
  // none. Loop thread of `ctx`.
  absl::StatusOr<SpanParent> CurrentParent(ContextHandle ctx) const;
  // Ids of the current trace/span on `ctx` (invalid if none). Loop thread.
  absl::StatusOr<TraceId> CurrentTraceId(ContextHandle ctx) const;
  absl::StatusOr<SpanId> CurrentSpanId(ContextHandle ctx) const;

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
  std::shared_ptr<internal::TracerCore> core_;
  std::atomic<bool> shut_down_{false};
};

}  // namespace ctxloop

#endif  // CTXLOOP_TRACE_TRACER_H_
