// Copyright 2026 The ctxloop Authors.
//
// The model-based fuzzer: decoder, executor, checker. See model.h.
//
// How a run goes:
//   1. The header bytes choose 2-4 loops and 1-2 foreign threads; the rest
//      decode into operations (5 bytes each: opcode, executor, 3 arguments).
//   2. The main thread dispatches each operation to its executor without
//      waiting: to a loop by posting it to one of that loop's live contexts,
//      to a foreign thread through its queue. Arguments name objects by
//      index into the model's tables; an operation whose object does not
//      exist (yet, or any more) does nothing. So operations really race.
//   3. Teardown [T1]..[T6] (numbered where done): join the foreign threads,
//      quiesce, end every stream and scope, check "current" values and
//      context keys on live contexts, join the loops, check everything else.
//
// What the model expects, beyond the header contracts, is stated where it is
// checked (a violation's message says which behaviour broke); those checks
// fail on code that has the defect, which is their purpose.

#include "ctxloop/tests/fuzz/model/model.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <deque>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "ctxloop/loop/context_key.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/loop/loop_thread.h"
#include "ctxloop/loop/mutex.h"
#include "ctxloop/stream/stream.h"
#include "ctxloop/tests/fuzz/model/adapter.h"
#include "ctxloop/tests/fuzz/model/recorder.h"
#include "ctxloop/trace/tracer.h"

namespace ctxloop {
namespace fuzz {

std::string ModelResult::Summary() const {
  std::string out =
      absl::StrCat(ops, " ops, ", loops, " loops (", driven_loops, " driven), ",
                   foreign_threads, " foreign threads, ", tasks, " posts, ",
                   trace_events, " trace events");
  absl::StrAppend(&out, "\n  did:");
  for (const auto& [name, n] : coverage)
    absl::StrAppend(&out, " ", name, "=", n);
  if (violations.empty()) return out + "\n  all invariants hold";
  for (const auto& [name, n] : violations) {
    absl::StrAppend(&out, "\n  BROKEN ", name, " x", n);
    auto it = examples.find(name);
    if (it == examples.end()) continue;
    for (const std::string& e : it->second) absl::StrAppend(&out, "\n    ", e);
  }
  return out;
}

std::vector<uint8_t> BytesForSeed(uint64_t seed, size_t ops) {
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + 1);
  std::vector<uint8_t> out(3 + 5 * ops);
  for (uint8_t& b : out) b = static_cast<uint8_t>(rng());
  return out;
}

namespace {

using ctxloop::Mutex;
using ctxloop::MutexLock;

constexpr uint64_t kNever = std::numeric_limits<uint64_t>::max();

// Process-wide keys (a key's identity is process-wide; see context_key.h).
const ContextKey<int>& IntKey() {
  static const auto* k = new ContextKey<int>("fuzz_int", -1);
  return *k;
}
const ContextKey<std::string>& StrKey() {
  static const auto* k = new ContextKey<std::string>("fuzz_str", "default");
  return *k;
}
constexpr int kKeys = 2;
std::string DefaultOf(int key) { return key == 0 ? "-1" : "default"; }
std::string ValueFor(int key, uint8_t v) {
  if (key == 0) return std::to_string(v);
  // Long enough to be heap-allocated half the time.
  return std::string(v % 2 ? 40 : 3, static_cast<char>('a' + v % 26));
}

// --- Decoding ----------------------------------------------------------------

enum class OpCode : uint8_t {
  kNewContext,
  kNewChild,
  kDestroyContext,
  kPost,
  kPostDelayed,
  kCancel,
  kKeySet,
  kKeyReset,
  kKeyGet,
  kStartTrace,
  kStartSpan,
  kFinishTrace,
  kFinishSpan,
  kDropScope,
  kMakeStream,
  kAttach,
  kEmit,
  kEndWriter,
  kCancelSub,
  kDropConsumer,
  kStopLoop,
  kDestroyLoop,
  kWatch,
  kWriteFd,
  kStopWatch,
  kBarrier,
  // Not in the legacy table (ModelOptions::legacy_ops).
  kArmReentry,     // Arms the next decoded operation for one callback kind.
  kTimerChain,     // Zero-delay timers that cancel each other and re-arm.
  kAddHook,        // AddDestroyHook (sometimes removed at once).
  kHostilePost,    // Post of a callable with a hostile move constructor.
  kLockedDestroy,  // DestroyContext holding the hostile callables' mutex.
  kThreadPosts,    // A thread that posts and exits (thread_local too).
};

// Opcode frequencies: one entry per share of the opcode byte.
constexpr OpCode kOpTable[] = {
    OpCode::kNewContext,   OpCode::kNewContext,     OpCode::kNewChild,
    OpCode::kNewChild,     OpCode::kDestroyContext, OpCode::kPost,
    OpCode::kPost,         OpCode::kPost,           OpCode::kPostDelayed,
    OpCode::kPostDelayed,  OpCode::kCancel,         OpCode::kKeySet,
    OpCode::kKeySet,       OpCode::kKeyReset,       OpCode::kKeyReset,
    OpCode::kKeyGet,       OpCode::kStartTrace,     OpCode::kStartTrace,
    OpCode::kStartTrace,   OpCode::kStartTrace,     OpCode::kStartTrace,
    OpCode::kStartSpan,    OpCode::kStartSpan,      OpCode::kStartSpan,
    OpCode::kStartSpan,    OpCode::kStartSpan,      OpCode::kStartSpan,
    OpCode::kFinishTrace,  OpCode::kFinishTrace,    OpCode::kFinishTrace,
    OpCode::kFinishSpan,   OpCode::kFinishSpan,     OpCode::kFinishSpan,
    OpCode::kFinishSpan,   OpCode::kDropScope,      OpCode::kMakeStream,
    OpCode::kMakeStream,   OpCode::kMakeStream,     OpCode::kAttach,
    OpCode::kAttach,       OpCode::kAttach,         OpCode::kEmit,
    OpCode::kEmit,         OpCode::kEmit,           OpCode::kEmit,
    OpCode::kEndWriter,    OpCode::kEndWriter,      OpCode::kCancelSub,
    OpCode::kDropConsumer, OpCode::kStopLoop,       OpCode::kDestroyLoop,
    OpCode::kWatch,        OpCode::kWatch,          OpCode::kWriteFd,
    OpCode::kWriteFd,      OpCode::kStopWatch,      OpCode::kBarrier,
};
constexpr size_t kOpTableSize = sizeof(kOpTable) / sizeof(kOpTable[0]);

// The table for new inputs: the legacy one (so its opcode bytes below 57 keep
// their meaning), then reentry, timer chains, destroy hooks, hostile
// callables and poster threads.
const std::vector<OpCode>& ExtendedOpTable() {
  static const auto* table = [] {
    auto* t = new std::vector<OpCode>(kOpTable, kOpTable + kOpTableSize);
    const std::pair<OpCode, int> extra[] = {
        {OpCode::kArmReentry, 8},    {OpCode::kTimerChain, 3},
        {OpCode::kAddHook, 3},       {OpCode::kHostilePost, 4},
        {OpCode::kLockedDestroy, 2}, {OpCode::kThreadPosts, 3},
    };
    for (const auto& [code, n] : extra) t->insert(t->end(), n, code);
    return t;
  }();
  return *table;
}

// Names for ModelOptions::disabled (the operations added with reentry).
const char* ExtendedOpName(OpCode code) {
  switch (code) {
    case OpCode::kArmReentry:
      return "reentry";
    case OpCode::kTimerChain:
      return "timer_chain";
    case OpCode::kAddHook:
      return "hooks";
    case OpCode::kHostilePost:
      return "hostile";
    case OpCode::kLockedDestroy:
      return "locked_destroy";
    case OpCode::kThreadPosts:
      return "threads";
    default:
      return "";
  }
}

// The callbacks an armed operation can run from (kArmReentry).
enum class Cb : uint8_t {
  kTask,
  kTimer,
  kFd,
  kSink,
  kProducer,
  kProcessor,
  kOnFinished,
  kHook,
};
constexpr int kCbKinds = 8;
const char* CbName(Cb cb) {
  static const char* const names[kCbKinds] = {
      "task",     "timer",     "fd",          "sink",
      "producer", "processor", "on_finished", "hook"};
  return names[static_cast<int>(cb)];
}
// Armed operations waiting per callback kind; more are dropped.
constexpr size_t kMaxArmed = 8;
// Poster threads per run (kThreadPosts); more are not started.
constexpr int kMaxPosterThreads = 24;
// How long a hostile move constructor waits for the mutex before it reports
// a deadlock and goes on without it.
constexpr auto kHostileWait = std::chrono::milliseconds(2000);
// How long a teardown round trip waits for room in a full loop (well under
// the watchdog; a loop that never drains is a hang, reported as one).
constexpr absl::Duration kRoundTripTimeout = absl::Seconds(10);
// The phase a run is in, for the watchdog's message.
std::atomic<const char*> g_phase{"setup"};
// Nonzero while an armed operation runs (no reentry from inside it).
thread_local int t_reentry_depth = 0;

struct Op {
  OpCode code;
  uint8_t exec;
  uint8_t a, b, c;
  // kArmReentry: the operation armed (decoded from the next five bytes).
  OpCode nested_code = OpCode::kPost;
  uint8_t nested_exec = 0, nested_a = 0, nested_b = 0, nested_c = 0;
  Op Nested() const {
    return Op{nested_code, nested_exec, nested_a, nested_b, nested_c};
  }
};

// Operations that may not run inside a callback: they block on the loops
// (barrier, joining a loop) or arm more.
OpCode ReentrantCode(OpCode code) {
  switch (code) {
    case OpCode::kBarrier:
    case OpCode::kArmReentry:
      return OpCode::kPostDelayed;
    case OpCode::kDestroyLoop:
      return OpCode::kStopLoop;
    default:
      return code;
  }
}
// What an armed operation may still do once teardown has begun (streams and
// scopes are being ended; nothing new of those may start).
bool AllowedInTeardown(OpCode code) {
  switch (code) {
    case OpCode::kPost:
    case OpCode::kPostDelayed:
    case OpCode::kCancel:
    case OpCode::kDestroyContext:
    case OpCode::kStopLoop:
    case OpCode::kKeyGet:
    case OpCode::kTimerChain:
    case OpCode::kAddHook:
    case OpCode::kHostilePost:
      return true;
    default:
      return false;
  }
}

class ByteReader {
 public:
  ByteReader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  uint8_t Next() { return pos_ < size_ ? data_[pos_++] : 0; }
  bool done() const { return pos_ >= size_; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

// --- Threads -----------------------------------------------------------------

// A plain thread that runs closures in order.
class Worker {
 public:
  Worker() : thread_([this] { Run(); }) {
    MutexLock lock(&mu_);
    while (tid_ == 0) cv_.Wait(&mu_);
  }
  ~Worker() { Join(); }

  void Push(std::function<void()> fn) {
    MutexLock lock(&mu_);
    queue_.push_back(std::move(fn));
    cv_.SignalAll();
  }
  // Waits until everything pushed so far has run.
  void Drain() {
    MutexLock lock(&mu_);
    while (!queue_.empty() || busy_) cv_.Wait(&mu_);
  }
  void Join() {
    {
      MutexLock lock(&mu_);
      if (quit_) return;
      quit_ = true;
      cv_.SignalAll();
    }
    thread_.join();
  }
  int64_t tid() {
    MutexLock lock(&mu_);
    return tid_;
  }

 private:
  void Run() {
    MutexLock lock(&mu_);
    tid_ = ThisTid();
    cv_.SignalAll();
    for (;;) {
      while (queue_.empty() && !quit_) cv_.Wait(&mu_);
      if (queue_.empty()) return;
      std::function<void()> fn = std::move(queue_.front());
      queue_.pop_front();
      busy_ = true;
      mu_.Unlock();
      fn();
      fn = nullptr;
      mu_.Lock();
      busy_ = false;
      cv_.SignalAll();
    }
  }

  Mutex mu_;
  ctxloop::CondVar cv_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool busy_ ABSL_GUARDED_BY(mu_) = false;
  bool quit_ ABSL_GUARDED_BY(mu_) = false;
  int64_t tid_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

// A host's own lock, with a bounded acquire (a flag under a mutex and a
// condition variable: TSan does not see std::timed_mutex's timed lock).
class HostLock {
 public:
  void Lock() {
    MutexLock lock(&mu_);
    while (held_) cv_.Wait(&mu_);
    held_ = true;
  }
  // False if still held by another thread after `wait`.
  bool LockFor(std::chrono::milliseconds wait) {
    const auto deadline = std::chrono::steady_clock::now() + wait;
    MutexLock lock(&mu_);
    while (held_) {
      if (!cv_.WaitUntil(&mu_, deadline) && held_ &&
          std::chrono::steady_clock::now() >= deadline) {
        return false;
      }
    }
    held_ = true;
    return true;
  }
  void Unlock() {
    MutexLock lock(&mu_);
    held_ = false;
    cv_.SignalAll();
  }

 private:
  Mutex mu_;
  ctxloop::CondVar cv_;
  bool held_ ABSL_GUARDED_BY(mu_) = false;
};

// --- Model records -----------------------------------------------------------

struct LoopRec {
  std::unique_ptr<ModelLoopThread> thread;
  ContextHandle root;
  int64_t tid = 0;
  Loop* loop = nullptr;  // Valid while `alive` (or on its own thread).
  Mutex life_mu;
  bool alive ABSL_GUARDED_BY(life_mu) = true;
  std::atomic<uint64_t> destroy_seq{kNever};  // When destroying began.
  ShutdownReport report;
  bool short_drain = false;  // Small max_shutdown_rounds: [S3] drops allowed.
  // Joined by an operation (not at teardown): its timers may never fire.
  std::atomic<bool> destroyed_early{false};
};

struct KeyModel {
  std::vector<std::pair<uint64_t, std::string>> stack;  // token id, value
  std::string base;  // Inherited at creation, or the default.
  std::string Effective() const {
    return stack.empty() ? base : stack.back().second;
  }
};

struct CtxRec {
  ContextHandle h;
  int loop = 0;
  bool is_root = false;
  bool destroyed = false;
  uint64_t destroy_seq = kNever;
  TraceId trace0;  // Current trace/span when created (inherited).
  SpanId span0;
  KeyModel keys[kKeys];
  bool hooks_ran = false;  // One of its destroy hooks ran.
};

struct TokRec {
  Token token;
  int ctx = 0;
  int key = 0;
  uint64_t id = 0;
  bool used = false;
};

struct TaskRec {
  ContextHandle target;
  int loop = -1;
  int ctx = -1;
  bool delayed = false;
  bool op = false;  // The harness posting an operation.
  bool post_returned = false;
  bool post_ok = false;
  std::string post_error;
  int runs = 0;
  int destroyed_unrun = 0;
  bool cancel_true = false;
  bool threw = false;  // Post threw (a hostile move constructor).
  // Delayed: the deadline, in steady-clock nanoseconds.
  int64_t due_ns = 0;
  DelayedTaskHandle handle;
};

struct HookRec {
  ContextHandle ctx;
  int loop = -1;
  int slot = -1;
  bool added = false;
  bool removed = false;
  int runs = 0;
};

struct FinRec {
  bool finish_ok = false;
  int calls = 0;
};

int64_t SteadyNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct TraceRec {
  std::optional<TraceScope> scope;
  int ctx = 0;
};
struct SpanRec {
  std::optional<SpanScope> scope;
  int ctx = 0;
};

class Harness;

struct StreamRec {
  int id = 0;
  ContextHandle producer;
  int producer_loop = -1;
  bool throwing_producer = false;
  // Guarded by Harness::mu_.
  std::optional<StreamWriter<int>> writer;
  std::optional<StreamReader<int>> reader;
  std::shared_ptr<StreamSubscription> sub;
  bool attached = false;
  // Set before Attach, read by the sink (ordered by the stream's own lock).
  ContextHandle sink;
  int sink_slot = -1;
  int sink_loop = -1;
  int sink_mode = 0;
  Mutex weak_mu;
  std::weak_ptr<StreamSubscription> weak_sub ABSL_GUARDED_BY(weak_mu);
  // Written by the writer's current holder only.
  int next_value = 0;
  std::atomic<int> emitted{0};
  std::atomic<int> received{0};
  std::atomic<int> completes{0};
  std::atomic<int> closes{0};
};

struct WatchRec {
  std::optional<FdWatch> watch;  // Guarded by Harness::mu_.
  int fds[2] = {-1, -1};
  bool close_on_stop = false;
  bool registered = false;  // The library owns fds[0] if close_on_stop.
  ContextHandle ctx;
  int loop = -1;
  std::atomic<bool> stop_returned{false};
  std::atomic<int> calls{0};
};

// Where an operation runs.
struct Exec {
  int loop = -1;       // Loop index, or -1 on a foreign thread.
  ContextHandle here;  // The context the operation runs on (null: foreign).
  int here_slot = -1;  // Its model slot.
};

// --- The harness -------------------------------------------------------------

class Harness {
 public:
  Harness(const ModelOptions& options, ModelResult* result)
      : options_(options), result_(result) {}

  void Run(const uint8_t* data, size_t size);

  // Called from tasks, callbacks and destructors.
  void Violation(const std::string& invariant, const std::string& message);
  void Covered(const char* what) {
    MutexLock lock(&violations_mu_);
    ++result_->coverage[what];
  }
  void Covered(const std::string& what) {
    MutexLock lock(&violations_mu_);
    ++result_->coverage[what];
  }
  // Runs the operation armed for `kind` (if any) here, inside that callback,
  // on the calling thread; `ctx` is the context the callback runs on.
  void Reenter(Cb kind, ContextHandle ctx);
  // A hostile move constructor's action (`mode`, see DoHostilePost) on its
  // `moves`-th move; may throw.
  void HostileMove(uint8_t mode, int moves);
  void HookRan(uint64_t id, ContextHandle ctx);
  void FinishedCallback(uint64_t id, const ExecutionSite& ran);
  uint64_t NextSeq() { return seq_.fetch_add(1) + 1; }
  bool OnLoop(int loop) const { return ThisTid() == loops_[loop]->tid; }
  // Posts a counted task to `ctx` (slot `ctx_slot`, -1 if not a model
  // context), which may throw after running. Returns the post's status.
  absl::Status PostCounted(ContextHandle ctx, int loop, int ctx_slot, bool op,
                           bool throws, std::function<void(ContextHandle)> body,
                           const absl::Duration* delay = nullptr,
                           uint64_t* id_out = nullptr);
  void TaskRan(uint64_t id, ContextHandle ctx);
  void TaskLost(uint64_t id);

 private:
  friend class DtorPoster;
  friend struct ExitPoster;
  void Setup(ByteReader& in);
  void Dispatch(const Op& op);
  void Execute(const Op& op, const Exec& x);
  void Barrier();
  // One round trip through loop `l`'s task queue: every task posted to it
  // before has run when this returns true. A loop whose cross-thread backlog
  // is full refuses the round trip's post (kResourceExhausted): waits for
  // room and posts again, up to `kRoundTripTimeout`. Runs `fn` (if any) on
  // the loop thread in that round trip. False if the loop is gone (or never
  // drained in time).
  bool RoundTrip(int l, const std::function<void(Loop&)>& fn = nullptr);
  // ModelOptions::teardown_stall_ms: holds each live loop and fills its
  // backlog behind the holding task.
  void StallLoops();
  void Quiesce();
  void Teardown();
  void CheckTasks();
  void CheckHooksAndFinishes();
  void JoinPosterThreads();
  void CheckTraceEvents();
  uint64_t Progress();

  // Operations.
  void DoNewContext(const Op& op, const Exec& x);
  void DoNewChild(const Op& op, const Exec& x);
  // With `locked`, holds the hostile callables' mutex around the call (on
  // the loop thread), as a host holding its own lock would.
  void DoDestroyContext(const Op& op, const Exec& x, bool locked = false);
  void DoArm(const Op& op);
  void DoTimerChain(const Op& op, const Exec& x);
  void DoAddHook(const Op& op, const Exec& x);
  void DoHostilePost(const Op& op, const Exec& x);
  void DoThreadPosts(const Op& op);
  void DoPost(const Op& op, const Exec& x, bool delayed);
  void DoCancel(const Op& op);
  void DoKeySet(const Op& op, const Exec& x);
  void DoKeyReset(const Op& op, const Exec& x);
  void DoKeyGet(const Op& op, const Exec& x);
  void DoStartTrace(const Op& op, const Exec& x);
  void DoStartSpan(const Op& op, const Exec& x);
  void DoFinish(const Op& op, const Exec& x, bool trace, bool drop);
  void DoMakeStream(const Op& op, const Exec& x);
  void DoAttach(const Op& op);
  void DoEmit(const Op& op);
  void DoEndWriter(const Op& op);
  void DoCancelSub(const Op& op);
  void DoDropConsumer(const Op& op);
  void DoStopLoop(const Op& op);
  void DoDestroyLoop(const Op& op);
  void DoWatch(const Op& op, const Exec& x);
  void DoWriteFd(const Op& op);
  void DoStopWatch(const Op& op);

  // Stream and watch callbacks.
  void OnSinkEvent(StreamRec* s, ContextHandle ctx, int v);
  void OnSinkComplete(StreamRec* s, ContextHandle ctx, const absl::Status& st);
  void OnProducerCallback(StreamRec* s, ContextHandle ctx, bool closed);
  void OnWatchReady(WatchRec* w, ContextHandle ctx);

  // Where a callback runs: its loop (by thread) and context, or foreign.
  Exec ExecHere(ContextHandle ctx);
  // Context slot `i` (mod size), or -1 if none. Needs mu_.
  int PickCtx(uint8_t i) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return ctxs_.empty() ? -1 : static_cast<int>(i % ctxs_.size());
  }
  // Mostly the context the operation runs on (so loop-thread calls mostly
  // succeed), sometimes any context (so they are refused).
  // PickTarget under the lock, returning a copy of the target's record and
  // its index in `*index` (the preamble of most context operations).
  CtxRec PickTargetRecord(const Exec& x, uint8_t a, int* index)
      ABSL_LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    *index = PickTarget(x, a);
    return ctxs_[*index];
  }
  int PickTarget(const Exec& x, uint8_t i) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (x.here_slot >= 0 && (i & 0x80) == 0) return x.here_slot;
    return PickCtx(i);
  }
  bool LoopDying(int loop) const {
    return loops_[loop]->destroy_seq.load() != kNever;
  }
  int LoopOf(ContextHandle h) const {
    for (size_t i = 0; i < loops_.size(); ++i) {
      if (loops_[i]->root.loop_id() == h.loop_id() && !h.is_null()) {
        return static_cast<int>(i);
      }
    }
    return -1;
  }
  // Expects `s` OK iff `want_ok` (when `strict`); reports otherwise.
  void ExpectStatus(const char* invariant, const std::string& what,
                    bool want_ok, bool strict, const absl::Status& s);
  void ExpectRefusedOnDestroyed(const std::string& what, bool destroyed,
                                const absl::Status& s);

