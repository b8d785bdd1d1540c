// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/benchmarks/loop_benchmark.cc
// -----------------------------------------------------------------------------
//
// What ctxloop's loop costs, next to the same work done directly with the
// libraries an application would otherwise use: raw libevent (which ctxloop
// is built on), Boost.Asio and libuv, plus the floor (a plain vector of
// callables). All contenders run in one binary and one run, under the same
// malloc settings and CPU pinning, so the ratios `run.sh` prints are
// meaningful even where absolute numbers move between runs.
//
// Groups (the label of each benchmark; `run.sh` compares within a group):
//
//   post_same_thread       10,000 tasks posted on the loop thread, then the
//                          loop runs until idle. Per item: one post + one run.
//   post_cross_thread      100,000 tasks posted by a producer thread pinned to
//                          the other CPU to a loop running on the benchmark
//                          thread; timed until the last task has run.
//   zero_delay_timer       10,000 timers due now, then the loop runs them.
//   timer_schedule_cancel  10,000 timers 1 s out, then each is cancelled.
//   context_key_set_reset  one context-local Set + Reset (vs thread_local).
//   context_key_get        one context-local Get (vs thread_local).
//   post_same_thread_capture3  post_same_thread with tasks that capture three
//                          pointers (24 bytes: more than absl::AnyInvocable
//                          stores inline), against the vector floor with the
//                          same capture. The target is 0 allocations
//                          per task here; allocs_per_item shows where it is.
//
// Cross-thread benchmarks also report `wakeups_per_1k`: how often the loop
// had to be woken per 1000 tasks (a diagnostic: it shows how large the batches
// were, not a cost by itself).
//
// Every task, in every contender, does the same work: increment a counter
// reached through one captured pointer (so the callable fits inline in an
// `absl::AnyInvocable`, as small ctxloop tasks do). Each benchmark checks
// afterwards that every task ran exactly once (or, for cancellation, never),
// and reports an error instead of a number otherwise.
//
// Fairness notes are next to each peer. In general each peer is written the
// way a competent user of that library would write the same feature, not
// handicapped: peers' post functions are out of line (ctxloop's `Post` is a
// call into another translation unit too), queues keep their capacity across
// batches (as ctxloop's do), and libevent bases are created with
// EVENT_BASE_FLAG_NOLOCK, as ctxloop's is, except where the peer needs
// libevent's own locking (the event_active cross-thread peer).

#include <event2/event.h>
#include <event2/thread.h>
#include <sys/eventfd.h>
#include <sys/time.h>
#include <unistd.h>
#include <uv.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/base/attributes.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "benchmark/benchmark.h"
#include "ctxloop/benchmarks/bench_util.h"
#include "ctxloop/loop/context_handle.h"
#include "ctxloop/loop/context_key.h"
#include "ctxloop/loop/loop.h"

