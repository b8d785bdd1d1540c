// Copyright 2026 The ctxloop Authors.
//
// Internal. The shared state behind traces and spans.
//
// `TracerCore` is shared (by `std::shared_ptr`) by a `Tracer`, every trace
// record and so every scope, so a finish that runs after the `Tracer` object
// is gone still reaches the processors.
//
// `TraceRecord` is shared by a trace's root scope, its spans and any context
// whose "current" value names it. `state` counts open spans and carries the
// "root finished" bit, so that exactly one thread sees "finished and no
// open spans" and delivers the root span's `OnEnd`, after every other
// `OnEnd` of that trace (the rule: a trace's end waits for its open spans).
//
// `SpanState` is behind every recording scope, root or not: one record
// (`SpanData`), one finish path.
//
// Cost: one `TraceRecord` allocation per trace; spans share it by
// `std::shared_ptr` (one atomic increment each) and count themselves in
// `state` (one compare-and-swap to start, one decrement to end).
//
// Thread-safety: `TracerCore` is immutable after construction but for its
// atomics. `TraceRecord::root` is written by the root span's finish and
// read by whoever delivers the end, ordered by `state`; span starts on any
// thread read only its ids, flags and trace state, which are fixed at the
// trace's start. A `SpanState` is owned by one thread at a time. No lock:
// ownership and `state` order every access.

#ifndef CTXLOOP_TRACE_INTERNAL_TRACE_RECORD_H_
#define CTXLOOP_TRACE_INTERNAL_TRACE_RECORD_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/optimization.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ctxloop/loop/context_handle.h"
#include "ctxloop/loop/context_key.h"
#include "ctxloop/loop/internal/any_value.h"
#include "ctxloop/trace/ids.h"
#include "ctxloop/trace/internal/clock.h"
#include "ctxloop/trace/multi_processor.h"
#include "ctxloop/trace/sampler.h"
#include "ctxloop/trace/span_data.h"
#include "ctxloop/trace/tracer.h"

namespace ctxloop {
namespace trace_internal {

struct TracerCounters {
  std::atomic<uint64_t> start_refused{0};
  std::atomic<uint64_t> noop_spans{0};
  std::atomic<uint64_t> rejected_spans{0};
  std::atomic<uint64_t> spans_off_loop_thread{0};
  std::atomic<uint64_t> spans_on_stale_context{0};
  std::atomic<uint64_t> traces_off_loop_thread{0};
  std::atomic<uint64_t> traces_on_stale_context{0};
  std::atomic<uint64_t> unsampled_traces{0};
  std::atomic<uint64_t> unsampled_spans{0};
  std::atomic<uint64_t> finishes_posted{0};
  std::atomic<uint64_t> finishes_on_root{0};
  std::atomic<uint64_t> finishes_off_origin{0};
  std::atomic<uint64_t> trace_ends_posted{0};
};

struct TracerCore {
  explicit TracerCore(Tracer::Options options);

  // Wall-clock time for a monotonic reading: one clock read per event. (The
  // wall clock is sampled once, at construction; durations and order come
  // from the monotonic clock.)
  absl::Time WallTime(int64_t mono_ns) const {
    return absl::FromUnixNanos(wall_anchor_unix_ns +
                               (mono_ns - mono_anchor_ns));
  }

  MultiProcessor processors;
  const InstrumentationScope scope;
  const SpanLimits limits;
  const bool default_sampler;  // ParentBased(AlwaysOn).
  const std::shared_ptr<const Sampler> sampler;
  const int64_t wall_anchor_unix_ns;
  const int64_t mono_anchor_ns;
  TracerCounters counters;
};

// What a context's "current" needs of its trace: ids, flags, state. Shared
// (immutable once made current) by every current value in the trace. A
// recorded trace's is its `TraceRecord`; an unsampled one's is allocated on
// its own when it is made current.
struct TraceIdentity {
  TraceId trace_id;
  SpanId root_span_id;
  uint8_t trace_flags = 0;
  bool recorded = false;    // True: this is a `TraceRecord`.
  std::string trace_state;  // W3C; fixed at the trace's start.
};

struct TraceRecord : TraceIdentity {
  static constexpr uint64_t kFinishedBit = 1;
  static constexpr uint64_t kOneSpan = 2;

  std::shared_ptr<TracerCore> tracer;
  ContextHandle origin;  // Where the trace started.
  // The root span's record, moved here by its finish; its end is delivered
  // from here (at once, or by the last open span [F5]).
  SpanData root;
  // (open spans) * 2 | finished bit.
  std::atomic<uint64_t> state{0};

