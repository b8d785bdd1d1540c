// Copyright 2026 The ctxloop Authors.
//
// End-to-end tests of the flagship demo: a real StreamServer on loopback,
// real HTTP/1.1 clients on plain sockets (sse_test_client.h), and the traces
// inspected as exported (InMemoryExporter via SimpleProcessor).
//
// The property under test is the seed bug's: the run's trace is started and
// made current on the request context A (loop 1), consumed on the response
// context B, and however the stream ends -- completed, client gone, server
// shutting down -- it is exported exactly once, its finish having run on A,
// on loop 1's thread.

#include <atomic>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "ctxloop/examples/stream_server_lib.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/tests/e2e/sse_test_client.h"
#include "ctxloop/trace/in_memory_exporter.h"
#include "ctxloop/trace/propagation.h"
#include "ctxloop/trace/simple_processor.h"
#include "ctxloop/trace/span_data.h"
#include "ctxloop/trace/tracer.h"
#include "gtest/gtest.h"

namespace ctxloop {
namespace e2e {
namespace {

using examples::RunReport;
using examples::StreamServer;

std::string WantData(int i) {
  return absl::StrCat("{\"index\":", i, ",\"text\":\"token ", i, "\"}");
}

// Checks a complete stream of `n` events followed by `event: done`.
void ExpectFullStream(const FetchResult& r, int n) {
  EXPECT_EQ(r.head.status, 200);
  EXPECT_EQ(r.head.header("content-type"), "text/event-stream");
  EXPECT_EQ(r.head.header("transfer-encoding"), "chunked");
  ASSERT_EQ(r.events.size(), static_cast<size_t>(n + 1));
  for (int i = 0; i < n; ++i) {
    ASSERT_EQ(r.events[i].event, "message") << i;
    ASSERT_EQ(r.events[i].data, WantData(i)) << i;
    ASSERT_EQ(r.events[i].id, absl::StrCat(i)) << i;
  }
  EXPECT_EQ(r.events[n].event, "done");
  EXPECT_EQ(r.events[n].data,
            absl::StrCat("{\"events\":", n, ",\"trace_id\":\"",
                         r.head.header("x-trace-id"), "\"}"));
}

int64_t IntAttribute(const SpanData& s, const std::string& key) {
  for (const auto& [k, v] : s.attributes) {
    if (k == key && std::holds_alternative<int64_t>(v)) {
      return std::get<int64_t>(v);
    }
  }
  return -1;
}

std::string StringAttribute(const SpanData& s, const std::string& key) {
  for (const auto& [k, v] : s.attributes) {
    if (k == key && std::holds_alternative<std::string>(v)) {
      return std::get<std::string>(v);
    }
  }
  return "<none>";
}

class StreamServerE2ETest : public ::testing::Test {
 protected:
  void StartServer(StreamServer::Options options = {}) {
    Tracer::Options t;
    t.processors.push_back(std::make_shared<SimpleProcessor>(exporter_));
    tracer_ = std::make_unique<Tracer>(std::move(t));
    options.tracer = tracer_.get();
    absl::StatusOr<std::unique_ptr<StreamServer>> s =
        StreamServer::Start(std::move(options));
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
    server_.reset();
    tracer_.reset();
  }

  int port() const { return server_->port(); }

  // Waits (10 s at most) until `n` traces were exported. A trace finished
  // while an agent span is still open ends when that span ends, delivered
  // on loop 1 (trace case [F5]): possibly just after the run went idle.
  bool WaitForTraces(size_t n) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (exporter_->traces().size() < n) {
      if (absl::Now() > deadline) return false;
      absl::SleepFor(absl::Milliseconds(1));
    }
    return true;
  }

  // Traces exported so far, by trace id (hex); fails on a duplicate.
  std::map<std::string, SpanData> TracesById() {
    std::map<std::string, SpanData> by_id;
    for (const SpanData& t : exporter_->traces()) {
      EXPECT_TRUE(by_id.emplace(t.trace_id.ToHex(), t).second)
          << "trace exported twice: " << t.trace_id.ToHex();
    }
    return by_id;
  }

