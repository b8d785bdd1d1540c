// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/loop/context_key.h
// -----------------------------------------------------------------------------
//
// `ContextKey<T>` is a context-local variable, the analogue of Python's
// `contextvars.ContextVar`, addressed through an explicit `ContextHandle`:
//
//   const ctxloop::ContextKey<int> kUserId("user_id", /*default_value=*/0);
//   absl::StatusOr<ctxloop::Token> t = kUserId.Set(ctx, 42);
//   int id = *kUserId.Get(ctx);                      // 42
//   absl::Status s = kUserId.Reset(ctx, *t);         // back to 0
//
// Tokens and resets
// -----------------
// `Set` returns a `Token` bound to (context, key, this Set). `Reset` with it:
//   * on the same context, on its loop thread: undoes that Set;
//   * with a token made on another context: `kInvalidArgument`, the message
//     names both contexts (the bug Python reports as "Token was created in a
//     different Context" -- post the reset to the token's context instead);
//   * with a token already used: `kFailedPrecondition`;
//   * from a thread other than the context's loop thread:
//     `kFailedPrecondition`, naming both contexts.
// Never a throw, never a crash. The checks run in that order: a token from
// another context is reported as such even when the call is also made on the
// wrong thread.
//
// Out-of-order resets. Each context keeps, per key, the stack of Sets not yet
// reset. `Get` returns the top of that stack, or the value inherited from the
// parent context, or the key's default. `Reset(token)` removes that token's
// entry wherever it is in the stack. So:
//   * in-order resets behave exactly like Python's;
//   * an out-of-order reset of an older token leaves the newer value current
//     (Python would restore the value from before the older Set, and a later
//     reset of the newer token would then bring back the older token's value,
//     which was already "finished"). ctxloop never resurrects a value whose
//     Set was reset; once every Set is reset, in any order, the key is back to
//     what it was before the first one. Traces rely on this: out-of-order
//     span finishes never make a finished span current again.
//
// Cost: a context keeps a small vector of keys; `Get` is a linear scan over
// the keys set on that context (usually a handful) plus the owner-thread
// handle check, all inline. Values of at most 32 bytes whose copy, move and
// destruction cannot throw (ids, pointers, small structs, a struct holding a
// `std::shared_ptr`) are stored inline: `Set` builds them in place in the
// key's stack and an in-order `Reset` pops them, both inline, and neither
// allocates nor frees once the key was set on the context before (a key's
// emptied stack keeps its storage). Other values are allocated once per
// `Set` and shared, immutable, by child contexts. Errors, a key's first `Set`
// on a context, out-of-order resets, closing contexts and tables shared with
// a child take an out-of-line path; `Set`/`Reset` on a table shared with a
// child copy the key table once (copy-on-write). `Peek` is `Get` without
// the copy of the value (a pointer, valid until the context's next Set or
// Reset). Instructions per operation:
// `python3 tools/icount_guard.py --ops context_key_set_reset,context_key_get`.
//
// Key identity: each `ContextKey` gets an id from a process-wide 64-bit
// counter, so two keys never share one, and every stored value carries its
// type's tag: `Get` through a key of another type (possible only if ids were
// shared) returns `kInternal`, never undefined behaviour.
//
// A destroyed context: from `DestroyContext(ctx)` on, `Set` returns
// `kFailedPrecondition` at once, while `Get` and `Reset` keep working until
// the context is freed (after the tasks already posted to it and its destroy
// hooks ran), so those can read and restore values. Then all three return
// `kFailedPrecondition` (stale handle).
//
// Thread-safety: `ContextKey` objects themselves are immutable and can be
// shared freely (typically as globals). `Set`, `Get` and `Reset` must be
// called on the context's loop thread; elsewhere they return
// `kFailedPrecondition`.

#ifndef CTXLOOP_LOOP_CONTEXT_KEY_H_
#define CTXLOOP_LOOP_CONTEXT_KEY_H_

#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

#include "absl/base/attributes.h"
#include "absl/base/optimization.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ctxloop/loop/context_handle.h"
#include "ctxloop/loop/internal/any_value.h"
#include "ctxloop/loop/internal/handle_access.h"
#include "ctxloop/loop/internal/owned_core.h"
#include "ctxloop/loop/token.h"

namespace ctxloop {

namespace loop_internal {
// A new key id from a process-wide 64-bit counter: never reused in practice
// (2^64 keys), so one key never reads or resets another's value.
uint64_t NewContextKeyId();
// Makes the next `NewContextKeyId()` return `next`. For tests only.
void SetNextContextKeyIdForTesting(uint64_t next);
// The out-of-line paths: every case, with the errors. `ContextKey`'s inline
// code calls them when its fast path does not apply.
// Null when the key is not set on (or inherited by) `ctx`.
absl::StatusOr<const AnyValue*> GetContextValue(ContextHandle ctx,
                                                uint64_t key_id,
                                                absl::string_view key_name);
absl::StatusOr<Token> SetContextValue(ContextHandle ctx, uint64_t key_id,
                                      absl::string_view key_name,
                                      AnyValue value);
absl::Status ResetContextValue(ContextHandle ctx, const Token& token,
                               uint64_t key_id, absl::string_view key_name);
// `a == b`, as two 64-bit compares.
inline bool SameHandle(const ContextHandle& a, const ContextHandle& b) {
  static_assert(sizeof(ContextHandle) == 2 * sizeof(uint64_t), "layout");
  uint64_t x[2];
  uint64_t y[2];
  std::memcpy(x, &a, sizeof(x));
  std::memcpy(y, &b, sizeof(y));
  return ((x[0] ^ y[0]) | (x[1] ^ y[1])) == 0;
}
// The error `Get` returns when the stored value is not a `T` (only possible
// if two keys shared an id; never undefined behaviour).
absl::Status WrongValueTypeError(ContextHandle ctx, absl::string_view key_name);
}  // namespace loop_internal

template <typename T>
class ContextKey {
 public:
  // `name` appears in error messages. `T` must be copyable.
  explicit ContextKey(std::string name, T default_value = T())
      : id_(loop_internal::NewContextKeyId()),
        name_(std::move(name)),
        default_(std::move(default_value)) {}

