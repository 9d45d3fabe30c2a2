// Rendezvous (highest random weight) order of daemons for one agent: every
// agent ranks every daemon address by a hash of (agent identity, address)
// and sends to the first healthy one. Agents spread evenly over the
// daemons, adding a daemon moves only the agents that rank it first (about
// 1/(N+1) of them) and removing one moves only its own agents.
//
// The hash is FNV-1a (64 bit) over the identity, a 0 byte and the address,
// then splitmix64's finaliser (FNV alone mixes its last bytes poorly). It is
// written out here, not std::hash or absl::Hash, because every agent of a
// fleet, of any version, must compute the same order: never change it.
// No gRPC.
#ifndef SHEAF_AGENT_DISCOVERY_RENDEZVOUS_H_
#define SHEAF_AGENT_DISCOVERY_RENDEZVOUS_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sheaf::agent::discovery {

uint64_t RendezvousWeight(std::string_view identity, std::string_view address);

// `addresses` by descending weight (ties, which need equal 64-bit hashes,
// by address). Duplicates are kept once.
std::vector<std::string> RendezvousOrder(std::string_view identity, std::vector<std::string> addresses);

}  // namespace sheaf::agent::discovery

#endif  // SHEAF_AGENT_DISCOVERY_RENDEZVOUS_H_
