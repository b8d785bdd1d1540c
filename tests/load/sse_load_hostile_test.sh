#!/usr/bin/env bash
# The CI-sized load run with hostile clients beside it (see sse_load.cc):
# fails unless every well-behaved request was answered whole, no connection
# held more output than the server's bound and memory stayed under 400 MiB.
# With CTXLOOP_OTLP_ENDPOINT set (e.g. http://127.0.0.1:4318 after
# tools/jaeger.sh start) the traces also go to that collector.
set -euo pipefail
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec "$1" --connections=500 --seconds=6 --events=10 --delay_ms=5 \
  --never_read=100 --slow_header=20 --tracing=both --max_rss_mb=400 \
  --otlp_endpoint="${CTXLOOP_OTLP_ENDPOINT:-}"
