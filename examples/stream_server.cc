// Copyright 2026 The ctxloop Authors.
//
// stream_server: the flagship demo. Serves `GET /run?events=N&delay_ms=M`
// as server-sent events from a simulated agent (see stream_server_lib.h),
// traces every run, and writes the traces as a Chrome trace file.
//
//   bazel run //examples:stream_server                  # serves on :8080
//   curl -N 'http://127.0.0.1:8080/run?events=20&delay_ms=50'
//   bazel run //examples:stream_server -- --self_test   # one request, checked
//
// Tracing: a `Tracer` with one `BatchProcessor` that exports to a
// `ChromeTraceExporter` (--trace_out) and, fanned out, a checker that counts
// what was exported and checks each trace once: for --self_test an
// `InMemoryExporter`; in server mode, which runs for as long as it is left
// running, a bounded `ExportLedger` (the most recent 4,096 traces and 65,536
// span ids) and a Chrome exporter that keeps at most --trace_max_items items
// (later ones are dropped and counted), so memory does not grow with the
// runs served; with
// --otlp_endpoint, a second `BatchProcessor` sends them to an OpenTelemetry
// collector (Jaeger, ...) with `OtlpHttpExporter`. A request's W3C
// `traceparent` is continued and the response carries the run's own:
//
//   tools/jaeger.sh start
//   bazel run //examples:stream_server -- --otlp_endpoint=http://127.0.0.1:4318
//   tp=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
//   curl -N -H "traceparent: $tp" 'http://127.0.0.1:8080/run?events=5'
//   curl -s http://127.0.0.1:16686/api/traces/4bf92f3577b34da6a3ce929d0e0e4736
//
// --self_test starts the server on an ephemeral port and fetches one run
// with libevent's own HTTP client, on a third ctxloop loop, printing each
// event as it arrives; then it checks the events, the trace, where the
// trace's finish ran, and exits 0 only if all is well.

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "ctxloop/examples/fanout_exporter.h"
#include "ctxloop/examples/stream_server_lib.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/loop/loop_thread.h"
#include "ctxloop/loop/mutex.h"
#include "ctxloop/trace/batch_processor.h"
#include "ctxloop/trace/chrome/chrome_trace_exporter.h"
#include "ctxloop/trace/in_memory_exporter.h"
#include "ctxloop/trace/otlp/otlp_http_exporter.h"
#include "ctxloop/trace/tracer.h"

ABSL_FLAG(int, port, 8080,
          "Port to listen on in server mode (--self_test uses an ephemeral "
          "port).");
ABSL_FLAG(bool, self_test, false,
          "Start on an ephemeral port, make one real request to ourselves, "
          "check the stream and its trace, exit 0 if all is well.");
ABSL_FLAG(std::string, trace_out, "/tmp/ctxloop_trace.json",
          "Chrome trace file to write (open in https://ui.perfetto.dev).");
ABSL_FLAG(std::string, otlp_endpoint, "",
          "Also export traces over OTLP/HTTP to this collector base URL "
          "(e.g. http://127.0.0.1:4318 for Jaeger; /v1/traces is appended). "
          "The OTEL_EXPORTER_OTLP_* and OTEL_SERVICE_NAME environment "
          "variables apply too.");
ABSL_FLAG(int, trace_max_items, 20000,
          "Server mode: items (spans and traces) the Chrome trace file keeps "
          "in memory, at most; later ones are dropped and counted.");
ABSL_FLAG(int, events, 20,
          "Events per run when the query has no events= (and for "
          "--self_test).");
ABSL_FLAG(int, delay_ms, 5,
          "Delay per event when the query has no delay_ms= (and for "
          "--self_test).");

namespace ctxloop {
namespace examples {
namespace {

// --- Tracing -----------------------------------------------------------------

// Server mode's Chrome sink: passes items on until the Chrome exporter is
// full (--trace_max_items), then counts them instead: one log line, not an
// export failure per batch.
class UntilFull final : public SpanExporter {
 public:
  explicit UntilFull(std::shared_ptr<SpanExporter> inner)
      : inner_(std::move(inner)) {}
  absl::Status Export(absl::Span<const SpanData> batch) override {
    if (full_.load()) return absl::OkStatus();
    absl::Status s = inner_->Export(batch);
    if (absl::IsResourceExhausted(s)) {
      if (!full_.exchange(true)) {
        std::fprintf(stderr,
                     "stream_server: the Chrome trace is full "
                     "(--trace_max_items); later runs are not in it\n");
      }
      return absl::OkStatus();
    }
    return s;
  }
  absl::Status Flush() override { return inner_->Flush(); }
  absl::Status Shutdown() override { return inner_->Shutdown(); }
  bool full() const { return full_.load(); }

