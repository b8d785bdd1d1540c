// Copyright 2026 The ctxloop Authors.

#include "ctxloop/loop/context_key.h"

#include <atomic>

#include "absl/base/optimization.h"
#include "absl/strings/str_cat.h"
#include "ctxloop/loop/internal/handle_access.h"
#include "ctxloop/loop/internal/owned_core.h"

namespace ctxloop {
namespace loop_internal {

namespace {
std::atomic<uint64_t> g_next_key_id{1};
}  // namespace

uint64_t NewContextKeyId() {
  return g_next_key_id.fetch_add(1, std::memory_order_relaxed);
}

void SetNextContextKeyIdForTesting(uint64_t next) {
  g_next_key_id.store(next, std::memory_order_relaxed);
}

absl::Status WrongValueTypeError(ContextHandle ctx,
                                 absl::string_view key_name) {
  return absl::InternalError(
      absl::StrCat("ContextKey '", key_name, "' Get on ", ctx.DebugString(),
                   ": the stored value has another type (two keys share an "
                   "id)"));
}

absl::StatusOr<const AnyValue*> GetContextValue(ContextHandle ctx,
                                                uint64_t key_id,
                                                absl::string_view key_name) {
  LoopCore* core = FindOwnedCore(ctx);
  if (ABSL_PREDICT_FALSE(core == nullptr)) {
    return NotOwnedError(ctx, absl::StrCat("ContextKey '", key_name, "' Get"));
  }
  return core->GetValue(ctx, key_id);
}

absl::StatusOr<Token> SetContextValue(ContextHandle ctx, uint64_t key_id,
                                      absl::string_view key_name,
                                      AnyValue value) {
  LoopCore* core = FindOwnedCore(ctx);
  if (ABSL_PREDICT_FALSE(core == nullptr)) {
    return NotOwnedError(ctx, absl::StrCat("ContextKey '", key_name, "' Set"));
  }
  return core->SetValue(ctx, key_id, std::move(value));
}

absl::Status ResetContextValue(ContextHandle ctx, const Token& token,
                               uint64_t key_id, absl::string_view key_name) {
  const ContextHandle origin = token.context();
  if (origin.is_null()) {
    return absl::InvalidArgumentError(
        absl::StrCat("ContextKey '", key_name, "' Reset on ", ctx.DebugString(),
                     ": empty token (not made by Set)"));
  }
  if (origin != ctx) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ContextKey '", key_name, "' Reset: token was created in ",
        origin.DebugString(), " and cannot be reset in ", ctx.DebugString(),
        "; post the reset to ", origin.DebugString()));
  }
  if (HandleAccess::TokenKey(token) != key_id) {
    return absl::InvalidArgumentError(
        absl::StrCat("ContextKey '", key_name, "' Reset on ", ctx.DebugString(),
                     ": token belongs to another ContextKey"));
  }
  LoopCore* core = FindOwnedCore(ctx);
  if (ABSL_PREDICT_FALSE(core == nullptr)) {
    return NotOwnedError(
        ctx, absl::StrCat("ContextKey '", key_name, "' Reset (token from ",
                          origin.DebugString(), ")"));
  }
  if (!core->ResetValue(ctx, key_id, token)) {
    if (absl::Status live = core->CheckLive(ctx); !live.ok()) return live;
    return absl::FailedPreconditionError(absl::StrCat(
        "ContextKey '", key_name, "' Reset on ", ctx.DebugString(),
        ": token from ", origin.DebugString(), " was already used"));
  }
  return absl::OkStatus();
}

}  // namespace loop_internal
}  // namespace ctxloop
