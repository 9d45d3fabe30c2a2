// sheafd as an object: the store, the gRPC server with its services, the
// HTTP server (/metrics, /federate) and the recording rules. main.cc adds
// flags and signals; tests start it in-process.
#ifndef SHEAF_DAEMON_DAEMON_H_
#define SHEAF_DAEMON_DAEMON_H_

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "daemon/federate.h"
#include "daemon/ingest_service.h"
#include "daemon/query_service.h"
#include "daemon/remote_write_sender.h"
#include "daemon/rules.h"
#include "daemon/tail_hub.h"
#include "daemon/tls.h"
#include "storage/series_store.h"

namespace grpc {
class Channel;
}

namespace sheaf::daemon {

struct DaemonConfig {
  DaemonConfig() { store.path = "./data"; }
  std::string grpc_listen = "127.0.0.1:7470";  // port 0 picks a free port
  std::string http_listen = "127.0.0.1:9470";  // port 0 picks a free port
  storage::StoreOptions store;                 // data directory, durability, retention, memory
  std::chrono::milliseconds grace_period = std::chrono::seconds(10);
  IngestOptions ingest;       // batch size limit, validation limits, dictionaries, workers
  size_t query_workers = 4;   // threads for queries, listings and admin calls
  size_t query_queue = 1024;  // steps waiting for a query worker before calls are refused
  QueryLimits query;          // PromQL limits, request and answer sizes
  TailOptions tail;           // live tail: buffers and limits
  // HTTP (/metrics, /federate): worker threads (connections served at
  // once), and how long a connection may take to send a request or stay
  // idle between requests. Each idle connection holds a worker that long:
  // fewer than http_threads idle sockets delay nobody (64 cost ~1 MB more
  // RSS than 16; measured, docs/ARCHITECTURE.md).
  size_t http_threads = 64;
  std::chrono::milliseconds http_request_timeout = std::chrono::seconds(5);
  FederateOptions federate;  // /federate: lookback and limits
  // Recording rules: files, default interval (the engine's options are
  // `query.promql`'s).
  RulesOptions rules;
  // Keepalive enforcement (see the server builder in daemon.cc): pings
  // closer than this while sheafd sends no data, with or without calls
  // open, are strikes; more than
  // keepalive_max_ping_strikes of them in a row close the connection with
  // GOAWAY too_many_pings. Must stay below the agents' keepalive time (30 s,
  // agent/discovery/channel.h).
  std::chrono::milliseconds keepalive_min_ping_interval = std::chrono::seconds(10);
  int keepalive_max_ping_strikes = 2;
  // gRPC's own memory for all connections (HTTP/2 read buffers, call arenas,
  // header blocks): a gRPC ResourceQuota. Past it gRPC closes the greediest
  // connections (GOAWAY ENHANCE_YOUR_CALM "Buffers full") instead of
  // growing: gRPC 1.51's HPACK parser buffers headers without bound
  // (CVE-2023-33953: 32 MiB of tiny header fields cost 1 GiB of RSS; with
  // this bound sheafd's RSS grows by about 3x it, then the connection is
  // closed). Room for 16 Push messages of the 16 MiB limit at once; agents'
  // batches are far smaller.
  uint64_t grpc_memory_bytes = 256ull << 20;
  // Where AdminService.Snapshot writes (sheafctl snapshot); empty:
  // "<data-dir>/snapshots", on the store's filesystem so a snapshot is
  // hard links.
  std::string snapshot_dir;
  // Remote write out (the config file's `remote_write:` list;
  // docs/REMOTE_WRITE.md). Empty: nothing is forwarded.
  std::vector<RemoteWriteConfig> remote_write;
  // Bearer tokens with tenants and roles (--auth-tokens; daemon/auth.h,
  // docs/SECURITY.md), reloaded on SIGHUP. Empty: one default tenant,
  // every caller has every role. With metrics_auth, /metrics needs a token
  // too (any role).
  std::string auth_tokens;
  bool metrics_auth = false;
  // TLS on both listeners, mutual TLS with a client CA; reloaded on
  // SIGHUP (daemon/tls.h). Empty: plaintext.
  TlsOptions tls;
  // Per-tenant and per-agent limits (--limits; daemon/limits.h,
  // docs/SECURITY.md "Limits"), reloaded on SIGHUP. Empty: the flags'
  // limits for everyone, no rates.
  std::string limits_file;
};

class Daemon {
 public:
  // Opens the store and starts serving. A port that is taken is
  // FAILED_PRECONDITION naming the address.
  static absl::StatusOr<std::unique_ptr<Daemon>> Start(const DaemonConfig& config);
  ~Daemon();  // Shutdown()s

  int grpc_port() const;
  int http_port() const;
  // A channel to this server that does not touch the network (tests).
  std::shared_ptr<grpc::Channel> InProcessChannel();
  // The live tail's figures (tests).
  TailStats tail_stats() const;
  // The remote-write senders' figures, in config order (tests).
  std::vector<RemoteWriteSender::Stats> remote_write_stats() const;
  // The per-tenant limits in force (--limits; tests).
  Limiter* limiter() const;

  // Reads the rule files again (SIGHUP). On error the rules loaded before
  // keep running, and the error (FILE:LINE: reason) is returned.
  absl::Status ReloadRules();

  // SIGHUP: reads again everything that can change while sheafd runs (the
  // rule files; each reloadable part adds itself here). A part whose new
  // files are bad keeps what it had; the errors are joined and returned.
  absl::Status Reload();

  // Graceful: health turns NOT_SERVING, open Tail streams end with
  // UNAVAILABLE, no new calls are accepted, in-flight calls get the grace
  // period to finish (then are cancelled), queued batches are written, the
  // store is flushed. Idempotent.
  void Shutdown();

 private:
  struct State;
  explicit Daemon(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace sheaf::daemon

#endif  // SHEAF_DAEMON_DAEMON_H_
