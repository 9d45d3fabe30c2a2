#include "daemon/rpc_interceptor.h"

#include <chrono>
#include <string>

#include "common/log.h"
#include "daemon/rpc_metrics.h"

namespace sheaf::daemon {
namespace {

using grpc::experimental::InterceptionHookPoints;

class RpcMetricsInterceptor : public grpc::experimental::Interceptor {
 public:
  RpcMetricsInterceptor(grpc::experimental::ServerRpcInfo* info, RpcMetrics* metrics)
      : method_(info->method() ? info->method() : "unknown"),
        metrics_(metrics),
        start_(std::chrono::steady_clock::now()) {}

  // A call that ends without sending a status (the client vanished before
  // the handler finished) still counts, as CANCELLED.
  ~RpcMetricsInterceptor() override {
    if (!recorded_) Record(grpc::StatusCode::CANCELLED);
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      Record(methods->GetSendStatus().error_code());
    }
    methods->Proceed();
  }

 private:
  void Record(grpc::StatusCode code) {
    recorded_ = true;
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    metrics_->RpcHandled(method_, static_cast<int>(code), seconds);
    LogDebug("rpc {} code={} seconds={:.6f}", method_, static_cast<int>(code), seconds);
  }

  std::string method_;
  RpcMetrics* metrics_;
  std::chrono::steady_clock::time_point start_;
  bool recorded_ = false;
};

}  // namespace

grpc::experimental::Interceptor* RpcMetricsInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new RpcMetricsInterceptor(info, metrics_);
}

}  // namespace sheaf::daemon
