// Copyright 2026 The ctxloop Authors.
//
// The README's "Writing a stream sink" example, compiled and run as a test so
// the README stays true: a producer on its own loop thread streams events,
// carrying its run's trace, to a sink on another loop; the sink traces its
// own work under the producer's trace; the trace is finished on its origin
// when the stream completes. Exits 0 when all of that happened.

#include <cstdio>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/loop/loop_thread.h"
#include "ctxloop/stream/stream.h"
#include "ctxloop/trace/in_memory_exporter.h"
#include "ctxloop/trace/simple_processor.h"
#include "ctxloop/trace/tracer.h"

namespace {

struct Event {
  int index;
  std::string text;
};

}  // namespace

int main() {
  auto exporter = std::make_shared<ctxloop::InMemoryExporter>();
  ctxloop::Tracer::Options options;
  options.processors.push_back(
      std::make_shared<ctxloop::SimpleProcessor>(exporter));
  ctxloop::Tracer tracer(std::move(options));

  ctxloop::LoopThread agent;  // The producer's loop, on its own thread.
  ctxloop::Loop loop;         // The consumer's loop, on this thread.
  ctxloop::ContextHandle response_ctx = *loop.NewContext("response");

  // Producer side: start the run's trace on the agent's context and hand it
  // to the stream, which finishes it on its origin however the stream ends.
  ctxloop::StreamWriter<Event> writer;
  ctxloop::StreamReader<Event> reader;
  absl::Status started = agent.Invoke([&](ctxloop::Loop& agent_loop) {
    ctxloop::ContextHandle agent_ctx = *agent_loop.NewContext("agent");
    ctxloop::StreamConfig config;
    config.trace = tracer.StartTrace(agent_ctx, "agent run");
    auto [w, r] = *ctxloop::MakeStream<Event>(agent_ctx, std::move(config));
    writer = std::move(w);
    reader = std::move(r);
  });
  if (!started.ok()) return 1;

  // Consumer side, on the response context.
  const ctxloop::SpanParent parent = reader.trace_parent();
  int received = 0;
  absl::Status ending = absl::UnknownError("no completion");
  ctxloop::Sink<Event> sink;
  sink.on_event = [&](ctxloop::ContextHandle ctx, Event&& e) {
    ctxloop::SpanOptions o;
    o.parent = parent;  // The producer's trace, on the consumer's context.
    ctxloop::SpanScope span = tracer.StartSpan(ctx, "write event", o);
    std::printf("event %d: %s\n", e.index, e.text.c_str());
    ++received;
    (void)span.Finish(ctx);  // Same context: runs inline.
  };
  sink.on_complete = [&](ctxloop::ContextHandle, const absl::Status& s) {
    ending = s;  // Exactly once: OK, the producer's failure, or a cut.
    loop.Stop();
  };
  ctxloop::StreamSubscription sub =
      *std::move(reader).Attach(response_ctx, std::move(sink));

  // The producer emits from its own loop thread.
  (void)ctxloop::Post(agent.root(), [&](ctxloop::ContextHandle) {
    for (int i = 0; i < 3; ++i) {
      absl::Status s = writer.Emit(Event{i, "token " + std::to_string(i)});
      if (!s.ok()) std::printf("emit: %s\n", s.ToString().c_str());
    }
    (void)writer.Complete();
  });
  (void)loop.Run();
  (void)agent.Invoke([](ctxloop::Loop&) {});  // The trace's finish has run.

  const bool ok = ending.ok() && received == 3 &&
                  exporter->traces().size() == 1 &&
                  exporter->spans().size() == 4 &&  // The root span too.
                  !exporter->traces()[0].finished_off_origin;
  std::printf("%s: %d events, %zu trace(s), %zu span(s) exported\n",
              ok ? "ok" : "FAILED", received, exporter->traces().size(),
              exporter->spans().size());
  return ok ? 0 : 1;
}
