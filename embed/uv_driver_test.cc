// Copyright 2026 The ctxloop Authors.
//
// ctxloop embedded in a libuv loop through UvDriver: a socket the host owns
// and serves, a ctxloop stream, trace, fd watch and timer on the same
// thread, a finish from another thread that runs on its origin; an idle
// loop that costs the host nothing; a host that stops; every destruction
// order the header allows. Every test ends with `uv_loop_close` returning 0:
// no handle (the driver's included) is left open.

#include "ctxloop/embed/uv_driver.h"

#include <netinet/in.h>
#include <uv.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "ctxloop/embed/testing/scenario.h"
#include "ctxloop/loop/loop.h"
#include "gtest/gtest.h"

namespace ctxloop {
namespace {

using embed_testing::Client;
using embed_testing::Scenario;
using embed_testing::ThisTid;

// A uv_loop_t that must close cleanly: every handle closed (the driver's
// too) by the time the test ends.
class UvLoop {
 public:
  UvLoop() { EXPECT_EQ(uv_loop_init(&loop_), 0); }
  ~UvLoop() {
    uv_run(&loop_, UV_RUN_NOWAIT);  // Pending close callbacks.
    EXPECT_EQ(uv_loop_close(&loop_), 0) << "a handle was left open";
  }
  uv_loop_t* get() { return &loop_; }

 private:
  uv_loop_t loop_;
};

// A one-shot or repeating timer handle owned by a test frame; closed (and
// its close callback run) before the frame goes.
class UvTimer {
 public:
  explicit UvTimer(uv_loop_t* uv) : uv_(uv) {
    uv_timer_init(uv, &timer_);
    timer_.data = this;
  }
  ~UvTimer() {
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
    uv_run(uv_, UV_RUN_NOWAIT);
  }
  void Start(uint64_t ms, uint64_t repeat, std::function<void()> fn) {
    fn_ = std::move(fn);
    uv_timer_start(
        &timer_, [](uv_timer_t* t) { static_cast<UvTimer*>(t->data)->fn_(); },
        ms, repeat);
  }
  void Stop() { uv_timer_stop(&timer_); }

 private:
  uv_loop_t* uv_;
  uv_timer_t timer_;
  std::function<void()> fn_;
};

// Runs `uv` until `done()` holds (checked by a host timer every
// millisecond) or `timeout` passed. Returns `done()`.
bool RunUntil(uv_loop_t* uv, const std::function<bool()>& done,
              absl::Duration timeout = absl::Seconds(20)) {
  const absl::Time deadline = absl::Now() + timeout;
  UvTimer check(uv);
  check.Start(1, 1, [&] {
    if (done() || absl::Now() > deadline) uv_stop(uv);
  });
  uv_run(uv, UV_RUN_DEFAULT);
  check.Stop();
  return done();
}

// Runs `uv` for `d` with no other host work than a timer that ends it.
void RunFor(uv_loop_t* uv, absl::Duration d) {
  UvTimer end(uv);
  end.Start(static_cast<uint64_t>(absl::ToInt64Milliseconds(d)), 0,
            [&] { uv_stop(uv); });
  uv_run(uv, UV_RUN_DEFAULT);
}

// The host's server: accepts one connection on 127.0.0.1, reads a line,
// hands it to `on_request` with a writer (libuv keeps writes in order) and
// a `done` after which it closes the connection once everything is
// written.
class UvServer {
 public:
  using OnRequest =
      std::function<void(const std::string&, std::function<void(std::string)>,
                         std::function<void()>)>;

  UvServer(uv_loop_t* uv, OnRequest on_request)
      : uv_(uv), on_request_(std::move(on_request)) {
    uv_tcp_init(uv, &listener_);
    listener_.data = this;
    sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    EXPECT_EQ(uv_tcp_bind(&listener_, reinterpret_cast<sockaddr*>(&addr), 0),
              0);
    EXPECT_EQ(uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 1,
                        &UvServer::OnConnection),
              0);
  }
  ~UvServer() {
    Close(reinterpret_cast<uv_handle_t*>(&listener_));
    if (accepted_ && !closed_) Close(reinterpret_cast<uv_handle_t*>(&conn_));
    uv_run(uv_, UV_RUN_NOWAIT);
  }

  uint16_t port() {
    sockaddr_in addr;
    int len = sizeof(addr);
    uv_tcp_getsockname(&listener_, reinterpret_cast<sockaddr*>(&addr), &len);
    return ntohs(addr.sin_port);
  }
  bool closed() const { return closed_; }
  int64_t read_tid() const { return read_tid_; }

