// Copyright 2026 The ctxloop Authors.
//
// StreamServer: see stream_server_lib.h for the run's steps 1-5.
//
// libevent object lifetimes (evhttp 2.1), which this file is careful about:
//   * An incoming `evhttp_request` belongs to libevent until the reply ends.
//     After `evhttp_send_reply_end` it is freed by libevent once written; we
//     drop our pointer at once.
//   * The client closing the connection while we still stream (`userdone`
//     not set) makes libevent *detach* the request (its connection becomes
//     null), free the connection, and call the close callback. The detached
//     request is then ours to free, which `evhttp_send_reply_end` does. When
//     the connection is freed for another reason (`evhttp_free`), the
//     request is still attached in the close callback and libevent frees it
//     right after; we only drop our pointer.
//   * The close callback is registered per connection, which keep-alive
//     reuses for the next request: a run unregisters it before it ends its
//     reply, so it never fires for a run that is gone.

#include "ctxloop/examples/stream_server_lib.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "ctxloop/trace/propagation.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"

namespace ctxloop {
namespace examples {
namespace {

// `LoopThread::Invoke` for the server's own steps (start, shutdown), which
// must not be skipped because the loop is full: a refusal for
// `max_pending_foreign` (other threads' posts, or the previous Invoke, whose
// release the loop makes only after `fn` returned) waits for room and tries
// again. `fn` is copied for each attempt. Any other refusal is returned.
template <typename F>
absl::Status InvokeWaitingForRoom(LoopThread& thread, const F& fn) {
  while (true) {
    absl::Status s = thread.Invoke(fn);
    if (!absl::IsResourceExhausted(s)) return s;
    (void)WaitForRoom(thread.root(), absl::Now() + absl::Seconds(1));
  }
}

// Appends `text` to `out` as a quoted JSON string, escaped by RapidJSON's
// writer (UTF-8 validated; invalid input becomes "" rather than bad JSON).
void AppendJsonString(absl::string_view text, std::string* out) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer, rapidjson::UTF8<>,
                    rapidjson::UTF8<>, rapidjson::CrtAllocator,
                    rapidjson::kWriteValidateEncodingFlag>
      writer(buffer);
  if (!writer.String(text.data(),
                     static_cast<rapidjson::SizeType>(text.size()))) {
    out->append("\"\"");
    return;
  }
  out->append(buffer.GetString(), buffer.GetSize());
}

int64_t ThisTid() { return static_cast<int64_t>(syscall(SYS_gettid)); }

// The server whose HTTP loop runs on this thread (each server has its own
// loop thread), for libevent callbacks whose argument is not ours.
thread_local StreamServer* http_loop_server = nullptr;

// A formatted event's chunk is handed to the connection once this much is
// pending, or at once while the connection's output is empty: few, full
// buffer chains per connection instead of a 1 KiB chain per 70-byte event.
constexpr size_t kFlushBytes = 4096;

// Events a delay-free agent emits per loop task before yielding.
constexpr int kBurst = 64;

// One SSE event for an agent event. JSON escaping keeps it on one line.
std::string EventText(const AgentEvent& e) {
  std::string s = absl::StrCat("id: ", e.index, "\ndata: {\"index\":", e.index,
                               ",\"text\":");
  AppendJsonString(e.text, &s);
  s.append("}\n\n");
  return s;
}

struct RunParams {
  int events = 0;
  absl::Duration delay;
  std::string group_id;
};

// A decimal integer of at most 9 digits, no sign, no spaces.
bool ParseCount(absl::string_view s, int* out) {
  if (s.empty() || s.size() > 9) return false;
  for (char c : s) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return absl::SimpleAtoi(s, out);
}

bool ValidGroupId(absl::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' &&
        c != '_' && c != '.' && c != ':') {
      return false;
    }
  }
  return true;
}

absl::StatusOr<RunParams> ParseRunParams(const char* query,
                                         const StreamServer::Options& options) {
  RunParams p;
  p.events = options.default_events;
  p.delay = options.default_delay;
  if (query != nullptr && *query != '\0') {
    evkeyvalq kv = {};
    if (evhttp_parse_query_str(query, &kv) != 0) {
      evhttp_clear_headers(&kv);
      return absl::InvalidArgumentError("malformed query string");
    }
    absl::Status error;
    bool seen_events = false, seen_delay = false, seen_thread = false;
    for (evkeyval* e = kv.tqh_first; e != nullptr && error.ok();
         e = e->next.tqe_next) {
      const absl::string_view key = e->key;
      const absl::string_view value = e->value;
      bool* seen = nullptr;
      if (key == "events") {
        seen = &seen_events;
        int n = 0;
        if (!ParseCount(value, &n) || n < 1 || n > options.max_events) {
          error = absl::InvalidArgumentError(
              absl::StrCat("events must be an integer in [1, ",
                           options.max_events, "], got '", value, "'"));
        }
        p.events = n;
      } else if (key == "delay_ms") {
        seen = &seen_delay;
        int ms = 0;
        if (!ParseCount(value, &ms) ||
            absl::Milliseconds(ms) > options.max_delay) {
          error = absl::InvalidArgumentError(
              absl::StrCat("delay_ms must be an integer in [0, ",
                           absl::ToInt64Milliseconds(options.max_delay),
                           "], got '", value, "'"));
        }
        p.delay = absl::Milliseconds(ms);
      } else if (key == "thread") {
        seen = &seen_thread;
        if (!ValidGroupId(value)) {
          error = absl::InvalidArgumentError(
              "thread must be 1-64 characters of [A-Za-z0-9._:-]");
        }
        p.group_id = std::string(value);
      } else {
        error = absl::InvalidArgumentError(
            absl::StrCat("unknown parameter '", key,
                         "' (expected events, delay_ms, thread)"));
      }
      if (error.ok() && seen != nullptr) {
        if (*seen) {
          error = absl::InvalidArgumentError(
              absl::StrCat("parameter '", key, "' given twice"));
        }
        *seen = true;
      }
    }
    evhttp_clear_headers(&kv);
    if (!error.ok()) return error;
  }
  if (p.delay * p.events > options.max_run_duration) {
    return absl::InvalidArgumentError(absl::StrCat(
        "events * delay_ms must be at most ",
        absl::ToInt64Milliseconds(options.max_run_duration), " ms"));
  }
  return p;
}

void SendText(evhttp_request* req, int code, const char* reason,
              absl::string_view body) {
  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                    "text/plain; charset=utf-8");
  evbuffer* buf = evbuffer_new();
  if (buf != nullptr) evbuffer_add(buf, body.data(), body.size());
  evhttp_send_reply(req, code, reason, buf);
  if (buf != nullptr) evbuffer_free(buf);
}

constexpr char kUsage[] =
    "ctxloop stream_server: streams a simulated agent run as server-sent "
    "events.\n"
    "  GET /run?events=N&delay_ms=M&thread=ID\n"
    "  e.g. curl -N 'http://127.0.0.1:8080/run?events=20&delay_ms=50'\n";

}  // namespace

