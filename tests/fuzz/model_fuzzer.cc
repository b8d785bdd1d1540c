// Copyright 2026 The ctxloop Authors.
//
// libFuzzer entry point for the model-based fuzzer (see model/model.h).
// Build with --config=fuzz (clang, -fsanitize=fuzzer,address,undefined). Any
// broken invariant aborts with its name and examples, so libFuzzer saves the
// input as a crash; turn each into a named case in model_test.cc.
//
// CTXLOOP_FUZZ_IGNORE=name,prefix.,... skips invariants already known to be
// broken, to hunt for new ones (see ModelOptions::ignore);
// CTXLOOP_FUZZ_DISABLE=timer_chain,hostile,... drops operation classes
// (ModelOptions::disabled). A hang is reported by the model's watchdog
// (20 s, "BROKEN model.hang" and the phase), before libFuzzer's -timeout.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "ctxloop/tests/fuzz/model/model.h"

namespace {

std::vector<std::string> ListFromEnv(const char* name) {
  std::vector<std::string> out;
  const char* env = std::getenv(name);
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
      new std::vector<std::string>(ListFromEnv("CTXLOOP_FUZZ_IGNORE"));
  static const std::vector<std::string>* const disabled =
      new std::vector<std::string>(ListFromEnv("CTXLOOP_FUZZ_DISABLE"));
  ctxloop::fuzz::ModelOptions options;
  options.ignore = *ignore;
  options.disabled = *disabled;
  options.max_ops = 200;
  options.watchdog_seconds = 20;
  const ctxloop::fuzz::ModelResult r =
      ctxloop::fuzz::RunModel(data, size, options);
  if (!r.ok()) {
    std::fprintf(stderr, "fuzz: invariant broken: %s\n", r.Summary().c_str());
    std::abort();
  }
  return 0;
}
