#!/usr/bin/env bash
# Runs clang-tidy-14 with the repository's .clang-tidy over the C++ files
# changed since a base ref, and exits non-zero if it reports anything in
# those files (every check is an error here: --warnings-as-errors='*').
#
#   tools/clang_tidy_changed.sh [--build-dir DIR] [--all] [BASE]
#
#   BASE             the ref to compare with (default: main); the files are
#                    those changed between merge-base(BASE, HEAD) and the
#                    working tree (committed or not), added or modified.
#   --build-dir DIR  a CMake build directory configured with
#                    -DCMAKE_EXPORT_COMPILE_COMMANDS=ON (e.g. .ci/run's);
#                    default: a temporary one, configured here (seconds).
#   --all            every file in the compile database, not only changed
#                    ones (slow: about 65 files).
#
# What is checked: the .cc files in CMake's compile database (the libraries
# under loop/, trace/, stream/, their unit tests, examples/quickstart) that
# changed, plus, for a changed header, the .cc of the same name beside it
# (or, failing that, every database .cc that includes it). Diagnostics are
# kept only for changed files (clang-tidy's --line-filter), so an untouched
# header does not fail someone else's change. Files CMake does not compile
# (tests/, benchmarks/, most of examples/: Bazel only) are listed as
# skipped. Runs $CTXLOOP_TIDY_JOBS (default 2) clang-tidy processes at once.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
BUILD_DIR=""
ALL=0
BASE="main"
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) BUILD_DIR="$2"; shift 2 ;;
    --all) ALL=1; shift ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    -*) echo "clang_tidy_changed: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) BASE="$1"; shift ;;
  esac
done

TIDY="${CLANG_TIDY:-clang-tidy-14}"
if ! command -v "$TIDY" >/dev/null; then
  echo "clang_tidy_changed: $TIDY not found (Debian: clang-tidy-14; tools/install_deps.sh)" >&2
  exit 2
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
if [ -z "$BUILD_DIR" ]; then
  BUILD_DIR="$TMP/build"
  cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >/dev/null
fi
DB="$BUILD_DIR/compile_commands.json"
if [ ! -f "$DB" ]; then
  echo "clang_tidy_changed: no $DB (configure with -DCMAKE_EXPORT_COMPILE_COMMANDS=ON)" >&2
  exit 2
fi

# The database's sources, relative to the root.
python3 - "$DB" "$ROOT" >"$TMP/db_files" <<'EOF'
import json, os, sys
root = os.path.realpath(sys.argv[2])
for entry in json.load(open(sys.argv[1])):
    path = os.path.realpath(os.path.join(entry["directory"], entry["file"]))
    if path.startswith(root + "/"):
        print(os.path.relpath(path, root))
EOF
sort -u -o "$TMP/db_files" "$TMP/db_files"

if [ "$ALL" -eq 1 ]; then
  cp "$TMP/db_files" "$TMP/changed"
else
  merge_base="$(git merge-base "$BASE" HEAD)"
  git diff --name-only --diff-filter=AM "$merge_base" -- '*.cc' '*.h' |
    sort -u >"$TMP/changed"
fi
if [ ! -s "$TMP/changed" ]; then
  echo "clang_tidy_changed: no C++ file changed since $BASE"
  exit 0
fi

# Translation units to run: changed .cc files in the database; for a changed
# header, its .cc twin, else every database .cc that includes it.
: >"$TMP/units"
while IFS= read -r f; do
  case "$f" in
    *.cc)
      if grep -qxF "$f" "$TMP/db_files"; then
        echo "$f" >>"$TMP/units"
      else
        echo "clang_tidy_changed: skipped $f (not in CMake's build)"
      fi
      ;;
    *.h)
      twin="${f%.h}.cc"
      if grep -qxF "$twin" "$TMP/db_files"; then
        echo "$twin" >>"$TMP/units"
      else
        # The include path of a header under <pkg>/ is "ctxloop/<pkg>/...".
        users="$(grep -lF "\"ctxloop/$f\"" $(cat "$TMP/db_files") 2>/dev/null || true)"
        if [ -n "$users" ]; then
          echo "$users" >>"$TMP/units"
        else
          echo "clang_tidy_changed: skipped $f (no file in CMake's build includes it)"
        fi
      fi
      ;;
  esac
done <"$TMP/changed"
sort -u -o "$TMP/units" "$TMP/units"
if [ ! -s "$TMP/units" ]; then
  echo "clang_tidy_changed: nothing to check"
  exit 0
fi

# Report only what is in a changed file (a suffix match: headers are seen
# through the build tree's include/ctxloop/<pkg>/ links).
python3 - "$TMP/changed" >"$TMP/line_filter" <<'EOF'
import json, sys
print(json.dumps([{"name": f} for f in open(sys.argv[1]).read().split()]))
EOF

count="$(wc -l <"$TMP/units")"
echo "clang_tidy_changed: $count file(s) against $BASE with $TIDY"
# clang compiles as C++14 by default, and GCC's C++17 default puts no -std
# in the database.
status=0
xargs -a "$TMP/units" -P "${CTXLOOP_TIDY_JOBS:-2}" -n 1 \
  "$TIDY" -p "$BUILD_DIR" --quiet --extra-arg=-std=c++17 \
  --warnings-as-errors='*' --line-filter="$(cat "$TMP/line_filter")" \
  >"$TMP/out" 2>&1 || status=$?
# Keep the findings; drop clang-tidy's "N warnings generated" chatter.
grep -vE '^[0-9]+ warnings? (and [0-9]+ errors? )?generated\.$|^Suppressed [0-9]+ warnings|^Use -header-filter|^[0-9]+ warnings? treated as errors$' \
  "$TMP/out" || true
if [ "$status" -ne 0 ]; then
  echo "clang_tidy_changed: findings above (fix them, or NOLINT(check) with a reason)"
  exit 1
fi
echo "clang_tidy_changed: clean"
