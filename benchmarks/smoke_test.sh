#!/usr/bin/env bash
# Smoke test for one ctxloop benchmark binary (see benchmark.bzl):
#   smoke_test.sh BINARY [benchmark flags...]
# Runs every benchmark once, briefly, and fails if the binary fails, if any
# benchmark reports an error, or if a listed benchmark produced no result.
set -euo pipefail

bin="$1"
shift

out="${TEST_TMPDIR:-$(mktemp -d)}/smoke.log"

listed="$("$bin" --benchmark_list_tests "$@")"
n_listed="$(grep -c . <<<"$listed" || true)"
if [ "$n_listed" -eq 0 ]; then
  echo "smoke: $bin lists no benchmarks"
  exit 1
fi

# No time limit per benchmark beyond one short run; no repetitions.
if ! "$bin" --benchmark_min_time=0.001 --benchmark_repetitions=1 \
    --benchmark_color=false "$@" >"$out" 2>&1; then
  cat "$out"
  echo "smoke: $bin exited with an error"
  exit 1
fi
cat "$out"

if grep -q "ERROR OCCURRED" "$out"; then
  echo "smoke: a benchmark reported an error:"
  grep "ERROR OCCURRED" "$out"
  exit 1
fi

missing=0
while IFS= read -r name; do
  [ -n "$name" ] || continue
  if ! grep -qE "^${name}( |/|$)" "$out"; then
    echo "smoke: no result for $name"
    missing=$((missing + 1))
  fi
done <<<"$listed"
if [ "$missing" -ne 0 ]; then
  exit 1
fi
echo "smoke: $n_listed benchmarks ran without error"
