// Copyright 2026 The ctxloop Authors.
//
// Replays every file of the committed corpus (tests/fuzz/otlp_response/
// corpus) through the fuzz harness without libFuzzer (each on a thread
// with a 1 MiB stack), so each one is a
// regression test in every build (plain, ASan+UBSan, TSan). A broken
// invariant aborts the test, naming it.

#include <pthread.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "ctxloop/tests/fuzz/otlp_response/otlp_response_fuzz.h"
#include "gtest/gtest.h"

namespace ctxloop {
namespace testing {
namespace {

std::filesystem::path CorpusDir() {
  const char* dir = std::getenv("TEST_SRCDIR");
  return dir == nullptr
             ? std::filesystem::path("tests/fuzz/otlp_response/corpus")
             : std::filesystem::path(absl::StrCat(
                   dir, "/ctxloop/tests/fuzz/otlp_response/corpus"));
}

TEST(OtlpResponseCorpusTest, EveryCorpusFileReplays) {
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(CorpusDir())) {
    files.push_back(entry.path());
  }
  ASSERT_GE(files.size(), 10u) << CorpusDir();
  size_t http = 0;
  for (const auto& path : files) {
    std::ifstream f(path, std::ios::binary);
    ASSERT_TRUE(f.good()) << path;
    const std::string bytes((std::istreambuf_iterator<char>(f)),
                            std::istreambuf_iterator<char>());
    SCOPED_TRACE(path.filename().string());
    // On a 1 MiB stack, as many worker threads have: anything recursive on
    // input depth shows here first.
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 1 << 20);
    pthread_t t;
    ASSERT_EQ(pthread_create(
                  &t, &attr,
                  [](void* arg) -> void* {
                    const auto* b = static_cast<const std::string*>(arg);
                    FuzzOtlpResponse(
                        reinterpret_cast<const uint8_t*>(b->data()), b->size());
                    return nullptr;
                  },
                  const_cast<std::string*>(&bytes)),
              0);
    pthread_attr_destroy(&attr);
    pthread_join(t, nullptr);
    if (bytes.rfind("HTTP/", 0) == 0) ++http;
  }
  EXPECT_GT(http, 0u);  // The raw-peer mode ran too.
}

}  // namespace
}  // namespace testing
}  // namespace ctxloop
