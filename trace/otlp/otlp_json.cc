// Copyright 2026 The ctxloop Authors.

#include "ctxloop/trace/otlp/otlp_json.h"

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "ctxloop/trace/export_internal/json_writer.h"

namespace ctxloop {
namespace otlp {
namespace {

using trace_internal::JsonWriter;

// OTLP span flags: the low byte is the W3C trace flags; bit 8 says whether
// bit 9 (the parent or linked span is remote) is known.
constexpr uint32_t kFlagHasIsRemote = 0x100;
constexpr uint32_t kFlagIsRemote = 0x200;

// Unix nanoseconds as the JSON mapping of fixed64: a decimal string.
std::string UnixNanos(absl::Time t) {
  if (t == absl::InfiniteFuture() || t <= absl::UnixEpoch()) return "0";
  return absl::StrCat(absl::ToUnixNanos(t));
}

absl::Time EndOf(absl::Time start, absl::Time end, absl::Duration duration) {
  if (end != absl::InfiniteFuture() && end != absl::InfinitePast()) return end;
  if (duration != absl::InfiniteDuration() && duration >= absl::ZeroDuration())
    return start + duration;
  return start;
}

void WriteDouble(double d, JsonWriter& w) {
  if (std::isnan(d)) {
    w.String("NaN");
  } else if (std::isinf(d)) {
    w.String(d > 0 ? "Infinity" : "-Infinity");
  } else {
    w.Double(d);
  }
}

struct ScalarWriter {
  JsonWriter& w;
  void operator()(const std::string& s) const {
    w.Key("stringValue").String(s);
  }
  void operator()(int64_t i) const {
    w.Key("intValue").String(absl::StrCat(i));
  }
  void operator()(double d) const {
    w.Key("doubleValue");
    WriteDouble(d, w);
  }
  void operator()(bool b) const { w.Key("boolValue").Bool(b); }
};

template <typename T>
void WriteArray(const std::vector<T>& values, JsonWriter& w) {
  w.Key("arrayValue").BeginObject().Key("values").BeginArray();
  for (const T& v : values) {
    w.BeginObject();
    ScalarWriter{w}(static_cast<T>(v));
    w.EndObject();
  }
  w.EndArray().EndObject();
}

void WriteAnyValue(const AttributeValue& value, JsonWriter& w) {
  w.BeginObject();
  if (const auto* s = std::get_if<std::string>(&value)) {
    ScalarWriter{w}(*s);
  } else if (const auto* i = std::get_if<int64_t>(&value)) {
    ScalarWriter{w}(*i);
  } else if (const auto* d = std::get_if<double>(&value)) {
    ScalarWriter{w}(*d);
  } else if (const auto* b = std::get_if<bool>(&value)) {
    ScalarWriter{w}(*b);
  } else if (const auto* sa = std::get_if<std::vector<std::string>>(&value)) {
    WriteArray(*sa, w);
  } else if (const auto* ia = std::get_if<std::vector<int64_t>>(&value)) {
    WriteArray(*ia, w);
  } else if (const auto* da = std::get_if<std::vector<double>>(&value)) {
    WriteArray(*da, w);
  } else if (const auto* ba = std::get_if<std::vector<bool>>(&value)) {
    w.Key("arrayValue").BeginObject().Key("values").BeginArray();
    for (bool b : *ba) {
      w.BeginObject();
      ScalarWriter{w}(b);
      w.EndObject();
    }
    w.EndArray().EndObject();
  }
  // valueless_by_exception: an empty AnyValue.
  w.EndObject();
}

// User attributes (unique keys) plus ctxloop's extras for keys not taken.
class AttributeList {
 public:
  explicit AttributeList(const Attributes* user) : user_(user) {
    if (user_ != nullptr)
      keep_ = trace_internal::UniqueAttributeIndices(*user_);
  }
  void AddExtra(absl::string_view key, AttributeValue value) {
    if (user_ != nullptr) {
      for (size_t i : keep_) {
        if ((*user_)[i].first == key) return;
      }
    }
    for (const auto& kv : extras_) {
      if (kv.first == key) return;
    }
    extras_.emplace_back(std::string(key), std::move(value));
  }
  bool empty() const { return keep_.empty() && extras_.empty(); }
  void Write(JsonWriter& w) const {
    w.BeginArray();
    if (user_ != nullptr) {
      for (size_t i : keep_) WriteOne((*user_)[i], w);
    }
    for (const auto& kv : extras_) WriteOne(kv, w);
    w.EndArray();
  }

