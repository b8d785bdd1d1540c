// Copyright 2026 The ctxloop Authors.
//
// W3C Trace Context extraction and injection, table-driven.

#include "ctxloop/trace/propagation.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"

namespace ctxloop {
namespace {

constexpr char kValid[] =
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

TEST(PropagationTest, ExtractsAValidTraceparent) {
  std::optional<SpanContext> c =
      ExtractTraceContext(kValid, "congo=t61rcWkgMzE");
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->trace_id.ToHex(), "0af7651916cd43dd8448eb211c80319c");
  EXPECT_EQ(c->span_id.ToHex(), "b7ad6b7169203331");
  EXPECT_EQ(c->trace_flags, 0x01);
  EXPECT_TRUE(c->sampled());
  EXPECT_TRUE(c->remote);
  EXPECT_EQ(c->trace_state, "congo=t61rcWkgMzE");
}

struct Case {
  const char* name;
  std::string traceparent;
  bool valid;
  uint8_t flags = 0;
};

TEST(PropagationTest, TraceparentTable) {
  const std::vector<Case> cases = {
      {"valid sampled", kValid, true, 0x01},
      {"valid not sampled",
       "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", true, 0x00},
      {"unknown flag bits kept",
       "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-09", true, 0x09},
      {"surrounding whitespace", absl::StrCat("  ", kValid, " "), true, 0x01},
      {"version ff", "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
       false},
      {"version not hex",
       "0g-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", false},
      {"upper-case version",
       "0A-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", false},
      {"higher version, exact",
       "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", true, 0x01},
      {"higher version, more fields",
       "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-ever",
       true, 0x01},
      {"higher version, no dash after flags",
       "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x", false},
      {"version 00 with trailing data", absl::StrCat(kValid, "-00"), false},
      {"all-zero trace id",
       "00-00000000000000000000000000000000-b7ad6b7169203331-01", false},
      {"all-zero parent id",
       "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", false},
      {"upper-case trace id",
       "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01", false},
      {"upper-case parent id",
       "00-0af7651916cd43dd8448eb211c80319c-B7AD6B7169203331-01", false},
      {"short trace id",
       "00-0af7651916cd43dd8448eb211c8031-b7ad6b7169203331-01", false},
      {"long parent id",
       "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333100-01", false},
      {"bad flags", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0x",
       false},
      {"upper-case flags",
       "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0A", false},
      {"one-digit flags",
       "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1", false},
      {"wrong separators",
       "00_0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331_01", false},
      {"empty", "", false},
      {"garbage", "hello", false},
      {"non-ascii",
       "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333\xff-01", false},
  };
  for (const Case& c : cases) {
    std::optional<SpanContext> got = ExtractTraceContext(c.traceparent);
    EXPECT_EQ(got.has_value(), c.valid) << c.name << ": " << c.traceparent;
    if (got.has_value() && c.valid) {
      EXPECT_EQ(got->trace_flags, c.flags) << c.name;
    }
  }
}

TEST(PropagationTest, TracestateTable) {
  std::vector<std::string> members;
  for (int i = 0; i < 32; ++i) members.push_back(absl::StrCat("k", i, "=v"));
  const std::string thirty_two = absl::StrJoin(members, ",");
  const std::string thirty_three = absl::StrCat(thirty_two, ",k32=v");
  struct TsCase {
    std::string in;
    std::optional<std::string> out;
  };
  const std::vector<TsCase> cases = {
      {"", std::string()},
      {"congo=t61rcWkgMzE", std::string("congo=t61rcWkgMzE")},
      {"rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
       std::string("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")},
      {" a=1 ,, b=2 ", std::string("a=1 ,, b=2")},  // Unchanged inside.
      {"tenant@vendor=x", std::string("tenant@vendor=x")},
      {"1tenant@vendor=x", std::string("1tenant@vendor=x")},
      {thirty_two, thirty_two},
      {thirty_three, std::nullopt},
      {"Upper=1", std::nullopt},
      {"novalue", std::nullopt},
      {"k=", std::nullopt},
      {"k=a,b", std::nullopt},
      {"k=v=w", std::nullopt},
  };
  for (const TsCase& c : cases) {
    EXPECT_EQ(ValidTraceState(c.in), c.out) << c.in;
  }
  // An invalid tracestate is dropped; the traceparent still counts.
  std::optional<SpanContext> ctx = ExtractTraceContext(kValid, thirty_three);
  ASSERT_TRUE(ctx.has_value());
  EXPECT_EQ(ctx->trace_state, "");
}

TEST(PropagationTest, InjectRoundTrips) {
  SpanContext c;
  c.trace_id = TraceId{0x0af7651916cd43dd, 0x8448eb211c80319c};
  c.span_id = SpanId{0x00f067aa0ba902b7};
  c.trace_flags = kTraceFlagSampled;
  c.trace_state = "rojo=00f067aa0ba902b7";
  TraceContextHeaders h = InjectTraceContext(c);
  EXPECT_EQ(h.traceparent,
            "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01");
  EXPECT_EQ(h.tracestate, "rojo=00f067aa0ba902b7");
  std::optional<SpanContext> back =
      ExtractTraceContext(h.traceparent, h.tracestate);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->trace_id, c.trace_id);
  EXPECT_EQ(back->span_id, c.span_id);
  EXPECT_EQ(back->trace_state, c.trace_state);

  SpanContext invalid;
  EXPECT_EQ(InjectTraceContext(invalid).traceparent, "");
  EXPECT_EQ(InjectTraceContext(invalid).tracestate, "");
  c.trace_id = TraceId{0, 1};
  c.span_id = SpanId{2};
  c.trace_flags = 0;
  EXPECT_EQ(FormatTraceparent(c),
            "00-00000000000000000000000000000001-0000000000000002-00");
}

}  // namespace
}  // namespace ctxloop
