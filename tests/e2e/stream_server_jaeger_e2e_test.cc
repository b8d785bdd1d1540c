// Copyright 2026 The ctxloop Authors.
//
// The demo against a real Jaeger v2 (tools/jaeger.sh start): a StreamServer
// whose tracer exports through BatchProcessor + OtlpHttpExporter; a request
// carrying a W3C traceparent is continued (same trace id), the response
// carries the run's own traceparent, and the whole run is read back from
// Jaeger's query API: the root span, one "agent step" and one "write event"
// per event, each exactly once, all under the root, service.name set.
//
// Skipped unless Jaeger answers; failed instead with CTXLOOP_REQUIRE_JAEGER=1.

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "ctxloop/examples/stream_server_lib.h"
#include "ctxloop/tests/e2e/sse_test_client.h"
#include "ctxloop/tests/otlp/jaeger_query.h"
#include "ctxloop/trace/batch_processor.h"
#include "ctxloop/trace/ids.h"
#include "ctxloop/trace/otlp/otlp_http_exporter.h"
#include "ctxloop/trace/propagation.h"
#include "ctxloop/trace/tracer.h"
#include "gtest/gtest.h"

namespace ctxloop {
namespace e2e {
namespace {

using examples::StreamServer;

TEST(StreamServerJaegerE2ETest, ContinuesTraceparentAndLandsInJaeger) {
  CTXLOOP_JAEGER_OR_SKIP();
  const std::string service =
      absl::StrCat("ctxloop-stream-server-e2e-", NewSpanId().ToHex());
  OtlpHttpExporter::Options o;
  o.endpoint = OtlpHttpExporter::TracesUrl(testing::JaegerOtlpBaseUrl());
  o.resource = otlp::Resource::WithServiceName(service);
  auto exporter = OtlpHttpExporter::Create(std::move(o));
  ASSERT_TRUE(exporter.ok()) << exporter.status();
  std::shared_ptr<OtlpHttpExporter> http = *std::move(exporter);
  auto batch = BatchProcessor::Create(http);
  ASSERT_TRUE(batch.ok());
  Tracer::Options to;
  to.processors.push_back(std::shared_ptr<BatchProcessor>(*std::move(batch)));
  auto tracer = std::make_unique<Tracer>(std::move(to));

  StreamServer::Options so;
  so.tracer = tracer.get();
  auto server = StreamServer::Start(std::move(so));
  ASSERT_TRUE(server.ok()) << server.status();

  // The caller's trace: a fresh id, so the test reads back only this run.
  SpanContext caller;
  caller.trace_id = NewTraceId();
  caller.span_id = NewSpanId();
  caller.trace_flags = kTraceFlagSampled;
  caller.trace_state = "ctxloop=e2e";
  const TraceContextHeaders h = InjectTraceContext(caller);
  constexpr int kEvents = 4;
  auto client = SseTestClient::Connect((*server)->port());
  ASSERT_TRUE(client.ok()) << client.status();
  ASSERT_TRUE(
      (*client)
          ->SendRequest("GET",
                        absl::StrCat("/run?events=", kEvents, "&delay_ms=1"),
                        /*keep_alive=*/false,
                        {absl::StrCat("traceparent: ", h.traceparent),
                         absl::StrCat("tracestate: ", h.tracestate)})
          .ok());
  absl::StatusOr<HttpHead> head = (*client)->ReadHead();
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_EQ(head->status, 200);
  // The response names the run's own span in the caller's trace.
  std::optional<SpanContext> own = ExtractTraceContext(
      head->header("traceparent"), head->header("tracestate"));
  ASSERT_TRUE(own.has_value()) << head->header("traceparent");
  EXPECT_EQ(own->trace_id, caller.trace_id);
  EXPECT_NE(own->span_id, caller.span_id);
  EXPECT_EQ(own->trace_state, "ctxloop=e2e");
  int events = 0;
  while (true) {
    absl::StatusOr<std::optional<SseEvent>> e = (*client)->NextEvent();
    ASSERT_TRUE(e.ok()) << e.status();
    if (!e->has_value()) break;
    if ((*e)->event == "message") ++events;
  }
  EXPECT_EQ(events, kEvents);
  (*client)->Close();

  ASSERT_TRUE((*server)->WaitForIdle(absl::Seconds(60)));
  (*server)->Shutdown();
  ASSERT_TRUE(tracer->Shutdown().ok());
  EXPECT_EQ(http->stats().spans_failed, 0u);

  const size_t want = 1 + 2 * kEvents;  // Root, agent steps, writes.
  absl::StatusOr<std::vector<testing::JaegerSpan>> spans =
      testing::WaitForJaegerSpans(caller.trace_id.ToHex(), want,
                                  absl::Seconds(60));
  ASSERT_TRUE(spans.ok()) << spans.status();
  ASSERT_EQ(spans->size(), want);
  std::map<std::string, int> per_name, per_id;
  std::string root_id;
  for (const testing::JaegerSpan& s : *spans) {
    ++per_name[s.operation];
    ++per_id[s.span_id];
    EXPECT_EQ(s.service, service);
    if (s.operation == "agent run") root_id = s.span_id;
  }
  EXPECT_EQ(per_name["agent run"], 1);
  EXPECT_EQ(per_name["agent step"], kEvents);
  EXPECT_EQ(per_name["write event"], kEvents);
  for (const auto& [id, n] : per_id) EXPECT_EQ(n, 1) << id;
  EXPECT_EQ(root_id, own->span_id.ToHex());
  for (const testing::JaegerSpan& s : *spans) {
    if (s.operation != "agent run") {
      EXPECT_EQ(s.parent_span_id, root_id) << s.operation;
    }
  }
}

}  // namespace
}  // namespace e2e
}  // namespace ctxloop
