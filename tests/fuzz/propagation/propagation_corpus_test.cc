// Copyright 2026 The ctxloop Authors.
//
// Replays the committed corpus of the W3C Trace Context fuzzer
// (corpus/, see round_trip.h) under `bazel test` in every configuration
// (plain, --config=asan, --config=tsan): every file must keep the round-trip
// property. A crash the fuzzer finds is added to corpus/ and replayed here
// from then on.

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "ctxloop/tests/fuzz/propagation/round_trip.h"
#include "gtest/gtest.h"

namespace ctxloop {
namespace fuzz {
namespace {

std::string CorpusDir() {
  const char* dir = std::getenv("TEST_SRCDIR");
  return dir == nullptr
             ? std::string("tests/fuzz/propagation/corpus")
             : absl::StrCat(dir, "/ctxloop/tests/fuzz/propagation/corpus");
}

TEST(PropagationCorpusTest, EveryCorpusFileRoundTrips) {
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(CorpusDir())) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    ASSERT_TRUE(in.good()) << entry.path();
    const std::string input((std::istreambuf_iterator<char>(in)),
                            std::istreambuf_iterator<char>());
    EXPECT_EQ(RoundTripViolation(input), "") << entry.path();
    ++files;
  }
  EXPECT_GE(files, 10) << "corpus missing from the runfiles: " << CorpusDir();
}

// Inputs named in the W3C rules, beside the corpus.
TEST(PropagationCorpusTest, HandWrittenInputs) {
  const std::vector<std::string> inputs = {
      "",
      "\n",
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\n"
      "a=1,\r\n\r\nk=<script>",
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\n"
      " a=1 ,, b=2\t",
      "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x\n"
      "t@v=1",
      std::string("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                  "\n\0\x7f\xff",
                  60),
  };
  for (const std::string& input : inputs) {
    EXPECT_EQ(RoundTripViolation(input), "") << absl::CEscape(input);
  }
}

}  // namespace
}  // namespace fuzz
}  // namespace ctxloop
