// Copyright 2026 The ctxloop Authors.

#include "ctxloop/trace/json_lines/json_lines_exporter.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "ctxloop/trace/export_internal/json_writer.h"

namespace ctxloop {
namespace {

using trace_internal::JsonWriter;

void WriteTime(absl::Time t, JsonWriter& w) {
  const std::string s = trace_internal::FormatRfc3339Nanos(t);
  if (s.empty()) {
    w.Null();
  } else {
    w.String(s);
  }
}

void WriteDuration(absl::Duration d, JsonWriter& w) {
  if (d == absl::InfiniteDuration() || d == -absl::InfiniteDuration()) {
    w.Null();
  } else {
    w.Int(absl::ToInt64Nanoseconds(d));
  }
}

void WriteSite(const ExecutionSite& site, JsonWriter& w) {
  w.BeginObject();
  w.Key("loop");
  if (site.ctx.is_null()) {
    w.Null();
  } else {
    w.Uint(site.ctx.loop_id());
  }
  w.Key("context");
  if (site.ctx.is_null()) {
    w.Null();
  } else {
    w.Uint(site.ctx.context_id());
  }
  if (!site.context_name.empty()) {
    w.Key("context_name").String(site.context_name);
  }
  w.Key("thread").Int(site.thread_id);
  w.Key("time");
  WriteTime(site.time, w);
  w.EndObject();
}

// Times and sites, shared by traces and spans.
template <typename Data>
void WriteTimes(const Data& d, JsonWriter& w) {
  w.Key("start_time");
  WriteTime(d.start_time, w);
  w.Key("end_time");
  WriteTime(d.end_time, w);
  w.Key("duration_ns");
  WriteDuration(d.duration, w);
}

template <typename Data>
void WriteSites(const Data& d, JsonWriter& w) {
  w.Key("started");
  WriteSite(d.started, w);
  w.Key("finish_called");
  WriteSite(d.finish_called, w);
  w.Key("finish_ran");
  WriteSite(d.finish_ran, w);
  w.Key("finished_off_origin").Bool(d.finished_off_origin);
}

const char* KindName(SpanKind kind) {
  switch (kind) {
    case SpanKind::kInternal:
      return "internal";
    case SpanKind::kServer:
      return "server";
    case SpanKind::kClient:
      return "client";
    case SpanKind::kProducer:
      return "producer";
    case SpanKind::kConsumer:
      return "consumer";
  }
  return "internal";  // Out of range: written as the default kind.
}

const char* StatusName(StatusCode code) {
  switch (code) {
    case StatusCode::kUnset:
      return "unset";
    case StatusCode::kOk:
      return "ok";
    case StatusCode::kError:
      return "error";
  }
  return "unset";
}

// The OpenTelemetry data model shared by traces and spans: kind, status,
// events, links, instrumentation scope, W3C flags and state, dropped counts.
void WriteModel(const SpanData& d, JsonWriter& w) {
  w.Key("kind").String(KindName(d.kind));
  w.Key("status").BeginObject().Key("code").String(StatusName(d.status.code));
  if (!d.status.message.empty()) w.Key("message").String(d.status.message);
  w.EndObject();
  w.Key("events").BeginArray();
  for (const SpanEvent& e : d.events) {
    w.BeginObject().Key("name").String(e.name).Key("time");
    WriteTime(e.time, w);
    w.Key("attributes");
    trace_internal::WriteAttributesObject(e.attributes, w);
    w.Key("dropped_attributes_count").Uint(e.dropped_attributes_count);
    w.EndObject();
  }
  w.EndArray();
  w.Key("links").BeginArray();
  for (const SpanLink& l : d.links) {
    w.BeginObject()
        .Key("trace_id")
        .String(l.context.trace_id.ToHex())
        .Key("span_id")
        .String(l.context.span_id.ToHex())
        .Key("trace_flags")
        .Uint(l.context.trace_flags)
        .Key("trace_state")
        .String(l.context.trace_state)
        .Key("attributes");
    trace_internal::WriteAttributesObject(l.attributes, w);
    w.Key("dropped_attributes_count").Uint(l.dropped_attributes_count);
    w.EndObject();
  }
  w.EndArray();
  w.Key("scope")
      .BeginObject()
      .Key("name")
      .String(d.scope.name)
      .Key("version")
      .String(d.scope.version)
      .EndObject();
  w.Key("trace_flags").Uint(d.trace_flags);
  w.Key("trace_state").String(d.trace_state);
  w.Key("dropped")
      .BeginObject()
      .Key("attributes")
      .Uint(d.dropped_attributes_count)
      .Key("events")
      .Uint(d.dropped_events_count)
      .Key("links")
      .Uint(d.dropped_links_count)
      .EndObject();
}

void WriteSpan(const SpanData& s, JsonWriter& w) {
  w.BeginObject();
  w.Key("type").String(s.is_root() ? "trace" : "span");
  w.Key("trace_id").String(s.trace_id.ToHex());
  w.Key("span_id").String(s.span_id.ToHex());
  w.Key("parent_span_id");
  if (s.parent_span_id.valid()) {
    w.String(s.parent_span_id.ToHex());
  } else {
    w.Null();
  }
  w.Key("parent_is_remote").Bool(s.parent_is_remote);
  w.Key("name").String(s.name);
  w.Key("attributes");
  trace_internal::WriteAttributesObject(s.attributes, w);
  WriteTimes(s, w);
  WriteModel(s, w);
  WriteSites(s, w);
  w.EndObject();
}

}  // namespace

absl::StatusOr<std::unique_ptr<JsonLinesExporter>> JsonLinesExporter::Create(
    const std::string& path) {
  return Create(path, Options());
}

absl::StatusOr<std::unique_ptr<JsonLinesExporter>> JsonLinesExporter::Create(
    const std::string& path, Options options) {
  trace_internal::AppendFile::Options file_options;
  file_options.truncate = options.truncate;
  file_options.sync_on_flush = options.sync_on_flush;
  absl::StatusOr<std::unique_ptr<trace_internal::AppendFile>> file =
      trace_internal::AppendFile::Open("JsonLinesExporter", path, file_options);
  if (!file.ok()) return file.status();
  return std::unique_ptr<JsonLinesExporter>(
      new JsonLinesExporter(*std::move(file)));
}

JsonLinesExporter::JsonLinesExporter(
    std::unique_ptr<trace_internal::AppendFile> file)
    : file_(std::move(file)) {}

std::string JsonLinesExporter::FormatItem(const SpanData& item) {
  JsonWriter w;
  WriteSpan(item, w);
  return w.Release();
}

absl::Status JsonLinesExporter::Export(absl::Span<const SpanData> batch) {
  if (batch.empty()) return absl::OkStatus();
  std::string text;
  for (const SpanData& item : batch) {
    absl::StrAppend(&text, FormatItem(item), "\n");
  }
  return file_->AppendLines(std::move(text));
}

absl::Status JsonLinesExporter::Flush() { return file_->Flush(); }

absl::Status JsonLinesExporter::Shutdown() { return file_->Close(); }

}  // namespace ctxloop
