// Copyright 2026 The ctxloop Authors.
//
// OtlpHttpExporter against a local evhttp server (FakeCollector): what it
// sends (URL, headers, JSON, gzip), how it answers each HTTP status
// (retry, Retry-After, permanent), timeouts, partial success, shutdown
// during a retry, the environment variables, and behind a BatchProcessor.

#include "ctxloop/trace/otlp/otlp_http_exporter.h"

#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "ctxloop/tests/otlp/fake_collector.h"
#include "ctxloop/tests/otlp/raw_http_peer.h"
#include "ctxloop/trace/batch_processor.h"
#include "ctxloop/trace/span_data.h"
#include "gtest/gtest.h"
#include "rapidjson/document.h"

namespace ctxloop {
namespace {

using testing::FakeCollector;
using testing::RawHttpPeer;
using Response = FakeCollector::Response;

SpanData MakeSpan(const std::string& name, uint64_t id = 0) {
  static uint64_t next = 1;
  SpanData s;
  s.trace_id = TraceId{0x1234, 0x5678};
  s.span_id = SpanId{id != 0 ? id : 0x1000 + next++};
  s.parent_span_id = SpanId{0x99};
  s.name = name;
  s.kind = SpanKind::kClient;
  s.start_time = absl::FromUnixSeconds(1767225600);
  s.end_time = s.start_time + absl::Milliseconds(3);
  s.attributes = {{"k", std::string("v")}};
  return s;
}

std::vector<SpanData> Batch(int n) {
  std::vector<SpanData> b;
  for (int i = 0; i < n; ++i) b.push_back(MakeSpan(absl::StrCat("s", i)));
  return b;
}

struct Env {
  std::unique_ptr<FakeCollector> collector;
  std::unique_ptr<OtlpHttpExporter> exporter;
  std::vector<absl::Status> errors;  // Only read after the exporter is idle.
};

OtlpHttpExporter::Options FastOptions(const FakeCollector& c) {
  OtlpHttpExporter::Options o;
  o.endpoint = c.traces_url();
  o.timeout = absl::Seconds(60);
  o.initial_backoff = absl::Milliseconds(10);
  o.max_backoff = absl::Milliseconds(20);
  o.max_attempts = 4;
  return o;
}

std::unique_ptr<Env> MakeEnv(
    std::function<void(OtlpHttpExporter::Options&)> tweak = nullptr) {
  auto env = std::make_unique<Env>();
  absl::StatusOr<std::unique_ptr<FakeCollector>> c = FakeCollector::Start();
  EXPECT_TRUE(c.ok()) << c.status();
  env->collector = *std::move(c);
  OtlpHttpExporter::Options o = FastOptions(*env->collector);
  Env* raw = env.get();
  o.on_error = [raw](const absl::Status& s) { raw->errors.push_back(s); };
  if (tweak) tweak(o);
  absl::StatusOr<std::unique_ptr<OtlpHttpExporter>> e =
      OtlpHttpExporter::Create(std::move(o));
  EXPECT_TRUE(e.ok()) << e.status();
  env->exporter = *std::move(e);
  return env;
}

TEST(OtlpHttpExporterTest, PostsOtlpJsonWithHeaders) {
  auto env = MakeEnv([](OtlpHttpExporter::Options& o) {
    o.headers = {{"Authorization", "Bearer t0ken"}};
    o.resource = otlp::Resource::WithServiceName("svc-a");
  });
  ASSERT_TRUE(env->exporter->Export(Batch(3)).ok());
  std::vector<FakeCollector::Request> reqs = env->collector->requests();
  ASSERT_EQ(reqs.size(), 1u);
  const FakeCollector::Request& r = reqs[0];
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.uri, "/v1/traces");
  EXPECT_EQ(r.headers.at("content-type"), "application/json");
  EXPECT_EQ(r.headers.at("authorization"), "Bearer t0ken");
  EXPECT_EQ(r.headers.count("content-encoding"), 0u);
  rapidjson::Document d;
  d.Parse(r.json.c_str());
  ASSERT_FALSE(d.HasParseError()) << r.json;
  const auto& rs = d["resourceSpans"][0];
  EXPECT_STREQ(
      rs["resource"]["attributes"][0]["value"]["stringValue"].GetString(),
      "svc-a");
  const auto& spans = rs["scopeSpans"][0]["spans"];
  ASSERT_EQ(spans.Size(), 3u);
  EXPECT_STREQ(spans[0]["name"].GetString(), "s0");
  EXPECT_EQ(spans[0]["kind"].GetInt(), 3);  // CLIENT
  OtlpHttpExporter::Stats s = env->exporter->stats();
  EXPECT_EQ(s.requests, 1u);
  EXPECT_EQ(s.spans_exported, 3u);
  EXPECT_EQ(s.batches_exported, 1u);
  EXPECT_TRUE(env->errors.empty());
}

static_assert(std::is_copy_constructible_v<OtlpHttpExporter::Options> &&
                  std::is_copy_assignable_v<OtlpHttpExporter::Options>,
              "one set of options may configure several exporters");

// The idioms the header shows: options copied (their on_error shared by the
// copies), and a host that keeps a shared_ptr to the exporter it hands to a
// BatchProcessor reads its stats() after the processor shut it down.
TEST(OtlpHttpExporterTest, CopiedOptionsAndStatsBehindABatchProcessor) {
  absl::StatusOr<std::unique_ptr<FakeCollector>> c = FakeCollector::Start();
  ASSERT_TRUE(c.ok()) << c.status();
  auto errors = std::make_shared<int>(0);
  OtlpHttpExporter::Options options = FastOptions(**c);
  options.on_error = [errors](const absl::Status&) { ++*errors; };
  const OtlpHttpExporter::Options kept = options;

  absl::StatusOr<std::unique_ptr<OtlpHttpExporter>> first =
      OtlpHttpExporter::Create(options);
  ASSERT_TRUE(first.ok()) << first.status();
  std::shared_ptr<OtlpHttpExporter> exporter = *std::move(first);
  absl::StatusOr<std::unique_ptr<BatchProcessor>> batch =
      BatchProcessor::Create(exporter);
  ASSERT_TRUE(batch.ok()) << batch.status();
  (*batch)->OnEnd(MakeSpan("kept"));
  ASSERT_TRUE((*batch)->Shutdown(absl::Seconds(30)).ok());
  EXPECT_EQ(exporter->stats().spans_exported, 1u);
  EXPECT_EQ(exporter->stats().batches_exported, 1u);
  // Shut down by the processor: refused and counted [H2].
  EXPECT_EQ(exporter->Export(Batch(1)).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(exporter->stats().spans_failed, 1u);
  EXPECT_EQ(*errors, 0);

  // The copy kept before `Create` still configures a working exporter, and
  // shares the callback's state.
  OtlpHttpExporter::Options again;
  again = kept;
  again.endpoint = "http://127.0.0.1:1/v1/traces";  // Nothing listens.
  again.max_attempts = 1;
  absl::StatusOr<std::unique_ptr<OtlpHttpExporter>> second =
      OtlpHttpExporter::Create(again);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_FALSE((*second)->Export(Batch(2)).ok());
  EXPECT_EQ((*second)->stats().spans_failed, 2u);
  EXPECT_EQ(*errors, 1);  // Reported through the copied callback.
  EXPECT_EQ(kept.endpoint, (*c)->traces_url());
}

TEST(OtlpHttpExporterTest, KeepsTheConnectionAliveUntilTheCollectorCloses) {
  auto env = MakeEnv();
  FakeCollector::Response closing;
  closing.close = true;
  // Exports 1-3 answered normally, 4 with `Connection: close`, 5 normally.
  env->collector->Script({{}, {}, {}, closing, {}});
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(env->exporter->Export(Batch(1)).ok());
  std::vector<FakeCollector::Request> reqs = env->collector->requests();
  ASSERT_EQ(reqs.size(), 5u);
  ASSERT_NE(reqs[0].peer_port, 0);
  // One TCP connection for the first four requests...
  EXPECT_EQ(reqs[1].peer_port, reqs[0].peer_port);
  EXPECT_EQ(reqs[2].peer_port, reqs[0].peer_port);
  EXPECT_EQ(reqs[3].peer_port, reqs[0].peer_port);
  // ... and a new one after the collector closed it.
  EXPECT_NE(reqs[4].peer_port, reqs[0].peer_port);
  EXPECT_EQ(env->exporter->stats().spans_exported, 5u);
}

TEST(OtlpHttpExporterTest, GzipBodyDecodes) {
  auto env = MakeEnv([](OtlpHttpExporter::Options& o) { o.gzip = true; });
  ASSERT_TRUE(env->exporter->Export(Batch(2)).ok());
  std::vector<FakeCollector::Request> reqs = env->collector->requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].headers.at("content-encoding"), "gzip");
  ASSERT_TRUE(reqs[0].gunzip_ok);
  EXPECT_NE(reqs[0].body, reqs[0].json);
  rapidjson::Document d;
  d.Parse(reqs[0].json.c_str());
  ASSERT_FALSE(d.HasParseError());
  EXPECT_EQ(d["resourceSpans"][0]["scopeSpans"][0]["spans"].Size(), 2u);
}

