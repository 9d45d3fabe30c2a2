#include "common/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cstring>

namespace sheaf {
namespace {

std::string Errno(int err) { return std::strerror(err); }

absl::Status WriteAll(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t w = write(fd, data.data(), data.size());
    if (w < 0) {
      if (errno == EINTR) continue;
      return absl::FailedPreconditionError(fmt::format("cannot write {}: {}", path, Errno(errno)));
    }
    data.remove_prefix(static_cast<size_t>(w));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteFileAtomically(const std::string& dir, const std::string& name, std::string_view contents) {
  const std::string path = dir + "/" + name;
  const std::string tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return absl::FailedPreconditionError(fmt::format("cannot create {}: {}", tmp, Errno(errno)));
  absl::Status s = WriteAll(fd, contents, tmp);
  if (s.ok() && fsync(fd) != 0)
    s = absl::FailedPreconditionError(fmt::format("cannot fsync {}: {}", tmp, Errno(errno)));
  if (close(fd) != 0 && s.ok())
    s = absl::FailedPreconditionError(fmt::format("cannot close {}: {}", tmp, Errno(errno)));
  if (s.ok() && rename(tmp.c_str(), path.c_str()) != 0) {
    s = absl::FailedPreconditionError(fmt::format("cannot rename {} to {}: {}", tmp, path, Errno(errno)));
  }
  if (!s.ok()) {
    unlink(tmp.c_str());
    return s;
  }
  // The rename is durable only once the directory is.
  return SyncDirectory(dir);
}

absl::Status SyncDirectory(const std::string& dir) {
  int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return absl::FailedPreconditionError(fmt::format("cannot open directory {}: {}", dir, Errno(errno)));
  absl::Status s;
  if (fsync(dfd) != 0)
    s = absl::FailedPreconditionError(fmt::format("cannot fsync directory {}: {}", dir, Errno(errno)));
  close(dfd);
  return s;
}

}  // namespace sheaf
