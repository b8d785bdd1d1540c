#!/usr/bin/env python3
"""Summarizes Google Benchmark JSON files from ctxloop's benchmark binaries.

    summarize.py OUT1.json [OUT2.json ...]

Prints a markdown table: per group (the benchmark's label, see bench_util.h),
each benchmark's median ns/item over its repetitions (min-max in brackets),
the ratio of the group's ctxloop benchmark (BM_Ctxloop_*) to it (its peers:
BM_RawLibevent_*, BM_Asio_*, BM_Libuv_*, BM_OTel_*, ...), the median heap
allocations per item (`allocs_per_item`, counted by every binary except
sanitizer builds; see alloc_counter.h) and, where the benchmark reports it
(cross-thread ones), the median number of times the loop was woken per 1000
items. Below the table: the spans each batch-processor benchmark dropped (its
`dropped` counter), per repetition. A benchmark found in several files (one
file per interleaved repetition) gets the repetitions of all of them. Ratios
compare numbers from the same run only. Exits non-zero if a benchmark
reported an error.
"""

import json
import statistics
import sys


def load_runs(paths):
    """Returns {name: {"label": str, "ns": [per-repetition ns/item],
    "allocs": [per-repetition allocations/item], "wakeups": [...]}}."""
    runs = {}
    order = []
    errors = []
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        for b in data.get("benchmarks", []):
            if b.get("run_type", "iteration") != "iteration":
                continue  # Aggregates: recomputed here from the repetitions.
            name = b.get("run_name", b["name"])
            name = name.replace("/real_time", "")
            if b.get("error_occurred"):
                errors.append("%s: %s" % (name, b.get("error_message", "?")))
                continue
            ns = b.get("ns_per_item")
            if ns is None:
                continue
            entry = runs.get(name)
            if entry is None:
                entry = {"label": b.get("label", "") or "(no group)", "ns": [],
                         "allocs": [], "wakeups": [], "dropped": []}
                runs[name] = entry
                order.append(name)
            # ns_per_item is a kIsRate|kInvert counter: seconds per item.
            entry["ns"].append(float(ns) * 1e9)
            if "allocs_per_item" in b:
                entry["allocs"].append(float(b["allocs_per_item"]))
            if "wakeups_per_1k" in b:
                entry["wakeups"].append(float(b["wakeups_per_1k"]))
            if "dropped" in b:
                entry["dropped"].append(float(b["dropped"]))
    return runs, order, errors


def fmt(ns):
    if ns >= 100:
        return "%.0f" % ns
    if ns >= 10:
        return "%.1f" % ns
    return "%.2f" % ns


def fmt_allocs(x):
    """0 exactly as "0"; otherwise 3 significant digits (0.000125, 1.00)."""
    if x == 0:
        return "0"
    return "%.3g" % x


def main(argv):
    runs, order, errors = load_runs(argv[1:])
    groups = []
    members = {}
    for name in order:
        label = runs[name]["label"]
        if label not in members:
            members[label] = []
            groups.append(label)
        members[label].append(name)

    print("| group | benchmark | median ns/item (min-max) | ctxloop / this "
          "| allocs/item | loop wake-ups per 1k items |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for label in groups:
        names = members[label]
        medians = {n: statistics.median(runs[n]["ns"]) for n in names}
        # Growth curves (growth_benchmark.cc) compare sizes, not contenders.
        ref = None if label.startswith("growth_") else next(
            (n for n in names if n.startswith("BM_Ctxloop_")), None)
        # ctxloop first, then the peers fastest first.
        ordered = ([ref] if ref else []) + sorted(
            (n for n in names if n != ref), key=lambda n: medians[n])
        if label.startswith("growth_"):
            ordered = names  # In size order, as registered.

        for n in ordered:
            ns = runs[n]["ns"]
            spread = "%s (%s-%s)" % (fmt(medians[n]), fmt(min(ns)), fmt(max(ns)))
            if ref is None:
                ratio = "-"
            elif n == ref:
                ratio = "1 (reference)"
            else:
                ratio = "%.2fx" % (medians[ref] / medians[n])
            wk = runs[n]["wakeups"]
            wakeups = "%.1f" % statistics.median(wk) if wk else ""
            al = runs[n]["allocs"]
            allocs = fmt_allocs(statistics.median(al)) if al else ""
            print("| %s | %s | %s | %s | %s | %s |" % (label, n, spread, ratio,
                                                       allocs, wakeups))
    dropping = [n for n in order if runs[n]["dropped"]]
    if dropping:
        print()
        print("Spans dropped by a batch processor (queue full), per repetition:")
        for n in dropping:
            print("- %s: %s" % (n, ", ".join(
                "%.0f" % d for d in runs[n]["dropped"])))
    if errors:
        print()
        print("Benchmarks that reported errors:")
        for e in errors:
            print("- " + e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
