// Copyright 2026 The ctxloop Authors.
//
// main() for every ctxloop benchmark binary (linked by the
// `ctxloop_benchmark` macro): Google Benchmark's usual main plus
// `ctxloop_bench::PrepareProcess()` (malloc settings, CPU pinning, context).

#include "benchmark/benchmark.h"
#include "ctxloop/benchmarks/bench_util.h"

int main(int argc, char** argv) {
  ctxloop_bench::PrepareProcess();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
