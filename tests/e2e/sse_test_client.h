// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/tests/e2e/sse_test_client.h
// -----------------------------------------------------------------------------
//
// `SseTestClient`: a small blocking HTTP/1.1 client over a plain TCP socket,
// for end-to-end tests. It reads the response head, decodes the body
// (chunked, Content-Length, or until close) and splits it into server-sent
// events as they arrive, so a test can read a few events and then hang up.
//
//   auto c = *SseTestClient::Connect(port);
//   ASSERT_TRUE(c->SendRequest("GET", "/run?events=5").ok());
//   HttpHead head = *c->ReadHead();
//   while (std::optional<SseEvent> e = *c->NextEvent()) { ... }
//
// Deliberately independent of libevent and ctxloop: it checks the server
// the way curl would.
//
// Cost: one socket; reads are buffered (4 KiB at a time).
//
// Thread-safety: one client per thread. Every read waits at most the I/O
// timeout given to `Connect`, then fails with `kDeadlineExceeded`.

#ifndef CTXLOOP_TESTS_E2E_SSE_TEST_CLIENT_H_
#define CTXLOOP_TESTS_E2E_SSE_TEST_CLIENT_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace ctxloop {
namespace e2e {

struct HttpHead {
  int status = 0;
  std::string reason;
  std::map<std::string, std::string> headers;  // Lower-case names.
  std::string header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

struct SseEvent {
  std::string event = "message";  // The SSE default.
  std::string id;
  std::string data;  // Multiple data lines joined with '\n'.
};

class SseTestClient {
 public:
  static absl::StatusOr<std::unique_ptr<SseTestClient>> Connect(
      int port, absl::Duration io_timeout = absl::Seconds(10));
  SseTestClient(const SseTestClient&) = delete;
  SseTestClient& operator=(const SseTestClient&) = delete;
  ~SseTestClient();

  // Sends `<method> <target> HTTP/1.1` with Host (and `Connection: close`
  // unless `keep_alive`).
  // `extra_headers` are "Name: value" lines without CRLF.
  absl::Status SendRequest(absl::string_view method, absl::string_view target,
                           bool keep_alive = false,
                           const std::vector<std::string>& extra_headers = {});
  // Reads the status line and headers of the next response.
  absl::StatusOr<HttpHead> ReadHead();
  // The next complete event of the body, or nullopt at its end.
  absl::StatusOr<std::optional<SseEvent>> NextEvent();
  // The rest of the body, decoded.
  absl::StatusOr<std::string> ReadBody();
  // True once the body of the current response has been read to its end.
  bool body_done() const { return body_done_; }
  // Closes the socket now (the server sees the client go away).
  void Close();

 private:
  explicit SseTestClient(int fd) : fd_(fd) {}
  absl::Status Fill();  // Reads more bytes into raw_; error at EOF.
  absl::StatusOr<std::string> ReadLine();  // Without the CRLF.
  // Appends the next decoded body bytes to `out`; false at the body's end.
  absl::StatusOr<bool> ReadBodyPiece(std::string* out);

  int fd_ = -1;
  std::string raw_;  // Received, not yet consumed.
  bool eof_ = false;
  // The current response's body framing.
  bool chunked_ = false;
  int64_t remaining_ = -1;  // Content-Length left; -1: until close.
  bool body_done_ = false;
  std::string sse_;  // Decoded body not yet split into events.
};

// Parses one SSE block (the text between blank lines). Nullopt if it holds
// only comments.
std::optional<SseEvent> ParseSseBlock(absl::string_view block);

// One whole request: the head, the events (or the plain body if the
// response is not an event stream).
struct FetchResult {
  HttpHead head;
  std::vector<SseEvent> events;
  std::string body;  // For non-SSE responses.
};
// `extra_headers` as in `SendRequest`.
absl::StatusOr<FetchResult> Fetch(
    int port, absl::string_view target, absl::string_view method = "GET",
    const std::vector<std::string>& extra_headers = {});

}  // namespace e2e
}  // namespace ctxloop

#endif  // CTXLOOP_TESTS_E2E_SSE_TEST_CLIENT_H_
