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
//      trace "agent run" on A and make it current there (attributes:
//      ctxloop.group_id = `thread`, ctxloop.metadata.* = path and parameters),
//      continuing the request's W3C `traceparent` if it has a valid one; send
//      the 200 headers
//      (`text/event-stream`, chunked, and the run's own `traceparent`) and
//      watch the connection for close.
//   2. The trace is handed to loop 2, which creates the agent context C and
//      `MakeStream<AgentEvent>(C, ..., trace)`: the stream now owns the
//      trace. The reader is posted to B.
//   3. Loop 2, on C: N steps, each a span "agent step" under the stream's
//      trace (`writer.trace_parent()`) lasting `delay` (`PostDelayed`), then
//      an `Emit`. A refused emit (backpressure) waits for `on_writable`;
//      one refused because loop 1 is full (no `on_writable` follows that)
//      is retried on a back-off timer (1 ms doubling to 64 ms);
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
// per event one `Emit` and one formatted event; per delivered batch one
// chunk write and one cross-loop post. `Options::max_run_duration` bounds a
// run's simulated work.
//
// Bounds (what a client, polite or not, can make the server hold)
// -------------------------------------------------------------
//   * A connection's output: the sink writes events into the connection's
//     output buffer (libevent's evbuffer) only while it holds at most
//     `output_high_watermark` bytes; above that the run is paused: the agent
//     stops emitting (its event waits, unmade events are not made) until the
//     client has read the buffer down to `output_low_watermark`. What was
//     already on its way still lands, so one connection holds at most
//     `MaxOutputBytesPerConnection()` = output_high_watermark + (stream
//     high_watermark + max_batch + 1) * kMaxEventBytes +
//     max_header_bytes + kMaxFinalChunkBytes
//     bytes, where the extra max_header_bytes is the response head (it
//     repeats at most the request's tracestate): 29,312 with the defaults.
//     The socket's kernel send buffer is set to `socket_send_buffer_bytes`
//     for streaming connections.
//   * The whole server: at most `max_connections` connections are open
//     (above it the listener stops accepting; new clients wait in the listen
//     backlog) and at most `max_runs` runs stream at once (beyond it: 503),
//     so the output buffers of all runs hold at most
//     max_runs * MaxOutputBytesPerConnection() bytes (`MaxOutputBytes()`,
//     120,061,952 bytes = 114.5 MiB with the defaults);
//     `ServerStats::output_buffered_bytes` is what they hold now.
//   * A request: headers at most `max_header_bytes` (the connection is then
//     failed), no body (`max_body_size` 0). A client that sends nothing for
//     `io_timeout` while its request is read, or reads nothing for
//     `io_timeout` while its response waits to be written, is cut; so is
//     one whose request head is not complete within `head_deadline`.
//   * Out of file descriptors (EMFILE/ENFILE) or another accept error: the
//     listener stops for `accept_backoff`, then tries again; at most one
//     log line per `accept_log_interval` (with the count of errors since).
//   * Reports: at most `max_reports` finished runs are kept.
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

struct bufferevent;
struct event;
struct event_base;
struct evbuffer;
struct evbuffer_cb_info;
struct evconnlistener;
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
  ContextHandle agent_ctx;      // C: the producer's context.
  uint64_t events_emitted = 0;  // Accepted by the stream.
  uint64_t refused_full = 0;    // Emits refused by backpressure.
  // Emits refused because loop 1 held its most pending cross-thread posts
  // (`Options::http_loop_max_pending_foreign`), and the retries the agent
  // made for them on a back-off timer (no on_writable follows those).
  uint64_t refused_loop_full = 0;
  uint64_t loop_full_retries = 0;
  bool producer_completed = false;   // Emitted all N, then `Complete()`.
  bool producer_saw_closed = false;  // `on_closed` ran on C.
  absl::Status producer_closed_status;
};

struct ServerStats {
  uint64_t requests = 0;        // HTTP requests handled by the server.
  uint64_t bad_requests = 0;    // Answered 4xx (bad parameters, bad path).
  uint64_t busy_refused = 0;    // Answered 503: `max_runs` already streaming.
  uint64_t runs_started = 0;    // Streams begun (200 sent).
  uint64_t runs_finished = 0;   // Both halves done (reports made).
  uint64_t runs_completed = 0;  // ... whose stream ended OK.
  uint64_t runs_cancelled = 0;  // ... whose client went away or which the
                                // server cut at shutdown.
  // Output buffers of streaming runs (see "Bounds" above).
  uint64_t output_buffered_bytes = 0;  // Held now, all runs together.
  uint64_t output_buffered_peak = 0;   // Highest total seen.
  uint64_t output_peak_per_run = 0;    // Highest one run has held.
  uint64_t pauses = 0;                 // Times a run paused for its client.
  // Connections.
  uint64_t connections_open = 0;
  uint64_t connections_peak = 0;
  uint64_t accept_paused_full = 0;  // Listener stops at `max_connections`.
  uint64_t head_deadline_cut = 0;   // Cut for not sending a head in time.
  // Accept errors (EMFILE, ...): errors seen, backoffs taken, log lines.
  uint64_t accept_errors = 0;
  uint64_t accept_backoffs = 0;
  uint64_t accept_error_logs = 0;
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
    // A run pauses while its connection's output buffer holds more than
    // `output_high_watermark` bytes and resumes at `output_low_watermark`.
    size_t output_high_watermark = 16 * 1024;
    size_t output_low_watermark = 4 * 1024;
    // Kernel send buffer (SO_SNDBUF) of a streaming connection; 0 keeps the
    // system's (auto-tuned, up to megabytes per never-reading client).
    int socket_send_buffer_bytes = 64 * 1024;
    // Open connections, and runs streaming at once (beyond it: 503).
    int max_connections = 10000;
    int max_runs = 4096;
    // Request header bytes; a longer head fails the connection.
    size_t max_header_bytes = 8 * 1024;
    // Idle time allowed while reading a request or writing a response.
    absl::Duration io_timeout = absl::Seconds(10);
    // Time a connection has to send a whole request head (from its accept,
    // or from the end of its previous response): a client that trickles
    // bytes slower than io_timeout cannot hold a connection longer.
    absl::Duration head_deadline = absl::Seconds(10);
    // After an accept error (EMFILE: out of descriptors) the listener rests
    // this long; errors are logged at most once per `accept_log_interval`.
    absl::Duration accept_backoff = absl::Milliseconds(250);
    absl::Duration accept_log_interval = absl::Seconds(10);
    // Loop 1's bound on pending cross-thread posts
    // (`Loop::Options::max_pending_foreign`); 0 keeps the loop's default.
    // When an agent's emit is refused because loop 1 is full, the agent
    // retries on a timer: after 1 ms, then doubling up to 64 ms per retry
    // (`kLoopFullBackoffMin`/`Max`), until the emit goes through or the run
    // ends.
    int64_t http_loop_max_pending_foreign = 0;
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

