// Copyright 2026 The ctxloop Authors.
//
// The model-based fuzzer's decoder under fixed seeds: a few
// thousand operations over 2-4 loops and 1-2 foreign threads, small enough
// for CI plain, under ASan+UBSan and under TSan. Each seed is its own test
// case, so a failure names the seed and the invariants it broke; replay one
// with --gtest_filter='Seeds/ModelTest.Seed/<index>'.
//
// Inputs the fuzzer found (tests/fuzz/corpus/regress_*) are replayed by name
// below.

#include "ctxloop/tests/fuzz/model/model.h"

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"

namespace ctxloop {
namespace fuzz {
namespace {

constexpr size_t kOpsPerSeed = 200;

class ModelTest : public ::testing::TestWithParam<uint64_t> {};

// CTXLOOP_FUZZ_DISABLE=timer_chain,hostile,... (bazel --test_env) drops
// operation classes, to tell which one a failing seed needs.
ModelOptions SeedOptions() {
  ModelOptions o;
  o.watchdog_seconds = 30;  // A hang aborts, naming the phase it was in.
  const char* env = std::getenv("CTXLOOP_FUZZ_DISABLE");
  if (env != nullptr) o.disabled = absl::StrSplit(env, ',');
  return o;
}

TEST_P(ModelTest, Seed) {
  // Twice the bytes: an armed operation takes ten bytes, not five; the
  // run stops after kOpsPerSeed operations.
  ModelOptions options = SeedOptions();
  options.max_ops = kOpsPerSeed;
  const ModelResult r =
      RunModel(BytesForSeed(GetParam(), 2 * kOpsPerSeed), options);
  // (Disabled operation classes are dropped when decoding.)
  if (std::getenv("CTXLOOP_FUZZ_DISABLE") == nullptr) {
    EXPECT_GE(r.ops, kOpsPerSeed);
  }
  EXPECT_TRUE(r.ok()) << "seed " << GetParam() << ": " << r.Summary();
  std::printf("seed %llu: %s\n", static_cast<unsigned long long>(GetParam()),
              r.Summary().c_str());
}

// 30 seeds x 200 operations.
INSTANTIATE_TEST_SUITE_P(Seeds, ModelTest, ::testing::Range<uint64_t>(1, 31));

// Embedded mode: every loop driven by a plain poll() host through
// BackendFd/BackendTimeout/RunReady (model/driver.h), same invariants.
class EmbeddedModelTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(EmbeddedModelTest, SeedWithEveryLoopDrivenByPoll) {
  ModelOptions options = SeedOptions();
  options.max_ops = kOpsPerSeed;
  options.all_driven = true;
  const ModelResult r =
      RunModel(BytesForSeed(GetParam(), 2 * kOpsPerSeed), options);
  if (std::getenv("CTXLOOP_FUZZ_DISABLE") == nullptr) {
    EXPECT_GE(r.ops, kOpsPerSeed);
  }
  EXPECT_EQ(r.driven_loops, r.loops);
  EXPECT_TRUE(r.ok()) << "seed " << GetParam() << ": " << r.Summary();
  std::printf("embedded seed %llu: %s\n",
              static_cast<unsigned long long>(GetParam()), r.Summary().c_str());
}

// 10 seeds x 200 operations, every loop driven.
INSTANTIATE_TEST_SUITE_P(Seeds, EmbeddedModelTest,
                         ::testing::Range<uint64_t>(1, 11));

// The per-input choice: across the plain seeds, some loops are driven and
// some run by Run() (so one run mixes both).
TEST(ModelSelfTest, InputsChooseDrivenLoops) {
  size_t loops = 0, driven = 0;
  for (uint64_t seed = 1; seed <= 30; ++seed) {
    ModelOptions options;
    options.max_ops = 1;
    const ModelResult r = RunModel(BytesForSeed(seed, 4), options);
    EXPECT_TRUE(r.ok()) << r.Summary();
    loops += r.loops;
    driven += r.driven_loops;
  }
  EXPECT_GT(driven, 0u);
  EXPECT_LT(driven, loops);
}

// The model itself: an empty input and a run of barriers break nothing.
TEST(ModelSelfTest, EmptyInputRunsClean) {
  const ModelResult r = RunModel(std::vector<uint8_t>{});
  EXPECT_TRUE(r.ok()) << r.Summary();
  EXPECT_EQ(r.ops, 0u);
  EXPECT_EQ(r.loops, 2u);
}

// Teardown on a loaded machine: a loop that lags behind, with a tight
// cross-thread bound, refuses teardown's round-trip posts while it drains
// (kResourceExhausted). Teardown must wait for it, not take a refused round
// trip for a quiet loop and check streams whose endings are still queued
// there (stream.not_ended, stream.on_complete, trace.exactly_once). Seed 29
// bounds a loop's backlog and attaches streams to it.
TEST(ModelSelfTest, TeardownWaitsForALoopWhoseBacklogIsFull) {
  for (int run = 0; run < 5; ++run) {
    ModelOptions options = SeedOptions();
    options.max_ops = kOpsPerSeed;
    options.teardown_stall_ms = 100;
    const ModelResult r = RunModel(BytesForSeed(29, 2 * kOpsPerSeed), options);
    ASSERT_TRUE(r.ok()) << "run " << run << ": " << r.Summary();
  }
}

std::vector<uint8_t> ReadCorpusFile(const std::string& name) {
  const char* dir = std::getenv("TEST_SRCDIR");
  const std::string path =
      dir == nullptr ? absl::StrCat("tests/fuzz/corpus/", name)
                     : absl::StrCat(dir, "/ctxloop/tests/fuzz/corpus/", name);
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in),
                              std::istreambuf_iterator<char>());
}

// The committed seed corpus decodes and runs.
TEST(ModelCorpusTest, SeedCorpusFileRuns) {
  const ModelResult r = RunModel(ReadCorpusFile("seed_00"));
  EXPECT_GT(r.ops, 0u);
}

// Inputs the fuzzer found, each named after the invariant it first broke
// (model.cc's messages say which). Interleavings vary between
// runs, so each is replayed up to `runs` times; any broken invariant fails.
// Inputs recorded before the operation table grew are replayed with the
// legacy table (`legacy`), so they keep doing what they did.
ModelOptions Legacy() {
  ModelOptions o;
  o.legacy_ops = true;
  return o;
}
void Replay(const std::string& name, int runs = 20,
            const ModelOptions& options = Legacy()) {
  const std::vector<uint8_t> input = ReadCorpusFile(name);
  ASSERT_FALSE(input.empty());
  for (int run = 0; run < runs; ++run) {
    const ModelResult r = RunModel(input, options);
    ASSERT_TRUE(r.ok()) << name << ", run " << run << ": " << r.Summary();
  }
}

// A trace's end delivered by its last span, on that span's
// thread, while the root span's finish_ran names the trace's own finish site.
TEST(ModelRegressionTest, TraceEndFinishRanTellsTheTruth) {
  Replay("regress_trace_finish_ran");
}
// A trace end run on another loop's thread while the origin
// loop lives.
TEST(ModelRegressionTest, TraceEndRunsOnTheOriginLoop) {
  Replay("regress_trace_thread");
}
// A task posted by a watch callback's destructor during loop
// shutdown is accepted, then destroyed unrun.
TEST(ModelRegressionTest, PostsAcceptedDuringShutdownRun) {
  Replay("regress_post_exactly_once");
}
// A sink that cancels its own stream and throws makes the
// producer's on_closed run twice.
TEST(ModelRegressionTest, ProducerToldAtMostOnce) {
  Replay("regress_stream_closed_twice");
}
// A foreign FdWatch::Stop() returns while the callback runs.
TEST(ModelRegressionTest, ForeignWatchStopWaitsForTheCallback) {
  Replay("regress_fd_stop_while_running", 100);  // A narrow window.
}
// A loop whose shutdown drain is too short for a stream's
// batches (max_shutdown_rounds = 2) leaves the stream unended: no
// on_complete, producer never told.
TEST(ModelRegressionTest, EveryStreamEndsEvenWhenTheDrainIsShort) {
  Replay("regress_stream_not_ended");
}
// Built by hand (opcodes index model.cc's kOpTable; barriers
// make the order fixed): a trace started on a new context of loop 0, the
// context destroyed, then the trace finished with `from` = its dead origin,
// on loop 0's thread (inline) or on a foreign thread. Either way the end
// must say finished_off_origin ([F1]) and be counted as such.
std::vector<uint8_t> DeadOriginInput(uint8_t finisher_exec) {
  constexpr uint8_t kNewContext = 0, kDestroyContext = 4, kStartTrace = 16,
                    kFinishTrace = 27, kBarrier = 56;
  return {
      0,
      0,
      5,  // 2 loops, 1 foreign thread.
      kNewContext,
      0,
      0,
      0,
      0,  // On loop 0: context slot 2.
      kBarrier,
      0,
      0,
      0,
      0,  //
      kStartTrace,
      0,
      128,
      0,
      0,  // Slot 2 (128 % 3), made current.
      kBarrier,
      0,
      0,
      0,
      0,  //
      kDestroyContext,
      0,
      128,
      0,
      0,  // Slot 2.
      kBarrier,
      0,
      0,
      0,
      0,  //
      kFinishTrace,
      finisher_exec,
      0,
      1,
      1,  // from = the dead origin.
  };
}
TEST(ModelRegressionTest, InlineFinishAfterOriginDestroyedIsOffOrigin) {
  for (int run = 0; run < 5; ++run) {
    const ModelResult r = RunModel(DeadOriginInput(/*loop 0*/ 0), Legacy());
    ASSERT_EQ(r.coverage.count("StartTrace"), 1u) << r.Summary();
    ASSERT_EQ(r.coverage.count("DestroyContext"), 1u) << r.Summary();
    ASSERT_TRUE(r.ok()) << r.Summary();
  }
}
TEST(ModelRegressionTest, ForeignFinishAfterOriginDestroyedIsOffOrigin) {
  for (int run = 0; run < 5; ++run) {
    const ModelResult r = RunModel(DeadOriginInput(/*foreign*/ 2), Legacy());
    ASSERT_EQ(r.coverage.count("StartTrace"), 1u) << r.Summary();
    ASSERT_TRUE(r.ok()) << r.Summary();
  }
}
// A destroyed context still accepts Set/Get/StartTrace on its
// loop thread.
TEST(ModelRegressionTest, DestroyedContextRefusesAtOnce) {
  Replay("regress_ctx_destroyed_accepts");
}
// Found by CI's fuzz run on 2026-12-02: a span finished inline (from the
// loop's root) after its origin was destroyed but before the loop freed it
// reported finished_off_origin = false; a closing origin takes nothing new,
// so the finish runs as [F1].
TEST(ModelRegressionTest, InlineFinishOnClosingOriginIsOffOrigin) {
  Replay("regress_inline_finish_on_closing_origin");
}
// Found by a local fuzz run on 2026-12-02: a trace finished on its loop's
// root [F1] whose end, waiting for a span, was delivered off the then-gone
// loop [F5] stayed counted in finishes_on_root.
TEST(ModelRegressionTest, DeferredEndOffLoopMovesTheRootCount) {
  Replay("regress_trace_counters_root_then_here");
}

// Reentry, thread lifecycle and hostile callables: inputs built by hand
// (their bytes are explained in tests/fuzz/README.md), decoded with the
// current table.
ModelOptions Current() {
  ModelOptions o;
  o.watchdog_seconds = 30;  // A hang aborts with the phase it was stuck in.
  return o;
}
// Zero-delay timers due in one timer run; the first cancels the second and
// posts a 20 ms timer, the earliest deadline. Every timer not cancelled must
// run once (timer.exactly_once), and Cancel answers as predicted.
TEST(ModelRegressionTest, TimerRunSurvivesCancelAndEarlierRearm) {
  Replay("regress_timer_cancel_rearm_in_run", 5, Current());
}
// Threads post and exit; a thread_local built before their first post
// posts again from its destructor at exit. Every accepted post runs once;
// the loops keep making progress (no watchdog abort).
TEST(ModelRegressionTest, PostsFromThreadLocalDestructorsAtExit) {
  Replay("regress_post_from_thread_local_dtor", 3, Current());
}
// A loop thread destroys a context holding a mutex that a callable being
// posted to that loop from another thread takes in its move constructor: no
// user code may run while the poster pins the loop (hostile.deadlock).
TEST(ModelRegressionTest, HostileMoveConstructorDoesNotDeadlockDestroy) {
  Replay("regress_hostile_move_under_pin", 3, Current());
}

// The same three, as libFuzzer found them (from the committed corpus, with
// the other classes dropped by CTXLOOP_FUZZ_DISABLE, so each names one
// class; the inputs decode with that same list).
ModelOptions Without(std::vector<std::string> disabled) {
  ModelOptions o = Current();
  o.disabled = std::move(disabled);
  return o;
}
// A timer chain (20 ms re-arm after a Cancel inside the timer run); ASan saw
// a heap-use-after-free in the due list.
TEST(ModelRegressionTest, FuzzedTimerRunReentry) {
  Replay("regress_fuzzed_timer_run_no_threads", 5, Without({"threads"}));
}
// Poster threads only (seed_30's bytes): a loop hung in its ingress.
TEST(ModelRegressionTest, FuzzedPostsFromExitingThreads) {
  Replay("regress_fuzzed_thread_exit_posts_threads_only", 5,
         Without({"timer_chain", "reentry", "hostile", "locked_destroy"}));
}
// Hostile posts and a locked DestroyContext: hostile.deadlock.
// A small pending bound (max_pending_foreign) refused LoopThread::Join's
// stop post on a flooded loop, and Join waited forever.
TEST(ModelRegressionTest, BoundNeverRefusesLoopThreadJoin) {
  Replay("regress_bound_loopthread_join_stop_refused", 3, Current());
}
// A small pending bound refused a stream's delivery or ending post: the
// stream ended with its sink-side ending parked on the destroy hook of a
// live sink context, so on_complete never ran.
TEST(ModelRegressionTest, BoundNeverLosesAStreamsOnComplete) {
  Replay("regress_bound_stream_on_complete_lost", 10, Current());
}
TEST(ModelRegressionTest, FuzzedHostileMoveUnderPin) {
  Replay("regress_fuzzed_hostile_deadlock_no_threads_timers", 3,
         Without({"threads", "timer_chain", "reentry"}));
}

}  // namespace
}  // namespace fuzz
}  // namespace ctxloop
