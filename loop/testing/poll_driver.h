// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/loop/testing/poll_driver.h
// -----------------------------------------------------------------------------
//
// `PollDriver`: the smallest host loop that drives a `Loop` the way any other
// loop would (testonly, header-only, part of //loop:test_util): it polls
// `Loop::BackendFd()` with plain `poll()`, sleeps at most
// `Loop::BackendTimeout()`, and calls `Loop::RunReady()`. It never calls
// `Run()`. It counts its wake-ups, so tests can check that an idle loop costs
// the host none.
//
//   Loop loop;
//   PollDriver host(&loop);                  // On the loop thread.
//   ASSERT_OK(host.status());
//   ... posts, timers, fd watches ...
//   host.RunUntil([&] { return done; }, absl::Seconds(5));
//
// A wake-up is a `poll()` that returned because of the loop: its fd was
// readable, or the timeout the loop asked for (`BackendTimeout()`) ran out.
// A `poll()` cut short by the caller's own limit (`RunFor`'s end) is not one.
//
// Cost: one `poll()` and one `RunReady()` per iteration.
//
// Thread-safety: loop thread only, like `RunReady()`.

#ifndef CTXLOOP_LOOP_TESTING_POLL_DRIVER_H_
#define CTXLOOP_LOOP_TESTING_POLL_DRIVER_H_

#include <errno.h>
#include <poll.h>

#include <algorithm>
#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "ctxloop/loop/loop.h"

namespace ctxloop {
namespace testing_util {

class PollDriver {
 public:
  explicit PollDriver(Loop* loop) : loop_(loop) {
    absl::StatusOr<int> fd = loop->BackendFd();
    status_ = fd.status();
    if (fd.ok()) fd_ = *fd;
  }

  // Whether BackendFd() succeeded (nothing else works otherwise).
  const absl::Status& status() const { return status_; }
  int fd() const { return fd_; }

  // One host iteration: polls for at most the loop's timeout, capped at
  // `limit`, then runs what is ready (`RunReady`, also after a capped
  // poll: it costs nothing when nothing is ready). Returns RunReady's error.
  absl::Status Iterate(absl::Duration limit) {
    const absl::Duration want = loop_->BackendTimeout();
    const bool capped = want > limit;
    const int timeout_ms = Loop::TimeoutMs(std::min(want, limit));
    pollfd p = {fd_, POLLIN, 0};
    int n;
    do {
      n = poll(&p, 1, timeout_ms);
    } while (n < 0 && errno == EINTR);
    ++polls_;
    if (n > 0 || !capped) ++wakeups_;
    if (n > 0) ++fd_wakeups_;
    return loop_->RunReady();
  }

  // Iterates until `done()` (checked after each RunReady) or `limit` passed;
  // true if `done()`.
  bool RunUntil(const std::function<bool()>& done, absl::Duration limit) {
    const absl::Time end = absl::Now() + limit;
    while (!done()) {
      const absl::Duration left = end - absl::Now();
      if (left <= absl::ZeroDuration()) return false;
      if (!Iterate(left).ok()) return done();
    }
    return true;
  }

  // Iterates for `d` (the host's own loop, with nothing else to do).
  void RunFor(absl::Duration d) {
    RunUntil([] { return false; }, d);
  }

  int64_t polls() const { return polls_; }
  int64_t wakeups() const { return wakeups_; }
  int64_t fd_wakeups() const { return fd_wakeups_; }

 private:
  Loop* loop_;
  absl::Status status_;
  int fd_ = -1;
  int64_t polls_ = 0;
  int64_t wakeups_ = 0;
  int64_t fd_wakeups_ = 0;
};

}  // namespace testing_util
}  // namespace ctxloop

#endif  // CTXLOOP_LOOP_TESTING_POLL_DRIVER_H_
