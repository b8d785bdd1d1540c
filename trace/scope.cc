// Copyright 2026 The ctxloop Authors.
//
// Where a finish runs, and what happens to it when its origin is gone. Each
// case is referenced as [Fn] where handled and tested in finish_home_test.cc.
//
//  [F0] A finish called on the origin's loop thread -- `Finish(origin)`,
//       `Finish(another context of that loop)`, `Finish()`, or a scope
//       destroyed there -- runs at once: reset "current" on the origin, then
//       the processors. So "current" never names an ended scope for the rest
//       of the task. If the origin context is already destroyed, it runs as
//       [F1] says for that case, on the spot: processors only,
//       `finish_ran` = the loop's root, `finished_off_origin` set, counted in
//       `finishes_on_root`.
//  [F1] Otherwise the finish is posted to the origin context as a
//       `FinishTask` and runs there exactly as [F0]. If the origin context
//       is destroyed or being destroyed, the post is refused and the finish
//       is posted to the origin loop's root context instead: processors run
//       on the origin loop thread, nothing is reset (the values are gone),
//       `finished_off_origin` is set. A finish posted before the context
//       was destroyed still runs on it (loop case S7).
//  [F2] If the origin loop is shutting down (to foreign threads) or gone,
//       both posts are refused: the finish runs on the calling thread,
//       processors only, `finished_off_origin` set. A finish posted before
//       shutdown runs in the drain (loop case S1).
//  [F3] A `FinishTask` destroyed without running (the loop dropped it at
//       shutdown, loop case S3) delivers its finish from its destructor,
//       falling back as in [F1]/[F2]: ownership of the state guarantees
//       "exactly once" however the task dies.
//  [F4] A scope destroyed (or assigned over) unfinished finishes itself as
//       `Finish()` with no caller context: inline on the origin's loop thread
//       ([F0]), posted from anywhere else ([F1]).
//  [F5] A trace (root span) finished while spans are open delivers its
//       `OnEnd` when the last one ends (after every other `OnEnd`). If that
//       span ends away from the loop where the trace's finish ran (e.g. on
//       another loop), the delivery is posted there (`TraceEndTask`, counted in
//       `trace_ends_posted`): to the context where the finish ran, else
//       (destroyed since, e.g. by a producer that saw its finish run) to
//       that loop's root -- same thread, so `finish_ran` stays as the finish
//       left it -- else (loop gone) it runs where the span ended, and
//       `finish_ran` says so (that thread, null context, now) with
//       `finished_off_origin` set, counted in `finishes_off_origin`; a
//       dropped task delivers from its destructor as [F3]. Exactly once: only
//       the thread that saw "finished and no open span" starts the delivery,
//       and the task owns it.
//
// Every path ends in `Complete`, which runs once per scope because the
// scope's state is moved into whichever path runs it. Root spans and spans
// share every path; only `Complete` tells them apart (a root's end waits
// for its trace's open spans, [F5]). `FinishOptions::
// on_finished` is called by `Complete`, after the processors.

#include "ctxloop/trace/scope.h"

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>

#include "ctxloop/loop/internal/owned_core.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/trace/internal/trace_record.h"

