// Copyright 2026 The ctxloop Authors.
//
// libFuzzer entry point for the model-based fuzzer (see model/model.h).
// Build with --config=fuzz (clang, -fsanitize=fuzzer,address,undefined). Any
// broken invariant aborts with its name and examples, so libFuzzer saves the
// input as a crash; turn each into a named case in model_test.cc.
//
// CTXLOOP_FUZZ_IGNORE=name,prefix.,... skips invariants already known to be
// broken, to hunt for new ones (see ModelOptions::ignore).

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "ctxloop/tests/fuzz/model/model.h"

namespace {

std::vector<std::string> IgnoredFromEnv() {
  std::vector<std::string> out;
  const char* env = std::getenv("CTXLOOP_FUZZ_IGNORE");
  if (env == nullptr) return out;
  std::string cur;
  for (const char* p = env;; ++p) {
    if (*p == ',' || *p == '\0') {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
      if (*p == '\0') break;
    } else {
      cur.push_back(*p);
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<std::string>* const ignore =
      new std::vector<std::string>(IgnoredFromEnv());
  ctxloop::fuzz::ModelOptions options;
  options.ignore = *ignore;
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