  ContextKey(const ContextKey&) = delete;
  ContextKey& operator=(const ContextKey&) = delete;

  // Sets the value on `ctx` (loop thread). Returns the token for `Reset`.
  [[nodiscard]] ABSL_ATTRIBUTE_ALWAYS_INLINE absl::StatusOr<Token> Set(
      ContextHandle ctx, T value) const {
    if constexpr (loop_internal::AnyValue::kStoredInline<T>) {
      if (loop_internal::LoopCore* core = loop_internal::FindOwnedCore(ctx)) {
        uint64_t serial;
        if (ABSL_PREDICT_TRUE(core->template SetValueFast<T>(
                ctx, id_, std::move(value), &serial))) {
          return loop_internal::HandleAccess::MakeToken(ctx, id_, serial);
        }
      }
    }
    return SetSlow(ctx, std::move(value));
  }

  // The current value on `ctx` (loop thread); the default if never set.
  ABSL_ATTRIBUTE_ALWAYS_INLINE absl::StatusOr<T> Get(ContextHandle ctx) const {
    if (loop_internal::LoopCore* core = loop_internal::FindOwnedCore(ctx)) {
      const loop_internal::AnyValue* v;
      if (ABSL_PREDICT_TRUE(core->FindValueFast(ctx, id_, &v))) {
        if (v == nullptr) return default_;
        // Type-checked, never UB.
        if (v->template Is<T>()) return v->template AsUnchecked<T>();
      }
    }
    return GetSlow(ctx);
  }

  // `Get` without the copy: the value on `ctx` (the default if none is
  // set), or null where `Get` would return an error status. The pointer is
  // valid until the next Set or Reset of any key on `ctx` (or the context's
  // end); same thread rules as `Get`.
  ABSL_ATTRIBUTE_ALWAYS_INLINE const T* Peek(ContextHandle ctx) const {
    if (loop_internal::LoopCore* core = loop_internal::FindOwnedCore(ctx)) {
      const loop_internal::AnyValue* v;
      if (ABSL_PREDICT_TRUE(core->FindValueFast(ctx, id_, &v))) {
        if (v == nullptr) return &default_;
        if (v->template Is<T>()) return &v->template AsUnchecked<T>();
      }
    }
    return PeekSlow(ctx);
  }

  // Undoes the `Set` that made `token` (loop thread). See the file comment.
  ABSL_ATTRIBUTE_ALWAYS_INLINE absl::Status Reset(ContextHandle ctx,
                                                  const Token& token) const {
    // Serials are unique per loop, so a token of this loop's other contexts
    // or keys never matches the top of this key's stack on `ctx`; the
    // handle compare rules out other loops (their serials may collide).
    // Every mismatch goes to the slow path, which names it.
    if (ABSL_PREDICT_TRUE(loop_internal::SameHandle(token.context(), ctx))) {
      if (loop_internal::LoopCore* core = loop_internal::FindOwnedCore(ctx)) {
        if (ABSL_PREDICT_TRUE(core->ResetValueFast(
                ctx, id_, loop_internal::HandleAccess::TokenSerial(token)))) {
          return absl::OkStatus();
        }
      }
    }
    return loop_internal::ResetContextValue(ctx, token, id_, name_);
  }

  const std::string& name() const { return name_; }

 private:
  ABSL_ATTRIBUTE_NOINLINE absl::StatusOr<Token> SetSlow(ContextHandle ctx,
                                                        T&& value) const {
    return loop_internal::SetContextValue(
        ctx, id_, name_, loop_internal::AnyValue::Make<T>(std::move(value)));
  }

  ABSL_ATTRIBUTE_NOINLINE absl::StatusOr<T> GetSlow(ContextHandle ctx) const {
    absl::StatusOr<const loop_internal::AnyValue*> v =
        loop_internal::GetContextValue(ctx, id_, name_);
    if (!v.ok()) return v.status();
    if (*v == nullptr) return default_;
    const T* value = (*v)->template TryAs<T>();  // Type-checked, never UB.
    if (value == nullptr) return loop_internal::WrongValueTypeError(ctx, name_);
    return *value;
  }

  ABSL_ATTRIBUTE_NOINLINE const T* PeekSlow(ContextHandle ctx) const {
    absl::StatusOr<const loop_internal::AnyValue*> v =
        loop_internal::GetContextValue(ctx, id_, name_);
    if (!v.ok()) return nullptr;
    if (*v == nullptr) return &default_;
    return (*v)->template TryAs<T>();
  }

  const uint64_t id_;
  const std::string name_;
  const T default_;
};

}  // namespace ctxloop

#endif  // CTXLOOP_LOOP_CONTEXT_KEY_H_