  // Checks that the trace of `report` finished on its origin, A.
  void ExpectFinishedOnOrigin(const SpanData& t, const RunReport& report) {
    EXPECT_EQ(t.name, "agent run");
    EXPECT_EQ(t.started.ctx, report.request_ctx);
    EXPECT_EQ(t.finish_ran.ctx, report.request_ctx);
    EXPECT_EQ(t.finish_ran.thread_id, server_->http_thread_id());
    EXPECT_FALSE(t.finished_off_origin);
    EXPECT_TRUE(report.trace_reset_on_origin);
  }

  std::shared_ptr<InMemoryExporter> exporter_ =
      std::make_shared<InMemoryExporter>();
  std::unique_ptr<Tracer> tracer_;  // Outlives server_.
  std::unique_ptr<StreamServer> server_;
};

// (a) All events in order, `event: done`, the trace exported once, finished
// on A on loop 1's thread although it was finished from B; the consumer's
// spans are children of the trace, on B.
TEST_F(StreamServerE2ETest, FullStreamInOrderAndTraceFinishedOnOrigin) {
  StartServer();
  constexpr int kEvents = 20;
  absl::StatusOr<FetchResult> r =
      Fetch(port(), "/run?events=20&delay_ms=1&thread=chat-42");
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectFullStream(*r, kEvents);
  ASSERT_TRUE(server_->WaitForIdle(absl::Seconds(10)));

  const std::vector<RunReport> runs = server_->finished_runs();
  ASSERT_EQ(runs.size(), 1u);
  const RunReport& run = runs[0];
  EXPECT_EQ(run.events_written, kEvents);
  EXPECT_EQ(run.events_emitted, static_cast<uint64_t>(kEvents));
  EXPECT_TRUE(run.producer_completed);
  EXPECT_FALSE(run.producer_saw_closed);
  EXPECT_FALSE(run.client_disconnected);
  EXPECT_TRUE(run.stream_status.ok()) << run.stream_status;
  EXPECT_NE(run.request_ctx, run.response_ctx);
  EXPECT_EQ(run.request_ctx.loop_id(), run.response_ctx.loop_id());
  EXPECT_NE(run.agent_ctx.loop_id(), run.request_ctx.loop_id());

  const std::map<std::string, SpanData> traces = TracesById();
  ASSERT_EQ(traces.size(), 1u);
  ASSERT_EQ(traces.count(r->head.header("x-trace-id")), 1u);
  const SpanData& t = traces.begin()->second;
  EXPECT_EQ(t.trace_id, run.trace_id);
  ExpectFinishedOnOrigin(t, run);
  // The seed scenario: the finish was called on B and ran on A.
  EXPECT_EQ(t.finish_called.ctx, run.response_ctx);
  EXPECT_EQ(StringAttribute(t, "ctxloop.group_id"), "chat-42");
  EXPECT_EQ(StringAttribute(t, "ctxloop.metadata.path"),
            "/run?events=20&delay_ms=1&thread=chat-42");
  EXPECT_EQ(StringAttribute(t, "ctxloop.metadata.events"), "20");

  std::vector<SpanData> writes, steps;
  std::set<uint64_t> span_ids;
  for (const SpanData& s : exporter_->spans()) {
    EXPECT_TRUE(span_ids.insert(s.span_id.value).second) << "span twice";
    EXPECT_EQ(s.trace_id, t.trace_id);
    EXPECT_FALSE(s.finished_off_origin);
    EXPECT_NE(s.status.code, StatusCode::kError);
    if (s.is_root()) continue;  // The trace, checked above.
    EXPECT_EQ(s.parent_span_id, t.span_id) << "a direct child of the trace";
    if (s.name == "write event") writes.push_back(s);
    if (s.name == "agent step") steps.push_back(s);
  }
  ASSERT_EQ(writes.size(), static_cast<size_t>(kEvents));
  ASSERT_EQ(steps.size(), static_cast<size_t>(kEvents));
  for (int i = 0; i < kEvents; ++i) {
    EXPECT_EQ(IntAttribute(writes[i], "index"), i);
    EXPECT_EQ(writes[i].started.ctx, run.response_ctx);
    EXPECT_EQ(writes[i].started.thread_id, server_->http_thread_id());
    EXPECT_EQ(IntAttribute(steps[i], "index"), i);
    EXPECT_EQ(steps[i].started.ctx, run.agent_ctx);
    EXPECT_EQ(steps[i].started.thread_id, server_->agent_thread_id());
    // Each event's write began after its production began. (Not "ended
    // after": the sink may write before the producer closes its span.)
    EXPECT_LE(steps[i].start_time, writes[i].start_time);
  }
  // Spans end before their trace.
  EXPECT_LE(writes.back().end_time, t.end_time);
  const TracerStats stats = tracer_->stats();
  EXPECT_EQ(stats.finishes_on_root, 0u);
  EXPECT_EQ(stats.finishes_off_origin, 0u);
  EXPECT_EQ(stats.rejected_spans, 0u);
}

// (b) The client reads a few events and hangs up: the subscription is
// cancelled, the producer is told (on_closed) and stops early, and the trace
// is still exported once, finished on its origin.
TEST_F(StreamServerE2ETest, ClientDisconnectCancelsStreamAndStopsProducer) {
  StartServer();
  constexpr int kEvents = 500;
  std::string trace_id;
  {
    absl::StatusOr<std::unique_ptr<SseTestClient>> c =
        SseTestClient::Connect(port());
    ASSERT_TRUE(c.ok()) << c.status();
    ASSERT_TRUE((*c)->SendRequest("GET", "/run?events=500&delay_ms=2").ok());
    absl::StatusOr<HttpHead> head = (*c)->ReadHead();
    ASSERT_TRUE(head.ok()) << head.status();
    ASSERT_EQ(head->status, 200);
    trace_id = head->header("x-trace-id");
    for (int i = 0; i < 3; ++i) {
      absl::StatusOr<std::optional<SseEvent>> e = (*c)->NextEvent();
      ASSERT_TRUE(e.ok()) << e.status();
      ASSERT_TRUE(e->has_value());
      EXPECT_EQ((*e)->data, WantData(i));
    }
    (*c)->Close();
  }
  ASSERT_TRUE(server_->WaitForIdle(absl::Seconds(10)));

  const std::vector<RunReport> runs = server_->finished_runs();
  ASSERT_EQ(runs.size(), 1u);
  const RunReport& run = runs[0];
  EXPECT_TRUE(run.client_disconnected);
  EXPECT_EQ(run.stream_status.code(), absl::StatusCode::kCancelled)
      << run.stream_status;
  EXPECT_TRUE(run.producer_saw_closed);
  EXPECT_EQ(run.producer_closed_status.code(), absl::StatusCode::kCancelled);
  EXPECT_FALSE(run.producer_completed);
  EXPECT_GE(run.events_emitted, 3u);
  EXPECT_LT(run.events_emitted, static_cast<uint64_t>(kEvents));
  EXPECT_GE(run.events_written, 3);
  EXPECT_LT(run.events_written, kEvents);

  ASSERT_TRUE(WaitForTraces(1));
  const std::map<std::string, SpanData> traces = TracesById();
  ASSERT_EQ(traces.size(), 1u);
  ASSERT_EQ(traces.count(trace_id), 1u);
  ExpectFinishedOnOrigin(traces.at(trace_id), run);

  size_t steps = 0, errors = 0;
  for (const SpanData& s : exporter_->spans()) {
    EXPECT_EQ(s.trace_id.ToHex(), trace_id);
    steps += s.name == "agent step";
    errors += s.status.code == StatusCode::kError;
  }
  EXPECT_LT(steps, static_cast<size_t>(kEvents));
  EXPECT_LE(errors, 1u);  // At most the step that was cut short.
  EXPECT_EQ(tracer_->stats().finishes_off_origin, 0u);
  const examples::ServerStats stats = server_->stats();
  EXPECT_EQ(stats.runs_cancelled, 1u);
  EXPECT_EQ(stats.runs_completed, 0u);
}

// (c) 50 concurrent clients, each on its own connection and thread: each
// gets its whole stream, and exactly 50 traces are exported, once each.
TEST_F(StreamServerE2ETest, FiftyConcurrentClientsEachGetTheirStream) {
  StartServer();
  constexpr int kClients = 50;
  constexpr int kEvents = 20;
  std::vector<absl::StatusOr<FetchResult>> results(
      kClients, absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&results, i, port = port()] {
      results[i] = Fetch(port, absl::StrCat("/run?events=20&delay_ms=1",
                                            "&thread=client-", i));
    });
  }
  for (std::thread& t : threads) t.join();
  std::set<std::string> header_ids;
  for (int i = 0; i < kClients; ++i) {
    ASSERT_TRUE(results[i].ok())
        << "client " << i << ": " << results[i].status();
    ExpectFullStream(*results[i], kEvents);
    EXPECT_TRUE(
        header_ids.insert(results[i]->head.header("x-trace-id")).second);
  }
  ASSERT_TRUE(server_->WaitForIdle(absl::Seconds(20)));

