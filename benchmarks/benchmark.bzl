"""ctxloop_benchmark(): a Google Benchmark binary plus a smoke test for it.

    load("//benchmarks:benchmark.bzl", "ctxloop_benchmark")

    ctxloop_benchmark(
        name = "trace_benchmark",
        srcs = ["trace_benchmark.cc"],
        deps = ["//trace"],
    )

produces

  * `trace_benchmark`: a cc_binary linking Google Benchmark, the shared
    helpers (//benchmarks:bench_util, see bench_util.h for the conventions:
    ReportItems, CheckCount, group labels), the allocation counter
    (//benchmarks:alloc_counter, through bench_util) and a main() that sets
    malloc tunables and CPU pinning (//benchmarks:bench_main). Tagged
    "ctxloop_benchmark", which is how benchmarks/run.sh finds it (unless
    in_run_sh = False). Measure with
    `-c opt` (benchmarks/run.sh does); `bazel run --config=opt //benchmarks:X`.
  * `trace_benchmark_smoke_test`: an sh_test that runs every benchmark of the
    binary once, briefly (--benchmark_min_time=0.001), and fails if the binary
    fails, a benchmark reports an error (SkipWithError), or a benchmark listed
    by --benchmark_list_tests produced no result. It keeps `bazel test //...`
    honest that the benchmarks still build and run; it measures nothing.
"""

load("@rules_cc//cc:defs.bzl", "cc_binary")

def ctxloop_benchmark(
        name,
        srcs,
        deps = [],
        smoke_args = [],
        smoke_size = "small",
        tags = [],
        in_run_sh = True,
        **kwargs):
    """Declares the benchmark binary `name` and `name + "_smoke_test"`.

    Args:
      name: the binary's name.
      srcs: its sources (benchmarks only: main() comes from bench_main).
      deps: what the benchmarks need besides Google Benchmark and bench_util.
      smoke_args: extra flags for the smoke run (e.g. a --benchmark_filter).
      smoke_size: the smoke test's size.
      tags: extra tags for the binary.
      in_run_sh: whether benchmarks/run.sh runs it by default (tag
        "ctxloop_benchmark"); if False it is tagged "ctxloop_extra_benchmark"
        instead and runs only when named (BENCHMARKS=<name> run.sh), e.g.
        growth_benchmark, which tools/plot_growth.py runs.
      **kwargs: passed to cc_binary.
    """
    cc_binary(
        name = name,
        srcs = srcs,
        deps = deps + [
            Label("//benchmarks:bench_main"),
            Label("//benchmarks:bench_util"),
            "@com_github_google_benchmark//:benchmark",
        ],
        tags = tags + [
            "ctxloop_benchmark" if in_run_sh else "ctxloop_extra_benchmark",
        ],
        **kwargs
    )

    # Bazel 4.2.3 has no rules_shell to load sh_test from; the native rule is
    # the only one.
    # buildifier: disable=native-sh-test
    native.sh_test(
        name = name + "_smoke_test",
        size = smoke_size,
        srcs = [Label("//benchmarks:smoke_test.sh")],
        args = ["$(rootpath :%s)" % name] + smoke_args,
        data = [":" + name],
    )
