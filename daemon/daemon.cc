#include "daemon/daemon.h"

#include <google/protobuf/descriptor.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <prometheus/summary.h>
#include <prometheus/text_serializer.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <iterator>
#include <mutex>
#include <set>
#include <string>

#include "common/duration.h"
#include "common/log.h"
#include "common/work_queue.h"
#include "daemon/admin_service.h"
#include "daemon/agent_registry.h"
#include "daemon/auth.h"
#include "daemon/console.h"
#include "daemon/http_api.h"
#include "daemon/http_auth.h"
#include "daemon/http_metrics.h"
#include "daemon/http_server.h"
#include "daemon/ingest_metrics.h"
#include "daemon/limits.h"
#include "daemon/query_service.h"
#include "daemon/remote_read.h"
#include "daemon/remote_write.h"
#include "daemon/rpc_interceptor.h"
#include "daemon/rpc_metrics.h"
#include "daemon/store_collector.h"
#include "daemon/tail_hub.h"
#include "sheaf_version.h"
#include "storage/series_store.h"

namespace sheaf::daemon {
namespace {

// GET /metrics: every collectable in the text format. The exposer_*
// series are those prometheus-cpp's Exposer served here before (same
// names, types and units), so dashboards that use them go on working.
class MetricsEndpoint {
 public:
  MetricsEndpoint(prometheus::Registry& registry, std::vector<std::shared_ptr<prometheus::Collectable>> sources)
      : sources_(std::move(sources)),
        bytes_(prometheus::BuildCounter()
                   .Name("exposer_transferred_bytes_total")
                   .Help("Transferred bytes to metrics services")
                   .Register(registry)
                   .Add({})),
        scrapes_(prometheus::BuildCounter()
                     .Name("exposer_scrapes_total")
                     .Help("Number of times metrics were scraped")
                     .Register(registry)
                     .Add({})),
        latencies_(prometheus::BuildSummary()
                       .Name("exposer_request_latencies")
                       .Help("Latencies of serving scrape requests, in microseconds")
                       .Register(registry)
                       .Add({}, prometheus::Summary::Quantiles{{0.5, 0.05}, {0.9, 0.01}, {0.99, 0.001}})) {}

  HttpResponse Serve() {
    const auto started = std::chrono::steady_clock::now();
    std::vector<prometheus::MetricFamily> families;
    for (const auto& source : sources_) {
      auto more = source->Collect();
      families.insert(families.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
    }
    HttpResponse response;
    response.content_type = "text/plain; version=0.0.4; charset=utf-8";
    response.body = prometheus::TextSerializer().Serialize(families);
    bytes_.Increment(static_cast<double>(response.body.size()));
    scrapes_.Increment();
    latencies_.Observe(static_cast<double>(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started).count()));
    return response;
  }

 private:
  std::vector<std::shared_ptr<prometheus::Collectable>> sources_;
  prometheus::Counter& bytes_;
  prometheus::Counter& scrapes_;
  prometheus::Summary& latencies_;
};

// How far back the store keeps anything: raw samples or any roll-up. A
// backfill older than this would be dropped, so it is rejected at ingest.
int64_t LongestRetentionMs(const storage::StoreOptions& store) {
  int64_t longest = store.raw_retention_ms;
  for (const storage::RollupSpec& r : store.rollups) longest = std::max(longest, r.retention_ms);
  return longest;
}

// "/package.Service/Method" of every method served: only these get their
// own label values in the RPC metrics.
std::set<std::string> ServedMethods() {
  std::set<std::string> out;
  const auto* pool = google::protobuf::DescriptorPool::generated_pool();
  for (const char* name : {"sheaf.v1.IngestService", "sheaf.v1.QueryService", "sheaf.v1.AdminService"}) {
    const google::protobuf::ServiceDescriptor* service = pool->FindServiceByName(name);
    if (service == nullptr) continue;
    for (int i = 0; i < service->method_count(); ++i) {
      out.insert("/" + service->full_name() + "/" + service->method(i)->name());
    }
  }
  out.insert("/grpc.health.v1.Health/Check");
  out.insert("/grpc.health.v1.Health/Watch");
  out.insert("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo");
  return out;
}

}  // namespace

struct Daemon::State {
  // Also when Start fails after the HTTP server is up (a taken gRPC port).
  ~State() {
    if (rules) rules->Stop();
    if (http) http->Stop();
  }

