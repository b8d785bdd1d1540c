// Copyright 2026 The ctxloop Authors.

#include "ctxloop/tests/otlp/raw_http_peer.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <map>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"

namespace ctxloop {
namespace testing {
namespace {

constexpr size_t kMaxRequest = 1 << 20;
constexpr size_t kMaxQueued = 64 * 1024;

void SetNonBlocking(int fd) {
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL, 0) | O_NONBLOCK);
}

// Length of the request at the front of `in` (headers + Content-Length), or
// 0 if it has not all arrived.
size_t CompleteRequest(const std::string& in) {
  const size_t end = in.find("\r\n\r\n");
  if (end == std::string::npos) return 0;
  size_t body = 0;
  const std::string lower = absl::AsciiStrToLower(in.substr(0, end));
  const size_t cl = lower.find("\r\ncontent-length:");
  if (cl != std::string::npos) {
    const size_t from = cl + 17;
    const size_t eol = lower.find("\r\n", from);
    (void)absl::SimpleAtoi(
        absl::StripAsciiWhitespace(absl::string_view(lower).substr(
            from, eol == std::string::npos ? std::string::npos : eol - from)),
        &body);
  }
  const size_t total = end + 4 + body;
  return in.size() >= total ? total : 0;
}

struct Conn {
  int fd = -1;
  RawHttpPeer::Script script;
  std::string in;
  bool answering = false;
  bool head_done = false;
  bool write_closed = false;
  std::string out;  // Queued answer bytes not yet sent.
  size_t head_pos = 0;
  size_t repeat_pos = 0;
  std::chrono::steady_clock::time_point next_tick{};
};

// Moves up to `budget` bytes of the script into `c.out`; false when the
// script has nothing more to send.
bool Refill(Conn& c, size_t budget) {
  while (c.out.size() < budget) {
    const size_t want = budget - c.out.size();
    if (c.head_pos < c.script.head.size()) {
      const size_t n = std::min(want, c.script.head.size() - c.head_pos);
      c.out.append(c.script.head, c.head_pos, n);
      c.head_pos += n;
    } else if (!c.script.repeat.empty()) {
      const size_t n = std::min(want, c.script.repeat.size() - c.repeat_pos);
      c.out.append(c.script.repeat, c.repeat_pos, n);
      c.repeat_pos = (c.repeat_pos + n) % c.script.repeat.size();
    } else {
      return !c.out.empty();
    }
  }
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<RawHttpPeer>> RawHttpPeer::Start(Script script) {
  std::unique_ptr<RawHttpPeer> p(new RawHttpPeer());
  p->SetScript(std::move(script));
  p->listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
  if (p->listen_fd_ < 0) return absl::UnavailableError("RawHttpPeer: socket");
  const int one = 1;
  setsockopt(p->listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (bind(p->listen_fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
      listen(p->listen_fd_, 64) != 0 ||
      getsockname(p->listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) !=
          0 ||
      pipe(p->wake_fd_) != 0) {
    close(p->listen_fd_);
    return absl::UnavailableError("RawHttpPeer: cannot listen");
  }
  p->port_ = ntohs(addr.sin_port);
  SetNonBlocking(p->listen_fd_);
  p->thread_ = std::thread([raw = p.get()] { raw->Run(); });
  return p;
}

RawHttpPeer::~RawHttpPeer() {
  stop_.store(true);
  if (wake_fd_[1] >= 0) (void)!write(wake_fd_[1], "x", 1);
  if (thread_.joinable()) thread_.join();
  if (listen_fd_ >= 0) close(listen_fd_);
  for (int fd : wake_fd_) {
    if (fd >= 0) close(fd);
  }
}

std::string RawHttpPeer::traces_url() const {
  return absl::StrCat("http://127.0.0.1:", port_, "/v1/traces");
}

void RawHttpPeer::SetScript(Script script) {
  ctxloop::MutexLock lock(&mu_);
  script_ = std::move(script);
}

bool RawHttpPeer::WaitForOpenConnections(size_t n,
                                         absl::Duration timeout) const {
  const absl::Time deadline = absl::Now() + timeout;
  while (open_connections() != n) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(2));
  }
  return true;
}

void RawHttpPeer::Run() {
  std::map<int, Conn> conns;
  std::vector<pollfd> fds;
  auto drop = [&](std::map<int, Conn>::iterator it) {
    close(it->first);
    closed_.fetch_add(1);
    return conns.erase(it);
  };
  while (!stop_.load()) {
    const auto now = std::chrono::steady_clock::now();
    int timeout_ms = 50;
    fds.clear();
    fds.push_back({listen_fd_, POLLIN, 0});
    fds.push_back({wake_fd_[0], POLLIN, 0});
    for (auto& [fd, c] : conns) {
      short events = POLLIN;
      if (c.answering && !c.write_closed) {
        if (c.script.bytes_per_tick == 0 || now >= c.next_tick) {
          events |= POLLOUT;
        } else {
          timeout_ms = 1;
        }
      }
      fds.push_back({fd, events, 0});
    }
    if (poll(fds.data(), fds.size(), timeout_ms) < 0 && errno != EINTR) break;
    if (fds[0].revents & POLLIN) {
      for (;;) {
        const int fd = accept(listen_fd_, nullptr, nullptr);
        if (fd < 0) break;
        SetNonBlocking(fd);
        Conn c;
        c.fd = fd;
        {
          ctxloop::MutexLock lock(&mu_);
          c.script = script_;
        }
        accepted_.fetch_add(1);
        if (c.script.close_on_accept) {
          close(fd);
          closed_.fetch_add(1);
          continue;
        }
        conns.emplace(fd, std::move(c));
      }
    }
    for (size_t i = 2; i < fds.size(); ++i) {
      auto it = conns.find(fds[i].fd);
      if (it == conns.end()) continue;
      Conn& c = it->second;
      const short rev = fds[i].revents;
      if (rev & (POLLIN | POLLHUP | POLLERR)) {
        char buf[16384];
        const ssize_t n = read(c.fd, buf, sizeof(buf));
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
          drop(it);  // The client closed (or reset) the connection.
          continue;
        }
        if (n > 0) {
          c.in.append(buf, static_cast<size_t>(n));
          if (c.in.size() > kMaxRequest ||
              (c.script.abort_after_request_bytes > 0 &&
               c.in.size() >= c.script.abort_after_request_bytes)) {
            drop(it);
            continue;
          }
        }
        if (n > 0 && !c.answering) {
          if (const size_t len = CompleteRequest(c.in); len > 0) {
            c.in.erase(0, len);
            c.answering = true;
            c.head_pos = 0;
            c.repeat_pos = 0;
            c.next_tick = std::chrono::steady_clock::now();
            requests_.fetch_add(1);
          }
        }
      }
      if (c.answering && !c.write_closed && (rev & POLLOUT)) {
        const size_t budget =
            c.script.bytes_per_tick == 0
                ? kMaxQueued
                : std::min(kMaxQueued, c.script.bytes_per_tick);
        if (c.script.bytes_per_tick != 0 && !c.out.empty()) {
          // Paced: send only what this tick allows.
        } else if (!Refill(c, budget)) {
          // The script is done.
        }
        if (!c.out.empty()) {
          const size_t chunk = c.script.bytes_per_tick == 0
                                   ? c.out.size()
                                   : std::min(c.out.size(), budget);
          const ssize_t n = send(c.fd, c.out.data(), chunk, MSG_NOSIGNAL);
          if (n < 0 && errno != EAGAIN && errno != EINTR) {
            drop(it);
            continue;
          }
          if (n > 0) {
            c.out.erase(0, static_cast<size_t>(n));
            bytes_sent_.fetch_add(static_cast<uint64_t>(n));
          }
          c.next_tick = std::chrono::steady_clock::now() +
                        absl::ToChronoNanoseconds(c.script.tick);
        }
        if (c.out.empty() && c.head_pos >= c.script.head.size() &&
            c.script.repeat.empty()) {
          if (c.script.close) {
            shutdown(c.fd, SHUT_WR);
            c.write_closed = true;
          } else {
            c.answering = false;  // Ready for the next request.
            if (const size_t len = CompleteRequest(c.in); len > 0) {
              c.in.erase(0, len);
              c.answering = true;
              c.head_pos = 0;
              c.repeat_pos = 0;
              requests_.fetch_add(1);
            }
          }
        }
      }
    }
  }
  for (auto it = conns.begin(); it != conns.end();) it = drop(it);
}

}  // namespace testing
}  // namespace ctxloop
