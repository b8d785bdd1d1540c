// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/loop/loop.h
// -----------------------------------------------------------------------------
//
// `Loop` is a single-threaded event loop on a libevent `event_base`. It owns
// a tree of `Context`s, named by `ContextHandle`s, and runs tasks, timers and
// fd callbacks, each on one context, each receiving that context's handle.
//
//   ctxloop::Loop loop;
//   ctxloop::ContextHandle ctx = *loop.NewContext("request");
//   std::thread producer([ctx] {
//     // Thread-safe: queued for the loop thread, never run inside Post().
//     absl::Status s = ctxloop::Post(ctx, [](ctxloop::ContextHandle here) {
//       // Runs on the loop thread, on `here` == ctx.
//     });
//   });
//   loop.Run();  // until loop.Stop()
//
// The loop thread
// ---------------
// One thread drives a loop: the thread that constructed it. `Run()` and
// `RunUntilIdle()` elsewhere return `kFailedPrecondition`; to run a loop on a
// thread of its own, construct it there (`ctxloop::LoopThread` does).
// Methods marked "loop thread" return `kFailedPrecondition` elsewhere. Free
// functions that take a handle (`Post`, `PostDelayed`, `Cancel`) are
// thread-safe, including against the loop's destruction. Destroy a `Loop` on
// its loop thread, or after that thread has stopped using it (e.g. joined); the
// destructor becomes the loop thread.
//
// Cost
// ----
// Same-thread `Post` of a callable (the template below): an owner check
// against a per-thread cache, a context check, and the callable built in place
// in the loop's ready queue (chunks that never move their tasks; no
// allocation for captures up to five pointers); one `event_active` per batch
// of tasks; each task is run and destroyed in place (about 75 instructions
// per post+run in benchmarks/icount_hot_paths.cc). Cross-thread `Post`: no
// lock. A registry pin (one compare-and-swap that also proves the loop
// alive and tells a foreign thread from the owner, one decrement to release
// it), a context check, a one-cache-line node from a per-thread cache of
// recycled nodes (no allocation per post once the pool has grown) with the
// callable built in place in it (the template, before the pin), one relaxed
// compare-and-swap on the loop's pending count (the bound: see
// `Options::max_pending_foreign`), and one compare-and-swap
// onto the loop's lock-free foreign ingress
// (loop/internal/foreign_ingress.h); about 250 instructions on the posting
// thread and 80 on the loop's. It writes the loop's eventfd
// (still pinned, so the poster is done with the loop when it unpins) only
// when the loop had armed the ingress, i.e. may be idle. A busy loop takes
// new cross-thread tasks at the end of each batch, so a burst into a busy
// loop costs no syscall (under 0.05 wake-ups per 1,000 posts in
// benchmarks/loop_benchmark.cc, against 8 to 22 for raw libevent's eventfd
// and libuv's async in the same runs).
// `benchmarks/` measures these against raw libevent, Boost.Asio and libuv.
//
// Ordering
// --------
// Tasks posted from one thread run in post order (FIFO per producer). Delayed
// tasks with equal deadlines run in post order. Effects of a task are visible
// to every later task on the loop. Tasks posted during a batch run in the next
// batch, after libevent has had a chance to dispatch ready fds.
//
// Shutdown
// --------
// `Shutdown()` (also run by the destructor) drains: it closes the loop to
// cross-thread posts, drops delayed tasks that have not fired, runs every
// task already posted (and what those post), runs the destroy hooks
// (`AddDestroyHook`) of every context still alive, unregisters fd watches,
// and runs what all of that posted, all on the loop thread. Every accepted
// task runs or is counted in `ShutdownReport::tasks_dropped`; only then does
// the loop refuse every post. `loop/internal/loop_core.cc` numbers every case;
// `loop_shutdown_test.cc` tests each.
//
// Embedding in a host's event loop
// --------------------------------
// (API as agreed, with one change: `BackendFd()` is not const, because its
// first call, on the loop thread, sets the fd up; later calls from any
// thread return the same fd. `BackendTimeout()` returns `absl::Duration`,
// `absl::InfiniteDuration()` meaning nothing is scheduled; `TimeoutMs` turns
// it into a poll() timeout. `RunReady()` is one pass, not run-until-idle.)
// A host that already has a loop keeps it; ctxloop runs inside it, on the
// host's thread, with every guarantee above intact. Two ways:
//
// 1. Adopt the host's libevent base (`Options::host_base`): the Loop puts
//    its events (a wake-up eventfd, a timerfd, two internal events, one per
//    fd watch) on the host's `event_base` instead of making one. The thread
//    that constructs the Loop is the loop thread and must be the thread that
//    dispatches that base; the host keeps dispatching it with
//    `event_base_dispatch`/`event_base_loop`, and every ctxloop callback runs
//    from there. The Loop never frees the base, and never breaks the host's
//    dispatch (`Stop()` ends only a ctxloop `Run()`/`RunReady()`).
//
//      event_base* base = event_base_new();           // the host's
//      ctxloop::Loop::Options o;
//      o.host_base = base;
//      auto loop = *ctxloop::Loop::Create(std::move(o));  // base's thread
//      ... the host's own events on `base`, ctxloop posts, traces, streams
//      event_base_dispatch(base);                     // the host's loop
//      loop.reset();                                  // before freeing base
//      event_base_free(base);
//
// 2. Be driven by any other loop (libuv's backend-fd shape): the host polls
//    `BackendFd()` with its own poller, sleeps at most `BackendTimeout()`,
//    and calls `RunReady()` when the fd is readable or the timeout passed.
//
//      int fd = *loop.BackendFd();                    // on the loop thread
//      for (;;) {                                     // the host's loop
//        pollfd p = {fd, POLLIN, 0};
//        poll(&p, 1, ctxloop::Loop::TimeoutMs(loop.BackendTimeout()));
//        loop.RunReady();
//      }
//
//    A host must call `BackendTimeout()` after its own libevent calls on
//    `base()` (an `event_add` with a timeout, an `event_active`) and before
//    it sleeps; ctxloop's own calls on the loop thread outside `RunReady`
//    (`Post`, `PostDelayed`, `WatchFd`, ...) make `BackendFd()` readable
//    themselves when they leave work, so a host never misses them.
//
// Shutdown and destruction with a base the loop does not own are the cases
// [S17]-[S21] of loop/internal/loop_core.cc.