  DaemonConfig config;
  std::unique_ptr<storage::SeriesStore> store;
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  std::shared_ptr<StoreCollector> store_collector;
  std::unique_ptr<IngestMetrics> ingest_metrics;
  std::unique_ptr<RpcMetrics> rpc_metrics;
  std::unique_ptr<WorkQueue> query_executor;
  std::unique_ptr<TokenAuthenticator> auth;  // outlives the services that ask it
  std::unique_ptr<Limiter> limiter;          // outlives the services that ask it
  std::unique_ptr<TailHub> tail_hub;  // outlives the services that use it
  std::unique_ptr<RemoteWriteFanout> remote_write;  // outlives the ingest service that feeds it
  std::unique_ptr<AgentRegistry> agents;  // outlives the ingest service that feeds it
  std::unique_ptr<IngestService> ingest;
  std::unique_ptr<QueryService> query;
  std::unique_ptr<AdminService> admin;
  std::unique_ptr<TlsCertificates> tls;  // null: plaintext; outlives both servers
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<RuleManager> rules;  // before the HTTP server: /metrics shows its series
  std::unique_ptr<MetricsEndpoint> metrics_endpoint;
  std::unique_ptr<HttpServerMetrics> http_metrics;  // outlives the server that feeds it
  std::unique_ptr<HttpServer> http;
  int grpc_port = 0;
  int http_port = 0;
  std::once_flag shutdown_once;
};

absl::StatusOr<std::unique_ptr<Daemon>> Daemon::Start(const DaemonConfig& config) {
  auto st = std::make_unique<State>();
  st->config = config;

  auto store = storage::SeriesStore::Open(config.store);
  if (!store.ok()) return store.status();
  st->store = *std::move(store);

  // Metrics are owned by the component that produces them, each built
  // from the one registry.
  st->store_collector = std::make_shared<StoreCollector>(st->store.get());
  st->ingest_metrics = std::make_unique<IngestMetrics>(*st->registry);
  st->rpc_metrics = std::make_unique<RpcMetrics>(*st->registry, ServedMethods());
  prometheus::BuildGauge()
      .Name("sheaf_build_info")
      .Help("Always 1; the version is a label.")
      .Register(*st->registry)
      .Add({{"version", SHEAF_VERSION}})
      .Set(1);
  st->query_executor = std::make_unique<WorkQueue>(config.query_workers, config.query_queue);
  // Tokens: tenant names get their ids from the store's registry.
  auto auth = TokenAuthenticator::Create(
      config.auth_tokens, [store = st->store.get()](std::string_view name) { return store->TenantIdFor(name); },
      st->registry.get());
  if (!auth.ok()) return auth.status();
  st->auth = *std::move(auth);
  st->tail_hub =
      std::make_unique<TailHub>([store = st->store.get()](storage::SeriesId id) { return store->GetSeries(id); },
                                config.tail, st->registry.get());
  // Remote write out: each remote's queue is opened (a queue_dir in use
  // or unwritable stops the start) and its threads start.
  std::vector<std::unique_ptr<RemoteWriteSender>> senders;
  std::vector<storage::TenantId> sender_tenants;
  for (const RemoteWriteConfig& rw : config.remote_write) {
    auto tenant = st->store->TenantIdFor(rw.tenant);
    if (!tenant.ok()) return tenant.status();
    auto sender = RemoteWriteSender::Start(rw, st->registry.get());
    if (!sender.ok()) return sender.status();
    senders.push_back(*std::move(sender));
    sender_tenants.push_back(*tenant);
  }
  st->remote_write = std::make_unique<RemoteWriteFanout>(
      [store = st->store.get()](storage::SeriesId id) { return store->GetSeries(id); }, std::move(senders),
      std::move(sender_tenants));
  IngestOptions ingest_options = config.ingest;
  ingest_options.tail_hub = st->tail_hub.get();
  ingest_options.remote_write = st->remote_write.get();
  st->agents = std::make_unique<AgentRegistry>();
  ingest_options.agents = st->agents.get();
  ingest_options.auth = st->auth.get();
  // Limits: the flags' values are every tenant's defaults, the file
  // overrides them. A bad file stops the start.
  st->limiter = std::make_unique<Limiter>(
      LimitsFromFlags(config.ingest.limits, config.ingest.max_message_bytes, config.query.max_concurrent_queries),
      std::function<int64_t()>(), st->registry.get());
  if (auto s = st->limiter->Load(config.limits_file); !s.ok()) return s;
  ingest_options.limiter = st->limiter.get();
  ingest_options.limits.backfill_accept_past = std::chrono::milliseconds(LongestRetentionMs(config.store));
  st->ingest = std::make_unique<IngestService>(st->store.get(), st->ingest_metrics.get(), std::move(ingest_options));
  st->query = std::make_unique<QueryService>(st->store.get(), st->query_executor.get(), config.query);
  st->query->set_tail_hub(st->tail_hub.get());
  st->query->set_authenticator(st->auth.get());
  st->query->set_limiter(st->limiter.get());
  st->admin = std::make_unique<AdminService>(
      st->store.get(), st->query_executor.get(),
      config.snapshot_dir.empty() ? config.store.path + "/snapshots" : config.snapshot_dir);
  st->admin->set_authenticator(st->auth.get());

  // Recording rules write through the ingest service, as a Push batch of
  // inline series would be written. A bad rule file stops the start.
  RecordWriter writer = [ingest = st->ingest.get()](
                            const std::string& agent_id, uint64_t sequence, std::vector<RecordedSample> samples,
                            storage::TenantId tenant, const std::string& tenant_name) -> absl::StatusOr<RecordOutcome> {
    std::vector<std::pair<model::Labels, std::vector<model::Sample>>> series;
    series.reserve(samples.size());
    for (RecordedSample& s : samples) series.push_back({std::move(s.labels), {s.sample}});
    auto written = ingest->Write(agent_id, sequence, model::MetricType::kGauge, std::move(series), tenant, tenant_name);
    if (!written.ok()) return written.status();
    return RecordOutcome{written->duplicate, written->samples_stored, written->series_rejected,
                         written->first_rejection};
  };
  st->rules = std::make_unique<RuleManager>(st->store.get(), config.query.promql, std::move(writer), config.rules,
                                            st->registry.get());
  if (auto s = st->rules->Load(); !s.ok()) return s;

  // HTTP before gRPC, so a taken HTTP port stops the start before agents
  // can connect. More threads than civetweb's 2 and a short request
  // timeout: idle connections must not block scrapes (http_server.h).
  st->metrics_endpoint = std::make_unique<MetricsEndpoint>(
      *st->registry, std::vector<std::shared_ptr<prometheus::Collectable>>{st->registry, st->store_collector});
  HttpServerOptions http;
  http.listen = config.http_listen;
  http.threads = config.http_threads;
  http.request_timeout = config.http_request_timeout;
  http.idle_timeout = config.http_request_timeout;
  st->http_metrics = std::make_unique<HttpServerMetrics>(st->registry.get());
  if (config.tls.enabled()) {
    TlsOptions tls_options = config.tls;
    // In the data directory: writable wherever sheafd runs, and private.
    if (tls_options.private_dir.empty()) tls_options.private_dir = config.store.path + "/tls";
    auto tls = TlsCertificates::Load(tls_options);
    if (!tls.ok()) return tls.status();
    st->tls = *std::move(tls);
    http.tls = st->tls.get();
  }
  http.on_answer = [metrics = st->http_metrics.get()](const std::string& route, int status, double seconds) {
    metrics->Observe(route, status, seconds);
  };
  st->http = std::make_unique<HttpServer>(std::move(http));
  // Tokens (auth.h): /metrics needs one (of any role) only with
  // --metrics-auth; the other routes check their role themselves.
  st->http->Handle("/metrics", {"GET"},
                   Authorized(config.metrics_auth ? st->auth.get() : nullptr, kAnyRole,
                              [endpoint = st->metrics_endpoint.get()](const HttpRequest&, const Principal&) {
                                return endpoint->Serve();
                              }));
  st->http->Handle("/federate", {"GET", "POST"}, FederateHandler(st->store.get(), config.federate, st->auth.get()));
  st->http->Handle("/api/v1/write", {"POST"}, RemoteWriteHandler(st->ingest.get(), {}, st->registry.get()));
  // Remote read, on the query API's limits, executor and slots.
  st->http->Handle("/api/v1/read", {"POST"},
                   RemoteReadHandler(st->query.get(), st->store.get(), {}, st->registry.get()));
  // The Prometheus HTTP query API, on the gRPC Query's engine, limits and executor.
  HttpApiOptions api;
  api.storage_retention = FormatDuration(std::chrono::milliseconds(config.store.raw_retention_ms));
  RegisterHttpApi(st->http.get(), st->query.get(), st->store.get(), std::move(api));
  // The web console (/graph, /series, /agents, /status, /tail), on that API.
  ConsoleSources console;
  console.store = st->store.get();
  console.agents = st->agents.get();
  console.rules = st->rules.get();
  console.tail = st->tail_hub.get();
  console.auth = st->auth.get();
  console.settings = {
      {"grpc-listen", config.grpc_listen},
      {"http-listen", config.http_listen},
      {"data-dir", config.store.path},
      {"wal-sync", config.store.sync ? "true" : "false"},
      {"max-series", std::to_string(config.store.max_series)},
      {"raw-retention", FormatDuration(std::chrono::milliseconds(config.store.raw_retention_ms))},
      {"http-threads", std::to_string(config.http_threads)},
      {"query-workers", std::to_string(config.query_workers)},
      {"rule-files", fmt::format("{}", fmt::join(config.rules.files, ","))},
  };
  RegisterConsole(st->http.get(), std::move(console));
  if (auto s = st->http->Start(); !s.ok()) return s;
  st->http_port = st->http->port();

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(config.grpc_listen,
                           st->tls ? st->tls->GrpcCredentials() : grpc::InsecureServerCredentials(), &st->grpc_port);
  // Without this a second sheafd would silently share the port.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // gRPC 1.51 inflates a whole message before checking its size (a 4 MB
  // gzip bomb cost 4.9 GB): sheafd inflates requests itself, bounded
  // (grpc_codec.h). The size limit then applies to the compressed bytes.
  builder.AddChannelArgument(GRPC_ARG_ENABLE_PER_MESSAGE_DECOMPRESSION, 0);
  builder.SetMaxReceiveMessageSize(static_cast<int>(config.ingest.max_message_bytes));
  // Keepalive enforcement, paired with the agents' channels
  // (agent/discovery/channel.h): an agent pings every 30 s, also while no
  // call is open, to notice a dead daemon. Accept pings without calls
  // (PERMIT_WITHOUT_CALLS) as often as every keepalive_min_ping_interval
  // (10 s: below the agents' 30 s, with room for timer slack); a client
  // pinging faster gets max_ping_strikes strikes, then GOAWAY
  // too_many_pings. Lowering the agents' keepalive time below this
  // minimum would make every idle agent reconnect again and again
  // (tests/agent/discovery/keepalive_test.cc runs the pair).
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             static_cast<int>(config.keepalive_min_ping_interval.count()));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, config.keepalive_max_ping_strikes);
  // gRPC 1.51's known CVEs (docs/SECURITY.md; tests/e2e/h2_probe_test.py
  // sends their header patterns). Request headers over 8 KiB are refused
  // (RESOURCE_EXHAUSTED), though only once the client has acknowledged
  // sheafd's SETTINGS; before that gRPC's default of 16 MiB applies, and a
  // client that never acknowledges can stream header fields that gRPC keeps
  // (CVE-2023-33953): the resource quota bounds what that costs. Streams per
  // connection are bounded too (an agent uses one; sheaf-loadgen up to
  // --streams): a client past it waits for a free stream.
  builder.AddChannelArgument(GRPC_ARG_MAX_METADATA_SIZE, 8 << 10);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, 256);
  grpc::ResourceQuota quota("sheafd-grpc");
  quota.Resize(static_cast<size_t>(config.grpc_memory_bytes));
  builder.SetResourceQuota(quota);
  builder.RegisterService(st->ingest.get());
  builder.RegisterService(st->query.get());
  builder.RegisterService(st->admin.get());
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<RpcMetricsInterceptorFactory>(st->rpc_metrics.get()));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  st->server = builder.BuildAndStart();
  if (!st->server || st->grpc_port == 0) {
    return absl::FailedPreconditionError("cannot serve gRPC on " + config.grpc_listen +
                                         " (is the port taken or the address wrong? set --grpc-listen)");
  }
  st->rules->Start();
  LogInfo("sheafd serving gRPC on port {} and HTTP (/metrics, /federate, /api/v1/: query API, write, read) on port {}; "
          "data in {}",
          st->grpc_port, st->http_port, config.store.path);
  return std::unique_ptr<Daemon>(new Daemon(std::move(st)));
}

