#!/usr/bin/env python3
"""Draws how ctxloop's costs grow (benchmarks/growth_benchmark.cc) as an SVG.

    tools/plot_growth.py --run                   # build, run once, plot
    tools/plot_growth.py --json growth.json      # plot an existing run

With --run it builds //benchmarks:growth_benchmark with --config=opt and runs
it the way benchmarks/run.sh runs benchmarks (the same GLIBC_TUNABLES and
CTXLOOP_BENCH_CPUS), writing Google Benchmark's JSON to --json (default
benchmarks/growth.json). Then, in both cases, it reads that JSON and writes
--svg (default benchmarks/growth.svg): three panels of ns per item against
the size of the loop's state (pending timers; burst size; live contexts),
with allocations per item and bytes per context / per idle stream noted.

Options:
    --run             build and run the benchmark first
    --reps N          repetitions with --run (default 1; medians are plotted)
    --json PATH       the benchmark JSON to read (and to write with --run)
    --svg PATH        the SVG to write
    --time cpu|real   plot the benchmark thread's CPU time per item (the
                      default: on a shared machine other processes inflate
                      wall time several-fold; CPU time still includes page
                      faults and the kernel's work for the thread) or wall time

Standard library only (the SVG is written by hand; no matplotlib needed).
"""

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from xml.sax.saxutils import escape

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = "//benchmarks:growth_benchmark"
# benchmarks/run.sh's settings, so the figures compare with its table.
GLIBC_TUNABLES = ("glibc.malloc.trim_threshold=268435456:"
                  "glibc.malloc.top_pad=67108864:"
                  "glibc.malloc.mmap_threshold=33554432")

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]


def log(msg):
    print("plot_growth: " + msg, file=sys.stderr, flush=True)


