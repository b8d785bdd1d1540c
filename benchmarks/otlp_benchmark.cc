// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/benchmarks/otlp_benchmark.cc
// -----------------------------------------------------------------------------
//
// What sending traces to a collector costs, against a local sink (an evhttp
// server on its own loop thread that answers every POST with 200 "{}", so
// the collector's own work is not measured). Groups:
//
//   span_batch_otlp_http  StartSpan + Finish on a loop with BatchProcessor +
//                         OtlpHttpExporter behind it (the producer's cost;
//                         the worker and the exporter's loop run on the
//                         other CPU). Compare with span_batch in
//                         trace_benchmark (a discarding exporter).
//   otlp_http_export      OtlpHttpExporter::Export of a batch of 512 spans,
//                         synchronously: OTLP/JSON encoding, one POST over
//                         loopback and its answer; per span. With gzip as a
//                         second figure.
//
// Each benchmark checks that every span was accepted by the sink (or, for
// the batch one, exported or counted as dropped).

#include <event2/buffer.h>
#include <event2/http.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "ctxloop/benchmarks/bench_util.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/loop/loop_thread.h"
#include "ctxloop/trace/batch_processor.h"
#include "ctxloop/trace/otlp/otlp_http_exporter.h"
#include "ctxloop/trace/tracer.h"

namespace {

using ctxloop_bench::CheckCount;
using ctxloop_bench::ReportItems;

constexpr int kBatch = 1000;

// An HTTP server on 127.0.0.1 that answers every request with 200 "{}".
class Sink {
 public:
  Sink() {
    (void)loop_.Invoke([this](ctxloop::Loop& loop) {
      http_ = evhttp_new(loop.base());
      evhttp_bound_socket* s =
          evhttp_bind_socket_with_handle(http_, "127.0.0.1", 0);
      sockaddr_in addr{};
      socklen_t len = sizeof(addr);
      getsockname(evhttp_bound_socket_get_fd(s),
                  reinterpret_cast<sockaddr*>(&addr), &len);
      port_ = ntohs(addr.sin_port);
      evhttp_set_gencb(
          http_,
          [](evhttp_request* req, void* arg) {
            static_cast<Sink*>(arg)->requests.fetch_add(
                1, std::memory_order_relaxed);
            evbuffer* body = evbuffer_new();
            evbuffer_add(body, "{}", 2);
            evhttp_send_reply(req, 200, "OK", body);
            evbuffer_free(body);
          },
          this);
    });
  }
  ~Sink() {
    (void)loop_.Invoke([this](ctxloop::Loop&) { evhttp_free(http_); });
  }
  std::string url() const {
    return absl::StrCat("http://127.0.0.1:", port_, "/v1/traces");
  }
  std::atomic<int64_t> requests{0};

 private:
  ctxloop::LoopThread loop_;
  evhttp* http_ = nullptr;
  int port_ = 0;
};

std::shared_ptr<ctxloop::OtlpHttpExporter> MakeExporter(const Sink& sink,
                                                        bool gzip) {
  ctxloop::OtlpHttpExporter::Options o;
  o.endpoint = sink.url();
  o.gzip = gzip;
  o.on_error = [](const absl::Status&) {};
  return *ctxloop::OtlpHttpExporter::Create(std::move(o));
}

void BM_Ctxloop_SpanStartFinish_BatchOtlpHttp(benchmark::State& state) {
  Sink sink;
  auto exporter = MakeExporter(sink, /*gzip=*/false);
  ctxloop::Loop loop;
  ctxloop::BatchProcessor::Options options;
  options.max_queue_size = 1 << 16;
  options.max_batch_size = 512;
  options.on_error = [](const absl::Status&) {};
  std::shared_ptr<ctxloop::BatchProcessor> batch =
      *ctxloop::BatchProcessor::Create(exporter, std::move(options));
  ctxloop::Tracer::Options to;
  to.processors.push_back(batch);
  ctxloop::Tracer tracer(std::move(to));
  ctxloop::ContextHandle ctx = loop.root();
  ctxloop::TraceScope run = tracer.StartTrace(ctx, "bench");
  for (auto _ : state) {
    for (int i = 0; i < kBatch; ++i) {
      ctxloop::SpanScope span = tracer.StartSpan(ctx, "span");
      (void)span.Finish(ctx);
    }
  }
  ReportItems(state, kBatch);
  (void)run.Finish(ctx);
  (void)tracer.ForceFlush(absl::Seconds(60));
  const ctxloop::BatchProcessor::Stats s = batch->stats();
  CheckCount(state, "spans accounted for",
             static_cast<int64_t>(s.exported + s.dropped + s.failed_items),
             static_cast<int64_t>(state.iterations()) * kBatch + 1);
  state.counters["dropped"] = static_cast<double>(s.dropped);
  state.counters["failed"] = static_cast<double>(s.failed_items);
  state.counters["requests"] = static_cast<double>(sink.requests.load());
  state.SetLabel("span_batch_otlp_http");
}

std::vector<ctxloop::SpanData> Spans(int n) {
  std::vector<ctxloop::SpanData> v;
  const absl::Time t0 = absl::Now();
  for (int i = 0; i < n; ++i) {
    ctxloop::SpanData s;
    s.trace_id = ctxloop::TraceId{1, 2};
    s.span_id = ctxloop::SpanId{static_cast<uint64_t>(i + 1)};
    s.parent_span_id = ctxloop::SpanId{1000000};
    s.name = "agent step";
    s.start_time = t0;
    s.end_time = t0 + absl::Microseconds(i);
    s.attributes = {{"step", int64_t{i}}, {"model", std::string("m1")}};
    v.push_back(std::move(s));
  }
  return v;
}

void ExportBatch(benchmark::State& state, bool gzip) {
  Sink sink;
  auto exporter = MakeExporter(sink, gzip);
  constexpr int kSpans = 512;
  const std::vector<ctxloop::SpanData> batch = Spans(kSpans);
  for (auto _ : state) {
    absl::Status s = exporter->Export(batch);
    if (!s.ok()) {
      state.SkipWithError(s.ToString().c_str());
      break;
    }
  }
  ReportItems(state, kSpans);
  const ctxloop::OtlpHttpExporter::Stats st = exporter->stats();
  CheckCount(state, "spans exported", static_cast<int64_t>(st.spans_exported),
             static_cast<int64_t>(state.iterations()) * kSpans);
  state.counters["bytes_per_span"] =
      st.spans_exported == 0 ? 0.0
                             : static_cast<double>(st.bytes_sent) /
                                   static_cast<double>(st.spans_exported);
  state.SetLabel("otlp_http_export");
}

void BM_Ctxloop_OtlpHttpExport512(benchmark::State& state) {
  ExportBatch(state, /*gzip=*/false);
}
void BM_Ctxloop_OtlpHttpExport512Gzip(benchmark::State& state) {
  ExportBatch(state, /*gzip=*/true);
}

}  // namespace

BENCHMARK(BM_Ctxloop_SpanStartFinish_BatchOtlpHttp)->UseRealTime();
BENCHMARK(BM_Ctxloop_OtlpHttpExport512)->UseRealTime();
BENCHMARK(BM_Ctxloop_OtlpHttpExport512Gzip)->UseRealTime();
