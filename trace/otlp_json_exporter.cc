// Copyright 2026 The ctxloop Authors.

#include "ctxloop/trace/otlp_json_exporter.h"

#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ctxloop/trace/internal/json_writer.h"

namespace ctxloop {
namespace {

using internal::JsonWriter;

constexpr int kSpanKindInternal = 1;
constexpr int kStatusCodeError = 2;

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

void WriteAnyValue(const AttributeValue& value, JsonWriter& w) {
  w.BeginObject();
  if (const auto* s = std::get_if<std::string>(&value)) {
    w.Key("stringValue").String(*s);
  } else if (const auto* i = std::get_if<int64_t>(&value)) {
    w.Key("intValue").String(absl::StrCat(*i));
  } else if (const auto* d = std::get_if<double>(&value)) {
    w.Key("doubleValue");
    if (std::isnan(*d)) {
      w.String("NaN");
    } else if (std::isinf(*d)) {
      w.String(*d > 0 ? "Infinity" : "-Infinity");
    } else {
      w.Double(*d);
    }
  } else if (const auto* b = std::get_if<bool>(&value)) {
    w.Key("boolValue").Bool(*b);
  }
  // valueless_by_exception: an empty AnyValue.
  w.EndObject();
}

// User attributes (unique keys) plus ctxloop's extras for keys not taken.
class AttributeList {
 public:
  explicit AttributeList(const Attributes* user) : user_(user) {
    if (user_ != nullptr) keep_ = internal::UniqueAttributeIndices(*user_);
  }
  void AddExtra(absl::string_view key, AttributeValue value) {
    if (user_ != nullptr) {
      for (size_t i : keep_) {
        if ((*user_)[i].first == key) return;
      }
    }
    extras_.emplace_back(std::string(key), std::move(value));
  }
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

void AddSiteExtras(const ExecutionSite& started, bool finished_off_origin,
                   AttributeList& attrs) {
  attrs.AddExtra("thread.id", started.thread_id);
  if (!started.ctx.is_null()) {
    attrs.AddExtra("ctxloop.loop_id", int64_t{started.ctx.loop_id()});
    attrs.AddExtra("ctxloop.context_id", int64_t{started.ctx.context_id()});
  }
  if (finished_off_origin) attrs.AddExtra("ctxloop.finished_off_origin", true);
}

void WriteSpanHead(const TraceId& trace_id, SpanId span_id, SpanId parent,
                   absl::string_view name, absl::Time start, absl::Time end,
                   JsonWriter& w) {
  w.Key("traceId").String(trace_id.ToHex());
  w.Key("spanId").String(span_id.ToHex());
  if (parent.valid()) w.Key("parentSpanId").String(parent.ToHex());
  w.Key("name").String(name);
  w.Key("kind").Int(kSpanKindInternal);
  w.Key("startTimeUnixNano").String(UnixNanos(start));
  w.Key("endTimeUnixNano").String(UnixNanos(end));
}

void WriteTraceSpan(const TraceData& t, JsonWriter& w) {
  const SpanId id =
      t.root_span_id.valid() ? t.root_span_id : RootSpanIdFor(t.trace_id);
  w.BeginObject();
  WriteSpanHead(t.trace_id, id, SpanId(), t.workflow_name, t.start_time,
                EndOf(t.start_time, t.end_time, t.duration), w);
  AttributeList attrs(nullptr);
  if (!t.group_id.empty()) attrs.AddExtra("ctxloop.group_id", t.group_id);
  for (const auto& [key, value] : t.metadata) {
    attrs.AddExtra(absl::StrCat("ctxloop.metadata.", key), value);
  }
  AddSiteExtras(t.started, t.finished_off_origin, attrs);
  w.Key("attributes");
  attrs.Write(w);
  w.EndObject();
}

void WriteSpan(const SpanData& s, JsonWriter& w) {
  const SpanId parent =
      s.parent_span_id.valid() ? s.parent_span_id : RootSpanIdFor(s.trace_id);
  w.BeginObject();
  WriteSpanHead(s.trace_id, s.span_id, parent, s.name, s.start_time,
                EndOf(s.start_time, s.end_time, s.duration), w);
  AttributeList attrs(&s.attributes);
  AddSiteExtras(s.started, s.finished_off_origin, attrs);
  if (s.error.has_value() && !s.error->data.empty()) {
    attrs.AddExtra("ctxloop.error.data", s.error->data);
  }
  w.Key("attributes");
  attrs.Write(w);
  if (s.error.has_value()) {
    w.Key("status")
        .BeginObject()
        .Key("code")
        .Int(kStatusCodeError)
        .Key("message")
        .String(s.error->message)
        .EndObject();
  }
  w.EndObject();
}

bool Representable(const ExportItem& item) {
  if (const auto* t = std::get_if<TraceData>(&item)) {
    return t->trace_id.valid();
  }
  if (const auto* s = std::get_if<SpanData>(&item)) {
    return s->trace_id.valid() && s->span_id.valid();
  }
  return false;
}

}  // namespace

std::string OtlpJsonExporter::FormatRequest(absl::Span<const ExportItem> batch,
                                            const std::string& service_name,
                                            size_t* skipped) {
  size_t left_out = 0;
  JsonWriter w;
  w.BeginObject().Key("resourceSpans").BeginArray().BeginObject();
  w.Key("resource").BeginObject().Key("attributes").BeginArray();
  w.BeginObject()
      .Key("key")
      .String("service.name")
      .Key("value")
      .BeginObject()
      .Key("stringValue")
      .String(service_name)
      .EndObject()
      .EndObject();
  w.EndArray().EndObject();
  w.Key("scopeSpans").BeginArray().BeginObject();
  w.Key("scope")
      .BeginObject()
      .Key("name")
      .String("ctxloop")
      .Key("version")
      .String("0.1")
      .EndObject();
  w.Key("spans").BeginArray();
  for (const ExportItem& item : batch) {
    if (!Representable(item)) {
      ++left_out;
    } else if (const auto* t = std::get_if<TraceData>(&item)) {
      WriteTraceSpan(*t, w);
    } else {
      WriteSpan(std::get<SpanData>(item), w);
    }
  }
  w.EndArray();              // spans
  w.EndObject().EndArray();  // scopeSpans
  w.EndObject().EndArray();  // resourceSpans
  w.EndObject();
  if (skipped != nullptr) *skipped = left_out;
  return w.Release();
}

absl::StatusOr<std::unique_ptr<OtlpJsonExporter>> OtlpJsonExporter::Create(
    const std::string& path) {
  return Create(path, Options());
}

absl::StatusOr<std::unique_ptr<OtlpJsonExporter>> OtlpJsonExporter::Create(
    const std::string& path, Options options) {
  internal::AppendFile::Options file_options;
  file_options.truncate = options.truncate;
  file_options.sync_on_flush = options.sync_on_flush;
  absl::StatusOr<std::unique_ptr<internal::AppendFile>> file =
      internal::AppendFile::Open("OtlpJsonExporter", path, file_options);
  if (!file.ok()) return file.status();
  return std::unique_ptr<OtlpJsonExporter>(
      new OtlpJsonExporter(*std::move(file), std::move(options.service_name)));
}

OtlpJsonExporter::OtlpJsonExporter(std::unique_ptr<internal::AppendFile> file,
                                   std::string service_name)
    : service_name_(std::move(service_name)), file_(std::move(file)) {}

absl::Status OtlpJsonExporter::Export(absl::Span<const ExportItem> batch) {
  if (batch.empty()) return absl::OkStatus();
  size_t skipped = 0;
  std::string line = FormatRequest(batch, service_name_, &skipped);
  line.push_back('\n');
  // All left out: nothing to write, but an error after Shutdown all the same.
  if (skipped == batch.size()) line.clear();
  absl::Status status = file_->AppendLines(std::move(line));
  if (status.ok() && skipped > 0) {
    status = absl::InvalidArgumentError(
        absl::StrCat("OtlpJsonExporter: ", skipped, " of ", batch.size(),
                     " items left out: invalid (all-zero) trace or span id"));
  }
  return status;
}

absl::Status OtlpJsonExporter::Flush() { return file_->Flush(); }

absl::Status OtlpJsonExporter::Shutdown() { return file_->Close(); }

}  // namespace ctxloop
