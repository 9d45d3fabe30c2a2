// The etcd:// daemon target: the daemons that sheafd's registrars
// (daemon/etcd_registrar.h) keep under a key prefix in etcd, each key's
// value being the daemon's host:port.
//
// On the source's thread: Range over the prefix (the list now, and the
// store's revision), then one Watch of the prefix from the next revision,
// applying each PUT and DELETE (a lease that expires deletes its key) to the
// list. When the watch ends or fails (etcd restarted, the connection broke,
// the revision was compacted away) the source waits (doubling, with jitter,
// up to SourceOptions::etcd_retry_max), moves to the next endpoint and
// starts again with a Range. The list is kept while etcd is unreachable.
#ifndef SHEAF_AGENT_DISCOVERY_ETCD_SOURCE_H_
#define SHEAF_AGENT_DISCOVERY_ETCD_SOURCE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "agent/discovery/address_source.h"
#include "agent/discovery/target.h"

namespace sheaf::agent::discovery {

// REQUIRES: target.kind == kEtcd.
absl::StatusOr<std::unique_ptr<AddressSource>> OpenEtcdSource(const Target& target, const SourceOptions& options);

// The end of etcd's key range [prefix, end) that holds exactly the keys
// starting with `prefix`: its last byte below 0xff plus one (what etcd's
// clients call WithPrefix). "\0" (every key) when there is none.
std::string EtcdPrefixEnd(std::string prefix);

}  // namespace sheaf::agent::discovery

#endif  // SHEAF_AGENT_DISCOVERY_ETCD_SOURCE_H_