 private:
  static void WriteOne(const std::pair<std::string, AttributeValue>& kv,
                       JsonWriter& w) {
    w.BeginObject().Key("key").String(kv.first).Key("value");
    WriteAnyValue(kv.second, w);
    w.EndObject();
  }
  const Attributes* user_;
  std::vector<size_t> keep_;
  Attributes extras_;
};

void WriteAttributes(const AttributeList& attrs, uint32_t dropped,
                     JsonWriter& w) {
  if (!attrs.empty()) {
    w.Key("attributes");
    attrs.Write(w);
  }
  if (dropped > 0) w.Key("droppedAttributesCount").Uint(dropped);
}

void AddSiteExtras(const ExecutionSite& started, bool finished_off_origin,
                   AttributeList& attrs) {
  attrs.AddExtra("thread.id", started.thread_id);
  if (!started.ctx.is_null()) {
    attrs.AddExtra("ctxloop.loop_id", int64_t{started.ctx.loop_id()});
    attrs.AddExtra("ctxloop.context_id", int64_t{started.ctx.context_id()});
    if (!started.context_name.empty()) {
      attrs.AddExtra("ctxloop.context_name", started.context_name);
    }
  }
  if (finished_off_origin) attrs.AddExtra("ctxloop.finished_off_origin", true);
}

// The fields every span has, after the ids and before the attributes.
void WriteSpanHead(const SpanData& s, JsonWriter& w) {
  w.Key("traceId").String(s.trace_id.ToHex());
  w.Key("spanId").String(s.span_id.ToHex());
  if (!s.trace_state.empty()) w.Key("traceState").String(s.trace_state);
  if (s.parent_span_id.valid()) {
    w.Key("parentSpanId").String(s.parent_span_id.ToHex());
  }
  const bool remote = s.parent_is_remote && s.parent_span_id.valid();
  w.Key("flags").Uint(uint32_t{s.trace_flags} | kFlagHasIsRemote |
                      (remote ? kFlagIsRemote : 0));
  w.Key("name").String(s.name);
  int kind = static_cast<int>(s.kind);
  if (kind < 1 || kind > 5) kind = 1;  // Out of range: INTERNAL.
  w.Key("kind").Int(kind);
  w.Key("startTimeUnixNano").String(UnixNanos(s.start_time));
  w.Key("endTimeUnixNano")
      .String(UnixNanos(EndOf(s.start_time, s.end_time, s.duration)));
}

// Events, links and their dropped counts (after the attributes).
void WriteEventsAndLinks(const SpanData& c, JsonWriter& w) {
  if (!c.events.empty()) {
    w.Key("events").BeginArray();
    for (const SpanEvent& e : c.events) {
      w.BeginObject();
      w.Key("timeUnixNano").String(UnixNanos(e.time));
      w.Key("name").String(e.name);
      WriteAttributes(AttributeList(&e.attributes), e.dropped_attributes_count,
                      w);
      w.EndObject();
    }
    w.EndArray();
  }
  if (c.dropped_events_count > 0) {
    w.Key("droppedEventsCount").Uint(c.dropped_events_count);
  }
  if (!c.links.empty()) {
    w.Key("links").BeginArray();
    for (const SpanLink& l : c.links) {
      w.BeginObject();
      w.Key("traceId").String(l.context.trace_id.ToHex());
      w.Key("spanId").String(l.context.span_id.ToHex());
      if (!l.context.trace_state.empty()) {
        w.Key("traceState").String(l.context.trace_state);
      }
      WriteAttributes(AttributeList(&l.attributes), l.dropped_attributes_count,
                      w);
      w.Key("flags").Uint(uint32_t{l.context.trace_flags} | kFlagHasIsRemote |
                          (l.context.remote ? kFlagIsRemote : 0));
      w.EndObject();
    }
    w.EndArray();
  }
  if (c.dropped_links_count > 0) {
    w.Key("droppedLinksCount").Uint(c.dropped_links_count);
  }
}

void WriteStatus(StatusCode code, absl::string_view message, JsonWriter& w) {
  if (code == StatusCode::kUnset) return;
  w.Key("status").BeginObject();
  w.Key("code").Int(static_cast<int>(code));
  if (code == StatusCode::kError && !message.empty()) {
    w.Key("message").String(message);
  }
  w.EndObject();
}

void WriteSpan(const SpanData& s, JsonWriter& w) {
  w.BeginObject();
  WriteSpanHead(s, w);
  AttributeList attrs(&s.attributes);
  AddSiteExtras(s.started, s.finished_off_origin, attrs);
  WriteAttributes(attrs, s.dropped_attributes_count, w);
  WriteEventsAndLinks(s, w);
  WriteStatus(s.status.code, s.status.message, w);
  w.EndObject();
}

bool Representable(const SpanData& s) {
  return s.trace_id.valid() && s.span_id.valid();
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

absl::StatusOr<std::string> PercentDecode(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    const int hi = i + 2 < s.size() ? HexDigit(s[i + 1]) : -1;
    const int lo = i + 2 < s.size() ? HexDigit(s[i + 2]) : -1;
    if (hi < 0 || lo < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad percent escape at offset ", i, " in \"", s, "\""));
    }
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

}  // namespace

Resource Resource::WithServiceName(absl::string_view service_name) {
  Resource r;
  r.attributes.emplace_back("service.name", std::string(service_name));
  return r;
}

absl::StatusOr<Attributes> ParseResourceAttributes(absl::string_view text) {
  Attributes out;
  if (absl::StripAsciiWhitespace(text).empty()) return out;
  for (absl::string_view member : absl::StrSplit(text, ',')) {
    member = absl::StripAsciiWhitespace(member);
    if (member.empty()) continue;
    const size_t eq = member.find('=');
    if (eq == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("resource attribute \"", member, "\" has no '='"));
    }
    absl::StatusOr<std::string> key =
        PercentDecode(absl::StripAsciiWhitespace(member.substr(0, eq)));
    if (!key.ok()) return key.status();
    if (key->empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("resource attribute \"", member, "\" has an empty key"));
    }
    absl::StatusOr<std::string> value =
        PercentDecode(absl::StripAsciiWhitespace(member.substr(eq + 1)));
    if (!value.ok()) return value.status();
    out.emplace_back(*std::move(key), *std::move(value));
  }
  return out;
}

