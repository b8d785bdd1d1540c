// Copyright 2026 The ctxloop Authors.
//
// Shutdown: closing to foreign threads ([S5]), dropping timers ([S4]), the
// drains ([S1] [S2] [S3]), the destroy hooks ([S10]), the watch teardown
// ([S6]) and the final close ([S8]). Threading rule: owner thread only (the
// thread that runs the destructor becomes the owner first).

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
#include "ctxloop/loop/internal/loop_core.h"
#include "ctxloop/loop/internal/loop_registry.h"
#include "ctxloop/loop/internal/test_hooks.h"

namespace ctxloop {
namespace loop_internal {

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
  if (InOwnCallback()) {  // [S19]
    return absl::FailedPreconditionError(
        "Shutdown() cannot run inside one of the loop's own callbacks: the "
        "host dispatching its base runs it; shut down from the host's code");
  }
  // ingress.pml: L-S1 (draining)
  phase_ = Phase::kDraining;
  const uint64_t run_before = tasks_run_total_;
  LoopSlot* slot = LoopRegistry::Find(slot_index_);
  // ingress.pml: L-S2 (close the slot), L-S3 (wait for pins)
  LoopRegistry::CloseAndWaitForPins(slot);  // [S5]
  // No foreign thread can post any more: wake producers waiting for room.
  // ingress.pml: L-SR (room_->Close: waiters woken)
  room_->Close();
  // [S5] No foreign thread holds a pin or can take one: close the ingress
  // with one exchange and queue what it held, to run in the drain [S1].
  // ingress.pml: L-S4 (close the ingress), L-S5 (queue the rest)
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
    stale_due_entries_ = 0;
    FlushFreeNodes();
    report_.delayed_dropped += dropped;
  }  // Destroyed unrun, here on the loop thread.

  // ingress.pml: L-S6 (drain)
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
  // ingress.pml: L-S7 (unregister: waits for pins)
  LoopRegistry::Unregister(slot_index_);  // [S8] Every handle is now stale.
  for (auto& r : contexts_) r->live = false;
  for (auto& r : contexts_) {
    r->own_values = nullptr;
    r->values.reset();
  }
  // [S17] Off the base: a host that keeps dispatching an adopted base runs
  // no callback of a shut-down loop (the destructor frees the events).
  if (!owns_base_) {
    for (event* ev : {batch_event_, wake_event_, timer_event_, timer_fd_event_,
                      trim_event_, now_probe_}) {
      if (ev != nullptr) event_del(ev);
    }
  }
  local_.set_kick_fd(-1);
  return report_;
}

}  // namespace loop_internal
}  // namespace ctxloop