namespace {

using ctxloop_bench::AllocWindow;
using ctxloop_bench::CheckAllocsPerItem;
using ctxloop_bench::CheckCount;
using ctxloop_bench::ReportItems;

// Tasks per iteration.
constexpr int kSameThreadBatch = 10000;
constexpr int kCrossThreadBatch = 100000;
constexpr int kTimerBatch = 10000;

// The peers' task type: ctxloop's `Task` without the context argument.
using Fn = absl::AnyInvocable<void() &&>;

// --- libevent helpers
// ---------------------------------------------------------

struct EventBaseDeleter {
  void operator()(event_base* base) const { event_base_free(base); }
};
using EventBasePtr = std::unique_ptr<event_base, EventBaseDeleter>;

// A base configured as ctxloop configures its own: no libevent locks (every
// call happens on the loop thread). Same backend (epoll) either way.
EventBasePtr NewNoLockBase() {
  event_config* cfg = event_config_new();
  event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
  event_base* base = event_base_new_with_config(cfg);
  event_config_free(cfg);
  return EventBasePtr(base);
}

void IncrementCb(evutil_socket_t, short, void* arg) {
  ++*static_cast<int64_t*>(arg);
}

// --- Cross-thread harness
// -----------------------------------------------------

// Shared by all cross-thread contenders: the loop runs on the benchmark
// thread (pinned to BenchCpus().loop_cpu by main), a PinnedWorker on the other
// CPU posts `kCrossThreadBatch` tasks, the last task to run stops the loop.
// The time per iteration is from handing the job to the producer until the
// loop has run the last task (and the producer has returned).
struct CrossThreadSetup {
  ctxloop_bench::PinnedWorker producer{ctxloop_bench::BenchCpus().producer_cpu};
  // Written by the producer, read after Wait().
  int64_t post_errors = 0;
};

// Diagnostic counter for cross-thread benchmarks: how often the producer had
// to wake the loop (eventfd writes, event_active calls; for libuv, async
// callbacks) per 1000 tasks. Fewer wake-ups mean larger batches; a design
// whose producer is slow relative to its loop wakes it more often, and each
// wake-up costs syscalls on both sides.
void ReportWakeups(benchmark::State& state, int64_t wakeups) {
  const double items =
      static_cast<double>(state.iterations()) * kCrossThreadBatch;
  if (items > 0) {
    state.counters["wakeups_per_1k"] =
        static_cast<double>(wakeups) * 1000.0 / items;
  }
}

// ============================================================================
// post_same_thread
// ============================================================================

// ctxloop: `Post` on the loop thread appends to the loop's ready queue and
// schedules one libevent `event_active` per batch; `RunUntilIdle` runs the
// batch (and checks once more that nothing else became ready).
void BM_Ctxloop_PostRun_SameThread(benchmark::State& state) {
  state.SetLabel("post_same_thread");
  ctxloop::Loop loop;
  const ctxloop::ContextHandle ctx = *loop.NewContext("bench");
  int64_t ran = 0;
  int64_t errors = 0;
  AllocWindow allocs;
  for (auto _ : state) {
    for (int i = 0; i < kSameThreadBatch; ++i) {
      if (!ctxloop::Post(ctx, [&ran](ctxloop::ContextHandle) { ++ran; }).ok()) {
        ++errors;
      }
    }
    if (!loop.RunUntilIdle().ok()) ++errors;
  }
  CheckCount(state, "failed Post/RunUntilIdle calls", errors, 0) &&
      CheckCount(state, "tasks run", ran,
                 int64_t{kSameThreadBatch} * state.iterations());
  ReportItems(state, kSameThreadBatch, allocs);
}

// The floor: append callables to a vector, then call and destroy each. What
// any task queue must at least do; no event loop involved.
void BM_VectorAnyInvocable(benchmark::State& state) {
  state.SetLabel("post_same_thread");
  std::vector<Fn> queue;
  queue.reserve(kSameThreadBatch);
  int64_t ran = 0;
  AllocWindow allocs;
  for (auto _ : state) {
    for (int i = 0; i < kSameThreadBatch; ++i) {
      queue.emplace_back([&ran] { ++ran; });
    }
    for (Fn& fn : queue) std::move(fn)();
    queue.clear();
    benchmark::ClobberMemory();
  }
  // A one-pointer capture fits inline and the vector keeps its capacity:
  // this benchmark must count 0 allocations (a check of the counting).
  CheckCount(state, "tasks run", ran,
             int64_t{kSameThreadBatch} * state.iterations()) &&
      CheckAllocsPerItem(state, allocs, kSameThreadBatch, 0.0, 0.0);
  ReportItems(state, kSameThreadBatch, allocs);
}

// Three pointers captured: the task no longer fits absl::AnyInvocable's
// inline storage (two pointers' worth), so today each one is allocated.
void BM_Ctxloop_PostRun_SameThread_Capture3(benchmark::State& state) {
  state.SetLabel("post_same_thread_capture3");
  ctxloop::Loop loop;
  const ctxloop::ContextHandle ctx = *loop.NewContext("bench");
  int64_t a = 0, b = 0, c = 0;
  int64_t errors = 0;
  AllocWindow allocs;
  for (auto _ : state) {
    for (int i = 0; i < kSameThreadBatch; ++i) {
      absl::Status s = ctxloop::Post(
          ctx, [pa = &a, pb = &b, pc = &c](ctxloop::ContextHandle) {
            ++*pa;
            ++*pb;
            ++*pc;
          });
      if (!s.ok()) ++errors;
    }
    if (!loop.RunUntilIdle().ok()) ++errors;
  }
  CheckCount(state, "failed Post/RunUntilIdle calls", errors, 0) &&
      CheckCount(state, "tasks run", a + b + c,
                 3 * int64_t{kSameThreadBatch} * state.iterations());
  ReportItems(state, kSameThreadBatch, allocs);
}

// The floor with the same three-pointer capture.
void BM_VectorAnyInvocable_Capture3(benchmark::State& state) {
  state.SetLabel("post_same_thread_capture3");
  std::vector<Fn> queue;
  queue.reserve(kSameThreadBatch);
  int64_t a = 0, b = 0, c = 0;
  AllocWindow allocs;
  for (auto _ : state) {
    for (int i = 0; i < kSameThreadBatch; ++i) {
      queue.emplace_back([pa = &a, pb = &b, pc = &c] {
        ++*pa;
        ++*pb;
        ++*pc;
      });
    }
    for (Fn& fn : queue) std::move(fn)();
    queue.clear();
    benchmark::ClobberMemory();
  }
  // One operator new per task (AnyInvocable's heap storage): a check that
  // C++ allocations are counted.
  CheckCount(state, "tasks run", a + b + c,
             3 * int64_t{kSameThreadBatch} * state.iterations()) &&
      CheckAllocsPerItem(state, allocs, kSameThreadBatch, 1.0, 1.0);
  ReportItems(state, kSameThreadBatch, allocs);
}

// libevent's own "run this callback soon": event_base_once with EV_TIMEOUT and
// no timeout activates a heap-allocated one-shot event immediately (no timer
// heap). A C callback + void* instead of a callable, and one malloc/free per
// task: what a libevent user gets without writing a queue.
void BM_RawLibevent_EventBaseOnce(benchmark::State& state) {
  state.SetLabel("post_same_thread");
  EventBasePtr base = NewNoLockBase();
  int64_t ran = 0;
  int64_t errors = 0;
  AllocWindow allocs;
  for (auto _ : state) {
    for (int i = 0; i < kSameThreadBatch; ++i) {
      if (event_base_once(base.get(), -1, EV_TIMEOUT, &IncrementCb, &ran,
                          nullptr) != 0) {
        ++errors;
      }
    }
    if (event_base_loop(base.get(), EVLOOP_NONBLOCK) < 0) ++errors;
  }
  // event_base_once allocates its one-shot event (a check of the counting:
  // C allocations inside a shared library are counted too).
  CheckCount(state, "failed libevent calls", errors, 0) &&
      CheckCount(state, "tasks run", ran,
                 int64_t{kSameThreadBatch} * state.iterations()) &&
      CheckAllocsPerItem(state, allocs, kSameThreadBatch, 1.0, 2.0);
  ReportItems(state, kSameThreadBatch, allocs);
}

// The best-case libevent design, and exactly ctxloop's same-thread design
// minus handles, contexts and error reporting: a vector of callables and one
// event_active per batch. The difference to ctxloop is ctxloop's overhead.
class LibeventOwnQueue {
 public:
  explicit LibeventOwnQueue(event_base* base)
      : event_(event_new(base, -1, 0, &LibeventOwnQueue::OnBatch, this)) {}
  ~LibeventOwnQueue() { event_free(event_); }
  LibeventOwnQueue(const LibeventOwnQueue&) = delete;
  LibeventOwnQueue& operator=(const LibeventOwnQueue&) = delete;

  bool ok() const { return event_ != nullptr; }

  // Out of line, like a library's Post.
  ABSL_ATTRIBUTE_NOINLINE void Post(Fn fn) {
    queue_.push_back(std::move(fn));
    if (!scheduled_) {
      scheduled_ = true;
      event_active(event_, EV_READ, 0);
    }
  }

 private:
  static void OnBatch(evutil_socket_t, short, void* arg) {
    auto* self = static_cast<LibeventOwnQueue*>(arg);
    self->scheduled_ = false;
    self->running_.swap(self->queue_);  // Both keep their capacity.
    for (Fn& fn : self->running_) std::move(fn)();
    self->running_.clear();
  }

