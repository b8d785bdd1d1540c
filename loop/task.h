// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/loop/task.h
// -----------------------------------------------------------------------------
//
// The callable types a `Loop` runs.
//
// A `Task` is move-only and runs at most once (`absl::AnyInvocable` with an
// rvalue-qualified call, like Chromium's `OnceCallback`). It receives the
// handle of the context it runs on; there is no other way to learn "where am
// I". Small callables (up to about two pointers of captures) are stored inline
// in the task; larger ones cost one allocation when the task is made.
//
// A task may throw: the loop catches the exception at its boundary, reports it
// to the loop's `ErrorHandler` with the context handle, and keeps running.

#ifndef CTXLOOP_LOOP_TASK_H_
#define CTXLOOP_LOOP_TASK_H_

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "ctxloop/loop/context_handle.h"

namespace ctxloop {

// A unit of work for one context. Invoke as `std::move(task)(ctx)`.
using Task = absl::AnyInvocable<void(ContextHandle) &&>;

// Receives what went wrong on a loop outside any caller's reach: a task or
// callback that threw, tasks that could not run at shutdown. Runs on the loop
// thread. `ctx` is the context involved (null if none).
using ErrorHandler =
    absl::AnyInvocable<void(ContextHandle ctx, const absl::Status& error)>;

}  // namespace ctxloop

#endif  // CTXLOOP_LOOP_TASK_H_
