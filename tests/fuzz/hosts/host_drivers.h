// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/tests/fuzz/hosts/host_drivers.h
// -----------------------------------------------------------------------------
//
// The model's `LoopDriver` (tests/fuzz/model/driver.h) for the two real
// hosts of //embed: a Boost.Asio `io_context` driving the loop through
// `AsioDriver`, and a libuv loop through `UvDriver`. With
// `ModelOptions::driver` set to one of the factories below (and
// `all_driven`), every loop of a model run is embedded in that host, and
// the model's invariants are checked unchanged.
//
//   ModelOptions o;
//   o.driver = AsioLoopDriverFactory();
//   o.all_driven = true;
//
// Each driver runs its host one step at a time (`io_context::run_one`,
// `uv_run(UV_RUN_ONCE)`) and checks `done()` after each, as driver.h
// requires. When `done()` holds it destroys its embed driver while the loop
// is still alive (embed/asio_driver.h and uv_driver.h: driver before loop),
// and the host itself when the `LoopDriver` goes. If the embed driver stops
// (`status()` not OK) it falls back to `Loop::Run()`, never spinning, and
// counts it in `HostDriverFallbacks()` (the test expects none).
//
// Cost: per host step, the host's poll plus the embed driver's re-arm.
// Thread-safety: loop thread only, like every `LoopDriver`.

#ifndef CTXLOOP_TESTS_FUZZ_HOSTS_HOST_DRIVERS_H_
#define CTXLOOP_TESTS_FUZZ_HOSTS_HOST_DRIVERS_H_

#include "ctxloop/tests/fuzz/model/driver.h"

namespace ctxloop {
namespace fuzz {

LoopDriverFactory AsioLoopDriverFactory();
LoopDriverFactory UvLoopDriverFactory();

// Loops whose embed driver stopped driving them (process-wide, any thread).
int HostDriverFallbacks();

}  // namespace fuzz
}  // namespace ctxloop

#endif  // CTXLOOP_TESTS_FUZZ_HOSTS_HOST_DRIVERS_H_
