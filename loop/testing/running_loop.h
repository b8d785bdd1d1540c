// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/loop/testing/running_loop.h
// -----------------------------------------------------------------------------
//
// `RunningLoop`: a `Loop` in `Run()` on a thread of its own, run again each
// time `Run()` returns (after a `Stop()`), for tests that stop a loop from
// other threads (testonly, header-only, part of //loop:test_util):
//
//   RunningLoop running;
//   Loop& loop = running.loop();         // Made on its thread, and owned by
//   it. const int64_t before = running.returns(); loop.Stop(); // From the test
//   thread.
//   ... wait until running.returns() > before ...
//
// `NotifyOnReturn(&latch)` opens `latch` when the current `Run()` returns;
// `Unstick()` makes it return through a task on the loop thread (a local
// `Stop()`). The destructor stops the loop for good and joins its thread.
//
// Cost: one thread and one loop.
//
// Thread-safety: every member is thread-safe; `loop()` is the loop itself,
// with the loop's own thread rules.

#ifndef CTXLOOP_LOOP_TESTING_RUNNING_LOOP_H_
#define CTXLOOP_LOOP_TESTING_RUNNING_LOOP_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>

#include "ctxloop/loop/context_handle.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/loop/testing/test_util.h"
#include "gtest/gtest.h"

namespace ctxloop {
namespace testing_util {

class RunningLoop {
 public:
  RunningLoop() {
    Latch made;
    thread_ = std::thread([this, &made] {
      Loop loop;
      loop_ = &loop;
      made.Open();
      while (!quit_.load()) {
        (void)loop.Run();
        returns_.fetch_add(1);
        if (Latch* returned = returned_.exchange(nullptr)) returned->Open();
      }
    });
    EXPECT_TRUE(made.WaitFor(std::chrono::seconds(10)));
  }
  RunningLoop(const RunningLoop&) = delete;
  RunningLoop& operator=(const RunningLoop&) = delete;
  ~RunningLoop() {
    quit_.store(true);
    Unstick();
    thread_.join();
  }

  Loop& loop() { return *loop_; }
  // How many times `Run()` has returned so far.
  int64_t returns() const { return returns_.load(); }
  // Opens `gate` when the current `Run()` returns.
  void NotifyOnReturn(Latch* gate) { returned_.store(gate); }
  // Makes `Run()` return through a task on the loop thread (a local Stop).
  void Unstick() {
    Loop* loop = loop_;
    (void)Post(loop->root(), [loop](ContextHandle) { loop->Stop(); });
  }

 private:
  std::thread thread_;
  Loop* loop_ = nullptr;
  std::atomic<bool> quit_{false};
  std::atomic<int64_t> returns_{0};
  std::atomic<Latch*> returned_{nullptr};
};

}  // namespace testing_util
}  // namespace ctxloop

#endif  // CTXLOOP_LOOP_TESTING_RUNNING_LOOP_H_
