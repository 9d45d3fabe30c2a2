#include "daemon/rpc_metrics.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "daemon/ingest_metrics.h"

namespace sheaf::daemon {

RpcMetrics::RpcMetrics(prometheus::Registry& r, std::set<std::string> known_methods)
    : known_(known_methods.begin(), known_methods.end()),
      handled_(&prometheus::BuildCounter()
                    .Name("sheaf_grpc_server_handled_total")
                    .Help("gRPC calls completed on the server, by service, method and status code "
                          "(\"unknown\" for methods sheafd does not serve).")
                    .Register(r)),
      latency_(&prometheus::BuildHistogram()
                    .Name("sheaf_grpc_server_handling_seconds")
                    .Help("Time from the start of a gRPC call to its status, by service and method.")
                    .Register(r)) {}

void RpcMetrics::RpcHandled(std::string_view full_method, int grpc_code, double seconds) {
  const std::string method = known_.contains(full_method) ? std::string(full_method) : "/unknown/unknown";
  prometheus::Counter* counter;
  prometheus::Histogram* histogram;
  {
    absl::MutexLock lock(&mu_);
    // "/sheaf.v1.QueryService/Query" -> service and method labels.
    std::string_view m = method;
    m.remove_prefix(1);
    const auto slash = m.find('/');
    const std::string service(m.substr(0, slash));
    const std::string name(m.substr(slash + 1));
    auto key = std::make_pair(method, grpc_code);
    auto it = handled_cache_.find(key);
    if (it == handled_cache_.end()) {
      counter =
          &handled_->Add({{"grpc_service", service}, {"grpc_method", name}, {"grpc_code", GrpcCodeName(grpc_code)}});
      handled_cache_.emplace(key, counter);
    } else {
      counter = it->second;
    }
    auto hit = latency_cache_.find(method);
    if (hit == latency_cache_.end()) {
      histogram =
          &latency_->Add({{"grpc_service", service}, {"grpc_method", name}},
                         prometheus::Histogram::BucketBoundaries{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                                 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300});
      latency_cache_.emplace(method, histogram);
    } else {
      histogram = hit->second;
    }
  }
  counter->Increment();
  histogram->Observe(seconds);
}

}  // namespace sheaf::daemon
