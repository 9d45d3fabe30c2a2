#include "agent/agent_state.h"

#include <errno.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <limits>

#include "common/atomic_file.h"

namespace sheaf::agent {
namespace {

constexpr char kIdentityFile[] = "identity";
constexpr char kSequenceFile[] = "sequence";
constexpr char kLockFile[] = "lock";
constexpr char kIdentityPrefix[] = "agent-";
constexpr size_t kIdentityHexDigits = 32;
// Larger than any state file written here: a bigger one is not ours.
constexpr size_t kMaxStateFileBytes = 256;
// The largest sequence ever handed out is kMax - 1, so that "next" always
// fits in a uint64_t.
constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

std::string Errno(int err) { return std::strerror(err); }

std::string Join(const std::string& dir, const std::string& name) { return dir + "/" + name; }

uint64_t SaturatingAdd(uint64_t a, uint64_t b) { return a > kMax - b ? kMax : a + b; }

// Fills `out` with `n` bytes from the kernel's CSPRNG.
absl::Status RandomBytes(unsigned char* out, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = getrandom(out + got, n - got, 0);
    if (r > 0) {
      got += static_cast<size_t>(r);
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && errno == ENOSYS) break;  // old kernel: fall back to /dev/urandom
    return absl::InternalError("getrandom(2) failed: " + Errno(errno));
  }
  if (got == n) return absl::OkStatus();
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::InternalError("cannot open /dev/urandom: " + Errno(errno));
  while (got < n) {
    ssize_t r = read(fd, out + got, n - got);
    if (r > 0) {
      got += static_cast<size_t>(r);
    } else if (!(r < 0 && errno == EINTR)) {
      int err = r < 0 ? errno : EIO;
      close(fd);
      return absl::InternalError("cannot read /dev/urandom: " + Errno(err));
    }
  }
  close(fd);
  return absl::OkStatus();
}

// The file's contents; NOT_FOUND if it does not exist; FAILED_PRECONDITION
// if it cannot be read; DATA_LOSS if it is larger than any state file.
absl::StatusOr<std::string> ReadSmallFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return absl::NotFoundError(path + " does not exist");
    return absl::FailedPreconditionError(fmt::format("cannot open {}: {}", path, Errno(errno)));
  }
  std::string out;
  char buf[512];
  for (;;) {
    ssize_t r = read(fd, buf, sizeof(buf));
    if (r == 0) break;
    if (r < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      close(fd);
      return absl::FailedPreconditionError(fmt::format("cannot read {}: {}", path, Errno(err)));
    }
    out.append(buf, static_cast<size_t>(r));
    if (out.size() > kMaxStateFileBytes) {
      close(fd);
      return absl::DataLossError(fmt::format("{} is corrupt: longer than {} bytes", path, kMaxStateFileBytes));
    }
  }
  close(fd);
  return out;
}

// What to do about a corrupt file, appended to every DATA_LOSS message.
std::string CorruptAdvice(const std::string& path, bool identity) {
  return fmt::format(
      "; sheaf-agent will not guess. Restore {} from a backup, or remove it: {}", path,
      identity ? "the agent then generates a new identity (its series keep their labels)"
               : "sequences then restart at 1, and the agent logs one sequence conflict that it heals by itself");
}

bool IsLowerHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

// "agent-<32 lowercase hex>\n" (the newline optional).
absl::StatusOr<std::string> ParseIdentity(std::string text, const std::string& path) {
  if (!text.empty() && text.back() == '\n') text.pop_back();
  const std::string_view prefix = kIdentityPrefix;
  bool ok = text.size() == prefix.size() + kIdentityHexDigits && text.starts_with(prefix);
  for (size_t i = prefix.size(); ok && i < text.size(); ++i) ok = IsLowerHex(text[i]);
  if (!ok) {
    return absl::DataLossError(
        fmt::format("{} is corrupt: expected \"{}\" and {} hex digits on one line, found {} bytes", path, prefix,
                    kIdentityHexDigits, text.size()) +
        CorruptAdvice(path, /*identity=*/true));
  }
  return text;
}

// Decimal digits and '\n' (the newline optional).
absl::StatusOr<uint64_t> ParseMark(std::string text, const std::string& path) {
  if (!text.empty() && text.back() == '\n') text.pop_back();
  uint64_t value = 0;
  bool ok = !text.empty() && text.size() <= 20;
  for (char c : text) {
    if (!ok) break;
    if (c < '0' || c > '9') {
      ok = false;
      break;
    }
    uint64_t digit = static_cast<uint64_t>(c - '0');
    if (value > (kMax - digit) / 10) {
      ok = false;
      break;
    }
    value = value * 10 + digit;
  }
  if (!ok) {
    return absl::DataLossError(
        fmt::format("{} is corrupt: expected one decimal number (the highest sequence reserved), found {} bytes", path,
                    text.size()) +
        CorruptAdvice(path, /*identity=*/false));
  }
  return value;
}

}  // namespace

absl::StatusOr<std::string> GenerateAgentId() {
  unsigned char bytes[kIdentityHexDigits / 2];
  if (auto s = RandomBytes(bytes, sizeof(bytes)); !s.ok()) return s;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id = kIdentityPrefix;
  for (unsigned char b : bytes) {
    id += kHex[b >> 4];
    id += kHex[b & 15];
  }
  return id;
}

