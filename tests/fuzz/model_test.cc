// Copyright 2026 The ctxloop Authors.
//
// The model-based fuzzer's decoder under fixed seeds (issue 7 §2): a few
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
#include "gtest/gtest.h"

namespace ctxloop {
namespace fuzz {
namespace {

constexpr size_t kOpsPerSeed = 200;

class ModelTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(ModelTest, Seed) {
  const ModelResult r = RunModel(BytesForSeed(GetParam(), kOpsPerSeed));
  EXPECT_GE(r.ops, kOpsPerSeed);
  EXPECT_TRUE(r.ok()) << "seed " << GetParam() << ": " << r.Summary();
  std::printf("seed %llu: %s\n", static_cast<unsigned long long>(GetParam()),
              r.Summary().c_str());
}

// 30 seeds x 200 operations.
INSTANTIATE_TEST_SUITE_P(Seeds, ModelTest, ::testing::Range<uint64_t>(1, 31));

// The model itself: an empty input and a run of barriers break nothing.
TEST(ModelSelfTest, EmptyInputRunsClean) {
  const ModelResult r = RunModel(std::vector<uint8_t>{});
  EXPECT_TRUE(r.ok()) << r.Summary();
  EXPECT_EQ(r.ops, 0u);
  EXPECT_EQ(r.loops, 2u);
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

// The committed seed corpus decodes and runs (each file once).
TEST(ModelCorpusTest, SeedCorpusFileRuns) {
  const ModelResult r = RunModel(ReadCorpusFile("seed_00"));
  EXPECT_GT(r.ops, 0u);
}

}  // namespace
}  // namespace fuzz
}  // namespace ctxloop
