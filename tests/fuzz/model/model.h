// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/tests/fuzz/model/model.h
// -----------------------------------------------------------------------------
//
// The model-based fuzzer's core: a decoder that turns any byte
// string into a sequence of operations over 2-4 loops (each a `LoopThread`)
// and 1-2 foreign threads, an executor that runs each operation on the thread
// it names (so real interleavings happen), and an invariant checker run once
// everything has quiesced.
//
//   ctxloop::fuzz::ModelResult r = ctxloop::fuzz::RunModel(bytes);
//   if (!r.ok()) std::cerr << r.Summary();
//
// Operations: contexts and child contexts (create, destroy), post, delayed
// post, cancel; `ContextKey` set/get/reset in any order and from wrong
// threads and contexts; traces and spans (current or not, explicit parents
// across loops), finished from any thread or context or dropped; streams
// (emit, complete, fail, cancel, throwing sinks and producers, backpressure);
// loop `Stop` from any thread; destroying whole loops while others post and
// finish; fd watches on socketpairs, written and stopped from any thread.
//
// Reentry: an operation can be armed to run from inside the next callback of
// one kind (a task, a timer, an fd callback, a stream sink, a producer
// callback, a trace processor, `on_finished`, a context destroy hook), on the
// thread and context that callback runs on; and chains of zero-delay timers
// that cancel each other and re-arm (earliest-deadline) timers from inside
// the timer run. Thread lifecycle: short-lived poster threads that post and
// exit, some posting again from a `thread_local` destructor at thread exit
// (constructed before or after the library's own per-thread state). Hostile
// callables: `Post` of callables whose move constructor throws, sleeps (a
// bounded time) or takes a mutex the loop thread may be holding while it
// destroys a context (a bounded wait: a wait that times out is reported as
// `hostile.deadlock`, never a hang).
//
// Invariants (the names used in `ModelResult::violations`):
//   trace.exactly_once      every started trace/span ended exactly once
//   trace.thread            processor events on the origin loop thread,
//                           except the documented fallbacks [F1]-[F3]
//   trace.finish_ran        `finish_ran`/`finished_off_origin` tell the truth
//   trace.dead_origin       a finish called after its origin context was
//                           destroyed reports `finished_off_origin` ([F1])
//   trace.order             span ends before their trace's end
//   trace.counters          `finishes_on_root`/`finishes_off_origin` match
//   trace.current           each context's current trace/span is back to
//                           what it was at creation
//   post.exactly_once       an accepted post ran once, a refused one never
//   post.thread             a task ran on its context, on its loop thread
//   post.after_destroy      no task ran (or post accepted) after its context
//                           was destroyed, except S7 (posted before)
//   timer.cancelled_ran     a timer whose `Cancel` returned true ran
//   timer.exactly_once      an accepted timer, not cancelled, whose context
//                           and loop lived past its deadline ran exactly once
//   timer.cancel_result     on the loop thread, `Cancel` of a pending timer
//                           returned false, or of a run/cancelled one true
//   post.refused_kept       a refused post had not destroyed its task when
//                           `Post` returned (or a throwing move ran it)
//   post.after_hooks        a task ran after its context's destroy hooks
//   hook.exactly_once       an added (not removed) destroy hook ran once,
//                           on its context, on its loop thread
//   trace.on_finished       `on_finished` ran once per OK finish, on the
//                           thread it names
//   hostile.deadlock        a callable's move constructor waited over the
//                           bound for a mutex the loop thread held (the loop
//                           waits for a pin while user code runs in it)
//   key.value               `ContextKey::Get` matches the model's stack
//   key.status              Set/Get/Reset statuses match the contract
//   ctx.destroyed_accepts   a destroyed context accepted Set/Get/child/trace
//   stream.*                endings exactly once, on the right threads, in
//                           order, and every stream ended
//   fd.*                    watch callbacks on the loop thread, never after
//                           (or while) `Stop` returned
//   loop.*                  shutdown dropped nothing
//   driver.attach_failed    a loop to be driven could not be (its
//                           `BackendFd()` failed)
// Leaks are left to LeakSanitizer (`--config=asan`, the fuzzer build).
//
// Cost: one run sets up and joins 2-4 loop threads and 1-2 foreign threads;
// a few milliseconds plus the operations. Thread-safety: `RunModel` may be
// called from one thread at a time (it uses process-wide context keys).

