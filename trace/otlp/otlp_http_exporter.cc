// Copyright 2026 The ctxloop Authors.

#include "ctxloop/trace/otlp/otlp_http_exporter.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <random>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/loop/loop_thread.h"
#include "ctxloop/trace/otlp/otlp_response.h"

namespace ctxloop {
namespace {

// What one HTTP attempt ended with. Written on the loop thread, read by the
// waiting `Export` caller; both under `Impl::mu_`.
struct AttemptResult {
  enum class Failure { kNone, kTooLarge, kTimedOut };
  bool done = false;
  int http_status = 0;  // 0: no (readable) response.
  Failure failure = Failure::kNone;
  std::string transport_error;
  std::string body;  // The response body (at most max_response_body).
  std::string retry_after;
};

// Bytes beyond the header and body caps the connection's input buffer may
// hold unparsed before libevent stops reading from the socket (an endless
// chunk-size line is the one thing evhttp buffers without a cap of its own).
constexpr size_t kInputSlack = 64 * 1024;
// Answered connections kept open for reuse (attempts run one at a time, so
// one is used; the second covers an answer racing a new attempt).
constexpr size_t kMaxIdleConnections = 2;

absl::StatusOr<std::string> Gzip(absl::string_view in) {
  z_stream zs{};
  if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8,
                   Z_DEFAULT_STRATEGY) != Z_OK) {
    return absl::InternalError("OtlpHttpExporter: deflateInit2 failed");
  }
  std::string out;
  out.resize(deflateBound(&zs, in.size()) + 32);
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&zs, Z_FINISH);
  const size_t written = out.size() - zs.avail_out;
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) {
    return absl::InternalError(
        absl::StrCat("OtlpHttpExporter: gzip failed (zlib code ", rc, ")"));
  }
  out.resize(written);
  return out;
}

const char* RequestErrorName(int error) {
  switch (error) {
    case EVREQ_HTTP_TIMEOUT:
      return "timeout";
    case EVREQ_HTTP_EOF:
      return "connection closed or refused";
    case EVREQ_HTTP_INVALID_HEADER:
      return "invalid response header";
    case EVREQ_HTTP_BUFFER_ERROR:
      return "buffer error";
    case EVREQ_HTTP_REQUEST_CANCEL:
      return "cancelled";
    case EVREQ_HTTP_DATA_TOO_LONG:
      return "response too long";
    default:
      return "connection error";
  }
}

absl::StatusOr<absl::Duration> ParseMillis(const char* name,
                                           absl::string_view value) {
  int64_t ms = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(value), &ms) || ms <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, "=\"", value, "\": expected a positive number of milliseconds"));
  }
  return absl::Milliseconds(ms);
}

const char* GetEnv(const char* name) {
  const char* v = std::getenv(name);
  return (v != nullptr && *v != '\0') ? v : nullptr;
}

}  // namespace

struct OtlpHttpExporter::Impl {
  // One connection (loop-thread state), with what its input buffer saw
  // during the current attempt.
  struct Conn {
    Impl* impl = nullptr;
    evhttp_connection* conn = nullptr;
    uint64_t bytes_in = 0;      // Read from the socket this attempt.
    bool headers_done = false;  // The current response's headers parsed.
  };
  // One request in flight on the loop thread (loop-thread state). Owned by
  // `requests` until it completes, its deadline cancels it, or the cleanup
  // frees its connection [H3]; libevent calls back with it only while it is
  // there.
  struct Request {
    Impl* impl = nullptr;
    uint64_t id = 0;
    std::shared_ptr<AttemptResult> result;
    Conn* conn = nullptr;
    evhttp_request* req = nullptr;  // libevent's; valid while pending.
    DelayedTaskHandle deadline;
    int error = -1;  // enum evhttp_request_error, if the error callback ran.
    int status_seen = 0;  // From the status line, once headers are parsed.
  };

  Options options;
  std::string host;
  int port = 80;
  std::string path;  // With the query, if any.

  std::unique_ptr<LoopThread> loop;  // Reset by Shutdown.
  event_base* base = nullptr;        // The loop's; used on its thread only.

  ctxloop::Mutex report_mu;  // Serializes on_error.

  mutable ctxloop::Mutex mu;
  ctxloop::CondVar cv;  // Attempt completions, shutdown.
  bool shutdown ABSL_GUARDED_BY(mu) = false;
  Stats stats ABSL_GUARDED_BY(mu);
  std::mt19937_64 rng ABSL_GUARDED_BY(mu){std::random_device{}()};