  event* event_;
  bool scheduled_ = false;
  std::vector<Fn> queue_;
  std::vector<Fn> running_;
};

void BM_RawLibevent_OwnQueueEventActive(benchmark::State& state) {
  state.SetLabel("post_same_thread");
  EventBasePtr base = NewNoLockBase();
  LibeventOwnQueue queue(base.get());
  if (!queue.ok()) {
    state.SkipWithError("event_new failed");
    return;
  }
  int64_t ran = 0;
  int64_t errors = 0;
  AllocWindow allocs;
  for (auto _ : state) {
    for (int i = 0; i < kSameThreadBatch; ++i) {
      queue.Post([&ran] { ++ran; });
    }
    if (event_base_loop(base.get(), EVLOOP_NONBLOCK) < 0) ++errors;
  }
  CheckCount(state, "failed libevent calls", errors, 0) &&
      CheckCount(state, "tasks run", ran,
                 int64_t{kSameThreadBatch} * state.iterations());
  ReportItems(state, kSameThreadBatch, allocs);
}

// Boost.Asio: post() from the thread that runs the io_context, outside run()
// (like ctxloop's benchmark, which posts outside RunUntilIdle), then run() and
// restart(). Concurrency hint 1: the single-threaded configuration. Asio takes
// its (uncontended) mutex per post from outside run().
void BM_Asio_Post(benchmark::State& state) {
  state.SetLabel("post_same_thread");
  boost::asio::io_context io(1);
  int64_t ran = 0;
  AllocWindow allocs;
  for (auto _ : state) {
    for (int i = 0; i < kSameThreadBatch; ++i) {
      boost::asio::post(io, [&ran] { ++ran; });
    }
    io.run();
    io.restart();
  }
  CheckCount(state, "tasks run", ran,
             int64_t{kSameThreadBatch} * state.iterations());
  ReportItems(state, kSameThreadBatch, allocs);
}

// Boost.Asio's best case: posts made from a handler running inside run() go
// to a thread-private queue, without the mutex. (ctxloop has a single
// same-thread path, inside or outside Run.)
void BM_Asio_PostInsideRun(benchmark::State& state) {
  state.SetLabel("post_same_thread");
  boost::asio::io_context io(1);
  int64_t ran = 0;
  AllocWindow allocs;
  for (auto _ : state) {
    boost::asio::post(io, [&io, &ran] {
      for (int i = 0; i < kSameThreadBatch; ++i) {
        boost::asio::post(io, [&ran] { ++ran; });
      }
    });
    io.run();
    io.restart();
  }
  CheckCount(state, "tasks run", ran,
             int64_t{kSameThreadBatch} * state.iterations());
  ReportItems(state, kSameThreadBatch, allocs);
}

// libuv has no "post a callback". The natural same-thread design is the one
// ctxloop and LibeventOwnQueue use: an own queue plus one wake-up per batch.
// For a loop-thread-only queue the wake-up is an idle handle (started per
// batch; an active idle handle makes uv_run poll without blocking and call
// it), which costs no syscall. uv_async_send would also work on the loop
// thread but writes an eventfd per batch; it is the cross-thread design below.
class LibuvOwnQueue {
 public:
  explicit LibuvOwnQueue(uv_loop_t* loop) : loop_(loop) {
    uv_idle_init(loop, &idle_);
    idle_.data = this;
  }
  ~LibuvOwnQueue() {
    // The handle must stay valid until libuv has finished closing it.
    uv_close(reinterpret_cast<uv_handle_t*>(&idle_), nullptr);
    uv_run(loop_, UV_RUN_NOWAIT);
  }
  LibuvOwnQueue(const LibuvOwnQueue&) = delete;
  LibuvOwnQueue& operator=(const LibuvOwnQueue&) = delete;

  ABSL_ATTRIBUTE_NOINLINE void Post(Fn fn) {
    queue_.push_back(std::move(fn));
    if (!scheduled_) {
      scheduled_ = true;
      uv_idle_start(&idle_, &LibuvOwnQueue::OnIdle);
    }
  }

 private:
  static void OnIdle(uv_idle_t* idle) {
    auto* self = static_cast<LibuvOwnQueue*>(idle->data);
    uv_idle_stop(idle);
    self->scheduled_ = false;
    self->running_.swap(self->queue_);
    for (Fn& fn : self->running_) std::move(fn)();
    self->running_.clear();
  }

  uv_loop_t* loop_;
  uv_idle_t idle_;
  bool scheduled_ = false;
  std::vector<Fn> queue_;
  std::vector<Fn> running_;
};

// A uv_loop_t that is closed properly (its handles' close callbacks run).
class UvLoop {
 public:
  UvLoop() { ok_ = uv_loop_init(&loop_) == 0; }
  ~UvLoop() {
    if (!ok_) return;
    uv_run(&loop_, UV_RUN_DEFAULT);  // Finish closing handles.
    uv_loop_close(&loop_);
  }
  UvLoop(const UvLoop&) = delete;
  UvLoop& operator=(const UvLoop&) = delete;
  bool ok() const { return ok_; }
  uv_loop_t* get() { return &loop_; }

 private:
  uv_loop_t loop_;
  bool ok_ = false;
};

void BM_Libuv_OwnQueueIdle(benchmark::State& state) {
  state.SetLabel("post_same_thread");
  UvLoop loop;
  if (!loop.ok()) {
    state.SkipWithError("uv_loop_init failed");
    return;
  }
  int64_t ran = 0;
  AllocWindow allocs;
  allocs.Pause();  // Counts only the timing loop below.
  {
    LibuvOwnQueue queue(loop.get());
    allocs.Resume();
    for (auto _ : state) {
      for (int i = 0; i < kSameThreadBatch; ++i) {
        queue.Post([&ran] { ++ran; });
      }
      uv_run(loop.get(), UV_RUN_NOWAIT);
    }
    allocs.Pause();
  }
  CheckCount(state, "tasks run", ran,
             int64_t{kSameThreadBatch} * state.iterations());
  ReportItems(state, kSameThreadBatch, allocs);
}

// ============================================================================
// post_cross_thread
// ============================================================================

// ctxloop: the producer calls `Post` (registry pin, lock-free push onto the
// foreign ingress, eventfd write only if the loop had armed it); the loop runs
// in `Run()` until the last task calls `Stop()`.
// The body of W2 with the post made by `post` (Post, or PostNeverFull, which
// skips the bound on pending cross-thread work).
template <typename PostFn>
void CtxloopPostCrossThread(benchmark::State& state, PostFn post) {
  state.SetLabel("post_cross_thread");
  CrossThreadSetup setup;
  ctxloop::Loop loop;
  const ctxloop::ContextHandle ctx = *loop.NewContext("bench");
  struct Sink {
    int64_t ran = 0;
    ctxloop::Loop* loop;
  } sink{0, &loop};
  int64_t run_errors = 0;
  const uint64_t wakes_before = loop.stats().wake_writes;
  AllocWindow allocs;
  for (auto _ : state) {
    sink.ran = 0;
    setup.producer.Start([&] {
      for (int i = 0; i < kCrossThreadBatch; ++i) {
        absl::Status s = post(ctx, [&sink](ctxloop::ContextHandle) {
          if (++sink.ran == kCrossThreadBatch) sink.loop->Stop();
        });
        if (!s.ok()) {
          ++setup.post_errors;
          loop.Stop();  // Thread-safe; the count check reports it.
          return;
        }
      }
    });
    if (!loop.Run().ok()) ++run_errors;
    setup.producer.Wait();
    if (sink.ran != kCrossThreadBatch) break;
  }
  CheckCount(state, "failed Post calls", setup.post_errors, 0) &&
      CheckCount(state, "failed Run calls", run_errors, 0) &&
      CheckCount(state, "tasks run in the last iteration", sink.ran,
                 kCrossThreadBatch);
  ReportItems(state, kCrossThreadBatch, allocs);
  ReportWakeups(state,
                static_cast<int64_t>(loop.stats().wake_writes - wakes_before));
}

void BM_Ctxloop_PostCrossThread(benchmark::State& state) {
  CtxloopPostCrossThread(state, [](ctxloop::ContextHandle ctx, auto&& f) {
    return ctxloop::Post(ctx, std::forward<decltype(f)>(f));
  });
}

// W2 without the bound check (Loop::Options::max_pending_foreign): the same
// posts through `loop_internal::PostNeverFull`, which takes no reservation.
// Its ratio to BM_Ctxloop_PostCrossThread in the same run is what the bound
// costs a cross-thread post (one compare-and-swap on the producer, one
// release per 64 tasks run on the loop).
void BM_Ctxloop_PostCrossThreadNoBound(benchmark::State& state) {
  CtxloopPostCrossThread(state, [](ctxloop::ContextHandle ctx, auto&& f) {
    return ctxloop::loop_internal::PostNeverFull(ctx,
                                                 std::forward<decltype(f)>(f));
  });
}

// A mutex-guarded queue that a foreign thread appends to, and the loop thread
// takes whole (swap) when woken. Used by the libevent and libuv peers. The
// queue keeps its capacity across batches (the taken one is swapped back).
class LockedQueue {
 public:
  // Appends; returns true if the loop must be woken (first post since the
  // loop last took the queue).
  bool Push(Fn fn) {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(fn));
    const bool wake = !wake_pending_;
    wake_pending_ = true;
    return wake;
  }
  // Loop thread: runs everything queued so far.
  void RunAll() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      wake_pending_ = false;
      running_.swap(queue_);
    }
    for (Fn& fn : running_) std::move(fn)();
    running_.clear();
  }

 private:
  std::mutex mu_;
  std::vector<Fn> queue_;  // Guarded by mu_.
  bool wake_pending_ = false;
  std::vector<Fn> running_;  // Loop thread only.
};