  const std::vector<RunReport> runs = server_->finished_runs();
  ASSERT_EQ(runs.size(), static_cast<size_t>(kClients));
  const std::map<std::string, SpanData> traces = TracesById();
  ASSERT_EQ(traces.size(), static_cast<size_t>(kClients));
  std::set<std::string> groups;
  for (const RunReport& run : runs) {
    EXPECT_TRUE(run.stream_status.ok()) << run.stream_status;
    EXPECT_EQ(run.events_written, kEvents);
    auto it = traces.find(run.trace_id.ToHex());
    ASSERT_NE(it, traces.end());
    EXPECT_EQ(header_ids.count(it->first), 1u);
    ExpectFinishedOnOrigin(it->second, run);
    EXPECT_TRUE(
        groups.insert(StringAttribute(it->second, "ctxloop.group_id")).second);
  }
  std::map<std::string, int> spans_per_trace;
  for (const SpanData& s : exporter_->spans()) {
    if (!s.is_root()) ++spans_per_trace[s.trace_id.ToHex()];
  }
  ASSERT_EQ(spans_per_trace.size(), static_cast<size_t>(kClients));
  for (const auto& [id, n] : spans_per_trace) EXPECT_EQ(n, 2 * kEvents) << id;
  EXPECT_EQ(server_->stats().runs_completed, static_cast<uint64_t>(kClients));
}

