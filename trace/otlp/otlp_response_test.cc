// Copyright 2026 The ctxloop Authors.
//
// How the OTLP/HTTP exporter reads a collector's answer: Retry-After, the
// retry rules, and the partial-success body (iterative, depth- and
// size-limited: a body of nothing but '[' is unparsable, never a crash).

#include "ctxloop/trace/otlp/otlp_response.h"

#include <pthread.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace ctxloop {
namespace trace_internal {
namespace {

using Outcome = PartialSuccess::Outcome;

TEST(ParseRetryAfterTest, SecondsAndDates) {
  const absl::Time now = absl::FromUnixSeconds(1445412480);  // 07:28:00
  EXPECT_EQ(ParseRetryAfter("120", now), absl::Seconds(120));
  EXPECT_EQ(ParseRetryAfter(" 0 ", now), absl::ZeroDuration());
  EXPECT_EQ(ParseRetryAfter("Wed, 21 Oct 2015 07:28:30 GMT", now),
            absl::Seconds(30));
  // A past date: at once.
  EXPECT_EQ(ParseRetryAfter("Wed, 21 Oct 2015 07:27:00 GMT", now),
            absl::ZeroDuration());
  for (const char* bad :
       {"", "  ", "-1", "soon", "1.5", "12abc", "Wed, 21 Oct 2015 07:28:30 PST",
        "99999999999999999999999"}) {
    EXPECT_FALSE(ParseRetryAfter(bad, now).has_value()) << bad;
  }
  EXPECT_FALSE(ParseRetryAfter(std::string(100000, '9'), now).has_value());
  EXPECT_FALSE(
      ParseRetryAfter(std::string(100000, 'W') + " GMT", now).has_value());
}

TEST(HttpStatusTest, RetriesExactlyTheOtlpSet) {
  for (int code = 0; code < 1000; ++code) {
    const bool retry =
        code == 0 || code == 429 || code == 502 || code == 503 || code == 504;
    EXPECT_EQ(IsRetryableHttpStatus(code), retry) << code;
    EXPECT_EQ(StatusCodeForHttp(code) == absl::StatusCode::kUnavailable, retry)
        << code;
  }
  EXPECT_EQ(StatusCodeForHttp(400), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(StatusCodeForHttp(500), absl::StatusCode::kInternal);
  EXPECT_FALSE(IsRetryableHttpStatus(-1));
}

TEST(ParsePartialSuccessTest, ReadsRejectedSpansAndMessage) {
  PartialSuccess p = ParsePartialSuccess(
      R"({"partialSuccess":{"rejectedSpans":"2","errorMessage":"too old"}})");
  EXPECT_EQ(p.outcome, Outcome::kParsed);
  EXPECT_EQ(p.rejected_spans, 2);
  EXPECT_EQ(p.message, "too old");

  p = ParsePartialSuccess(
      R"({"x":[1,{"rejectedSpans":9}],"partialSuccess":{"rejectedSpans":7}})");
  EXPECT_EQ(p.outcome, Outcome::kParsed);
  EXPECT_EQ(p.rejected_spans, 7);
  EXPECT_EQ(p.message, "");

  // Nested deeper "rejectedSpans" keys are not the partial success's.
  p = ParsePartialSuccess(
      R"({"partialSuccess":{"x":{"rejectedSpans":5},"rejectedSpans":1}})");
  EXPECT_EQ(p.rejected_spans, 1);
  p = ParsePartialSuccess(R"({"a":{"partialSuccess":{"rejectedSpans":5}}})");
  EXPECT_EQ(p.outcome, Outcome::kNone);
  EXPECT_EQ(p.rejected_spans, 0);

  // Negative, huge or unreadable counts.
  EXPECT_EQ(ParsePartialSuccess(R"({"partialSuccess":{"rejectedSpans":-4}})")
                .rejected_spans,
            0);
  EXPECT_EQ(ParsePartialSuccess(
                R"({"partialSuccess":{"rejectedSpans":18446744073709551615}})")
                .rejected_spans,
            INT64_MAX);
  EXPECT_EQ(
      ParsePartialSuccess(R"({"partialSuccess":{"rejectedSpans":"lots"}})")
          .rejected_spans,
      0);
  // The message is cut to 1 KiB.
  p = ParsePartialSuccess(absl::StrCat(R"({"partialSuccess":{"errorMessage":")",
                                       std::string(5000, 'm'), R"("}})"));
  EXPECT_EQ(p.message.size(), 1024u);
}

TEST(ParsePartialSuccessTest, NoneForEmptyAndPlainObjects) {
  for (const char* body : {"", " \r\n", "{}", R"({"partialSuccess":{}})",
                           R"({"partialSuccess":null})"}) {
    const PartialSuccess p = ParsePartialSuccess(body);
    EXPECT_NE(p.outcome, Outcome::kUnparsable) << body;
    EXPECT_EQ(p.rejected_spans, 0) << body;
  }
}

TEST(ParsePartialSuccessTest, UnparsableBodies) {
  for (const char* body : {"not json", "[]", "3", "\"s\"", "{", R"({"a":1}x)",
                           "{\"a\":\"\xff\"}"}) {
    const PartialSuccess p = ParsePartialSuccess(body);
    EXPECT_EQ(p.outcome, Outcome::kUnparsable) << body;
    EXPECT_FALSE(p.error.empty()) << body;
  }
  EXPECT_EQ(ParsePartialSuccess(std::string("{}\0{}", 5)).outcome,
            Outcome::kUnparsable);
}

TEST(ParsePartialSuccessTest, DepthLimit) {
  auto nested = [](int depth) {
    std::string s = R"({"partialSuccess":)";
    for (int i = 0; i < depth; ++i) s += "[";
    for (int i = 0; i < depth; ++i) s += "]";
    return s + "}";
  };
  EXPECT_EQ(ParsePartialSuccess(nested(kMaxPartialSuccessDepth - 1)).outcome,
            Outcome::kNone);
  const PartialSuccess p = ParsePartialSuccess(nested(kMaxPartialSuccessDepth));
  EXPECT_EQ(p.outcome, Outcome::kUnparsable);
  EXPECT_NE(p.error.find("nested deeper"), std::string::npos) << p.error;
}

// Runs `fn` on a thread with a 1 MiB stack (a common size for worker
// threads; a recursive parser overflows it within 64 KiB of '[').
void OnSmallStack(void (*fn)(void*), void* arg) {
  struct Call {
    void (*fn)(void*);
    void* arg;
  } call{fn, arg};
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 1 << 20);
  pthread_t t;
  ASSERT_EQ(pthread_create(
                &t, &attr,
                [](void* c) -> void* {
                  static_cast<Call*>(c)->fn(static_cast<Call*>(c)->arg);
                  return nullptr;
                },
                &call),
            0);
  pthread_attr_destroy(&attr);
  pthread_join(t, nullptr);
}

