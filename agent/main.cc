// sheaf-agent: collects this host's metrics (and local /metrics targets)
// every --interval, spools them on disk and ships them to sheafd exactly
// once. SIGHUP reloads the configuration; SIGTERM/SIGINT stop it, leaving
// whatever the daemon has not acknowledged in the spool for the next start.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <mutex>

#include "agent/agent_config.h"
#include "agent/agent_metrics.h"
#include "agent/agent_state.h"
#include "agent/batch_builder.h"
#include "agent/collectors/host_collector.h"
#include "agent/discovery/address_source.h"
#include "agent/discovery/daemon_picker.h"
#include "agent/discovery/target.h"
#include "agent/relabel/relabel.h"
#include "agent/scrape/scraper.h"
#include "agent/shipper.h"
#include "client/channel.h"
#include "common/clock.h"
#include "common/log.h"
#include "model/validation.h"
#include "sheaf_version.h"
#include "spool/spool.h"

namespace {

using namespace sheaf;
using namespace sheaf::agent;

std::string HostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

std::string DropCounts(const BatchBuilder::Stats& st) {
  std::string out;
  for (const auto& [reason, n] : st.dropped_by_reason) {
    out += fmt::format("{}{}={}", out.empty() ? "" : ", ", model::ReasonName(reason), n);
  }
  return out.empty() ? "none" : out;
}

void LogSummary(const Shipper::Stats& sh, const Spool::Stats& sp, const BatchBuilder::Stats& b) {
  LogInfo(
      "acknowledged up to sequence {} ({} batches, {} samples; {} streams ok, {} failed, {} reconnects); spool "
      "{} bytes, {} batches waiting, dropped full={} too_old={} corrupt={}; refused by the daemon (dropped): {} "
      "batches; sequence_conflicts={} unexpected_duplicates={} batches_resent={}; series built {} (label values "
      "repaired to UTF-8 in {}), not sent because the daemon would reject them: {}",
      sh.acked_sequence, sh.batches_acked, sh.samples_acked, sh.streams_ok, sh.streams_failed, sh.reconnects,
      sp.bytes, sp.records_unacked, sp.dropped_records_full, sp.dropped_records_too_old, sp.dropped_records_corrupt,
      sh.batches_dropped_invalid, sh.sequence_conflicts, sh.unexpected_duplicates, sh.batches_resent,
      b.series_built, b.series_sanitized, DropCounts(b));
}

// What a reload can replace while the agent runs: the collectors, the
// scrape targets, the relabel rules and the labels added to every series.
struct Collection {
  explicit Collection(const AgentConfig& c)
      : host(HostPaths{c.proc_root, c.mounts, c.rootfs}, c.collectors),
        builder(c.extra_labels),
        relabel(c.relabel.empty() ? nullptr : std::make_unique<MetricRelabeler>(c.relabel, "relabel")) {
    if (!c.scrape.empty()) {
      scraper = std::make_unique<Scraper>(c.scrape, ScraperOptions{.default_interval = c.interval});
      scraper->Start();
    }
  }
  HostCollector host;
  BatchBuilder builder;
  std::unique_ptr<MetricRelabeler> relabel;
  std::unique_ptr<Scraper> scraper;
};

// What the collection loop knows, copied for /metrics (whose requests run
// on the server's threads) after every collection.
struct LoopFigures {
  std::mutex mu;
  uint64_t collections = 0;
  uint64_t samples_collected = 0;
  BatchBuilder::Stats builder;          // this run's builders, reloads included
  uint64_t relabel_dropped = 0;         // series the agent-wide relabel rules dropped
  uint64_t enqueue_failures = 0;        // collections that could not be spooled
  uint64_t enqueue_failed_samples = 0;
  std::vector<ScrapeTargetFigures> scrape_targets;
};

void Add(BatchBuilder::Stats* into, const BatchBuilder::Stats& from) {
  into->series_built += from.series_built;
  into->series_sanitized += from.series_sanitized;
  into->labels_sanitized += from.labels_sanitized;
  into->series_dropped += from.series_dropped;
  for (const auto& [reason, n] : from.dropped_by_reason) into->dropped_by_reason[reason] += n;
}

AgentMetricsSnapshot Snapshot(const AgentConfig& config, LoopFigures& loop, const Shipper& shipper,
                              const Spool& spool, const discovery::DaemonPicker& picker) {
  AgentMetricsSnapshot s;
  s.agent_id = config.shipper.agent_id;
  s.version = SHEAF_VERSION;
  const Shipper::Stats sh = shipper.stats();
  const Spool::Stats sp = spool.stats();
  const discovery::DaemonPicker::Stats pk = picker.stats();
  {
    std::lock_guard lock(loop.mu);
    s.collections = loop.collections;
    s.samples_collected = loop.samples_collected;
    s.series_dropped_invalid = loop.builder.series_dropped;
    for (const auto& [reason, n] : loop.builder.dropped_by_reason) {
      s.samples_dropped_by_reason[fmt::format("validation:{}", model::ReasonName(reason))] += n;
    }
    s.samples_dropped_by_reason["relabel"] = loop.relabel_dropped;
    s.batches_dropped_by_reason["spool_write_error"] = loop.enqueue_failures;
    s.samples_dropped_by_reason["spool_write_error"] = loop.enqueue_failed_samples;
    s.scrape_targets = loop.scrape_targets;
  }
  s.current_daemon = pk.current;
  s.batches_spooled = sh.batches_spooled;
  s.batches_sent = sh.batches_sent;
  s.batches_acked = sh.batches_acked;
  s.samples_acked = sh.samples_acked;
  s.samples_spooled = sh.samples_spooled;
  s.samples_sent = sh.samples_sent;
  s.batches_dropped_by_reason["spool_full"] = sp.dropped_records_full;
  s.batches_dropped_by_reason["spool_too_old"] = sp.dropped_records_too_old;
  s.batches_dropped_by_reason["spool_corrupt"] = sp.dropped_records_corrupt;
  s.batches_dropped_by_reason["invalid_argument"] = sh.batches_dropped_invalid;
  s.samples_dropped_by_reason["invalid_argument"] = sh.samples_dropped_invalid;
  s.spool_bytes = sp.bytes;
  s.spool_batches_unacked = sp.records_unacked;
  s.spool_oldest_age_seconds =
      sp.records_unacked > 0 && sp.oldest_unacked_ms > 0
          ? std::max<double>(0, static_cast<double>(WallClockMs() - sp.oldest_unacked_ms) / 1000)
          : 0;
  s.streams_ok = sh.streams_ok;
  s.streams_failed = sh.streams_failed;
  s.streams_limited = sh.streams_limited;
  s.reconnects = sh.reconnects;
  s.daemon_switches = pk.switches;
  s.sequence_conflicts = sh.sequence_conflicts;
  s.acked_sequence = sh.acked_sequence;
  s.ack_latency = sh.ack_latency;
  return s;
}

std::vector<ScrapeTargetFigures> TargetFigures(const Scraper& scraper) {
  std::vector<ScrapeTargetFigures> out;
  for (const Scraper::TargetStatus& t : scraper.Targets()) {
    out.push_back({.job = t.job,
                   .instance = t.instance,
                   .url = t.url,
                   .up = t.up,
                   .last_duration_seconds = t.last_duration_seconds,
                   .last_samples = t.last_samples,
                   .scrapes = t.scrapes,
                   .failures = t.failures});
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string host_name = HostName();
  AgentConfig config;
  if (auto exit_code = LoadAgentConfigAtStart(argc, argv, host_name, &config)) return *exit_code;
  LogLevel level;
  ParseLogLevel(config.log_level, &level);  // checked by the load
  SetLogLevel(level);

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  const bool explicit_id = !config.shipper.agent_id.empty();
  auto state = AgentState::Open({.dir = config.state_dir, .use_identity_file = !explicit_id});
  if (!state.ok()) {
    LogError("cannot start: {}{}", std::string(state.status().message()),
             state.status().code() == absl::StatusCode::kFailedPrecondition
                 ? " (--state-dir must be a directory this user can create and write, used by one agent only)"
                 : "");
    return 1;
  }
  if (!explicit_id) config.shipper.agent_id = (*state)->identity();

  SpoolOptions spool_options;
  spool_options.dir = config.spool_dir;
  spool_options.max_bytes = config.spool_max_bytes;
  spool_options.max_age = config.spool_max_age;
  // Whole segments are dropped at the bound: a quarter of it each, at most
  // 8 MiB, so a small bound still holds several.
  spool_options.segment_bytes = std::clamp<uint64_t>(config.spool_max_bytes / 4, 64 << 10, 8 << 20);
  auto spool = Spool::Open(spool_options);
  if (!spool.ok()) {
    LogError("cannot start: the spool: {}", spool.status().ToString());
    return spool.status().code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  auto target = discovery::ParseTarget(config.daemon);  // checked by the load
  auto source = discovery::OpenAddressSource(*target);
  if (!source.ok()) {
    LogError("cannot start: --daemon {}: {}", config.daemon, source.status().ToString());
    return 2;
  }
  auto security = client::ClientSecurity::Load(config.security);
  if (!security.ok()) {
    LogError("cannot start: {}", std::string(security.status().message()));
    return 2;
  }
  discovery::PickerOptions picker_options;
  picker_options.identity = config.shipper.agent_id;
  picker_options.channel.security = *security;
  picker_options.health_interval = config.health_interval;
  discovery::DaemonPicker picker(source->get(), picker_options);
  Shipper shipper(config.shipper, &picker, spool->get(), state->get());
  {
    const Spool::Stats sp = (*spool)->stats();
    LogInfo(
        "sheaf-agent {} shipping to {} every {} ms as agent \"{}\" ({}), state in {}, next sequence {}; spool {} "
        "with {} batches waiting ({} bytes)",
        SHEAF_VERSION, config.daemon, config.interval.count(), config.shipper.agent_id,
        explicit_id                    ? "from --agent-id"
        : (*state)->identity_created() ? "new identity, generated now"
                                       : "identity file",
        config.state_dir, (*state)->PeekNextSequence(), config.spool_dir, sp.records_unacked, sp.bytes);
  }

  auto collection = std::make_unique<Collection>(config);
  BatchBuilder::Stats builder_before;  // of builders replaced by reloads
  uint64_t relabel_before = 0;
  LoopFigures figures;
  std::unique_ptr<AgentMetricsServer> metrics_server;
  if (!config.metrics_listen.empty()) {
    auto server = AgentMetricsServer::Start(config.metrics_listen, [&] {
      return Snapshot(config, figures, shipper, **spool, picker);
    });
    if (!server.ok()) {
      LogError("cannot start: --metrics-listen {}: {}", config.metrics_listen, server.status().ToString());
      return 2;
    }
    metrics_server = *std::move(server);
    const size_t colon = config.metrics_listen.rfind(':');
    const std::string host =
        colon == std::string::npos || colon == 0 ? "127.0.0.1" : config.metrics_listen.substr(0, colon);
    LogInfo("serving the agent's own metrics on http://{}:{}/metrics", host, metrics_server->port());
  }
  uint64_t enqueue_failures = 0;
  // Collections gathered into the next batch (--batch-max-delay), and a
  // batch's split by size (--batch-max-samples).
  std::vector<SeriesData> pending;
  size_t pending_samples = 0;
  int64_t pending_since = 0;
  auto spool_batch = [&](const std::vector<SeriesData>& b, size_t samples) {
    absl::Status s = shipper.Enqueue(b);
    if (s.ok()) return;
    // Counted by the shipper; logged now and then, not per interval.
    if (enqueue_failures++ % 60 == 0) {
      LogError("a batch of {} series is lost: it could not be spooled ({}); {} lost so far", b.size(), s.ToString(),
               enqueue_failures);
    }
    std::lock_guard lock(figures.mu);
    ++figures.enqueue_failures;
    figures.enqueue_failed_samples += samples;
  };
  auto flush = [&] {
    std::vector<SeriesData> part;
    size_t part_samples = 0;
    for (SeriesData& s : pending) {
      if (!part.empty() && part_samples + s.values.size() > config.batch_max_samples) {
        spool_batch(part, part_samples);
        part.clear();
        part_samples = 0;
      }
      part_samples += s.values.size();
      part.push_back(std::move(s));
    }
    if (!part.empty()) spool_batch(part, part_samples);
    pending.clear();
    pending_samples = 0;
  };
  int collections = 0;
  bool stop = false;
  // The counters also go to the log once an hour, so a long-running agent
  // shows them without being stopped.
  constexpr int64_t kSummaryEveryMs = 3600 * 1000;
  int64_t last_summary = MonotonicMs();
  int64_t last_trim = MonotonicMs();
  while (!stop) {
    std::vector<std::string> errors;
    std::vector<HostMetric> metrics = collection->host.Collect(&errors);
    for (const auto& e : errors) LogDebug("collector: {}", e);
    if (collection->scraper) {
      std::vector<HostMetric> scraped = collection->scraper->Collect();
      metrics.insert(metrics.end(), std::make_move_iterator(scraped.begin()), std::make_move_iterator(scraped.end()));
    }
    if (collection->relabel) {
      std::erase_if(metrics, [&](HostMetric& m) { return !collection->relabel->Apply(&m); });
    }
    std::vector<SeriesData> batch = collection->builder.Build(metrics, WallClockMs());
    size_t samples = 0;
    for (const SeriesData& s : batch) samples += s.values.size();
    if (pending.empty()) pending_since = MonotonicMs();
    pending.insert(pending.end(), std::make_move_iterator(batch.begin()), std::make_move_iterator(batch.end()));
    pending_samples += samples;
    if (pending_samples >= config.batch_max_samples || MonotonicMs() - pending_since >= config.batch_max_delay.count()) {
      flush();
    }
    {
      std::lock_guard lock(figures.mu);
      ++figures.collections;
      figures.samples_collected += samples;
      figures.builder = builder_before;
      Add(&figures.builder, collection->builder.stats());
      figures.relabel_dropped = relabel_before + (collection->relabel ? collection->relabel->stats().dropped_total() : 0);
      if (collection->scraper) figures.scrape_targets = TargetFigures(*collection->scraper);
    }
    if (MonotonicMs() - last_trim >= 60'000) {
      last_trim = MonotonicMs();
      (*spool)->Trim();
    }
    if (MonotonicMs() - last_summary >= kSummaryEveryMs) {
      last_summary = MonotonicMs();
      LogSummary(shipper.stats(), (*spool)->stats(), collection->builder.stats());
    }
    if (config.count > 0 && ++collections >= config.count) break;
    // Sleep to the next interval boundary, waking for signals.
    for (;;) {
      int64_t now = WallClockMs();
      int64_t next = (now / config.interval.count() + 1) * config.interval.count();
      struct timespec wait = {static_cast<time_t>((next - now) / 1000),
                              static_cast<long>((next - now) % 1000) * 1000000};
      int sig = sigtimedwait(&signals, nullptr, &wait);
      if (sig == SIGTERM || sig == SIGINT) {
        stop = true;
        break;
      }
      if (sig != SIGHUP) break;  // the interval is over
      auto reloaded = LoadAgentConfig(argc, argv, host_name);
      if (!reloaded.ok()) {
        LogError("SIGHUP: the configuration is not valid, so the running one stays: {}",
                 std::string(reloaded.status().message()));
        continue;
      }
      for (const std::string& name : SettingsNeedingRestart(config, *reloaded)) {
        LogWarn("SIGHUP: {} changed; it takes effect at the next restart", name);
      }
      ParseLogLevel(reloaded->log_level, &level);
      SetLogLevel(level);
      Add(&builder_before, collection->builder.stats());
      if (collection->relabel) relabel_before += collection->relabel->stats().dropped_total();
      collection.reset();  // stops the old scraper before the new one starts
      config.interval = reloaded->interval;
      config.batch_max_samples = reloaded->batch_max_samples;
      config.batch_max_delay = reloaded->batch_max_delay;
      config.count = reloaded->count;
      config.shutdown_timeout = reloaded->shutdown_timeout;
      config.extra_labels = reloaded->extra_labels;
      config.collectors = reloaded->collectors;
      config.scrape = reloaded->scrape;
      config.relabel = reloaded->relabel;
      config.proc_root = reloaded->proc_root;
      config.mounts = reloaded->mounts;
      config.rootfs = reloaded->rootfs;
      collection = std::make_unique<Collection>(config);
      LogInfo("SIGHUP: reloaded: every {} ms, {} scrape targets, {} relabel rules", config.interval.count(),
              config.scrape.size(), config.relabel.size());
    }
  }
  LogInfo("stopping: waiting at most {} ms for the daemon to acknowledge what was sent",
          config.shutdown_timeout.count());
  if (collection->scraper) collection->scraper->Stop();
  flush();
  size_t left = shipper.Stop(config.shutdown_timeout);
  metrics_server.reset();
  Add(&builder_before, collection->builder.stats());
  LogSummary(shipper.stats(), (*spool)->stats(), builder_before);
  if (left > 0) LogInfo("{} batches wait in the spool {} and are sent at the next start", left, config.spool_dir);
  return 0;
}
