// Copyright 2026 The ctxloop Authors.

#include "ctxloop/trace/sampler.h"

#include <cmath>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace ctxloop {
namespace {

class AlwaysOn final : public Sampler {
 public:
  SamplingDecision ShouldSample(const SamplingParameters&) const override {
    return SamplingDecision::kRecordAndSample;
  }
  std::string Description() const override { return "AlwaysOnSampler"; }
};

class AlwaysOff final : public Sampler {
 public:
  SamplingDecision ShouldSample(const SamplingParameters&) const override {
    return SamplingDecision::kDrop;
  }
  std::string Description() const override { return "AlwaysOffSampler"; }
};

constexpr uint64_t kRandomMask = (uint64_t{1} << 56) - 1;

class TraceIdRatio final : public Sampler {
 public:
  explicit TraceIdRatio(double ratio)
      : ratio_(std::isnan(ratio) ? 0.0 : std::fmin(1.0, std::fmax(0.0, ratio))),
        // ratio 1 samples every id: the threshold is above the mask.
        threshold_(ratio_ >= 1.0
                       ? kRandomMask + 1
                       : static_cast<uint64_t>(std::ldexp(ratio_, 56))) {}

  SamplingDecision ShouldSample(const SamplingParameters& p) const override {
    return (p.trace_id.low & kRandomMask) < threshold_
               ? SamplingDecision::kRecordAndSample
               : SamplingDecision::kDrop;
  }
  std::string Description() const override {
    return absl::StrCat("TraceIdRatioBased{", ratio_, "}");
  }

 private:
  const double ratio_;
  const uint64_t threshold_;
};

class ParentBased final : public Sampler {
 public:
  ParentBased(std::shared_ptr<const Sampler> root, ParentBasedOptions o)
      : root_(root ? std::move(root) : AlwaysOnSampler()),
        remote_sampled_(o.remote_parent_sampled
                            ? std::move(o.remote_parent_sampled)
                            : AlwaysOnSampler()),
        remote_not_sampled_(o.remote_parent_not_sampled
                                ? std::move(o.remote_parent_not_sampled)
                                : AlwaysOffSampler()),
        local_sampled_(o.local_parent_sampled
                           ? std::move(o.local_parent_sampled)
                           : AlwaysOnSampler()),
        local_not_sampled_(o.local_parent_not_sampled
                               ? std::move(o.local_parent_not_sampled)
                               : AlwaysOffSampler()) {}

  SamplingDecision ShouldSample(const SamplingParameters& p) const override {
    if (!p.has_parent()) return root_->ShouldSample(p);
    if (p.parent_remote) {
      return (p.parent_sampled() ? remote_sampled_ : remote_not_sampled_)
          ->ShouldSample(p);
    }
    return (p.parent_sampled() ? local_sampled_ : local_not_sampled_)
        ->ShouldSample(p);
  }
  std::string Description() const override {
    return absl::StrCat(
        "ParentBased{root=", root_->Description(),
        ",remoteParentSampled=", remote_sampled_->Description(),
        ",remoteParentNotSampled=", remote_not_sampled_->Description(),
        ",localParentSampled=", local_sampled_->Description(),
        ",localParentNotSampled=", local_not_sampled_->Description(), "}");
  }

 private:
  const std::shared_ptr<const Sampler> root_;
  const std::shared_ptr<const Sampler> remote_sampled_;
  const std::shared_ptr<const Sampler> remote_not_sampled_;
  const std::shared_ptr<const Sampler> local_sampled_;
  const std::shared_ptr<const Sampler> local_not_sampled_;
};

}  // namespace

std::shared_ptr<const Sampler> AlwaysOnSampler() {
  static const auto* sampler =
      new std::shared_ptr<const Sampler>(std::make_shared<const AlwaysOn>());
  return *sampler;
}

std::shared_ptr<const Sampler> AlwaysOffSampler() {
  static const auto* sampler =
      new std::shared_ptr<const Sampler>(std::make_shared<const AlwaysOff>());
  return *sampler;
}

std::shared_ptr<const Sampler> TraceIdRatioSampler(double ratio) {
  return std::make_shared<const TraceIdRatio>(ratio);
}

std::shared_ptr<const Sampler> ParentBasedSampler(
    std::shared_ptr<const Sampler> root, ParentBasedOptions options) {
  return std::make_shared<const ParentBased>(std::move(root),
                                             std::move(options));
}

}  // namespace ctxloop
