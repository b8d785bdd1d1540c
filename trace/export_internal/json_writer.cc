// Copyright 2026 The ctxloop Authors.

#include "ctxloop/trace/export_internal/json_writer.h"

#include <charconv>
#include <cmath>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"

namespace ctxloop {
namespace trace_internal {
namespace {

constexpr char kHex[] = "0123456789abcdef";
constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD in UTF-8.

void AppendUnicodeEscape(unsigned code, std::string* out) {
  char buf[6] = {'\\',
                 'u',
                 kHex[(code >> 12) & 0xF],
                 kHex[(code >> 8) & 0xF],
                 kHex[(code >> 4) & 0xF],
                 kHex[code & 0xF]};
  out->append(buf, sizeof(buf));
}

bool IsContinuation(unsigned char c) { return (c & 0xC0) == 0x80; }

// Length of the valid UTF-8 sequence starting at s[i] (2..4), or 0 if it is
// not valid; `*consumed` is then the length of the maximal invalid
// subsequence to replace (>= 1).
size_t ValidSequenceLength(absl::string_view s, size_t i, size_t* consumed) {
  const unsigned char lead = static_cast<unsigned char>(s[i]);
  size_t len;
  unsigned char lo = 0x80, hi = 0xBF;  // Allowed range of the second byte.
  if (lead >= 0xC2 && lead <= 0xDF) {
    len = 2;
  } else if (lead == 0xE0) {
    len = 3, lo = 0xA0;  // No overlongs.
  } else if ((lead >= 0xE1 && lead <= 0xEC) || lead == 0xEE || lead == 0xEF) {
    len = 3;
  } else if (lead == 0xED) {
    len = 3, hi = 0x9F;  // No surrogates.
  } else if (lead == 0xF0) {
    len = 4, lo = 0x90;  // No overlongs.
  } else if (lead >= 0xF1 && lead <= 0xF3) {
    len = 4;
  } else if (lead == 0xF4) {
    len = 4, hi = 0x8F;  // Not above U+10FFFF.
  } else {
    *consumed = 1;
    return 0;
  }
  size_t n = 1;
  while (n < len && i + n < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i + n]);
    const bool ok = n == 1 ? (c >= lo && c <= hi) : IsContinuation(c);
    if (!ok) break;
    ++n;
  }
  if (n == len) return len;
  *consumed = n;
  return 0;
}

}  // namespace

void AppendJsonString(absl::string_view s, std::string* out) {
  out->push_back('"');
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      switch (c) {
        case '"':
          out->append("\\\"");
          break;
        case '\\':
          out->append("\\\\");
          break;
        case '\b':
          out->append("\\b");
          break;
        case '\f':
          out->append("\\f");
          break;
        case '\n':
          out->append("\\n");
          break;
        case '\r':
          out->append("\\r");
          break;
        case '\t':
          out->append("\\t");
          break;
        default:
          if (c < 0x20 || c == 0x7F) {
            AppendUnicodeEscape(c, out);
          } else {
            out->push_back(static_cast<char>(c));
          }
      }
      ++i;
      continue;
    }
    size_t consumed = 0;
    const size_t len = ValidSequenceLength(s, i, &consumed);
    if (len == 0) {
      out->append(kReplacement);
      i += consumed;
      continue;
    }
    // U+2028 / U+2029 are valid JSON but break JavaScript string literals.
    if (len == 3 && c == 0xE2 && static_cast<unsigned char>(s[i + 1]) == 0x80 &&
        (static_cast<unsigned char>(s[i + 2]) & 0xFE) == 0xA8) {
      AppendUnicodeEscape(
          0x2028 + (static_cast<unsigned char>(s[i + 2]) - 0xA8), out);
    } else {
      out->append(s.data() + i, len);
    }
    i += len;
  }
  out->push_back('"');
}

// ---------------------------------------------------------------- JsonWriter

void JsonWriter::Misuse(const char* what) {
  if (status_.ok()) {
    status_ = absl::FailedPreconditionError(
        absl::StrCat("JsonWriter misuse: ", what, " at offset ", out_.size()));
  }
}

bool JsonWriter::BeforeValue(const char* what) {
  if (stack_.empty()) {
    if (top_done_) {
      Misuse(absl::StrCat(what, " after the top-level value").c_str());
      return false;
    }
    return true;
  }
  Frame& f = stack_.back();
  if (f.object) {
    if (!f.after_key) {
      Misuse(absl::StrCat(what, " without a key in an object").c_str());
      return false;
    }
    f.after_key = false;
    return true;
  }
  if (f.has_items) out_.push_back(',');
  f.has_items = true;
  return true;
}

JsonWriter& JsonWriter::BeginObject() {
  if (BeforeValue("BeginObject")) {
    out_.push_back('{');
    stack_.push_back(Frame{/*object=*/true});
  }
  return *this;
}

JsonWriter& JsonWriter::EndObject() {
  if (stack_.empty() || !stack_.back().object || stack_.back().after_key) {
    Misuse("EndObject without a matching BeginObject or after a dangling key");
    return *this;
  }
  stack_.pop_back();
  out_.push_back('}');
  if (stack_.empty()) top_done_ = true;
  return *this;
}

JsonWriter& JsonWriter::BeginArray() {
  if (BeforeValue("BeginArray")) {
    out_.push_back('[');
    stack_.push_back(Frame{/*object=*/false});
  }
  return *this;
}

