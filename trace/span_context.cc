// Copyright 2026 The ctxloop Authors.

#include "ctxloop/trace/span_context.h"

#include <ostream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace ctxloop {

std::string SpanContext::DebugString() const {
  std::string out = absl::StrFormat("00-%s-%s-%02x", trace_id.ToHex(),
                                    span_id.ToHex(), trace_flags);
  if (!trace_state.empty()) absl::StrAppend(&out, " tracestate=", trace_state);
  if (remote) out += " remote";
  return out;
}

std::ostream& operator<<(std::ostream& os, const SpanContext& c) {
  return os << c.DebugString();
}

}  // namespace ctxloop
