// Copyright 2026 The ctxloop Authors.
//
// Tests for fd watches: Loop::WatchFd and FdWatch (ctxloop/loop/fd_watch.h).

#include "ctxloop/loop/fd_watch.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "ctxloop/loop/context_handle.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/loop/testing/test_util.h"
#include "gtest/gtest.h"

namespace ctxloop {
namespace {

using testing_util::FdIsOpen;
using testing_util::Latch;

// A connected pair of non-blocking stream sockets, closed on destruction
// unless released.
class SocketPair {
 public:
  SocketPair() {
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
                   fds) != 0) {
      ADD_FAILURE() << "socketpair failed";
      return;
    }
    fd_[0] = fds[0];
    fd_[1] = fds[1];
  }
  ~SocketPair() {
    for (int fd : fd_) {
      if (fd >= 0) close(fd);
    }
  }
  SocketPair(const SocketPair&) = delete;
  SocketPair& operator=(const SocketPair&) = delete;

  int watched() const { return fd_[0]; }
  int peer() const { return fd_[1]; }
  // The caller (or a close_on_stop watch) now owns watched().
  int ReleaseWatched() { return std::exchange(fd_[0], -1); }

  void Send() const { ASSERT_EQ(write(fd_[1], "x", 1), 1); }
  // Reads what is pending on watched(); returns the byte count.
  static int Drain(int fd) {
    char buf[64];
    int total = 0;
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0) total += static_cast<int>(n);
    return total;
  }

 private:
  int fd_[2] = {-1, -1};
};

// A read callback that counts its calls in `*calls` and drains `fd`, so that
// the fd is ready again only after the next Send.
auto CountAndDrain(int* calls, int fd) {
  return [calls, fd](ContextHandle, FdEvents) {
    ++*calls;
    SocketPair::Drain(fd);
  };
}

// Options for a watch that owns its fd.
FdWatchOptions CloseOnStop() {
  FdWatchOptions options;
  options.close_on_stop = true;
  return options;
}

TEST(FdWatchTest, ReadReadinessCallsBackWithContext) {
  Loop loop;
  absl::StatusOr<ContextHandle> ctx = loop.NewContext("io");
  ASSERT_OK(ctx);
  SocketPair sp;
  const std::thread::id loop_thread = std::this_thread::get_id();
  int calls = 0;
  int bytes = 0;
  absl::StatusOr<FdWatch> watch =
      loop.WatchFd(*ctx, sp.watched(), FdEvents::kRead,
                   [&](ContextHandle here, FdEvents ready) {
                     ++calls;
                     EXPECT_EQ(here, *ctx);
                     EXPECT_EQ(ready, FdEvents::kRead);
                     EXPECT_EQ(std::this_thread::get_id(), loop_thread);
                     bytes += SocketPair::Drain(sp.watched());
                   });
  ASSERT_OK(watch);
  EXPECT_TRUE(watch->active());
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(calls, 0);  // Nothing to read yet.
  sp.Send();
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(bytes, 1);
  sp.Send();
  sp.Send();
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(bytes, 3);
}

TEST(FdWatchTest, WriteReadiness) {
  Loop loop;
  SocketPair sp;
  int calls = 0;
  std::optional<FdWatch> watch;
  absl::StatusOr<FdWatch> w =
      loop.WatchFd(loop.root(), sp.watched(), FdEvents::kReadWrite,
                   [&](ContextHandle, FdEvents ready) {
                     ++calls;
                     EXPECT_TRUE(HasEvent(ready, FdEvents::kWrite));
                     EXPECT_FALSE(HasEvent(ready, FdEvents::kRead));
                     watch->Stop();  // Writable forever otherwise.
                   });
  ASSERT_OK(w);
  watch.emplace(*std::move(w));
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE(watch->active());
}

TEST(FdWatchTest, StopStopsCallbacks) {
  Loop loop;
  SocketPair sp;
  int calls = 0;
  absl::StatusOr<FdWatch> watch =
      loop.WatchFd(loop.root(), sp.watched(), FdEvents::kRead,
                   [&](ContextHandle, FdEvents) { ++calls; });
  ASSERT_OK(watch);
  watch->Stop();
  EXPECT_FALSE(watch->active());
  watch->Stop();  // Idempotent.
  sp.Send();
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(calls, 0);
  EXPECT_TRUE(FdIsOpen(sp.watched()));  // Not owned: not closed.
}

