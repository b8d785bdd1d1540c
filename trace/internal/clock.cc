// Copyright 2026 The ctxloop Authors.

#include "ctxloop/trace/internal/clock.h"

#include <time.h>

#include <atomic>
#include <cstdio>
#include <cstring>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

#include "absl/base/optimization.h"

namespace ctxloop {
namespace trace_internal {
namespace {

int64_t ClockGettimeNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

#if defined(__x86_64__)

bool KernelClocksourceIsTsc() {
  FILE* f = std::fopen(
      "/sys/devices/system/clocksource/clocksource0/current_clocksource", "r");
  if (f == nullptr) return false;
  char name[32] = {};
  const bool read = std::fgets(name, sizeof(name), f) != nullptr;
  std::fclose(f);
  return read && std::strncmp(name, "tsc", 3) == 0 &&
         (name[3] == '\n' || name[3] == '\0');
}

// A consistent (TSC, CLOCK_MONOTONIC) pair: the TSC read closest in time to
// the clock read, of a few tries.
void Sample(uint64_t* tsc, int64_t* mono) {
  uint64_t best_gap = ~uint64_t{0};
  for (int i = 0; i < 5; ++i) {
    const uint64_t before = __rdtsc();
    const int64_t m = ClockGettimeNs();
    const uint64_t after = __rdtsc();
    if (after - before < best_gap) {
      best_gap = after - before;
      *tsc = before + (after - before) / 2;
      *mono = m;
    }
  }
}

// Published calibration, read under a sequence counter.
struct TscClock {
  std::atomic<uint32_t> sequence{0};  // Odd while being updated.
  std::atomic<uint64_t> base_tsc{0};
  std::atomic<int64_t> base_ns{0};
  std::atomic<double> ns_per_tick{0};
  std::atomic<uint64_t> refresh_ticks{0};  // Re-anchor after this many.
  // The first sample: the long baseline rates are measured over.
  uint64_t origin_tsc = 0;
  int64_t origin_ns = 0;
};

TscClock* MakeTscClock() {
  if (!KernelClocksourceIsTsc()) return nullptr;
  auto* clock = new TscClock();  // Never destroyed: used until exit.
  Sample(&clock->origin_tsc, &clock->origin_ns);
  uint64_t tsc;
  int64_t ns;
  do {  // ~2 ms: enough for a first rate good to a few parts in 10^5.
    Sample(&tsc, &ns);
  } while (ns - clock->origin_ns < 2000000);
  const double rate = static_cast<double>(ns - clock->origin_ns) /
                      static_cast<double>(tsc - clock->origin_tsc);
  if (!(rate > 0)) return nullptr;
  clock->base_tsc.store(tsc, std::memory_order_relaxed);
  clock->base_ns.store(ns, std::memory_order_relaxed);
  clock->ns_per_tick.store(rate, std::memory_order_relaxed);
  clock->refresh_ticks.store(static_cast<uint64_t>(1e8 / rate),
                             std::memory_order_relaxed);  // ~100 ms.
  return clock;
}

TscClock* GetTscClock() {
  static TscClock* const clock = MakeTscClock();
  return clock;
}

// Re-anchors to CLOCK_MONOTONIC and refines the rate over the baseline since
// the first sample. One thread at a time; others keep the old anchor.
void Refresh(TscClock& c, uint32_t seen) {
  if (!c.sequence.compare_exchange_strong(seen, seen + 1,
                                          std::memory_order_acq_rel)) {
    return;  // Another thread is at it.
  }
  // Pairs with the readers' acquire fence: a reader that sees any store
  // below also sees the odd sequence, and retries.
  std::atomic_thread_fence(std::memory_order_release);
  uint64_t tsc;
  int64_t ns;
  Sample(&tsc, &ns);
  const double rate = static_cast<double>(ns - c.origin_ns) /
                      static_cast<double>(tsc - c.origin_tsc);
  c.base_tsc.store(tsc, std::memory_order_relaxed);
  c.base_ns.store(ns, std::memory_order_relaxed);
  if (rate > 0) c.ns_per_tick.store(rate, std::memory_order_relaxed);
  c.sequence.store(seen + 2, std::memory_order_release);
}

#endif  // __x86_64__

}  // namespace

bool MonotonicNsUsesTsc() {
#if defined(__x86_64__)
  return GetTscClock() != nullptr;
#else
  return false;
#endif
}

int64_t MonotonicNs() {
#if defined(__x86_64__)
  TscClock* c = GetTscClock();
  if (ABSL_PREDICT_TRUE(c != nullptr)) {
    for (;;) {
      const uint32_t s1 = c->sequence.load(std::memory_order_acquire);
      const uint64_t base_tsc = c->base_tsc.load(std::memory_order_relaxed);
      const int64_t base_ns = c->base_ns.load(std::memory_order_relaxed);
      const double rate = c->ns_per_tick.load(std::memory_order_relaxed);
      const uint64_t refresh = c->refresh_ticks.load(std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_acquire);
      if ((s1 & 1) != 0 || c->sequence.load(std::memory_order_relaxed) != s1) {
        continue;  // An update is in progress.
      }
      // Signed: another thread's anchor may be a few ticks after our read.
      const int64_t ticks = static_cast<int64_t>(__rdtsc() - base_tsc);
      if (ABSL_PREDICT_FALSE(ticks > static_cast<int64_t>(refresh))) {
        Refresh(*c, s1);
        return ClockGettimeNs();
      }
      return base_ns + static_cast<int64_t>(static_cast<double>(ticks) * rate);
    }
  }
#endif
  return ClockGettimeNs();
}

}  // namespace trace_internal
}  // namespace ctxloop
