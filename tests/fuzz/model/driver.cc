// Copyright 2026 The ctxloop Authors.

#include "ctxloop/tests/fuzz/model/driver.h"

#include <errno.h>
#include <poll.h>

#include <future>
#include <thread>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/status/statusor.h"
#include "ctxloop/loop/loop_thread.h"

namespace ctxloop {
namespace fuzz {

absl::Status PollLoopDriver::Attach(Loop& loop) {
  absl::StatusOr<int> fd = loop.BackendFd();
  if (!fd.ok()) return fd.status();
  fd_ = *fd;
  return absl::OkStatus();
}

void PollLoopDriver::RunUntil(Loop& loop, const std::function<bool()>& done) {
  while (!done()) {
    pollfd p = {fd_, POLLIN, 0};
    int n;
    do {
      n = poll(&p, 1, Loop::TimeoutMs(loop.BackendTimeout()));
    } while (n < 0 && errno == EINTR);
    (void)loop.RunReady();  // Errors only off the loop thread or shut down.
  }
}

namespace {

class RunLoopThread : public ModelLoopThread {
 public:
  explicit RunLoopThread(Loop::Options options) : thread_(std::move(options)) {}
  ContextHandle root() const override { return thread_.root(); }
  absl::Status Invoke(absl::AnyInvocable<void(Loop&) &&> fn) override {
    return thread_.Invoke(std::move(fn));
  }
  ShutdownReport Join() override { return thread_.Join(); }

 private:
  LoopThread thread_;
};

// `LoopThread` with the loop driven by a host loop instead of Run().
class DrivenLoopThread : public ModelLoopThread {
 public:
  DrivenLoopThread(Loop::Options options, std::unique_ptr<LoopDriver> driver) {
    std::promise<void> started;
    std::future<void> ready = started.get_future();
    thread_ = std::thread([this, &started, options = std::move(options),
                           driver = std::move(driver)]() mutable {
      Loop loop(std::move(options));
      loop_ = &loop;
      root_ = loop.root();
      attached_ = driver->Attach(loop).ok();
      started.set_value();
      if (attached_) {
        driver->RunUntil(loop, [this] { return stopping_; });
      } else {
        while (!stopping_) (void)loop.Run();
      }
      absl::StatusOr<ShutdownReport> report = loop.Shutdown();
      if (report.ok()) report_ = *report;
    });
    ready.wait();
  }
  ~DrivenLoopThread() override { Join(); }

  ContextHandle root() const override { return root_; }
  bool attached() const override { return attached_; }

  absl::Status Invoke(absl::AnyInvocable<void(Loop&) &&> fn) override {
    if (IsOnLoopThread(root_)) {
      std::move(fn)(*loop_);
      return absl::OkStatus();
    }
    std::promise<void> done;
    std::future<void> finished = done.get_future();
    absl::Status s = Post(root_, [this, &fn, &done](ContextHandle) {
      absl::Cleanup signal = [&done] { done.set_value(); };
      std::move(fn)(*loop_);
    });
    if (!s.ok()) return s;
    finished.wait();
    return absl::OkStatus();
  }

  ShutdownReport Join() override {
    if (!joined_) {
      joined_ = true;
      // As LoopThread::Join: a stop that the bound never refuses, run on
      // the loop thread (`stopping_` is the loop thread's).
      (void)loop_internal::PostNeverFull(root_, [this](ContextHandle) {
        stopping_ = true;
        loop_->Stop();
      });
      thread_.join();
    }
    return report_;
  }

 private:
  std::thread thread_;
  Loop* loop_ = nullptr;
  ContextHandle root_;
  ShutdownReport report_;
  bool attached_ = false;
  bool joined_ = false;
  bool stopping_ = false;  // Loop thread only.
};

}  // namespace

std::unique_ptr<ModelLoopThread> StartModelLoopThread(
    Loop::Options options, std::unique_ptr<LoopDriver> driver) {
  if (driver == nullptr) {
    return std::make_unique<RunLoopThread>(std::move(options));
  }
  return std::make_unique<DrivenLoopThread>(std::move(options),
                                            std::move(driver));
}

}  // namespace fuzz
}  // namespace ctxloop