// (d) Bad parameters get 400 with a reason; unknown paths 404; other
// methods 405. None starts a run or a trace.
TEST_F(StreamServerE2ETest, BadRequestsAreRejected) {
  StartServer();
  const char* kBad[] = {
      "/run?events=abc",
      "/run?events=0",
      "/run?events=-3",
      "/run?events=1000001",
      "/run?events=2.5",
      "/run?delay_ms=-1",
      "/run?delay_ms=ten",
      "/run?delay_ms=10001",
      "/run?events=5&events=6",
      "/run?colour=blue",
      "/run?thread=has%20space",
      "/run?events=100000&delay_ms=1000",  // Longer than max_run_duration.
      "/run?events",
  };
  for (const char* target : kBad) {
    absl::StatusOr<FetchResult> r = Fetch(port(), target);
    ASSERT_TRUE(r.ok()) << target << ": " << r.status();
    EXPECT_EQ(r->head.status, 400) << target;
    EXPECT_FALSE(r->body.empty()) << target;
    EXPECT_TRUE(r->events.empty()) << target;
  }
  absl::StatusOr<FetchResult> r = Fetch(port(), "/run?events=abc");
  ASSERT_TRUE(r.ok());
  EXPECT_NE(r->body.find("events must be an integer"), std::string::npos)
      << r->body;

  absl::StatusOr<FetchResult> missing = Fetch(port(), "/walk");
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_EQ(missing->head.status, 404);
  absl::StatusOr<FetchResult> post = Fetch(port(), "/run", "POST");
  ASSERT_TRUE(post.ok()) << post.status();
  EXPECT_EQ(post->head.status, 405);
  EXPECT_EQ(post->head.header("allow"), "GET");

  // The server still serves a good request afterwards.
  absl::StatusOr<FetchResult> good = Fetch(port(), "/run?events=3&delay_ms=0");
  ASSERT_TRUE(good.ok()) << good.status();
  ExpectFullStream(*good, 3);
  ASSERT_TRUE(server_->WaitForIdle(absl::Seconds(10)));
  EXPECT_EQ(exporter_->traces().size(), 1u);
  const examples::ServerStats stats = server_->stats();
  EXPECT_EQ(stats.runs_started, 1u);
  // kBad, the repeated one, /walk and the POST.
  EXPECT_EQ(stats.bad_requests, std::size(kBad) + 3);
}

