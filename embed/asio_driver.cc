// Copyright 2026 The ctxloop Authors.

#include "ctxloop/embed/asio_driver.h"

#include <boost/asio/post.hpp>
#include <boost/system/error_code.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "ctxloop/embed/internal/backend.h"

namespace ctxloop {

absl::StatusOr<std::unique_ptr<AsioDriver>> AsioDriver::Create(
    Loop& loop, boost::asio::io_context& io) {
  if (!loop.IsOnLoopThread()) {
    return absl::FailedPreconditionError(
        "AsioDriver::Create: not on the loop's thread");
  }
  absl::StatusOr<int> fd = loop.BackendFd();
  if (!fd.ok()) return fd.status();
  std::unique_ptr<AsioDriver> driver(new AsioDriver(loop, io));
  boost::system::error_code ec;
  driver->fd_.assign(*fd, ec);  // Registers the fd with Asio's reactor.
  if (ec) {
    return absl::InternalError(absl::StrCat(
        "AsioDriver: cannot watch the loop's backend fd: ", ec.message()));
  }
  driver->Arm();
  return driver;
}

AsioDriver::AsioDriver(Loop& loop, boost::asio::io_context& io)
    : loop_(loop),
      io_(io),
      fd_(io),
      timer_(io),
      link_(std::make_shared<Link>()) {
  link_->driver = this;
}

AsioDriver::~AsioDriver() {
  // Handlers Asio still holds see a null driver from now on.
  link_->driver = nullptr;
  boost::system::error_code ec;
  timer_.cancel(ec);
  // Cancels the pending wait and deregisters the fd without closing it: the
  // loop owns it.
  if (fd_.is_open()) fd_.release();
}

void AsioDriver::Arm() {
  if (!status_.ok()) return;
  if (!fd_waiting_) {
    fd_waiting_ = true;
    fd_.async_wait(
        boost::asio::posix::stream_descriptor::wait_read,
        [link = link_](const boost::system::error_code& ec) {
          AsioDriver* self = link->driver;
          if (self == nullptr) return;  // Driver gone.
          self->fd_waiting_ = false;
          if (ec) {
            self->Fail(absl::InternalError(absl::StrCat(
                "AsioDriver: wait on the backend fd failed: ", ec.message())));
            return;
          }
          ++self->stats_.fd_wakeups;
          self->Drive();
        });
  }
  ArmTimer();
}

void AsioDriver::ArmTimer() {
  const std::optional<std::chrono::nanoseconds> wait =
      embed_internal::BackendWait(loop_);
  if (!wait.has_value()) return;  // An armed timer may fire early: harmless.
  if (wait->count() == 0) {
    // Work left: one re-run through the host's queue, so host handlers
    // that are ready interleave with it.
    if (!immediate_pending_) {
      immediate_pending_ = true;
      boost::asio::post(io_, [link = link_] {
        AsioDriver* self = link->driver;
        if (self == nullptr) return;
        self->immediate_pending_ = false;
        ++self->stats_.immediate_runs;
        self->Drive();
      });
    }
    return;
  }
  const auto deadline = std::chrono::steady_clock::now() + *wait;
  // A timer already due no later serves: re-arming costs Asio a timerfd
  // update, and an early wake-up only runs an empty RunReady.
  if (timer_armed_ && timer_deadline_ <= deadline) return;
  timer_armed_ = true;
  timer_deadline_ = deadline;
  const uint64_t generation = ++timer_generation_;
  timer_.expires_at(deadline);  // Aborts the wait it replaces (stale).
  timer_.async_wait(
      [link = link_, generation](const boost::system::error_code& ec) {
        AsioDriver* self = link->driver;
        if (self == nullptr) return;
        if (ec || generation != self->timer_generation_) {
          ++self->stats_.stale_callbacks;  // Replaced by an earlier wait.
          return;
        }
        self->timer_armed_ = false;
        ++self->stats_.timer_wakeups;
        self->Drive();
      });
}

void AsioDriver::Drive() {
  if (!status_.ok()) return;
  // A ctxloop task may destroy the driver inside RunReady: keep the link.
  const std::shared_ptr<Link> link = link_;
  ++stats_.run_ready_calls;
  absl::Status s = loop_.RunReady();
  if (link->driver == nullptr) return;
  if (!s.ok()) {
    Fail(std::move(s));
    return;
  }
  Arm();
}

void AsioDriver::Fail(absl::Status status) {
  if (!status_.ok()) return;
  status_ = std::move(status);
  boost::system::error_code ec;
  timer_.cancel(ec);
  fd_.cancel(ec);
  timer_armed_ = false;
}

}  // namespace ctxloop
