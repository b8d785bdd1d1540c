#!/usr/bin/env bash
# Installs the Debian 12 packages ctxloop's offline Bazel build uses (see
# WORKSPACE and third_party/deps.bzl). Idempotent: installs only what is
# missing, running `apt-get update` once and only then. Needs root (or sudo).
set -euo pipefail

PACKAGES=(
  # Bazel 4.2.3 and the rule sets it needs offline.
  bazel-bootstrap bazel-rules-java bazel-platforms
  # Toolchain (GCC is the default; clang is optional) and sanitizer runtimes.
  g++ clang libclang-rt-14-dev clang-format clang-tidy
  # Libraries behind @com_google_absl, @com_google_googletest,
  # @com_github_google_benchmark, @libevent, @boost, @libuv.
  libabsl-dev googletest libgtest-dev libbenchmark-dev libevent-dev
  libboost-dev libuv1-dev
  rapidjson-dev zlib1g-dev
)

bash "$(dirname "$0")/install_jaeger.sh" || echo "install_deps: Jaeger not built (its tests will skip)" >&2
missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$pkg")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install_deps: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install_deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  "${missing[@]}" >/dev/null
echo "install_deps: done"
