// A CMake host of ctxloop (tests/cmake_host_app/run.sh builds it against an
// installed ctxloop and runs it). What a host does with the library:
//   * a producer on its own loop thread (LoopThread) starts a trace;
//   * a stream carries events from a plain std::thread to a sink on this
//     thread's loop; the sink opens a span per event under the producer's
//     trace, on its own context;
//   * once the sink has seen the end of the stream, the std::thread, not the
//     trace's loop, finishes the trace: the finish runs on the trace's
//     origin, on the producer's loop thread.
// Exits 0 if all of that is what the exporter saw, 1 otherwise.
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <future>
#include <memory>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/loop/loop_thread.h"
#include "ctxloop/stream/stream.h"
#include "ctxloop/trace/in_memory_exporter.h"
#include "ctxloop/trace/simple_processor.h"
#include "ctxloop/trace/tracer.h"
#include "loop/loop.h"  // The host's own header of the same name.

namespace {

constexpr int kEvents = 100;

int64_t ThreadId() { return static_cast<int64_t>(syscall(SYS_gettid)); }

bool Check(bool ok, const char* what) {
  std::printf("%s: %s\n", ok ? "ok  " : "FAIL", what);
  return ok;
}

}  // namespace

int main() {
  auto exporter = std::make_shared<ctxloop::InMemoryExporter>();
  ctxloop::Tracer::Options options;
  options.processors.push_back(
      std::make_shared<ctxloop::SimpleProcessor>(exporter));
  ctxloop::Tracer tracer(std::move(options));

  ctxloop::LoopThread producer_loop;  // The trace's origin, its own thread.
  ctxloop::Loop loop;                 // The consumer's loop, this thread.
  absl::StatusOr<ctxloop::ContextHandle> response_ctx =
      loop.NewContext("response");
  if (!response_ctx.ok()) {
    std::printf("FAIL: NewContext: %s\n",
                response_ctx.status().ToString().c_str());
    return 1;
  }

  // On the producer's loop thread: its context, the trace, the stream.
  std::optional<ctxloop::TraceScope> trace;
  std::optional<ctxloop::StreamWriter<int>> writer;
  std::optional<ctxloop::StreamReader<int>> reader;
  absl::Status setup = absl::UnknownError("setup did not run");
  const absl::Status invoked =
      producer_loop.Invoke([&](ctxloop::Loop& producer) {
        absl::StatusOr<ctxloop::ContextHandle> ctx =
            producer.NewContext("producer");
        if (!ctx.ok()) {
          setup = ctx.status();
          return;
        }
        trace.emplace(tracer.StartTrace(*ctx, "cmake host run"));
        absl::StatusOr<ctxloop::StreamPair<int>> pair =
            ctxloop::MakeStream<int>(*ctx);
        if (!pair.ok()) {
          setup = pair.status();
          return;
        }
        writer.emplace(std::move(pair->writer));
        reader.emplace(std::move(pair->reader));
        setup = absl::OkStatus();
      });
  if (!invoked.ok() || !setup.ok()) {
    std::printf("FAIL: setup: %s %s\n", invoked.ToString().c_str(),
                setup.ToString().c_str());
    return 1;
  }

  // The sink, on this thread's loop: a span per event under the trace.
  const ctxloop::SpanParent parent = trace->AsParent();
  int received = 0;
  int64_t sum = 0;
  absl::Status span_error;
  absl::Status ending = absl::UnknownError("no on_complete");
  std::promise<void> sink_done;
  ctxloop::Sink<int> sink;
  sink.on_event = [&](ctxloop::ContextHandle ctx, int&& value) {
    ctxloop::SpanOptions o;
    o.parent = parent;
    ctxloop::SpanScope span = tracer.StartSpan(ctx, "handle event", o);
    ++received;
    sum += value;
    span_error.Update(span.Finish(ctx));  // Same context: runs inline.
  };
  sink.on_complete = [&](ctxloop::ContextHandle, const absl::Status& s) {
    ending = s;
    sink_done.set_value();
    loop.Stop();
  };
  // Failure guard only: a stream that never ends stops the loop after 60 s.
  (void)ctxloop::PostDelayed(*response_ctx, absl::Seconds(60),
                             [&](ctxloop::ContextHandle) { loop.Stop(); });
  absl::StatusOr<ctxloop::StreamSubscription> sub =
      std::move(*reader).Attach(*response_ctx, std::move(sink));
  if (!sub.ok()) {
    std::printf("FAIL: Attach: %s\n", sub.status().ToString().c_str());
    return 1;
  }

  // A plain thread, neither loop's: emits, completes, and once the sink has
  // seen the end, finishes the trace (spans cannot start in a finished one).
  int64_t emitter_tid = 0;
  absl::Status finish = absl::UnknownError("not finished");
  std::future<void> sink_done_future = sink_done.get_future();
  std::thread emitter([&] {
    emitter_tid = ThreadId();
    for (int i = 1; i <= kEvents; ++i) {
      absl::Status s = writer->Emit(i);
      while (absl::IsResourceExhausted(s)) {  // Full: the sink is draining.
        std::this_thread::yield();
        s = writer->Emit(i);
      }
    }
    (void)writer->Complete();
    (void)sink_done_future.wait_for(std::chrono::seconds(60));  // Guard.
    finish = trace->Finish();  // From this thread: posted to its origin.
  });
  const absl::Status ran = loop.Run();  // Until on_complete stops it.
  emitter.join();
  // The producer loop runs tasks in order: after this one, the posted finish
  // has run.
  (void)producer_loop.Invoke([](ctxloop::Loop&) {});

  const std::vector<ctxloop::SpanData> traces = exporter->traces();
  const std::vector<ctxloop::SpanData> spans = exporter->spans();
  bool ok = true;
  ok &= Check(ran.ok() && ending.ok(), "the stream completed OK");
  ok &=
      Check(received == kEvents && sum == int64_t{kEvents} * (kEvents + 1) / 2,
            "the sink got every event once, in full");
  ok &= Check(span_error.ok(), "every span started and finished");
  ok &= Check(finish.ok(), "Finish from another thread returned OK");
  ok &= Check(traces.size() == 1, "one trace exported");
  ok &= Check(static_cast<int>(spans.size()) == kEvents + 1,
              "one span per event exported, and the trace's root span");
  if (traces.size() == 1) {
    const ctxloop::SpanData& t = traces[0];
    ok &= Check(t.finish_called.thread_id == emitter_tid,
                "the finish was called on the emitting thread");
    ok &= Check(!t.finished_off_origin &&
                    t.finish_ran.thread_id == t.started.thread_id &&
                    t.finish_ran.thread_id != emitter_tid,
                "the finish ran on the trace's origin thread");
    bool same_trace = true;
    for (const ctxloop::SpanData& s : spans) {
      same_trace &= s.trace_id == t.trace_id;
    }
    ok &= Check(same_trace, "the sink's spans belong to the trace");
  }
  std::printf("%s: %s, %d events, %zu trace(s), %zu span(s)\n",
              ok ? "PASS" : "FAIL", host_loop::Name(), received, traces.size(),
              spans.size());
  return ok ? 0 : 1;
}
