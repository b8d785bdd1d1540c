// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/embed/testing/scenario.h
// -----------------------------------------------------------------------------
//
// The ctxloop side of the embedding tests (asio_driver_test, uv_driver_test),
// shared so both hosts are held to the same checks. A host test serves one
// TCP connection on 127.0.0.1 with its own loop; when the request line has
// arrived, the host's read callback calls `Scenario::OnRequest` on its
// thread, which is the ctxloop loop's thread, and the scenario then:
//
//   * starts a trace "request" on `request_ctx` and a stream carrying it;
//     the stream's sink (on `response_ctx`, a child) writes every event back
//     through the host's socket (`write`) with a span per event under the
//     producer's trace, and calls `done` once the stream completed;
//   * starts a span "offloaded work" on `request_ctx` and hands it, with the
//     stream's writer, to a worker thread, which emits two events, finishes
//     the span there (a finish from another thread: it must run on
//     `request_ctx`, on the host thread), writes a byte into a socketpair
//     that `request_ctx` watches (`Loop::WatchFd`), and posts a delayed task
//     (2 ms) that emits the last event and completes the stream.
//
// `Verify(host_tid)` then checks every part: events in order, one OK
// completion, the trace and both kinds of span exported with their
// finishes run on their origin context on the host thread, the fd watch and
// the timer run there too. `Finished()` tells the host when to stop.
//
// Cost: test code. Thread-safety: everything on the loop thread, except
// `Finished()` (any thread).

#ifndef CTXLOOP_EMBED_TESTING_SCENARIO_H_
#define CTXLOOP_EMBED_TESTING_SCENARIO_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "ctxloop/loop/context_handle.h"
#include "ctxloop/loop/fd_watch.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/stream/stream.h"
#include "ctxloop/trace/in_memory_exporter.h"
#include "ctxloop/trace/tracer.h"

namespace ctxloop {
namespace embed_testing {

// The calling thread's Linux tid (what `ExecutionSite::thread_id` holds).
int64_t ThisTid();

// What the client sends and must get back.
inline constexpr char kRequest[] = "hello\n";
inline constexpr char kReply[] = "echo hello\nbye\n";

// A blocking client on a thread of its own: connects to 127.0.0.1:`port`,
// sends `request`, reads until the server closes. `Join()` returns what it
// read (or "error: ...").
class Client {
 public:
  Client(uint16_t port, std::string request);
  ~Client();
  std::string Join();

 private:
  std::string reply_;
  std::thread thread_;
};

class Scenario {
 public:
  // On `loop`'s thread.
  explicit Scenario(Loop& loop);
  ~Scenario();  // Joins the worker.

  // See the file comment. Loop (host) thread. `write` queues bytes on the
  // host's socket; `done` is called once, after the last `write`.
  void OnRequest(const std::string& line,
                 std::function<void(std::string)> write,
                 std::function<void()> done);

  // True once the stream completed and every record is exported. Any
  // thread.
  bool Finished() const;

  // GoogleTest checks of everything the file comment lists. Loop thread,
  // after `Finished()`.
  void Verify(int64_t host_tid) const;

  Tracer& tracer() { return *tracer_; }

 private:
  Loop& loop_;
  std::shared_ptr<InMemoryExporter> exporter_;
  std::unique_ptr<Tracer> tracer_;
  ContextHandle request_ctx_;
  ContextHandle response_ctx_;
  int pair_[2] = {-1, -1};  // [0] watched by the loop, [1] written.
  FdWatch watch_;
  StreamSubscription subscription_;
  std::thread worker_;
  int64_t worker_tid_ = 0;  // Written by the worker; read after join.

  // Loop thread.
  std::vector<std::string> events_;
  int completions_ = 0;
  absl::Status completion_;
  int64_t fd_callback_tid_ = 0;
  int64_t timer_tid_ = 0;
  int64_t sink_tid_ = 0;
  std::atomic<bool> complete_{false};
};

}  // namespace embed_testing
}  // namespace ctxloop

#endif  // CTXLOOP_EMBED_TESTING_SCENARIO_H_