#ifndef CTXLOOP_TESTS_FUZZ_MODEL_MODEL_H_
#define CTXLOOP_TESTS_FUZZ_MODEL_MODEL_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "ctxloop/tests/fuzz/model/driver.h"

namespace ctxloop {
namespace fuzz {

struct ModelOptions {
  // Operations decoded at most (the rest of the input is ignored).
  size_t max_ops = 400;
  // Print each violation to stderr as it is found.
  bool verbose = false;
  // A run that takes longer aborts with a message naming the phase it was
  // in (a hang is a failure, never a stuck test).
  int watchdog_seconds = 60;
  // Decode with the original operation table (inputs recorded before
  // reentry, poster threads and hostile callables were added): the old
  // regression inputs keep meaning what they meant.
  bool legacy_ops = false;
  // Invariant names (or prefixes ending in '.', e.g. "stream.") not to
  // report: to hunt for new failures while known ones are being fixed.
  std::vector<std::string> ignore;
  // Operation classes not to run (dropped when decoding), to tell which
  // class finds a failure or to hunt while one is being fixed: "reentry",
  // "timer_chain", "hooks", "hostile", "locked_destroy", "threads".
  std::vector<std::string> disabled;
  // Embedded mode (driver.h): a loop is either a `LoopThread` that calls
  // `Loop::Run()`, or driven by a host loop through `BackendFd()`,
  // `BackendTimeout()` and `RunReady()`, chosen per loop from bits of the
  // input's header (about one loop in four; never with `legacy_ops`), with
  // the same invariants. `driver` makes the host (null: `PollLoopDriver`, a
  // plain poll() host); `all_driven` drives every loop, `never_driven` none.
  LoopDriverFactory driver;
  bool all_driven = false;
  bool never_driven = false;
  // A loop that lags behind at teardown (a loaded machine), made
  // deterministic: before teardown's first quiesce, each live loop runs a
  // task that holds it this long, and its cross-thread backlog is filled
  // behind that task (up to 64 posts: a loop with a tight
  // `max_pending_foreign` is then full and refuses posts until it drains).
  // Every check must hold all the same. 0: off.
  int teardown_stall_ms = 0;
};

struct ModelResult {
  // Invariant name -> how many times it was broken.
  std::map<std::string, int> violations;
  // Up to a few example messages per invariant.
  std::map<std::string, std::vector<std::string>> examples;
  size_t ops = 0;              // Operations decoded.
  size_t loops = 0;            // Loops in this run.
  size_t foreign_threads = 0;  // Foreign threads in this run.
  size_t driven_loops = 0;     // Loops driven by a host loop (driver.h).
  uint64_t trace_events = 0;   // Processor events seen.
  uint64_t tasks = 0;          // Model posts made.
  // How often each operation did something (e.g. "StartTrace ok"), to see
  // what a seed or corpus covers.
  std::map<std::string, int> coverage;
  // Violations of ignored invariants (not in `violations`).
  std::map<std::string, int> ignored;
  bool ok() const { return violations.empty(); }
  std::string Summary() const;
};

ModelResult RunModel(const uint8_t* data, size_t size,
                     const ModelOptions& options = {});
inline ModelResult RunModel(const std::vector<uint8_t>& bytes,
                            const ModelOptions& options = {}) {
  return RunModel(bytes.data(), bytes.size(), options);
}

// A deterministic input for `seed`, about `ops` operations long.
std::vector<uint8_t> BytesForSeed(uint64_t seed, size_t ops);

}  // namespace fuzz
}  // namespace ctxloop

#endif  // CTXLOOP_TESTS_FUZZ_MODEL_MODEL_H_
