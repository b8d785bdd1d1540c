// Copyright 2026 The ctxloop Authors.
//
// The loop thread's own tasks: same-thread posts into the ready queue, and the
// batches that run them (with the foreign segments the ingress queued among
// them). Threading rule: owner thread only; no atomics but the stop flag,
// which a foreign Stop() sets and a batch reads after each task.

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

// --- Tasks -----------------------------------------------------------------

absl::Status LoopCore::PostLocal(ContextHandle ctx, Task&& task) {
  // `local_` accepts exactly when the loop is not closed and the context is
  // live and not closing (see NewContext, DestroyContext, CloseAndDrop).
  if (!local_.Accepts(ctx)) return RejectPost(ctx);
  local_.Emplace(ctx, std::move(task));
  return absl::OkStatus();
}

void LoopCore::ScheduleBatch() { local_.ScheduleBatch(); }

void LocalPoster::ScheduleBatch() {
  // Inside a batch, RunBatch schedules what its tasks posted when it ends.
  if (batch_scheduled_ || in_batch_) return;
  batch_scheduled_ = true;
  event_active(batch_event_, EV_READ, 0);
  // Driven mode, outside RunReady: an active event does not show on the
  // backend fd; the eventfd does (once per batch).
  if (ABSL_PREDICT_FALSE(kick_fd_ >= 0)) LoopCore::Kick(kick_fd_);
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
  // ingress.pml: L-B1 (batch start)
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
  // ingress.pml: L-B4 (batch-end take), L-B5 (next batch)
  TestHooks::Run(TestHooks::before_batch_end_take);
  TakeIngressUnlessHeld();
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

bool LoopCore::StopInBatchSlow() const {
  if (phase_ != Phase::kOpen) return false;
  // [S20] The host's dispatch of an adopted base runs this batch: the stop
  // is for the next Run(), and the batch goes on.
  if (!running_) return false;
  // Stop(): the rest stays queued, in order, ahead of what they posted. A
  // Stop() from another thread only set the flag: end this pass of the
  // event loop now, not when its wake-up is polled.
  event_base_loopbreak(base_);
  return true;
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

void LoopCore::OnBatch(int, short, void* arg) {
  auto* self = static_cast<LoopCore*>(arg);
  ++self->callbacks_dispatched_;
  self->cached_now_ns_ = -1;  // A new callback: LoopNowNs reads again.
  self->RunBatch();
}

}  // namespace loop_internal
}  // namespace ctxloop
