// The data model's plain value types, shared by storage, the query engine,
// the daemon and the agent. No gRPC, protobuf or RocksDB here: the daemon
// converts at its edge, so the libraries below it can be tested alone.
#ifndef SHEAF_MODEL_TYPES_H_
#define SHEAF_MODEL_TYPES_H_

#include <cstdint>
#include <string>
#include <vector>

namespace sheaf::model {

// The one metric type enum. Mirrors sheaf.v1.MetricType; the numbers are
// the same on purpose and are stored on disk, so never renumber.
enum class MetricType : uint8_t {
  kUnspecified = 0,
  kCounter = 1,
  kGauge = 2,
  kHistogram = 3,
};

struct Label {
  std::string name;
  std::string value;
  friend bool operator==(const Label&, const Label&) = default;
  friend auto operator<=>(const Label&, const Label&) = default;
};

// A label set. "Canonical" means sorted by name with unique names; the
// metric name is the label "__name__".
using Labels = std::vector<Label>;

struct Sample {
  int64_t timestamp_ms;
  double value;
};

inline constexpr char kMetricNameLabel[] = "__name__";

}  // namespace sheaf::model

#endif  // SHEAF_MODEL_TYPES_H_
