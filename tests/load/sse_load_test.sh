#!/usr/bin/env bash
# The CI-sized load run (see sse_load.cc): fails unless every request was
# answered whole, every trace exported exactly once and memory stayed flat.
set -euo pipefail
exec "$1" --connections=300 --seconds=4.5 --events=10 --delay_ms=5 --tracing=both