TEST(OtlpHttpExporterTest, RetriesExactlyOn429And502And503And504) {
  for (int code : {429, 502, 503, 504}) {
    auto env = MakeEnv();
    env->collector->Script({Response{code}, Response{200}});
    EXPECT_TRUE(env->exporter->Export(Batch(1)).ok()) << code;
    EXPECT_EQ(env->collector->request_count(), 2u) << code;
    EXPECT_EQ(env->exporter->stats().retries, 1u) << code;
    EXPECT_EQ(env->exporter->stats().spans_exported, 1u) << code;
  }
}

TEST(OtlpHttpExporterTest, OtherStatusesArePermanent) {
  for (int code : {400, 401, 403, 404, 408, 413, 500, 501}) {
    auto env = MakeEnv();
    env->collector->Script({Response{code, {}, "nope"}});
    absl::Status s = env->exporter->Export(Batch(2));
    EXPECT_FALSE(s.ok()) << code;
    EXPECT_TRUE(absl::StrContains(s.message(), absl::StrCat("HTTP ", code)))
        << s;
    EXPECT_EQ(env->collector->request_count(), 1u) << code;
    OtlpHttpExporter::Stats st = env->exporter->stats();
    EXPECT_EQ(st.spans_failed, 2u) << code;
    EXPECT_EQ(st.batches_failed, 1u) << code;
    ASSERT_EQ(env->errors.size(), 1u) << code;
  }
}

