// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/tests/otlp/fake_collector.h
// -----------------------------------------------------------------------------
//
// Test-only. `FakeCollector`: an HTTP server on 127.0.0.1 (an ephemeral
// port) on a `LoopThread` of its own, using libevent's evhttp, that records
// every request and answers from a script, for the OTLP/HTTP exporter's
// tests. It doubles as the fault-injecting proxy in front of a real
// collector: a `Response` with `forward` passes the request on to the
// upstream and its answer back.
//
//   auto collector = *FakeCollector::Start();
//   collector->Script({{503, {{"Retry-After", "0"}}}, {200}});
//   ... export to collector->traces_url() ...
//   collector->WaitForRequests(2, absl::Seconds(30));
//
// Cost: one thread; every request is copied. Thread-safety: every method is
// thread-safe; the server runs on its own thread.

#ifndef CTXLOOP_TESTS_OTLP_FAKE_COLLECTOR_H_
#define CTXLOOP_TESTS_OTLP_FAKE_COLLECTOR_H_

#include <cstddef>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ctxloop/loop/loop_thread.h"
#include "ctxloop/loop/mutex.h"

struct evhttp;
struct evhttp_request;

namespace ctxloop {
namespace testing {

class FakeCollector {
 public:
  struct Response {
    int status = 200;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body = "{}";
    // Never answer (the client's timeout must end the request).
    bool hang = false;
    // Wait this long before answering (on the server's loop, not blocking).
    absl::Duration delay = absl::ZeroDuration();
    // Pass the request to the upstream and its answer back.
    bool forward = false;
    // Answer with `Connection: close` and close the connection.
    bool close = false;
  };
  struct Request {
    std::string method;
    std::string uri;
    std::map<std::string, std::string> headers;  // Lower-case names.
    std::string body;                            // As received.
    std::string json;  // The body, gunzipped if Content-Encoding: gzip.
    bool gunzip_ok = true;
    // The client's port: requests on one kept-alive connection share it.
    int peer_port = 0;
  };

  // Listens on 127.0.0.1:`port` (0: an ephemeral port).
  static absl::StatusOr<std::unique_ptr<FakeCollector>> Start(int port = 0);
  ~FakeCollector();

  int port() const { return port_; }
  std::string base_url() const;    // http://127.0.0.1:<port>
  std::string traces_url() const;  // base_url() + "/v1/traces"

  // Answers for the next requests, in order (appended to what is left);
  // when they run out, `SetDefault`'s (initially 200 "{}").
  void Script(std::vector<Response> responses);
  void SetDefault(Response response);
  // Where `forward` sends requests.
  void SetUpstream(std::string host, int port);

  std::vector<Request> requests() const;
  size_t request_count() const;
  // True once at least `n` requests arrived.
  bool WaitForRequests(size_t n, absl::Duration timeout) const;

 private:
  FakeCollector();
  static void OnRequest(evhttp_request* req, void* arg);
  void Answer(evhttp_request* req, const Response& r);
  void Forward(evhttp_request* req, const Request& copy);

  std::unique_ptr<LoopThread> loop_;
  evhttp* http_ = nullptr;  // Loop thread.
  int port_ = 0;

  mutable ctxloop::Mutex mu_;
  mutable ctxloop::CondVar cv_;
  std::deque<Response> script_ ABSL_GUARDED_BY(mu_);
  Response default_ ABSL_GUARDED_BY(mu_);
  std::vector<Request> requests_ ABSL_GUARDED_BY(mu_);
  std::string upstream_host_ ABSL_GUARDED_BY(mu_);
  int upstream_port_ ABSL_GUARDED_BY(mu_) = 0;
};

// Gunzips `in`; false if it is not a valid gzip stream.
bool Gunzip(absl::string_view in, std::string* out);

}  // namespace testing
}  // namespace ctxloop

#endif  // CTXLOOP_TESTS_OTLP_FAKE_COLLECTOR_H_
