// Copyright 2026 The ctxloop Authors.

#include "ctxloop/trace/otlp/otlp_json_exporter.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace ctxloop {

std::string OtlpJsonExporter::FormatRequest(absl::Span<const SpanData> batch,
                                            const std::string& service_name,
                                            size_t* skipped) {
  return otlp::EncodeTraceRequest(
      batch, otlp::Resource::WithServiceName(service_name), skipped);
}

absl::StatusOr<std::unique_ptr<OtlpJsonExporter>> OtlpJsonExporter::Create(
    const std::string& path) {
  return Create(path, Options());
}

absl::StatusOr<std::unique_ptr<OtlpJsonExporter>> OtlpJsonExporter::Create(
    const std::string& path, Options options) {
  trace_internal::AppendFile::Options file_options;
  file_options.truncate = options.truncate;
  file_options.sync_on_flush = options.sync_on_flush;
  absl::StatusOr<std::unique_ptr<trace_internal::AppendFile>> file =
      trace_internal::AppendFile::Open("OtlpJsonExporter", path, file_options);
  if (!file.ok()) return file.status();
  otlp::Resource resource =
      options.resource.attributes.empty()
          ? otlp::Resource::WithServiceName(options.service_name)
          : std::move(options.resource);
  return std::unique_ptr<OtlpJsonExporter>(
      new OtlpJsonExporter(*std::move(file), std::move(resource)));
}

OtlpJsonExporter::OtlpJsonExporter(
    std::unique_ptr<trace_internal::AppendFile> file, otlp::Resource resource)
    : resource_(std::move(resource)), file_(std::move(file)) {}

absl::Status OtlpJsonExporter::Export(absl::Span<const SpanData> batch) {
  if (batch.empty()) return absl::OkStatus();
  size_t skipped = 0;
  std::string line = otlp::EncodeTraceRequest(batch, resource_, &skipped);
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
