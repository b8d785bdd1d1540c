// Copyright 2026 The ctxloop Authors.

#include "ctxloop/loop/loop_thread.h"

#include <future>
#include <utility>

#include "absl/cleanup/cleanup.h"

namespace ctxloop {

LoopThread::LoopThread(Loop::Options options) {
  std::promise<void> started;
  std::future<void> ready = started.get_future();
  thread_ =
      std::thread([this, &started, options = std::move(options)]() mutable {
        Loop loop(std::move(options));
        loop_ = &loop;
        root_ = loop.root();
        started.set_value();
        while (!stopping_) (void)loop.Run();  // Join() posts the stop.
        absl::StatusOr<ShutdownReport> report = loop.Shutdown();
        if (report.ok()) report_ = *report;
      });
  ready.wait();
}

LoopThread::~LoopThread() { Join(); }

ShutdownReport LoopThread::Join() {
  if (!joined_) {
    joined_ = true;
    // Stop from the loop thread itself: `loop_` is only touched there.
    // Posted past `Options::max_pending_foreign` (PostNeverFull): a plain
    // `Post` to a flooded loop is refused with kResourceExhausted, and the
    // join below would then wait forever. One node per `LoopThread`, so the
    // bound it skips stays bounded. Only a closed loop could refuse it, and
    // the loop shuts down only after `stopping_`.
    absl::Status s = loop_internal::PostNeverFull(root_, [this](ContextHandle) {
      stopping_ = true;
      loop_->Stop();
    });
    (void)s;  // Cannot fail (above).
    thread_.join();
  }
  return report_;
}

absl::Status LoopThread::Invoke(absl::AnyInvocable<void(Loop&) &&> fn) {
  if (IsOnLoopThread(root_)) {
    std::move(fn)(*loop_);
    return absl::OkStatus();
  }
  std::promise<void> done;
  std::future<void> finished = done.get_future();
  absl::Status s = Post(root_, [this, &fn, &done](ContextHandle) {
    absl::Cleanup signal = [&done] { done.set_value(); };  // Even if fn throws.
    std::move(fn)(*loop_);
  });
  if (!s.ok()) return s;
  finished.wait();
  return absl::OkStatus();
}

}  // namespace ctxloop