  // Loop-thread only: live requests and connections, and whether the
  // shutdown cleanup ran ([H3]).
  std::map<uint64_t, std::unique_ptr<Request>> requests;
  uint64_t next_request_id = 1;
  std::map<evhttp_connection*, std::unique_ptr<Conn>> conns;
  // Connections whose last request was answered, kept for the next one
  // (keep-alive); a subset of `conns`.
  std::vector<Conn*> idle;
  bool closed = false;

  // Loop thread: sends `body`; completes `result` (under mu) when done, or
  // at `timeout` from now, whichever comes first.
  void Start(std::shared_ptr<AttemptResult> result,
             std::shared_ptr<const std::string> body, absl::Duration timeout) {
    if (closed || base == nullptr) {
      Complete(result, 0, "exporter shut down", nullptr);
      return;
    }
    // Keep-alive: the connection of the last answered request, if any
    // (libevent reconnects it if the collector closed it meanwhile).
    Conn* conn = nullptr;
    if (!idle.empty()) {
      conn = idle.back();
      idle.pop_back();
    } else {
      conn = NewConnection();
      if (conn == nullptr) {
        Complete(result, 0, "cannot create a connection", nullptr);
        return;
      }
    }
    conn->bytes_in = 0;
    conn->headers_done = false;

    auto owned = std::make_unique<Request>();
    Request* r = owned.get();
    r->impl = this;
    r->id = next_request_id++;
    r->result = std::move(result);
    r->conn = conn;
    evhttp_request* req = evhttp_request_new(&OnResponse, r);
    if (req == nullptr) {
      Complete(r->result, 0, "cannot create a request", nullptr);
      FreeConnection(conn->conn);
      return;
    }
    r->req = req;
    evhttp_request_set_error_cb(req, &OnRequestError);
    evhttp_request_set_header_cb(req, &OnHeaders);
    evkeyvalq* headers = evhttp_request_get_output_headers(req);
    evhttp_add_header(headers, "Host", host.c_str());
    evhttp_add_header(headers, "Content-Type", "application/json");
    evhttp_add_header(headers, "User-Agent", "ctxloop-otlp-http/0.1");
    if (options.gzip) evhttp_add_header(headers, "Content-Encoding", "gzip");
    for (const auto& [k, v] : options.headers) {
      evhttp_add_header(headers, k.c_str(), v.c_str());
    }
    evbuffer_add(evhttp_request_get_output_buffer(req), body->data(),
                 body->size());
    requests.emplace(r->id, std::move(owned));
    if (evhttp_make_request(conn->conn, req, EVHTTP_REQ_POST, path.c_str()) !=
        0) {
      // libevent freed `req`.
      auto it = requests.find(r->id);
      Complete(it->second->result, 0, "cannot send the request", nullptr);
      requests.erase(it);
      FreeConnection(conn->conn);
      return;
    }
    DisableNagle(conn->conn);
    // The attempt's deadline: connect, send and the whole response.
    const uint64_t id = r->id;
    absl::StatusOr<DelayedTaskHandle> deadline = PostDelayed(
        root, timeout,
        [this, id, timeout](ContextHandle) { OnDeadline(id, timeout); });
    if (deadline.ok()) {
      r->deadline = *deadline;
    } else {
      OnDeadline(id, timeout);  // The loop is ending: end the attempt now.
    }
  }

  // A connection with the response caps applied, registered in `conns`.
  Conn* NewConnection() {
    evhttp_connection* c = evhttp_connection_base_new(
        base, nullptr, host.c_str(), static_cast<uint16_t>(port));
    if (c == nullptr) return nullptr;
    evhttp_connection_set_max_headers_size(
        c, static_cast<ev_ssize_t>(options.max_response_headers));
    evhttp_connection_set_max_body_size(
        c, static_cast<ev_ssize_t>(options.max_response_body));
    auto owned = std::make_unique<Conn>();
    Conn* conn = owned.get();
    conn->impl = this;
    conn->conn = c;
    // libevent's header and body caps do not cover a chunk-size line (it
    // is buffered until its CRLF): past the caps plus some slack, stop
    // reading from the socket; the deadline then ends the attempt.
    bufferevent* bev = evhttp_connection_get_bufferevent(c);
    bufferevent_setwatermark(
        bev, EV_READ, 0,
        options.max_response_headers + options.max_response_body + kInputSlack);
    evbuffer_add_cb(bufferevent_get_input(bev), &OnInput, conn);
    conns.emplace(c, std::move(owned));
    return conn;
  }

