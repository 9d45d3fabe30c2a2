// Validation of incoming series: Prometheus naming rules, value rules per
// metric type, and the accepted time window. Pure functions, no gRPC.
#ifndef SHEAF_DAEMON_VALIDATION_H_
#define SHEAF_DAEMON_VALIDATION_H_

#include <chrono>
#include <optional>
#include <span>
#include <string>

#include "sheaf/v1/ingest.pb.h"
#include "storage/types.h"

namespace sheaf::daemon {

struct ValidationLimits {
  size_t max_labels = 64;
  size_t max_label_value_bytes = 2048;
  size_t max_samples_per_series = 100'000;  // per series per batch
  std::chrono::milliseconds accept_past = std::chrono::hours(24 * 7);
  std::chrono::milliseconds accept_future = std::chrono::minutes(10);
};

struct Rejection {
  v1::RejectReason reason;
  std::string detail;  // names the series and what is wrong, for logs and acks
};

// Checks and canonicalizes a label set in place: drops labels with empty
// values (Prometheus treats them as absent), sorts, and checks names,
// values and the metric name (including histogram suffix rules).
std::optional<Rejection> ValidateLabels(storage::Labels& labels, storage::MetricType type,
                                        const ValidationLimits& limits);

// Checks samples against the type's value rules and the window around
// `now_ms`. REQUIRES: labels already valid (used in the message).
std::optional<Rejection> ValidateSamples(const storage::Labels& labels, storage::MetricType type,
                                         std::span<const storage::Sample> samples, int64_t now_ms,
                                         const ValidationLimits& limits);

// "invalid_metric_name" etc.: the label value used on /metrics and in logs.
std::string ReasonName(v1::RejectReason reason);

}  // namespace sheaf::daemon

#endif  // SHEAF_DAEMON_VALIDATION_H_
