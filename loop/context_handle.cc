// Copyright 2026 The ctxloop Authors.

#include "ctxloop/loop/context_handle.h"

#include "absl/strings/str_cat.h"

namespace ctxloop {

std::string ContextHandle::DebugString() const {
  if (is_null()) return "ctx null";
  return absl::StrCat("ctx ", context_index_, ".", context_generation_,
                      "@loop ", loop_slot_, ".", loop_generation_);
}

std::ostream& operator<<(std::ostream& os, const ContextHandle& c) {
  return os << c.DebugString();
}

}  // namespace ctxloop