#ifndef CTXLOOP_LOOP_LOOP_H_
#define CTXLOOP_LOOP_LOOP_H_

#include <cstdint>
#include <memory>
#include <new>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/base/attributes.h"
#include "absl/base/optimization.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ctxloop/loop/context_handle.h"
#include "ctxloop/loop/fd_watch.h"
#include "ctxloop/loop/internal/local_post.h"
#include "ctxloop/loop/task.h"

struct event_base;

namespace ctxloop {

namespace loop_internal {
class LoopCore;
struct IngressNode;
}  // namespace loop_internal

// Identifies one delayed task, for `Cancel`. A value; copy it to any thread.
// It names the loop and the task's node in that loop's timer table, with the
// task's 64-bit id (drawn from a per-loop counter that never wraps in
// practice), so a handle of a task that ran or was cancelled never names a
// later task that reuses the node. A task posted from another thread is named
// by its node in the loop's foreign ingress (never freed) and a process-wide
// id instead.
class DelayedTaskHandle {
 public:
  DelayedTaskHandle() = default;

 private:
  friend class loop_internal::LoopCore;
  friend bool Cancel(const DelayedTaskHandle& handle);
  uint32_t loop_slot_ = 0;
  uint32_t loop_generation_ = 0;
  uint32_t node_ = 0;  // Index of the task's node in the loop's timer slab.
  uint64_t id_ = 0;    // The task's id (0: no task).
  // Posted from another thread: its ingress node (then `node_` is unused).
  loop_internal::IngressNode* foreign_ = nullptr;
};

// What `Shutdown()` did, so nothing disappears unaccounted.
struct ShutdownReport {
  uint64_t tasks_run = 0;        // Posted before/while draining, run (S1, S2).
  uint64_t tasks_dropped = 0;    // Still posted after the drain limit (S3),
                                 // and destroy hooks past it (S10).
  uint64_t delayed_dropped = 0;  // Delayed tasks that had not fired (S4).
  uint64_t watches_closed = 0;   // Fd watches unregistered (S6).
};

// Counters for tests, benchmarks and monitoring.
struct LoopStats {
  uint64_t tasks_run = 0;    // Tasks and delayed tasks run so far.
  uint64_t wake_writes = 0;  // Eventfd writes made by cross-thread posts.
  // Cross-thread posts (`Post`, `PostDelayed`) pending now: accepted and
  // not yet run (a task) or not yet made a timer (a delayed task). At most
  // `Options::max_pending_foreign`. Exact while the loop is open.
  uint64_t foreign_pending = 0;
  // Cross-thread posts refused with kResourceExhausted so far (the bound
  // was reached); each was destroyed on its poster's thread.
  uint64_t foreign_refused_full = 0;
};

class Loop {
 public:
  struct Options {
    // Receives exceptions escaping tasks and callbacks, and shutdown drops.
    // Default: one line on stderr naming the context.
    ErrorHandler error_handler;
    // Shutdown runs tasks posted by draining tasks for at most this many
    // rounds, then drops the rest and reports them (S3).
    int max_shutdown_rounds = 1000;
    // The bound on pending cross-thread work: at most this many posts from
    // other threads (`Post`, `PostDelayed`) accepted and not yet taken up
    // by the loop (a task not yet run, a delayed task not yet made a
    // timer). Past it a cross-thread post returns kResourceExhausted, its
    // task destroyed on the posting thread before `Post` returns, and
    // `LoopStats::foreign_refused_full` counts it. The default, 2^20 tasks,
    // is 128 MiB of ingress nodes (plus captures that do not fit a task's
    // inline storage): what a burst or a slow loop can pile up, not what
    // takes a 24 GiB machine down. 0 is taken as 1.
    //
    // Never refused by the bound: posts from the loop thread (the loop runs
    // them itself, so a producer on the loop thread cannot outrun it; and
    // refusing the loop's own follow-ups would break code that must
    // continue), `Loop::Stop()` and `Cancel` from any thread (they free
    // work, and each is one node per call or per delayed task), and the
    // library's own internal posts: a trace's finish and trace end posted
    // home to its loop (trace/scope.cc posts them with
    // `loop_internal::PostNeverFull`, which skips the bound: at most one
    // per span and trace, so they are bounded by what the host started),
    // and a foreign `FdWatch::Stop`'s unregistration. Only a closed context
    // or loop refuses those, as before.
    //
    // A producer that may block waits for room with `WaitForRoom` (below);
    // one that must not block treats kResourceExhausted as backpressure
    // (drops, or keeps the work in its own bounded queue and retries).
    int64_t max_pending_foreign = int64_t{1} << 20;
    // Adopt this libevent base instead of creating one (see "Embedding"
    // above). Null (the default): the Loop makes and owns its base.
    // What ctxloop needs of the base: nothing of its features. It calls
    // libevent only on the loop thread (other threads write an eventfd), so
    // the base needs no libevent locks (`evthread_use_pthreads` is neither
    // needed nor harmful), any backend works, and the timer clock is the
    // host's choice (ctxloop's timers use a timerfd of their own). What it
    // needs of the host: the base is dispatched by the thread that
    // constructs the Loop, and the host destroys the Loop before it frees
    // the base ([S18]). `Create` refuses with kInvalidArgument the base of
    // another (owning) Loop, which would free it under this one. Several
    // Loops may adopt one host base. `base()` returns it.
    event_base* host_base = nullptr;
  };