  // The largest SSE event the demo's agent makes, as written on the wire
  // (chunk framing included), and the largest final chunk.
  static constexpr size_t kMaxEventBytes = 128;
  static constexpr size_t kMaxFinalChunkBytes = 512;
  // The agent's back-off after an emit refused for a full loop 1.
  static constexpr absl::Duration kLoopFullBackoffMin = absl::Milliseconds(1);
  static constexpr absl::Duration kLoopFullBackoffMax = absl::Milliseconds(64);
  // Output bytes one streaming connection holds at most (see "Bounds").
  static size_t MaxOutputBytesPerConnection(const Options& options);
  // ... and all of them together.
  static size_t MaxOutputBytes(const Options& options);

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

  // Loop 1's root context, for work a host (or a test) posts to the HTTP
  // loop. Any thread; valid until `Shutdown`.
  ContextHandle http_loop_root() const;

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
  struct FlowGate;

  explicit StreamServer(Options options);
  absl::Status Init();

  // Loop 1.
  static void OnRequest(evhttp_request* req, void* arg);
  static void OnConnectionClosed(evhttp_connection* conn, void* arg);
  static bufferevent* NewConnectionBufferevent(event_base* base, void* arg);
  static void OnAdoptConnections(int fd, short what, void* arg);
  static void OnAcceptError(evconnlistener* listener, void* arg);
  static void OnOutputChanged(evbuffer* buffer, const evbuffer_cb_info* info,
                              void* arg);
  void AdoptConnections();
  void ConnectionClosed(evhttp_connection* conn);
  void AcceptError(int error);
  void UpdateAccepting();
  void ArmHeadDeadline(evhttp_connection* conn);
  void HeadDeadlinePassed(evhttp_connection* conn, uint64_t serial);
  void HandleRequest(evhttp_request* req);
  void DispatchRequest(evhttp_request* req);
  void StartRun(evhttp_request* req, const std::string& uri, int events,
                absl::Duration delay, const std::string& group_id);
  void AttachResponse(ContextHandle b, uint64_t id, ContextHandle c,
                      std::optional<StreamReader<AgentEvent>> reader,
                      absl::Status status);
  void OnStreamEvent(ContextHandle b, uint64_t id, AgentEvent&& event);
  void OnStreamComplete(ContextHandle b, uint64_t id,
                        const absl::Status& status);
  void ClientGone(Run& run);
  void WriteChunk(Run& run, const std::string& text);
  void FlushPending(Run& run);
  void PostFlush(Run& run);
  void UpdateHeld(Run& run);
  void StopWatchingOutput(Run& run);
  void EndResponse(Run& run, const absl::Status& status);
  void OnTraceFinished(uint64_t id);
  void ScheduleRelease(Run& run);
  void ReleaseRun(ContextHandle a, uint64_t id);
  void BeginShutdownOnHttpLoop();
  Run* FindRun(uint64_t id);

  // Loop 2.
  void StartAgent(AgentStart start);
  void Pump(uint64_t id);
  void RetryAfterLoopFull(Agent& agent);
  void ResumeAgent(uint64_t id);
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
  ContextHandle http_root_;  // Set in Init, then read-only.
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
  // An open connection: the run it streams (0: none), and while it waits
  // for a request head, the deadline that cuts it.
  struct ConnState {
    uint64_t serial = 0;  // Tells a connection from a later one at the
                          // same address.
    uint64_t run = 0;
    std::optional<DelayedTaskHandle> head_deadline;
  };
  std::map<evhttp_connection*, ConnState> conns_;
  uint64_t next_conn_serial_ = 1;
  // Connections accepted whose evhttp_connection is not known yet (each
  // holds a reference on its bufferevent until adopted).
  std::vector<bufferevent*> fresh_;
  event* adopt_event_ = nullptr;
  bool listener_enabled_ = true;
  bool accept_backoff_ = false;
  absl::Time last_accept_log_ = absl::InfinitePast();
  uint64_t accept_errors_unlogged_ = 0;
  // Output bytes held by all runs' connections now.
  uint64_t output_total_ = 0;

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
