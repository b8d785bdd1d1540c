// Copyright 2026 The ctxloop Authors.

#include "ctxloop/tests/load/sse_load_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <future>
#include <map>
#include <memory>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "ctxloop/loop/fd_watch.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/loop/loop_thread.h"

namespace ctxloop {
namespace load {
namespace {

// Everything below runs on the client loop's thread only.
class Driver {
 public:
  Driver(SseLoadClient::Options options, Loop& loop)
      : options_(std::move(options)), loop_(loop) {
    request_ = absl::StrCat("GET ", options_.target,
                            " HTTP/1.1\r\nHost: 127.0.0.1:", options_.port,
                            "\r\nAccept: text/event-stream\r\n"
                            "Connection: close\r\n\r\n");
  }

  // Starts the load; `done` is fulfilled when the last request ended.
  void Start(std::promise<LoadResult> done) {
    done_ = std::move(done);
    begin_ = absl::Now();
    deadline_ = begin_ + options_.duration;
    Tick(loop_.root());
  }

 private:
  struct Conn {
    ContextHandle ctx;
    int fd = -1;
    FdWatch watch;
    absl::Time started;
    bool sent = false;
    std::string response;
  };

  // Every millisecond: ramp up, time out stuck requests, detect the end.
  void Tick(ContextHandle root) {
    const absl::Time now = absl::Now();
    if (now < deadline_) {
      for (int i = 0; i < options_.ramp_per_ms &&
                      static_cast<int>(conns_.size()) < options_.connections;
           ++i) {
        Open();
      }
    }
    if (++ticks_ % 100 == 0) ExpireStuck(now);
    if (now >= deadline_ && conns_.empty()) {
      Finish();
      return;
    }
    absl::StatusOr<DelayedTaskHandle> h = PostDelayed(
        root, absl::Milliseconds(1), [this](ContextHandle ctx) { Tick(ctx); });
    if (!h.ok()) Error(absl::StrCat("tick: ", h.status().ToString()));
  }

  void Open() {
    ++result_.started;
    const int fd =
        socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      Error(absl::StrCat("socket: ", std::strerror(errno)));
      return;
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(options_.port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 &&
        errno != EINPROGRESS) {
      Error(absl::StrCat("connect: ", std::strerror(errno)));
      close(fd);
      return;
    }
    absl::StatusOr<ContextHandle> ctx = loop_.NewContext("load connection");
    if (!ctx.ok()) {
      Error(absl::StrCat("NewContext: ", ctx.status().ToString()));
      close(fd);
      return;
    }
    auto conn = std::make_unique<Conn>();
    conn->ctx = *ctx;
    conn->fd = fd;
    conn->started = absl::Now();
    Conn* c = conn.get();
    conns_[fd] = std::move(conn);
    result_.peak_in_flight =
        std::max<uint64_t>(result_.peak_in_flight, conns_.size());
    Watch(c, FdEvents::kWrite);
  }

  void Watch(Conn* c, FdEvents events) {
    c->watch.Stop();  // On this thread: unregistered at once.
    absl::StatusOr<FdWatch> w =
        loop_.WatchFd(c->ctx, c->fd, events,
                      [this, fd = c->fd](ContextHandle, FdEvents ready) {
                        OnReady(fd, ready);
                      });
    if (!w.ok()) {
      End(c, absl::StrCat("WatchFd: ", w.status().ToString()));
      return;
    }
    c->watch = *std::move(w);
  }

  void OnReady(int fd, FdEvents) {
    auto it = conns_.find(fd);
    if (it == conns_.end()) return;
    Conn* c = it->second.get();
    if (!c->sent) {
      int err = 0;
      socklen_t len = sizeof(err);
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        End(c, absl::StrCat("connect: ", std::strerror(err)));
        return;
      }
      // The request is ~100 bytes: one write fits an empty socket buffer.
      const ssize_t n =
          send(fd, request_.data(), request_.size(), MSG_NOSIGNAL);
      if (n != static_cast<ssize_t>(request_.size())) {
        End(c, absl::StrCat("send: ", n < 0 ? std::strerror(errno) : "short"));
        return;
      }
      c->sent = true;
      Watch(c, FdEvents::kRead);
      return;
    }
    char buf[4096];
    for (;;) {
      const ssize_t n = recv(fd, buf, sizeof(buf), 0);
      if (n > 0) {
        c->response.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n == 0) {  // The server closed: the response is complete.
        if (!absl::StartsWith(c->response, "HTTP/1.1 200")) {
          End(c, absl::StrCat("status line: ",
                              c->response.substr(0, c->response.find('\r'))));
        } else if (!absl::StrContains(c->response, options_.expect_in_body)) {
          End(c, absl::StrCat("body without '", options_.expect_in_body, "' (",
                              c->response.size(), " bytes)"));
        } else {
          End(c, "");
        }
        return;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR) continue;
      End(c, absl::StrCat("recv: ", std::strerror(errno)));
      return;
    }
  }

