// Copyright 2026 The ctxloop Authors.
//
// Internal. The loop thread's own post path, inline in `Post`'s template
// (loop.h): `LocalPoster` is the part of a loop that a same-thread post
// touches (the ready queue, which contexts accept posts, whether a batch is
// scheduled), and a per-thread cache names the loop the calling thread last
// posted to as its owner.
//
// The owner check without a registry lookup: the cache holds the handle key
// (loop slot and generation) of a loop that `LoopRegistry::FindOwned` found
// owned by this thread (so the never-reused thread tag of [S14] stays the
// identity), with the value of `g_owner_epoch` read before that lookup. Every
// `LoopRegistry::Unregister` and every change of a loop's owner thread
// (`LoopCore::BecomeOwner`) increments the epoch, so a cached entry is used
// only while no loop anywhere went away or changed hands since it was filled:
// a stale or foreign handle never reaches a destroyed `LocalPoster`. A miss
// takes the out-of-line path, which looks the loop up and refills the cache.
//
// Cost of a same-thread post that hits: a thread-local compare, one relaxed
// load of the epoch, a bounds-checked load of the context's generation, the
// queue append, and two flag tests.
//
// Thread-safety: `LocalPoster` is owner-thread only (its loop's thread, or the
// thread its destructor runs on); the cache is per thread; `g_owner_epoch` is
// any thread.

#ifndef CTXLOOP_LOOP_INTERNAL_LOCAL_POST_H_
#define CTXLOOP_LOOP_INTERNAL_LOCAL_POST_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/base/optimization.h"
#include "absl/functional/any_invocable.h"
#include "ctxloop/loop/context_handle.h"
#include "ctxloop/loop/internal/handle_access.h"
#include "ctxloop/loop/internal/ready_queue.h"

struct event;

namespace ctxloop {
namespace loop_internal {

class LoopCore;

// Incremented when a loop is unregistered or changes owner thread; starts at
// 1 so an unfilled cache (epoch 0) never matches.
inline std::atomic<uint64_t> g_owner_epoch{1};

inline void InvalidateOwnerCaches() {
  g_owner_epoch.fetch_add(1, std::memory_order_acq_rel);
}

class LocalPoster {
 public:
  explicit LocalPoster(LoopCore* core) : core_(core) {}

  LoopCore* core() const { return core_; }

  // True if `ctx` (of this loop) names a live context that is not closing,
  // on a loop that is not closed: exactly when a same-thread post is
  // accepted.
  bool Accepts(ContextHandle ctx) const {
    const uint32_t index = HandleAccess::ContextIndex(ctx);
    return index < accepting_.size() &&
           accepting_[index] == HandleAccess::ContextGeneration(ctx);
  }
  // Context `index` accepts posts while its generation is `generation`.
  void Open(uint32_t index, uint32_t generation) {
    if (index >= accepting_.size()) accepting_.resize(index + 1, 0);
    accepting_[index] = generation;
  }
  void Close(uint32_t index) {
    if (index < accepting_.size()) accepting_[index] = 0;
  }
  void CloseAll() { accepting_.clear(); }

  // Queues `f` for `ctx` (accepted: see `Accepts`) and makes sure a batch
  // will run it.
  template <typename F>
  void Emplace(ContextHandle ctx, F&& f) {
    ready_.Emplace(ctx, std::forward<F>(f));
    if (ABSL_PREDICT_FALSE(!batch_scheduled_ && !in_batch_)) ScheduleBatch();
  }

  ReadyQueue& ready() { return ready_; }
  const ReadyQueue& ready() const { return ready_; }
  bool batch_scheduled() const { return batch_scheduled_; }
  bool in_batch() const { return in_batch_; }
  void set_batch_scheduled(bool v) { batch_scheduled_ = v; }
  void set_in_batch(bool v) { in_batch_ = v; }
  void set_batch_event(event* ev) { batch_event_ = ev; }

  // Schedules a batch (one `event_active`) unless one is scheduled or
  // running; inside a batch, RunBatch schedules what was posted when it ends.
  void ScheduleBatch();

 private:
  LoopCore* const core_;
  ReadyQueue ready_;
  // By context index: the generation of a live, open context, else 0 (no
  // user context has generation 0). Empty once the loop is closed.
  std::vector<uint32_t> accepting_;
  bool batch_scheduled_ = false;
  bool in_batch_ = false;  // RunBatch is running tasks.
  event* batch_event_ = nullptr;
};

struct OwnerCache {
  uint64_t key = ~uint64_t{0};  // No handle has this key.
  uint64_t epoch = 0;
  LocalPoster* poster = nullptr;
};

inline OwnerCache& ThisThreadOwnerCache() {
  static thread_local OwnerCache cache;  // Constant-initialized: no guard.
  return cache;
}

inline uint64_t OwnerKey(ContextHandle ctx) {
  return (uint64_t{HandleAccess::LoopGeneration(ctx)} << 32) |
         HandleAccess::LoopSlot(ctx);
}

// The loop of `ctx` if the cache says this thread owns it; null on a miss
// (which proves nothing: use `FindLocalPoster`).
inline LocalPoster* CachedLocalPoster(ContextHandle ctx) {
  const OwnerCache& cache = ThisThreadOwnerCache();
  if (ABSL_PREDICT_TRUE(cache.key == OwnerKey(ctx) &&
                        cache.epoch ==
                            g_owner_epoch.load(std::memory_order_acquire))) {
    return cache.poster;
  }
  return nullptr;
}

// The loop of `ctx` if this thread owns it and it is alive (as
// `LoopRegistry::FindOwned`), refilling the cache; null otherwise.
LocalPoster* FindLocalPosterSlow(ContextHandle ctx);
inline LocalPoster* FindLocalPoster(ContextHandle ctx) {
  if (LocalPoster* p = CachedLocalPoster(ctx)) return p;
  return FindLocalPosterSlow(ctx);
}

// Whether `f` is an empty callable (a null function pointer, an empty
// `AnyInvocable` or `std::function`); false for every other type.
template <typename T>
struct IsNullableCallable : std::false_type {};
template <typename Sig>
struct IsNullableCallable<absl::AnyInvocable<Sig>> : std::true_type {};
template <typename Sig>
struct IsNullableCallable<std::function<Sig>> : std::true_type {};

template <typename F>
bool IsEmptyCallable(const F& f) {
  using T = std::decay_t<F>;
  if constexpr (std::is_pointer_v<T> || std::is_member_pointer_v<T>) {
    return f == nullptr;
  } else if constexpr (IsNullableCallable<T>::value) {
    return !f;
  } else {
    return false;
  }
}

}  // namespace loop_internal
}  // namespace ctxloop

#endif  // CTXLOOP_LOOP_INTERNAL_LOCAL_POST_H_
