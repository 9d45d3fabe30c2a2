// The sample type the agent's sources produce: the host collectors
// (agent/collectors/), the scrape of local targets (agent/scrape/), and what
// the batch builder turns into series. Kept in a header of its own so those
// parts share it without depending on each other.
#ifndef SHEAF_AGENT_COLLECTORS_METRIC_H_
#define SHEAF_AGENT_COLLECTORS_METRIC_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "model/types.h"

namespace sheaf::agent {

// The model's one metric type; the host collectors make counters and gauges.
using MetricKind = model::MetricType;

// One sample. Labels never include __name__ and are sorted by label name, so
// two samples of the same series compare equal field by field.
struct HostMetric {
  std::string name;  // e.g. "node_load1"
  // e.g. {{"cpu", "0"}, {"mode", "user"}}
  std::vector<std::pair<std::string, std::string>> labels;
  MetricKind kind = MetricKind::kGauge;
  double value = 0.0;
  // 0: stamped with the collection's time. A scraped target may expose its
  // own timestamp (milliseconds), which is kept as Prometheus keeps it.
  int64_t timestamp_ms = 0;
};

}  // namespace sheaf::agent

#endif  // SHEAF_AGENT_COLLECTORS_METRIC_H_
