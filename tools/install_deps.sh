#!/usr/bin/env bash
# Installs the Debian 12 packages ctxloop's offline Bazel and CMake builds use
# (see WORKSPACE, third_party/deps.bzl and CMakeLists.txt), then buildifier
# (built with Go into $(go env GOPATH)/bin, which is kept between runs; see
# tools/buildifier.sh; without Go or its module proxy only a warning, as only
# .ci/run's format check needs it). Idempotent and quick when all is there:
# installs only what is missing, running `apt-get update` once and only then.
# Needs root (or sudo) for the packages.
set -euo pipefail

cd "$(dirname "$0")/.."

PACKAGES=(
  # Bazel 4.2.3 and the rule sets it needs offline.
  bazel-bootstrap bazel-rules-java bazel-platforms
  # Toolchain (GCC is the default; clang is optional) and sanitizer runtimes.
  g++ clang libclang-rt-14-dev clang-format
  clang-tidy-14  # tools/clang_tidy_changed.sh
  # The CMake build (CMakeLists.txt); libevent is found with pkg-config.
  cmake pkg-config
  # Libraries behind @com_google_absl, @com_google_googletest,
  # @com_github_google_benchmark, @libevent, @boost, @libuv.
  libabsl-dev googletest libgtest-dev libbenchmark-dev libevent-dev
  libboost-dev libuv1-dev
  valgrind  # Instruction counts for CI's guard (tools/icount_guard.py).
  # JSON parsing (OTLP responses, Jaeger's API in tests) and gzip for OTLP.
  rapidjson-dev zlib1g-dev
  # The Spin model checker: tools/check_spin_model.sh checks the foreign
  # ingress protocol model loop/model/ingress.pml.
  spin
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$pkg")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install_deps: all ${#PACKAGES[@]} packages already installed"
else
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "install_deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >/dev/null
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
  echo "install_deps: packages done"
fi

# buildifier, pinned (tools/buildifier.sh knows the version and the path).
# Rebuilt only if the binary is missing or was built from another version.
# shellcheck source=tools/buildifier.sh
source tools/buildifier.sh --print-config
if [ -x "$BUILDIFIER" ] &&
  "$GO" version -m "$BUILDIFIER" 2>/dev/null |
  grep -qE "^[[:space:]]+mod[[:space:]]+$BUILDIFIER_MODULE[[:space:]]+$BUILDIFIER_VERSION[[:space:]]"; then
  echo "install_deps: buildifier $BUILDIFIER_VERSION already installed"
elif [ ! -x "$GO" ]; then
  # Only .ci/run's buildifier phase needs it: warn, do not fail the builds'
  # set-up.
  echo "install_deps: WARNING: Go not found (on PATH or /usr/local/go/bin): no buildifier" >&2
elif "$GO" install "$BUILDIFIER_MODULE/buildifier@$BUILDIFIER_VERSION"; then
  echo "install_deps: built buildifier $BUILDIFIER_VERSION ($BUILDIFIER)"
else
  echo "install_deps: WARNING: could not build buildifier (it needs the Go module proxy or a warm module cache); only .ci/run's buildifier phase needs it" >&2
fi

# Jaeger v2 (the real OTLP collector of the end-to-end tests) is not built
# here: `tools/jaeger.sh start` builds it the first time it is started
# (minutes of Go compilation; see tools/install_jaeger.sh), which .ci/run
# does. The demo and the unit tests do not need it.
