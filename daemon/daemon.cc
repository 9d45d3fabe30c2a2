#include "daemon/daemon.h"

#include <arpa/inet.h>
#include <google/protobuf/descriptor.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <netinet/in.h>
#include <prometheus/exposer.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "common/log.h"
#include "common/work_queue.h"
#include "daemon/admin_service.h"
#include "daemon/ingest_metrics.h"
#include "daemon/query_service.h"
#include "daemon/rpc_interceptor.h"
#include "daemon/rpc_metrics.h"
#include "daemon/store_collector.h"
#include "daemon/tail_hub.h"
#include "sheaf_version.h"
#include "storage/series_store.h"

namespace sheaf::daemon {
namespace {

// civetweb (under prometheus-cpp's Exposer) notices a stop request only when
// its accept poll() wakes, which it does every 2 s. Connecting to the port
// wakes it at once, so shutdown doesn't stall 2 s (measured).
void StopExposer(std::unique_ptr<prometheus::Exposer> exposer, int port) {
  std::atomic<bool> stopped{false};
  std::thread waker([&] {
    while (!stopped) {
      int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_port = htons(static_cast<uint16_t>(port));
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
      close(fd);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  exposer.reset();
  stopped = true;
  waker.join();
}

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
    if (exposer) StopExposer(std::move(exposer), http_port);
  }

  DaemonConfig config;
  std::unique_ptr<storage::SeriesStore> store;
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  std::shared_ptr<StoreCollector> store_collector;
  std::unique_ptr<IngestMetrics> ingest_metrics;
  std::unique_ptr<RpcMetrics> rpc_metrics;
  std::unique_ptr<WorkQueue> query_executor;
  std::unique_ptr<TailHub> tail_hub;  // outlives the services that use it
  std::unique_ptr<IngestService> ingest;
  std::unique_ptr<QueryService> query;
  std::unique_ptr<AdminService> admin;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<prometheus::Exposer> exposer;
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
  st->tail_hub =
      std::make_unique<TailHub>([store = st->store.get()](storage::SeriesId id) { return store->GetSeries(id); },
                                config.tail, st->registry.get());
  IngestOptions ingest_options = config.ingest;
  ingest_options.tail_hub = st->tail_hub.get();
  ingest_options.limits.backfill_accept_past = std::chrono::milliseconds(LongestRetentionMs(config.store));
  st->ingest = std::make_unique<IngestService>(st->store.get(), st->ingest_metrics.get(), std::move(ingest_options));
  st->query = std::make_unique<QueryService>(st->store.get(), st->query_executor.get(), config.query);
  st->query->set_tail_hub(st->tail_hub.get());
  st->admin = std::make_unique<AdminService>(st->store.get(), st->query_executor.get());

  // HTTP first: prometheus-cpp throws when the port is taken. civetweb's
  // defaults (2 threads, 30 s to send a request) let two idle connections
  // block every scrape for 30 s: more threads, a short request timeout.
  try {
    st->exposer = std::make_unique<prometheus::Exposer>(std::vector<std::string>{
        "listening_ports",
        config.http_listen,
        "num_threads",
        std::to_string(config.http_threads),
        "request_timeout_ms",
        std::to_string(config.http_request_timeout.count()),
        "enable_keep_alive",
        "yes",
        "keep_alive_timeout_ms",
        std::to_string(config.http_request_timeout.count()),
    });
  } catch (const std::exception& e) {
    return absl::FailedPreconditionError("cannot serve HTTP on " + config.http_listen + ": " + e.what() +
                                         " (is the port taken? set --http-listen)");
  }
  st->exposer->RegisterCollectable(st->registry);
  st->exposer->RegisterCollectable(st->store_collector);
  auto ports = st->exposer->GetListeningPorts();
  st->http_port = ports.empty() ? 0 : ports[0];

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(config.grpc_listen, grpc::InsecureServerCredentials(), &st->grpc_port);
  // Without this a second sheafd would silently share the port.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // gRPC 1.51 inflates a whole message before checking its size (a 4 MB
  // gzip bomb cost 4.9 GB): sheafd inflates requests itself, bounded
  // (grpc_codec.h). The size limit then applies to the compressed bytes.
  builder.AddChannelArgument(GRPC_ARG_ENABLE_PER_MESSAGE_DECOMPRESSION, 0);
  builder.SetMaxReceiveMessageSize(static_cast<int>(config.ingest.max_message_bytes));
  // Agents keep one channel open for hours: accept their keepalive pings
  // (at most one per 10 s) without calling them abusive.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10'000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
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
  LogInfo("sheafd serving gRPC on port {} and HTTP /metrics on port {}; data in {}", st->grpc_port, st->http_port,
          config.store.path);
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

void Daemon::Shutdown() {
  std::call_once(state_->shutdown_once, [this] {
    State& st = *state_;
    auto started = std::chrono::steady_clock::now();
    LogInfo("shutting down: grace period {} ms for in-flight calls", st.config.grace_period.count());
    st.server->GetHealthCheckService()->Shutdown();  // health: NOT_SERVING
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
    st.query_executor->Stop();  // the calls are finished; nothing is left to run
    if (auto s = st.store->Flush(); !s.ok()) LogError("flushing the store: {}", s.ToString());
    LogDebug("store flushed after {} ms", since());
    StopExposer(std::move(st.exposer), st.http_port);
    LogDebug("HTTP stopped after {} ms", since());
    st.store_collector.reset();
    st.store.reset();
    LogInfo("shutdown complete in {} ms",
            std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count());
  });
}

}  // namespace sheaf::daemon
