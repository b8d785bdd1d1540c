#!/usr/bin/env bash
# Builds the OpenTelemetry C++ benchmark peer (otel_benchmark.cc beside this
# script) from OpenTelemetry's source archive. OpenTelemetry is a benchmark
# peer only, never a dependency of ctxloop: nothing of it enters the tree.
#
#   benchmarks/otel_peer/build.sh [ARCHIVE]
#
#   ARCHIVE   OpenTelemetry C++ source tarball (a `git archive` of the tree);
#             default $CTXLOOP_OTEL_ARCHIVE, else
#             /work/shared/peers/opentelemetry-cpp-e35113804.tar.gz.
#
# Steps (each reused when its output exists):
#   1. extract the archive into $CTXLOOP_OTEL_CACHE (default
#      ~/.cache/ctxloop/otel-<archive suffix>);
#   2. build the SDK's trace, resources and common static libraries with
#      CMake Release (a few minutes on 2 cores);
#   3. compile otel_benchmark with g++ -O2 against them, Debian's
#      libbenchmark and libabsl, and ctxloop's bench_main.cc, bench_util.cc and
#      alloc_counter.cc (the same counting allocator as every benchmark).
#
# Prints the binary's path as the last line of stdout and exits 0. If the
# archive, cmake or libbenchmark is missing, prints "skipped: <why>" as the
# last line and still exits 0, so a host without OpenTelemetry skips the peer.
# Exits non-zero only when a build that could run failed.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
ARCHIVE="${1:-${CTXLOOP_OTEL_ARCHIVE:-/work/shared/peers/opentelemetry-cpp-e35113804.tar.gz}}"

skip() {
  echo "otel_peer/build.sh: skipping the OpenTelemetry peer: $*" >&2
  echo "skipped: $*"
  exit 0
}

[ -f "$ARCHIVE" ] || skip "no source archive at $ARCHIVE"
command -v cmake >/dev/null || skip "cmake is not installed"
command -v g++ >/dev/null || skip "g++ is not installed"
[ -f /usr/include/benchmark/benchmark.h ] || skip "libbenchmark-dev is not installed"
[ -d /usr/include/absl ] || skip "libabsl-dev is not installed"

SUFFIX="$(basename "$ARCHIVE" .tar.gz)"
SUFFIX="${SUFFIX#opentelemetry-cpp-}"
CACHE="${CTXLOOP_OTEL_CACHE:-$HOME/.cache/ctxloop/otel-$SUFFIX}"
SRC="$CACHE/opentelemetry-cpp"
BUILD="$CACHE/otel-build"
mkdir -p "$CACHE"

if [ ! -f "$SRC/CMakeLists.txt" ]; then
  echo "otel_peer/build.sh: extracting $ARCHIVE into $CACHE" >&2
  rm -rf "$SRC"
  tar xzf "$ARCHIVE" -C "$CACHE"
fi
[ -f "$SRC/CMakeLists.txt" ] || {
  echo "otel_peer/build.sh: $ARCHIVE has no opentelemetry-cpp/CMakeLists.txt" >&2
  exit 1
}

LIB_TRACE="$BUILD/sdk/src/trace/libopentelemetry_trace.a"
LIB_RESOURCES="$BUILD/sdk/src/resource/libopentelemetry_resources.a"
LIB_COMMON="$BUILD/sdk/src/common/libopentelemetry_common.a"
if [ ! -f "$LIB_TRACE" ] || [ ! -f "$LIB_RESOURCES" ] || [ ! -f "$LIB_COMMON" ]; then
  echo "otel_peer/build.sh: building OpenTelemetry's SDK (CMake Release; log in $CACHE/build.log)" >&2
  cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_TESTING=OFF -DWITH_BENCHMARK=OFF -DWITH_EXAMPLES=OFF \
    -DWITH_FUNC_TESTS=OFF -DCMAKE_CXX_STANDARD=17 \
    -DCMAKE_POSITION_INDEPENDENT_CODE=ON >"$CACHE/cmake.log" 2>&1 || {
    tail -20 "$CACHE/cmake.log" >&2
    exit 1
  }
  cmake --build "$BUILD" -j"$(nproc)" --target opentelemetry_trace \
    opentelemetry_common opentelemetry_resources >"$CACHE/build.log" 2>&1 || {
    tail -20 "$CACHE/build.log" >&2
    exit 1
  }
fi

# The API's compile definitions (ABI version, ...) exactly as the SDK was
# built with them: a mismatch would change class layouts.
DEFINES="$(sed -n 's/^CXX_DEFINES = //p' \
  "$BUILD/sdk/src/trace/CMakeFiles/opentelemetry_trace.dir/flags.make")"

# ctxloop's benchmark sources include "ctxloop/benchmarks/...".
mkdir -p "$CACHE/include"
ln -sfn "$ROOT" "$CACHE/include/ctxloop"

OUT="$CACHE/bin"
BIN="$OUT/otel_benchmark"
SOURCES=("$HERE/otel_benchmark.cc" "$ROOT/benchmarks/bench_main.cc"
  "$ROOT/benchmarks/bench_util.cc" "$ROOT/benchmarks/alloc_counter.cc")
mkdir -p "$OUT"
# Rebuilt when a source or this script is newer than the binary.
NEED=0
[ -x "$BIN" ] || NEED=1
for f in "${SOURCES[@]}" "$0" "$ROOT/benchmarks/bench_util.h" \
  "$ROOT/benchmarks/alloc_counter.h" "$LIB_TRACE"; do
  [ "$f" -nt "$BIN" ] && NEED=1
done
if [ "$NEED" -eq 1 ]; then
  echo "otel_peer/build.sh: compiling $BIN (g++ -O2)" >&2
  # shellcheck disable=SC2086  # DEFINES is a list of -D flags.
  g++ -std=c++17 -O2 -DNDEBUG $DEFINES \
    -I"$CACHE/include" -I"$SRC/api/include" -I"$SRC/sdk/include" \
    "${SOURCES[@]}" -o "$BIN.tmp" \
    "$LIB_TRACE" "$LIB_RESOURCES" "$LIB_COMMON" \
    -lbenchmark -labsl_strings -labsl_strings_internal -labsl_throw_delegate \
    -labsl_raw_logging_internal -labsl_int128 -labsl_base \
    -labsl_spinlock_wait -labsl_log_severity -pthread
  mv "$BIN.tmp" "$BIN"
fi
echo "$BIN"
