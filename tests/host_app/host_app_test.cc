// Checks that a host workspace can build and use ctxloop's public API, and
// that the configs of ctxloop's bazel/host.bazelrc (imported by this
// workspace's .bazelrc) reach the host's own targets. CI runs it plain and
// under --config=tsan.
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/loop/loop_thread.h"
#include "ctxloop/trace/ids.h"
#include "ctxloop/trace/in_memory_exporter.h"
#include "ctxloop/trace/simple_processor.h"
#include "ctxloop/trace/tracer.h"
#include "gtest/gtest.h"
#include "loop/loop.h"  // The host's own header of the same name.

namespace {

TEST(HostAppTest, PostedTaskRuns) {
  ctxloop::Loop loop;
  absl::StatusOr<ctxloop::ContextHandle> ctx = loop.NewContext();
  ASSERT_TRUE(ctx.ok()) << ctx.status();
  bool ran = false;
  absl::Status s =
      ctxloop::Post(*ctx, [&](ctxloop::ContextHandle c) { ran = true; });
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(loop.RunUntilIdle().ok());
  EXPECT_TRUE(ran);
}

TEST(HostAppTest, PostToEmptyHandleFails) {
  bool ran = false;
  absl::Status s = ctxloop::Post(ctxloop::ContextHandle{},
                                 [&](ctxloop::ContextHandle c) { ran = true; });
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(ran);
}

// README, "Printing ctxloop values": how a host prints handles and ids with
// Debian's Abseil 20220623, whose StrCat/StrFormat do not know AbslStringify
// (added in 20230125): gtest through operator<<, StrFormat("%s") through
// absl::FormatStreamed, StrCat through DebugString()/ToHex(); AbslStringify
// itself with any sink that has Append(string_view).
struct StringSink {
  void Append(absl::string_view s) { out.append(s.data(), s.size()); }
  std::string out;
};

TEST(HostAppTest, PrintsHandlesAndIdsTheWaysReadmeSays) {
  ctxloop::Loop loop;
  absl::StatusOr<ctxloop::ContextHandle> ctx = loop.NewContext("printed");
  ASSERT_TRUE(ctx.ok()) << ctx.status();
  const std::string handle = ctx->DebugString();
  ASSERT_FALSE(handle.empty());
  const ctxloop::TraceId trace_id = ctxloop::NewTraceId();
  const ctxloop::SpanId span_id = ctxloop::NewSpanId();
  ASSERT_EQ(trace_id.ToHex().size(), 32u);
  ASSERT_EQ(span_id.ToHex().size(), 16u);

  EXPECT_EQ(::testing::PrintToString(*ctx), handle);
  EXPECT_EQ(::testing::PrintToString(trace_id), trace_id.ToHex());
  EXPECT_EQ(::testing::PrintToString(span_id), span_id.ToHex());

  EXPECT_EQ(absl::StrFormat("%s", absl::FormatStreamed(*ctx)), handle);
  EXPECT_EQ(absl::StrFormat("%s/%s", absl::FormatStreamed(trace_id),
                            absl::FormatStreamed(span_id)),
            absl::StrCat(trace_id.ToHex(), "/", span_id.ToHex()));

  StringSink sink;
  AbslStringify(sink, *ctx);
  AbslStringify(sink, trace_id);
  AbslStringify(sink, span_id);
  EXPECT_EQ(sink.out, absl::StrCat(handle, trace_id.ToHex(), span_id.ToHex()));

#if defined(ABSL_LTS_RELEASE_VERSION) && ABSL_LTS_RELEASE_VERSION >= 20230125
  // Where Abseil supports it, StrCat and "%v" use AbslStringify directly.
  EXPECT_EQ(absl::StrCat(*ctx, " ", trace_id),
            absl::StrCat(handle, " ", trace_id.ToHex()));
  EXPECT_EQ(absl::StrFormat("%v", span_id), span_id.ToHex());
#endif
}

TEST(HostAppTest, HostHeaderIsItsOwn) {
  EXPECT_STREQ(host_loop::Name(), "host_app");
}

// A trace started on a loop thread and finished from this (another) thread:
// the finish runs on the origin's thread. Under --config=tsan this is the
// cross-thread path a host exercises.
TEST(HostAppTest, TraceFinishedFromAnotherThreadRunsOnItsOrigin) {
  auto exporter = std::make_shared<ctxloop::InMemoryExporter>();
  ctxloop::Tracer::Options options;
  options.processors.push_back(
      std::make_shared<ctxloop::SimpleProcessor>(exporter));
  ctxloop::Tracer tracer(std::move(options));
  ctxloop::LoopThread agent;

  ctxloop::TraceScope trace;
  absl::Status started = agent.Invoke([&](ctxloop::Loop& loop) {
    absl::StatusOr<ctxloop::ContextHandle> ctx = loop.NewContext("agent");
    ASSERT_TRUE(ctx.ok()) << ctx.status();
    trace = tracer.StartTrace(*ctx, "run");
  });
  ASSERT_TRUE(started.ok()) << started;
  ASSERT_TRUE(trace.recording());

  EXPECT_TRUE(trace.Finish().ok());  // From this thread: posted home.
  // Tasks run in order: once this one has run, so has the finish.
  ASSERT_TRUE(agent.Invoke([](ctxloop::Loop&) {}).ok());

  std::vector<ctxloop::SpanData> traces = exporter->traces();
  ASSERT_EQ(traces.size(), 1u);
  EXPECT_FALSE(traces[0].finished_off_origin);
  EXPECT_EQ(traces[0].finish_ran.thread_id, traces[0].started.thread_id);
  EXPECT_NE(traces[0].finish_called.thread_id, traces[0].started.thread_id);
}

// The sanitizer configs of bazel/host.bazelrc set both the compiler flags and
// the runtime options: a test that gets one gets the other.
TEST(HostAppTest, SanitizerConfigReachesHostTargets) {
#if defined(__SANITIZE_THREAD__)
  const bool tsan_built = true;
#else
  const bool tsan_built = false;
#endif
#if defined(__SANITIZE_ADDRESS__)
  const bool asan_built = true;
#else
  const bool asan_built = false;
#endif
  const char* tsan_options = std::getenv("TSAN_OPTIONS");
  const char* asan_options = std::getenv("ASAN_OPTIONS");
  EXPECT_EQ(tsan_built, tsan_options != nullptr &&
                            std::strstr(tsan_options, "halt_on_error=1"));
  EXPECT_EQ(asan_built, asan_options != nullptr &&
                            std::strstr(asan_options, "halt_on_error=1"));
}

}  // namespace
