// Copyright 2026 The ctxloop Authors.
//
// README's quick start, whole: built by Bazel (//examples/quickstart, run by
// :quickstart_test) and by CMake (the CMakeLists.txt beside it: ctxloop's
// own build runs it under CTest, tests/cmake_host_app/run.sh builds it as a
// find_package consumer of the installed package), so README's code compiles
// and runs as written.
//
// A request arrives on this thread's loop, continuing its caller's W3C trace.
// Its work runs on another loop's thread, under the request's trace, and that
// thread finishes the trace: the finish is posted home and runs on the
// request's context, on this thread. Spans leave over OTLP/HTTP
// (OTEL_EXPORTER_OTLP_ENDPOINT, default http://localhost:4318; with no
// collector there, the export fails after 2 s and is counted, not lost).
// Exits 0 if the finish ran where the trace started.

#include <cstdio>
#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "ctxloop/loop/loop.h"
#include "ctxloop/loop/loop_thread.h"
#include "ctxloop/trace/batch_processor.h"
#include "ctxloop/trace/otlp/otlp_http_exporter.h"
#include "ctxloop/trace/propagation.h"
#include "ctxloop/trace/tracer.h"

int main() {
  // OTLP/HTTP behind a batch processor. The host keeps a shared_ptr to the
  // exporter to read its stats() after the processor has shut it down.
  absl::StatusOr<ctxloop::OtlpHttpExporter::Options> options =
      ctxloop::OtlpHttpExporter::OptionsFromEnvironment();
  if (!options.ok()) return 1;
  options->timeout = absl::Seconds(2);  // A demo: give up soon.
  absl::StatusOr<std::unique_ptr<ctxloop::OtlpHttpExporter>> created =
      ctxloop::OtlpHttpExporter::Create(*options);
  if (!created.ok()) return 1;
  std::shared_ptr<ctxloop::OtlpHttpExporter> exporter = *std::move(created);
  absl::StatusOr<std::unique_ptr<ctxloop::BatchProcessor>> batch =
      ctxloop::BatchProcessor::Create(exporter);
  if (!batch.ok()) return 1;
  ctxloop::Tracer::Options tracer_options;
  tracer_options.processors.push_back(*std::move(batch));
  ctxloop::Tracer tracer(std::move(tracer_options));

  ctxloop::Loop loop;          // Driven by this thread (Run, below).
  ctxloop::LoopThread worker;  // A loop on a thread of its own.
  ctxloop::ContextHandle request = *loop.NewContext("request");
  ctxloop::TraceOptions trace_options;  // Continue the caller's trace.
  trace_options.remote_parent =
      ctxloop::ExtractTraceContext(
          "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
          .value_or(ctxloop::SpanContext());
  ctxloop::TraceScope trace =
      tracer.StartTrace(request, "handle request", trace_options);

  bool finished_home = false;
  const ctxloop::SpanParent parent = trace.AsParent();
  absl::Status posted =
      ctxloop::Post(worker.root(), [&, parent, trace = std::move(trace)](
                                       ctxloop::ContextHandle here) mutable {
        ctxloop::SpanOptions span_options;
        span_options.parent = parent;  // The request's trace, on this loop.
        {
          ctxloop::SpanScope span =
              tracer.StartSpan(here, "work", span_options);
          std::printf("traceparent to send on: %s\n",
                      ctxloop::FormatTraceparent(span.span_context()).c_str());
        }  // `span` finishes as it goes: on its own context, here and now.
        ctxloop::FinishOptions finish;
        finish.on_finished = [&](const ctxloop::ExecutionSite& ran) {
          finished_home = ran.ctx == request;  // On the main thread.
          loop.Stop();
        };
        // Posted to `request`, on the main thread: it runs there.
        if (!trace.Finish(here, std::move(finish)).ok()) loop.Stop();
      });
  if (!posted.ok() || !loop.Run().ok()) return 1;
  const absl::Status flushed = tracer.Shutdown();  // Exports what is queued.
  std::printf("finished on its origin: %d; export: %s (spans exported %d)\n",
              finished_home, flushed.ToString().c_str(),
              static_cast<int>(exporter->stats().spans_exported));
  return finished_home ? 0 : 1;
}