  // Ends `c` (OK if `error` is empty) and starts a replacement while the
  // load lasts.
  void End(Conn* c, const std::string& error) {
    const absl::Time now = absl::Now();
    if (error.empty()) {
      ++result_.ok;
      latencies_ns_.push_back(absl::ToInt64Nanoseconds(now - c->started));
    } else {
      Error(error);
    }
    const int fd = c->fd;
    c->watch.Stop();
    close(fd);
    (void)loop_.DestroyContext(c->ctx);
    conns_.erase(fd);  // Destroys `c`.
    if (now < deadline_ &&
        static_cast<int>(conns_.size()) < options_.connections) {
      Open();
    }
  }

  void ExpireStuck(absl::Time now) {
    std::vector<Conn*> stuck;
    for (auto& [fd, c] : conns_) {
      if (now - c->started > options_.request_timeout) stuck.push_back(c.get());
    }
    for (Conn* c : stuck) End(c, "request timed out");
  }

  void Error(std::string message) {
    ++result_.failed;
    if (result_.first_errors.size() < 10) {
      result_.first_errors.push_back(std::move(message));
    }
  }

  void Finish() {
    result_.elapsed = absl::Now() - begin_;
    const double seconds = absl::ToDoubleSeconds(result_.elapsed);
    result_.requests_per_second =
        seconds > 0 ? static_cast<double>(result_.ok) / seconds : 0;
    if (!latencies_ns_.empty()) {
      std::sort(latencies_ns_.begin(), latencies_ns_.end());
      auto at = [&](double q) {
        const size_t i = std::min(
            latencies_ns_.size() - 1,
            static_cast<size_t>(q * static_cast<double>(latencies_ns_.size())));
        return absl::Nanoseconds(latencies_ns_[i]);
      };
      result_.p50 = at(0.50);
      result_.p99 = at(0.99);
      result_.max = absl::Nanoseconds(latencies_ns_.back());
    }
    done_.set_value(result_);
  }

  const SseLoadClient::Options options_;
  Loop& loop_;
  std::string request_;
  std::promise<LoadResult> done_;
  absl::Time begin_;
  absl::Time deadline_;
  uint64_t ticks_ = 0;
  std::map<int, std::unique_ptr<Conn>> conns_;  // By fd.
  std::vector<int64_t> latencies_ns_;
  LoadResult result_;
};

}  // namespace

absl::StatusOr<LoadResult> SseLoadClient::Run(const Options& options) {
  if (options.port <= 0 || options.connections <= 0 ||
      options.ramp_per_ms <= 0 || options.duration <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "SseLoadClient: need a port, connections > 0, ramp_per_ms > 0 and a "
        "positive duration");
  }
  LoopThread client;
  std::unique_ptr<Driver> driver;
  std::promise<LoadResult> done;
  std::future<LoadResult> result = done.get_future();
  absl::Status s = client.Invoke([&](Loop& loop) {
    driver = std::make_unique<Driver>(options, loop);
    driver->Start(std::move(done));
  });
  if (!s.ok()) return s;
  LoadResult r = result.get();
  // The driver is destroyed on the loop thread (its watches live there).
  s = client.Invoke([&](Loop&) { driver.reset(); });
  if (!s.ok()) return s;
  return r;
}

uint64_t RaiseOpenFileLimit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return 0;
  if (lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
    getrlimit(RLIMIT_NOFILE, &lim);
  }
  return lim.rlim_cur;
}

int64_t ResidentBytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return -1;
  long size = 0, resident = 0;  // NOLINT(runtime/int): statm's format.
  const int n = std::fscanf(f, "%ld %ld", &size, &resident);
  std::fclose(f);
  if (n != 2) return -1;
  return static_cast<int64_t>(resident) * sysconf(_SC_PAGESIZE);
}

}  // namespace load
}  // namespace ctxloop