// A run's HTTP half. Loop 1 only.
struct StreamServer::Run {
  StreamServer* server = nullptr;
  uint64_t id = 0;
  // Null once the reply ended or the client went away: never touch either
  // after that.
  evhttp_request* req = nullptr;
  evhttp_connection* conn = nullptr;
  ContextHandle a;  // Request context: the trace's origin.
  ContextHandle b;  // Response context: the sink.
  TraceId trace_id;
  int events_requested = 0;
  SpanParent parent;  // The stream's trace, for the sink's spans.
  std::optional<StreamSubscription> subscription;
  ContextHandle agent_ctx;         // C, where the agent is resumed.
  std::shared_ptr<FlowGate> gate;  // Shared with the agent.
  // Events formatted, not yet handed to the connection (one chunk later).
  evbuffer* pending = nullptr;
  bool flush_posted = false;
  // The connection's output buffer while the run streams, and the callback
  // that tells us when it changes; null once the run stopped watching.
  evbuffer* output = nullptr;
  evbuffer_cb_entry* output_cb = nullptr;
  size_t output_bytes = 0;  // Its length, as last told.
  size_t held = 0;          // output_bytes + pending, counted in stats.
  bool paused = false;      // The agent was asked to wait.
  int events_written = 0;
  bool client_disconnected = false;
  bool ended = false;  // The stream's ending reached this side.
  // The run's trace has been finished on A (or there is none): the stream's
  // finish told us through `FinishOptions::on_finished`.
  bool trace_finished = true;
  absl::Status stream_status;
  bool release_scheduled = false;

  ~Run() {
    if (pending != nullptr) evbuffer_free(pending);
  }
};

// The sink's word to the agent: while `paused`, the connection's output is
// above its high-water mark and the agent emits nothing (the stream API has
// no way for a sink to stop taking events, so the producer is told beside
// it). Set and cleared on loop 1; read on loop 2 before every emit.
struct StreamServer::FlowGate {
  std::atomic<bool> paused{false};
};

// What loop 1 hands to loop 2 to start the agent.
struct StreamServer::AgentStart {
  uint64_t id = 0;
  std::shared_ptr<FlowGate> gate;
  int events = 0;
  absl::Duration delay;
  ContextHandle b;
  std::optional<TraceScope> trace;
  // How the stream finishes `trace`: tells loop 1 when that ran on A.
  FinishOptions trace_finish;
};

struct StreamServer::HttpHalf {
  ContextHandle request_ctx;
  ContextHandle response_ctx;
  int events_written = 0;
  bool client_disconnected = false;
  absl::Status stream_status;
  bool trace_reset_on_origin = false;
};

struct StreamServer::AgentHalf {
  ContextHandle agent_ctx;
  uint64_t events_emitted = 0;
  uint64_t refused_full = 0;
  uint64_t refused_loop_full = 0;
  uint64_t loop_full_retries = 0;
  bool producer_completed = false;
  bool producer_saw_closed = false;
  absl::Status producer_closed_status;
};

// A run's agent half. Loop 2 only.
struct StreamServer::Agent {
  explicit Agent(StreamWriter<AgentEvent> w) : writer(std::move(w)) {}
  StreamWriter<AgentEvent> writer;
  uint64_t id = 0;
  ContextHandle ctx;  // C.
  int total = 0;
  absl::Duration delay;
  SpanParent parent;
  int next = 0;                       // Index of the step in progress.
  std::optional<AgentEvent> pending;  // Made, not yet taken by the stream.
  bool delay_elapsed = false;         // The step's simulated work is done.
  SpanScope step;                     // The step's span, while open.
  std::optional<DelayedTaskHandle> timer;
  // After an emit refused because the sink's loop was full (no on_writable
  // follows that): the retry timer, and the back-off it waited (doubling
  // from kLoopFullBackoffMin to kLoopFullBackoffMax; zero after an emit
  // went through).
  std::optional<DelayedTaskHandle> retry_timer;
  absl::Duration loop_full_backoff;
  uint64_t loop_full_seen = 0;  // `refused_loop_full` already acted on.
  bool stopped = false;  // The stream refused with kCancelled; await on_closed.
  std::shared_ptr<FlowGate> gate;
  bool waiting_gate = false;  // Returned because the gate was closed.
  AgentHalf half;
};

// --- Start / Shutdown --------------------------------------------------------

StreamServer::StreamServer(Options options)
    : options_(std::move(options)), tracer_(options_.tracer) {}

absl::StatusOr<std::unique_ptr<StreamServer>> StreamServer::Start(
    Options options) {
  if (options.max_events < 1 || options.default_events < 1 ||
      options.default_events > options.max_events) {
    return absl::InvalidArgumentError("need 1 <= default_events <= max_events");
  }
  if (options.default_delay < absl::ZeroDuration() ||
      options.default_delay > options.max_delay) {
    return absl::InvalidArgumentError("need 0 <= default_delay <= max_delay");
  }
  if (options.port < 0 || options.port > 65535) {
    return absl::InvalidArgumentError("port must be in [0, 65535]");
  }
  const StreamOptions& so = options.stream_options;
  if (so.high_watermark == 0 || so.max_batch == 0 ||
      so.low_watermark >= so.high_watermark) {
    return absl::InvalidArgumentError(
        "stream_options: need high_watermark > low_watermark and max_batch > "
        "0");
  }
  if (options.output_low_watermark >= options.output_high_watermark) {
    return absl::InvalidArgumentError(
        "need output_low_watermark < output_high_watermark");
  }
  if (options.max_connections < 1 || options.max_runs < 1 ||
      options.max_header_bytes < 256 || options.socket_send_buffer_bytes < 0) {
    return absl::InvalidArgumentError(
        "need max_connections >= 1, max_runs >= 1, max_header_bytes >= 256, "
        "socket_send_buffer_bytes >= 0");
  }
  if (options.io_timeout < absl::Milliseconds(1) ||
      options.head_deadline < absl::Milliseconds(1) ||
      options.accept_backoff <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "need io_timeout >= 1 ms, head_deadline >= 1 ms and accept_backoff > "
        "0");
  }
  // A client that goes away mid-write must not kill the process.
  signal(SIGPIPE, SIG_IGN);
  std::unique_ptr<StreamServer> server(new StreamServer(std::move(options)));
  absl::Status s = server->Init();
  if (!s.ok()) return s;  // The destructor shuts down what did start.
  return server;
}

