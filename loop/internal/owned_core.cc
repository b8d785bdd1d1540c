// Copyright 2026 The ctxloop Authors.

#include "ctxloop/loop/internal/owned_core.h"

#include "absl/strings/str_cat.h"
#include "ctxloop/loop/internal/handle_access.h"
#include "ctxloop/loop/internal/loop_registry.h"

namespace ctxloop {
namespace loop_internal {

absl::StatusOr<LoopCore*> OwnedCore(ContextHandle ctx, absl::string_view what) {
  if (LoopCore* core = FindOwnedCore(ctx)) return core;
  return NotOwnedError(ctx, what);
}

absl::Status NotOwnedError(ContextHandle ctx, absl::string_view what) {
  if (ctx.is_null()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": null ContextHandle"));
  }
  const uint32_t slot = HandleAccess::LoopSlot(ctx);
  const uint32_t gen = HandleAccess::LoopGeneration(ctx);
  uint64_t unit;
  if (LoopRegistry::Pin(slot, gen, &unit) != nullptr) {
    LoopRegistry::Unpin(slot, unit);
    return absl::FailedPreconditionError(absl::StrCat(
        what, " on ", ctx.DebugString(),
        " called from a thread that is not its loop thread; post a task to ",
        ctx.DebugString(), " and do it there"));
  }
  return absl::FailedPreconditionError(absl::StrCat(
      what, " on ", ctx.DebugString(), ": its loop is shut down or destroyed"));
}

}  // namespace loop_internal
}  // namespace ctxloop
