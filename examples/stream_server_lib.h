// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/examples/stream_server_lib.h
// -----------------------------------------------------------------------------
//
// `StreamServer` is the FastAPI `StreamingResponse` case of
// openai-agents-python, in C++: an HTTP endpoint that runs a (simulated)
// agent and streams its events to the client as server-sent events, with the
// run traced from the request handler to the last byte.
//
// In Python, `RunResultStreaming.stream_events()` finished the run's trace
// with `reset_current=True` from the response's context after FastAPI had
// consumed the stream there, and `contextvars` raised "Token was created in a
// different Context". Here the same shape is the architecture: the trace is
// started on the request's context, the stream carries it, the response is
// written on another context, and the finish runs back on the origin.
//
//   ctxloop::examples::StreamServer::Options options;
//   options.port = 8080;
//   options.tracer = &tracer;
//   auto server = *ctxloop::examples::StreamServer::Start(std::move(options));
//   // curl -N 'http://127.0.0.1:8080/run?events=20&delay_ms=50'
//   server->Shutdown();
//
// One run (GET /run?events=N&delay_ms=M[&thread=ID])
// --------------------------------------------------
// Loop 1 ("http", a `LoopThread` whose `event_base` hosts an evhttp) and
// loop 2 ("agent", another `LoopThread`):
//   1. Loop 1, in the evhttp callback: validate the query (400 otherwise);
//      create the request context A and the response context B; start the
//      trace "agent run" on A and make it current there (group_id = `thread`,
//      metadata = path and parameters), continuing the request's W3C
//      `traceparent` if it has a valid one; send the 200 headers
//      (`text/event-stream`, chunked, and the run's own `traceparent`) and
//      watch the connection for close.
//   2. The trace is handed to loop 2, which creates the agent context C and
//      `MakeStream<AgentEvent>(C, ..., trace)`: the stream now owns the
//      trace. The reader is posted to B.
//   3. Loop 2, on C: N steps, each a span "agent step" under the stream's
//      trace (`writer.trace_parent()`) lasting `delay` (`PostDelayed`), then
//      an `Emit`. A refused emit (backpressure) waits for `on_writable`;
//      `on_closed` (the consumer went away) stops the agent. Then `Complete`.
//   4. Loop 1, on B: the sink writes each event as one chunk
//      `data: {"index":i,"text":"token i"}`, each write a span "write event"
//      under `subscription.trace_parent()`; on completion `event: done` (or
//      `event: error`) and the end of the chunked body.
//   5. The stream finishes the trace from B; ctxloop runs that finish, and
//      the reset of A's "current" trace, on A. Only then are A and B
//      destroyed (the server checks that A's current trace was restored).
// The client going away (connection closed) cancels the subscription: the
// stream ends [E3], the agent is told on C and stops, the trace is still
// finished once, on A.
//
// Cost: per run three contexts, one trace, two spans per event, one stream;
// per event one `Emit`, one chunk write and (per batch) one cross-loop post.
// `Options::max_run_duration` bounds a run (libevent's default connection
// timeouts are 50 s; a longer stream could be cut).
//
// Thread-safety: `Start`, `Shutdown`, `WaitForIdle` and the accessors may be
// called from any thread except the server's own loop threads (`Shutdown`
// and `WaitForIdle` block). Everything HTTP happens on loop 1; everything
// agent on loop 2. `Start` sets SIGPIPE to "ignore" for the process (a
// client that goes away must not kill the server).

#ifndef CTXLOOP_EXAMPLES_STREAM_SERVER_LIB_H_
#define CTXLOOP_EXAMPLES_STREAM_SERVER_LIB_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "ctxloop/loop/context_handle.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/loop/loop_thread.h"
#include "ctxloop/loop/mutex.h"
#include "ctxloop/stream/stream.h"
#include "ctxloop/trace/ids.h"
#include "ctxloop/trace/scope.h"
#include "ctxloop/trace/span_context.h"
#include "ctxloop/trace/tracer.h"

struct evhttp;
struct evhttp_bound_socket;
struct evhttp_connection;
struct evhttp_request;