// A body of 64 KiB of '[' was 65,536 recursion levels: parsed on a 1 MiB
// stack and on the main thread, it is unparsable, never a crash.
TEST(ParsePartialSuccessTest, OpenBracketsAreUnparsableNotACrash) {
  for (size_t n : {size_t{64} * 1024, size_t{1024} * 1024}) {
    struct Case {
      std::string body;
      PartialSuccess result;
    } c{std::string(n, '['), {}};
    OnSmallStack(
        [](void* arg) {
          auto* c = static_cast<Case*>(arg);
          c->result = ParsePartialSuccess(c->body);
        },
        &c);
    EXPECT_EQ(c.result.outcome, Outcome::kUnparsable) << n;
    EXPECT_EQ(c.result.rejected_spans, 0);
    const PartialSuccess p = ParsePartialSuccess(c.body);
    EXPECT_EQ(p.outcome, Outcome::kUnparsable) << n;
  }
  // Just under the size limit, nested as deep as it goes: still refused by
  // depth, not by size.
  const PartialSuccess p =
      ParsePartialSuccess(std::string(kMaxPartialSuccessBytes, '['));
  EXPECT_NE(p.error.find("nested deeper"), std::string::npos) << p.error;
  const PartialSuccess q =
      ParsePartialSuccess(std::string(kMaxPartialSuccessBytes + 1, '['));
  EXPECT_NE(q.error.find("longer than"), std::string::npos) << q.error;
}

}  // namespace
}  // namespace trace_internal
}  // namespace ctxloop
