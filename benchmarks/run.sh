#!/usr/bin/env bash
# Runs ctxloop's benchmarks and their peers (raw libevent, Boost.Asio, libuv,
# OpenTelemetry C++) the same way every time, and prints a markdown table of
# median ns/item with the ratio of ctxloop to each peer measured in the same
# run.
#
#   benchmarks/run.sh [--reps N] [--write] [--no-otel] [-- EXTRA_BENCHMARK_FLAGS...]
#
#   --reps N     repetitions per benchmark (default 3); the table shows the
#                median and the min-max over them. Repetitions are
#                interleaved: each repetition runs every binary once, in turn,
#                so a change in machine load hits all contenders alike.
#   --no-otel    do not build or run the OpenTelemetry C++ peer.
#   --write      also write the table, the machine and this command to
#                benchmarks/RESULTS.md (a tracked file). By default the
#                table is only printed and no file in the tree changes.
#   --no-write   the default (only print); accepted for old callers.
#   after --     flags for every binary, e.g. --benchmark_filter=Post
#
# What it fixes for all contenders alike:
#   * an optimized build (bazel build --config=opt);
#   * glibc malloc tunables (GLIBC_TUNABLES below): no heap trimming and a
#     fixed mmap threshold, so no contender pays page faults for memory glibc
#     handed back to the kernel between batches;
#   * CPU pinning: the benchmark (loop) thread on one CPU, producer threads of
#     cross-thread benchmarks on another ($CTXLOOP_BENCH_CPUS, default "0,1";
#     see bench_util.h).
#
# Binaries: every cc_binary under //benchmarks tagged "ctxloop_benchmark"
# (what the ctxloop_benchmark macro declares), or $BENCHMARKS (space-separated
# target names, e.g. BENCHMARKS="loop_benchmark"). An entry NAME=REGEX runs
# only that binary's benchmarks matching REGEX, e.g.
# BENCHMARKS="trace_benchmark loop_benchmark=ContextKeySetReset|ThreadLocal_Save".
#
# The OpenTelemetry C++ peer (benchmarks/otel_peer): when trace_benchmark or
# loop_benchmark runs, otel_peer/build.sh builds otel_benchmark from
# OpenTelemetry's source archive ($CTXLOOP_OTEL_ARCHIVE, see build.sh; cached
# under ~/.cache/ctxloop) and it runs interleaved with ctxloop's binaries, its
# BM_OTel_* rows in the groups of the ctxloop workloads they mirror. A host
# without the archive prints "OpenTelemetry peer: skipped (why)".
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT="$PWD"

REPS=3
WRITE=0
OTEL=1
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) REPS="$2"; shift 2 ;;
    --write) WRITE=1; shift ;;
    --no-write) WRITE=0; shift ;;
    --no-otel) OTEL=0; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,41p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
NO_OTEL_FLAG=""
if [ "$OTEL" -eq 0 ]; then NO_OTEL_FLAG=" --no-otel"; fi
COMMAND="${BENCHMARKS:+BENCHMARKS=\"$BENCHMARKS\" }benchmarks/run.sh --reps $REPS --write$NO_OTEL_FLAG${EXTRA[*]:+ -- ${EXTRA[*]}}"

# The same malloc behaviour for every contender (see the header).
export GLIBC_TUNABLES="glibc.malloc.trim_threshold=268435456:glibc.malloc.top_pad=67108864:glibc.malloc.mmap_threshold=33554432"
if [ -z "${CTXLOOP_BENCH_CPUS:-}" ]; then
  if [ "$(nproc)" -ge 2 ]; then
    export CTXLOOP_BENCH_CPUS="0,1"
  else
    export CTXLOOP_BENCH_CPUS="off"
  fi
fi

declare -A FILTERS=()
if [ -n "${BENCHMARKS:-}" ]; then
  read -r -a ENTRIES <<<"$BENCHMARKS"
  NAMES=()
  for e in "${ENTRIES[@]}"; do
    NAMES+=("${e%%=*}")
    if [ "$e" != "${e%%=*}" ]; then FILTERS["${e%%=*}"]="${e#*=}"; fi
  done
else
  mapfile -t TARGETS < <(bazel query --noshow_progress \
    'attr(tags, "\bctxloop_benchmark\b", kind("cc_binary", //benchmarks/...))' 2>/dev/null)
  NAMES=()
  for t in "${TARGETS[@]}"; do NAMES+=("${t##*:}"); done
fi
if [ "${#NAMES[@]}" -eq 0 ]; then
  echo "run.sh: no benchmark binaries found" >&2
  exit 1
fi

LABELS=()
for n in "${NAMES[@]}"; do LABELS+=("//benchmarks:$n"); done
echo "run.sh: building ${LABELS[*]} (--config=opt)" >&2
bazel build --config=opt --noshow_progress "${LABELS[@]}" >&2
BIN_DIR="$(bazel info --config=opt bazel-bin 2>/dev/null)/benchmarks"

OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
for n in "${NAMES[@]}"; do
  # A private copy: a concurrent build cannot replace it mid-run.
  cp "$BIN_DIR/$n" "$OUT/$n"