// Backpressure: a producer far faster than the response (no delay, a
// 2-event buffer) is refused and resumed by on_writable; nothing is lost or
// reordered.
TEST_F(StreamServerE2ETest, BackpressureKeepsEveryEventInOrder) {
  StreamServer::Options options;
  options.stream_options.high_watermark = 2;
  options.stream_options.low_watermark = 0;
  options.stream_options.max_batch = 1;
  StartServer(std::move(options));
  constexpr int kEvents = 300;
  absl::StatusOr<FetchResult> r = Fetch(port(), "/run?events=300&delay_ms=0");
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectFullStream(*r, kEvents);
  ASSERT_TRUE(server_->WaitForIdle(absl::Seconds(10)));
  const std::vector<RunReport> runs = server_->finished_runs();
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_GT(runs[0].refused_full, 0u);
  EXPECT_EQ(runs[0].events_emitted, static_cast<uint64_t>(kEvents));
  const std::map<std::string, SpanData> traces = TracesById();
  ASSERT_EQ(traces.size(), 1u);
  ExpectFinishedOnOrigin(traces.begin()->second, runs[0]);
}

// Loop 1 (the sink's loop) allows one pending cross-thread post, and the
// test holds it full for 300 ms in the middle of a run: the agent's emits
// are refused with kResourceExhausted for a full loop, and no on_writable
// follows those, so the agent retries on its back-off timer; once loop 1 has
// room the run completes with every event in order. Without the retry the
// run stalls for good and the client's read times out.
TEST_F(StreamServerE2ETest, AgentRetriesAfterTheSinkLoopWasFull) {
  StreamServer::Options options;
  options.http_loop_max_pending_foreign = 1;
  StartServer(std::move(options));
  constexpr int kEvents = 8;
  absl::StatusOr<std::unique_ptr<SseTestClient>> c =
      SseTestClient::Connect(port(), /*io_timeout=*/absl::Seconds(5));
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE((*c)->SendRequest("GET", "/run?events=8&delay_ms=20").ok());
  absl::StatusOr<HttpHead> head = (*c)->ReadHead();
  ASSERT_TRUE(head.ok()) << head.status();
  ASSERT_EQ(head->status, 200);
  std::vector<SseEvent> events;
  absl::StatusOr<std::optional<SseEvent>> first = (*c)->NextEvent();
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(first->has_value());
  events.push_back(**first);

  // Fill loop 1: a cross-thread post counts as pending until the loop has
  // run it, so while it blocks the loop holds its one allowed post. (A
  // delivery of the stream may hold it for a moment: wait for room.)
  std::atomic<bool> unblock{false};
  std::atomic<bool> blocking{false};
  const ContextHandle loop1 = server_->http_loop_root();
  absl::Status posted;
  for (int attempt = 0; attempt < 1000; ++attempt) {
    posted = Post(loop1, [&](ContextHandle) {
      blocking.store(true);
      const absl::Time give_up = absl::Now() + absl::Seconds(10);
      while (!unblock.load() && absl::Now() < give_up) {
        absl::SleepFor(absl::Milliseconds(1));
      }
    });
    if (!absl::IsResourceExhausted(posted)) break;
    ASSERT_TRUE(WaitForRoom(loop1, absl::Now() + absl::Seconds(5)).ok());
  }
  ASSERT_TRUE(posted.ok()) << posted;
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_TRUE(blocking.load());
  unblock.store(true);

  while (true) {
    absl::StatusOr<std::optional<SseEvent>> e = (*c)->NextEvent();
    ASSERT_TRUE(e.ok()) << e.status() << " after " << events.size()
                        << " events: the run stalled";
    if (!e->has_value()) break;
    events.push_back(**e);
  }
  FetchResult r;
  r.head = *head;
  r.events = std::move(events);
  ExpectFullStream(r, kEvents);
  ASSERT_TRUE(server_->WaitForIdle(absl::Seconds(10)));
  const std::vector<RunReport> runs = server_->finished_runs();
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_GT(runs[0].refused_loop_full, 0u);
  EXPECT_GE(runs[0].loop_full_retries, runs[0].refused_loop_full);
  EXPECT_EQ(runs[0].events_emitted, static_cast<uint64_t>(kEvents));
  EXPECT_TRUE(runs[0].producer_completed);
  EXPECT_TRUE(runs[0].stream_status.ok()) << runs[0].stream_status;
}

