#!/usr/bin/env python3
"""Reads traces back from a loopback Jaeger's query API and counts them.

  python3 tools/jaeger_check_traces.py --ids=/tmp/burst_ids.txt --spans=11

For every trace id in --ids (32 hex digits a line) it asks
http://127.0.0.1:16686/api/traces/<id> and prints how many traces are
complete (exactly --spans spans), partial (fewer) or absent. Exit 0 only if
every trace is complete. Loopback only.
"""

import argparse
import concurrent.futures
import json
import sys
import urllib.error
import urllib.request

QUERY = "http://127.0.0.1:16686/api/traces/"


def span_count(trace_id):
    try:
        with urllib.request.urlopen(QUERY + trace_id, timeout=10) as r:
            body = json.load(r)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return 0
        raise
    data = body.get("data") or []
    return sum(len(t.get("spans", [])) for t in data)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ids", required=True)
    parser.add_argument("--spans", type=int, default=11)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    with open(args.ids) as f:
        ids = [line.strip() for line in f if line.strip()]
    complete = partial = absent = over = 0
    spans = 0
    with concurrent.futures.ThreadPoolExecutor(args.workers) as pool:
        for n in pool.map(span_count, ids):
            spans += n
            if n == args.spans:
                complete += 1
            elif n == 0:
                absent += 1
            elif n < args.spans:
                partial += 1
            else:
                over += 1
    print(f"traces={len(ids)} complete={complete} partial={partial} "
          f"absent={absent} more_spans_than_expected={over} spans={spans}")
    return 0 if complete == len(ids) else 1


if __name__ == "__main__":
    sys.exit(main())
