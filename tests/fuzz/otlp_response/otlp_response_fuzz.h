// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/tests/fuzz/otlp_response/otlp_response_fuzz.h
// -----------------------------------------------------------------------------
//
// Test-only. One fuzz input against the OTLP/HTTP exporter's response
// handling, shared by the libFuzzer target (otlp_response_fuzzer.cc) and the
// corpus replay test (otlp_response_corpus_test.cc):
//
//   * Every input goes to the parsing functions directly
//     (`trace_internal::ParseRetryAfter`, `ParsePartialSuccess`, the status
//     classification; otlp_response.h). Microseconds per input.
//   * An input that starts with "HTTP/" is also sent, byte for byte, as the
//     raw response of a loopback peer (`RawHttpPeer`, which then closes its
//     write side) to a real `OtlpHttpExporter::Export` of a fresh exporter:
//     libevent's status line, header, chunking and body parsing, the caps,
//     the deadline, Retry-After and partial success end to end. About a
//     millisecond per input. `CTXLOOP_OTLP_FUZZ_PARSERS_ONLY=1` skips it.
//
// A broken invariant aborts with a message naming it (libFuzzer keeps the
// input): a parser result out of range, an `Export` slower than its
// deadline plus slack, spans not accounted for exactly once, more bytes
// read than the peer sent. Crashes, leaks and UB are the sanitizers' to find.
//
// Thread-safety: one caller at a time (a process-wide peer).

#ifndef CTXLOOP_TESTS_FUZZ_OTLP_RESPONSE_OTLP_RESPONSE_FUZZ_H_
#define CTXLOOP_TESTS_FUZZ_OTLP_RESPONSE_OTLP_RESPONSE_FUZZ_H_

#include <cstddef>
#include <cstdint>

namespace ctxloop {
namespace testing {

void FuzzOtlpResponse(const uint8_t* data, size_t size);

}  // namespace testing
}  // namespace ctxloop

#endif  // CTXLOOP_TESTS_FUZZ_OTLP_RESPONSE_OTLP_RESPONSE_FUZZ_H_
