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
#include "absl/status/status.h"
#include "ctxloop/loop/context_handle.h"
#include "ctxloop/loop/internal/handle_access.h"
#include "ctxloop/loop/internal/ready_queue.h"
#include "ctxloop/loop/task.h"

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
  // Driven mode (Loop::BackendFd), outside RunReady: the eventfd that
  // ScheduleBatch writes so the backend fd shows a batch scheduled from
  // outside a pass; -1 otherwise (always, for a loop run by Run()).
  void set_kick_fd(int fd) { kick_fd_ = fd; }
  int kick_fd() const { return kick_fd_; }

 private:
  LoopCore* const core_;
  ReadyQueue ready_;
  // By context index: the generation of a live, open context, else 0 (no
  // user context has generation 0). Empty once the loop is closed.
  std::vector<uint32_t> accepting_;
  bool batch_scheduled_ = false;
  bool in_batch_ = false;  // RunBatch is running tasks.
  event* batch_event_ = nullptr;
  int kick_fd_ = -1;
};

struct OwnerCache {
  uint64_t key = ~uint64_t{0};  // No handle has this key.
  uint64_t epoch = 0;
  LocalPoster* poster = nullptr;
  LoopCore* core = nullptr;  // `poster->core()`, one load nearer.
};

inline OwnerCache& ThisThreadOwnerCache() {
  static thread_local OwnerCache cache;  // Constant-initialized: no guard.
  return cache;
}

// The loop part of a handle (its slot and generation) as one 64-bit key.
inline uint64_t OwnerKey(uint32_t loop_slot, uint32_t loop_generation) {
  return (uint64_t{loop_generation} << 32) | loop_slot;
}
inline uint64_t OwnerKey(ContextHandle ctx) {
  return OwnerKey(HandleAccess::LoopSlot(ctx),
                  HandleAccess::LoopGeneration(ctx));
}

// True if this thread's cache entry names the loop of `key` and no loop went
// away or changed hands since it was filled.
inline bool OwnerCacheHit(const OwnerCache& cache, uint64_t key) {
  return cache.key == key &&
         cache.epoch == g_owner_epoch.load(std::memory_order_acquire);
}

// The loop of `key` if the cache says this thread owns it; null on a miss
// (which proves nothing: use `FindLocalPoster`).
inline LocalPoster* CachedLocalPoster(uint64_t key) {
  const OwnerCache& cache = ThisThreadOwnerCache();
  return ABSL_PREDICT_TRUE(OwnerCacheHit(cache, key)) ? cache.poster : nullptr;
}
inline LocalPoster* CachedLocalPoster(ContextHandle ctx) {
  return CachedLocalPoster(OwnerKey(ctx));
}

// `CachedLocalPoster(key)->core()` without the hop through the poster.
inline LoopCore* CachedOwnedCore(uint64_t key) {
  const OwnerCache& cache = ThisThreadOwnerCache();
  return ABSL_PREDICT_TRUE(OwnerCacheHit(cache, key)) ? cache.core : nullptr;
}

// The loop `(loop_slot, loop_generation)` if this thread owns it and it is
// alive (exactly as `LoopRegistry::FindOwned`: including while it drains
// during shutdown), refilling the cache; null otherwise. Every owner-thread
// check goes through here, so the loop thread's hot paths never read the
// registry slot that foreign posters pin (no shared cache line).
LocalPoster* FindLocalPosterSlow(uint32_t loop_slot, uint32_t loop_generation);
inline LocalPoster* FindLocalPoster(uint32_t loop_slot,
                                    uint32_t loop_generation) {
  if (LocalPoster* p =
          CachedLocalPoster(OwnerKey(loop_slot, loop_generation))) {
    return p;
  }
  return FindLocalPosterSlow(loop_slot, loop_generation);
}
inline LocalPoster* FindLocalPoster(ContextHandle ctx) {
  return FindLocalPoster(HandleAccess::LoopSlot(ctx),
                         HandleAccess::LoopGeneration(ctx));
}

struct IngressNode;

// A post from a thread that does not own the loop, in three steps, so that
// `Post`'s template builds the callable in the ingress node itself (no `Task`
// moved, no manager call but the construction), and so that no user code
// runs while the loop is pinned:
//
//   ForeignPostSlot slot;                              // a node; no pin
//   ::new (slot.task_storage()) Task(std::move(f));    // user code; no pin
//   bool general;
//   absl::Status s = slot.Commit(ctx, &general);       // pin, push, unpin
//   if (!general) return s;
//   // else: the general path, with `slot.TakeTask()`.
//
// The constructor takes a node from this thread's node cache (no loop is
// touched). `Commit` pins `ctx`'s loop, checks that its accept table accepts
// `ctx` (and, for a user post, that the loop's pending cross-thread work is
// under its bound), pushes, and unpins; only then, on a refusal, is the task
// destroyed (so a task's destructor, like its move constructor, never runs
// while a pin is held: `DestroyContext` and shutdown wait for pins). It
// sets `*general` (and returns OK, keeping the task) for a loop this thread
// owns or one that is gone or shutting down (closed to foreign threads):
// the caller then takes the task back with `TakeTask` and takes the general
// path. If building the task throws, the destructor returns the node.
//
// The node's task storage holds an empty `Task` (every pooled node's task is
// empty), whose lifetime the placement new ends: an empty `Task` holds
// nothing to destroy.
//
// Thread-safety: any thread; one slot per call.
class ForeignPostSlot {
 public:
  ForeignPostSlot();
  ForeignPostSlot(const ForeignPostSlot&) = delete;
  ForeignPostSlot& operator=(const ForeignPostSlot&) = delete;
  ~ForeignPostSlot() {
    if (ABSL_PREDICT_FALSE(node_ != nullptr)) Abandon();
  }

  // Where to build the task.
  void* task_storage() const { return task_; }
  // After the task is built: queues it on `ctx`'s loop. OK, or the error of
  // a refused post, with the task destroyed here (after the pin ended); or
  // `*general` (see above).
  // `bounded`: false for the library's own posts that skip the loop's bound
  // on pending cross-thread work (`PostNeverFull`).
  absl::Status Commit(ContextHandle ctx, bool* general, bool bounded = true);
  // After `Commit` set `*general`: the task, out of the node (which goes
  // back to this thread's cache).
  Task TakeTask();

 private:
  void Abandon();

  IngressNode* node_;
  void* task_;
};

// The general path of a post that is not a foreign one (`ForeignPostSlot`
// set `*general`): the owner thread with a cold cache, or a loop closed to
// foreign threads (shutting down: its owner still posts while it drains), or
// gone. On error `task` is destroyed before it returns.
absl::Status PostGeneral(ContextHandle ctx, Task task);

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
