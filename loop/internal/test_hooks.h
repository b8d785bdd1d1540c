// Copyright 2026 The ctxloop Authors.
//
// Internal. Fault-injection points for tests: process-wide function pointers
// the loop calls at the few instants where a race used to hide, so a
// regression test can stop a thread exactly there instead of hoping the
// scheduler does (loop_race_test.cc).
//
// Cost: one relaxed atomic load per point passed (a foreign post's unlock, a
// batch end); null in production, where nothing is called.
//
// Thread-safety: set them before the threads that pass the points start, and
// clear them after those threads stopped; a hook runs on the thread that
// passes its point and must be thread-safe.

#ifndef CTXLOOP_LOOP_INTERNAL_TEST_HOOKS_H_
#define CTXLOOP_LOOP_INTERNAL_TEST_HOOKS_H_

#include <atomic>

namespace ctxloop {
namespace loop_internal {

struct TestHooks {
  using Hook = void (*)();
  // A thread that does not own a loop queued into it (a post, a wake-up, a
  // foreign stop) and has just released the loop's queue lock: from here on
  // it must not touch the loop, which may already be gone.
  static std::atomic<Hook> after_foreign_unlock;
  // A foreign `Post` found its context open in the accept table and is
  // about to push its task (it holds its pin).
  static std::atomic<Hook> foreign_post_checked;
  // The loop thread finished a batch's tasks and is about to look for tasks
  // posted from other threads meanwhile.
  static std::atomic<Hook> before_batch_end_take;

  static void Run(const std::atomic<Hook>& hook) {
    if (Hook f = hook.load(std::memory_order_relaxed)) f();
  }
};

}  // namespace loop_internal
}  // namespace ctxloop

#endif  // CTXLOOP_LOOP_INTERNAL_TEST_HOOKS_H_
