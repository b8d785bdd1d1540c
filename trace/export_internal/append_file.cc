// Copyright 2026 The ctxloop Authors.

#include "ctxloop/trace/export_internal/append_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace ctxloop {
namespace trace_internal {
namespace {

absl::Status ErrnoStatus(int err, absl::string_view what,
                         absl::string_view path) {
  const std::string message =
      absl::StrCat(what, " ", path, ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(message);
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
      return absl::ResourceExhaustedError(message);
    case EISDIR:
    case EINVAL:
    case ENAMETOOLONG:
      return absl::InvalidArgumentError(message);
    default:
      return absl::UnavailableError(message);
  }
}

absl::Status WriteAll(int fd, absl::string_view data, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno,
                         absl::StrCat("write (", done, " of ", data.size(),
                                      " bytes written) to"),
                         path);
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

// `fdatasync` if `sync`.
absl::Status SyncIf(bool sync, int fd, const std::string& path) {
  if (sync && ::fdatasync(fd) != 0) {
    return ErrnoStatus(errno, "fdatasync", path);
  }
  return absl::OkStatus();
}

}  // namespace

// ---------------------------------------------------------------- AppendFile

absl::StatusOr<std::unique_ptr<AppendFile>> AppendFile::Open(
    absl::string_view owner, const std::string& path, Options options) {
  if (path.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(owner, ": empty file path"));
  }
  int flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC;
  if (options.truncate) flags |= O_TRUNC;
  int fd;
  do {
    fd = ::open(path.c_str(), flags, 0644);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    const absl::Status error = ErrnoStatus(errno, "cannot open", path);
    return absl::Status(error.code(),
                        absl::StrCat(owner, ": ", error.message()));
  }
  return std::unique_ptr<AppendFile>(new AppendFile(owner, path, options, fd));
}

AppendFile::AppendFile(absl::string_view owner, std::string path,
                       Options options, int fd)
    : owner_(owner), path_(std::move(path)), options_(options), fd_(fd) {}

AppendFile::~AppendFile() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status AppendFile::AppendLines(std::string lines) {
  ctxloop::MutexLock lock(&mu_);
  if (fd_ < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(owner_, ": Export after Shutdown"));
  }
  if (lines.empty()) return absl::OkStatus();
  if (needs_newline_) lines.insert(lines.begin(), '\n');
  absl::Status status = WriteAll(fd_, lines, path_);
  needs_newline_ = !status.ok();
  return status;
}

absl::Status AppendFile::Flush() {
  ctxloop::MutexLock lock(&mu_);
  if (fd_ < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(owner_, ": Flush after Shutdown"));
  }
  return SyncIf(options_.sync_on_flush, fd_, path_);
}

absl::Status AppendFile::Close() {
  ctxloop::MutexLock lock(&mu_);
  if (fd_ < 0) return absl::OkStatus();
  const absl::Status flushed = SyncIf(options_.sync_on_flush, fd_, path_);
  const int fd = std::exchange(fd_, -1);
  // Linux releases the descriptor even when close fails; do not retry.
  if (::close(fd) != 0 && errno != EINTR && flushed.ok()) {
    return ErrnoStatus(errno, "close", path_);
  }
  return flushed;
}

// ------------------------------------------------------- WriteFileAtomically

absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view data) {
  if (path.empty()) return absl::InvalidArgumentError("empty file path");
  const std::string tmp = path + ".tmp";
  int fd;
  do {
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return ErrnoStatus(errno, "cannot open", tmp);
  absl::Status status = WriteAll(fd, data, tmp);
  if (status.ok() && ::fdatasync(fd) != 0) {
    status = ErrnoStatus(errno, "fdatasync", tmp);
  }
  if (::close(fd) != 0 && status.ok() && errno != EINTR) {
    status = ErrnoStatus(errno, "close", tmp);
  }
  if (status.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    status = ErrnoStatus(errno, absl::StrCat("rename ", tmp, " to"), path);
  }
  if (!status.ok()) ::unlink(tmp.c_str());
  return status;
}

}  // namespace trace_internal
}  // namespace ctxloop
