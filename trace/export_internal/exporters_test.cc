// Copyright 2026 The ctxloop Authors.
//
// Tests for the in-memory and file exporters and the JSON writer they share.
// Output is checked by parsing it back with a small strict JSON parser
// (below), and against exact expected text where the input is fixed.

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ctxloop/loop/context_handle.h"
#include "ctxloop/loop/internal/handle_access.h"
#include "ctxloop/trace/batch_processor.h"
#include "ctxloop/trace/chrome/chrome_trace_exporter.h"
#include "ctxloop/trace/export_internal/json_writer.h"
#include "ctxloop/trace/in_memory_exporter.h"
#include "ctxloop/trace/json_lines/json_lines_exporter.h"
#include "ctxloop/trace/otlp/otlp_json_exporter.h"
#include "ctxloop/trace/span_data.h"
#include "ctxloop/trace/testing/faulty_exporter.h"
#include "gtest/gtest.h"
#include "rapidjson/error/en.h"
#include "rapidjson/reader.h"
#include "rapidjson/stream.h"

namespace ctxloop {
namespace {

// The root span id of the traces built below.
constexpr uint64_t kRootSpanId = 0x50;

using trace_internal::JsonWriter;

// ------------------------------------------------------- strict JSON parser

struct Json {
  enum Type { kNull, kBool, kNumber, kString, kArray, kObject };
  Type type = kNull;
  bool boolean = false;
  std::string text;  // kNumber: the literal; kString: the decoded value.
  std::vector<Json> array;
  std::vector<std::pair<std::string, Json>> object;

  bool Has(absl::string_view key) const { return Find(key) != nullptr; }
  const Json* Find(absl::string_view key) const {
    for (const auto& [k, v] : object) {
      if (k == key) return &v;
    }
    return nullptr;
  }
  const Json& operator[](absl::string_view key) const {
    static const Json* const kNullValue = new Json();
    const Json* v = Find(key);
    return v != nullptr ? *v : *kNullValue;
  }
  const Json& operator[](size_t i) const { return array.at(i); }
  const std::string& str() const { return text; }
  int64_t Int() const {
    int64_t v = 0;
    EXPECT_TRUE(absl::SimpleAtoi(text, &v)) << text;
    return v;
  }
};

// RapidJSON's SAX reader, strict (UTF-8 validated, no trailing commas or
// comments, one value), building `Json`; numbers keep their literal text
// (kParseNumbersAsStringsFlag). Duplicate keys are rejected here.
class JsonBuilder {
 public:
  static absl::StatusOr<Json> Parse(absl::string_view s) {
    const std::string text(s);  // Null-terminated for StringStream.
    JsonBuilder b;
    rapidjson::Reader reader;
    rapidjson::StringStream in(text.c_str());
    reader.Parse<rapidjson::kParseValidateEncodingFlag |
                 rapidjson::kParseNumbersAsStringsFlag>(in, b);
    if (reader.HasParseError()) {
      return absl::InvalidArgumentError(
          absl::StrCat(rapidjson::GetParseError_En(reader.GetParseErrorCode()),
                       " at offset ", reader.GetErrorOffset()));
    }
    if (!b.error_.empty()) return absl::InvalidArgumentError(b.error_);
    if (text.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError("NUL byte in the input");
    }
    return std::move(b.root_);
  }

  // The SAX interface.
  bool Null() { return Add(Json()); }
  bool Bool(bool b) {
    Json j;
    j.type = Json::kBool;
    j.boolean = b;
    return Add(std::move(j));
  }
  bool RawNumber(const char* s, rapidjson::SizeType n, bool) {
    Json j;
    j.type = Json::kNumber;
    j.text.assign(s, n);
    return Add(std::move(j));
  }
  bool String(const char* s, rapidjson::SizeType n, bool) {
    Json j;
    j.type = Json::kString;
    j.text.assign(s, n);
    return Add(std::move(j));
  }
  bool StartObject() {
    Json j;
    j.type = Json::kObject;
    stack_.push_back(std::move(j));
    return true;
  }
  bool Key(const char* s, rapidjson::SizeType n, bool) {
    std::string key(s, n);
    if (stack_.back().Has(key)) {
      error_ = absl::StrCat("duplicate key \"", key, "\"");
      return false;
    }
    keys_.push_back(std::move(key));
    return true;
  }
  bool EndObject(rapidjson::SizeType) { return End(); }
  bool StartArray() {
    Json j;
    j.type = Json::kArray;
    stack_.push_back(std::move(j));
    return true;
  }
  bool EndArray(rapidjson::SizeType) { return End(); }
  // Not called with kParseNumbersAsStringsFlag.
  bool Int(int) { return false; }
  bool Uint(unsigned) { return false; }
  bool Int64(int64_t) { return false; }
  bool Uint64(uint64_t) { return false; }
  bool Double(double) { return false; }

 private:
  bool Add(Json v) {
    if (stack_.empty()) {
      root_ = std::move(v);
      return true;
    }
    Json& top = stack_.back();
    if (top.type == Json::kArray) {
      top.array.push_back(std::move(v));
    } else {
      top.object.emplace_back(std::move(keys_.back()), std::move(v));
      keys_.pop_back();
    }
    return true;
  }
  bool End() {
    Json done = std::move(stack_.back());
    stack_.pop_back();
    return Add(std::move(done));
  }

