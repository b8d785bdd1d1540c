// Copyright 2026 The ctxloop Authors.

#include "ctxloop/embed/uv_driver.h"

#include <uv.h>

#include <cstdint>
#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "ctxloop/embed/internal/backend.h"

namespace ctxloop {

struct UvDriver::Handles {
  uv_poll_t poll;
  uv_timer_t timer;
  uv_idle_t idle;             // Active while the loop has work left: a re-run.
  UvDriver* owner = nullptr;  // Null once the driver is gone.
  int open = 0;               // Handles initialized and not yet closed.

  static void OnClose(uv_handle_t* handle) {
    auto* self = static_cast<Handles*>(handle->data);
    if (--self->open == 0) delete self;
  }
  void CloseAll() {
    uv_close(reinterpret_cast<uv_handle_t*>(&timer), &Handles::OnClose);
    uv_close(reinterpret_cast<uv_handle_t*>(&idle), &Handles::OnClose);
  }
};

absl::StatusOr<std::unique_ptr<UvDriver>> UvDriver::Create(Loop& loop,
                                                           uv_loop_t* uv) {
  if (uv == nullptr) {
    return absl::InvalidArgumentError("UvDriver::Create: null uv_loop_t");
  }
  if (!loop.IsOnLoopThread()) {
    return absl::FailedPreconditionError(
        "UvDriver::Create: not on the loop's thread");
  }
  absl::StatusOr<int> fd = loop.BackendFd();
  if (!fd.ok()) return fd.status();

  auto* handles = new Handles;
  // uv_timer_init and uv_idle_init cannot fail; uv_poll_init can.
  uv_timer_init(uv, &handles->timer);
  handles->timer.data = handles;
  uv_idle_init(uv, &handles->idle);
  handles->idle.data = handles;
  handles->open = 2;
  int rc = uv_poll_init(uv, &handles->poll, *fd);
  if (rc != 0) {
    // Initialized handles are freed only through uv_close.
    handles->CloseAll();
    return absl::InternalError(absl::StrCat(
        "UvDriver: cannot poll the loop's backend fd: ", uv_strerror(rc)));
  }
  handles->poll.data = handles;
  handles->open = 3;
  std::unique_ptr<UvDriver> driver(new UvDriver(loop, handles));
  rc = uv_poll_start(&handles->poll, UV_READABLE, &UvDriver::OnPoll);
  if (rc != 0) {
    return absl::InternalError(
        absl::StrCat("UvDriver: uv_poll_start: ", uv_strerror(rc)));
  }
  driver->ArmTimer();
  return driver;
}

UvDriver::UvDriver(Loop& loop, Handles* handles)
    : loop_(loop), handles_(handles) {
  handles_->owner = this;
}

UvDriver::~UvDriver() {
  handles_->owner = nullptr;
  uv_poll_stop(&handles_->poll);
  uv_timer_stop(&handles_->timer);
  uv_idle_stop(&handles_->idle);
  uv_close(reinterpret_cast<uv_handle_t*>(&handles_->poll), &Handles::OnClose);
  handles_->CloseAll();
}

void UvDriver::Ref(bool ref) {
  uv_handle_t* all[] = {reinterpret_cast<uv_handle_t*>(&handles_->poll),
                        reinterpret_cast<uv_handle_t*>(&handles_->timer),
                        reinterpret_cast<uv_handle_t*>(&handles_->idle)};
  for (uv_handle_t* h : all) {
    if (ref) {
      uv_ref(h);
    } else {
      uv_unref(h);
    }
  }
}

void UvDriver::OnPoll(uv_poll_t* poll, int status, int /*events*/) {
  UvDriver* self = static_cast<Handles*>(poll->data)->owner;
  if (self == nullptr) return;
  if (status < 0) {
    self->Fail(absl::InternalError(absl::StrCat(
        "UvDriver: poll on the backend fd failed: ", uv_strerror(status))));
    return;
  }
  ++self->stats_.fd_wakeups;
  self->Drive();
}

void UvDriver::OnTimer(uv_timer_t* timer) {
  UvDriver* self = static_cast<Handles*>(timer->data)->owner;
  if (self == nullptr) return;
  ++self->stats_.timer_wakeups;
  self->Drive();
}

void UvDriver::OnIdle(uv_idle_t* idle) {
  UvDriver* self = static_cast<Handles*>(idle->data)->owner;
  if (self == nullptr) return;
  ++self->stats_.immediate_runs;
  self->Drive();
}

void UvDriver::Drive() {
  if (!status_.ok()) return;
  // A ctxloop task may destroy the driver inside RunReady; the handles stay
  // allocated until libuv's close callbacks, which run after this one.
  Handles* handles = handles_;
  ++stats_.run_ready_calls;
  absl::Status s = loop_.RunReady();
  if (handles->owner == nullptr) return;
  if (!s.ok()) {
    Fail(std::move(s));
    return;
  }
  ArmTimer();
}

void UvDriver::ArmTimer() {
  const int ms = embed_internal::BackendWaitMillisCeil(loop_);
  if (ms == 0) {
    // Work left: the idle handle runs the loop again on libuv's next
    // iteration, after the host's ready callbacks. (A zero timer restarted
    // from its own callback runs again in the same timer phase in libuv
    // 1.44: a busy loop would keep libuv from ever polling.)
    uv_timer_stop(&handles_->timer);
    uv_idle_start(&handles_->idle, &UvDriver::OnIdle);
    return;
  }
  uv_idle_stop(&handles_->idle);
  if (ms < 0) {
    uv_timer_stop(&handles_->timer);
    return;
  }
  uv_timer_start(&handles_->timer, &UvDriver::OnTimer,
                 static_cast<uint64_t>(ms), 0);
}

void UvDriver::Fail(absl::Status status) {
  if (!status_.ok()) return;
  status_ = std::move(status);
  uv_poll_stop(&handles_->poll);
  uv_timer_stop(&handles_->timer);
  uv_idle_stop(&handles_->idle);
}

}  // namespace ctxloop
