// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/loop/testing/hold_at_hook.h
// -----------------------------------------------------------------------------
//
// `HoldAtHook`: stops one thread at a loop test hook
// (ctxloop/loop/internal/test_hooks.h) until the test lets it go, for the
// deterministic race tests (testonly, header-only, part of //loop:test_util):
//
//   HoldAtHook hold(&TestHooks::foreign_post_checked);  // Installs the hook.
//   hold.Arm();                           // The next thread to pass is held.
//   ... start the thread that passes the point ...
//   ASSERT_TRUE(hold.WaitReached(seconds(10)));
//   ... act while it is held ...
//   hold.Resume();
//
// `ArmFor(id)` holds only the thread `id` (the next time it passes). A held
// thread waits at most 10 s for `Resume`, so a failing test does not hang.
// The hook is cleared when the `HoldAtHook` is destroyed: declare it before
// the loops and threads that may pass the point, so it outlives them.
//
// Cost: a test hook (one relaxed atomic load per point passed) and two
// `Latch`es; nothing when not armed.
//
// Thread-safety: one `HoldAtHook` at a time per process (hooks are plain
// function pointers, so it is found through a process-wide pointer); arming
// and the waits are thread-safe. Each hold is one-shot.

#ifndef CTXLOOP_LOOP_TESTING_HOLD_AT_HOOK_H_
#define CTXLOOP_LOOP_TESTING_HOLD_AT_HOOK_H_

#include <atomic>
#include <chrono>
#include <thread>

#include "ctxloop/loop/internal/test_hooks.h"
#include "ctxloop/loop/testing/test_util.h"

namespace ctxloop {
namespace testing_util {

class HoldAtHook {
 public:
  using Hook = loop_internal::TestHooks::Hook;

  // Installs the hold at `point` (a member of `TestHooks`); it holds no
  // thread until armed.
  explicit HoldAtHook(std::atomic<Hook>* point) : point_(point) {
    current_.store(this);
    point_->store(&Hold);
  }
  HoldAtHook(const HoldAtHook&) = delete;
  HoldAtHook& operator=(const HoldAtHook&) = delete;
  ~HoldAtHook() {
    point_->store(nullptr);
    current_.store(nullptr);
  }

  // Holds the next thread that passes the point, whichever it is.
  void Arm() { armed_any_.store(true); }
  // Holds `thread` the next time it passes the point; others pass.
  void ArmFor(std::thread::id thread) { armed_thread_.store(thread); }

  // Waits at most `timeout` for the held thread to reach the point; true if
  // it did.
  bool WaitReached(std::chrono::milliseconds timeout) {
    return reached_.WaitFor(timeout);
  }
  // Lets the held thread go on.
  void Resume() { resume_.Open(); }

 private:
  // The hook: holds the calling thread if the hold is armed for it.
  static void Hold() {
    HoldAtHook* self = current_.load();
    if (self == nullptr || !self->Disarm()) return;
    self->reached_.Open();
    (void)self->resume_.WaitFor(std::chrono::seconds(10));
  }
  // True (and disarmed) if the calling thread is the one to hold.
  bool Disarm() {
    if (armed_any_.exchange(false)) return true;
    std::thread::id me = std::this_thread::get_id();
    return armed_thread_.compare_exchange_strong(me, std::thread::id());
  }

  static inline std::atomic<HoldAtHook*> current_{nullptr};

  std::atomic<Hook>* const point_;
  std::atomic<bool> armed_any_{false};
  std::atomic<std::thread::id> armed_thread_{};
  Latch reached_;
  Latch resume_;
};

}  // namespace testing_util
}  // namespace ctxloop

#endif  // CTXLOOP_LOOP_TESTING_HOLD_AT_HOOK_H_
