// Copyright 2026 The ctxloop Authors.
//
// ctxloop embedded in a Boost.Asio io_context through AsioDriver: a socket
// the host owns and serves, a ctxloop stream, trace, fd watch and timer on
// the same thread, a finish from another thread that runs on its origin;
// an idle loop that costs the host nothing; a host that stops; every
// destruction order the header allows.

#include "ctxloop/embed/asio_driver.h"

#include <atomic>
#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "ctxloop/embed/testing/scenario.h"
#include "ctxloop/loop/loop.h"
#include "gtest/gtest.h"

namespace ctxloop {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using embed_testing::Client;
using embed_testing::Scenario;
using embed_testing::ThisTid;

// Runs `io` on this thread until `done()` holds (checked by a host timer
// every millisecond) or `timeout` passed. Returns `done()`. The timer and
// its handler own what they use, so a cancelled wait left in `io` touches
// nothing of this frame (no `io.poll()` to flush it, which would never
// return while the loop stays busy: a loop with work left re-posts itself).
bool RunUntil(asio::io_context& io, const std::function<bool()>& done,
              absl::Duration timeout = absl::Seconds(20)) {
  struct Check : std::enable_shared_from_this<Check> {
    Check(asio::io_context& io, const std::function<bool()>& done,
          absl::Time deadline)
        : io(io), timer(io), done(done), deadline(deadline) {}
    void Arm() {
      timer.expires_after(std::chrono::milliseconds(1));
      timer.async_wait(
          [self = shared_from_this()](const boost::system::error_code& ec) {
            if (ec || self->finished) return;
            if (self->done() || absl::Now() > self->deadline) {
              self->io.stop();
              return;
            }
            self->Arm();
          });
    }
    asio::io_context& io;
    asio::steady_timer timer;
    const std::function<bool()>& done;  // Used only while `finished` is false.
    absl::Time deadline;
    bool finished = false;
  };
  auto check = std::make_shared<Check>(io, done, absl::Now() + timeout);
  check->Arm();
  io.restart();
  io.run();
  check->finished = true;
  check->timer.cancel();
  return done();
}

// Runs `io` for `d` with no other host work than a timer that ends it.
void RunFor(asio::io_context& io, absl::Duration d) {
  auto end = std::make_shared<asio::steady_timer>(io);
  end->expires_after(absl::ToChronoNanoseconds(d));
  end->async_wait([end, &io](const boost::system::error_code& ec) {
    if (!ec) io.stop();
  });
  io.restart();
  io.run();
  end->cancel();
}

// The host's server: accepts one connection on 127.0.0.1, reads a line,
// hands it to `on_request` with a writer (queued, in order) and a `done`
// after which it closes the connection once everything is written.
class AsioServer {
 public:
  using OnRequest =
      std::function<void(const std::string&, std::function<void(std::string)>,
                         std::function<void()>)>;

  AsioServer(asio::io_context& io, OnRequest on_request)
      : acceptor_(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0)),
        socket_(io),
        on_request_(std::move(on_request)) {
    acceptor_.async_accept(socket_,
                           [this](const boost::system::error_code& ec) {
                             if (ec) return;
                             ReadLine();
                           });
  }

  uint16_t port() const { return acceptor_.local_endpoint().port(); }
  bool closed() const { return closed_; }
  int64_t read_tid() const { return read_tid_; }

 private:
  void ReadLine() {
    asio::async_read_until(
        socket_, in_, '\n',
        [this](const boost::system::error_code& ec, size_t n) {
          if (ec) return;
          read_tid_ = ThisTid();
          std::string line(asio::buffers_begin(in_.data()),
                           asio::buffers_begin(in_.data()) + n);
          in_.consume(n);
          on_request_(
              line, [this](std::string s) { Write(std::move(s)); },
              [this] {
                closing_ = true;
                MaybeClose();
              });
        });
  }

  void Write(std::string s) {
    outbox_ += s;
    if (!writing_) Flush();
  }

  void Flush() {
    writing_ = true;
    sending_ = std::move(outbox_);
    outbox_.clear();
    asio::async_write(socket_, asio::buffer(sending_),
                      [this](const boost::system::error_code& ec, size_t) {
                        writing_ = false;
                        if (ec) return;
                        if (!outbox_.empty()) {
                          Flush();
                        } else {
                          MaybeClose();
                        }
                      });
  }

