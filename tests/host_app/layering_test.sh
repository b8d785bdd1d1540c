#!/usr/bin/env bash
# Checks, in this host workspace, that ctxloop's internals are out of a
# host's reach; .ci/run runs it (phase host_app_layering):
#   1. `bazel build --config=layering //...`: the host's own targets, built
#      by clang with layering_check, include only public headers of their
#      direct deps (including //layering:public_headers_only, which
#      instantiates ctxloop's inline and template code);
#   2. //layering:includes_internal_header, which includes
#      "ctxloop/loop/internal/loop_core.h" with a dep on @ctxloop//loop only,
#      fails with clang's layering error for that header;
#   3. //layering:depends_on_internal_target, which lists
#      @ctxloop//loop:loop_internal in its deps, fails Bazel's visibility
#      check.
# Each refusal must be for the reason named (its message is checked), so an
# unrelated breakage cannot pass for one. Exits non-zero on any mismatch.
set -uo pipefail

cd "$(dirname "$0")"
LOG="$(mktemp)"
trap 'rm -rf "$LOG"' EXIT
BAZEL=(bazel build --color=no --curses=no --config=layering)
fail=0

echo "layering_test: 1. ${BAZEL[*]} //..."
if ! "${BAZEL[@]}" //... </dev/null >"$LOG" 2>&1; then
  cat "$LOG"
  echo "layering_test: FAILED: the host's own targets do not build with --config=layering"
  fail=1
fi

# expect_refusal TARGET PATTERN: TARGET must fail to build, with PATTERN
# (a grep -E pattern) in Bazel's output.
expect_refusal() {
  echo "layering_test: ${BAZEL[*]} $1 (must fail)"
  if "${BAZEL[@]}" "$1" </dev/null >"$LOG" 2>&1; then
    echo "layering_test: FAILED: $1 built; it must be refused"
    fail=1
  elif ! grep -qE "$2" "$LOG"; then
    cat "$LOG"
    echo "layering_test: FAILED: $1 failed, but not with /$2/"
    fail=1
  else
    grep -E "$2" "$LOG" | head -n 1
  fi
}

echo "layering_test: 2."
expect_refusal //layering:includes_internal_header \
  "does not depend on a module exporting 'ctxloop/loop/internal/loop_core.h'"
echo "layering_test: 3."
expect_refusal //layering:depends_on_internal_target \
  "target '@ctxloop//loop:loop_internal' is not visible from target '//layering:depends_on_internal_target'"

if [ "$fail" -eq 0 ]; then
  echo "layering_test: PASSED"
fi
exit "$fail"
