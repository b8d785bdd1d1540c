// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/trace/export_internal/json_writer.h
// -----------------------------------------------------------------------------
//
// Internal. The JSON helpers the file exporters share (their files are in
// append_file.h):
//
//   * `JsonWriter`: a small streaming JSON writer into a `std::string`. It
//     inserts commas and colons itself, escapes strings fully (quotes,
//     backslashes, every control character, U+2028/U+2029) and replaces
//     invalid UTF-8 with U+FFFD, one per maximal invalid subsequence (as
//     the WHATWG decoder does), so its output is always valid JSON text.
//     Non-finite doubles are written as `null`. Misuse (a value where a key
//     is expected, an unbalanced `End*`, a second top-level value) is
//     ignored and recorded in `status()`; it never crashes.
//
//       JsonWriter w;
//       w.BeginObject().Key("name").String("a\"b").Key("n").Int(3).EndObject();
//       w.str();  // {"name":"a\"b","n":3}
//
//   * Helpers for the trace model: RFC 3339 times, unique attribute keys,
//     attributes as a JSON object.
//
// Cost: `JsonWriter` appends to one string (amortized O(1) per byte) and
// keeps one small frame per open container.
//
// Thread-safety: `JsonWriter` is thread-compatible (not thread-safe); the
// functions keep no state.

#ifndef CTXLOOP_TRACE_EXPORT_INTERNAL_JSON_WRITER_H_
#define CTXLOOP_TRACE_EXPORT_INTERNAL_JSON_WRITER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ctxloop/trace/span_data.h"

namespace ctxloop {
namespace trace_internal {

// Appends `s` to `out` as a quoted JSON string (see the escaping above).
void AppendJsonString(absl::string_view s, std::string* out);

class JsonWriter {
 public:
  JsonWriter() = default;

  JsonWriter& BeginObject();
  JsonWriter& EndObject();
  JsonWriter& BeginArray();
  JsonWriter& EndArray();

  // Inside an object, before each value.
  JsonWriter& Key(absl::string_view key);

  JsonWriter& String(absl::string_view value);
  JsonWriter& Int(int64_t value);
  JsonWriter& Uint(uint64_t value);
  JsonWriter& Double(double value);  // NaN and infinities: null.
  JsonWriter& Bool(bool value);
  JsonWriter& Null();
  // A complete JSON value produced elsewhere (e.g. by another JsonWriter),
  // inserted verbatim; the caller vouches that it is valid JSON.
  JsonWriter& Raw(absl::string_view json);

  // The text so far.
  const std::string& str() const { return out_; }
  // Moves the text out and resets the writer.
  std::string Release();
  // Empties the writer (also forgets any recorded misuse).
  void Clear();

  // True once one top-level value is written and every container closed.
  bool complete() const { return top_done_ && stack_.empty(); }
  // OK, or the first misuse.
  absl::Status status() const { return status_; }

 private:
  struct Frame {
    bool object;
    bool has_items = false;
    bool after_key = false;
  };

  // Writes the separator before a value; false (and records misuse) if a
  // value is not allowed here.
  bool BeforeValue(const char* what);
  template <typename AppendFn>
  JsonWriter& Scalar(const char* what, AppendFn&& append);
  void Misuse(const char* what);

  std::string out_;
  std::vector<Frame> stack_;
  bool top_done_ = false;
  absl::Status status_;
};

// "2026-01-02T03:04:05.123456789Z" (UTC, always 9 fractional digits); empty
// for an infinite time.
std::string FormatRfc3339Nanos(absl::Time t);

// Indices into `attributes` of the entries to keep so that every key
// appears once, the last value given for a key winning; in order.
std::vector<size_t> UniqueAttributeIndices(const Attributes& attributes);

// Writes the value as a JSON string, integer, double (null if not finite),
// boolean, or an array of one of those.
void WriteAttributeValue(const AttributeValue& value, JsonWriter& w);

// Writes {"key":value,...} with unique keys (see above).
void WriteAttributesObject(const Attributes& attributes, JsonWriter& w);

}  // namespace trace_internal
}  // namespace ctxloop

#endif  // CTXLOOP_TRACE_EXPORT_INTERNAL_JSON_WRITER_H_
