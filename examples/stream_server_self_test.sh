#!/bin/bash
# Runs `stream_server --self_test` (one real HTTP request to itself, checked
# end to end) and checks that it wrote a Chrome trace file.
set -euo pipefail
binary="$1"
out="${TEST_TMPDIR:-/tmp}/self_test_trace.json"
"$binary" --self_test --events=10 --delay_ms=1 --trace_out="$out"
test -s "$out" || { echo "no trace file at $out"; exit 1; }
grep -q '"traceEvents"' "$out" || { echo "$out is not a Chrome trace"; exit 1; }
echo "trace file ok: $out"
