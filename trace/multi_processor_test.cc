// Copyright 2026 The ctxloop Authors.

#include "ctxloop/trace/multi_processor.h"

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "ctxloop/trace/testing/recording_processor.h"
#include "gtest/gtest.h"

namespace ctxloop {
namespace {

using testing_util::RecordingProcessor;
using Kind = RecordingProcessor::Kind;

// Appends its tag to a shared log, optionally throwing afterwards.
class TaggingProcessor : public TraceProcessor {
 public:
  TaggingProcessor(std::vector<std::string>* log, std::string tag, bool fail)
      : log_(log), tag_(std::move(tag)), fail_(fail) {}
  void OnStart(const SpanData&) override { Hit("start"); }
  void OnEnd(const SpanData&) override { Hit("end"); }
  absl::Status ForceFlush(absl::Duration) override {
    Hit("flush");
    return fail_ ? absl::UnavailableError("flush failed") : absl::OkStatus();
  }
  absl::Status Shutdown(absl::Duration) override {
    Hit("shutdown");
    return absl::OkStatus();
  }

 private:
  void Hit(const char* what) {
    log_->push_back(tag_ + ":" + what);
    if (fail_ && std::string(what) != "flush") throw std::runtime_error(tag_);
  }
  std::vector<std::string>* log_;
  std::string tag_;
  bool fail_;
};

TEST(MultiProcessorTest, CallsInRegistrationOrderAndIsolatesThrows) {
  std::vector<std::string> log;
  std::vector<absl::Status> errors;
  MultiProcessor multi(
      {std::make_shared<TaggingProcessor>(&log, "a", false),
       std::make_shared<TaggingProcessor>(&log, "bad", true),
       std::make_shared<TaggingProcessor>(&log, "c", false)},
      [&errors](const absl::Status& s) { errors.push_back(s); });
  multi.OnStart(SpanData());
  multi.OnEnd(SpanData());
  EXPECT_EQ(log, (std::vector<std::string>{"a:start", "bad:start", "c:start",
                                           "a:end", "bad:end", "c:end"}));
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_NE(errors[0].message().find("#1"), std::string::npos);
  EXPECT_NE(errors[0].message().find("OnStart"), std::string::npos);
  EXPECT_EQ(multi.failures(), 2u);
}

TEST(MultiProcessorTest, FlushReportsFirstErrorAfterTryingAll) {
  std::vector<std::string> log;
  MultiProcessor multi({std::make_shared<TaggingProcessor>(&log, "a", false),
                        std::make_shared<TaggingProcessor>(&log, "bad", true),
                        std::make_shared<TaggingProcessor>(&log, "c", false)},
                       [](const absl::Status&) {});
  absl::Status s = multi.ForceFlush(absl::Seconds(1));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(log, (std::vector<std::string>{"a:flush", "bad:flush", "c:flush"}));
  // A throw in Shutdown is an error too.
  log.clear();
  EXPECT_EQ(multi.Shutdown(absl::Seconds(1)).code(),
            absl::StatusCode::kInternal);
  EXPECT_EQ(log.size(), 3u);
}

}  // namespace
}  // namespace ctxloop