 private:
  struct WriteReq {
    uv_write_t req;
    std::string data;
    UvServer* server;
  };

  static void Close(uv_handle_t* h) {
    if (!uv_is_closing(h)) uv_close(h, nullptr);
  }

  static void OnConnection(uv_stream_t* listener, int status) {
    auto* self = static_cast<UvServer*>(listener->data);
    if (status < 0 || self->accepted_) return;
    uv_tcp_init(self->uv_, &self->conn_);
    self->conn_.data = self;
    self->accepted_ = true;
    if (uv_accept(listener, reinterpret_cast<uv_stream_t*>(&self->conn_)) != 0)
      return;
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(&self->conn_),
        [](uv_handle_t*, size_t, uv_buf_t* buf) {
          static char storage[256];
          *buf = uv_buf_init(storage, sizeof(storage));
        },
        &UvServer::OnRead);
  }

  static void OnRead(uv_stream_t* stream, ssize_t n, const uv_buf_t* buf) {
    auto* self = static_cast<UvServer*>(stream->data);
    if (n <= 0) return;
    self->in_.append(buf->base, static_cast<size_t>(n));
    const size_t eol = self->in_.find('\n');
    if (eol == std::string::npos) return;
    uv_read_stop(stream);
    self->read_tid_ = ThisTid();
    const std::string line = self->in_.substr(0, eol + 1);
    self->on_request_(
        line, [self](std::string s) { self->Write(std::move(s)); },
        [self] {
          self->closing_ = true;
          self->MaybeClose();
        });
  }

  void Write(std::string s) {
    auto* w = new WriteReq{{}, std::move(s), this};
    uv_buf_t buf =
        uv_buf_init(w->data.data(), static_cast<unsigned int>(w->data.size()));
    ++writes_in_flight_;
    if (uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&conn_), &buf, 1,
                 [](uv_write_t* req, int) {
                   auto* w = reinterpret_cast<WriteReq*>(req);
                   UvServer* server = w->server;
                   delete w;
                   --server->writes_in_flight_;
                   server->MaybeClose();
                 }) != 0) {
      --writes_in_flight_;
      delete w;
    }
  }

  void MaybeClose() {
    if (!closing_ || writes_in_flight_ > 0 || closed_) return;
    closed_ = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&conn_), nullptr);
  }

  uv_loop_t* uv_;
  OnRequest on_request_;
  uv_tcp_t listener_;
  uv_tcp_t conn_;
  bool accepted_ = false;
  std::string in_;
  int writes_in_flight_ = 0;
  bool closing_ = false;
  bool closed_ = false;
  int64_t read_tid_ = 0;
};

TEST(UvDriverTest, HostSocketStreamTraceAndForeignFinishOnOneThread) {
  UvLoop uv;
  Loop loop;
  absl::StatusOr<std::unique_ptr<UvDriver>> driver =
      UvDriver::Create(loop, uv.get());
  ASSERT_TRUE(driver.ok()) << driver.status();
  {
    Scenario scenario(loop);
    UvServer server(uv.get(), [&](const std::string& line,
                                  std::function<void(std::string)> write,
                                  std::function<void()> done) {
      scenario.OnRequest(line, std::move(write), std::move(done));
    });
    Client client(server.port(), embed_testing::kRequest);
    ASSERT_TRUE(RunUntil(uv.get(), [&] {
      return scenario.Finished() && server.closed();
    })) << "the request did not finish";
    // Let libuv finish closing the connection (the client then sees EOF).
    RunFor(uv.get(), absl::Milliseconds(1));
    EXPECT_EQ(client.Join(), embed_testing::kReply);
    const int64_t host_tid = ThisTid();
    EXPECT_EQ(server.read_tid(), host_tid);
    scenario.Verify(host_tid);
  }
  EXPECT_TRUE((*driver)->status().ok()) << (*driver)->status();
  EXPECT_GT((*driver)->stats().fd_wakeups, 0u);
  driver->reset();
}

