// sheaf-agent: collects this host's metrics every --interval and ships them
// to sheafd.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "agent/host_collector.h"
#include "common/clock.h"
#include "agent/shipper.h"
#include "common/flags.h"
#include "common/log.h"
#include "sheaf_version.h"

namespace {

using namespace sheaf;

std::string HostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

// One batch from one collection: every metric becomes a series with the
// agent's extra labels (host=... by default) added.
std::vector<agent::SeriesData> ToBatch(const std::vector<agent::HostMetric>& metrics, const LabelPairs& extra,
                                       int64_t timestamp_ms) {
  std::vector<agent::SeriesData> out;
  out.reserve(metrics.size());
  for (const agent::HostMetric& m : metrics) {
    agent::SeriesData s;
    s.labels.emplace_back("__name__", m.name);
    for (const auto& l : m.labels) s.labels.push_back(l);
    for (const auto& l : extra) {
      bool present = std::any_of(s.labels.begin(), s.labels.end(), [&](const auto& x) { return x.first == l.first; });
      if (!present) s.labels.push_back(l);
    }
    std::sort(s.labels.begin(), s.labels.end());
    s.key = SeriesKey(s.labels);
    s.type = m.kind == agent::MetricKind::kCounter ? v1::METRIC_TYPE_COUNTER : v1::METRIC_TYPE_GAUGE;
    s.timestamps_ms.push_back(timestamp_ms);
    s.values.push_back(m.value);
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string daemon_address = "127.0.0.1:7470";
  std::string config_file, log_level = "info", proc_root = "/proc", mounts = "/proc/self/mounts";
  std::vector<std::string> label_flags;
  std::chrono::milliseconds interval = std::chrono::seconds(10);
  std::chrono::milliseconds shutdown_timeout = std::chrono::seconds(5);
  uint64_t max_pending = 8640;
  int64_t count = 0;
  agent::ShipperOptions shipper;
  shipper.agent_id = HostName();

  FlagSet flags("sheaf-agent", "sheaf-agent [flags]");
  flags.ConfigFile(&config_file);
  flags.String("daemon", &daemon_address, "sheafd's gRPC address (host:port)");
  flags.String("agent-id", &shipper.agent_id, "this agent's identity; also the default host label");
  flags.Duration("interval", &interval, "how often to collect");
  flags.StringList("label", &label_flags, "extra label name=value on every series (repeatable); default host=<agent-id>");
  flags.String("proc-root", &proc_root, "where /proc is (for containers with the host's /proc mounted elsewhere)");
  flags.String("mounts-file", &mounts, "mount table read for filesystem metrics");
  flags.Duration("stream-max-age", &shipper.stream_max_age, "how long one Push stream stays open before it is acknowledged");
  flags.Uint("max-pending-batches", &max_pending, "unacknowledged batches kept in memory; the oldest are dropped past it");
  flags.Duration("backoff-max", &shipper.backoff_max, "longest wait between retries");
  flags.Bool("gzip", &shipper.gzip, "compress batches with gzip");
  flags.Int("count", &count, "stop after this many collections (0: run until SIGTERM)");
  flags.Duration("shutdown-timeout", &shutdown_timeout, "on SIGTERM, how long to try to get queued batches acknowledged");
  flags.String("log-level", &log_level, "debug, info, warn or error");
  if (auto exit_code = flags.ParseMain(argc, argv)) return *exit_code;
  LogLevel level;
  if (!ParseLogLevel(log_level, &level)) {
    std::fprintf(stderr, "sheaf-agent: --log-level: \"%s\" is not debug, info, warn or error\n", log_level.c_str());
    return 2;
  }
  SetLogLevel(level);
  if (interval.count() <= 0 || shipper.agent_id.empty()) {
    std::fprintf(stderr, "sheaf-agent: --interval must be > 0 and --agent-id not empty\n");
    return 2;
  }
  LabelPairs extra;
  for (const std::string& l : label_flags) {
    auto eq = l.find('=');
    if (eq == std::string::npos || eq == 0) {
      std::fprintf(stderr, "sheaf-agent: --label \"%s\": expected name=value\n", l.c_str());
      return 2;
    }
    extra.emplace_back(l.substr(0, eq), l.substr(eq + 1));
  }
  if (std::none_of(extra.begin(), extra.end(), [](const auto& l) { return l.first == "host"; })) {
    extra.emplace_back("host", shipper.agent_id);
  }
  shipper.max_pending_batches = max_pending;

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  agent::HostCollector collector(agent::HostPaths{proc_root, mounts});
  agent::Shipper sender(shipper, agent::MakeDaemonChannel(daemon_address, {}));
  LogInfo("sheaf-agent {} shipping to {} every {} ms as \"{}\"", SHEAF_VERSION, daemon_address, interval.count(),
          shipper.agent_id);

  int collections = 0;
  bool stop = false;
  while (!stop) {
    std::vector<std::string> errors;
    auto metrics = collector.Collect(&errors);
    for (const auto& e : errors) LogDebug("collector: {}", e);
    sender.Enqueue(ToBatch(metrics, extra, WallClockMs()));
    LogDebug("collected {} series", metrics.size());
    if (count > 0 && ++collections >= count) break;
    // Sleep to the next interval boundary, waking for signals.
    int64_t now = WallClockMs();
    int64_t next = (now / interval.count() + 1) * interval.count();
    struct timespec wait = {static_cast<time_t>((next - now) / 1000), static_cast<long>((next - now) % 1000) * 1000000};
    int sig = sigtimedwait(&signals, nullptr, &wait);
    if (sig == SIGTERM || sig == SIGINT) stop = true;
  }
  LogInfo("stopping: shipping what is queued (at most {} ms)", shutdown_timeout.count());
  size_t left = sender.Stop(shutdown_timeout);
  if (left > 0) {
    LogWarn("{} batches were not acknowledged by the daemon and are lost", left);
    return 1;
  }
  return 0;
}
