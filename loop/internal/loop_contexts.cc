// Copyright 2026 The ctxloop Authors.
//
// Contexts: creation, destruction ([S7] [S15] [S16]), their values and their
// destroy hooks ([S10]). Threading rule: owner thread only; the one thing
// foreign threads read is the accept table (foreign_ingress.h), which
// DestroyContext closes and then waits for the pins taken before ([S7]).

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
  // ingress.pml: L-D1 (close C in the accept table)
  accept_.Set(HandleAccess::ContextIndex(ctx), 0);
  // [S7] A foreign Post or PostDelayed that read the table before the store
  // above holds a pin taken before this call: wait for those (not for later
  // ones, which see the context closed), so what they queued is in the
  // ingress (or the timers) before we take (or cancel) it below.
  // ingress.pml: L-D2 (epoch flip), L-D3 (wait for earlier pins)
  LoopRegistry::WaitForEarlierPins(LoopRegistry::Find(slot_index_));
  // Their delayed posts are timers once taken, cancelled just below.
  // ingress.pml: L-D4 (take)
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
  // ingress.pml: L-D5 (take), L-D6 (the marker)
  TakeIngress();
  const uint32_t index = HandleAccess::ContextIndex(ctx);
  local_.Emplace(InternalHandle(),
                 [this, index](ContextHandle) { FreeContext(index); });
  return absl::OkStatus();
}

void LoopCore::FreeContext(uint32_t index) {
  // ingress.pml: L-M1 (the marker: FreeContext)
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

}  // namespace loop_internal
}  // namespace ctxloop
