// Copyright 2026 The ctxloop Authors.

#include "ctxloop/tests/fuzz/hosts/host_drivers.h"

#include <uv.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "ctxloop/embed/asio_driver.h"
#include "ctxloop/embed/uv_driver.h"
#include "ctxloop/loop/loop.h"

namespace ctxloop {
namespace fuzz {
namespace {

std::atomic<int> fallbacks{0};

// After a driver stopped (never in a passing run): the loop's own Run().
void FallBack(Loop& loop, const std::function<bool()>& done) {
  if (!done()) fallbacks.fetch_add(1);
  while (!done()) (void)loop.Run();
}

class AsioLoopDriver : public LoopDriver {
 public:
  std::string name() const override { return "asio"; }

  absl::Status Attach(Loop& loop) override {
    absl::StatusOr<std::unique_ptr<AsioDriver>> driver =
        AsioDriver::Create(loop, io_);
    if (!driver.ok()) return driver.status();
    driver_ = *std::move(driver);
    return absl::OkStatus();
  }

  void RunUntil(Loop& loop, const std::function<bool()>& done) override {
    // One handler at a time: `done()` turns true inside a loop task, that
    // is inside one of the driver's handlers.
    while (!done() && driver_->status().ok()) io_.run_one();
    driver_.reset();  // Before the loop (asio_driver.h, "Lifetime").
    FallBack(loop, done);
  }

 private:
  boost::asio::io_context io_{1};
  std::unique_ptr<AsioDriver> driver_;
};

class UvLoopDriver : public LoopDriver {
 public:
  UvLoopDriver() { initialized_ = uv_loop_init(&uv_) == 0; }
  ~UvLoopDriver() override {
    if (!initialized_) return;
    driver_.reset();
    uv_run(&uv_, UV_RUN_NOWAIT);  // The driver's close callbacks.
    uv_loop_close(&uv_);
  }

  std::string name() const override { return "libuv"; }

  absl::Status Attach(Loop& loop) override {
    if (!initialized_) return absl::InternalError("uv_loop_init failed");
    absl::StatusOr<std::unique_ptr<UvDriver>> driver =
        UvDriver::Create(loop, &uv_);
    if (!driver.ok()) return driver.status();
    driver_ = *std::move(driver);
    return absl::OkStatus();
  }

  void RunUntil(Loop& loop, const std::function<bool()>& done) override {
    // One libuv iteration at a time: `done()` turns true inside a loop
    // task, that is inside one of the driver's callbacks. That may be its
    // timer, which libuv runs before it polls: so `done()` is checked again
    // right before each poll (a prepare handle), and `uv_stop` keeps libuv
    // from sleeping once it holds (else uv_run(UV_RUN_ONCE) would sleep in
    // epoll with nothing left to wake it).
    uv_prepare_t before_poll;
    uv_prepare_init(&uv_, &before_poll);
    struct Check {
      const std::function<bool()>* done;
      uv_loop_t* uv;
    } check{&done, &uv_};
    before_poll.data = &check;
    uv_prepare_start(&before_poll, [](uv_prepare_t* p) {
      auto* c = static_cast<Check*>(p->data);
      if ((*c->done)()) uv_stop(c->uv);
    });
    while (!done() && driver_->status().ok()) uv_run(&uv_, UV_RUN_ONCE);
    uv_close(reinterpret_cast<uv_handle_t*>(&before_poll), nullptr);
    driver_.reset();              // Before the loop (uv_driver.h, "Lifetime").
    uv_run(&uv_, UV_RUN_NOWAIT);  // Both close callbacks run here.
    FallBack(loop, done);
  }

 private:
  uv_loop_t uv_;
  bool initialized_ = false;
  std::unique_ptr<UvDriver> driver_;
};

}  // namespace

int HostDriverFallbacks() { return fallbacks.load(); }

LoopDriverFactory AsioLoopDriverFactory() {
  return [] { return std::make_unique<AsioLoopDriver>(); };
}

LoopDriverFactory UvLoopDriverFactory() {
  return [] { return std::make_unique<UvLoopDriver>(); };
}

}  // namespace fuzz
}  // namespace ctxloop
