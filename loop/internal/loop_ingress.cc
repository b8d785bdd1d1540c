// Copyright 2026 The ctxloop Authors.
//
// Everything that comes in from other threads, through the lock-free foreign
// ingress (foreign_ingress.h): foreign posts, stop nodes, cancel and delayed
// nodes, and the loop's side that takes and runs them. Threading rule:
// `ForeignPostSlot`, `RejectForeignPost`, `PushForeign` and `WriteWakeFd` run
// on a foreign thread holding a registry pin and touch only the ingress, the
// accept table, the eventfd and the wake counter ([S5] [S11]); the rest runs
// on the owner thread. [S7] [S12] are handled here and in loop_contexts.cc /
// loop_core.cc.

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
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "ctxloop/loop/internal/handle_access.h"
#include "ctxloop/loop/internal/loop_core.h"
#include "ctxloop/loop/internal/loop_registry.h"
#include "ctxloop/loop/internal/test_hooks.h"

namespace ctxloop {
namespace loop_internal {

// Inline in this file's two callers (Commit, PostDelayedForeign): the push
// and its reservation are the whole cost of a foreign post's pinned part.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline LoopCore::PushOutcome
LoopCore::PushUserNode(IngressNode* node, ContextHandle ctx, bool bounded) {
  // [S7] The accept table is exact against DestroyContext: it closes the
  // context, then waits for the pins taken before (WaitForEarlierPins), so
  // a post that saw the context open has pushed before the close takes the
  // ingress.
  // ingress.pml: P2 (accept check)
  if (ABSL_PREDICT_FALSE(!accept_.Accepts(ctx))) {
    return PushOutcome::kContextClosed;
  }
  TestHooks::Run(TestHooks::foreign_post_checked);
  // ingress.pml: P4 (reserve; PostNeverFull skips it)
  // Protocol step "reserve": a bounded post counts itself before the push,
  // so the loop's pending count never passes the bound.
  if (bounded) {
    if (ABSL_PREDICT_FALSE(!ingress_.Reserve())) {
      refused_full_.fetch_add(1, std::memory_order_relaxed);
      return PushOutcome::kFull;
    }
    node->counted = true;
  }
  // The push, as in PushForeign (inline here: the hot path).
  // ingress.pml: P5 (push CAS) is in ForeignIngress::Push.
  const ForeignIngress::PushResult pushed = ingress_.Push(node);
  if (ABSL_PREDICT_TRUE(pushed == ForeignIngress::PushResult::kQueued)) {
    return PushOutcome::kPushed;
  }
  // ingress.pml: P6 (eventfd write, only after kArmed)
  if (pushed == ForeignIngress::PushResult::kQueuedWake) {
    WriteWakeFd();  // Protocol step "eventfd write", still pinned.
    return PushOutcome::kPushed;
  }
  // Closed: unreachable while pinned.
  if (bounded) ingress_.Unreserve();
  node->counted = false;
  return PushOutcome::kContextClosed;
}

ForeignPostSlot::ForeignPostSlot() : node_(AllocIngressNode()) {
  static_assert(sizeof(IngressNode) <= 128, "two cache lines");
  task_ = &node_->task;
}

absl::Status ForeignPostSlot::Commit(ContextHandle ctx, bool* general,
                                     bool bounded) {
  IngressNode* node = node_;
  node->ctx = ctx;
  const uint32_t slot = HandleAccess::LoopSlot(ctx);
  uint64_t unit;
  bool owner;
  // ingress.pml: P1 (pin)
  // Protocol step "pin": the task is built already; from here to the unpin
  // below no user code runs.
  LoopCore* core =
      LoopRegistry::Pin(slot, HandleAccess::LoopGeneration(ctx), &unit, &owner);
  if (ABSL_PREDICT_FALSE(core == nullptr || owner)) {  // [S5] [S8]
    if (core != nullptr) LoopRegistry::Unpin(slot, unit);
    *general = true;
    return absl::OkStatus();
  }
  *general = false;
  const LoopCore::PushOutcome outcome = core->PushUserNode(node, ctx, bounded);
  LoopRegistry::Unpin(slot, unit);  // Protocol step "unpin".
  TestHooks::Run(TestHooks::after_foreign_unlock);
  if (ABSL_PREDICT_TRUE(outcome == LoopCore::PushOutcome::kPushed)) {
    node_ = nullptr;
    return absl::OkStatus();
  }
  // ingress.pml: P8 (refusal, after the P7 unpin)
  // Protocol step "refusal": never reached the loop. The task is destroyed
  // here, on this thread, after the unpin.
  TakeTask();
  return LoopCore::RefusalStatus(outcome, ctx);
}

Task ForeignPostSlot::TakeTask() {
  IngressNode* node = std::exchange(node_, nullptr);
  Task task = std::move(node->task);
  node->task = nullptr;
  ReturnIngressNode(node);
  return task;
}

void ForeignPostSlot::Abandon() {
  // Building the task threw: its storage holds no task. Give it an empty
  // one again (what every pooled node holds).
  IngressNode* node = std::exchange(node_, nullptr);
  ::new (&node->task) Task();
  ReturnIngressNode(node);
}

absl::Status LoopCore::RefusalStatus(PushOutcome outcome, ContextHandle ctx) {
  if (outcome == PushOutcome::kFull) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "cannot post to ", ctx.DebugString(),
        ": its loop holds the most pending cross-thread posts it accepts "
        "(Loop::Options::max_pending_foreign); see WaitForRoom"));
  }
  return RejectForeignPost(ctx);
}