  const ModelOptions options_;
  ModelResult* const result_;
  std::atomic<uint64_t> seq_{0};

  std::vector<std::unique_ptr<LoopRec>> loops_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<int64_t> worker_tids_;
  std::shared_ptr<EventRecorder> recorder_;
  std::shared_ptr<ThrowingProcessor> thrower_;
  std::unique_ptr<Tracer> tracer_;
  std::atomic<uint64_t> loop_errors_{0};
  std::atomic<uint64_t> processor_errors_{0};
  std::atomic<uint64_t> callbacks_{0};  // Progress of sinks and watches.

  Mutex violations_mu_;

  Mutex tasks_mu_;
  std::deque<TaskRec> tasks_ ABSL_GUARDED_BY(tasks_mu_);

  // The model's tables. Library calls are never made with mu_ held, except
  // ones that cannot call back (handle copies, AsParent).
  Mutex mu_;
  std::vector<CtxRec> ctxs_ ABSL_GUARDED_BY(mu_);
  std::vector<TokRec> tokens_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> timers_ ABSL_GUARDED_BY(mu_);  // Task ids.
  std::deque<TraceRec> traces_ ABSL_GUARDED_BY(mu_);
  std::deque<SpanRec> spans_ ABSL_GUARDED_BY(mu_);
  std::vector<SpanParent> parents_ ABSL_GUARDED_BY(mu_);
  std::deque<StreamRec> streams_ ABSL_GUARDED_BY(mu_);
  std::deque<WatchRec> watches_ ABSL_GUARDED_BY(mu_);
  // Item key -> why its end must be off origin.
  std::unordered_map<std::string, std::string> expect_off_origin_
      ABSL_GUARDED_BY(mu_);
  uint64_t next_token_id_ ABSL_GUARDED_BY(mu_) = 0;

  // Reentry: operations armed per callback kind. Mode 0: any operation runs
  // when armed; 1 (teardown began): only AllowedInTeardown ones; 2: none.
  Mutex reentry_mu_;
  std::deque<Op> armed_[kCbKinds] ABSL_GUARDED_BY(reentry_mu_);
  std::atomic<int> reentry_mode_{0};

  // The mutex hostile move constructors take, and who holds it (a tid).
  HostLock hostile_mu_;
  std::atomic<int64_t> hostile_holder_{0};
  std::atomic<bool> deadlock_seen_{false};

  // Poster threads (kThreadPosts), joined at [T1].
  Mutex threads_mu_;
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(threads_mu_);

  Mutex hooks_mu_;
  std::deque<HookRec> hooks_ ABSL_GUARDED_BY(hooks_mu_);
  Mutex fins_mu_;
  std::deque<FinRec> fins_ ABSL_GUARDED_BY(fins_mu_);

