#!/usr/bin/env bash
# Runs the pinned buildifier that tools/install_deps.sh builds with Go into
# $(go env GOPATH)/bin, e.g.
#   tools/buildifier.sh -r .                           # format every file
#   tools/buildifier.sh -mode=check -lint=warn -r .    # what .ci/run checks
# Sourced with --print-config (by install_deps.sh), it only sets GO,
# BUILDIFIER, BUILDIFIER_MODULE and BUILDIFIER_VERSION.
BUILDIFIER_MODULE="github.com/bazelbuild/buildtools"
BUILDIFIER_VERSION="v0.0.0-20260904073137-eaa4d125b423"
GO="$(command -v go || echo /usr/local/go/bin/go)"
GOPATH_FIRST="$("$GO" env GOPATH 2>/dev/null || true)"
BUILDIFIER="${GOPATH_FIRST%%:*}/bin/buildifier"
if [ "${1:-}" = "--print-config" ]; then
  return 0 2>/dev/null || exit 0
fi

set -euo pipefail
if [ ! -x "$BUILDIFIER" ]; then
  echo "buildifier.sh: $BUILDIFIER missing; run tools/install_deps.sh" >&2
  exit 2
fi
exec "$BUILDIFIER" "$@"
