// Copyright 2026 The ctxloop Authors.
//
// otlp_burst: a burst of traces through `BatchProcessor` and
// `OtlpHttpExporter` into a real collector (e.g. `tools/jaeger.sh start`),
// to measure whether the export pipeline holds a burst without dropping.
//
//   tools/jaeger.sh start
//   bazel run --config=opt //benchmarks:otlp_burst -- \
//       --traces=13000 --spans_per_trace=10 --ids_out=/tmp/burst_ids.txt
//   python3 tools/jaeger_check_traces.py --ids=/tmp/burst_ids.txt
//
// One thread ends --traces traces of --spans_per_trace spans each (plus the
// trace's own root: 11 items for 10 spans) as fast as it can, which is a
// harsher burst than any number of concurrent SSE streams makes. Then it
// flushes and prints the processor's and the exporter's counters, the time
// the burst took to reach the collector and the spans per second that did.
// --legacy uses the processor's former defaults (8,192 items, batches of 128,
// one export in flight, trigger at 70%) for a before/after comparison.
// Loopback only: the endpoint must be an http:// URL on 127.0.0.1.

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <utility>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/trace/batch_processor.h"
#include "ctxloop/trace/otlp/otlp_http_exporter.h"
#include "ctxloop/trace/tracer.h"

ABSL_FLAG(std::string, endpoint, "http://127.0.0.1:4318",
          "Collector base URL (loopback).");
