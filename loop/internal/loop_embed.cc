// Copyright 2026 The ctxloop Authors.
//
// Driven mode: a host loop drives this loop through `BackendFd()`,
// `BackendTimeout()` and `RunReady()` (see "Embedding" in loop.h). Threading
// rule: owner thread, except `BackendFd()` once set up (an atomic load) and
// `Kick` (a write to the loop's eventfd, from the owner). [S19] [S21] are
// handled here and in loop_core.cc / loop_shutdown.cc.
//
// The backend fd. libevent 2.1 does not expose its epoll fd, and every fd the
// loop waits on (its wake-up eventfd, its timerfd, fd watches, the host's
// fd events) is in that epoll set, so the loop finds it: it registers a
// private pipe's read end on the base (with the plain epoll backend,
// `event_add` calls `epoll_ctl` at once) and looks in /proc/self/fdinfo for
// the one epoll fd that lists that fd number with that pipe's inode (pipes
// have an inode each; eventfds share one). It then makes an epoll fd of its
// own and adds libevent's into it: an epoll fd is readable while its ready
// list is not empty, so the outer fd is readable exactly when libevent's
// poll would return something. The host gets the outer fd, never libevent's
// (it cannot `epoll_ctl` libevent's set by mistake).
//
// What the fd cannot show (work that needs no fd): events made active (a
// batch scheduled with `event_active`, libevent's deferred callbacks) and
// timeouts. `BackendTimeout()` reports those. ctxloop's own loop-thread calls
// outside `RunReady()` that schedule a batch or a due timer write the wake-up
// eventfd (`Kick`, once per batch), so the host needs to re-read the
// timeout only after its own libevent calls.

#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "ctxloop/loop/internal/loop_core.h"

namespace ctxloop {
namespace loop_internal {

namespace {

void IgnoreEvent(int, short, void*) {}

// The whole of a small /proc file (fdinfo of an epoll fd: one line per fd in
// its set); empty on error.
std::string ReadSmallFile(const char* path) {
  std::string out;
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  char buf[4096];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > (size_t{1} << 24)) break;  // A bound: 16 MiB.
  }
  close(fd);
  return out;
}

// True if the fdinfo text of an epoll fd lists fd `tfd` with inode `ino`
// (lines "tfd: <fd> events: <hex> data: <hex> pos:<n> ino:<hex> sdev:<hex>").
bool ListsTarget(const std::string& fdinfo, int tfd, ino_t ino) {
  size_t pos = 0;
  while ((pos = fdinfo.find("tfd:", pos)) != std::string::npos) {
    const size_t eol = std::min(fdinfo.find('\n', pos), fdinfo.size());
    const std::string line = fdinfo.substr(pos, eol - pos);
    pos = eol;
    int fd = -1;
    unsigned long long inode = 0;  // NOLINT(runtime/int): sscanf's %llx.
    const size_t ino_at = line.find("ino:");
    if (ino_at == std::string::npos) continue;
    if (std::sscanf(line.c_str(), "tfd: %d", &fd) != 1) continue;
    if (std::sscanf(line.c_str() + ino_at, "ino:%llx", &inode) != 1) continue;
    if (fd == tfd && static_cast<ino_t>(inode) == ino) return true;
  }
  return false;
}

struct NextTimeout {
  const event* skip;  // The "now" probe.
  bool found = false;
  timeval earliest = {0, 0};  // As event_pending reports it.
};

int VisitTimeout(const event_base*, const event* ev, void* arg) {
  auto* next = static_cast<NextTimeout*>(arg);
  if (ev == next->skip) return 0;
  timeval tv;
  // event_pending only reads the event (the callback must not modify the
  // base).
  if (event_pending(ev, EV_TIMEOUT, &tv) & EV_TIMEOUT) {
    if (!next->found || timercmp(&tv, &next->earliest, <)) {
      next->earliest = tv;
      next->found = true;
    }
  }
  return 0;
}

}  // namespace

