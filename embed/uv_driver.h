// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/embed/uv_driver.h
// -----------------------------------------------------------------------------
//
// `UvDriver` runs a ctxloop `Loop` inside a libuv loop: the host keeps its
// own `uv_loop_t`, handles and callbacks, and ctxloop's posts, timers, fd
// watches, contexts, traces and streams run on the same thread, inside
// `uv_run`.
//
//   uv_loop_t uv;
//   uv_loop_init(&uv);
//   ctxloop::Loop loop;                      // this thread is its thread
//   auto driver = *ctxloop::UvDriver::Create(loop, &uv);
//   ... host handles on `uv`, ctxloop work on `loop` ...
//   uv_run(&uv, UV_RUN_DEFAULT);             // drives both
//   driver.reset();                          // closes its handles
//   uv_run(&uv, UV_RUN_NOWAIT);              // lets libuv finish closing
//   uv_loop_close(&uv);
//
// How it drives: a `uv_poll_t` on the loop's backend fd (`Loop::BackendFd`,
// readable whenever the loop has work: posted tasks, posts from other
// threads, due timers, ready watched fds) and a `uv_timer_t` for the loop's
// next deadline (`Loop::BackendTimeout`, rounded up to libuv's milliseconds
// so a deadline under 1 ms out never spins). Either calls `Loop::RunReady`
// (runs what is ready, returns), then the timer is set to the loop's new
// deadline. When the loop still has work (a zero timeout) a `uv_idle_t`
// runs it again on libuv's next iteration instead, after the host's own
// ready callbacks, so a loop that keeps itself busy never starves the host
// (a zero timer would not do: libuv 1.44 runs a zero timer restarted from
// its own callback again in the same timer phase, before it polls).
//
// Threads: one. Create, use and destroy the driver on the loop's thread
// (the thread that constructed the `Loop`), which must be the only thread
// that runs `uv` (libuv's rule anyway). `Create` elsewhere returns
// kFailedPrecondition. Other threads keep using ctxloop's thread-safe calls
// (`Post`, `PostDelayed`, `Cancel`, finishes, stream emits); each wakes the
// host through the backend fd when the loop is idle.
//
// Cost per host iteration that has loop work: one `RunReady` and one
// `uv_timer_start`/`uv_timer_stop`/`uv_idle_start`/`uv_idle_stop` (libuv's
// timer heap and handle queues, no syscall). The
// poll handle is registered once and stays (libuv's epoll is
// level-triggered: no re-arm). No allocation per iteration. Idle (no posts,
// no timers, no ready fds): no callback at all, and the driver's handles
// alone keep `uv_run(UV_RUN_DEFAULT)` from returning (they are active
// handles; `uv_unref` them through `Ref(false)` if the host wants its loop
// to end when only ctxloop is left). `uv_driver_test` counts zero callbacks
// over 200 ms of an idle loop.
//
// A host that stops its loop from a ctxloop task calls `uv_stop` there:
// with `uv_run(UV_RUN_ONCE)` in a loop of its own, checking a flag only
// after `uv_run` returns is not enough, since the driver's timer runs
// before libuv polls and the poll may then sleep with nothing left to wake
// it (tests/fuzz/hosts/host_drivers.cc checks its flag in a prepare
// handle, right before the poll).
//
// What happens if the host stops (`uv_stop`, `uv_run` returning, a host that
// never runs `uv` again): nothing of the loop's runs. Its pending work stays
// queued: same-thread posts, timers (they fire late, on the next run), and
// posts from other threads, which the loop bounds
// (`Loop::Options::max_pending_foreign`: past it they are refused with
// kResourceExhausted, never lost silently). When the host runs `uv` again
// the poll handle is still active and the loop catches up. Destroying the
// loop without the host running drains it anyway: `Loop::Shutdown` runs on
// the destroying thread ([S1]-[S4]).
//
// If `RunReady` fails (the loop was shut down, or `uv_run` was called from
// inside a ctxloop callback, which `RunReady` refuses as re-entrant) or
// libuv reports an error on the poll handle, the driver stops its handles
// (so it never spins) and `status()` returns the error.
//
// Lifetime and destruction order: the driver refers to the `Loop` and the
// `uv_loop_t`; both must outlive it. Destroy, on the loop thread:
//   1. the driver: it `uv_close`s its three handles (their memory is freed in
//      libuv's close callbacks, never touched by the driver after this);
//   2. run `uv` once more (`uv_run(uv, UV_RUN_NOWAIT)` is enough) so the
//      close callbacks run -- before `uv_loop_close`, which otherwise
//      returns UV_EBUSY and the handles leak;
//   3. the `Loop` (its shutdown drains on this thread; the host need not
//      run) and `uv_loop_close(uv)`, in either order: the loop does not
//      refer to `uv`; ctxloop tasks that refer to host handles must of
//      course not outlive them.
// The driver may be destroyed from inside a ctxloop task or a host
// callback (`uv_driver_test` does both).

#ifndef CTXLOOP_EMBED_UV_DRIVER_H_
#define CTXLOOP_EMBED_UV_DRIVER_H_

#include <uv.h>

#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "ctxloop/embed/driver_stats.h"
#include "ctxloop/loop/loop.h"

namespace ctxloop {

class UvDriver {
 public:
  // Starts driving `loop` from `uv`. Loop thread. Errors: kFailedPrecondition
  // off the loop thread; kInvalidArgument for a null `uv`;
  // `Loop::BackendFd`'s error; kInternal if libuv cannot poll the fd.
  static absl::StatusOr<std::unique_ptr<UvDriver>> Create(Loop& loop,
                                                          uv_loop_t* uv);

  UvDriver(const UvDriver&) = delete;
  UvDriver& operator=(const UvDriver&) = delete;

  // Closes the driver's handles (loop thread): see "Lifetime" above.
  ~UvDriver();

  // Whether the driver's handles keep `uv_run(UV_RUN_DEFAULT)` running
  // (libuv's `uv_ref`/`uv_unref`; referenced by default). Loop thread.
  void Ref(bool ref);

  // OK while driving; otherwise why it stopped. Loop thread.
  absl::Status status() const { return status_; }
  // Host callbacks so far (driver_stats.h). Loop thread.
  HostDriverStats stats() const { return stats_; }

 private:
  // The three libuv handles, heap-allocated: libuv frees them (in its close
  // callbacks) after the driver is gone.
  struct Handles;

  UvDriver(Loop& loop, Handles* handles);

  static void OnPoll(uv_poll_t* poll, int status, int events);
  static void OnTimer(uv_timer_t* timer);
  static void OnIdle(uv_idle_t* idle);
  void Drive();
  void ArmTimer();
  void Fail(absl::Status status);

  Loop& loop_;
  Handles* handles_;  // Owned by libuv once closed.
  absl::Status status_;
  HostDriverStats stats_;
};

}  // namespace ctxloop

#endif  // CTXLOOP_EMBED_UV_DRIVER_H_