TEST(OtlpHttpExporterTest, HonoursRetryAfterSecondsOverBackoff) {
  // A backoff of 100 s would time the test out; Retry-After: 1 wins.
  auto env = MakeEnv([](OtlpHttpExporter::Options& o) {
    o.initial_backoff = absl::Seconds(100);
    o.max_backoff = absl::Seconds(100);
    o.timeout = absl::Seconds(200);
  });
  env->collector->Script(
      {Response{503, {{"Retry-After", "1"}}}, Response{200}});
  const absl::Time start = absl::Now();
  ASSERT_TRUE(env->exporter->Export(Batch(1)).ok());
  const absl::Duration took = absl::Now() - start;
  EXPECT_GE(took, absl::Milliseconds(990));
  EXPECT_LT(took, absl::Seconds(60));
  EXPECT_EQ(env->exporter->stats().retry_after_honoured, 1u);
}

TEST(OtlpHttpExporterTest, HonoursRetryAfterHttpDate) {
  auto env = MakeEnv([](OtlpHttpExporter::Options& o) {
    o.initial_backoff = absl::Seconds(100);
    o.max_backoff = absl::Seconds(100);
    o.timeout = absl::Seconds(200);
  });
  // A date in the past: retry at once.
  env->collector->Script(
      {Response{429, {{"Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT"}}},
       Response{200}});
  ASSERT_TRUE(env->exporter->Export(Batch(1)).ok());
  EXPECT_EQ(env->collector->request_count(), 2u);
  EXPECT_EQ(env->exporter->stats().retry_after_honoured, 1u);
}

TEST(OtlpHttpExporterTest, RetryAfterBeyondTheTimeoutFailsAtOnce) {
  auto env = MakeEnv(
      [](OtlpHttpExporter::Options& o) { o.timeout = absl::Seconds(20); });
  env->collector->Script({Response{503, {{"Retry-After", "3600"}}}});
  const absl::Time start = absl::Now();
  absl::Status s = env->exporter->Export(Batch(1));
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_LT(absl::Now() - start, absl::Seconds(15));
  EXPECT_EQ(env->exporter->stats().spans_failed, 1u);
}

TEST(OtlpHttpExporterTest, GivesUpAfterMaxAttempts) {
  auto env = MakeEnv();
  env->collector->SetDefault(Response{503});
  absl::Status s = env->exporter->Export(Batch(2));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_EQ(env->collector->request_count(), 4u);
  OtlpHttpExporter::Stats st = env->exporter->stats();
  EXPECT_EQ(st.requests, 4u);
  EXPECT_EQ(st.retries, 3u);
  EXPECT_EQ(st.spans_failed, 2u);
}

