// Copyright 2026 The ctxloop Authors.

#include "ctxloop/trace/multi_processor.h"

#include <algorithm>
#include <cstdio>
#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"

namespace ctxloop {

MultiProcessor::MultiProcessor(
    std::vector<std::shared_ptr<TraceProcessor>> processors,
    TraceErrorCallback on_error)
    : processors_(std::move(processors)), on_error_(std::move(on_error)) {}

void MultiProcessor::Fail(size_t index, const char* event, const char* what) {
  failures_.fetch_add(1, std::memory_order_relaxed);
  absl::Status s = absl::InternalError(absl::StrCat(
      "trace processor #", index, " threw in ", event, ": ", what));
  if (on_error_) {
    try {
      on_error_(s);
      return;
    } catch (...) {
    }
  }
  std::fprintf(stderr, "ctxloop: %s\n", s.ToString().c_str());
}

template <typename Fn>
void MultiProcessor::ForEach(const char* event, Fn&& fn) {
  for (size_t i = 0; i < processors_.size(); ++i) {
    try {
      fn(*processors_[i]);
    } catch (const std::exception& e) {
      Fail(i, event, e.what());
    } catch (...) {
      Fail(i, event, "a non-std::exception");
    }
  }
}

void MultiProcessor::OnStart(const SpanData& span) {
  ForEach("OnStart", [&](TraceProcessor& p) { p.OnStart(span); });
}
void MultiProcessor::OnEnd(const SpanData& span) {
  ForEach("OnEnd", [&](TraceProcessor& p) { p.OnEnd(span); });
}

absl::Status MultiProcessor::ForEachWithStatus(const char* what,
                                               absl::Duration timeout,
                                               bool shutdown) {
  const absl::Time deadline = absl::Now() + timeout;
  const uint64_t failures_before = failures();
  absl::Status first;
  ForEach(what, [&](TraceProcessor& p) {
    const absl::Duration left =
        std::max(deadline - absl::Now(), absl::ZeroDuration());
    absl::Status s = shutdown ? p.Shutdown(left) : p.ForceFlush(left);
    if (first.ok() && !s.ok()) first = s;
  });
  if (first.ok() && failures() != failures_before) {
    first =
        absl::InternalError(absl::StrCat("a trace processor threw in ", what));
  }
  return first;
}

absl::Status MultiProcessor::ForceFlush(absl::Duration timeout) {
  return ForEachWithStatus("ForceFlush", timeout, /*shutdown=*/false);
}

absl::Status MultiProcessor::Shutdown(absl::Duration timeout) {
  return ForEachWithStatus("Shutdown", timeout, /*shutdown=*/true);
}

}  // namespace ctxloop
