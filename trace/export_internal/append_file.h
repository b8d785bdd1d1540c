// Copyright 2026 The ctxloop Authors.
//
// -----------------------------------------------------------------------------
// File: ctxloop/trace/export_internal/append_file.h
// -----------------------------------------------------------------------------
//
// Internal. The files behind the file exporters:
//
//   * `AppendFile`: the append-only line file that a JSON-lines exporter
//     (`JsonLinesExporter`, `OtlpJsonExporter`) owns. It appends whole lines
//     with one `write` per call (retried on short writes and EINTR), starts
//     a new line after an append that failed part-way, flushes (optionally
//     with `fdatasync`) and closes once; the exporter's `Flush` and
//     `Shutdown` are its `Flush` and `Close`.
//
//   * `WriteFileAtomically`: writes `<path>.tmp` and renames it over `path`,
//     so readers see the old file or the new one, never a torn one.
//
// Bound: no buffer of its own; the caller's lines go to the kernel as given.
//
// Cost: `AppendFile::AppendLines` is one `write(2)` under a mutex; `Flush`
// adds an `fdatasync(2)` with `Options::sync_on_flush`.
//
// Thread-safety: `AppendFile` is thread-safe (one mutex).

#ifndef CTXLOOP_TRACE_EXPORT_INTERNAL_APPEND_FILE_H_
#define CTXLOOP_TRACE_EXPORT_INTERNAL_APPEND_FILE_H_

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ctxloop/loop/mutex.h"

namespace ctxloop {
namespace trace_internal {

class AppendFile {
 public:
  struct Options {
    // Empty the file when it is opened, instead of appending to it.
    bool truncate = false;
    // `Flush` (and so `Close`) waits until the data is on the device
    // (`fdatasync`).
    bool sync_on_flush = false;
  };

  // Opens (creating with mode 0644 if needed) `path` for appending. `owner`
  // (the exporter's name) starts the message of an open error and of the
  // errors for calls after `Close`: "<owner>: ...".
  static absl::StatusOr<std::unique_ptr<AppendFile>> Open(
      absl::string_view owner, const std::string& path, Options options);

  AppendFile(const AppendFile&) = delete;
  AppendFile& operator=(const AppendFile&) = delete;
  ~AppendFile();  // Closes the file if open; errors are ignored.

  // Writes `lines` (whole lines, each ending in '\n') at the end of the file
  // with one `write`. After a failure part of `lines` may have been written;
  // the next call then writes a '\n' first, so its lines start on a new
  // line. Empty `lines` writes nothing but still fails after `Close`.
  // Errors: after `Close`, `kFailedPrecondition` ("<owner>: Export after
  // Shutdown"); I/O errors by errno.
  absl::Status AppendLines(std::string lines);

  // Data is handed to the OS by `AppendLines` already; with
  // `sync_on_flush`, waits until it is on the device. After `Close`:
  // `kFailedPrecondition` ("<owner>: Flush after Shutdown").
  absl::Status Flush();

  // Flushes as `Flush`, then closes the file; returns the first error.
  // Idempotent: OK once closed.
  absl::Status Close();

 private:
  AppendFile(absl::string_view owner, std::string path, Options options,
             int fd);

  const std::string owner_;
  const std::string path_;
  const Options options_;
  ctxloop::Mutex mu_;
  int fd_ ABSL_GUARDED_BY(mu_);  // -1 once closed.
  // The last write failed part-way.
  bool needs_newline_ ABSL_GUARDED_BY(mu_) = false;
};

// Writes `data` to `<path>.tmp`, syncs it, and renames it to `path`.
absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view data);

}  // namespace trace_internal
}  // namespace ctxloop

#endif  // CTXLOOP_TRACE_EXPORT_INTERNAL_APPEND_FILE_H_
