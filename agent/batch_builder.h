// Turns one collection of host metrics into the series of one batch, checked
// with the daemon's own rules (model/validation.h) so the agent never sends
// what the daemon must reject: label values that are not UTF-8 (a mount
// point with a stray byte) are repaired with U+FFFD, and series that still
// fail are dropped here, counted by reason and logged once per reason.
// No gRPC here (protobuf only, for the wire's metric type).
#ifndef SHEAF_AGENT_BATCH_BUILDER_H_
#define SHEAF_AGENT_BATCH_BUILDER_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "agent/host_collector.h"
#include "model/validation.h"
#include "proto/batch_encoder.h"

namespace sheaf::agent {

// One series of a batch, ready for the encoder.
struct SeriesData {
  std::string key;    // SeriesKey(labels)
  LabelPairs labels;  // sorted by name, including __name__
  v1::MetricType type = v1::METRIC_TYPE_GAUGE;
  std::vector<int64_t> timestamps_ms;
  std::vector<double> values;
};

// Thread-compatible: one thread builds (the agent's collection loop).
class BatchBuilder {
 public:
  // `extra` labels (host=..., --label) are added to every series that does
  // not have a label of that name already.
  explicit BatchBuilder(LabelPairs extra, model::ValidationLimits limits = {});

  // One series per metric, all stamped `timestamp_ms`, minus the dropped
  // ones. The samples' values are checked too (a NaN gauge, a negative
  // counter), but not against the daemon's time window: that is the
  // daemon's clock, not ours.
  std::vector<SeriesData> Build(const std::vector<HostMetric>& metrics, int64_t timestamp_ms);

  struct Stats {
    uint64_t series_built = 0;      // series handed out in batches
    uint64_t series_sanitized = 0;  // of those, with label values repaired to UTF-8
    uint64_t labels_sanitized = 0;  // label values repaired
    uint64_t series_dropped = 0;    // sum of dropped_by_reason
    std::map<model::RejectReason, uint64_t> dropped_by_reason;
  };
  const Stats& stats() const { return stats_; }

 private:
  const LabelPairs extra_;
  const model::ValidationLimits limits_;
  Stats stats_;
  bool logged_sanitized_ = false;
  std::set<model::RejectReason> logged_reasons_;
};

}  // namespace sheaf::agent

#endif  // SHEAF_AGENT_BATCH_BUILDER_H_