namespace ctxloop {
namespace examples {

// One event of the simulated agent: the i-th "token".
struct AgentEvent {
  int index = 0;
  std::string text;
};

// What one run did, assembled from both loops once both halves are done.
struct RunReport {
  uint64_t run_id = 0;
  std::string group_id;  // The `thread` query parameter.
  int events_requested = 0;
  absl::Duration delay;
  TraceId trace_id;  // Invalid without a tracer.
  // The caller's W3C traceparent/tracestate, if it sent a valid one (the
  // run's trace continues its trace id), and the traceparent the response
  // carried (empty without a tracer).
  SpanContext remote_parent;
  std::string traceparent;

  // HTTP half, loop 1.
  ContextHandle request_ctx;   // A: the trace's origin.
  ContextHandle response_ctx;  // B: where the sink wrote the response.
  int events_written = 0;      // SSE events written to the response.
  bool client_disconnected = false;
  absl::Status stream_status;  // What the sink's `on_complete` received.
  // A's current trace was restored on A before A was destroyed: the finish,
  // called on B, ran on its origin.
  bool trace_reset_on_origin = false;

  // Agent half, loop 2.
  ContextHandle agent_ctx;           // C: the producer's context.
  uint64_t events_emitted = 0;       // Accepted by the stream.
  uint64_t refused_full = 0;         // Emits refused by backpressure.
  bool producer_completed = false;   // Emitted all N, then `Complete()`.
  bool producer_saw_closed = false;  // `on_closed` ran on C.
  absl::Status producer_closed_status;
};

struct ServerStats {
  uint64_t requests = 0;        // HTTP requests handled by the server.
  uint64_t bad_requests = 0;    // Answered 4xx (bad parameters, bad path).
  uint64_t runs_started = 0;    // Streams begun (200 sent).
  uint64_t runs_finished = 0;   // Both halves done (reports made).
  uint64_t runs_completed = 0;  // ... whose stream ended OK.
  uint64_t runs_cancelled = 0;  // ... whose client went away or which the
                                // server cut at shutdown.
};

class StreamServer {
 public:
  struct Options {
    std::string host = "127.0.0.1";
    int port = 0;  // 0: an ephemeral port; see `port()`.
    // Not owned; must outlive the server. Null: runs are not traced.
    Tracer* tracer = nullptr;
    // Used when the query omits `events` / `delay_ms`.
    int default_events = 20;
    absl::Duration default_delay = absl::Milliseconds(5);
    // Limits; a request beyond them gets 400.
    int max_events = 100000;
    absl::Duration max_delay = absl::Seconds(10);
    absl::Duration max_run_duration = absl::Seconds(30);  // events * delay.
    // Small watermarks so backpressure is real, not theoretical.
    StreamOptions stream_options = DefaultStreamOptions();
    // Reports kept for `finished_runs()` (oldest dropped first).
    size_t max_reports = 4096;
    // How long `Shutdown` lets cancelled runs wind down before it frees the
    // HTTP server and joins the loops.
    absl::Duration shutdown_grace = absl::Seconds(2);
    // Called once per run when both halves are done, on either loop thread,
    // never concurrently with itself. Must not call back into the server.
    absl::AnyInvocable<void(const RunReport&)> on_run_finished;
  };

  static StreamOptions DefaultStreamOptions() {
    StreamOptions o;
    o.high_watermark = 16;
    o.low_watermark = 4;
    o.max_batch = 16;
    return o;
  }

  // Starts both loops and listens. Errors: `kInvalidArgument` for bad
  // options, `kUnavailable` if the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<StreamServer>> Start(Options options);

  StreamServer(const StreamServer&) = delete;
  StreamServer& operator=(const StreamServer&) = delete;
  ~StreamServer();  // `Shutdown()`.

  // The bound port (the ephemeral one if `Options::port` was 0).
  int port() const { return port_; }
  // "http://<host>:<port>".
  std::string url() const;

  // Stops accepting, cancels live streams (their clients get `event: error`),
  // waits up to `shutdown_grace` for runs to end, frees the HTTP server on
  // loop 1, joins both loops and flushes the tracer. Idempotent. Not from a
  // server loop thread.
  void Shutdown();