TEST(FdWatchTest, DestroyingTheWatchUnregisters) {
  Loop loop;
  SocketPair sp;
  int calls = 0;
  {
    absl::StatusOr<FdWatch> watch =
        loop.WatchFd(loop.root(), sp.watched(), FdEvents::kRead,
                     [&](ContextHandle, FdEvents) { ++calls; });
    ASSERT_OK(watch);
  }
  sp.Send();
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(calls, 0);
  // The fd is free to watch again.
  absl::StatusOr<FdWatch> again =
      loop.WatchFd(loop.root(), sp.watched(), FdEvents::kRead,
                   CountAndDrain(&calls, sp.watched()));
  ASSERT_OK(again);
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(calls, 1);
}

TEST(FdWatchTest, MoveTransfersOwnership) {
  Loop loop;
  SocketPair sp;
  int calls = 0;
  absl::StatusOr<FdWatch> watch =
      loop.WatchFd(loop.root(), sp.watched(), FdEvents::kRead,
                   CountAndDrain(&calls, sp.watched()));
  ASSERT_OK(watch);
  FdWatch moved(*std::move(watch));
  EXPECT_FALSE(watch->active());  // NOLINT: moved-from is inert.
  watch->Stop();                  // Does not stop `moved`.
  EXPECT_TRUE(moved.active());
  sp.Send();
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(calls, 1);
  FdWatch assigned;
  EXPECT_FALSE(assigned.active());
  assigned = std::move(moved);
  EXPECT_TRUE(assigned.active());
  assigned = FdWatch();  // Stops the watch it held.
  sp.Send();
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(calls, 1);
}

TEST(FdWatchTest, CallbackStopsItsOwnWatch) {
  Loop loop;
  SocketPair sp;
  int calls = 0;
  std::optional<FdWatch> watch;
  absl::StatusOr<FdWatch> w =
      loop.WatchFd(loop.root(), sp.watched(), FdEvents::kRead,
                   [&, keep = std::make_unique<std::string>("alive")](
                       ContextHandle, FdEvents) {
                     ++calls;
                     watch->Stop();
                     EXPECT_FALSE(watch->active());
                     // The callback object is still alive while it runs.
                     EXPECT_EQ(*keep, "alive");
                   });
  ASSERT_OK(w);
  watch.emplace(*std::move(w));
  sp.Send();
  ASSERT_OK(loop.RunUntilIdle());
  sp.Send();
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(calls, 1);
}

TEST(FdWatchTest, CallbackDestroysItsOwnWatchObject) {
  Loop loop;
  SocketPair sp;
  int calls = 0;
  auto watch = std::make_unique<FdWatch>();
  absl::StatusOr<FdWatch> w =
      loop.WatchFd(loop.root(), sp.watched(), FdEvents::kRead,
                   [&, keep = std::make_unique<std::string>("alive")](
                       ContextHandle, FdEvents) {
                     ++calls;
                     watch.reset();
                     EXPECT_EQ(*keep, "alive");
                   });
  ASSERT_OK(w);
  *watch = *std::move(w);
  sp.Send();
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(watch, nullptr);
  sp.Send();
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(calls, 1);
}

TEST(FdWatchTest, CloseOnStopClosesTheFd) {
  Loop loop;
  SocketPair sp;
  const int fd = sp.ReleaseWatched();
  absl::StatusOr<FdWatch> watch = loop.WatchFd(
      loop.root(), fd, FdEvents::kRead, [](ContextHandle, FdEvents) {},
      CloseOnStop());
  ASSERT_OK(watch);
  EXPECT_TRUE(FdIsOpen(fd));
  watch->Stop();
  EXPECT_FALSE(FdIsOpen(fd));
}

TEST(FdWatchTest, CloseOnStopClosesOnDestructionAndFromCallback) {
  Loop loop;
  SocketPair sp;
  const int fd = sp.ReleaseWatched();
  std::optional<FdWatch> watch;
  int calls = 0;
  absl::StatusOr<FdWatch> w = loop.WatchFd(
      loop.root(), fd, FdEvents::kRead,
      [&](ContextHandle, FdEvents) {
        ++calls;
        watch.reset();
      },
      CloseOnStop());
  ASSERT_OK(w);
  watch.emplace(*std::move(w));
  sp.Send();
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE(FdIsOpen(fd));
}

