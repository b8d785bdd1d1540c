// Copyright 2026 The ctxloop Authors.

#include "ctxloop/tests/otlp/jaeger_query.h"

#include <cstdlib>
#include <memory>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "ctxloop/tests/e2e/sse_test_client.h"
#include "rapidjson/document.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"

namespace ctxloop {
namespace testing {

std::string JaegerOtlpBaseUrl() {
  return absl::StrCat("http://127.0.0.1:", kJaegerOtlpHttpPort);
}

absl::StatusOr<std::string> HttpGet(int port, absl::string_view target,
                                    int* status) {
  absl::StatusOr<std::unique_ptr<e2e::SseTestClient>> c =
      e2e::SseTestClient::Connect(port, absl::Seconds(10));
  if (!c.ok()) return c.status();
  absl::Status s = (*c)->SendRequest("GET", target);
  if (!s.ok()) return s;
  absl::StatusOr<e2e::HttpHead> head = (*c)->ReadHead();
  if (!head.ok()) return head.status();
  if (status != nullptr) *status = head->status;
  return (*c)->ReadBody();
}

bool JaegerAnswers() {
  int status = 0;
  if (!HttpGet(kJaegerQueryPort, "/api/services", &status).ok() ||
      status != 200) {
    return false;
  }
  // The receiver answers a GET with an error status, but it answers.
  return HttpGet(kJaegerOtlpHttpPort, "/v1/traces", &status).ok();
}

bool JaegerRequired() {
  const char* v = std::getenv("CTXLOOP_REQUIRE_JAEGER");
  return v != nullptr && std::string(v) == "1";
}

namespace {

std::string ValueText(const rapidjson::Value& v) {
  if (v.IsString()) return v.GetString();
  rapidjson::StringBuffer b;
  rapidjson::Writer<rapidjson::StringBuffer> w(b);
  v.Accept(w);
  return b.GetString();
}

}  // namespace

absl::StatusOr<std::vector<JaegerSpan>> FetchJaegerTrace(
    absl::string_view trace_id_hex) {
  int status = 0;
  absl::StatusOr<std::string> body = HttpGet(
      kJaegerQueryPort, absl::StrCat("/api/traces/", trace_id_hex), &status);
  if (!body.ok()) return body.status();
  if (status == 404) return std::vector<JaegerSpan>();
  if (status != 200) {
    return absl::UnavailableError(
        absl::StrCat("Jaeger answered ", status, ": ", *body));
  }
  rapidjson::Document d;
  d.Parse(body->c_str(), body->size());
  if (d.HasParseError() || !d.IsObject() || !d.HasMember("data") ||
      !d["data"].IsArray()) {
    return absl::InternalError(absl::StrCat("unexpected Jaeger JSON: ", *body));
  }
  std::vector<JaegerSpan> out;
  for (const rapidjson::Value& trace : d["data"].GetArray()) {
    std::map<std::string, std::string> services;
    if (trace.HasMember("processes") && trace["processes"].IsObject()) {
      for (const auto& p : trace["processes"].GetObject()) {
        if (p.value.HasMember("serviceName")) {
          services[p.name.GetString()] = p.value["serviceName"].GetString();
        }
      }
    }
    for (const rapidjson::Value& s : trace["spans"].GetArray()) {
      JaegerSpan js;
      js.trace_id = s["traceID"].GetString();
      js.span_id = s["spanID"].GetString();
      js.operation = s["operationName"].GetString();
      if (s.HasMember("references")) {
        for (const rapidjson::Value& r : s["references"].GetArray()) {
          if (std::string(r["refType"].GetString()) == "CHILD_OF") {
            js.parent_span_id = r["spanID"].GetString();
          }
        }
      }
      if (s.HasMember("processID")) {
        js.service = services[s["processID"].GetString()];
      }
      if (s.HasMember("tags")) {
        for (const rapidjson::Value& t : s["tags"].GetArray()) {
          js.tags[t["key"].GetString()] = ValueText(t["value"]);
        }
      }
      if (s.HasMember("logs")) {
        for (const rapidjson::Value& l : s["logs"].GetArray()) {
          for (const rapidjson::Value& f : l["fields"].GetArray()) {
            if (std::string(f["key"].GetString()) == "event") {
              js.events.push_back(ValueText(f["value"]));
            }
          }
        }
      }
      out.push_back(std::move(js));
    }
  }
  return out;
}

absl::StatusOr<std::vector<JaegerSpan>> WaitForJaegerSpans(
    absl::string_view trace_id_hex, size_t min_spans, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::vector<JaegerSpan> last;
  while (true) {
    absl::StatusOr<std::vector<JaegerSpan>> spans =
        FetchJaegerTrace(trace_id_hex);
    if (spans.ok()) {
      if (spans->size() >= min_spans) return spans;
      last = *std::move(spans);
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "Jaeger has ", last.size(), " spans of trace ", trace_id_hex,
          ", waited for ", min_spans,
          spans.ok() ? ""
                     : absl::StrCat(" (", spans.status().ToString(), ")")));
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
}

}  // namespace testing
}  // namespace ctxloop
