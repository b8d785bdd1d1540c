// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/trace/sampler.h
// -----------------------------------------------------------------------------
//
// Samplers decide, when a trace or span starts, whether it is recorded (its
// record is allocated and the processors see it) or not. An unsampled trace
// or span still has ids and a `span_context()` with the sampled flag clear,
// so it propagates (W3C `traceparent` ...-00), but costs next to nothing: no
// record, no processor call, only its ids (and a context-key Set if made
// current). The OpenTelemetry set:
//
//   AlwaysOnSampler()            records everything;
//   AlwaysOffSampler()           records nothing;
//   TraceIdRatioSampler(r)       records a fraction r of traces, decided from
//                                the trace id alone, so every process and
//                                every span of one trace decides alike;
//   ParentBasedSampler(root)     follows the parent's sampled flag (remote or
//                                local) and asks `root` for parentless traces.
//                                The tracer's default: ParentBased(AlwaysOn).
//
// The tracer asks its sampler at `StartTrace` (parent: the remote parent, if
// any) and at `StartSpan` under a recorded trace (parent: the parent span,
// or the trace's root span). Spans of an unsampled trace are never recorded
// (there is no trace record to attach them to), whatever the sampler says.
//
// Cost: one virtual call per start; the built-in samplers do a few compares,
// no allocation, no lock.
//
// Thread-safety: `ShouldSample` is called concurrently from every loop
// thread; implementations must be thread-safe (the built-ins are immutable).

#ifndef CTXLOOP_TRACE_SAMPLER_H_
#define CTXLOOP_TRACE_SAMPLER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "ctxloop/trace/ids.h"
#include "ctxloop/trace/span_context.h"
#include "ctxloop/trace/span_data.h"

namespace ctxloop {

// What a sampler sees. References are valid during `ShouldSample` only.
struct SamplingParameters {
  TraceId trace_id;
  absl::string_view name;  // Workflow name of a trace, or span name.
  SpanKind kind = SpanKind::kInternal;
  const Attributes* attributes = nullptr;  // Never null when called.
  // The parent (`parent_span_id` invalid: none, i.e. a new trace).
  SpanId parent_span_id;
  bool parent_remote = false;
  uint8_t parent_trace_flags = 0;

  bool has_parent() const { return parent_span_id.valid(); }
  bool parent_sampled() const {
    return (parent_trace_flags & kTraceFlagSampled) != 0;
  }
};

enum class SamplingDecision : uint8_t {
  kDrop,             // Not recorded; sampled flag clear.
  kRecordAndSample,  // Recorded; sampled flag set.
};

class Sampler {
 public:
  virtual ~Sampler() = default;
  virtual SamplingDecision ShouldSample(
      const SamplingParameters& params) const = 0;
  // E.g. "ParentBased{root=AlwaysOnSampler}", for logs.
  virtual std::string Description() const = 0;
};

std::shared_ptr<const Sampler> AlwaysOnSampler();
std::shared_ptr<const Sampler> AlwaysOffSampler();
// `ratio` is clamped to [0, 1] (NaN: 0). A trace is sampled if the low 56
// bits of its trace id (the random part, W3C level 2) are below ratio * 2^56.
std::shared_ptr<const Sampler> TraceIdRatioSampler(double ratio);

struct ParentBasedOptions {
  // Null members take the OpenTelemetry defaults: sampled parents
  // AlwaysOn, unsampled parents AlwaysOff.
  std::shared_ptr<const Sampler> remote_parent_sampled;
  std::shared_ptr<const Sampler> remote_parent_not_sampled;
  std::shared_ptr<const Sampler> local_parent_sampled;
  std::shared_ptr<const Sampler> local_parent_not_sampled;
};
// `root` decides for parentless traces (null: AlwaysOn).
std::shared_ptr<const Sampler> ParentBasedSampler(
    std::shared_ptr<const Sampler> root, ParentBasedOptions options = {});

}  // namespace ctxloop

#endif  // CTXLOOP_TRACE_SAMPLER_H_
