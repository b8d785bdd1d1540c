// Copyright 2026 The ctxloop Authors.
//
// Delayed tasks: the owner-only 4-ary heap and due list over a slab of nodes,
// the loop's cached time, and the one atomic per task (its cancel claim) that
// makes Cancel exact on every thread. Threading rule: owner thread only,
// except `PostDelayedPinned`/`CancelPinned` (foreign thread holding a pin:
// they touch only the ingress, the accept table and a claim) and the slab's
// chunk pointers, which pinned cancellers read. [S4] [S9] are handled here
// and in loop_shutdown.cc.

#include <errno.h>
#include <event2/event.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "ctxloop/loop/internal/handle_access.h"
#include "ctxloop/loop/internal/loop_core.h"
#include "ctxloop/loop/internal/loop_registry.h"
#include "ctxloop/loop/internal/test_hooks.h"

namespace ctxloop {
namespace loop_internal {

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
  // The same-thread post's inline check (local_post.h): live and not closing.
  if (ABSL_PREDICT_FALSE(!local_.Accepts(ctx))) return RejectPost(ctx);
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
  node->kept_forever = true;  // A handle will name it.
  node->ctx = ctx;
  node->task = std::move(task);
  // From the call: a foreign thread has no loop iteration to count from.
  node->deadline_ns = DeadlineNs(MonotonicNowNs(), delay_ns);
  const uint64_t id = NewForeignTimerId();
  node->timer_id = id;
  node->claim.store(id, std::memory_order_relaxed);
  if (!PushForeign(node)) {  // Unreachable while pinned.
    task = std::move(node->task);
    FreeIngressNodes(node, node);
    return RejectForeignPost(ctx);
  }
  // From the push on, the node is the loop's: it may already have run the
  // task (a short delay) and recycled the node to another poster, so nothing
  // here reads it again (the handle keeps its address and our id: a stale
  // pair, whose claim compare-and-swap just fails).
  DelayedTaskHandle handle;
  handle.loop_slot_ = slot_index_;
  handle.loop_generation_ = generation_;
  handle.id_ = id;
  handle.foreign_ = node;
  return handle;
}

uint32_t LoopCore::InsertTimer(ContextHandle ctx, int64_t delay_ns,
                               int64_t deadline, Task&& task, bool* earliest) {
  const uint32_t index = AllocNode();
  TimerNode& node = Node(index);
  const uint64_t id = next_timer_id_++;
  node.id = id;
  timer_ids_[index] = id;
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
    due_list_.emplace_back(deadline, id, index);
  } else {
    node.in_heap = true;
    timer_heap_.emplace_back(deadline, id, index);
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
  timer_ids_.push_back(0);
  return timer_nodes_++;
}

void LoopCore::FreeNode(uint32_t index) {
  TimerNode& node = Node(index);
  node.id = 0;  // Every handle and due-list entry of it is now stale.
  timer_ids_[index] = 0;
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

size_t LoopCore::SmallestChild(size_t pos, size_t n) const {
  const size_t first = pos * 4 + 1;
  if (first >= n) return n;
  const size_t end = std::min(first + 4, n);
  size_t best = first;
  for (size_t c = first + 1; c < end; ++c) {
    if (timer_heap_[c] < timer_heap_[best]) best = c;
  }
  return best;
}

void LoopCore::HeapSiftDown(size_t pos, TimerEntry e) {
  const size_t n = timer_heap_.size();
  for (;;) {
    const size_t best = SmallestChild(pos, n);
    if (best == n || !(timer_heap_[best] < e)) break;
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
    const size_t best = SmallestChild(pos, n);
    if (best == n) break;
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
    stale_due_entries_ = 0;
    return;
  }
  MaybeCompactDueList();
  if (due_head_ >= kMinDueCompaction &&
      due_head_ >= due_list_.size() - due_head_) {
    // Timers that keep posting zero-delay timers keep the due list from
    // ever emptying: drop the entries before the head (run or cancelled),
    // moving the unrun ones, no more of them than were dropped (O(1)
    // amortized per entry; no allocation).
    due_list_.erase(due_list_.begin(),
                    due_list_.begin() + static_cast<ptrdiff_t>(due_head_));
    due_head_ = 0;
  }
}

void LoopCore::MaybeCompactDueList() {
  if (stale_due_entries_ < kMinDueCompaction ||
      stale_due_entries_ * 2 <= due_list_.size() - due_head_) {
    return;
  }
  // Cancelled zero-delay timers whose entries the next timer run has not
  // passed yet (a task that posts and cancels zero-delay timers in a loop):
  // drop them and the entries before the head. O(n) once the cancels
  // counted since the last compaction reach half the unrun entries, so O(1)
  // amortized per cancel. Safe inside a timer run, which reads the head
  // again after each task.
  size_t kept = 0;
  for (size_t i = due_head_; i < due_list_.size(); ++i) {
    if (!Stale(due_list_[i])) due_list_[kept++] = due_list_[i];
  }
  due_list_.resize(kept);  // Keeps its capacity.
  due_head_ = 0;
  stale_due_entries_ = 0;
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
  } else {
    ++stale_due_entries_;
    MaybeCompactDueList();
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
    // Driven mode, outside RunReady: show it on the backend fd.
    if (ABSL_PREDICT_FALSE(local_.kick_fd() >= 0)) Kick(local_.kick_fd());
    return;
  }
  if (wait == 0) {
    // Due, from a batch or a timer run: a zero libevent timeout, which fires
    // after the next poll of fds.
    timeval tv = {0, 0};
    event_add(timer_event_, &tv);
    return;
  }
  // Later: the timerfd, at the absolute deadline (the clock of
  // MonotonicNowNs). Programmed only if that is earlier than what it waits
  // for (or it waits for nothing): a later deadline (the earliest timer was
  // cancelled, or ran) lets it fire early, find nothing due and be
  // programmed then, so cancels cost no syscall.
  if (timer_fd_deadline_ns_ < 0 || next < timer_fd_deadline_ns_) {
    itimerspec its = {};
    its.it_value.tv_sec = static_cast<time_t>(next / 1000000000);
    its.it_value.tv_nsec = static_cast<long>(next % 1000000000);  // NOLINT
    if (timerfd_settime(timer_fd_, TFD_TIMER_ABSTIME, &its, nullptr) == 0) {
      timer_fd_deadline_ns_ = next;
    } else {
      // Cannot happen with a valid fd and deadline; never lose the timer.
      timeval tv;
      tv.tv_sec = static_cast<time_t>(wait / 1000000000);
      tv.tv_usec = static_cast<suseconds_t>((wait % 1000000000 + 999) / 1000);
      event_add(timer_event_, &tv);
    }
  }
}

void LoopCore::OnTimer(int, short, void* arg) {
  auto* self = static_cast<LoopCore*>(arg);
  ++self->callbacks_dispatched_;
  self->RunDueTimers();
}

void LoopCore::OnTimerFd(int fd, short, void* arg) {
  auto* self = static_cast<LoopCore*>(arg);
  uint64_t expirations;
  ssize_t n;
  do {
    n = read(fd, &expirations, sizeof(expirations));
  } while (n < 0 && errno == EINTR);
  // It expired: a one-shot timerfd is now disarmed. (EAGAIN: it was
  // reprogrammed after it became readable, which resets it, and waits for
  // its new deadline.)
  if (n > 0) self->timer_fd_deadline_ns_ = -1;
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
  // The run keeps no position in the heap or the due list across a task: the
  // tasks run here may cancel timers, post timers (whose ArmTimer trims the
  // due list, and clears it once it holds only stale entries), destroy
  // contexts (whose timers go stale) or take the ingress, so after each task
  // the run reads the due list's head and the heap's top again. What it
  // keeps is immutable: the clock reading and the id of the last due-list
  // entry present now. Ids grow along the due list (InsertTimer appends with
  // a fresh id), so the entries present now are exactly those with an id no
  // larger, wherever the head has moved meanwhile.
  const uint64_t due_last_id =
      due_head_ < due_list_.size() ? due_list_.back().id : 0;
  for (;;) {
    // [S20] Only a pass ctxloop runs stops here (as in RunBatch).
    if (running_ && phase_ == Phase::kOpen &&
        stop_requested_.load(std::memory_order_relaxed)) {
      event_base_loopbreak(base_);
      break;
    }
    // Skip cancelled (stale) entries at the head of the due list and the
    // top of the heap.
    while (due_head_ < due_list_.size() && Stale(due_list_[due_head_])) {
      ++due_head_;
    }
    while (!timer_heap_.empty() && Stale(timer_heap_[0])) {
      HeapPop();
      --stale_heap_entries_;
    }
    const bool list_due =
        due_head_ < due_list_.size() && due_list_[due_head_].id <= due_last_id;
    const bool heap_due =
        !timer_heap_.empty() && timer_heap_[0].deadline_ns <= now;
    uint32_t index;
    if (list_due && (!heap_due || due_list_[due_head_] < timer_heap_[0])) {
      index = due_list_[due_head_].node;
      ++due_head_;
    } else if (heap_due) {
      index = timer_heap_[0].node;
      HeapPop();
    } else {
      break;
    }
    if (due_head_ == due_list_.size()) {
      due_list_.clear();  // Keeps its capacity: no allocation next time.
      due_head_ = 0;
      stale_due_entries_ = 0;
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
      RunOne(due);  // May change any timer state (see above).
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
      ++stale_due_entries_;
    }
  }
  MaybeCompactHeap();
  MaybeCompactDueList();
  FlushFreeNodes();
  // `doomed` is destroyed here, on the loop thread.
}

}  // namespace loop_internal
}  // namespace ctxloop
