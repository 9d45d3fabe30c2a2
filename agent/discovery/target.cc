#include "agent/discovery/target.h"

#include <fmt/format.h>

#include <charconv>

#include "absl/status/status.h"

namespace sheaf::agent::discovery {
namespace {

constexpr char kForms[] =
    "accepted forms: host:port[,host:port...] (IPv6 as [::1]:7470), dns:///host:port, "
    "file:///path/daemons.yaml, etcd://host:port[,host:port...]/prefix";

absl::Status Invalid(std::string_view text, std::string_view why) {
  return absl::InvalidArgumentError(fmt::format("--daemon \"{}\": {}; {}", text, why, kForms));
}

std::vector<std::string_view> SplitCommas(std::string_view s) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  for (;;) {
    size_t comma = s.find(',', pos);
    out.push_back(s.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos));
    if (comma == std::string_view::npos) return out;
    pos = comma + 1;
  }
}

// Each of a comma-separated list as host:port, formatted back the one way.
absl::Status ParseList(std::string_view text, std::string_view list, std::vector<std::string>* out) {
  for (std::string_view item : SplitCommas(list)) {
    auto hp = ParseHostPort(item);
    if (!hp.ok()) return Invalid(text, std::string(hp.status().message()));
    out->push_back(FormatHostPort(hp->host, hp->port));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<HostPort> ParseHostPort(std::string_view address) {
  HostPort out;
  std::string_view port;
  if (!address.empty() && address.front() == '[') {
    size_t close = address.find(']');
    if (close == std::string_view::npos || close + 1 >= address.size() || address[close + 1] != ':') {
      return absl::InvalidArgumentError(fmt::format("\"{}\" is not [ipv6]:port", address));
    }
    out.host = std::string(address.substr(1, close - 1));
    port = address.substr(close + 2);
  } else {
    size_t colon = address.rfind(':');
    if (colon == std::string_view::npos) {
      return absl::InvalidArgumentError(fmt::format("\"{}\" has no port (host:port)", address));
    }
    if (address.find(':') != colon) {
      return absl::InvalidArgumentError(
          fmt::format("\"{}\": an IPv6 address goes in brackets, e.g. [::1]:7470", address));
    }
    out.host = std::string(address.substr(0, colon));
    port = address.substr(colon + 1);
  }
  if (out.host.empty()) return absl::InvalidArgumentError(fmt::format("\"{}\" has no host (host:port)", address));
  if (out.host.find_first_of(" \t/,") != std::string::npos) {
    return absl::InvalidArgumentError(fmt::format("\"{}\" is not a host name or IP address", out.host));
  }
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), out.port);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || out.port < 1 || out.port > 65535) {
    return absl::InvalidArgumentError(fmt::format("\"{}\": the port must be a number from 1 to 65535", address));
  }
  return out;
}

std::string FormatHostPort(std::string_view host, int port) {
  if (host.find(':') != std::string_view::npos) return fmt::format("[{}]:{}", host, port);
  return fmt::format("{}:{}", host, port);
}

absl::StatusOr<Target> ParseTarget(std::string_view text) {
  Target t;
  t.text = std::string(text);
  if (text.empty()) return Invalid(text, "empty");
  if (text.starts_with("dns:")) {
    std::string_view rest = text.substr(4);
    if (rest.starts_with("//")) {
      rest.remove_prefix(2);
      size_t slash = rest.find('/');
      if (slash != 0) {
        return Invalid(text, "a DNS server (dns://server/...) is not supported; use dns:///host:port");
      }
      rest.remove_prefix(1);
    }
    auto hp = ParseHostPort(rest);
    if (!hp.ok()) return Invalid(text, std::string(hp.status().message()));
    t.kind = Target::Kind::kDns;
    t.host = hp->host;
    t.port = hp->port;
    return t;
  }
  if (text.starts_with("file:")) {
    std::string_view rest = text.substr(5);
    if (!rest.starts_with("//")) return Invalid(text, "a file target is file:///absolute/path");
    rest.remove_prefix(2);
    if (!rest.starts_with("/")) {
      return Invalid(text, "a file target is file:///absolute/path (a host after file:// is not supported)");
    }
    if (rest.size() < 2) return Invalid(text, "no file name");
    t.kind = Target::Kind::kFile;
    t.path = std::string(rest);
    return t;
  }
  if (text.starts_with("etcd:")) {
    std::string_view rest = text.substr(5);
    if (!rest.starts_with("//")) return Invalid(text, "an etcd target is etcd://host:port[,host:port...]/prefix");
    rest.remove_prefix(2);
    size_t slash = rest.find('/');
    std::string_view endpoints = rest.substr(0, slash);
    if (endpoints.empty()) return Invalid(text, "no etcd endpoint");
    if (auto s = ParseList(text, endpoints, &t.addresses); !s.ok()) return s;
    t.prefix = slash == std::string_view::npos || slash + 1 == rest.size() ? kDefaultEtcdPrefix
                                                                            : std::string(rest.substr(slash));
    t.kind = Target::Kind::kEtcd;
    return t;
  }
  size_t scheme = text.find("://");
  if (scheme != std::string_view::npos) {
    return Invalid(text, fmt::format("unknown scheme \"{}\"", text.substr(0, scheme)));
  }
  if (auto s = ParseList(text, text, &t.addresses); !s.ok()) return s;
  t.kind = Target::Kind::kStatic;
  return t;
}

}  // namespace sheaf::agent::discovery