Resource ResourceFromEnvironment(absl::string_view default_service_name,
                                 std::string* warning) {
  Resource r;
  std::string service_name(default_service_name);
  if (const char* env = std::getenv("OTEL_RESOURCE_ATTRIBUTES")) {
    absl::StatusOr<Attributes> parsed = ParseResourceAttributes(env);
    if (parsed.ok()) {
      for (auto& kv : *parsed) {
        if (kv.first == "service.name") {
          service_name = std::get<std::string>(kv.second);
        } else {
          r.attributes.push_back(std::move(kv));
        }
      }
    } else if (warning != nullptr) {
      *warning = absl::StrCat("OTEL_RESOURCE_ATTRIBUTES ignored: ",
                              parsed.status().message());
    }
  }
  if (const char* env = std::getenv("OTEL_SERVICE_NAME")) {
    if (*env != '\0') service_name = env;
  }
  r.attributes.insert(r.attributes.begin(),
                      {"service.name", std::move(service_name)});
  return r;
}

std::string EncodeTraceRequest(absl::Span<const SpanData> batch,
                               const Resource& resource, size_t* skipped) {
  size_t left_out = 0;
  // Group by scope, in order of first appearance (few scopes: linear).
  std::vector<std::pair<InstrumentationScope, std::vector<size_t>>> groups;
  for (size_t i = 0; i < batch.size(); ++i) {
    if (!Representable(batch[i])) {
      ++left_out;
      continue;
    }
    InstrumentationScope scope = batch[i].scope;
    if (scope.name.empty()) scope = {"ctxloop", "0.1"};
    auto it = groups.begin();
    for (; it != groups.end(); ++it) {
      if (it->first.name == scope.name && it->first.version == scope.version)
        break;
    }
    if (it == groups.end()) {
      groups.emplace_back(std::move(scope), std::vector<size_t>{});
      it = groups.end() - 1;
    }
    it->second.push_back(i);
  }

  JsonWriter w;
  w.BeginObject().Key("resourceSpans").BeginArray().BeginObject();
  w.Key("resource").BeginObject();
  AttributeList resource_attrs(&resource.attributes);
  WriteAttributes(resource_attrs, 0, w);
  w.EndObject();
  w.Key("scopeSpans").BeginArray();
  for (const auto& [scope, indices] : groups) {
    w.BeginObject();
    w.Key("scope").BeginObject().Key("name").String(scope.name);
    if (!scope.version.empty()) w.Key("version").String(scope.version);
    w.EndObject();
    w.Key("spans").BeginArray();
    for (size_t i : indices) WriteSpan(batch[i], w);
    w.EndArray().EndObject();
  }
  w.EndArray();              // scopeSpans
  w.EndObject().EndArray();  // resourceSpans
  w.EndObject();
  if (skipped != nullptr) *skipped = left_out;
  return w.Release();
}

}  // namespace otlp
}  // namespace ctxloop
