// Copyright 2026 The ctxloop Authors.
//
// The loop core, split by job (each file states its threading rule at the
// top): this file builds and destroys the core, answers who owns it and
// which contexts exist, and drives it (Run, Stop); loop_ready_queue.cc runs
// the loop thread's own tasks; loop_ingress.cc is everything that comes in
// from other threads; loop_timers.cc the delayed tasks; loop_contexts.cc the
// contexts, their values and destroy hooks; loop_fd_watches.cc the fd
// watches; loop_shutdown.cc the drain and shutdown. Threading rule here:
// owner thread, except `Stop()` (any thread, see [S12]) and `IsOwnerThread`.
//
// Shutdown and destruction cases. Each is referenced as [Sn] where it is
// handled and has a test in loop_shutdown_test.cc unless named otherwise.
//
//  [S1] A task posted (from any thread) and not yet run when `Shutdown()`
//       starts runs during the drain, on the loop thread, with its handle
//       still valid. It is not dropped and does not run anywhere else.
//  [S2] A task posted on the loop thread by a task running in the drain runs
//       in the same drain (a later round).
//  [S3] Tasks still being posted after `Options::max_shutdown_rounds` rounds
//       (one budget for every drain of the shutdown: [S1]/[S2], after the
//       hooks [S10] and after the watch teardown [S6]; a task that reposts
//       itself forever) are destroyed unrun on the loop
//       thread, counted in `ShutdownReport::tasks_dropped` and reported once
//       to the error handler. The loop is closed to every post before they
//       are destroyed, so a destructor that posts is refused (trace finishes
//       then deliver where they are, see trace/scope.cc [F3]). The
//       destructor therefore always terminates.
//  [S4] Delayed tasks that have not fired (also those posted from other
//       threads, which are timers once the ingress is taken) are destroyed
//       unrun on the loop thread when the drain starts and counted in
//       `delayed_dropped` (the loop claims each first; one whose claim a
//       foreign Cancel won counts as cancelled); `Cancel` on them returns
//       false. `PostDelayed` during the drain is refused.
//  [S5] A cross-thread `Post` racing with shutdown either pinned the loop
//       before shutdown closed the registry slot (shutdown waits for those
//       pins, so the task is in the foreign ingress before shutdown closes
//       the ingress with one exchange, and runs in the drain under [S1]) or
//       its pin fails and it returns kFailedPrecondition, its task destroyed
//       on the posting thread before `Post` returns. Every other foreign call
//       (PostDelayed, Cancel, Stop, Stop of a watch) pins the loop the same
//       way. Nothing runs on a foreign thread; no post is half done.
//  [S6] Fd watches still registered after the drain and the hooks are
//       unregistered, their callbacks destroyed on the loop thread and owned
//       fds closed. Tasks those destructors post (and tasks dropped delayed
//       tasks post when destroyed, [S4]) are accepted and run in a further
//       drain, within the [S3] budget; only then does the loop close to every
//       post, so every accepted task runs or is counted in `tasks_dropped`.
//       Context values are destroyed after the close: what they post is
//       refused. `FdWatch` objects that outlive the loop are inert: `Stop()`
//       finds the loop gone.
//  [S7] `DestroyContext` with tasks pending for that context: the context
//       closes to new posts, the pending tasks (local and cross-thread, all
//       queued before the close) run first with the handle valid, then a
//       marker task frees the record and the handle goes stale. Its delayed
//       tasks are cancelled and its watches stopped at once. A foreign post
//       racing the close is exact: DestroyContext closes the context in the
//       foreign accept table, then waits for the pins taken before that
//       (LoopRegistry::WaitForEarlierPins), so a post that saw the context
//       open has pushed before the close takes the ingress, and runs before
//       the marker. (ingress_test.cc)
//  [S8] After shutdown every handle of the loop is stale: `Post` and
//       `PostDelayed` return kFailedPrecondition, `ContextKey` operations
//       kFailedPrecondition, `Cancel` false. The registry slot is never freed,
//       so this check is defined even after the `Loop` object is gone.
//  [S9] A cross-thread `Cancel` or `FdWatch::Stop` racing shutdown pins the
//       loop: if the pin fails, shutdown has dropped (S4) or closed (S6) the
//       target already; if it succeeds, the cancelled task is handed to the
//       loop thread for destruction and is destroyed by the drain.
// [S10] Destroy hooks (`AddDestroyHook`) run once, on the loop thread, with
//       their context's handle valid: for `DestroyContext`, in the marker
//       task of [S7], after the tasks posted before the close; at shutdown,
//       for every context still alive, after the drain of [S1]-[S3] and
//       before [S6]. What a hook posts is drained (or, past the round budget,
//       dropped and counted as in [S3]); a context whose hooks ran refuses new
//       hooks, and after the hook phase every `AddDestroyHook` is refused.
//       Hooks still being added when the round budget runs out are destroyed
//       unrun, counted in `tasks_dropped` and reported.
//       (destroy_hook_test.cc)
// [S11] A foreign thread that queued into a loop (a `Post`, a delayed post, a
//       cancelled task's destruction, an `FdWatch::Stop`, a `Stop`) is done
//       with the loop when it unpins: the push, the eventfd write and the
//       counter update happen while it holds the pin, and shutdown cannot
//       finish while a pin is held, so destroying a loop while other threads
//       post (e.g. a busy `LoopThread`) is safe. (loop_race_test.cc)
// [S12] A foreign `Loop::Stop()` sets the flag, then pushes a stop node on
//       the foreign ingress like a post (waking the loop if it armed the
//       ingress); the take that finds the node sees the flag, so the stop is
//       never lost to concurrent posts. (loop_race_test.cc, ingress_test.cc)
// [S13] A foreign `FdWatch::Stop()` (or destruction) waits until the watch's
//       callback is not running, and the callback is never called after it
//       returned; the unregistration is posted to the loop thread (or done by
//       [S6] if shutdown got there first). Stop on the loop thread, also from
//       inside the callback, never waits. (loop_race_test.cc)
// [S14] The loop thread is known by a per-thread tag drawn once from a
//       64-bit counter, never by `pthread_self()`: a thread that reuses a
//       joined loop thread's id is a foreign thread. (loop_race_test.cc)
// [S15] After `DestroyContext(ctx)` everything *new* on ctx is refused at
//       once with kFailedPrecondition: `Post`, `PostDelayed`, `ContextKey::Set`
//       (so `StartTrace`), `NewChildContext`, `WatchFd`, `AddDestroyHook`.
//       `ContextKey::Get` and `Reset`, `ContextName` and `RemoveDestroyHook`
//       keep working until the context is freed, so the tasks already queued
//       ([S7]) and its destroy hooks can read and restore values.
//       (context_key_test.cc)
// [S16] A context slot (and a loop registry slot) whose 32-bit generation
//       would wrap is retired, never reused, so a stale handle can never
//       alias a new context or loop. (loop_test.cc)
//
// Embedding: a base the loop does not own (`Options::host_base`) and a loop
// driven by another loop (`BackendFd`/`BackendTimeout`/`RunReady`).
// (embed_test.cc)
//
// [S17] An adopted base is never freed by the loop. `Shutdown()` takes the
//       loop's own events off it (so a host that keeps dispatching never runs
//       a callback of a shut-down loop) and the destructor frees every event
//       the loop put on it: the wake-up eventfd's, the timerfd's, the batch
//       and timer events, the pool-trim timer (an event of its own, never an
//       `event_base_once`, whose argument would outlive the loop) and the fd
//       watches ([S6]). The host's own events on the base are untouched and
//       keep running after the loop is gone.
// [S18] The host must destroy the loop before it frees an adopted base.
//       libevent has no way to tell the loop that a base was freed (and frees
//       its bookkeeping under the loop's events), so this is a stated
//       requirement, not a checked one. The one way ctxloop itself could free
//       a base under a loop is refused: `Create` with the base of another
//       Loop (which owns and frees it) as `host_base` returns
//       kInvalidArgument.
// [S19] Shutdown or destruction from inside one of the loop's own callbacks
//       (a task, a timer, an fd callback, a destroy hook) while the host
//       dispatches the adopted base: `Shutdown()` returns kFailedPrecondition
//       (as inside `Run()`), and destruction aborts with a message (as from
//       inside `Run()`). From the host's own callbacks on the same base, or
//       from the host's thread between dispatches, both work and drain as
//       usual.
// [S20] `Stop()` on an adopted base never breaks the host's dispatch: it
//       breaks only a pass that ctxloop runs (`Run`, `RunUntilIdle`,
//       `RunReady`). While the host dispatches, the stop is kept for the next
//       `Run()`, which returns at once, and batches are not cut short.
// [S21] A driven loop whose host stops calling `RunReady()`: cross-thread
//       posts queue up to `Options::max_pending_foreign`, then are refused
//       with kResourceExhausted (counted); `PostNeverFull` posts (a trace's
//       finish) are still accepted; `Shutdown()` and the destructor on the
//       loop thread drain everything as for a loop run by `Run()`.

