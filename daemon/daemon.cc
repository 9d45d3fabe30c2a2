#include "daemon/daemon.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <prometheus/exposer.h>
#include <prometheus/registry.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "daemon/daemon_metrics.h"
#include "daemon/query_service.h"
#include "daemon/rpc_interceptor.h"
#include "common/log.h"
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

}  // namespace

struct Daemon::State {
  // Also when Start fails after the HTTP server is up (a taken gRPC port).
  ~State() {
    if (exposer) StopExposer(std::move(exposer), http_port);
  }

  DaemonConfig config;
  std::unique_ptr<storage::SeriesStore> store;
  std::unique_ptr<DaemonMetrics> metrics;
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

  st->metrics = std::make_unique<DaemonMetrics>(st->store.get());
  st->ingest = std::make_unique<IngestService>(st->store.get(), st->metrics.get(), config.ingest);
  st->query = std::make_unique<QueryService>(st->store.get());
  st->admin = std::make_unique<AdminService>(st->store.get());

  // HTTP first: prometheus-cpp throws when the port is taken.
  try {
    st->exposer = std::make_unique<prometheus::Exposer>(config.http_listen);
  } catch (const std::exception& e) {
    return absl::FailedPreconditionError("cannot serve HTTP on " + config.http_listen + ": " + e.what() +
                                         " (is the port taken? set --http-listen)");
  }
  st->exposer->RegisterCollectable(st->metrics->registry());
  st->exposer->RegisterCollectable(st->metrics->storage_collectable());
  auto ports = st->exposer->GetListeningPorts();
  st->http_port = ports.empty() ? 0 : ports[0];

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(config.grpc_listen, grpc::InsecureServerCredentials(), &st->grpc_port);
  // Without this a second sheafd would silently share the port.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(static_cast<int>(config.max_recv_message_bytes));
  // Agents keep one channel open for hours: accept their keepalive pings
  // (at most one per 10 s) without calling them abusive.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10'000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  builder.RegisterService(st->ingest.get());
  builder.RegisterService(st->query.get());
  builder.RegisterService(st->admin.get());
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<RpcMetricsInterceptorFactory>(st->metrics.get()));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  st->server = builder.BuildAndStart();
  if (!st->server || st->grpc_port == 0) {
    return absl::FailedPreconditionError("cannot serve gRPC on " + config.grpc_listen +
                                         " (is the port taken or the address wrong? set --grpc-listen)");
  }
  LogInfo("sheafd serving gRPC on port {} and HTTP /metrics on port {}; data in {}", st->grpc_port,
          st->http_port, config.store.path);
  return std::unique_ptr<Daemon>(new Daemon(std::move(st)));
}

Daemon::Daemon(std::unique_ptr<State> state) : state_(std::move(state)) {}

Daemon::~Daemon() { Shutdown(); }

int Daemon::grpc_port() const { return state_->grpc_port; }
int Daemon::http_port() const { return state_->http_port; }

std::shared_ptr<grpc::Channel> Daemon::InProcessChannel() {
  return state_->server->InProcessChannel(grpc::ChannelArguments());
}

void Daemon::Shutdown() {
  std::call_once(state_->shutdown_once, [this] {
    State& st = *state_;
    auto started = std::chrono::steady_clock::now();
    LogInfo("shutting down: grace period {} ms for in-flight calls", st.config.grace_period.count());
    st.server->GetHealthCheckService()->Shutdown();  // health: NOT_SERVING
    st.server->Shutdown(std::chrono::system_clock::now() + st.config.grace_period);
    st.server->Wait();
    auto since = [&] {
      return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count();
    };
    LogDebug("gRPC server stopped after {} ms", since());
    st.ingest->Stop();  // writes whatever is still queued
    st.admin->Stop();   // a running compaction finishes first
    if (auto s = st.store->Flush(); !s.ok()) LogError("flushing the store: {}", s.ToString());
    LogDebug("store flushed after {} ms", since());
    StopExposer(std::move(st.exposer), st.http_port);
    LogDebug("HTTP stopped after {} ms", since());
    st.store.reset();
    LogInfo("shutdown complete in {} ms",
            std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count());
  });
}

}  // namespace sheaf::daemon
