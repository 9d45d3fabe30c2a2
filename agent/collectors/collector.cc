#include "agent/collectors/collector.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <iterator>
#include <string>

#include "agent/collectors/proc_text.h"
#include "fmt/format.h"

namespace sheaf::agent {
namespace {

// The first read's size; enough for every /proc file on a small host, and
// grown (doubling) only for the big ones, once.
constexpr size_t kInitialBufferBytes = 8 << 10;

// Reads `fd` to EOF into *content, whose capacity is reused. Returns 0 or an
// errno; EFBIG when the file is over the limit.
int ReadAll(int fd, std::string* content) {
  size_t used = 0;
  if (content->capacity() < kInitialBufferBytes) content->reserve(kInitialBufferBytes);
  // resize() within the capacity does not allocate; the bytes past `used`
  // are scratch until the final resize.
  content->resize(content->capacity());
  while (true) {
    if (used == content->size()) {
      if (content->size() >= SourceReader::kMaxFileBytes) {
        // Full at the limit: fine if EOF comes now, too big otherwise.
        char probe;
        ssize_t n;
        while ((n = ::read(fd, &probe, 1)) < 0 && errno == EINTR) {
        }
        if (n < 0) return errno;
        if (n > 0) return EFBIG;
        break;
      }
      content->resize(std::min(content->size() * 2, SourceReader::kMaxFileBytes));
    }
    const ssize_t n = ::read(fd, content->data() + used, content->size() - used);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) break;
    used += static_cast<size_t>(n);
  }
  content->resize(used);
  return 0;
}

}  // namespace

void SourceReader::NewRound() {
  for (Entry& e : entries_) e.fresh = false;
}

const std::string* SourceReader::Read(const std::string& path, std::string* error, int* error_number) {
  auto it = std::find_if(entries_.begin(), entries_.end(), [&](const Entry& e) { return e.path == path; });
  if (it == entries_.end()) {
    entries_.push_back(Entry{path, {}, false, 0, {}});
    it = std::prev(entries_.end());
  }
  Entry& e = *it;
  if (!e.fresh) {
    e.fresh = true;
    e.error.clear();
    e.error_number = 0;
    // O_NONBLOCK so that a FIFO at the path cannot hang open(); it has no
    // effect on regular files.
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
      e.error_number = errno;
      e.error = fmt::format("{}: cannot open: {}", path, proc_text::ErrnoText(e.error_number));
    } else {
      struct stat st {};
      if (::fstat(fd, &st) != 0) {
        e.error_number = errno;
        e.error = fmt::format("{}: cannot stat: {}", path, proc_text::ErrnoText(e.error_number));
      } else if (!S_ISREG(st.st_mode)) {
        e.error = fmt::format("{}: not a regular file", path);
      } else if (const int err = ReadAll(fd, &e.content); err == EFBIG) {
        e.error = fmt::format("{}: larger than {} bytes, not read", path, kMaxFileBytes);
      } else if (err != 0) {
        e.error_number = err;
        e.error = fmt::format("{}: read failed: {}", path, proc_text::ErrnoText(err));
      }
      ::close(fd);
    }
    if (!e.error.empty()) e.content.clear();
  }
  if (error_number != nullptr) *error_number = e.error_number;
  if (!e.error.empty()) {
    *error = e.error;
    return nullptr;
  }
  return &e.content;
}

}  // namespace sheaf::agent
