// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/stream/stream_options.h
// -----------------------------------------------------------------------------
//
// The plain types a stream is made with and reports through (stream.h
// includes this header):
//
//   ctxloop::StreamConfig config;
//   config.options.max_batch = 64;                // Buffer and batch limits.
//   config.callbacks.on_closed = [](ctxloop::ContextHandle producer,
//                                   const absl::Status& why) { ... };
//   config.trace = tracer.StartTrace(ctx, "run");  // Finished at the end.
//   auto [writer, reader] = *ctxloop::MakeStream<Event>(ctx,
//   std::move(config));
//
// `StreamOptions` and `StreamCounters` are copyable values; `ProducerCallbacks`
// and `StreamConfig` are move-only (they hold callables and a trace).
//
// Cost: none by themselves; see stream.h for what a stream costs.
//
// Thread-safety: plain structs, no synchronization: fill one on one thread,
// then hand it to `MakeStream` (on any thread). The callbacks run on the
// producer's context, on its loop thread.

#ifndef CTXLOOP_STREAM_STREAM_OPTIONS_H_
#define CTXLOOP_STREAM_STREAM_OPTIONS_H_

#include <cstddef>
#include <cstdint>
#include <optional>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "ctxloop/loop/context_handle.h"
#include "ctxloop/trace/scope.h"

namespace ctxloop {

// Buffer and batch limits. `MakeStream` returns kInvalidArgument unless
// high_watermark > low_watermark and max_batch > 0.
struct StreamOptions {
  // `Emit` refuses (kResourceExhausted) while this many events wait.
  size_t high_watermark = 1024;
  // After a refusal, `on_writable` fires once the backlog is at or below this.
  size_t low_watermark = 256;
  // Events handed to the sink per loop task; larger batches mean fewer
  // wake-ups, smaller ones let other tasks on the sink's loop run sooner.
  size_t max_batch = 1024;
};

// The producer's callbacks; each runs on the producer's context. Both are
// optional. They are destroyed on the producer's context once the stream has
// ended (so they may capture the writer), or with the stream if that context
// is gone.
struct ProducerCallbacks {
  // The stream can take events again after `Emit` said it was full.
  absl::AnyInvocable<void(ContextHandle)> on_writable;
  // The consumer ended the stream: cancelled it, its sink threw, or it (or
  // its context or loop) went away. Called at most once, never after the
  // producer's own `Complete`/`Fail` was delivered.
  absl::AnyInvocable<void(ContextHandle, const absl::Status&)> on_closed;
};

// Everything `MakeStream` takes besides the producer's context.
struct StreamConfig {
  StreamOptions options;
  ProducerCallbacks callbacks;
  // If set, the stream owns this trace and finishes it, on its origin
  // context, when the stream ends, however it ends.
  std::optional<TraceScope> trace;
  // How the stream finishes `trace`. `trace_finish.on_finished` tells the
  // producer when and where that finish ran (on the trace's origin loop
  // thread, once "current" was reset there), e.g. to release the origin
  // context then instead of polling for it.
  FinishOptions trace_finish;
};

// What a stream has done so far. Once it has ended,
// emitted == delivered + discarded.
struct StreamCounters {
  uint64_t emitted = 0;    // Accepted by Emit.
  uint64_t delivered = 0;  // Handed to the sink.
  uint64_t discarded = 0;  // Buffered (or in a batch) when the stream was cut.
  uint64_t refused_full = 0;
  // Emits refused (kResourceExhausted, event not taken) because the sink's
  // loop held `Loop::Options::max_pending_foreign` cross-thread posts.
  uint64_t refused_loop_full = 0;
  uint64_t deliveries = 0;  // Loop tasks that delivered (batches).
};

}  // namespace ctxloop

#endif  // CTXLOOP_STREAM_STREAM_OPTIONS_H_
