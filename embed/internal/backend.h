// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/embed/internal/backend.h
// -----------------------------------------------------------------------------
//
// The drivers' one view of `Loop`'s "driven by another loop" calls
// (`BackendFd`, `BackendTimeout`, `RunReady`), so that both drivers read the
// loop's next deadline the same way. Not an API.
//
// Cost: inline forwarding. Thread-safety: the loop thread, as the calls.

#ifndef CTXLOOP_EMBED_INTERNAL_BACKEND_H_
#define CTXLOOP_EMBED_INTERNAL_BACKEND_H_

#include <chrono>
#include <optional>

#include "absl/time/time.h"
#include "ctxloop/loop/loop.h"

namespace ctxloop {
namespace embed_internal {

// How long the host may sleep before the loop has work of its own (a
// deadline), or nullopt for "until the backend fd is readable". Zero: run
// again now.
inline std::optional<std::chrono::nanoseconds> BackendWait(const Loop& loop) {
  const absl::Duration d = loop.BackendTimeout();
  if (d == absl::InfiniteDuration()) return std::nullopt;
  if (d <= absl::ZeroDuration()) return std::chrono::nanoseconds(0);
  return absl::ToChronoNanoseconds(d);
}

// The same in whole milliseconds, rounded up (libuv's timer unit; see
// `Loop::TimeoutMs`): a deadline 0.3 ms out waits 1 ms rather than spinning
// through zero-timeout turns until it is due. -1: no deadline.
inline int BackendWaitMillisCeil(const Loop& loop) {
  return Loop::TimeoutMs(loop.BackendTimeout());
}

}  // namespace embed_internal
}  // namespace ctxloop

#endif  // CTXLOOP_EMBED_INTERNAL_BACKEND_H_