  // Counts what the connection reads (to tell an over-long header section,
  // which libevent reports as an invalid header, from a malformed one).
  static void OnInput(evbuffer*, const evbuffer_cb_info* info, void* arg) {
    static_cast<Conn*>(arg)->bytes_in += info->n_added;
  }

  // The request is queued, not yet written (libevent writes it from the
  // loop): without TCP_NODELAY, a kept-alive connection's request tail waits
  // for the collector's delayed ACK (milliseconds per export, measured by
  // BM_Ctxloop_OtlpHttpExport512). The socket exists once the request is
  // made (a new or reconnecting connection has just created it).
  static void DisableNagle(evhttp_connection* conn) {
    bufferevent* bev = evhttp_connection_get_bufferevent(conn);
    const evutil_socket_t fd = bev != nullptr ? bufferevent_getfd(bev) : -1;
    if (fd < 0) return;
    const int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }

  static void OnRequestError(enum evhttp_request_error error, void* arg) {
    static_cast<Request*>(arg)->error = error;
  }

  // The status line and headers are parsed (within max_response_headers).
  static int OnHeaders(evhttp_request* req, void* arg) {
    Request* r = static_cast<Request*>(arg);
    r->status_seen = evhttp_request_get_response_code(req);
    r->conn->headers_done = true;
    return 0;
  }

  // [H5] Loop thread: the attempt `id` is out of time. Cancels its request
  // (libevent resets the connection and runs only the error callback) and
  // frees the connection, so nothing of it outlives the attempt.
  void OnDeadline(uint64_t id, absl::Duration timeout) {
    auto it = requests.find(id);
    if (it == requests.end()) return;  // Answered, failed or cleaned up.
    std::unique_ptr<Request> owned = std::move(it->second);
    requests.erase(it);
    evhttp_connection* conn = owned->conn->conn;
    const uint64_t bytes_read = owned->conn->bytes_in;
    evhttp_cancel_request(owned->req);
    FreeConnection(conn);
    Complete(owned->result, 0,
             absl::StrCat("no complete answer within the attempt's deadline (",
                          absl::FormatDuration(timeout), ")"),
             nullptr, AttemptResult::Failure::kTimedOut, bytes_read);
  }

  static void OnResponse(evhttp_request* req, void* arg) {
    Request* r = static_cast<Request*>(arg);
    Impl* impl = r->impl;
    auto it = impl->requests.find(r->id);
    if (it == impl->requests.end()) return;  // Cleaned up [H3].
    std::unique_ptr<Request> owned = std::move(it->second);
    impl->requests.erase(it);
    (void)Cancel(owned->deadline);  // [H5]: answered first.
    Conn* conn = owned->conn;
    const int code = req != nullptr ? evhttp_request_get_response_code(req) : 0;
    if (code == 0) {
      // libevent reports a header section over the cap as an invalid
      // header; what the connection read tells the two apart.
      const bool too_large =
          owned->error == EVREQ_HTTP_DATA_TOO_LONG ||
          (owned->error == EVREQ_HTTP_INVALID_HEADER && !conn->headers_done &&
           conn->bytes_in > impl->options.max_response_headers);
      std::string what;
      if (too_large) {
        what =
            conn->headers_done
                ? absl::StrCat("response body over the cap of ",
                               impl->options.max_response_body, " bytes (HTTP ",
                               owned->status_seen, "), refused")
                : absl::StrCat("response header section over the cap of ",
                               impl->options.max_response_headers,
                               " bytes, refused");
      } else {
        what = owned->error >= 0 ? RequestErrorName(owned->error)
                                 : "connection error";
      }
      impl->Complete(owned->result, 0, what, nullptr,
                     too_large ? AttemptResult::Failure::kTooLarge
                               : AttemptResult::Failure::kNone,
                     conn->bytes_in);
    } else {
      impl->Complete(owned->result, code, "", req,
                     AttemptResult::Failure::kNone, conn->bytes_in);
    }
    if (code != 0 && impl->idle.size() < kMaxIdleConnections &&
        !ClosesConnection(req)) {
      // Answered and kept open: the next request reuses it.
      impl->idle.push_back(conn);
      return;
    }
    // The connection may not be freed inside its own callback: later.
    evhttp_connection* c = conn->conn;
    if (!Post(impl->loop_root(), [impl, c](ContextHandle) {
           impl->FreeConnection(c);
         }).ok()) {
      // The loop is shutting down: the cleanup frees it.
    }
  }