#include "ctxloop/loop/internal/loop_core.h"

#include <errno.h>
#include <event2/event.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>

#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "ctxloop/loop/internal/handle_access.h"
#include "ctxloop/loop/internal/loop_registry.h"
#include "ctxloop/loop/internal/test_hooks.h"

namespace ctxloop {
namespace loop_internal {

std::atomic<TestHooks::Hook> TestHooks::after_foreign_unlock{nullptr};
std::atomic<TestHooks::Hook> TestHooks::before_batch_end_take{nullptr};
std::atomic<TestHooks::Hook> TestHooks::foreign_post_checked{nullptr};

int64_t MonotonicNowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

// --- Construction and identity ---------------------------------------------

namespace {

// The bases that Loops made and own (they free them): a host must not hand
// one of them to another Loop as `host_base` [S18].
struct OwnedBases {
  Mutex mu;
  absl::flat_hash_set<const event_base*> bases ABSL_GUARDED_BY(mu);
};
OwnedBases& Owned() {
  static OwnedBases* owned = new OwnedBases;
  return *owned;
}

}  // namespace

absl::StatusOr<std::unique_ptr<LoopCore>> LoopCore::Create(
    Loop::Options options) {
  if (event_base* host = options.host_base; host != nullptr) {
    {
      OwnedBases& owned = Owned();
      MutexLock lock(&owned.mu);
      if (owned.bases.contains(host)) {
        return absl::InvalidArgumentError(
            "Loop::Options::host_base is the base of another Loop, which owns "
            "and frees it: adopt a base the host made");
      }
    }
    std::unique_ptr<LoopCore> core(
        new LoopCore(std::move(options), host, /*owns_base=*/false));
    absl::Status s = core->Init();
    if (!s.ok()) return s;
    return core;
  }
  event_config* cfg = event_config_new();
  if (cfg == nullptr) return absl::ResourceExhaustedError("event_config_new");
  // All libevent calls happen on the loop thread: no libevent locks needed,
  // even if the host enabled libevent threading.
  event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
  // No EVENT_BASE_FLAG_PRECISE_TIMER: ctxloop's timers do not use
  // libevent's timeouts but a timerfd of their own on CLOCK_MONOTONIC
  // (ArmTimer), which is as precise (a 5 ms PostDelayed fires after 5 ms, not
  // after the ~8 ms of libevent's coarse clock) without libevent's
  // timerfd_settime on every loop iteration that the flag costs.
  event_base* base = event_base_new_with_config(cfg);
  event_config_free(cfg);
  if (base == nullptr) {
    return absl::ResourceExhaustedError(
        "libevent could not create an event_base (out of file descriptors?)");
  }
  {
    OwnedBases& owned = Owned();
    MutexLock lock(&owned.mu);
    owned.bases.insert(base);
  }
  std::unique_ptr<LoopCore> core(
      new LoopCore(std::move(options), base, /*owns_base=*/true));
  absl::Status s = core->Init();
  if (!s.ok()) return s;
  return core;
}

LoopCore::LoopCore(Loop::Options options, event_base* base, bool owns_base)
    : options_(std::move(options)), base_(base), owns_base_(owns_base) {
  ingress_.set_limit(options_.max_pending_foreign);
  low_water_ = ingress_.limit() / 2;
}

absl::Status LoopCore::Init() {
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) {
    return absl::ResourceExhaustedError(
        absl::StrCat("eventfd: ", std::strerror(errno)));
  }
  batch_event_ = event_new(base_, -1, 0, &LoopCore::OnBatch, this);
  wake_event_ =
      event_new(base_, wake_fd_, EV_READ | EV_PERSIST, &LoopCore::OnWake, this);
  timer_event_ = event_new(base_, -1, 0, &LoopCore::OnTimer, this);
  timer_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (timer_fd_ < 0) {
    return absl::ResourceExhaustedError(
        absl::StrCat("timerfd_create: ", std::strerror(errno)));
  }
  timer_fd_event_ = event_new(base_, timer_fd_, EV_READ | EV_PERSIST,
                              &LoopCore::OnTimerFd, this);
  if (batch_event_ == nullptr || wake_event_ == nullptr ||
      timer_event_ == nullptr || timer_fd_event_ == nullptr ||
      event_add(wake_event_, nullptr) != 0 ||
      event_add(timer_fd_event_, nullptr) != 0) {
    return absl::ResourceExhaustedError("libevent could not create events");
  }
  local_.set_batch_event(batch_event_);
  // The root context, index 0, open before any foreign thread can pin us.
  contexts_.push_back(std::make_unique<ContextRecord>());
  contexts_[0]->generation = 1;
  contexts_[0]->live = true;
  contexts_[0]->name = "root";
  local_.Open(0, 1);
  accept_.Set(0, 1);
  LoopRegistry::Register(this, &slot_index_, &generation_);
  return absl::OkStatus();
}

LoopCore::~LoopCore() {
  if (phase_ != Phase::kClosed && slot_index_ != 0) {
    if (running_) {
      std::fprintf(stderr,
                   "ctxloop: a Loop was destroyed from inside its own Run()\n");
      std::abort();
    }
    if (InOwnCallback()) {  // [S19]
      std::fprintf(stderr,
                   "ctxloop: a Loop was destroyed from inside one of its own "
                   "callbacks\n");
      std::abort();
    }
    BecomeOwner();  // See "The loop thread" in loop.h.
    (void)Shutdown();
  }
  if (batch_event_ != nullptr) event_free(batch_event_);
  if (wake_event_ != nullptr) event_free(wake_event_);
  if (timer_event_ != nullptr) event_free(timer_event_);
  if (timer_fd_event_ != nullptr) event_free(timer_fd_event_);
  if (trim_event_ != nullptr) event_free(trim_event_);  // [S17]
  if (now_probe_ != nullptr) event_free(now_probe_);
  if (timer_fd_ >= 0) close(timer_fd_);
  if (const int fd = backend_fd_.load(); fd >= 0) close(fd);
  // ingress.pml: L-S8 (the loop's memory and eventfd go)
  if (wake_fd_ >= 0) close(wake_fd_);
  for (auto& chunk : timer_chunks_) delete[] chunk.load();
  if (owns_base_) {
    {
      OwnedBases& owned = Owned();
      MutexLock lock(&owned.mu);
      owned.bases.erase(base_);
    }
    event_base_free(base_);
  }
  // [S17] An adopted base stays the host's, with none of our events on it.
}

bool LoopCore::IsOwnerThread() const {
  // The lookup also checks the generation: after shutdown the slot may hold
  // a new loop owned by this same thread.
  const LocalPoster* poster = FindLocalPoster(slot_index_, generation_);
  return poster != nullptr && poster->core() == this;
}

LoopStats LoopCore::stats() const {
  LoopStats s;
  s.tasks_run = tasks_run_total_;
  s.wake_writes = wake_writes_.load(std::memory_order_relaxed);
  const int64_t pending = ingress_.pending();
  s.foreign_pending = pending > 0 ? static_cast<uint64_t>(pending) : 0;
  s.foreign_refused_full = refused_full_.load(std::memory_order_relaxed);
  return s;
}

void LoopCore::BecomeOwner() {
  LoopRegistry::Find(slot_index_)
      ->owner_thread.store(ThisThreadTag(), std::memory_order_relaxed);
  // The previous owner's cached "mine" (local_post.h) must not outlive this.
  InvalidateOwnerCaches();
}

ContextHandle LoopCore::MakeHandle(uint32_t index) const {
  return HandleAccess::Make(slot_index_, generation_, index,
                            contexts_[index]->generation);
}

ContextHandle LoopCore::InternalHandle() const {
  return HandleAccess::Make(slot_index_, generation_, 0, 0);
}

ContextHandle LoopCore::ForeignSegmentHandle() const {
  return HandleAccess::Make(slot_index_, generation_,
                            std::numeric_limits<uint32_t>::max(), 0);
}

bool LoopCore::QueuedTask::internal() const {
  return HandleAccess::ContextGeneration(ctx) == 0;
}

LoopCore::ContextRecord* LoopCore::FindRecord(ContextHandle ctx) {
  return const_cast<ContextRecord*>(
      static_cast<const LoopCore*>(this)->FindRecord(ctx));
}

const LoopCore::ContextRecord* LoopCore::FindRecord(ContextHandle ctx) const {
  if (HandleAccess::LoopSlot(ctx) != slot_index_ ||
      HandleAccess::LoopGeneration(ctx) != generation_) {
    return nullptr;
  }
  const uint32_t index = HandleAccess::ContextIndex(ctx);
  if (index >= contexts_.size()) return nullptr;
  const ContextRecord& r = *contexts_[index];
  if (!r.live || r.generation != HandleAccess::ContextGeneration(ctx)) {
    return nullptr;
  }
  return &r;
}

absl::Status LoopCore::CheckLive(ContextHandle ctx) const {
  if (FindRecord(ctx) != nullptr) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat(ctx.DebugString(), " is stale: the context was destroyed"));
}