// Two runs on one keep-alive connection: the first run's close callback is
// unregistered before the connection serves the second (ASan would flag a
// stale one when the client finally hangs up).
TEST_F(StreamServerE2ETest, KeepAliveConnectionServesTwoRuns) {
  StartServer();
  absl::StatusOr<std::unique_ptr<SseTestClient>> c =
      SseTestClient::Connect(port());
  ASSERT_TRUE(c.ok()) << c.status();
  for (int round = 0; round < 2; ++round) {
    ASSERT_TRUE((*c)->SendRequest("GET", "/run?events=4&delay_ms=1",
                                  /*keep_alive=*/true)
                    .ok());
    absl::StatusOr<HttpHead> head = (*c)->ReadHead();
    ASSERT_TRUE(head.ok()) << head.status();
    ASSERT_EQ(head->status, 200);
    int n = 0;
    while (true) {
      absl::StatusOr<std::optional<SseEvent>> e = (*c)->NextEvent();
      ASSERT_TRUE(e.ok()) << e.status();
      if (!e->has_value()) break;
      ++n;
    }
    EXPECT_EQ(n, 5);  // 4 events and done.
    ASSERT_TRUE(server_->WaitForIdle(absl::Seconds(10)));
  }
  (*c)->Close();
  // Let the server see the close, then check nothing else happened.
  absl::SleepFor(absl::Milliseconds(50));
  ASSERT_TRUE(server_->WaitForIdle(absl::Seconds(10)));
  const std::vector<RunReport> runs = server_->finished_runs();
  ASSERT_EQ(runs.size(), 2u);
  for (const RunReport& run : runs) {
    EXPECT_TRUE(run.stream_status.ok());
    EXPECT_FALSE(run.client_disconnected);
  }
  EXPECT_EQ(TracesById().size(), 2u);
}