  // Waits until no run is in progress and every `on_run_finished` call has
  // returned, so a caller that reads what its callback recorded sees every
  // run. False on timeout.
  bool WaitForIdle(absl::Duration timeout);

  // The reports of finished runs, oldest first.
  std::vector<RunReport> finished_runs() const;
  ServerStats stats() const;

  // Linux thread ids of loop 1 (HTTP) and loop 2 (agent).
  int64_t http_thread_id() const { return http_tid_; }
  int64_t agent_thread_id() const { return agent_tid_; }

 private:
  struct Run;    // A run's HTTP half; loop 1 only.
  struct Agent;  // A run's agent half; loop 2 only.
  struct AgentStart;
  struct PendingReport {
    RunReport report;
    bool http_done = false;
    bool agent_done = false;
  };
  struct HttpHalf;
  struct AgentHalf;

  explicit StreamServer(Options options);
  absl::Status Init();

  // Loop 1.
  static void OnRequest(evhttp_request* req, void* arg);
  static void OnConnectionClosed(evhttp_connection* conn, void* arg);
  void HandleRequest(evhttp_request* req);
  void StartRun(evhttp_request* req, const std::string& uri, int events,
                absl::Duration delay, const std::string& group_id);
  void AttachResponse(ContextHandle b, uint64_t id,
                      std::optional<StreamReader<AgentEvent>> reader,
                      absl::Status status);
  void OnStreamEvent(ContextHandle b, uint64_t id, AgentEvent&& event);
  void OnStreamComplete(ContextHandle b, uint64_t id,
                        const absl::Status& status);
  void ClientGone(Run& run);
  void WriteChunk(Run& run, const std::string& text);
  void EndResponse(Run& run, const absl::Status& status);
  void OnTraceFinished(uint64_t id);
  void ScheduleRelease(Run& run);
  void ReleaseRun(ContextHandle a, uint64_t id);
  void BeginShutdownOnHttpLoop();
  Run* FindRun(uint64_t id);

  // Loop 2.
  void StartAgent(AgentStart start);
  void Pump(uint64_t id);
  void OnAgentClosed(uint64_t id, const absl::Status& status);
  void FinalizeAgent(Agent& agent);
  void AbortAgents();
  Agent* FindAgent(uint64_t id);

  // Either loop.
  void FinishHttpHalf(uint64_t id, const HttpHalf& half);
  void FinishAgentHalf(uint64_t id, const AgentHalf& half);
  // Called with mu_ held; releases it.
  void ReportIfDone(uint64_t id) ABSL_UNLOCK_FUNCTION(mu_);

  Options options_;
  Tracer* const tracer_;
  int port_ = 0;
  int64_t http_tid_ = 0;
  int64_t agent_tid_ = 0;

  std::unique_ptr<LoopThread> http_loop_thread_;
  std::unique_ptr<LoopThread> agent_loop_thread_;

  // Loop 1 only.
  Loop* http_loop_ = nullptr;
  evhttp* http_ = nullptr;
  evhttp_bound_socket* listener_ = nullptr;
  bool shutting_down_ = false;
  uint64_t next_run_id_ = 1;
  std::map<uint64_t, std::unique_ptr<Run>> runs_;

  // Loop 2 only.
  Loop* agent_loop_ = nullptr;
  std::map<uint64_t, std::unique_ptr<Agent>> agents_;

  // Reports and counters, from both loops.
  mutable Mutex mu_;
  CondVar idle_cv_;
  // Runs in progress.
  std::map<uint64_t, PendingReport> pending_ ABSL_GUARDED_BY(mu_);
  std::deque<RunReport> finished_ ABSL_GUARDED_BY(mu_);
  ServerStats stats_ ABSL_GUARDED_BY(mu_);
  // `on_run_finished` calls begun and not yet returned; idle needs zero.
  int reports_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  Mutex callback_mu_;  // Serializes `on_run_finished`.

  Mutex shutdown_mu_;
  bool shut_down_ ABSL_GUARDED_BY(shutdown_mu_) = false;
};

}  // namespace examples
}  // namespace ctxloop

#endif  // CTXLOOP_EXAMPLES_STREAM_SERVER_LIB_H_