  // Creates a loop on a new `event_base`. The constructing thread is the loop
  // thread. Aborts with a message if libevent cannot make a base (which only
  // happens when the process is out of file descriptors); use `Create` to get
  // a status instead.
  Loop();
  explicit Loop(Options options);
  static absl::StatusOr<std::unique_ptr<Loop>> Create();
  static absl::StatusOr<std::unique_ptr<Loop>> Create(Options options);

  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  // Runs `Shutdown()` if it has not run. See "The loop thread" above.
  ~Loop();

  // The loop's root context: exists from construction until shutdown, cannot
  // be destroyed, starts with no values. Thread-safe.
  ContextHandle root() const;

  // Creates a context with no values (loop thread). `name` shows in
  // `ContextName` and in trace files.
  absl::StatusOr<ContextHandle> NewContext(absl::string_view name = {});

  // Creates a child of `parent`, which must belong to this loop (loop
  // thread). The child starts with the parent's current values: a snapshot,
  // shared copy-on-write (O(1) now; the first write on either side copies the
  // table of keys, not the values). Later writes on either side are not seen
  // by the other, as with Python's `contextvars.copy_context()`.
  absl::StatusOr<ContextHandle> NewChildContext(ContextHandle parent,
                                                absl::string_view name = {});

  // Destroys a context of this loop (loop thread; `kInvalidArgument` for
  // another loop's). From now on everything new on it is refused with
  // `kFailedPrecondition`: `Post`, `PostDelayed`, `ContextKey::Set` (and so
  // `StartTrace`), `NewChildContext`, `WatchFd`, `AddDestroyHook` (S15).
  // Tasks already posted to it still run, with its handle valid, then its
  // destroy hooks, after which the handle goes stale (S7); until then
  // `ContextKey::Get` and `Reset` keep working, so those tasks can read and
  // restore values. Its delayed tasks are cancelled and destroyed now, and its
  // fd watches are unregistered.
  absl::Status DestroyContext(ContextHandle ctx);