def run_benchmark(json_path, reps):
    log("building %s (--config=opt)" % TARGET)
    subprocess.run(["bazel", "build", "--config=opt", "--noshow_progress",
                    TARGET], cwd=ROOT, check=True)
    bin_dir = subprocess.run(
        ["bazel", "info", "--config=opt", "bazel-bin"], cwd=ROOT, check=True,
        capture_output=True, text=True).stdout.strip()
    env = dict(os.environ)
    env["GLIBC_TUNABLES"] = GLIBC_TUNABLES
    if not env.get("CTXLOOP_BENCH_CPUS"):
        env["CTXLOOP_BENCH_CPUS"] = "0,1" if (os.cpu_count() or 1) >= 2 else "off"
    tmp = tempfile.mkdtemp(prefix="plot_growth.")
    try:
        # A private copy: a concurrent build cannot replace it mid-run.
        binary = os.path.join(tmp, "growth_benchmark")
        shutil.copy2(os.path.join(bin_dir, "benchmarks", "growth_benchmark"),
                     binary)
        log("running growth_benchmark (%d repetition(s))" % reps)
        subprocess.run([binary, "--benchmark_repetitions=%d" % reps,
                        "--benchmark_out=" + os.path.abspath(json_path),
                        "--benchmark_out_format=json"], env=env, check=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load(json_path):
    """Returns (context, {label: {x_key: {"ns": [...], counters...}}})."""
    with open(json_path) as f:
        data = json.load(f)
    series = {}
    for b in data.get("benchmarks", []):
        if b.get("run_type", "iteration") != "iteration":
            continue
        if b.get("error_occurred"):
            log("skipping %s: %s" % (b["name"], b.get("error_message")))
            continue
        label = b.get("label", "")
        name = b.get("run_name", b["name"]).replace("/real_time", "")
        args = dict(re.findall(r"/(\w+):(\d+)", name))
        entry = series.setdefault(label, {}).setdefault(
            tuple(sorted(args.items())), {"args": args, "values": {}})
        for key in ("ns_per_item", "allocs_per_item", "create_ns",
                    "destroy_ns", "create_cpu_ns", "destroy_cpu_ns",
                    "bytes_per_item"):
            if key in b:
                v = float(b[key])
                if key == "ns_per_item":
                    v *= 1e9  # A kIsRate|kInvert counter: seconds per item.
                entry["values"].setdefault(key, []).append(v)
        # CPU time per item: the benchmark thread's CPU time (Google
        # Benchmark's cpu_time) in the same proportion to real time.
        if "ns_per_item" in b and float(b.get("real_time", 0)) > 0:
            entry["values"].setdefault("cpu_ns_per_item", []).append(
                float(b["ns_per_item"]) * 1e9 * float(b["cpu_time"]) /
                float(b["real_time"]))
    return data.get("context", {}), series


def median(entry, key):
    vals = entry["values"].get(key)
    return statistics.median(vals) if vals else None


def points(series, label, arg, key, where=None):
    """[(x, y)] of `key` against integer argument `arg`, sorted by x."""
    out = []
    for entry in series.get(label, {}).values():
        args = entry["args"]
        if arg not in args:
            continue
        if where and any(args.get(k) != str(v) for k, v in where.items()):
            continue
        y = median(entry, key)
        if y is not None:
            out.append((int(args[arg]), y))
    return sorted(out)


def single(series, label, key):
    for entry in series.get(label, {}).values():
        v = median(entry, key)
        if v is not None:
            return v
    return None


def human(n):
    if n >= 1000000 and n % 1000000 == 0:
        return "%dM" % (n // 1000000)
    if n >= 1000 and n % 1000 == 0:
        return "%dk" % (n // 1000)
    return str(n)


def nice_max(v):
    if v <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(v))
    for m in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if m * exp >= v:
            return m * exp
    return 10 * exp


class Svg:
    def __init__(self, width, height):
        self.w, self.h = width, height
        self.parts = []

    def add(self, s):
        self.parts.append(s)

    def text(self, x, y, s, size=12, anchor="start", weight="normal",
             color="#222"):
        self.add('<text x="%.1f" y="%.1f" font-size="%d" text-anchor="%s" '
                 'font-weight="%s" fill="%s">%s</text>' % (
                     x, y, size, anchor, weight, color, escape(s)))

    def line(self, x1, y1, x2, y2, color="#999", width=1, dash=None):
        d = ' stroke-dasharray="%s"' % dash if dash else ""
        self.add('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" '
                 'stroke-width="%s"%s/>' % (x1, y1, x2, y2, color, width, d))

    def render(self):
        return ('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
                'viewBox="0 0 %d %d" font-family="sans-serif">\n'
                '<rect width="100%%" height="100%%" fill="white"/>\n%s\n</svg>\n'
                % (self.w, self.h, self.w, self.h, "\n".join(self.parts)))


def panel(svg, x0, y0, w, h, title, xlabel, curves, notes=()):
    """One chart: `curves` = [(name, [(x, y)], allocs_by_x or None)].

    The x axis is categorical (the sizes measured, equally spaced, labelled),
    the y axis linear from 0 in ns per item.
    """
    left, right, top, bottom = 56, 12, 28, 44 + 14 * len(notes)
    px0, py0 = x0 + left, y0 + top
    pw, ph = w - left - right, h - top - bottom
    svg.text(x0 + w / 2, y0 + 16, title, size=14, anchor="middle",
             weight="bold")
    xs = sorted({x for _, pts, _ in curves for x, _ in pts})
    ys = [y for _, pts, _ in curves for _, y in pts]
    if not xs or not ys:
        svg.text(x0 + w / 2, y0 + h / 2, "(no data)", anchor="middle")
        return
    ymax = nice_max(max(ys) * 1.08)

    def X(x):
        i = xs.index(x)
        return px0 + (pw * (i + 0.5) / len(xs))

    def Y(y):
        return py0 + ph - ph * y / ymax

    for k in range(6):
        yv = ymax * k / 5
        svg.line(px0, Y(yv), px0 + pw, Y(yv), color="#e5e5e5")
        svg.text(px0 - 6, Y(yv) + 4, "%g" % yv, size=11, anchor="end")
    svg.line(px0, py0, px0, py0 + ph, color="#444")
    svg.line(px0, py0 + ph, px0 + pw, py0 + ph, color="#444")
    for x in xs:
        svg.text(X(x), py0 + ph + 16, human(x), size=11, anchor="middle")
    svg.text(px0 + pw / 2, py0 + ph + 34, xlabel, size=12, anchor="middle")
    svg.add('<text x="%.1f" y="%.1f" font-size="12" text-anchor="middle" '
            'transform="rotate(-90 %.1f %.1f)">ns per item</text>' % (
                x0 + 14, py0 + ph / 2, x0 + 14, py0 + ph / 2))
    ly = py0 + 8
    for i, (name, pts, allocs) in enumerate(curves):
        color = COLORS[i % len(COLORS)]
        if len(pts) > 1:
            svg.add('<polyline fill="none" stroke="%s" stroke-width="2" '
                    'points="%s"/>' % (color, " ".join(
                        "%.1f,%.1f" % (X(x), Y(y)) for x, y in pts)))
        for x, y in pts:
            svg.add('<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"/>' % (
                X(x), Y(y), color))
            tag = "%.0f" % y if y >= 10 else "%.1f" % y
            if allocs and allocs.get(x) is not None:
                tag += " (%s alloc)" % fmt_allocs(allocs[x])
            svg.text(X(x) + 5, Y(y) - 6, tag, size=10, color=color)
        svg.line(px0 + 8, ly, px0 + 26, ly, color=color, width=2)
        svg.text(px0 + 30, ly + 4, name, size=11, color=color)
        ly += 15
    ny = py0 + ph + 52
    for note in notes:
        svg.text(px0, ny, note, size=11, color="#333")
        ny += 14


def fmt_allocs(a):
    # Allocations amortized over thousands of items (a vector's growth) are
    # "~0"; what matters is whether an item allocates.
    if a == 0:
        return "0"
    if a < 0.001:
        return "~0"
    return "%.2g" % a


def allocs_of(series, label, arg, where=None):
    return dict(points(series, label, arg, "allocs_per_item", where))


def draw(context, series, svg_path, source, time_kind):
    cpu = time_kind == "cpu"
    per_item = "cpu_ns_per_item" if cpu else "ns_per_item"
    create = "create_cpu_ns" if cpu else "create_ns"
    destroy = "destroy_cpu_ns" if cpu else "destroy_ns"
    svg = Svg(1500, 560)
    when = context.get("date", "?")
    host = "%s CPUs at %s MHz" % (context.get("num_cpus", "?"),
                                  context.get("mhz_per_cpu", "?"))
    load = context.get("load_avg")
    load_s = (" load avg %s" % ", ".join("%.1f" % v for v in load)
              if load else "")
    build = context.get("ctxloop_build", "?")
    svg.text(16, 24, "How ctxloop's costs grow (benchmarks/growth_benchmark.cc)",
             size=16, weight="bold")
    what = ("CPU time of the benchmark thread per item (page faults "
            "included; time lost to other processes not)" if cpu else
            "wall time per item")
    svg.text(16, 44, "%s; %s;%s; %s; from %s. %s." % (
        when, host, load_s, build, source, what), size=11, color="#555")

    top, h, w = 60, 480, 490
    panel(svg, 10, top, w, h, "Post and timers vs pending timers",
          "timers pending (1 hour out)", [
              ("Post + run (same thread)",
               points(series, "growth_post_pending_timers", "pending_timers",
                      per_item),
               allocs_of(series, "growth_post_pending_timers",
                         "pending_timers")),
              ("PostDelayed(1 s) + Cancel",
               points(series, "growth_cancel_pending_timers", "pending_timers",
                      per_item),
               allocs_of(series, "growth_cancel_pending_timers",
                         "pending_timers")),
          ], notes=["(n alloc): heap allocations per item"])
    panel(svg, 10 + w + 10, top, w, h, "A burst of N posts, then run",
          "burst size N (tasks posted before the loop runs)", [
              ("loop that never held N",
               points(series, "growth_post_burst_fresh", "burst",
                      per_item), None),
              ("never held N, heap given back",
               points(series, "growth_post_burst_fresh_trimmed", "burst",
                      per_item), None),
              ("loop that held N before",
               points(series, "growth_post_burst_warm", "burst",
                      per_item), None),
          ])
    where = {"batch": 1000000}
    ctx_notes = []
    b_ctx = single(series, "growth_context_memory", "bytes_per_item")
    b_stream = single(series, "growth_idle_stream_memory", "bytes_per_item")
    if b_ctx is not None:
        ctx_notes.append("heap per context: %.0f bytes" % b_ctx)
    if b_stream is not None:
        ctx_notes.append("heap per idle stream (writer + subscription): "
                         "%.0f bytes" % b_stream)
    panel(svg, 10 + 2 * (w + 10), top, w, h,
          "Create + destroy 1M contexts vs live contexts",
          "other contexts live", [
              ("create + destroy",
               points(series, "growth_context_create_destroy", "live",
                      per_item, where),
               allocs_of(series, "growth_context_create_destroy", "live",
                         where)),
              ("create", points(series, "growth_context_create_destroy",
                                "live", create, where), None),
              ("destroy", points(series, "growth_context_create_destroy",
                                 "live", destroy, where), None),
          ], notes=ctx_notes)
    with open(svg_path, "w") as f:
        f.write(svg.render())
    log("wrote %s" % svg_path)


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", action="store_true")
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--json", default=os.path.join(ROOT, "benchmarks",
                                                  "growth.json"))
    p.add_argument("--svg", default=os.path.join(ROOT, "benchmarks",
                                                 "growth.svg"))
    p.add_argument("--time", choices=("cpu", "real"), default="cpu")
    args = p.parse_args(argv)
    if args.run:
        run_benchmark(args.json, max(1, args.reps))
    context, series = load(args.json)
    if not series:
        log("no benchmark results in %s" % args.json)
        return 1
    source = os.path.relpath(os.path.abspath(args.json), ROOT)
    draw(context, series, args.svg, source, args.time)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
