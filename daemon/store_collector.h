// The store's and the process's figures for /metrics, read from the store
// at scrape time (a prometheus::Collectable) rather than copied into gauges
// on every change. Storage reports plain figures (StoreStats); this turns
// them into metrics, so prometheus-cpp stays out of storage/.
#ifndef SHEAF_DAEMON_STORE_COLLECTOR_H_
#define SHEAF_DAEMON_STORE_COLLECTOR_H_

#include <prometheus/collectable.h>

#include <vector>

namespace sheaf::storage {
class SeriesStore;
}

namespace sheaf::daemon {

class StoreCollector : public prometheus::Collectable {
 public:
  // The store must outlive this object (unregister it first).
  explicit StoreCollector(storage::SeriesStore* store) : store_(store) {}
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  storage::SeriesStore* store_;
};

}  // namespace sheaf::daemon

#endif  // SHEAF_DAEMON_STORE_COLLECTOR_H_