absl::Status StreamServer::Init() {
  Loop::Options http_loop_options;
  if (options_.http_loop_max_pending_foreign > 0) {
    http_loop_options.max_pending_foreign =
        options_.http_loop_max_pending_foreign;
  }
  http_loop_thread_ =
      std::make_unique<LoopThread>(std::move(http_loop_options));
  http_root_ = http_loop_thread_->root();
  agent_loop_thread_ = std::make_unique<LoopThread>();
  // The agent loop first: requests may arrive as soon as we listen.
  absl::Status invoked = agent_loop_thread_->Invoke([&](Loop& loop) {
    agent_loop_ = &loop;
    agent_tid_ = ThisTid();
  });
  if (!invoked.ok()) return invoked;
  absl::Status status;
  invoked = http_loop_thread_->Invoke([&](Loop& loop) {
    http_loop_ = &loop;
    http_tid_ = ThisTid();
    http_ = evhttp_new(loop.base());
    if (http_ == nullptr) {
      status = absl::ResourceExhaustedError("evhttp_new failed");
      return;
    }
    // Every method reaches HandleRequest, which answers 405 to all but GET
    // (libevent itself would answer 501).
    evhttp_set_allowed_methods(
        http_, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                   EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                   EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_max_headers_size(
        http_, static_cast<ev_ssize_t>(options_.max_header_bytes));
    evhttp_set_max_body_size(http_, 0);
    const timeval io = absl::ToTimeval(options_.io_timeout);
    evhttp_set_timeout_tv(http_, &io);
    evhttp_set_gencb(http_, &StreamServer::OnRequest, this);
    // Every connection's bufferevent is made here, which is how the server
    // counts connections (libevent 2.1's evhttp has no connection limit).
    evhttp_set_bevcb(http_, &StreamServer::NewConnectionBufferevent, this);
    adopt_event_ =
        event_new(loop.base(), -1, 0, &StreamServer::OnAdoptConnections, this);
    if (adopt_event_ == nullptr) {
      status = absl::ResourceExhaustedError("event_new failed");
      evhttp_free(http_);
      http_ = nullptr;
      return;
    }
    listener_ = evhttp_bind_socket_with_handle(
        http_, options_.host.c_str(), static_cast<uint16_t>(options_.port));
    if (listener_ == nullptr) {
      status = absl::UnavailableError(
          absl::StrCat("cannot listen on ", options_.host, ":", options_.port,
                       ": ", std::strerror(errno)));
      evhttp_free(http_);
      http_ = nullptr;
      return;
    }
    // Out of descriptors, accept() fails while the listening socket stays
    // readable: without this callback libevent logs and retries at once,
    // forever.
    // The callback's argument is the listener's (evhttp's); the server is
    // found through this loop thread's pointer.
    http_loop_server = this;
    evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(listener_),
                                &StreamServer::OnAcceptError);
    const int fd = evhttp_bound_socket_get_fd(listener_);
    // libevent listens with a backlog of 128: a burst of new connections
    // beyond that (a thousand streams ending together, each client
    // reconnecting) overflows it into 1 s SYN retries. Linux lets `listen`
    // raise the backlog of a listening socket (capped by net.core.somaxconn).
    (void)listen(fd, SOMAXCONN);
    sockaddr_storage addr = {};
    socklen_t len = sizeof(addr);
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      if (addr.ss_family == AF_INET) {
        port_ = ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
      } else if (addr.ss_family == AF_INET6) {
        port_ = ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
      }
    }
  });
  if (!invoked.ok()) return invoked;
  return status;
}

StreamServer::~StreamServer() {
  Shutdown();
  // The loops are joined: what is left is only touched from here.
  agents_.clear();
  runs_.clear();
}

ContextHandle StreamServer::http_loop_root() const { return http_root_; }

std::string StreamServer::url() const {
  return absl::StrCat("http://", options_.host, ":", port_);
}

