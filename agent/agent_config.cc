#include "agent/agent_config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>

#include "agent/discovery/target.h"
#include "common/flags.h"
#include "common/log.h"
#include "model/labels.h"

namespace sheaf::agent {
namespace {

void RegisterFlags(FlagSet& flags, AgentConfig* c) {
  flags.ConfigFile(&c->config_file);
  flags.ConfigSection("scrape");
  flags.ConfigSection("relabel");
  flags.String("daemon", &c->daemon,
               "where sheafd is: host:port[,host:port...], dns:///name:port (every address a daemon), "
               "file:///path.yaml (a watched list) or etcd://host:port[,...]/prefix");
  flags.String("state-dir", &c->state_dir,
               "where the agent keeps its identity and batch sequences (created if missing; one per agent)");
  flags.String("spool-dir", &c->spool_dir,
               "where batches wait until a daemon acknowledges them (default: <state-dir>/spool)");
  flags.Uint("spool-max-bytes", &c->spool_max_bytes,
             "bound of the spool on disk (at least 256 KiB); past it the oldest batches go");
  flags.Duration("spool-max-age", &c->spool_max_age, "batches older than this are dropped from the spool");
  flags.String("agent-id", &c->shipper.agent_id,
               "this agent's identity (default: generated once and kept in --state-dir); must be unique");
  flags.Duration("interval", &c->interval, "how often to collect");
  flags.StringList("label", &c->label_flags,
                   "extra label name=value on every series (repeatable); default host=<host name>");
  flags.String("proc-root", &c->proc_root, "where /proc is (for containers with the host's /proc mounted elsewhere)");
  flags.String("mounts-file", &c->mounts, "mount table read for filesystem metrics");
  flags.String("rootfs", &c->rootfs,
               "where the host's root filesystem is mounted (e.g. /host/root in a container): filesystem sizes are "
               "read there, mount points reported as the host sees them");
  flags.StringList("disable-collector", &c->disable_collectors,
                   "a host collector not to run (repeatable): cpu, stat, meminfo, vmstat, loadavg, pressure, "
                   "diskstats, netdev, filesystem, time, filefd, process");
  flags.Bool("cpu-per-cpu", &c->cpu_per_cpu, "node_cpu_seconds_total per CPU (false: one series per mode)");
  flags.Duration("stream-max-age", &c->shipper.stream_max_age,
                 "how long one Push stream stays open before it is acknowledged");
  flags.Duration("backoff-max", &c->shipper.backoff_max, "longest wait between retries");
  flags.Double("replay-rate", &c->shipper.replay_rate,
               "batches per second of a backlog (an outage's) replayed beside fresh data");
  flags.Duration("replay-jitter", &c->shipper.replay_jitter,
                 "longest random delay before a backlog is replayed, so a fleet does not come back at once");
  flags.Duration("health-interval", &c->health_interval, "how often the daemons' health is checked");
  flags.Bool("gzip", &c->shipper.gzip, "compress batches with gzip");
  flags.String("metrics-listen", &c->metrics_listen,
               "serve the agent's own /metrics here (host:port, e.g. 127.0.0.1:9475); off when empty");
  flags.Int("count", &c->count, "stop after this many collections (0: run until SIGTERM)");
  flags.Uint("batch-max-samples", &c->batch_max_samples,
             "a batch holds at most this many samples; a larger collection is split");
  flags.Duration("batch-max-delay", &c->batch_max_delay,
                 "collections are gathered into one batch for at most this long (0: a batch per collection)");
  flags.Duration("shutdown-timeout", &c->shutdown_timeout,
                 "on SIGTERM (or after --count), how long to wait for a daemon to acknowledge what is spooled");
  flags.String("log-level", &c->log_level, "debug, info, warn or error");
  client::RegisterSecurityFlags(flags, &c->security);
}

// The file's sections, and every check a flag parser cannot make.
absl::Status Finish(const std::string& host_name, AgentConfig* c) {
  if (!c->config_file.empty()) {
    YAML::Node root;
    try {
      root = YAML::LoadFile(c->config_file);
    } catch (const YAML::Exception& e) {
      return absl::InvalidArgumentError(fmt::format("config file {}: {}", c->config_file, e.what()));
    }
    if (root.IsMap() && root["scrape"]) {
      auto targets = ParseScrapeTargets(root["scrape"]);
      if (!targets.ok()) {
        return absl::InvalidArgumentError(fmt::format("config file {}: {}", c->config_file, std::string(targets.status().message())));
      }
      c->scrape = *std::move(targets);
    }
    if (root.IsMap() && root["relabel"]) {
      auto rules = RelabelRules::Parse(root["relabel"], "relabel");
      if (!rules.ok()) {
        return absl::InvalidArgumentError(fmt::format("config file {}: {}", c->config_file, std::string(rules.status().message())));
      }
      c->relabel = *std::move(rules);
    }
  }
  LogLevel level;
  if (!ParseLogLevel(c->log_level, &level)) {
    return absl::InvalidArgumentError(fmt::format("--log-level: \"{}\" is not debug, info, warn or error", c->log_level));
  }
  if (c->interval.count() <= 0) return absl::InvalidArgumentError("--interval must be > 0");
  // The daemon's rule for agent ids: 1 to 256 bytes of UTF-8.
  if (!c->shipper.agent_id.empty() && !model::IsValidLabelValue(c->shipper.agent_id, 256)) {
    return absl::InvalidArgumentError("--agent-id must be at most 256 bytes of UTF-8");
  }
  if (c->state_dir.empty()) return absl::InvalidArgumentError("--state-dir must not be empty");
  if (c->spool_dir.empty()) c->spool_dir = c->state_dir + "/spool";
  if (auto t = discovery::ParseTarget(c->daemon); !t.ok()) {
    return absl::InvalidArgumentError(fmt::format("--daemon: {}", std::string(t.status().message())));
  }
  if (!(c->shipper.replay_rate > 0)) return absl::InvalidArgumentError("--replay-rate must be > 0");
  if (c->spool_max_bytes < (256u << 10)) {
    return absl::InvalidArgumentError(
        fmt::format("--spool-max-bytes {} is too small: at least 262144 (256 KiB)", c->spool_max_bytes));
  }
  if (c->batch_max_samples == 0) return absl::InvalidArgumentError("--batch-max-samples must be > 0");
  if (c->batch_max_delay.count() < 0) return absl::InvalidArgumentError("--batch-max-delay must be >= 0");
  c->extra_labels.clear();
  for (const std::string& l : c->label_flags) {
    auto eq = l.find('=');
    if (eq == std::string::npos || eq == 0) {
      return absl::InvalidArgumentError(fmt::format("--label \"{}\": expected name=value", l));
    }
    std::string name = l.substr(0, eq);
    if (!model::IsValidLabelName(name) || name.starts_with("__")) {
      return absl::InvalidArgumentError(
          fmt::format("--label \"{}\": \"{}\" is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)",
                      l, name));
    }
    c->extra_labels.emplace_back(std::move(name), l.substr(eq + 1));
  }
  // The host name is a label, not the identity: two hosts may share a name.
  if (std::none_of(c->extra_labels.begin(), c->extra_labels.end(), [](const auto& l) { return l.first == "host"; })) {
    c->extra_labels.emplace_back("host", host_name);
  }
  c->collectors.disabled = {c->disable_collectors.begin(), c->disable_collectors.end()};
  c->collectors.cpu_per_cpu = c->cpu_per_cpu;
  if (auto s = ValidateHostCollectorOptions(c->collectors); !s.ok()) {
    return absl::InvalidArgumentError(fmt::format("--disable-collector: {}", std::string(s.message())));
  }
  return absl::OkStatus();
}

}  // namespace

std::optional<int> LoadAgentConfigAtStart(int argc, char** argv, const std::string& host_name, AgentConfig* out) {
  FlagSet flags("sheaf-agent", "sheaf-agent [flags]   (every flag can also be set in --config FILE)");
  RegisterFlags(flags, out);
  if (auto exit_code = flags.ParseMain(argc, argv)) return exit_code;
  if (absl::Status s = Finish(host_name, out); !s.ok()) {
    std::fprintf(stderr, "sheaf-agent: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  return std::nullopt;
}

absl::StatusOr<AgentConfig> LoadAgentConfig(int argc, char** argv, const std::string& host_name) {
  AgentConfig c;
  FlagSet flags("sheaf-agent", "");
  RegisterFlags(flags, &c);
  if (absl::Status s = flags.Parse(argc, argv); !s.ok()) return s;
  if (!c.config_file.empty()) {
    if (absl::Status s = flags.ApplyYamlFile(c.config_file); !s.ok()) return s;
  }
  if (absl::Status s = Finish(host_name, &c); !s.ok()) return s;
  return c;
}

std::vector<std::string> SettingsNeedingRestart(const AgentConfig& before, const AgentConfig& now) {
  std::vector<std::string> out;
  auto check = [&](const char* name, bool same) {
    if (!same) out.push_back(name);
  };
  check("daemon", before.daemon == now.daemon);
  check("state-dir", before.state_dir == now.state_dir);
  check("spool-dir", before.spool_dir == now.spool_dir);
  check("spool-max-bytes", before.spool_max_bytes == now.spool_max_bytes);
  check("spool-max-age", before.spool_max_age == now.spool_max_age);
  check("agent-id", before.shipper.agent_id == now.shipper.agent_id);
  check("metrics-listen", before.metrics_listen == now.metrics_listen);
  check("health-interval", before.health_interval == now.health_interval);
  check("tls-ca, tls-cert, tls-key, tls-server-name, tls-refresh-interval, token-file",
        before.security == now.security);
  check("stream-max-age, backoff-max, replay-rate, replay-jitter, gzip",
        before.shipper.stream_max_age == now.shipper.stream_max_age &&
            before.shipper.backoff_max == now.shipper.backoff_max &&
            before.shipper.replay_rate == now.shipper.replay_rate &&
            before.shipper.replay_jitter == now.shipper.replay_jitter && before.shipper.gzip == now.shipper.gzip);
  return out;
}

}  // namespace sheaf::agent