// libevent, the design ctxloop uses, written directly: mutex queue + an
// eventfd written only when the loop has consumed the previous wake-up, read
// by a persistent EV_READ event. No libevent locking needed.
class LibeventEventfdQueue {
 public:
  explicit LibeventEventfdQueue(event_base* base)
      : fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
    if (fd_ < 0) return;
    event_ = event_new(base, fd_, EV_READ | EV_PERSIST,
                       &LibeventEventfdQueue::OnWake, this);
    if (event_ != nullptr && event_add(event_, nullptr) != 0) {
      event_free(event_);
      event_ = nullptr;
    }
  }
  ~LibeventEventfdQueue() {
    if (event_ != nullptr) event_free(event_);
    if (fd_ >= 0) close(fd_);
  }
  LibeventEventfdQueue(const LibeventEventfdQueue&) = delete;
  LibeventEventfdQueue& operator=(const LibeventEventfdQueue&) = delete;

  bool ok() const { return event_ != nullptr; }
  // Eventfd writes so far (read once the producer has stopped).
  int64_t wakeups() const { return wakeups_; }

  // Any thread (one producer at a time: `wakeups_` is not atomic).
  ABSL_ATTRIBUTE_NOINLINE void Post(Fn fn) {
    if (queue_.Push(std::move(fn))) {
      ++wakeups_;
      const uint64_t one = 1;
      while (write(fd_, &one, sizeof(one)) < 0 && errno == EINTR) {
      }
    }
  }

 private:
  static void OnWake(evutil_socket_t fd, short, void* arg) {
    uint64_t count;
    while (read(fd, &count, sizeof(count)) > 0) {
    }
    static_cast<LibeventEventfdQueue*>(arg)->queue_.RunAll();
  }

  int fd_;
  event* event_ = nullptr;
  int64_t wakeups_ = 0;  // Producer thread.
  LockedQueue queue_;
};

// The timing loop both raw-libevent cross-thread peers share: the producer
// posts the batch through `queue`, the last task breaks the loop.
template <typename Queue>
void RunLibeventCrossThread(benchmark::State& state, CrossThreadSetup& setup,
                            event_base* base, Queue& queue) {
  int64_t ran = 0;
  struct Sink {
    int64_t* ran;
    event_base* base;
  } sink{&ran, base};
  AllocWindow allocs;
  for (auto _ : state) {
    ran = 0;
    setup.producer.Start([&] {
      for (int i = 0; i < kCrossThreadBatch; ++i) {
        queue.Post([&sink] {
          if (++*sink.ran == kCrossThreadBatch) event_base_loopbreak(sink.base);
        });
      }
    });
    event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY);
    setup.producer.Wait();
    if (ran != kCrossThreadBatch) break;
  }
  CheckCount(state, "tasks run in the last iteration", ran, kCrossThreadBatch);
  ReportItems(state, kCrossThreadBatch, allocs);
  ReportWakeups(state, queue.wakeups());
}

void BM_RawLibevent_CrossThreadEventfd(benchmark::State& state) {
  state.SetLabel("post_cross_thread");
  CrossThreadSetup setup;
  EventBasePtr base = NewNoLockBase();
  LibeventEventfdQueue queue(base.get());
  if (!queue.ok()) {
    state.SkipWithError("eventfd/event_new failed");
    return;
  }
  RunLibeventCrossThread(state, setup, base.get(), queue);
}

// Boost.Asio: post() from the producer thread; run() on the benchmark thread
// with a work guard; the last handler calls stop().
void BM_Asio_PostCrossThread(benchmark::State& state) {
  state.SetLabel("post_cross_thread");
  CrossThreadSetup setup;
  boost::asio::io_context io(1);
  auto work = boost::asio::make_work_guard(io);
  int64_t ran = 0;
  AllocWindow allocs;
  for (auto _ : state) {
    ran = 0;
    setup.producer.Start([&] {
      for (int i = 0; i < kCrossThreadBatch; ++i) {
        boost::asio::post(io, [&ran, &io] {
          if (++ran == kCrossThreadBatch) io.stop();
        });
      }
    });
    io.run();
    setup.producer.Wait();
    io.restart();
    if (ran != kCrossThreadBatch) break;
  }
  CheckCount(state, "tasks run in the last iteration", ran, kCrossThreadBatch);
  ReportItems(state, kCrossThreadBatch, allocs);
}