  // True if the collector said it closes the connection after this answer.
  static bool ClosesConnection(evhttp_request* req) {
    const char* c =
        evhttp_find_header(evhttp_request_get_input_headers(req), "Connection");
    return c != nullptr && absl::EqualsIgnoreCase(c, "close");
  }

  ContextHandle loop_root() const { return root; }
  ContextHandle root;

  void FreeConnection(evhttp_connection* conn) {
    auto it = conns.find(conn);
    if (it == conns.end()) return;
    idle.erase(std::remove(idle.begin(), idle.end(), it->second.get()),
               idle.end());
    evhttp_connection_free(conn);
    conns.erase(it);
  }

  void Complete(const std::shared_ptr<AttemptResult>& result, int code,
                absl::string_view error, evhttp_request* req,
                AttemptResult::Failure failure = AttemptResult::Failure::kNone,
                uint64_t bytes_read = 0) {
    std::string body, retry_after;
    if (req != nullptr) {
      evbuffer* in = evhttp_request_get_input_buffer(req);
      const size_t n =
          std::min(evbuffer_get_length(in), options.max_response_body);
      body.resize(n);
      if (n > 0) evbuffer_copyout(in, body.data(), n);
      const char* ra = evhttp_find_header(evhttp_request_get_input_headers(req),
                                          "Retry-After");
      if (ra != nullptr) retry_after = ra;
    }
    {
      ctxloop::MutexLock lock(&mu);
      result->done = true;
      result->http_status = code;
      result->failure = failure;
      result->transport_error = std::string(error);
      result->body = std::move(body);
      result->retry_after = std::move(retry_after);
      stats.response_bytes_read += bytes_read;
      if (failure == AttemptResult::Failure::kTooLarge) {
        ++stats.responses_too_large;
      } else if (failure == AttemptResult::Failure::kTimedOut) {
        ++stats.attempts_timed_out;
      }
    }
    cv.SignalAll();
  }

  // Loop thread, at shutdown [H3]: frees every connection; their requests'
  // callbacks never run.
  void CleanUp() {
    closed = true;
    auto pending = std::move(requests);
    requests.clear();
    for (auto& [c, conn] : conns) evhttp_connection_free(c);
    conns.clear();
    idle.clear();
    for (auto& [id, r] : pending) {
      (void)Cancel(r->deadline);  // [H3]
      Complete(r->result, 0, "exporter shut down", nullptr);
    }
  }
};

std::string OtlpHttpExporter::TracesUrl(absl::string_view base) {
  return absl::StrCat(absl::StripSuffix(base, "/"), "/v1/traces");
}

absl::StatusOr<OtlpHttpExporter::Options>
OtlpHttpExporter::OptionsFromEnvironment(Options base) {
  if (const char* v = GetEnv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) {
    base.endpoint = v;
  } else if (const char* v = GetEnv("OTEL_EXPORTER_OTLP_ENDPOINT")) {
    base.endpoint = TracesUrl(v);
  }
  for (const char* name :
       {"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"}) {
    const char* v = GetEnv(name);
    if (v == nullptr) continue;
    absl::StatusOr<Attributes> kv = otlp::ParseResourceAttributes(v);
    if (!kv.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": ", kv.status().message()));
    }
    for (auto& [k, value] : *kv) {
      std::string lower = absl::AsciiStrToLower(k);
      base.headers.erase(
          std::remove_if(base.headers.begin(), base.headers.end(),
                         [&](const auto& h) {
                           return absl::AsciiStrToLower(h.first) == lower;
                         }),
          base.headers.end());
      base.headers.emplace_back(k, std::get<std::string>(value));
    }
  }
  for (const char* name :
       {"OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"}) {
    const char* v = GetEnv(name);
    if (v == nullptr) continue;
    absl::StatusOr<absl::Duration> d = ParseMillis(name, v);
    if (!d.ok()) return d.status();
    base.timeout = *d;
  }
  for (const char* name : {"OTEL_EXPORTER_OTLP_COMPRESSION",
                           "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION"}) {
    const char* v = GetEnv(name);
    if (v == nullptr) continue;
    const std::string c = absl::AsciiStrToLower(absl::StripAsciiWhitespace(v));
    if (c == "gzip") {
      base.gzip = true;
    } else if (c == "none") {
      base.gzip = false;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(name, "=\"", v, "\": expected \"gzip\" or \"none\""));
    }
  }
  std::string warning;
  otlp::Resource env_resource = otlp::ResourceFromEnvironment(
      base.resource.attributes.empty() ? "ctxloop" : "", &warning);
  if (base.resource.attributes.empty()) {
    base.resource = std::move(env_resource);
  } else {
    // Keep the code's resource; the environment adds and overrides.
    for (auto& kv : env_resource.attributes) {
      if (kv.first == "service.name" &&
          std::get<std::string>(kv.second).empty())
        continue;
      auto it = std::find_if(
          base.resource.attributes.begin(), base.resource.attributes.end(),
          [&](const auto& a) { return a.first == kv.first; });
      if (it != base.resource.attributes.end()) {
        it->second = std::move(kv.second);
      } else {
        base.resource.attributes.push_back(std::move(kv));
      }
    }
  }
  if (!warning.empty()) {
    std::fprintf(stderr, "ctxloop OtlpHttpExporter: %s\n", warning.c_str());
  }
  return base;
}