namespace ctxloop {
namespace trace_internal {

void DeliverTraceEnd(TraceRecord& trace) {
  trace.tracer->processors.OnEnd(trace.root);
}

std::string ContextNameOf(ContextHandle ctx) {
  if (ctx.is_null()) return std::string();
  loop_internal::LoopCore* core = loop_internal::FindOwnedCore(ctx);
  if (core == nullptr) return std::string();
  absl::StatusOr<std::string> name = core->ContextName(ctx);
  return name.ok() ? *std::move(name) : std::string();
}

ExecutionSite SiteHere(ContextHandle ctx, absl::Time time) {
  return ExecutionSite{ctx, ThisThreadId(), time, ContextNameOf(ctx)};
}

namespace {

enum class Where {
  kOrigin,  // On the origin context, its loop thread.
  kRoot,    // On the origin loop's root context [F1].
  kHere,    // On whatever thread holds the state [F2] [F3].
};

// Where a finish ran: here, at `mono_ns` (or now, if negative).
ExecutionSite SiteAt(const TracerCore& tracer, ContextHandle ctx,
                     int64_t mono_ns) {
  if (mono_ns < 0) mono_ns = MonotonicNs();
  return SiteHere(ctx, tracer.WallTime(mono_ns));
}

// The same on the origin, whose name `started` already holds (a context's
// name never changes): no lookup.
ExecutionSite OriginSiteAt(const TracerCore& tracer,
                           const ExecutionSite& started, int64_t mono_ns) {
  if (mono_ns < 0) mono_ns = MonotonicNs();
  return ExecutionSite{started.ctx, ThisThreadId(), tracer.WallTime(mono_ns),
                       started.context_name};
}

TracerCounters& CountersOf(const SpanState& s) {
  return s.trace->tracer->counters;
}

void CountWhere(TracerCounters& c, Where where) {
  switch (where) {
    case Where::kOrigin:
      break;
    case Where::kRoot:
      c.finishes_on_root.fetch_add(1, std::memory_order_relaxed);
      break;
    case Where::kHere:
      c.finishes_off_origin.fetch_add(1, std::memory_order_relaxed);
      break;
  }
}

void ResetCurrent(ContextHandle origin, std::optional<Token>& token,
                  const FinishOptions& options) {
  if (!options.reset_current || !token.has_value()) return;
  // On the origin context and its loop thread, with our own token: cannot
  // fail unless the context is being torn down, when nothing is to restore.
  (void)CurrentKey().Reset(origin, *token);
  token.reset();
}

ContextHandle RanOn(ContextHandle origin, Where where) {
  switch (where) {
    case Where::kOrigin:
      return origin;
    case Where::kRoot:
      return RootOf(origin);
    case Where::kHere:
      break;
  }
  return ContextHandle();
}

void CallOnFinished(const FinishOptions& options, const ExecutionSite& ran) {
  if (!options.on_finished) return;
  try {
    options.on_finished(ran);
  } catch (...) {
    std::fputs("ctxloop: FinishOptions::on_finished threw; ignored\n", stderr);
  }
}

// `ran_mono_ns`: when it ran, if the caller knows (an inline finish runs
// when it is called); negative: read the clock.
void Complete(SpanState& s, const FinishOptions& options, Where where,
              int64_t ran_mono_ns = -1) {
  TracerCore& tracer = *s.trace->tracer;
  if (where == Where::kOrigin) ResetCurrent(s.origin, s.token, options);
  CountWhere(tracer.counters, where);
  s.data.finish_ran = where == Where::kOrigin
                          ? OriginSiteAt(tracer, s.data.started, ran_mono_ns)
                          : SiteAt(tracer, RanOn(s.origin, where), ran_mono_ns);
  s.data.finished_off_origin = where != Where::kOrigin;
  if (s.root) {  // The trace's end: after its open spans' [F5].
    TraceRecord& r = *s.trace;
    r.root = std::move(s.data);
    // Copied first: once marked finished, the last span's thread may deliver
    // the end and rewrite `root` [F5].
    ExecutionSite ran;
    if (options.on_finished) ran = r.root.finish_ran;
    if (r.MarkFinished()) DeliverTraceEnd(r);  // Else the last span does.
    CallOnFinished(options, ran);
    return;
  }
  tracer.processors.OnEnd(s.data);
  if (options.on_finished) {
    const ExecutionSite ran = s.data.finish_ran;
    if (s.trace->RemoveSpan()) EndTraceAfterLastSpan(std::move(s.trace));
    CallOnFinished(options, ran);
    return;
  }
  if (s.trace->RemoveSpan()) EndTraceAfterLastSpan(std::move(s.trace));
}

// Owns a scope's state on its way home. See [F1]..[F3].
class FinishTask {
 public:
  FinishTask(std::unique_ptr<SpanState> state, FinishOptions options,
             Where where)
      : state_(std::move(state)), options_(std::move(options)), where_(where) {}
  FinishTask(FinishTask&&) noexcept = default;
  FinishTask& operator=(FinishTask&&) = delete;

  ~FinishTask() {
    if (state_ != nullptr)
      Fallback(std::move(state_), std::move(options_), where_);  // [F3]
  }

  void operator()(ContextHandle) && {
    std::unique_ptr<SpanState> state = std::move(state_);
    Complete(*state, options_, where_);
  }

  // Sends `state` home: the origin context, else its loop's root, else here.
  static void Send(std::unique_ptr<SpanState> state, FinishOptions options) {
    const ContextHandle origin = state->origin;
    CountersOf(*state).finishes_posted.fetch_add(1, std::memory_order_relaxed);
    // If refused, the task is destroyed in Post and falls back [F1] [F2].
    // Never refused for a full cross-thread backlog (PostNeverFull).
    (void)loop_internal::PostNeverFull(
        origin,
        FinishTask(std::move(state), std::move(options), Where::kOrigin));
  }

