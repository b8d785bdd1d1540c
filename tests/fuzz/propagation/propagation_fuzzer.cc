// Copyright 2026 The ctxloop Authors.
//
// libFuzzer entry point for W3C Trace Context extract + inject (see
// round_trip.h for the property). Build with --config=fuzz (clang,
// -fsanitize=fuzzer,address,undefined); a broken property aborts with what
// broke, so libFuzzer saves the input as a crash: add it to corpus/ and the
// replay test runs it from then on.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/string_view.h"
#include "ctxloop/tests/fuzz/propagation/round_trip.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string violation = ctxloop::fuzz::RoundTripViolation(
      absl::string_view(reinterpret_cast<const char*>(data), size));
  if (!violation.empty()) {
    std::fprintf(stderr, "propagation round trip: %s\n", violation.c_str());
    std::abort();
  }
  return 0;
}
