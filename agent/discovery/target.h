// The agent's --daemon target: which sheafd daemons it may send to, in the
// forms of gRPC target URIs. Parsing only (no gRPC, no network): what each
// form resolves to is address_source.h's job.
//
// Accepted forms:
//   host:port[,host:port...]      a fixed list; IPv6 in brackets ([::1]:7470)
//   dns:///host:port, dns:host:port
//                                 every A/AAAA address of host, resolved again
//                                 periodically (a Kubernetes headless service)
//   file:///path/daemons.yaml     a YAML list of host:port (or a map with a
//                                 `daemons:` list), watched for changes
//   etcd://host:port[,host:port...][/prefix]
//                                 the daemons registered in etcd under prefix
//                                 (default /sheaf/daemons/), watched
#ifndef SHEAF_AGENT_DISCOVERY_TARGET_H_
#define SHEAF_AGENT_DISCOVERY_TARGET_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace sheaf::agent::discovery {

inline constexpr char kDefaultEtcdPrefix[] = "/sheaf/daemons/";

struct Target {
  enum class Kind { kStatic, kDns, kFile, kEtcd };
  Kind kind = Kind::kStatic;
  std::string text;                    // as given, for messages
  std::vector<std::string> addresses;  // kStatic: host:port each; kEtcd: etcd's endpoints
  std::string host;                    // kDns
  int port = 0;                        // kDns
  std::string path;                    // kFile: absolute
  std::string prefix;                  // kEtcd: key prefix
};

// INVALID_ARGUMENT naming `text`, what is wrong and the accepted forms.
absl::StatusOr<Target> ParseTarget(std::string_view text);

// One "host:port" (IPv6 host in brackets). Splits it, checking that the
// host is not empty and the port is 1..65535. The message says what is
// wrong with `address`; callers add where it came from.
struct HostPort {
  std::string host;  // without brackets
  int port = 0;
};
absl::StatusOr<HostPort> ParseHostPort(std::string_view address);

// "host:port" again, IPv6 in brackets: the address as gRPC and the
// rendezvous order spell it.
std::string FormatHostPort(std::string_view host, int port);

}  // namespace sheaf::agent::discovery

#endif  // SHEAF_AGENT_DISCOVERY_TARGET_H_
