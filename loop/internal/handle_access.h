// Copyright 2026 The ctxloop Authors.
//
// Internal. The one place that builds and reads the private fields of
// `ContextHandle` and `Token`, so neither needs public setters.
//
// Cost: inline field accesses. Thread-safety: pure functions on values; any
// thread.

#ifndef CTXLOOP_LOOP_INTERNAL_HANDLE_ACCESS_H_
#define CTXLOOP_LOOP_INTERNAL_HANDLE_ACCESS_H_

#include <cstdint>

#include "ctxloop/loop/context_handle.h"
#include "ctxloop/loop/token.h"

namespace ctxloop {
namespace loop_internal {

class HandleAccess {
 public:
  static ContextHandle Make(uint32_t loop_slot, uint32_t loop_generation,
                            uint32_t context_index,
                            uint32_t context_generation) {
    return ContextHandle(loop_slot, loop_generation, context_index,
                         context_generation);
  }
  static uint32_t LoopSlot(const ContextHandle& h) { return h.loop_slot_; }
  static uint32_t LoopGeneration(const ContextHandle& h) {
    return h.loop_generation_;
  }
  static uint32_t ContextIndex(const ContextHandle& h) {
    return h.context_index_;
  }
  static uint32_t ContextGeneration(const ContextHandle& h) {
    return h.context_generation_;
  }

  static Token MakeToken(ContextHandle ctx, uint64_t key_id, uint64_t serial) {
    Token t;
    t.context_ = ctx;
    t.key_id_ = key_id;
    t.serial_ = serial;
    return t;
  }
  static uint64_t TokenKey(const Token& t) { return t.key_id_; }
  static uint64_t TokenSerial(const Token& t) { return t.serial_; }
};

}  // namespace loop_internal
}  // namespace ctxloop

#endif  // CTXLOOP_LOOP_INTERNAL_HANDLE_ACCESS_H_
