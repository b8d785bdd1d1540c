// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/examples/annotated_mutex.h
// -----------------------------------------------------------------------------
//
// `Mutex`, `MutexLock` and `CondVar` for the examples: `std::mutex` and
// `std::condition_variable` with Clang thread-safety annotations. A host
// program may copy this file; it is not part of ctxloop's API (ctxloop's
// own, `ctxloop::Mutex`, is internal, and the examples use
// only what a host can: public headers, Abseil and the standard library).
//
// Why not `absl::Mutex`: Debian's Abseil is a shared library built without
// ThreadSanitizer instrumentation, so TSan cannot see its synchronization
// and reports false races. `std::mutex` is intercepted by TSan, but
// libstdc++ does not annotate it, so `-Wthread-safety` cannot check members
// guarded by it. These wrappers give both: TSan sees pthread mutexes, and
// clang checks every `ABSL_GUARDED_BY(mu_)` member and every
// `ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_)` function.
//
//   mutable examples::Mutex mu_;
//   int count_ ABSL_GUARDED_BY(mu_) = 0;
//   void Add() {
//     examples::MutexLock lock(&mu_);
//     ++count_;
//   }
//
// Cost: exactly a `std::mutex` / `std::condition_variable` (all inline).
//
// Thread-safety: these are the synchronization primitives themselves.

#ifndef CTXLOOP_EXAMPLES_ANNOTATED_MUTEX_H_
#define CTXLOOP_EXAMPLES_ANNOTATED_MUTEX_H_

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "absl/base/thread_annotations.h"

namespace ctxloop {
namespace examples {

class ABSL_LOCKABLE Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }

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

// A condition variable used with `Mutex`: `WaitUntil` must be called with
// the mutex held (the annotation requires it) and returns with it held.
class CondVar {
 public:
  // False on timeout.
  template <typename Clock, typename Duration>
  bool WaitUntil(Mutex* mu, std::chrono::time_point<Clock, Duration> deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    const bool woken =
        cv_.wait_until(lock, deadline) == std::cv_status::no_timeout;
    lock.release();  // Still held: ownership stays with the caller.
    return woken;
  }
  void SignalAll() { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

}  // namespace examples
}  // namespace ctxloop

#endif  // CTXLOOP_EXAMPLES_ANNOTATED_MUTEX_H_