 private:
  const std::shared_ptr<SpanExporter> inner_;
  std::atomic<bool> full_{false};
};

struct Tracing {
  std::shared_ptr<InMemoryExporter> memory;  // --self_test only.
  std::shared_ptr<ExportLedger> ledger;      // Server mode only.
  std::shared_ptr<UntilFull> chrome_full;    // Server mode only.
  std::shared_ptr<ChromeTraceExporter> chrome;
  std::shared_ptr<OtlpHttpExporter> otlp;  // With --otlp_endpoint.
  std::unique_ptr<Tracer> tracer;
};

// `bounded`: server mode (see the file comment).
absl::StatusOr<Tracing> MakeTracing(const std::string& trace_out,
                                    const std::string& otlp_endpoint,
                                    bool bounded) {
  Tracing t;
  ChromeTraceExporter::Options chrome_options;
  std::shared_ptr<SpanExporter> checker;
  if (bounded) {
    chrome_options.max_items =
        static_cast<size_t>(std::max(1, absl::GetFlag(FLAGS_trace_max_items)));
    t.ledger = std::make_shared<ExportLedger>();
    checker = t.ledger;
  } else {
    t.memory = std::make_shared<InMemoryExporter>();
    checker = t.memory;
  }
  absl::StatusOr<std::unique_ptr<ChromeTraceExporter>> chrome =
      ChromeTraceExporter::Create(trace_out, chrome_options);
  if (!chrome.ok()) return chrome.status();
  t.chrome = std::move(*chrome);
  std::shared_ptr<SpanExporter> chrome_sink = t.chrome;
  if (bounded) {
    t.chrome_full = std::make_shared<UntilFull>(t.chrome);
    chrome_sink = t.chrome_full;
  }
  auto fan = std::make_shared<FanOutExporter>(
      std::vector<std::shared_ptr<SpanExporter>>{chrome_sink, checker});
  BatchProcessor::Options batch_options;
  batch_options.schedule_delay = absl::Milliseconds(500);
  absl::StatusOr<std::unique_ptr<BatchProcessor>> batch =
      BatchProcessor::Create(fan, std::move(batch_options));
  if (!batch.ok()) return batch.status();
  Tracer::Options options;
  options.processors.push_back(
      std::shared_ptr<BatchProcessor>(std::move(*batch)));
  if (!otlp_endpoint.empty()) {
    OtlpHttpExporter::Options base;
    base.resource = otlp::Resource::WithServiceName("ctxloop-stream-server");
    absl::StatusOr<OtlpHttpExporter::Options> o =
        OtlpHttpExporter::OptionsFromEnvironment(std::move(base));
    if (!o.ok()) return o.status();
    o->endpoint = OtlpHttpExporter::TracesUrl(otlp_endpoint);
    absl::StatusOr<std::unique_ptr<OtlpHttpExporter>> otlp =
        OtlpHttpExporter::Create(*std::move(o));
    if (!otlp.ok()) return otlp.status();
    t.otlp = *std::move(otlp);
    BatchProcessor::Options otlp_batch;
    otlp_batch.schedule_delay = absl::Milliseconds(500);
    absl::StatusOr<std::unique_ptr<BatchProcessor>> b =
        BatchProcessor::Create(t.otlp, std::move(otlp_batch));
    if (!b.ok()) return b.status();
    options.processors.push_back(
        std::shared_ptr<BatchProcessor>(std::move(*b)));
  }
  t.tracer = std::make_unique<Tracer>(std::move(options));
  return t;
}

// Names the run's contexts in the Chrome trace (default: "ctx <id>").
void NameContexts(ChromeTraceExporter& chrome, const RunReport& r) {
  chrome.SetContextName(r.request_ctx,
                        absl::StrCat("run ", r.run_id, ": A request"));
  chrome.SetContextName(r.response_ctx,
                        absl::StrCat("run ", r.run_id, ": B response"));
  chrome.SetContextName(r.agent_ctx,
                        absl::StrCat("run ", r.run_id, ": C agent"));
}

// What was exported, checked against the server's run reports: every run's
// trace exactly once, every span exactly once and in a known trace.
struct ExportCheck {
  size_t traces = 0;
  size_t spans = 0;
  std::vector<std::string> problems;
};

// The server-mode check: no duplicate among the remembered ids, and each
// remembered run's trace exported once (all of them while none was
// forgotten).
ExportCheck CheckLedger(const ExportLedger& ledger,
                        const std::vector<RunReport>& runs) {
  ExportCheck c;
  const ExportLedger::Stats s = ledger.stats();
  c.traces = s.traces;
  c.spans = s.spans;
  if (s.duplicate_traces > 0 || s.duplicate_spans > 0) {
    c.problems.push_back(absl::StrCat(s.duplicate_traces, " traces and ",
                                      s.duplicate_spans,
                                      " spans exported twice"));
  }
  for (const RunReport& r : runs) {
    if (!r.trace_id.valid()) continue;
    const int n = ledger.ExportCount(r.trace_id.ToHex());
    if (n < 0 && s.forgotten_traces > 0) continue;  // Too old to tell.
    if (n != 1) {
      c.problems.push_back(absl::StrCat("run ", r.run_id, ": trace ",
                                        r.trace_id.ToHex(), " exported ",
                                        std::max(n, 0), " times"));
    }
  }
  return c;
}

ExportCheck CheckExports(const InMemoryExporter& memory,
                         const std::vector<RunReport>& runs) {
  ExportCheck c;
  const std::vector<SpanData> traces = memory.traces();
  const std::vector<SpanData> spans = memory.spans();
  c.traces = traces.size();
  c.spans = spans.size() - traces.size();  // Not counting the root spans.
  std::map<std::string, int> trace_count;
  for (const SpanData& t : traces) ++trace_count[t.trace_id.ToHex()];
  for (const auto& [id, n] : trace_count) {
    if (n != 1) {
      c.problems.push_back(
          absl::StrCat("trace ", id, " exported ", n, " times"));
    }
  }
  for (const RunReport& r : runs) {
    if (!r.trace_id.valid()) continue;
    if (trace_count.count(r.trace_id.ToHex()) == 0) {
      c.problems.push_back(absl::StrCat("run ", r.run_id, ": trace ",
                                        r.trace_id.ToHex(), " not exported"));
    }
  }
  if (traces.size() != runs.size()) {
    c.problems.push_back(absl::StrCat(traces.size(), " traces exported for ",
                                      runs.size(), " runs"));
  }
  std::set<uint64_t> span_ids;
  for (const SpanData& s : spans) {
    if (!span_ids.insert(s.span_id.value).second) {
      c.problems.push_back(
          absl::StrCat("span ", s.span_id.ToHex(), " exported twice"));
    }
    if (trace_count.count(s.trace_id.ToHex()) == 0) {
      c.problems.push_back(absl::StrCat("span ", s.span_id.ToHex(),
                                        " of unknown trace ",
                                        s.trace_id.ToHex()));
    }
  }
  return c;
}

// --- SSE ---------------------------------------------------------------------

struct SseEvent {
  std::string event = "message";
  std::string id;
  std::string data;
};

// Splits a server-sent-event body into events, however it is chunked.
class SseParser {
 public:
  std::vector<SseEvent> Feed(absl::string_view bytes) {
    buf_.append(bytes.data(), bytes.size());
    std::vector<SseEvent> out;
    size_t end;
    while ((end = buf_.find("\n\n")) != std::string::npos) {
      const std::string block = buf_.substr(0, end);
      buf_.erase(0, end + 2);
      SseEvent e;
      bool any = false;
      size_t pos = 0;
      while (pos <= block.size()) {
        size_t nl = block.find('\n', pos);
        if (nl == std::string::npos) nl = block.size();
        absl::string_view line(block.data() + pos, nl - pos);
        pos = nl + 1;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.empty() || line.front() == ':') continue;
        const size_t colon = line.find(':');
        absl::string_view field = line.substr(0, colon);
        absl::string_view value =
            colon == absl::string_view::npos ? "" : line.substr(colon + 1);
        if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
        any = true;
        if (field == "event") e.event = std::string(value);
        if (field == "id") e.id = std::string(value);
        if (field == "data") {
          if (!e.data.empty()) e.data.push_back('\n');
          e.data.append(value.data(), value.size());
        }
      }
      if (any) out.push_back(std::move(e));
    }
    return out;
  }