bool LoopCore::AcceptsPosts(ContextHandle ctx) const {
  const ContextRecord* r = FindRecord(ctx);
  return r != nullptr && !r->closing;
}

absl::Status LoopCore::RejectPost(ContextHandle ctx) const {
  if (phase_ == Phase::kClosed) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot post to ", ctx.DebugString(), ": loop shut down"));
  }
  const ContextRecord* r = FindRecord(ctx);
  return absl::FailedPreconditionError(
      absl::StrCat("cannot post to ", ctx.DebugString(), ": the context ",
                   r == nullptr ? "was destroyed" : "is being destroyed"));
}

void LoopCore::Report(ContextHandle ctx, const absl::Status& error) {
  if (options_.error_handler) {
    try {
      options_.error_handler(ctx, error);
      return;
    } catch (...) {
      std::fprintf(stderr, "ctxloop: the error handler threw\n");
    }
  }
  std::fprintf(stderr, "ctxloop: %s: %s\n", ctx.DebugString().c_str(),
               error.ToString().c_str());
}

// --- Running -----------------------------------------------------------------

absl::Status LoopCore::CheckCanRun() const {
  if (!IsOwnerThread()) {
    return absl::FailedPreconditionError(
        "Run() must be called on the loop thread (the thread that created the "
        "Loop); to run a loop on its own thread, use ctxloop::LoopThread");
  }
  if (phase_ != Phase::kOpen) {
    return absl::FailedPreconditionError("the loop is shut down");
  }
  if (running_) {
    return absl::FailedPreconditionError("the loop is already running");
  }
  if (InOwnCallback()) {  // A host dispatching an adopted base runs it.
    return absl::FailedPreconditionError(
        "the loop's base is being dispatched (by the host): cannot run the "
        "loop from inside its own callback");
  }
  return absl::OkStatus();
}

