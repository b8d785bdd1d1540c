#!/usr/bin/env bash
# Builds ctxloop with CMake, installs it to a temporary prefix, builds this
# directory's host application and README's quick start (examples/quickstart,
# a CMake project of its own) against it with find_package(ctxloop) and runs
# them. Exits non-zero if any step or the programs' checks fail.
#
#   tests/cmake_host_app/run.sh [--build-dir DIR] [--add-subdirectory]
#
#   --build-dir DIR     configure/build ctxloop in DIR (kept; reused if it is
#                       already configured, e.g. .ci/run's CTest build).
#                       Default: a temporary directory, libraries only.
#   --add-subdirectory  instead of installing, build the host with
#                       -DCTXLOOP_SOURCE_DIR=<this checkout> (add_subdirectory,
#                       as FetchContent users get).
#
# Uses $CMAKE_BUILD_PARALLEL_LEVEL (default 2) build jobs.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BUILD_DIR=""
MODE="find_package"
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) BUILD_DIR="$2"; shift 2 ;;
    --add-subdirectory) MODE="add_subdirectory"; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
step() { echo "cmake_host_app: $*"; }

HOST_ARGS=()
if [ "$MODE" = "find_package" ]; then
  if [ -z "$BUILD_DIR" ]; then
    BUILD_DIR="$TMP/ctxloop-build"
  fi
  if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    step "configuring ctxloop in $BUILD_DIR (libraries only)"
    cmake -S "$ROOT" -B "$BUILD_DIR" -DCTXLOOP_BUILD_TESTS=OFF \
      -DCTXLOOP_BUILD_EXAMPLES=OFF >/dev/null
  fi
  step "building ctxloop"
  cmake --build "$BUILD_DIR"
  PREFIX="$TMP/prefix"
  step "installing ctxloop to $PREFIX"
  cmake --install "$BUILD_DIR" --prefix "$PREFIX" >/dev/null
  HOST_ARGS+=("-DCMAKE_PREFIX_PATH=$PREFIX")

  # Internal headers (internal/, export_internal/) are installed only
  # because an installed header includes them; every other installed header
  # is public, and the host build below compiles them all in one file, so a
  # public header that needs a header left uninstalled fails here.
  INC="$PREFIX/include"
  step "checking the installed headers"
  bad=0
  while IFS= read -r h; do
    rel="${h#"$INC/"}"
    if ! grep -rqF --include='*.h' "#include \"$rel\"" "$INC/ctxloop"; then
      echo "cmake_host_app: $rel is installed, but no installed header includes it" >&2
      bad=1
    fi
  done < <(find "$INC/ctxloop" -name '*.h' -path '*internal/*' | sort)
  [ "$bad" -eq 0 ] || exit 1
  ALL_HEADERS_CC="$TMP/all_public_headers.cc"
  find "$INC/ctxloop" -name '*.h' ! -path '*internal/*' | sort |
    sed "s|^$INC/\(.*\)|#include \"\1\"|" >"$ALL_HEADERS_CC"
  step "$(wc -l <"$ALL_HEADERS_CC") public headers, $(find "$INC/ctxloop" -name '*.h' -path '*internal/*' | wc -l) internal ones installed"
  HOST_ARGS+=("-DCTXLOOP_ALL_HEADERS_CC=$ALL_HEADERS_CC")
else
  HOST_ARGS+=("-DCTXLOOP_SOURCE_DIR=$ROOT")
fi

step "configuring the host app ($MODE)"
cmake -S "$HERE" -B "$TMP/host-build" "${HOST_ARGS[@]}" >/dev/null
if [ "$MODE" = "find_package" ]; then
  # The package found must be the one just installed.
  found="$(sed -n 's/^ctxloop_DIR:PATH=//p' "$TMP/host-build/CMakeCache.txt")"
  if [ "$found" != "$PREFIX/lib/cmake/ctxloop" ]; then
    echo "cmake_host_app: find_package(ctxloop) found '$found', not $PREFIX" >&2
    exit 1
  fi
  step "find_package(ctxloop) found $found"
fi
step "building the host app"
cmake --build "$TMP/host-build"
step "running the host app"
"$TMP/host-build/host_app"

if [ "$MODE" = "find_package" ]; then
  # README's quick start, configured exactly as README says: its own
  # project, find_package(ctxloop), the targets its code uses.
  step "building README's quick start (examples/quickstart) against $PREFIX"
  cmake -S "$ROOT/examples/quickstart" -B "$TMP/quickstart-build" \
    "-DCMAKE_PREFIX_PATH=$PREFIX" >/dev/null
  cmake --build "$TMP/quickstart-build"
  step "running the quick start"
  "$TMP/quickstart-build/quickstart"
fi