TEST(OtlpHttpExporterTest, ConnectionRefusedIsRetriedThenCounted) {
  // A port nobody listens on: start a collector, note its port, stop it.
  int port;
  {
    auto c = FakeCollector::Start();
    ASSERT_TRUE(c.ok());
    port = (*c)->port();
  }
  OtlpHttpExporter::Options o;
  o.endpoint = absl::StrCat("http://127.0.0.1:", port, "/v1/traces");
  o.initial_backoff = absl::Milliseconds(10);
  o.max_backoff = absl::Milliseconds(10);
  o.max_attempts = 3;
  std::vector<absl::Status> errors;
  o.on_error = [&](const absl::Status& s) { errors.push_back(s); };
  auto e = OtlpHttpExporter::Create(std::move(o));
  ASSERT_TRUE(e.ok());
  absl::Status s = (*e)->Export(Batch(5));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "connection")) << s;
  EXPECT_EQ((*e)->stats().requests, 3u);
  EXPECT_EQ((*e)->stats().spans_failed, 5u);
  EXPECT_EQ(errors.size(), 1u);
}

TEST(OtlpHttpExporterTest, SlowCollectorTimesOut) {
  auto env = MakeEnv(
      [](OtlpHttpExporter::Options& o) { o.timeout = absl::Seconds(2); });
  env->collector->SetDefault(Response{200, {}, "{}", /*hang=*/true});
  const absl::Time start = absl::Now();
  absl::Status s = env->exporter->Export(Batch(1));
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(s.code() == absl::StatusCode::kDeadlineExceeded ||
              s.code() == absl::StatusCode::kUnavailable)
      << s;
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
  EXPECT_EQ(env->exporter->stats().spans_failed, 1u);
}

TEST(OtlpHttpExporterTest, PartialSuccessIsCountedAndReported) {
  auto env = MakeEnv();
  env->collector->Script({Response{
      200,
      {},
      R"({"partialSuccess":{"rejectedSpans":"2","errorMessage":"too old"}})"}});
  ASSERT_TRUE(env->exporter->Export(Batch(5)).ok());
  OtlpHttpExporter::Stats s = env->exporter->stats();
  EXPECT_EQ(s.spans_exported, 3u);
  EXPECT_EQ(s.spans_rejected, 2u);
  ASSERT_EQ(env->errors.size(), 1u);
  EXPECT_TRUE(absl::StrContains(env->errors[0].message(), "too old"));
}

