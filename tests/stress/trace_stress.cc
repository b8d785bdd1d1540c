// Copyright 2026 The ctxloop Authors.
//
// The full trace stress run, for users:
//
//   bazel run --config=opt //tests/stress:trace_stress -- --traces=1000000
//
// Flags: --traces=N (default 1,000,000), --loops=N (4), --finishers=N (2),
// --max_in_flight=N (16384), --rss_slack_mb=MB (24). Prints one summary line
// and exits non-zero if anything was lost, duplicated or dropped, or resident
// memory was not flat. STRESS_VERBOSE=1 prints each RSS sample (fraction
// exported, MB) to stderr.

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "ctxloop/tests/stress/trace_stress_lib.h"

namespace {

bool Flag(const char* arg, const char* name, std::string* value) {
  const size_t n = std::strlen(name);
  if (std::strncmp(arg, name, n) != 0 || arg[n] != '=') return false;
  *value = arg + n + 1;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  ctxloop::stress::StressOptions o;
  for (int i = 1; i < argc; ++i) {
    std::string v;
    if (Flag(argv[i], "--traces", &v)) {
      o.traces = std::strtoull(v.c_str(), nullptr, 10);
    } else if (Flag(argv[i], "--loops", &v)) {
      o.loops = std::atoi(v.c_str());
    } else if (Flag(argv[i], "--finishers", &v)) {
      o.finishers = std::atoi(v.c_str());
    } else if (Flag(argv[i], "--max_in_flight", &v)) {
      o.max_in_flight = std::strtoull(v.c_str(), nullptr, 10);
    } else if (Flag(argv[i], "--rss_slack_mb", &v)) {
      o.rss_slack_mb = std::atof(v.c_str());
    } else {
      std::fprintf(stderr,
                   "usage: trace_stress [--traces=N] [--loops=N] "
                   "[--finishers=N] [--max_in_flight=N] [--rss_slack_mb=MB]\n");
      return 2;
    }
  }
  if (o.traces == 0 || o.loops < 1 || o.finishers < 1 || o.max_in_flight < 1) {
    std::fprintf(stderr, "trace_stress: counts must be positive\n");
    return 2;
  }
  const ctxloop::stress::StressResult r = ctxloop::stress::RunTraceStress(o);
  std::printf("trace_stress: %s\n", r.Summary().c_str());
  return r.ok() ? 0 : 1;
}
