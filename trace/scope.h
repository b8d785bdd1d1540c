// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/trace/scope.h
// -----------------------------------------------------------------------------
//
// `SpanScope` (also named `TraceScope`): the move-only owner of one started
// span, made by `Tracer::StartSpan`, or of a trace's root span, made by
// `Tracer::StartTrace` (a trace is its root span).
//
// Finishing, from anywhere
// ------------------------
// A scope remembers its origin: the context it was started on. `Finish` may
// be called on any thread, any context, any loop; what must happen on the
// origin -- resetting the origin context's "current" trace/span, calling the
// processors -- runs there:
//   * on the origin's loop thread (whatever `from` says, and for a scope
//     destroyed there): runs now, so "current" never names an ended scope
//     for the rest of the task;
//   * otherwise: posted to the origin context as a task, and runs there.
// The end time is taken when `Finish` is called. Whatever happens to the
// origin, processors see the end exactly once (cases F0..F5, numbered in
// scope.cc):
//   [F1] origin context destroyed: the finish runs on the origin loop's root
//        context (no reset: the context's values are gone),
//        `finished_off_origin` set, counted in `finishes_on_root`;
//   [F2] origin loop shutting down or destroyed: the finish runs on the
//        calling thread, processors only, `finished_off_origin` set;
//   [F3] a posted finish that the loop drops unrun (shutdown overflow): it
//        is delivered, processors only, where it was dropped;
//   [F4] a scope destroyed unfinished finishes itself as `Finish()` would;
//   [F5] a trace (root span) finished while spans are open: its `OnEnd`
//        comes when the last one ends, on the loop thread where the trace's
//        finish ran (posted there if that span ended elsewhere; on its root
//        context if the finish's context is gone since); if that loop is gone,
//        where the last span ended, with `finish_ran` and `finished_off_origin`
//        saying so.
// `FinishOptions::on_finished` tells the caller when (and where) the finish
// ran. `finish_ran` always names where the processors' end event ran.
// A second `Finish` returns `kFailedPrecondition`. So does any call on a
// moved-from scope.
//
// The seed bug, impossible here: a trace started and made current on
// context A of loop 1, its events consumed on context B of loop 2, and B
// calling `Finish(b_ctx)` (reset_current defaults to true): the reset is posted
// to A and runs on loop 1's thread; no "token created in a different context".
//
// Cost: a scope is a value of 56 bytes (two owned pointers -- its state if
// recording, rare extras -- the ids and two flags); moving it copies those.
// The same code serves traces and spans.
// A disabled tracer's scope (and a non-recording one that is neither current
// nor carrying a trace state) is inert: `Finish(from)` without options and
// the destructor are inline tests, with no call, allocation or shared write. A
// finish on the origin's loop thread costs the processor calls plus a
// context-key reset; from another thread it adds one `Post`.
//
// Non-recording scopes (disabled tracer, unsampled, or a start that could
// not record: see tracer.h) accept every call and record nothing; an
// unsampled one made current undoes that on `Finish` like any scope. They
// still carry ids for propagation (tracer.h, "Ids of non-recording
// scopes"): under a parent, its trace id and trace state with a span id of
// their own and the sampled flag clear; a trace with no remote parent, a
// new trace id. Only a span with no parent it can see, and a disabled
// tracer's scope with no explicit parent, have none (invalid ids, an
// invalid `span_context()`, so nothing is injected).
//
// Thread-safety: a scope is owned by one thread at a time (move it to hand it
// over). `Finish` is the only method that may run away from the origin;
// the setters touch only the scope's record.

#ifndef CTXLOOP_TRACE_SCOPE_H_
#define CTXLOOP_TRACE_SCOPE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/base/optimization.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "ctxloop/loop/context_handle.h"
#include "ctxloop/loop/context_key.h"
#include "ctxloop/trace/ids.h"
#include "ctxloop/trace/span_context.h"
#include "ctxloop/trace/span_data.h"

namespace ctxloop {

namespace trace_internal {
struct TraceRecord;
struct SpanState;
struct ScopeExtra;
}  // namespace trace_internal

struct FinishOptions {
  // Undo this scope's "make current" on the origin context. With false, the
  // finished scope stays current there (as Python's reset_current=False).
  bool reset_current = true;
  // Called once, after the finish ran (reset and processors), on the thread
  // where it ran, with where that was (`finish_ran`): lets a producer learn
  // when it may destroy the origin context. For a trace finished while spans
  // are open, its root span's `OnEnd` comes later, when the last one ends ([F5]
  // in scope.cc); this callback does not wait for it. A non-recording scope
  // calls it too, once its "current" is undone (at once if it was not
  // current). Must not throw (an exception is reported on stderr, ignored).
  std::function<void(const ExecutionSite& ran)> on_finished;
};

// An explicit parent for `Tracer::StartSpan`, from a scope or from
// `Tracer::CurrentParent`. Copyable; safe to hand to any thread (this is how
// a stream gives its consumer the producer's trace). Keeps the trace's
// record alive, not the scope. A parent in an unsampled trace has ids but no
// record: spans under it are unsampled too.
class SpanParent {
 public:
  SpanParent() = default;  // No parent.
  bool valid() const { return trace_id_.valid(); }
  TraceId trace_id() const { return trace_id_; }
  // The parent span (a trace's root span when the trace is the parent).
  SpanId span_id() const { return span_.valid() ? span_ : root_span_id_; }
  bool sampled() const { return (trace_flags_ & kTraceFlagSampled) != 0; }

