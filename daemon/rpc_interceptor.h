// Server interceptor: every gRPC call counted by method and status code,
// timed into a latency histogram, and logged at debug level.
#ifndef SHEAF_DAEMON_RPC_INTERCEPTOR_H_
#define SHEAF_DAEMON_RPC_INTERCEPTOR_H_

#include <grpcpp/support/server_interceptor.h>

namespace sheaf::daemon {

class RpcMetrics;

class RpcMetricsInterceptorFactory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit RpcMetricsInterceptorFactory(RpcMetrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(grpc::experimental::ServerRpcInfo* info) override;

 private:
  RpcMetrics* metrics_;
};

}  // namespace sheaf::daemon

#endif  // SHEAF_DAEMON_RPC_INTERCEPTOR_H_
