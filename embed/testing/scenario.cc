// Copyright 2026 The ctxloop Authors.

#include "ctxloop/embed/testing/scenario.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "ctxloop/trace/simple_processor.h"
#include "gtest/gtest.h"

namespace ctxloop {
namespace embed_testing {

int64_t ThisTid() { return static_cast<int64_t>(syscall(SYS_gettid)); }

namespace {

std::string RunClient(uint16_t port, const std::string& request) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::StrCat("error: socket: ", std::strerror(errno));
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  // A bounded wait for a server that never answers: the test fails, it
  // does not hang.
  timeval tv = {10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::string reply;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    reply = absl::StrCat("error: connect: ", std::strerror(errno));
  } else if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
             static_cast<ssize_t>(request.size())) {
    reply = absl::StrCat("error: send: ", std::strerror(errno));
  } else {
    char buf[256];
    for (;;) {
      const ssize_t n = recv(fd, buf, sizeof(buf), 0);
      if (n > 0) {
        reply.append(buf, static_cast<size_t>(n));
      } else if (n == 0) {
        break;
      } else if (errno != EINTR) {
        reply = absl::StrCat("error: recv: ", std::strerror(errno), " after '",
                             reply, "'");
        break;
      }
    }
  }
  close(fd);
  return reply;
}

}  // namespace

Client::Client(uint16_t port, std::string request)
    : thread_([this, port, request = std::move(request)] {
        reply_ = RunClient(port, request);
      }) {}

Client::~Client() {
  if (thread_.joinable()) thread_.join();
}

std::string Client::Join() {
  if (thread_.joinable()) thread_.join();
  return reply_;
}

Scenario::Scenario(Loop& loop)
    : loop_(loop), exporter_(std::make_shared<InMemoryExporter>()) {
  Tracer::Options options;
  options.processors.push_back(std::make_shared<SimpleProcessor>(exporter_));
  tracer_ = std::make_unique<Tracer>(std::move(options));
  request_ctx_ = *loop.NewContext("request");
  response_ctx_ = *loop.NewChildContext(request_ctx_, "response");
  EXPECT_EQ(
      socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, pair_),
      0);
}

Scenario::~Scenario() {
  if (worker_.joinable()) worker_.join();
  watch_ = FdWatch();
  for (int fd : pair_) {
    if (fd >= 0) close(fd);
  }
}