bool LoopCore::InOwnCallback() const {
  if (local_.in_batch() || running_timers_) return true;
  for (const auto& [id, w] : watches_) {
    if (w->dispatching) return true;
  }
  return false;
}

void LoopCore::BreakOwnPass() const {
  // [S20] Only a pass that ctxloop runs: on an adopted base the host's own
  // dispatch may be the one running, and it is not ours to break.
  if (running_) event_base_loopbreak(base_);
}

absl::Status LoopCore::Run(bool until_idle) {
  if (absl::Status s = CheckCanRun(); !s.ok()) return s;
  running_ = true;
  // Driven mode: no kicks while ctxloop runs the base itself.
  local_.set_kick_fd(-1);
  absl::Cleanup done = [this] {
    running_ = false;
    RestoreKick();
  };
  if (!until_idle) {
    // ingress.pml: L-R1 (exchange), L-R2 (event loop), L-R3 (reset)
    if (!stop_requested_.exchange(false)) {
      event_base_loop(base_, EVLOOP_NO_EXIT_ON_EMPTY);
      stop_requested_.store(false);
    }
    return absl::OkStatus();
  }
  // What is ready now, plus its loop-thread follow-ups, plus cross-thread
  // posts that arrive meanwhile up to one bound's worth (then batch ends and
  // wake-ups take no more), so producers that never stop cannot starve it.
  TakeIngress();
  hold_foreign_ = true;
  until_idle_taken_ = nodes_taken_;
  absl::Cleanup settle = [this] {
    hold_foreign_ = false;
    // The ingress may hold posts and is then unarmed (no push writes the
    // eventfd): a batch takes them at the next Run. Else arm it.
    if (!ingress_.ArmIfEmpty()) local_.ScheduleBatch();
  };
  for (;;) {
    if (stop_requested_.exchange(false)) break;
    callbacks_dispatched_ = 0;
    event_base_loop(base_, EVLOOP_NONBLOCK);
    if (callbacks_dispatched_ == 0 && local_.ready().empty()) break;
  }
  return absl::OkStatus();
}