JsonWriter& JsonWriter::EndArray() {
  if (stack_.empty() || stack_.back().object) {
    Misuse("EndArray without a matching BeginArray");
    return *this;
  }
  stack_.pop_back();
  out_.push_back(']');
  if (stack_.empty()) top_done_ = true;
  return *this;
}

JsonWriter& JsonWriter::Key(absl::string_view key) {
  if (stack_.empty() || !stack_.back().object || stack_.back().after_key) {
    Misuse("Key outside an object or after another key");
    return *this;
  }
  Frame& f = stack_.back();
  if (f.has_items) out_.push_back(',');
  f.has_items = true;
  f.after_key = true;
  AppendJsonString(key, &out_);
  out_.push_back(':');
  return *this;
}

template <typename AppendFn>
JsonWriter& JsonWriter::Scalar(const char* what, AppendFn&& append) {
  if (BeforeValue(what)) {
    append();
    if (stack_.empty()) top_done_ = true;
  }
  return *this;
}

JsonWriter& JsonWriter::String(absl::string_view value) {
  return Scalar("String", [&] { AppendJsonString(value, &out_); });
}

JsonWriter& JsonWriter::Int(int64_t value) {
  return Scalar("Int", [&] { absl::StrAppend(&out_, value); });
}

JsonWriter& JsonWriter::Uint(uint64_t value) {
  return Scalar("Uint", [&] { absl::StrAppend(&out_, value); });
}

JsonWriter& JsonWriter::Double(double value) {
  if (!std::isfinite(value)) return Null();
  // Shortest text that reads back as the same double; always valid JSON for
  // finite values ("1e+20", "-0", "0.5").
  char buf[64];
  const std::to_chars_result r = std::to_chars(buf, buf + sizeof(buf), value);
  return Scalar("Double", [&] { out_.append(buf, r.ptr); });
}

JsonWriter& JsonWriter::Bool(bool value) {
  return Scalar("Bool", [&] { out_.append(value ? "true" : "false"); });
}

JsonWriter& JsonWriter::Null() {
  return Scalar("Null", [&] { out_.append("null"); });
}

JsonWriter& JsonWriter::Raw(absl::string_view json) {
  return Scalar("Raw", [&] { out_.append(json.data(), json.size()); });
}

std::string JsonWriter::Release() {
  std::string out = std::move(out_);
  Clear();
  return out;
}

void JsonWriter::Clear() {
  out_.clear();
  stack_.clear();
  top_done_ = false;
  status_ = absl::OkStatus();
}

// ------------------------------------------------------------ Model helpers

std::string FormatRfc3339Nanos(absl::Time t) {
  if (t == absl::InfiniteFuture() || t == absl::InfinitePast()) return "";
  return absl::FormatTime("%Y-%m-%d%ET%H:%M:%E9SZ", t, absl::UTCTimeZone());
}

std::vector<size_t> UniqueAttributeIndices(const Attributes& attributes) {
  std::vector<size_t> keep;
  keep.reserve(attributes.size());
  if (attributes.size() <= 8) {  // Quadratic but allocation-free.
    for (size_t i = 0; i < attributes.size(); ++i) {
      bool later = false;
      for (size_t j = i + 1; j < attributes.size() && !later; ++j) {
        later = attributes[j].first == attributes[i].first;
      }
      if (!later) keep.push_back(i);
    }
    return keep;
  }
  absl::flat_hash_map<absl::string_view, size_t> last;
  for (size_t i = 0; i < attributes.size(); ++i) {
    last[attributes[i].first] = i;
  }
  for (size_t i = 0; i < attributes.size(); ++i) {
    if (last[attributes[i].first] == i) keep.push_back(i);
  }
  return keep;
}

void WriteAttributeValue(const AttributeValue& value, JsonWriter& w) {
  if (const auto* s = std::get_if<std::string>(&value)) {
    w.String(*s);
  } else if (const auto* i = std::get_if<int64_t>(&value)) {
    w.Int(*i);
  } else if (const auto* d = std::get_if<double>(&value)) {
    w.Double(*d);
  } else if (const auto* b = std::get_if<bool>(&value)) {
    w.Bool(*b);
  } else if (const auto* ss = std::get_if<std::vector<std::string>>(&value)) {
    w.BeginArray();
    for (const std::string& e : *ss) w.String(e);
    w.EndArray();
  } else if (const auto* is = std::get_if<std::vector<int64_t>>(&value)) {
    w.BeginArray();
    for (int64_t e : *is) w.Int(e);
    w.EndArray();
  } else if (const auto* ds = std::get_if<std::vector<double>>(&value)) {
    w.BeginArray();
    for (double e : *ds) w.Double(e);
    w.EndArray();
  } else if (const auto* bs = std::get_if<std::vector<bool>>(&value)) {
    w.BeginArray();
    for (bool e : *bs) w.Bool(e);
    w.EndArray();
  } else {
    w.Null();  // valueless_by_exception.
  }
}

void WriteAttributesObject(const Attributes& attributes, JsonWriter& w) {
  w.BeginObject();
  for (size_t i : UniqueAttributeIndices(attributes)) {
    w.Key(attributes[i].first);
    WriteAttributeValue(attributes[i].second, w);
  }
  w.EndObject();
}

}  // namespace trace_internal
}  // namespace ctxloop
