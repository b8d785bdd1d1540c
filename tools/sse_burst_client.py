#!/usr/bin/env python3
"""Opens N concurrent SSE streams against a running demo server (loopback).

  bazel-bin/examples/stream_server --port=18080 --otlp_endpoint=http://127.0.0.1:4318 &
  python3 tools/sse_burst_client.py --port=18080 --streams=4000 --ids=/tmp/ids.txt
  python3 tools/jaeger_check_traces.py --ids=/tmp/ids.txt --spans=11

Every stream is `GET /run?events=E&delay_ms=D`, all opened at once; every
tenth carries a W3C traceparent of a fresh trace, which the server must
continue (the response's traceparent names the same trace id). A stream is
whole when it answered 200 and ended with `event: done`. The trace id each
response names goes to --ids, one a line, for reading back from Jaeger.
Loopback only; at most --streams sockets at once (each stream one).
"""

import argparse
import asyncio
import os
import sys
import time


async def one(port, events, delay_ms, traceparent, sem):
    async with sem:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False, None, False
        head = (f"GET /run?events={events}&delay_ms={delay_ms} HTTP/1.1\r\n"
                f"Host: 127.0.0.1\r\nConnection: close\r\n")
        if traceparent:
            head += f"traceparent: {traceparent}\r\n"
        writer.write((head + "\r\n").encode())
        try:
            data = await asyncio.wait_for(reader.read(-1), timeout=120)
        except (asyncio.TimeoutError, OSError):
            data = b""
        writer.close()
        text = data.decode("utf-8", "replace")
        status_ok = text.startswith("HTTP/1.1 200")
        own = None
        for line in text.split("\r\n\r\n", 1)[0].split("\r\n"):
            if line.lower().startswith("traceparent:"):
                own = line.split(":", 1)[1].strip().split("-")[1]
        whole = status_ok and "event: done" in text
        continued = bool(traceparent) and own == traceparent.split("-")[1]
        return whole, own, continued


async def main_async(args):
    sem = asyncio.Semaphore(args.streams)
    tasks = []
    with_parent = 0
    for i in range(args.streams):
        tp = None
        if i % 10 == 0:
            tp = f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"
            with_parent += 1
        tasks.append(one(args.port, args.events, args.delay_ms, tp, sem))
    start = time.monotonic()
    results = await asyncio.gather(*tasks)
    elapsed = time.monotonic() - start
    whole = sum(1 for w, _, _ in results if w)
    continued = sum(1 for _, _, c in results if c)
    ids = [own for _, own, _ in results if own]
    if args.ids:
        with open(args.ids, "w") as f:
            f.write("".join(i + "\n" for i in ids))
    print(f"streams={args.streams} whole={whole} "
          f"traceparent_continued={continued}/{with_parent} "
          f"trace_ids={len(ids)} seconds={elapsed:.1f}")
    return 0 if whole == args.streams and continued == with_parent else 1


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--streams", type=int, default=1000)
    p.add_argument("--events", type=int, default=5)
    p.add_argument("--delay_ms", type=int, default=5)
    p.add_argument("--ids", default="")
    return asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
