#include "model/validation.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <string_view>

#include "model/labels.h"

namespace sheaf::model {
namespace {

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::optional<Rejection> Reject(RejectReason reason, std::string detail) {
  return Rejection{reason, std::move(detail)};
}

// `le` must be a float in Prometheus' text syntax (including +Inf).
bool IsValidBucketBound(const std::string& le) {
  if (le == "+Inf" || le == "Inf" || le == "inf" || le == "+inf") return true;
  if (le.empty()) return false;
  char* end = nullptr;
  double v = std::strtod(le.c_str(), &end);
  return end == le.c_str() + le.size() && !std::isnan(v);
}

}  // namespace

std::optional<Rejection> ValidateLabels(Labels& labels, MetricType type, const ValidationLimits& limits) {
  std::erase_if(labels, [](const Label& l) { return l.value.empty(); });
  // Sizes first: everything after this may quote the labels in a message,
  // and a message must stay short whatever the sender put in them.
  if (labels.size() > limits.max_labels) {
    return Reject(RejectReason::kTooManyLabels,
                  fmt::format("{} has {} labels; at most {} are accepted", FormatLabelsShort(labels), labels.size(),
                              limits.max_labels));
  }
  size_t total = 0;
  for (const Label& l : labels) {
    total += l.name.size() + l.value.size();
    if (l.name.size() > limits.max_label_name_bytes) {
      return Reject(RejectReason::kInvalidLabelName,
                    fmt::format("label name \"{}\" of {} is {} bytes long; at most {} are accepted", Abbreviate(l.name),
                                FormatLabelsShort(labels), l.name.size(), limits.max_label_name_bytes));
    }
  }
  if (total > limits.max_labels_bytes) {
    return Reject(RejectReason::kLabelsTooLarge,
                  fmt::format("{} has {} bytes of label names and values; at most {} are accepted",
                              FormatLabelsShort(labels), total, limits.max_labels_bytes));
  }
  if (auto s = Canonicalize(labels); !s.ok()) {
    return Reject(RejectReason::kDuplicateLabelName,
                  fmt::format("{}: {}", FormatLabelsShort(labels), Abbreviate(std::string(s.message()))));
  }
  std::string_view name = MetricName(labels);
  if (!IsValidMetricName(name)) {
    return Reject(RejectReason::kInvalidMetricName,
                  name.empty()
                      ? fmt::format("{} has no __name__ label", FormatLabelsShort(labels))
                      : fmt::format("metric name \"{}\" does not match [a-zA-Z_:][a-zA-Z0-9_:]*", Abbreviate(name)));
  }
  for (const Label& l : labels) {
    if (l.name == kMetricNameLabel) continue;
    if (!IsValidLabelName(l.name) || l.name.starts_with("__")) {
      return Reject(RejectReason::kInvalidLabelName,
                    fmt::format("label name \"{}\" of {} does not match [a-zA-Z_][a-zA-Z0-9_]* "
                                "(names starting with __ are reserved)",
                                Abbreviate(l.name), Abbreviate(name)));
    }
    if (!IsValidLabelValue(l.value, limits.max_label_value_bytes)) {
      return Reject(RejectReason::kInvalidLabelValue,
                    fmt::format("value of label \"{}\" of {} is not UTF-8 or longer than {} bytes", l.name,
                                Abbreviate(name), limits.max_label_value_bytes));
    }
  }
  if (type == MetricType::kHistogram) {
    if (EndsWith(name, "_bucket")) {
      auto le = std::find_if(labels.begin(), labels.end(), [](const Label& l) { return l.name == "le"; });
      if (le == labels.end() || !IsValidBucketBound(le->value)) {
        return Reject(RejectReason::kMissingLeLabel,
                      fmt::format("histogram bucket {} needs an \"le\" label holding a number or +Inf",
                                  FormatLabelsShort(labels)));
      }
    } else if (!EndsWith(name, "_sum") && !EndsWith(name, "_count")) {
      return Reject(
          RejectReason::kInvalidMetricName,
          fmt::format("histogram series \"{}\" must be named <name>_bucket, <name>_sum or <name>_count", name));
    }
  }
  return std::nullopt;
}

std::optional<Rejection> ValidateSamples(const Labels& labels, MetricType type, std::span<const Sample> samples,
                                         int64_t now_ms, const ValidationLimits& limits, bool backfill) {
  if (samples.empty()) {
    return Reject(RejectReason::kMalformedSeries, fmt::format("{} has no samples", FormatLabelsShort(labels)));
  }
  if (samples.size() > limits.max_samples_per_series) {
    return Reject(RejectReason::kMalformedSeries,
                  fmt::format("{} has {} samples in one batch; at most {} are accepted", FormatLabelsShort(labels),
                              samples.size(), limits.max_samples_per_series));
  }
  const int64_t earliest =
      now_ms - (backfill ? std::max(limits.accept_past, limits.backfill_accept_past) : limits.accept_past).count();
  const int64_t latest = now_ms + limits.accept_future.count();
  std::string_view name = MetricName(labels);
  // Counters, buckets and counts are cumulative; a histogram's sum may be
  // negative (negative observations).
  const bool non_negative = type == MetricType::kCounter || (type == MetricType::kHistogram && !EndsWith(name, "_sum"));
  for (const Sample& s : samples) {
    if (backfill && s.timestamp_ms < earliest) {
      return Reject(RejectReason::kTimestampOutOfWindow,
                    fmt::format("{} has timestamp {} ms, older than anything sheafd keeps: a backfill accepts "
                                "[{}, {}] (now {} ms, less the longest retention of raw data or roll-ups, {} days)",
                                FormatLabelsShort(labels), s.timestamp_ms, earliest, latest, now_ms,
                                (now_ms - earliest) / 86'400'000));
    }
    if (s.timestamp_ms < earliest || s.timestamp_ms > latest) {
      return Reject(RejectReason::kTimestampOutOfWindow,
                    fmt::format("{} has timestamp {} ms, outside the accepted window [{}, {}] "
                                "(now {} ms; check the sender's clock)",
                                FormatLabelsShort(labels), s.timestamp_ms, earliest, latest, now_ms));
    }
    if (!std::isfinite(s.value) && !IsStaleMarker(s.value)) {
      return Reject(RejectReason::kInvalidValue, fmt::format("{} has a non-finite value ({}) at {}",
                                                             FormatLabelsShort(labels), s.value, s.timestamp_ms));
    }
    if (non_negative && s.value < 0) {
      return Reject(RejectReason::kInvalidValue, fmt::format("{} is cumulative but has a negative value ({}) at {}",
                                                             FormatLabelsShort(labels), s.value, s.timestamp_ms));
    }
  }
  return std::nullopt;
}

std::string_view ReasonName(RejectReason reason) {
  switch (reason) {
    case RejectReason::kUnspecified:
      return "unspecified";
    case RejectReason::kInvalidMetricName:
      return "invalid_metric_name";
    case RejectReason::kInvalidLabelName:
      return "invalid_label_name";
    case RejectReason::kDuplicateLabelName:
      return "duplicate_label_name";
    case RejectReason::kInvalidLabelValue:
      return "invalid_label_value";
    case RejectReason::kTooManyLabels:
      return "too_many_labels";
    case RejectReason::kTimestampOutOfWindow:
      return "timestamp_out_of_window";
    case RejectReason::kInvalidValue:
      return "invalid_value";
    case RejectReason::kUnknownRef:
      return "unknown_ref";
    case RejectReason::kMalformedSeries:
      return "malformed_series";
    case RejectReason::kSeriesLimit:
      return "series_limit";
    case RejectReason::kMissingLeLabel:
      return "missing_le_label";
    case RejectReason::kOutOfOrder:
      return "out_of_order";
    case RejectReason::kLabelsTooLarge:
      return "labels_too_large";
    case RejectReason::kStoreError:
      return "store_error";
    case RejectReason::kSeriesDeleted:
      return "series_deleted";
  }
  return "unknown";
}

}  // namespace sheaf::model
