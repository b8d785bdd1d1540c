#!/usr/bin/env python3
"""Instruction-count guard for ctxloop's hot paths (CI and by hand).

    tools/icount_guard.py            # build, measure, compare; exit 1 on a rise
    tools/icount_guard.py --update   # build, measure, rewrite the baseline

Builds //benchmarks:icount_hot_paths with --config=opt, runs each of its
operations under `valgrind --tool=callgrind`, collecting only inside
`ctxloop_icount_measured` (one round of --n operations after warm-up rounds;
see benchmarks/icount_hot_paths.cc), and computes

    instructions per operation = (Ir(op) - Ir(empty)) / n

where `empty` is the same round with an empty loop body. Instruction counts
repeat exactly from run to run (wall time on a shared machine does not), so a
rise is a change in the code or the toolchain, not noise.

Compares with the committed baseline (benchmarks/icount_baseline.json) and
exits 1 if any operation costs more than --threshold (default 10%) above its
baseline, if an operation has no baseline or the baseline names one the binary
no longer has. Falling well below the baseline passes with a note to update
it (a lower baseline keeps the guard tight). Exit 2: could not measure
(valgrind missing, build failed, an operation failed its own check).

Other options:
    --baseline PATH    the baseline file (default benchmarks/icount_baseline.json)
    --threshold F      allowed relative rise (default 0.10)
    --n N              operations per measured round (default 2000)
    --binary PATH      use this icount_hot_paths binary instead of building
    --results PATH     compare these measured figures (a JSON file as written by
                       --write-results) instead of building and measuring; for
                       testing the comparison (tools/icount_guard_test.py)
    --write-results P  also write the measured figures to P
    --ops A,B          measure only these operations (the comparison then covers
                       only them)
    --jobs N           valgrind runs at a time (default 2; counts do not depend
                       on it)

Standard library only. Must run from the workspace (or any directory: it
changes to the repository root itself).
"""

import argparse
import concurrent.futures
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BASELINE = os.path.join(ROOT, "benchmarks", "icount_baseline.json")
TARGET = "//benchmarks:icount_hot_paths"
MEASURED_FN = "ctxloop_icount_measured"
EMPTY = "empty"


class MeasureError(Exception):
    """Measuring failed (not a regression): exit code 2."""


def log(msg):
    print("icount_guard: " + msg, file=sys.stderr, flush=True)


