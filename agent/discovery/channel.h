// The agent's long-lived channel to one daemon, and its keepalive.
//
// Keepalive pairing (a daemon that sees pings more often than its
// enforcement policy allows answers GOAWAY too_many_pings and drops the
// connection): the agent pings every keepalive_time (30 s) even when no
// call is open, so an idle channel notices a dead daemon or a dropped
// connection within keepalive_time + keepalive_timeout. sheafd accepts
// pings without calls at most every --keepalive-min-ping-interval (10 s,
// daemon/daemon.cc): the daemon's minimum must stay below the agent's
// keepalive_time. tests/agent/discovery/keepalive_test.cc runs the pair.
#ifndef SHEAF_AGENT_DISCOVERY_CHANNEL_H_
#define SHEAF_AGENT_DISCOVERY_CHANNEL_H_

#include <chrono>
#include <memory>
#include <string>

#include "client/channel.h"

namespace grpc {
class Channel;
}

namespace sheaf::agent::discovery {

struct ChannelOptions {
  std::chrono::milliseconds keepalive_time = std::chrono::seconds(30);
  std::chrono::milliseconds keepalive_timeout = std::chrono::seconds(10);
  std::chrono::milliseconds max_reconnect_backoff = std::chrono::seconds(30);
  // TLS, mutual TLS and the bearer token (client/channel.h); null:
  // plaintext, no token.
  std::shared_ptr<const client::ClientSecurity> security;
};

// A channel to `address` (host:port) with the arguments above: pings with
// and without calls (GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS), any number
// of them without data (GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA 0: an idle
// Push stream sends none), and reconnect backoff up to
// max_reconnect_backoff, with `security`'s credentials and token.
// Creating it does not connect.
std::shared_ptr<grpc::Channel> MakeDaemonChannel(const std::string& address, const ChannelOptions& options);

}  // namespace sheaf::agent::discovery

#endif  // SHEAF_AGENT_DISCOVERY_CHANNEL_H_