 private:
  static void Fallback(std::unique_ptr<SpanState> state, FinishOptions options,
                       Where failed) {
    if (failed == Where::kOrigin) {  // [F1]
      const ContextHandle root = RootOf(state->origin);
      (void)loop_internal::PostNeverFull(
          root, FinishTask(std::move(state), std::move(options), Where::kRoot));
      return;
    }
    if (failed == Where::kRoot) {  // [F2]
      Complete(*state, options, Where::kHere);
    }
  }

  std::unique_ptr<SpanState> state_;
  FinishOptions options_;
  Where where_;
};

void FinishState(std::unique_ptr<SpanState> state, FinishOptions options,
                 int64_t called_mono_ns) {
  const ContextHandle origin = state->origin;
  if (loop_internal::LoopCore* core =
          loop_internal::FindOwnedCore(origin)) {  // [F0] Its loop thread.
    // A destroyed origin -- freed, or closing since `DestroyContext` [S15] --
    // takes nothing new: a finish called from now on runs as [F1], on the
    // loop's root. (A finish posted before the destroy still runs on the
    // origin, [S7].) Its "current" is still undone while the context's
    // values exist, so the tasks still queued there never see an ended scope.
    const Where where = core->IsOpen(origin) ? Where::kOrigin : Where::kRoot;
    if (options.reset_current && state->token.has_value()) {
      (void)CurrentKey().Reset(origin, *state->token);
      state->token.reset();
    }
    Complete(*state, options, where, called_mono_ns);
    return;
  }
  FinishTask::Send(std::move(state), std::move(options));  // [F1]
}

// Delivers a deferred trace end where the trace's finish ran [F5].
class TraceEndTask {
 public:
  TraceEndTask(std::shared_ptr<TraceRecord> trace, Where where)
      : trace_(std::move(trace)), where_(where) {}
  TraceEndTask(TraceEndTask&&) noexcept = default;
  TraceEndTask& operator=(TraceEndTask&&) = delete;

  ~TraceEndTask() {
    if (trace_ != nullptr) Fallback(std::move(trace_), where_);  // [F3]
  }

  void operator()(ContextHandle) && {
    std::shared_ptr<TraceRecord> trace = std::move(trace_);
    Deliver(*trace, where_);
  }

  static void Fallback(std::shared_ptr<TraceRecord> trace, Where failed) {
    if (failed == Where::kOrigin) {
      const ContextHandle root = RootOf(trace->origin);
      (void)loop_internal::PostNeverFull(
          root, TraceEndTask(std::move(trace), Where::kRoot));
      return;
    }
    Deliver(*trace, Where::kHere);
  }

  // On the loop where the finish ran (its context, or the root if that
  // context is gone since): `finish_ran` already names where the finish ran,
  // on this thread. Off that loop [F2]: rewritten to say where it runs.
  static void Deliver(TraceRecord& trace, Where where) {
    if (where == Where::kHere) {
      // The counters say where each end event ran, once per trace: a finish
      // counted on the origin is now counted here; one counted on the root
      // [F1] moves here; one that already ran off its loop [F2] stays.
      TracerCounters& c = trace.tracer->counters;
      if (!trace.root.finished_off_origin) {
        CountWhere(c, where);
      } else if (!trace.root.finish_ran.ctx.is_null()) {
        c.finishes_on_root.fetch_sub(1, std::memory_order_relaxed);
        CountWhere(c, where);
      }
      trace.root.finish_ran = SiteAt(*trace.tracer, ContextHandle(), -1);
      trace.root.finished_off_origin = true;
    }
    DeliverTraceEnd(trace);
  }