Daemon::Daemon(std::unique_ptr<State> state) : state_(std::move(state)) {}

Daemon::~Daemon() { Shutdown(); }

int Daemon::grpc_port() const { return state_->grpc_port; }
int Daemon::http_port() const { return state_->http_port; }

std::shared_ptr<grpc::Channel> Daemon::InProcessChannel() {
  return state_->server->InProcessChannel(grpc::ChannelArguments());
}

TailStats Daemon::tail_stats() const { return state_->tail_hub->Stats(); }

std::vector<RemoteWriteSender::Stats> Daemon::remote_write_stats() const {
  std::vector<RemoteWriteSender::Stats> out;
  for (const auto& s : state_->remote_write->senders()) out.push_back(s->stats());
  return out;
}

Limiter* Daemon::limiter() const { return state_->limiter.get(); }

absl::Status Daemon::ReloadRules() { return state_->rules->Reload(); }

absl::Status Daemon::Reload() {
  std::vector<std::string> errors;
  auto note = [&errors](const char* part, const absl::Status& s) {
    if (!s.ok()) errors.push_back(fmt::format("{}: {}", part, std::string(s.message())));
  };
  note("rules", ReloadRules());
  note("auth tokens", state_->auth->Reload());
  note("limits", state_->limiter->Reload());
  if (state_->tls) note("certificates", state_->tls->Reload());
  if (errors.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(fmt::format("{}", fmt::join(errors, "; ")));
}

void Daemon::Shutdown() {
  std::call_once(state_->shutdown_once, [this] {
    State& st = *state_;
    auto started = std::chrono::steady_clock::now();
    LogInfo("shutting down: grace period {} ms for in-flight calls", st.config.grace_period.count());
    st.server->GetHealthCheckService()->Shutdown();  // health: NOT_SERVING
    // Rules write into the store: they stop first (a running evaluation
    // is cancelled), so nothing writes after the flush.
    st.rules->Stop();
    // A manual compaction can take minutes and would hold the server past
    // the grace period: cancelled first (it answers CANCELLED; nothing is
    // lost, RocksDB compacts again by itself).
    st.admin->Stop();
    // Tails never end by themselves: they end now with UNAVAILABLE (one
    // whose client stopped reading is cancelled with the rest at the
    // deadline), so they don't hold the server for the grace period.
    st.tail_hub->Shutdown();
    st.server->Shutdown(std::chrono::system_clock::now() + st.config.grace_period);
    st.server->Wait();
    auto since = [&] {
      return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count();
    };
    LogDebug("gRPC server stopped after {} ms", since());
    st.ingest->Stop();          // writes whatever is still queued
    // Nothing is ingested any more: what remote write buffered goes to its
    // queues on disk, a request in flight is aborted (it stays queued).
    st.remote_write->Stop();
    LogDebug("remote write stopped after {} ms", since());
    st.query_executor->Stop();  // the calls are finished; nothing is left to run
    if (auto s = st.store->Flush(); !s.ok()) LogError("flushing the store: {}", s.ToString());
    LogDebug("store flushed after {} ms", since());
    st.http->Stop();  // /federate reads the store: stopped before it closes
    LogDebug("HTTP stopped after {} ms", since());
    st.store_collector.reset();
    st.store.reset();
    LogInfo("shutdown complete in {} ms",
            std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count());
  });
}

}  // namespace sheaf::daemon
