#include "agent/discovery/address_source.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <fmt/ranges.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>

#include "absl/status/status.h"
#include "agent/discovery/etcd_source.h"
#include "common/log.h"

namespace sheaf::agent::discovery {

AddressSource::~AddressSource() { StopThread(); }

std::vector<std::string> AddressSource::Addresses() const {
  absl::MutexLock lock(&mu_);
  return addresses_;
}

uint64_t AddressSource::version() const {
  absl::MutexLock lock(&mu_);
  return version_;
}

bool AddressSource::WaitForVersion(uint64_t version, std::chrono::milliseconds timeout) const {
  absl::MutexLock lock(&mu_);
  auto reached = [this, version]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return version_ >= version; };
  return mu_.AwaitWithTimeout(absl::Condition(&reached), absl::FromChrono(timeout));
}

void AddressSource::SetListener(std::function<void()> listener) {
  absl::MutexLock lock(&listener_mu_);
  listener_ = std::move(listener);
}

AddressSource::Stats AddressSource::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

void AddressSource::Set(std::vector<std::string> addresses) {
  std::sort(addresses.begin(), addresses.end());
  addresses.erase(std::unique(addresses.begin(), addresses.end()), addresses.end());
  {
    absl::MutexLock lock(&mu_);
    if (!stats_.last_error.empty()) LogInfo("daemon target {}: answering again", target_);
    stats_.last_error.clear();
    if (addresses == addresses_) return;
    LogInfo("daemon target {}: {} daemon(s): {}", target_, addresses.size(), fmt::join(addresses, ", "));
    addresses_ = std::move(addresses);
    ++version_;
    ++stats_.updates;
  }
  absl::MutexLock lock(&listener_mu_);
  if (listener_) listener_();
}

void AddressSource::RecordError(const std::string& message) {
  absl::MutexLock lock(&mu_);
  ++stats_.errors;
  if (message == stats_.last_error) return;  // said once; counted every time
  stats_.last_error = message;
  LogWarn("daemon target {}: {} (keeping the {} daemon(s) known before)", target_, message, addresses_.size());
}

void AddressSource::StartThread(std::function<void()> loop) { thread_ = std::thread(std::move(loop)); }

void AddressSource::StopThread(const std::function<void()>& interrupt) {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (interrupt) interrupt();
  if (thread_.joinable()) thread_.join();
}

bool AddressSource::stopping() const {
  absl::MutexLock lock(&mu_);
  return stopping_;
}

bool AddressSource::WaitStopping(std::chrono::milliseconds d) const {
  absl::MutexLock lock(&mu_);
  auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
  mu_.AwaitWithTimeout(absl::Condition(&stop), absl::FromChrono(d));
  return stopping_;
}

