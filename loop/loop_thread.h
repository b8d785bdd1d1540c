// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/loop/loop_thread.h
// -----------------------------------------------------------------------------
//
// `LoopThread` owns a thread that constructs a `Loop`, runs it, and on
// destruction stops it, shuts it down (draining, see loop.h) and destroys it,
// all on that thread, so the loop-thread rules hold without effort.
//
//   ctxloop::LoopThread worker;
//   absl::Status s = ctxloop::Post(worker.root(), [](ctxloop::ContextHandle) {
//     // On the worker thread.
//   });
//   worker.Invoke([](ctxloop::Loop& loop) { /* e.g. loop.NewContext() */ });
//
// Cost: one thread; construction waits until the loop exists.
//
// Thread-safety: `root()` and `Invoke` are thread-safe. Destroy the
// `LoopThread` from any thread other than its own.

#ifndef CTXLOOP_LOOP_LOOP_THREAD_H_
#define CTXLOOP_LOOP_LOOP_THREAD_H_

#include <thread>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "ctxloop/loop/context_handle.h"
#include "ctxloop/loop/loop.h"

namespace ctxloop {

class LoopThread {
 public:
  explicit LoopThread(Loop::Options options = {});
  LoopThread(const LoopThread&) = delete;
  LoopThread& operator=(const LoopThread&) = delete;

  // Stops the loop, shuts it down on its thread and joins the thread.
  ~LoopThread();

  // The loop's root context. Thread-safe.
  ContextHandle root() const { return root_; }

  // Runs `fn` on the loop thread (inline if already there) and waits for it.
  // Returns the status of posting it: kFailedPrecondition if the loop is
  // shutting down, kResourceExhausted if it holds
  // `Loop::Options::max_pending_foreign` cross-thread posts (`fn` not run:
  // retry, e.g. after `WaitForRoom(root(), deadline)`). Calls `fn` at most
  // once.
  absl::Status Invoke(absl::AnyInvocable<void(Loop&) &&> fn);

  // Stops the loop, shuts it down on its thread, joins the thread and returns
  // the shutdown report. Idempotent; the destructor calls it. Not from the
  // loop thread itself. Its stop is never refused by
  // `Loop::Options::max_pending_foreign`, so it returns even while other
  // threads flood the loop (once the loop has run what it accepted).
  ShutdownReport Join();

 private:
  std::thread thread_;
  Loop* loop_ = nullptr;  // Lives on `thread_`'s stack.
  ContextHandle root_;
  ShutdownReport report_;
  bool joined_ = false;
  bool stopping_ = false;  // Loop thread only.
};

}  // namespace ctxloop

#endif  // CTXLOOP_LOOP_LOOP_THREAD_H_