void LoopCore::Kick(int fd) {
  const uint64_t one = 1;
  ssize_t n;
  do {
    n = write(fd, &one, sizeof(one));
  } while (n < 0 && errno == EINTR);
  // EAGAIN: the counter is saturated, so the fd is readable anyway.
}

int LoopCore::FindLibeventEpollFd() {
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC | O_NONBLOCK) != 0) return -1;
  absl::Cleanup close_pipe = [&pipe_fds] {
    close(pipe_fds[0]);
    close(pipe_fds[1]);
  };
  struct stat marker;
  if (fstat(pipe_fds[0], &marker) != 0) return -1;
  event* probe = event_new(base_, pipe_fds[0], EV_READ, &IgnoreEvent, nullptr);
  if (probe == nullptr) return -1;
  absl::Cleanup free_probe = [probe] { event_free(probe); };
  if (event_add(probe, nullptr) != 0) return -1;
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  absl::Cleanup close_dir = [dir] { closedir(dir); };
  int found = -1;
  while (dirent* entry = readdir(dir)) {
    int fd;
    if (!absl::SimpleAtoi(entry->d_name, &fd) || fd == dirfd(dir)) continue;
    char link[64];
    const std::string path = absl::StrCat("/proc/self/fd/", fd);
    const ssize_t len = readlink(path.c_str(), link, sizeof(link) - 1);
    if (len <= 0) continue;
    link[len] = '\0';
    if (std::strcmp(link, "anon_inode:[eventpoll]") != 0) continue;
    const std::string info =
        ReadSmallFile(absl::StrCat("/proc/self/fdinfo/", fd).c_str());
    if (!ListsTarget(info, pipe_fds[0], marker.st_ino)) continue;
    if (found >= 0) return -1;  // Two: cannot tell (never expected).
    found = fd;
  }
  return found;
}

absl::StatusOr<int> LoopCore::BackendFd() {
  if (const int fd = backend_fd_.load(std::memory_order_acquire); fd >= 0) {
    return fd;
  }
  if (!IsOwnerThread()) {
    return absl::FailedPreconditionError(
        "the first BackendFd() call must be on the loop thread");
  }
  if (phase_ != Phase::kOpen) {
    return absl::FailedPreconditionError("the loop is shut down");
  }
  const char* method = event_base_get_method(base_);
  if (method == nullptr || std::strcmp(method, "epoll") != 0) {
    return absl::UnimplementedError(absl::StrCat(
        "BackendFd() needs libevent's epoll backend; this base uses \"",
        method == nullptr ? "?" : method,
        "\" (with a changelist, or poll/select, registrations reach the "
        "kernel only inside a dispatch, so no fd can show them)"));
  }
  const int inner = FindLibeventEpollFd();
  if (inner < 0) {
    return absl::UnimplementedError(
        "BackendFd(): could not find libevent's epoll fd through "
        "/proc/self/fdinfo (is /proc mounted?)");
  }
  const int outer = epoll_create1(EPOLL_CLOEXEC);
  if (outer < 0) {
    return absl::ResourceExhaustedError(
        absl::StrCat("epoll_create1: ", std::strerror(errno)));
  }
  epoll_event ev = {};
  ev.events = EPOLLIN;
  ev.data.fd = inner;
  if (epoll_ctl(outer, EPOLL_CTL_ADD, inner, &ev) != 0) {
    const int err = errno;
    close(outer);
    return absl::ResourceExhaustedError(
        absl::StrCat("epoll_ctl: ", std::strerror(err)));
  }
  backend_fd_.store(outer, std::memory_order_release);
  // From now on, work scheduled outside a pass shows on the fd. Inside
  // Run/RunReady the pass restores this when it ends.
  if (!running_) local_.set_kick_fd(wake_fd_);
  // Work scheduled before this call would not show: show it now.
  if (local_.batch_scheduled() ||
      event_base_get_num_events(base_, EVENT_BASE_COUNT_ACTIVE) > 0) {
    Kick(wake_fd_);
  }
  return outer;
}

