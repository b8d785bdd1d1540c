// Copyright 2026 The ctxloop Authors.
//
// Internal. Resolves a handle to its loop for operations that must run on
// the loop thread, with the status every such operation returns otherwise.

#ifndef CTXLOOP_LOOP_INTERNAL_OWNED_CORE_H_
#define CTXLOOP_LOOP_INTERNAL_OWNED_CORE_H_

#include "absl/base/attributes.h"
#include "absl/base/optimization.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ctxloop/loop/context_handle.h"
#include "ctxloop/loop/internal/handle_access.h"
#include "ctxloop/loop/internal/local_post.h"
#include "ctxloop/loop/internal/loop_core.h"
#include "ctxloop/loop/internal/loop_registry.h"

namespace ctxloop {
namespace loop_internal {

// The loop of `ctx` if the caller is on its loop thread, else null. Cheap:
// no allocation, so hot paths call it and build a message only on failure.
// A hit in this thread's owner cache (local_post.h) is a 64-bit compare and
// an acquire load of the cache epoch; a miss looks the registry up once.
inline LoopCore* FindOwnedCore(ContextHandle ctx) {
  if (LoopCore* core = CachedOwnedCore(OwnerKey(ctx))) return core;
  LocalPoster* poster = FindLocalPosterSlow(HandleAccess::LoopSlot(ctx),
                                            HandleAccess::LoopGeneration(ctx));
  return poster != nullptr ? poster->core() : nullptr;
}

// Why `FindOwnedCore(ctx)` returned null:
//   kInvalidArgument     for a null handle;
//   kFailedPrecondition  naming `what` and `ctx`, for a foreign thread or a
//                        loop that is gone.
ABSL_ATTRIBUTE_NOINLINE absl::Status NotOwnedError(ContextHandle ctx,
                                                   absl::string_view what);

// `FindOwnedCore`, or `NotOwnedError` as a status.
absl::StatusOr<LoopCore*> OwnedCore(ContextHandle ctx, absl::string_view what);

}  // namespace loop_internal
}  // namespace ctxloop

#endif  // CTXLOOP_LOOP_INTERNAL_OWNED_CORE_H_
