// Copyright 2026 The ctxloop Authors.
//
// Internal. The context-local values of one context: per key, the stack of
// Sets not yet reset (see context_key.h for the semantics).
//
// Cost: keys are kept in a small vector and found by linear scan (contexts
// carry a handful of keys); each key's stack holds one frame inline. A key's
// stack is kept when its last Set is reset, with its storage, so a Set/Reset
// cycle neither allocates nor frees. `Get`, an in-order `Reset` and a `Set`
// of a small value have inline fast paths (`Find`, `PushInline`,
// `PopTopFast`), used by `ContextKey`'s inline code. `Reset` finds its frame
// by binary search (serials only grow up a stack); an out-of-order
// reset marks the frame dead and frees its value, and dead frames are popped
// once they reach the top. When a stack's dead frames outnumber its live ones
// they are compacted away (order kept, so serials stay ascending), so memory
// stays bounded (at most twice the live Sets, plus one emptied stack per key
// ever set on the context) under any interleaving
// of sets and resets, e.g. two overlapping requests that keep the top live
// forever; any order of resets costs O(log depth) each, amortized.
//
// Thread-safety: none; the owning loop's thread uses it.

#ifndef CTXLOOP_LOOP_INTERNAL_VALUE_TABLE_H_
#define CTXLOOP_LOOP_INTERNAL_VALUE_TABLE_H_

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/base/attributes.h"
#include "absl/base/optimization.h"
#include "absl/container/inlined_vector.h"
#include "ctxloop/loop/internal/any_value.h"

namespace ctxloop {
namespace loop_internal {

class ValueTable {
 public:
  // Serial 0 marks a value inherited from a parent context: no token undoes
  // it.
  static constexpr uint64_t kInheritedSerial = 0;

  // The current value of `key`, or null if unset.
  const AnyValue* Get(uint64_t key) const {
    const KeyStack* k = Find(key);
    return k == nullptr || k->frames.empty() ? nullptr
                                             : &k->frames.back().value;
  }

  // Pushes `value` for `key`, undone by `Reset(key, serial)`.
  void Set(uint64_t key, uint64_t serial, AnyValue value);

  // `Set` of a value stored inline, built in place. Inline; the first Set of
  // `key` on this table takes the out-of-line path.
  template <typename T, typename U>
  void PushInline(uint64_t key, uint64_t serial, U&& value) {
    KeyStack* k = Find(key);
    if (ABSL_PREDICT_FALSE(k == nullptr)) k = AddKey(key);
    k->frames.emplace_back(serial, AnyValue::InPlaceInline<T>(),
                           std::forward<U>(value));
  }

  // The in-order `Reset`: if `serial` is the top of `key`'s stack and the
  // stack holds no dead frame, pops it and returns true. Else false, and
  // nothing changed: the caller then takes `Reset`.
  bool PopTopFast(uint64_t key, uint64_t serial) {
    KeyStack* k = Find(key);
    if (k == nullptr || k->dead != 0 || k->frames.empty() ||
        k->frames.back().serial != serial) {
      return false;
    }
    k->frames.pop_back();  // The stack and its storage stay for the next Set.
    return true;
  }

  // Removes the Set with `serial`, wherever it is in `key`'s stack. False if
  // there is no such Set (already reset).
  bool Reset(uint64_t key, uint64_t serial);

  // A table holding each key's current value only, as inherited values: what
  // a child context starts from.
  std::shared_ptr<ValueTable> Snapshot() const;

  // No key has a value.
  bool empty() const;

  // Frames (live and dead) held for `key`. For tests of the memory bound.
  size_t FrameCountForTesting(uint64_t key) const;

 private:
  struct Frame {
    Frame() = default;
    Frame(uint64_t s, AnyValue v, bool l)
        : serial(s), value(std::move(v)), live(l) {}
    template <typename T, typename U>
    Frame(uint64_t s, AnyValue::InPlaceInline<T> tag, U&& v)
        : serial(s), value(tag, std::forward<U>(v)) {}

    uint64_t serial = 0;
    AnyValue value;
    bool live = true;  // False: reset out of order, waiting to be popped.
  };
  struct KeyStack {
    uint64_t key;
    // Ascending serials; the top frame, if any, is live. Empty once every
    // Set of the key was reset: kept (with its storage) for the next Set.
    absl::InlinedVector<Frame, 1> frames;
    size_t dead = 0;  // Frames with live == false; never more than live ones.
  };
  KeyStack* Find(uint64_t key) {
    for (KeyStack& k : keys_) {
      if (k.key == key) return &k;
    }
    return nullptr;
  }
  const KeyStack* Find(uint64_t key) const {
    for (const KeyStack& k : keys_) {
      if (k.key == key) return &k;
    }
    return nullptr;
  }
  // Appends an empty stack for `key` (not yet in the table).
  ABSL_ATTRIBUTE_NOINLINE KeyStack* AddKey(uint64_t key);

  std::vector<KeyStack> keys_;
};

}  // namespace loop_internal
}  // namespace ctxloop

#endif  // CTXLOOP_LOOP_INTERNAL_VALUE_TABLE_H_
