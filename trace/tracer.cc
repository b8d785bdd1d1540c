// Copyright 2026 The ctxloop Authors.

#include "ctxloop/trace/tracer.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "absl/base/optimization.h"
#include "absl/strings/str_cat.h"
#include "ctxloop/loop/internal/owned_core.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/trace/internal/trace_record.h"

namespace ctxloop {
namespace trace_internal {

int64_t ThisThreadId() {
  // Constant-initialized (no TLS guard on every call); filled on first use.
  thread_local int64_t tid = 0;
  if (ABSL_PREDICT_FALSE(tid == 0))
    tid = static_cast<int64_t>(syscall(SYS_gettid));
  return tid;
}

std::atomic<const ContextKey<CurrentScope>*> current_key{nullptr};

const ContextKey<CurrentScope>& MakeCurrentKey() {
  static const auto* const key =
      new ContextKey<CurrentScope>("ctxloop.current_trace");
  current_key.store(key, std::memory_order_release);
  return *key;
}

const std::string& CurrentScope::trace_state() const {
  static const std::string* const kEmpty = new std::string();
  if (trace == nullptr) return *kEmpty;
  return trace->trace_state;
}

TracerCore::TracerCore(Tracer::Options options)
    : processors(std::move(options.processors), std::move(options.on_error)),
      scope(std::move(options.scope)),
      limits(options.limits),
      default_sampler(options.sampler == nullptr),
      sampler(options.sampler != nullptr
                  ? std::move(options.sampler)
                  : ParentBasedSampler(AlwaysOnSampler())),
      wall_anchor_unix_ns(absl::ToUnixNanos(absl::Now())),
      mono_anchor_ns(MonotonicNs()) {}

// --- Limits ------------------------------------------------------------------

namespace {

// Cuts `s` to at most `max` bytes, not inside a UTF-8 sequence.
void Truncate(std::string& s, size_t max) {
  if (s.size() <= max) return;
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  s.resize(n);
}

void TruncateValue(AttributeValue& value, size_t max) {
  if (max == SpanLimits::kUnlimited) return;
  if (auto* s = std::get_if<std::string>(&value)) {
    Truncate(*s, max);
  } else if (auto* v = std::get_if<std::vector<std::string>>(&value)) {
    for (std::string& e : *v) Truncate(e, max);
  }
}

}  // namespace

uint32_t SetLimitedAttribute(Attributes& attributes, std::string key,
                             AttributeValue value, const SpanLimits& limits,
                             size_t max_count) {
  TruncateValue(value, limits.attribute_value_length);
  for (auto& [k, v] : attributes) {
    if (k == key) {
      v = std::move(value);
      return 0;
    }
  }
  if (attributes.size() >= max_count) return 1;
  attributes.emplace_back(std::move(key), std::move(value));
  return 0;
}

uint32_t LimitAttributes(Attributes& attributes, const SpanLimits& limits,
                         size_t max_count) {
  // The common case: few attributes, no duplicate keys, no long strings.
  if (attributes.size() <= max_count &&
      limits.attribute_value_length == SpanLimits::kUnlimited) {
    bool duplicate = false;
    for (size_t i = 0; i < attributes.size() && !duplicate; ++i) {
      for (size_t j = 0; j < i; ++j) {
        if (attributes[i].first == attributes[j].first) {
          duplicate = true;
          break;
        }
      }
    }
    if (!duplicate) return 0;
  }
  Attributes in = std::move(attributes);
  attributes.clear();
  uint32_t dropped = 0;
  for (auto& [k, v] : in) {
    dropped += SetLimitedAttribute(attributes, std::move(k), std::move(v),
                                   limits, max_count);
  }
  return dropped;
}

void SetLinks(SpanData& record, std::vector<SpanLink> links,
              const SpanLimits& limits) {
  if (links.size() > limits.link_count) {
    record.dropped_links_count +=
        static_cast<uint32_t>(links.size() - limits.link_count);
    links.resize(limits.link_count);
  }
  for (SpanLink& link : links) {
    link.dropped_attributes_count +=
        LimitAttributes(link.attributes, limits, limits.attributes_per_link);
  }
  record.links = std::move(links);
}

void AddLimitedEvent(SpanData& record, absl::string_view name, absl::Time time,
                     Attributes attributes, const SpanLimits& limits) {
  if (record.events.size() >= limits.event_count) {
    ++record.dropped_events_count;
    return;
  }
  SpanEvent event;
  event.name = std::string(name);
  event.time = time;
  event.dropped_attributes_count =
      LimitAttributes(attributes, limits, limits.attributes_per_event);
  event.attributes = std::move(attributes);
  record.events.push_back(std::move(event));
}

void SetStatusOf(SpanData& record, StatusCode code, absl::string_view message) {
  if (code == StatusCode::kUnset || record.status.code == StatusCode::kOk) {
    return;
  }
  record.status.code = code;
  if (code == StatusCode::kError) {
    record.status.message = std::string(message);
  } else {
    record.status.message.clear();
  }
}

}  // namespace trace_internal

using trace_internal::CurrentKey;
using trace_internal::CurrentScope;
using trace_internal::MonotonicNs;
using trace_internal::SpanState;
using trace_internal::TraceRecord;

namespace {

// The name of the context this thread last started a trace or span on. A
// handle names one context forever (generations are never reused) and a
// context's name never changes, so the name found once stays right.
struct LastContextName {
  ContextHandle ctx;
  std::string name;
};

// `ctx`'s name, on its loop (`core`), on `ctx`'s loop thread.
ExecutionSite StartSite(loop_internal::LoopCore& core, ContextHandle ctx,
                        absl::Time time) {
  thread_local LastContextName last;
  if (ABSL_PREDICT_FALSE(!loop_internal::SameHandle(last.ctx, ctx))) {
    absl::StatusOr<std::string> name = core.ContextName(ctx);
    if (!name.ok()) {
      return ExecutionSite{ctx, trace_internal::ThisThreadId(), time,
                           std::string()};
    }
    last.ctx = ctx;
    last.name = *std::move(name);
  }
  return ExecutionSite{ctx, trace_internal::ThisThreadId(), time, last.name};
}

void Count(std::atomic<uint64_t>& counter) {
  counter.fetch_add(1, std::memory_order_relaxed);
}

uint8_t Unsampled(uint8_t flags) {
  return static_cast<uint8_t>(flags & ~kTraceFlagSampled);
}

// What an unsampled trace (or span) made current keeps on its context.
std::shared_ptr<const trace_internal::TraceIdentity> UnsampledIdentity(
    TraceId trace_id, SpanId root_span_id, uint8_t trace_flags,
    const std::string& trace_state) {
  auto id = std::make_shared<trace_internal::TraceIdentity>();
  id->trace_id = trace_id;
  id->root_span_id = root_span_id;
  id->trace_flags = trace_flags;
  id->trace_state = trace_state;
  return id;
}

// The trace state a parent carries (recorded: its record's, fixed at the
// trace's start, so readable from any thread).
const std::string& TraceStateOf(const std::shared_ptr<TraceRecord>& trace,
                                const std::shared_ptr<const std::string>& s) {
  static const std::string* const kEmpty = new std::string();
  if (trace != nullptr) return trace->trace_state;
  return s != nullptr ? *s : *kEmpty;
}

}  // namespace

// Out of line and off the recording path: the scopes that could not record.
SpanScope Tracer::UnrecordedSpan(const SpanParent& parent) {
  return UnrecordedSpan(parent.trace_id_, parent.root_span_id_,
                        parent.trace_flags_,
                        TraceStateOf(parent.trace_, parent.trace_state_));
}

SpanScope Tracer::UnrecordedSpan(TraceId trace_id, SpanId root_span_id,
                                 uint8_t trace_flags,
                                 const std::string& trace_state) {
  SpanContext context;
  context.trace_id = trace_id;
  context.span_id = NewSpanId();
  context.trace_flags = Unsampled(trace_flags);
  if (!trace_state.empty()) context.trace_state = trace_state;
  return SpanScope(nullptr, context, std::nullopt, root_span_id);
}

TraceScope Tracer::PassedThrough(const SpanContext& remote_parent) {
  SpanContext context = remote_parent;
  context.remote = false;
  return TraceScope(nullptr, context, std::nullopt, context.span_id);
}

SpanScope Tracer::PassedThrough(const SpanParent& parent) {
  SpanContext context;
  context.trace_id = parent.trace_id_;
  context.span_id = parent.span_.valid() ? parent.span_ : parent.root_span_id_;
  context.trace_flags = parent.trace_flags_;
  const std::string& state = TraceStateOf(parent.trace_, parent.trace_state_);
  if (!state.empty()) context.trace_state = state;
  return SpanScope(nullptr, context, std::nullopt, parent.root_span_id_);
}

TraceScope Tracer::UnrecordedTrace(const TraceOptions& options) {
  const SpanContext& remote = options.remote_parent;
  SpanContext context;
  if (remote.valid()) {
    context.trace_id = remote.trace_id;
    context.trace_flags = Unsampled(remote.trace_flags);
    context.trace_state = remote.trace_state;
  } else {
    context.trace_id =
        options.trace_id.valid() ? options.trace_id : NewTraceId();
  }
  context.span_id = NewSpanId();
  return TraceScope(nullptr, context, std::nullopt, context.span_id);
}

Tracer::Tracer(Options options)
    : enabled_(options.enabled),
      core_(std::make_shared<trace_internal::TracerCore>(std::move(options))) {}

Tracer::~Tracer() { (void)Shutdown(); }

TraceScope Tracer::StartTraceImpl(ContextHandle ctx, absl::string_view name,
                                  TraceOptions options) {
  trace_internal::TracerCore& core = *core_;
  if (ctx.is_null()) {  // Misuse: ids only (see "Never aborting a user").
    Count(core.counters.start_refused);
    return UnrecordedTrace(options);
  }
  if (!enabled_.load(std::memory_order_relaxed)) {  // Raced SetEnabled.
    if (options.remote_parent.valid()) {
      return PassedThrough(options.remote_parent);
    }
    return TraceScope::Inert();
  }
  loop_internal::LoopCore* loop = loop_internal::FindOwnedCore(ctx);
  if (loop == nullptr) {
    Count(core.counters.start_refused);
    Count(core.counters.traces_off_loop_thread);
    return UnrecordedTrace(options);
  }
  // A destroyed (closing) context refuses new traces at once [S15]; with
  // make_current the Set below refuses them too.
  if (!options.make_current && !loop->IsOpen(ctx)) {
    Count(core.counters.start_refused);
    Count(core.counters.traces_on_stale_context);
    return UnrecordedTrace(options);
  }
  // Ids, and the remote parent this trace continues, if any.
  const SpanContext& remote = options.remote_parent;
  const bool continues = remote.valid();
  SpanContext context;
  context.trace_id = continues                  ? remote.trace_id
                     : options.trace_id.valid() ? options.trace_id
                                                : NewTraceId();
  context.span_id = NewSpanId();  // The root span: random per trace.
  if (continues) context.trace_state = remote.trace_state;

  SamplingParameters params;
  params.trace_id = context.trace_id;
  params.name = name;
  params.kind = options.kind;
  params.attributes = &options.attributes;
  if (continues) {
    params.parent_span_id = remote.span_id;
    params.parent_remote = true;
    params.parent_trace_flags = remote.trace_flags;
  }
  const uint8_t inherited = continues ? remote.trace_flags : 0;
  if (core.sampler->ShouldSample(params) == SamplingDecision::kDrop) {
    Count(core.counters.unsampled_traces);
    context.trace_flags = Unsampled(inherited);
    ScopeCurrent current;
    if (options.make_current) {
      absl::StatusOr<Token> token = CurrentKey().Set(
          ctx, CurrentScope{
                   UnsampledIdentity(context.trace_id, context.span_id,
                                     context.trace_flags, context.trace_state),
                   SpanId()});
      if (!token.ok()) {
        Count(core.counters.start_refused);
        Count(core.counters.traces_on_stale_context);
        // Ids only.
        return TraceScope(nullptr, context, std::nullopt, context.span_id);
      }
      current = *token;
    }
    return TraceScope(nullptr, context, std::move(current), context.span_id);
  }
  context.trace_flags = static_cast<uint8_t>(inherited | kTraceFlagSampled);

  auto record = std::make_shared<TraceRecord>();
  record->trace_id = context.trace_id;
  record->root_span_id = context.span_id;
  record->trace_flags = context.trace_flags;
  record->recorded = true;
  record->trace_state = context.trace_state;
  record->tracer = core_;
  record->origin = ctx;
  // The root span: the same record and state as any span.
  std::unique_ptr<SpanState> state(new SpanState);
  state->root = true;
  state->origin = ctx;
  state->start_mono_ns = MonotonicNs();
  SpanData& d = state->data;
  d.trace_id = context.trace_id;
  d.span_id = context.span_id;
  if (continues) {
    d.parent_span_id = remote.span_id;
    d.parent_is_remote = true;
  }
  d.name = std::string(name);
  d.trace_flags = context.trace_flags;
  d.trace_state = context.trace_state;
  d.kind = options.kind;
  d.scope = core.scope;
  d.dropped_attributes_count = trace_internal::LimitAttributes(
      options.attributes, core.limits, core.limits.attribute_count);
  d.attributes = std::move(options.attributes);
  if (!options.links.empty()) {
    trace_internal::SetLinks(d, std::move(options.links), core.limits);
  }
  d.start_time = core.WallTime(state->start_mono_ns);
  d.end_time = absl::InfiniteFuture();
  d.started = StartSite(*loop, ctx, d.start_time);
  if (options.make_current) {
    absl::StatusOr<Token> token =
        CurrentKey().Set(ctx, CurrentScope{record, SpanId()});
    if (!token.ok()) {  // Context destroyed: ids only, not sampled.
      Count(core.counters.start_refused);
      Count(core.counters.traces_on_stale_context);
      context.trace_flags = Unsampled(context.trace_flags);
      return TraceScope(nullptr, context, std::nullopt, context.span_id);
    }
    state->token = *token;
  }
  core.processors.OnStart(d);
  state->trace = std::move(record);
  return TraceScope(std::move(state), context, std::nullopt, context.span_id);
}

namespace {

const SpanOptions& DefaultSpanOptions() {
  static const SpanOptions* const defaults = new SpanOptions();
  return *defaults;
}

}  // namespace

SpanScope Tracer::StartSpanImpl(ContextHandle ctx, absl::string_view name,
                                SpanOptions* given) {
  // Read from `options`; moved from only through `given` (never from the
  // shared defaults).
  const SpanOptions& options = given != nullptr ? *given : DefaultSpanOptions();
  trace_internal::TracerCore& core = *core_;
  if (ctx.is_null()) {  // Misuse: ids only, from an explicit parent.
    Count(core.counters.start_refused);
    if (options.parent.valid()) return UnrecordedSpan(options.parent);
    return SpanScope::Inert();
  }
  if (!enabled_.load(std::memory_order_relaxed)) {  // Raced SetEnabled.
    if (options.parent.valid()) return PassedThrough(options.parent);
    return SpanScope::Inert();
  }
  loop_internal::LoopCore* loop = loop_internal::FindOwnedCore(ctx);
  if (loop == nullptr) {
    Count(core.counters.start_refused);
    Count(core.counters.spans_off_loop_thread);
    // Only an explicit parent can be read off the loop thread.
    if (options.parent.valid()) return UnrecordedSpan(options.parent);
    return SpanScope::Inert();
  }
  // The parent: explicit, else the context's current span or trace.
  std::shared_ptr<TraceRecord> trace;
  SpanId parent_span;
  TraceId trace_id;
  SpanId root_span_id;
  uint8_t trace_flags = 0;
  std::shared_ptr<const std::string> unsampled_state;  // Null if empty.
  // The current unsampled trace's identity, when the parent is current.
  std::shared_ptr<const trace_internal::TraceIdentity> identity;
  if (options.parent.valid()) {
    if (!options.make_current && !loop->IsOpen(ctx)) {
      Count(core.counters.start_refused);
      Count(core.counters.spans_on_stale_context);
      return UnrecordedSpan(options.parent);
    }
    SpanParent& parent = given->parent;  // Valid: so given.
    trace = std::move(parent.trace_);
    parent_span = parent.span_;
    trace_id = parent.trace_id_;
    root_span_id = parent.root_span_id_;
    trace_flags = parent.trace_flags_;
    unsampled_state = std::move(parent.trace_state_);
  } else {
    // Read in place (no copy of the current value): valid until the Set
    // below.
    const CurrentScope* current = CurrentKey().Peek(ctx);
    if (current == nullptr) {
      Count(core.counters.start_refused);
      Count(core.counters.spans_on_stale_context);
      return SpanScope::Inert();
    }
    if (current->trace != nullptr) {
      const trace_internal::TraceIdentity& id = *current->trace;
      trace_id = id.trace_id;
      root_span_id = id.root_span_id;
      trace_flags = id.trace_flags;
      if (id.recorded) {
        trace = current->record();
      } else {
        // Unsampled: spans under it share its identity.
        identity = current->trace;
      }
    }
    parent_span = current->span;
  }
  if (!trace_id.valid()) {
    Count(core.counters.noop_spans);
    return SpanScope::Inert();
  }

  SpanContext context;
  context.trace_id = trace_id;
  context.span_id = NewSpanId();
  bool record = trace != nullptr;
  if (record) {
    if (!trace->AddSpan()) {  // Its trace finished: ids only.
      Count(core.counters.rejected_spans);
      return UnrecordedSpan(trace_id, root_span_id, trace_flags,
                            trace->trace_state);
    }
    // Copies cost on the hot path even when empty: only if set.
    if (!trace->trace_state.empty()) {
      context.trace_state = trace->trace_state;
    }
    SamplingParameters params;
    params.trace_id = trace_id;
    params.name = name;
    params.kind = options.kind;
    params.attributes = &options.attributes;
    params.parent_span_id = parent_span.valid() ? parent_span : root_span_id;
    params.parent_trace_flags = trace_flags;
    // The default sampler keeps every span of a recorded (so sampled)
    // trace: skip the call.
    if (!core.default_sampler &&
        core.sampler->ShouldSample(params) == SamplingDecision::kDrop) {
      record = false;
      if (trace->RemoveSpan()) trace_internal::EndTraceAfterLastSpan(trace);
      trace.reset();
    }
  }
  if (!record) {  // Unsampled: ids (and trace state) only.
    Count(core.counters.unsampled_spans);
    context.trace_flags = Unsampled(trace_flags);
    if (unsampled_state != nullptr) {  // An explicit unsampled parent's.
      context.trace_state = *unsampled_state;
    } else if (identity != nullptr) {  // The current unsampled trace's.
      context.trace_state = identity->trace_state;
    }  // Else dropped under a record: its state, copied above.
    ScopeCurrent current;
    if (options.make_current) {
      if (identity == nullptr) {
        identity = UnsampledIdentity(trace_id, root_span_id,
                                     context.trace_flags, context.trace_state);
      }
      absl::StatusOr<Token> token = CurrentKey().Set(
          ctx, CurrentScope{std::move(identity), context.span_id});
      if (!token.ok()) {  // Ids only, not current.
        Count(core.counters.start_refused);
        Count(core.counters.spans_on_stale_context);
        return SpanScope(nullptr, context, std::nullopt, root_span_id);
      }
      current = *token;
    }
    return SpanScope(nullptr, context, std::move(current), root_span_id);
  }
  context.trace_flags = trace_flags;

  // Default-initialized (every member has an initializer): no memset of the
  // whole record.
  std::unique_ptr<SpanState> state(new SpanState);
  state->origin = ctx;
  state->start_mono_ns = MonotonicNs();
  SpanData& d = state->data;
  d.trace_id = trace_id;
  d.span_id = context.span_id;
  // A top-level span's parent is the trace's root span.
  d.parent_span_id = parent_span.valid() ? parent_span : root_span_id;
  d.trace_flags = trace_flags;
  if (!context.trace_state.empty()) d.trace_state = context.trace_state;
  d.kind = options.kind;
  if (!core.scope.name.empty() || !core.scope.version.empty()) {
    d.scope = core.scope;
  }
  d.name.assign(name.data(), name.size());
  // Limits are checked only on what was given (none: nothing to check).
  if (!options.attributes.empty()) {
    d.dropped_attributes_count = trace_internal::LimitAttributes(
        given->attributes, core.limits, core.limits.attribute_count);
    d.attributes = std::move(given->attributes);
  }
  if (!options.links.empty()) {
    trace_internal::SetLinks(d, std::move(given->links), core.limits);
  }
  d.start_time = core.WallTime(state->start_mono_ns);
  d.end_time = absl::InfiniteFuture();
  d.started = StartSite(*loop, ctx, d.start_time);
  if (options.make_current) {
    absl::StatusOr<Token> token =
        CurrentKey().Set(ctx, CurrentScope{trace, d.span_id});
    if (!token.ok()) {  // The context is being destroyed.
      // This span never reached a processor; if the trace finished on
      // another thread meanwhile, its end was waiting for us [F5].
      if (trace->RemoveSpan()) trace_internal::EndTraceAfterLastSpan(trace);
      Count(core.counters.start_refused);
      Count(core.counters.spans_on_stale_context);
      context.trace_flags = Unsampled(trace_flags);  // Ids only.
      return SpanScope(nullptr, context, std::nullopt, root_span_id);
    }
    state->token = *token;
  }
  core.processors.OnStart(d);
  state->trace = std::move(trace);
  return SpanScope(std::move(state), context, std::nullopt, root_span_id);
}

absl::StatusOr<SpanParent> Tracer::CurrentParent(ContextHandle ctx) const {
  const CurrentScope* current = CurrentKey().Peek(ctx);
  if (current == nullptr) return CurrentKey().Get(ctx).status();
  if (current->trace == nullptr) return SpanParent();
  const trace_internal::TraceIdentity& id = *current->trace;
  const std::string& state = current->trace_state();
  return SpanParent(current->record(),
                    current->span.valid() ? current->span : id.root_span_id,
                    id.trace_id, id.root_span_id, id.trace_flags,
                    id.recorded || state.empty()
                        ? nullptr
                        : std::make_shared<const std::string>(state));
}

absl::StatusOr<TraceId> Tracer::CurrentTraceId(ContextHandle ctx) const {
  const CurrentScope* current = CurrentKey().Peek(ctx);
  if (current == nullptr) return CurrentKey().Get(ctx).status();
  return current->trace == nullptr ? TraceId() : current->trace->trace_id;
}

absl::StatusOr<SpanId> Tracer::CurrentSpanId(ContextHandle ctx) const {
  const CurrentScope* current = CurrentKey().Peek(ctx);
  if (current == nullptr) return CurrentKey().Get(ctx).status();
  return current->span;
}

absl::StatusOr<SpanContext> Tracer::CurrentSpanContext(
    ContextHandle ctx) const {
  const CurrentScope* current = CurrentKey().Peek(ctx);
  if (current == nullptr) return CurrentKey().Get(ctx).status();
  SpanContext c;
  if (current->trace == nullptr) return c;
  const trace_internal::TraceIdentity& id = *current->trace;
  c.trace_id = id.trace_id;
  c.span_id = current->span.valid() ? current->span : id.root_span_id;
  c.trace_flags = id.trace_flags;
  c.trace_state = current->trace_state();
  return c;
}

void Tracer::SetEnabled(bool enabled) {
  enabled_.store(enabled, std::memory_order_relaxed);
}
bool Tracer::enabled() const {
  return enabled_.load(std::memory_order_relaxed);
}

absl::Status Tracer::ForceFlush(absl::Duration timeout) {
  return core_->processors.ForceFlush(timeout);
}

absl::Status Tracer::Shutdown(absl::Duration timeout) {
  if (shut_down_.exchange(true)) return absl::OkStatus();
  return core_->processors.Shutdown(timeout);
}

TracerStats Tracer::stats() const {
  const trace_internal::TracerCounters& c = core_->counters;
  auto get = [](const std::atomic<uint64_t>& a) {
    return a.load(std::memory_order_relaxed);
  };
  TracerStats s;
  s.start_refused = get(c.start_refused);
  s.noop_spans = get(c.noop_spans);
  s.rejected_spans = get(c.rejected_spans);
  s.spans_off_loop_thread = get(c.spans_off_loop_thread);
  s.spans_on_stale_context = get(c.spans_on_stale_context);
  s.traces_off_loop_thread = get(c.traces_off_loop_thread);
  s.traces_on_stale_context = get(c.traces_on_stale_context);
  s.unsampled_traces = get(c.unsampled_traces);
  s.unsampled_spans = get(c.unsampled_spans);
  s.finishes_posted = get(c.finishes_posted);
  s.finishes_on_root = get(c.finishes_on_root);
  s.finishes_off_origin = get(c.finishes_off_origin);
  s.trace_ends_posted = get(c.trace_ends_posted);
  return s;
}

}  // namespace ctxloop
