// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/loop/fd_watch.h
// -----------------------------------------------------------------------------
//
// Readiness watches on file descriptors, made by `Loop::WatchFd`.
//
// An `FdWatch` is the move-only owner of one registration: destroying it (or
// calling `Stop()`) unregisters it, and after that the callback is never
// called again. Cost: one libevent persistent event per watch; the callback
// is stored once.
//
// Closing a watched fd
// --------------------
// With epoll, the kernel forgets a closed fd but libevent does not; if the fd
// number is then reused and watched again, libevent would believe it is
// already registered and the new watch would never fire. ctxloop turns that
// silent failure into a status:
//   * destroying or stopping a watch whose fd was already closed is fine;
//   * `WatchFd` on an fd number that still has a live watch returns
//     `kAlreadyExists`, naming that watch: stop it first;
//   * `FdWatchOptions::close_on_stop` lets the watch own the fd and close it
//     after unregistering, which is always the right order.
//
// Thread-safety: create and use a watch on its loop thread. `Stop()` (and
// destruction) may run on any thread, like libevent's `event_del`:
//   * on the loop thread it unregisters at once and never waits, also from
//     inside the watch's own callback;
//   * on another thread it marks the watch stopped, posts the unregistration
//     to the loop and then waits until no call of the callback is running.
//     When it returns the callback is not running and will never be called
//     again, so `watch.Stop(); delete conn;` is safe. The unregistration
//     itself runs on the loop thread soon after, so do not `close()` the fd
//     right after a foreign `Stop()`: let the watch own it
//     (`close_on_stop`, closed after unregistering) or close it on the loop
//     thread. Hazard: a callback that waits for the thread calling `Stop()`
//     (a lock that thread holds, a join of it) deadlocks with it, exactly as
//     with `event_del`;
//   * a watch that outlives its loop is inert.
// Cost of the fence: one shared control block per watch (two atomics), one
// sequentially consistent store and load around each callback call.

#ifndef CTXLOOP_LOOP_FD_WATCH_H_
#define CTXLOOP_LOOP_FD_WATCH_H_

#include <cstdint>
#include <memory>

#include "absl/functional/any_invocable.h"
#include "ctxloop/loop/context_handle.h"

namespace ctxloop {

namespace loop_internal {
class LoopCore;
struct WatchControl;
}  // namespace loop_internal

enum class FdEvents : uint8_t {
  kNone = 0,
  kRead = 1,
  kWrite = 2,
  kReadWrite = 3,
};
constexpr FdEvents operator|(FdEvents a, FdEvents b) {
  return static_cast<FdEvents>(static_cast<uint8_t>(a) |
                               static_cast<uint8_t>(b));
}
constexpr bool HasEvent(FdEvents set, FdEvents e) {
  return (static_cast<uint8_t>(set) & static_cast<uint8_t>(e)) != 0;
}

// Called on the loop thread with the watch's context and what is ready.
using FdCallback = absl::AnyInvocable<void(ContextHandle ctx, FdEvents ready)>;

struct FdWatchOptions {
  // The watch owns the fd: `Stop()`/destruction closes it after
  // unregistering, as does loop shutdown or context destruction.
  bool close_on_stop = false;
};

class FdWatch {
 public:
  FdWatch() = default;  // Inert.
  FdWatch(FdWatch&& other) noexcept;
  FdWatch& operator=(FdWatch&& other) noexcept;
  FdWatch(const FdWatch&) = delete;
  FdWatch& operator=(const FdWatch&) = delete;
  ~FdWatch() { Stop(); }

  // Unregisters (and closes the fd if it owns it). Idempotent. May be called
  // from inside the watch's own callback. From another thread: waits until
  // the callback is not running (see the file comment).
  void Stop();

  // True until `Stop()`, destruction, or the context or loop going away.
  bool active() const;

 private:
  friend class loop_internal::LoopCore;
  FdWatch(uint32_t loop_slot, uint32_t loop_generation, uint64_t id,
          std::shared_ptr<loop_internal::WatchControl> control);

  uint32_t loop_slot_ = 0;
  uint32_t loop_generation_ = 0;
  uint64_t id_ = 0;  // 0: inert.
  // Shared with the loop's record of the watch (see WatchControl).
  std::shared_ptr<loop_internal::WatchControl> control_;
};

}  // namespace ctxloop

#endif  // CTXLOOP_LOOP_FD_WATCH_H_