absl::StatusOr<std::unique_ptr<OtlpHttpExporter>> OtlpHttpExporter::Create(
    Options options) {
  if (options.timeout <= absl::ZeroDuration() ||
      options.attempt_timeout <= absl::ZeroDuration() ||
      options.max_attempts < 1 ||
      options.initial_backoff <= absl::ZeroDuration() ||
      options.max_backoff < options.initial_backoff ||
      options.max_retry_after < absl::ZeroDuration() ||
      options.max_response_headers == 0 || options.max_response_body == 0 ||
      options.max_response_headers > (size_t{1} << 30) ||
      options.max_response_body > (size_t{1} << 30)) {
    return absl::InvalidArgumentError(
        "OtlpHttpExporter: need timeout > 0, attempt_timeout > 0, "
        "max_attempts >= 1, "
        "0 < initial_backoff <= max_backoff, max_retry_after >= 0, "
        "0 < max_response_headers, max_response_body <= 1 GiB");
  }
  evhttp_uri* uri = evhttp_uri_parse(options.endpoint.c_str());
  if (uri == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "OtlpHttpExporter: endpoint \"", options.endpoint, "\" is not a URL"));
  }
  auto impl = std::make_unique<Impl>();
  const char* scheme = evhttp_uri_get_scheme(uri);
  const char* host = evhttp_uri_get_host(uri);
  const char* path = evhttp_uri_get_path(uri);
  const char* query = evhttp_uri_get_query(uri);
  const int port = evhttp_uri_get_port(uri);
  const bool http = scheme != nullptr && absl::EqualsIgnoreCase(scheme, "http");
  if (http && host != nullptr && *host != '\0') {
    impl->host = host;
    impl->port = port > 0 ? port : 80;
    impl->path = (path != nullptr && *path != '\0') ? path : "/";
    if (query != nullptr) absl::StrAppend(&impl->path, "?", query);
  }
  evhttp_uri_free(uri);
  if (!http || impl->host.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("OtlpHttpExporter: endpoint \"", options.endpoint,
                     "\" must be http://host[:port]/path (no TLS)"));
  }
  if (options.resource.attributes.empty()) {
    options.resource = otlp::Resource::WithServiceName("ctxloop");
  }
  impl->options = std::move(options);
  impl->loop = std::make_unique<LoopThread>();
  impl->root = impl->loop->root();
  Impl* raw = impl.get();
  absl::Status s =
      impl->loop->Invoke([raw](Loop& loop) { raw->base = loop.base(); });
  if (!s.ok()) return s;
  return std::unique_ptr<OtlpHttpExporter>(
      new OtlpHttpExporter(std::move(impl)));
}

OtlpHttpExporter::OtlpHttpExporter(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}

OtlpHttpExporter::~OtlpHttpExporter() { (void)Shutdown(); }  // [H4]

absl::Status OtlpHttpExporter::Flush() { return absl::OkStatus(); }

