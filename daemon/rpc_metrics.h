// gRPC calls by service, method and status code, with latency histograms,
// for /metrics. Only the methods sheafd serves get their own label values:
// calls to any other name count as service and method "unknown", so a
// client inventing method names cannot grow /metrics (2,000 invented
// names once added 4.6 MB to it).
#ifndef SHEAF_DAEMON_RPC_METRICS_H_
#define SHEAF_DAEMON_RPC_METRICS_H_

#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace prometheus {
class Registry;
class Counter;
class Histogram;
template <typename T>
class Family;
}  // namespace prometheus

namespace sheaf::daemon {

// Thread-safe.
class RpcMetrics {
 public:
  // `known_methods`: "/package.Service/Method" of every method served.
  RpcMetrics(prometheus::Registry& registry, std::set<std::string> known_methods);

  void RpcHandled(std::string_view full_method, int grpc_code, double seconds);

 private:
  const std::set<std::string, std::less<>> known_;
  prometheus::Family<prometheus::Counter>* handled_;
  prometheus::Family<prometheus::Histogram>* latency_;
  absl::Mutex mu_;
  std::map<std::pair<std::string, int>, prometheus::Counter*> handled_cache_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, prometheus::Histogram*> latency_cache_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sheaf::daemon

#endif  // SHEAF_DAEMON_RPC_METRICS_H_