  // The latest deadline of any delayed post, and when [T1] began to settle:
  // every timer due by then must run.
  std::atomic<int64_t> max_due_ns_{0};
  int64_t quiesced_ns_ = 0;
};

// Posts a counted task to a loop's root when destroyed, as a destructor that
// posts work would (such posts must run or be refused).
class DtorPoster {
 public:
  DtorPoster(Harness* h, ContextHandle root, int loop)
      : h_(h), root_(root), loop_(loop) {}
  DtorPoster(DtorPoster&& o) noexcept
      : h_(std::exchange(o.h_, nullptr)), root_(o.root_), loop_(o.loop_) {}
  DtorPoster& operator=(DtorPoster&&) = delete;
  ~DtorPoster() {
    if (h_ != nullptr) {
      (void)h_->PostCounted(root_, loop_, -1, false, false,
                            [](ContextHandle) {});
    }
  }

 private:
  Harness* h_;
  ContextHandle root_;
  int loop_;
};

// Marks a counted task run, or destroyed unrun.
class TaskProbe {
 public:
  TaskProbe(Harness* h, uint64_t id) : h_(h), id_(id) {}
  TaskProbe(TaskProbe&& o) noexcept
      : h_(std::exchange(o.h_, nullptr)), id_(o.id_) {}
  TaskProbe& operator=(TaskProbe&&) = delete;
  ~TaskProbe() {
    if (h_ != nullptr) h_->TaskLost(id_);
  }
  void Ran(ContextHandle ctx) { std::exchange(h_, nullptr)->TaskRan(id_, ctx); }

 private:
  Harness* h_;
  uint64_t id_;
};

// A callable whose move constructor is hostile (Harness::HostileMove): it
// throws, sleeps a bounded time, or takes a mutex the loop thread may hold.
// Posted through the `Post` template, so the library moves it itself.
class Hostile {
 public:
  Hostile(Harness* h, uint64_t id, uint8_t mode)
      : h_(h), mode_(mode), moves_(0), probe_(h, id) {}
  // The action runs before anything is taken from `o`: if it throws, `o`
  // still owns the task.
  Hostile(Hostile&& o)
      : h_(o.h_), mode_(o.mode_), moves_(Act(o)), probe_(std::move(o.probe_)) {}
  Hostile& operator=(Hostile&&) = delete;
  void operator()(ContextHandle ctx) && {
    probe_.Ran(ctx);
    h_->Reenter(Cb::kTask, ctx);
  }

