// Copyright 2026 The ctxloop Authors.

#include "ctxloop/trace/otlp/otlp_response.h"

#include <algorithm>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "rapidjson/encodedstream.h"
#include "rapidjson/error/en.h"
#include "rapidjson/memorystream.h"
#include "rapidjson/reader.h"

namespace ctxloop {
namespace trace_internal {

std::optional<absl::Duration> ParseRetryAfter(absl::string_view value,
                                              absl::Time now) {
  value = absl::StripAsciiWhitespace(value);
  if (value.empty()) return std::nullopt;
  int64_t seconds = 0;
  if (absl::SimpleAtoi(value, &seconds)) {
    if (seconds < 0) return std::nullopt;
    return absl::Seconds(seconds);
  }
  // An IMF-fixdate is 29 characters; anything much longer is not one (and
  // absl::ParseTime need not see it).
  if (value.size() > 64) return std::nullopt;
  absl::Time when;
  std::string err;
  if (absl::ParseTime("%a, %d %b %Y %H:%M:%S GMT", std::string(value), &when,
                      &err)) {
    if (when == absl::InfiniteFuture() || when == absl::InfinitePast()) {
      return std::nullopt;
    }
    return std::max(absl::ZeroDuration(), when - now);
  }
  return std::nullopt;
}

bool IsRetryableHttpStatus(int http_status) {
  return http_status == 0 || http_status == 429 || http_status == 502 ||
         http_status == 503 || http_status == 504;
}

absl::StatusCode StatusCodeForHttp(int http_status) {
  switch (http_status) {
    case 0:
    case 429:
    case 502:
    case 503:
    case 504:
      return absl::StatusCode::kUnavailable;
    case 400:
      return absl::StatusCode::kInvalidArgument;
    case 401:
      return absl::StatusCode::kUnauthenticated;
    case 403:
      return absl::StatusCode::kPermissionDenied;
    case 404:
      return absl::StatusCode::kNotFound;
    case 413:
      return absl::StatusCode::kResourceExhausted;
    default:
      return http_status >= 500 ? absl::StatusCode::kInternal
                                : absl::StatusCode::kFailedPrecondition;
  }
}

namespace {

constexpr size_t kMaxMessageBytes = 1024;

// A SAX handler that reads `partialSuccess` out of the event stream without
// building a document, and ends the parse (returns false) past the depth
// limit. Depth 1 is the top-level object, 2 the `partialSuccess` object.
class PartialSuccessHandler
    : public rapidjson::BaseReaderHandler<rapidjson::UTF8<>,
                                          PartialSuccessHandler> {
 public:
  explicit PartialSuccessHandler(PartialSuccess* out) : out_(out) {}

  bool too_deep() const { return too_deep_; }
  bool top_is_object() const { return top_is_object_; }

  // Every scalar lands here (BaseReaderHandler's default for the typed ones
  // except those overridden below).
  bool Default() {
    Value();
    return true;
  }
  bool Int(int v) { return Number(v); }
  bool Uint(unsigned v) { return Number(static_cast<int64_t>(v)); }
  bool Int64(int64_t v) { return Number(v); }
  bool Uint64(uint64_t v) {
    return Number(v > static_cast<uint64_t>(INT64_MAX)
                      ? INT64_MAX
                      : static_cast<int64_t>(v));
  }
  bool String(const char* s, rapidjson::SizeType n, bool) {
    if (InPartialSuccess() && field_ == Field::kRejected) {
      int64_t v = 0;
      if (absl::SimpleAtoi(absl::string_view(s, n), &v)) {
        out_->rejected_spans = v;
      }
    } else if (InPartialSuccess() && field_ == Field::kMessage) {
      out_->message.assign(s, std::min<size_t>(n, kMaxMessageBytes));
    }
    Value();
    return true;
  }
  bool Key(const char* s, rapidjson::SizeType n, bool) {
    const absl::string_view key(s, n);
    if (depth_ == 1 && !in_ps_) {
      ps_key_ = key == "partialSuccess";
    } else if (InPartialSuccess()) {
      field_ = key == "rejectedSpans"  ? Field::kRejected
               : key == "errorMessage" ? Field::kMessage
                                       : Field::kOther;
    }
    return true;
  }
  bool StartObject() {
    if (depth_ == 0) top_is_object_ = true;
    if (depth_ == 1 && ps_key_) {
      in_ps_ = true;
      out_->outcome = PartialSuccess::Outcome::kParsed;
    }
    return Enter();
  }
  bool EndObject(rapidjson::SizeType) {
    --depth_;
    if (depth_ == 1 && in_ps_) in_ps_ = false;
    Value();
    return true;
  }
  bool StartArray() { return Enter(); }
  bool EndArray(rapidjson::SizeType) {
    --depth_;
    Value();
    return true;
  }

 private:
  enum class Field { kOther, kRejected, kMessage };

  bool InPartialSuccess() const { return in_ps_ && depth_ == 2; }
  bool Enter() {
    ps_key_ = false;
    field_ = Field::kOther;
    if (++depth_ > kMaxPartialSuccessDepth) {
      too_deep_ = true;
      return false;
    }
    return true;
  }
  // A value ended: the key it belonged to is used up.
  void Value() {
    if (depth_ == 1) ps_key_ = false;
    if (depth_ == 2) field_ = Field::kOther;
  }
  bool Number(int64_t v) {
    if (InPartialSuccess() && field_ == Field::kRejected) {
      out_->rejected_spans = v;
    }
    Value();
    return true;
  }

  PartialSuccess* out_;
  int depth_ = 0;
  bool top_is_object_ = false;
  bool too_deep_ = false;
  bool ps_key_ = false;  // The last key at depth 1 was "partialSuccess".
  bool in_ps_ = false;
  Field field_ = Field::kOther;
};

}  // namespace

PartialSuccess ParsePartialSuccess(absl::string_view body) {
  PartialSuccess out;
  if (absl::StripAsciiWhitespace(body).empty()) return out;
  auto unparsable = [](std::string why) {
    PartialSuccess bad;
    bad.outcome = PartialSuccess::Outcome::kUnparsable;
    bad.error = std::move(why);
    return bad;
  };
  if (body.size() > kMaxPartialSuccessBytes) {
    return unparsable(absl::StrCat("longer than ", kMaxPartialSuccessBytes,
                                   " bytes (", body.size(), ")"));
  }
  // RapidJSON's streams end at a NUL byte; JSON text has none.
  if (body.find('\0') != absl::string_view::npos) {
    return unparsable("contains a NUL byte");
  }
  PartialSuccessHandler handler(&out);
  rapidjson::MemoryStream ms(body.data(), body.size());
  rapidjson::EncodedInputStream<rapidjson::UTF8<>, rapidjson::MemoryStream> in(
      ms);
  rapidjson::Reader reader;
  // Iterative: the parser's stack is on the heap, never the thread's.
  const rapidjson::ParseResult ok =
      reader.Parse<rapidjson::kParseIterativeFlag |
                   rapidjson::kParseValidateEncodingFlag>(in, handler);
  if (handler.too_deep()) {
    return unparsable(absl::StrCat("nested deeper than ",
                                   kMaxPartialSuccessDepth, " levels"));
  }
  if (!ok) {
    return unparsable(absl::StrCat("not JSON (",
                                   rapidjson::GetParseError_En(ok.Code()),
                                   " at offset ", ok.Offset(), ")"));
  }
  if (!handler.top_is_object()) return unparsable("not a JSON object");
  out.rejected_spans = std::max<int64_t>(0, out.rejected_spans);
  return out;
}

}  // namespace trace_internal
}  // namespace ctxloop
