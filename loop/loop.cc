// Copyright 2026 The ctxloop Authors.

#include "ctxloop/loop/loop.h"

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <memory>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "ctxloop/loop/internal/handle_access.h"
#include "ctxloop/loop/internal/loop_core.h"
#include "ctxloop/loop/internal/loop_registry.h"
#include "ctxloop/loop/internal/owned_core.h"
#include "ctxloop/loop/internal/test_hooks.h"
#include "ctxloop/loop/mutex.h"

namespace ctxloop {

using loop_internal::HandleAccess;
using loop_internal::LoopCore;
using loop_internal::LoopRegistry;

namespace {

std::unique_ptr<LoopCore> CreateOrDie(Loop::Options options) {
  absl::StatusOr<std::unique_ptr<LoopCore>> core =
      LoopCore::Create(std::move(options));
  if (!core.ok()) {
    std::fprintf(stderr, "ctxloop: cannot create a Loop: %s\n",
                 core.status().ToString().c_str());
    std::abort();
  }
  return *std::move(core);
}

}  // namespace

Loop::Loop() : Loop(Options()) {}
Loop::Loop(Options options) : core_(CreateOrDie(std::move(options))) {}
Loop::Loop(std::unique_ptr<LoopCore> core) : core_(std::move(core)) {}
Loop::~Loop() = default;

absl::StatusOr<std::unique_ptr<Loop>> Loop::Create() {
  return Create(Options());
}

absl::StatusOr<std::unique_ptr<Loop>> Loop::Create(Options options) {
  absl::StatusOr<std::unique_ptr<LoopCore>> core =
      LoopCore::Create(std::move(options));
  if (!core.ok()) return core.status();
  return std::unique_ptr<Loop>(new Loop(*std::move(core)));
}

ContextHandle Loop::root() const { return core_->root(); }

absl::StatusOr<ContextHandle> Loop::NewContext(absl::string_view name) {
  if (!core_->IsOwnerThread()) {
    return absl::FailedPreconditionError(
        "NewContext must be called on the loop thread");
  }
  return core_->NewContext(name, nullptr);
}

absl::StatusOr<ContextHandle> Loop::NewChildContext(ContextHandle parent,
                                                    absl::string_view name) {
  if (!core_->IsOwnerThread()) {
    return absl::FailedPreconditionError(
        "NewChildContext must be called on the loop thread");
  }
  return core_->NewContext(name, &parent);
}

namespace {

// The members below act on this loop only; a live handle of another loop
// (even one owned by the same thread) is a caller's mistake.
absl::Status CheckSameLoop(const LoopCore& core, ContextHandle ctx,
                           absl::string_view what) {
  if (!ctx.is_null() &&
      (HandleAccess::LoopSlot(ctx) != core.slot_index() ||
       HandleAccess::LoopGeneration(ctx) != core.generation())) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": ", ctx.DebugString(), " belongs to another loop"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status Loop::DestroyContext(ContextHandle ctx) {
  if (absl::Status s = CheckSameLoop(*core_, ctx, "DestroyContext"); !s.ok()) {
    return s;
  }
  return ctxloop::DestroyContext(ctx);
}

absl::StatusOr<std::string> Loop::ContextName(ContextHandle ctx) const {
  if (absl::Status s = CheckSameLoop(*core_, ctx, "ContextName"); !s.ok()) {
    return s;
  }
  absl::StatusOr<LoopCore*> core = loop_internal::OwnedCore(ctx, "ContextName");
  if (!core.ok()) return core.status();
  return (*core)->ContextName(ctx);
}

absl::StatusOr<FdWatch> Loop::WatchFd(ContextHandle ctx, int fd,
                                      FdEvents events, FdCallback callback,
                                      FdWatchOptions options) {
  absl::StatusOr<LoopCore*> core = loop_internal::OwnedCore(ctx, "WatchFd");
  if (!core.ok()) return core.status();
  if (*core != core_.get()) {
    return absl::InvalidArgumentError("WatchFd: context of another loop");
  }
  return core_->WatchFd(ctx, fd, events, std::move(callback), options);
}

absl::Status Loop::Run() { return core_->Run(/*until_idle=*/false); }
absl::Status Loop::RunUntilIdle() { return core_->Run(/*until_idle=*/true); }
void Loop::Stop() { core_->Stop(); }
bool Loop::IsOnLoopThread() const { return core_->IsOwnerThread(); }
LoopStats Loop::stats() const { return core_->stats(); }
absl::StatusOr<ShutdownReport> Loop::Shutdown() { return core_->Shutdown(); }
event_base* Loop::base() const { return core_->base(); }
absl::StatusOr<int> Loop::BackendFd() { return core_->BackendFd(); }
absl::Duration Loop::BackendTimeout() const { return core_->BackendTimeout(); }
absl::Status Loop::RunReady() { return core_->RunReady(); }

int Loop::TimeoutMs(absl::Duration d) {
  if (d == absl::InfiniteDuration()) return -1;
  if (d <= absl::ZeroDuration()) return 0;
  const int64_t ms =
      absl::ToInt64Milliseconds(absl::Ceil(d, absl::Milliseconds(1)));
  return ms > INT_MAX ? INT_MAX : static_cast<int>(ms);
}

// --- Handle-based operations -------------------------------------------------

namespace loop_internal {

LocalPoster* FindLocalPosterSlow(uint32_t loop_slot, uint32_t loop_generation) {
  if (loop_generation == 0) return nullptr;  // A null handle.
  // The epoch first: if a loop goes away or changes hands after this read,
  // the entry below is never used.
  const uint64_t epoch = g_owner_epoch.load(std::memory_order_acquire);
  LoopCore* core = LoopRegistry::FindOwned(loop_slot, loop_generation);
  if (core == nullptr) return nullptr;
  OwnerCache& cache = ThisThreadOwnerCache();
  cache.key = OwnerKey(loop_slot, loop_generation);
  cache.epoch = epoch;
  cache.poster = &core->local_poster();
  cache.core = core;
  return cache.poster;
}

}  // namespace loop_internal

absl::Status Post(ContextHandle ctx, Task task) {
  if (ctx.is_null()) return absl::InvalidArgumentError("Post: null context");
  if (!task) return absl::InvalidArgumentError("Post: null task");
  if (loop_internal::LocalPoster* poster =
          loop_internal::CachedLocalPoster(ctx)) {
    return poster->core()->PostLocal(ctx, std::move(task));
  }
  // Not known to be this thread's loop: a foreign post (local_post.h) pins
  // (after the task moved into its node: no user code runs under a pin). The
  // pin is the liveness check: shutdown closes the slot to pins [S5] and
  // cannot finish while one is held [S11]; and the slot's owner tag is on
  // the cache line the pin just wrote, so telling a foreign thread from the
  // owner costs no registry lookup of its own.
  // ingress.pml: Poster (P3 the node first, then P1, P2, P4-P8)
  loop_internal::ForeignPostSlot slot;
  ::new (slot.task_storage()) Task(std::move(task));
  bool general;
  absl::Status s = slot.Commit(ctx, &general);
  if (!general) return s;
  return loop_internal::PostGeneral(ctx, slot.TakeTask());
}

namespace loop_internal {

absl::Status PostGeneral(ContextHandle ctx, Task task) {
  // The owner thread with a cold cache, or a loop closed to foreign threads:
  // shutting down (its owner still posts while it drains [S1] [S2]) or gone.
  if (LocalPoster* poster = FindLocalPosterSlow(
          HandleAccess::LoopSlot(ctx), HandleAccess::LoopGeneration(ctx))) {
    return poster->core()->PostLocal(ctx, std::move(task));
  }
  return absl::FailedPreconditionError(  // [S5] [S8]
      absl::StrCat("cannot post to ", ctx.DebugString(),
                   ": its loop is shut down, shutting down or destroyed"));
}

}  // namespace loop_internal

absl::StatusOr<DelayedTaskHandle> PostDelayed(ContextHandle ctx,
                                              absl::Duration delay, Task task) {
  if (ctx.is_null()) {
    return absl::InvalidArgumentError("PostDelayed: null context");
  }
  if (!task) return absl::InvalidArgumentError("PostDelayed: null task");
  const uint32_t slot = HandleAccess::LoopSlot(ctx);
  const uint32_t gen = HandleAccess::LoopGeneration(ctx);
  if (loop_internal::LocalPoster* poster =
          loop_internal::FindLocalPoster(slot, gen)) {
    return poster->core()->PostDelayedOwned(ctx, delay, std::move(task));
  }
  // Another thread's loop (or one that is gone): the deadline counts from
  // the call; on error `task` is destroyed before this returns.
  const int64_t delay_ns =
      delay > absl::ZeroDuration() ? absl::ToInt64Nanoseconds(delay) : 0;
  const int64_t now = loop_internal::MonotonicNowNs();
  // Saturates: a huge delay must not overflow into a past deadline.
  const int64_t deadline = delay_ns > std::numeric_limits<int64_t>::max() - now
                               ? std::numeric_limits<int64_t>::max()
                               : now + delay_ns;
  return LoopCore::PostDelayedForeign(ctx, deadline, std::move(task));
}

absl::Status WaitForRoom(ContextHandle ctx, absl::Time deadline) {
  if (ctx.is_null()) {
    return absl::InvalidArgumentError("WaitForRoom: null context");
  }
  const uint32_t slot = HandleAccess::LoopSlot(ctx);
  const uint32_t gen = HandleAccess::LoopGeneration(ctx);
  // The loop thread's own posts are never refused (and it must not block).
  if (loop_internal::FindLocalPoster(slot, gen) != nullptr) {
    return absl::OkStatus();
  }
  const auto gone = [&ctx] {
    return absl::FailedPreconditionError(
        absl::StrCat("WaitForRoom on ", ctx.DebugString(),
                     ": its loop is shut down, shutting down or destroyed"));
  };
  for (;;) {
    uint64_t unit;
    // ingress.pml: W1 (pin)
    LoopCore* core = LoopRegistry::Pin(slot, gen, &unit);
    if (core == nullptr) return gone();
    // Copied while pinned: the signal outlives the loop, so the wait below
    // holds no pin.
    std::shared_ptr<loop_internal::RoomSignal> room = core->room_signal();
    // Registered before the count is read (see RoomSignal).
    // ingress.pml: W2 (register), W3 (epoch), W4 (HasRoom), W5 (unpin)
    room->waiters.fetch_add(1, std::memory_order_seq_cst);
    uint64_t epoch;
    {
      MutexLock lock(&room->mu);
      epoch = room->epoch;
    }
    const bool has_room = core->HasRoom();
    LoopRegistry::Unpin(slot, unit);
    absl::Cleanup unregister = [&room] {
      room->waiters.fetch_sub(1, std::memory_order_seq_cst);
    };
    if (has_room) return absl::OkStatus();
    MutexLock lock(&room->mu);
    // ingress.pml: W6 (wait for an epoch change or the close)
    while (room->epoch == epoch && !room->closed) {
      if (deadline == absl::InfiniteFuture()) {
        room->cv.Wait(&room->mu);
      } else if (!room->cv.WaitUntil(&room->mu, absl::ToChronoTime(deadline))) {
        if (room->epoch != epoch || room->closed) break;
        return absl::DeadlineExceededError(
            absl::StrCat("WaitForRoom on ", ctx.DebugString(), ": still full"));
      }
    }
    if (room->closed) return gone();
    // Woken at the low-water mark: check again (another producer may have
    // taken the room meanwhile).
  }
}

bool Cancel(const DelayedTaskHandle& handle) {
  if (handle.loop_generation_ == 0) return false;
  if (loop_internal::LocalPoster* poster = loop_internal::FindLocalPoster(
          handle.loop_slot_, handle.loop_generation_)) {
    return poster->core()->CancelOwned(handle);
  }
  uint64_t unit;
  LoopCore* core =
      LoopRegistry::Pin(handle.loop_slot_, handle.loop_generation_, &unit);
  if (core == nullptr) return false;  // [S9]
  const bool cancelled = core->CancelPinned(handle);
  LoopRegistry::Unpin(handle.loop_slot_, unit);
  loop_internal::TestHooks::Run(loop_internal::TestHooks::after_foreign_unlock);
  return cancelled;
}

ContextHandle RootOf(ContextHandle ctx) {
  if (ctx.is_null()) return ctx;
  // The root is index 0, generation 1, for the loop's whole life.
  return HandleAccess::Make(HandleAccess::LoopSlot(ctx),
                            HandleAccess::LoopGeneration(ctx), 0, 1);
}

bool IsOnLoopThread(ContextHandle ctx) {
  return !ctx.is_null() && loop_internal::FindLocalPoster(ctx) != nullptr;
}

absl::StatusOr<ContextHandle> NewChildContext(ContextHandle parent,
                                              absl::string_view name) {
  absl::StatusOr<LoopCore*> core =
      loop_internal::OwnedCore(parent, "NewChildContext");
  if (!core.ok()) return core.status();
  return (*core)->NewContext(name, &parent);
}

absl::Status DestroyContext(ContextHandle ctx) {
  absl::StatusOr<LoopCore*> core =
      loop_internal::OwnedCore(ctx, "DestroyContext");
  if (!core.ok()) return core.status();
  return (*core)->DestroyContext(ctx);
}

absl::StatusOr<DestroyHookId> AddDestroyHook(ContextHandle ctx, Task hook) {
  if (ctx.is_null()) {
    return absl::InvalidArgumentError("AddDestroyHook: null context");
  }
  if (!hook) return absl::InvalidArgumentError("AddDestroyHook: empty hook");
  absl::StatusOr<LoopCore*> core =
      loop_internal::OwnedCore(ctx, "AddDestroyHook");
  if (!core.ok()) return core.status();
  return (*core)->AddDestroyHook(ctx, std::move(hook));
}

absl::Status RemoveDestroyHook(ContextHandle ctx, DestroyHookId id) {
  if (ctx.is_null()) {
    return absl::InvalidArgumentError("RemoveDestroyHook: null context");
  }
  if (LoopCore* core = loop_internal::FindOwnedCore(ctx)) {
    return core->RemoveDestroyHook(ctx, id);
  }
  // A loop that exists (even shutting down) and is not ours: wrong thread.
  // Only the message depends on this racy look; both answers are errors.
  const loop_internal::LoopSlot* slot =
      LoopRegistry::Find(HandleAccess::LoopSlot(ctx));
  if (slot != nullptr &&
      loop_internal::LoopSlot::GenerationOf(slot->state.load()) ==
          HandleAccess::LoopGeneration(ctx) &&
      slot->core.load() != nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("RemoveDestroyHook on ", ctx.DebugString(),
                     " called from a thread that is not its loop thread"));
  }
  // The loop is gone: its shutdown ran every hook.
  return absl::NotFoundError(
      absl::StrCat("RemoveDestroyHook on ", ctx.DebugString(),
                   ": its loop is shut down; its hooks ran"));
}

// --- FdWatch -----------------------------------------------------------------

FdWatch::FdWatch(uint32_t loop_slot, uint32_t loop_generation, uint64_t id,
                 std::shared_ptr<loop_internal::WatchControl> control)
    : loop_slot_(loop_slot),
      loop_generation_(loop_generation),
      id_(id),
      control_(std::move(control)) {}

FdWatch::FdWatch(FdWatch&& other) noexcept
    : loop_slot_(other.loop_slot_),
      loop_generation_(other.loop_generation_),
      id_(std::exchange(other.id_, 0)),
      control_(std::move(other.control_)) {}

FdWatch& FdWatch::operator=(FdWatch&& other) noexcept {
  if (this != &other) {
    Stop();
    loop_slot_ = other.loop_slot_;
    loop_generation_ = other.loop_generation_;
    id_ = std::exchange(other.id_, 0);
    control_ = std::move(other.control_);
  }
  return *this;
}

void FdWatch::Stop() {
  const uint64_t id = std::exchange(id_, 0);
  std::shared_ptr<loop_internal::WatchControl> control = std::move(control_);
  if (id == 0) return;
  if (loop_internal::LocalPoster* poster =
          loop_internal::FindLocalPoster(loop_slot_, loop_generation_)) {
    poster->core()->StopWatch(id);  // Loop thread: at once, never waits.
    return;
  }
  // [S13] Another thread: no call may start from here on...
  control->stopped.store(true);
  uint64_t unit;
  if (LoopCore* core = LoopRegistry::Pin(loop_slot_, loop_generation_, &unit)) {
    core->StopWatch(id);  // Posts the unregistration to the loop thread.
    LoopRegistry::Unpin(loop_slot_, unit);
    loop_internal::TestHooks::Run(
        loop_internal::TestHooks::after_foreign_unlock);
  }
  // (otherwise the loop is gone or shutting down, and closes the watch
  // itself [S6])... and a call already running is waited for.
  control->WaitForCallback();
}

bool FdWatch::active() const {
  if (id_ == 0) return false;
  const loop_internal::LocalPoster* poster =
      loop_internal::FindLocalPoster(loop_slot_, loop_generation_);
  return poster != nullptr && poster->core()->WatchActive(id_);
}

}  // namespace ctxloop
