// Copyright 2026 The ctxloop Authors.
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

#include "ctxloop/loop/internal/loop_core.h"

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

struct LoopCore::WatchRecord {
  LoopCore* core;
  uint64_t id;
  event* ev = nullptr;
  ContextHandle ctx;
  int fd;
  FdCallback callback;
  bool close_on_stop;
  bool dispatching = false;
  bool removed = false;
  std::shared_ptr<WatchControl> control;  // Shared with the FdWatch.
};

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

// --- Construction and identity ---------------------------------------------

absl::StatusOr<std::unique_ptr<LoopCore>> LoopCore::Create(
    Loop::Options options) {
  event_config* cfg = event_config_new();
  if (cfg == nullptr) return absl::ResourceExhaustedError("event_config_new");
  // All libevent calls happen on the loop thread: no libevent locks needed,
  // even if the host enabled libevent threading.
  event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
  // Timers on CLOCK_MONOTONIC rather than the jiffy-grained coarse clock:
  // without it a 5 ms PostDelayed fires after ~8 ms.
  event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
  event_base* base = event_base_new_with_config(cfg);
  event_config_free(cfg);
  if (base == nullptr) {
    return absl::ResourceExhaustedError(
        "libevent could not create an event_base (out of file descriptors?)");
  }
  std::unique_ptr<LoopCore> core(new LoopCore(std::move(options), base));
  absl::Status s = core->Init();
  if (!s.ok()) return s;
  return core;
}

LoopCore::LoopCore(Loop::Options options, event_base* base)
    : options_(std::move(options)), base_(base) {}

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
  if (batch_event_ == nullptr || wake_event_ == nullptr ||
      timer_event_ == nullptr || event_add(wake_event_, nullptr) != 0) {
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
    BecomeOwner();  // See "The loop thread" in loop.h.
    (void)Shutdown();
  }
  if (batch_event_ != nullptr) event_free(batch_event_);
  if (wake_event_ != nullptr) event_free(wake_event_);
  if (timer_event_ != nullptr) event_free(timer_event_);
  if (wake_fd_ >= 0) close(wake_fd_);
  for (auto& chunk : timer_chunks_) delete[] chunk.load();
  event_base_free(base_);
}

bool LoopCore::IsOwnerThread() const {
  // FindOwned also checks the generation: after shutdown the slot may hold a
  // new loop owned by this same thread.
  return LoopRegistry::FindOwned(slot_index_, generation_) == this;
}

