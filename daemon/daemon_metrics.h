// The daemon's own metrics on /metrics: ingestion, rejections by reason,
// gRPC calls by method and code, storage and process figures. prometheus-cpp
// stays behind this header so most of the daemon does not compile it.
#ifndef SHEAF_DAEMON_DAEMON_METRICS_H_
#define SHEAF_DAEMON_DAEMON_METRICS_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string_view>

#include "model/validation.h"

namespace prometheus {
class Registry;
class Collectable;
}  // namespace prometheus

namespace sheaf::storage {
class SeriesStore;
}

namespace sheaf::daemon {

// Thread-safe. The store must outlive this object.
class DaemonMetrics {
 public:
  explicit DaemonMetrics(storage::SeriesStore* store);
  ~DaemonMetrics();

  // Everything to expose: the registry and the collectables computed at
  // scrape time (storage figures, process figures).
  std::shared_ptr<prometheus::Registry> registry() const;
  std::shared_ptr<prometheus::Collectable> storage_collectable() const;

  void BatchApplied(uint64_t samples_stored, uint64_t series_received);
  void BatchDuplicate();
  void Rejected(model::RejectReason reason, uint64_t series, uint64_t samples);
  void StreamFailed(int grpc_code);
  // `full_method` is gRPC's "/package.Service/Method".
  void RpcHandled(std::string_view full_method, int grpc_code, double seconds);
  void SetIngestQueueDepth(int64_t depth);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sheaf::daemon

#endif  // SHEAF_DAEMON_DAEMON_METRICS_H_
