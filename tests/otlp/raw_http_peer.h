// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/tests/otlp/raw_http_peer.h
// -----------------------------------------------------------------------------
//
// Test-only. `RawHttpPeer`: a TCP server on 127.0.0.1 (an ephemeral port) that
// answers each HTTP request with raw bytes from a script, for what
// `FakeCollector` (a well-behaved evhttp server) cannot send: a status line
// or header that never ends, a `Content-Length` it never honours, an endless
// chunked body, one byte per second, or any bytes at all (the response
// fuzzer). It counts connections accepted and still open (a client that
// abandons a request must close its connection) and bytes sent.
//
//   RawHttpPeer::Script s;
//   s.head = "HTTP/1.1 200 OK\r\nX-Endless: ";
//   s.repeat = "x";  // Then "x" forever.
//   auto peer = *RawHttpPeer::Start(s);
//   ... export to peer->traces_url() ...
//   EXPECT_TRUE(peer->WaitForOpenConnections(0, absl::Seconds(5)));
//
// A request is read in full (headers, then `Content-Length` bytes) before
// the answer starts, so the client never sees a reset for an unread
// request. Memory: at most 1 MiB of request and 64 KiB of queued answer per
// connection; a larger request drops the connection.
//
// Cost: one thread polling every connection (`poll`, at most every 1 ms
// while pacing). Thread-safety: every method is thread-safe.

#ifndef CTXLOOP_TESTS_OTLP_RAW_HTTP_PEER_H_
#define CTXLOOP_TESTS_OTLP_RAW_HTTP_PEER_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "ctxloop/loop/mutex.h"

namespace ctxloop {
namespace testing {

class RawHttpPeer {
 public:
  struct Script {
    // Sent once a request has arrived in full.
    std::string head;
    // Then sent again and again, without end (if not empty).
    std::string repeat;
    // 0: as fast as the socket takes it; else at most this many bytes per
    // `tick` (head and repeat alike).
    size_t bytes_per_tick = 0;
    absl::Duration tick = absl::Milliseconds(1);
    // With an empty `repeat`, after `head`: true, end the write side and
    // close once the client does; false, wait for the next request on the
    // connection (keep-alive) and answer it the same way.
    bool close = true;
    // If > 0: close the connection once this many request bytes arrived,
    // before reading the rest (the kernel then resets it: the client's
    // next writes fail with EPIPE / ECONNRESET).
    size_t abort_after_request_bytes = 0;
    // Close each connection as soon as it is accepted.
    bool close_on_accept = false;
  };

  static absl::StatusOr<std::unique_ptr<RawHttpPeer>> Start(Script script);
  ~RawHttpPeer();
  RawHttpPeer(const RawHttpPeer&) = delete;
  RawHttpPeer& operator=(const RawHttpPeer&) = delete;

  int port() const { return port_; }
  std::string traces_url() const;  // http://127.0.0.1:<port>/v1/traces

  // The script for connections accepted from now on.
  void SetScript(Script script);

  uint64_t accepted() const { return accepted_.load(); }
  uint64_t requests() const { return requests_.load(); }
  size_t open_connections() const {
    return static_cast<size_t>(accepted_.load() - closed_.load());
  }
  uint64_t bytes_sent() const { return bytes_sent_.load(); }
  // True once exactly `n` connections are open.
  bool WaitForOpenConnections(size_t n, absl::Duration timeout) const;

 private:
  RawHttpPeer() = default;
  void Run();

  int listen_fd_ = -1;
  int wake_fd_[2] = {-1, -1};
  int port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> accepted_{0};
  std::atomic<uint64_t> closed_{0};
  std::atomic<uint64_t> requests_{0};
  std::atomic<uint64_t> bytes_sent_{0};
  mutable ctxloop::Mutex mu_;
  Script script_ ABSL_GUARDED_BY(mu_);
};

}  // namespace testing
}  // namespace ctxloop

#endif  // CTXLOOP_TESTS_OTLP_RAW_HTTP_PEER_H_