TEST(OtlpHttpExporterTest, ShutdownCancelsAnExportWaitingToRetry) {
  auto env = MakeEnv([](OtlpHttpExporter::Options& o) {
    o.initial_backoff = absl::Seconds(300);
    o.max_backoff = absl::Seconds(300);
    o.timeout = absl::Seconds(600);
  });
  env->collector->SetDefault(Response{503});
  absl::Status result;
  std::thread t([&] { result = env->exporter->Export(Batch(1)); });
  ASSERT_TRUE(env->collector->WaitForRequests(1, absl::Seconds(60)));
  const absl::Time start = absl::Now();
  ASSERT_TRUE(env->exporter->Shutdown().ok());
  t.join();
  EXPECT_LT(absl::Now() - start, absl::Seconds(60));
  EXPECT_EQ(result.code(), absl::StatusCode::kCancelled) << result;
  EXPECT_EQ(env->exporter->stats().spans_failed, 1u);
  EXPECT_EQ(env->exporter->Export(Batch(1)).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(OtlpHttpExporterTest, ShutdownWithARequestInFlightFreesIt) {
  auto env = MakeEnv();
  env->collector->SetDefault(Response{200, {}, "{}", /*hang=*/true});
  absl::Status result;
  std::thread t([&] { result = env->exporter->Export(Batch(1)); });
  ASSERT_TRUE(env->collector->WaitForRequests(1, absl::Seconds(60)));
  ASSERT_TRUE(env->exporter->Shutdown().ok());
  t.join();
  EXPECT_EQ(result.code(), absl::StatusCode::kCancelled) << result;
}

TEST(OtlpHttpExporterTest, BadEndpointsAreRejected) {
  for (const char* url : {"", "not a url", "https://127.0.0.1:4318/v1/traces",
                          "http:///v1/traces"}) {
    OtlpHttpExporter::Options o;
    o.endpoint = url;
    EXPECT_EQ(OtlpHttpExporter::Create(std::move(o)).status().code(),
              absl::StatusCode::kInvalidArgument)
        << url;
  }
}

TEST(OtlpHttpExporterTest, EnvironmentVariables) {
  setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/", 1);
  setenv("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s%20ecret, x-team = blue", 1);
  setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2500", 1);
  setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip", 1);
  setenv("OTEL_SERVICE_NAME", "checkout", 1);
  setenv("OTEL_RESOURCE_ATTRIBUTES",
         "deployment.environment=prod,service.name=x", 1);
  absl::StatusOr<OtlpHttpExporter::Options> o =
      OtlpHttpExporter::OptionsFromEnvironment();
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->endpoint, "http://collector:4318/v1/traces");
  ASSERT_EQ(o->headers.size(), 2u);
  EXPECT_EQ(o->headers[0].first, "api-key");
  EXPECT_EQ(o->headers[0].second, "s ecret");
  EXPECT_EQ(o->headers[1].first, "x-team");
  EXPECT_EQ(o->headers[1].second, "blue");
  EXPECT_EQ(o->timeout, absl::Milliseconds(2500));
  EXPECT_TRUE(o->gzip);
  ASSERT_EQ(o->resource.attributes.size(), 2u);
  EXPECT_EQ(o->resource.attributes[0].first, "service.name");
  EXPECT_EQ(std::get<std::string>(o->resource.attributes[0].second),
            "checkout");
  EXPECT_EQ(o->resource.attributes[1].first, "deployment.environment");

  setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://other:1234/custom", 1);
  o = OtlpHttpExporter::OptionsFromEnvironment();
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->endpoint, "http://other:1234/custom");  // As is.

  setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "soon", 1);
  o = OtlpHttpExporter::OptionsFromEnvironment();
  EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(
      absl::StrContains(o.status().message(), "OTEL_EXPORTER_OTLP_TIMEOUT"));
  for (const char* v :
       {"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_COMPRESSION",
        "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"}) {
    unsetenv(v);
  }
}

TEST(OtlpHttpExporterTest, BehindABatchProcessor) {
  auto env = MakeEnv();
  env->collector->Script({Response{503, {{"Retry-After", "0"}}}});
  std::shared_ptr<OtlpHttpExporter> exporter = std::move(env->exporter);
  BatchProcessor::Options bo;
  bo.schedule_delay = absl::InfiniteDuration();
  bo.max_batch_size = 4;
  auto p = BatchProcessor::Create(exporter, std::move(bo));
  ASSERT_TRUE(p.ok());
  for (int i = 0; i < 10; ++i) (*p)->OnEnd(MakeSpan(absl::StrCat("b", i)));
  ASSERT_TRUE((*p)->Shutdown(absl::Seconds(60)).ok());
  EXPECT_EQ((*p)->stats().exported, 10u);
  EXPECT_EQ(exporter->stats().spans_exported, 10u);
  EXPECT_EQ(env->collector->request_count(), 4u);  // 3 batches + 1 retry.
}

// A collector that is down at shutdown: BatchProcessor::Shutdown returns
// within its timeout (the exporter is still retrying), the exporter's own
// Shutdown cancels the retry [H1], and every span ends up counted as failed.
TEST(OtlpHttpExporterTest, ShutdownWithTheCollectorDownIsBoundedAndCounted) {
  int port;
  {
    auto c = FakeCollector::Start();
    ASSERT_TRUE(c.ok());
    port = (*c)->port();
  }
  OtlpHttpExporter::Options o;
  o.endpoint = absl::StrCat("http://127.0.0.1:", port, "/v1/traces");
  o.timeout = absl::Seconds(600);
  o.max_attempts = 1000000;
  o.initial_backoff = absl::Milliseconds(20);
  o.max_backoff = absl::Milliseconds(50);
  o.on_error = [](const absl::Status&) {};
  auto e = OtlpHttpExporter::Create(std::move(o));
  ASSERT_TRUE(e.ok());
  std::shared_ptr<OtlpHttpExporter> exporter = *std::move(e);
  BatchProcessor::Options bo;
  bo.schedule_delay = absl::Milliseconds(1);
  bo.max_batch_size = 4;
  bo.on_error = [](const absl::Status&) {};
  auto p = BatchProcessor::Create(exporter, std::move(bo));
  ASSERT_TRUE(p.ok());
  for (int i = 0; i < 10; ++i) (*p)->OnEnd(MakeSpan(absl::StrCat("d", i)));
  // The worker is inside a retrying Export once two attempts were made.
  const absl::Time guard = absl::Now() + absl::Seconds(60);
  while (exporter->stats().requests < 2 && absl::Now() < guard) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_GE(exporter->stats().requests, 2u);

  const absl::Time start = absl::Now();
  absl::Status s = (*p)->Shutdown(absl::Milliseconds(300));
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
  ASSERT_TRUE(exporter->Shutdown().ok());  // Cancels the retrying Export.
  s = (*p)->Shutdown(absl::Seconds(60));
  EXPECT_FALSE(s.ok());
  BatchProcessor::Stats st = (*p)->stats();
  EXPECT_EQ(st.exported, 0u);
  EXPECT_EQ(st.failed_items, 10u);
  EXPECT_EQ(exporter->stats().spans_failed, 10u);
  EXPECT_GT(exporter->stats().retries, 0u);
}

