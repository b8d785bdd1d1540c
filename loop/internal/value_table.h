// Copyright 2026 The ctxloop Authors.
//
// Internal. The context-local values of one context: per key, the stack of
// Sets not yet reset (see context_key.h for the semantics).
//
// Cost: keys are kept in a vector and found by linear scan (contexts carry a
// handful of keys); each key's stack holds one frame inline. `Reset` finds
// its frame by binary search (serials only grow up a stack); an out-of-order
// reset marks the frame dead and frees its value, and dead frames are popped
// once they reach the top. When a stack's dead frames outnumber its live ones
// they are compacted away (order kept, so serials stay ascending), so memory
// stays bounded (at most twice the live Sets) under any interleaving
// of sets and resets, e.g. two overlapping requests that keep the top live
// forever; any order of resets costs O(log depth) each, amortized.
//
// Thread-safety: none; the owning loop's thread uses it.

#ifndef CTXLOOP_LOOP_INTERNAL_VALUE_TABLE_H_
#define CTXLOOP_LOOP_INTERNAL_VALUE_TABLE_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "ctxloop/loop/internal/any_value.h"

namespace ctxloop {
namespace internal {

class ValueTable {
 public:
  // Serial 0 marks a value inherited from a parent context: no token undoes
  // it.
  static constexpr uint64_t kInheritedSerial = 0;

  // The current value of `key`, or null if unset.
  const AnyValue* Get(uint64_t key) const;

  // Pushes `value` for `key`, undone by `Reset(key, serial)`.
  void Set(uint64_t key, uint64_t serial, AnyValue value);

  // Removes the Set with `serial`, wherever it is in `key`'s stack. False if
  // there is no such Set (already reset).
  bool Reset(uint64_t key, uint64_t serial);

  // A table holding each key's current value only, as inherited values: what
  // a child context starts from.
  std::shared_ptr<ValueTable> Snapshot() const;

  bool empty() const { return keys_.empty(); }

  // Frames (live and dead) held for `key`. For tests of the memory bound.
  size_t FrameCountForTesting(uint64_t key) const;

 private:
  struct Frame {
    uint64_t serial;
    AnyValue value;
    bool live = true;  // False: reset out of order, waiting to be popped.
  };
  struct KeyStack {
    uint64_t key;
    // Never empty; ascending serials; the top frame is always live.
    absl::InlinedVector<Frame, 1> frames;
    size_t dead = 0;  // Frames with live == false; never more than live ones.
  };
  KeyStack* Find(uint64_t key);
  const KeyStack* Find(uint64_t key) const;

  std::vector<KeyStack> keys_;
};

}  // namespace internal
}  // namespace ctxloop

#endif  // CTXLOOP_LOOP_INTERNAL_VALUE_TABLE_H_
