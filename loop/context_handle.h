// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/loop/context_handle.h
// -----------------------------------------------------------------------------
//
// A `ContextHandle` names one `Context` owned by one `Loop`. It is the explicit
// replacement for a hidden thread-local "current context": every task, timer,
// fd callback and stream sink receives the handle of the context it runs on,
// and every operation on context-local values takes one.
//
// Cost: 16 bytes, trivially copyable, no reference counting. Copying a handle
// never keeps anything alive. Validation (is the loop alive, is the context
// alive) happens when a handle is used, through a generation check against
// memory that is never freed, so a stale handle is detected, never UB:
//
//   * loop gone:    `Post`, `PostDelayed`, `ContextKey::Get` ... return
//                   `absl::StatusCode::kFailedPrecondition` / `kUnavailable`
//                   with the handle's `DebugString()` in the message;
//   * context gone: the same, naming the context.
//
// Thread-safety: a handle is a value; copy, compare and hash it on any thread.
// What may be done *with* it on which thread is stated by each operation.

#ifndef CTXLOOP_LOOP_CONTEXT_HANDLE_H_
#define CTXLOOP_LOOP_CONTEXT_HANDLE_H_

#include <cstdint>
#include <ostream>
#include <string>
#include <utility>

namespace ctxloop {

namespace loop_internal {
class HandleAccess;
}  // namespace loop_internal

class ContextHandle {
 public:
  // The null handle. Every operation on it returns `kInvalidArgument`.
  constexpr ContextHandle() = default;

  // True for the default-constructed handle (never for a handle a loop made,
  // even after that context is destroyed: staleness is checked on use).
  constexpr bool is_null() const { return loop_generation_ == 0; }

  // Identifiers for logs and trace files. `loop_id()` is unique among live
  // loops; `context_id()` is unique among the live contexts of one loop. Both
  // may be reused after destruction; the generations tell reuses apart.
  constexpr uint32_t loop_id() const { return loop_slot_; }
  constexpr uint32_t context_id() const { return context_index_; }

  // "ctx 3.1@loop 1.2" (index.generation), or "ctx null".
  std::string DebugString() const;

  friend constexpr bool operator==(const ContextHandle& a,
                                   const ContextHandle& b) {
    return a.loop_slot_ == b.loop_slot_ &&
           a.loop_generation_ == b.loop_generation_ &&
           a.context_index_ == b.context_index_ &&
           a.context_generation_ == b.context_generation_;
  }
  friend constexpr bool operator!=(const ContextHandle& a,
                                   const ContextHandle& b) {
    return !(a == b);
  }
  // Prints `DebugString()`: for `absl::StrCat`/`absl::StrFormat("%v")`
  // (Abseil 2022-10 and later; the system Abseil 2022-06 ignores it, so use
  // `DebugString()` there) and for any sink with `Append(string_view)`.
  template <typename Sink>
  friend void AbslStringify(Sink& sink, const ContextHandle& c) {
    sink.Append(c.DebugString());
  }
  // Prints `DebugString()`: streams, and gtest's failure messages.
  friend std::ostream& operator<<(std::ostream& os, const ContextHandle& c);

  template <typename H>
  friend H AbslHashValue(H h, const ContextHandle& c) {
    return H::combine(std::move(h), c.loop_slot_, c.loop_generation_,
                      c.context_index_, c.context_generation_);
  }

 private:
  friend class loop_internal::HandleAccess;
  constexpr ContextHandle(uint32_t loop_slot, uint32_t loop_generation,
                          uint32_t context_index, uint32_t context_generation)
      : loop_slot_(loop_slot),
        loop_generation_(loop_generation),
        context_index_(context_index),
        context_generation_(context_generation) {}

  uint32_t loop_slot_ = 0;
  uint32_t loop_generation_ = 0;  // 0 only for the null handle.
  uint32_t context_index_ = 0;
  uint32_t context_generation_ = 0;
};

static_assert(sizeof(ContextHandle) == 16, "ContextHandle must stay 16 bytes");

}  // namespace ctxloop

#endif  // CTXLOOP_LOOP_CONTEXT_HANDLE_H_