ABSL_FLAG(std::string, service, "", "service.name (default: a fresh one).");
ABSL_FLAG(int, traces, 13000, "Traces in the burst.");
ABSL_FLAG(int, spans_per_trace, 10, "Spans per trace (besides the root).");
ABSL_FLAG(bool, legacy, false, "The processor's former defaults.");
ABSL_FLAG(int, max_concurrent_exports, 2, "Exports in flight.");
ABSL_FLAG(int, max_batch_size, 512, "Items per export.");
ABSL_FLAG(int, max_queue_size, 262144, "Item bound.");
ABSL_FLAG(int, max_queue_mib, 128, "Byte bound, MiB.");
ABSL_FLAG(double, export_trigger_ratio, 0.02, "Early export trigger.");
ABSL_FLAG(std::string, ids_out, "", "Write the trace ids here, one a line.");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string base = absl::GetFlag(FLAGS_endpoint);
  if (!absl::StartsWith(base, "http://127.0.0.1")) {
    std::fprintf(stderr, "otlp_burst: loopback endpoints only\n");
    return 2;
  }
  const std::string service =
      absl::GetFlag(FLAGS_service).empty()
          ? absl::StrCat("ctxloop-burst-", absl::ToUnixMillis(absl::Now()))
          : absl::GetFlag(FLAGS_service);
  ctxloop::OtlpHttpExporter::Options eo;
  eo.endpoint = ctxloop::OtlpHttpExporter::TracesUrl(base);
  eo.resource = ctxloop::otlp::Resource::WithServiceName(service);
  eo.attempt_timeout = absl::Seconds(5);
  eo.timeout = absl::Seconds(30);
  absl::StatusOr<std::unique_ptr<ctxloop::OtlpHttpExporter>> created =
      ctxloop::OtlpHttpExporter::Create(std::move(eo));
  if (!created.ok()) {
    std::fprintf(stderr, "otlp_burst: %s\n",
                 created.status().ToString().c_str());
    return 1;
  }
  std::shared_ptr<ctxloop::OtlpHttpExporter> exporter = *std::move(created);

  ctxloop::BatchProcessor::Options bo;
  bo.schedule_delay = absl::Milliseconds(500);  // As the demo server.
  if (absl::GetFlag(FLAGS_legacy)) {
    bo.max_queue_size = 8192;
    bo.max_batch_size = 128;
    bo.max_concurrent_exports = 1;
    bo.export_trigger_ratio = 0.7;
  } else {
    bo.max_queue_size = absl::GetFlag(FLAGS_max_queue_size);
    bo.max_queue_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_max_queue_mib))
                         << 20;
    bo.max_batch_size = absl::GetFlag(FLAGS_max_batch_size);
    bo.max_concurrent_exports = absl::GetFlag(FLAGS_max_concurrent_exports);
    bo.export_trigger_ratio = absl::GetFlag(FLAGS_export_trigger_ratio);
  }
  uint64_t reported = 0;
  bo.on_error = [&reported](const absl::Status& s) {
    if (++reported <= 5) std::fprintf(stderr, "%s\n", s.ToString().c_str());
  };
  absl::StatusOr<std::unique_ptr<ctxloop::BatchProcessor>> made =
      ctxloop::BatchProcessor::Create(exporter, std::move(bo));
  if (!made.ok()) {
    std::fprintf(stderr, "otlp_burst: %s\n", made.status().ToString().c_str());
    return 1;
  }
  std::shared_ptr<ctxloop::BatchProcessor> batch = *std::move(made);
  ctxloop::Tracer::Options to;
  to.processors.push_back(batch);
  ctxloop::Tracer tracer(std::move(to));

  std::ofstream ids;
  if (!absl::GetFlag(FLAGS_ids_out).empty()) {
    ids.open(absl::GetFlag(FLAGS_ids_out));
  }
  ctxloop::Loop loop;
  ctxloop::ContextHandle ctx = loop.root();
  const int traces = absl::GetFlag(FLAGS_traces);
  const int spans = absl::GetFlag(FLAGS_spans_per_trace);
  const absl::Time start = absl::Now();
  for (int t = 0; t < traces; ++t) {
    ctxloop::TraceScope run = tracer.StartTrace(ctx, "burst");
    if (ids.is_open()) ids << run.trace_id().ToHex() << "\n";
    for (int s = 0; s < spans; ++s) {
      ctxloop::SpanScope span = tracer.StartSpan(ctx, "event");
      (void)span.Finish(ctx);
    }
    (void)run.Finish(ctx);
  }
  const absl::Duration produce = absl::Now() - start;
  const absl::Status flushed = tracer.ForceFlush(absl::Seconds(120));
  const absl::Duration total = absl::Now() - start;
  const ctxloop::BatchProcessor::Stats s = batch->stats();
  const ctxloop::OtlpHttpExporter::Stats e = exporter->stats();
  const uint64_t items = static_cast<uint64_t>(traces) * (spans + 1);
  std::printf(
      "otlp_burst: service=%s items=%llu produced_in=%s flush=%s "
      "all_delivered_in=%s\n",
      service.c_str(), static_cast<unsigned long long>(items),
      absl::FormatDuration(produce).c_str(), flushed.ToString().c_str(),
      absl::FormatDuration(total).c_str());
  std::printf(
      "processor: enqueued=%llu exported=%llu dropped=%llu "
      "(byte bound %llu) failed=%llu batches=%llu peak_queued_MiB=%.1f "
      "max_exports_in_flight=%d\n",
      static_cast<unsigned long long>(s.enqueued),
      static_cast<unsigned long long>(s.exported),
      static_cast<unsigned long long>(s.dropped),
      static_cast<unsigned long long>(s.dropped_bytes_bound),
      static_cast<unsigned long long>(s.failed_items),
      static_cast<unsigned long long>(s.batches_exported),
      static_cast<double>(s.peak_queued_bytes) / (1 << 20),
      s.max_exports_in_flight);
  std::printf(
      "exporter: requests=%llu retries=%llu spans_exported=%llu "
      "rejected=%llu failed=%llu bytes_sent=%llu\n",
      static_cast<unsigned long long>(e.requests),
      static_cast<unsigned long long>(e.retries),
      static_cast<unsigned long long>(e.spans_exported),
      static_cast<unsigned long long>(e.spans_rejected),
      static_cast<unsigned long long>(e.spans_failed),
      static_cast<unsigned long long>(e.bytes_sent));
  std::printf(
      "spans_per_second_into_collector=%.0f\n",
      static_cast<double>(e.spans_exported) / absl::ToDoubleSeconds(total));
  (void)tracer.Shutdown(absl::Seconds(30));
  return s.dropped == 0 && s.failed_items == 0 && flushed.ok() ? 0 : 1;
}
