// sheaf-agent's own /metrics: a plain snapshot of the agent's figures (the
// agent fills it from its shipper, spool, daemon picker, scraper and
// collectors), its rendering in the Prometheus text format 0.0.4, and a
// small HTTP server that answers GET /metrics with it.
//
// The endpoint is off by default; when on it listens on loopback unless the
// operator names another address, since what it shows (the agent's
// identity, its daemon, its targets) is for the host's own Prometheus, not
// for the network.
//
// Server model: civetweb (Debian's libcivetweb, as in daemon/http_server.h),
// a thread per connection, `threads` of them, keep-alive off. A connection
// that sends nothing holds its worker for at most `request_timeout`; so
// fewer idle sockets than threads never delay a scrape, and more delay it by
// at most that timeout. Nothing but GET/HEAD /metrics is served.
//
// No gRPC.
#ifndef SHEAF_AGENT_AGENT_METRICS_H_
#define SHEAF_AGENT_AGENT_METRICS_H_

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

struct mg_connection;
struct mg_context;

namespace sheaf::agent {

// Latencies in fixed buckets (upper bounds in seconds, +Inf implied), the
// shape of a Prometheus histogram. Not thread-safe: its owner locks.
struct LatencyHistogram {
  static constexpr std::array<double, 12> kBounds = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};

  // counts[i]: observations in (kBounds[i-1], kBounds[i]]; counts.back():
  // those above the last bound. Not cumulative; the rendering adds up.
  std::array<uint64_t, kBounds.size() + 1> counts{};
  double sum = 0;  // seconds

  void Observe(double seconds);
  uint64_t count() const;
};

// A local scrape target as the scraper last saw it.
struct ScrapeTargetFigures {
  std::string job, instance, url;
  bool up = false;
  double last_duration_seconds = 0;
  uint64_t last_samples = 0;  // samples kept by the last scrape
  uint64_t scrapes = 0, failures = 0;
};

// Everything /metrics shows, copied at one moment. Counters count since the
// process started (the spool's gauges describe what is on disk).
struct AgentMetricsSnapshot {
  std::string agent_id, version;
  std::string current_daemon;  // "host:port" sent to; "" while none is healthy

  uint64_t collections = 0;             // collection rounds
  uint64_t samples_collected = 0;       // by collectors and scrapes, after relabeling
  uint64_t series_dropped_invalid = 0;  // by the batch builder (invalid names, labels)
  // Reason -> samples (or batches) dropped and never to be sent: "spool_full",
  // "spool_too_old", "spool_corrupt", "invalid_argument",
  // "validation:<reason>", ... A reason appears once the agent lists it
  // (list known reasons at 0 so that rate() sees the first drop).
  std::map<std::string, uint64_t> samples_dropped_by_reason;
  std::map<std::string, uint64_t> batches_dropped_by_reason;

  uint64_t batches_spooled = 0, batches_sent = 0, batches_acked = 0;
  uint64_t samples_spooled = 0, samples_sent = 0, samples_acked = 0;

  uint64_t spool_bytes = 0;             // segment files on disk
  uint64_t spool_batches_unacked = 0;   // batches waiting for an ack
  double spool_oldest_age_seconds = 0;  // of the oldest unacknowledged batch; 0 if none

  uint64_t streams_ok = 0, streams_failed = 0;
  uint64_t streams_limited = 0;  // of the failed: refused by a daemon's limit, with a pushback
  uint64_t reconnects = 0, daemon_switches = 0, sequence_conflicts = 0;
  uint64_t acked_sequence = 0;  // highest sequence a daemon acknowledged

  LatencyHistogram ack_latency;  // batch written to a stream -> its ack
  std::vector<ScrapeTargetFigures> scrape_targets;
};

// The snapshot in the Prometheus text format 0.0.4: `sheaf_agent_*` families
// with HELP and TYPE, units in the names; passes `promtool check metrics`.
std::string RenderAgentMetrics(const AgentMetricsSnapshot& snapshot);

// The Content-Type of RenderAgentMetrics' text.
inline constexpr char kAgentMetricsContentType[] = "text/plain; version=0.0.4; charset=utf-8";

struct AgentMetricsServerOptions {
  // HOST:PORT, [IPV6]:PORT, or PORT / :PORT for loopback; port 0 picks one.
  // "0.0.0.0" and "[::]" listen on every address (a warning is logged, as
  // for any address that is not loopback).
  std::string listen = "127.0.0.1:9475";
  size_t threads = 2;                               // connections served at once
  std::chrono::milliseconds request_timeout{3000};  // to send one request
  size_t max_request_bytes = 8 * 1024;              // request line and headers
};

// Thread-safe. Stops in its destructor.
class AgentMetricsServer {
 public:
  using SnapshotFn = std::function<AgentMetricsSnapshot()>;

  // Listens and serves. `snapshot` runs on the server's threads, possibly
  // on several at once, for each GET: it must be thread-safe and quick.
  // INVALID_ARGUMENT naming --metrics-listen for an address that does not
  // parse; FAILED_PRECONDITION when it cannot listen (a taken port).
  static absl::StatusOr<std::unique_ptr<AgentMetricsServer>> Start(AgentMetricsServerOptions options,
                                                                   SnapshotFn snapshot);
  static absl::StatusOr<std::unique_ptr<AgentMetricsServer>> Start(std::string listen, SnapshotFn snapshot);
  ~AgentMetricsServer();

  AgentMetricsServer(const AgentMetricsServer&) = delete;
  AgentMetricsServer& operator=(const AgentMetricsServer&) = delete;

  int port() const { return port_; }
  // The address it listens on, as given to civetweb ("127.0.0.1:9475").
  const std::string& address() const { return address_; }

 private:
  AgentMetricsServer(SnapshotFn snapshot, std::string address);
  static int OnRequest(mg_connection* conn);
  static int OnLogMessage(const mg_connection* conn, const char* message);
  int Serve(mg_connection* conn) const;

  const SnapshotFn snapshot_;
  const std::string address_;
  mg_context* context_ = nullptr;
  int port_ = 0;
};

// What --metrics-listen means: "127.0.0.1:9475", "9475" and ":9475" (loopback),
// "[::1]:9475", "0.0.0.0:9475"; "localhost" is 127.0.0.1. The result is in
// civetweb's form; *loopback says whether only this host can connect.
absl::StatusOr<std::string> ParseMetricsListen(const std::string& listen, bool* loopback);

}  // namespace sheaf::agent

#endif  // SHEAF_AGENT_AGENT_METRICS_H_