 private:
  static int Act(const Hostile& o) {
    o.h_->HostileMove(o.mode_, o.moves_ + 1);
    return o.moves_ + 1;
  }
  Harness* h_;
  uint8_t mode_;
  int moves_;
  TaskProbe probe_;
};

// A `thread_local` that posts from its destructor, at thread exit
// (kThreadPosts): constructed before the thread's first post, it is
// destroyed after the library's per-thread state; after it, before.
struct ExitPoster {
  Harness* h = nullptr;
  ContextHandle ctx;
  int loop = -1;
  int slot = -1;
  int posts = 0;
  ~ExitPoster() {
    if (h == nullptr) return;
    for (int i = 0; i < posts; ++i) {
      (void)h->PostCounted(ctx, loop, slot, false, false, [](ContextHandle) {});
    }
    h->Covered("post from thread_local destructor");
  }
};
ExitPoster& ThreadExitPoster() {
  thread_local ExitPoster poster;
  return poster;
}

void Harness::Violation(const std::string& invariant,
                        const std::string& message) {
  MutexLock lock(&violations_mu_);
  ++result_->violations[invariant];
  std::vector<std::string>& ex = result_->examples[invariant];
  if (ex.size() < 3) ex.push_back(message);
  if (options_.verbose) {
    std::fprintf(stderr, "fuzz: %s: %s\n", invariant.c_str(), message.c_str());
  }
}

void Harness::ExpectStatus(const char* invariant, const std::string& what,
                           bool want_ok, bool strict, const absl::Status& s) {
  if (want_ok && strict && !s.ok()) {
    Violation(invariant,
              absl::StrCat(what, " failed where it must work: ", s.ToString()));
  } else if (!want_ok && s.ok()) {
    Violation(invariant, absl::StrCat(what, " succeeded where it must fail"));
  }
}

void Harness::ExpectRefusedOnDestroyed(const std::string& what, bool destroyed,
                                       const absl::Status& s) {
  if (destroyed && s.ok()) {
    Violation("ctx.destroyed_accepts",
              absl::StrCat(what,
                           " on a destroyed context succeeded on its "
                           "loop thread"));
  }
}

absl::Status Harness::PostCounted(ContextHandle ctx, int loop, int ctx_slot,
                                  bool op, bool throws,
                                  std::function<void(ContextHandle)> body,
                                  const absl::Duration* delay,
                                  uint64_t* id_out) {
  uint64_t id;
  {
    MutexLock lock(&tasks_mu_);
    id = tasks_.size();
    TaskRec r;
    r.target = ctx;
    r.loop = loop;
    r.ctx = ctx_slot;
    r.op = op;
    r.delayed = delay != nullptr;
    if (delay != nullptr) {
      r.due_ns = SteadyNowNs() + absl::ToInt64Nanoseconds(*delay);
      int64_t m = max_due_ns_.load();
      while (m < r.due_ns && !max_due_ns_.compare_exchange_weak(m, r.due_ns)) {
      }
    }
    tasks_.push_back(std::move(r));
  }
  if (id_out != nullptr) *id_out = id;
  Task task = [probe = TaskProbe(this, id), body = std::move(body),
               throws](ContextHandle c) mutable {
    probe.Ran(c);
    body(c);
    if (throws) throw std::runtime_error("fuzz: task throws");
  };
  absl::Status s;
  DelayedTaskHandle handle;
  if (delay == nullptr) {
    s = Post(ctx, std::move(task));
  } else {
    absl::StatusOr<DelayedTaskHandle> h =
        PostDelayed(ctx, *delay, std::move(task));
    s = h.status();
    if (h.ok()) handle = *h;
  }
  bool kept = false;
  {
    MutexLock lock(&tasks_mu_);
    TaskRec& r = tasks_[id];
    r.post_returned = true;
    r.post_ok = s.ok();
    r.handle = handle;
    if (!s.ok()) {
      r.post_error = s.ToString();
      kept = r.destroyed_unrun != 1 || r.runs != 0;
    }
  }
  if (kept) {  // loop.h: on error the task is destroyed before Post returns.
    Violation("post.refused_kept",
              absl::StrCat(delay == nullptr ? "Post" : "PostDelayed", " to ",
                           ctx.DebugString(), " refused (", s.ToString(),
                           ") without destroying its task first"));
  }
  return s;
}

void Harness::TaskRan(uint64_t id, ContextHandle ctx) {
  TaskRec r;
  {
    MutexLock lock(&tasks_mu_);
    ++tasks_[id].runs;
    r = tasks_[id];
  }
  if (r.runs > 1) {
    Violation("post.exactly_once",
              absl::StrCat("task to ", r.target.DebugString(), " ran twice"));
  }
  if (ctx != r.target) {
    Violation("post.thread", absl::StrCat("task for ", r.target.DebugString(),
                                          " ran on ", ctx.DebugString()));
  }
  if (r.loop >= 0 && !OnLoop(r.loop)) {
    Violation("post.thread", absl::StrCat("task for ", r.target.DebugString(),
                                          " ran off its loop thread"));
  }
  if (r.ctx >= 0) {
    bool hooks_ran;
    {
      MutexLock lock(&mu_);
      hooks_ran = ctxs_[r.ctx].hooks_ran && ctxs_[r.ctx].h == r.target;
    }
    if (hooks_ran) {
      Violation("post.after_hooks",
                absl::StrCat(r.delayed ? "delayed task" : "task", " ran on ",
                             r.target.DebugString(),
                             " after its destroy hooks ran ([S7]/[S10])"));
    }
  }
  if (r.delayed && r.ctx >= 0) {
    bool destroyed;
    {
      MutexLock lock(&mu_);
      destroyed = ctxs_[r.ctx].destroyed;
    }
    if (destroyed) {
      Violation("post.after_destroy",
                absl::StrCat("delayed task ran on ", r.target.DebugString(),
                             " after DestroyContext cancelled it"));
    }
  }
}

void Harness::TaskLost(uint64_t id) {
  MutexLock lock(&tasks_mu_);
  ++tasks_[id].destroyed_unrun;
}

// --- Setup and dispatch ------------------------------------------------------

void Harness::Setup(ByteReader& in) {
  const int nloops = 2 + in.Next() % 3;
  // Bit 0: workers; bits 1.. choose the loops a host loop drives.
  const uint8_t workers_byte = in.Next();
  const int nworkers = 1 + workers_byte % 2;
  const uint8_t flags = in.Next();
  recorder_ = std::make_shared<EventRecorder>(
      &seq_, [this](ContextHandle origin) { Reenter(Cb::kProcessor, origin); });
  Tracer::Options topts;
  if (flags % 4 == 0) {  // Processors that throw.
    thrower_ = std::make_shared<ThrowingProcessor>(3 + flags % 5);
    topts.processors.push_back(thrower_);
  }
  topts.processors.push_back(recorder_);
  topts.on_error = [this](const absl::Status&) {
    processor_errors_.fetch_add(1);
  };
  tracer_ = std::make_unique<Tracer>(std::move(topts));
  for (int i = 0; i < nloops; ++i) {
    auto rec = std::make_unique<LoopRec>();
    Loop::Options lo;
    lo.error_handler = [this](ContextHandle, const absl::Status&) {
      loop_errors_.fetch_add(1);
    };
    // Sometimes a drain too short for every stream's batches:
    // [S3] may drop tasks then, reported, but every stream must still end.
    rec->short_drain = (flags >> 2) % 4 == 0;
    if (rec->short_drain) lo.max_shutdown_rounds = 2;
    // Some runs bound the loop's pending cross-thread posts tightly, so
    // foreign posts are refused (kResourceExhausted) now and then.
    if (!options_.legacy_ops && (flags >> 4) % 4 == 0) {
      fuzz_adapter::SetPendingBound(lo, 8 + 8 * ((flags >> 6) % 4));
    }
    // Embedded mode: about one loop in four is driven by a host loop.
    const bool driven = options_.all_driven ||
                        (!options_.never_driven && !options_.legacy_ops &&
                         ((workers_byte >> (1 + i)) & 3) == 0);
    std::unique_ptr<LoopDriver> driver;
    if (driven) {
      driver = options_.driver ? options_.driver()
                               : std::make_unique<PollLoopDriver>();
      Covered(absl::StrCat("loop driven by ", driver->name()));
      ++result_->driven_loops;
    }
    rec->thread = StartModelLoopThread(std::move(lo), std::move(driver));
    if (!rec->thread->attached()) {
      Violation("driver.attach_failed",
                absl::StrCat("loop ", i, ": the driver could not attach"));
    }
    rec->root = rec->thread->root();
    LoopRec* r = rec.get();
    (void)r->thread->Invoke([r](Loop& loop) {
      r->loop = &loop;
      r->tid = ThisTid();
    });
    loops_.push_back(std::move(rec));
    CtxRec c;
    c.h = r->root;
    c.loop = i;
    c.is_root = true;
    for (int k = 0; k < kKeys; ++k) c.keys[k].base = DefaultOf(k);
    MutexLock lock(&mu_);
    ctxs_.push_back(c);
  }
  for (int i = 0; i < nworkers; ++i) {
    workers_.push_back(std::make_unique<Worker>());
    worker_tids_.push_back(workers_.back()->tid());
  }
  result_->loops = loops_.size();
  result_->foreign_threads = workers_.size();
}

void Harness::Dispatch(const Op& op) {
  if (op.code == OpCode::kBarrier) {
    Barrier();
    return;
  }
  if (op.code == OpCode::kArmReentry) {
    DoArm(op);
    return;
  }
  const size_t n = loops_.size() + workers_.size();
  size_t e = op.exec % n;
  // A loop cannot join itself, and joining would block it: foreign only.
  if (op.code == OpCode::kDestroyLoop && e < loops_.size()) e = loops_.size();
  if (e >= loops_.size()) {
    workers_[e - loops_.size()]->Push([this, op] { Execute(op, Exec{}); });
    return;
  }
  const int loop = static_cast<int>(e);
  // Run on one of the loop's live contexts (the upper bits choose).
  std::vector<std::pair<int, ContextHandle>> live;
  {
    MutexLock lock(&mu_);
    for (size_t i = 0; i < ctxs_.size(); ++i) {
      if (ctxs_[i].loop == loop && !ctxs_[i].destroyed) {
        live.emplace_back(static_cast<int>(i), ctxs_[i].h);
      }
    }
  }
  if (live.empty()) return;
  const auto& [slot, ctx] = live[(op.exec / n) % live.size()];
  const int here_slot = slot;
  absl::Status s = PostCounted(ctx, loop, slot, true, false,
                               [this, op, loop, here_slot](ContextHandle here) {
                                 Execute(op, Exec{loop, here, here_slot});
                               });
  if (!s.ok() && ctx != loops_[loop]->root) {
    (void)PostCounted(
        loops_[loop]->root, loop, loop, true, false,
        [this, op, loop](ContextHandle here) {
          Execute(op, Exec{loop, here, loop});  // Roots: slot = loop.
        });
  }
}

void Harness::Execute(const Op& op, const Exec& x) {
  switch (op.code) {
    case OpCode::kNewContext:
      return DoNewContext(op, x);
    case OpCode::kNewChild:
      return DoNewChild(op, x);
    case OpCode::kDestroyContext:
      return DoDestroyContext(op, x);
    case OpCode::kPost:
      return DoPost(op, x, false);
    case OpCode::kPostDelayed:
      return DoPost(op, x, true);
    case OpCode::kCancel:
      return DoCancel(op);
    case OpCode::kKeySet:
      return DoKeySet(op, x);
    case OpCode::kKeyReset:
      return DoKeyReset(op, x);
    case OpCode::kKeyGet:
      return DoKeyGet(op, x);
    case OpCode::kStartTrace:
      return DoStartTrace(op, x);
    case OpCode::kStartSpan:
      return DoStartSpan(op, x);
    case OpCode::kFinishTrace:
      return DoFinish(op, x, true, false);
    case OpCode::kFinishSpan:
      return DoFinish(op, x, false, false);
    case OpCode::kDropScope:
      return DoFinish(op, x, op.c % 2 == 0, true);
    case OpCode::kMakeStream:
      return DoMakeStream(op, x);
    case OpCode::kAttach:
      return DoAttach(op);
    case OpCode::kEmit:
      return DoEmit(op);
    case OpCode::kEndWriter:
      return DoEndWriter(op);
    case OpCode::kCancelSub:
      return DoCancelSub(op);
    case OpCode::kDropConsumer:
      return DoDropConsumer(op);
    case OpCode::kStopLoop:
      return DoStopLoop(op);
    case OpCode::kDestroyLoop:
      return DoDestroyLoop(op);
    case OpCode::kWatch:
      return DoWatch(op, x);
    case OpCode::kWriteFd:
      return DoWriteFd(op);
    case OpCode::kStopWatch:
      return DoStopWatch(op);
    case OpCode::kBarrier:
    case OpCode::kArmReentry:
      return;
    case OpCode::kTimerChain:
      return DoTimerChain(op, x);
    case OpCode::kAddHook:
      return DoAddHook(op, x);
    case OpCode::kHostilePost:
      return DoHostilePost(op, x);
    case OpCode::kLockedDestroy:
      return DoDestroyContext(op, x, /*locked=*/true);
    case OpCode::kThreadPosts:
      return DoThreadPosts(op);
  }
}

void Harness::Barrier() {
  for (auto& w : workers_) w->Drain();
  for (auto& l : loops_) (void)l->thread->Invoke([](Loop&) {});
}

bool Harness::RoundTrip(int l, const std::function<void(Loop&)>& fn) {
  LoopRec& lr = *loops_[l];
  const absl::Time deadline = absl::Now() + kRoundTripTimeout;
  for (;;) {
    const absl::Status s = lr.thread->Invoke([&fn](Loop& loop) {
      if (fn) fn(loop);
    });
    if (s.code() != absl::StatusCode::kResourceExhausted) return s.ok();
    // Full (a tight `max_pending_foreign`): the loop is still draining what
    // was posted before; a refused round trip proves nothing ran.
    if (!WaitForRoom(lr.root, deadline).ok()) return false;
  }
}

void Harness::StallLoops() {
  constexpr int kFill = 64;
  const absl::Duration stall = absl::Milliseconds(options_.teardown_stall_ms);
  for (size_t l = 0; l < loops_.size(); ++l) {
    if (LoopDying(static_cast<int>(l))) continue;
    const ContextHandle root = loops_[l]->root;
    const absl::Time deadline = absl::Now() + kRoundTripTimeout;
    absl::Status s;
    do {
      s = Post(root, [stall](ContextHandle) { absl::SleepFor(stall); });
    } while (s.code() == absl::StatusCode::kResourceExhausted &&
             WaitForRoom(root, deadline).ok());
    if (!s.ok()) continue;  // Gone meanwhile.
    for (int i = 0; i < kFill && Post(root, [](ContextHandle) {}).ok(); ++i) {
    }
  }
}

uint64_t Harness::Progress() {
  uint64_t p = recorder_->count() * 7919 + callbacks_.load();
  MutexLock lock(&tasks_mu_);
  p += tasks_.size() * 1000003;
  for (const TaskRec& t : tasks_) p += t.runs + t.destroyed_unrun;
  return p;
}

void Harness::Quiesce() {
  // Delayed tasks are due within 1.5 ms of being posted.
  std::this_thread::sleep_for(std::chrono::milliseconds(3));
  uint64_t last = Progress();
  int stable = 0;
  for (int round = 0; round < 200 && stable < 2; ++round) {
    for (size_t l = 0; l < loops_.size(); ++l) {
      (void)RoundTrip(static_cast<int>(l));
    }
    const uint64_t now = Progress();
    if (now == last) {
      ++stable;
    } else {
      stable = 0;
      last = now;
    }
  }
}

// --- Contexts, posts, keys ---------------------------------------------------

void Harness::DoNewContext(const Op& op, const Exec& x) {
  const int l = x.loop >= 0 && (op.a & 0x80) == 0
                    ? x.loop
                    : static_cast<int>(op.a % loops_.size());
  LoopRec& lr = *loops_[l];
  const bool on = OnLoop(l);
  absl::StatusOr<ContextHandle> c = absl::UnavailableError("not called");
  bool called = false;
  if (on) {  // On its own thread the loop is alive while our task runs.
    c = fuzz_adapter::NewCtx(*lr.loop);
    called = true;
  } else {
    MutexLock lock(&lr.life_mu);
    if (lr.alive) {
      c = fuzz_adapter::NewCtx(*lr.loop);
      called = true;
    }
  }
  if (called) {
    ExpectStatus("ctx.status", "NewContext", on, !LoopDying(l), c.status());
  }
  if (!c.ok() || !on) return;
  Covered("NewContext");
  CtxRec r;
  r.h = *c;
  r.loop = l;
  r.trace0 = tracer_->CurrentTraceId(*c).value_or(TraceId());
  r.span0 = tracer_->CurrentSpanId(*c).value_or(SpanId());
  for (int k = 0; k < kKeys; ++k) r.keys[k].base = DefaultOf(k);
  MutexLock lock(&mu_);
  ctxs_.push_back(std::move(r));
}

void Harness::DoNewChild(const Op& op, const Exec& x) {
  int pi;
  const CtxRec p = PickTargetRecord(x, op.a, &pi);
  const bool on = OnLoop(p.loop);
  absl::StatusOr<ContextHandle> c = NewChildContext(p.h, "child");
  if (on && p.destroyed) {
    ExpectRefusedOnDestroyed("NewChildContext", true, c.status());
    return;
  }
  ExpectStatus("ctx.status", "NewChildContext", on, !LoopDying(p.loop),
               c.status());
  if (!c.ok() || !on) return;
  Covered("NewChildContext");
  CtxRec r;
  r.h = *c;
  r.loop = p.loop;
  r.trace0 = tracer_->CurrentTraceId(*c).value_or(TraceId());
  r.span0 = tracer_->CurrentSpanId(*c).value_or(SpanId());
  MutexLock lock(&mu_);
  for (int k = 0; k < kKeys; ++k) {
    r.keys[k].base = ctxs_[pi].keys[k].Effective();  // A snapshot.
  }
  ctxs_.push_back(std::move(r));
}

void Harness::DoDestroyContext(const Op& op, const Exec& x, bool locked) {
  int i;
  const CtxRec r = PickTargetRecord(x, op.a, &i);
  const bool on = OnLoop(r.loop);
  if (locked && !on) return;
  if (hostile_holder_.load() == ThisTid()) locked = false;  // Reentered.
  absl::Status s;
  if (locked) {
    // A host that destroys a context under its own lock, which a callable
    // being posted to this loop from another thread also takes in its move
    // constructor. Holding it a little first widens the window.
    hostile_mu_.Lock();
    hostile_holder_.store(ThisTid());
    if (op.b % 4 != 0) {
      std::this_thread::sleep_for(std::chrono::microseconds(300 * (op.b % 4)));
    }
    Covered("DestroyContext holding a host mutex");
    s = fuzz_adapter::DestroyCtx(r.h);
    hostile_holder_.store(0);
    hostile_mu_.Unlock();
  } else {
    s = fuzz_adapter::DestroyCtx(r.h);
  }
  ExpectStatus("ctx.status", "DestroyContext", on && !r.is_root && !r.destroyed,
               !LoopDying(r.loop), s);
  if (!s.ok()) return;
  Covered("DestroyContext");
  MutexLock lock(&mu_);
  ctxs_[i].destroyed = true;
  ctxs_[i].destroy_seq = NextSeq();
}

void Harness::DoPost(const Op& op, const Exec&, bool delayed) {
  int i;
  CtxRec r;
  {
    MutexLock lock(&mu_);
    i = PickCtx(op.a);
    r = ctxs_[i];
  }
  const bool throws = op.b % 8 == 0;
  const absl::Duration delay = absl::Microseconds(500 * (op.c % 4));
  uint64_t id = 0;
  absl::Status s = PostCounted(
      r.h, r.loop, i, false, throws,
      [this, delayed](ContextHandle c) {
        Reenter(delayed ? Cb::kTimer : Cb::kTask, c);
      },
      delayed ? &delay : nullptr, &id);
  if (s.ok() && r.destroyed) {
    Violation("post.after_destroy",
              absl::StrCat(delayed ? "PostDelayed" : "Post", " to ",
                           r.h.DebugString(),
                           " accepted after DestroyContext returned"));
  }
  if (delayed && s.ok()) {
    MutexLock lock(&mu_);
    timers_.push_back(id);
  }
}

void Harness::DoCancel(const Op& op) {
  uint64_t id;
  {
    MutexLock lock(&mu_);
    if (timers_.empty()) return;
    id = timers_[op.a % timers_.size()];
  }
  DelayedTaskHandle h;
  {
    MutexLock lock(&tasks_mu_);
    h = tasks_[id].handle;
  }
  if (!Cancel(h)) return;
  Covered("Cancel true");
  MutexLock lock(&tasks_mu_);
  tasks_[id].cancel_true = true;
}

void Harness::DoKeySet(const Op& op, const Exec& x) {
  int i;
  const CtxRec r = PickTargetRecord(x, op.a, &i);
  const int key = op.b % kKeys;
  const std::string value = ValueFor(key, op.c);
  const bool on = OnLoop(r.loop);
  absl::StatusOr<Token> t =
      key == 0 ? IntKey().Set(r.h, op.c) : StrKey().Set(r.h, value);
  if (on && r.destroyed) {
    ExpectRefusedOnDestroyed("ContextKey::Set", true, t.status());
    return;
  }
  ExpectStatus("key.status", "ContextKey::Set", on, !LoopDying(r.loop),
               t.status());
  if (!t.ok() || !on) return;
  Covered("Set");
  MutexLock lock(&mu_);
  TokRec tr;
  tr.token = *t;
  tr.ctx = i;
  tr.key = key;
  tr.id = ++next_token_id_;
  tokens_.push_back(tr);
  ctxs_[i].keys[key].stack.emplace_back(tr.id, value);
}

void Harness::DoKeyReset(const Op& op, const Exec&) {
  int ti, ci, tok_loop;
  TokRec tok;
  CtxRec r;
  {
    MutexLock lock(&mu_);
    if (tokens_.empty()) return;
    ti = op.a % tokens_.size();
    tok = tokens_[ti];
    tok_loop = ctxs_[tok.ctx].loop;
    ci = op.b % 3 == 0 ? PickCtx(op.c) : tok.ctx;  // Sometimes the wrong one.
    r = ctxs_[ci];
  }
  const bool on = OnLoop(r.loop);
  absl::Status s = tok.key == 0 ? IntKey().Reset(r.h, tok.token)
                                : StrKey().Reset(r.h, tok.token);
  const std::string what =
      absl::StrCat("ContextKey::Reset on ", r.h.DebugString(),
                   " with a token of ", tok.token.context().DebugString());
  // A loop going away may answer kUnavailable instead (context_handle.h):
  // then only "refused" is checked.
  const bool loop_going = LoopDying(r.loop) || LoopDying(tok_loop);
  if (loop_going && (r.h != tok.token.context() || tok.used || !on)) {
    if (s.ok()) Violation("key.status", what + ": succeeded");
    return;
  }
  if (r.h != tok.token.context()) {
    if (s.code() != absl::StatusCode::kInvalidArgument) {
      Violation(
          "key.status",
          absl::StrCat(what, ": want kInvalidArgument, got ", s.ToString()));
    }
    return;
  }
  if (r.destroyed) return;  // Not in the contract either way.
  if (tok.used || !on) {
    if (s.code() != absl::StatusCode::kFailedPrecondition) {
      Violation("key.status",
                absl::StrCat(what, tok.used ? " (used)" : " (wrong thread)",
                             ": want kFailedPrecondition, got ", s.ToString()));
    }
    return;
  }
  ExpectStatus("key.status", what, true, !LoopDying(r.loop), s);
  if (!s.ok()) return;
  Covered("Reset");
  MutexLock lock(&mu_);
  tokens_[ti].used = true;
  auto& stack = ctxs_[ci].keys[tok.key].stack;
  for (auto it = stack.begin(); it != stack.end(); ++it) {
    if (it->first == tok.id) {
      stack.erase(it);
      break;
    }
  }
}

void Harness::DoKeyGet(const Op& op, const Exec& x) {
  int i;
  const CtxRec r = PickTargetRecord(x, op.a, &i);
  const int key = op.b % kKeys;
  const bool on = OnLoop(r.loop);
  absl::Status s;
  std::string got;
  if (key == 0) {
    absl::StatusOr<int> v = IntKey().Get(r.h);
    s = v.status();
    if (v.ok()) got = std::to_string(*v);
  } else {
    absl::StatusOr<std::string> v = StrKey().Get(r.h);
    s = v.status();
    if (v.ok()) got = *v;
  }
  // A destroyed context refuses everything new at once (Set, children,
  // traces), but Get and Reset keep working until the loop frees it, so that
  // tasks already queued can read and restore values (loop.h, [S15]): either
  // answer is right here, and the value is not checked.
  if (on && r.destroyed) return;
  ExpectStatus("key.status", "ContextKey::Get", on, !LoopDying(r.loop), s);
  if (!s.ok() || !on) return;
  std::string want;
  {
    MutexLock lock(&mu_);
    want = ctxs_[i].keys[key].Effective();
  }
  if (got != want) {
    Violation("key.value",
              absl::StrCat("Get on ", r.h.DebugString(), " key ", key,
                           ": got \"", got, "\", model \"", want, "\""));
  }
}

// --- Traces and spans --------------------------------------------------------

void Harness::DoStartTrace(const Op& op, const Exec& x) {
  int i;
  const CtxRec r = PickTargetRecord(x, op.a, &i);
  const bool on = OnLoop(r.loop);
  TraceOptions o;
  o.make_current = op.b % 2 == 0;
  TraceScope t = tracer_->StartTrace(r.h, "fuzz trace", o);
  // StartTrace never fails: where it cannot record (another thread, a
  // destroyed context) it returns a non-recording scope.
  if (!on && t.recording()) {
    Violation("trace.status", "StartTrace off its loop thread is recording");
  }
  if (on && r.destroyed && t.recording()) {
    Violation("ctx.destroyed_accepts",
              "StartTrace on a destroyed context is recording");
  }
  Covered("StartTrace");
  SpanParent parent = t.AsParent();
  MutexLock lock(&mu_);
  traces_.emplace_back();
  traces_.back().scope.emplace(std::move(t));
  traces_.back().ctx = i;
  parents_.push_back(std::move(parent));
}

void Harness::DoStartSpan(const Op& op, const Exec& x) {
  int i;
  CtxRec r;
  SpanOptions o;
  {
    MutexLock lock(&mu_);
    i = PickTarget(x, op.a);
    r = ctxs_[i];
    // An explicit parent, possibly on another loop or already finished.
    if ((op.b >> 1) % 3 != 0 && !parents_.empty()) {
      o.parent = parents_[op.c % parents_.size()];
    }
  }
  const bool on = OnLoop(r.loop);
  o.make_current = op.b % 2 == 0;
  SpanScope sp = tracer_->StartSpan(r.h, "fuzz span", o);
  // StartSpan never fails: where it cannot record it returns a
  // non-recording scope.
  if (!on && sp.recording()) {
    Violation("trace.status", "StartSpan off its loop thread is recording");
  }
  Covered(sp.recording() ? "StartSpan" : "StartSpan no-op");
  MutexLock lock(&mu_);
  if (sp.recording()) parents_.push_back(sp.AsParent());
  spans_.emplace_back();
  spans_.back().scope.emplace(std::move(sp));
  spans_.back().ctx = i;
}

void Harness::DoFinish(const Op& op, const Exec& x, bool trace, bool drop) {
  std::optional<TraceScope> ts;
  std::optional<SpanScope> ss;
  CtxRec origin;
  {
    MutexLock lock(&mu_);
    int ctx;
    if (trace) {
      if (traces_.empty()) return;
      TraceRec& rec = traces_[op.a % traces_.size()];
      if (!rec.scope.has_value()) return;
      ts.emplace(std::move(*rec.scope));
      rec.scope.reset();
      ctx = rec.ctx;
    } else {
      if (spans_.empty()) return;
      SpanRec& rec = spans_[op.a % spans_.size()];
      if (!rec.scope.has_value()) return;
      ss.emplace(std::move(*rec.scope));
      rec.scope.reset();
      ctx = rec.ctx;
    }
    origin = ctxs_[ctx];
    const bool recording = trace ? ts->recording() : ss->recording();
    if (recording && origin.destroyed) {  // Destroyed before this finish.
      const std::string key = trace ? ItemKey(ts->trace_id(), SpanId())
                                    : ItemKey(ss->trace_id(), ss->span_id());
      expect_off_origin_[key] = absl::StrCat(
          drop ? "dropped" : "finished", " from ", x.here.DebugString(),
          " after its origin ", origin.h.DebugString(),
          " was destroyed: must run off origin ([F1])");
    }
  }
  Covered(drop ? "drop scope" : "Finish");
  if (drop) return;  // [F4]: the scope's destructor finishes it.
  ContextHandle from;
  switch (op.b % 3) {
    case 0:
      from = x.here;
      break;
    case 1:
      from = origin.h;  // Claims the origin; inline only on its thread.
      break;
    default:
      break;
  }
  absl::Status s;
  if ((op.c >> 2) % 2 == 1 && !options_.legacy_ops) {
    // With on_finished: called once, where the finish ran; it reenters.
    uint64_t fid;
    {
      MutexLock lock(&fins_mu_);
      fid = fins_.size();
      fins_.emplace_back();
    }
    FinishOptions fo;
    fo.on_finished = [this, fid](const ExecutionSite& ran) {
      FinishedCallback(fid, ran);
    };
    s = trace ? fuzz_adapter::FinishTrace(*ts, from, std::move(fo))
              : fuzz_adapter::FinishSpan(*ss, from, std::move(fo));
    MutexLock lock(&fins_mu_);
    fins_[fid].finish_ok = s.ok();
  } else {
    s = trace ? fuzz_adapter::FinishTrace(*ts, from)
              : fuzz_adapter::FinishSpan(*ss, from);
  }
  if (!s.ok()) Violation("trace.status", "first Finish: " + s.ToString());
  if (op.c % 4 == 0) {
    s = trace ? fuzz_adapter::FinishTrace(*ts, from)
              : fuzz_adapter::FinishSpan(*ss, from);
    if (s.code() != absl::StatusCode::kFailedPrecondition) {
      Violation("trace.status", "second Finish: " + s.ToString());
    }
  }
}

// --- Streams -----------------------------------------------------------------

void Harness::DoMakeStream(const Op& op, const Exec& x) {
  CtxRec r;
  {
    MutexLock lock(&mu_);
    r = ctxs_[PickTarget(x, op.a)];
  }
  const bool on = OnLoop(r.loop);
  StreamOptions so;
  so.high_watermark = 2 + op.b % 8;  // Small: backpressure happens.
  so.low_watermark = so.high_watermark / 3;
  so.max_batch = 1 + (op.b >> 3) % 4;
  std::optional<TraceScope> trace;
  if (op.c % 2 == 1 && on && !r.destroyed) {
    TraceOptions to;
    to.make_current = (op.c >> 1) % 2 == 0;
    trace.emplace(tracer_->StartTrace(r.h, "fuzz stream", to));
  }
  StreamRec* s;
  {
    MutexLock lock(&mu_);
    streams_.emplace_back();
    s = &streams_.back();
    s->id = static_cast<int>(streams_.size()) - 1;
    s->producer = r.h;
    s->producer_loop = r.loop;
    s->throwing_producer = (op.c >> 2) % 4 == 0;
  }
  ProducerCallbacks cb;
  cb.on_writable = [this, s](ContextHandle c) {
    OnProducerCallback(s, c, false);
  };
  cb.on_closed = [this, s](ContextHandle c, const absl::Status&) {
    OnProducerCallback(s, c, true);
  };
  absl::StatusOr<StreamPair<int>> pair =
      fuzz_adapter::MakeIntStream(r.h, so, std::move(cb), std::move(trace));
  if (!pair.ok()) {
    Violation("stream.status", "MakeStream: " + pair.status().ToString());
    return;
  }
  Covered("MakeStream");
  MutexLock lock(&mu_);
  s->writer.emplace(std::move(pair->writer));
  s->reader.emplace(std::move(pair->reader));
}

void Harness::DoAttach(const Op& op) {
  std::optional<StreamReader<int>> reader;
  StreamRec* s;
  ContextHandle sink;
  {
    MutexLock lock(&mu_);
    if (streams_.empty()) return;
    s = &streams_[op.a % streams_.size()];
    if (!s->reader.has_value()) return;
    reader.emplace(std::move(*s->reader));
    s->reader.reset();
    s->sink_slot = PickCtx(op.b);
    s->sink = sink = ctxs_[s->sink_slot].h;
    s->sink_loop = ctxs_[s->sink_slot].loop;
    s->sink_mode = op.c % 6;
  }
  Sink<int> sk;
  sk.on_event = [this, s](ContextHandle c, int&& v) { OnSinkEvent(s, c, v); };
  sk.on_complete = [this, s](ContextHandle c, const absl::Status& st) {
    OnSinkComplete(s, c, st);
  };
  absl::StatusOr<StreamSubscription> sub =
      std::move(*reader).Attach(sink, std::move(sk));
  reader.reset();
  if (!sub.ok()) return;
  Covered("Attach");
  auto shared = std::make_shared<StreamSubscription>(std::move(*sub));
  {
    MutexLock lock(&s->weak_mu);
    s->weak_sub = shared;
  }
  MutexLock lock(&mu_);
  s->sub = std::move(shared);
  s->attached = true;
}

void Harness::DoEmit(const Op& op) {
  std::optional<StreamWriter<int>> w;
  StreamRec* s;
  {
    MutexLock lock(&mu_);
    if (streams_.empty()) return;
    s = &streams_[op.a % streams_.size()];
    if (!s->writer.has_value()) return;
    w.emplace(std::move(*s->writer));
    s->writer.reset();
  }
  const int n = 1 + op.b % 8;
  for (int i = 0; i < n; ++i) {
    if (!w->Emit(s->next_value).ok()) break;  // Full or ended: keep it.
    ++s->next_value;
    s->emitted.fetch_add(1);
  }
  MutexLock lock(&mu_);
  s->writer.emplace(std::move(*w));
}

void Harness::DoEndWriter(const Op& op) {
  std::optional<StreamWriter<int>> w;
  StreamRec* s;
  {
    MutexLock lock(&mu_);
    if (streams_.empty()) return;
    s = &streams_[op.a % streams_.size()];
    if (!s->writer.has_value()) return;
    w.emplace(std::move(*s->writer));
    s->writer.reset();
  }
  switch (op.b % 3) {
    case 0:
      (void)w->Complete();
      break;
    case 1:
      (void)w->Fail(absl::AbortedError("fuzz: producer fails"));
      break;
    default:
      return;  // Destroyed unfinished [E2].
  }
  MutexLock lock(&mu_);
  s->writer.emplace(std::move(*w));
}

void Harness::DoCancelSub(const Op& op) {
  std::shared_ptr<StreamSubscription> sub;
  {
    MutexLock lock(&mu_);
    if (streams_.empty()) return;
    sub = streams_[op.a % streams_.size()].sub;
  }
  if (sub != nullptr) (void)sub->Cancel();
}

void Harness::DoDropConsumer(const Op& op) {
  std::shared_ptr<StreamSubscription> sub;
  std::optional<StreamReader<int>> reader;
  {
    MutexLock lock(&mu_);
    if (streams_.empty()) return;
    StreamRec& s = streams_[op.a % streams_.size()];
    if (op.b % 2 == 0) {
      sub = std::move(s.sub);
      s.sub.reset();
    } else if (s.reader.has_value()) {
      reader.emplace(std::move(*s.reader));
      s.reader.reset();
    }
  }
  // Destroyed here, outside the lock [E5].
}

void Harness::OnSinkEvent(StreamRec* s, ContextHandle ctx, int v) {
  callbacks_.fetch_add(1);
  Covered("sink event");
  if (ctx != s->sink || !OnLoop(s->sink_loop)) {
    Violation("stream.thread",
              absl::StrCat("stream ", s->id, " on_event on ", ctx.DebugString(),
                           ", sink is ", s->sink.DebugString()));
  }
  if (s->completes.load() > 0) {
    Violation("stream.after_complete",
              absl::StrCat("stream ", s->id, " on_event after on_complete"));
  }
  const int want = s->received.load();
  if (v != want) {
    Violation("stream.order", absl::StrCat("stream ", s->id, ": event ", v,
                                           ", expected ", want));
  }
  s->received.store(v + 1);
  Reenter(Cb::kSink, ctx);
  auto cancel_own = [s] {
    std::shared_ptr<StreamSubscription> sub;
    {
      MutexLock lock(&s->weak_mu);
      sub = s->weak_sub.lock();
    }
    if (sub != nullptr) (void)sub->Cancel();
  };
  switch (s->sink_mode) {
    case 1:
      if (v % 3 == 2) throw std::runtime_error("fuzz: sink throws");
      break;
    case 2:  // Cancel its own subscription, then throw.
      if (v % 3 == 1) {
        cancel_own();
        throw std::runtime_error("fuzz: sink cancels, then throws");
      }
      break;
    case 5:
      if (v % 4 == 3) cancel_own();
      break;
    default:
      break;
  }
}

void Harness::OnSinkComplete(StreamRec* s, ContextHandle ctx,
                             const absl::Status& st) {
  callbacks_.fetch_add(1);
  Covered(st.ok() ? "on_complete OK" : "on_complete error");
  if (s->completes.fetch_add(1) + 1 > 1) {
    Violation("stream.complete_twice",
              absl::StrCat("stream ", s->id, ": on_complete called twice"));
  }
  if (ctx != s->sink || !OnLoop(s->sink_loop)) {
    Violation("stream.thread",
              absl::StrCat("stream ", s->id, " on_complete off its sink"));
  }
  if (st.ok() && s->received.load() != s->emitted.load()) {
    Violation(
        "stream.lost_events",
        absl::StrCat("stream ", s->id, ": on_complete(OK) after ",
                     s->received.load(), " of ", s->emitted.load(), " events"));
  }
  Reenter(Cb::kSink, ctx);
  if (s->sink_mode == 3) throw std::runtime_error("fuzz: on_complete throws");
}

void Harness::OnProducerCallback(StreamRec* s, ContextHandle ctx, bool closed) {
  callbacks_.fetch_add(1);
  Covered(closed ? "on_closed" : "on_writable");
  if (ctx != s->producer || !OnLoop(s->producer_loop)) {
    Violation("stream.thread",
              absl::StrCat("stream ", s->id, " producer callback on ",
                           ctx.DebugString(), ", producer is ",
                           s->producer.DebugString()));
  }
  if (closed && s->closes.fetch_add(1) + 1 > 1) {
    Violation(
        "stream.closed_twice",
        absl::StrCat("stream ", s->id, ": producer on_closed called twice"));
  }
  Reenter(Cb::kProducer, ctx);
  if (s->throwing_producer) {
    throw std::runtime_error("fuzz: producer callback throws");
  }
}

// --- Loops and fd watches ----------------------------------------------------

void Harness::DoStopLoop(const Op& op) {
  const int l = op.a % loops_.size();
  LoopRec& lr = *loops_[l];
  if (OnLoop(l)) {  // Stop() from inside a task.
    fuzz_adapter::StopLoop(*lr.loop);
    return;
  }
  MutexLock lock(&lr.life_mu);  // Stop must not race the destructor.
  if (lr.alive) fuzz_adapter::StopLoop(*lr.loop);
}

void Harness::DoDestroyLoop(const Op& op) {
  const int l = op.a % loops_.size();
  LoopRec& lr = *loops_[l];
  {
    MutexLock lock(&lr.life_mu);
    if (!lr.alive) return;
    lr.alive = false;
    lr.destroy_seq.store(NextSeq());
  }
  Covered("destroy loop");
  lr.destroyed_early.store(true);
  lr.report = lr.thread->Join();
  if (lr.report.tasks_dropped != 0 && !lr.short_drain) {
    Violation("loop.shutdown_dropped",
              absl::StrCat("loop ", l, " shutdown dropped ",
                           lr.report.tasks_dropped, " tasks"));
  }
}

void Harness::DoWatch(const Op& op, const Exec& x) {
  CtxRec r;
  {
    MutexLock lock(&mu_);
    r = ctxs_[PickTarget(x, op.a)];
  }
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) !=
      0) {
    return;
  }
  const int l = r.loop;
  LoopRec& lr = *loops_[l];
  const bool on = OnLoop(l);
  WatchRec* w;
  {
    MutexLock lock(&mu_);
    watches_.emplace_back();
    w = &watches_.back();
    w->fds[0] = fds[0];
    w->fds[1] = fds[1];
    w->close_on_stop = op.b % 2 == 0;
    w->ctx = r.h;
    w->loop = l;
  }
  FdCallback cb = [this, w, poster = DtorPoster(this, lr.root, l)](
                      ContextHandle c, FdEvents) mutable {
    OnWatchReady(w, c);
  };
  absl::StatusOr<FdWatch> fw = absl::UnavailableError("not called");
  bool called = false;
  if (on) {
    fw = fuzz_adapter::Watch(*lr.loop, r.h, fds[0], std::move(cb),
                             w->close_on_stop);
    called = true;
  } else {
    MutexLock lock(&lr.life_mu);
    if (lr.alive) {
      fw = fuzz_adapter::Watch(*lr.loop, r.h, fds[0], std::move(cb),
                               w->close_on_stop);
      called = true;
    }
  }
  if (called && !(on && r.destroyed)) {
    ExpectStatus("fd.status", "WatchFd", on, !LoopDying(l), fw.status());
  }
  if (!fw.ok()) return;
  Covered("WatchFd");
  MutexLock lock(&mu_);
  w->watch.emplace(std::move(*fw));
  w->registered = true;
}