 private:
  std::string buf_;
};

// --- The self-test's client: libevent's HTTP client on a third loop
// ------------

struct FetchResult {
  int status = 0;
  std::string content_type;
  std::string trace_id;
  std::vector<SseEvent> events;
  bool finished = false;  // The response ended normally.
  std::string error;
};

class Fetch {
 public:
  using OnEvent = std::function<void(const SseEvent&)>;

  // GET http://127.0.0.1:<port><target>; `on_event` runs on the client's
  // loop as each event arrives.
  static FetchResult Run(int port, const std::string& target,
                         absl::Duration timeout, OnEvent on_event) {
    Fetch f(std::move(on_event));
    LoopThread client_loop;
    evhttp_connection* conn = nullptr;
    (void)client_loop.Invoke([&](Loop& loop) {
      conn = evhttp_connection_base_new(loop.base(), nullptr, "127.0.0.1",
                                        static_cast<uint16_t>(port));
      if (conn == nullptr) {
        f.Done("cannot create a connection");
        return;
      }
      evhttp_request* req = evhttp_request_new(&Fetch::OnDone, &f);
      evhttp_request_set_header_cb(req, &Fetch::OnHeaders);
      evhttp_request_set_chunked_cb(req, &Fetch::OnChunk);
      evhttp_request_set_error_cb(req, &Fetch::OnError);
      evhttp_add_header(evhttp_request_get_output_headers(req), "Host",
                        "127.0.0.1");
      // On failure libevent frees the request and calls OnDone.
      (void)evhttp_make_request(conn, req, EVHTTP_REQ_GET, target.c_str());
    });
    {
      const auto deadline =
          std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(timeout);
      MutexLock lock(&f.mu_);
      while (!f.done_) {
        if (!f.done_cv_.WaitUntil(&f.mu_, deadline) &&
            std::chrono::steady_clock::now() >= deadline) {
          break;
        }
      }
      if (!f.done_) f.result_.error = "timed out";
    }
    // Freed on its loop; no callback runs after this.
    (void)client_loop.Invoke([&](Loop&) {
      if (conn != nullptr) evhttp_connection_free(conn);
    });
    MutexLock lock(&f.mu_);
    return f.result_;
  }