TEST(FdWatchTest, ClosingTheFdWhileWatchedThenStoppingIsFine) {
  Loop loop;
  SocketPair sp;
  int calls = 0;
  absl::StatusOr<FdWatch> watch =
      loop.WatchFd(loop.root(), sp.watched(), FdEvents::kRead,
                   [&](ContextHandle, FdEvents) { ++calls; });
  ASSERT_OK(watch);
  close(sp.ReleaseWatched());
  ASSERT_OK(loop.RunUntilIdle());
  watch->Stop();
  EXPECT_FALSE(watch->active());
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(calls, 0);
}

// fd_watch.h: WatchFd on an fd number that still has a live watch (the fd
// was closed and its number reused) is kAlreadyExists; after stopping the old
// watch, the new one works.
TEST(FdWatchTest, RewatchingAReusedFdNumber) {
  Loop loop;
  auto first = std::make_unique<SocketPair>();
  const int number = first->watched();
  int old_calls = 0;
  absl::StatusOr<FdWatch> old_watch =
      loop.WatchFd(loop.root(), number, FdEvents::kRead,
                   [&](ContextHandle, FdEvents) { ++old_calls; });
  ASSERT_OK(old_watch);
  // Close the watched fd (not the watch), then reuse its number.
  close(first->ReleaseWatched());
  SocketPair second;
  ASSERT_EQ(second.watched(), number) << "the lowest free fd is reused";
  int new_calls = 0;
  auto on_ready = CountAndDrain(&new_calls, second.watched());
  absl::StatusOr<FdWatch> new_watch =
      loop.WatchFd(loop.root(), number, FdEvents::kRead, on_ready);
  EXPECT_EQ(new_watch.status().code(), absl::StatusCode::kAlreadyExists)
      << new_watch.status();
  EXPECT_TRUE(
      absl::StrContains(new_watch.status().message(), std::to_string(number)))
      << new_watch.status();
  old_watch->Stop();
  new_watch = loop.WatchFd(loop.root(), number, FdEvents::kRead, on_ready);
  ASSERT_OK(new_watch);
  second.Send();
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(new_calls, 1);
  EXPECT_EQ(old_calls, 0);
}

TEST(FdWatchTest, ThrowingCallbackIsReportedAndLoopContinues) {
  std::vector<std::pair<ContextHandle, absl::Status>> reported;
  Loop::Options options;
  options.error_handler = [&](ContextHandle ctx, const absl::Status& e) {
    reported.emplace_back(ctx, e);
  };
  Loop loop(std::move(options));
  absl::StatusOr<ContextHandle> ctx = loop.NewContext("io");
  ASSERT_OK(ctx);
  SocketPair sp;
  int calls = 0;
  absl::StatusOr<FdWatch> watch = loop.WatchFd(
      *ctx, sp.watched(), FdEvents::kRead, [&](ContextHandle, FdEvents) {
        SocketPair::Drain(sp.watched());
        if (++calls == 1) throw std::runtime_error("fd-boom");
      });
  ASSERT_OK(watch);
  bool task_ran = false;
  sp.Send();
  ASSERT_OK(Post(loop.root(), [&](ContextHandle) { task_ran = true; }));
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_TRUE(task_ran);
  ASSERT_EQ(reported.size(), 1u);
  EXPECT_EQ(reported[0].first, *ctx);
  EXPECT_TRUE(absl::StrContains(reported[0].second.message(), "fd-boom"))
      << reported[0].second;
  // Still watching.
  EXPECT_TRUE(watch->active());
  sp.Send();
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(reported.size(), 1u);
}

