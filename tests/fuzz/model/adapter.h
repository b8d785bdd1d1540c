// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/tests/fuzz/model/adapter.h
// -----------------------------------------------------------------------------
//
// The model's only calls into the parts of ctxloop's public API that are
// most likely to change: finishing scopes,
// making streams that carry a trace, stopping fd watches, destroying
// contexts, and the loop-thread `Loop` methods. When those APIs change, adjust
// the functions here and nothing else in tests/fuzz, tests/stress or
// tests/faults.
//
// Each function also documents the behaviour the model expects, so the
// checker's expectations live next to the calls they are about.
//
// Cost: inline forwarding. Thread-safety: as the wrapped call.

#ifndef CTXLOOP_TESTS_FUZZ_MODEL_ADAPTER_H_
#define CTXLOOP_TESTS_FUZZ_MODEL_ADAPTER_H_

#include <cstddef>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "ctxloop/loop/fd_watch.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/stream/stream.h"
#include "ctxloop/trace/scope.h"

namespace ctxloop {
namespace fuzz_adapter {

// Finishes a trace/span from `from` (null: a plain thread). Any thread.
// Expected: OK for the first finish; processors see the end once, on the
// origin's loop thread ([F0]/[F1]) unless the origin loop is going ([F2]).
inline absl::Status FinishTrace(TraceScope& scope, ContextHandle from) {
  return scope.Finish(from);
}
inline absl::Status FinishSpan(SpanScope& scope, ContextHandle from) {
  return scope.Finish(from);
}
// The same with `on_finished` (scope.h): called once, after the finish ran,
// on the thread where it ran.
inline absl::Status FinishTrace(TraceScope& scope, ContextHandle from,
                                FinishOptions options) {
  return scope.Finish(from, std::move(options));
}
inline absl::Status FinishSpan(SpanScope& scope, ContextHandle from,
                               FinishOptions options) {
  return scope.Finish(from, std::move(options));
}

// A stream of ints from `producer`, optionally owning `trace`. Thread-safe.
inline absl::StatusOr<StreamPair<int>> MakeIntStream(
    ContextHandle producer, StreamOptions options, ProducerCallbacks callbacks,
    std::optional<TraceScope> trace) {
  return MakeStream<int>(producer, options, std::move(callbacks),
                         std::move(trace));
}

// Stops a watch from any thread. Expected: once this
// returns, the watch's callback is not running and never runs again.
inline void StopWatch(FdWatch& watch) { watch.Stop(); }

// Destroys `ctx` (its loop thread). Expected: from then
// on `Set`/`Get`/`NewChildContext`/`StartTrace` on it are refused at once.
inline absl::Status DestroyCtx(ContextHandle ctx) {
  return DestroyContext(ctx);
}

// Loop-thread `Loop` methods; the caller guarantees `loop` is alive.
inline absl::StatusOr<ContextHandle> NewCtx(Loop& loop) {
  return loop.NewContext("fuzz");
}
inline absl::StatusOr<FdWatch> Watch(Loop& loop, ContextHandle ctx, int fd,
                                     FdCallback callback, bool close_on_stop) {
  FdWatchOptions options;
  options.close_on_stop = close_on_stop;
  return loop.WatchFd(ctx, fd, FdEvents::kRead, std::move(callback), options);
}
inline void StopLoop(Loop& loop) { loop.Stop(); }

// The per-loop bound on pending cross-thread posts, for the loops the model
// makes (`Loop::Options::max_pending_foreign`); `bound` 0 means the
// library's default. The model expects what it promises: a foreign
// `Post`/`PostDelayed` over the bound returns kResourceExhausted, its task
// destroyed on the posting thread before `Post` returns, never run
// (`post.refused_kept`, `post.exactly_once`); a stream `Emit` refused for a
// full sink loop is not taken; endings, producer notifications, trace
// finishes and `LoopThread::Join`'s stop are never refused by it.
inline constexpr bool kHasPendingBound = true;
inline void SetPendingBound(Loop::Options& options, size_t bound) {
  options.max_pending_foreign = bound;
}

}  // namespace fuzz_adapter
}  // namespace ctxloop

#endif  // CTXLOOP_TESTS_FUZZ_MODEL_ADAPTER_H_
