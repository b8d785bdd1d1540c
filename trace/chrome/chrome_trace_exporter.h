// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/trace/chrome/chrome_trace_exporter.h
// -----------------------------------------------------------------------------
//
// `ChromeTraceExporter` writes a Chrome Trace Event file (the JSON Object
// Format: {"traceEvents":[...],"displayTimeUnit":"ms","otherData":{...}})
// that opens in https://ui.perfetto.dev and chrome://tracing. It keeps what
// it is given in memory and (re)writes the whole file on `Flush()` and
// `Shutdown()`: to `<path>.tmp`, then renamed over `path`, so the file on
// disk is always complete. `Create` writes an empty trace at once, so a bad
// path is reported there.
//
// Mapping
// -------
// Tracks. Every `ExecutionSite` names a track:
//   * a site on a context (non-null `ctx`): process (pid) = its loop, pid =
//     `ctx.loop_id()` (loop ids start at 1), named "loop <id> (thread
//     <tid>)"; thread (tid) = the context, named with `SetContextName`, else
//     by the name it was given at `NewContext` (`ExecutionSite::
//     context_name`), else "ctx <context id>". If a loop id was reused by a
//     loop on another thread, that loop gets a fresh pid (>= 1048576).
//   * a site on a plain thread (null `ctx`): pid 2147483647, named "non-loop
//     threads"; tid = the Linux thread id, named "thread <tid>". (Not pid 0:
//     Perfetto reserves it for the idle process.)
//   Context tracks get synthetic tids >= 4194304 (above Linux's largest
//   thread id), because viewers key thread names by tid alone.
//
// Slices. Each span is a complete event ("ph":"X") on its `started` site's
// track, from `start_time` for `duration`, named by the span's name, with
// args {trace_id, span_id, parent_span_id if any (a top-level span's is its
// trace's root span; a root span's only if it continues a remote trace,
// with parent_is_remote:true), attributes:{...} if any, status:{code:
// "error", description} or {code:"ok"} if set, finished_off_origin if
// true}. A trace's root span has "cat":"trace", every other span
// "cat":"span".
//
// Overlap lanes. Slices on one thread track must nest; spans of concurrent
// operations on one context need not. A slice that would overlap without
// nesting goes to the context's first "overlap lane" where it nests: an
// extra track named "<context name> (overlap <k>)", next to the context's.
//
// Finish arrows. When a finish was called on another context or thread than
// the one it ran on (`finish_called` and `finish_ran` differ in ctx or
// thread), the file has a flow arrow ("cat":"finish", "name":"finish", one
// "id" per arrow): "ph":"s" at finish_called's track and time, "ph":"f" with
// "bp":"e" at finish_ran's. Viewers attach flow ends to the slice enclosing
// them, so each end gets a short anchor slice ("finish called" / "finish
// ran", "cat":"finish", 1 us or less, args {trace_id, span_id}) starting at
// that time; the flow event follows its anchor in the file. Sites with no
// thread and no context (unknown) get no arrow.
//
// Time. "ts" and "dur" are microseconds, "ts" relative to the earliest time
// in the file (so the numbers stay small and exact); "otherData" records
// that origin as "time_origin" (RFC 3339) and "time_origin_unix_ns". Both
// are written as the exact nanosecond plus half a nanosecond (e.g. 1.5 us
// is 1.5005): viewers that compute trunc(value * 1000) in floating point
// (Perfetto does for "dur") and those that parse the decimal text both get
// the exact nanosecond back, so slices that nest in ctxloop nest on screen.
// Slice durations are the monotonic `duration`s. Events are written in time
// order, longer slices first among those starting together.
//
// Cost: `Export` renders each item's args (a few hundred bytes) and stores
// them with its times and sites; memory grows with every item, up to
// `Options::max_items` (then `Export` returns `kResourceExhausted` for the
// items it could not keep, counted in `dropped()`). `Flush` sorts and lays
// out all items (O(n log n)) and rewrites the file: for long runs, prefer
// `OtlpJsonExporter` or `JsonLinesExporter`, which append.
//
// Thread-safety: all methods are thread-safe (one mutex). After `Shutdown`
// (which writes the file and frees the items), `Export` and `Flush` return
// `kFailedPrecondition`.

#ifndef CTXLOOP_TRACE_CHROME_CHROME_TRACE_EXPORTER_H_
#define CTXLOOP_TRACE_CHROME_CHROME_TRACE_EXPORTER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "ctxloop/loop/context_handle.h"
#include "ctxloop/loop/mutex.h"
#include "ctxloop/trace/exporter.h"
#include "ctxloop/trace/span_data.h"

namespace ctxloop {

namespace trace_internal {
struct ChromeRecord;  // One stored item; defined in the .cc.
}  // namespace trace_internal

class ChromeTraceExporter final : public SpanExporter {
 public:
  struct Options {
    // Items kept in memory, at most.
    size_t max_items = 1000000;
  };

  // Writes an empty trace to `path` (see above). Errors: the file cannot be
  // written (`kNotFound`, `kPermissionDenied`, ...).
  static absl::StatusOr<std::unique_ptr<ChromeTraceExporter>> Create(
      const std::string& path);
  static absl::StatusOr<std::unique_ptr<ChromeTraceExporter>> Create(
      const std::string& path, Options options);

  ChromeTraceExporter(const ChromeTraceExporter&) = delete;
  ChromeTraceExporter& operator=(const ChromeTraceExporter&) = delete;
  ~ChromeTraceExporter() override;  // Does not write the file.

  absl::Status Export(absl::Span<const SpanData> batch) override;
  // Rewrites the file with everything exported so far.
  absl::Status Flush() override;
  // Rewrites the file and frees the items. Idempotent.
  absl::Status Shutdown() override;

  // Names `ctx`'s track (default: the name the context was given at
  // `NewContext`, as recorded in the item's site, else "ctx <context id>").
  // Applies to files
  // written from now on.
  void SetContextName(ContextHandle ctx, std::string name);

  // The JSON `Flush` would write now.
  std::string ToJson() const;

  // Items `Export` could not keep (see `Options::max_items`).
  uint64_t dropped() const;

 private:
  ChromeTraceExporter(std::string path, Options options);
  std::string RenderLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string path_;
  const Options options_;
  mutable ctxloop::Mutex mu_;
  std::vector<trace_internal::ChromeRecord> records_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<ContextHandle, std::string> context_names_
      ABSL_GUARDED_BY(mu_);
  uint64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace ctxloop

#endif  // CTXLOOP_TRACE_CHROME_CHROME_TRACE_EXPORTER_H_
