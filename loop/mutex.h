// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/loop/mutex.h
// -----------------------------------------------------------------------------
//
// `ctxloop::Mutex`, `MutexLock` and `CondVar`: `std::mutex` and
// `std::condition_variable` with Clang thread-safety annotations. ctxloop
// uses them for every lock it takes, and they are public for hosts and sink
// writers who share state between loops (a sink on loop 2 and a reader on
// loop 1, say) and build with TSan (`--config=tsan` in bazel/host.bazelrc).
//
// Why not `absl::Mutex`: Debian's Abseil is a shared library built without
// ThreadSanitizer instrumentation, so TSan cannot see its synchronization and
// reports false races. `std::mutex` is intercepted by TSan, but libstdc++
// does not annotate it, so `-Wthread-safety` cannot check members guarded by
// it. These wrappers give both: TSan sees pthread mutexes, and clang checks
// every `ABSL_GUARDED_BY(mu_)` member and every
// `ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_)` function (ctxloop's CI builds with
// `-Wthread-safety -Werror`).
//
//   mutable ctxloop::Mutex mu_;
//   int count_ ABSL_GUARDED_BY(mu_) = 0;
//   void Add() {
//     ctxloop::MutexLock lock(&mu_);
//     ++count_;
//   }
//
// Cost: exactly a `std::mutex` / `std::condition_variable` (all inline).
//
// Thread-safety: these are the synchronization primitives themselves; a
// `Mutex` is not recursive, and a `CondVar` waits with its `Mutex` held.

#ifndef CTXLOOP_LOOP_MUTEX_H_
#define CTXLOOP_LOOP_MUTEX_H_

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "absl/base/thread_annotations.h"

namespace ctxloop {

class ABSL_LOCKABLE Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }
  bool TryLock() ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true) {
    return mu_.try_lock();
  }
  // Tells the analysis the caller holds the lock where it cannot prove it
  // (e.g. inside a condition-variable predicate).
  void AssertHeld() const ABSL_ASSERT_EXCLUSIVE_LOCK() {}

 private:
  friend class CondVar;
  std::mutex mu_;
};

// Holds `*mu` for its scope.
class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_->Lock();
  }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

// A condition variable used with `Mutex`. `Wait*` must be called with the
// mutex held (as the annotations require); they return with it held.
class CondVar {
 public:
  void Wait(Mutex* mu) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    cv_.wait(lock);
    lock.release();  // Still held: ownership stays with the caller.
  }
  // False on timeout.
  template <typename Rep, typename Period>
  bool WaitFor(Mutex* mu, std::chrono::duration<Rep, Period> timeout)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    const bool woken =
        cv_.wait_for(lock, timeout) == std::cv_status::no_timeout;
    lock.release();
    return woken;
  }
  template <typename Clock, typename Duration>
  bool WaitUntil(Mutex* mu, std::chrono::time_point<Clock, Duration> deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    const bool woken =
        cv_.wait_until(lock, deadline) == std::cv_status::no_timeout;
    lock.release();
    return woken;
  }
  void Signal() { cv_.notify_one(); }
  void SignalAll() { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

}  // namespace ctxloop

#endif  // CTXLOOP_LOOP_MUTEX_H_