// libuv: the canonical design, a mutex queue plus uv_async_send, which itself
// coalesces wake-ups (it writes the eventfd only if the handle is not already
// pending), so no flag of our own is needed.
class LibuvAsyncQueue {
 public:
  explicit LibuvAsyncQueue(uv_loop_t* loop) : loop_(loop) {
    ok_ = uv_async_init(loop, &async_, &LibuvAsyncQueue::OnAsync) == 0;
    async_.data = this;
  }
  ~LibuvAsyncQueue() {
    if (!ok_) return;
    // The handle must stay valid until libuv has finished closing it.
    uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
    uv_run(loop_, UV_RUN_NOWAIT);
  }
  LibuvAsyncQueue(const LibuvAsyncQueue&) = delete;
  LibuvAsyncQueue& operator=(const LibuvAsyncQueue&) = delete;

  bool ok() const { return ok_; }
  // Async callbacks so far (loop thread).
  int64_t wakeups() const { return wakeups_; }

  // Any thread.
  ABSL_ATTRIBUTE_NOINLINE void Post(Fn fn) {
    queue_.Push(std::move(fn));
    uv_async_send(&async_);
  }

 private:
  static void OnAsync(uv_async_t* async) {
    auto* self = static_cast<LibuvAsyncQueue*>(async->data);
    ++self->wakeups_;
    self->queue_.RunAll();
  }

  uv_loop_t* loop_;
  uv_async_t async_;
  bool ok_ = false;
  int64_t wakeups_ = 0;  // Loop thread.
  LockedQueue queue_;
};

void BM_Libuv_CrossThreadAsync(benchmark::State& state) {
  state.SetLabel("post_cross_thread");
  CrossThreadSetup setup;
  UvLoop loop;
  if (!loop.ok()) {
    state.SkipWithError("uv_loop_init failed");
    return;
  }
  int64_t ran = 0;
  AllocWindow allocs;
  allocs.Pause();  // Counts only the timing loop below.
  {
    LibuvAsyncQueue queue(loop.get());
    if (!queue.ok()) {
      state.SkipWithError("uv_async_init failed");
      return;
    }
    struct Sink {
      int64_t* ran;
      uv_loop_t* loop;
    } sink{&ran, loop.get()};
    allocs.Resume();
    for (auto _ : state) {
      ran = 0;
      setup.producer.Start([&] {
        for (int i = 0; i < kCrossThreadBatch; ++i) {
          queue.Post([&sink] {
            if (++*sink.ran == kCrossThreadBatch) uv_stop(sink.loop);
          });
        }
      });
      uv_run(loop.get(), UV_RUN_DEFAULT);
      setup.producer.Wait();
      if (ran != kCrossThreadBatch) break;
    }
    allocs.Pause();
    ReportWakeups(state, queue.wakeups());
  }
  CheckCount(state, "tasks run in the last iteration", ran, kCrossThreadBatch);
  ReportItems(state, kCrossThreadBatch, allocs);
}

// (BM_RawLibevent_CrossThreadEventActive is at the end of this file: it turns
// on libevent's locking process-wide.)

// ============================================================================
// zero_delay_timer
// ============================================================================

// ctxloop: PostDelayed(0) inserts into the loop's ordered timer table (under
// its timer mutex) and arms one libevent timer for the earliest deadline;
// RunUntilIdle fires that timer, which runs everything due.
void BM_Ctxloop_ZeroDelayTimers(benchmark::State& state) {
  state.SetLabel("zero_delay_timer");
  ctxloop::Loop loop;
  const ctxloop::ContextHandle ctx = *loop.NewContext("bench");
  int64_t ran = 0;
  int64_t errors = 0;
  AllocWindow allocs;
  for (auto _ : state) {
    for (int i = 0; i < kTimerBatch; ++i) {
      if (!ctxloop::PostDelayed(ctx, absl::ZeroDuration(),
                                [&ran](ctxloop::ContextHandle) { ++ran; })
               .ok()) {
        ++errors;
      }
    }
    if (!loop.RunUntilIdle().ok()) ++errors;
  }
  CheckCount(state, "failed PostDelayed/RunUntilIdle calls", errors, 0) &&
      CheckCount(state, "timers run", ran,
                 int64_t{kTimerBatch} * state.iterations());
  ReportItems(state, kTimerBatch, allocs);
}

// libevent: event_base_once with a {0,0} timeout. NOTE: libevent treats a zero
// timeout like none and activates the event at once, skipping its timer heap,
// so this is the same path as BM_RawLibevent_EventBaseOnce. The timer-heap
// peer is BM_RawLibevent_EvtimerAddZero.
void BM_RawLibevent_ZeroTimeout(benchmark::State& state) {
  state.SetLabel("zero_delay_timer");
  EventBasePtr base = NewNoLockBase();
  const timeval zero = {0, 0};
  int64_t ran = 0;
  int64_t errors = 0;
  AllocWindow allocs;
  for (auto _ : state) {
    for (int i = 0; i < kTimerBatch; ++i) {
      if (event_base_once(base.get(), -1, EV_TIMEOUT, &IncrementCb, &ran,
                          &zero) != 0) {
        ++errors;
      }
    }
    if (event_base_loop(base.get(), EVLOOP_NONBLOCK) < 0) ++errors;
  }
  CheckCount(state, "failed libevent calls", errors, 0) &&
      CheckCount(state, "timers run", ran,
                 int64_t{kTimerBatch} * state.iterations());
  ReportItems(state, kTimerBatch, allocs);
}

// libevent through its timer heap: one evtimer per timer (event_new, freed
// after the batch), evtimer_add with a zero timeout (event_add does not
// short-circuit zero), then the loop fires them. The per-timer allocation
// matches ctxloop's (one table node per delayed task).
void BM_RawLibevent_EvtimerAddZero(benchmark::State& state) {
  state.SetLabel("zero_delay_timer");
  EventBasePtr base = NewNoLockBase();
  const timeval zero = {0, 0};
  std::vector<event*> events;
  events.reserve(kTimerBatch);
  int64_t ran = 0;
  int64_t errors = 0;
  AllocWindow allocs;
  for (auto _ : state) {
    for (int i = 0; i < kTimerBatch; ++i) {
      event* ev = evtimer_new(base.get(), &IncrementCb, &ran);
      if (ev == nullptr || evtimer_add(ev, &zero) != 0) {
        ++errors;
        if (ev != nullptr) event_free(ev);
        continue;
      }
      events.push_back(ev);
    }
    if (event_base_loop(base.get(), EVLOOP_NONBLOCK) < 0) ++errors;
    for (event* ev : events) event_free(ev);
    events.clear();
  }
  CheckCount(state, "failed libevent calls", errors, 0) &&
      CheckCount(state, "timers run", ran,
                 int64_t{kTimerBatch} * state.iterations());
  ReportItems(state, kTimerBatch, allocs);
}