  std::vector<Json> stack_;
  std::vector<std::string> keys_;
  Json root_;
  std::string error_;
};

Json MustParse(absl::string_view s) {
  absl::StatusOr<Json> j = JsonBuilder::Parse(s);
  EXPECT_TRUE(j.ok()) << j.status() << "\n" << s;
  return j.ok() ? *std::move(j) : Json();
}

TEST(JsonParserSelfTest, RejectsInvalidJson) {
  for (const char* bad : {"", "{", "[1,]", "{\"a\":1,}", "{a:1}", "01", "1.",
                          "\"\x01\"", "\"\xff\"", "\"\xC0\xAF\"", "\"\\ud800\"",
                          "nul", "[1] 2", "{\"a\":1,\"a\":2}", "\"\\x\""}) {
    EXPECT_FALSE(JsonBuilder::Parse(bad).ok()) << bad;
  }
  EXPECT_TRUE(
      JsonBuilder::Parse(" {\"a\":[1,-2.5e3,true,null,\"\\u00e9\"]} ").ok());
}

// ----------------------------------------------------------------- helpers

std::string TempPath(absl::string_view name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return absl::StrCat(dir != nullptr ? dir : "/tmp", "/", name);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool FileExists(const std::string& path) {
  std::ifstream in(path);
  return in.good();
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out = absl::StrSplit(text, '\n');
  if (!out.empty() && out.back().empty()) out.pop_back();
  return out;
}

ContextHandle Ctx(uint32_t loop, uint32_t context) {
  return loop_internal::HandleAccess::Make(loop, 1, context, 1);
}

const absl::Time kT0 = absl::FromUnixSeconds(1767225600);  // 2026-01-01.

absl::Time At(absl::Duration d) { return kT0 + d; }

ExecutionSite Site(ContextHandle ctx, int64_t tid, absl::Duration at) {
  ExecutionSite s;
  s.ctx = ctx;
  s.thread_id = tid;
  s.time = At(at);
  return s;
}

// `parent` 0: a top-level span, whose parent is the root span.
SpanData Span(TraceId trace, uint64_t id, uint64_t parent, std::string name,
              ExecutionSite where, absl::Duration start, absl::Duration dur) {
  SpanData s;
  s.trace_id = trace;
  s.span_id = SpanId{id};
  s.parent_span_id = SpanId{parent != 0 ? parent : kRootSpanId};
  s.name = std::move(name);
  s.start_time = At(start);
  s.duration = dur;
  s.end_time = At(start + dur);
  where.time = At(start);
  s.started = where;
  s.finish_called = where;
  s.finish_called.time = At(start + dur);
  s.finish_ran = s.finish_called;
  return s;
}

bool IsLowerHex(const std::string& s, size_t len) {
  if (s.size() != len) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// ------------------------------------------------------------ JsonWriter

std::string Quote(absl::string_view s) {
  std::string out;
  trace_internal::AppendJsonString(s, &out);
  return out;
}

TEST(JsonWriterTest, WritesNestedContainersWithCommas) {
  JsonWriter w;
  w.BeginObject();
  w.Key("a").BeginArray();
  w.Int(1).Int(-2).Uint(std::numeric_limits<uint64_t>::max());
  w.Bool(true).Bool(false).Null();
  w.BeginObject().EndObject();
  w.BeginArray().EndArray();
  w.EndArray();
  w.Key("b").BeginObject().Key("c").Int(std::numeric_limits<int64_t>::min());
  w.EndObject();
  w.Key("d").Double(1.5);
  w.Key("e").Raw("[1,2]");
  w.EndObject();
  EXPECT_TRUE(w.status().ok()) << w.status();
  EXPECT_TRUE(w.complete());
  EXPECT_EQ(w.str(),
            "{\"a\":[1,-2,18446744073709551615,true,false,null,{},[]],"
            "\"b\":{\"c\":-9223372036854775808},\"d\":1.5,\"e\":[1,2]}");
  MustParse(w.str());
}

TEST(JsonWriterTest, EscapesQuotesBackslashesAndControlCharacters) {
  EXPECT_EQ(Quote("q\"b\\s/"), "\"q\\\"b\\\\s/\"");
  EXPECT_EQ(Quote("\b\f\n\r\t"), "\"\\b\\f\\n\\r\\t\"");
  EXPECT_EQ(Quote(std::string("a\0b", 3)), "\"a\\u0000b\"");
  EXPECT_EQ(Quote("\x01\x1f\x7f"), "\"\\u0001\\u001f\\u007f\"");
  EXPECT_EQ(Quote("\xE2\x80\xA8|\xE2\x80\xA9"), "\"\\u2028|\\u2029\"");
  // Every control character is escaped, none passes raw.
  for (int c = 0; c < 0x20; ++c) {
    const std::string q = Quote(std::string(1, static_cast<char>(c)));
    EXPECT_EQ(q.size() >= 4 && q[1] == '\\', true) << c;
    EXPECT_EQ(MustParse(q).str(), std::string(1, static_cast<char>(c))) << c;
  }
}

TEST(JsonWriterTest, KeepsValidUtf8AndReplacesInvalidUtf8) {
  const std::string kFffd = "\xEF\xBF\xBD";
  EXPECT_EQ(Quote("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80"),
            "\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\"");  // é € 😀
  EXPECT_EQ(Quote("\xFF"), "\"" + kFffd + "\"");
  EXPECT_EQ(Quote("a\xE2\x82"), "\"a" + kFffd + "\"");  // Truncated: one.
  EXPECT_EQ(Quote("\xE2\x82z"), "\"" + kFffd + "z\"");
  EXPECT_EQ(Quote("\xC0\xAF"), "\"" + kFffd + kFffd + "\"");  // Overlong.
  EXPECT_EQ(Quote("\xED\xA0\x80"),
            "\"" + kFffd + kFffd + kFffd + "\"");  // Surrogate.
  EXPECT_EQ(Quote("\xF4\x90\x80\x80"),
            "\"" + kFffd + kFffd + kFffd + kFffd + "\"");  // > U+10FFFF.
  EXPECT_EQ(Quote("\x80"), "\"" + kFffd + "\"");           // Lone continuation.
  // Any byte string at all comes out as valid JSON (and valid UTF-8).
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  for (int i = 255; i >= 0; --i) all.push_back(static_cast<char>(i));
  all += "\xF0\x9F\x98";  // Ends truncated.
  MustParse(Quote(all));
}

TEST(JsonWriterTest, DoublesRoundTripAndNonFiniteIsNull) {
  JsonWriter w;
  w.BeginArray()
      .Double(0.1)
      .Double(-0.0)
      .Double(1e300)
      .Double(123456789.125)
      .Double(std::numeric_limits<double>::quiet_NaN())
      .Double(std::numeric_limits<double>::infinity())
      .Double(-std::numeric_limits<double>::infinity())
      .EndArray();
  EXPECT_EQ(w.str(), "[0.1,-0,1e+300,123456789.125,null,null,null]");
  MustParse(w.str());
}

TEST(JsonWriterTest, MisuseIsRecordedAndOutputStaysValid) {
  JsonWriter w;
  w.BeginObject().Int(1);  // A value without a key: ignored.
  EXPECT_FALSE(w.status().ok());
  w.Key("a").Int(2).EndObject();
  EXPECT_EQ(w.str(), "{\"a\":2}");
  w.Int(3);  // A second top-level value: ignored.
  w.EndArray();
  EXPECT_EQ(w.str(), "{\"a\":2}");
  EXPECT_TRUE(w.complete());

  JsonWriter k;
  k.Key("top");
  EXPECT_FALSE(k.status().ok());
  EXPECT_EQ(k.str(), "");
  k.Clear();
  EXPECT_TRUE(k.status().ok());
  EXPECT_FALSE(k.complete());
}

// ------------------------------------------------------ InMemoryExporter

TEST(InMemoryExporterTest, StoresInOrderAndFaultyExporterInjectsFaults) {
  auto memory = std::make_shared<InMemoryExporter>();
  InMemoryExporter& e = *memory;
  testing::FaultyExporter faulty(memory);
  const TraceId trace{0, 7};
  SpanData s1 = Span(trace, 1, 0, "a", Site({}, 1, {}), {}, absl::Seconds(1));
  SpanData s2 = Span(trace, 2, 1, "b", Site({}, 1, {}), {}, absl::Seconds(1));
  SpanData t;  // A root span.
  t.trace_id = trace;
  t.span_id = SpanId{kRootSpanId};
  t.name = "wf";
  std::vector<SpanData> batch = {s1, t, s2};
  ASSERT_TRUE(e.Export(batch).ok());
  EXPECT_EQ(e.size(), 3u);
  ASSERT_EQ(e.spans().size(), 3u);
  EXPECT_EQ(e.spans()[0].name, "a");
  EXPECT_EQ(e.spans()[2].name, "b");
  ASSERT_EQ(e.traces().size(), 1u);
  EXPECT_EQ(e.traces()[0].name, "wf");

  faulty.FailNextExports(2, absl::UnavailableError("down"));
  EXPECT_EQ(faulty.Export(batch).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(faulty.Export(batch).code(), absl::StatusCode::kUnavailable);
  faulty.ThrowNextExports(1);
  EXPECT_THROW(faulty.Export(batch).IgnoreError(), std::runtime_error);
  EXPECT_EQ(e.size(), 3u);  // Failed calls stored nothing.
  ASSERT_TRUE(faulty.Export(absl::MakeConstSpan(batch).subspan(0, 1)).ok());
  EXPECT_EQ(e.size(), 4u);
  EXPECT_EQ(faulty.export_calls(), 4);
  EXPECT_EQ(e.export_calls(), 2);
  EXPECT_EQ(e.batch_sizes(), (std::vector<size_t>{3, 1}));

  e.Clear();
  EXPECT_EQ(e.size(), 0u);
  ASSERT_TRUE(e.Shutdown().ok());
  EXPECT_EQ(e.Export(batch).code(), absl::StatusCode::kFailedPrecondition);
}

// ---------------------------------------------------- JsonLinesExporter

SpanData FixedSpan() {
  SpanData s;
  s.trace_id = TraceId{0x0123456789abcdefULL, 0xfedcba9876543210ULL};
  s.span_id = SpanId{0xabc};
  s.parent_span_id = SpanId{0x9};
  s.name = "step \"1\"";
  s.attributes = {{"k", std::string("v")},
                  {"n", int64_t{-5}},
                  {"x", 0.25},
                  {"ok", true},
                  {"k", std::string("v2")}};
  s.start_time = kT0 + absl::Nanoseconds(1);
  s.end_time = s.start_time + absl::Microseconds(1500);
  s.duration = absl::Microseconds(1500);
  s.status = {StatusCode::kError, "boom"};
  s.started = {Ctx(1, 2), 101, s.start_time};
  s.finish_called = {ContextHandle(), 202, s.end_time};
  s.finish_ran = {Ctx(1, 2), 101, s.end_time + absl::Microseconds(3)};
  return s;
}

TEST(JsonLinesExporterTest, FormatsASpanExactly) {
  EXPECT_EQ(JsonLinesExporter::FormatItem(FixedSpan()),
            "{\"type\":\"span\","
            "\"trace_id\":\"0123456789abcdeffedcba9876543210\","
            "\"span_id\":\"0000000000000abc\","
            "\"parent_span_id\":\"0000000000000009\","
            "\"parent_is_remote\":false,"
            "\"name\":\"step \\\"1\\\"\","
            "\"attributes\":{\"n\":-5,\"x\":0.25,\"ok\":true,\"k\":\"v2\"},"
            "\"start_time\":\"2026-01-01T00:00:00.000000001Z\","
            "\"end_time\":\"2026-01-01T00:00:00.001500001Z\","
            "\"duration_ns\":1500000,"
            "\"kind\":\"internal\","
            "\"status\":{\"code\":\"error\",\"message\":\"boom\"},"
            "\"events\":[],\"links\":[],"
            "\"scope\":{\"name\":\"\",\"version\":\"\"},"
            "\"trace_flags\":1,\"trace_state\":\"\","
            "\"dropped\":{\"attributes\":0,\"events\":0,\"links\":0},"
            "\"started\":{\"loop\":1,\"context\":2,\"thread\":101,"
            "\"time\":\"2026-01-01T00:00:00.000000001Z\"},"
            "\"finish_called\":{\"loop\":null,\"context\":null,\"thread\":202,"
            "\"time\":\"2026-01-01T00:00:00.001500001Z\"},"
            "\"finish_ran\":{\"loop\":1,\"context\":2,\"thread\":101,"
            "\"time\":\"2026-01-01T00:00:00.001503001Z\"},"
            "\"finished_off_origin\":false}");
}

TEST(JsonLinesExporterTest, AppendsOneParsableLinePerItem) {
  const std::string path = TempPath("lines.jsonl");
  JsonLinesExporter::Options options;
  options.truncate = true;
  auto e = JsonLinesExporter::Create(path, options);
  ASSERT_TRUE(e.ok()) << e.status();

  SpanData t;
  t.trace_id = FixedSpan().trace_id;
  t.span_id = SpanId{kRootSpanId};
  t.name = "agent\nrun";
  t.attributes = {{"ctxloop.group_id", std::string("chat-7")},
                  {"ctxloop.metadata.user", std::string("ann")},
                  {"ctxloop.metadata.bad", std::string("\xff")}};
  t.start_time = kT0;
  t.end_time = absl::InfiniteFuture();  // Written as null.
  t.duration = absl::Milliseconds(2);
  t.finished_off_origin = true;

  SpanData child = FixedSpan();
  child.span_id = SpanId{0xdef};
  child.parent_span_id = SpanId{0xabc};

  std::vector<SpanData> first = {FixedSpan(), child};
  std::vector<SpanData> second = {t};
  ASSERT_TRUE((*e)->Export(first).ok());
  ASSERT_TRUE((*e)->Export(second).ok());
  ASSERT_TRUE((*e)->Flush().ok());

  std::vector<std::string> lines = Lines(ReadFile(path));
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], JsonLinesExporter::FormatItem(FixedSpan()));
  Json c = MustParse(lines[1]);
  EXPECT_EQ(c["parent_span_id"].str(), "0000000000000abc");
  EXPECT_EQ(c["type"].str(), "span");
  Json tr = MustParse(lines[2]);
  EXPECT_EQ(tr["type"].str(), "trace");
  EXPECT_EQ(tr["name"].str(), "agent\nrun");
  EXPECT_EQ(tr["span_id"].str(), "0000000000000050");
  EXPECT_EQ(tr["parent_span_id"].type, Json::kNull);
  EXPECT_EQ(tr["attributes"]["ctxloop.group_id"].str(), "chat-7");
  EXPECT_EQ(tr["attributes"]["ctxloop.metadata.user"].str(), "ann");
  EXPECT_EQ(tr["attributes"]["ctxloop.metadata.bad"].str(), "\xEF\xBF\xBD");
  EXPECT_EQ(tr["end_time"].type, Json::kNull);
  EXPECT_EQ(tr["duration_ns"].Int(), 2000000);
  EXPECT_EQ(tr["finished_off_origin"].boolean, true);
  EXPECT_EQ(tr["started"]["loop"].type, Json::kNull);
  EXPECT_EQ(tr["parent_is_remote"].boolean, false);
  EXPECT_EQ(tr["kind"].str(), "internal");

  ASSERT_TRUE((*e)->Shutdown().ok());
  EXPECT_TRUE((*e)->Shutdown().ok());  // Idempotent.
  EXPECT_EQ((*e)->Export(first).code(), absl::StatusCode::kFailedPrecondition);

  // A new exporter appends unless told to truncate.
  auto again = JsonLinesExporter::Create(path);
  ASSERT_TRUE(again.ok());
  ASSERT_TRUE((*again)->Export(second).ok());
  EXPECT_EQ(Lines(ReadFile(path)).size(), 4u);
}

TEST(JsonLinesExporterTest, WritesTheOpenTelemetryDataModel) {
  SpanData s = FixedSpan();
  s.kind = SpanKind::kConsumer;
  s.status = SpanStatus{StatusCode::kError, "bad \"input\""};
  s.events.push_back(
      SpanEvent{"retry", kT0 + absl::Seconds(1), {{"attempt", int64_t{2}}}, 3});
  SpanLink link;
  link.context.trace_id = TraceId{1, 2};
  link.context.span_id = SpanId{0x77};
  link.context.trace_flags = 1;
  link.context.trace_state = "vendor=x";
  link.attributes = {{"why", std::string("fan-in")}};
  s.links.push_back(link);
  s.scope = InstrumentationScope{"agent", "1.2"};
  s.trace_flags = 0;
  s.trace_state = "a=b";
  s.dropped_attributes_count = 4;
  s.dropped_events_count = 5;
  s.dropped_links_count = 6;
  Json j = MustParse(JsonLinesExporter::FormatItem(s));
  EXPECT_EQ(j["kind"].str(), "consumer");
  EXPECT_EQ(j["status"]["code"].str(), "error");
  EXPECT_EQ(j["status"]["message"].str(), "bad \"input\"");
  ASSERT_EQ(j["events"].array.size(), 1u);
  EXPECT_EQ(j["events"].array[0]["name"].str(), "retry");
  EXPECT_EQ(j["events"].array[0]["time"].str(),
            "2026-01-01T00:00:01.000000000Z");
  EXPECT_EQ(j["events"].array[0]["attributes"]["attempt"].Int(), 2);
  EXPECT_EQ(j["events"].array[0]["dropped_attributes_count"].Int(), 3);
  ASSERT_EQ(j["links"].array.size(), 1u);
  EXPECT_EQ(j["links"].array[0]["trace_id"].str(),
            "00000000000000010000000000000002");
  EXPECT_EQ(j["links"].array[0]["span_id"].str(), "0000000000000077");
  EXPECT_EQ(j["links"].array[0]["trace_flags"].Int(), 1);
  EXPECT_EQ(j["links"].array[0]["trace_state"].str(), "vendor=x");
  EXPECT_EQ(j["links"].array[0]["attributes"]["why"].str(), "fan-in");
  EXPECT_EQ(j["scope"]["name"].str(), "agent");
  EXPECT_EQ(j["scope"]["version"].str(), "1.2");
  EXPECT_EQ(j["trace_flags"].Int(), 0);
  EXPECT_EQ(j["trace_state"].str(), "a=b");
  EXPECT_EQ(j["dropped"]["attributes"].Int(), 4);
  EXPECT_EQ(j["dropped"]["events"].Int(), 5);
  EXPECT_EQ(j["dropped"]["links"].Int(), 6);

  SpanData t;
  t.trace_id = s.trace_id;
  t.span_id = SpanId{0x99};
  t.parent_span_id = SpanId{0x55};
  t.parent_is_remote = true;
  t.attributes = {{"tags", std::vector<std::string>{"a", "b"}}};
  t.kind = SpanKind::kServer;
  t.status.code = StatusCode::kOk;
  Json tr = MustParse(JsonLinesExporter::FormatItem(t));
  EXPECT_EQ(tr["type"].str(), "trace");
  EXPECT_EQ(tr["parent_span_id"].str(), "0000000000000055");
  EXPECT_EQ(tr["parent_is_remote"].boolean, true);
  ASSERT_EQ(tr["attributes"]["tags"].array.size(), 2u);
  EXPECT_EQ(tr["attributes"]["tags"].array[1].str(), "b");
  EXPECT_EQ(tr["kind"].str(), "server");
  EXPECT_EQ(tr["status"]["code"].str(), "ok");
  EXPECT_FALSE(tr["status"].Has("message"));
}

TEST(JsonLinesExporterTest, BadPathIsAStatus) {
  EXPECT_EQ(JsonLinesExporter::Create(TempPath("no/such/dir/x.jsonl"))
                .status()
                .code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(JsonLinesExporter::Create("").status().code(),
            absl::StatusCode::kInvalidArgument);
}

// --------------------------------------------------- ChromeTraceExporter

// ns since the file's origin, from a "ts"/"dur" literal (microseconds).
int64_t Nanos(const Json& v) {
  EXPECT_EQ(v.type, Json::kNumber);
  const std::vector<std::string> parts = absl::StrSplit(v.text, '.');
  int64_t us = 0;
  EXPECT_TRUE(absl::SimpleAtoi(parts[0], &us)) << v.text;
  int64_t frac = 0;
  if (parts.size() > 1) {
    std::string digits = parts[1].substr(0, 3);
    while (digits.size() < 3) digits.push_back('0');
    EXPECT_TRUE(absl::SimpleAtoi(digits, &frac)) << v.text;
  }
  return us * 1000 + frac;
}

struct ChromeScene {
  ContextHandle a = Ctx(1, 2);   // loop 1, thread 101, named "request A"
  ContextHandle a3 = Ctx(1, 3);  // loop 1, thread 101
  ContextHandle b = Ctx(2, 1);   // loop 2, thread 202
  TraceId trace{0x1111, 0x2222};
  SpanData t;
  SpanData s1, s2, s3, s4;

  ChromeScene() {
    t.trace_id = trace;
    t.span_id = SpanId{kRootSpanId};
    t.name = "agent run";
    t.attributes = {{"ctxloop.group_id", std::string("g")},
                    {"ctxloop.metadata.user", std::string("ann")}};
    t.start_time = At(absl::ZeroDuration());
    t.duration = absl::Milliseconds(10);
    t.end_time = At(absl::Milliseconds(10));
    t.started = Site(a, 101, absl::ZeroDuration());
    // Finish called on loop 2, run back on the origin context.
    t.finish_called = Site(b, 202, absl::Milliseconds(9));
    t.finish_ran = Site(a, 101, absl::Microseconds(9500));
    // s1 nests in the trace; s2 overlaps s1 without nesting.
    s1 = Span(trace, 0x51, 0, "s1", Site(a, 101, {}), absl::Milliseconds(1),
              absl::Milliseconds(3));
    s1.attributes = {{"n", int64_t{3}}};
    s2 = Span(trace, 0x52, 0x51, "s2", Site(a, 101, {}), absl::Milliseconds(2),
              absl::Milliseconds(4));
    s2.status = {StatusCode::kError, "failed"};
    // s3 on another context of loop 1, finished from a plain thread.
    s3 = Span(trace, 0x53, 0, "s3", Site(a3, 101, {}), absl::Milliseconds(1),
              absl::Milliseconds(1));
    s3.finish_called = Site(ContextHandle(), 303, absl::Microseconds(2500));
    s3.finish_ran = Site(a3, 101, absl::Microseconds(2600));
    // s4 on a plain thread.
    s4 = Span(trace, 0x54, 0, "s4", Site(ContextHandle(), 404, {}),
              absl::Milliseconds(5), absl::Milliseconds(1));
  }
  std::vector<SpanData> Items() const { return {s1, s2, s3, s4, t}; }
};

struct TrackId {
  int64_t pid, tid;
  bool operator<(const TrackId& o) const {
    return pid != o.pid ? pid < o.pid : tid < o.tid;
  }
  bool operator==(const TrackId& o) const {
    return pid == o.pid && tid == o.tid;
  }
};

TrackId TrackOf(const Json& e) { return {e["pid"].Int(), e["tid"].Int()}; }

const Json* FindEvent(const Json& events, absl::string_view ph,
                      absl::string_view name) {
  for (const Json& e : events.array) {
    if (e["ph"].str() == ph && e["name"].str() == name) return &e;
  }
  return nullptr;
}

TEST(ChromeTraceExporterTest, WritesViewerReadyTraceEventJson) {
  const std::string path = TempPath("trace.json");
  auto created = ChromeTraceExporter::Create(path);
  ASSERT_TRUE(created.ok()) << created.status();
  ChromeTraceExporter& e = **created;
  // An empty but valid trace exists at once.
  EXPECT_EQ(MustParse(ReadFile(path))["traceEvents"].array.size(), 0u);

  ChromeScene scene;
  e.SetContextName(scene.a, "request A");
  ASSERT_TRUE(e.Export(scene.Items()).ok());
  ASSERT_TRUE(e.Flush().ok());
  const std::string text = ReadFile(path);
  EXPECT_EQ(text, e.ToJson());
  EXPECT_FALSE(FileExists(path + ".tmp"));

  Json root = MustParse(text);
  ASSERT_EQ(root.object.size(), 3u);
  EXPECT_EQ(root.object[0].first, "traceEvents");  // Perfetto reads it first.
  EXPECT_EQ(root["displayTimeUnit"].str(), "ms");
  EXPECT_EQ(root["otherData"]["time_origin"].str(),
            "2026-01-01T00:00:00.000000000Z");
  const Json& events = root["traceEvents"];

  // Process and thread names.
  std::map<int64_t, std::string> process_names;
  std::map<int64_t, std::string> thread_names;  // By tid: must be unique.
  std::map<int64_t, int64_t> thread_pid;
  for (const Json& ev : events.array) {
    if (ev["ph"].str() != "M") continue;
    if (ev["name"].str() == "process_name") {
      process_names[ev["pid"].Int()] = ev["args"]["name"].str();
    } else if (ev["name"].str() == "thread_name") {
      const int64_t tid = ev["tid"].Int();
      EXPECT_FALSE(thread_names.count(tid)) << "tid reused: " << tid;
      thread_names[tid] = ev["args"]["name"].str();
      thread_pid[tid] = ev["pid"].Int();
    }
  }
  EXPECT_EQ(process_names[1], "loop 1 (thread 101)");
  EXPECT_EQ(process_names[2], "loop 2 (thread 202)");
  EXPECT_EQ(process_names[2147483647], "non-loop threads");
  std::map<std::string, TrackId> track_by_name;
  for (const auto& [tid, name] : thread_names) {
    track_by_name[name] = {thread_pid[tid], tid};
  }
  ASSERT_TRUE(track_by_name.count("request A"));
  ASSERT_TRUE(track_by_name.count("request A (overlap 1)"));
  ASSERT_TRUE(track_by_name.count("ctx 3"));
  ASSERT_TRUE(track_by_name.count("ctx 1"));
  ASSERT_TRUE(track_by_name.count("thread 303"));
  ASSERT_TRUE(track_by_name.count("thread 404"));
  EXPECT_EQ(track_by_name["request A"].pid, 1);
  EXPECT_EQ(track_by_name["ctx 3"].pid, 1);
  EXPECT_EQ(track_by_name["ctx 1"].pid, 2);
  EXPECT_EQ(track_by_name["thread 404"], (TrackId{2147483647, 404}));

  // Slices: spans and the trace, with ids in args, on their tracks.
  const Json* trace = FindEvent(events, "X", "agent run");
  ASSERT_NE(trace, nullptr);
  EXPECT_EQ((*trace)["cat"].str(), "trace");
  EXPECT_EQ((*trace)["args"]["trace_id"].str(), scene.trace.ToHex());
  EXPECT_EQ((*trace)["args"]["span_id"].str(), "0000000000000050");
  EXPECT_FALSE((*trace)["args"].Has("parent_span_id"));
  EXPECT_EQ((*trace)["args"]["attributes"]["ctxloop.metadata.user"].str(),
            "ann");
  EXPECT_EQ(Nanos((*trace)["ts"]), 0);
  EXPECT_EQ(Nanos((*trace)["dur"]), 10000000);
  EXPECT_EQ(TrackOf(*trace), track_by_name["request A"]);
  for (const char* name : {"s1", "s2", "s3", "s4"}) {
    const Json* s = FindEvent(events, "X", name);
    ASSERT_NE(s, nullptr) << name;
    EXPECT_EQ((*s)["cat"].str(), "span");
    EXPECT_TRUE(IsLowerHex((*s)["args"]["trace_id"].str(), 32)) << name;
    EXPECT_TRUE(IsLowerHex((*s)["args"]["span_id"].str(), 16)) << name;
    EXPECT_TRUE(IsLowerHex((*s)["args"]["parent_span_id"].str(), 16)) << name;
  }
  const Json& s1 = *FindEvent(events, "X", "s1");
  const Json& s2 = *FindEvent(events, "X", "s2");
  EXPECT_EQ(Nanos(s1["ts"]), 1000000);
  EXPECT_EQ(Nanos(s1["dur"]), 3000000);
  EXPECT_EQ(s1["args"]["attributes"]["n"].Int(), 3);
  EXPECT_EQ(s1["args"]["parent_span_id"].str(), "0000000000000050");
  EXPECT_EQ(s2["args"]["status"]["code"].str(), "error");
  EXPECT_EQ(s2["args"]["status"]["description"].str(), "failed");
  EXPECT_EQ(TrackOf(s1), track_by_name["request A"]);
  EXPECT_EQ(TrackOf(s2), track_by_name["request A (overlap 1)"]);
  EXPECT_EQ(TrackOf(*FindEvent(events, "X", "s3")), track_by_name["ctx 3"]);
  EXPECT_EQ(TrackOf(*FindEvent(events, "X", "s4")),
            track_by_name["thread 404"]);

  // Every track's slices nest (what viewers require), and events are in
  // time order.
  std::map<TrackId, std::vector<std::pair<int64_t, int64_t>>> stacks;
  int64_t last_ts = -1;
  for (const Json& ev : events.array) {
    if (ev["ph"].str() == "M") continue;
    const int64_t ts = Nanos(ev["ts"]);
    EXPECT_GE(ts, last_ts);
    last_ts = ts;
    if (ev["ph"].str() != "X") continue;
    const int64_t end = ts + Nanos(ev["dur"]);
    auto& stack = stacks[TrackOf(ev)];
    while (!stack.empty() && stack.back().second <= ts) stack.pop_back();
    if (!stack.empty()) {
      EXPECT_LE(end, stack.back().second)
          << ev["name"].str() << " does not nest";
    }
    stack.emplace_back(ts, end);
  }

  // Finish arrows: loop 2 -> request A for the trace, thread 303 -> ctx 3
  // for s3; each end inside an anchor slice on its track, right after it.
  std::map<uint64_t, std::vector<size_t>> flows;
  for (size_t i = 0; i < events.array.size(); ++i) {
    const Json& ev = events.array[i];
    if (ev["ph"].str() == "s" || ev["ph"].str() == "f") {
      EXPECT_EQ(ev["cat"].str(), "finish");
      flows[ev["id"].Int()].push_back(i);
    }
  }
  ASSERT_EQ(flows.size(), 2u);
  std::set<std::pair<std::string, std::string>> arrows;
  for (const auto& [id, where] : flows) {
    ASSERT_EQ(where.size(), 2u);
    const Json& s = events[where[0]];
    const Json& f = events[where[1]];
    EXPECT_EQ(s["ph"].str(), "s");
    EXPECT_EQ(f["ph"].str(), "f");
    EXPECT_EQ(f["bp"].str(), "e");
    EXPECT_EQ(s["name"].str(), f["name"].str());
    for (size_t i : where) {
      const Json& anchor = events[i - 1];
      const Json& flow = events[i];
      EXPECT_EQ(anchor["ph"].str(), "X");
      EXPECT_EQ(anchor["cat"].str(), "finish");
      EXPECT_EQ(TrackOf(anchor), TrackOf(flow));
      EXPECT_EQ(Nanos(anchor["ts"]), Nanos(flow["ts"]));
      EXPECT_GT(Nanos(anchor["dur"]), 0);
      EXPECT_LE(Nanos(anchor["dur"]), 1000);
    }
    EXPECT_EQ(events[where[0] - 1]["name"].str(), "finish called");
    EXPECT_EQ(events[where[1] - 1]["name"].str(), "finish ran");
    std::string from, to;
    for (const auto& [name, track] : track_by_name) {
      if (track == TrackOf(s)) from = name;
      if (track == TrackOf(f) && name.rfind("request A", 0) == 0) {
        to = "request A";
      } else if (track == TrackOf(f)) {
        to = name;
      }
    }
    arrows.emplace(from, to);
    if (from == "ctx 1") {
      EXPECT_EQ(Nanos(s["ts"]), 9000000);
      EXPECT_EQ(Nanos(f["ts"]), 9500000);
    }
  }
  EXPECT_EQ(arrows, (std::set<std::pair<std::string, std::string>>{
                        {"ctx 1", "request A"}, {"thread 303", "ctx 3"}}));

  ASSERT_TRUE(e.Shutdown().ok());
  EXPECT_EQ(e.Export(scene.Items()).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReadFile(path), text);  // Shutdown wrote the same content.
}

TEST(ChromeTraceExporterTest, NoArrowWhenFinishRanWhereItWasCalled) {
  ChromeScene scene;
  auto e = ChromeTraceExporter::Create(TempPath("plain.json"));
  ASSERT_TRUE(e.ok());
  std::vector<SpanData> items = {scene.s1, scene.s4};  // Same-site finish.
  ASSERT_TRUE((*e)->Export(items).ok());
  Json root = MustParse((*e)->ToJson());
  for (const Json& ev : root["traceEvents"].array) {
    EXPECT_NE(ev["ph"].str(), "s");
    EXPECT_NE(ev["cat"].str(), "finish");
  }
}

// Context names given at NewContext (recorded in the sites) name the
// tracks and reach the JSON lines; SetContextName still wins.
TEST(ChromeTraceExporterTest, ContextNamesFromSitesNameTracks) {
  ChromeScene scene;
  scene.s1.started.context_name = "agent C";
  scene.s1.finish_called.context_name = "agent C";
  scene.s1.finish_ran.context_name = "agent C";
  auto e = ChromeTraceExporter::Create(TempPath("named.json"));
  ASSERT_TRUE(e.ok());
  std::vector<SpanData> items = {scene.s1};
  ASSERT_TRUE((*e)->Export(items).ok());
  Json root;
  std::set<std::string> names;
  root = MustParse((*e)->ToJson());
  for (const Json& ev : root["traceEvents"].array) {
    if (ev["name"].str() == "thread_name")
      names.insert(ev["args"]["name"].str());
  }
  EXPECT_TRUE(names.count("agent C")) << absl::StrJoin(names, ", ");
  (*e)->SetContextName(scene.s1.started.ctx, "explicit");
  names.clear();
  root = MustParse((*e)->ToJson());
  for (const Json& ev : root["traceEvents"].array) {
    if (ev["name"].str() == "thread_name")
      names.insert(ev["args"]["name"].str());
  }
  EXPECT_TRUE(names.count("explicit")) << absl::StrJoin(names, ", ");

  const std::string path = TempPath("named.jsonl");
  JsonLinesExporter::Options options;
  options.truncate = true;
  auto lines = JsonLinesExporter::Create(path, options);
  ASSERT_TRUE(lines.ok());
  ASSERT_TRUE((*lines)->Export(items).ok());
  ASSERT_TRUE((*lines)->Shutdown().ok());
  Json line = MustParse(Lines(ReadFile(path)).at(0));
  EXPECT_EQ(line["started"]["context_name"].str(), "agent C");
}

// A top-level span's parent is its trace's root span (random per trace).
TEST(ChromeTraceExporterTest, TopLevelSpanParentIsTheTracesRootSpanId) {
  ChromeScene scene;
  scene.s1.parent_span_id = SpanId{0x4242};
  auto e = ChromeTraceExporter::Create(TempPath("root.json"));
  ASSERT_TRUE(e.ok());
  std::vector<SpanData> items = {scene.s1};
  ASSERT_TRUE((*e)->Export(items).ok());
  Json root = MustParse((*e)->ToJson());
  const Json* s1 = FindEvent(root["traceEvents"], "X", "s1");
  ASSERT_NE(s1, nullptr);
  EXPECT_EQ((*s1)["args"]["parent_span_id"].str(), "0000000000004242");
}

TEST(ChromeTraceExporterTest, MaxItemsBoundsMemoryAndReports) {
  ChromeTraceExporter::Options options;
  options.max_items = 3;
  auto e = ChromeTraceExporter::Create(TempPath("bounded.json"), options);
  ASSERT_TRUE(e.ok());
  ChromeScene scene;
  EXPECT_EQ((*e)->Export(scene.Items()).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ((*e)->dropped(), 2u);
  Json root = MustParse((*e)->ToJson());
  EXPECT_EQ(root["otherData"]["items_dropped"].str(), "2");
}

TEST(ChromeTraceExporterTest, BadPathIsAStatus) {
  EXPECT_EQ(ChromeTraceExporter::Create(TempPath("no/such/dir/t.json"))
                .status()
                .code(),
            absl::StatusCode::kNotFound);
}

// ------------------------------------------------------ OtlpJsonExporter

const Json* FindAttr(const Json& span, absl::string_view key) {
  for (const Json& kv : span["attributes"].array) {
    if (kv["key"].str() == key) return &kv["value"];
  }
  return nullptr;
}

TEST(OtlpJsonExporterTest, WritesOneExportTraceServiceRequestPerLine) {
  const std::string path = TempPath("otlp.jsonl");
  OtlpJsonExporter::Options options;
  options.service_name = "svc";
  options.truncate = true;
  auto e = OtlpJsonExporter::Create(path, options);
  ASSERT_TRUE(e.ok()) << e.status();

  ChromeScene scene;  // Reuse its trace: s1 top-level, s2 child of s1.
  scene.s2.attributes = {{"d", 2.5},
                         {"b", false},
                         {"i", int64_t{-9000000000}},
                         {"s", std::string("x")},
                         {"nan", std::numeric_limits<double>::quiet_NaN()}};
  std::vector<SpanData> spans = {scene.s1, scene.s2};
  std::vector<SpanData> trace = {scene.t};
  ASSERT_TRUE((*e)->Export(spans).ok());
  ASSERT_TRUE((*e)->Export(trace).ok());  // The trace comes after its spans.
  ASSERT_TRUE((*e)->Shutdown().ok());

  std::vector<std::string> lines = Lines(ReadFile(path));
  ASSERT_EQ(lines.size(), 2u);
  std::vector<Json> all_spans;
  for (const std::string& line : lines) {
    Json req = MustParse(line);
    ASSERT_EQ(req.object.size(), 1u);
    const Json& rs = req["resourceSpans"][0];
    const Json& attr = rs["resource"]["attributes"][0];
    EXPECT_EQ(attr["key"].str(), "service.name");
    EXPECT_EQ(attr["value"]["stringValue"].str(), "svc");
    const Json& ss = rs["scopeSpans"][0];
    EXPECT_EQ(ss["scope"]["name"].str(), "ctxloop");
    EXPECT_EQ(ss["scope"]["version"].str(), "0.1");
    for (const Json& s : ss["spans"].array) all_spans.push_back(s);
  }
  ASSERT_EQ(all_spans.size(), 3u);
  const Json& s1 = all_spans[0];
  const Json& s2 = all_spans[1];
  const Json& tr = all_spans[2];
  for (const Json* s : {&s1, &s2, &tr}) {
    EXPECT_TRUE(IsLowerHex((*s)["traceId"].str(), 32));
    EXPECT_TRUE(IsLowerHex((*s)["spanId"].str(), 16));
    EXPECT_EQ((*s)["kind"].Int(), 1);
    EXPECT_EQ((*s)["startTimeUnixNano"].type, Json::kString);
    EXPECT_EQ((*s)["endTimeUnixNano"].type, Json::kString);
  }
  EXPECT_EQ(s1["traceId"].str(), scene.trace.ToHex());
  EXPECT_EQ(s1["spanId"].str(), "0000000000000051");
  // A top-level span's parent is the trace's span.
  EXPECT_EQ(tr["spanId"].str(), "0000000000000050");
  EXPECT_EQ(s1["parentSpanId"].str(), tr["spanId"].str());
  EXPECT_EQ(s2["parentSpanId"].str(), s1["spanId"].str());
  EXPECT_FALSE(tr.Has("parentSpanId"));
  EXPECT_EQ(tr["name"].str(), "agent run");
  EXPECT_EQ(s1["startTimeUnixNano"].str(),
            absl::StrCat(absl::ToUnixNanos(scene.s1.start_time)));
  EXPECT_EQ(s1["endTimeUnixNano"].str(),
            absl::StrCat(absl::ToUnixNanos(scene.s1.end_time)));
  EXPECT_EQ(s1["startTimeUnixNano"].str(), "1767225600001000000");

  EXPECT_EQ((*FindAttr(s1, "n"))["intValue"].str(), "3");
  EXPECT_EQ((*FindAttr(s2, "i"))["intValue"].str(), "-9000000000");
  EXPECT_EQ((*FindAttr(s2, "d"))["doubleValue"].text, "2.5");
  EXPECT_EQ((*FindAttr(s2, "nan"))["doubleValue"].str(), "NaN");
  EXPECT_EQ((*FindAttr(s2, "b"))["boolValue"].boolean, false);
  EXPECT_EQ((*FindAttr(s2, "s"))["stringValue"].str(), "x");
  EXPECT_EQ((*FindAttr(s1, "thread.id"))["intValue"].str(), "101");
  EXPECT_EQ((*FindAttr(s1, "ctxloop.loop_id"))["intValue"].str(), "1");
  EXPECT_EQ(s2["status"]["code"].Int(), 2);
  EXPECT_EQ(s2["status"]["message"].str(), "failed");
  EXPECT_FALSE(s1.Has("status"));
  EXPECT_EQ((*FindAttr(tr, "ctxloop.group_id"))["stringValue"].str(), "g");
  EXPECT_EQ((*FindAttr(tr, "ctxloop.metadata.user"))["stringValue"].str(),
            "ann");
  EXPECT_EQ((*e)->Export(spans).code(), absl::StatusCode::kFailedPrecondition);
}

TEST(OtlpJsonExporterTest, InvalidIdsAreLeftOutAndReported) {
  const std::string path = TempPath("otlp_bad.jsonl");
  OtlpJsonExporter::Options options;
  options.truncate = true;
  auto e = OtlpJsonExporter::Create(path, options);
  ASSERT_TRUE(e.ok());
  ChromeScene scene;
  SpanData bad = scene.s1;
  bad.trace_id = TraceId();
  std::vector<SpanData> batch = {bad, scene.s2};
  EXPECT_EQ((*e)->Export(batch).code(), absl::StatusCode::kInvalidArgument);
  std::vector<std::string> lines = Lines(ReadFile(path));
  ASSERT_EQ(lines.size(), 1u);
  Json req = MustParse(lines[0]);
  const Json& spans = req["resourceSpans"][0]["scopeSpans"][0]["spans"];
  ASSERT_EQ(spans.array.size(), 1u);
  EXPECT_EQ(spans[0]["name"].str(), "s2");
}

// A processor feeding a file exporter end to end.
TEST(FileExportersTest, BatchProcessorDrainsIntoOtlpFileOnShutdown) {
  const std::string path = TempPath("otlp_batch.jsonl");
  OtlpJsonExporter::Options options;
  options.truncate = true;
  auto exporter = OtlpJsonExporter::Create(path, options);
  ASSERT_TRUE(exporter.ok());
  BatchProcessor::Options bo;
  bo.max_batch_size = 2;
  bo.schedule_delay = absl::InfiniteDuration();
  auto p = BatchProcessor::Create(
      std::shared_ptr<SpanExporter>(std::move(*exporter)), std::move(bo));
  ASSERT_TRUE(p.ok());
  ChromeScene scene;
  (*p)->OnEnd(scene.s1);
  (*p)->OnEnd(scene.s2);
  (*p)->OnEnd(scene.s3);
  (*p)->OnEnd(scene.t);
  ASSERT_TRUE((*p)->Shutdown(absl::Seconds(20)).ok());
  std::vector<std::string> lines = Lines(ReadFile(path));
  ASSERT_EQ(lines.size(), 2u);  // Two batches of two.
  for (const std::string& line : lines) MustParse(line);
}

}  // namespace
}  // namespace ctxloop