  // Counts a new span in; false if the trace has finished. (A CAS, not a
  // fetch_add: a transient count on a finished trace could make a later
  // `RemoveSpan` deliver its end a second time.)
  bool AddSpan() {
    uint64_t s = state.load(std::memory_order_relaxed);
    do {
      if (s & kFinishedBit) return false;
    } while (!state.compare_exchange_weak(s, s + kOneSpan,
                                          std::memory_order_relaxed));
    return true;
  }
  // True if the caller must deliver the trace end (it saw the last span end
  // after the trace finished).
  bool RemoveSpan() {
    return state.fetch_sub(kOneSpan, std::memory_order_acq_rel) ==
           (kOneSpan | kFinishedBit);
  }
  // True if the caller must deliver the trace end (no span was open).
  bool MarkFinished() {
    return state.fetch_or(kFinishedBit, std::memory_order_acq_rel) == 0;
  }
};

// What a context's "current" value holds: a trace, and the current span in
// it (invalid span id: the trace itself is current). `trace` is null for an
// unsampled trace or span, which the ids alone describe.
// A context's current trace and span: 24 bytes, so a ContextKey stores it
// inline (no allocation per Set).
struct CurrentScope {
  std::shared_ptr<const TraceIdentity> trace;  // Null: no trace.
  SpanId span;                                 // Invalid: the trace itself.

  // The recorded trace, if it is one (null if unsampled or none).
  std::shared_ptr<TraceRecord> record() const {
    if (trace == nullptr || !trace->recorded) return nullptr;
    // Aliasing: one reference count increment.
    return std::shared_ptr<TraceRecord>(
        trace,
        const_cast<TraceRecord*>(static_cast<const TraceRecord*>(trace.get())));
  }
  // The W3C trace state (empty if none).
  const std::string& trace_state() const;
};
static_assert(loop_internal::AnyValue::kStoredInline<CurrentScope>,
              "a context's current trace must be stored inline");

// Behind a recording `SpanScope`.
struct SpanState {
  std::shared_ptr<TraceRecord> trace;
  SpanData data;
  ContextHandle origin;
  std::optional<Token> token;  // Set when made current.
  int64_t start_mono_ns = 0;
  bool root = false;  // The trace's root span: its end is the trace's.
};

// The one context-local key tracing uses.
// The key of every context's current trace/span. Inline: one load after the
// first call (a namespace-scope atomic is constant-initialized, so this is
// safe during static initialization too).
extern std::atomic<const ContextKey<CurrentScope>*> current_key;
const ContextKey<CurrentScope>& MakeCurrentKey();
inline const ContextKey<CurrentScope>& CurrentKey() {
  const ContextKey<CurrentScope>* key =
      current_key.load(std::memory_order_acquire);
  if (ABSL_PREDICT_TRUE(key != nullptr)) return *key;
  return MakeCurrentKey();
}

// Calls the processors' `OnEnd` for the root span here and now.
void DeliverTraceEnd(TraceRecord& trace);

// For the one thread that saw the last open span of a finished trace end:
// delivers the root span's `OnEnd` where its finish ran ([F5] in scope.cc).
void EndTraceAfterLastSpan(std::shared_ptr<TraceRecord> trace);

// The name `ctx` was given at `NewContext`; empty for a null or stale handle
// or off its loop thread.
std::string ContextNameOf(ContextHandle ctx);

// `ctx`, this thread, `time`, and `ctx`'s name.
ExecutionSite SiteHere(ContextHandle ctx, absl::Time time);

// Applying `SpanLimits`; each returns what it dropped.
// Sets (or replaces) `key` in `attributes`; truncates string values.
uint32_t SetLimitedAttribute(Attributes& attributes, std::string key,
                             AttributeValue value, const SpanLimits& limits,
                             size_t max_count);
// Keeps the first `max_count` attributes (later duplicates replace earlier
// ones), truncating string values.
uint32_t LimitAttributes(Attributes& attributes, const SpanLimits& limits,
                         size_t max_count);
// Applies the link limits and per-link attribute limits to `links` and
// stores them in `record`.
void SetLinks(SpanData& record, std::vector<SpanLink> links,
              const SpanLimits& limits);
// Appends an event (name, now, attributes) within the limits.
void AddLimitedEvent(SpanData& record, absl::string_view name, absl::Time time,
                     Attributes attributes, const SpanLimits& limits);
// OpenTelemetry's status rules: kUnset ignored, kOk final, message only with
// kError.
void SetStatusOf(SpanData& record, StatusCode code, absl::string_view message);

// The calling thread's Linux tid, cached.
int64_t ThisThreadId();

}  // namespace trace_internal
}  // namespace ctxloop

#endif  // CTXLOOP_TRACE_INTERNAL_TRACE_RECORD_H_
