// Copyright 2026 The ctxloop Authors.
//
// sse_load: the demo server (`examples/stream_server`'s `StreamServer`)
// under many concurrent SSE clients, in one process, checked end to end.
//
//   bazel run -c opt //tests/load:sse_load -- --connections=1000 --seconds=20
//
// For each tracing mode (--tracing=on, off or both) it starts a server, keeps
// --connections streams in flight for --seconds with `SseLoadClient` (a
// ctxloop loop of its own), then checks:
//   * every request the client made was answered 200 with the whole stream
//     (`event: done`), and the server finished as many runs as it started;
//   * with tracing on, every run's trace was exported exactly once (none
//     lost, none duplicated, none unknown), with both spans of every event,
//     and the batch processor dropped nothing;
//   * resident memory is flat: the load runs in three equal phases; the
//     first warms every pool and buffer up, and the third grows resident
//     memory by less than --max_rss_growth_mb over the second;
//   * at least --min_peak streams were in flight at once.
// With --never_read and --slow_header, hostile clients run beside the load
// (see `Hostiles`): every well-behaved request must still be whole, no
// connection may hold more output than the server's stated bound, and
// resident memory must stay under --max_rss_mb; with --otlp_endpoint the
// traces also go to a collector over OTLP/HTTP (Jaeger: tools/jaeger.sh).
// The full run:
//
//   tools/jaeger.sh start
//   bazel build -c opt //tests/load:sse_load
//   bazel-bin/tests/load/sse_load --connections=8000 --seconds=30 \
//       --events=20 --delay_ms=5 --never_read=1000 --slow_header=100 \
//       --tracing=both --otlp_endpoint=http://127.0.0.1:4318 --max_rss_mb=1024
//
// It prints requests/s and p50/p99 latency per mode and exits 0 only if all
// checks pass. `sse_load_test` runs a small configuration in `bazel test`,
// `sse_load_hostile_test` a small one with hostile clients.

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "ctxloop/examples/stream_server_lib.h"
#include "ctxloop/loop/mutex.h"
#include "ctxloop/tests/load/sse_load_client.h"
#include "ctxloop/trace/batch_processor.h"
#include "ctxloop/trace/exporter.h"
#include "ctxloop/trace/otlp/otlp_http_exporter.h"
#include "ctxloop/trace/tracer.h"

ABSL_FLAG(int, connections, 1000, "Streams kept in flight at once.");
ABSL_FLAG(double, seconds, 15,
          "Load duration per tracing mode (three equal phases).");
ABSL_FLAG(int, events, 20, "Events per stream.");
ABSL_FLAG(int, delay_ms, 5, "Delay per event, ms.");
ABSL_FLAG(std::string, tracing, "both", "on, off or both.");
ABSL_FLAG(int, min_peak, -1,
          "Fail unless this many streams were in flight at once (-1: "
          "--connections).");
ABSL_FLAG(int, never_read, 0,
          "Hostile clients beside the load that ask for 100,000 events and "
          "never read (reconnecting when the server cuts them).");
ABSL_FLAG(int, slow_header, 0,
          "Hostile clients that send a request head one byte every 2 s.");
ABSL_FLAG(std::string, otlp_endpoint, "",
          "With tracing on, also export over OTLP/HTTP to this collector "
          "(e.g. http://127.0.0.1:4318, Jaeger).");
ABSL_FLAG(int, max_rss_mb, 0,
          "Fail if resident memory ever exceeds this (0: no check).");
ABSL_FLAG(int, max_rss_growth_mb, 8,
          "Fail if the third phase of the load grows resident memory by more "
          "than this over the second.");

