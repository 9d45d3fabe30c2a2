// sheaf-agent's settings: every flag, also settable in the YAML file given
// with --config (a mapping of flag names to values), plus two sections that
// only the file has:
//
//   scrape:   local Prometheus targets (agent/scrape/scraper.h)
//   relabel:  Prometheus relabel_config rules applied to every series the
//             agent collects, host and scraped, before it is sent
//             (agent/relabel/relabel.h)
//
// Loaded the same way at start and on SIGHUP, so a reload sees exactly
// what a restart would. No gRPC.
#ifndef SHEAF_AGENT_AGENT_CONFIG_H_
#define SHEAF_AGENT_AGENT_CONFIG_H_

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/collectors/host_collector.h"
#include "agent/relabel/relabel.h"
#include "agent/scrape/scraper.h"
#include "agent/shipper.h"
#include "client/channel.h"

namespace sheaf::agent {

struct AgentConfig {
  std::string daemon = "127.0.0.1:7470";  // a target: agent/discovery/target.h
  std::string config_file;
  std::string log_level = "info";
  std::string state_dir = "/var/lib/sheaf-agent";
  std::string spool_dir;  // "": <state_dir>/spool
  uint64_t spool_max_bytes = 512ull << 20;
  std::chrono::milliseconds spool_max_age = std::chrono::hours(24);
  std::chrono::milliseconds interval = std::chrono::seconds(10);
  std::chrono::milliseconds shutdown_timeout = std::chrono::seconds(5);
  std::chrono::milliseconds health_interval = std::chrono::seconds(2);
  std::vector<std::string> label_flags;  // name=value
  std::string proc_root = "/proc";
  std::string mounts = "/proc/self/mounts";
  std::string rootfs;  // "": "/"
  std::vector<std::string> disable_collectors;
  bool cpu_per_cpu = true;
  std::string metrics_listen;  // "": no /metrics
  int64_t count = 0;           // stop after this many collections (0: never)
  // A batch closes when it has this many samples (a larger collection is
  // split) or its first collection is this old (0: every collection is
  // a batch).
  uint64_t batch_max_samples = 20000;
  std::chrono::milliseconds batch_max_delay{0};
  ShipperOptions shipper;      // agent_id comes from --agent-id or the state
  client::SecurityFlags security;  // --tls-ca, --tls-cert, --tls-key, --tls-server-name, --tls-refresh-interval,
                                   // --token-file

  // From the file's sections.
  std::vector<ScrapeTarget> scrape;
  RelabelRules relabel;

  // Derived and checked by Load.
  LabelPairs extra_labels;  // --label, plus host=<host name> unless given
  HostCollectorOptions collectors;
};

// Parses the command line and the --config file. Start: prints --help /
// --version or the error and returns the exit code (0 or 2) when the agent
// should stop. `out` holds the settings otherwise.
std::optional<int> LoadAgentConfigAtStart(int argc, char** argv, const std::string& host_name, AgentConfig* out);

// The same without printing, for SIGHUP: the settings the command line and
// the file give now, or INVALID_ARGUMENT saying what is wrong.
absl::StatusOr<AgentConfig> LoadAgentConfig(int argc, char** argv, const std::string& host_name);

// The settings that a reload cannot change (they need a restart), named,
// where `now` differs from `before`.
std::vector<std::string> SettingsNeedingRestart(const AgentConfig& before, const AgentConfig& now);

}  // namespace sheaf::agent

#endif  // SHEAF_AGENT_AGENT_CONFIG_H_
