// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/trace/ids.h
// -----------------------------------------------------------------------------
//
// Trace and span identifiers, W3C/OpenTelemetry sized: a 128-bit trace id
// printed as 32 lowercase hex digits, a 64-bit span id printed as 16. The
// all-zero value is invalid in both.
//
// Cost: generating an id is a few arithmetic operations on a per-thread
// generator (seeded once per thread from the OS); no lock, no syscall.
//
// Printing: `operator<<` (so gtest prints them) and `AbslStringify` (used by
// `absl::StrCat`/`StrFormat("%v")` from Abseil 20230125 on; with Debian's
// 20220623 write `absl::StrCat(id.ToHex())`) print the hex form.
//
// Thread-safety: values; `NewTraceId`/`NewSpanId` are thread-safe.

#ifndef CTXLOOP_TRACE_IDS_H_
#define CTXLOOP_TRACE_IDS_H_

#include <cstdint>
#include <iosfwd>
#include <string>
#include <utility>

namespace ctxloop {

struct TraceId {
  uint64_t high = 0;
  uint64_t low = 0;

  bool valid() const { return high != 0 || low != 0; }
  std::string ToHex() const;  // 32 hex digits.
  friend bool operator==(const TraceId& a, const TraceId& b) {
    return a.high == b.high && a.low == b.low;
  }
  friend bool operator!=(const TraceId& a, const TraceId& b) {
    return !(a == b);
  }
  template <typename H>
  friend H AbslHashValue(H h, const TraceId& id) {
    return H::combine(std::move(h), id.high, id.low);
  }
  template <typename Sink>
  friend void AbslStringify(Sink& sink, const TraceId& id) {
    sink.Append(id.ToHex());
  }
};
std::ostream& operator<<(std::ostream& os, const TraceId& id);

struct SpanId {
  uint64_t value = 0;

  bool valid() const { return value != 0; }
  std::string ToHex() const;  // 16 hex digits.
  friend bool operator==(SpanId a, SpanId b) { return a.value == b.value; }
  friend bool operator!=(SpanId a, SpanId b) { return a.value != b.value; }
  template <typename H>
  friend H AbslHashValue(H h, SpanId id) {
    return H::combine(std::move(h), id.value);
  }
  template <typename Sink>
  friend void AbslStringify(Sink& sink, SpanId id) {
    sink.Append(id.ToHex());
  }
};
std::ostream& operator<<(std::ostream& os, SpanId id);

// Random, never invalid.
TraceId NewTraceId();
SpanId NewSpanId();

}  // namespace ctxloop

#endif  // CTXLOOP_TRACE_IDS_H_