done

# The OpenTelemetry peer, beside the ctxloop binaries whose workloads it
# mirrors (trace_benchmark's spans, loop_benchmark's ContextKey Set+Reset).
OTEL_STATUS="not run (neither trace_benchmark nor loop_benchmark selected)"
if [ "$OTEL" -eq 0 ]; then
  OTEL_STATUS="skipped (--no-otel)"
elif [[ " ${NAMES[*]} " == *" trace_benchmark "* || " ${NAMES[*]} " == *" loop_benchmark "* ]]; then
  echo "run.sh: building the OpenTelemetry peer (benchmarks/otel_peer/build.sh)" >&2
  if OTEL_LAST="$("$ROOT/benchmarks/otel_peer/build.sh" | tail -1)" && [ -n "$OTEL_LAST" ]; then
    if [[ "$OTEL_LAST" == skipped:* ]]; then
      OTEL_STATUS="skipped (${OTEL_LAST#skipped: })"
    else
      cp "$OTEL_LAST" "$OUT/otel_benchmark"
      NAMES+=("otel_benchmark")
      OTEL_STATUS="OpenTelemetry C++ $(basename "$(dirname "$(dirname "$OTEL_LAST")")" | sed 's/^otel-//') (benchmarks/otel_peer/otel_benchmark.cc), interleaved in this run"
    fi
  else
    OTEL_STATUS="skipped (otel_peer/build.sh failed; see its output above)"
  fi
fi
echo "OpenTelemetry peer: $OTEL_STATUS" >&2

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
JSONS=()
for ((rep = 1; rep <= REPS; rep++)); do
  for n in "${NAMES[@]}"; do
    FILTER=()
    if [ -n "${FILTERS[$n]:-}" ]; then FILTER=("--benchmark_filter=${FILTERS[$n]}"); fi
    echo "run.sh: repetition $rep/$REPS: $n${FILTER[*]:+ ${FILTER[*]}} (GLIBC_TUNABLES=$GLIBC_TUNABLES CTXLOOP_BENCH_CPUS=$CTXLOOP_BENCH_CPUS)" >&2
    "$OUT/$n" --benchmark_repetitions=1 \
      --benchmark_out="$OUT/$n.$rep.json" --benchmark_out_format=json \
      "${FILTER[@]}" "${EXTRA[@]}" >&2
    # No file when a filter matched nothing in this binary.
    if [ -f "$OUT/$n.$rep.json" ]; then JSONS+=("$OUT/$n.$rep.json"); fi
  done
done

LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
set +e
TABLE="$(python3 "$ROOT/benchmarks/summarize.py" "${JSONS[@]}")"
STATUS=$?
set -e
echo
echo "OpenTelemetry peer: $OTEL_STATUS"
echo
echo "$TABLE"

if [ "$WRITE" -eq 1 ]; then
  CPU_MODEL="$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
  LIBS="$(dpkg-query -W -f='${Package} ${Version}\n' libevent-dev libboost-dev \
    libuv1-dev libbenchmark-dev libabsl-dev 2>/dev/null | paste -sd ';' - | sed 's/;/; /g')"
  {
    echo "# ctxloop benchmark results"
    echo
    echo "Produced by \`$COMMAND\` (binaries: ${NAMES[*]})."
    echo
    echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- Machine: $(nproc) CPUs, $CPU_MODEL; $(uname -sr)"
    echo "- Load average (1, 5, 15 min) before the run: $LOAD_BEFORE; after: $LOAD_AFTER (other processes compete for the 2 CPUs when it is well above 0)"
    echo "- Source: commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" status --porcelain -- loop 2>/dev/null | grep -q . && echo ', with uncommitted changes in loop/')"
    echo "- Compiler: $(gcc --version | head -1)"
    echo "- Libraries: $LIBS"
    echo "- Build: \`bazel build --config=opt\` (-O2 -DNDEBUG)"
    echo "- Environment: \`GLIBC_TUNABLES=$GLIBC_TUNABLES\`, \`CTXLOOP_BENCH_CPUS=$CTXLOOP_BENCH_CPUS\` (loop thread, producer thread)"
    echo "- Repetitions: $REPS per benchmark, interleaved (each repetition runs every binary once, in turn); the table shows the median and the min-max."
    echo "- OpenTelemetry peer: $OTEL_STATUS"
    echo
    echo "\"ctxloop / this\" is the group's ctxloop time divided by this benchmark's"
    echo "time, both from this run: above 1 means ctxloop is slower. Absolute numbers,"
    echo "cross-thread ones especially, move between runs and machines; compare"
    echo "ratios. What each benchmark measures, and why each peer is a fair"
    echo "comparison, is documented in benchmarks/loop_benchmark.cc."
    echo
    echo "$TABLE"
  } >"$ROOT/benchmarks/RESULTS.md"
  echo >&2
  echo "run.sh: wrote benchmarks/RESULTS.md" >&2
else
  echo >&2
  echo "run.sh: printed only; pass --write to record this run in benchmarks/RESULTS.md" >&2
fi
exit "$STATUS"
