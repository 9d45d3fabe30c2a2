// sheafd: receives metrics from agents, stores them, answers queries.
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "common/duration.h"
#include "common/flags.h"
#include "common/log.h"
#include "daemon/daemon.h"
#include "daemon/etcd_registrar.h"
#include "daemon/memory_limit.h"

namespace {

using sheaf::daemon::DaemonConfig;
namespace storage = sheaf::storage;

// Written once everything listens, so scripts and tests can wait for a
// file instead of sleeping: "grpc_port=N\nhttp_port=M\n".
bool WriteReadyFile(const std::string& path, int grpc_port, int http_port) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << "grpc_port=" << grpc_port << "\nhttp_port=" << http_port << "\npid=" << getpid() << "\n";
    if (!out) return false;
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);  // atomic: readers never see half a file
  return !ec;
}

std::string RollupsText(const std::vector<sheaf::storage::RollupSpec>& rollups) {
  std::string out;
  for (const auto& r : rollups) {
    if (!out.empty()) out += ",";
    out += sheaf::FormatDuration(std::chrono::milliseconds(r.resolution_ms)) + ":" +
           sheaf::FormatDuration(std::chrono::milliseconds(r.retention_ms));
  }
  return out;
}

// "1m:90d,1h:2y" -> rollups, finest first. "" means none.
bool ParseRollups(const std::string& text, std::vector<sheaf::storage::RollupSpec>* out) {
  std::vector<sheaf::storage::RollupSpec> rollups;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t comma = text.find(',', pos);
    std::string item = text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    pos = comma == std::string::npos ? text.size() : comma + 1;
    size_t colon = item.find(':');
    if (colon == std::string::npos) return false;
    auto res = sheaf::ParseDuration(item.substr(0, colon));
    auto ret = sheaf::ParseDuration(item.substr(colon + 1));
    if (!res.ok() || !ret.ok() || res->count() <= 0) return false;
    rollups.push_back({res->count(), ret->count()});
  }
  std::sort(rollups.begin(), rollups.end(),
            [](const auto& a, const auto& b) { return a.resolution_ms < b.resolution_ms; });
  for (size_t i = 1; i < rollups.size(); ++i) {
    if (rollups[i].resolution_ms == rollups[i - 1].resolution_ms) return false;  // the same resolution twice
  }
  *out = rollups;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  DaemonConfig config;
  std::string config_file, ready_file, log_level = "info", query_rollups = "auto";
  int64_t workers = static_cast<int64_t>(config.ingest.workers);
  int64_t queue = static_cast<int64_t>(config.ingest.queue_capacity);

  sheaf::FlagSet flags("sheafd", "sheafd [flags]");
  flags.ConfigFile(&config_file);
  // The file's `remote_write:` list (docs/REMOTE_WRITE.md), read below.
  flags.ConfigSection("remote_write");
  flags.String("grpc-listen", &config.grpc_listen, "address for gRPC (agents, queries); port 0 picks one");
  flags.String("http-listen", &config.http_listen, "address for HTTP (/metrics, /federate); port 0 picks one");
  bool insecure = false;
  flags.String("tls-cert", &config.tls.cert_file,
               "PEM certificate (then its chain): TLS on both the gRPC and the HTTP port; reloaded on SIGHUP");
  flags.String("tls-key", &config.tls.key_file, "PEM private key of --tls-cert; reloaded on SIGHUP");
  flags.String("tls-client-ca", &config.tls.client_ca_file,
               "mutual TLS: clients of both ports must present a certificate signed by a CA in this PEM file");
  flags.Bool("insecure", &insecure,
             "allow plaintext (no --tls-cert) on an address other hosts can reach (default: only loopback)");
  uint64_t http_threads = config.http_threads;
  flags.Uint("http-threads", &http_threads, "HTTP connections served at once (one thread each)");
  flags.Duration("http-request-timeout", &config.http_request_timeout,
                 "how long an HTTP connection may take to send a request, or stay idle between requests");
  flags.StringList("rule-files", &config.rules.files,
                   "recording rule files in Prometheus' format: paths or globs, comma-separated or repeated; "
                   "reloaded on SIGHUP");
  flags.Duration("rule-evaluation-interval", &config.rules.default_interval_ms,
                 "how often a rule group without its own interval is evaluated");
  flags.String("auth-tokens", &config.auth_tokens,
               "YAML file of bearer tokens with their tenant and roles (docs/SECURITY.md); reloaded on SIGHUP. "
               "Without it everyone is the default tenant with every role");
  flags.Bool("metrics-auth", &config.metrics_auth, "/metrics needs a token too (any role; with --auth-tokens)");
  flags.String("limits", &config.limits_file,
               "YAML file of per-tenant and per-agent limits (defaults: and tenants:; docs/SECURITY.md, "
               "deploy/limits.example.yaml); reloaded on SIGHUP. Without it: the flags' limits, no rates");
  flags.Uint("federate-max-series", &config.federate.max_series,
             "/federate: series one answer may hold; a broader match[] is refused");
  storage::StoreOptions& store = config.store;
  std::string rollups = RollupsText(store.rollups);
  flags.String("data-dir", &store.path, "directory of the RocksDB store");
  flags.String("snapshot-dir", &config.snapshot_dir,
               "where `sheafctl snapshot` writes snapshots (default: DATA-DIR/snapshots; keep it on the same "
               "filesystem, so a snapshot is hard links)");
  flags.Bool("wal-sync", &store.sync, "fsync the write-ahead log before acknowledging a batch");
  flags.Uint("max-series", &store.max_series, "series limit; new series past it are rejected");
  flags.Duration("raw-retention", &store.raw_retention_ms, "how long raw samples are kept");
  flags.String("rollups", &rollups, "rollup resolutions and how long each is kept, finest first");
  flags.Duration("downsample-after", &store.downsample_after_ms,
                 "raw data this old is rolled up (newer windows are computed from raw samples when read)");
  flags.Duration("out-of-order-window", &store.out_of_order_window_ms,
                 "how far behind a series' newest sample a sample may arrive and still be stored");
  flags.Uint("max-head-samples", &store.max_head_samples,
             "recent samples kept in memory (16 bytes each) before they are cut into blocks");
  flags.Duration("head-flush-interval", &store.head_flush_interval_ms,
                 "cut recent samples into blocks at least this often");
  flags.Uint("min-free-disk-bytes", &store.min_free_disk_bytes,
             "ingestion pauses while the data directory's disk has less free space (reads go on)");
  flags.Uint("block-cache-bytes", &store.block_cache_bytes, "RocksDB block cache size");
  flags.Uint("write-buffer-bytes", &store.write_buffer_bytes, "RocksDB memtable budget across all column families");
  flags.Uint("max-cached-agent-sets", &store.max_cached_agent_sets,
             "agents whose applied batch sequences are kept in memory (~170 bytes each, the most recently "
             "pushed; the others are read from disk on their next batch)");
  flags.Uint("max-recv-message-bytes", &config.ingest.max_message_bytes,
             "largest batch accepted, after decompression (decompression stops there)");
  flags.Uint("max-label-name-bytes", &config.ingest.limits.max_label_name_bytes, "longest label name accepted");
  flags.Uint("max-label-value-bytes", &config.ingest.limits.max_label_value_bytes, "longest label value accepted");
  flags.Uint("max-labels-bytes", &config.ingest.limits.max_labels_bytes,
             "largest label set accepted (names and values together)");
  flags.Uint("max-stream-dictionary-bytes", &config.ingest.max_dictionary_bytes_per_stream,
             "memory for the series definitions of one Push stream");
  flags.Uint("max-dictionary-bytes", &config.ingest.max_dictionary_bytes_total,
             "memory for the series definitions of all open Push streams together");
  flags.Duration("grace-period", &config.grace_period, "on SIGTERM, how long in-flight calls may take to finish");
  flags.Duration("accept-past", &config.ingest.limits.accept_past, "oldest sample accepted, relative to now");
  flags.Duration("accept-future", &config.ingest.limits.accept_future, "newest sample accepted, relative to now");
  flags.Int("ingest-workers", &workers, "threads writing batches to the store");
  flags.Int("ingest-queue", &queue, "batches waiting for a worker before streams are refused");
  flags.Uint("memory-limit", &config.ingest.memory_limit_bytes,
             "resident memory bound: past 7/8 of it new Push batches are refused (RESOURCE_EXHAUSTED) until "
             "it is below; 0: none");
  int64_t query_workers = static_cast<int64_t>(config.query_workers);
  flags.Int("query-workers", &query_workers, "threads answering queries, listings and admin calls");
  sheaf::promql::EngineLimits& ql = config.query.promql.limits;
  flags.Uint("query-max-series", &ql.max_series, "PromQL: series one query may read");
  flags.Uint("query-max-samples", &ql.max_samples,
             "PromQL: samples one query may read and hold (raw samples, rollup windows, intermediate points)");
  flags.Uint("query-max-points", &ql.max_points, "PromQL: points in one answer");
  flags.Uint("query-max-concurrent", &config.query.max_concurrent_queries,
             "PromQL: queries evaluating at once; more are refused with RESOURCE_EXHAUSTED");
  flags.Duration("query-timeout", &config.query.query_timeout, "PromQL: longest evaluation of one query");
  flags.Duration("query-lookback", &config.query.promql.lookback_ms,
                 "PromQL: how far back a selector looks for a sample (Prometheus' lookback delta)");
  flags.Uint("tail-buffer-samples", &config.tail.max_buffer_samples,
             "live tail: samples waiting for one Tail stream; past it a slow reader misses samples");
  flags.Uint("tail-buffer-bytes", &config.tail.max_buffer_bytes,
             "live tail: memory (estimated) of the samples waiting for one Tail stream");
  flags.Uint("max-tail-subscribers", &config.tail.max_subscribers, "live tail: open Tail streams (0: no live tail)");
  flags.Uint("max-tail-subscriptions", &config.tail.max_subscriptions, "live tail: subscriptions per Tail stream");
  flags.String("ready-file", &ready_file, "write the bound ports here once serving");
  flags.String("query-rollups", &query_rollups,
               "PromQL: read rollup windows where they give the raw answer: auto (where data is already rolled "
               "up), always, or never (to compare)");
  flags.String("log-level", &log_level, "debug, info, warn or error");
  flags.Uint("grpc-memory-bytes", &config.grpc_memory_bytes,
             "memory gRPC may hold for all connections (HTTP/2 buffers, calls, headers); past it the greediest "
             "connections are closed (GOAWAY \"Buffers full\"); above the Push messages in flight "
             "(--max-recv-message-bytes each)");
  flags.Duration("keepalive-min-ping-interval", &config.keepalive_min_ping_interval,
                 "gRPC keepalive pings closer than this are abuse (GOAWAY too_many_pings after 2); keep it "
                 "below the agents' keepalive time (30s)");
  sheaf::daemon::EtcdRegistrarOptions etcd;
  flags.StringList("etcd-endpoints", &etcd.endpoints,
                   "register this daemon in etcd (v3 API) at these host:port addresses, comma-separated or "
                   "repeated, for agents with an etcd:// --daemon target (default: not registered)");
  flags.String("etcd-prefix", &etcd.prefix, "etcd key prefix; the key is the prefix plus --advertise-address");
  flags.String("advertise-address", &etcd.advertise_address,
               "host:port agents connect to, registered in etcd (default: --grpc-listen, unless it is a "
               "wildcard address)");
  flags.Duration("etcd-lease-ttl", &etcd.lease_ttl,
                 "TTL of the etcd lease: a daemon that dies without deregistering leaves etcd this long after");
  if (auto exit_code = flags.ParseMain(argc, argv)) return *exit_code;
  if (auto memory = sheaf::daemon::MemoryLimit::Validate(config.ingest.memory_limit_bytes, store.write_buffer_bytes,
                                                         store.block_cache_bytes);
      !memory.ok()) {
    std::fprintf(stderr, "sheafd: %s\n", std::string(memory.message()).c_str());
    return 2;
  }
  if (auto remote_write = sheaf::daemon::LoadRemoteWriteConfig(config_file, store.path); remote_write.ok()) {
    config.remote_write = *std::move(remote_write);
  } else {
    std::fprintf(stderr, "sheafd: %s\n", std::string(remote_write.status().message()).c_str());
    return 2;
  }
  if (!ParseRollups(rollups, &store.rollups)) {
    std::fprintf(stderr,
                 "sheafd: --rollups \"%s\": expected RESOLUTION:RETENTION,... with each resolution once, "
                 "e.g. 1m:90d,1h:2y\n",
                 rollups.c_str());
    return 2;
  }
  sheaf::LogLevel level;
  if (!sheaf::ParseLogLevel(log_level, &level)) {
    std::fprintf(stderr, "sheafd: --log-level: \"%s\" is not debug, info, warn or error\n", log_level.c_str());
    return 2;
  }
  sheaf::SetLogLevel(level);
  using Rollups = sheaf::promql::EngineOptions::Rollups;
  if (query_rollups == "auto") {
    config.query.promql.rollups = Rollups::kAuto;
  } else if (query_rollups == "always") {
    config.query.promql.rollups = Rollups::kAlways;
  } else if (query_rollups == "never") {
    config.query.promql.rollups = Rollups::kNever;
  } else {
    std::fprintf(stderr, "sheafd: --query-rollups: \"%s\" is not auto, always or never\n", query_rollups.c_str());
    return 2;
  }
  if (http_threads < 1 || config.http_request_timeout.count() < 1) {
    std::fprintf(stderr, "sheafd: --http-threads and --http-request-timeout must be > 0\n");
    return 2;
  }
  config.http_threads = static_cast<size_t>(http_threads);
  config.federate.lookback_ms = config.query.promql.lookback_ms;  // as Prometheus' --query.lookback-delta
  if (config.rules.default_interval_ms < 1) {
    std::fprintf(stderr, "sheafd: --rule-evaluation-interval must be > 0\n");
    return 2;
  }
  if (workers < 1 || queue < 1 || query_workers < 1) {
    std::fprintf(stderr, "sheafd: --ingest-workers, --ingest-queue and --query-workers must be >= 1\n");
    return 2;
  }
  if (config.tail.max_buffer_samples < 1 || config.tail.max_buffer_bytes < 1 || config.tail.max_subscriptions < 1) {
    std::fprintf(stderr,
                 "sheafd: --tail-buffer-samples, --tail-buffer-bytes and --max-tail-subscriptions must be >= 1\n");
    return 2;
  }
  if (config.keepalive_min_ping_interval.count() < 1) {
    std::fprintf(stderr, "sheafd: --keepalive-min-ping-interval must be > 0\n");
    return 2;
  }
  if (config.grpc_memory_bytes < 2 * config.ingest.max_message_bytes) {
    std::fprintf(stderr,
                 "sheafd: --grpc-memory-bytes=%llu leaves no room for two Push messages of "
                 "--max-recv-message-bytes=%llu; raise it\n",
                 static_cast<unsigned long long>(config.grpc_memory_bytes),
                 static_cast<unsigned long long>(config.ingest.max_message_bytes));
    return 2;
  }
  if (!etcd.endpoints.empty() && etcd.advertise_address.empty()) {
    auto colon = config.grpc_listen.rfind(':');
    std::string host = colon == std::string::npos ? "" : config.grpc_listen.substr(0, colon);
    if (host.empty() || host == "0.0.0.0" || host == "::" || host == "[::]") {
      std::fprintf(stderr,
                   "sheafd: --etcd-endpoints needs --advertise-address host:port (the address agents connect "
                   "to): --grpc-listen \"%s\" listens on every address\n",
                   config.grpc_listen.c_str());
      return 2;
    }
  }
  if (!config.tls.client_ca_file.empty() && !config.tls.enabled()) {
    std::fprintf(stderr, "sheafd: --tls-client-ca needs --tls-cert and --tls-key\n");
    return 2;
  }
  for (const auto& [flag, listen] : {std::pair{"--grpc-listen", config.grpc_listen}, {"--http-listen", config.http_listen}}) {
    if (auto s = sheaf::daemon::CheckListenSecurity(flag, listen, config.tls.enabled(), insecure); !s.ok()) {
      std::fprintf(stderr, "sheafd: %s\n", std::string(s.message()).c_str());
      return 2;
    }
    if (insecure && !config.tls.enabled() && !sheaf::daemon::IsLoopbackListen(listen)) {
      sheaf::LogWarn("{} {}: plaintext on an address other hosts can reach (--insecure): anyone on the network "
                     "can read and write it",
                     flag, listen);
    }
  }
  config.query_workers = static_cast<size_t>(query_workers);
  config.ingest.workers = static_cast<size_t>(workers);
  config.ingest.queue_capacity = static_cast<size_t>(queue);

  // Signals are taken synchronously by this thread (sigwait), so they are
  // blocked before any other thread starts and inherit the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto daemon = sheaf::daemon::Daemon::Start(config);
  if (!daemon.ok()) {
    sheaf::LogError("sheafd cannot start: {}", std::string(daemon.status().message()));
    return 1;
  }
  // Registered once serving, so agents that see the key can connect.
  std::unique_ptr<sheaf::daemon::EtcdRegistrar> registrar;
  if (!etcd.endpoints.empty()) {
    if (etcd.advertise_address.empty()) {  // --grpc-listen's host, with the port bound (port 0 picks one)
      etcd.advertise_address = config.grpc_listen.substr(0, config.grpc_listen.rfind(':') + 1) +
                               std::to_string((*daemon)->grpc_port());
    }
    auto r = sheaf::daemon::EtcdRegistrar::Start(etcd);
    if (!r.ok()) {
      std::fprintf(stderr, "sheafd: %s\n", std::string(r.status().message()).c_str());
      return 2;
    }
    registrar = *std::move(r);
  }
  if (!ready_file.empty() && !WriteReadyFile(ready_file, (*daemon)->grpc_port(), (*daemon)->http_port())) {
    sheaf::LogError("cannot write --ready-file {}", ready_file);
    return 1;
  }
  for (;;) {
    int sig = 0;
    sigwait(&signals, &sig);
    if (sig == SIGHUP) {
      // What can change while running is read again (Daemon::Reload);
      // other settings need a restart. A bad file is logged and what was
      // loaded before keeps running.
      sheaf::LogInfo("SIGHUP: reloading (settings that are not reloadable, remote_write included, need a restart)");
      if (auto s = (*daemon)->Reload(); !s.ok()) sheaf::LogError("SIGHUP: {}", std::string(s.message()));
      continue;
    }
    sheaf::LogInfo("received {}, shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    break;
  }
  // Deregistered first: agents move to their next daemon at once, not
  // after the lease's TTL.
  if (registrar) registrar->Stop();
  (*daemon)->Shutdown();
  if (!ready_file.empty()) std::filesystem::remove(ready_file);
  return 0;
}
