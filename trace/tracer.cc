// Copyright 2026 The ctxloop Authors.

#include "ctxloop/trace/tracer.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <utility>

#include "absl/base/optimization.h"
#include "absl/strings/str_cat.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/trace/internal/trace_record.h"

namespace ctxloop {
namespace internal {

int64_t ThisThreadId() {
  // Constant-initialized (no TLS guard on every call); filled on first use.
  thread_local int64_t tid = 0;
  if (ABSL_PREDICT_FALSE(tid == 0))
    tid = static_cast<int64_t>(syscall(SYS_gettid));
  return tid;
}

const ContextKey<CurrentScope>& CurrentKey() {
  static const auto* key =
      new ContextKey<CurrentScope>("ctxloop.current_trace");
  return *key;
}

TracerCore::TracerCore(std::vector<std::shared_ptr<TraceProcessor>> list,
                       MultiProcessor::ErrorCallback on_error, bool on)
    : processors(std::move(list), std::move(on_error)),
      enabled(on),
      wall_anchor_unix_ns(absl::ToUnixNanos(absl::Now())),
      mono_anchor_ns(MonotonicNs()) {}

}  // namespace internal

using internal::CurrentKey;
using internal::CurrentScope;
using internal::MonotonicNs;
using internal::SpanState;
using internal::ThisThreadId;
using internal::TraceRecord;
using internal::TraceState;

namespace {

absl::Status NotOnLoopThread(ContextHandle ctx, absl::string_view what) {
  return absl::FailedPreconditionError(absl::StrCat(
      what, " on ", ctx.DebugString(),
      " must be called on that context's loop thread (or the context/loop "
      "is gone)"));
}

}  // namespace

Tracer::Tracer(Options options)
    : core_(std::make_shared<internal::TracerCore>(
          std::move(options.processors), std::move(options.on_error),
          options.enabled)) {}

Tracer::~Tracer() { (void)Shutdown(); }

absl::StatusOr<TraceScope> Tracer::StartTrace(ContextHandle ctx,
                                              absl::string_view workflow_name,
                                              TraceOptions options) {
  if (ctx.is_null()) return absl::InvalidArgumentError("StartTrace: null ctx");
  if (!core_->enabled.load(std::memory_order_relaxed))
    return TraceScope::NoOp();
  if (!IsOnLoopThread(ctx)) return NotOnLoopThread(ctx, "StartTrace");
  auto record = std::make_shared<TraceRecord>();
  record->tracer = core_;
  record->origin = ctx;
  record->start_mono_ns = MonotonicNs();
  TraceData& d = record->data;
  d.trace_id = options.trace_id.valid() ? options.trace_id : NewTraceId();
  d.root_span_id = RootSpanIdFor(d.trace_id);
  d.workflow_name = std::string(workflow_name);
  d.group_id = std::move(options.group_id);
  d.metadata = std::move(options.metadata);
  d.start_time = core_->WallTime(record->start_mono_ns);
  d.end_time = absl::InfiniteFuture();
  d.started = internal::SiteHere(ctx, d.start_time);
  std::unique_ptr<TraceState> state(new TraceState);
  state->origin = ctx;
  if (options.make_current) {
    absl::StatusOr<Token> token =
        CurrentKey().Set(ctx, CurrentScope{record, SpanId()});
    if (!token.ok()) return token.status();  // Context destroyed.
    state->token = *token;
  }
  core_->processors.OnTraceStart(d);
  state->record = std::move(record);
  return TraceScope(std::move(state));
}

absl::StatusOr<SpanScope> Tracer::StartSpan(ContextHandle ctx,
                                            absl::string_view name,
                                            SpanOptions options) {
  if (ctx.is_null()) return absl::InvalidArgumentError("StartSpan: null ctx");
  if (!core_->enabled.load(std::memory_order_relaxed)) return SpanScope::NoOp();
  std::shared_ptr<TraceRecord> trace;
  SpanId parent_span;
  if (options.parent.valid()) {
    if (!IsOnLoopThread(ctx)) return NotOnLoopThread(ctx, "StartSpan");
    trace = std::move(options.parent.trace_);
    parent_span = options.parent.span_;
  } else {
    absl::StatusOr<CurrentScope> current = CurrentKey().Get(ctx);
    if (!current.ok()) return current.status();  // Wrong thread or stale.
    trace = std::move(current->trace);
    parent_span = current->span;
  }
  if (trace == nullptr) {
    core_->counters.noop_spans.fetch_add(1, std::memory_order_relaxed);
    return SpanScope::NoOp();
  }
  if (!trace->AddSpan()) {
    core_->counters.rejected_spans.fetch_add(1, std::memory_order_relaxed);
    return absl::FailedPreconditionError(
        absl::StrCat("StartSpan '", name, "': trace ",
                     trace->data.trace_id.ToHex(), " has already finished"));
  }
  // Default-initialized (every member has an initializer): no memset of the
  // whole record.
  std::unique_ptr<SpanState> state(new SpanState);
  state->origin = ctx;
  state->start_mono_ns = MonotonicNs();
  SpanData& d = state->data;
  d.trace_id = trace->data.trace_id;
  d.span_id = NewSpanId();
  d.parent_span_id = parent_span;
  d.name = std::string(name);
  d.attributes = std::move(options.attributes);
  d.start_time = trace->tracer->WallTime(state->start_mono_ns);
  d.end_time = absl::InfiniteFuture();
  d.started = internal::SiteHere(ctx, d.start_time);
  if (options.make_current) {
    absl::StatusOr<Token> token =
        CurrentKey().Set(ctx, CurrentScope{trace, d.span_id});
    if (!token.ok()) {  // The context is being destroyed.
      // This span never reached a processor; if the trace finished on
      // another thread meanwhile, its end was waiting for us.
      if (trace->RemoveSpan()) internal::EndTraceAfterLastSpan(trace);
      return token.status();
    }
    state->token = *token;
  }
  trace->tracer->processors.OnSpanStart(d);
  state->trace = std::move(trace);
  return SpanScope(std::move(state));
}

absl::StatusOr<SpanParent> Tracer::CurrentParent(ContextHandle ctx) const {
  absl::StatusOr<CurrentScope> current = CurrentKey().Get(ctx);
  if (!current.ok()) return current.status();
  if (current->trace == nullptr) return SpanParent();
  return SpanParent(std::move(current->trace), current->span);
}

absl::StatusOr<TraceId> Tracer::CurrentTraceId(ContextHandle ctx) const {
  absl::StatusOr<CurrentScope> current = CurrentKey().Get(ctx);
  if (!current.ok()) return current.status();
  return current->trace == nullptr ? TraceId() : current->trace->data.trace_id;
}

absl::StatusOr<SpanId> Tracer::CurrentSpanId(ContextHandle ctx) const {
  absl::StatusOr<CurrentScope> current = CurrentKey().Get(ctx);
  if (!current.ok()) return current.status();
  return current->span;
}

void Tracer::SetEnabled(bool enabled) {
  core_->enabled.store(enabled, std::memory_order_relaxed);
}
bool Tracer::enabled() const {
  return core_->enabled.load(std::memory_order_relaxed);
}

absl::Status Tracer::ForceFlush(absl::Duration timeout) {
  return core_->processors.ForceFlush(timeout);
}

absl::Status Tracer::Shutdown(absl::Duration timeout) {
  if (shut_down_.exchange(true)) return absl::OkStatus();
  return core_->processors.Shutdown(timeout);
}

TracerStats Tracer::stats() const {
  const internal::TracerCounters& c = core_->counters;
  TracerStats s;
  s.noop_spans = c.noop_spans.load(std::memory_order_relaxed);
  s.rejected_spans = c.rejected_spans.load(std::memory_order_relaxed);
  s.finishes_posted = c.finishes_posted.load(std::memory_order_relaxed);
  s.finishes_on_root = c.finishes_on_root.load(std::memory_order_relaxed);
  s.finishes_off_origin = c.finishes_off_origin.load(std::memory_order_relaxed);
  s.trace_ends_posted = c.trace_ends_posted.load(std::memory_order_relaxed);
  return s;
}

}  // namespace ctxloop
