// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/loop/token.h
// -----------------------------------------------------------------------------
//
// `Token`: the proof of one `ContextKey::Set`, given back to `Reset` to undo
// it (see context_key.h, which includes this header; include that one).
//
// Cost: 32 plain bytes (the context handle, the key id, the Set's serial);
// copying it is a memcpy.
//
// Thread-safety: a plain value; any thread may copy it. Only the context's
// loop thread can use it (`ContextKey::Reset`).

#ifndef CTXLOOP_LOOP_TOKEN_H_
#define CTXLOOP_LOOP_TOKEN_H_

#include <cstdint>

#include "ctxloop/loop/context_handle.h"

namespace ctxloop {

namespace loop_internal {
class HandleAccess;
}  // namespace loop_internal

// Proof of one `ContextKey::Set`, to undo it with `Reset`. A small value; it
// can be copied, but only its first `Reset` succeeds.
class Token {
 public:
  Token() = default;
  // The context whose value the Set changed.
  ContextHandle context() const { return context_; }

 private:
  friend class loop_internal::HandleAccess;
  ContextHandle context_;
  uint64_t key_id_ = 0;
  uint64_t serial_ = 0;
};

}  // namespace ctxloop

#endif  // CTXLOOP_LOOP_TOKEN_H_