TEST(FdWatchTest, InvalidArguments) {
  Loop loop;
  SocketPair sp;
  auto cb = [](ContextHandle, FdEvents) {};
  EXPECT_EQ(loop.WatchFd(loop.root(), -1, FdEvents::kRead, cb).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(loop.WatchFd(loop.root(), sp.watched(), FdEvents::kNone, cb)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(loop.WatchFd(loop.root(), sp.watched(), FdEvents::kRead, nullptr)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(loop.WatchFd(ContextHandle(), sp.watched(), FdEvents::kRead, cb)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  // None of these left a registration behind.
  ASSERT_OK(loop.WatchFd(loop.root(), sp.watched(), FdEvents::kRead, cb));
}

TEST(FdWatchTest, WrongThreadOrLoopOrContext) {
  Loop loop;
  Loop other;
  SocketPair sp;
  auto cb = [](ContextHandle, FdEvents) {};
  EXPECT_EQ(loop.WatchFd(other.root(), sp.watched(), FdEvents::kRead, cb)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  std::thread([&] {
    EXPECT_EQ(loop.WatchFd(loop.root(), sp.watched(), FdEvents::kRead, cb)
                  .status()
                  .code(),
              absl::StatusCode::kFailedPrecondition);
  }).join();
  absl::StatusOr<ContextHandle> ctx = loop.NewContext();
  ASSERT_OK(ctx);
  ASSERT_OK(loop.DestroyContext(*ctx));
  EXPECT_EQ(
      loop.WatchFd(*ctx, sp.watched(), FdEvents::kRead, cb).status().code(),
      absl::StatusCode::kFailedPrecondition);
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(
      loop.WatchFd(*ctx, sp.watched(), FdEvents::kRead, cb).status().code(),
      absl::StatusCode::kFailedPrecondition);
}

TEST(FdWatchTest, WatchOutlivingItsLoopIsInert) {
  SocketPair sp;
  const int owned_fd = sp.ReleaseWatched();
  FdWatch watch;
  int calls = 0;
  {
    Loop loop;
    absl::StatusOr<FdWatch> w = loop.WatchFd(
        loop.root(), owned_fd, FdEvents::kRead,
        [&](ContextHandle, FdEvents) { ++calls; }, CloseOnStop());
    ASSERT_OK(w);
    watch = *std::move(w);
    EXPECT_TRUE(watch.active());
  }
  EXPECT_FALSE(watch.active());
  EXPECT_FALSE(FdIsOpen(owned_fd));  // Closed by the loop's shutdown.
  // A new loop (possibly in the same registry slot) is not affected.
  Loop next;
  SocketPair sp2;
  absl::StatusOr<FdWatch> w2 =
      next.WatchFd(next.root(), sp2.watched(), FdEvents::kRead,
                   CountAndDrain(&calls, sp2.watched()));
  ASSERT_OK(w2);
  watch.Stop();
  watch.Stop();
  EXPECT_TRUE(w2->active());
  sp2.Send();
  ASSERT_OK(next.RunUntilIdle());
  EXPECT_EQ(calls, 1);
  // ~FdWatch of `watch` is safe too.
}

TEST(FdWatchTest, DestroyContextStopsItsWatches) {
  Loop loop;
  absl::StatusOr<ContextHandle> doomed = loop.NewContext("doomed");
  absl::StatusOr<ContextHandle> kept = loop.NewContext("kept");
  ASSERT_OK(doomed);
  ASSERT_OK(kept);
  SocketPair a;
  SocketPair b;
  const int owned = a.ReleaseWatched();
  int doomed_calls = 0;
  int kept_calls = 0;
  absl::StatusOr<FdWatch> wa = loop.WatchFd(
      *doomed, owned, FdEvents::kRead,
      [&](ContextHandle, FdEvents) { ++doomed_calls; }, CloseOnStop());
  absl::StatusOr<FdWatch> wb =
      loop.WatchFd(*kept, b.watched(), FdEvents::kRead,
                   CountAndDrain(&kept_calls, b.watched()));
  ASSERT_OK(wa);
  ASSERT_OK(wb);
  a.Send();
  b.Send();
  ASSERT_OK(loop.DestroyContext(*doomed));
  EXPECT_FALSE(wa->active());
  EXPECT_TRUE(wb->active());
  EXPECT_FALSE(FdIsOpen(owned));
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(doomed_calls, 0);
  EXPECT_EQ(kept_calls, 1);
  wa->Stop();  // Fine after the context is gone.
}

// fd_watch.h: a watch destroyed on another thread posts its unregistration.
TEST(FdWatchTest, StopFromAnotherThread) {
  Loop loop;
  SocketPair sp;
  const int owned = sp.ReleaseWatched();
  int calls = 0;
  absl::StatusOr<FdWatch> watch = loop.WatchFd(
      loop.root(), owned, FdEvents::kRead,
      [&](ContextHandle, FdEvents) { ++calls; }, CloseOnStop());
  ASSERT_OK(watch);
  std::thread([w = *std::move(watch)]() mutable { w.Stop(); }).join();
  sp.Send();
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(calls, 0);
  EXPECT_FALSE(FdIsOpen(owned));
  EXPECT_EQ(loop.stats().tasks_run, 0u);
}

// fd_watch.h: once a foreign FdWatch::Stop() has returned, the callback is
// not called, even if the fd became ready before the loop took the
// unregistration (the owner may free what the callback uses right after).
TEST(FdWatchTest, NoCallbackAfterForeignStopReturned) {
  Loop loop;
  SocketPair sp;
  int calls = 0;
  absl::StatusOr<FdWatch> watch =
      loop.WatchFd(loop.root(), sp.watched(), FdEvents::kRead,
                   CountAndDrain(&calls, sp.watched()));
  ASSERT_OK(watch);
  Latch in_task;
  Latch stopped;
  ASSERT_OK(Post(loop.root(), [&](ContextHandle) {
    in_task.Open();
    stopped.Wait();  // The loop is busy meanwhile.
  }));
  std::thread stopper([&, w = *std::move(watch)]() mutable {
    in_task.Wait();
    sp.Send();  // Ready before the loop polls again...
    w.Stop();   // ...but stopped before it could see it.
    stopped.Open();
  });
  ASSERT_OK(loop.RunUntilIdle());
  stopper.join();
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(calls, 0);
}

// A callback that destroys its own context: its watch (the one running) and
// the context's other watches stop; nothing is freed under the callback.
TEST(FdWatchTest, CallbackDestroysItsContext) {
  Loop loop;
  absl::StatusOr<ContextHandle> ctx = loop.NewContext("c");
  ASSERT_OK(ctx);
  SocketPair a;
  SocketPair b;
  int calls = 0;
  auto make_callback = [&] {
    return [&calls, keep = std::make_unique<int>(7)](ContextHandle here,
                                                     FdEvents) {
      ++calls;
      EXPECT_TRUE(DestroyContext(here).ok());
      EXPECT_EQ(*keep, 7);  // Still alive while it runs.
    };
  };
  absl::StatusOr<FdWatch> wa =
      loop.WatchFd(*ctx, a.watched(), FdEvents::kRead, make_callback());
  absl::StatusOr<FdWatch> wb =
      loop.WatchFd(*ctx, b.watched(), FdEvents::kRead, make_callback());
  ASSERT_OK(wa);
  ASSERT_OK(wb);
  a.Send();
  b.Send();  // Both ready in the same poll.
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE(wa->active());
  EXPECT_FALSE(wb->active());
}

// A callback that stops another watch that is ready in the same poll: the
// other callback is not called.
TEST(FdWatchTest, CallbackStopsAnotherReadyWatch) {
  Loop loop;
  SocketPair a;
  SocketPair b;
  std::optional<FdWatch> wa;
  std::optional<FdWatch> wb;
  int calls_a = 0;
  int calls_b = 0;
  absl::StatusOr<FdWatch> w1 = loop.WatchFd(
      loop.root(), a.watched(), FdEvents::kRead, [&](ContextHandle, FdEvents) {
        ++calls_a;
        SocketPair::Drain(a.watched());
        wb.reset();
      });
  absl::StatusOr<FdWatch> w2 = loop.WatchFd(
      loop.root(), b.watched(), FdEvents::kRead, [&](ContextHandle, FdEvents) {
        ++calls_b;
        SocketPair::Drain(b.watched());
        wa.reset();
      });
  ASSERT_OK(w1);
  ASSERT_OK(w2);
  wa.emplace(*std::move(w1));
  wb.emplace(*std::move(w2));
  a.Send();
  b.Send();
  ASSERT_OK(loop.RunUntilIdle());
  EXPECT_EQ(calls_a + calls_b, 1);
}

TEST(FdWatchTest, UnpollableFdIsAnError) {
  Loop loop;
  char path[] = "/tmp/ctxloop_fd_watch_testXXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  unlink(path);
  absl::StatusOr<FdWatch> w = loop.WatchFd(loop.root(), fd, FdEvents::kRead,
                                           [](ContextHandle, FdEvents) {});
  EXPECT_FALSE(w.ok());
  // Nothing left registered for that number.
  SocketPair sp;
  ASSERT_OK(loop.RunUntilIdle());
  close(fd);
}

}  // namespace
}  // namespace ctxloop