def build_binary():
    """Builds the binary with --config=opt; returns its path."""
    log("building %s (--config=opt)" % TARGET)
    r = subprocess.run(["bazel", "build", "--config=opt", "--noshow_progress",
                        TARGET], cwd=ROOT)
    if r.returncode != 0:
        raise MeasureError("bazel build failed (exit %d)" % r.returncode)
    out = subprocess.run(["bazel", "info", "--config=opt", "bazel-bin"],
                         cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise MeasureError("bazel info bazel-bin failed: " + out.stderr)
    return os.path.join(out.stdout.strip(), "benchmarks", "icount_hot_paths")


def list_ops(binary):
    r = subprocess.run([binary, "--list"], capture_output=True, text=True)
    if r.returncode != 0:
        raise MeasureError("%s --list failed: %s" % (binary, r.stderr))
    return [l.strip() for l in r.stdout.splitlines() if l.strip()]


def callgrind_ir(binary, op, n, tmpdir):
    """Instructions executed inside MEASURED_FN for one run of `op`."""
    out_file = os.path.join(tmpdir, "callgrind.%s.out" % op)
    cmd = ["valgrind", "--tool=callgrind", "--collect-atstart=no",
           "--toggle-collect=" + MEASURED_FN,
           "--callgrind-out-file=" + out_file,
           binary, "--op=" + op, "--n=%d" % n]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise MeasureError("%s failed (exit %d):\n%s%s" % (
            " ".join(cmd), r.returncode, r.stdout, r.stderr[-3000:]))
    with open(out_file) as f:
        for line in f:
            m = re.match(r"^(?:summary|totals):\s+(\d+)", line)
            if m:
                return int(m.group(1))
    raise MeasureError("no totals in %s" % out_file)


def valgrind_version():
    try:
        r = subprocess.run(["valgrind", "--version"], capture_output=True,
                           text=True)
    except FileNotFoundError:
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def compiler_version():
    try:
        r = subprocess.run(["gcc", "--version"], capture_output=True, text=True)
        return r.stdout.splitlines()[0] if r.returncode == 0 else "?"
    except FileNotFoundError:
        return "?"


def measure(binary, n, only_ops=None, jobs=2):
    """Returns the results dict: {"n", "instructions_per_op": {op: float}, ...}."""
    version = valgrind_version()
    if version is None:
        raise MeasureError("valgrind not found (tools/install_deps.sh installs "
                           "it)")
    ops = list_ops(binary)
    if EMPTY not in ops:
        raise MeasureError("the binary has no '%s' operation" % EMPTY)
    if only_ops:
        unknown = [o for o in only_ops if o not in ops]
        if unknown:
            raise MeasureError("unknown operations: " + ", ".join(unknown))
        ops = [o for o in ops if o in only_ops or o == EMPTY]
    tmpdir = tempfile.mkdtemp(prefix="icount_guard.")
    try:
        # A private copy: a concurrent build cannot replace it mid-run.
        private = os.path.join(tmpdir, "icount_hot_paths")
        shutil.copy2(binary, private)
        raw = {}
        # Counts do not depend on what else runs: measure `jobs` at a time.
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {op: pool.submit(callgrind_ir, private, op, n, tmpdir)
                       for op in ops}
            for op in ops:
                raw[op] = futures[op].result()
                log("%-28s %12d instructions in the measured round" %
                    (op, raw[op]))
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    base = raw[EMPTY]
    per_op = {op: round((ir - base) / n, 1)
              for op, ir in raw.items() if op != EMPTY}
    return {
        "n": n,
        "empty_round_instructions": base,
        "instructions_per_op": per_op,
        "valgrind": version,
        "compiler": compiler_version(),
        "machine": platform.machine(),
    }


def compare(baseline, measured, threshold):
    """Returns (failures, notes): lists of human-readable lines.

    `baseline` and `measured` map operation -> instructions per operation.
    A failure: measured > baseline * (1 + threshold), or an operation present
    on one side only. A note: measured < baseline * (1 - threshold).
    """
    failures = []
    notes = []
    for op in sorted(set(baseline) | set(measured)):
        if op not in baseline:
            failures.append("%s: no baseline (measured %.1f); run "
                            "tools/icount_guard.py --update" % (op, measured[op]))
            continue
        if op not in measured:
            failures.append("%s: in the baseline but not measured" % op)
            continue
        b = float(baseline[op])
        m = float(measured[op])
        limit = b * (1.0 + threshold)
        if m > limit:
            failures.append("%s: %.1f instructions/op, baseline %.1f (+%.1f%%, "
                            "limit +%.0f%%)" % (op, m, b, pct(m, b),
                                               threshold * 100))
        elif m < b * (1.0 - threshold):
            notes.append("%s: %.1f instructions/op, %.1f%% below the baseline "
                         "%.1f; consider --update" % (op, m, -pct(m, b), b))
    return failures, notes


def pct(m, b):
    if b == 0:
        return float("inf") if m > 0 else 0.0
    return (m - b) / b * 100.0


def print_table(baseline, measured):
    print("| operation | instructions/op | baseline | change |")
    print("| --- | ---: | ---: | ---: |")
    for op in sorted(set(baseline) | set(measured)):
        m = measured.get(op)
        b = baseline.get(op)
        change = ("%+.1f%%" % pct(m, b)) if (m is not None and b) else ""
        print("| %s | %s | %s | %s |" % (
            op, "-" if m is None else "%.1f" % m,
            "-" if b is None else "%.1f" % float(b), change))


def main(argv):
    p = argparse.ArgumentParser(
        description="Instruction-count guard for ctxloop's hot paths.")
    p.add_argument("--update", action="store_true",
                   help="rewrite the baseline with the measured figures")
    p.add_argument("--baseline", default=DEFAULT_BASELINE)
    p.add_argument("--threshold", type=float, default=0.10)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--binary")
    p.add_argument("--results")
    p.add_argument("--write-results")
    p.add_argument("--ops")
    p.add_argument("--jobs", type=int, default=2)
    args = p.parse_args(argv)
    if args.threshold < 0 or args.n < 1:
        p.error("--threshold must be >= 0 and --n >= 1")
    only_ops = [o for o in args.ops.split(",") if o] if args.ops else None

    try:
        if args.results:
            with open(args.results) as f:
                results = json.load(f)
        else:
            binary = args.binary or build_binary()
            results = measure(binary, args.n, only_ops, max(1, args.jobs))
    except MeasureError as e:
        log("could not measure: %s" % e)
        return 2
    measured = results["instructions_per_op"]
    if args.write_results:
        with open(args.write_results, "w") as f:
            json.dump(results, f, indent=2, sort_keys=True)
            f.write("\n")

    if args.update:
        doc = dict(results)
        doc["comment"] = (
            "Instructions per operation of ctxloop's hot paths under callgrind "
            "(benchmarks/icount_hot_paths.cc), made by "
            "`tools/icount_guard.py --update`. CI fails when one rises more "
            "than 10% above this. Update it when a change is meant to cost "
            "more (say why in the commit) or when one got cheaper.")
        if only_ops and os.path.exists(args.baseline):
            with open(args.baseline) as f:
                old = json.load(f)
            merged = dict(old.get("instructions_per_op", {}))
            merged.update(measured)
            doc["instructions_per_op"] = merged
        with open(args.baseline, "w") as f:
            json.dump(doc, f, indent=2, sort_keys=True)
            f.write("\n")
        print_table(doc["instructions_per_op"], measured)
        log("wrote %s" % os.path.relpath(args.baseline, ROOT))
        return 0

    try:
        with open(args.baseline) as f:
            baseline_doc = json.load(f)
    except (OSError, ValueError) as e:
        log("cannot read the baseline %s: %s" % (args.baseline, e))
        return 2
    baseline = baseline_doc.get("instructions_per_op", {})
    if only_ops:
        baseline = {op: v for op, v in baseline.items() if op in only_ops}
    if baseline_doc.get("n") not in (None, results.get("n")):
        log("note: baseline measured with n=%s, now n=%s" %
            (baseline_doc.get("n"), results.get("n")))
    print_table(baseline, measured)
    failures, notes = compare(baseline, measured, args.threshold)
    for n in notes:
        log("note: " + n)
    if failures:
        for f in failures:
            log("FAIL " + f)
        log("%d operation(s) over the limit; if the rise is intended, run "
            "tools/icount_guard.py --update and commit the baseline with the "
            "reason" % len(failures))
        return 1
    log("ok: %d operations within +%.0f%% of the baseline" %
        (len(measured), args.threshold * 100))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
