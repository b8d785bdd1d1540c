// Copyright 2026 The ctxloop Authors.

#include "ctxloop/trace/chrome/chrome_trace_exporter.h"

#include <algorithm>
#include <functional>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "ctxloop/trace/export_internal/append_file.h"
#include "ctxloop/trace/export_internal/json_writer.h"

namespace ctxloop {
namespace trace_internal {

struct ChromeRecord {
  bool is_trace = false;
  std::string name;
  absl::Time start;
  int64_t dur_ns = 0;
  ExecutionSite started;
  ExecutionSite finish_called;
  ExecutionSite finish_ran;
  bool arrow = false;       // Draw finish_called -> finish_ran.
  std::string args;         // The slice's "args" object.
  std::string anchor_args;  // The finish anchors' "args" object.
};

}  // namespace trace_internal

namespace {

using trace_internal::ChromeRecord;
using trace_internal::JsonWriter;

constexpr int64_t kNonLoopPid = 2147483647;
constexpr int64_t kFreshPidBase = int64_t{1} << 20;      // > any loop id.
constexpr int64_t kSyntheticTidBase = int64_t{1} << 22;  // > any Linux tid.
constexpr int64_t kAnchorNs = 1000;

bool IsFinite(absl::Time t) {
  return t != absl::InfiniteFuture() && t != absl::InfinitePast();
}

bool Known(const ExecutionSite& s) {
  return (!s.ctx.is_null() || s.thread_id != 0) && IsFinite(s.time);
}

int64_t DurationNs(absl::Time start, absl::Time end, absl::Duration d) {
  if (d != absl::InfiniteDuration() && d >= absl::ZeroDuration()) {
    return absl::ToInt64Nanoseconds(d);
  }
  if (IsFinite(start) && IsFinite(end) && end >= start) {
    return absl::ToInt64Nanoseconds(end - start);
  }
  return 0;
}

// Microseconds for "ts"/"dur": the exact nanosecond plus half a nanosecond,
// so that a reader computing trunc(value * 1000) in double (Perfetto) gets
// the exact nanosecond back, and one parsing the decimal text does too.
std::string Micros(int64_t ns) {
  if (ns < 0) ns = 0;
  return absl::StrFormat("%d.%03d5", ns / 1000, ns % 1000);
}

enum class Kind { kTrace = 0, kSpan = 1, kCalledAnchor = 2, kRanAnchor = 3 };

struct Slice {
  size_t record;
  Kind kind;
  int64_t start;  // ns since the origin.
  int64_t dur;    // ns.
  size_t track;
  uint64_t flow_id = 0;  // Anchors: their arrow.
  int64_t tid = 0;       // Set by the layout.
  int64_t pid = 0;
};

struct Track {
  ContextHandle ctx;
  int64_t thread;
  int64_t pid;
  std::string name;
  std::vector<std::vector<int64_t>> lanes;  // Stack of open slice ends.
  std::vector<int64_t> lane_tids;
};

struct Process {
  int64_t pid;
  std::string name;
};

// A metadata event: {"ph":"M","name":what,"pid":..,["tid":..,]"ts":0,
// "args":{key:value}}.
void WriteMetadata(JsonWriter& w, absl::string_view what, int64_t pid,
                   const int64_t* tid, absl::string_view key,
                   const std::function<void(JsonWriter&)>& value) {
  w.BeginObject();
  w.Key("ph").String("M").Key("name").String(what).Key("pid").Int(pid);
  if (tid != nullptr) w.Key("tid").Int(*tid);
  w.Key("ts").Int(0);
  w.Key("args").BeginObject().Key(key);
  value(w);
  w.EndObject().EndObject();
}

std::string SpanArgs(const SpanData& s) {
  JsonWriter w;
  w.BeginObject();
  w.Key("trace_id").String(s.trace_id.ToHex());
  w.Key("span_id").String(s.span_id.ToHex());
  if (s.parent_span_id.valid()) {
    w.Key("parent_span_id").String(s.parent_span_id.ToHex());
    if (s.parent_is_remote) w.Key("parent_is_remote").Bool(true);
  }
  if (!s.attributes.empty()) {
    w.Key("attributes");
    trace_internal::WriteAttributesObject(s.attributes, w);
  }
  if (s.status.code == StatusCode::kError) {
    w.Key("status")
        .BeginObject()
        .Key("code")
        .String("error")
        .Key("description")
        .String(s.status.message)
        .EndObject();
  } else if (s.status.code == StatusCode::kOk) {
    w.Key("status").BeginObject().Key("code").String("ok").EndObject();
  }
  if (s.finished_off_origin) w.Key("finished_off_origin").Bool(true);
  w.EndObject();
  return w.Release();
}

std::string AnchorArgs(const TraceId& trace_id, SpanId span_id,
                       absl::string_view name) {
  JsonWriter w;
  w.BeginObject()
      .Key("trace_id")
      .String(trace_id.ToHex())
      .Key("span_id")
      .String(span_id.ToHex())
      .Key("of")
      .String(name)
      .EndObject();
  return w.Release();
}

ChromeRecord MakeRecord(const SpanData& s) {
  ChromeRecord r;
  r.is_trace = s.is_root();
  r.name = s.name;
  r.start = s.start_time;
  r.dur_ns = DurationNs(s.start_time, s.end_time, s.duration);
  r.started = s.started;
  r.finish_called = s.finish_called;
  r.finish_ran = s.finish_ran;
  r.arrow = Known(s.finish_called) && Known(s.finish_ran) &&
            (s.finish_called.ctx != s.finish_ran.ctx ||
             s.finish_called.thread_id != s.finish_ran.thread_id);
  r.args = SpanArgs(s);
  if (r.arrow) r.anchor_args = AnchorArgs(s.trace_id, s.span_id, s.name);
  return r;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ChromeTraceExporter>>
ChromeTraceExporter::Create(const std::string& path) {
  return Create(path, Options());
}

absl::StatusOr<std::unique_ptr<ChromeTraceExporter>>
ChromeTraceExporter::Create(const std::string& path, Options options) {
  if (path.empty()) {
    return absl::InvalidArgumentError("ChromeTraceExporter: empty file path");
  }
  std::unique_ptr<ChromeTraceExporter> e(
      new ChromeTraceExporter(path, options));
  absl::Status status = e->Flush();
  if (!status.ok()) {
    return absl::Status(
        status.code(), absl::StrCat("ChromeTraceExporter: ", status.message()));
  }
  return e;
}

ChromeTraceExporter::ChromeTraceExporter(std::string path, Options options)
    : path_(std::move(path)), options_(options) {}

ChromeTraceExporter::~ChromeTraceExporter() = default;

absl::Status ChromeTraceExporter::Export(absl::Span<const SpanData> batch) {
  std::vector<ChromeRecord> records;
  records.reserve(batch.size());
  for (const SpanData& item : batch) records.push_back(MakeRecord(item));
  ctxloop::MutexLock lock(&mu_);
  if (shutdown_) {
    return absl::FailedPreconditionError(
        "ChromeTraceExporter: Export after Shutdown");
  }
  const size_t room = options_.max_items > records_.size()
                          ? options_.max_items - records_.size()
                          : 0;
  const size_t keep = std::min(room, records.size());
  for (size_t i = 0; i < keep; ++i) records_.push_back(std::move(records[i]));
  if (keep < records.size()) {
    dropped_ += records.size() - keep;
    return absl::ResourceExhaustedError(absl::StrCat(
        "ChromeTraceExporter: max_items=", options_.max_items, " reached; ",
        records.size() - keep, " of ", records.size(), " items not kept (",
        dropped_, " so far)"));
  }
  return absl::OkStatus();
}

absl::Status ChromeTraceExporter::Flush() {
  ctxloop::MutexLock lock(&mu_);
  if (shutdown_) {
    return absl::FailedPreconditionError(
        "ChromeTraceExporter: Flush after Shutdown");
  }
  return trace_internal::WriteFileAtomically(path_, RenderLocked());
}

absl::Status ChromeTraceExporter::Shutdown() {
  ctxloop::MutexLock lock(&mu_);
  if (shutdown_) return absl::OkStatus();
  shutdown_ = true;
  absl::Status status =
      trace_internal::WriteFileAtomically(path_, RenderLocked());
  std::vector<ChromeRecord>().swap(records_);
  return status;
}

void ChromeTraceExporter::SetContextName(ContextHandle ctx, std::string name) {
  ctxloop::MutexLock lock(&mu_);
  context_names_[ctx] = std::move(name);
}

std::string ChromeTraceExporter::ToJson() const {
  ctxloop::MutexLock lock(&mu_);
  return RenderLocked();
}

uint64_t ChromeTraceExporter::dropped() const {
  ctxloop::MutexLock lock(&mu_);
  return dropped_;
}

std::string ChromeTraceExporter::RenderLocked() const {
  // The origin: the earliest time drawn.
  absl::Time origin = absl::InfiniteFuture();
  size_t skipped = 0;
  for (const ChromeRecord& r : records_) {
    if (!IsFinite(r.start)) {
      ++skipped;
      continue;
    }
    origin = std::min(origin, r.start);
    if (r.arrow) {
      origin = std::min({origin, r.finish_called.time, r.finish_ran.time});
    }
  }
  auto rel = [&](absl::Time t) { return absl::ToInt64Nanoseconds(t - origin); };

  // Processes and tracks, in order of first appearance.
  std::vector<Process> processes;
  absl::flat_hash_map<std::pair<uint32_t, int64_t>, int64_t> loop_pids;
  absl::flat_hash_set<int64_t> used_pids;
  int64_t next_fresh_pid = kFreshPidBase;
  int64_t next_tid = kSyntheticTidBase;
  bool non_loop_process = false;
  std::vector<Track> tracks;
  absl::flat_hash_map<std::pair<ContextHandle, int64_t>, size_t> track_index;

  auto track_of = [&](const ExecutionSite& site) -> size_t {
    mu_.AssertHeld();  // Called from RenderLocked only.
    const auto key = std::make_pair(site.ctx, site.thread_id);
    auto it = track_index.find(key);
    if (it != track_index.end()) return it->second;
    Track t;
    t.ctx = site.ctx;
    t.thread = site.thread_id;
    if (site.ctx.is_null()) {
      if (!non_loop_process) {
        processes.push_back({kNonLoopPid, "non-loop threads"});
        non_loop_process = true;
      }
      t.pid = kNonLoopPid;
      t.name = site.thread_id != 0 ? absl::StrCat("thread ", site.thread_id)
                                   : std::string("unknown thread");
      t.lane_tids.push_back(site.thread_id > 0 &&
                                    site.thread_id < kSyntheticTidBase
                                ? site.thread_id
                                : next_tid++);
    } else {
      const auto pkey = std::make_pair(site.ctx.loop_id(), site.thread_id);
      auto pit = loop_pids.find(pkey);
      if (pit == loop_pids.end()) {
        int64_t pid = site.ctx.loop_id();
        if (used_pids.contains(pid)) pid = next_fresh_pid++;
        used_pids.insert(pid);
        pit = loop_pids.emplace(pkey, pid).first;
        processes.push_back(
            {pid, absl::StrCat("loop ", site.ctx.loop_id(), " (thread ",
                               site.thread_id, ")")});
      }
      t.pid = pit->second;
      auto name = context_names_.find(site.ctx);
      t.name = name != context_names_.end() ? name->second
               : !site.context_name.empty()
                   ? site.context_name
                   : absl::StrCat("ctx ", site.ctx.context_id());
      t.lane_tids.push_back(next_tid++);
    }
    t.lanes.emplace_back();
    tracks.push_back(std::move(t));
    track_index.emplace(key, tracks.size() - 1);
    return tracks.size() - 1;
  };

  // Slices, and the arrows' anchors.
  std::vector<Slice> slices;
  uint64_t next_flow = 1;
  for (size_t i = 0; i < records_.size(); ++i) {
    const ChromeRecord& r = records_[i];
    if (!IsFinite(r.start)) continue;
    slices.push_back(Slice{i, r.is_trace ? Kind::kTrace : Kind::kSpan,
                           rel(r.start), r.dur_ns, track_of(r.started)});
    if (r.arrow) {
      const uint64_t flow = next_flow++;
      slices.push_back(Slice{i, Kind::kCalledAnchor, rel(r.finish_called.time),
                             kAnchorNs, track_of(r.finish_called), flow});
      slices.push_back(Slice{i, Kind::kRanAnchor, rel(r.finish_ran.time),
                             kAnchorNs, track_of(r.finish_ran), flow});
    }
  }

  // Parents before children: by start, longer first, traces first, then
  // the order of arrival. The file lists slices in this order too, which is
  // what viewers need for slices that start together.
  std::vector<size_t> order(slices.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const Slice& x = slices[a];
    const Slice& y = slices[b];
    if (x.start != y.start) return x.start < y.start;
    if (x.dur != y.dur) return x.dur > y.dur;
    if (x.kind != y.kind) return x.kind < y.kind;
    return a < b;
  });

  // Lanes: each slice goes to the first lane of its track where it nests.
  for (size_t idx : order) {
    Slice& s = slices[idx];
    Track& t = tracks[s.track];
    const bool anchor =
        s.kind == Kind::kCalledAnchor || s.kind == Kind::kRanAnchor;
    size_t lane = 0;
    for (;; ++lane) {
      if (lane == t.lanes.size()) {
        t.lanes.emplace_back();
        t.lane_tids.push_back(next_tid++);
      }
      std::vector<int64_t>& stack = t.lanes[lane];
      while (!stack.empty() && stack.back() <= s.start) stack.pop_back();
      if (stack.empty() || s.start + s.dur <= stack.back()) break;
      if (anchor) {  // Shrink the anchor to end with the enclosing slice.
        s.dur = stack.back() - s.start;
        break;
      }
    }
    t.lanes[lane].push_back(s.start + s.dur);
    s.tid = t.lane_tids[lane];
    s.pid = t.pid;
  }

  JsonWriter w;
  w.BeginObject().Key("traceEvents").BeginArray();
  for (const Process& p : processes) {
    WriteMetadata(w, "process_name", p.pid, nullptr, "name",
                  [&](JsonWriter& v) { v.String(p.name); });
  }
  for (size_t ti = 0; ti < tracks.size(); ++ti) {
    const Track& t = tracks[ti];
    for (size_t lane = 0; lane < t.lane_tids.size(); ++lane) {
      const std::string name =
          lane == 0 ? t.name : absl::StrCat(t.name, " (overlap ", lane, ")");
      WriteMetadata(w, "thread_name", t.pid, &t.lane_tids[lane], "name",
                    [&](JsonWriter& v) { v.String(name); });
      WriteMetadata(w, "thread_sort_index", t.pid, &t.lane_tids[lane],
                    "sort_index",
                    [&](JsonWriter& v) { v.Uint(ti * 1000 + lane); });
    }
  }
  for (size_t idx : order) {
    const Slice& s = slices[idx];
    const ChromeRecord& r = records_[s.record];
    const bool anchor =
        s.kind == Kind::kCalledAnchor || s.kind == Kind::kRanAnchor;
    w.BeginObject();
    w.Key("ph").String("X");
    w.Key("pid").Int(s.pid).Key("tid").Int(s.tid);
    w.Key("ts").Raw(Micros(s.start)).Key("dur").Raw(Micros(s.dur));
    switch (s.kind) {
      case Kind::kTrace:
        w.Key("name").String(r.name).Key("cat").String("trace");
        break;
      case Kind::kSpan:
        w.Key("name").String(r.name).Key("cat").String("span");
        break;
      case Kind::kCalledAnchor:
        w.Key("name").String("finish called").Key("cat").String("finish");
        break;
      case Kind::kRanAnchor:
        w.Key("name").String("finish ran").Key("cat").String("finish");
        break;
    }
    w.Key("args");
    w.Raw(anchor ? r.anchor_args : r.args);
    w.EndObject();
    if (anchor) {
      w.BeginObject();
      w.Key("ph").String(s.kind == Kind::kCalledAnchor ? "s" : "f");
      if (s.kind == Kind::kRanAnchor) w.Key("bp").String("e");
      w.Key("id").Uint(s.flow_id);
      w.Key("name").String("finish").Key("cat").String("finish");
      w.Key("pid").Int(s.pid).Key("tid").Int(s.tid);
      w.Key("ts").Raw(Micros(s.start));
      w.EndObject();
    }
  }
  w.EndArray();
  // Known keys only, after traceEvents: Perfetto stops reading the outer
  // object at the first key it does not know.
  w.Key("displayTimeUnit").String("ms");
  w.Key("otherData").BeginObject();
  w.Key("producer").String("ctxloop ChromeTraceExporter");
  if (IsFinite(origin)) {
    w.Key("time_origin").String(trace_internal::FormatRfc3339Nanos(origin));
    w.Key("time_origin_unix_ns")
        .String(absl::StrCat(absl::ToUnixNanos(origin)));
  }
  if (skipped > 0)
    w.Key("items_without_start_time").String(absl::StrCat(skipped));
  if (dropped_ > 0) w.Key("items_dropped").String(absl::StrCat(dropped_));
  w.EndObject();
  w.EndObject();
  return w.Release();
}

}  // namespace ctxloop
