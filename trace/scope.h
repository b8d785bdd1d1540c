// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/trace/scope.h
// -----------------------------------------------------------------------------
//
// `TraceScope` and `SpanScope`: move-only owners of one started trace or
// span, made by `Tracer::StartTrace` / `Tracer::StartSpan`.
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
//   [F5] a trace finished while spans are open: `OnTraceEnd` comes when the
//        last one ends, on the loop where the trace's finish ran (posted
//        there if that span ended elsewhere), falling back as [F1]/[F2].
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
// Cost: a scope is one pointer plus its ids. A finish on the origin's loop
// thread costs the processor calls plus a context-key reset and lookup; from
// another thread it adds one `Post`.
//
// Thread-safety: a scope is owned by one thread at a time (move it to hand it
// over). `Finish` is the only method that may run away from the origin;
// `SetAttribute`/`SetError` touch only the scope.

#ifndef CTXLOOP_TRACE_SCOPE_H_
#define CTXLOOP_TRACE_SCOPE_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "ctxloop/loop/context_handle.h"
#include "ctxloop/trace/ids.h"
#include "ctxloop/trace/span_data.h"

namespace ctxloop {

namespace internal {
struct TraceRecord;
struct TraceState;
struct SpanState;
}  // namespace internal

struct FinishOptions {
  // Undo this scope's "make current" on the origin context. With false, the
  // finished scope stays current there (as Python's reset_current=False).
  bool reset_current = true;
  // Called once, after the finish ran (reset and processors), on the thread
  // where it ran, with where that was (`finish_ran`): lets a producer learn
  // when it may destroy the origin context. For a trace finished while spans
  // are open, `OnTraceEnd` comes later, when the last one ends ([F5] in
  // scope.cc); this callback does not wait for it. Not called for a no-op
  // scope. Must not throw (an exception is reported on stderr and ignored).
  std::function<void(const ExecutionSite& ran)> on_finished;
};

// An explicit parent for `Tracer::StartSpan`, from a scope or from
// `Tracer::CurrentParent`. Copyable; safe to hand to any thread (this is how
// a stream gives its consumer the producer's trace). Keeps the trace's
// record alive, not the scope.
class SpanParent {
 public:
  SpanParent() = default;  // No parent.
  bool valid() const { return trace_ != nullptr; }
  TraceId trace_id() const;
  SpanId span_id() const { return span_; }  // Invalid: the trace itself.

 private:
  friend class Tracer;
  friend class TraceScope;
  friend class SpanScope;
  SpanParent(std::shared_ptr<internal::TraceRecord> trace, SpanId span);
  std::shared_ptr<internal::TraceRecord> trace_;
  SpanId span_;
};

class TraceScope {
 public:
  TraceScope();  // Finished (inert).
  TraceScope(TraceScope&&) noexcept;
  TraceScope& operator=(TraceScope&&) noexcept;  // Finishes the old one [F4].
  ~TraceScope();                                 // [F4]

  // Finishes the trace; see the file comment. `from` is the caller's
  // context, if it has one.
  absl::Status Finish(ContextHandle from, FinishOptions options = {});
  absl::Status Finish() { return Finish(ContextHandle()); }

  // False once finished, moved from, or for a disabled tracer's scope.
  bool recording() const;
  // Still valid after `Finish` (invalid for a no-op scope).
  TraceId trace_id() const { return trace_id_; }
  ContextHandle origin() const;
  // The trace as a parent for spans, e.g. on another context.
  SpanParent AsParent() const;

 private:
  friend class Tracer;
  explicit TraceScope(std::unique_ptr<internal::TraceState> state);
  static TraceScope NoOp();
  std::unique_ptr<internal::TraceState> state_;
  TraceId trace_id_;
  bool noop_ = false;     // Disabled tracer: finishing does nothing.
  bool finished_ = true;  // Until started; again once finished or moved.
};

class SpanScope {
 public:
  SpanScope();  // Finished (inert).
  SpanScope(SpanScope&&) noexcept;
  SpanScope& operator=(SpanScope&&) noexcept;  // Finishes the old one [F4].
  ~SpanScope();                                // [F4]

  absl::Status Finish(ContextHandle from, FinishOptions options = {});
  absl::Status Finish() { return Finish(ContextHandle()); }

  // Before `Finish`: attach data. `kFailedPrecondition` after it.
  absl::Status SetAttribute(absl::string_view key, AttributeValue value);
  absl::Status SetError(absl::string_view message, absl::string_view data = {});

  // False once finished, moved from, or for a no-op span.
  bool recording() const;
  // Still valid after `Finish` (invalid for a no-op span).
  TraceId trace_id() const { return trace_id_; }
  SpanId span_id() const { return span_id_; }
  ContextHandle origin() const;
  SpanParent AsParent() const;

 private:
  friend class Tracer;
  explicit SpanScope(std::unique_ptr<internal::SpanState> state);
  static SpanScope NoOp();
  std::unique_ptr<internal::SpanState> state_;
  TraceId trace_id_;
  SpanId span_id_;
  bool noop_ = false;     // No trace, or disabled tracer.
  bool finished_ = true;  // Until started; again once finished or moved.
};

}  // namespace ctxloop

#endif  // CTXLOOP_TRACE_SCOPE_H_