namespace {

class StaticSource : public AddressSource {
 public:
  explicit StaticSource(const Target& target) : AddressSource(target.text) { Set(target.addresses); }
};

class DnsSource : public AddressSource {
 public:
  DnsSource(const Target& target, const SourceOptions& options) : AddressSource(target.text) {
    auto resolve = options.resolve ? options.resolve : ResolveHost;
    StartThread([this, resolve, host = target.host, port = target.port, every = options.dns_refresh,
                 max = options.max_addresses] {
      do {
        auto addresses = resolve(host, port);
        if (!addresses.ok()) {
          RecordError(std::string(addresses.status().message()));
        } else if (addresses->empty()) {
          RecordError(fmt::format("{} has no address", host));
        } else {
          if (addresses->size() > max) {
            RecordError(fmt::format("{} has {} addresses; using the first {}", host, addresses->size(), max));
            addresses->resize(max);
          }
          Set(*std::move(addresses));
        }
      } while (!WaitStopping(every));
    });
  }
  ~DnsSource() override { StopThread(); }
};

// What tells a changed file: a rename over it changes the inode, an edit
// in place the time or the size (times alone can repeat within their
// granularity).
struct FileId {
  bool exists = false;
  dev_t dev = 0;
  ino_t ino = 0;
  off_t size = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  bool operator==(const FileId&) const = default;
};

FileId Identify(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return {};
  return {true,
          st.st_dev,
          st.st_ino,
          st.st_size,
          int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec,
          int64_t{st.st_ctim.tv_sec} * 1'000'000'000 + st.st_ctim.tv_nsec};
}

class FileSource : public AddressSource {
 public:
  // `first` is the file's content read by OpenAddressSource, `seen` what
  // the file was before that read (so a change during it is read again).
  FileSource(const Target& target, const SourceOptions& options, std::vector<std::string> first, FileId seen)
      : AddressSource(target.text) {
    Set(std::move(first));
    StartThread([this, seen, path = target.path, every = options.file_poll, max = options.max_addresses]() mutable {
      while (!WaitStopping(every)) {
        FileId now = Identify(path);
        if (now == seen) continue;
        seen = now;
        if (!now.exists) {
          RecordError(fmt::format("{} is gone", path));
          continue;
        }
        auto addresses = ReadDaemonsFile(path, max);
        if (addresses.ok()) {
          Set(*std::move(addresses));
        } else {
          RecordError(std::string(addresses.status().message()));
        }
      }
    });
  }
  ~FileSource() override { StopThread(); }
};

}  // namespace

absl::StatusOr<std::vector<std::string>> ReadDaemonsFile(const std::string& path, size_t max_addresses) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    return absl::NotFoundError(fmt::format("daemons file {}: cannot be read", path));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        fmt::format("daemons file {}: line {}: {}", path, e.mark.line + 1, e.msg));
  }
  constexpr char kExpected[] = "expected a list of host:port, or a map with a `daemons:` list of them";
  YAML::Node list = root;
  if (root.IsMap()) {
    for (const auto& kv : root) {
      std::string key = kv.first.as<std::string>("");
      if (key != "daemons") return absl::InvalidArgumentError(fmt::format("daemons file {}: unknown key \"{}\"; {}", path, key, kExpected));
    }
    list = root["daemons"];
  }
  if (!list.IsSequence()) return absl::InvalidArgumentError(fmt::format("daemons file {}: {}", path, kExpected));
  if (list.size() == 0) {
    // A file being rewritten can be empty for a moment: never a reason to
    // drop every daemon.
    return absl::InvalidArgumentError(fmt::format("daemons file {}: lists no daemon", path));
  }
  if (list.size() > max_addresses) {
    return absl::InvalidArgumentError(
        fmt::format("daemons file {}: {} daemons, more than the {} allowed", path, list.size(), max_addresses));
  }
  std::vector<std::string> out;
  for (size_t i = 0; i < list.size(); ++i) {
    const YAML::Node& item = list[i];
    auto hp = item.IsScalar() ? ParseHostPort(item.Scalar())
                              : absl::StatusOr<HostPort>(absl::InvalidArgumentError("not a host:port string"));
    if (!hp.ok()) {
      return absl::InvalidArgumentError(
          fmt::format("daemons file {}: line {}: {}", path, item.Mark().line + 1, std::string(hp.status().message())));
    }
    out.push_back(FormatHostPort(hp->host, hp->port));
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> ResolveHost(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;  // one entry per address, not one per socket type
  addrinfo* res = nullptr;
  int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (rc != 0) {
    return absl::UnavailableError(fmt::format("resolving {}: {}", host, gai_strerror(rc)));
  }
  std::vector<std::string> out;
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    char buf[INET6_ADDRSTRLEN] = {};
    const void* addr = nullptr;
    if (ai->ai_family == AF_INET) {
      addr = &reinterpret_cast<const sockaddr_in*>(ai->ai_addr)->sin_addr;
    } else if (ai->ai_family == AF_INET6) {
      addr = &reinterpret_cast<const sockaddr_in6*>(ai->ai_addr)->sin6_addr;
    }
    if (addr != nullptr && inet_ntop(ai->ai_family, addr, buf, sizeof(buf)) != nullptr) {
      out.push_back(FormatHostPort(buf, port));
    }
  }
  freeaddrinfo(res);
  return out;
}

absl::StatusOr<std::unique_ptr<AddressSource>> OpenAddressSource(const Target& target, const SourceOptions& options) {
  switch (target.kind) {
    case Target::Kind::kStatic:
      return std::unique_ptr<AddressSource>(new StaticSource(target));
    case Target::Kind::kDns:
      return std::unique_ptr<AddressSource>(new DnsSource(target, options));
    case Target::Kind::kFile: {
      FileId seen = Identify(target.path);
      auto first = ReadDaemonsFile(target.path, options.max_addresses);
      if (!first.ok()) {
        return absl::Status(first.status().code(),
                            fmt::format("--daemon {}: {}", target.text, std::string(first.status().message())));
      }
      return std::unique_ptr<AddressSource>(new FileSource(target, options, *std::move(first), seen));
    }
    case Target::Kind::kEtcd:
      return OpenEtcdSource(target, options);
  }
  return absl::InvalidArgumentError("unknown target kind");
}

}  // namespace sheaf::agent::discovery
