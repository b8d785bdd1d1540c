// Copyright 2026 The ctxloop Authors.
//
// The model-based fuzzer's invariants with every loop embedded in a real
// host loop: seeded runs (the inputs of //tests/fuzz:model_test's first
// seeds) with each loop driven by a Boost.Asio io_context (AsioDriver) or a
// libuv loop (UvDriver) instead of its own Run(). The model and its
// checker are unchanged; only how the loop threads run their loops differs
// (host_drivers.h). Replay one with
// --gtest_filter='Asio/ModelHostsTest.Seed/<index>' (or Libuv/...).

#include <cstdint>
#include <cstdio>
#include <string>

#include "ctxloop/tests/fuzz/hosts/host_drivers.h"
#include "ctxloop/tests/fuzz/model/model.h"
#include "gtest/gtest.h"

namespace ctxloop {
namespace fuzz {
namespace {

constexpr size_t kOpsPerSeed = 200;
constexpr uint64_t kSeeds = 30;

enum class Host { kAsio, kLibuv };

class ModelHostsTest : public ::testing::TestWithParam<uint64_t> {
 protected:
  void RunSeed(Host host) {
    ModelOptions options;
    options.max_ops = kOpsPerSeed;
    options.watchdog_seconds = 30;  // A hang aborts, naming its phase.
    options.all_driven = true;
    options.driver =
        host == Host::kAsio ? AsioLoopDriverFactory() : UvLoopDriverFactory();
    const int fallbacks_before = HostDriverFallbacks();
    const ModelResult r =
        RunModel(BytesForSeed(GetParam(), 2 * kOpsPerSeed), options);
    EXPECT_EQ(HostDriverFallbacks(), fallbacks_before)
        << "a host driver stopped driving its loop";
    EXPECT_GE(r.ops, kOpsPerSeed);
    EXPECT_EQ(r.driven_loops, r.loops) << "every loop must be driven";
    const std::string name = host == Host::kAsio ? "asio" : "libuv";
    EXPECT_EQ(r.coverage.count("loop driven by " + name), 1u) << r.Summary();
    EXPECT_TRUE(r.ok()) << name << " seed " << GetParam() << ": "
                        << r.Summary();
    std::printf("%s seed %llu: %s\n", name.c_str(),
                static_cast<unsigned long long>(GetParam()),
                r.Summary().c_str());
  }
};

class Asio : public ModelHostsTest {};
class Libuv : public ModelHostsTest {};

TEST_P(Asio, Seed) { RunSeed(Host::kAsio); }
TEST_P(Libuv, Seed) { RunSeed(Host::kLibuv); }

INSTANTIATE_TEST_SUITE_P(ModelHostsTest, Asio,
                         ::testing::Range<uint64_t>(1, kSeeds + 1));
INSTANTIATE_TEST_SUITE_P(ModelHostsTest, Libuv,
                         ::testing::Range<uint64_t>(1, kSeeds + 1));

}  // namespace
}  // namespace fuzz
}  // namespace ctxloop