void Harness::DoWriteFd(const Op& op) {
  int fd = -1;
  {
    MutexLock lock(&mu_);
    if (watches_.empty()) return;
    fd = watches_[op.a % watches_.size()].fds[1];
  }
  (void)send(fd, "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
}

void Harness::DoStopWatch(const Op& op) {
  std::optional<FdWatch> fw;
  WatchRec* w;
  {
    MutexLock lock(&mu_);
    if (watches_.empty()) return;
    w = &watches_[op.a % watches_.size()];
    if (!w->watch.has_value()) return;
    fw.emplace(std::move(*w->watch));
    w->watch.reset();
  }
  Covered(OnLoop(w->loop) ? "FdWatch::Stop on loop" : "FdWatch::Stop foreign");
  fuzz_adapter::StopWatch(*fw);
  w->stop_returned.store(true);
}

void Harness::OnWatchReady(WatchRec* w, ContextHandle ctx) {
  callbacks_.fetch_add(1);
  Covered("watch callback");
  w->calls.fetch_add(1);
  if (w->stop_returned.load()) {
    Violation("fd.after_stop", "watch callback ran after Stop() returned");
    return;
  }
  if (ctx != w->ctx || !OnLoop(w->loop)) {
    Violation("fd.thread",
              absl::StrCat("watch callback on ", ctx.DebugString(),
                           ", watch is on ", w->ctx.DebugString()));
  }
  char buf[64];
  while (read(w->fds[0], buf, sizeof(buf)) > 0) {
  }
  // Give a foreign Stop() time to return if it does not wait for us.
  for (int i = 0; i < 200; ++i) sched_yield();
  if (w->stop_returned.load()) {
    Violation("fd.stop_while_running",
              "a foreign FdWatch::Stop() returned while the callback was "
              "running");
  }
  Reenter(Cb::kFd, ctx);  // After the checks: it may stop this very watch.
}

// --- Reentry, timer chains, destroy hooks, hostile callables, threads --------

Exec Harness::ExecHere(ContextHandle ctx) {
  const int64_t tid = ThisTid();
  int l = -1;
  for (size_t i = 0; i < loops_.size(); ++i) {
    if (loops_[i]->tid == tid) l = static_cast<int>(i);
  }
  if (l < 0) return Exec{};  // A foreign thread (e.g. a processor at [F2]).
  Exec x;
  x.loop = l;
  x.here = loops_[l]->root;
  x.here_slot = l;  // Roots are slots 0..loops-1.
  if (ctx.is_null() || LoopOf(ctx) != l) return x;
  MutexLock lock(&mu_);
  for (size_t i = 0; i < ctxs_.size(); ++i) {
    if (ctxs_[i].h == ctx) {
      x.here = ctx;
      x.here_slot = static_cast<int>(i);
      break;
    }
  }
  return x;
}

void Harness::DoArm(const Op& op) {
  const Cb kind = static_cast<Cb>(op.a % kCbKinds);
  const Op nested = op.Nested();
  {
    MutexLock lock(&reentry_mu_);
    std::deque<Op>& q = armed_[static_cast<int>(kind)];
    if (q.size() >= kMaxArmed) return;
    q.push_back(nested);
  }
  Covered(absl::StrCat("arm ", CbName(kind)));
}

void Harness::Reenter(Cb kind, ContextHandle ctx) {
  if (t_reentry_depth > 0) return;
  const int mode = reentry_mode_.load();
  if (mode >= 2) return;
  Op op;
  {
    MutexLock lock(&reentry_mu_);
    std::deque<Op>& q = armed_[static_cast<int>(kind)];
    if (q.empty()) return;
    op = q.front();
    q.pop_front();
  }
  if (mode == 1 && !AllowedInTeardown(op.code)) return;
  const Exec x = ExecHere(ctx);
  Covered(absl::StrCat("reenter from ", CbName(kind),
                       x.loop < 0 ? " (foreign)" : ""));
  struct Depth {
    Depth() { ++t_reentry_depth; }
    ~Depth() { --t_reentry_depth; }
  } depth;
  Execute(op, x);
}

// Zero-delay timers due in one timer run; each (or the first) cancels
// another of them and re-arms: a delayed post (often the earliest deadline)
// and another zero-delay one. On the loop thread the model knows whether the
// other has run, so it predicts each Cancel's answer; every timer not
// cancelled must run exactly once (timer.exactly_once, at the end).
void Harness::DoTimerChain(const Op& op, const Exec& x) {
  if (x.loop < 0) return;  // The chain is built inside a loop callback.
  const int n = 2 + op.a % 4;
  const int skip = 1 + (op.a >> 2) % (n - 1);
  const bool every = (op.a >> 5) % 2 == 1;
  static constexpr int64_t kRearmUs[] = {0, 500, 2000, 20000};
  const absl::Duration rearm = absl::Microseconds(kRearmUs[op.b % 4]);
  const bool extra_zero = (op.b >> 2) % 2 == 1;
  const absl::Duration zero = absl::ZeroDuration();
  auto ids = std::make_shared<std::vector<uint64_t>>(n, 0);
  const int loop = x.loop;
  const int slot = x.here_slot;
  for (int i = 0; i < n; ++i) {
    auto body = [this, ids, i, n, skip, every, rearm, extra_zero, loop,
                 slot](ContextHandle c) {
      if (i != 0 && !every) return;
      const uint64_t other = (*ids)[(i + skip) % n];
      DelayedTaskHandle h;
      bool want;
      {
        MutexLock lock(&tasks_mu_);
        const TaskRec& t = tasks_[other];
        h = t.handle;
        want = t.post_returned && t.post_ok && t.runs == 0 && !t.cancel_true;
      }
      const bool got = Cancel(h);
      if (got) {
        MutexLock lock(&tasks_mu_);
        tasks_[other].cancel_true = true;
      }
      if (got != want) {
        Violation("timer.cancel_result",
                  absl::StrCat("in a timer run on ", c.DebugString(),
                               ": Cancel of a timer that ",
                               want ? "has not run" : "ran or was cancelled",
                               " returned ", got ? "true" : "false"));
      }
      Covered(got ? "timer chain: Cancel true" : "timer chain: Cancel false");
      uint64_t id = 0;
      const absl::Duration zero = absl::ZeroDuration();
      absl::Status s = PostCounted(
          c, loop, slot, false, false,
          [this](ContextHandle cc) { Reenter(Cb::kTimer, cc); }, &rearm, &id);
      if (s.ok()) {
        MutexLock lock(&mu_);
        timers_.push_back(id);
      }
      if (extra_zero) {
        (void)PostCounted(
            c, loop, slot, false, false,
            [this](ContextHandle cc) { Reenter(Cb::kTimer, cc); }, &zero);
      }
    };
    (void)PostCounted(x.here, loop, slot, false, false, std::move(body), &zero,
                      &(*ids)[i]);
  }
  Covered("timer chain");
}

void Harness::DoAddHook(const Op& op, const Exec& x) {
  int i;
  const CtxRec r = PickTargetRecord(x, op.a, &i);
  const bool on = OnLoop(r.loop);
  uint64_t id;
  {
    MutexLock lock(&hooks_mu_);
    id = hooks_.size();
    HookRec h;
    h.ctx = r.h;
    h.loop = r.loop;
    h.slot = i;
    hooks_.push_back(h);
  }
  absl::StatusOr<DestroyHookId> hook =
      AddDestroyHook(r.h, [this, id](ContextHandle c) { HookRan(id, c); });
  ExpectStatus("hook.status", "AddDestroyHook", on && !r.destroyed,
               !LoopDying(r.loop), hook.status());
  if (!hook.ok()) return;
  {
    MutexLock lock(&hooks_mu_);
    hooks_[id].added = true;
  }
  Covered("AddDestroyHook");
  if (op.b % 4 != 0) return;
  absl::Status s = RemoveDestroyHook(r.h, *hook);
  // On its loop thread, nothing ran between the add and this.
  ExpectStatus("hook.status", "RemoveDestroyHook", true, !LoopDying(r.loop), s);
  if (!s.ok()) return;
  MutexLock lock(&hooks_mu_);
  hooks_[id].removed = true;
}

void Harness::HookRan(uint64_t id, ContextHandle ctx) {
  HookRec h;
  {
    MutexLock lock(&hooks_mu_);
    ++hooks_[id].runs;
    h = hooks_[id];
  }
  callbacks_.fetch_add(1);
  Covered("destroy hook ran");
  if (h.runs > 1 || h.removed) {
    Violation(
        "hook.exactly_once",
        absl::StrCat("destroy hook of ", h.ctx.DebugString(),
                     h.removed ? " ran after it was removed" : " ran twice"));
  }
  if (ctx != h.ctx || !OnLoop(h.loop)) {
    Violation("hook.exactly_once",
              absl::StrCat("destroy hook of ", h.ctx.DebugString(), " ran on ",
                           ctx.DebugString(), " or off its loop thread"));
  }
  // After DestroyContext ([S7]) nothing runs on the context after its hooks;
  // at shutdown ([S10]) what hooks post runs after every hook, by design.
  if (!LoopDying(h.loop)) {
    MutexLock lock(&mu_);
    if (ctxs_[h.slot].h == h.ctx) ctxs_[h.slot].hooks_ran = true;
  }
  Reenter(Cb::kHook, ctx);
}

void Harness::FinishedCallback(uint64_t id, const ExecutionSite& ran) {
  {
    MutexLock lock(&fins_mu_);
    ++fins_[id].calls;
  }
  callbacks_.fetch_add(1);
  Covered("on_finished");
  if (ran.thread_id != ThisTid()) {
    Violation("trace.on_finished",
              absl::StrCat("on_finished called on tid ", ThisTid(),
                           ", but says the finish ran on tid ", ran.thread_id,
                           " (", ran.ctx.DebugString(), ")"));
  }
  Reenter(Cb::kOnFinished, ran.ctx);
}

// Hostile move constructors, by mode % 4: 0 throws on its first move, 1 on
// its second, 2 sleeps (at most 1 ms), 3 sleeps so, then takes `hostile_mu_`
// (which
// kLockedDestroy holds on a loop thread around DestroyContext) with a bounded
// wait: if the wait times out, a thread of ours is blocked on the loop
// thread and the loop thread on it.
void Harness::HostileMove(uint8_t mode, int moves) {
  switch (mode % 4) {
    case 0:
    case 1:
      if (moves == 1 + mode % 4) {
        throw std::runtime_error("fuzz: a hostile move constructor throws");
      }
      return;
    case 2:
      std::this_thread::sleep_for(
          std::chrono::microseconds(200 * (1 + (mode >> 2) % 5)));
      return;
    default: {
      // A little work first (a pin taken before the move is then held while
      // a loop thread may take the mutex and destroy a context).
      std::this_thread::sleep_for(
          std::chrono::microseconds(200 * (1 + (mode >> 2) % 5)));
      if (hostile_holder_.load() == ThisTid()) return;  // Not on ourselves.
      // After one deadlock is reported, later waits are short: the run
      // ends soon (its watchdog would otherwise fire first).
      const std::chrono::milliseconds wait =
          deadlock_seen_.load() ? std::chrono::milliseconds(100) : kHostileWait;
      if (!hostile_mu_.LockFor(wait)) {
        deadlock_seen_.store(true);
        int holder = -1;
        for (size_t l = 0; l < loops_.size(); ++l) {
          if (loops_[l]->tid == hostile_holder_.load()) holder = l;
        }
        Violation(
            "hostile.deadlock",
            absl::StrCat(
                "a callable's move constructor, run by Post on tid ", ThisTid(),
                ", waited ",
                std::chrono::duration_cast<std::chrono::milliseconds>(wait)
                    .count(),
                " ms for a mutex loop ", holder,
                "'s thread holds around DestroyContext: user code "
                "runs inside a pin the loop waits for"));
        return;  // Goes on without it: the run ends instead of hanging.
      }
      hostile_mu_.Unlock();
      return;
    }
  }
}

void Harness::DoHostilePost(const Op& op, const Exec& x) {
  int i;
  const CtxRec r = PickTargetRecord(x, op.a, &i);
  const uint8_t mode = op.b;
  uint64_t id;
  {
    MutexLock lock(&tasks_mu_);
    id = tasks_.size();
    TaskRec t;
    t.target = r.h;
    t.loop = r.loop;
    t.ctx = i;
    tasks_.push_back(std::move(t));
  }
  absl::Status s;
  bool threw = false;
  {
    Hostile h(this, id, mode);
    try {
      s = Post(r.h, std::move(h));
    } catch (const std::runtime_error&) {
      threw = true;
    }
  }  // `h` (if it still owns the task) is destroyed here.
  Covered(threw ? "hostile Post threw"
                : (s.ok() ? "hostile Post ok" : "hostile Post refused"));
  if (!threw && s.ok() && r.destroyed) {
    Violation("post.after_destroy",
              absl::StrCat("Post to ", r.h.DebugString(),
                           " accepted after DestroyContext returned"));
  }
  MutexLock lock(&tasks_mu_);
  TaskRec& t = tasks_[id];
  t.post_returned = true;
  t.post_ok = !threw && s.ok();
  t.threw = threw;
  if (!threw && !s.ok()) t.post_error = s.ToString();
}

// A thread that starts, posts and exits; its thread_local posts again from
// its destructor at thread exit. Joined at [T1].
void Harness::DoThreadPosts(const Op& op) {
  CtxRec a, b;
  int ia, ib;
  {
    MutexLock lock(&mu_);
    ia = PickCtx(op.a);
    ib = PickCtx(op.a / 7 + op.c);
    a = ctxs_[ia];
    b = ctxs_[ib];
  }
  const int posts = op.b % 5;
  const bool tl_first = op.c % 2 == 0;
  const int exit_posts = 1 + (op.c >> 1) % 3;
  MutexLock lock(&threads_mu_);
  if (threads_.size() >= static_cast<size_t>(kMaxPosterThreads)) return;
  threads_.emplace_back([this, a, b, ia, ib, posts, tl_first, exit_posts] {
    auto arm = [&] {
      ExitPoster& p = ThreadExitPoster();
      p.h = this;
      p.ctx = b.h;
      p.loop = b.loop;
      p.slot = ib;
      p.posts = exit_posts;
    };
    // Constructed before the first post, the thread_local is destroyed
    // after whatever the library keeps per thread; after it, before.
    if (tl_first) arm();
    for (int i = 0; i < posts; ++i) {
      (void)PostCounted(a.h, a.loop, ia, false, false, [](ContextHandle) {});
    }
    if (!tl_first) arm();
  });
  Covered(tl_first ? "poster thread (thread_local first)"
                   : "poster thread (thread_local last)");
}

// --- Teardown and checks -----------------------------------------------------

void Harness::JoinPosterThreads() {
  for (;;) {
    std::vector<std::thread> threads;
    {
      MutexLock lock(&threads_mu_);
      for (std::thread& t : threads_) {
        if (t.joinable()) threads.push_back(std::move(t));
      }
    }
    if (threads.empty()) return;
    for (std::thread& t : threads) t.join();
  }
}

void Harness::Teardown() {
  // [T1] The foreign threads finish their operations, the poster threads
  // exit (posting from their thread_locals), every delayed post made so far
  // comes due; everything settles.
  g_phase.store("[T1] joining the foreign threads");
  for (auto& w : workers_) w->Join();
  g_phase.store("[T1] joining the poster threads");
  JoinPosterThreads();
  g_phase.store("[T1] waiting for delayed posts to come due");
  const int64_t wait_ns =
      std::min<int64_t>(max_due_ns_.load() - SteadyNowNs(), 100'000'000);
  if (wait_ns > 0) {
    std::this_thread::sleep_for(std::chrono::nanoseconds(wait_ns));
  }
  quiesced_ns_ = SteadyNowNs();
  if (options_.teardown_stall_ms > 0) StallLoops();
  g_phase.store("[T1] quiescing");
  Quiesce();
  g_phase.store("[T2] ending streams, stopping watches");
  reentry_mode_.store(1);

  // [T2] End every stream from the producer side; stop every watch.
  {
    std::vector<std::optional<StreamWriter<int>>> writers;
    std::vector<std::pair<WatchRec*, std::optional<FdWatch>>> watches;
    {
      MutexLock lock(&mu_);
      for (StreamRec& s : streams_) {
        if (!s.writer.has_value()) continue;
        writers.emplace_back();
        writers.back().emplace(std::move(*s.writer));
        s.writer.reset();
      }
      for (WatchRec& w : watches_) {
        if (!w.watch.has_value()) continue;
        watches.emplace_back(&w, std::move(w.watch));
        w.watch.reset();
      }
    }
    writers.clear();  // [E2]: an unfinished writer fails its stream.
    for (auto& [w, fw] : watches) {
      fuzz_adapter::StopWatch(*fw);
      w->stop_returned.store(true);
    }
  }
  g_phase.store("[T2] quiescing");
  Quiesce();
  g_phase.store("[T3] checking streams");

  // [T3] Every stream whose consumer is still attached has ended, and told
  // its sink exactly once if the sink's context and loop still live.
  {
    std::vector<std::pair<StreamRec*, std::shared_ptr<StreamSubscription>>>
        subs;
    std::vector<bool> sink_alive;
    {
      MutexLock lock(&mu_);
      for (StreamRec& s : streams_) {
        if (s.sub == nullptr) continue;
        subs.emplace_back(&s, s.sub);
        sink_alive.push_back(!ctxs_[s.sink_slot].destroyed &&
                             !LoopDying(s.sink_loop));
      }
    }
    for (size_t i = 0; i < subs.size(); ++i) {
      StreamRec* s = subs[i].first;
      if (!subs[i].second->finished()) {
        Violation("stream.not_ended",
                  absl::StrCat("stream ", s->id, " (", s->emitted.load(),
                               " emitted, ", s->received.load(),
                               " received) never ended after its writer was "
                               "completed or destroyed"));
      }
      if (sink_alive[i] && s->completes.load() != 1) {
        Violation("stream.on_complete",
                  absl::StrCat("stream ", s->id, ": on_complete ran ",
                               s->completes.load(),
                               " times on a live sink, want exactly once"));
      }
    }
  }

  // [T4] Drop every consumer and every open scope ([E5], [F4]).
  {
    std::vector<std::shared_ptr<StreamSubscription>> subs;
    std::vector<std::optional<StreamReader<int>>> readers;
    std::vector<std::optional<TraceScope>> traces;
    std::vector<std::optional<SpanScope>> spans;
    {
      MutexLock lock(&mu_);
      for (StreamRec& s : streams_) {
        subs.push_back(std::move(s.sub));
        s.sub.reset();
        if (s.reader.has_value()) {
          readers.emplace_back();
          readers.back().emplace(std::move(*s.reader));
          s.reader.reset();
        }
      }
      for (TraceRec& t : traces_) {
        if (!t.scope.has_value()) continue;
        traces.emplace_back();
        traces.back().emplace(std::move(*t.scope));
        t.scope.reset();
        if (ctxs_[t.ctx].destroyed) {
          expect_off_origin_[ItemKey(traces.back()->trace_id(), SpanId())] =
              "dropped at teardown after its origin was destroyed ([F1])";
        }
      }
      for (SpanRec& sp : spans_) {
        if (!sp.scope.has_value()) continue;
        spans.emplace_back();
        spans.back().emplace(std::move(*sp.scope));
        sp.scope.reset();
        if (ctxs_[sp.ctx].destroyed && spans.back()->recording()) {
          expect_off_origin_[ItemKey(spans.back()->trace_id(),
                                     spans.back()->span_id())] =
              "dropped at teardown after its origin was destroyed ([F1])";
        }
      }
    }
  }
  Quiesce();

  // [T5] On every live context of every live loop: the current trace/span
  // is what it was when the context was made, and each key reads as the
  // model says.
  {
    std::vector<CtxRec> ctxs;
    {
      MutexLock lock(&mu_);
      ctxs = ctxs_;
    }
    for (size_t l = 0; l < loops_.size(); ++l) {
      if (LoopDying(static_cast<int>(l))) continue;
      (void)RoundTrip(static_cast<int>(l), [&](Loop&) {
        for (const CtxRec& c : ctxs) {
          if (c.loop != static_cast<int>(l) || c.destroyed) continue;
          const TraceId t = tracer_->CurrentTraceId(c.h).value_or(TraceId());
          const SpanId sp = tracer_->CurrentSpanId(c.h).value_or(SpanId());
          if (t != c.trace0 || sp != c.span0) {
            Violation("trace.current",
                      absl::StrCat(c.h.DebugString(), ": current trace/span ",
                                   t.ToHex(), "/", sp.ToHex(),
                                   " after every scope ended; was ",
                                   c.trace0.ToHex(), "/", c.span0.ToHex()));
          }
          for (int k = 0; k < kKeys; ++k) {
            std::string got;
            if (k == 0) {
              absl::StatusOr<int> v = IntKey().Get(c.h);
              got = v.ok() ? std::to_string(*v) : v.status().ToString();
            } else {
              absl::StatusOr<std::string> v = StrKey().Get(c.h);
              got = v.ok() ? *v : v.status().ToString();
            }
            if (got != c.keys[k].Effective()) {
              Violation("key.value",
                        absl::StrCat(c.h.DebugString(), " key ", k, ": got \"",
                                     got, "\", model \"", c.keys[k].Effective(),
                                     "\" (at the end)"));
            }
          }
        }
      });
    }
  }

  // [T6] Join every loop: shutdown drains, and drops nothing of ours.
  g_phase.store("[T6] joining the loops");
  for (size_t l = 0; l < loops_.size(); ++l) {
    LoopRec& lr = *loops_[l];
    {
      MutexLock lock(&lr.life_mu);
      if (!lr.alive) continue;
      lr.alive = false;
      lr.destroy_seq.store(NextSeq());
    }
    lr.report = lr.thread->Join();
    if (lr.report.tasks_dropped != 0 && !lr.short_drain) {
      Violation("loop.shutdown_dropped",
                absl::StrCat("loop ", l, " shutdown dropped ",
                             lr.report.tasks_dropped, " tasks"));
    }
  }
  reentry_mode_.store(2);
  g_phase.store("[T6] joining poster threads started since [T1]");
  JoinPosterThreads();
  g_phase.store("checking");
  CheckTasks();
  CheckHooksAndFinishes();
  CheckTraceEvents();

  MutexLock lock(&mu_);
  for (WatchRec& w : watches_) {
    if (!(w.registered && w.close_on_stop)) close(w.fds[0]);
    close(w.fds[1]);
  }
}

void Harness::CheckTasks() {
  std::vector<TaskRec> tasks;
  {
    MutexLock lock(&tasks_mu_);
    tasks.assign(tasks_.begin(), tasks_.end());
  }
  result_->tasks = tasks.size();
  std::vector<bool> ctx_destroyed;
  {
    MutexLock lock(&mu_);
    for (const CtxRec& c : ctxs_) ctx_destroyed.push_back(c.destroyed);
  }
  // Tasks a short drain dropped unrun, per loop: at most what it reported.
  std::vector<uint64_t> dropped(loops_.size(), 0);
  for (const TaskRec& t : tasks) {
    const std::string what = absl::StrCat(
        t.op ? "operation post"
             : (t.ctx < 0 ? "post from a destructor" : "post"),
        t.delayed ? " (delayed)" : "", " to ", t.target.DebugString());
    if (!t.post_ok) {
      if (t.runs > 0) {
        Violation("post.exactly_once",
                  what + (t.threw ? ": Post threw, but it ran"
                                  : ": refused, but ran"));
      }
      if (t.post_returned && t.destroyed_unrun != 1) {
        Violation("post.refused_kept",
                  absl::StrCat(what, t.threw ? ": Post threw" : ": refused",
                               "; its task was destroyed ", t.destroyed_unrun,
                               " times, want once"));
      }
      continue;
    }
    if (t.delayed) {
      if (t.cancel_true && t.runs > 0) {
        Violation("timer.cancelled_ran",
                  what + ": Cancel returned true, the task ran anyway");
      }
      if (t.runs > 1) {
        Violation("timer.exactly_once",
                  absl::StrCat(what, ": ran ", t.runs, " times"));
      }
      // Unfired at shutdown is [S4]; cancelled with its context. A timer
      // due before [T1] settled, on a context and loop that lived to [T6],
      // not cancelled, must have run.
      const bool ctx_lived = t.ctx >= 0 && !ctx_destroyed[t.ctx];
      const bool loop_lived =
          t.loop >= 0 && !loops_[t.loop]->destroyed_early.load();
      if (!t.cancel_true && t.runs == 0 && ctx_lived && loop_lived &&
          t.due_ns + 5'000'000 <= quiesced_ns_) {
        Violation(
            "timer.exactly_once",
            absl::StrCat(what, ": accepted, not cancelled, due ",
                         (quiesced_ns_ - t.due_ns) / 1'000'000,
                         " ms before the end, never ran",
                         t.destroyed_unrun > 0 ? " (destroyed unrun)" : ""));
      }
      continue;
    }
    if (t.runs == 0 && t.destroyed_unrun > 0 && t.loop >= 0 &&
        loops_[t.loop]->short_drain) {
      ++dropped[t.loop];  // [S3], if the report counts it (below).
      continue;
    }
    if (t.runs != 1) {
      Violation("post.exactly_once",
                absl::StrCat(what, ": accepted (OK), ran ", t.runs, " times",
                             t.destroyed_unrun > 0 ? ", destroyed unrun" : ""));
    }
  }
  for (size_t l = 0; l < loops_.size(); ++l) {
    if (dropped[l] > loops_[l]->report.tasks_dropped) {
      Violation("post.exactly_once",
                absl::StrCat("loop ", l, "'s short drain destroyed ",
                             dropped[l], " accepted tasks unrun but reported ",
                             loops_[l]->report.tasks_dropped));
    }
  }
}

void Harness::CheckHooksAndFinishes() {
  std::deque<HookRec> hooks;
  {
    MutexLock lock(&hooks_mu_);
    hooks = hooks_;
  }
  for (const HookRec& h : hooks) {
    if (!h.added || h.removed || h.runs == 1) continue;
    if (h.runs == 0 && loops_[h.loop]->short_drain) continue;  // [S10] drop.
    Violation("hook.exactly_once",
              absl::StrCat("destroy hook of ", h.ctx.DebugString(), " ran ",
                           h.runs, " times; every loop is gone, want once"));
  }
  std::deque<FinRec> fins;
  {
    MutexLock lock(&fins_mu_);
    fins = fins_;
  }
  for (const FinRec& f : fins) {
    if (f.calls > 1 || (f.finish_ok && f.calls != 1)) {
      Violation("trace.on_finished",
                absl::StrCat("on_finished called ", f.calls,
                             " times for a finish that returned ",
                             f.finish_ok ? "OK" : "an error", "; want once"));
    }
  }
}

void Harness::CheckTraceEvents() {
  using Kind = EventRecorder::Kind;
  const std::vector<EventRecorder::Event> events = recorder_->events();
  result_->trace_events = events.size();
  struct Item {
    int starts = 0;
    int ends = 0;
    uint64_t start_seq = 0;
    uint64_t end_seq = 0;
  };
  std::unordered_map<std::string, Item> items;
  for (const auto& e : events) {
    Item& it = items[e.key()];
    if (e.is_end()) {
      ++it.ends;
      it.end_seq = e.seq;
    } else {
      ++it.starts;
      it.start_seq = e.seq;
    }
  }
  std::unordered_map<std::string, std::string> expect_off;
  {
    MutexLock lock(&mu_);
    expect_off = expect_off_origin_;
  }
  uint64_t on_root = 0, off_here = 0;
  for (const auto& e : events) {
    const bool is_trace =
        e.kind == Kind::kTraceStart || e.kind == Kind::kTraceEnd;
    const std::string name =
        absl::StrCat(is_trace ? "trace " : "span ", e.key());
    const int l = LoopOf(e.started.ctx);
    if (l < 0) {
      Violation("trace.thread", name + ": started on an unknown loop");
      continue;
    }
    const int64_t origin_tid = loops_[l]->tid;
    if (!e.is_end()) {
      if (e.tid != origin_tid || e.started.thread_id != e.tid) {
        Violation("trace.thread", name + ": start event off its loop thread");
      }
      if (!is_trace) {
        const Item& t = items[ItemKey(e.trace_id, SpanId())];
        if (t.starts == 0 || t.start_seq > e.seq) {
          Violation("trace.order", name + ": span start before its trace's");
        }
        if (t.ends > 0 && t.end_seq < e.seq) {
          Violation("trace.order",
                    name + ": span started after its trace ended");
        }
      }
      continue;
    }
    // Ends.
    const std::string where = absl::StrCat(
        " (origin ", e.started.ctx.DebugString(), " on tid ", origin_tid,
        "; ran on tid ", e.tid, "; finish_ran ", e.finish_ran.ctx.DebugString(),
        " tid ", e.finish_ran.thread_id, "; off_origin ",
        e.finished_off_origin ? "true" : "false", ")");
    if (e.finish_ran.thread_id != e.tid) {
      Violation("trace.finish_ran",
                name +
                    ": finish_ran names another thread than the one the "
                    "processors ran on" +
                    where);
    }
    const bool loop_going = loops_[l]->destroy_seq.load() < e.seq;
    if (!e.finished_off_origin) {
      if (e.finish_ran.ctx != e.started.ctx) {
        Violation(
            "trace.finish_ran",
            name + ": on origin, but finish_ran is another context" + where);
      }
    } else if (!e.finish_ran.ctx.is_null()) {  // [F1]: the origin loop's root.
      ++on_root;
      if (e.finish_ran.ctx != loops_[l]->root) {
        Violation("trace.finish_ran",
                  name +
                      ": off origin on a context other than its loop's "
                      "root" +
                      where);
      }
    } else {  // [F2]/[F3]: where it was called or dropped.
      ++off_here;
      if (!loop_going) {
        Violation("trace.thread",
                  name +
                      ": ran off its loop although that loop was not "
                      "shutting down ([F2]/[F3] do not apply)" +
                      where);
      }
    }
    if (e.tid != origin_tid && !loop_going) {
      Violation("trace.thread",
                name +
                    ": processor end event off the origin loop thread "
                    "while that loop lived" +
                    where);
    }
    auto want_off = expect_off.find(e.key());
    if (want_off != expect_off.end() && !e.finished_off_origin) {
      Violation("trace.dead_origin", name + ": " + want_off->second +
                                         ", but reported finished_off_origin "
                                         "= false" +
                                         where);
    }
    if (!is_trace) {
      const Item& t = items[ItemKey(e.trace_id, SpanId())];
      if (t.ends > 0 && t.end_seq < e.seq) {
        Violation("trace.order", name + ": span ended after its trace");
      }
    }
  }
  for (const auto& [key, it] : items) {
    if (it.starts != 1 || it.ends != 1) {
      Violation("trace.exactly_once",
                absl::StrCat(key, ": ", it.starts, " start(s), ", it.ends,
                             " end(s); want exactly one of each"));
    }
  }
  const TracerStats st = tracer_->stats();
  if (st.finishes_on_root != on_root || st.finishes_off_origin != off_here) {
    Violation(
        "trace.counters",
        absl::StrCat("stats say ", st.finishes_on_root, " on root, ",
                     st.finishes_off_origin, " off origin; the events say ",
                     on_root, " and ", off_here));
  }
}

void Harness::Run(const uint8_t* data, size_t size) {
  ByteReader in(data, size);
  Setup(in);
  std::vector<Op> ops;
  const std::vector<OpCode>& table = ExtendedOpTable();
  auto code = [&](uint8_t byte) {
    return options_.legacy_ops ? kOpTable[byte % kOpTableSize]
                               : table[byte % table.size()];
  };
  while (!in.done() && ops.size() < options_.max_ops) {
    Op op;
    op.code = code(in.Next());
    op.exec = in.Next();
    op.a = in.Next();
    op.b = in.Next();
    op.c = in.Next();
    if (op.code == OpCode::kArmReentry) {  // The next five bytes: what runs.
      op.nested_code = ReentrantCode(code(in.Next()));
      op.nested_exec = in.Next();
      op.nested_a = in.Next();
      op.nested_b = in.Next();
      op.nested_c = in.Next();
    }
    bool disabled = false;
    for (const std::string& name : options_.disabled) {
      disabled = disabled || name == ExtendedOpName(op.code) ||
                 (op.code == OpCode::kArmReentry &&
                  name == ExtendedOpName(op.nested_code));
    }
    if (!disabled) ops.push_back(op);
  }
  result_->ops = ops.size();
  for (size_t i = 0; i < ops.size(); ++i) {
    g_phase.store("dispatching operations");
    Dispatch(ops[i]);
  }
  Teardown();
}

}  // namespace