LoopStats LoopCore::stats() const {
  LoopStats s;
  s.tasks_run = tasks_run_total_;
  s.wake_writes = wake_writes_.load(std::memory_order_relaxed);
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

bool LoopCore::IsForeignSegment(ContextHandle ctx) {
  // No context ever gets this index (a loop would need 2^32 - 1 of them).
  return HandleAccess::ContextIndex(ctx) ==
         std::numeric_limits<uint32_t>::max();
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

// --- Tasks -----------------------------------------------------------------

absl::Status LoopCore::PostLocal(ContextHandle ctx, Task&& task) {
  // `local_` accepts exactly when the loop is not closed and the context is
  // live and not closing (see NewContext, DestroyContext, CloseAndDrop).
  if (!local_.Accepts(ctx)) return RejectPost(ctx);
  local_.Emplace(ctx, std::move(task));
  return absl::OkStatus();
}

absl::Status LoopCore::PostForeign(ContextHandle ctx, Task&& task) {
  static_assert(sizeof(IngressNode) <= 128, "two cache lines");
  // [S7] The accept table is exact against DestroyContext: it closes the
  // context, then waits for the pins taken before (WaitForEarlierPins), so
  // a post that saw the context open has pushed before the close takes the
  // ingress. On error `task` is destroyed by our caller, on its thread.
  if (ABSL_PREDICT_FALSE(!accept_.Accepts(ctx))) return RejectForeignPost(ctx);
  TestHooks::Run(TestHooks::foreign_post_checked);
  IngressNode* node = AllocIngressNode();
  node->ctx = ctx;
  node->task = std::move(task);
  if (ABSL_PREDICT_FALSE(!PushForeign(node))) {
    task = std::move(node->task);  // Never reached the loop.
    FreeIngressNodes(node, node);
    return RejectForeignPost(ctx);
  }
  return absl::OkStatus();
}

absl::Status LoopCore::RejectForeignPost(ContextHandle ctx) {
  return absl::FailedPreconditionError(
      absl::StrCat("cannot post to ", ctx.DebugString(),
                   ": the context was destroyed or is being destroyed"));
}

bool LoopCore::PushForeign(IngressNode* node) {
  // Write the eventfd only if the loop armed the ingress (it found it empty
  // and may sleep): while it is busy it takes again at the end of each
  // batch, so further posts cost no syscall.
  //
  // The write happens before the caller unpins: while a foreign thread holds
  // a pin the loop cannot finish shutting down [S5], so nothing here can
  // touch a destroyed loop or a reused fd. Once the caller unpins it must not
  // touch the loop [S11]; callers run TestHooks::after_foreign_unlock there.
  switch (ingress_.Push(node)) {
    case ForeignIngress::PushResult::kQueued:
      return true;
    case ForeignIngress::PushResult::kQueuedWake:
      WriteWakeFd();
      return true;
    case ForeignIngress::PushResult::kClosed:
      break;
  }
  return false;
}

void LoopCore::WriteWakeFd() {
  wake_writes_.fetch_add(1, std::memory_order_relaxed);
  const uint64_t one = 1;
  ssize_t n;
  do {
    n = write(wake_fd_, &one, sizeof(one));
  } while (n < 0 && errno == EINTR);
  // EAGAIN means the counter is saturated: the loop is awake anyway.
}

void LoopCore::ScheduleBatch() { local_.ScheduleBatch(); }

void LocalPoster::ScheduleBatch() {
  // Inside a batch, RunBatch schedules what its tasks posted when it ends.
  if (batch_scheduled_ || in_batch_) return;
  batch_scheduled_ = true;
  event_active(batch_event_, EV_READ, 0);
}

bool LoopCore::TakeIngress() {
  // A take that returns nodes leaves the ingress unarmed: only a take that
  // finds it empty arms it. So take again until tasks were queued (their
  // batch takes again when it ends) or the ingress is armed.
  while (IngressNode* list = ingress_.Take()) {
    if (QueueIngress(list)) return true;
  }
  return false;
}

bool LoopCore::QueueIngress(IngressNode* list) {
  IngressNode* tasks = nullptr;
  IngressNode** tail = &tasks;
  bool stop = false;
  bool rearm = false;
  std::vector<Task> doomed;  // Cancelled timers' tasks, destroyed below.
  for (IngressNode* n = list; n != nullptr;) {
    IngressNode* next = n->next;
    switch (n->kind) {
      case IngressNode::Kind::kTask:
      case IngressNode::Kind::kDestroy:
        *tail = n;
        tail = &n->next;
        break;
      case IngressNode::Kind::kStop:
        stop = true;
        KeepFreeNode(n);
        break;
      case IngressNode::Kind::kDelayed:
        // Its node stays out of the pool while its claim may be won.
        n->next = nullptr;
        if (OnForeignDelayed(n, &doomed)) rearm = true;
        break;
      case IngressNode::Kind::kCancel:
        OnForeignCancel(n, &doomed);
        break;
    }
    n = next;
  }
  *tail = nullptr;
  FlushFreeNodes();
  if (rearm || !doomed.empty()) ArmTimer();
  doomed.clear();  // On the loop thread, after the ingress is settled.
  // [S12] A foreign Stop() set the flag before it pushed its node; this take
  // synchronized with that push, so the flag is seen here.
  if (stop && phase_ == Phase::kOpen &&
      stop_requested_.load(std::memory_order_relaxed)) {
    event_base_loopbreak(base_);
  }
  if (tasks == nullptr) return false;
  // One entry for the whole take: the tasks keep their place after what was
  // posted on this thread before, and are not moved one by one.
  local_.Emplace(ForeignSegmentHandle(), ForeignSegment(tasks));
  return true;
}

LoopCore::ForeignSegment::~ForeignSegment() {
  // Destroyed unrun (shutdown past its budget [S3], or the loop's end), on
  // the loop thread.
  while (head != nullptr) {
    IngressNode* n = head;
    head = n->next;
    n->task = nullptr;
    n->next = nullptr;
    FreeIngressNodes(n, n);
  }
}

inline void LoopCore::RunEntry(TaskEntry& entry) {
  // The handler is out of line: this frame stays small (no locals for the
  // error path, so no stack protector) on the path every task takes.
  try {
    entry.Run();  // Destroys the callable too, also if it throws.
  } catch (...) {
    ReportTaskException(entry.ctx());
  }
  if (HandleAccess::ContextGeneration(entry.ctx()) != 0) ++tasks_run_total_;
}

void LoopCore::ReportTaskException(ContextHandle ctx) {
  try {
    throw;
  } catch (const std::exception& e) {
    Report(ctx, absl::InternalError(absl::StrCat("task threw: ", e.what())));
  } catch (...) {
    Report(ctx, absl::InternalError("task threw a non-std::exception"));
  }
}

void LoopCore::RunBatch() {
  local_.set_batch_scheduled(false);
  local_.set_in_batch(true);
  // What is queued now is this batch; what it posts (or TakeIngress takes)
  // goes behind it and runs in the next one. Entries never move, so nothing
  // is copied out first.
  ReadyQueue& ready = local_.ready();
  for (size_t n = ready.size(); n > 0; --n) {
    TaskEntry& entry = ready.front();
    bool stop;
    if (ABSL_PREDICT_FALSE(IsForeignSegment(entry.ctx()))) {
      stop = RunForeignSegment(entry);
      FlushFreeNodes();
      if (!entry.As<ForeignSegment>().done()) break;  // Stays in front.
      entry.Destroy();
    } else {
      RunEntry(entry);
      stop = StopRequestedInBatch();
    }
    ready.PopFront();
    if (ABSL_PREDICT_FALSE(stop)) break;
  }
  // Foreign posts made while this batch ran wrote no eventfd (see
  // PushForeign): take them now, or arm the ingress if none came.
  TestHooks::Run(TestHooks::before_batch_end_take);
  TakeIngress();
  local_.set_in_batch(false);
  if (!ready.empty()) {
    // Tasks posted by this batch run in the next one, after libevent has
    // polled fds: `event_active` from inside a callback would run the batch
    // again in this same pass, so a task that keeps posting would starve fds.
    // A zero timeout fires after the next poll.
    local_.set_batch_scheduled(true);
    const timeval now = {0, 0};
    event_add(batch_event_, &now);
  }
}

bool LoopCore::StopRequestedInBatch() const {
  if (!stop_requested_.load(std::memory_order_relaxed) ||
      phase_ != Phase::kOpen) {
    return false;
  }
  // Stop(): the rest stays queued, in order, ahead of what they posted. A
  // Stop() from another thread only set the flag: end this pass of the
  // event loop now, not when its wake-up is polled.
  event_base_loopbreak(base_);
  return true;
}

bool LoopCore::RunForeignSegment(TaskEntry& entry) {
  ForeignSegment& segment = entry.As<ForeignSegment>();
  while (!segment.done()) {
    IngressNode* n = segment.head;
    segment.head = n->next;  // Out of the segment before it runs.
    RunNode(n);
    KeepFreeNode(n);
    if (ABSL_PREDICT_FALSE(StopRequestedInBatch())) return true;
  }
  return false;
}

void LoopCore::RunNode(IngressNode* n) {
  const bool internal = HandleAccess::ContextGeneration(n->ctx) == 0;
  if (n->kind == IngressNode::Kind::kTask) {
    try {
      std::move(n->task)(n->ctx);
    } catch (const std::exception& e) {
      Report(n->ctx,
             absl::InternalError(absl::StrCat("task threw: ", e.what())));
    } catch (...) {
      Report(n->ctx, absl::InternalError("task threw a non-std::exception"));
    }
  }
  n->task = nullptr;  // Captures die now, on the loop thread.
  if (!internal) ++tasks_run_total_;
}

void LoopCore::RunOne(QueuedTask& entry) {
  try {
    std::move(entry.task)(entry.ctx);
  } catch (const std::exception& e) {
    Report(entry.ctx,
           absl::InternalError(absl::StrCat("task threw: ", e.what())));
  } catch (...) {
    Report(entry.ctx, absl::InternalError("task threw a non-std::exception"));
  }
  entry.task = nullptr;  // Captures die now, on the loop thread.
  if (!entry.internal()) ++tasks_run_total_;
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

void LoopCore::OnBatch(int, short, void* arg) {
  auto* self = static_cast<LoopCore*>(arg);
  ++self->callbacks_dispatched_;
  self->cached_now_ns_ = -1;  // A new callback: LoopNowNs reads again.
  self->RunBatch();
}

void LoopCore::OnWake(int fd, short, void* arg) {
  auto* self = static_cast<LoopCore*>(arg);
  ++self->callbacks_dispatched_;
  self->cached_now_ns_ = -1;
  uint64_t count;
  while (read(fd, &count, sizeof(count)) > 0) {
  }
  self->TakeIngress();  // After the read: see PushForeign and [S12].
  if (self->stop_requested_.load(std::memory_order_relaxed)) {
    event_base_loopbreak(self->base_);
  }
}

// --- Delayed tasks -----------------------------------------------------------

namespace {

int64_t DelayNs(absl::Duration delay) {
  return delay > absl::ZeroDuration() ? absl::ToInt64Nanoseconds(delay) : 0;
}

// Saturates: a huge delay (absl::InfiniteDuration() converts to INT64_MAX)
// must not overflow into a past (negative) deadline.
int64_t DeadlineNs(int64_t now, int64_t delay_ns) {
  return delay_ns > std::numeric_limits<int64_t>::max() - now
             ? std::numeric_limits<int64_t>::max()
             : now + delay_ns;
}

}  // namespace

int64_t LoopCore::LoopNowNs() {
  // Outside Run() there is no current iteration: read the clock.
  if (!running_) return std::max(timer_now_ns_, MonotonicNowNs());
  if (cached_now_ns_ < 0) {
    cached_now_ns_ = std::max(timer_now_ns_, MonotonicNowNs());
  }
  return std::max(timer_now_ns_, cached_now_ns_);
}

absl::StatusOr<DelayedTaskHandle> LoopCore::PostDelayedOwned(
    ContextHandle ctx, absl::Duration delay, Task&& task) {
  if (phase_ != Phase::kOpen) {  // [S4]
    return absl::FailedPreconditionError(
        absl::StrCat("cannot post a delayed task to ", ctx.DebugString(),
                     ": loop shutting down"));
  }
  if (!AcceptsPosts(ctx)) return RejectPost(ctx);
  const int64_t delay_ns = DelayNs(delay);
  int64_t now;
  if (delay_ns == 0 && timer_heap_.empty()) {
    // A due-list entry only needs a deadline no later than the clock and no
    // earlier than what the due list holds: the latest reading will do, since
    // every later heap entry reads the clock (it sorts after this one).
    now = timer_now_ns_;
  } else {
    // The loop's time: a delay counts from the start of the current
    // callback, so from no earlier than the start of this iteration
    // (loop.h).
    now = LoopNowNs();
    timer_now_ns_ = now;
  }
  bool earliest;
  const uint32_t index = InsertTimer(ctx, delay_ns, DeadlineNs(now, delay_ns),
                                     std::move(task), &earliest);
  TimerNode& node = Node(index);
  node.claim.store(node.id, std::memory_order_relaxed);
  if (earliest) ArmTimer();
  DelayedTaskHandle handle;
  handle.loop_slot_ = slot_index_;
  handle.loop_generation_ = generation_;
  handle.node_ = index;
  handle.id_ = node.id;
  return handle;
}

absl::StatusOr<DelayedTaskHandle> LoopCore::PostDelayedPinned(
    ContextHandle ctx, absl::Duration delay, Task&& task) {
  // [S4] A foreign caller holds a pin, so shutdown has not closed the loop;
  // if it is about to, this timer is dropped and counted by it.
  // [S7] DestroyContext closes the accept table, waits for earlier pins (so
  // for us), takes the ingress (inserting this timer), then cancels the
  // context's timers.
  if (!accept_.Accepts(ctx)) return RejectForeignPost(ctx);
  const int64_t delay_ns = DelayNs(delay);
  IngressNode* node = AllocIngressNode();
  node->kind = IngressNode::Kind::kDelayed;
  node->ctx = ctx;
  node->task = std::move(task);
  // From the call: a foreign thread has no loop iteration to count from.
  node->deadline_ns = DeadlineNs(MonotonicNowNs(), delay_ns);
  node->timer_id = NewForeignTimerId();
  node->claim.store(node->timer_id, std::memory_order_relaxed);
  if (!PushForeign(node)) {  // Unreachable while pinned.
    task = std::move(node->task);
    FreeIngressNodes(node, node);
    return RejectForeignPost(ctx);
  }
  DelayedTaskHandle handle;
  handle.loop_slot_ = slot_index_;
  handle.loop_generation_ = generation_;
  handle.id_ = node->timer_id;
  handle.foreign_ = node;
  return handle;
}

uint32_t LoopCore::InsertTimer(ContextHandle ctx, int64_t delay_ns,
                               int64_t deadline, Task&& task, bool* earliest) {
  const uint32_t index = AllocNode();
  TimerNode& node = Node(index);
  const uint64_t id = next_timer_id_++;
  node.id = id;
  node.ctx = ctx;
  node.task = std::move(task);
  node.foreign = nullptr;
  ++live_timers_;
  if (delay_ns == 0 && deadline >= timer_now_ns_ &&
      (due_head_ == due_list_.size() ||
       due_list_.back().deadline_ns <= deadline)) {
    // Ids grow and deadlines never decrease: the due list stays sorted.
    *earliest = due_head_ == due_list_.size();
    node.in_heap = false;
    due_list_.push_back(TimerEntry{deadline, id, index});
  } else {
    node.in_heap = true;
    timer_heap_.push_back(TimerEntry{deadline, id, index});
    const size_t pos = timer_heap_.size() - 1;
    // Deadlines mostly grow: usually the new entry stays where it is.
    *earliest = pos == 0 || (timer_heap_[pos] < timer_heap_[(pos - 1) / 4] &&
                             HeapSiftUp(pos, timer_heap_[pos]) == 0);
  }
  return index;
}

uint32_t LoopCore::NewTimerNode() {
  uint32_t chunk, offset;
  LocateTimerNode(timer_nodes_, &chunk, &offset);
  if (offset == 0) {
    // A new chunk, twice the last one; published for foreign cancellers.
    timer_chunks_[chunk].store(
        new TimerNode[size_t{1} << (kTimerChunkBits + chunk)],
        std::memory_order_release);
  }
  return timer_nodes_++;
}

void LoopCore::FreeNode(uint32_t index) {
  TimerNode& node = Node(index);
  node.id = 0;  // Every handle and due-list entry of it is now stale.
  node.foreign = nullptr;
  node.next_free = free_timer_node_;
  free_timer_node_ = index;
  --live_timers_;
}

size_t LoopCore::HeapSiftUp(size_t pos, TimerEntry e) {
  while (pos > 0) {
    const size_t parent = (pos - 1) / 4;
    if (!(e < timer_heap_[parent])) break;
    timer_heap_[pos] = timer_heap_[parent];
    pos = parent;
  }
  timer_heap_[pos] = e;
  return pos;
}

void LoopCore::HeapSiftDown(size_t pos, TimerEntry e) {
  const size_t n = timer_heap_.size();
  for (;;) {
    const size_t first = pos * 4 + 1;
    if (first >= n) break;
    const size_t last = std::min(first + 4, n);
    size_t best = first;
    for (size_t c = first + 1; c < last; ++c) {
      if (timer_heap_[c] < timer_heap_[best]) best = c;
    }
    if (!(timer_heap_[best] < e)) break;
    timer_heap_[pos] = timer_heap_[best];
    pos = best;
  }
  timer_heap_[pos] = e;
}

void LoopCore::HeapPop() {
  const TimerEntry last = timer_heap_.back();
  timer_heap_.pop_back();
  const size_t n = timer_heap_.size();
  if (n == 0) return;
  // Move the hole at the top down along the smallest children to a leaf,
  // then sift the last entry up from there: the last entry is usually among
  // the largest, so this saves a compare per level.
  size_t pos = 0;
  for (;;) {
    const size_t first = pos * 4 + 1;
    if (first >= n) break;
    const size_t end = std::min(first + 4, n);
    size_t best = first;
    for (size_t c = first + 1; c < end; ++c) {
      if (timer_heap_[c] < timer_heap_[best]) best = c;
    }
    timer_heap_[pos] = timer_heap_[best];
    pos = best;
  }
  HeapSiftUp(pos, last);
}

void LoopCore::TrimTimers() {
  while (!timer_heap_.empty() && Stale(timer_heap_[0])) {
    HeapPop();
    --stale_heap_entries_;
  }
  while (due_head_ < due_list_.size() && Stale(due_list_[due_head_])) {
    ++due_head_;
  }
  if (due_head_ == due_list_.size()) {
    due_list_.clear();  // Keeps its capacity: no allocation next time.
    due_head_ = 0;
  }
}

void LoopCore::MaybeCompactHeap() {
  if (stale_heap_entries_ < 64 ||
      stale_heap_entries_ * 2 <= timer_heap_.size()) {
    return;
  }
  size_t kept = 0;
  for (size_t i = 0; i < timer_heap_.size(); ++i) {
    if (!Stale(timer_heap_[i])) timer_heap_[kept++] = timer_heap_[i];
  }
  timer_heap_.resize(kept);  // Keeps its capacity.
  stale_heap_entries_ = 0;
  if (kept < 2) return;
  for (size_t i = (kept - 2) / 4 + 1; i-- > 0;) {
    HeapSiftDown(i, timer_heap_[i]);
  }
}

void LoopCore::TakeTimerNode(uint32_t index, Task* victim) {
  TimerNode& node = Node(index);
  *victim = std::move(node.task);
  const bool in_heap = node.in_heap;
  FreeNode(index);  // Its heap or due-list entry goes stale.
  if (in_heap) {
    ++stale_heap_entries_;
    MaybeCompactHeap();
  }
}

bool LoopCore::ClaimTimer(uint32_t index) {
  TimerNode& node = Node(index);
  if (IngressNode* f = node.foreign) {
    uint64_t expected = f->timer_id;
    return f->claim.compare_exchange_strong(expected, IngressNode::kTakenByLoop,
                                            std::memory_order_acq_rel);
  }
  uint64_t expected = node.id;
  return node.claim.compare_exchange_strong(expected, 0,
                                            std::memory_order_acq_rel);
}

void LoopCore::ReleaseForeign(uint32_t index, bool won) {
  IngressNode* f = Node(index).foreign;
  if (f == nullptr) return;
  f->timer_index = kNoNode;
  if (won) KeepFreeNode(f);
}

bool LoopCore::CancelOwned(const DelayedTaskHandle& handle) {
  Task victim;
  if (IngressNode* f = handle.foreign_) {
    // A task posted from another thread (perhaps not yet taken from the
    // ingress: then the take finds the claim and destroys it).
    uint64_t expected = handle.id_;
    if (!f->claim.compare_exchange_strong(expected, IngressNode::kTakenByLoop,
                                          std::memory_order_acq_rel)) {
      return false;
    }
    if (f->timer_index != kNoNode) {
      const uint32_t index = f->timer_index;
      ReleaseForeign(index, /*won=*/true);
      TakeTimerNode(index, &victim);
      FlushFreeNodes();
    }
  } else {
    if (handle.id_ == 0 || handle.node_ >= timer_nodes_) return false;
    TimerNode& node = Node(handle.node_);
    uint64_t expected = handle.id_;
    if (node.id != handle.id_ || !node.claim.compare_exchange_strong(
                                     expected, 0, std::memory_order_acq_rel)) {
      return false;  // Ran, running, cancelled (here or by a foreign Cancel).
    }
    TakeTimerNode(handle.node_, &victim);
  }
  // `victim` is destroyed here, on the loop thread. The armed libevent timer
  // may now fire early; it then finds nothing due and re-arms for the next
  // deadline.
  return true;
}

bool LoopCore::CancelPinned(const DelayedTaskHandle& handle) {
  // Exact: winning the claim means the loop never runs the task (it claims
  // it before running it). The loop destroys it when it takes our node.
  IngressNode* cmd;
  if (IngressNode* f = handle.foreign_) {
    uint64_t expected = handle.id_;
    if (!f->claim.compare_exchange_strong(expected,
                                          IngressNode::kCancelledByForeign,
                                          std::memory_order_acq_rel)) {
      return false;
    }
    cmd = AllocIngressNode();
    cmd->target = f;
  } else {
    TimerNode* node = handle.id_ == 0 ? nullptr : FindNodeForeign(handle.node_);
    uint64_t expected = handle.id_;
    if (node == nullptr || !node->claim.compare_exchange_strong(
                               expected, 0, std::memory_order_acq_rel)) {
      return false;
    }
    cmd = AllocIngressNode();
    cmd->target = nullptr;
    cmd->cancel_node = handle.node_;
    cmd->cancel_id = handle.id_;
  }
  // [S9] The task is destroyed on the loop thread: we hold a pin, so the
  // ingress is open (shutdown closes it only after the pins end).
  cmd->kind = IngressNode::Kind::kCancel;
  if (!PushForeign(cmd)) FreeIngressNodes(cmd, cmd);  // Unreachable.
  return true;
}

bool LoopCore::OnForeignDelayed(IngressNode* n, std::vector<Task>* doomed) {
  const uint64_t claim = n->claim.load(std::memory_order_acquire);
  if (claim == n->timer_id && local_.Accepts(n->ctx)) {
    bool earliest;
    const uint32_t index = InsertTimer(n->ctx, /*delay_ns=*/1, n->deadline_ns,
                                       std::move(n->task), &earliest);
    Node(index).foreign = n;
    n->timer_index = index;
    return earliest;
  }
  // Cancelled before the loop took it (by a foreign Cancel, whose kCancel
  // node follows and returns this node, or on the loop thread), or its
  // context closed: a closed context refuses posts only after the pins of
  // earlier ones ended, so this is a shutdown's drop [S4].
  bool won = claim == IngressNode::kTakenByLoop;
  if (claim == n->timer_id) {
    uint64_t expected = claim;
    won = n->claim.compare_exchange_strong(expected, IngressNode::kTakenByLoop,
                                           std::memory_order_acq_rel);
    if (won) ++report_.delayed_dropped;
  }
  doomed->push_back(std::move(n->task));
  n->timer_index = kNoNode;
  if (won) KeepFreeNode(n);
  return false;
}

void LoopCore::OnForeignCancel(IngressNode* cmd, std::vector<Task>* doomed) {
  if (IngressNode* f = cmd->target) {
    if (f->timer_index != kNoNode) {
      const uint32_t index = f->timer_index;
      f->timer_index = kNoNode;
      doomed->emplace_back();
      TakeTimerNode(index, &doomed->back());
    }
    KeepFreeNode(f);  // Its claim is settled: no handle can win it now.
  } else if (cmd->cancel_node < timer_nodes_) {
    // Unless the loop destroyed it already (it lost the claim when it went
    // to run or drop it, and freed the node then).
    if (Node(cmd->cancel_node).id == cmd->cancel_id) {
      doomed->emplace_back();
      TakeTimerNode(cmd->cancel_node, &doomed->back());
    }
  }
  KeepFreeNode(cmd);
}

void LoopCore::ArmTimer() {
  int64_t next = -1;
  TrimTimers();
  if (due_head_ < due_list_.size()) next = due_list_[due_head_].deadline_ns;
  if (!timer_heap_.empty() && (next < 0 || timer_heap_[0].deadline_ns < next)) {
    next = timer_heap_[0].deadline_ns;
  }
  if (next == armed_deadline_ns_) return;
  armed_deadline_ns_ = next;
  if (next < 0) {
    event_del(timer_event_);
    return;
  }
  const int64_t wait = std::max<int64_t>(0, next - MonotonicNowNs());
  if (wait == 0 && !local_.in_batch() && !running_timers_) {
    // Due now (a zero-delay task): no libevent timer, the timer run is made
    // active. Not from a batch or a timer run, whose tasks could otherwise
    // keep each other active without libevent ever polling fds: those arm a
    // zero timeout, which fires after the next poll.
    event_active(timer_event_, EV_TIMEOUT, 0);
    return;
  }
  timeval tv;
  tv.tv_sec = static_cast<time_t>(wait / 1000000000);
  tv.tv_usec = static_cast<suseconds_t>((wait % 1000000000 + 999) / 1000);
  event_add(timer_event_, &tv);
}

void LoopCore::OnTimer(int, short, void* arg) {
  auto* self = static_cast<LoopCore*>(arg);
  ++self->callbacks_dispatched_;
  self->RunDueTimers();
}

void LoopCore::RunDueTimers() {
  armed_deadline_ns_ = -1;
  running_timers_ = true;
  // One clock read per run, which delayed posts from the tasks run here use
  // too (the loop's time, LoopNowNs). Only the due-list entries present now
  // run: tasks that post zero-delay timers wait for the next turn instead of
  // starving the loop.
  const int64_t now = std::max(timer_now_ns_, MonotonicNowNs());
  timer_now_ns_ = now;
  cached_now_ns_ = now;
  size_t due_budget = due_list_.size() - due_head_;
  for (;;) {
    if (phase_ == Phase::kOpen &&
        stop_requested_.load(std::memory_order_relaxed)) {
      event_base_loopbreak(base_);  // As in RunBatch.
      break;
    }
    // Skip cancelled (stale) entries at the head of the due list and the
    // top of the heap.
    while (due_budget > 0 && Stale(due_list_[due_head_])) {
      ++due_head_;
      --due_budget;
    }
    while (!timer_heap_.empty() && Stale(timer_heap_[0])) {
      HeapPop();
      --stale_heap_entries_;
    }
    const bool heap_due =
        !timer_heap_.empty() && timer_heap_[0].deadline_ns <= now;
    uint32_t index;
    if (due_budget > 0 &&
        (!heap_due || due_list_[due_head_] < timer_heap_[0])) {
      index = due_list_[due_head_].node;
      ++due_head_;
      --due_budget;
    } else if (heap_due) {
      index = timer_heap_[0].node;
      HeapPop();
    } else {
      break;
    }
    if (due_head_ == due_list_.size()) {
      due_list_.clear();
      due_head_ = 0;
    }
    // From the claim on, Cancel returns false; if a foreign Cancel won it
    // first, the task is destroyed unrun (its kCancel node finds it gone).
    const bool won = ClaimTimer(index);
    ReleaseForeign(index, won);
    TimerNode& node = Node(index);
    QueuedTask due;
    due.ctx = node.ctx;
    due.task = std::move(node.task);
    FreeNode(index);
    FlushFreeNodes();
    if (won) {
      RunOne(due);
    } else {
      due.task = nullptr;  // Destroyed unrun, on the loop thread.
    }
  }
  ArmTimer();
  running_timers_ = false;
}

void LoopCore::CancelTimersOf(ContextHandle ctx) {
  std::vector<Task> doomed;
  // O(pending timers): their entries go stale. A task whose claim a foreign
  // Cancel won is destroyed too (its kCancel node finds it gone).
  for (const TimerEntry& e : timer_heap_) {
    TimerNode& node = Node(e.node);
    if (node.id == e.id && node.ctx == ctx) {
      ReleaseForeign(e.node, ClaimTimer(e.node));
      doomed.push_back(std::move(node.task));
      FreeNode(e.node);
      ++stale_heap_entries_;
    }
  }
  for (size_t i = due_head_; i < due_list_.size(); ++i) {
    const TimerEntry& e = due_list_[i];
    TimerNode& node = Node(e.node);
    if (node.id == e.id && node.ctx == ctx) {
      ReleaseForeign(e.node, ClaimTimer(e.node));
      doomed.push_back(std::move(node.task));
      FreeNode(e.node);
    }
  }
  MaybeCompactHeap();
  FlushFreeNodes();
  // `doomed` is destroyed here, on the loop thread.
}

// --- Contexts ----------------------------------------------------------------

absl::StatusOr<ContextHandle> LoopCore::NewContext(
    absl::string_view name, const ContextHandle* parent) {
  if (phase_ == Phase::kClosed) {
    return absl::FailedPreconditionError("loop shut down");
  }
  ContextRecord* parent_record = nullptr;
  if (parent != nullptr) {
    parent_record = FindRecord(*parent);
    if (parent_record == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "parent ", parent->DebugString(),
          " is not a live context of this loop (loop ", slot_index_, ")"));
    }
    if (parent_record->closing) {  // [S15]
      return absl::FailedPreconditionError(
          absl::StrCat("NewChildContext: parent ", parent->DebugString(),
                       " is being destroyed"));
    }
  }
  uint32_t index;
  if (!free_contexts_.empty()) {
    index = free_contexts_.back();
    free_contexts_.pop_back();
  } else {
    index = static_cast<uint32_t>(contexts_.size());
    contexts_.push_back(std::make_unique<ContextRecord>());
  }
  {
    ContextRecord& r = *contexts_[index];
    ++r.generation;  // Never wraps: see FreeContext [S16].
    r.live = true;
    r.closing = false;
    local_.Open(index, r.generation);
    accept_.Set(index, r.generation);
  }
  contexts_[index]->hooks_ran = false;
  ContextRecord& r = *contexts_[index];
  r.name = std::string(name);
  if (parent_record != nullptr && parent_record->values != nullptr) {
    r.values = parent_record->values;  // Copy-on-write snapshot.
    r.values_inherited = true;
    parent_record->own_values = nullptr;  // Shared now: its next Set copies.
  }
  return MakeHandle(index);
}

absl::Status LoopCore::DestroyContext(ContextHandle ctx) {
  ContextRecord* r = FindRecord(ctx);
  if (r == nullptr) return CheckLive(ctx);
  if (HandleAccess::ContextIndex(ctx) == 0) {
    return absl::FailedPreconditionError(
        "the root context lives as long as its loop");
  }
  if (r->closing) {
    return absl::FailedPreconditionError(
        absl::StrCat(ctx.DebugString(), " is already being destroyed"));
  }
  r->closing = true;  // [S7] From here on posts are refused.
  accept_.Set(HandleAccess::ContextIndex(ctx), 0);
  // [S7] A foreign Post or PostDelayed that read the table before the store
  // above holds a pin taken before this call: wait for those (not for later
  // ones, which see the context closed), so what they queued is in the
  // ingress (or the timers) before we take (or cancel) it below.
  LoopRegistry::WaitForEarlierPins(LoopRegistry::Find(slot_index_));
  // Their delayed posts are timers once taken, cancelled just below.
  TakeIngress();
  r->own_values = nullptr;  // [S15] No Set in place; Resets go slow.
  local_.Close(HandleAccess::ContextIndex(ctx));
  CancelTimersOf(ctx);
  std::vector<uint64_t> doomed_watches;
  for (const auto& [id, w] : watches_) {
    if (w->ctx == ctx && !w->removed) doomed_watches.push_back(id);
  }
  for (uint64_t id : doomed_watches) RemoveWatch(id);
  // [S7] Everything posted before the close is in the ingress or the ready
  // queue (or the running batch); the marker goes after all of it.
  TakeIngress();
  const uint32_t index = HandleAccess::ContextIndex(ctx);
  local_.Emplace(InternalHandle(),
                 [this, index](ContextHandle) { FreeContext(index); });
  return absl::OkStatus();
}

void LoopCore::FreeContext(uint32_t index) {
  RunDestroyHooks(index);  // [S10] The handle is still valid.
  ContextRecord& r = *contexts_[index];
  std::shared_ptr<ValueTable> values = std::move(r.values);
  r.values_inherited = false;
  r.own_values = nullptr;
  r.name.clear();
  r.live = false;
  r.closing = false;
  // [S16] A slot whose generation would wrap is retired, never reused: a
  // handle of any earlier generation can never name a new context. (After
  // 2^32 - 1 contexts in one slot; the record's few bytes stay allocated.)
  if (r.generation != std::numeric_limits<uint32_t>::max()) {
    free_contexts_.push_back(index);
  }
}

void LoopCore::SetFreeContextGenerationForTesting(uint32_t index,
                                                  uint32_t generation) {
  contexts_[index]->generation = generation;
}

// --- Destroy hooks -----------------------------------------------------------

absl::StatusOr<DestroyHookId> LoopCore::AddDestroyHook(ContextHandle ctx,
                                                       Task hook) {
  if (hooks_closed_) {
    return absl::FailedPreconditionError(
        absl::StrCat("AddDestroyHook on ", ctx.DebugString(),
                     ": the loop is shutting down and ran its destroy hooks"));
  }
  ContextRecord* r = FindRecord(ctx);
  if (r == nullptr) return CheckLive(ctx);
  if (r->closing || r->hooks_ran) {
    return absl::FailedPreconditionError(
        absl::StrCat("AddDestroyHook on ", ctx.DebugString(),
                     ": the context is being destroyed"));
  }
  const uint64_t id = next_hook_id_++;
  r->hooks.emplace_hint(r->hooks.end(), id, std::move(hook));
  return DestroyHookId{id};
}

absl::Status LoopCore::RemoveDestroyHook(ContextHandle ctx, DestroyHookId id) {
  if (ContextRecord* r = FindRecord(ctx)) {
    if (auto it = r->hooks.find(id.value); it != r->hooks.end()) {
      // Out of the map before its destructor runs, which may use the map.
      Task doomed = std::move(it->second);
      r->hooks.erase(it);
      return absl::OkStatus();
    }
  }
  return absl::NotFoundError(absl::StrCat(
      "RemoveDestroyHook on ", ctx.DebugString(), ": hook #", id.value,
      " is not pending (it ran, was removed, or never existed)"));
}

size_t LoopCore::DestroyHookCountForTesting(ContextHandle ctx) const {
  const ContextRecord* r = FindRecord(ctx);
  return r == nullptr ? 0 : r->hooks.size();
}

void LoopCore::RunDestroyHooks(uint32_t index) {
  ContextRecord& r = *contexts_[index];  // Records never move.
  r.hooks_ran = true;
  const ContextHandle ctx = MakeHandle(index);
  while (!r.hooks.empty()) {
    // Out of the map first: the hook may remove other hooks of `r`.
    Task hook = std::move(r.hooks.extract(r.hooks.begin()).mapped());
    try {
      std::move(hook)(ctx);
    } catch (const std::exception& e) {
      Report(ctx, absl::InternalError(
                      absl::StrCat("destroy hook threw: ", e.what())));
    } catch (...) {
      Report(ctx,
             absl::InternalError("destroy hook threw a non-std::exception"));
    }
    hook = nullptr;  // Captures die now, on the loop thread.
  }
}

absl::StatusOr<std::string> LoopCore::ContextName(ContextHandle ctx) const {
  const ContextRecord* r = FindRecord(ctx);
  if (r == nullptr) return CheckLive(ctx);
  return r->name;
}

// --- Values ------------------------------------------------------------------

absl::StatusOr<const AnyValue*> LoopCore::GetValue(ContextHandle ctx,
                                                   uint64_t key) {
  const ContextRecord* r = FindRecord(ctx);
  if (r == nullptr) return CheckLive(ctx);
  return r->values == nullptr ? nullptr : r->values->Get(key);
}

absl::StatusOr<Token> LoopCore::SetValue(ContextHandle ctx, uint64_t key,
                                         AnyValue value) {
  ContextRecord* r = FindRecord(ctx);
  if (r == nullptr) return CheckLive(ctx);
  if (r->closing) {  // [S15] Get and Reset still work; nothing new.
    return absl::FailedPreconditionError(
        absl::StrCat("ContextKey Set on ", ctx.DebugString(),
                     ": the context is being destroyed"));
  }
  if (r->values == nullptr) {
    r->values = std::make_shared<ValueTable>();
  } else if (r->values_inherited) {
    r->values = r->values->Snapshot();  // First write of a child.
    r->values_inherited = false;
  } else if (r->values.use_count() > 1) {
    r->values = std::make_shared<ValueTable>(*r->values);  // Children share.
  }
  // Own and unshared now: the inline fast path may write it.
  r->own_values = r->values.get();
  const uint64_t serial = next_value_serial_++;
  r->values->Set(key, serial, std::move(value));
  return HandleAccess::MakeToken(ctx, key, serial);
}

bool LoopCore::ResetValue(ContextHandle ctx, uint64_t key, const Token& token) {
  ContextRecord* r = FindRecord(ctx);
  // A child's inherited table holds no Set of its own.
  if (r == nullptr || r->values == nullptr || r->values_inherited) return false;
  if (r->values.use_count() > 1) {
    r->values = std::make_shared<ValueTable>(*r->values);
  }
  if (!r->closing) r->own_values = r->values.get();
  return r->values->Reset(key, HandleAccess::TokenSerial(token));
}

size_t LoopCore::ValueFrameCountForTesting(ContextHandle ctx,
                                           uint64_t key) const {
  const ContextRecord* r = FindRecord(ctx);
  if (r == nullptr || r->values == nullptr) return 0;
  return r->values->FrameCountForTesting(key);
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

// --- Running -----------------------------------------------------------------

absl::Status LoopCore::Run(bool until_idle) {
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
  running_ = true;
  absl::Cleanup done = [this] { running_ = false; };
  if (!until_idle) {
    if (!stop_requested_.exchange(false)) {
      event_base_loop(base_, EVLOOP_NO_EXIT_ON_EMPTY);
      stop_requested_.store(false);
    }
    return absl::OkStatus();
  }
  for (;;) {
    if (stop_requested_.exchange(false)) break;
    callbacks_dispatched_ = 0;
    TakeIngress();
    event_base_loop(base_, EVLOOP_NONBLOCK);
    if (callbacks_dispatched_ != 0 || !local_.ready().empty()) continue;
    if (!ingress_.HasNodes()) break;
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
  if (LoopRegistry::Pin(slot_index_, generation_, &unit) == nullptr) {
    return;  // Shutting down: there is no Run() to stop.
  }
  stop_requested_.store(true);
  IngressNode* node = AllocIngressNode();
  node->kind = IngressNode::Kind::kStop;
  if (!PushForeign(node)) FreeIngressNodes(node, node);
  LoopRegistry::Unpin(slot_index_, unit);
  TestHooks::Run(TestHooks::after_foreign_unlock);
}

void LoopCore::Drain() {
  for (;;) {
    TakeIngress();
    if (local_.ready().empty()) break;
    if (shutdown_rounds_ >= options_.max_shutdown_rounds) {
      CloseAndDrop();
      break;
    }
    ++shutdown_rounds_;
    RunBatch();
  }
  local_.set_batch_scheduled(false);
}

void LoopCore::CloseAndDrop() {
  // Close to every post first: a dropped task's destructor may post (a trace
  // finish falls back that way) and must be refused, not queued into the
  // vector being destroyed. Foreign posts were closed by [S5].
  phase_ = Phase::kClosed;
  local_.CloseAll();
  ReadyQueue dropped;
  local_.ready().MoveAllTo(&dropped);
  uint64_t n = 0;
  while (!dropped.empty()) {  // Destroyed unrun, here on the loop thread.
    TaskEntry& t = dropped.front();
    if (IsForeignSegment(t.ctx())) {
      for (const IngressNode* q = t.As<ForeignSegment>().head; q != nullptr;
           q = q->next) {
        if (HandleAccess::ContextGeneration(q->ctx) != 0) ++n;
      }
    } else if (HandleAccess::ContextGeneration(t.ctx()) != 0) {
      ++n;
    }
    t.Destroy();
    dropped.PopFront();
  }
  report_.tasks_dropped += n;
  Report(ContextHandle(),
         absl::DeadlineExceededError(absl::StrCat(
             "loop shutdown: dropped ", n, " tasks still being reposted after ",
             options_.max_shutdown_rounds, " drain rounds")));
}

absl::StatusOr<ShutdownReport> LoopCore::Shutdown() {
  if (phase_ != Phase::kOpen) return report_;
  if (!IsOwnerThread()) {
    return absl::FailedPreconditionError(
        "Shutdown() must be called on the loop thread");
  }
  if (running_) {
    return absl::FailedPreconditionError(
        "Shutdown() cannot run inside Run(): call Stop() and shut down after "
        "Run() returns");
  }
  phase_ = Phase::kDraining;
  const uint64_t run_before = tasks_run_total_;
  LoopSlot* slot = LoopRegistry::Find(slot_index_);
  LoopRegistry::CloseAndWaitForPins(slot);  // [S5]
  // [S5] No foreign thread holds a pin or can take one: close the ingress
  // with one exchange and queue what it held, to run in the drain [S1].
  if (IngressNode* rest = ingress_.Close()) QueueIngress(rest);

  // (The ingress is closed and taken above: foreign delayed posts are
  // timers now.)
  {  // [S4]
    std::vector<Task> doomed;
    doomed.reserve(live_timers_);
    uint64_t dropped = 0;
    // A task whose claim a foreign Cancel won is destroyed but not counted:
    // it was cancelled.
    auto drop = [&](uint32_t index) {
      const bool won = ClaimTimer(index);
      ReleaseForeign(index, won);
      if (won) ++dropped;
      doomed.push_back(std::move(Node(index).task));
      FreeNode(index);  // Cancel now returns false.
    };
    for (const TimerEntry& e : timer_heap_) {
      if (!Stale(e)) drop(e.node);
    }
    timer_heap_.clear();
    stale_heap_entries_ = 0;
    for (size_t i = due_head_; i < due_list_.size(); ++i) {
      if (!Stale(due_list_[i])) drop(due_list_[i].node);
    }
    due_list_.clear();
    due_head_ = 0;
    FlushFreeNodes();
    report_.delayed_dropped += dropped;
  }  // Destroyed unrun, here on the loop thread.

  Drain();  // [S1] [S2] [S3]

  // [S10] Every live context's destroy hooks, then what they posted.
  for (;;) {
    bool ran = false;
    for (uint32_t i = 0; i < contexts_.size(); ++i) {
      ContextRecord& r = *contexts_[i];
      if (!r.live || r.hooks_ran) continue;
      if (shutdown_rounds_ >= options_.max_shutdown_rounds) {
        // Hooks that keep making contexts with hooks: out of budget.
        if (!r.hooks.empty()) {
          std::map<uint64_t, Task> doomed;
          doomed.swap(r.hooks);
          report_.tasks_dropped += doomed.size();
          doomed.clear();  // Destroyed unrun, here on the loop thread.
          Report(MakeHandle(i),
                 absl::DeadlineExceededError(
                     "loop shutdown: dropped destroy hooks still being added "
                     "after the drain limit"));
        }
        r.hooks_ran = true;
        continue;
      }
      r.hooks_ran = true;
      if (r.hooks.empty()) continue;
      RunDestroyHooks(i);
      ran = true;
    }
    if (!ran) break;
    ++shutdown_rounds_;
    Drain();
  }
  hooks_closed_ = true;

  // [S6]
  std::vector<uint64_t> ids;
  for (const auto& [id, w] : watches_) {
    if (!w->removed) ids.push_back(id);
  }
  for (uint64_t id : ids) RemoveWatch(id);
  report_.watches_closed = ids.size();
  Drain();  // What the destroyed callbacks posted.
  report_.tasks_run = tasks_run_total_ - run_before;

  phase_ = Phase::kClosed;
  local_.CloseAll();
  LoopRegistry::Unregister(slot_index_);  // [S8] Every handle is now stale.
  for (auto& r : contexts_) r->live = false;
  for (auto& r : contexts_) {
    r->own_values = nullptr;
    r->values.reset();
  }
  return report_;
}

}  // namespace loop_internal
}  // namespace ctxloop
