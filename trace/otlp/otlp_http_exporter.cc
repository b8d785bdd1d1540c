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
#include <sys/time.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/loop/loop_thread.h"
#include "rapidjson/document.h"

namespace ctxloop {
namespace {

// What one HTTP attempt ended with. Written on the loop thread, read by the
// waiting `Export` caller; both under `Impl::mu_`.
struct AttemptResult {
  bool done = false;
  int http_status = 0;  // 0: no response (connection error or timeout).
  std::string transport_error;
  std::string body;  // First bytes of the response body.
  std::string retry_after;
};

constexpr size_t kMaxResponseBody = 64 * 1024;
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

// Retry-After: delay-seconds or an HTTP date (IMF-fixdate). nullopt if
// absent or unparsable.
std::optional<absl::Duration> ParseRetryAfter(absl::string_view value,
                                              absl::Time now) {
  value = absl::StripAsciiWhitespace(value);
  if (value.empty()) return std::nullopt;
  int64_t seconds = 0;
  if (absl::SimpleAtoi(value, &seconds)) {
    if (seconds < 0) return std::nullopt;
    return absl::Seconds(seconds);
  }
  absl::Time when;
  std::string err;
  if (absl::ParseTime("%a, %d %b %Y %H:%M:%S GMT", std::string(value), &when,
                      &err)) {
    return std::max(absl::ZeroDuration(), when - now);
  }
  return std::nullopt;
}

bool Retryable(int http_status) {
  return http_status == 0 || http_status == 429 || http_status == 502 ||
         http_status == 503 || http_status == 504;
}

absl::StatusCode CodeForHttp(int http_status) {
  switch (http_status) {
    case 0:
    case 429:
    case 502:
    case 503:
    case 504:
      return absl::StatusCode::kUnavailable;
    case 400:
      return absl::StatusCode::kInvalidArgument;
    case 401:
      return absl::StatusCode::kUnauthenticated;
    case 403:
      return absl::StatusCode::kPermissionDenied;
    case 404:
      return absl::StatusCode::kNotFound;
    case 413:
      return absl::StatusCode::kResourceExhausted;
    default:
      return http_status >= 500 ? absl::StatusCode::kInternal
                                : absl::StatusCode::kFailedPrecondition;
  }
}

// Reads `partialSuccess` of an ExportTraceServiceResponse (JSON). Returns
// the rejected span count (0 if none or not JSON) and the error message.
int64_t RejectedSpans(const std::string& body, std::string* message) {
  rapidjson::Document doc;
  doc.Parse(body.c_str(), body.size());
  if (doc.HasParseError() || !doc.IsObject()) return 0;
  auto ps = doc.FindMember("partialSuccess");
  if (ps == doc.MemberEnd() || !ps->value.IsObject()) return 0;
  int64_t rejected = 0;
  auto rs = ps->value.FindMember("rejectedSpans");
  if (rs != ps->value.MemberEnd()) {
    if (rs->value.IsInt64()) {
      rejected = rs->value.GetInt64();
    } else if (rs->value.IsString()) {
      if (!absl::SimpleAtoi(rs->value.GetString(), &rejected)) rejected = 0;
    }
  }
  auto em = ps->value.FindMember("errorMessage");
  if (em != ps->value.MemberEnd() && em->value.IsString()) {
    *message = em->value.GetString();
  }
  return std::max<int64_t>(0, rejected);
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
  // One request in flight on the loop thread (loop-thread state).
  struct Request {
    Impl* impl;
    std::shared_ptr<AttemptResult> result;
    evhttp_connection* conn = nullptr;
    int error = -1;  // enum evhttp_request_error, if the error callback ran.
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
  std::map<Request*, std::unique_ptr<Request>> requests;
  std::set<evhttp_connection*> conns;
  // Connections whose last request was answered, kept for the next one
  // (keep-alive); a subset of `conns`.
  std::vector<evhttp_connection*> idle;
  bool closed = false;

  // Loop thread: sends `body`; completes `result` (under mu) when done.
  void Start(std::shared_ptr<AttemptResult> result,
             std::shared_ptr<const std::string> body, absl::Duration timeout) {
    if (closed || base == nullptr) {
      Complete(result, 0, "exporter shut down", nullptr);
      return;
    }
    // Keep-alive: the connection of the last answered request, if any
    // (libevent reconnects it if the collector closed it meanwhile).
    evhttp_connection* conn = nullptr;
    if (!idle.empty()) {
      conn = idle.back();
      idle.pop_back();
    } else {
      conn = evhttp_connection_base_new(base, nullptr, host.c_str(),
                                        static_cast<uint16_t>(port));
      if (conn == nullptr) {
        Complete(result, 0, "cannot create a connection", nullptr);
        return;
      }
      conns.insert(conn);
    }
    timeval tv;
    const int64_t us =
        std::max<int64_t>(1000, absl::ToInt64Microseconds(timeout));
    tv.tv_sec = us / 1000000;
    tv.tv_usec = us % 1000000;
    evhttp_connection_set_timeout_tv(conn, &tv);

    auto owned = std::make_unique<Request>();
    Request* r = owned.get();
    r->impl = this;
    r->result = std::move(result);
    r->conn = conn;
    evhttp_request* req = evhttp_request_new(&OnResponse, r);
    if (req == nullptr) {
      Complete(r->result, 0, "cannot create a request", nullptr);
      FreeConnection(conn);
      return;
    }
    evhttp_request_set_error_cb(req, &OnRequestError);
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
    requests.emplace(r, std::move(owned));
    if (evhttp_make_request(conn, req, EVHTTP_REQ_POST, path.c_str()) != 0) {
      // libevent freed `req`.
      auto it = requests.find(r);
      Complete(it->second->result, 0, "cannot send the request", nullptr);
      requests.erase(it);
      FreeConnection(conn);
      return;
    }
    DisableNagle(conn);
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

  static void OnResponse(evhttp_request* req, void* arg) {
    Request* r = static_cast<Request*>(arg);
    Impl* impl = r->impl;
    auto it = impl->requests.find(r);
    if (it == impl->requests.end()) return;  // Cleaned up [H3].
    std::unique_ptr<Request> owned = std::move(it->second);
    impl->requests.erase(it);
    const int code = req != nullptr ? evhttp_request_get_response_code(req) : 0;
    if (code == 0) {
      impl->Complete(owned->result, 0,
                     owned->error >= 0 ? RequestErrorName(owned->error)
                                       : "connection error",
                     nullptr);
    } else {
      impl->Complete(owned->result, code, "", req);
    }
    evhttp_connection* conn = owned->conn;
    if (code != 0 && impl->idle.size() < kMaxIdleConnections &&
        !ClosesConnection(req)) {
      // Answered and kept open: the next request reuses it.
      impl->idle.push_back(conn);
      return;
    }
    // The connection may not be freed inside its own callback: later.
    if (!Post(impl->loop_root(), [impl, conn](ContextHandle) {
           impl->FreeConnection(conn);
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
    idle.erase(std::remove(idle.begin(), idle.end(), conn), idle.end());
    if (conns.erase(conn) == 1) evhttp_connection_free(conn);
  }

  void Complete(const std::shared_ptr<AttemptResult>& result, int code,
                absl::string_view error, evhttp_request* req) {
    std::string body, retry_after;
    if (req != nullptr) {
      evbuffer* in = evhttp_request_get_input_buffer(req);
      const size_t n = std::min(evbuffer_get_length(in), kMaxResponseBody);
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
      result->transport_error = std::string(error);
      result->body = std::move(body);
      result->retry_after = std::move(retry_after);
    }
    cv.SignalAll();
  }

  // Loop thread, at shutdown [H3]: frees every connection; their requests'
  // callbacks never run.
  void CleanUp() {
    closed = true;
    auto pending = std::move(requests);
    requests.clear();
    for (evhttp_connection* conn : conns) evhttp_connection_free(conn);
    conns.clear();
    idle.clear();
    for (auto& [raw, r] : pending) {
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
      options.max_retry_after < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "OtlpHttpExporter: need timeout > 0, attempt_timeout > 0, "
        "max_attempts >= 1, "
        "0 < initial_backoff <= max_backoff, max_retry_after >= 0");
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

absl::Status OtlpHttpExporter::Export(absl::Span<const ExportItem> batch) {
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
      std::string message;
      const uint64_t rejected = std::min<uint64_t>(
          spans, static_cast<uint64_t>(RejectedSpans(r.body, &message)));
      {
        ctxloop::MutexLock lock(&impl.mu);
        ++impl.stats.batches_exported;
        impl.stats.spans_exported += spans - rejected;
        impl.stats.spans_rejected += rejected;
      }
      if (rejected > 0 || !message.empty()) {
        Report(absl::DataLossError(absl::StrCat(
            "OtlpHttpExporter: collector rejected ", rejected, " of ", spans,
            " spans (partial success)", message.empty() ? "" : ": ", message)));
      }
      return absl::OkStatus();
    }

    const std::string what =
        r.http_status == 0
            ? absl::StrCat("connection error: ", r.transport_error)
            : absl::StrCat("HTTP ", r.http_status, r.body.empty() ? "" : ": ",
                           r.body.substr(0, 200));
    last_error = absl::Status(CodeForHttp(r.http_status), what);
    if (!Retryable(r.http_status)) {
      return fail(absl::Status(last_error.code(),
                               absl::StrCat("permanent error: ", what)));
    }
    if (attempt == impl.options.max_attempts) break;

    std::optional<absl::Duration> delay =
        ParseRetryAfter(r.retry_after, absl::Now());
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