// An idle embedded loop: over 200 ms the host calls the driver zero times.
// Then one post from another thread costs a wake-up: the count can move.
TEST(UvDriverTest, IdleLoopCostsTheHostNoCallbacks) {
  UvLoop uv;
  Loop loop;
  const ContextHandle ctx = *loop.NewContext("idle");
  std::unique_ptr<UvDriver> driver = *UvDriver::Create(loop, uv.get());
  RunFor(uv.get(), absl::Milliseconds(20));  // Settle.
  const HostDriverStats before = driver->stats();
  RunFor(uv.get(), absl::Milliseconds(200));
  const HostDriverStats idle = driver->stats();
  EXPECT_EQ(idle.host_callbacks(), before.host_callbacks());
  EXPECT_EQ(idle.run_ready_calls, before.run_ready_calls);

  std::atomic<int> ran{0};
  std::thread poster([&] {
    EXPECT_TRUE(Post(ctx, [&](ContextHandle) { ran.fetch_add(1); }).ok());
  });
  poster.join();
  ASSERT_TRUE(RunUntil(uv.get(), [&] { return ran.load() == 1; }));
  EXPECT_GT(driver->stats().fd_wakeups, idle.fd_wakeups);
}

// The host stops running `uv`: nothing of the loop runs, cross-thread posts
// queue up to the loop's bound and are refused past it (never lost
// silently); when the host runs again the loop catches up.
TEST(UvDriverTest, HostThatStopsQueuesBoundedWorkAndCatchesUp) {
  UvLoop uv;
  Loop::Options options;
  options.max_pending_foreign = 4;
  Loop loop(std::move(options));
  const ContextHandle ctx = *loop.NewContext("stopped host");
  std::unique_ptr<UvDriver> driver = *UvDriver::Create(loop, uv.get());

  std::atomic<int> ran{0};
  bool local_ran = false;
  bool timer_ran = false;
  ASSERT_TRUE(Post(ctx, [&](ContextHandle) { local_ran = true; }).ok());
  ASSERT_TRUE(PostDelayed(ctx, absl::Milliseconds(1), [&](ContextHandle) {
                timer_ran = true;
              }).ok());
  int accepted = 0;
  int refused = 0;
  std::thread poster([&] {
    for (int i = 0; i < 6; ++i) {
      absl::Status s = Post(ctx, [&](ContextHandle) { ran.fetch_add(1); });
      if (s.ok()) {
        ++accepted;
      } else {
        EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
        ++refused;
      }
    }
  });
  poster.join();
  absl::SleepFor(absl::Milliseconds(10));  // The host does not run.
  EXPECT_EQ(accepted, 4);
  EXPECT_EQ(refused, 2);
  EXPECT_EQ(ran.load(), 0);
  EXPECT_FALSE(local_ran);
  EXPECT_FALSE(timer_ran);
  EXPECT_EQ(loop.stats().foreign_refused_full, 2u);

  ASSERT_TRUE(RunUntil(
      uv.get(), [&] { return ran.load() == 4 && local_ran && timer_ran; }));
  EXPECT_TRUE(driver->status().ok()) << driver->status();
}

// A ctxloop task that re-posts itself forever never keeps the host from its
// own callbacks: each re-run is a zero timer, after the host's ready work.
TEST(UvDriverTest, BusyLoopInterleavesWithHostCallbacks) {
  // Declared before the loop: its destructor may run the last spin.
  int64_t spins = 0;
  bool stop = false;
  std::function<void(ContextHandle)> spin = [&](ContextHandle c) {
    ++spins;
    if (!stop) {
      ASSERT_TRUE(Post(c, spin).ok());
    }
  };
  UvLoop uv;
  Loop loop;
  const ContextHandle ctx = *loop.NewContext("busy");
  std::unique_ptr<UvDriver> driver = *UvDriver::Create(loop, uv.get());
  ASSERT_TRUE(Post(ctx, spin).ok());
  int host_callbacks = 0;
  {
    UvTimer host_work(uv.get());
    host_work.Start(0, 1, [&] { ++host_callbacks; });
    ASSERT_TRUE(RunUntil(uv.get(),
                         [&] { return host_callbacks >= 20 && spins > 100; }));
  }
  stop = true;
  RunFor(uv.get(), absl::Milliseconds(2));
  // Each re-run came from the driver: a zero timer (work left) or, when the
  // loop reports its next batch a little in the future, a timer.
  const HostDriverStats st = driver->stats();
  EXPECT_GE(st.immediate_runs + st.timer_wakeups, 100u);
}