ModelResult RunModel(const uint8_t* data, size_t size,
                     const ModelOptions& options) {
  ModelResult result;
  // A hung run (e.g. a lost wake-up) aborts with a message, not a silent
  // test timeout.
  Mutex mu;
  ctxloop::CondVar cv;
  bool done = false;
  std::thread watchdog([&] {
    MutexLock lock(&mu);
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::seconds(options.watchdog_seconds);
    while (!done) {
      if (!cv.WaitUntil(&mu, deadline) && !done &&
          std::chrono::steady_clock::now() >= deadline) {
        std::fprintf(stderr,
                     "fuzz: BROKEN model.hang: the model run did not finish "
                     "in %d s, stuck in phase \"%s\": a deadlock or a hang "
                     "(lost wake-up or stop, a loop that never drains)\n",
                     options.watchdog_seconds, g_phase.load());
        std::abort();
      }
    }
  });
  g_phase.store("setup");
  {
    Harness h(options, &result);
    h.Run(data, size);
  }
  {
    MutexLock lock(&mu);
    done = true;
    cv.SignalAll();
  }
  watchdog.join();
  for (const std::string& name : options.ignore) {
    for (auto it = result.violations.begin(); it != result.violations.end();) {
      const bool prefix = !name.empty() && name.back() == '.' &&
                          it->first.compare(0, name.size(), name) == 0;
      if (it->first == name || prefix) {
        result.ignored[it->first] += it->second;
        result.examples.erase(it->first);
        it = result.violations.erase(it);
      } else {
        ++it;
      }
    }
  }
  return result;
}

}  // namespace fuzz
}  // namespace ctxloop