 private:
  friend class Tracer;
  friend class SpanScope;
  SpanParent(std::shared_ptr<trace_internal::TraceRecord> trace, SpanId span,
             TraceId trace_id, SpanId root_span_id, uint8_t trace_flags,
             std::shared_ptr<const std::string> unsampled_trace_state);
  std::shared_ptr<trace_internal::TraceRecord> trace_;  // Null if unsampled.
  SpanId span_;
  TraceId trace_id_;
  SpanId root_span_id_;
  uint8_t trace_flags_ = 0;
  std::shared_ptr<const std::string> trace_state_;  // Unsampled, non-empty.
};

// A non-recording (unsampled) scope made current keeps the token of that
// Set to undo it (`token->context()` is its origin). Internal.
using ScopeCurrent = std::optional<Token>;

// One started span: a trace's root span (`Tracer::StartTrace`) or a span in
// it (`Tracer::StartSpan`). `TraceScope` names the same type where the
// scope is a trace.
class SpanScope {
 public:
  SpanScope() = default;  // Finished (inert).
  SpanScope(SpanScope&& other) noexcept
      : state_(std::exchange(other.state_, nullptr)),
        extra_(std::exchange(other.extra_, nullptr)),
        trace_id_(other.trace_id_),
        span_id_(other.span_id_),
        root_span_id_(other.root_span_id_),
        trace_flags_(other.trace_flags_),
        finished_(std::exchange(other.finished_, true)) {}
  SpanScope& operator=(SpanScope&&) noexcept;  // Finishes the old one [F4].
  ~SpanScope() {                               // [F4]
    if (ABSL_PREDICT_FALSE(!Plain())) Destroy();
  }

  // Finishes it; see the file comment. `from` is the caller's context, if
  // it has one. `kFailedPrecondition` if already finished or moved from.
  absl::Status Finish(ContextHandle from) {
    // A non-recording scope that is not current: nothing to undo.
    if (ABSL_PREDICT_TRUE(Plain() && !finished_)) {
      finished_ = true;
      return absl::OkStatus();
    }
    FinishOptions options;
    return FinishSlow(from, options);
  }
  absl::Status Finish(ContextHandle from, FinishOptions options) {
    return FinishSlow(from, options);
  }
  absl::Status Finish() { return Finish(ContextHandle()); }

  // Before `Finish`, on the owning thread: attach data (subject to the
  // tracer's limits). Ignored on a non-recording scope and once finished or
  // moved from, as OpenTelemetry's span setters.
  void SetAttribute(absl::string_view key, AttributeValue value);
  void AddEvent(absl::string_view name, Attributes attributes = {});
  // OpenTelemetry rules: kUnset is ignored, kOk is final, the description
  // is kept only with kError.
  void SetStatus(StatusCode code, absl::string_view description = {});
  // `SetStatus(StatusCode::kError, description)`.
  void SetError(absl::string_view description);

  // False once finished, moved from, or for a non-recording scope.
  bool recording() const { return state_ != nullptr; }
  // Still valid after `Finish`. A non-recording span under a parent has
  // the parent's trace id and a span id of its own (sampled flag clear); a
  // non-recording trace has ids unless it is a disabled tracer's without a
  // remote parent; a span with no parent it could see (or a disabled
  // tracer's without `SpanOptions::parent`) has invalid ids.
  TraceId trace_id() const { return trace_id_; }
  SpanId span_id() const { return span_id_; }
  // For injection (propagation.h): trace id, span id, trace flags (sampled
  // clear if unsampled) and trace state. Valid after `Finish`.
  SpanContext span_context() const;
  ContextHandle origin() const;
  // This span as a parent for spans, e.g. on another context.
  SpanParent AsParent() const;

 private:
  friend class Tracer;
  // Recording (`state` non-null) or non-recording with ids; started.
  SpanScope(std::unique_ptr<trace_internal::SpanState> state,
            const SpanContext& context, ScopeCurrent current,
            SpanId root_span_id);
  // A disabled tracer's (or a no-op) scope: no ids, started.
  static SpanScope Inert() {
    SpanScope s;
    s.finished_ = false;
    return s;
  }
  // Neither recording nor holding anything to undo or free: finishing or
  // destroying it touches nothing else.
  bool Plain() const {
    return (reinterpret_cast<uintptr_t>(state_) |
            reinterpret_cast<uintptr_t>(extra_)) == 0;
  }
  absl::Status FinishSlow(ContextHandle from, FinishOptions& options);
  void Destroy();

  // Owned (raw pointers, so that an inert scope's destructor is one inline
  // test). `extra_`: a non-recording scope made current (its token), or a
  // non-empty trace state; rare.
  trace_internal::SpanState* state_ = nullptr;  // Recording scopes.
  trace_internal::ScopeExtra* extra_ = nullptr;
  TraceId trace_id_;
  SpanId span_id_;
  SpanId root_span_id_;  // The trace's root span (this one for a trace).
  uint8_t trace_flags_ = 0;
  bool finished_ = true;  // Until started; again once finished or moved.
};

// A trace is its root span: `Tracer::StartTrace` returns this scope.
using TraceScope = SpanScope;

}  // namespace ctxloop

#endif  // CTXLOOP_TRACE_SCOPE_H_
