// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/loop/testing/test_util.h
// -----------------------------------------------------------------------------
//
// Small helpers shared by ctxloop's loop tests (testonly, header-only):
//
//   * `ASSERT_OK(expr)`: asserts that an `absl::Status` or `absl::StatusOr`
//     is OK, printing the expression and the status otherwise.
//   * `Latch`: a one-shot gate; `Wait` blocks until `Open` was called, on
//     any thread. It synchronizes with `ctxloop::Mutex` / `CondVar`
//     (std::mutex underneath), because the system Abseil is not
//     TSan-instrumented (.bazelrc).
//   * `FdIsOpen(fd)`: whether `fd` is an open descriptor of this process.
//
// Cost: negligible; a `Latch` is a mutex, a condition variable and a bool.
//
// Thread-safety: `Latch` is thread-safe; the functions keep no state.

#ifndef CTXLOOP_LOOP_TESTING_TEST_UTIL_H_
#define CTXLOOP_LOOP_TESTING_TEST_UTIL_H_

#include <errno.h>
#include <fcntl.h>

#include <chrono>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "ctxloop/loop/mutex.h"
#include "gtest/gtest.h"

namespace ctxloop {
namespace testing_util {

// The status of a Status or StatusOr, for ASSERT_OK.
inline const absl::Status& StatusOf(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& s) {
  return s.status();
}

// A one-shot latch: once opened it stays open. It notifies under its lock,
// so a waiter may destroy it as soon as `Wait` returns.
class Latch {
 public:
  void Open() {
    ctxloop::MutexLock lock(&mu_);
    open_ = true;
    cv_.SignalAll();
  }
  void Wait() {
    ctxloop::MutexLock lock(&mu_);
    while (!open_) cv_.Wait(&mu_);
  }
  // Waits at most `timeout`; true if the latch is open.
  bool WaitFor(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    ctxloop::MutexLock lock(&mu_);
    while (!open_) {
      if (!cv_.WaitUntil(&mu_, deadline)) return open_;
    }
    return true;
  }

 private:
  ctxloop::Mutex mu_;
  ctxloop::CondVar cv_;
  bool open_ ABSL_GUARDED_BY(mu_) = false;
};

inline bool FdIsOpen(int fd) {
  return fcntl(fd, F_GETFD) != -1 || errno != EBADF;
}

}  // namespace testing_util
}  // namespace ctxloop

#define ASSERT_OK(expr)                                                     \
  do {                                                                      \
    const auto& ctxloop_st_ = (expr);                                       \
    ASSERT_TRUE(::ctxloop::testing_util::StatusOf(ctxloop_st_).ok())        \
        << #expr << ": " << ::ctxloop::testing_util::StatusOf(ctxloop_st_); \
  } while (0)

#endif  // CTXLOOP_LOOP_TESTING_TEST_UTIL_H_
