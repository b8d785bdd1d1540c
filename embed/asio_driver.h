// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/embed/asio_driver.h
// -----------------------------------------------------------------------------
//
// `AsioDriver` runs a ctxloop `Loop` inside a Boost.Asio `io_context`: the
// host keeps its own loop, sockets and handlers, and ctxloop's posts, timers,
// fd watches, contexts, traces and streams run on the same thread, inside
// `io_context::run()`.
//
//   boost::asio::io_context io(1);
//   ctxloop::Loop loop;                        // this thread is its thread
//   auto driver = *ctxloop::AsioDriver::Create(loop, io);
//   ... host sockets on `io`, ctxloop work on `loop` ...
//   io.run();                                  // drives both
//   driver.reset();                            // then the loop, then `io`
//
// How it drives: it waits on the loop's backend fd (`Loop::BackendFd`, an
// fd that is readable whenever the loop has work: posted tasks, posts from
// other threads, due timers, ready watched fds) with
// `posix::stream_descriptor::async_wait(wait_read)`, and for the loop's next
// deadline (`Loop::BackendTimeout`) with a `steady_timer`. Either wakes it
// to call `Loop::RunReady` (which runs what is ready and returns), after
// which it re-arms both. If the loop still has work after a run (backend
// timeout zero) it posts one re-run to `io` instead of waiting, so other
// host handlers interleave with a loop that keeps itself busy.
//
// Threads: one. Create, use and destroy the driver on the loop's thread
// (the thread that constructed the `Loop`), which must be the only thread
// that runs `io` (`io.run()`, `run_one()`, `poll()`...): Asio then calls the
// driver's handlers there. `Create` elsewhere returns kFailedPrecondition.
// Other threads keep using ctxloop's thread-safe calls (`Post`,
// `PostDelayed`, `Cancel`, finishes, stream emits); each wakes the host
// through the backend fd when the loop is idle.
//
// Cost per host iteration that has loop work: one `RunReady`, one
// `async_wait` re-armed on the backend fd (Asio's epoll reactor re-arms its
// edge-triggered registration with one `epoll_ctl` per wait), and the timer
// re-armed only when the loop's next deadline moved earlier than the one
// already armed (Asio reprograms its timerfd then); a later deadline keeps
// the armed one, which at worst fires early into an empty run that re-arms.
// No allocation per iteration beyond Asio's handler memory (recycled by
// Asio's per-thread cache). Idle (no posts, no timers, no ready fds): no
// host callback at all -- the host sleeps in epoll with nothing of the
// driver's due (`asio_driver_test` counts zero callbacks over 200 ms).
//
// What happens if the host stops (`io.stop()`, `run()` returning, a host
// that never runs `io` again): nothing of the loop's runs. Its pending work
// stays queued: same-thread posts, timers (they fire late, on the next
// run), and posts from other threads, which the loop bounds
// (`Loop::Options::max_pending_foreign`: past it they are refused with
// kResourceExhausted, never lost silently). When the host runs `io` again
// (after `io.restart()`), the driver's waits are still armed and the loop
// catches up. Destroying the loop without the host running drains it
// anyway: `Loop::Shutdown` runs on the destroying thread ([S1]-[S4]).
//
// If `RunReady` fails (the loop was shut down, or `io` was run from inside a
// ctxloop callback, which `RunReady` refuses as re-entrant), the driver stops
// waiting (so it never spins) and `status()` returns the error.
//
// Lifetime and destruction order: the driver refers to the `Loop` and the
// `io_context`; both must outlive it. Destroy, on the loop thread:
//   1. the driver (it cancels its waits, gives the backend fd back without
//      closing it, and turns the handlers Asio still holds into no-ops that
//      touch nothing of the driver; they may run later or be destroyed with
//      `io` -- either is fine);
//   2. the `Loop` (its shutdown drains on this thread; the host need not
//      run);
//   3. the `io_context` (and the host's own objects on it) -- or 2 and 3 in
//      the other order, since the loop does not refer to `io`; ctxloop tasks
//      that refer to host objects must of course not outlive them.
// `asio_driver_test` tests both orders and a driver destroyed from inside a
// ctxloop task and from inside a host handler.

#ifndef CTXLOOP_EMBED_ASIO_DRIVER_H_
#define CTXLOOP_EMBED_ASIO_DRIVER_H_

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "ctxloop/embed/driver_stats.h"
#include "ctxloop/loop/loop.h"

namespace ctxloop {

class AsioDriver {
 public:
  // Starts driving `loop` from `io`. Loop thread. Errors: kFailedPrecondition
  // off the loop thread; `Loop::BackendFd`'s error; kInternal if Asio cannot
  // watch the fd.
  static absl::StatusOr<std::unique_ptr<AsioDriver>> Create(
      Loop& loop, boost::asio::io_context& io);

  AsioDriver(const AsioDriver&) = delete;
  AsioDriver& operator=(const AsioDriver&) = delete;

  // Stops driving (loop thread): see "Lifetime" above. Safe from inside a
  // ctxloop callback or a host handler.
  ~AsioDriver();

  // OK while driving; otherwise why it stopped. Loop thread.
  absl::Status status() const { return status_; }
  // Host callbacks so far (driver_stats.h). Loop thread.
  HostDriverStats stats() const { return stats_; }

 private:
  // Shared with every handler the driver hands to Asio: the handler runs
  // only while `driver` is set, so a handler Asio runs (or destroys) after
  // the driver is gone touches nothing of it.
  struct Link {
    AsioDriver* driver = nullptr;
  };

  AsioDriver(Loop& loop, boost::asio::io_context& io);

  void Arm();
  void ArmTimer();
  void Drive();
  void Fail(absl::Status status);

  Loop& loop_;
  boost::asio::io_context& io_;
  boost::asio::posix::stream_descriptor fd_;
  boost::asio::steady_timer timer_;
  std::shared_ptr<Link> link_;
  bool fd_waiting_ = false;
  bool immediate_pending_ = false;
  bool timer_armed_ = false;
  uint64_t timer_generation_ = 0;  // Names the timer wait that counts.
  std::chrono::steady_clock::time_point timer_deadline_;
  absl::Status status_;
  HostDriverStats stats_;
};

}  // namespace ctxloop

#endif  // CTXLOOP_EMBED_ASIO_DRIVER_H_