// Boost.Asio: one steady_timer per timer (constructed in a reserved vector),
// expires_after(0), async_wait, then run().
void BM_Asio_SteadyTimerZero(benchmark::State& state) {
  state.SetLabel("zero_delay_timer");
  boost::asio::io_context io(1);
  std::vector<boost::asio::steady_timer> timers;
  timers.reserve(kTimerBatch);
  int64_t ran = 0;
  AllocWindow allocs;
  for (auto _ : state) {
    for (int i = 0; i < kTimerBatch; ++i) {
      timers.emplace_back(io);
      timers.back().expires_after(std::chrono::nanoseconds(0));
      timers.back().async_wait([&ran](const boost::system::error_code& ec) {
        if (!ec) ++ran;
      });
    }
    io.run();
    io.restart();
    timers.clear();
  }
  CheckCount(state, "timers run", ran,
             int64_t{kTimerBatch} * state.iterations());
  ReportItems(state, kTimerBatch, allocs);
}

// ============================================================================
// timer_schedule_cancel
// ============================================================================

// The timer_schedule_cancel batch: `kTimerBatch` tasks delayed by 1 s on
// `ctx`, then every one cancelled (none may run). Failed calls count in
// `*errors`; a cancelled task that ran anyway, in `*fired`.
void ScheduleAndCancelBatch(ctxloop::ContextHandle ctx,
                            std::vector<ctxloop::DelayedTaskHandle>& handles,
                            int64_t* fired, int64_t* errors) {
  for (int i = 0; i < kTimerBatch; ++i) {
    absl::StatusOr<ctxloop::DelayedTaskHandle> h = ctxloop::PostDelayed(
        ctx, absl::Seconds(1), [fired](ctxloop::ContextHandle) { ++*fired; });
    if (h.ok()) {
      handles.push_back(*h);
    } else {
      ++*errors;
    }
  }
  for (const ctxloop::DelayedTaskHandle& h : handles) {
    if (!ctxloop::Cancel(h)) ++*errors;
  }
  handles.clear();
}

// ctxloop: PostDelayed 1 s out, 10,000 times, then Cancel each (in posting
// order, as request timeouts are). One item = one schedule + one cancel.
void BM_Ctxloop_TimerScheduleCancel(benchmark::State& state) {
  state.SetLabel("timer_schedule_cancel");
  ctxloop::Loop loop;
  const ctxloop::ContextHandle ctx = *loop.NewContext("bench");
  std::vector<ctxloop::DelayedTaskHandle> handles;
  handles.reserve(kTimerBatch);
  int64_t fired = 0;
  int64_t errors = 0;
  AllocWindow allocs;
  for (auto _ : state) {
    ScheduleAndCancelBatch(ctx, handles, &fired, &errors);
  }
  allocs.Pause();  // What follows is not timed.
  if (!loop.RunUntilIdle().ok()) ++errors;
  CheckCount(state, "failed PostDelayed/Cancel calls", errors, 0) &&
      CheckCount(state, "cancelled timers that ran", fired, 0);
  ReportItems(state, kTimerBatch, allocs);
}

// libevent, the floor: evtimer_add / evtimer_del on events allocated once
// (as a libevent user embeds an event in a long-lived struct). ctxloop, in
// comparison, also allocates a table node and stores a task per timer.
void BM_RawLibevent_EvtimerAddDel(benchmark::State& state) {
  state.SetLabel("timer_schedule_cancel");
  EventBasePtr base = NewNoLockBase();
  int64_t fired = 0;
  std::vector<event*> events;
  for (int i = 0; i < kTimerBatch; ++i) {
    events.push_back(evtimer_new(base.get(), &IncrementCb, &fired));
  }
  const timeval one_second = {1, 0};
  int64_t errors = 0;
  AllocWindow allocs;
  for (auto _ : state) {
    for (event* ev : events) {
      if (evtimer_add(ev, &one_second) != 0) ++errors;
    }
    for (event* ev : events) {
      if (evtimer_del(ev) != 0) ++errors;
    }
  }
  allocs.Pause();  // What follows is not timed.
  if (event_base_loop(base.get(), EVLOOP_NONBLOCK) < 0) ++errors;
  for (event* ev : events) event_free(ev);
  CheckCount(state, "failed libevent calls", errors, 0) &&
      CheckCount(state, "cancelled timers that ran", fired, 0);
  ReportItems(state, kTimerBatch, allocs);
}

// libevent with a fresh event per timer (event_new + evtimer_add, then
// evtimer_del + event_free): the "fire-and-forget timer" usage, with the same
// one allocation per timer as ctxloop.
void BM_RawLibevent_EvtimerNewAddDelFree(benchmark::State& state) {
  state.SetLabel("timer_schedule_cancel");
  EventBasePtr base = NewNoLockBase();
  int64_t fired = 0;
  std::vector<event*> events;
  events.reserve(kTimerBatch);
  const timeval one_second = {1, 0};
  int64_t errors = 0;
  AllocWindow allocs;
  for (auto _ : state) {
    for (int i = 0; i < kTimerBatch; ++i) {
      event* ev = evtimer_new(base.get(), &IncrementCb, &fired);
      if (ev == nullptr || evtimer_add(ev, &one_second) != 0) ++errors;
      events.push_back(ev);
    }
    for (event* ev : events) {
      if (ev == nullptr) continue;
      if (evtimer_del(ev) != 0) ++errors;
      event_free(ev);
    }
    events.clear();
  }
  allocs.Pause();  // What follows is not timed.
  if (event_base_loop(base.get(), EVLOOP_NONBLOCK) < 0) ++errors;
  CheckCount(state, "failed libevent calls", errors, 0) &&
      CheckCount(state, "cancelled timers that ran", fired, 0);
  ReportItems(state, kTimerBatch, allocs);
}

