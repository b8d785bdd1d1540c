// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/tests/load/sse_load_client.h
// -----------------------------------------------------------------------------
//
// `SseLoadClient`: an HTTP/1.1 load generator for server-sent-event
// endpoints, built on ctxloop itself. It keeps `connections` requests in
// flight at once, each on its own non-blocking socket watched by an
// `FdWatch` on one client loop (one `ContextHandle` per connection), and
// starts a new request as soon as one ends, until `duration` has passed.
// Every request is `GET <target>` with `Connection: close`; a request counts
// as OK when the status is 200 and the body holds `expect_in_body` (e.g. the
// stream's final `event: done`) by the time the server closes the socket.
//
//   SseLoadClient::Options o;
//   o.port = server->port();
//   o.target = "/run?events=20&delay_ms=5";
//   o.connections = 1000;
//   o.duration = absl::Seconds(10);
//   absl::StatusOr<LoadResult> r = SseLoadClient::Run(o);
//
// Cost: one thread (the client loop), one socket and about 2 KiB of buffer
// per connection; the response is kept until the socket closes.
//
// Thread-safety: `Run` blocks the calling thread (not a ctxloop loop thread)
// until every request it started has ended; calls may run concurrently.

#ifndef CTXLOOP_TESTS_LOAD_SSE_LOAD_CLIENT_H_
#define CTXLOOP_TESTS_LOAD_SSE_LOAD_CLIENT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace ctxloop {
namespace load {

struct LoadResult {
  uint64_t started = 0;  // Requests begun (sockets opened).
  uint64_t ok = 0;       // 200 with `expect_in_body`, server closed cleanly.
  uint64_t failed = 0;   // Anything else (see `first_errors`).
  // Highest number of requests in flight at one moment.
  uint64_t peak_in_flight = 0;
  absl::Duration elapsed;
  double requests_per_second = 0;  // `ok` / `elapsed`.
  // Request latencies (connect to the server's close), of OK requests.
  absl::Duration p50;
  absl::Duration p99;
  absl::Duration max;
  std::vector<std::string> first_errors;  // Up to 10, for messages.
};

class SseLoadClient {
 public:
  struct Options {
    int port = 0;  // On 127.0.0.1.
    std::string target = "/";
    int connections = 100;  // Requests in flight at once.
    absl::Duration duration = absl::Seconds(5);
    // New connections opened per millisecond while ramping up, so the
    // server's listen backlog never overflows into SYN retries.
    int ramp_per_ms = 50;
    // A request that takes longer than this fails (and is closed).
    absl::Duration request_timeout = absl::Seconds(30);
    std::string expect_in_body = "event: done";
  };

  // Runs the load; errors only if the client loop cannot be set up.
  static absl::StatusOr<LoadResult> Run(const Options& options);
};

// Raises this process's soft limit on open files to its hard limit (the
// load needs two descriptors per connection when the server is in-process).
// Returns the new soft limit.
uint64_t RaiseOpenFileLimit();

// Resident set size of this process, in bytes (from /proc/self/statm).
int64_t ResidentBytes();

}  // namespace load
}  // namespace ctxloop

#endif  // CTXLOOP_TESTS_LOAD_SSE_LOAD_CLIENT_H_