// A ctxloop timer wakes the host at its deadline, with no other work.
TEST(UvDriverTest, LoopTimerWakesTheHost) {
  UvLoop uv;
  Loop loop;
  const ContextHandle ctx = *loop.NewContext("timer");
  std::unique_ptr<UvDriver> driver = *UvDriver::Create(loop, uv.get());
  const absl::Time start = absl::Now();
  absl::Time fired;
  ASSERT_TRUE(PostDelayed(ctx, absl::Milliseconds(30), [&](ContextHandle) {
                fired = absl::Now();
              }).ok());
  ASSERT_TRUE(RunUntil(uv.get(), [&] { return fired != absl::Time(); }));
  EXPECT_GE(fired - start, absl::Milliseconds(30));
}

TEST(UvDriverTest, CreateRefusesBadCalls) {
  UvLoop uv;
  Loop loop;
  EXPECT_EQ(UvDriver::Create(loop, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::Status status;
  std::thread other(
      [&] { status = UvDriver::Create(loop, uv.get()).status(); });
  other.join();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
}

// With `Ref(false)` the driver alone does not keep uv_run(UV_RUN_DEFAULT)
// running; with its handles referenced (the default) it would.
TEST(UvDriverTest, UnrefLetsTheHostLoopEnd) {
  UvLoop uv;
  Loop loop;
  std::unique_ptr<UvDriver> driver = *UvDriver::Create(loop, uv.get());
  EXPECT_NE(uv_loop_alive(uv.get()), 0);
  driver->Ref(false);
  EXPECT_EQ(uv_run(uv.get(), UV_RUN_DEFAULT), 0);
  driver->Ref(true);
  EXPECT_NE(uv_loop_alive(uv.get()), 0);
}

// Destruction orders (uv_driver.h, "Lifetime"): driver, uv_run once, loop,
// uv_loop_close; and driver, uv_run, uv_loop_close, loop. Pending work of
// the loop is drained by its destructor without the host ([S1]).
TEST(UvDriverTest, DriverThenLoopThenUvLoop) {
  auto uv = std::make_unique<UvLoop>();
  auto loop = std::make_unique<Loop>();
  std::unique_ptr<UvDriver> driver = *UvDriver::Create(*loop, uv->get());
  bool ran = false;
  ASSERT_TRUE(Post(loop->root(), [&](ContextHandle) { ran = true; }).ok());
  driver.reset();
  uv_run(uv->get(), UV_RUN_NOWAIT);
  loop.reset();
  EXPECT_TRUE(ran);
  uv.reset();  // uv_loop_close == 0.
}

TEST(UvDriverTest, DriverThenUvLoopThenLoop) {
  auto uv = std::make_unique<UvLoop>();
  auto loop = std::make_unique<Loop>();
  std::unique_ptr<UvDriver> driver = *UvDriver::Create(*loop, uv->get());
  bool ran = false;
  ASSERT_TRUE(Post(loop->root(), [&](ContextHandle) { ran = true; }).ok());
  driver.reset();
  uv.reset();  // Runs the close callbacks, then uv_loop_close == 0.
  loop.reset();
  EXPECT_TRUE(ran);
}

// The driver destroyed from inside a ctxloop task it is running, then the
// host keeps running: nothing touches the driver any more.
TEST(UvDriverTest, DriverDestroyedInsideALoopTask) {
  UvLoop uv;
  Loop loop;
  std::unique_ptr<UvDriver> driver = *UvDriver::Create(loop, uv.get());
  bool destroyed = false;
  ASSERT_TRUE(Post(loop.root(), [&](ContextHandle) {
                driver.reset();
                destroyed = true;
              }).ok());
  ASSERT_TRUE(RunUntil(uv.get(), [&] { return destroyed; }));
  bool later = false;
  ASSERT_TRUE(Post(loop.root(), [&](ContextHandle) { later = true; }).ok());
  RunFor(uv.get(), absl::Milliseconds(20));
  EXPECT_FALSE(later);  // No driver: the host does not run the loop.
  ASSERT_TRUE(loop.RunUntilIdle().ok());
  EXPECT_TRUE(later);
}

TEST(UvDriverTest, DriverDestroyedInsideAHostCallback) {
  UvLoop uv;
  Loop loop;
  std::unique_ptr<UvDriver> driver = *UvDriver::Create(loop, uv.get());
  ASSERT_TRUE(
      PostDelayed(loop.root(), absl::Milliseconds(1), [](ContextHandle) {
      }).ok());
  {
    UvTimer kill(uv.get());
    kill.Start(0, 0, [&] { driver.reset(); });
    RunFor(uv.get(), absl::Milliseconds(20));
  }
  EXPECT_EQ(driver, nullptr);
}

}  // namespace
}  // namespace ctxloop