// timer_schedule_cancel_in_callback: the same batch, scheduled and cancelled
// inside one loop callback, as a server schedules its timeouts. Both loops
// then take "now" from their cached loop time (ctxloop reads the clock once
// per callback, libevent uses the time cached for the iteration), where the
// out-of-loop pair above reads a clock per timer: ctxloop a precise one
// (CLOCK_MONOTONIC), libevent's default base the cheaper, millisecond-coarse
// CLOCK_MONOTONIC_COARSE.
void BM_Ctxloop_TimerScheduleCancelInCallback(benchmark::State& state) {
  state.SetLabel("timer_schedule_cancel_in_callback");
  ctxloop::Loop loop;
  const ctxloop::ContextHandle ctx = *loop.NewContext("bench");
  std::vector<ctxloop::DelayedTaskHandle> handles;
  handles.reserve(kTimerBatch);
  int64_t fired = 0;
  int64_t errors = 0;
  int64_t batches = 0;
  AllocWindow allocs;
  for (auto _ : state) {
    const absl::Status posted =
        ctxloop::Post(ctx, [&](ctxloop::ContextHandle here) {
          ScheduleAndCancelBatch(here, handles, &fired, &errors);
          ++batches;
        });
    if (!posted.ok() || !loop.RunUntilIdle().ok()) ++errors;
  }
  allocs.Pause();  // What follows is not timed.
  if (!loop.RunUntilIdle().ok()) ++errors;
  CheckCount(state, "failed Post/PostDelayed/Cancel/RunUntilIdle calls", errors,
             0) &&
      CheckCount(state, "batches run", batches, state.iterations()) &&
      CheckCount(state, "cancelled timers that ran", fired, 0);
  ReportItems(state, kTimerBatch, allocs);
}

// libevent: event_new + evtimer_add, then evtimer_del + event_free, inside
// the callback of an event made active once per batch.
void BM_RawLibevent_EvtimerNewAddDelFreeInCallback(benchmark::State& state) {
  state.SetLabel("timer_schedule_cancel_in_callback");
  EventBasePtr base = NewNoLockBase();
  struct Batch {
    event_base* base;
    std::vector<event*> events;
    int64_t fired = 0;
    int64_t errors = 0;
    int64_t batches = 0;
  } batch{base.get(), {}};
  batch.events.reserve(kTimerBatch);
  event* trigger = event_new(
      base.get(), -1, 0,
      [](evutil_socket_t, short, void* arg) {
        auto* b = static_cast<Batch*>(arg);
        const timeval one_second = {1, 0};
        for (int i = 0; i < kTimerBatch; ++i) {
          event* ev = evtimer_new(b->base, &IncrementCb, &b->fired);
          if (ev == nullptr || evtimer_add(ev, &one_second) != 0) ++b->errors;
          b->events.push_back(ev);
        }
        for (event* ev : b->events) {
          if (ev == nullptr) continue;
          if (evtimer_del(ev) != 0) ++b->errors;
          event_free(ev);
        }
        b->events.clear();
        ++b->batches;
      },
      &batch);
  AllocWindow allocs;
  for (auto _ : state) {
    event_active(trigger, 0, 0);
    if (event_base_loop(base.get(), EVLOOP_NONBLOCK) < 0) ++batch.errors;
  }
  allocs.Pause();  // What follows is not timed.
  event_free(trigger);
  CheckCount(state, "failed libevent calls", batch.errors, 0) &&
      CheckCount(state, "batches run", batch.batches, state.iterations()) &&
      CheckCount(state, "cancelled timers that ran", batch.fired, 0);
  ReportItems(state, kTimerBatch, allocs);
}

// Boost.Asio: steady_timer + expires_after(1 s) + async_wait, then cancel()
// each. Asio always calls a handler (with operation_aborted), so the batch is
// finished by run(): that is part of Asio's cancel cost.
void BM_Asio_SteadyTimerCancel(benchmark::State& state) {
  state.SetLabel("timer_schedule_cancel");
  boost::asio::io_context io(1);
  std::vector<boost::asio::steady_timer> timers;
  timers.reserve(kTimerBatch);
  int64_t aborted = 0;
  int64_t fired = 0;
  AllocWindow allocs;
  for (auto _ : state) {
    for (int i = 0; i < kTimerBatch; ++i) {
      timers.emplace_back(io);
      timers.back().expires_after(std::chrono::seconds(1));
      timers.back().async_wait(
          [&aborted, &fired](const boost::system::error_code& ec) {
            if (ec == boost::asio::error::operation_aborted) {
              ++aborted;
            } else {
              ++fired;
            }
          });
    }
    for (boost::asio::steady_timer& t : timers) t.cancel();
    io.run();
    io.restart();
    timers.clear();
  }
  CheckCount(state, "cancelled timers that ran", fired, 0) &&
      CheckCount(state, "aborted handlers", aborted,
                 int64_t{kTimerBatch} * state.iterations());
  ReportItems(state, kTimerBatch, allocs);
}

// ============================================================================
// context_key_set_reset, context_key_get
// ============================================================================

// One context-local int, Set then Reset with the token, on one context. The
// reference is what a thread-local "current value" costs to save, set and
// restore. (ctxloop's value also survives hops between tasks and threads,
// which a thread_local does not; this measures what that costs per use.)
const ctxloop::ContextKey<int>& BenchKey() {
  static const auto* key = new ctxloop::ContextKey<int>("bench_key", 0);
  return *key;
}

void BM_Ctxloop_ContextKeySetReset(benchmark::State& state) {
  state.SetLabel("context_key_set_reset");
  ctxloop::Loop loop;
  const ctxloop::ContextHandle ctx = *loop.NewContext("bench");
  const ctxloop::ContextKey<int>& key = BenchKey();
  int value = 1;
  int64_t errors = 0;
  AllocWindow allocs;
  for (auto _ : state) {
    absl::StatusOr<ctxloop::Token> token = key.Set(ctx, value++);
    if (!token.ok() || !key.Reset(ctx, *token).ok()) ++errors;
  }
  allocs.Pause();  // What follows is not timed.
  absl::StatusOr<int> after = key.Get(ctx);
  CheckCount(state, "failed Set/Reset calls", errors, 0) &&
      CheckCount(state, "value after all resets", after.ok() ? *after : -1, 0);
  ReportItems(state, 1, allocs);
}

thread_local int tls_value = 0;

void BM_ThreadLocal_SaveRestore(benchmark::State& state) {
  state.SetLabel("context_key_set_reset");
  int value = 1;
  AllocWindow allocs;
  for (auto _ : state) {
    const int saved = tls_value;
    tls_value = value++;
    benchmark::DoNotOptimize(tls_value);
    tls_value = saved;
    benchmark::ClobberMemory();
  }
  CheckCount(state, "value after all restores", tls_value, 0);
  ReportItems(state, 1, allocs);
}

