#!/usr/bin/env bash
# Builds the Jaeger v2 all-in-one binary (an OpenTelemetry Collector
# distribution with Jaeger's storage and query UI) from its Go module, for
# ctxloop's end-to-end OTLP/HTTP tests (tests/otlp/, tests/e2e/).
#
# Idempotent: does nothing when the binary is already in the cache. The
# first build compiles for several minutes.
#
#   JAEGER_VERSION   module version to build (default below)
#   CTXLOOP_BIN      where binaries are cached (default ~/.cache/ctxloop/bin)
#   GO               the go tool (default: go on PATH, else /usr/local/go/bin/go)
set -euo pipefail

JAEGER_VERSION="${JAEGER_VERSION:-v1.76.0}"
BIN_DIR="${CTXLOOP_BIN:-$HOME/.cache/ctxloop/bin}"
TARGET="$BIN_DIR/jaeger"

if [ -x "$TARGET" ] && [ -f "$TARGET.version" ] &&
  [ "$(cat "$TARGET.version")" = "$JAEGER_VERSION" ]; then
  echo "install_jaeger: $TARGET ($JAEGER_VERSION) already built"
  exit 0
fi

GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
if [ ! -x "$GO" ]; then
  echo "install_jaeger: no Go toolchain (set GO=/path/to/go)" >&2
  exit 1
fi

mkdir -p "$BIN_DIR"
echo "install_jaeger: building jaeger $JAEGER_VERSION into $BIN_DIR (takes minutes)"
# `go install module@version` refuses modules whose go.mod has replace
# directives (Jaeger's does), so fetch the module's source and build it as
# the main module, where its replace directives apply.
MODULE="github.com/jaegertracing/jaeger"
SRC="$("$GO" mod download -json "$MODULE@$JAEGER_VERSION" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
if [ -z "$SRC" ] || [ ! -d "$SRC" ]; then
  echo "install_jaeger: could not download $MODULE@$JAEGER_VERSION" >&2
  exit 1
fi
WORK="$(mktemp -d)"
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT
cp -r "$SRC/." "$WORK/"
chmod -R u+w "$WORK"
(cd "$WORK" && CGO_ENABLED=0 GOFLAGS=-mod=mod "$GO" build -trimpath \
  -o "$TARGET.tmp" ./cmd/jaeger)
mv "$TARGET.tmp" "$TARGET"
echo "$JAEGER_VERSION" >"$TARGET.version"
echo "install_jaeger: done: $TARGET"
