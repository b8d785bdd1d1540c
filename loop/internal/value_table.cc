// Copyright 2026 The ctxloop Authors.

#include "ctxloop/loop/internal/value_table.h"

#include <algorithm>
#include <utility>

namespace ctxloop {
namespace loop_internal {

ValueTable::KeyStack* ValueTable::AddKey(uint64_t key) {
  keys_.push_back(KeyStack{key, {}, 0});
  return &keys_.back();
}

bool ValueTable::empty() const {
  for (const KeyStack& k : keys_) {
    if (!k.frames.empty()) return false;
  }
  return true;
}

void ValueTable::Set(uint64_t key, uint64_t serial, AnyValue value) {
  KeyStack* k = Find(key);
  if (k == nullptr) k = AddKey(key);
  k->frames.push_back(Frame{serial, std::move(value), true});
}

bool ValueTable::Reset(uint64_t key, uint64_t serial) {
  if (serial == kInheritedSerial) return false;
  KeyStack* k = Find(key);
  if (k == nullptr) return false;
  auto& frames = k->frames;
  auto it =
      std::lower_bound(frames.begin(), frames.end(), serial,
                       [](const Frame& f, uint64_t s) { return f.serial < s; });
  if (it == frames.end() || it->serial != serial || !it->live) return false;
  if (it + 1 == frames.end()) {
    frames.pop_back();
    while (!frames.empty() && !frames.back().live) {
      frames.pop_back();
      --k->dead;
    }
  } else {
    it->live = false;  // Out of order: the newer value stays current.
    it->value = AnyValue();
    ++k->dead;
  }
  if (k->dead > frames.size() - k->dead) {
    // Dead frames outnumber live ones: drop them all, keeping the order
    // (serials stay ascending). O(depth) <= O(2 * dead): each dead frame is
    // dropped once, so this is amortized O(1) per reset.
    frames.erase(std::remove_if(frames.begin(), frames.end(),
                                [](const Frame& f) { return !f.live; }),
                 frames.end());
    k->dead = 0;
  }
  return true;  // An emptied stack stays, with its storage, for the next Set.
}

size_t ValueTable::FrameCountForTesting(uint64_t key) const {
  const KeyStack* k = Find(key);
  return k == nullptr ? 0 : k->frames.size();
}

std::shared_ptr<ValueTable> ValueTable::Snapshot() const {
  auto copy = std::make_shared<ValueTable>();
  copy->keys_.reserve(keys_.size());
  for (const KeyStack& k : keys_) {
    if (k.frames.empty()) continue;
    KeyStack flat{k.key, {}, 0};
    flat.frames.push_back(Frame{kInheritedSerial, k.frames.back().value, true});
    copy->keys_.push_back(std::move(flat));
  }
  return copy;
}

}  // namespace loop_internal
}  // namespace ctxloop