absl::StatusOr<DelayedTaskHandle> LoopCore::PostDelayedForeign(
    ContextHandle ctx, int64_t deadline_ns, Task&& task) {
  // Everything that may run user code (the task's move) happens before the
  // pin, and its destruction on a refusal after the unpin.
  IngressNode* node = AllocIngressNode();
  node->kind = IngressNode::Kind::kDelayed;
  // Once pushed, a handle names it: never deleted (a refusal below restores
  // the flag, as no handle names the node then).
  const bool was_kept_forever = node->kept_forever;
  node->kept_forever = true;
  node->ctx = ctx;
  node->task = std::move(task);
  node->deadline_ns = deadline_ns;
  const uint64_t id = NewForeignTimerId();
  node->timer_id = id;
  node->claim.store(id, std::memory_order_relaxed);
  const uint32_t slot = HandleAccess::LoopSlot(ctx);
  const uint32_t gen = HandleAccess::LoopGeneration(ctx);
  uint64_t unit;
  LoopCore* core = LoopRegistry::Pin(slot, gen, &unit);  // Step "pin".
  absl::Status refused;
  if (core == nullptr) {
    refused = absl::FailedPreconditionError(
        absl::StrCat("cannot post a delayed task to ", ctx.DebugString(),
                     ": its loop is shut down, shutting down or destroyed"));
  } else {
    // [S4] Pinned, so shutdown has not closed the loop; if it is about to,
    // this timer is dropped and counted by it. [S7] DestroyContext closes
    // the accept table, waits for earlier pins (so for us), takes the
    // ingress (inserting this timer), then cancels the context's timers.
    const PushOutcome outcome = core->PushUserNode(node, ctx);
    LoopRegistry::Unpin(slot, unit);  // Step "unpin".
    TestHooks::Run(TestHooks::after_foreign_unlock);
    if (outcome == PushOutcome::kPushed) {
      // From the push on, the node is the loop's: it may already have run
      // the task and recycled the node, so nothing here reads it again (the
      // handle keeps its address and our id: a stale pair, whose claim
      // compare-and-swap just fails).
      DelayedTaskHandle handle;
      handle.loop_slot_ = slot;
      handle.loop_generation_ = gen;
      handle.id_ = id;
      handle.foreign_ = node;
      return handle;
    }
    refused = RefusalStatus(outcome, ctx);
  }
  // Step "refusal": destroyed here, on this thread, after the unpin. The
  // node was never pushed, so no handle names it.
  Task doomed = std::move(node->task);
  node->task = nullptr;
  node->kept_forever = was_kept_forever;
  ReturnIngressNode(node);
  return refused;
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
    // ingress.pml: P6 (eventfd write, only after kArmed)
    case ForeignIngress::PushResult::kQueuedWake:
      WriteWakeFd();  // Protocol step "eventfd write", still pinned.
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

bool LoopCore::TakeIngress() {
  // A take that returns nodes leaves the ingress unarmed: only a take that
  // finds it empty arms it. So take again until tasks were queued (their
  // batch takes again when it ends) or the ingress is armed.
  // ingress.pml: L-T1..L-T4 (take until tasks queued or armed)
  while (IngressNode* list = ingress_.Take()) {
    if (QueueIngress(list)) return true;
  }
  // Armed (or closed): any burst has drained; give memory back.
  if (ABSL_PREDICT_FALSE(IngressPoolOverBound())) MaybeTrimPool();
  return false;
}

bool LoopCore::QueueIngress(IngressNode* newest_first) {
  // ingress.pml: L-T2 (reverse), L-Q2 (task nodes: one segment)
  // One pass over the list as taken (newest first) reverses it to FIFO:
  // task nodes into the segment `tasks`, the other nodes (commands) into
  // `commands`, each by prepending, so both end oldest first. A segment's
  // tasks run later anyway, so splitting them from the commands (acted on
  // now, in their own order) changes no order that anything observes.
  IngressNode* tasks = nullptr;
  IngressNode* commands = nullptr;
  uint64_t taken = 0;
  for (IngressNode* n = newest_first; n != nullptr;) {
    IngressNode* next = n->next;
    ++taken;
    if (ABSL_PREDICT_TRUE(n->kind == IngressNode::Kind::kTask ||
                          n->kind == IngressNode::Kind::kDestroy)) {
      n->next = tasks;
      tasks = n;
    } else {
      n->next = commands;
      commands = n;
    }
    n = next;
  }
  nodes_taken_ += taken;
  bool stop = false;
  bool rearm = false;
  std::vector<Task> doomed;  // Cancelled timers' tasks, destroyed below.
  int64_t released = 0;
  for (IngressNode* n = commands; n != nullptr;) {
    IngressNode* next = n->next;
    switch (n->kind) {
      case IngressNode::Kind::kTask:
      case IngressNode::Kind::kDestroy:
        break;  // Sorted into `tasks` above.
      // ingress.pml: L-Q1 (kStop node)
      case IngressNode::Kind::kStop:
        stop = true;
        KeepFreeNode(n);
        break;
      case IngressNode::Kind::kDelayed:
        // A timer now: out of the pending count.
        if (n->counted) {
          n->counted = false;
          ++released;
        }
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
  ReleasePending(released);
  FlushFreeNodes();
  if (rearm || !doomed.empty()) ArmTimer();
  doomed.clear();  // On the loop thread, after the ingress is settled.
  // [S12] A foreign Stop() set the flag before it pushed its node; this take
  // synchronized with that push, so the flag is seen here.
  // ingress.pml: L-Q4 (stop node: the flag is seen)
  if (stop && phase_ == Phase::kOpen &&
      stop_requested_.load(std::memory_order_relaxed)) {
    BreakOwnPass();  // [S20]
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

bool LoopCore::RunForeignSegment(TaskEntry& entry) {
  ForeignSegment& segment = entry.As<ForeignSegment>();
  // ingress.pml: L-B6..L-B8 (release after the run: ReleasePending)
  // Protocol step "release": the pending count drops once per 64 nodes run
  // and at the segment's end (one atomic per batch, none per task). The run
  // nodes collect into a pool batch here (in registers: no per-node pool
  // work), handed to `free_nodes_` whole.
  int64_t ran = 0;               // Counted posts run since the last release.
  IngressNode* batch = nullptr;  // Run nodes, newest first.
  uint32_t batch_size = 0;
  uint32_t batch_kept = 0;
  bool stopped = false;
  while (!segment.done()) {
    IngressNode* n = segment.head;
    segment.head = n->next;  // Out of the segment before it runs.
    // ingress.pml: L-B2 (run a node), L-B3 (stop check)
    RunNode(n);
    ran += n->counted;
    batch_kept += n->kept_forever;
    n->next = batch;
    batch = n;
    if (ABSL_PREDICT_FALSE(++batch_size == kIngressNodeBatch)) {
      batch->batch_size = batch_size;
      batch->batch_kept = batch_kept;
      free_nodes_.AddBatch(batch);
      batch = nullptr;
      batch_size = 0;
      batch_kept = 0;
      ReleasePending(ran);
      ran = 0;
    }
    if (ABSL_PREDICT_FALSE(StopRequestedInBatch())) {
      stopped = true;
      break;
    }
  }
  if (batch != nullptr) {
    batch->batch_size = batch_size;
    batch->batch_kept = batch_kept;
    free_nodes_.AddBatch(batch);
  }
  ReleasePending(ran);
  return stopped;
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

void LoopCore::MaybeTrimPool() {
  if (trim_scheduled_ || phase_ != Phase::kOpen) return;
  // Once, a second from now, on an event of the loop's own that the
  // destructor frees: an `event_base_once` would stay on an adopted base,
  // pointing at a destroyed loop [S17].
  if (trim_event_ == nullptr) {
    trim_event_ = event_new(base_, -1, 0, &LoopCore::OnTrimTimer, this);
    if (trim_event_ == nullptr) return;
  }
  trim_scheduled_ = true;
  trim_draws_ = IngressPoolDraws();
  timeval tv;
  tv.tv_sec = static_cast<time_t>(kPoolTrimIntervalNs / 1000000000);
  tv.tv_usec =
      static_cast<suseconds_t>((kPoolTrimIntervalNs % 1000000000) / 1000);
  if (event_add(trim_event_, &tv) != 0) trim_scheduled_ = false;
}

void LoopCore::OnTrimTimer(int, short, void* arg) {
  auto* self = static_cast<LoopCore*>(arg);
  self->trim_scheduled_ = false;
  if (!IngressPoolOverBound()) return;
  if (IngressPoolDraws() == self->trim_draws_) {
    TrimIngressPool();  // Quiet for a second: the burst is over.
  } else {
    self->MaybeTrimPool();  // Still drawing: look again later.
  }
}

void LoopCore::OnWake(int fd, short, void* arg) {
  auto* self = static_cast<LoopCore*>(arg);
  ++self->callbacks_dispatched_;
  self->cached_now_ns_ = -1;
  uint64_t count;
  // ingress.pml: L-W1 (drain the eventfd), then L-W2 (take)
  while (read(fd, &count, sizeof(count)) > 0) {
  }
  // After the read: see PushForeign and [S12]. (RunUntilIdle holds later
  // cross-thread posts back; it settles the ingress when it returns.)
  self->TakeIngressUnlessHeld();
  // ingress.pml: L-W3 (stop flag)
  if (self->stop_requested_.load(std::memory_order_relaxed)) {
    self->BreakOwnPass();  // [S20]
  }
}

}  // namespace loop_internal
}  // namespace ctxloop
