// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/tests/fuzz/model/driver.h
// -----------------------------------------------------------------------------
//
// How the model's loop threads run their loops. By default a model loop is a
// `LoopThread`, which calls `Loop::Run()`. A driven loop is run by a host
// loop instead, through `Loop::BackendFd()`, `BackendTimeout()` and
// `RunReady()` (loop.h, "Embedding"), and the model's invariants must hold
// all the same. `LoopDriver` is that host loop; `PollLoopDriver` is a plain
// poll() host. Other hosts (Boost.Asio, libuv) implement `LoopDriver` and are
// passed in through `ModelOptions::driver` (model.h):
//
//   ModelOptions o;
//   o.driver = [] { return std::make_unique<MyAsioDriver>(); };
//   o.all_driven = true;   // Every loop driven (else chosen per input).
//   ModelResult r = RunModel(bytes, o);
//
// Cost: a driven loop thread costs what its host costs per pass (the poll
// driver: one poll() and one RunReady()).
//
// Thread-safety: a `LoopDriver` is used on its loop's thread only;
// `ModelLoopThread` is thread-safe like `LoopThread`.

#ifndef CTXLOOP_TESTS_FUZZ_MODEL_DRIVER_H_
#define CTXLOOP_TESTS_FUZZ_MODEL_DRIVER_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "ctxloop/loop/context_handle.h"
#include "ctxloop/loop/loop.h"

namespace ctxloop {
namespace fuzz {

// A host loop that drives one `Loop` on the loop's thread.
class LoopDriver {
 public:
  virtual ~LoopDriver() = default;
  // A name for coverage and summaries ("poll", "asio", "libuv").
  virtual std::string name() const = 0;
  // Loop thread, once, right after the loop was made (e.g. `BackendFd()`
  // and the host's own setup). An error makes this loop fall back to
  // `Run()` (and the run reports "driver.attach_failed").
  virtual absl::Status Attach(Loop& loop) = 0;
  // Loop thread: drives `loop` until `done()` is true, then returns. It must
  // check `done()` after every `RunReady()`: `done()` turns true from inside
  // a task (a stop posted to the loop), and the task's `Stop()` ends the
  // current `RunReady()`. It must not busy-wait (sleep in the host's poll
  // for `BackendTimeout()`) and must never call `Run()`.
  virtual void RunUntil(Loop& loop, const std::function<bool()>& done) = 0;
};

using LoopDriverFactory = std::function<std::unique_ptr<LoopDriver>()>;

// A plain poll() host: poll(BackendFd, TimeoutMs(BackendTimeout)), then
// RunReady, until done.
class PollLoopDriver : public LoopDriver {
 public:
  std::string name() const override { return "poll"; }
  absl::Status Attach(Loop& loop) override;
  void RunUntil(Loop& loop, const std::function<bool()>& done) override;

 private:
  int fd_ = -1;
};

// What the model needs of a loop thread (`LoopThread`'s interface).
class ModelLoopThread {
 public:
  virtual ~ModelLoopThread() = default;
  virtual ContextHandle root() const = 0;
  virtual absl::Status Invoke(absl::AnyInvocable<void(Loop&) &&> fn) = 0;
  virtual ShutdownReport Join() = 0;
  // False if a driver was asked for and its Attach failed (the loop then
  // runs with Run()).
  virtual bool attached() const { return true; }
};

// A loop thread: a `LoopThread` (Run()) for a null `driver`, else a thread
// whose loop `driver` drives.
std::unique_ptr<ModelLoopThread> StartModelLoopThread(
    Loop::Options options, std::unique_ptr<LoopDriver> driver);

}  // namespace fuzz
}  // namespace ctxloop

#endif  // CTXLOOP_TESTS_FUZZ_MODEL_DRIVER_H_
