// Copyright 2026 The ctxloop Authors.
//
// `InMemoryExporter` holds at most `Options::max_items` items: driven past
// the bound, it keeps what fits, counts the rest in `dropped()` and says so
// (`kResourceExhausted`); `Clear()` makes room again.

#include "ctxloop/trace/in_memory_exporter.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace ctxloop {
namespace {

std::vector<SpanData> Spans(int n, const std::string& prefix) {
  std::vector<SpanData> out;
  for (int i = 0; i < n; ++i) {
    SpanData s;
    s.name = prefix + std::to_string(i);
    out.push_back(s);
  }
  return out;
}

TEST(InMemoryExporterTest, DefaultBoundIsStated) {
  EXPECT_EQ(InMemoryExporter::Options().max_items, 1000000u);
}

TEST(InMemoryExporterTest, DropsAndCountsPastMaxItems) {
  InMemoryExporter::Options options;
  options.max_items = 3;
  InMemoryExporter exporter(options);
  EXPECT_TRUE(exporter.Export(Spans(2, "a")).ok());
  absl::Status s = exporter.Export(Spans(2, "b"));
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_EQ(exporter.size(), 3u);
  EXPECT_EQ(exporter.dropped(), 1u);
  // The first ones are kept, in order.
  std::vector<SpanData> spans = exporter.spans();
  ASSERT_EQ(spans.size(), 3u);
  EXPECT_EQ(spans[0].name, "a0");
  EXPECT_EQ(spans[2].name, "b0");
  // Full: nothing more is kept, however much is offered.
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(exporter.Export(Spans(10, "c")).code(),
              absl::StatusCode::kResourceExhausted);
  }
  EXPECT_EQ(exporter.size(), 3u);
  EXPECT_EQ(exporter.dropped(), 1001u);
  // Empty batches record their size, up to the bound as well.
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(exporter.Export({}).ok());
  EXPECT_EQ(exporter.batch_sizes().size(), 3u);
  exporter.Clear();
  EXPECT_TRUE(exporter.Export(Spans(3, "d")).ok());
  EXPECT_EQ(exporter.size(), 3u);
  EXPECT_EQ(exporter.dropped(), 1001u);
}

}  // namespace
}  // namespace ctxloop
