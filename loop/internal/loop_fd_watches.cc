// Copyright 2026 The ctxloop Authors.
//
// Fd watches: registration, dispatch and removal ([S6] [S13]). Threading
// rule: owner thread, except `StopWatch` from a foreign thread holding a pin
// (it pushes the unregistration onto the ingress) and `WatchControl`, the
// Dekker-style fence a foreign FdWatch::Stop() shares with the dispatcher.

#include <errno.h>
#include <event2/event.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "ctxloop/loop/internal/handle_access.h"
#include "ctxloop/loop/internal/loop_core.h"
#include "ctxloop/loop/internal/loop_registry.h"
#include "ctxloop/loop/internal/test_hooks.h"

namespace ctxloop {
namespace loop_internal {

void WatchControl::WaitForCallback() const {
  for (int spins = 0; in_callback.load(); ++spins) {
    if (spins < 64) {
      sched_yield();
    } else {
      // A long callback: do not burn a core (this machine may have two).
      const timespec pause = {0, 50 * 1000};
      nanosleep(&pause, nullptr);
    }
  }
}

// --- Fd watches --------------------------------------------------------------

absl::StatusOr<FdWatch> LoopCore::WatchFd(ContextHandle ctx, int fd,
                                          FdEvents events, FdCallback callback,
                                          FdWatchOptions options) {
  if (phase_ != Phase::kOpen) {
    return absl::FailedPreconditionError("loop shutting down");
  }
  if (fd < 0) return absl::InvalidArgumentError("negative fd");
  if (events == FdEvents::kNone) {
    return absl::InvalidArgumentError("no events to watch");
  }
  if (!callback) return absl::InvalidArgumentError("null fd callback");
  if (!AcceptsPosts(ctx)) return RejectPost(ctx);
  if (auto it = watch_by_fd_.find(fd); it != watch_by_fd_.end()) {
    return absl::AlreadyExistsError(
        absl::StrCat("fd ", fd, " is already watched by watch #", it->second,
                     "; stop that watch before closing or rewatching the fd"));
  }
  auto record = std::make_unique<WatchRecord>();
  record->core = this;
  record->id = next_watch_id_++;
  record->ctx = ctx;
  record->fd = fd;
  record->callback = std::move(callback);
  record->close_on_stop = options.close_on_stop;
  record->control = std::make_shared<WatchControl>();
  short flags = EV_PERSIST;
  if (HasEvent(events, FdEvents::kRead)) flags |= EV_READ;
  if (HasEvent(events, FdEvents::kWrite)) flags |= EV_WRITE;
  record->ev = event_new(base_, fd, flags, &LoopCore::OnFd, record.get());
  if (record->ev == nullptr || event_add(record->ev, nullptr) != 0) {
    const int err = errno;
    if (record->ev != nullptr) event_free(record->ev);
    return absl::InvalidArgumentError(
        absl::StrCat("cannot watch fd ", fd, ": ", std::strerror(err)));
  }
  const uint64_t id = record->id;
  std::shared_ptr<WatchControl> control = record->control;
  watch_by_fd_[fd] = id;
  watches_[id] = std::move(record);
  return FdWatch(slot_index_, generation_, id, std::move(control));
}

void LoopCore::OnFd(int, short what, void* arg) {
  auto* record = static_cast<WatchRecord*>(arg);
  ++record->core->callbacks_dispatched_;
  record->core->cached_now_ns_ = -1;
  record->core->DispatchFd(record, what);
}

void LoopCore::DispatchFd(WatchRecord* record, short what) {
  if (record->removed) return;
  WatchControl& control = *record->control;
  // [S13] Fence with a foreign FdWatch::Stop() (see WatchControl): once it
  // set `stopped`, either we see it here and never call, or it sees
  // `in_callback` and waits for the call to return.
  control.in_callback.store(true);
  if (control.stopped.load()) {
    control.in_callback.store(false);
    RemoveWatch(record->id);  // Frees `record`; the queued removal no-ops.
    return;
  }
  FdEvents ready = FdEvents::kNone;
  if (what & EV_READ) ready = ready | FdEvents::kRead;
  if (what & EV_WRITE) ready = ready | FdEvents::kWrite;
  record->dispatching = true;
  try {
    record->callback(record->ctx, ready);
  } catch (const std::exception& e) {
    Report(record->ctx,
           absl::InternalError(absl::StrCat("fd callback threw: ", e.what())));
  } catch (...) {
    Report(record->ctx,
           absl::InternalError("fd callback threw a non-std::exception"));
  }
  record->dispatching = false;
  control.in_callback.store(false);  // A foreign stopper may return now.
  // The callback may have stopped its own watch: free it now that it returned.
  if (record->removed) watches_.erase(record->id);
}

void LoopCore::RemoveWatch(uint64_t id) {
  auto it = watches_.find(id);
  if (it == watches_.end() || it->second->removed) return;
  WatchRecord* w = it->second.get();
  w->control->stopped.store(true);
  event_free(w->ev);  // Unregisters first; EBADF from a closed fd is benign.
  w->ev = nullptr;
  w->removed = true;
  if (auto by_fd = watch_by_fd_.find(w->fd);
      by_fd != watch_by_fd_.end() && by_fd->second == id) {
    watch_by_fd_.erase(by_fd);
  }
  if (w->close_on_stop) close(w->fd);
  if (!w->dispatching) watches_.erase(it);
}

void LoopCore::StopWatch(uint64_t id) {
  if (IsOwnerThread()) {
    RemoveWatch(id);
    return;
  }
  // The caller (FdWatch::Stop) holds a pin, already set `stopped` and waits
  // for the callback; the unregistration itself happens on the loop thread.
  IngressNode* node = AllocIngressNode();
  node->ctx = InternalHandle();
  node->task = [this, id](ContextHandle) { RemoveWatch(id); };
  if (!PushForeign(node)) {  // Unreachable while pinned; [S6] closes it.
    node->task = nullptr;
    FreeIngressNodes(node, node);
  }
}

bool LoopCore::WatchActive(uint64_t id) const {
  auto it = watches_.find(id);
  return it != watches_.end() && !it->second->removed;
}

}  // namespace loop_internal
}  // namespace ctxloop