void LoopCore::RestoreKick() {
  // Outside a pass, a driven loop (BackendFd set up) kicks its eventfd.
  local_.set_kick_fd(phase_ == Phase::kOpen &&
                             backend_fd_.load(std::memory_order_relaxed) >= 0
                         ? wake_fd_
                         : -1);
}

absl::Duration LoopCore::BackendTimeout() const {
  if (phase_ == Phase::kClosed || !IsOwnerThread()) {
    return absl::InfiniteDuration();
  }
  // Active events (a scheduled batch, a due timer run, the host's
  // event_active) and libevent's deferred callbacks (its "active later"
  // queue, which this count includes): work now.
  if (event_base_get_num_events(base_, EVENT_BASE_COUNT_ACTIVE) > 0) {
    return absl::ZeroDuration();
  }
  int64_t wait_ns = -1;  // -1: nothing scheduled.
  // ctxloop's delayed tasks (their timerfd shows on the fd too; reported
  // here so the host knows the time to the next timer).
  if (armed_deadline_ns_ >= 0) {
    wait_ns = std::max<int64_t>(0, armed_deadline_ns_ - MonotonicNowNs());
  }
  // Every libevent timeout on the base: the loop's own (a batch or timer run
  // due after the next poll, the pool trim) and the host's.
  NextTimeout next;
  next.skip = now_probe_;
  event_base_foreach_event(base_, &VisitTimeout, &next);
  if (next.found) {
    // event_pending reports a timeout as the base's (coarse) monotonic
    // deadline plus the base's last measured wall-minus-monotonic offset.
    // "Now" in the same terms: a probe added with a zero timeout, whose
    // deadline libevent stamps with the base's now (the offset cancels, so
    // no wall-clock step or coarse-clock lag skews the difference).
    if (now_probe_ == nullptr) {
      now_probe_ = event_new(base_, -1, 0, &IgnoreEvent, nullptr);
    }
    timeval now = {0, 0};
    const timeval zero = {0, 0};
    if (now_probe_ == nullptr || event_add(now_probe_, &zero) != 0 ||
        !(event_pending(now_probe_, EV_TIMEOUT, &now) & EV_TIMEOUT)) {
      return absl::ZeroDuration();  // Cannot tell: never sleep past it.
    }
    event_del(now_probe_);
    const int64_t at_us =
        int64_t{next.earliest.tv_sec} * 1000000 + next.earliest.tv_usec;
    const int64_t now_us = int64_t{now.tv_sec} * 1000000 + now.tv_usec;
    const int64_t ns = std::max<int64_t>(0, at_us - now_us) * 1000;
    if (wait_ns < 0 || ns < wait_ns) wait_ns = ns;
  }
  if (wait_ns < 0) return absl::InfiniteDuration();
  return absl::Nanoseconds(wait_ns);
}

absl::Status LoopCore::RunReady() {
  if (absl::Status s = CheckCanRun(); !s.ok()) return s;
  running_ = true;
  local_.set_kick_fd(-1);  // Inside the pass, the pass runs what is posted.
  absl::Cleanup done = [this] {
    running_ = false;
    // A stop asked during this pass ended it; it is not kept for the next.
    stop_requested_.store(false);
    RestoreKick();
  };
  // A stop asked since the last pass: return at once, as Run() does.
  if (stop_requested_.exchange(false)) return absl::OkStatus();
  cached_now_ns_ = -1;
  // EVLOOP_NONBLOCK alone would go on passing while each pass had active
  // events, i.e. forever under a task that keeps re-posting itself (its
  // follow-up batch is a zero timeout, due at the next pass). With
  // EVLOOP_ONCE the call ends after the pass that emptied the active queues.
  event_base_loop(base_, EVLOOP_ONCE | EVLOOP_NONBLOCK);
  return absl::OkStatus();
}

}  // namespace loop_internal
}  // namespace ctxloop
