// Copyright 2026 The ctxloop Authors.

#include "ctxloop/trace/ids.h"

#include <ostream>
#include <random>

#include "absl/base/optimization.h"
#include "absl/strings/str_format.h"

namespace ctxloop {
namespace {

// splitmix64 over a per-thread state seeded from the OS once per thread.
uint64_t NextRandom() {
  // Constant-initialized (no TLS guard on every call); seeded on first use.
  thread_local uint64_t state = 0;
  if (ABSL_PREDICT_FALSE(state == 0)) {
    std::random_device rd;
    state = ((uint64_t{rd()} << 32) ^ rd()) | 1;
  }
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t NonZeroRandom() {
  uint64_t v;
  do {
    v = NextRandom();
  } while (v == 0);
  return v;
}

}  // namespace

std::string TraceId::ToHex() const {
  return absl::StrFormat("%016x%016x", high, low);
}

std::string SpanId::ToHex() const { return absl::StrFormat("%016x", value); }

std::ostream& operator<<(std::ostream& os, const TraceId& id) {
  return os << id.ToHex();
}
std::ostream& operator<<(std::ostream& os, SpanId id) {
  return os << id.ToHex();
}

TraceId NewTraceId() { return TraceId{NextRandom(), NonZeroRandom()}; }
SpanId NewSpanId() { return SpanId{NonZeroRandom()}; }

}  // namespace ctxloop