  // The name given at creation, or an error for a stale handle or another
  // loop's context (loop thread).
  absl::StatusOr<std::string> ContextName(ContextHandle ctx) const;

  // Watches `fd` for `events` on `ctx` (loop thread). `callback` runs on the
  // loop thread with `ctx` each time `fd` is ready, until the returned watch
  // is destroyed or stopped, or `ctx` is destroyed. See fd_watch.h for what
  // happens when `fd` is closed while watched.
  absl::StatusOr<FdWatch> WatchFd(ContextHandle ctx, int fd, FdEvents events,
                                  FdCallback callback,
                                  FdWatchOptions options = {});

  // Runs the loop on the calling thread until `Stop()`. Returns
  // `kFailedPrecondition` if the loop is already running (re-entrant or on
  // another thread) or shut down. Returns at once if `Stop()` was called since
  // the last `Run` returned.
  absl::Status Run();

  // Runs what is ready when it is called, and what that work posts, then
  // returns: the tasks posted so far (from any thread), due timers, ready
  // fds, everything these post from the loop thread (and timers they make
  // due), and cross-thread posts that arrive meanwhile, until none of that
  // is left; but once it has taken `Options::max_pending_foreign`
  // cross-thread posts beyond those pending at its start, later ones stay
  // queued for the next `Run`/`RunUntilIdle`. So producers on other threads
  // that never stop delay it by at most one bound's worth of tasks and
  // cannot starve it (a loop-thread task that re-posts itself forever still
  // can: that is the host's own loop). Does not wait for future timers.
  // Same errors as `Run()`.
  absl::Status RunUntilIdle();

  // Makes the current (or next) `Run()` return after the task or callback now
  // running; tasks not yet run stay queued for the next `Run`. Thread-safe;
  // must not race with the destructor. From another thread it always wakes
  // the loop (one eventfd write), so it is never lost to concurrent posts.
  // On an adopted base (`Options::host_base`) it ends only a ctxloop
  // `Run()`/`RunReady()` and never breaks the host's own dispatch of the
  // base: while the host dispatches, it is kept for the next `Run()` [S20].
  // In driven mode it ends the current `RunReady()` early.
  void Stop();

  // --- Driven by another loop (see "Embedding" above) -----------------------