  void MaybeClose() {
    if (!closing_ || writing_ || !outbox_.empty() || closed_) return;
    boost::system::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
    closed_ = true;
  }

  tcp::acceptor acceptor_;
  tcp::socket socket_;
  OnRequest on_request_;
  asio::streambuf in_;
  std::string outbox_;
  std::string sending_;
  bool writing_ = false;
  bool closing_ = false;
  bool closed_ = false;
  int64_t read_tid_ = 0;
};

TEST(AsioDriverTest, HostSocketStreamTraceAndForeignFinishOnOneThread) {
  asio::io_context io(1);
  Loop loop;
  absl::StatusOr<std::unique_ptr<AsioDriver>> driver =
      AsioDriver::Create(loop, io);
  ASSERT_TRUE(driver.ok()) << driver.status();
  {
    Scenario scenario(loop);
    AsioServer server(
        io, [&](const std::string& line, std::function<void(std::string)> write,
                std::function<void()> done) {
          scenario.OnRequest(line, std::move(write), std::move(done));
        });
    Client client(server.port(), embed_testing::kRequest);
    ASSERT_TRUE(RunUntil(io, [&] {
      return scenario.Finished() && server.closed();
    })) << "the request did not finish";
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
TEST(AsioDriverTest, IdleLoopCostsTheHostNoCallbacks) {
  asio::io_context io(1);
  Loop loop;
  const ContextHandle ctx = *loop.NewContext("idle");
  std::unique_ptr<AsioDriver> driver = *AsioDriver::Create(loop, io);
  // Settle whatever creating the context and the driver left.
  RunFor(io, absl::Milliseconds(20));
  const HostDriverStats before = driver->stats();
  RunFor(io, absl::Milliseconds(200));
  const HostDriverStats idle = driver->stats();
  EXPECT_EQ(idle.host_callbacks(), before.host_callbacks());
  EXPECT_EQ(idle.run_ready_calls, before.run_ready_calls);

  std::atomic<int> ran{0};
  std::thread poster([&] {
    EXPECT_TRUE(Post(ctx, [&](ContextHandle) { ran.fetch_add(1); }).ok());
  });
  poster.join();
  ASSERT_TRUE(RunUntil(io, [&] { return ran.load() == 1; }));
  EXPECT_GT(driver->stats().fd_wakeups, idle.fd_wakeups);
}

// The host stops running `io`: nothing of the loop runs, cross-thread posts
// queue up to the loop's bound and are refused past it (never lost
// silently); when the host runs again the loop catches up.
TEST(AsioDriverTest, HostThatStopsQueuesBoundedWorkAndCatchesUp) {
  asio::io_context io(1);
  Loop::Options options;
  options.max_pending_foreign = 4;
  Loop loop(std::move(options));
  const ContextHandle ctx = *loop.NewContext("stopped host");
  std::unique_ptr<AsioDriver> driver = *AsioDriver::Create(loop, io);

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

  ASSERT_TRUE(
      RunUntil(io, [&] { return ran.load() == 4 && local_ran && timer_ran; }));
  EXPECT_TRUE(driver->status().ok()) << driver->status();
}

// A ctxloop task that re-posts itself forever never keeps the host from its
// own handlers: the driver hands each re-run back to the host's queue.
TEST(AsioDriverTest, BusyLoopInterleavesWithHostHandlers) {
  // Declared before the loop: its destructor may run the last spin.
  int64_t spins = 0;
  bool stop = false;
  std::function<void(ContextHandle)> spin = [&](ContextHandle c) {
    ++spins;
    if (!stop) {
      ASSERT_TRUE(Post(c, spin).ok());
    }
  };
  asio::io_context io(1);
  Loop loop;
  const ContextHandle ctx = *loop.NewContext("busy");
  std::unique_ptr<AsioDriver> driver = *AsioDriver::Create(loop, io);
  ASSERT_TRUE(Post(ctx, spin).ok());
  int host_handlers = 0;
  std::function<void()> host_work = [&] {
    if (++host_handlers < 100) asio::post(io, host_work);
  };
  asio::post(io, host_work);
  ASSERT_TRUE(
      RunUntil(io, [&] { return host_handlers >= 100 && spins > 100; }));
  stop = true;
  ASSERT_TRUE(RunUntil(io, [&] { return true; }));
  // Each re-run came from the driver: a post to the host's queue (work
  // left) or, when the loop reports its next batch a little in the future,
  // a timer.
  const HostDriverStats st = driver->stats();
  EXPECT_GE(st.immediate_runs + st.timer_wakeups, 100u);
}

// A ctxloop timer wakes the host at its deadline, with no other work.
TEST(AsioDriverTest, LoopTimerWakesTheHost) {
  asio::io_context io(1);
  Loop loop;
  const ContextHandle ctx = *loop.NewContext("timer");
  std::unique_ptr<AsioDriver> driver = *AsioDriver::Create(loop, io);
  const absl::Time start = absl::Now();
  absl::Time fired;
  ASSERT_TRUE(PostDelayed(ctx, absl::Milliseconds(30), [&](ContextHandle) {
                fired = absl::Now();
              }).ok());
  ASSERT_TRUE(RunUntil(io, [&] { return fired != absl::Time(); }));
  EXPECT_GE(fired - start, absl::Milliseconds(30));
}

TEST(AsioDriverTest, CreateOffTheLoopThreadIsRefused) {
  asio::io_context io(1);
  Loop loop;
  absl::Status status;
  std::thread other([&] { status = AsioDriver::Create(loop, io).status(); });
  other.join();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
}

// Destruction orders (asio_driver.h, "Lifetime"): driver, loop, io; and
// driver, io, loop. Pending work of the loop is drained by its destructor
// without the host ([S1]).
TEST(AsioDriverTest, DriverThenLoopThenIo) {
  auto io = std::make_unique<asio::io_context>(1);
  auto loop = std::make_unique<Loop>();
  std::unique_ptr<AsioDriver> driver = *AsioDriver::Create(*loop, *io);
  bool ran = false;
  ASSERT_TRUE(Post(loop->root(), [&](ContextHandle) { ran = true; }).ok());
  driver.reset();
  loop.reset();
  EXPECT_TRUE(ran);
  io.reset();
}

TEST(AsioDriverTest, DriverThenIoThenLoop) {
  auto io = std::make_unique<asio::io_context>(1);
  auto loop = std::make_unique<Loop>();
  std::unique_ptr<AsioDriver> driver = *AsioDriver::Create(*loop, *io);
  bool ran = false;
  ASSERT_TRUE(Post(loop->root(), [&](ContextHandle) { ran = true; }).ok());
  driver.reset();
  io.reset();  // Destroys the driver's cancelled handlers, unrun.
  loop.reset();
  EXPECT_TRUE(ran);
}

// The driver destroyed from inside a ctxloop task it is running, then the
// host keeps running: nothing touches the driver any more.
TEST(AsioDriverTest, DriverDestroyedInsideALoopTask) {
  asio::io_context io(1);
  Loop loop;
  std::unique_ptr<AsioDriver> driver = *AsioDriver::Create(loop, io);
  bool destroyed = false;
  ASSERT_TRUE(Post(loop.root(), [&](ContextHandle) {
                driver.reset();
                destroyed = true;
              }).ok());
  ASSERT_TRUE(RunUntil(io, [&] { return destroyed; }));
  bool later = false;
  ASSERT_TRUE(Post(loop.root(), [&](ContextHandle) { later = true; }).ok());
  RunFor(io, absl::Milliseconds(20));
  EXPECT_FALSE(later);  // No driver: the host does not run the loop.
  ASSERT_TRUE(loop.RunUntilIdle().ok());
  EXPECT_TRUE(later);
}

TEST(AsioDriverTest, DriverDestroyedInsideAHostHandler) {
  asio::io_context io(1);
  Loop loop;
  std::unique_ptr<AsioDriver> driver = *AsioDriver::Create(loop, io);
  // Work pending for the driver, so its handlers are queued when it goes.
  ASSERT_TRUE(
      PostDelayed(loop.root(), absl::Milliseconds(1), [](ContextHandle) {
      }).ok());
  asio::post(io, [&] { driver.reset(); });
  RunFor(io, absl::Milliseconds(20));
  EXPECT_EQ(driver, nullptr);
}

}  // namespace
}  // namespace ctxloop
