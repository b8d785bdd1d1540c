// Copyright 2026 The ctxloop Authors.

#include "ctxloop/loop/internal/value_table.h"

#include <utility>

namespace ctxloop {
namespace internal {

ValueTable::KeyStack* ValueTable::Find(uint32_t key) {
  for (KeyStack& k : keys_) {
    if (k.key == key) return &k;
  }
  return nullptr;
}

const ValueTable::KeyStack* ValueTable::Find(uint32_t key) const {
  for (const KeyStack& k : keys_) {
    if (k.key == key) return &k;
  }
  return nullptr;
}

const AnyValue* ValueTable::Get(uint32_t key) const {
  const KeyStack* k = Find(key);
  return k == nullptr ? nullptr : &k->frames.back().value;
}

void ValueTable::Set(uint32_t key, uint64_t serial, AnyValue value) {
  KeyStack* k = Find(key);
  if (k == nullptr) {
    keys_.push_back(KeyStack{key, {}});
    k = &keys_.back();
  }
  k->frames.push_back(Frame{serial, std::move(value)});
}

bool ValueTable::Reset(uint32_t key, uint64_t serial) {
  if (serial == kInheritedSerial) return false;
  KeyStack* k = Find(key);
  if (k == nullptr) return false;
  for (auto it = k->frames.end(); it != k->frames.begin();) {
    --it;  // Newest first: in-order resets find their frame at once.
    if (it->serial != serial) continue;
    k->frames.erase(it);
    if (k->frames.empty()) {
      if (k != &keys_.back()) *k = std::move(keys_.back());
      keys_.pop_back();
    }
    return true;
  }
  return false;
}

std::shared_ptr<ValueTable> ValueTable::Snapshot() const {
  auto copy = std::make_shared<ValueTable>();
  copy->keys_.reserve(keys_.size());
  for (const KeyStack& k : keys_) {
    KeyStack flat{k.key, {}};
    flat.frames.push_back(Frame{kInheritedSerial, k.frames.back().value});
    copy->keys_.push_back(std::move(flat));
  }
  return copy;
}

}  // namespace internal
}  // namespace ctxloop
