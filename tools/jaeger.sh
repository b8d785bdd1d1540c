#!/usr/bin/env bash
# Starts or stops a Jaeger v2 all-in-one (built by tools/install_jaeger.sh)
# on loopback with in-memory storage, for ctxloop's OTLP/HTTP tests:
#
#   tools/jaeger.sh start    OTLP/HTTP on 127.0.0.1:4318, query API and UI on
#                            127.0.0.1:16686; returns once both answer
#   tools/jaeger.sh stop     stops the instance this script started
#   tools/jaeger.sh status   exit 0 if it answers
#
# State (pid, log, config) lives in ${CTXLOOP_JAEGER_DIR:-/tmp/ctxloop-jaeger}.
# `start` is a no-op if an instance started by this script is running.
set -euo pipefail

BIN_DIR="${CTXLOOP_BIN:-$HOME/.cache/ctxloop/bin}"
JAEGER="$BIN_DIR/jaeger"
STATE="${CTXLOOP_JAEGER_DIR:-/tmp/ctxloop-jaeger}"
PIDFILE="$STATE/jaeger.pid"
LOG="$STATE/jaeger.log"
CONFIG="$STATE/config.yaml"
HERE="$(cd "$(dirname "$0")" && pwd)"

answers() {
  # The OTLP/HTTP receiver answers a GET on /v1/traces with 405; the query
  # service answers /api/services with 200.
  curl -s -o /dev/null --max-time 2 "http://127.0.0.1:16686/api/services" &&
    curl -s -o /dev/null --max-time 2 "http://127.0.0.1:4318/v1/traces"
}

running() {
  [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

write_config() {
  # Jaeger's own all-in-one defaults, bound to loopback only.
  cat >"$CONFIG" <<'YAML'
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:13133
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:16686
    grpc:
      endpoint: 127.0.0.1:16685
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:4317
      http:
        endpoint: 127.0.0.1:4318
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
YAML
}

start() {
  mkdir -p "$STATE"
  if running && answers; then
    echo "jaeger: already running (pid $(cat "$PIDFILE"))"
    return 0
  fi
  if [ ! -x "$JAEGER" ]; then
    bash "$HERE/install_jaeger.sh"
  fi
  write_config
  nohup "$JAEGER" --config "$CONFIG" >"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 120); do
    if answers; then
      echo "jaeger: ready (pid $(cat "$PIDFILE"); OTLP/HTTP 127.0.0.1:4318, query 127.0.0.1:16686)"
      return 0
    fi
    if ! running; then
      echo "jaeger: exited during start; log:" >&2
      tail -n 30 "$LOG" >&2
      return 1
    fi
    sleep 0.5
  done
  echo "jaeger: not ready after 60 s; log: $LOG" >&2
  return 1
}

stop() {
  if ! running; then
    rm -f "$PIDFILE"
    echo "jaeger: not running"
    return 0
  fi
  local pid
  pid="$(cat "$PIDFILE")"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 40); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.25
  done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$PIDFILE"
  echo "jaeger: stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) answers ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