  // A pollable fd (an epoll fd of the Loop's own) that is readable whenever
  // the loop has work that `RunReady()` would run: tasks posted from any
  // thread, due delayed tasks, watched fds that are ready, and the host's
  // own fd events on `base()`. Anything the fd cannot show (an event made
  // active, a libevent timeout) is in `BackendTimeout()`. Poll it for
  // readability (POLLIN/EPOLLIN, level-triggered); never read it or
  // `epoll_ctl` it. The fd belongs to the Loop and stays the same for its
  // whole life (closed by the destructor).
  // Thread: the first call on the loop thread (it sets the fd up); once that
  // succeeded, any thread gets the same fd. Returns kUnimplemented (with the
  // reason) if the base does not use libevent's plain epoll backend (e.g.
  // "poll", "select", or "epoll (with changelist)", whose changes reach the
  // kernel only inside a dispatch), kFailedPrecondition on another thread
  // before the first call or after shutdown, kResourceExhausted when out of
  // fds.
  // Cost: the first call registers a private pipe on the base and finds
  // libevent's epoll fd by its inode in /proc/self/fdinfo (O(open fds)); it
  // then adds that fd into the Loop's own epoll fd (2 fds, kept). After it,
  // one thing changes in the Loop: a loop-thread post, delayed post or
  // zero-delay timer made outside `RunReady()` that schedules work writes
  // the wake-up eventfd once per batch (a syscall), so the fd shows it.
  // Never called: no cost at all (the normal `Run()` path is unchanged).
  absl::StatusOr<int> BackendFd();

  // How long the host may sleep (polling `BackendFd()`) before it must call
  // `RunReady()` even if the fd stays quiet: zero if work is ready now (a
  // task batch, a due timer, an event made active, libevent's deferred
  // callbacks), the time to the earliest timeout otherwise (ctxloop's own
  // delayed tasks and every libevent timeout on `base()`, e.g. evhttp
  // connection timeouts of the host or of an exporter), and
  // `absl::InfiniteDuration()` if nothing is scheduled (or the loop is shut
  // down). Loop thread only (`absl::InfiniteDuration()` elsewhere: there is
  // nothing it can promise). Call it after `RunReady()` and after any own
  // libevent call on `base()`, right before sleeping; `TimeoutMs` turns it
  // into a `poll`/`epoll_wait` timeout.
  // Cost: O(E), E the events added to the base (ctxloop's four, one per fd
  // watch, and the host's): libevent 2.1 has no public "next timeout", so it
  // walks them with `event_base_foreach_event` and asks `event_pending` for
  // each one's timeout, then reads the base's own clock (one `event_add` and
  // `event_del` of a private zero-timeout timer: O(log n) on libevent's
  // timer heap), so the answer is on the clock libevent fires timeouts by.
  // When no libevent timeout is pending it costs the walk only. Timeouts are
  // on libevent's clock: coarse, so the host may wake up to a few ms early
  // once (then it gets the small rest) but never late.
  absl::Duration BackendTimeout() const;

  // `d` as a poll()/epoll_wait() timeout in milliseconds: rounded up (a host
  // never wakes before the deadline and spins), -1 for
  // `absl::InfiniteDuration()`, clamped to INT_MAX.
  static int TimeoutMs(absl::Duration d);

  // Runs what is ready now, without waiting, then returns: one pass of the
  // base, like `uv_run(UV_RUN_NOWAIT)`: cross-thread posts that arrived,
  // the batch of tasks queued at its start, due timers, ready watched fds,
  // the host's ready events on `base()`, and what fd callbacks and timers
  // post meanwhile. Tasks posted by the tasks it runs go into the next
  // batch and are left for the next call (`BackendTimeout()` is then zero),
  // so a task that keeps re-posting itself never keeps the host from its
  // own work. Loop thread only; same errors as `Run()` (kFailedPrecondition
  // on another thread, re-entered, inside `Run()`, or shut down).
  // If the host stops driving (never calls it again): cross-thread posts
  // queue up to `Options::max_pending_foreign`, then are refused with
  // kResourceExhausted (counted); a trace's finish still gets home
  // (`PostNeverFull` skips the bound); loop-thread posts and timers wait;
  // `Shutdown()` and the destructor drain everything as ever [S21].
  // Cost: the pass itself (one non-blocking `epoll_wait` and the callbacks
  // that are ready) plus two flag updates.
  absl::Status RunReady();

  // True on the loop thread. Thread-safe.
  bool IsOnLoopThread() const;

  // Counters (loop thread; `wake_writes` is exact only once posters stopped).
  LoopStats stats() const;