void Scenario::OnRequest(const std::string& line,
                         std::function<void(std::string)> write,
                         std::function<void()> done) {
  ASSERT_TRUE(loop_.IsOnLoopThread());
  Tracer& tracer = *tracer_;

  // The fd watch, on the request's context.
  absl::StatusOr<FdWatch> watch =
      loop_.WatchFd(request_ctx_, pair_[0], FdEvents::kRead,
                    [this](ContextHandle ctx, FdEvents) {
                      char byte;
                      while (read(pair_[0], &byte, 1) == 1) {
                      }
                      EXPECT_EQ(ctx, request_ctx_);
                      fd_callback_tid_ = ThisTid();
                    });
  ASSERT_TRUE(watch.ok()) << watch.status();
  watch_ = *std::move(watch);

  // The stream, carrying the request's trace.
  StreamConfig config;
  config.trace = tracer.StartTrace(request_ctx_, "request");
  absl::StatusOr<StreamPair<std::string>> pair =
      MakeStream<std::string>(request_ctx_, std::move(config));
  ASSERT_TRUE(pair.ok()) << pair.status();
  StreamWriter<std::string> writer = std::move(pair->writer);
  const SpanParent parent = pair->reader.trace_parent();

  Sink<std::string> sink;
  sink.on_event = [this, parent, write](ContextHandle ctx, std::string&& e) {
    EXPECT_EQ(ctx, response_ctx_);
    sink_tid_ = ThisTid();
    SpanOptions o;
    o.parent = parent;
    SpanScope span = tracer_->StartSpan(ctx, "write event", o);
    events_.push_back(e);
    write(std::move(e));
    EXPECT_TRUE(span.Finish(ctx).ok());
  };
  sink.on_complete = [this, done](ContextHandle ctx, const absl::Status& s) {
    EXPECT_EQ(ctx, response_ctx_);
    ++completions_;
    completion_ = s;
    complete_.store(true);
    done();
  };
  absl::StatusOr<StreamSubscription> sub =
      std::move(pair->reader).Attach(response_ctx_, std::move(sink));
  ASSERT_TRUE(sub.ok()) << sub.status();
  subscription_ = *std::move(sub);

  // The offloaded work: a span started here, finished on the worker.
  SpanOptions span_options;
  span_options.make_current = false;
  SpanScope span =
      tracer.StartSpan(request_ctx_, "offloaded work", span_options);
  const ContextHandle request_ctx = request_ctx_;
  const int wake_fd = pair_[1];
  worker_ =
      std::thread([this, line, request_ctx, wake_fd, writer = std::move(writer),
                   span = std::move(span)]() mutable {
        worker_tid_ = ThisTid();
        EXPECT_TRUE(writer.Emit(std::string("echo ")).ok());
        EXPECT_TRUE(writer.Emit(std::string(line)).ok());
        EXPECT_TRUE(span.Finish().ok());  // From a plain thread: runs at home.
        const char byte = 1;
        EXPECT_EQ(::write(wake_fd, &byte, 1), 1);
        absl::StatusOr<DelayedTaskHandle> timer = PostDelayed(
            request_ctx, absl::Milliseconds(2),
            [this, writer = std::move(writer)](ContextHandle ctx) mutable {
              EXPECT_EQ(ctx, request_ctx_);
              timer_tid_ = ThisTid();
              EXPECT_TRUE(writer.Emit(std::string("bye\n")).ok());
              EXPECT_TRUE(writer.Complete().ok());
            });
        EXPECT_TRUE(timer.ok()) << timer.status();
      });
}

bool Scenario::Finished() const {
  return complete_.load() && exporter_->traces().size() == 1 &&
         exporter_->spans().size() == 5;  // The root and 4 spans.
}

void Scenario::Verify(int64_t host_tid) const {
  EXPECT_EQ(events_, (std::vector<std::string>{"echo ", "hello\n", "bye\n"}));
  EXPECT_EQ(completions_, 1);
  EXPECT_TRUE(completion_.ok()) << completion_;
  EXPECT_EQ(sink_tid_, host_tid);
  EXPECT_EQ(fd_callback_tid_, host_tid);
  EXPECT_EQ(timer_tid_, host_tid);

  const std::vector<SpanData> traces = exporter_->traces();
  ASSERT_EQ(traces.size(), 1u);
  EXPECT_EQ(traces[0].started.ctx, request_ctx_);
  EXPECT_EQ(traces[0].started.thread_id, host_tid);
  EXPECT_EQ(traces[0].finish_ran.ctx, request_ctx_);
  EXPECT_EQ(traces[0].finish_ran.thread_id, host_tid);
  EXPECT_FALSE(traces[0].finished_off_origin);

  int offloaded = 0;
  int writes = 0;
  for (const SpanData& span : exporter_->spans()) {
    EXPECT_EQ(span.trace_id, traces[0].trace_id) << span.name;
    EXPECT_EQ(span.finish_ran.thread_id, host_tid) << span.name;
    EXPECT_FALSE(span.finished_off_origin) << span.name;
    if (span.name == "offloaded work") {
      ++offloaded;
      // Finished on the worker, with no context; ran at home.
      EXPECT_TRUE(span.finish_called.ctx.is_null());
      EXPECT_EQ(span.finish_called.thread_id, worker_tid_);
      EXPECT_NE(worker_tid_, host_tid);
      EXPECT_EQ(span.finish_ran.ctx, request_ctx_);
    } else if (span.name == "write event") {
      ++writes;
      EXPECT_EQ(span.started.ctx, response_ctx_);
      EXPECT_EQ(span.finish_ran.ctx, response_ctx_);
    }
  }
  EXPECT_EQ(offloaded, 1);
  EXPECT_EQ(writes, 3);
  EXPECT_GE(tracer_->stats().finishes_posted, 1u);
}

}  // namespace embed_testing
}  // namespace ctxloop
