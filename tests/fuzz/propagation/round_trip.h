// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/tests/fuzz/propagation/round_trip.h
// -----------------------------------------------------------------------------
//
// The property the W3C Trace Context fuzzer checks, shared by the libFuzzer
// target (propagation_fuzzer.cc) and the corpus replay test
// (propagation_corpus_test.cc): for arbitrary header bytes,
//   * extract never crashes;
//   * if extracted, inject(extract(x)) is valid: `ParseTraceState` accepts
//     the injected tracestate unchanged, and checks written apart from it
//     hold (traceparent exactly "00-" 32 hex "-" 16 hex "-" 2 hex, lowercase,
//     non-zero ids; tracestate only 0x20-0x7E, no CR/LF, at most 32 members
//     of one '=' each, no empty member or edge space, at most
//     `kMaxTraceStateBytes`);
//   * and stable: extract(inject(extract(x))) == extract(x), and injecting
//     that gives the first injection again.
//
// An input is read three ways: split at its first '\n' into traceparent
// and tracestate; whole as the traceparent; whole as the tracestate under a
// valid traceparent.
//
// Cost: linear in the input. Thread-safety: pure function.

#ifndef CTXLOOP_TESTS_FUZZ_PROPAGATION_ROUND_TRIP_H_
#define CTXLOOP_TESTS_FUZZ_PROPAGATION_ROUND_TRIP_H_

#include <string>

#include "absl/strings/string_view.h"

namespace ctxloop {
namespace fuzz {

// Empty if every property holds for `input`; else what broke (printable:
// the offending values are C-escaped).
std::string RoundTripViolation(absl::string_view input);

}  // namespace fuzz
}  // namespace ctxloop

#endif  // CTXLOOP_TESTS_FUZZ_PROPAGATION_ROUND_TRIP_H_
