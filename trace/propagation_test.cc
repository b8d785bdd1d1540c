// Copyright 2026 The ctxloop Authors.
//
// W3C Trace Context extraction and injection, table-driven.

#include "ctxloop/trace/propagation.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
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
      {"surrounding spaces and tabs", absl::StrCat(" \t ", kValid, "\t "), true,
       0x01},
      {"trailing CR LF", absl::StrCat(kValid, "\r\n"), false},
      {"leading LF", absl::StrCat("\n", kValid), false},
      {"trailing NUL", std::string(kValid) + std::string(1, '\0'), false},
      {"trailing vertical tab", absl::StrCat(kValid, "\v"), false},
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
      {"higher version, CR after flags",
       "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\nx: y",
       false},
      {"higher version, anything after a dash",
       "fe-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00-\x01\xff", true,
       0x00},
      {"higher version, short",
       "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1", false},
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

std::string Repeat(char c, size_t n) { return std::string(n, c); }

TEST(PropagationTest, TracestateTable) {
  std::vector<std::string> members;
  for (int i = 0; i < 32; ++i) members.push_back(absl::StrCat("k", i, "=v"));
  const std::string thirty_two = absl::StrJoin(members, ",");
  const std::string thirty_three = absl::StrCat(thirty_two, ",k32=v");
  const std::string key256 = absl::StrCat("k", Repeat('a', 255));
  const std::string value256 = Repeat('v', 256);
  const std::string tenant241 = Repeat('t', 241);
  const std::string system14 = Repeat('s', 14);
  struct TsCase {
    std::string in;
    std::optional<std::string> out;  // nullopt: invalid.
  };
  const std::vector<TsCase> cases = {
      // Valid: re-serialized from the parsed members.
      {"", std::string()},
      {" \t ", std::string()},
      {",", std::string()},
      {" , \t, ", std::string()},
      {"congo=t61rcWkgMzE", std::string("congo=t61rcWkgMzE")},
      {"rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
       std::string("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")},
      {" a=1 ,, b=2 ", std::string("a=1,b=2")},
      {"a=1\t,\tb=2", std::string("a=1,b=2")},
      {"k= v", std::string("k= v")},  // A value may start with a space.
      {"k=a b", std::string("k=a b")},
      {"k=!\"#$%&'()*+-./:;<>?@[\\]^_`{|}~",
       std::string("k=!\"#$%&'()*+-./:;<>?@[\\]^_`{|}~")},
      {"a_-*/09=x", std::string("a_-*/09=x")},
      {"tenant@vendor=x", std::string("tenant@vendor=x")},
      {"1tenant@vendor=x", std::string("1tenant@vendor=x")},
      {"t@v-_*/1=x", std::string("t@v-_*/1=x")},
      {thirty_two, thirty_two},
      {absl::StrCat(",,", thirty_two, ", ,"), thirty_two},
      {absl::StrCat(key256, "=v"), absl::StrCat(key256, "=v")},
      {absl::StrCat("k=", value256), absl::StrCat("k=", value256)},
      {absl::StrCat(tenant241, "@", system14, "=v"),
       absl::StrCat(tenant241, "@", system14, "=v")},
      // Invalid: discarded whole.
      {"a=1,\r\n\r\nk=<script>", std::nullopt},  // Header injection.
      {"a=1\r\n", std::nullopt},
      {"\na=1", std::nullopt},
      {"a=1\r", std::nullopt},
      {std::string("a=1\0b", 5), std::nullopt},
      {std::string("a=1,\0", 5), std::nullopt},
      {"a=1\x7f", std::nullopt},
      {"a=\x01", std::nullopt},
      {"a=1\v", std::nullopt},
      {"\fa=1", std::nullopt},
      {"a=caf\xc3\xa9", std::nullopt},
      {"caf\xc3\xa9=1", std::nullopt},
      {"a=\x80", std::nullopt},
      {"a=1\tb", std::nullopt},  // A tab inside a value.
      {thirty_three, std::nullopt},
      {absl::StrCat("k", Repeat('a', 256), "=v"), std::nullopt},
      {absl::StrCat("k=", value256, "v"), std::nullopt},
      {absl::StrCat(tenant241, "t@", system14, "=v"), std::nullopt},
      {absl::StrCat(tenant241, "@", system14, "s=v"), std::nullopt},
      {"a=1,a=2", std::nullopt},
      {"t@v=1,b=2,t@v=3", std::nullopt},
      {"Upper=1", std::nullopt},
      {"1simple=1", std::nullopt},
      {"_k=1", std::nullopt},
      {"@v=1", std::nullopt},
      {"t@=1", std::nullopt},
      {"t@1v=1", std::nullopt},
      {"t@v@w=1", std::nullopt},
      {"_t@v=1", std::nullopt},
      {"k.x=1", std::nullopt},
      {"k =1", std::nullopt},
      {"novalue", std::nullopt},
      {"k=", std::nullopt},
      {"=v", std::nullopt},
      {"k=a,b", std::nullopt},
      {"k=v=w", std::nullopt},
  };
  for (const TsCase& c : cases) {
    EXPECT_EQ(ValidTraceState(c.in), c.out) << absl::CEscape(c.in);
    absl::StatusOr<std::string> parsed = ParseTraceState(c.in);
    EXPECT_EQ(parsed.ok(), c.out.has_value()) << absl::CEscape(c.in);
    if (!parsed.ok()) {
      EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    }
    // Whatever the input, what is passed on is within the grammar.
    if (parsed.ok()) {
      EXPECT_LE(parsed->size(), kMaxTraceStateBytes);
      for (char ch : *parsed) {
        EXPECT_TRUE(ch >= 0x20 && ch <= 0x7E) << absl::CEscape(c.in);
      }
    }
  }
  // An invalid tracestate is dropped; the traceparent still counts.
  for (const std::string& bad :
       {thirty_three, std::string("a=1,\r\n\r\nk=<script>")}) {
    std::optional<SpanContext> ctx = ExtractTraceContext(kValid, bad);
    ASSERT_TRUE(ctx.has_value());
    EXPECT_EQ(ctx->trace_state, "");
    EXPECT_EQ(InjectTraceContext(*ctx).tracestate, "");
  }
}

// The reason names the member and the byte, in hex: never the raw bytes.
TEST(PropagationTest, TracestateErrorsNameTheMemberAndByte) {
  absl::StatusOr<std::string> got = ParseTraceState("a=1,\r\n\r\nk=<script>");
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find("list member 2"), std::string::npos)
      << got.status();
  EXPECT_NE(got.status().message().find("0x0d"), std::string::npos)
      << got.status();
  EXPECT_EQ(got.status().message().find('\r'), std::string::npos);
  EXPECT_EQ(got.status().message().find('\n'), std::string::npos);
  got = ParseTraceState("a=1,b=2,a=3");
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find("twice"), std::string::npos)
      << got.status();
}

// Injection re-serializes the held trace state: a `SpanContext` built by
// hand with control characters in it injects none.
TEST(PropagationTest, InjectNeverPassesRawTraceState) {
  SpanContext c;
  c.trace_id = TraceId{0x0af7651916cd43dd, 0x8448eb211c80319c};
  c.span_id = SpanId{0x00f067aa0ba902b7};
  c.trace_state = "a=1,\r\n\r\nk=<script>";
  EXPECT_EQ(InjectTraceContext(c).tracestate, "");
  c.trace_state = " a=1 ,, b=2\t";
  EXPECT_EQ(InjectTraceContext(c).tracestate, "a=1,b=2");
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