// Shutdown with a stream in flight: the client is told (`event: error`),
// the producer is stopped, and the trace is still exported once, on its
// origin, before the loops are joined.
TEST_F(StreamServerE2ETest, ShutdownEndsLiveStreamsCleanly) {
  StartServer();
  absl::StatusOr<std::unique_ptr<SseTestClient>> c =
      SseTestClient::Connect(port());
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE((*c)->SendRequest("GET", "/run?events=1000&delay_ms=5").ok());
  absl::StatusOr<HttpHead> head = (*c)->ReadHead();
  ASSERT_TRUE(head.ok()) << head.status();
  ASSERT_EQ(head->status, 200);
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<std::optional<SseEvent>> e = (*c)->NextEvent();
    ASSERT_TRUE(e.ok() && e->has_value());
  }
  std::thread stopper([this] { server_->Shutdown(); });
  // The rest of the stream: more events, then the error, then the end.
  std::optional<SseEvent> last;
  while (true) {
    absl::StatusOr<std::optional<SseEvent>> e = (*c)->NextEvent();
    if (!e.ok() || !e->has_value()) break;  // End of body or connection.
    last = **e;
  }
  stopper.join();
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(last->event, "error");
  EXPECT_NE(last->data.find("shutting down"), std::string::npos) << last->data;

  const std::vector<RunReport> runs = server_->finished_runs();
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_TRUE(runs[0].producer_saw_closed);
  EXPECT_FALSE(runs[0].producer_completed);
  const std::map<std::string, SpanData> traces = TracesById();
  ASSERT_EQ(traces.size(), 1u);
  ASSERT_EQ(traces.count(head->header("x-trace-id")), 1u);
  ExpectFinishedOnOrigin(traces.begin()->second, runs[0]);
}

// A second server on a port in use fails cleanly (and leaks nothing).
TEST_F(StreamServerE2ETest, StartOnBusyPortFails) {
  StartServer();
  StreamServer::Options options;
  options.port = port();
  absl::StatusOr<std::unique_ptr<StreamServer>> second =
      StreamServer::Start(std::move(options));
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable)
      << second.status();
  // The first one is unaffected.
  absl::StatusOr<FetchResult> r = Fetch(port(), "/run?events=2&delay_ms=0");
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectFullStream(*r, 2);
}

// W3C Trace Context: a valid traceparent is continued (same trace id; the
// response names the run's span in it and passes tracestate on); an invalid
// one is ignored and a new trace starts; either way the response carries a
// valid traceparent of the run's trace.
TEST_F(StreamServerE2ETest, ContinuesAValidTraceparentIgnoresAnInvalidOne) {
  StartServer();
  const std::string caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
  absl::StatusOr<FetchResult> r =
      Fetch(port(), "/run?events=2&delay_ms=0", "GET",
            {"traceparent: 00-" + caller_trace + "-00f067aa0ba902b7-01",
             "tracestate: vendor=opaque"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->head.header("x-trace-id"), caller_trace);
  std::optional<SpanContext> own = ExtractTraceContext(
      r->head.header("traceparent"), r->head.header("tracestate"));
  ASSERT_TRUE(own.has_value()) << r->head.header("traceparent");
  EXPECT_EQ(own->trace_id.ToHex(), caller_trace);
  EXPECT_NE(own->span_id.ToHex(), "00f067aa0ba902b7");
  EXPECT_TRUE(own->sampled());
  EXPECT_EQ(own->trace_state, "vendor=opaque");

  for (const char* bad :
       {"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01", "garbage"}) {
    absl::StatusOr<FetchResult> b =
        Fetch(port(), "/run?events=1&delay_ms=0", "GET",
              {absl::StrCat("traceparent: ", bad)});
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_EQ(b->head.status, 200) << bad;
    EXPECT_NE(b->head.header("x-trace-id"), caller_trace) << bad;
    std::optional<SpanContext> fresh =
        ExtractTraceContext(b->head.header("traceparent"));
    ASSERT_TRUE(fresh.has_value()) << bad;
    EXPECT_EQ(fresh->trace_id.ToHex(), b->head.header("x-trace-id")) << bad;
  }
  server_->Shutdown();
  const std::vector<RunReport> runs = server_->finished_runs();
  ASSERT_EQ(runs.size(), 7u);
  EXPECT_TRUE(runs[0].remote_parent.valid());
  EXPECT_EQ(runs[0].remote_parent.span_id.ToHex(), "00f067aa0ba902b7");
  for (size_t i = 1; i < runs.size(); ++i) {
    EXPECT_FALSE(runs[i].remote_parent.valid()) << i;
  }
}

}  // namespace
}  // namespace e2e
}  // namespace ctxloop