// --- Hostile collectors: what a response may cost (bytes, time) -----------

// An exporter to `peer` making one attempt per Export.
std::unique_ptr<OtlpHttpExporter> OneAttempt(
    const RawHttpPeer& peer, std::vector<absl::Status>* errors,
    std::function<void(OtlpHttpExporter::Options&)> tweak = nullptr) {
  OtlpHttpExporter::Options o;
  o.endpoint = peer.traces_url();
  o.timeout = absl::Seconds(20);
  o.max_attempts = 1;
  o.on_error = [errors](const absl::Status& s) { errors->push_back(s); };
  if (tweak) tweak(o);
  auto e = OtlpHttpExporter::Create(std::move(o));
  EXPECT_TRUE(e.ok()) << e.status();
  return *std::move(e);
}

// What an attempt may read beyond the caps: libevent's read granularity and
// the input buffer's slack for an unterminated chunk-size line.
constexpr uint64_t kReadSlack = 128 * 1024;

struct Flood {
  const char* name;
  std::string head;
  std::string repeat;
};

// Each response would grow without end: the attempt ends at once, refused
// and counted, having read about the cap; the connection is closed.
TEST(OtlpHttpExporterTest, ResponsesOverTheCapsAreRefusedAndCounted) {
  std::string chunk = "400\r\n" + std::string(1024, 'c') + "\r\n";
  const std::vector<Flood> floods = {
      {"content-length",
       "HTTP/1.1 200 OK\r\nContent-Length: 2000000000\r\n\r\n", "x"},
      {"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
       chunk},
      {"until-close", "HTTP/1.1 200 OK\r\n\r\n", "u"},
      {"header-line", "HTTP/1.1 200 OK\r\nX-Endless: ", "h"},
      {"header-count", "HTTP/1.1 200 OK\r\n", "X-Many: 1\r\n"},
      {"status-line", "HTTP/1.1 200 ", "O"},
  };
  for (const Flood& f : floods) {
    RawHttpPeer::Script script;
    script.head = f.head;
    script.repeat = f.repeat;
    auto peer = RawHttpPeer::Start(script);
    ASSERT_TRUE(peer.ok());
    std::vector<absl::Status> errors;
    auto exporter = OneAttempt(**peer, &errors);
    const absl::Time start = absl::Now();
    absl::Status s = exporter->Export(Batch(4));
    const absl::Duration took = absl::Now() - start;
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << f.name << ": " << s;
    EXPECT_TRUE(absl::StrContains(s.message(), "over the cap")) << s;
    EXPECT_LT(took, absl::Seconds(5)) << f.name;
    OtlpHttpExporter::Stats st = exporter->stats();
    EXPECT_EQ(st.responses_too_large, 1u) << f.name;
    EXPECT_EQ(st.attempts_timed_out, 0u) << f.name;
    EXPECT_EQ(st.spans_failed, 4u) << f.name;
    EXPECT_LE(st.response_bytes_read, 16 * 1024 + 64 * 1024 + kReadSlack)
        << f.name;
    // The peer could send only what the exporter read plus socket buffers.
    EXPECT_TRUE((*peer)->WaitForOpenConnections(0, absl::Seconds(10)))
        << f.name;
    EXPECT_LT((*peer)->bytes_sent(), uint64_t{16} << 20) << f.name;
    EXPECT_EQ(errors.size(), 1u) << f.name;
  }
}