absl::Status OtlpHttpExporter::Shutdown() {
  {
    ctxloop::MutexLock lock(&impl_->mu);
    if (impl_->shutdown) return absl::OkStatus();
    impl_->shutdown = true;
  }
  impl_->cv.SignalAll();  // [H1]
  if (impl_->loop != nullptr) {
    Impl* raw = impl_.get();
    (void)impl_->loop->Invoke([raw](Loop&) { raw->CleanUp(); });  // [H3]
    impl_->loop.reset();
  }
  return absl::OkStatus();
}

OtlpHttpExporter::Stats OtlpHttpExporter::stats() const {
  ctxloop::MutexLock lock(&impl_->mu);
  return impl_->stats;
}

void OtlpHttpExporter::Report(const absl::Status& status) {
  ctxloop::MutexLock lock(&impl_->report_mu);
  try {
    if (impl_->options.on_error) {
      impl_->options.on_error(status);
    } else {
      std::fprintf(stderr, "ctxloop OtlpHttpExporter: %s\n",
                   status.ToString().c_str());
    }
  } catch (...) {
    std::fprintf(stderr, "ctxloop OtlpHttpExporter: on_error threw on: %s\n",
                 status.ToString().c_str());
  }
}

absl::Status OtlpHttpExporter::Export(absl::Span<const SpanData> batch) {
  Impl& impl = *impl_;
  const absl::Time start = absl::Now();
  const absl::Time deadline = start + impl.options.timeout;
  size_t skipped = 0;
  std::string encoded =
      otlp::EncodeTraceRequest(batch, impl.options.resource, &skipped);
  const uint64_t spans = batch.size() - skipped;

  // Counts the batch as failed and reports `status`.
  auto fail = [&](absl::Status status) {
    {
      ctxloop::MutexLock lock(&impl.mu);
      ++impl.stats.batches_failed;
      impl.stats.spans_failed += spans + skipped;
    }
    status = absl::Status(
        status.code(),
        absl::StrCat("OtlpHttpExporter: batch of ", spans + skipped,
                     " spans to ", impl.options.endpoint,
                     " not delivered: ", status.message()));
    Report(status);
    return status;
  };

  {
    ctxloop::MutexLock lock(&impl.mu);
    ++impl.stats.export_calls;
    if (impl.shutdown) {
      impl.stats.spans_failed += batch.size();
      ++impl.stats.batches_failed;
      return absl::FailedPreconditionError(
          "OtlpHttpExporter: Export after Shutdown");  // [H2]
    }
    if (skipped > 0) impl.stats.spans_failed += skipped;
  }
  if (skipped > 0) {
    Report(absl::InvalidArgumentError(
        absl::StrCat("OtlpHttpExporter: ", skipped, " of ", batch.size(),
                     " items left out: invalid (all-zero) trace or span id")));
    skipped = 0;  // Counted.
  }
  if (spans == 0) return absl::OkStatus();

  std::shared_ptr<const std::string> body;
  if (impl.options.gzip) {
    absl::StatusOr<std::string> z = Gzip(encoded);
    if (!z.ok()) return fail(z.status());
    body = std::make_shared<const std::string>(*std::move(z));
  } else {
    body = std::make_shared<const std::string>(std::move(encoded));
  }

  absl::Status last_error;
  absl::Duration backoff = impl.options.initial_backoff;
  for (int attempt = 1; attempt <= impl.options.max_attempts; ++attempt) {
    const absl::Duration left = deadline - absl::Now();
    const absl::Duration remaining =
        std::min(left, impl.options.attempt_timeout);
    if (left <= absl::ZeroDuration()) {
      return fail(absl::DeadlineExceededError(absl::StrCat(
          "out of time (", absl::FormatDuration(impl.options.timeout),
          ") after ", attempt - 1, " attempts",
          last_error.ok() ? "" : "; last: ", last_error.message())));
    }
    auto result = std::make_shared<AttemptResult>();
    {
      ctxloop::MutexLock lock(&impl.mu);
      if (impl.shutdown)
        return fail(absl::CancelledError("exporter shut down"));
      ++impl.stats.requests;
      if (attempt > 1) ++impl.stats.retries;
      impl.stats.bytes_sent += body->size();
    }
    Impl* raw = impl_.get();
    // Bounded by the exporter's private loop's `max_pending_foreign` (the
    // default, 2^20): only this post (one per exporting thread, which then
    // waits for its attempt) and Shutdown's CleanUp [H3] come from other
    // threads, so it is never full; the loop's own posts (connection frees,
    // deadlines) are loop-thread posts, never refused for a full loop.
    absl::Status posted =
        Post(impl.root, [raw, result, body, remaining](ContextHandle) mutable {
          raw->Start(std::move(result), std::move(body), remaining);
        });
    if (!posted.ok()) return fail(absl::CancelledError("exporter shut down"));

    // Wait for the attempt; libevent's timeout ends it, the guard below
    // only protects against a stuck loop.
    const auto guard = std::chrono::steady_clock::now() +
                       absl::ToChronoNanoseconds(remaining + absl::Seconds(5));
    AttemptResult r;
    bool cancelled = false;
    {
      ctxloop::MutexLock lock(&impl.mu);
      while (!result->done && !impl.shutdown) {
        if (!impl.cv.WaitUntil(&impl.mu, guard) &&
            std::chrono::steady_clock::now() >= guard) {
          break;
        }
      }
      if (impl.shutdown && !result->done) {
        cancelled = true;
      } else if (!result->done) {
        r.transport_error = "no answer (loop stuck?)";
      } else {
        r = *result;
      }
    }
    if (cancelled) {
      return fail(absl::CancelledError("exporter shut down"));  // [H1]
    }

    if (r.http_status >= 200 && r.http_status < 300) {
      const trace_internal::PartialSuccess ps =
          trace_internal::ParsePartialSuccess(r.body);
      const bool unparsable =
          ps.outcome == trace_internal::PartialSuccess::Outcome::kUnparsable;
      const uint64_t rejected =
          std::min<uint64_t>(spans, static_cast<uint64_t>(ps.rejected_spans));
      {
        ctxloop::MutexLock lock(&impl.mu);
        ++impl.stats.batches_exported;
        impl.stats.spans_exported += spans - rejected;
        impl.stats.spans_rejected += rejected;
        if (unparsable) ++impl.stats.responses_unparsable;
      }
      if (unparsable) {
        Report(absl::DataLossError(absl::StrCat(
            "OtlpHttpExporter: HTTP ", r.http_status,
            " with a body that is not an ExportTraceServiceResponse (",
            ps.error, "); its ", spans,
            " spans count as exported, a partial success would be missed")));
      } else if (rejected > 0 || !ps.message.empty()) {
        Report(absl::DataLossError(
            absl::StrCat("OtlpHttpExporter: collector rejected ", rejected,
                         " of ", spans, " spans (partial success)",
                         ps.message.empty() ? "" : ": ", ps.message)));
      }
      return absl::OkStatus();
    }

    const std::string what =
        r.http_status == 0
            ? absl::StrCat("connection error: ", r.transport_error)
            : absl::StrCat("HTTP ", r.http_status, r.body.empty() ? "" : ": ",
                           r.body.substr(0, 200));
    last_error =
        absl::Status(trace_internal::StatusCodeForHttp(r.http_status), what);
    if (!trace_internal::IsRetryableHttpStatus(r.http_status)) {
      return fail(absl::Status(last_error.code(),
                               absl::StrCat("permanent error: ", what)));
    }
    if (attempt == impl.options.max_attempts) break;

    std::optional<absl::Duration> delay =
        trace_internal::ParseRetryAfter(r.retry_after, absl::Now());
    {
      ctxloop::MutexLock lock(&impl.mu);
      if (delay.has_value()) {
        ++impl.stats.retry_after_honoured;
        delay = std::min(*delay, impl.options.max_retry_after);
      } else {
        std::uniform_real_distribution<double> jitter(0.5, 1.0);
        delay = backoff * jitter(impl.rng);
        backoff = std::min(backoff * 2, impl.options.max_backoff);
      }
    }
    if (absl::Now() + *delay >= deadline) {
      return fail(absl::DeadlineExceededError(absl::StrCat(
          "out of time (", absl::FormatDuration(impl.options.timeout),
          ") before the next retry in ", absl::FormatDuration(*delay),
          " after ", attempt, " attempts; last: ", what)));
    }
    const auto wake =
        std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(*delay);
    {
      ctxloop::MutexLock lock(&impl.mu);
      while (!impl.shutdown && std::chrono::steady_clock::now() < wake) {
        impl.cv.WaitUntil(&impl.mu, wake);
      }
      cancelled = impl.shutdown;
    }
    if (cancelled) return fail(absl::CancelledError("exporter shut down"));
  }
  return fail(
      absl::Status(last_error.code(),
                   absl::StrCat("gave up after ", impl.options.max_attempts,
                                " attempts; last: ", last_error.message())));
}

}  // namespace ctxloop
