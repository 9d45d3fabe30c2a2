// Which daemon the agent sends to now: the first daemon in the agent's
// rendezvous order (rendezvous.h) that answers gRPC's standard health check
// (grpc.health.v1.Health/Check) with SERVING.
//
// On a thread of its own, every health_interval (and at once after a
// change of the address list or a ReportFailure), the picker checks the
// current daemon and every daemon ahead of it in the order, in parallel,
// each with a deadline of health_timeout. A current daemon that fails the
// check, cannot be reached or reports NOT_SERVING (sheafd does from the
// start of its shutdown) is left at once for the first daemon in the order
// that passes (the rest of the order is checked then, a few at a time).
// A daemon ahead of the current one wins the agent back only after
// recover_checks checks in a row pass, so a flapping daemon does not pull
// its agents to and fro. No daemon healthy: no pick (the shipper spools).
//
// One long-lived channel per address, made on first use with the keepalive
// of channel.h and shared by the health checks and the shipper's streams;
// dropped when the address leaves the list. Thread-safe.
#ifndef SHEAF_AGENT_DISCOVERY_DAEMON_PICKER_H_
#define SHEAF_AGENT_DISCOVERY_DAEMON_PICKER_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "agent/discovery/address_source.h"
#include "agent/discovery/channel.h"

namespace grpc {
class Channel;
}

namespace sheaf::agent::discovery {

struct PickerOptions {
  std::string identity;  // the agent's identity: its rendezvous order
  ChannelOptions channel;
  std::chrono::milliseconds health_interval = std::chrono::seconds(2);
  std::chrono::milliseconds health_timeout = std::chrono::seconds(1);
  // Passing checks in a row before a daemon ahead of the current one takes
  // the agent back.
  int recover_checks = 2;
  // The service name asked about. sheafd reports its overall health under
  // "" (gRPC's default health service): SERVING while it takes batches,
  // NOT_SERVING once it shuts down.
  std::string health_service;
  // Health checks in flight at once while looking for a daemon past the
  // current one.
  size_t max_parallel_checks = 8;
};

struct Pick {
  std::string address;
  std::shared_ptr<grpc::Channel> channel;
  uint64_t generation = 0;  // goes up with every change of the pick
};

class DaemonPicker {
 public:
  // Starts checking at once. REQUIRES: `source` outlives the picker.
  DaemonPicker(AddressSource* source, PickerOptions options);
  ~DaemonPicker();
  DaemonPicker(const DaemonPicker&) = delete;
  DaemonPicker& operator=(const DaemonPicker&) = delete;

  // The daemon to send to now; nullopt when none is healthy (or none is
  // known yet).
  std::optional<Pick> Current() const;
  // Blocks until there is a pick or `timeout` passes.
  std::optional<Pick> WaitForPick(std::chrono::milliseconds timeout) const;
  // Blocks until the pick's generation is above `generation` (a new daemon,
  // or none) or `timeout` passes; returns the pick then.
  std::optional<Pick> WaitForChange(uint64_t generation, std::chrono::milliseconds timeout) const;

  // A stream to `address` failed: check it now rather than at the next
  // interval (a failed stream alone does not move the agent; the check
  // decides).
  void ReportFailure(const std::string& address);

  struct Stats {
    std::string current;   // "" when there is no pick
    uint64_t generation = 0;
    uint64_t switches = 0;  // changes of the pick, to or from none included
    uint64_t checks = 0;
    uint64_t checks_failed = 0;
    uint64_t failures_reported = 0;
    size_t daemons = 0;  // addresses known
  };
  Stats stats() const;

  // The agent's rendezvous order over the addresses known now.
  std::vector<std::string> Order() const;

 private:
  struct Daemon {
    std::shared_ptr<grpc::Channel> channel;
    int passes_in_a_row = 0;
  };
  void Run();
  void Round();
  // Checks `addresses` in parallel; true for each that answered SERVING.
  std::vector<bool> Check(const std::vector<std::string>& addresses);
  std::shared_ptr<grpc::Channel> ChannelFor(const std::string& address) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetCurrent(const std::string& address, const std::string& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  AddressSource* const source_;
  const PickerOptions options_;
  mutable absl::Mutex mu_;
  std::optional<Pick> current_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> order_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Daemon> daemons_ ABSL_GUARDED_BY(mu_);
  Stats stats_ ABSL_GUARDED_BY(mu_);
  bool wake_ ABSL_GUARDED_BY(mu_) = true;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace sheaf::agent::discovery

#endif  // SHEAF_AGENT_DISCOVERY_DAEMON_PICKER_H_
