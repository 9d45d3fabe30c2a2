// Validation of incoming series: Prometheus naming rules, value rules per
// metric type, and the accepted time window. Pure functions, no gRPC.
#ifndef SHEAF_MODEL_VALIDATION_H_
#define SHEAF_MODEL_VALIDATION_H_

#include <bit>
#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "model/types.h"

namespace sheaf::model {

// Why a series was refused. The numbers are those of sheaf.v1.RejectReason
// (the daemon converts with a cast; a test keeps the two in step).
enum class RejectReason : int {
  kUnspecified = 0,
  kInvalidMetricName = 1,
  kInvalidLabelName = 2,
  kDuplicateLabelName = 3,
  kInvalidLabelValue = 4,  // not UTF-8, or too long
  kTooManyLabels = 5,
  kTimestampOutOfWindow = 6,
  kInvalidValue = 7,  // NaN/Inf, negative counter, ...
  kUnknownRef = 8,
  kMalformedSeries = 9,
  kSeriesLimit = 10,
  kMissingLeLabel = 11,
  kOutOfOrder = 12,
  kLabelsTooLarge = 13,  // the label set as a whole is over its byte limit
  kStoreError = 14,      // the store could not create the series (disk full, I/O error)
  kSeriesDeleted = 15,   // deleted while a stream still referred to it
};
inline constexpr int kMaxRejectReason = 15;

struct ValidationLimits {
  size_t max_labels = 64;
  size_t max_label_name_bytes = 128;
  size_t max_label_value_bytes = 2048;
  // Names and values of the whole set together: what one series costs in
  // the index and in every listing that shows it.
  size_t max_labels_bytes = 16 * 1024;
  size_t max_samples_per_series = 100'000;  // per series per batch
  std::chrono::milliseconds accept_past = std::chrono::hours(24 * 7);
  std::chrono::milliseconds accept_future = std::chrono::minutes(10);
  // Backfill (history imported on purpose, MetricBatch.backfill): how old a
  // sample may be instead of accept_past. sheafd sets it to the longest
  // time its store keeps anything (raw or roll-ups), since older data would
  // be dropped anyway. Never narrower than accept_past.
  std::chrono::milliseconds backfill_accept_past{0};
};

struct Rejection {
  RejectReason reason;
  std::string detail;  // names the series and what is wrong, for logs and acks
};

// Checks and canonicalizes a label set in place: drops labels with empty
// values (Prometheus treats them as absent), sorts, and checks names,
// values and the metric name (including histogram suffix rules).
std::optional<Rejection> ValidateLabels(Labels& labels, MetricType type, const ValidationLimits& limits);

// Prometheus' staleness marker: the NaN with this bit pattern, written
// when a series disappears (remote write carries it). Accepted for every
// metric type; every other NaN or Inf is refused.
inline constexpr uint64_t kStaleMarkerBits = 0x7ff0000000000002ull;
inline bool IsStaleMarker(double value) { return std::bit_cast<uint64_t>(value) == kStaleMarkerBits; }

// Checks samples against the type's value rules and the window around
// `now_ms`: [now - accept_past, now + accept_future], or, for a backfill,
// [now - max(accept_past, backfill_accept_past), now + accept_future].
// REQUIRES: labels already valid (used in the message).
std::optional<Rejection> ValidateSamples(const Labels& labels, MetricType type, std::span<const Sample> samples,
                                         int64_t now_ms, const ValidationLimits& limits, bool backfill = false);

// "invalid_metric_name" etc.: the label value used on /metrics and in logs.
std::string_view ReasonName(RejectReason reason);

}  // namespace sheaf::model

#endif  // SHEAF_MODEL_VALIDATION_H_