void StreamServer::Shutdown() {
  {
    MutexLock lock(&shutdown_mu_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  if (http_loop_thread_ != nullptr) {
    // 1. Stop accepting; cancel live streams (their sinks end the replies).
    (void)InvokeWaitingForRoom(*http_loop_thread_,
                               [this](Loop&) { BeginShutdownOnHttpLoop(); });
    // 2. Let the cancellations travel: sinks on loop 1, agents on loop 2,
    //    trace finishes back on the A contexts.
    (void)WaitForIdle(options_.shutdown_grace);
    // 3. Free the HTTP server on its loop (idle keep-alive connections too).
    (void)InvokeWaitingForRoom(*http_loop_thread_, [this](Loop&) {
      if (http_ != nullptr) evhttp_free(http_);  // Closes every connection.
      http_ = nullptr;
      AdoptConnections();  // Drops the references still held.
      if (adopt_event_ != nullptr) event_free(adopt_event_);
      adopt_event_ = nullptr;
    });
  }
  // 4. Agents still running after the grace period are failed.
  if (agent_loop_thread_ != nullptr) {
    (void)InvokeWaitingForRoom(*agent_loop_thread_,
                               [this](Loop&) { AbortAgents(); });
    agent_loop_thread_->Join();
  }
  // 5. Join loop 1; its drain runs the trace finishes still queued for A.
  if (http_loop_thread_ != nullptr) http_loop_thread_->Join();
  // 6. Export what the processors hold.
  if (tracer_ != nullptr) (void)tracer_->ForceFlush();
}

void StreamServer::BeginShutdownOnHttpLoop() {
  shutting_down_ = true;
  if (http_ != nullptr && listener_ != nullptr) {
    evhttp_del_accept_socket(http_, listener_);
    listener_ = nullptr;
  }
  // Cancel posts the endings; nothing here runs a sink inline.
  for (auto& [id, run] : runs_) {
    if (run->subscription.has_value() && !run->ended) {
      (void)run->subscription->Cancel();
    }
  }
  // Runs whose reader is still on its way are ended by AttachResponse.
}

size_t StreamServer::MaxOutputBytesPerConnection(const Options& options) {
  const StreamOptions& so = options.stream_options;
  return options.output_high_watermark +
         (so.high_watermark + so.max_batch + 1) * kMaxEventBytes +
         options.max_header_bytes + kMaxFinalChunkBytes;
}

size_t StreamServer::MaxOutputBytes(const Options& options) {
  return static_cast<size_t>(options.max_runs) *
         MaxOutputBytesPerConnection(options);
}

// --- Loop 1: connections -----------------------------------------------------
//
// evhttp (2.1) tells nobody when it accepts or frees a connection. The
// server makes each connection's bufferevent (the bevcb) and keeps a
// reference on it; a moment later, before any I/O on it (an event activated
// now runs in this same pass of the loop), it finds the connection through
// the bufferevent's callback argument, which evhttp sets to its connection,
// and registers the close callback. If evhttp freed the connection in
// between, the argument is null (bufferevent_free clears the callbacks) and
// the reference kept the bufferevent readable.

bufferevent* StreamServer::NewConnectionBufferevent(event_base* base,
                                                    void* arg) {
  auto* self = static_cast<StreamServer*>(arg);
  bufferevent* bev = bufferevent_socket_new(base, -1, 0);
  if (bev == nullptr) return nullptr;  // evhttp makes one itself; uncounted.
  bufferevent_incref(bev);
  self->fresh_.push_back(bev);
  {
    MutexLock lock(&self->mu_);
    ++self->stats_.connections_open;
    self->stats_.connections_peak =
        std::max(self->stats_.connections_peak, self->stats_.connections_open);
  }
  if (self->adopt_event_ != nullptr) event_active(self->adopt_event_, 0, 0);
  // At the limit, the listener stops before its next accept.
  self->UpdateAccepting();
  return bev;
}

void StreamServer::OnAdoptConnections(int, short, void* arg) {
  static_cast<StreamServer*>(arg)->AdoptConnections();
}

void StreamServer::AdoptConnections() {
  std::vector<bufferevent*> fresh;
  fresh.swap(fresh_);
  uint64_t gone = 0;
  for (bufferevent* bev : fresh) {
    bufferevent_data_cb read_cb = nullptr, write_cb = nullptr;
    bufferevent_event_cb event_cb = nullptr;
    void* cb_arg = nullptr;
    bufferevent_getcb(bev, &read_cb, &write_cb, &event_cb, &cb_arg);
    auto* conn = static_cast<evhttp_connection*>(cb_arg);
    if (conn != nullptr && http_ != nullptr &&
        evhttp_connection_get_bufferevent(conn) == bev) {
      ConnState& state = conns_[conn];
      state.serial = next_conn_serial_++;
      evhttp_connection_set_closecb(conn, &StreamServer::OnConnectionClosed,
                                    this);
      ArmHeadDeadline(conn);
    } else {
      ++gone;  // Already freed by evhttp: never reaches the close callback.
    }
    bufferevent_decref(bev);
  }
  if (gone > 0) {
    {
      MutexLock lock(&mu_);
      stats_.connections_open -= gone;
    }
    UpdateAccepting();
  }
}

// Any connection going away: a client hanging up, a timeout, evhttp_free.
void StreamServer::OnConnectionClosed(evhttp_connection* conn, void* arg) {
  static_cast<StreamServer*>(arg)->ConnectionClosed(conn);
}

void StreamServer::ConnectionClosed(evhttp_connection* conn) {
  auto it = conns_.find(conn);
  if (it == conns_.end()) return;
  const uint64_t run_id = it->second.run;
  if (it->second.head_deadline.has_value()) {
    (void)Cancel(*it->second.head_deadline);
  }
  conns_.erase(it);
  {
    MutexLock lock(&mu_);
    --stats_.connections_open;
  }
  UpdateAccepting();
  if (run_id != 0) {
    if (Run* run = FindRun(run_id)) ClientGone(*run);
  }
}

// (Re)starts the time `conn` has to send its next request head.
void StreamServer::ArmHeadDeadline(evhttp_connection* conn) {
  auto it = conns_.find(conn);
  if (it == conns_.end()) return;
  ConnState& state = it->second;
  if (state.head_deadline.has_value()) (void)Cancel(*state.head_deadline);
  state.head_deadline.reset();
  const uint64_t serial = state.serial;
  absl::StatusOr<DelayedTaskHandle> t =
      PostDelayed(http_loop_thread_->root(), options_.head_deadline,
                  [this, conn, serial](ContextHandle) {
                    HeadDeadlinePassed(conn, serial);
                  });
  if (t.ok()) state.head_deadline = *t;
}

void StreamServer::HeadDeadlinePassed(evhttp_connection* conn,
                                      uint64_t serial) {
  auto it = conns_.find(conn);
  // Gone, a later connection at the same address, or busy with a request.
  if (it == conns_.end() || it->second.serial != serial) return;
  it->second.head_deadline.reset();
  if (it->second.run != 0) return;
  {
    MutexLock lock(&mu_);
    ++stats_.head_deadline_cut;
  }
  evhttp_connection_free(conn);  // Calls ConnectionClosed.
}

// The listener accepts while not shutting down, not backing off after an
// accept error, and below `max_connections`.
void StreamServer::UpdateAccepting() {
  if (listener_ == nullptr || shutting_down_) return;
  uint64_t open;
  {
    MutexLock lock(&mu_);
    open = stats_.connections_open;
  }
  const bool full = open >= static_cast<uint64_t>(options_.max_connections);
  const bool want = !accept_backoff_ && !full;
  if (want == listener_enabled_) return;
  evconnlistener* lev = evhttp_bound_socket_get_listener(listener_);
  if (want) {
    evconnlistener_enable(lev);
  } else {
    evconnlistener_disable(lev);
    if (full) {
      MutexLock lock(&mu_);
      ++stats_.accept_paused_full;
    }
  }
  listener_enabled_ = want;
}

void StreamServer::OnAcceptError(evconnlistener*, void*) {
  const int error = errno;
  if (http_loop_server != nullptr) http_loop_server->AcceptError(error);
}

// EMFILE/ENFILE (out of descriptors), ENOBUFS/ENOMEM: accept() fails while
// the pending connection keeps the socket readable. Rest, then retry; the
// pending clients wait in the backlog meanwhile.
void StreamServer::AcceptError(int error) {
  const absl::Time now = absl::Now();
  {
    MutexLock lock(&mu_);
    ++stats_.accept_errors;
    ++stats_.accept_backoffs;
  }
  ++accept_errors_unlogged_;
  if (now - last_accept_log_ >= options_.accept_log_interval) {
    std::fprintf(stderr,
                 "stream_server: accept failed: %s (%llu errors since the "
                 "last report); not accepting for %lld ms at a time\n",
                 std::strerror(error),
                 static_cast<unsigned long long>(accept_errors_unlogged_),
                 static_cast<long long>(
                     absl::ToInt64Milliseconds(options_.accept_backoff)));
    accept_errors_unlogged_ = 0;
    last_accept_log_ = now;
    MutexLock lock(&mu_);
    ++stats_.accept_error_logs;
  }
  if (accept_backoff_) return;
  accept_backoff_ = true;
  UpdateAccepting();
  absl::StatusOr<DelayedTaskHandle> t =
      PostDelayed(http_loop_thread_->root(), options_.accept_backoff,
                  [this](ContextHandle) {
                    accept_backoff_ = false;
                    UpdateAccepting();
                  });
  if (!t.ok()) accept_backoff_ = false;  // The loop is going away.
}

bool StreamServer::WaitForIdle(absl::Duration timeout) {
  const auto deadline =
      std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(timeout);
  MutexLock lock(&mu_);
  while (!pending_.empty() || reports_in_flight_ > 0) {
    if (!idle_cv_.WaitUntil(&mu_, deadline) &&
        std::chrono::steady_clock::now() >= deadline) {
      return pending_.empty() && reports_in_flight_ == 0;
    }
  }
  return true;
}

std::vector<RunReport> StreamServer::finished_runs() const {
  MutexLock lock(&mu_);
  return std::vector<RunReport>(finished_.begin(), finished_.end());
}

ServerStats StreamServer::stats() const {
  MutexLock lock(&mu_);
  return stats_;
}

// --- Loop 1: requests --------------------------------------------------------

void StreamServer::OnRequest(evhttp_request* req, void* arg) {
  static_cast<StreamServer*>(arg)->HandleRequest(req);
}

void StreamServer::HandleRequest(evhttp_request* req) {
  // The head is in: its deadline is over. After an immediate reply the
  // connection waits for its next head (keep-alive) under a new one.
  evhttp_connection* conn = evhttp_request_get_connection(req);
  if (conns_.count(conn) == 0) AdoptConnections();
  auto it = conns_.find(conn);
  if (it != conns_.end() && it->second.head_deadline.has_value()) {
    (void)Cancel(*it->second.head_deadline);
    it->second.head_deadline.reset();
  }
  DispatchRequest(req);
  it = conns_.find(conn);
  if (it != conns_.end() && it->second.run == 0) ArmHeadDeadline(conn);
}

void StreamServer::DispatchRequest(evhttp_request* req) {
  {
    MutexLock lock(&mu_);
    ++stats_.requests;
  }
  const evhttp_uri* uri = evhttp_request_get_evhttp_uri(req);
  const char* path = uri != nullptr ? evhttp_uri_get_path(uri) : nullptr;
  const absl::string_view p = path != nullptr ? path : "";
  auto bad = [&](int code, const char* reason, absl::string_view message) {
    {
      MutexLock lock(&mu_);
      ++stats_.bad_requests;
    }
    SendText(req, code, reason, absl::StrCat(message, "\n"));
  };
  if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET");
    bad(405, "Method Not Allowed", "only GET is supported");
    return;
  }
  if (p == "/" || p.empty()) {
    SendText(req, 200, "OK", kUsage);
    return;
  }
  if (p != "/run") {
    bad(404, "Not Found", absl::StrCat("no such path: ", p, "; try /run"));
    return;
  }
  if (shutting_down_) {
    SendText(req, 503, "Service Unavailable", "shutting down\n");
    return;
  }
  if (runs_.size() >= static_cast<size_t>(options_.max_runs)) {
    {
      MutexLock lock(&mu_);
      ++stats_.busy_refused;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After",
                      "1");
    SendText(req, 503, "Service Unavailable", "too many streams; retry\n");
    return;
  }
  absl::StatusOr<RunParams> params =
      ParseRunParams(evhttp_uri_get_query(uri), options_);
  if (!params.ok()) {
    bad(400, "Bad Request", params.status().message());
    return;
  }
  StartRun(req, evhttp_request_get_uri(req), params->events, params->delay,
           params->group_id);
}

void StreamServer::StartRun(evhttp_request* req, const std::string& uri,
                            int events, absl::Duration delay,
                            const std::string& group_id) {
  const uint64_t id = next_run_id_++;
  absl::StatusOr<ContextHandle> a =
      http_loop_->NewContext(absl::StrCat("request ", id));
  absl::StatusOr<ContextHandle> b =
      a.ok() ? http_loop_->NewContext(absl::StrCat("response ", id))
             : a.status();
  if (!b.ok()) {
    if (a.ok()) (void)http_loop_->DestroyContext(*a);
    SendText(req, 500, "Internal Server Error",
             absl::StrCat(b.status().ToString(), "\n"));
    return;
  }

  auto run = std::make_unique<Run>();
  run->server = this;
  run->id = id;
  run->req = req;
  run->conn = evhttp_request_get_connection(req);
  run->a = *a;
  run->b = *b;
  run->events_requested = events;

  // 1. The run's trace, started and made current on A: the request handler's
  //    context, as in the Python original.
  std::optional<TraceScope> trace;
  // W3C Trace Context: continue the caller's trace if it sent a valid
  // traceparent (an invalid one is ignored: a new trace starts).
  evkeyvalq* in_headers = evhttp_request_get_input_headers(req);
  const char* traceparent = evhttp_find_header(in_headers, "traceparent");
  const char* tracestate = evhttp_find_header(in_headers, "tracestate");
  const std::optional<SpanContext> remote =
      traceparent == nullptr
          ? std::nullopt
          : ExtractTraceContext(traceparent,
                                tracestate == nullptr ? "" : tracestate);
  SpanContext own;  // What the response's traceparent names.
  if (tracer_ != nullptr) {
    TraceOptions t;
    // The trace continues the caller's: same trace id, its root span a child
    // of the caller's span, trace flags and state inherited.
    if (remote.has_value()) t.remote_parent = *remote;
    // The run's group and metadata: attributes of the trace's root span.
    if (!group_id.empty())
      t.attributes.emplace_back(kGroupIdAttribute, group_id);
    const std::string meta = kMetadataAttributePrefix;
    t.attributes.emplace_back(meta + "delay_ms",
                              absl::StrCat(absl::ToInt64Milliseconds(delay)));
    t.attributes.emplace_back(meta + "events", absl::StrCat(events));
    t.attributes.emplace_back(meta + "path", uri);
    t.attributes.emplace_back(meta + "run_id", absl::StrCat(id));
    TraceScope scope = tracer_->StartTrace(run->a, "agent run", std::move(t));
    run->trace_id = scope.trace_id();
    own = scope.span_context();  // The trace's (random) root span.
    trace.emplace(std::move(scope));
  }

  {
    MutexLock lock(&mu_);
    ++stats_.runs_started;
    RunReport& r = pending_[id].report;
    r.run_id = id;
    r.group_id = group_id;
    r.events_requested = events;
    r.delay = delay;
    r.trace_id = run->trace_id;
    if (remote.has_value()) r.remote_parent = *remote;
    r.traceparent = FormatTraceparent(own);
  }

  // The 200 and the headers go out now; the body is streamed (chunked).
  evkeyvalq* headers = evhttp_request_get_output_headers(req);
  evhttp_add_header(headers, "Content-Type", "text/event-stream");
  evhttp_add_header(headers, "Cache-Control", "no-cache");
  evhttp_add_header(headers, "X-Run-Id", absl::StrCat(id).c_str());
  if (run->trace_id.valid()) {
    evhttp_add_header(headers, "X-Trace-Id", run->trace_id.ToHex().c_str());
  }
  const TraceContextHeaders out = InjectTraceContext(own);
  if (!out.traceparent.empty()) {
    evhttp_add_header(headers, "traceparent", out.traceparent.c_str());
    if (!out.tracestate.empty()) {
      evhttp_add_header(headers, "tracestate", out.tracestate.c_str());
    }
  }
  evhttp_send_reply_start(req, 200, "OK");
  // The connection now streams this run: its closing is the client going
  // away. (Adopted here at the latest; normally adopted long before.)
  if (conns_.count(run->conn) == 0) AdoptConnections();
  auto conn_it = conns_.find(run->conn);
  if (conn_it != conns_.end()) {
    conn_it->second.run = id;
  } else {  // Not ours to count (its bufferevent was evhttp's own).
    evhttp_connection_set_closecb(run->conn, &StreamServer::OnConnectionClosed,
                                  this);
    ConnState& state = conns_[run->conn];
    state.serial = next_conn_serial_++;
    state.run = id;
    MutexLock lock(&mu_);
    ++stats_.connections_open;
  }
  // Watch the output buffer: what it holds pauses and resumes the agent.
  bufferevent* bev = evhttp_connection_get_bufferevent(run->conn);
  run->gate = std::make_shared<FlowGate>();
  run->pending = evbuffer_new();
  run->output = bufferevent_get_output(bev);
  run->output_bytes = evbuffer_get_length(run->output);
  run->output_cb =
      evbuffer_add_cb(run->output, &StreamServer::OnOutputChanged, run.get());
  UpdateHeld(*run);
  // A quiet client is normal while it streams (no read timeout); one that
  // reads nothing for io_timeout is cut by the write timeout.
  const timeval io = absl::ToTimeval(options_.io_timeout);
  bufferevent_set_timeouts(bev, nullptr, &io);
  if (options_.socket_send_buffer_bytes > 0) {
    const int fd = bufferevent_getfd(bev);
    const int size = options_.socket_send_buffer_bytes;
    if (fd >= 0)
      (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
  }
  runs_[id] = std::move(run);

  // 2. Hand the trace to the agent loop, which makes the stream.
  AgentStart start;
  start.id = id;
  start.events = events;
  start.delay = delay;
  start.b = *b;
  start.gate = runs_[id]->gate;
  if (trace.has_value()) {
    runs_[id]->trace_finished = false;
    const ContextHandle http_root = http_loop_thread_->root();
    start.trace_finish.on_finished = [this, id,
                                      http_root](const ExecutionSite&) {
      // On A's loop (loop 1), once A's "current" was reset. Elsewhere only
      // when loop 1 is already gone, and with it every run.
      if (IsOnLoopThread(http_root)) OnTraceFinished(id);
    };
  }
  start.trace = std::move(trace);
  absl::Status posted =
      Post(agent_loop_thread_->root(),
           [this, start = std::move(start)](ContextHandle) mutable {
             StartAgent(std::move(start));
           });
  if (!posted.ok()) {
    // The agent loop is going away. The task, and the trace with it, was
    // destroyed here, on A's loop thread: the trace has finished itself on
    // A already [F4] (inline, without our `on_finished`).
    runs_[id]->trace_finished = true;
    FinishAgentHalf(id, AgentHalf());
    AttachResponse(*b, id, ContextHandle(), std::nullopt, posted);
  }
}

// 4. The response side: attach the sink on B.
void StreamServer::AttachResponse(
    ContextHandle b, uint64_t id, ContextHandle c,
    std::optional<StreamReader<AgentEvent>> reader, absl::Status status) {
  Run* run = FindRun(id);
  if (run == nullptr) return;  // Not expected; `reader` ends the stream [E5].
  run->agent_ctx = c;
  if (status.ok() && reader.has_value() && run->req != nullptr &&
      !shutting_down_) {
    run->parent = reader->trace_parent();
    Sink<AgentEvent> sink;
    sink.on_event = [this, id](ContextHandle ctx, AgentEvent&& event) {
      OnStreamEvent(ctx, id, std::move(event));
    };
    sink.on_complete = [this, id](ContextHandle ctx, const absl::Status& s) {
      OnStreamComplete(ctx, id, s);
    };
    absl::StatusOr<StreamSubscription> sub =
        std::move(*reader).Attach(b, std::move(sink));
    reader.reset();
    if (sub.ok()) {
      run->subscription.emplace(std::move(*sub));
      return;
    }
    status = sub.status();
  }
  if (status.ok()) {
    status = absl::CancelledError(run->req == nullptr
                                      ? "the client went away"
                                      : "the server is shutting down");
  }
  // Dropping the reader ends the stream [E5]: the agent is told on C, and
  // the stream finishes the trace (posted to A).
  reader.reset();
  EndResponse(*run, status);
}

void StreamServer::OnStreamEvent(ContextHandle b, uint64_t id,
                                 AgentEvent&& event) {
  Run* run = FindRun(id);
  if (run == nullptr || run->req == nullptr) return;
  SpanScope span;
  if (tracer_ != nullptr && run->parent.valid()) {
    SpanOptions o;
    o.parent = run->parent;
    o.attributes.emplace_back("index", int64_t{event.index});
    o.make_current = false;
    span = tracer_->StartSpan(b, "write event", o);
  }
  const std::string text = EventText(event);
  evbuffer_add(run->pending, text.data(), text.size());
  ++run->events_written;
  UpdateHeld(*run);
  if (run->output_bytes == 0 ||
      evbuffer_get_length(run->pending) >= kFlushBytes) {
    FlushPending(*run);  // The connection is idle, or a chunk is full.
  }
  // Otherwise the chunk goes out when the output drains (OnOutputChanged).
  if (!run->paused && run->held > options_.output_high_watermark) {
    // The client reads slower than the agent makes events: the agent waits
    // (before its next emit) until the output is down to the low watermark.
    // What is already in the stream still arrives; the header states the
    // bound that leaves.
    run->paused = true;
    run->gate->paused.store(true, std::memory_order_release);
    MutexLock lock(&mu_);
    ++stats_.pauses;
  }
  if (span.recording()) (void)span.Finish(b);
}

// Hands the pending events to the connection as one chunk.
void StreamServer::FlushPending(Run& run) {
  if (run.req == nullptr || run.pending == nullptr ||
      evbuffer_get_length(run.pending) == 0) {
    return;
  }
  evhttp_send_reply_chunk(run.req, run.pending);  // Empties `pending`.
  UpdateHeld(run);
}

void StreamServer::PostFlush(Run& run) {
  if (run.flush_posted) return;
  run.flush_posted = true;
  const uint64_t id = run.id;
  absl::Status s = Post(run.b, [this, id](ContextHandle) {
    Run* r = FindRun(id);
    if (r == nullptr) return;
    r->flush_posted = false;
    FlushPending(*r);
  });
  if (!s.ok()) run.flush_posted = false;
}

// The connection's output buffer changed: libevent wrote to the socket, or
// evhttp added to it. Never touches the buffer itself (this runs inside
// libevent's buffer operations): flushes are posted.
void StreamServer::OnOutputChanged(evbuffer*, const evbuffer_cb_info* info,
                                   void* arg) {
  Run& run = *static_cast<Run*>(arg);
  run.output_bytes = info->orig_size + info->n_added - info->n_deleted;
  run.server->UpdateHeld(run);
  if (run.output_bytes == 0 && run.pending != nullptr &&
      evbuffer_get_length(run.pending) > 0) {
    run.server->PostFlush(run);
  }
}

// Counts what the run holds; resumes the agent once it is down to the low
// watermark.
void StreamServer::UpdateHeld(Run& run) {
  const size_t held =
      run.output_bytes +
      (run.pending == nullptr ? 0 : evbuffer_get_length(run.pending));
  if (held != run.held) {
    output_total_ = output_total_ - run.held + held;
    run.held = held;
    MutexLock lock(&mu_);
    stats_.output_buffered_bytes = output_total_;
    stats_.output_buffered_peak =
        std::max<uint64_t>(stats_.output_buffered_peak, output_total_);
    stats_.output_peak_per_run =
        std::max<uint64_t>(stats_.output_peak_per_run, held);
  }
  if (run.paused && held <= options_.output_low_watermark) {
    run.paused = false;
    run.gate->paused.store(false, std::memory_order_release);
    const uint64_t id = run.id;
    // Posted after the gate opened: an agent that saw it closed is resumed.
    (void)Post(run.agent_ctx, [this, id](ContextHandle) { ResumeAgent(id); });
  }
}

// The run no longer streams to this connection's buffer.
void StreamServer::StopWatchingOutput(Run& run) {
  if (run.output_cb != nullptr) {
    evbuffer_remove_cb_entry(run.output, run.output_cb);
    run.output_cb = nullptr;
  }
  run.output = nullptr;
  run.output_bytes = 0;
  if (run.pending != nullptr) {
    evbuffer_drain(run.pending, evbuffer_get_length(run.pending));
  }
  run.paused = false;  // Nothing to resume: the stream is ending.
  UpdateHeld(run);
}

void StreamServer::OnStreamComplete(ContextHandle, uint64_t id,
                                    const absl::Status& status) {
  Run* run = FindRun(id);
  if (run == nullptr) return;
  absl::Status s = status;
  if (!s.ok() && shutting_down_) {
    s = absl::UnavailableError("the server is shutting down");
  }
  EndResponse(*run, s);
  // The stream finishes the trace right after this returns (from B; it runs
  // on A), and its `on_finished` then releases the run (OnTraceFinished).
}

void StreamServer::WriteChunk(Run& run, const std::string& text) {
  evbuffer* buf = evbuffer_new();
  if (buf == nullptr) return;
  evbuffer_add(buf, text.data(), text.size());
  evhttp_send_reply_chunk(run.req, buf);
  evbuffer_free(buf);
}

void StreamServer::EndResponse(Run& run, const absl::Status& status) {
  if (run.ended) return;
  run.ended = true;
  run.stream_status = status;
  if (run.req != nullptr) {
    FlushPending(run);
    std::string last;
    if (status.ok()) {
      last = absl::StrCat("event: done\ndata: {\"events\":", run.events_written,
                          ",\"trace_id\":");
      AppendJsonString(run.trace_id.valid() ? run.trace_id.ToHex() : "", &last);
      last.append("}\n\n");
    } else {
      last = absl::StrCat("event: error\ndata: {\"code\":");
      AppendJsonString(absl::StatusCodeToString(status.code()), &last);
      last.append(",\"message\":");
      AppendJsonString(status.message(), &last);
      last.append("}\n\n");
    }
    WriteChunk(run, last);
    StopWatchingOutput(run);
    // The connection may serve another request (keep-alive): it no longer
    // streams this run, and gets its idle timeout back.
    auto it = conns_.find(run.conn);
    if (it != conns_.end()) it->second.run = 0;
    ArmHeadDeadline(run.conn);  // For the next request, if any.
    bufferevent* bev = evhttp_connection_get_bufferevent(run.conn);
    const timeval io = absl::ToTimeval(options_.io_timeout);
    bufferevent_set_timeouts(bev, &io, &io);
    evhttp_send_reply_end(run.req);  // libevent frees the request.
    run.req = nullptr;
    run.conn = nullptr;
  }
  ScheduleRelease(run);
}

// The client went away. libevent is freeing the connection (its buffers are
// still there).
void StreamServer::ClientGone(Run& run) {
  StopWatchingOutput(run);
  evhttp_request* req = run.req;
  run.req = nullptr;
  run.conn = nullptr;
  run.client_disconnected = true;
  // Detached (EOF while streaming): ours to free, which reply_end does.
  // Still attached (the server itself is freeing the connection): libevent
  // frees it after this callback.
  if (req != nullptr && evhttp_request_get_connection(req) == nullptr) {
    evhttp_send_reply_end(req);
  }
  // [E3]: the stream ends; the agent hears it on C (on_closed), the sink on
  // B (on_complete), and the trace is finished on A. If the subscription
  // does not exist yet, AttachResponse sees `req == nullptr`.
  if (run.subscription.has_value() && !run.ended) {
    (void)run.subscription->Cancel();
  }
}

// 5. Once the stream has ended and its trace has been finished on A (both
// on loop 1, in either order), release A and B -- on A.
void StreamServer::OnTraceFinished(uint64_t id) {
  Run* run = FindRun(id);
  if (run == nullptr) return;
  run->trace_finished = true;
  ScheduleRelease(*run);
}

void StreamServer::ScheduleRelease(Run& run) {
  if (run.release_scheduled || !run.ended || !run.trace_finished) return;
  run.release_scheduled = true;
  const uint64_t id = run.id;
  absl::Status s =
      Post(run.a, [this, id](ContextHandle a) { ReleaseRun(a, id); });
  if (!s.ok()) ReleaseRun(ContextHandle(), id);
}

void StreamServer::ReleaseRun(ContextHandle a, uint64_t id) {
  Run* run = FindRun(id);
  if (run == nullptr) return;
  HttpHalf half;
  if (tracer_ != nullptr && run->trace_id.valid() && !a.is_null()) {
    // The finish ran on A before we were told: A's "current" is reset.
    absl::StatusOr<TraceId> current = tracer_->CurrentTraceId(a);
    half.trace_reset_on_origin = current.ok() && *current != run->trace_id;
    if (!half.trace_reset_on_origin) {
      std::fprintf(stderr,
                   "stream_server: run %llu: trace %s still current on its "
                   "request context after its finish ran\n",
                   static_cast<unsigned long long>(id),
                   run->trace_id.ToHex().c_str());
    }
  }
  half.request_ctx = run->a;
  half.response_ctx = run->b;
  half.events_written = run->events_written;
  half.client_disconnected = run->client_disconnected;
  half.stream_status = run->stream_status;
  (void)DestroyContext(run->a);
  (void)DestroyContext(run->b);
  // The subscription has ended; destroying it is a no-op for the stream.
  runs_.erase(id);
  FinishHttpHalf(id, half);
}

StreamServer::Run* StreamServer::FindRun(uint64_t id) {
  auto it = runs_.find(id);
  return it == runs_.end() ? nullptr : it->second.get();
}

// --- Loop 2: the agent -------------------------------------------------------

void StreamServer::StartAgent(AgentStart start) {
  const uint64_t id = start.id;
  const ContextHandle b = start.b;
  absl::StatusOr<ContextHandle> c =
      agent_loop_->NewContext(absl::StrCat("agent ", id));
  if (!c.ok()) {
    // Finished on A (posted there), which tells loop 1 through
    // `on_finished`.
    if (start.trace.has_value()) {
      (void)start.trace->Finish(ContextHandle(), std::move(start.trace_finish));
    }
    FinishAgentHalf(id, AgentHalf());
    absl::Status status = c.status();
    (void)Post(b, [this, id, status](ContextHandle ctx) {
      AttachResponse(ctx, id, ContextHandle(), std::nullopt, status);
    });
    return;
  }
  ProducerCallbacks callbacks;
  callbacks.on_writable = [this, id](ContextHandle) { Pump(id); };
  callbacks.on_closed = [this, id](ContextHandle, const absl::Status& s) {
    OnAgentClosed(id, s);
  };
  // The stream owns the trace from here on, and finishes it however it ends,
  // with `trace_finish` (its `on_finished` releases the run on loop 1).
  StreamConfig config;
  config.options = options_.stream_options;
  config.callbacks = std::move(callbacks);
  config.trace = std::move(start.trace);
  config.trace_finish = std::move(start.trace_finish);
  const bool traced = config.trace.has_value();
  absl::StatusOr<StreamPair<AgentEvent>> pair =
      MakeStream<AgentEvent>(*c, std::move(config));
  if (!pair.ok()) {  // Options were validated in Start; not expected.
    // The trace was destroyed with the refused config and finished itself
    // on A [F4]; tell loop 1 after that finish (posted to A before this).
    if (traced) {
      (void)Post(http_loop_thread_->root(),
                 [this, id](ContextHandle) { OnTraceFinished(id); });
    }
    (void)agent_loop_->DestroyContext(*c);
    FinishAgentHalf(id, AgentHalf());
    absl::Status status = pair.status();
    (void)Post(b, [this, id, status](ContextHandle ctx) {
      AttachResponse(ctx, id, ContextHandle(), std::nullopt, status);
    });
    return;
  }
  auto agent = std::make_unique<Agent>(std::move(pair->writer));
  agent->id = id;
  agent->ctx = *c;
  agent->total = start.events;
  agent->delay = start.delay;
  agent->parent = agent->writer.trace_parent();
  agent->half.agent_ctx = *c;
  agent->gate = start.gate;
  agents_[id] = std::move(agent);

  // The reader goes to B, where the response is written. If loop 1 is gone,
  // the task (and the reader) is destroyed: the stream ends [E5] and on_closed
  // stops the agent.
  std::optional<StreamReader<AgentEvent>> reader(std::move(pair->reader));
  const ContextHandle agent_ctx = *c;
  (void)Post(b, [this, id, agent_ctx,
                 reader = std::move(reader)](ContextHandle ctx) mutable {
    AttachResponse(ctx, id, agent_ctx, std::move(reader), absl::OkStatus());
  });
  // The agent starts at once; events wait in the stream until the sink is
  // attached (at most high_watermark of them, then backpressure).
  (void)Post(*c, [this, id](ContextHandle) { Pump(id); });
}

// 3. Runs on C. Advances the agent as far as it can: returns when waiting
// for a step's delay, for on_writable, or when done.
void StreamServer::Pump(uint64_t id) {
  Agent* a = FindAgent(id);
  if (a == nullptr || a->stopped) return;
  a->waiting_gate = false;  // Whoever resumed us, a later ResumeAgent is moot.
  if (a->retry_timer.has_value()) {  // Likewise a pending loop-full retry.
    (void)Cancel(*a->retry_timer);
    a->retry_timer.reset();
  }
  int burst = 0;
  while (true) {
    if (a->next == a->total) {
      a->half.producer_completed = a->writer.Complete().ok();
      FinalizeAgent(*a);  // Destroys *a.
      return;
    }
    if (!a->pending.has_value()) {
      // A new step: its span covers the simulated work and the emit.
      if (tracer_ != nullptr && a->parent.valid()) {
        SpanOptions o;
        o.parent = a->parent;
        o.attributes.emplace_back("index", int64_t{a->next});
        o.make_current = false;
        // Refused if the trace already ended (the consumer went away); the
        // emit below then says so too.
        a->step = tracer_->StartSpan(a->ctx, "agent step", o);
      }
      a->pending = AgentEvent{a->next, absl::StrCat("token ", a->next)};
      a->delay_elapsed = a->delay <= absl::ZeroDuration();
    }
    if (!a->delay_elapsed) {
      absl::StatusOr<DelayedTaskHandle> t =
          PostDelayed(a->ctx, a->delay, [this, id](ContextHandle) {
            if (Agent* agent = FindAgent(id)) {
              agent->timer.reset();
              agent->delay_elapsed = true;
              Pump(id);
            }
          });
      if (t.ok()) {
        a->timer = *t;
        return;
      }
      a->delay_elapsed = true;  // Loop going away: emit without the delay.
    }
    if (a->gate != nullptr && a->gate->paused.load(std::memory_order_acquire)) {
      // The client's connection is full: wait for ResumeAgent.
      a->waiting_gate = true;
      return;
    }
    absl::Status s = a->writer.Emit(std::move(*a->pending));
    if (absl::IsResourceExhausted(s)) {
      // Kept. A full stream calls on_writable once it drained; a full sink
      // loop calls nothing: retry on a timer.
      const uint64_t loop_full = a->writer.counters().refused_loop_full;
      if (loop_full != a->loop_full_seen) {
        a->loop_full_seen = loop_full;
        RetryAfterLoopFull(*a);
      }
      return;
    }
    a->loop_full_backoff = absl::ZeroDuration();
    if (!s.ok()) {
      // kCancelled: the consumer ended the stream; on_closed is on its way.
      if (a->step.recording()) {
        a->step.SetError("not delivered");
        a->step.SetAttribute("ctxloop.error.data", s.ToString());
        (void)a->step.Finish(a->ctx);
      }
      a->pending.reset();
      a->stopped = true;
      if (!absl::IsCancelled(s)) FinalizeAgent(*a);
      return;
    }
    if (a->step.recording()) (void)a->step.Finish(a->ctx);
    a->pending.reset();
    ++a->next;
    if (a->delay <= absl::ZeroDuration() && ++burst >= kBurst) {
      // Let the loop breathe; continue in a later task.
      if (Post(a->ctx, [this, id](ContextHandle) { Pump(id); }).ok()) return;
    }
  }
}

void StreamServer::RetryAfterLoopFull(Agent& a) {
  a.loop_full_backoff =
      a.loop_full_backoff <= absl::ZeroDuration()
          ? kLoopFullBackoffMin
          : std::min(a.loop_full_backoff * 2, kLoopFullBackoffMax);
  ++a.half.loop_full_retries;
  const uint64_t id = a.id;
  absl::StatusOr<DelayedTaskHandle> t =
      PostDelayed(a.ctx, a.loop_full_backoff, [this, id](ContextHandle) {
        if (Agent* agent = FindAgent(id)) {
          agent->retry_timer.reset();
          Pump(id);
        }
      });
  // Not ok: loop 2 is going away; AbortAgents ends the run.
  if (t.ok()) a.retry_timer = *t;
}

// On C, posted by loop 1 after it opened the gate.
void StreamServer::ResumeAgent(uint64_t id) {
  Agent* a = FindAgent(id);
  if (a == nullptr || !a->waiting_gate) return;
  a->waiting_gate = false;
  Pump(id);
}

void StreamServer::OnAgentClosed(uint64_t id, const absl::Status& status) {
  Agent* a = FindAgent(id);
  if (a == nullptr) return;  // Already completed.
  a->half.producer_saw_closed = true;
  a->half.producer_closed_status = status;
  if (a->timer.has_value()) {
    (void)Cancel(*a->timer);
    a->timer.reset();
  }
  if (a->retry_timer.has_value()) {
    (void)Cancel(*a->retry_timer);
    a->retry_timer.reset();
  }
  if (a->step.recording()) {
    a->step.SetError("consumer went away");
    a->step.SetAttribute("ctxloop.error.data", status.ToString());
    (void)a->step.Finish(a->ctx);
  }
  FinalizeAgent(*a);
}

void StreamServer::FinalizeAgent(Agent& agent) {
  const uint64_t id = agent.id;
  const StreamCounters counters = agent.writer.counters();
  AgentHalf half = agent.half;
  half.events_emitted = counters.emitted;
  half.refused_full = counters.refused_full;
  half.refused_loop_full = counters.refused_loop_full;
  const ContextHandle c = agent.ctx;
  agents_.erase(id);  // The writer: ended, so destroying it is a no-op.
  (void)DestroyContext(c);
  FinishAgentHalf(id, half);
}

void StreamServer::AbortAgents() {
  std::vector<uint64_t> ids;
  for (const auto& [id, agent] : agents_) ids.push_back(id);
  for (uint64_t id : ids) {
    Agent* a = FindAgent(id);
    if (a->timer.has_value()) (void)Cancel(*a->timer);
    a->timer.reset();
    if (a->retry_timer.has_value()) (void)Cancel(*a->retry_timer);
    a->retry_timer.reset();
    if (a->step.recording()) {
      a->step.SetError("server shutting down");
      (void)a->step.Finish(a->ctx);
    }
    (void)a->writer.Fail(absl::UnavailableError("the server is shutting down"));
    FinalizeAgent(*a);
  }
}

StreamServer::Agent* StreamServer::FindAgent(uint64_t id) {
  auto it = agents_.find(id);
  return it == agents_.end() ? nullptr : it->second.get();
}

// --- Reports -----------------------------------------------------------------

void StreamServer::FinishHttpHalf(uint64_t id, const HttpHalf& half) {
  mu_.Lock();
  auto it = pending_.find(id);
  if (it == pending_.end()) {
    mu_.Unlock();
    return;
  }
  RunReport& r = it->second.report;
  r.request_ctx = half.request_ctx;
  r.response_ctx = half.response_ctx;
  r.events_written = half.events_written;
  r.client_disconnected = half.client_disconnected;
  r.stream_status = half.stream_status;
  r.trace_reset_on_origin = half.trace_reset_on_origin;
  it->second.http_done = true;
  ReportIfDone(id);
}

void StreamServer::FinishAgentHalf(uint64_t id, const AgentHalf& half) {
  mu_.Lock();
  auto it = pending_.find(id);
  if (it == pending_.end()) {
    mu_.Unlock();
    return;
  }
  RunReport& r = it->second.report;
  r.agent_ctx = half.agent_ctx;
  r.events_emitted = half.events_emitted;
  r.refused_full = half.refused_full;
  r.refused_loop_full = half.refused_loop_full;
  r.loop_full_retries = half.loop_full_retries;
  r.producer_completed = half.producer_completed;
  r.producer_saw_closed = half.producer_saw_closed;
  r.producer_closed_status = half.producer_closed_status;
  it->second.agent_done = true;
  ReportIfDone(id);
}

void StreamServer::ReportIfDone(uint64_t id) {
  auto it = pending_.find(id);
  if (!it->second.http_done || !it->second.agent_done) {
    mu_.Unlock();
    return;
  }
  RunReport report = std::move(it->second.report);
  pending_.erase(it);
  ++stats_.runs_finished;
  if (report.stream_status.ok()) {
    ++stats_.runs_completed;
  } else {
    ++stats_.runs_cancelled;
  }
  finished_.push_back(report);
  while (finished_.size() > options_.max_reports) finished_.pop_front();
  // Idle is declared only after the callback has returned: a caller of
  // WaitForIdle reads what its callback recorded (tests/load counted one run
  // short when the signal came first).
  ++reports_in_flight_;
  mu_.Unlock();
  if (options_.on_run_finished) {
    MutexLock callback_lock(&callback_mu_);
    options_.on_run_finished(report);
  }
  mu_.Lock();
  const bool idle = --reports_in_flight_ == 0 && pending_.empty();
  mu_.Unlock();
  if (idle) idle_cv_.SignalAll();
}

}  // namespace examples
}  // namespace ctxloop