// Get of a key that is set on the context (found by the table scan).
void BM_Ctxloop_ContextKeyGet(benchmark::State& state) {
  state.SetLabel("context_key_get");
  ctxloop::Loop loop;
  const ctxloop::ContextHandle ctx = *loop.NewContext("bench");
  const ctxloop::ContextKey<int>& key = BenchKey();
  absl::StatusOr<ctxloop::Token> token = key.Set(ctx, 42);
  if (!token.ok()) {
    state.SkipWithError("Set failed");
    return;
  }
  int64_t sum = 0;
  AllocWindow allocs;
  for (auto _ : state) {
    absl::StatusOr<int> v = key.Get(ctx);
    sum += v.ok() ? *v : -1000000;
  }
  allocs.Pause();  // What follows is not timed.
  (void)key.Reset(ctx, *token);
  CheckCount(state, "sum of values read", sum,
             42 * int64_t{state.iterations()});
  ReportItems(state, 1, allocs);
}

void BM_ThreadLocal_Read(benchmark::State& state) {
  state.SetLabel("context_key_get");
  tls_value = 42;
  int64_t sum = 0;
  AllocWindow allocs;
  for (auto _ : state) {
    benchmark::ClobberMemory();  // Reload tls_value each time.
    sum += tls_value;
  }
  allocs.Pause();  // What follows is not timed.
  tls_value = 0;
  CheckCount(state, "sum of values read", sum,
             42 * int64_t{state.iterations()});
  ReportItems(state, 1, allocs);
}

// ============================================================================
// post_cross_thread, libevent's own cross-thread activation (last: see below)
// ============================================================================

// libevent with its locking turned on (evthread_use_pthreads): the producer
// appends to a mutex queue and, once per batch, calls event_active on an
// event of the loop's base from its own thread; libevent takes the base lock
// and wakes its loop through its internal notification fd.
//
// evthread_use_pthreads is process-wide and cannot be undone. It does not
// change the other benchmarks' bases (they use EVENT_BASE_FLAG_NOLOCK, like
// ctxloop's), but it adds a thread-id check to event_add/event_active on
// every base, so this benchmark is registered last and turns it on only when
// it runs.
class LibeventActiveQueue {
 public:
  explicit LibeventActiveQueue(event_base* base)
      : event_(event_new(base, -1, 0, &LibeventActiveQueue::OnBatch, this)) {}
  ~LibeventActiveQueue() {
    if (event_ != nullptr) event_free(event_);
  }
  LibeventActiveQueue(const LibeventActiveQueue&) = delete;
  LibeventActiveQueue& operator=(const LibeventActiveQueue&) = delete;

  bool ok() const { return event_ != nullptr; }
  // event_active calls so far (read once the producer has stopped).
  int64_t wakeups() const { return wakeups_; }

  // Any thread (one producer at a time: `wakeups_` is not atomic).
  ABSL_ATTRIBUTE_NOINLINE void Post(Fn fn) {
    if (queue_.Push(std::move(fn))) {
      ++wakeups_;
      event_active(event_, EV_READ, 0);
    }
  }

 private:
  static void OnBatch(evutil_socket_t, short, void* arg) {
    static_cast<LibeventActiveQueue*>(arg)->queue_.RunAll();
  }

  event* event_;
  int64_t wakeups_ = 0;  // Producer thread.
  LockedQueue queue_;
};

void BM_RawLibevent_CrossThreadEventActive(benchmark::State& state) {
  state.SetLabel("post_cross_thread");
  static const bool threads_ok = evthread_use_pthreads() == 0;
  if (!threads_ok) {
    state.SkipWithError("evthread_use_pthreads failed");
    return;
  }
  CrossThreadSetup setup;
  EventBasePtr base(event_base_new());  // With locks: see above.
  if (base == nullptr) {
    state.SkipWithError("event_base_new failed");
    return;
  }
  LibeventActiveQueue queue(base.get());
  if (!queue.ok()) {
    state.SkipWithError("event_new failed");
    return;
  }
  RunLibeventCrossThread(state, setup, base.get(), queue);
}

// --- Registration
// ------------------------------------------------------------- Real time
// everywhere: cross-thread benchmarks wait for another thread, and
// `ns_per_item` divides by the benchmark's time.

BENCHMARK(BM_Ctxloop_PostRun_SameThread)->UseRealTime();
BENCHMARK(BM_RawLibevent_EventBaseOnce)->UseRealTime();
BENCHMARK(BM_RawLibevent_OwnQueueEventActive)->UseRealTime();
BENCHMARK(BM_Asio_Post)->UseRealTime();
BENCHMARK(BM_Asio_PostInsideRun)->UseRealTime();
BENCHMARK(BM_Libuv_OwnQueueIdle)->UseRealTime();
BENCHMARK(BM_VectorAnyInvocable)->UseRealTime();
BENCHMARK(BM_Ctxloop_PostRun_SameThread_Capture3)->UseRealTime();
BENCHMARK(BM_VectorAnyInvocable_Capture3)->UseRealTime();

BENCHMARK(BM_Ctxloop_PostCrossThread)->UseRealTime();
BENCHMARK(BM_Ctxloop_PostCrossThreadNoBound)->UseRealTime();
BENCHMARK(BM_RawLibevent_CrossThreadEventfd)->UseRealTime();
BENCHMARK(BM_Asio_PostCrossThread)->UseRealTime();
BENCHMARK(BM_Libuv_CrossThreadAsync)->UseRealTime();

BENCHMARK(BM_Ctxloop_ZeroDelayTimers)->UseRealTime();
BENCHMARK(BM_RawLibevent_ZeroTimeout)->UseRealTime();
BENCHMARK(BM_RawLibevent_EvtimerAddZero)->UseRealTime();
BENCHMARK(BM_Asio_SteadyTimerZero)->UseRealTime();

BENCHMARK(BM_Ctxloop_TimerScheduleCancel)->UseRealTime();
BENCHMARK(BM_RawLibevent_EvtimerAddDel)->UseRealTime();
BENCHMARK(BM_RawLibevent_EvtimerNewAddDelFree)->UseRealTime();
BENCHMARK(BM_Asio_SteadyTimerCancel)->UseRealTime();

BENCHMARK(BM_Ctxloop_TimerScheduleCancelInCallback)->UseRealTime();
BENCHMARK(BM_RawLibevent_EvtimerNewAddDelFreeInCallback)->UseRealTime();

BENCHMARK(BM_Ctxloop_ContextKeySetReset)->UseRealTime();
BENCHMARK(BM_ThreadLocal_SaveRestore)->UseRealTime();
BENCHMARK(BM_Ctxloop_ContextKeyGet)->UseRealTime();
BENCHMARK(BM_ThreadLocal_Read)->UseRealTime();

// Last: enables libevent locking process-wide (see above).
BENCHMARK(BM_RawLibevent_CrossThreadEventActive)->UseRealTime();

}  // namespace