  // Drains and closes the loop; idempotent: later calls return the first
  // report. Afterwards every handle of this loop is stale. Loop thread, and
  // not from inside `Run()` (`kFailedPrecondition`): call `Stop()` there.
  absl::StatusOr<ShutdownReport> Shutdown();

  // The underlying base, to register the host's own libevent events (e.g.
  // evhttp). Use it on the loop thread only, and free those events before the
  // loop is destroyed. The base has libevent's default timer clock
  // (millisecond timeouts on the coarse monotonic clock, no
  // EVENT_BASE_FLAG_PRECISE_TIMER, which would cost a timerfd syscall per
  // loop iteration); ctxloop's own timers (`PostDelayed`) are precise: they
  // wait on a timerfd of their own, programmed only when the earliest
  // deadline moves earlier.
  event_base* base() const;

 private:
  explicit Loop(std::unique_ptr<loop_internal::LoopCore> core);
  std::unique_ptr<loop_internal::LoopCore> core_;
};

// Queues `task` to run once on `ctx`'s loop thread, with `ctx`. Thread-safe.
// Never runs `task` inside `Post`. Returns:
//   kInvalidArgument     for a null handle or an empty task;
//   kFailedPrecondition  if the loop is shutting down or gone, or `ctx` is
//                        destroyed or being destroyed.
// On error `task` has been destroyed on the calling thread before `Post`
// returns; it never reaches the loop. From another thread, also:
//   kResourceExhausted   if the loop holds `Options::max_pending_foreign`
//                        pending cross-thread posts (see `WaitForRoom`).
//
// From another thread, no user code runs while `Post` (or `PostDelayed`)
// holds its pin of the loop: the callable is built (moved or copied) into
// its ingress node before the pin, and a refused one is destroyed after the
// pin ended. So a callable's move constructor or destructor may block, even
// on a lock the loop thread holds while it destroys a context or shuts down
// (both wait for the pins of foreign operations in flight); it only delays
// its own post.
absl::Status Post(ContextHandle ctx, Task task);

// The same for any callable `f` invocable once as `std::move(f)(ctx)`: on
// the loop thread the callable is built in place in the loop's ready queue
// (no `Task` made, no allocation for captures up to five pointers), and run
// and destroyed there. Same errors as above; on error an rvalue `f` has been
// moved from and what it held destroyed on the calling thread before `Post`
// returns (an lvalue `f` is copied, never touched). From another thread it
// is built in place in a node of the loop's lock-free foreign ingress.
template <typename F,
          typename = std::enable_if_t<
              !std::is_same_v<std::decay_t<F>, Task> &&
              !std::is_member_pointer_v<std::decay_t<F>> &&
              std::is_invocable_v<std::decay_t<F>&&, ContextHandle>>>
absl::Status Post(ContextHandle ctx, F&& f);

// Waits, without spinning, until `ctx`'s loop has room for a cross-thread
// post (fewer than `Options::max_pending_foreign` pending), or `deadline`.
// Once the loop is full, it wakes waiters when its backlog falls to half the
// bound (a low-water mark), so a blocked producer resumes with room for a
// burst rather than for one task. Returns OK (at once on the loop thread,
// whose posts are never refused), kDeadlineExceeded, kInvalidArgument for a
// null handle, or kFailedPrecondition if the loop is shutting down or gone.
// Room is not reserved: a post after it may still be refused by a racing
// producer; post, and on kResourceExhausted wait again. Use it on producer
// threads that may block (a worker pool feeding a loop); a producer that is
// itself a loop thread must not block: it retries later (a timer) instead.
// Thread-safe. Cost: a pin and a load when there is room; otherwise a
// mutex and condition variable shared with the loop, which takes them only
// while someone waits.
absl::Status WaitForRoom(ContextHandle ctx, absl::Time deadline);

// Queues `task` to run on `ctx` once `delay` has elapsed (a non-positive delay
// means "as soon as timers are checked"). Thread-safe; same errors as `Post`.
// Equal deadlines run in post order. A huge delay saturates (the deadline
// becomes the end of time) instead of overflowing.
// When the delay starts: on the loop thread, inside `Run()`, it counts from
// the loop's time, which is read once per libevent callback (a batch of
// tasks, a timer run, an fd callback) -- at its first delayed post -- so
// never earlier than the start of the current loop iteration, as in libevent
// and libuv: a callback that runs long before it posts gets its timer that
// much sooner, but never before the loop's time plus `delay`. Outside `Run()`
// on the loop thread, and on any other thread, it counts from the call.
// Cost: no allocation per timer (the task is stored in a recycled node, once
// the loop's timer slab has grown to the most timers pending at once) and no
// lock; on the loop thread at most one clock read per callback (none for a
// zero delay while no timer with a delay is pending), an O(log n) heap insert,
// O(1) when deadlines grow (the usual case). From another thread it is a node
// on the loop's lock-free foreign ingress (the loop inserts the timer when it
// takes the node) and a clock read. A zero delay skips the heap: it runs at
// the next timer run, which is made active at once (no libevent timer) unless
// a batch or a timer run is running, in which case it comes after libevent's
// next poll of fds.
// Reentry: a delayed task may cancel any delayed task (itself included:
// false, it is running), post delayed tasks with any delay, stop the loop
// or destroy contexts; every delayed task not cancelled still runs exactly
// once, in deadline order (post order for equal deadlines), and one posted
// with a zero delay by a task of a timer run waits for the next run.
// Memory bound: per pending delayed task, one node of the loop's timer slab
// (80 bytes on x86-64, plus whatever its callable keeps outside its inline
// storage) and a heap or due-list entry (24 bytes); cancelled entries are
// dropped in bulk, so the heap and due list hold at most about twice and four
// times their pending tasks (plus 64 and 192 entries). They grow to the most
// delayed tasks pending at once and keep that memory, for reuse, until the
// loop is destroyed. Nothing caps the number pending: a caller that keeps
// posting far-future tasks grows the loop's memory without limit.
absl::StatusOr<DelayedTaskHandle> PostDelayed(ContextHandle ctx,
                                              absl::Duration delay, Task task);

// Cancels a delayed task. Returns true if it had not run and now never will
// (on every thread: the loop and a canceller race for one claim per task, and
// the loop runs a task only if it wins it); false if it already ran, is
// running, was cancelled, or its loop is gone. Thread-safe. The cancelled
// task is destroyed on its loop thread: here if called there, otherwise soon
// after, by the loop (a node on its foreign ingress). Cost: O(1), no lock,
// with no search (the handle names the task's node): one compare-and-swap,
// plus a registry pin and an ingress push from another thread.
bool Cancel(const DelayedTaskHandle& handle);

// Opaque id of a hook added by `AddDestroyHook`. A value; 0 is never an id.
struct DestroyHookId {
  uint64_t value = 0;
};

// Runs `hook` once, on ctx's loop thread, with `ctx`, when ctx goes away:
// after `DestroyContext(ctx)` once every task posted to ctx before it has run
// (with ctx's handle still valid, [S7]), or when the loop shuts down (for
// every context still alive, after the drain of posted tasks, and before fd
// watches are torn down, [S10]). Hooks of one context run in the order they
// were added. Loop thread only. Returns:
//   kInvalidArgument     for a null handle or an empty hook;
//   kFailedPrecondition  for a stale or closing (destroyed) context, a loop
//                        whose shutdown has passed its hook phase, or a call
//                        from another thread.
// Hooks may post; what they post runs (it is drained) or is refused, never
// lost. A hook that throws is reported to the error handler. Cost: one map
// node per hook, freed when the hook runs or is removed (O(log n) each), so
// a long-lived context can add and remove hooks forever.
absl::StatusOr<DestroyHookId> AddDestroyHook(ContextHandle ctx, Task hook);

// Removes a hook that has not run; it is destroyed here, unrun. Returns
// kNotFound if it ran, is running, or was removed (also when ctx or its loop is
// gone: their hooks ran), kInvalidArgument for a null handle, and
// kFailedPrecondition on a thread other than the loop thread. Loop thread
// only.
absl::Status RemoveDestroyHook(ContextHandle ctx, DestroyHookId id);

// Creates a child context of `parent` on `parent`'s loop, as
// `Loop::NewChildContext` does; for code that holds only a handle (a task, a
// sink). Must run on that loop's thread.
absl::StatusOr<ContextHandle> NewChildContext(ContextHandle parent,
                                              absl::string_view name = {});

// Destroys `ctx` as `Loop::DestroyContext` does. Must run on its loop thread.
absl::Status DestroyContext(ContextHandle ctx);

// The root context of `ctx`'s loop (see `Loop::root()`); stale if that loop
// is gone, null for a null handle. Thread-safe; computed from the handle.
ContextHandle RootOf(ContextHandle ctx);

// True if the calling thread is `ctx`'s loop thread and the loop is alive.
// Thread-safe.
bool IsOnLoopThread(ContextHandle ctx);

// --- Implementation details --------------------------------------------------

namespace loop_internal {
// How `Post` hands `f` to its slow path: a small trivially copyable callable
// (a lambda capturing a few pointers or ids) by value, anything else by
// reference. By value, the copy is made only on the slow path; a reference
// would make the caller build `f` in memory before the fast path too, which
// then copies it into the ready queue with a wide load of what was just
// stored narrowly (a store-forwarding stall on every same-thread post).
template <typename F>
using PostSlowPathArg =
    std::conditional_t<std::is_trivially_copyable_v<std::decay_t<F>> &&
                           sizeof(std::decay_t<F>) <= 64,
                       std::decay_t<F>, F&&>;

// Everything but a same-thread post that the cache resolves: a foreign post
// builds `f` in its ingress node (local_post.h); anything else wraps `f` in a
// `Task` (which is destroyed here on error) and takes the general path.
template <typename F, bool kBounded = true>
ABSL_ATTRIBUTE_NOINLINE absl::Status PostSlowPath(ContextHandle ctx,
                                                  PostSlowPathArg<F> f) {
  using Arg = PostSlowPathArg<F>;
  // An empty std::function would make a non-empty Task: refuse it here, with
  // the errors (and their order) of the Task overload.
  if (IsEmptyCallable(f)) return ::ctxloop::Post(ctx, Task());
  if (ctx.is_null()) return ::ctxloop::Post(ctx, Task(static_cast<Arg&&>(f)));
  // Built in place in an ingress node before any loop is pinned: the
  // callable's constructor is user code, which never runs under a pin.
  ForeignPostSlot slot;
  ::new (slot.task_storage()) Task(static_cast<Arg&&>(f));
  bool general;
  absl::Status s = slot.Commit(ctx, &general, kBounded);
  if (ABSL_PREDICT_TRUE(!general)) return s;
  // This thread's own loop (a cold owner cache), or a loop closed to
  // foreign threads.
  return PostGeneral(ctx, slot.TakeTask());
}

// `Post` for the library's own posts that must get home even to a loop whose
// cross-thread backlog is full (a trace's finish, a trace end): the same,
// except that a cross-thread post skips `Options::max_pending_foreign`.
// Only a closed context or loop refuses it.
template <typename F>
inline absl::Status PostNeverFull(ContextHandle ctx, F&& f) {
  LocalPoster* poster = CachedLocalPoster(ctx);
  if (ABSL_PREDICT_TRUE(poster != nullptr && poster->Accepts(ctx) &&
                        !IsEmptyCallable(f))) {
    poster->Emplace(ctx, std::forward<F>(f));
    return absl::OkStatus();
  }
  return PostSlowPath<F, false>(ctx, std::forward<F>(f));
}
}  // namespace loop_internal

template <typename F, typename>
inline absl::Status Post(ContextHandle ctx, F&& f) {
  loop_internal::LocalPoster* poster = loop_internal::CachedLocalPoster(ctx);
  if (ABSL_PREDICT_TRUE(poster != nullptr && poster->Accepts(ctx) &&
                        !loop_internal::IsEmptyCallable(f))) {
    poster->Emplace(ctx, std::forward<F>(f));
    return absl::OkStatus();
  }
  return loop_internal::PostSlowPath<F>(ctx, std::forward<F>(f));
}

}  // namespace ctxloop

#endif  // CTXLOOP_LOOP_LOOP_H_