void LoopCore::Stop() {
  if (IsOwnerThread()) {
    stop_requested_.store(true);
    if (running_) event_base_loopbreak(base_);
    return;
  }
  // [S12] The flag, then a stop node on the ingress: the loop's next take
  // sees the node (a take at a batch end if it is busy; if it armed the
  // ingress, this push writes the eventfd), and a take that sees the node
  // synchronized with this push, so it sees the flag (QueueIngress). Tasks
  // running meanwhile see the flag at once (StopRequestedInBatch). A stop
  // is a node like a post, so it cannot be lost between them.
  uint64_t unit;
  // ingress.pml: X1 (pin)
  if (LoopRegistry::Pin(slot_index_, generation_, &unit) == nullptr) {
    return;  // Shutting down: there is no Run() to stop.
  }
  // ingress.pml: X2 (the flag), then X3 (push kStop), X4 (eventfd)
  stop_requested_.store(true);
  IngressNode* node = AllocIngressNode();
  node->kind = IngressNode::Kind::kStop;
  if (!PushForeign(node)) FreeIngressNodes(node, node);
  // ingress.pml: X5 (unpin)
  LoopRegistry::Unpin(slot_index_, unit);
  TestHooks::Run(TestHooks::after_foreign_unlock);
}

}  // namespace loop_internal
}  // namespace ctxloop
