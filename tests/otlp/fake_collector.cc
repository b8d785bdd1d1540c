// Copyright 2026 The ctxloop Authors.

#include "ctxloop/tests/otlp/fake_collector.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <zlib.h>

#include <chrono>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "ctxloop/loop/loop.h"

namespace ctxloop {
namespace testing {

bool Gunzip(absl::string_view in, std::string* out) {
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 32) != Z_OK) return false;
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  out->clear();
  char buf[16384];
  int rc = Z_OK;
  while (rc == Z_OK) {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof(buf);
    rc = inflate(&zs, Z_NO_FLUSH);
    out->append(buf, sizeof(buf) - zs.avail_out);
    if (rc == Z_BUF_ERROR && zs.avail_in == 0) break;
  }
  inflateEnd(&zs);
  return rc == Z_STREAM_END;
}

FakeCollector::FakeCollector() = default;

absl::StatusOr<std::unique_ptr<FakeCollector>> FakeCollector::Start(int port) {
  std::unique_ptr<FakeCollector> c(new FakeCollector());
  c->loop_ = std::make_unique<LoopThread>();
  FakeCollector* raw = c.get();
  absl::Status bind_status;
  absl::Status s = c->loop_->Invoke([raw, &bind_status, port](Loop& loop) {
    // A client that closes mid-answer makes the server's write fail with
    // EPIPE, not kill the test with SIGPIPE.
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
    raw->http_ = evhttp_new(loop.base());
    evhttp_bound_socket* sock = evhttp_bind_socket_with_handle(
        raw->http_, "127.0.0.1", static_cast<uint16_t>(port));
    if (sock == nullptr) {
      bind_status = absl::UnavailableError("FakeCollector: cannot bind");
      return;
    }
    sockaddr_in addr{};
    socklen_t len = sizeof(addr);
    getsockname(evhttp_bound_socket_get_fd(sock),
                reinterpret_cast<sockaddr*>(&addr), &len);
    raw->port_ = ntohs(addr.sin_port);
    evhttp_set_gencb(raw->http_, &FakeCollector::OnRequest, raw);
  });
  if (!s.ok()) return s;
  if (!bind_status.ok()) return bind_status;
  return c;
}

FakeCollector::~FakeCollector() {
  if (loop_ != nullptr) {
    (void)loop_->Invoke([this](Loop&) {
      if (http_ != nullptr) evhttp_free(http_);
      http_ = nullptr;
    });
    loop_.reset();
  }
}

std::string FakeCollector::base_url() const {
  return absl::StrCat("http://127.0.0.1:", port_);
}
std::string FakeCollector::traces_url() const {
  return absl::StrCat(base_url(), "/v1/traces");
}

void FakeCollector::Script(std::vector<Response> responses) {
  ctxloop::MutexLock lock(&mu_);
  for (Response& r : responses) script_.push_back(std::move(r));
}

void FakeCollector::SetDefault(Response response) {
  ctxloop::MutexLock lock(&mu_);
  default_ = std::move(response);
}

void FakeCollector::SetUpstream(std::string host, int port) {
  ctxloop::MutexLock lock(&mu_);
  upstream_host_ = std::move(host);
  upstream_port_ = port;
}

std::vector<FakeCollector::Request> FakeCollector::requests() const {
  ctxloop::MutexLock lock(&mu_);
  return requests_;
}

size_t FakeCollector::request_count() const {
  ctxloop::MutexLock lock(&mu_);
  return requests_.size();
}

bool FakeCollector::WaitForRequests(size_t n, absl::Duration timeout) const {
  const auto deadline =
      std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(timeout);
  ctxloop::MutexLock lock(&mu_);
  while (requests_.size() < n) {
    if (!cv_.WaitUntil(&mu_, deadline) &&
        std::chrono::steady_clock::now() >= deadline) {
      return requests_.size() >= n;
    }
  }
  return true;
}