// Sanitizers keep freed memory in quarantine and shadow: resident memory is
// not the program's under them, so the flatness check is skipped there.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CTXLOOP_LOAD_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define CTXLOOP_LOAD_SANITIZED 1
#endif
#endif
#ifndef CTXLOOP_LOAD_SANITIZED
#define CTXLOOP_LOAD_SANITIZED 0
#endif
#if defined(__SANITIZE_THREAD__)
#define CTXLOOP_LOAD_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CTXLOOP_LOAD_TSAN 1
#endif
#endif
#ifndef CTXLOOP_LOAD_TSAN
#define CTXLOOP_LOAD_TSAN 0
#endif

namespace ctxloop {
namespace load {
namespace {

// Counts what reaches it: traces by id, spans in total.
class CountingExporter : public SpanExporter {
 public:
  absl::Status Export(absl::Span<const SpanData> batch) override {
    ctxloop::MutexLock lock(&mu_);
    for (const SpanData& item : batch) {
      if (item.is_root()) {
        ++traces_[item.trace_id];
      } else {
        ++spans_;
      }
    }
    return absl::OkStatus();
  }
  absl::flat_hash_map<TraceId, int> traces() const {
    ctxloop::MutexLock lock(&mu_);
    return traces_;
  }
  uint64_t spans() const {
    ctxloop::MutexLock lock(&mu_);
    return spans_;
  }

 private:
  mutable ctxloop::Mutex mu_;
  absl::flat_hash_map<TraceId, int> traces_ ABSL_GUARDED_BY(mu_);
  uint64_t spans_ ABSL_GUARDED_BY(mu_) = 0;
};

// Trace ids of finished runs, from `on_run_finished`.
struct RunLog {
  ctxloop::Mutex mu;
  std::vector<TraceId> trace_ids ABSL_GUARDED_BY(mu);
  uint64_t completed ABSL_GUARDED_BY(mu) = 0;
  uint64_t written ABSL_GUARDED_BY(mu) = 0;
};

struct ModeResult {
  bool ok = true;
  LoadResult phases[3];
  int64_t rss_after[3] = {0, 0, 0};
};

bool Check(bool ok, const std::string& what, std::vector<std::string>* bad) {
  if (!ok) bad->push_back(what);
  return ok;
}

// Clients that misbehave, on a thread of their own, until stopped: never
// readers (small receive buffer, reconnect when cut) and slow-header clients
// (one byte of a request head every 2 s; reconnect when cut).
class Hostiles {
 public:
  Hostiles(int port, int never_read, int slow_header)
      : port_(port), never_read_(never_read), slow_header_(slow_header) {
    if (never_read_ + slow_header_ > 0)
      thread_ = std::thread([this] { Run(); });
  }
  ~Hostiles() { Stop(); }
  void Stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }
  uint64_t reconnects() const { return reconnects_.load(); }

 private:
  struct Client {
    int fd = -1;
    bool never_read = false;
    size_t sent = 0;
  };
  static constexpr char kSlowHead[] =
      "GET /run?events=5 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

  int Connect(bool never_read) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (never_read) {
      const int small = 4096;
      (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    }
    sockaddr_in addr = {};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port_));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      close(fd);
      return -1;
    }
    if (never_read) {
      const std::string req =
          "GET /run?events=100000&delay_ms=0 HTTP/1.1\r\nHost: "
          "127.0.0.1\r\n\r\n";
      (void)send(fd, req.data(), req.size(), MSG_NOSIGNAL);
    }
    return fd;
  }

  void Run() {
    std::vector<Client> clients(
        static_cast<size_t>(never_read_ + slow_header_));
    for (size_t i = 0; i < clients.size(); ++i) {
      clients[i].never_read = static_cast<int>(i) < never_read_;
      clients[i].fd = Connect(clients[i].never_read);
      absl::SleepFor(absl::Microseconds(200));  // Ramp.
    }
    absl::Time next_byte = absl::Now();
    while (!stop_.load()) {
      absl::SleepFor(absl::Milliseconds(100));
      const bool send_byte = absl::Now() >= next_byte;
      if (send_byte) next_byte = absl::Now() + absl::Seconds(2);
      for (Client& c : clients) {
        bool closed = c.fd < 0;
        if (!closed) {
          pollfd p = {c.fd, POLLRDHUP, 0};
          closed = poll(&p, 1, 0) > 0 &&
                   (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
        }
        if (!closed && !c.never_read && send_byte &&
            c.sent + 1 < sizeof(kSlowHead)) {
          closed = send(c.fd, kSlowHead + c.sent, 1, MSG_NOSIGNAL) != 1;
          ++c.sent;
        }
        if (closed) {
          if (c.fd >= 0) close(c.fd);
          c.fd = Connect(c.never_read);
          c.sent = 0;
          reconnects_.fetch_add(1);
        }
      }
    }
    for (Client& c : clients) {
      if (c.fd >= 0) close(c.fd);
    }
  }

  const int port_;
  const int never_read_;
  const int slow_header_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> reconnects_{0};
  std::thread thread_;
};