 private:
  std::shared_ptr<TraceRecord> trace_;
  Where where_;
};

}  // namespace

void EndTraceAfterLastSpan(std::shared_ptr<TraceRecord> trace) {
  // Where the trace's finish ran: its origin context, or its loop's root
  // [F1]; null if it ran off its loop [F2] [F3].
  const ContextHandle home = trace->root.finish_ran.ctx;
  if (home.is_null()) {  // Its loop is gone: deliver here, saying so.
    TraceEndTask::Deliver(*trace, Where::kHere);
    return;
  }
  if (IsOnLoopThread(home)) {  // The right thread already.
    DeliverTraceEnd(*trace);
    return;
  }
  trace->tracer->counters.trace_ends_posted.fetch_add(
      1, std::memory_order_relaxed);
  const Where where = home == trace->origin ? Where::kOrigin : Where::kRoot;
  // If refused, the task is destroyed in Post and falls back.
  (void)loop_internal::PostNeverFull(home,
                                     TraceEndTask(std::move(trace), where));
}

namespace {

absl::Status AlreadyFinished(const char* what) {
  return absl::FailedPreconditionError(
      std::string(what) + ": already finished, moved from, or never started");
}

}  // namespace
}  // namespace trace_internal

using trace_internal::SpanState;

namespace {

// Finishes a non-recording scope: undoes its "make current" on the origin
// (here if on its loop thread, else posted), then `on_finished`.
void FinishNonRecording(ScopeCurrent current, ContextHandle from,
                        FinishOptions options) {
  if (!current.has_value() || !options.reset_current) {
    if (options.on_finished) {
      trace_internal::CallOnFinished(
          options, trace_internal::SiteHere(from, absl::Now()));
    }
    return;
  }
  const ContextHandle origin = current->context();
  // Kept for a refused post (rare: an unsampled scope finished off-thread).
  const std::function<void(const ExecutionSite&)> on_finished =
      options.on_finished;
  auto reset = [token = *current, options = std::move(options)](ContextHandle) {
    (void)trace_internal::CurrentKey().Reset(token.context(), token);
    if (options.on_finished) {
      trace_internal::CallOnFinished(
          options, trace_internal::SiteHere(token.context(), absl::Now()));
    }
  };
  if (IsOnLoopThread(origin)) {
    std::move(reset)(origin);
    return;
  }
  // Refused: the context's values are gone, nothing to undo; the task was
  // destroyed unrun, so tell the caller here.
  FinishOptions refused;
  refused.on_finished = on_finished;
  if (!loop_internal::PostNeverFull(origin, std::move(reset)).ok()) {
    trace_internal::CallOnFinished(refused,
                                   trace_internal::SiteHere({}, absl::Now()));
  }
}

}  // namespace

// --- SpanParent --------------------------------------------------------------

SpanParent::SpanParent(std::shared_ptr<trace_internal::TraceRecord> trace,
                       SpanId span, TraceId trace_id, SpanId root_span_id,
                       uint8_t trace_flags,
                       std::shared_ptr<const std::string> unsampled_trace_state)
    : trace_(std::move(trace)),
      span_(span),
      trace_id_(trace_id),
      root_span_id_(root_span_id),
      trace_flags_(trace_flags),
      trace_state_(std::move(unsampled_trace_state)) {}

namespace {

// A non-recording scope's trace state for `SpanParent` (allocated only if
// there is one: rare).
std::shared_ptr<const std::string> SharedState(const std::string& state) {
  if (state.empty()) return nullptr;
  return std::make_shared<const std::string>(state);
}

}  // namespace

namespace trace_internal {

// The rare parts of a scope (see scope.h).
struct ScopeExtra {
  ScopeCurrent current;     // A non-recording scope made current.
  std::string trace_state;  // May be empty.
};

}  // namespace trace_internal

namespace {

using trace_internal::ScopeExtra;

// Null unless there is something rare to keep.
ScopeExtra* MakeExtra(const std::string& trace_state, ScopeCurrent current) {
  if (trace_state.empty() && !current.has_value()) return nullptr;
  return new ScopeExtra{std::move(current), trace_state};
}

// The current-token of `extra` (none if null), taken out of it.
ScopeCurrent TakeCurrent(ScopeExtra* extra) {
  if (extra == nullptr) return std::nullopt;
  return std::exchange(extra->current, std::nullopt);
}

const std::string* TraceStateOf(const ScopeExtra* extra) {
  if (extra == nullptr || extra->trace_state.empty()) return nullptr;
  return &extra->trace_state;
}

}  // namespace

// --- SpanScope ---------------------------------------------------------------

// What scope.h says a scope costs to move.
static_assert(sizeof(SpanScope) <= 56,
              "scope.h: a scope is a value of at most 56 bytes");

SpanScope::SpanScope(std::unique_ptr<SpanState> state,
                     const SpanContext& context, ScopeCurrent current,
                     SpanId root_span_id)
    : state_(state.release()),
      extra_(MakeExtra(context.trace_state, std::move(current))),
      trace_id_(context.trace_id),
      span_id_(context.span_id),
      root_span_id_(root_span_id),
      trace_flags_(context.trace_flags),
      finished_(false) {}

void SpanScope::Destroy() {
  if (!finished_) (void)Finish();  // [F4]
  delete state_;                   // Null: Finish took it.
  state_ = nullptr;
  delete extra_;
  extra_ = nullptr;
}

SpanScope& SpanScope::operator=(SpanScope&& other) noexcept {
  if (this != &other) {
    Destroy();  // [F4]
    state_ = std::exchange(other.state_, nullptr);
    extra_ = std::exchange(other.extra_, nullptr);
    trace_id_ = other.trace_id_;
    span_id_ = other.span_id_;
    root_span_id_ = other.root_span_id_;
    trace_flags_ = other.trace_flags_;
    finished_ = std::exchange(other.finished_, true);
  }
  return *this;
}

SpanContext SpanScope::span_context() const {
  SpanContext c;
  c.trace_id = trace_id_;
  c.span_id = span_id_;
  c.trace_flags = trace_flags_;
  if (const std::string* ts = TraceStateOf(extra_)) c.trace_state = *ts;
  return c;
}

absl::Status SpanScope::FinishSlow(ContextHandle from, FinishOptions& options) {
  if (finished_) return trace_internal::AlreadyFinished("SpanScope::Finish");
  finished_ = true;
  if (state_ == nullptr) {  // Non-recording.
    ScopeCurrent current = TakeCurrent(extra_);
    if (current.has_value() || options.on_finished) {
      FinishNonRecording(std::move(current), from, std::move(options));
    }
    return absl::OkStatus();
  }
  std::unique_ptr<SpanState> state(std::exchange(state_, nullptr));
  const int64_t now = trace_internal::MonotonicNs();
  SpanData& d = state->data;
  const trace_internal::TracerCore& tracer = *state->trace->tracer;
  d.end_time = tracer.WallTime(now);
  d.duration =
      absl::Nanoseconds(std::max<int64_t>(0, now - state->start_mono_ns));
  d.finish_called = from == state->origin
                        ? ExecutionSite{from, trace_internal::ThisThreadId(),
                                        d.end_time, d.started.context_name}
                        : trace_internal::SiteHere(from, d.end_time);
  trace_internal::FinishState(std::move(state), std::move(options), now);
  return absl::OkStatus();
}

void SpanScope::SetAttribute(absl::string_view key, AttributeValue value) {
  if (state_ == nullptr) return;  // Non-recording, finished or moved.
  const SpanLimits& limits = state_->trace->tracer->limits;
  state_->data.dropped_attributes_count += trace_internal::SetLimitedAttribute(
      state_->data.attributes, std::string(key), std::move(value), limits,
      limits.attribute_count);
}

void SpanScope::AddEvent(absl::string_view name, Attributes attributes) {
  if (state_ == nullptr) return;  // Non-recording, finished or moved.
  const trace_internal::TracerCore& tracer = *state_->trace->tracer;
  trace_internal::AddLimitedEvent(
      state_->data, name, tracer.WallTime(trace_internal::MonotonicNs()),
      std::move(attributes), tracer.limits);
}

void SpanScope::SetStatus(StatusCode code, absl::string_view description) {
  if (state_ == nullptr) return;  // Non-recording, finished or moved.
  trace_internal::SetStatusOf(state_->data, code, description);
}

void SpanScope::SetError(absl::string_view description) {
  SetStatus(StatusCode::kError, description);
}

ContextHandle SpanScope::origin() const {
  if (state_ != nullptr) return state_->origin;
  if (extra_ != nullptr && extra_->current.has_value()) {
    return extra_->current->context();
  }
  return ContextHandle();
}
SpanParent SpanScope::AsParent() const {
  // No trace, or a finished recorded span.
  if (!trace_id_.valid()) return SpanParent();
  const bool sampled = (trace_flags_ & kTraceFlagSampled) != 0;
  if (state_ == nullptr && sampled) return SpanParent();
  if (state_ != nullptr) {
    return SpanParent(state_->trace, span_id_, trace_id_, root_span_id_,
                      trace_flags_, nullptr);
  }
  // Unsampled: ids only; spans under it are unsampled too.
  const std::string* ts = TraceStateOf(extra_);
  return SpanParent(nullptr, span_id_, trace_id_, root_span_id_, trace_flags_,
                    ts == nullptr ? nullptr : SharedState(*ts));
}

}  // namespace ctxloop