void FakeCollector::OnRequest(evhttp_request* req, void* arg) {
  FakeCollector* self = static_cast<FakeCollector*>(arg);
  Request copy;
  switch (evhttp_request_get_command(req)) {
    case EVHTTP_REQ_POST:
      copy.method = "POST";
      break;
    case EVHTTP_REQ_GET:
      copy.method = "GET";
      break;
    default:
      copy.method = "OTHER";
  }
  copy.uri = evhttp_request_get_uri(req);
  if (evhttp_connection* conn = evhttp_request_get_connection(req)) {
    char* address = nullptr;
    ev_uint16_t peer_port = 0;
    evhttp_connection_get_peer(conn, &address, &peer_port);
    copy.peer_port = peer_port;
  }
  evkeyvalq* headers = evhttp_request_get_input_headers(req);
  for (evkeyval* h = headers->tqh_first; h != nullptr; h = h->next.tqe_next) {
    copy.headers[absl::AsciiStrToLower(h->key)] = h->value;
  }
  evbuffer* in = evhttp_request_get_input_buffer(req);
  copy.body.resize(evbuffer_get_length(in));
  if (!copy.body.empty())
    evbuffer_copyout(in, copy.body.data(), copy.body.size());
  auto enc = copy.headers.find("content-encoding");
  if (enc != copy.headers.end() && enc->second == "gzip") {
    copy.gunzip_ok = Gunzip(copy.body, &copy.json);
  } else {
    copy.json = copy.body;
  }
  Response r;
  {
    ctxloop::MutexLock lock(&self->mu_);
    if (!self->script_.empty()) {
      r = std::move(self->script_.front());
      self->script_.pop_front();
    } else {
      r = self->default_;
    }
    self->requests_.push_back(copy);
  }
  self->cv_.SignalAll();
  if (r.hang) return;  // evhttp_free releases it.
  if (r.forward) {
    self->Forward(req, copy);
    return;
  }
  if (r.delay > absl::ZeroDuration()) {
    absl::StatusOr<DelayedTaskHandle> h =
        PostDelayed(self->loop_->root(), r.delay,
                    [self, req, r](ContextHandle) { self->Answer(req, r); });
    if (!h.ok()) evhttp_send_reply(req, 500, "loop", nullptr);
    return;
  }
  self->Answer(req, r);
}

void FakeCollector::Answer(evhttp_request* req, const Response& r) {
  evkeyvalq* out = evhttp_request_get_output_headers(req);
  evhttp_add_header(out, "Content-Type", "application/json");
  for (const auto& [k, v] : r.headers)
    evhttp_add_header(out, k.c_str(), v.c_str());
  if (r.close) evhttp_add_header(out, "Connection", "close");
  evbuffer* body = evbuffer_new();
  evbuffer_add(body, r.body.data(), r.body.size());
  evhttp_send_reply(req, r.status, "fake", body);
  evbuffer_free(body);
}

namespace {
struct ForwardCall {
  FakeCollector* self;
  evhttp_request* downstream;
  evhttp_connection* conn;
  event_base* base;
};
}  // namespace

void FakeCollector::Forward(evhttp_request* req, const Request& copy) {
  std::string host;
  int port;
  {
    ctxloop::MutexLock lock(&mu_);
    host = upstream_host_;
    port = upstream_port_;
  }
  event_base* base =
      evhttp_connection_get_base(evhttp_request_get_connection(req));
  evhttp_connection* conn = evhttp_connection_base_new(
      base, nullptr, host.c_str(), static_cast<uint16_t>(port));
  if (conn == nullptr) {
    evhttp_send_reply(req, 502, "no upstream", nullptr);
    return;
  }
  evhttp_connection_set_timeout(conn, 30);
  auto* call = new ForwardCall{this, req, conn, base};
  evhttp_request* up = evhttp_request_new(
      [](evhttp_request* resp, void* arg) {
        auto* call = static_cast<ForwardCall*>(arg);
        const int code =
            resp != nullptr ? evhttp_request_get_response_code(resp) : 0;
        if (code == 0) {
          evhttp_send_reply(call->downstream, 502, "upstream down", nullptr);
        } else {
          evbuffer* body = evbuffer_new();
          evbuffer_add_buffer(body, evhttp_request_get_input_buffer(resp));
          evhttp_add_header(evhttp_request_get_output_headers(call->downstream),
                            "Content-Type", "application/json");
          evhttp_send_reply(call->downstream, code, "upstream", body);
          evbuffer_free(body);
        }
        // Free the upstream connection outside its own callback.
        evhttp_connection* conn = call->conn;
        event_base_once(
            call->base, -1, EV_TIMEOUT,
            [](evutil_socket_t, short, void* c) {
              evhttp_connection_free(static_cast<evhttp_connection*>(c));
            },
            conn, nullptr);
        delete call;
      },
      call);
  evkeyvalq* h = evhttp_request_get_output_headers(up);
  for (const auto& [k, v] : copy.headers) {
    if (k == "connection" || k == "host") continue;
    evhttp_add_header(h, k.c_str(), v.c_str());
  }
  evhttp_add_header(h, "Host", host.c_str());
  evbuffer_add(evhttp_request_get_output_buffer(up), copy.body.data(),
               copy.body.size());
  if (evhttp_make_request(conn, up, EVHTTP_REQ_POST, copy.uri.c_str()) != 0) {
    evhttp_send_reply(req, 502, "upstream request failed", nullptr);
    evhttp_connection_free(conn);
    delete call;
  }
}

}  // namespace testing
}  // namespace ctxloop