// The highest resident memory seen, sampled every 50 ms until stopped.
class RssSampler {
 public:
  RssSampler()
      : thread_([this] {
          while (!stop_.load()) {
            int64_t now = ResidentBytes();
            int64_t seen = peak_.load();
            while (now > seen && !peak_.compare_exchange_weak(seen, now)) {
            }
            absl::SleepFor(absl::Milliseconds(50));
          }
        }) {}
  ~RssSampler() {
    stop_.store(true);
    thread_.join();
  }
  int64_t peak() const { return peak_.load(); }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> peak_{0};
  std::thread thread_;
};

ModeResult RunMode(bool tracing) {
  ModeResult m;
  std::vector<std::string> bad;
  auto exporter = std::make_shared<CountingExporter>();
  std::unique_ptr<Tracer> tracer;
  BatchProcessor* batch_ptr = nullptr;
  std::shared_ptr<OtlpHttpExporter> otlp_exporter;
  BatchProcessor* otlp_batch = nullptr;
  if (tracing) {
    BatchProcessor::Options bo;
    bo.max_queue_size = 1 << 20;  // The check is "nothing lost": no drops.
    bo.max_batch_size = 512;
    bo.schedule_delay = absl::Milliseconds(100);
    auto batch = BatchProcessor::Create(exporter, std::move(bo));
    if (!batch.ok()) {
      std::printf("cannot make a BatchProcessor: %s\n",
                  batch.status().ToString().c_str());
      m.ok = false;
      return m;
    }
    batch_ptr = batch->get();
    Tracer::Options to;
    to.processors.push_back(std::shared_ptr<BatchProcessor>(*std::move(batch)));
    const std::string endpoint = absl::GetFlag(FLAGS_otlp_endpoint);
    if (!endpoint.empty()) {
      OtlpHttpExporter::Options oo;
      oo.resource = otlp::Resource::WithServiceName("ctxloop-sse-load");
      oo.endpoint = OtlpHttpExporter::TracesUrl(endpoint);
      auto otlp = OtlpHttpExporter::Create(std::move(oo));
      if (!otlp.ok()) {
        std::printf("cannot make the OTLP exporter: %s\n",
                    otlp.status().ToString().c_str());
        m.ok = false;
        return m;
      }
      otlp_exporter = std::shared_ptr<OtlpHttpExporter>(*std::move(otlp));
      BatchProcessor::Options ob;
      ob.max_queue_size = 1 << 18;
      ob.max_batch_size = 512;
      ob.schedule_delay = absl::Milliseconds(200);
      auto ob_processor = BatchProcessor::Create(otlp_exporter, std::move(ob));
      if (!ob_processor.ok()) {
        m.ok = false;
        return m;
      }
      otlp_batch = ob_processor->get();
      to.processors.push_back(
          std::shared_ptr<BatchProcessor>(*std::move(ob_processor)));
    }
    tracer = std::make_unique<Tracer>(std::move(to));
  }
  RunLog log;
  examples::StreamServer::Options so;
  so.tracer = tracer.get();
  so.max_reports = 16;  // The log below keeps what the checks need.
  // Room for every client of the full run (9,100 connections).
  so.max_connections = 12000;
  so.max_runs = 10000;
  so.on_run_finished = [&log](const examples::RunReport& r) {
    ctxloop::MutexLock lock(&log.mu);
    log.trace_ids.push_back(r.trace_id);
    if (r.stream_status.ok()) ++log.completed;
    log.written += static_cast<uint64_t>(r.events_written);
  };
  auto server = examples::StreamServer::Start(std::move(so));
  if (!server.ok()) {
    std::printf("cannot start the server: %s\n",
                server.status().ToString().c_str());
    m.ok = false;
    return m;
  }
  const int never_read = absl::GetFlag(FLAGS_never_read);
  const int slow_header = absl::GetFlag(FLAGS_slow_header);
  const bool hostile = never_read + slow_header > 0;
  RssSampler rss;
  Hostiles hostiles((*server)->port(), never_read, slow_header);
  if (hostile) absl::SleepFor(absl::Seconds(1));  // Let them settle in.
  const int events = absl::GetFlag(FLAGS_events);
  SseLoadClient::Options co;
  co.port = (*server)->port();
  co.target = absl::StrCat("/run?events=", events,
                           "&delay_ms=", absl::GetFlag(FLAGS_delay_ms));
  co.connections = absl::GetFlag(FLAGS_connections);
  co.duration = absl::Seconds(absl::GetFlag(FLAGS_seconds) / 3);

  // Three phases: the first warms every pool and buffer up; the third must
  // not grow resident memory over the second.
  for (int phase = 0; phase < 3; ++phase) {
    absl::StatusOr<LoadResult> r = SseLoadClient::Run(co);
    if (!r.ok()) {
      std::printf("load client: %s\n", r.status().ToString().c_str());
      m.ok = false;
      return m;
    }
    m.phases[phase] = *r;
    if (phase == 2) hostiles.Stop();  // Their runs end; then idle.
    // With hostiles still connected the server is never idle: check that
    // the well-behaved runs ended instead.
    if (!hostile || phase == 2) {
      Check((*server)->WaitForIdle(absl::Seconds(60)),
            "the server did not go idle within 60 s", &bad);
    }
    if (tracer != nullptr) (void)tracer->ForceFlush(absl::Seconds(60));
    if (tracer != nullptr && hostile && phase == 2) {
      // A cancelled run's trace ends when its last open span ends, on loop
      // 1, possibly just after the run was reported (trace case [F5]):
      // give those traces up to 10 s to arrive.
      size_t runs = 0;
      {
        ctxloop::MutexLock lock(&log.mu);
        runs = log.trace_ids.size();
      }
      const absl::Time deadline = absl::Now() + absl::Seconds(10);
      while (exporter->traces().size() < runs && absl::Now() < deadline) {
        absl::SleepFor(absl::Milliseconds(20));
        (void)tracer->ForceFlush(absl::Seconds(10));
      }
    }
    m.rss_after[phase] = ResidentBytes();
  }

  uint64_t ok = 0, failed = 0, peak = 0;
  double seconds = 0;
  absl::Duration max_latency;
  std::string first_error;
  for (const LoadResult& r : m.phases) {
    ok += r.ok;
    failed += r.failed;
    peak = std::max(peak, r.peak_in_flight);
    seconds += absl::ToDoubleSeconds(r.elapsed);
    max_latency = std::max(max_latency, r.max);
    if (first_error.empty() && !r.first_errors.empty()) {
      first_error = r.first_errors[0];
    }
  }
  const LoadResult& last = m.phases[2];
  Check(failed == 0,
        absl::StrCat(failed, " requests failed, first: ", first_error), &bad);
  const int min_peak = absl::GetFlag(FLAGS_min_peak) < 0
                           ? co.connections
                           : absl::GetFlag(FLAGS_min_peak);
  Check(peak >= static_cast<uint64_t>(min_peak),
        absl::StrCat("peak in flight ", peak, " < ", min_peak), &bad);
  const examples::ServerStats stats = (*server)->stats();
  const int64_t rss_peak = rss.peak();
  const int max_rss_mb = absl::GetFlag(FLAGS_max_rss_mb);
  Check(CTXLOOP_LOAD_SANITIZED || max_rss_mb <= 0 ||
            rss_peak <= int64_t{max_rss_mb} << 20,
        absl::StrCat("resident memory peaked at ", rss_peak >> 20,
                     " MiB, over --max_rss_mb=", max_rss_mb),
        &bad);
  Check(stats.output_peak_per_run <=
            examples::StreamServer::MaxOutputBytesPerConnection(
                examples::StreamServer::Options()),
        absl::StrCat("a connection held ", stats.output_peak_per_run,
                     " output bytes"),
        &bad);
  Check(stats.runs_started == stats.runs_finished,
        absl::StrCat("server started ", stats.runs_started, " runs, finished ",
                     stats.runs_finished),
        &bad);
  Check(stats.runs_completed == ok,
        absl::StrCat("server completed ", stats.runs_completed,
                     " runs, the client saw ", ok, " whole streams"),
        &bad);
  {
    ctxloop::MutexLock lock(&log.mu);
    if (tracing) {
      const absl::flat_hash_map<TraceId, int> exported = exporter->traces();
      uint64_t missing = 0, duplicated = 0;
      for (const TraceId& id : log.trace_ids) {
        auto it = exported.find(id);
        if (it == exported.end()) {
          ++missing;
        } else if (it->second != 1) {
          ++duplicated;
        }
      }
      Check(missing == 0 && duplicated == 0,
            absl::StrCat(missing, " runs' traces not exported, ", duplicated,
                         " exported more than once"),
            &bad);
      Check(exported.size() == log.trace_ids.size(),
            absl::StrCat(exported.size(), " traces exported for ",
                         log.trace_ids.size(), " runs"),
            &bad);
      // One "agent step" span per event emitted and one "write event" span
      // per event written; every run here completed, so both are `events`.
      // Cancelled (hostile) runs also end the step they were in, with an
      // error: at least the two per event then.
      const uint64_t expected_spans = 2 * log.written;
      Check(hostile ? exporter->spans() >= expected_spans
                    : exporter->spans() == expected_spans,
            absl::StrCat(exporter->spans(), " spans exported, expected ",
                         expected_spans),
            &bad);
      const BatchProcessor::Stats bs = batch_ptr->stats();
      Check(bs.dropped == 0 && bs.failed_items == 0,
            absl::StrCat("batch processor dropped ", bs.dropped, ", failed ",
                         bs.failed_items),
            &bad);
    }
    Check(log.completed == ok,
          absl::StrCat(log.completed, " runs reported complete, ", ok,
                       " seen by the client"),
          &bad);
  }
  const int64_t growth = m.rss_after[2] - m.rss_after[1];
  // With hostile clients the third phase is not like the second (they
  // leave at its end, and their reconnects land anywhere): memory is checked
  // against --max_rss_mb then, not for flatness.
  Check(CTXLOOP_LOAD_SANITIZED || hostile ||
            growth < int64_t{absl::GetFlag(FLAGS_max_rss_growth_mb)} << 20,
        absl::StrCat("resident memory grew ", growth >> 10,
                     " KiB in the third phase"),
        &bad);

  (*server)->Shutdown();
  if (tracer != nullptr) (void)tracer->Shutdown();
  if (otlp_exporter != nullptr) {
    const OtlpHttpExporter::Stats o = otlp_exporter->stats();
    const BatchProcessor::Stats ob = otlp_batch->stats();
    std::printf(
        "  OTLP/HTTP: %llu spans exported, %llu failed, %llu requests; its "
        "batch processor dropped %llu\n",
        static_cast<unsigned long long>(o.spans_exported),  // NOLINT
        static_cast<unsigned long long>(o.spans_failed),    // NOLINT
        static_cast<unsigned long long>(o.requests),        // NOLINT
        static_cast<unsigned long long>(ob.dropped));       // NOLINT
  }
  if (hostile) {
    std::printf(
        "  hostile: %d never-read + %d slow-header clients, %llu reconnects "
        "after being cut; server: peak %llu connections, %llu pauses, output "
        "peak %llu B per run / %llu B total, %llu 503s, RSS peak %lld MiB\n",
        never_read, slow_header,
        static_cast<unsigned long long>(hostiles.reconnects()),       // NOLINT
        static_cast<unsigned long long>(stats.connections_peak),      // NOLINT
        static_cast<unsigned long long>(stats.pauses),                // NOLINT
        static_cast<unsigned long long>(stats.output_peak_per_run),   // NOLINT
        static_cast<unsigned long long>(stats.output_buffered_peak),  // NOLINT
        static_cast<unsigned long long>(stats.busy_refused),          // NOLINT
        static_cast<long long>(rss_peak >> 20));                      // NOLINT
  }

  std::printf(
      "tracing %-3s  %6.0f req/s  p50 %7.1f ms  p99 %7.1f ms  max %7.1f ms  "
      "peak %llu streams  %llu ok  RSS after each phase %lld / %lld / %lld "
      "KiB\n",
      tracing ? "on" : "off",
      seconds > 0 ? static_cast<double>(ok) / seconds : 0,
      absl::ToDoubleMilliseconds(last.p50),
      absl::ToDoubleMilliseconds(last.p99),
      absl::ToDoubleMilliseconds(max_latency),
      static_cast<unsigned long long>(peak),          // NOLINT(runtime/int)
      static_cast<unsigned long long>(ok),            // NOLINT(runtime/int)
      static_cast<long long>(m.rss_after[0] >> 10),   // NOLINT(runtime/int)
      static_cast<long long>(m.rss_after[1] >> 10),   // NOLINT(runtime/int)
      static_cast<long long>(m.rss_after[2] >> 10));  // NOLINT(runtime/int)
  for (const std::string& p : bad) std::printf("  FAILED: %s\n", p.c_str());
  m.ok = bad.empty();
  return m;
}

}  // namespace
}  // namespace load
}  // namespace ctxloop

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  if (CTXLOOP_LOAD_TSAN) {
    // Client and server share this process's fd table: when one side closes
    // a socket and the other is handed the same number, libevent's epoll
    // bookkeeping on the old number is reported by TSan as a race on the new
    // descriptor. The library's own threading is covered under TSan by the
    // e2e, fuzz, stress and fault tests; this load runs plain and under ASan.
    std::printf("sse_load: skipped under ThreadSanitizer (see sse_load.cc)\n");
    return 0;
  }
  const std::string mode = absl::GetFlag(FLAGS_tracing);
  if (mode != "on" && mode != "off" && mode != "both") {
    std::fprintf(stderr, "--tracing must be on, off or both\n");
    return 2;
  }
  const uint64_t files = ctxloop::load::RaiseOpenFileLimit();
  std::printf(
      "sse_load: %d streams in flight, %d events x %d ms each, %.1f s per "
      "mode (open-file limit %llu)\n",
      absl::GetFlag(FLAGS_connections), absl::GetFlag(FLAGS_events),
      absl::GetFlag(FLAGS_delay_ms), absl::GetFlag(FLAGS_seconds),
      static_cast<unsigned long long>(files));  // NOLINT(runtime/int)
  bool ok = true;
  if (mode != "off") ok &= ctxloop::load::RunMode(/*tracing=*/true).ok;
  if (mode != "on") ok &= ctxloop::load::RunMode(/*tracing=*/false).ok;
  std::printf("sse_load: %s\n", ok ? "PASSED" : "FAILED");
  return ok ? 0 : 1;
}