absl::StatusOr<std::unique_ptr<AgentState>> AgentState::Open(AgentStateOptions options) {
  if (options.dir.empty()) return absl::InvalidArgumentError("the agent's state directory is not set");
  if (options.reserve_block == 0) options.reserve_block = 1;
  std::error_code ec;
  std::filesystem::create_directories(options.dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        fmt::format("cannot create the agent's state directory {}: {}", options.dir, ec.message()));
  }
  if (!std::filesystem::is_directory(options.dir, ec)) {
    return absl::FailedPreconditionError(fmt::format("the agent's state directory {} is not a directory", options.dir));
  }
  const std::string lock_path = Join(options.dir, kLockFile);
  int fd = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::FailedPreconditionError(fmt::format(
        "the agent's state directory {} is not writable: cannot create {}: {}", options.dir, lock_path, Errno(errno)));
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    close(fd);
    if (err == EWOULDBLOCK) {
      return absl::FailedPreconditionError(
          fmt::format("the agent's state directory {} is in use by another sheaf-agent (it holds {}); give every "
                      "agent its own state directory",
                      options.dir, lock_path));
    }
    return absl::FailedPreconditionError(fmt::format("cannot lock {}: {}", lock_path, Errno(err)));
  }
  std::unique_ptr<AgentState> state(new AgentState(std::move(options), fd));
  if (auto s = state->Load(); !s.ok()) return s;
  return state;
}

AgentState::AgentState(AgentStateOptions options, int lock_fd) : options_(std::move(options)), lock_fd_(lock_fd) {}

AgentState::~AgentState() { close(lock_fd_); }  // closing releases the flock

absl::Status AgentState::Load() {
  const std::string& dir = options_.dir;
  auto mark_text = ReadSmallFile(Join(dir, kSequenceFile));
  uint64_t mark = 0;
  if (mark_text.ok()) {
    auto parsed = ParseMark(*std::move(mark_text), Join(dir, kSequenceFile));
    if (!parsed.ok()) return parsed.status();
    mark = *parsed;
  } else if (!absl::IsNotFound(mark_text.status())) {
    return mark_text.status();
  }
  {
    absl::MutexLock lock(&mu_);
    reserved_ = mark;
    next_ = SaturatingAdd(mark, 1);
  }

  if (!options_.use_identity_file) return absl::OkStatus();
  auto id_text = ReadSmallFile(Join(dir, kIdentityFile));
  if (id_text.ok()) {
    auto parsed = ParseIdentity(*std::move(id_text), Join(dir, kIdentityFile));
    if (!parsed.ok()) return parsed.status();
    identity_ = *std::move(parsed);
    return absl::OkStatus();
  }
  if (!absl::IsNotFound(id_text.status())) return id_text.status();
  auto id = GenerateAgentId();
  if (!id.ok()) return id.status();
  if (auto s = WriteFileAtomically(dir, kIdentityFile, *id + "\n"); !s.ok()) {
    return absl::FailedPreconditionError(
        fmt::format("the agent's state directory {} is not writable: {}", dir, std::string(s.message())));
  }
  identity_ = *std::move(id);
  identity_created_ = true;
  return absl::OkStatus();
}

absl::Status AgentState::Reserve(uint64_t mark) {
  if (auto s = WriteFileAtomically(options_.dir, kSequenceFile, fmt::format("{}\n", mark)); !s.ok()) {
    return absl::FailedPreconditionError(fmt::format("cannot reserve batch sequences: {}", std::string(s.message())));
  }
  reserved_ = mark;
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> AgentState::NextSequence() {
  absl::MutexLock lock(&mu_);
  if (next_ >= kMax) {
    return absl::ResourceExhaustedError(
        fmt::format("agent state {}: every batch sequence is used up; give this agent a new identity", options_.dir));
  }
  if (next_ > reserved_) {
    // Write the reservation before handing out any sequence of the block.
    uint64_t mark = std::min(SaturatingAdd(next_ - 1, options_.reserve_block), kMax - 1);
    if (auto s = Reserve(mark); !s.ok()) return s;
  }
  return next_++;
}

uint64_t AgentState::PeekNextSequence() const {
  absl::MutexLock lock(&mu_);
  return next_;
}

absl::Status AgentState::AdvancePast(uint64_t sequence) {
  absl::MutexLock lock(&mu_);
  if (sequence < next_) return absl::OkStatus();
  if (sequence >= kMax - 1) {
    return absl::ResourceExhaustedError(fmt::format(
        "agent state {}: cannot continue after sequence {}: no sequence is left above it; give this agent a new "
        "identity",
        options_.dir, sequence));
  }
  uint64_t mark = std::min(SaturatingAdd(sequence, options_.reserve_block), kMax - 1);
  if (auto s = Reserve(mark); !s.ok()) return s;
  next_ = sequence + 1;
  return absl::OkStatus();
}

uint64_t AgentState::reserved() const {
  absl::MutexLock lock(&mu_);
  return reserved_;
}

}  // namespace sheaf::agent
