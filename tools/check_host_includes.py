#!/usr/bin/env python3
"""Checks that host-facing code uses only ctxloop's public API.

    python3 tools/check_host_includes.py     # .ci/run runs it; exit 1 on a hit

Host-facing code is what a host copies or builds against: examples/, the two
host apps (tests/host_app/, tests/cmake_host_app/) and the C++/CMake/Bazel
code blocks of README.md, docs/hosting.md and docs/streams.md. In it, a
hit is
  * an include of a ctxloop header under internal/ or export_internal/, or
  * a name in one of ctxloop's internal namespaces (`loop_internal::`,
    `trace_internal::`, `stream_internal::`, and the old `internal::`), or
  * a dependency on an internal Bazel or CMake target, or
  * a code block headed `// examples/<file>` that is not that file.
tests/host_app/layering/ reaches for internals on purpose (layering_test.sh
checks that the build refuses it): its BUILD file, the offending source and
the script are skipped. The Bazel build enforces the same for //examples and hosts with
--config=layering (clang); this check also covers CMake, README, and GCC
builds.
"""

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
DIRS = ["examples", "tests/host_app", "tests/cmake_host_app"]
# User documents whose code blocks a host copies.
DOCS = ["README.md", "docs/hosting.md", "docs/streams.md"]
SUFFIXES = {".cc", ".h", ".bazel", ".txt", ".sh", ".cmake"}
SKIP = {
    "tests/host_app/layering/BUILD.bazel",
    "tests/host_app/layering/includes_internal_header.cc",
    "tests/host_app/layering_test.sh",
}

PATTERNS = [
    (re.compile(r'#\s*include\s*[<"]ctxloop/[^">]*internal/'),
     "includes an internal header"),
    (re.compile(r"\b(?:ctxloop::)?(?:loop_|trace_|stream_)?internal::"),
     "names an internal namespace"),
    (re.compile(r"//loop:(?:loop_internal|test_util)\b|"
                r"//(?:trace|stream):\w*_internal\b|//trace/export_internal"),
     "depends on an internal Bazel target"),
    (re.compile(r"ctxloop::trace_(?:json_writer|append_file)\b"),
     "links an internal CMake target"),
]


def check_lines(rel, lines):
    hits = []
    for n, line in lines:
        for pattern, what in PATTERNS:
            if pattern.search(line):
                hits.append(f"{rel}:{n}: {what}: {line.strip()}")
    return hits


def readme_code_lines(path):
    """(line number, text) of the lines inside ``` fences."""
    inside = False
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("```"):
            inside = not inside
        elif inside:
            yield n, line


def quick_start_drift(doc):
    """A code block headed `// examples/<file>` (C++) or `# examples/<file>`
    (CMake) must be that file after its leading comment: README shows the
    whole quick start, and the builds compile and run those files."""
    hits = []
    lines = (ROOT / doc).read_text().splitlines()
    for n, line in enumerate(lines):
        m = re.match(r"(?://|#) (examples/\S+)$", line)
        if not m or n == 0 or not lines[n - 1].startswith("```"):
            continue
        end = next(k for k in range(n + 1, len(lines))
                   if lines[k].startswith("```"))
        src = (ROOT / m.group(1)).read_text().splitlines()
        first = next(k for k, t in enumerate(src)
                     if t.strip() and not t.startswith("//") and
                     (t.startswith("#include") or not t.startswith("#")))
        if lines[n + 1:end] != src[first:]:
            hits.append(f"{doc}:{n + 1}: the code block differs from "
                        f"{m.group(1)} (after its leading comment)")
    return hits


def main():
    hits = []
    files = 0
    for d in DIRS:
        for path in sorted((ROOT / d).rglob("*")):
            rel = path.relative_to(ROOT).as_posix()
            if (not path.is_file() or rel in SKIP or
                    (path.suffix not in SUFFIXES and path.name != "BUILD")):
                continue
            # A BUILD file's comments may name the internal targets it must
            # not use; only its code counts.
            text = path.read_text().splitlines()
            lines = [(n, re.sub(r"#(?!\s*include).*", "", t)
                      if path.suffix in {".bazel", ".txt", ".cmake"} else t)
                     for n, t in enumerate(text, 1)]
            hits += check_lines(rel, lines)
            files += 1
    for doc in DOCS:
        if (ROOT / doc).is_file():
            hits += check_lines(doc, readme_code_lines(ROOT / doc))
            hits += quick_start_drift(doc)
    for hit in hits:
        print(hit)
    if hits:
        print(f"check_host_includes: {len(hits)} hit(s): host-facing code must "
              "use only public headers and targets")
        return 1
    print(f"check_host_includes: {files} files and the code blocks of "
          f"{', '.join(DOCS)} use only public headers and targets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
