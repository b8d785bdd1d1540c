// Copyright 2026 The ctxloop Authors.
//
// libFuzzer entry point for the OTLP/HTTP exporter's response handling (see
// otlp_response_fuzz.h). Build with --config=fuzz (clang,
// -fsanitize=fuzzer,address,undefined); a broken invariant aborts, so
// libFuzzer keeps the input. A kept input becomes a regression by being
// copied into corpus/ (otlp_response_corpus_test replays every file there).

#include <cstddef>
#include <cstdint>

#include "ctxloop/tests/fuzz/otlp_response/otlp_response_fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ctxloop::testing::FuzzOtlpResponse(data, size);
  return 0;
}
