// Copyright 2026 The ctxloop Authors.
//
// The OTLP/JSON encoding of the whole data model, parsed back with
// RapidJSON.

#include "ctxloop/trace/otlp/otlp_json.h"

#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "rapidjson/document.h"

namespace ctxloop {
namespace {

using rapidjson::Value;

rapidjson::Document Parse(const std::string& s) {
  rapidjson::Document d;
  d.Parse(s.c_str());
  EXPECT_FALSE(d.HasParseError()) << s;
  return d;
}

const Value* Attr(const Value& span, const char* key) {
  if (!span.HasMember("attributes")) return nullptr;
  for (const Value& kv : span["attributes"].GetArray()) {
    if (std::string(kv["key"].GetString()) == key) return &kv["value"];
  }
  return nullptr;
}

const absl::Time kT0 = absl::FromUnixSeconds(1767225600);

SpanData Trace() {
  SpanData t;
  t.trace_id = TraceId{0x0af7651916cd43dd, 0x8448eb211c80319c};
  t.span_id = SpanId{0x1111111111111111};
  t.parent_span_id = SpanId{0xb7ad6b7169203331};
  t.parent_is_remote = true;
  t.trace_flags = 0x01;
  t.trace_state = "congo=t61rcWkgMzE";
  t.name = "handle request";
  t.kind = SpanKind::kServer;
  t.status = {StatusCode::kOk, "ignored for ok"};
  t.attributes = {{"http.route", std::string("/run")}};
  t.scope = {"ctxloop.server", "1.2"};
  t.start_time = kT0;
  t.end_time = kT0 + absl::Milliseconds(50);
  return t;
}

SpanData Span() {
  SpanData s;
  s.trace_id = Trace().trace_id;
  s.span_id = SpanId{0x2222222222222222};
  s.parent_span_id = Trace().span_id;
  s.name = "call model";
  s.kind = SpanKind::kClient;
  s.status = {StatusCode::kError, "upstream 503"};
  s.scope = {"ctxloop.agent", ""};
  s.attributes = {{"tags", std::vector<std::string>{"a", "b"}},
                  {"sizes", std::vector<int64_t>{1, 9000000000}},
                  {"ratios", std::vector<double>{0.5}},
                  {"flags", std::vector<bool>{true, false}},
                  {"big", int64_t{-9000000000}}};
  s.dropped_attributes_count = 3;
  SpanEvent e;
  e.name = "retry";
  e.time = kT0 + absl::Milliseconds(10);
  e.attributes = {{"attempt", int64_t{2}}};
  e.dropped_attributes_count = 1;
  s.events = {e};
  s.dropped_events_count = 4;
  SpanLink l;
  l.context.trace_id = TraceId{1, 2};
  l.context.span_id = SpanId{3};
  l.context.trace_flags = 1;
  l.context.trace_state = "k=v";
  l.context.remote = true;
  l.attributes = {{"why", std::string("batch")}};
  s.links = {l};
  s.dropped_links_count = 5;
  s.start_time = kT0 + absl::Milliseconds(1);
  s.end_time = kT0 + absl::Milliseconds(20);
  return s;
}

TEST(OtlpJsonTest, EncodesTheWholeDataModel) {
  otlp::Resource resource = otlp::Resource::WithServiceName("svc");
  resource.attributes.emplace_back("deployment.environment",
                                   std::string("test"));
  std::vector<SpanData> batch = {Span(), Trace()};
  size_t skipped = 99;
  const std::string json = otlp::EncodeTraceRequest(batch, resource, &skipped);
  EXPECT_EQ(skipped, 0u);
  rapidjson::Document d = Parse(json);
  const Value& rs = d["resourceSpans"][0];
  EXPECT_STREQ(rs["resource"]["attributes"][0]["key"].GetString(),
               "service.name");
  EXPECT_STREQ(
      rs["resource"]["attributes"][1]["value"]["stringValue"].GetString(),
      "test");
  // One scopeSpans per scope, in order of first appearance.
  ASSERT_EQ(rs["scopeSpans"].Size(), 2u);
  const Value& agent = rs["scopeSpans"][0];
  EXPECT_STREQ(agent["scope"]["name"].GetString(), "ctxloop.agent");
  EXPECT_FALSE(agent["scope"].HasMember("version"));
  const Value& server = rs["scopeSpans"][1];
  EXPECT_STREQ(server["scope"]["version"].GetString(), "1.2");

  const Value& s = agent["spans"][0];
  EXPECT_STREQ(s["traceId"].GetString(), "0af7651916cd43dd8448eb211c80319c");
  EXPECT_STREQ(s["spanId"].GetString(), "2222222222222222");
  EXPECT_STREQ(s["parentSpanId"].GetString(), "1111111111111111");
  EXPECT_EQ(s["kind"].GetInt(), 3);
  EXPECT_EQ(s["flags"].GetUint(), 0x101u);  // Sampled, parent not remote.
  EXPECT_STREQ(s["startTimeUnixNano"].GetString(), "1767225600001000000");
  EXPECT_EQ(s["status"]["code"].GetInt(), 2);
  EXPECT_STREQ(s["status"]["message"].GetString(), "upstream 503");
  EXPECT_EQ(s["droppedAttributesCount"].GetUint(), 3u);
  EXPECT_EQ(s["droppedEventsCount"].GetUint(), 4u);
  EXPECT_EQ(s["droppedLinksCount"].GetUint(), 5u);
  const Value* tags = Attr(s, "tags");
  ASSERT_NE(tags, nullptr);
  EXPECT_STREQ((*tags)["arrayValue"]["values"][1]["stringValue"].GetString(),
               "b");
  EXPECT_STREQ(
      (*Attr(s, "sizes"))["arrayValue"]["values"][1]["intValue"].GetString(),
      "9000000000");
  EXPECT_EQ((*Attr(s, "ratios"))["arrayValue"]["values"][0]["doubleValue"]
                .GetDouble(),
            0.5);
  EXPECT_FALSE(
      (*Attr(s, "flags"))["arrayValue"]["values"][1]["boolValue"].GetBool());
  EXPECT_STREQ((*Attr(s, "big"))["intValue"].GetString(), "-9000000000");
  const Value& ev = s["events"][0];
  EXPECT_STREQ(ev["name"].GetString(), "retry");
  EXPECT_STREQ(ev["timeUnixNano"].GetString(), "1767225600010000000");
  EXPECT_STREQ(ev["attributes"][0]["value"]["intValue"].GetString(), "2");
  EXPECT_EQ(ev["droppedAttributesCount"].GetUint(), 1u);
  const Value& link = s["links"][0];
  EXPECT_STREQ(link["traceId"].GetString(), "00000000000000010000000000000002");
  EXPECT_STREQ(link["spanId"].GetString(), "0000000000000003");
  EXPECT_STREQ(link["traceState"].GetString(), "k=v");
  EXPECT_EQ(link["flags"].GetUint(), 0x301u);  // Sampled, remote.

  const Value& t = server["spans"][0];
  EXPECT_STREQ(t["spanId"].GetString(), "1111111111111111");
  // The root span continues the remote parent, flagged remote.
  EXPECT_STREQ(t["parentSpanId"].GetString(), "b7ad6b7169203331");
  EXPECT_EQ(t["flags"].GetUint(), 0x301u);
  EXPECT_STREQ(t["traceState"].GetString(), "congo=t61rcWkgMzE");
  EXPECT_EQ(t["kind"].GetInt(), 2);
  EXPECT_EQ(t["status"]["code"].GetInt(), 1);
  EXPECT_FALSE(t["status"].HasMember("message"));  // Only for errors.
  EXPECT_STREQ((*Attr(t, "http.route"))["stringValue"].GetString(), "/run");
  EXPECT_STREQ(t["name"].GetString(), "handle request");
}

TEST(OtlpJsonTest, DefaultsAreLeftOutAndErrorsAreErrors) {
  SpanData s;
  s.trace_id = TraceId{0, 7};
  s.span_id = SpanId{8};
  s.parent_span_id = SpanId{9};
  s.name = "plain";
  s.status = {StatusCode::kError, "boom"};
  s.start_time = kT0;
  s.end_time = kT0;
  std::vector<SpanData> batch = {s};
  rapidjson::Document d = Parse(
      otlp::EncodeTraceRequest(batch, otlp::Resource::WithServiceName("x")));
  const Value& ss = d["resourceSpans"][0]["scopeSpans"][0];
  EXPECT_STREQ(ss["scope"]["name"].GetString(), "ctxloop");
  const Value& j = ss["spans"][0];
  EXPECT_FALSE(j.HasMember("events"));
  EXPECT_FALSE(j.HasMember("links"));
  EXPECT_FALSE(j.HasMember("droppedAttributesCount"));
  EXPECT_FALSE(j.HasMember("traceState"));
  EXPECT_EQ(j["status"]["code"].GetInt(), 2);
  EXPECT_STREQ(j["status"]["message"].GetString(), "boom");
  EXPECT_EQ(Attr(j, "ctxloop.error.data"), nullptr);
}

TEST(OtlpJsonTest, TwoProcessesContinuingOneTraceExportDistinctRoots) {
  // Each process's trace has its own random root span id; both continue
  // the same remote parent, so Jaeger draws one tree.
  SpanData a = Trace(), b = Trace();
  b.span_id = SpanId{0x3333333333333333};
  std::vector<SpanData> batch = {a, b};
  rapidjson::Document d = Parse(
      otlp::EncodeTraceRequest(batch, otlp::Resource::WithServiceName("x")));
  const Value& spans = d["resourceSpans"][0]["scopeSpans"][0]["spans"];
  EXPECT_STRNE(spans[0]["spanId"].GetString(), spans[1]["spanId"].GetString());
  EXPECT_STREQ(spans[0]["parentSpanId"].GetString(),
               spans[1]["parentSpanId"].GetString());
}

TEST(OtlpJsonTest, InvalidIdsAreSkipped) {
  SpanData bad = Span();
  bad.span_id = SpanId();
  std::vector<SpanData> batch = {bad, Span()};
  size_t skipped = 0;
  rapidjson::Document d = Parse(otlp::EncodeTraceRequest(
      batch, otlp::Resource::WithServiceName("x"), &skipped));
  EXPECT_EQ(skipped, 1u);
  EXPECT_EQ(d["resourceSpans"][0]["scopeSpans"][0]["spans"].Size(), 1u);
}

TEST(OtlpJsonTest, ResourceAttributesParse) {
  auto ok = otlp::ParseResourceAttributes(" a=1 , b%3Dc=x%2Cy ,");
  ASSERT_TRUE(ok.ok()) << ok.status();
  ASSERT_EQ(ok->size(), 2u);
  EXPECT_EQ((*ok)[1].first, "b=c");
  EXPECT_EQ(std::get<std::string>((*ok)[1].second), "x,y");
  EXPECT_FALSE(otlp::ParseResourceAttributes("novalue").ok());
  EXPECT_FALSE(otlp::ParseResourceAttributes("=v").ok());
  EXPECT_FALSE(otlp::ParseResourceAttributes("k=%zz").ok());
  EXPECT_FALSE(otlp::ParseResourceAttributes("k=%4").ok());
  EXPECT_TRUE(otlp::ParseResourceAttributes("").ok());

  setenv("OTEL_RESOURCE_ATTRIBUTES", "bad", 1);
  std::string warning;
  otlp::Resource r = otlp::ResourceFromEnvironment("dflt", &warning);
  EXPECT_FALSE(warning.empty());
  ASSERT_EQ(r.attributes.size(), 1u);
  EXPECT_EQ(std::get<std::string>(r.attributes[0].second), "dflt");
  unsetenv("OTEL_RESOURCE_ATTRIBUTES");
}

}  // namespace
}  // namespace ctxloop
