// Copyright 2026 The ctxloop Authors.
//
// libFuzzer entry point for the model-based fuzzer (see model/model.h).
// Build with --config=fuzz (clang, -fsanitize=fuzzer,address,undefined). Any
// broken invariant aborts with its name and examples, so libFuzzer saves the
// input as a crash; turn each into a named case in model_test.cc.

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "ctxloop/tests/fuzz/model/model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ctxloop::fuzz::ModelOptions options;
  options.max_ops = 200;
  options.watchdog_seconds = 60;
  const ctxloop::fuzz::ModelResult r =
      ctxloop::fuzz::RunModel(data, size, options);
  if (!r.ok()) {
    std::fprintf(stderr, "fuzz: invariant broken: %s\n", r.Summary().c_str());
    std::abort();
  }
  return 0;
}
