// sheaf-agent: collects this host's metrics every --interval and ships them
// to sheafd.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "agent/agent_state.h"
#include "agent/batch_builder.h"
#include "agent/host_collector.h"
#include "agent/shipper.h"
#include "common/clock.h"
#include "common/flags.h"
#include "common/log.h"
#include "model/labels.h"
#include "sheaf_version.h"

namespace {

using namespace sheaf;

std::string HostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

std::string DropCounts(const agent::BatchBuilder::Stats& st) {
  std::string out;
  for (const auto& [reason, n] : st.dropped_by_reason) {
    out += fmt::format("{}{}={}", out.empty() ? "" : ", ", model::ReasonName(reason), n);
  }
  return out.empty() ? "none" : out;
}

void LogSummary(const agent::Shipper::Stats& sh, const agent::BatchBuilder::Stats& b) {
  LogInfo(
      "shipped up to sequence {} ({} streams ok, {} failed, {} batches dropped from a full queue); "
      "sequence_conflicts={} unexpected_duplicates={} batches_resent={} sequence_errors={}; "
      "series built {} (label values repaired to UTF-8 in {}), not sent because the daemon would reject them: {}",
      sh.acked_sequence, sh.streams_ok, sh.streams_failed, sh.dropped, sh.sequence_conflicts, sh.unexpected_duplicates,
      sh.batches_resent, sh.sequence_errors, b.series_built, b.series_sanitized, DropCounts(b));
}

}  // namespace

int main(int argc, char** argv) {
  std::string daemon_address = "127.0.0.1:7470";
  std::string config_file, log_level = "info", proc_root = "/proc", mounts = "/proc/self/mounts";
  std::string state_dir = "/var/lib/sheaf-agent";
  std::vector<std::string> label_flags;
  std::chrono::milliseconds interval = std::chrono::seconds(10);
  std::chrono::milliseconds shutdown_timeout = std::chrono::seconds(5);
  uint64_t max_pending = 8640;
  int64_t count = 0;
  agent::ShipperOptions shipper;
  const std::string host_name = HostName();

  FlagSet flags("sheaf-agent", "sheaf-agent [flags]");
  flags.ConfigFile(&config_file);
  flags.String("daemon", &daemon_address, "sheafd's gRPC address (host:port)");
  flags.String("state-dir", &state_dir,
               "where the agent keeps its identity and batch sequences (created if missing; one per agent)");
  flags.String("agent-id", &shipper.agent_id,
               "this agent's identity (default: generated once and kept in --state-dir); must be unique");
  flags.Duration("interval", &interval, "how often to collect");
  flags.StringList("label", &label_flags,
                   "extra label name=value on every series (repeatable); default host=<host name>");
  flags.String("proc-root", &proc_root, "where /proc is (for containers with the host's /proc mounted elsewhere)");
  flags.String("mounts-file", &mounts, "mount table read for filesystem metrics");
  flags.Duration("stream-max-age", &shipper.stream_max_age,
                 "how long one Push stream stays open before it is acknowledged");
  flags.Uint("max-pending-batches", &max_pending,
             "unacknowledged batches kept in memory; the oldest are dropped past it");
  flags.Duration("backoff-max", &shipper.backoff_max, "longest wait between retries");
  flags.Bool("gzip", &shipper.gzip, "compress batches with gzip");
  flags.Int("count", &count, "stop after this many collections (0: run until SIGTERM)");
  flags.Duration("shutdown-timeout", &shutdown_timeout,
                 "on SIGTERM, how long to try to get queued batches acknowledged");
  flags.String("log-level", &log_level, "debug, info, warn or error");
  if (auto exit_code = flags.ParseMain(argc, argv)) return *exit_code;
  LogLevel level;
  if (!ParseLogLevel(log_level, &level)) {
    std::fprintf(stderr, "sheaf-agent: --log-level: \"%s\" is not debug, info, warn or error\n", log_level.c_str());
    return 2;
  }
  SetLogLevel(level);
  if (interval.count() <= 0) {
    std::fprintf(stderr, "sheaf-agent: --interval must be > 0\n");
    return 2;
  }
  // The daemon's rule for agent ids: 1 to 256 bytes of UTF-8.
  const bool explicit_id = !shipper.agent_id.empty();
  if (explicit_id && !model::IsValidLabelValue(shipper.agent_id, 256)) {
    std::fprintf(stderr, "sheaf-agent: --agent-id must be at most 256 bytes of UTF-8\n");
    return 2;
  }
  if (state_dir.empty()) {
    std::fprintf(stderr, "sheaf-agent: --state-dir must not be empty\n");
    return 2;
  }
  LabelPairs extra;
  for (const std::string& l : label_flags) {
    auto eq = l.find('=');
    if (eq == std::string::npos || eq == 0) {
      std::fprintf(stderr, "sheaf-agent: --label \"%s\": expected name=value\n", l.c_str());
      return 2;
    }
    std::string name = l.substr(0, eq);
    if (!model::IsValidLabelName(name) || name.starts_with("__")) {
      std::fprintf(stderr,
                   "sheaf-agent: --label \"%s\": \"%s\" is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*, "
                   "not starting with __)\n",
                   l.c_str(), name.c_str());
      return 2;
    }
    extra.emplace_back(std::move(name), l.substr(eq + 1));
  }
  // The host name is a label, not the identity: two hosts may share a name.
  if (std::none_of(extra.begin(), extra.end(), [](const auto& l) { return l.first == "host"; })) {
    extra.emplace_back("host", host_name);
  }
  shipper.max_pending_batches = max_pending;

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto state = agent::AgentState::Open({.dir = state_dir, .use_identity_file = !explicit_id});
  if (!state.ok()) {
    LogError("cannot start: {}{}", std::string(state.status().message()),
             state.status().code() == absl::StatusCode::kFailedPrecondition
                 ? " (--state-dir must be a directory this user can create and write, used by one agent only)"
                 : "");
    return 1;
  }
  if (!explicit_id) shipper.agent_id = (*state)->identity();

  agent::HostCollector collector(agent::HostPaths{proc_root, mounts});
  agent::BatchBuilder builder(extra);
  agent::Shipper sender(shipper, agent::MakeDaemonChannel(daemon_address, {}), state->get());
  LogInfo("sheaf-agent {} shipping to {} every {} ms as agent \"{}\" ({}), state in {}, next sequence {}",
          SHEAF_VERSION, daemon_address, interval.count(), shipper.agent_id,
          explicit_id                    ? "from --agent-id"
          : (*state)->identity_created() ? "new identity, generated now"
                                         : "identity file",
          state_dir, (*state)->PeekNextSequence());

  int collections = 0;
  bool stop = false;
  // The counters above also go to the log once an hour, so a long-running
  // agent shows them without being stopped.
  constexpr int64_t kSummaryEveryMs = 3600 * 1000;
  int64_t last_summary = MonotonicMs();
  while (!stop) {
    std::vector<std::string> errors;
    auto metrics = collector.Collect(&errors);
    for (const auto& e : errors) LogDebug("collector: {}", e);
    sender.Enqueue(builder.Build(metrics, WallClockMs()));
    LogDebug("collected {} series", metrics.size());
    if (MonotonicMs() - last_summary >= kSummaryEveryMs) {
      last_summary = MonotonicMs();
      LogSummary(sender.stats(), builder.stats());
    }
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
  LogSummary(sender.stats(), builder.stats());
  if (left > 0) {
    LogWarn("{} batches were not acknowledged by the daemon and are lost", left);
    return 1;
  }
  return 0;
}
