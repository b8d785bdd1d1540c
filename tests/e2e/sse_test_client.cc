// Copyright 2026 The ctxloop Authors.

#include "ctxloop/tests/e2e/sse_test_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace ctxloop {
namespace e2e {

absl::StatusOr<std::unique_ptr<SseTestClient>> SseTestClient::Connect(
    int port, absl::Duration io_timeout) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  }
  timeval tv = absl::ToTimeval(io_timeout);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int e = errno;
    close(fd);
    return absl::UnavailableError(
        absl::StrCat("connect 127.0.0.1:", port, ": ", std::strerror(e)));
  }
  return std::unique_ptr<SseTestClient>(new SseTestClient(fd));
}

SseTestClient::~SseTestClient() { Close(); }

void SseTestClient::Close() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

absl::Status SseTestClient::SendRequest(
    absl::string_view method, absl::string_view target, bool keep_alive,
    const std::vector<std::string>& extra_headers) {
  if (fd_ < 0) return absl::FailedPreconditionError("closed");
  std::string extra;
  for (const std::string& h : extra_headers) absl::StrAppend(&extra, h, "\r\n");
  const std::string req =
      absl::StrCat(method, " ", target, " HTTP/1.1\r\nHost: 127.0.0.1\r\n",
                   keep_alive ? "" : "Connection: close\r\n", extra,
                   "Accept: text/event-stream\r\n\r\n");
  size_t sent = 0;
  while (sent < req.size()) {
    const ssize_t n =
        send(fd_, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return absl::UnavailableError(
          absl::StrCat("send: ", std::strerror(errno)));
    }
    sent += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status SseTestClient::Fill() {
  if (fd_ < 0) return absl::FailedPreconditionError("closed");
  if (eof_) return absl::OutOfRangeError("connection closed by the server");
  char buf[4096];
  while (true) {
    const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n > 0) {
      raw_.append(buf, static_cast<size_t>(n));
      return absl::OkStatus();
    }
    if (n == 0) {
      eof_ = true;
      return absl::OutOfRangeError("connection closed by the server");
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return absl::DeadlineExceededError("timed out reading the response");
    }
    return absl::UnavailableError(absl::StrCat("recv: ", std::strerror(errno)));
  }
}

absl::StatusOr<std::string> SseTestClient::ReadLine() {
  while (true) {
    const size_t nl = raw_.find("\r\n");
    if (nl != std::string::npos) {
      std::string line = raw_.substr(0, nl);
      raw_.erase(0, nl + 2);
      return line;
    }
    if (raw_.size() > 64 * 1024) {
      return absl::DataLossError("line longer than 64 KiB");
    }
    absl::Status s = Fill();
    if (!s.ok()) return s;
  }
}

absl::StatusOr<HttpHead> SseTestClient::ReadHead() {
  HttpHead head;
  absl::StatusOr<std::string> status_line = ReadLine();
  if (!status_line.ok()) return status_line.status();
  // "HTTP/1.1 200 OK"
  std::vector<absl::string_view> parts =
      absl::StrSplit(*status_line, absl::MaxSplits(' ', 2));
  if (parts.size() < 2 || !absl::StartsWith(parts[0], "HTTP/1.") ||
      !absl::SimpleAtoi(parts[1], &head.status)) {
    return absl::DataLossError("bad status line: " + *status_line);
  }
  if (parts.size() == 3) head.reason = std::string(parts[2]);
  while (true) {
    absl::StatusOr<std::string> line = ReadLine();
    if (!line.ok()) return line.status();
    if (line->empty()) break;
    const size_t colon = line->find(':');
    if (colon == std::string::npos) {
      return absl::DataLossError("bad header line: " + *line);
    }
    std::string name = absl::AsciiStrToLower(line->substr(0, colon));
    head.headers[name] = std::string(
        absl::StripAsciiWhitespace(absl::string_view(*line).substr(colon + 1)));
  }
  chunked_ =
      absl::AsciiStrToLower(head.header("transfer-encoding")) == "chunked";
  remaining_ = -1;
  if (!chunked_ && !head.header("content-length").empty() &&
      !absl::SimpleAtoi(head.header("content-length"), &remaining_)) {
    return absl::DataLossError("bad Content-Length");
  }
  body_done_ = false;
  sse_.clear();
  return head;
}

absl::StatusOr<bool> SseTestClient::ReadBodyPiece(std::string* out) {
  if (body_done_) return false;
  if (chunked_) {
    absl::StatusOr<std::string> size_line = ReadLine();
    if (!size_line.ok()) return size_line.status();
    absl::string_view hex = *size_line;
    const size_t semi = hex.find(';');  // Chunk extensions.
    if (semi != absl::string_view::npos) hex = hex.substr(0, semi);
    hex = absl::StripAsciiWhitespace(hex);
    uint64_t size = 0;
    if (hex.empty() || !absl::SimpleHexAtoi(hex, &size)) {
      return absl::DataLossError("bad chunk size line: " + *size_line);
    }
    if (size == 0) {  // Last chunk, then trailers up to an empty line.
      while (true) {
        absl::StatusOr<std::string> trailer = ReadLine();
        if (!trailer.ok()) return trailer.status();
        if (trailer->empty()) break;
      }
      body_done_ = true;
      return false;
    }
    while (raw_.size() < size + 2) {
      absl::Status s = Fill();
      if (!s.ok()) return s;
    }
    if (raw_.compare(size, 2, "\r\n") != 0) {
      return absl::DataLossError("chunk not followed by CRLF");
    }
    out->append(raw_, 0, size);
    raw_.erase(0, size + 2);
    return true;
  }
  if (remaining_ == 0) {
    body_done_ = true;
    return false;
  }
  if (raw_.empty()) {
    absl::Status s = Fill();
    if (absl::IsOutOfRange(s) && remaining_ < 0) {  // Body ends at close.
      body_done_ = true;
      return false;
    }
    if (!s.ok()) return s;
  }
  size_t n = raw_.size();
  if (remaining_ >= 0 && static_cast<int64_t>(n) > remaining_) {
    n = static_cast<size_t>(remaining_);
  }
  out->append(raw_, 0, n);
  raw_.erase(0, n);
  if (remaining_ >= 0) remaining_ -= static_cast<int64_t>(n);
  return true;
}

absl::StatusOr<std::optional<SseEvent>> SseTestClient::NextEvent() {
  while (true) {
    size_t end;
    while ((end = sse_.find("\n\n")) != std::string::npos) {
      std::optional<SseEvent> e =
          ParseSseBlock(absl::string_view(sse_).substr(0, end));
      sse_.erase(0, end + 2);
      if (e.has_value()) return e;
    }
    absl::StatusOr<bool> more = ReadBodyPiece(&sse_);
    if (!more.ok()) return more.status();
    if (!*more) {
      if (!absl::StripAsciiWhitespace(sse_).empty()) {
        return absl::DataLossError("body ended inside an event: " + sse_);
      }
      return std::optional<SseEvent>();
    }
  }
}

absl::StatusOr<std::string> SseTestClient::ReadBody() {
  std::string body = std::move(sse_);
  sse_.clear();
  while (true) {
    absl::StatusOr<bool> more = ReadBodyPiece(&body);
    if (!more.ok()) return more.status();
    if (!*more) return body;
  }
}

std::optional<SseEvent> ParseSseBlock(absl::string_view block) {
  SseEvent e;
  bool any = false;
  for (absl::string_view line : absl::StrSplit(block, '\n')) {
    absl::ConsumeSuffix(&line, "\r");
    if (line.empty() || line.front() == ':') continue;
    const size_t colon = line.find(':');
    const absl::string_view field = line.substr(0, colon);
    absl::string_view value =
        colon == absl::string_view::npos ? "" : line.substr(colon + 1);
    absl::ConsumePrefix(&value, " ");
    any = true;
    if (field == "event") {
      e.event = std::string(value);
    } else if (field == "id") {
      e.id = std::string(value);
    } else if (field == "data") {
      if (!e.data.empty()) e.data.push_back('\n');
      e.data.append(value.data(), value.size());
    }
  }
  if (!any) return std::nullopt;
  return e;
}

absl::StatusOr<FetchResult> Fetch(
    int port, absl::string_view target, absl::string_view method,
    const std::vector<std::string>& extra_headers) {
  absl::StatusOr<std::unique_ptr<SseTestClient>> client =
      SseTestClient::Connect(port);
  if (!client.ok()) return client.status();
  absl::Status s = (*client)->SendRequest(method, target,
                                          /*keep_alive=*/false, extra_headers);
  if (!s.ok()) return s;
  FetchResult result;
  absl::StatusOr<HttpHead> head = (*client)->ReadHead();
  if (!head.ok()) return head.status();
  result.head = std::move(*head);
  if (absl::StartsWith(result.head.header("content-type"),
                       "text/event-stream")) {
    while (true) {
      absl::StatusOr<std::optional<SseEvent>> e = (*client)->NextEvent();
      if (!e.ok()) return e.status();
      if (!e->has_value()) break;
      result.events.push_back(std::move(**e));
    }
  } else {
    absl::StatusOr<std::string> body = (*client)->ReadBody();
    if (!body.ok()) return body.status();
    result.body = std::move(*body);
  }
  return result;
}

}  // namespace e2e
}  // namespace ctxloop