 private:
  explicit Fetch(OnEvent on_event) : on_event_(std::move(on_event)) {}

  static int OnHeaders(evhttp_request* req, void* arg) {
    Fetch* f = static_cast<Fetch*>(arg);
    MutexLock lock(&f->mu_);
    f->result_.status = evhttp_request_get_response_code(req);
    const evkeyvalq* h = evhttp_request_get_input_headers(req);
    const char* ct = evhttp_find_header(h, "Content-Type");
    const char* tid = evhttp_find_header(h, "X-Trace-Id");
    f->result_.content_type = ct != nullptr ? ct : "";
    f->result_.trace_id = tid != nullptr ? tid : "";
    return 0;
  }

  static void OnChunk(evhttp_request* req, void* arg) {
    static_cast<Fetch*>(arg)->Drain(req);
  }

  static void OnError(evhttp_request_error error, void* arg) {
    Fetch* f = static_cast<Fetch*>(arg);
    MutexLock lock(&f->mu_);
    f->result_.error = absl::StrCat("evhttp request error ", error);
  }

  static void OnDone(evhttp_request* req, void* arg) {
    Fetch* f = static_cast<Fetch*>(arg);
    if (req == nullptr || evhttp_request_get_response_code(req) == 0) {
      f->Done("no response");
      return;
    }
    f->Drain(req);  // A body that was not chunked arrives here.
    {
      MutexLock lock(&f->mu_);
      if (f->result_.status == 0) {
        f->result_.status = evhttp_request_get_response_code(req);
      }
      f->result_.finished = f->result_.error.empty();
    }
    f->Done("");
  }

  void Drain(evhttp_request* req) {
    evbuffer* in = evhttp_request_get_input_buffer(req);
    const size_t n = evbuffer_get_length(in);
    if (n == 0) return;
    std::string bytes(n, '\0');
    evbuffer_remove(in, bytes.data(), n);
    for (SseEvent& e : parser_.Feed(bytes)) {
      if (on_event_) on_event_(e);
      MutexLock lock(&mu_);
      result_.events.push_back(std::move(e));
    }
  }

  void Done(const std::string& error) {
    MutexLock lock(&mu_);
    if (!error.empty() && result_.error.empty()) result_.error = error;
    done_ = true;
    done_cv_.SignalAll();
  }