// An over-cap answer is retried like a connection error.
TEST(OtlpHttpExporterTest, ResponseOverTheCapIsRetried) {
  RawHttpPeer::Script script;
  script.head = "HTTP/1.1 503 Busy\r\nContent-Length: 100000\r\n\r\n";
  script.repeat = "x";
  auto peer = RawHttpPeer::Start(script);
  ASSERT_TRUE(peer.ok());
  std::vector<absl::Status> errors;
  auto exporter = OneAttempt(**peer, &errors, [](OtlpHttpExporter::Options& o) {
    o.max_attempts = 3;
    o.initial_backoff = absl::Milliseconds(1);
    o.max_backoff = absl::Milliseconds(1);
    o.max_response_body = 1000;
  });
  absl::Status s = exporter->Export(Batch(1));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "HTTP 503")) << s;
  EXPECT_EQ(exporter->stats().requests, 3u);
  EXPECT_EQ(exporter->stats().responses_too_large, 3u);
  EXPECT_TRUE((*peer)->WaitForOpenConnections(0, absl::Seconds(10)));
}

TEST(OtlpHttpExporterTest, ResponseCapsMustBePositive) {
  for (int which = 0; which < 2; ++which) {
    OtlpHttpExporter::Options o;
    o.endpoint = "http://127.0.0.1:1/v1/traces";
    (which == 0 ? o.max_response_body : o.max_response_headers) = 0;
    EXPECT_EQ(OtlpHttpExporter::Create(std::move(o)).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
}

// A collector that trickles bytes (each gap far shorter than the timeout):
// the attempt still ends at its deadline, and its connection is closed.
TEST(OtlpHttpExporterTest, AttemptTimeoutIsADeadlineNotInactivity) {
  const std::vector<Flood> trickles = {
      {"body", "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", "x"},
      {"header-line", "HTTP/1.1 200 OK\r\nX-Slow: ", "h"},
  };
  for (const Flood& f : trickles) {
    RawHttpPeer::Script script;
    script.head = f.head;
    script.repeat = f.repeat;
    script.bytes_per_tick = 1;
    script.tick = absl::Milliseconds(20);
    auto peer = RawHttpPeer::Start(script);
    ASSERT_TRUE(peer.ok());
    std::vector<absl::Status> errors;
    auto exporter =
        OneAttempt(**peer, &errors, [](OtlpHttpExporter::Options& o) {
          o.attempt_timeout = absl::Milliseconds(300);
        });
    const absl::Time start = absl::Now();
    absl::Status s = exporter->Export(Batch(1));
    const absl::Duration took = absl::Now() - start;
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << f.name << ": " << s;
    EXPECT_TRUE(absl::StrContains(s.message(), "deadline")) << s;
    EXPECT_GE(took, absl::Milliseconds(290)) << f.name;
    EXPECT_LT(took, absl::Milliseconds(300 + 700)) << f.name;
    EXPECT_EQ(exporter->stats().attempts_timed_out, 1u) << f.name;
    // The abandoned attempt's connection is closed, not left open.
    EXPECT_TRUE((*peer)->WaitForOpenConnections(0, absl::Seconds(5)))
        << f.name << ": " << (*peer)->open_connections() << " open";
  }
}

// The Export timeout bounds all attempts; every timed-out attempt's
// connection is closed (none leaks per export).
TEST(OtlpHttpExporterTest, ExportTimeoutHoldsAgainstATrickleAndLeaksNothing) {
  RawHttpPeer::Script script;
  script.head = "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n";
  script.repeat = "x";
  script.bytes_per_tick = 1;
  script.tick = absl::Milliseconds(20);
  auto peer = RawHttpPeer::Start(script);
  ASSERT_TRUE(peer.ok());
  std::vector<absl::Status> errors;
  auto exporter = OneAttempt(**peer, &errors, [](OtlpHttpExporter::Options& o) {
    o.timeout = absl::Milliseconds(300);
    o.max_attempts = 100;
    o.initial_backoff = absl::Milliseconds(1);
    o.max_backoff = absl::Milliseconds(1);
  });
  for (int i = 0; i < 5; ++i) {
    const absl::Time start = absl::Now();
    absl::Status s = exporter->Export(Batch(1));
    const absl::Duration took = absl::Now() - start;
    EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
    EXPECT_LT(took, absl::Milliseconds(300 + 700)) << i;
  }
  EXPECT_EQ(exporter->stats().attempts_timed_out, 5u);
  EXPECT_EQ((*peer)->accepted(), 5u);
  EXPECT_TRUE((*peer)->WaitForOpenConnections(0, absl::Seconds(5)))
      << (*peer)->open_connections() << " open";
}

// A chunk-size line that never ends is the one thing libevent buffers
// without a cap: the input buffer stops growing at the caps plus slack, and
// the deadline ends the attempt.
TEST(OtlpHttpExporterTest, EndlessChunkSizeLineIsBoundedAndEndsAtTheDeadline) {
  RawHttpPeer::Script script;
  script.head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  script.repeat = "0";
  auto peer = RawHttpPeer::Start(script);
  ASSERT_TRUE(peer.ok());
  std::vector<absl::Status> errors;
  auto exporter = OneAttempt(**peer, &errors, [](OtlpHttpExporter::Options& o) {
    o.attempt_timeout = absl::Milliseconds(300);
  });
  const absl::Time start = absl::Now();
  absl::Status s = exporter->Export(Batch(1));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  OtlpHttpExporter::Stats st = exporter->stats();
  EXPECT_EQ(st.attempts_timed_out, 1u);
  EXPECT_LE(st.response_bytes_read, 16 * 1024 + 64 * 1024 + kReadSlack);
  EXPECT_TRUE((*peer)->WaitForOpenConnections(0, absl::Seconds(5)));
  EXPECT_LT((*peer)->bytes_sent(), uint64_t{16} << 20);
}

// 64 KiB of '[' as a 2xx body (65,536 levels for a recursive parser): the
// batch is delivered, the body counted as unparsable and reported.
TEST(OtlpHttpExporterTest, DeeplyNestedPartialSuccessIsUnparsableNotACrash) {
  for (size_t n : {size_t{64} * 1024, size_t{1024} * 1024}) {
    auto env = MakeEnv([n](OtlpHttpExporter::Options& o) {
      o.max_response_body = 2 * n;  // Let the body reach the parser.
    });
    env->collector->Script({Response{200, {}, std::string(n, '[')}});
    ASSERT_TRUE(env->exporter->Export(Batch(3)).ok()) << n;
    OtlpHttpExporter::Stats s = env->exporter->stats();
    EXPECT_EQ(s.spans_exported, 3u);
    EXPECT_EQ(s.spans_rejected, 0u);
    EXPECT_EQ(s.responses_unparsable, 1u);
    ASSERT_EQ(env->errors.size(), 1u);
    EXPECT_TRUE(absl::StrContains(env->errors[0].message(), "not an Export"))
        << env->errors[0];
  }
  // With the default cap, 1 MiB of '[' is refused before any parsing.
  auto env = MakeEnv([](OtlpHttpExporter::Options& o) { o.max_attempts = 1; });
  env->collector->Script({Response{200, {}, std::string(1 << 20, '[')}});
  EXPECT_EQ(env->exporter->Export(Batch(1)).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(env->exporter->stats().responses_too_large, 1u);
}

// A collector that resets the connection while the request is being
// written: the attempt fails (EPIPE / ECONNRESET on the exporter's loop
// thread), and the host process is not killed by SIGPIPE.
TEST(OtlpHttpExporterTest, CollectorResetMidRequestIsAConnectionError) {
  for (bool at_once : {false, true}) {
    RawHttpPeer::Script script;
    script.abort_after_request_bytes = 1;
    script.close_on_accept = at_once;
    auto peer = RawHttpPeer::Start(script);
    ASSERT_TRUE(peer.ok());
    std::vector<absl::Status> errors;
    auto exporter =
        OneAttempt(**peer, &errors, [](OtlpHttpExporter::Options& o) {
          o.max_attempts = 3;
          o.initial_backoff = absl::Milliseconds(1);
          o.max_backoff = absl::Milliseconds(1);
        });
    // About 1.5 MiB of request body: many writes after the reset.
    std::vector<SpanData> big;
    for (int i = 0; i < 5000; ++i) {
      big.push_back(MakeSpan(absl::StrCat("big", i, std::string(200, 'n'))));
    }
    absl::Status s = exporter->Export(big);
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
    EXPECT_EQ(exporter->stats().requests, 3u);
    EXPECT_EQ(exporter->stats().spans_failed, 5000u);
  }
}

}  // namespace
}  // namespace ctxloop