  OnEvent on_event_;
  SseParser parser_;  // Client loop only.
  Mutex mu_;
  CondVar done_cv_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  FetchResult result_ ABSL_GUARDED_BY(mu_);
};

// --- Modes -------------------------------------------------------------------

std::string Where(const ExecutionSite& site) {
  return absl::StrCat(site.ctx.DebugString(), ", thread ", site.thread_id);
}

int SelfTest(Tracing& tracing, int events, int delay_ms,
             const std::string& trace_out) {
  StreamServer::Options options;
  options.port = 0;
  options.tracer = tracing.tracer.get();
  options.default_events = std::max(1, events);
  options.default_delay = absl::Milliseconds(std::max(0, delay_ms));
  ChromeTraceExporter* chrome = tracing.chrome.get();
  options.on_run_finished = [chrome](const RunReport& r) {
    NameContexts(*chrome, r);
  };
  absl::StatusOr<std::unique_ptr<StreamServer>> server =
      StreamServer::Start(std::move(options));
  if (!server.ok()) {
    std::printf("self-test FAILED: %s\n", server.status().ToString().c_str());
    return 1;
  }
  const std::string target = absl::StrCat(
      "/run?events=", events, "&delay_ms=", delay_ms, "&thread=self-test");
  std::printf("ctxloop stream_server self-test\n");
  std::printf(
      "  server    %s  (loop 1 \"http\": thread %lld, loop 2 "
      "\"agent\": thread %lld)\n",
      (*server)->url().c_str(),
      static_cast<long long>((*server)->http_thread_id()),
      static_cast<long long>((*server)->agent_thread_id()));
  std::printf("  request   GET %s  (libevent HTTP client on loop 3)\n",
              target.c_str());
  std::fflush(stdout);

  const absl::Time start = absl::Now();
  FetchResult got = Fetch::Run(
      (*server)->port(), target, absl::Seconds(10), [&](const SseEvent& e) {
        const double ms = absl::ToDoubleMilliseconds(absl::Now() - start);
        std::printf("    %7.1f ms  %-7s %s\n", ms, e.event.c_str(),
                    e.data.c_str());
        std::fflush(stdout);
      });

  std::vector<std::string> problems;
  if (!got.error.empty()) problems.push_back("client: " + got.error);
  if (got.status != 200) {
    problems.push_back(absl::StrCat("HTTP status ", got.status));
  }
  if (got.content_type != "text/event-stream") {
    problems.push_back("Content-Type is '" + got.content_type + "'");
  }
  int in_order = 0;
  bool done = false;
  for (const SseEvent& e : got.events) {
    if (e.event == "done") {
      done = true;
      continue;
    }
    const std::string want = absl::StrCat(
        "{\"index\":", in_order, ",\"text\":\"token ", in_order, "\"}");
    if (done || e.event != "message" || e.data != want) {
      problems.push_back(absl::StrCat("event ", in_order, " is '", e.event,
                                      ": ", e.data, "', want '", want, "'"));
      break;
    }
    ++in_order;
  }
  if (in_order != events) {
    problems.push_back(
        absl::StrCat(in_order, " of ", events, " events arrived in order"));
  }
  if (!done) problems.push_back("no 'event: done'");

  if (!(*server)->WaitForIdle(absl::Seconds(5))) {
    problems.push_back("the run did not finish on the server");
  }
  const std::vector<RunReport> runs = (*server)->finished_runs();
  const int64_t http_tid = (*server)->http_thread_id();
  (*server)->Shutdown();  // Also flushes the tracer.
  absl::Status flushed = tracing.tracer->ForceFlush();
  if (!flushed.ok()) problems.push_back("flush: " + flushed.ToString());

  const ExportCheck check = CheckExports(*tracing.memory, runs);
  problems.insert(problems.end(), check.problems.begin(), check.problems.end());
  const std::vector<SpanData> traces = tracing.memory->traces();
  const std::vector<SpanData> spans = tracing.memory->spans();
  size_t agent_spans = 0, write_spans = 0;
  for (const SpanData& s : spans) {
    agent_spans += s.name == "agent step";
    write_spans += s.name == "write event";
  }

  std::printf("trace summary\n");
  std::printf("  traces exported  %zu (each exactly once: %s)\n", check.traces,
              check.problems.empty() ? "yes" : "NO");
  std::printf(
      "  spans exported   %zu (%zu \"agent step\" on C, loop 2; %zu "
      "\"write event\" on B, loop 1)\n",
      check.spans, agent_spans, write_spans);
  if (runs.size() == 1 && traces.size() == 1) {
    const RunReport& r = runs[0];
    const SpanData& t = traces[0];
    std::printf("  trace id         %s (X-Trace-Id %s)\n",
                t.trace_id.ToHex().c_str(), got.trace_id.c_str());
    std::printf("  started on       A = %s (request context)\n",
                Where(t.started).c_str());
    std::printf("  finish called on B = %s (response context)\n",
                Where(t.finish_called).c_str());
    std::printf("  finish ran on    A = %s (its origin%s)\n",
                Where(t.finish_ran).c_str(),
                t.finish_ran.thread_id == http_tid ? ", loop 1's thread" : "");
    if (t.trace_id.ToHex() != got.trace_id) {
      problems.push_back("exported trace id differs from X-Trace-Id");
    }
    if (t.finish_ran.ctx != r.request_ctx ||
        t.finish_ran.thread_id != http_tid || t.finished_off_origin) {
      problems.push_back("the trace's finish did not run on its origin A");
    }
    if (!r.trace_reset_on_origin) {
      problems.push_back("A's current trace was not restored on A");
    }
    if (agent_spans != static_cast<size_t>(events) ||
        write_spans != static_cast<size_t>(events)) {
      problems.push_back(absl::StrCat("want ", events, " spans of each kind"));
    }
  }
  const TracerStats stats = tracing.tracer->stats();
  std::printf(
      "  finishes         %llu posted home (the rest ran inline), %llu on "
      "a root, %llu off origin\n",
      static_cast<unsigned long long>(stats.finishes_posted),
      static_cast<unsigned long long>(stats.finishes_on_root),
      static_cast<unsigned long long>(stats.finishes_off_origin));
  absl::Status shut = tracing.tracer->Shutdown();  // Writes the trace file.
  if (!shut.ok()) problems.push_back("tracer shutdown: " + shut.ToString());
  std::printf("  chrome trace     %s (open in https://ui.perfetto.dev)\n",
              trace_out.c_str());

  if (!problems.empty()) {
    std::printf("self-test FAILED:\n");
    for (const std::string& p : problems) std::printf("  - %s\n", p.c_str());
    return 1;
  }
  std::printf(
      "self-test PASSED: %d events in order, 1 trace exported once, "
      "finished on its origin\n",
      events);
  return 0;
}

int Serve(Tracing& tracing, const sigset_t& stop_signals, int port, int events,
          int delay_ms, const std::string& trace_out) {
  StreamServer::Options options;
  options.port = port;
  options.tracer = tracing.tracer.get();
  options.default_events = std::max(1, events);
  options.default_delay = absl::Milliseconds(std::max(0, delay_ms));
  ChromeTraceExporter* chrome = tracing.chrome.get();
  std::atomic<uint64_t> finished{0};
  options.on_run_finished = [chrome, &tracing, &finished](const RunReport& r) {
    // Names are kept per context: only while the file still takes items.
    if (!tracing.chrome_full->full()) NameContexts(*chrome, r);
    std::string how = "completed";
    if (r.client_disconnected) {
      how = "client went away; agent stopped";
    } else if (!r.stream_status.ok()) {
      how = std::string(r.stream_status.message());
    }
    const std::string line = absl::StrCat(
        "run ", r.run_id, r.group_id.empty() ? "" : " [" + r.group_id + "]",
        ": ", r.events_written, "/", r.events_requested, " events written (",
        how, "); trace ", r.trace_id.ToHex(),
        r.trace_reset_on_origin ? " finished on its origin context A"
                                : " (finish not seen on A)");
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
    finished.fetch_add(1);
  };
  absl::StatusOr<std::unique_ptr<StreamServer>> server =
      StreamServer::Start(std::move(options));
  if (!server.ok()) {
    std::fprintf(stderr, "stream_server: %s\n",
                 server.status().ToString().c_str());
    return 1;
  }
  std::printf("ctxloop stream_server listening on %s\n",
              (*server)->url().c_str());
  std::printf("  try:   curl -N '%s/run?events=20&delay_ms=50'\n",
              (*server)->url().c_str());
  std::printf("  trace: %s (rewritten after each run; Ctrl-C to stop)\n",
              trace_out.c_str());
  if (tracing.otlp != nullptr) {
    std::printf("  OTLP/HTTP: %s\n",
                OtlpHttpExporter::TracesUrl(absl::GetFlag(FLAGS_otlp_endpoint))
                    .c_str());
  }
  std::fflush(stdout);

  // Signals are blocked in every thread; this one takes them synchronously.
  uint64_t flushed_at = 0;
  while (true) {
    timespec one_second = {1, 0};
    const int sig = sigtimedwait(&stop_signals, nullptr, &one_second);
    if (sig == SIGINT || sig == SIGTERM) {
      std::printf("\n%s: shutting down\n",
                  sig == SIGINT ? "SIGINT" : "SIGTERM");
      break;
    }
    const uint64_t now = finished.load();
    if (now != flushed_at) {  // Keep the trace file current.
      flushed_at = now;
      (void)tracing.tracer->ForceFlush();
    }
  }
  (*server)->Shutdown();  // Live runs end (and report) during this.
  const std::vector<RunReport> runs = (*server)->finished_runs();
  const ServerStats stats = (*server)->stats();
  absl::Status shut = tracing.tracer->Shutdown();
  const ExportCheck check = CheckLedger(*tracing.ledger, runs);
  std::printf(
      "served %llu requests, %llu runs (%llu completed, %llu "
      "cancelled)\n",
      static_cast<unsigned long long>(stats.requests),
      static_cast<unsigned long long>(stats.runs_finished),
      static_cast<unsigned long long>(stats.runs_completed),
      static_cast<unsigned long long>(stats.runs_cancelled));
  std::printf("exported %zu traces, %zu spans%s; chrome trace %s%s\n",
              check.traces, check.spans,
              check.problems.empty() ? ", each trace exactly once" : "",
              trace_out.c_str(), shut.ok() ? "" : " (write failed)");
  if (tracing.chrome_full->full()) {
    std::printf(
        "chrome trace: full at --trace_max_items=%d; later runs are "
        "not in it\n",
        absl::GetFlag(FLAGS_trace_max_items));
  }
  if (tracing.otlp != nullptr) {
    const OtlpHttpExporter::Stats o = tracing.otlp->stats();
    std::printf(
        "OTLP/HTTP: %llu spans exported, %llu rejected, %llu failed, %llu "
        "requests (%llu retries)\n",
        static_cast<unsigned long long>(o.spans_exported),
        static_cast<unsigned long long>(o.spans_rejected),
        static_cast<unsigned long long>(o.spans_failed),
        static_cast<unsigned long long>(o.requests),
        static_cast<unsigned long long>(o.retries));
  }
  for (const std::string& p : check.problems) {
    std::printf("  problem: %s\n", p.c_str());
  }
  return shut.ok() && check.problems.empty() ? 0 : 1;
}

}  // namespace
}  // namespace examples
}  // namespace ctxloop

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "the ctxloop streaming demo: serves GET /run?events=N&delay_ms=M as "
      "server-sent events, traced.\n"
      "  stream_server [--port=8080] [--trace_out=FILE] "
      "[--otlp_endpoint=http://127.0.0.1:4318]\n"
      "  stream_server --self_test   (one request to itself, checked)");
  absl::ParseCommandLine(argc, argv);
  const bool self_test = absl::GetFlag(FLAGS_self_test);
  // Before any thread starts, so every thread inherits the mask: SIGINT and
  // SIGTERM are then only taken by the main thread's sigtimedwait.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  if (!self_test) pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  const std::string trace_out = absl::GetFlag(FLAGS_trace_out);
  absl::StatusOr<ctxloop::examples::Tracing> tracing =
      ctxloop::examples::MakeTracing(
          trace_out, absl::GetFlag(FLAGS_otlp_endpoint), !self_test);
  if (!tracing.ok()) {
    std::fprintf(stderr, "stream_server: cannot trace to %s: %s\n",
                 trace_out.c_str(), tracing.status().ToString().c_str());
    return 1;
  }
  const int events = absl::GetFlag(FLAGS_events);
  const int delay_ms = absl::GetFlag(FLAGS_delay_ms);
  if (self_test) {
    return ctxloop::examples::SelfTest(*tracing, events, delay_ms, trace_out);
  }
  return ctxloop::examples::Serve(*tracing, stop_signals,
                                  absl::GetFlag(FLAGS_port), events, delay_ms,
                                  trace_out);
}
