#include "daemon/validation.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <string_view>

#include "storage/labels.h"

namespace sheaf::daemon {
namespace {

using storage::Labels;
using storage::MetricType;

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::optional<Rejection> Reject(v1::RejectReason reason, std::string detail) {
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

std::optional<Rejection> ValidateLabels(Labels& labels, MetricType type,
                                        const ValidationLimits& limits) {
  std::erase_if(labels, [](const storage::Label& l) { return l.value.empty(); });
  if (labels.size() > limits.max_labels) {
    return Reject(v1::REJECT_REASON_TOO_MANY_LABELS,
                  fmt::format("{} has {} labels; at most {} are accepted",
                              storage::FormatLabels(labels), labels.size(), limits.max_labels));
  }
  if (auto s = storage::Canonicalize(labels); !s.ok()) {
    return Reject(v1::REJECT_REASON_DUPLICATE_LABEL_NAME,
                  fmt::format("{}: {}", storage::FormatLabels(labels), std::string(s.message())));
  }
  std::string_view name = storage::MetricName(labels);
  if (!storage::IsValidMetricName(name)) {
    return Reject(v1::REJECT_REASON_INVALID_METRIC_NAME,
                  name.empty() ? fmt::format("{} has no __name__ label", storage::FormatLabels(labels))
                               : fmt::format("metric name \"{}\" does not match [a-zA-Z_:][a-zA-Z0-9_:]*", name));
  }
  for (const storage::Label& l : labels) {
    if (l.name == storage::kMetricNameLabel) continue;
    if (!storage::IsValidLabelName(l.name) || l.name.starts_with("__")) {
      return Reject(v1::REJECT_REASON_INVALID_LABEL_NAME,
                    fmt::format("label name \"{}\" of {} does not match [a-zA-Z_][a-zA-Z0-9_]* "
                                "(names starting with __ are reserved)",
                                l.name, name));
    }
    if (!storage::IsValidLabelValue(l.value, limits.max_label_value_bytes)) {
      return Reject(v1::REJECT_REASON_INVALID_LABEL_VALUE,
                    fmt::format("value of label \"{}\" of {} is not UTF-8 or longer than {} bytes",
                                l.name, name, limits.max_label_value_bytes));
    }
  }
  if (type == MetricType::kHistogram) {
    if (EndsWith(name, "_bucket")) {
      auto le = std::find_if(labels.begin(), labels.end(),
                             [](const storage::Label& l) { return l.name == "le"; });
      if (le == labels.end() || !IsValidBucketBound(le->value)) {
        return Reject(v1::REJECT_REASON_MISSING_LE_LABEL,
                      fmt::format("histogram bucket {} needs an \"le\" label holding a number or +Inf",
                                  storage::FormatLabels(labels)));
      }
    } else if (!EndsWith(name, "_sum") && !EndsWith(name, "_count")) {
      return Reject(v1::REJECT_REASON_INVALID_METRIC_NAME,
                    fmt::format("histogram series \"{}\" must be named <name>_bucket, <name>_sum or <name>_count",
                                name));
    }
  }
  return std::nullopt;
}

std::optional<Rejection> ValidateSamples(const Labels& labels, MetricType type,
                                         std::span<const storage::Sample> samples, int64_t now_ms,
                                         const ValidationLimits& limits) {
  if (samples.empty()) {
    return Reject(v1::REJECT_REASON_MALFORMED_SERIES,
                  fmt::format("{} has no samples", storage::FormatLabels(labels)));
  }
  if (samples.size() > limits.max_samples_per_series) {
    return Reject(v1::REJECT_REASON_MALFORMED_SERIES,
                  fmt::format("{} has {} samples in one batch; at most {} are accepted",
                              storage::FormatLabels(labels), samples.size(),
                              limits.max_samples_per_series));
  }
  const int64_t earliest = now_ms - limits.accept_past.count();
  const int64_t latest = now_ms + limits.accept_future.count();
  std::string_view name = storage::MetricName(labels);
  // Counters, buckets and counts are cumulative; a histogram's sum may be
  // negative (negative observations).
  const bool non_negative = type == MetricType::kCounter ||
                            (type == MetricType::kHistogram && !EndsWith(name, "_sum"));
  for (const storage::Sample& s : samples) {
    if (s.timestamp_ms < earliest || s.timestamp_ms > latest) {
      return Reject(v1::REJECT_REASON_TIMESTAMP_OUT_OF_WINDOW,
                    fmt::format("{} has timestamp {} ms, outside the accepted window [{}, {}] "
                                "(now {} ms; check the sender's clock)",
                                storage::FormatLabels(labels), s.timestamp_ms, earliest, latest, now_ms));
    }
    if (!std::isfinite(s.value)) {
      return Reject(v1::REJECT_REASON_INVALID_VALUE,
                    fmt::format("{} has a non-finite value ({}) at {}", storage::FormatLabels(labels),
                                s.value, s.timestamp_ms));
    }
    if (non_negative && s.value < 0) {
      return Reject(v1::REJECT_REASON_INVALID_VALUE,
                    fmt::format("{} is cumulative but has a negative value ({}) at {}",
                                storage::FormatLabels(labels), s.value, s.timestamp_ms));
    }
  }
  return std::nullopt;
}

std::string ReasonName(v1::RejectReason reason) {
  std::string name = v1::RejectReason_Name(reason);
  constexpr std::string_view kPrefix = "REJECT_REASON_";
  if (name.starts_with(kPrefix)) name = name.substr(kPrefix.size());
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
  return name.empty() ? "unknown" : name;
}

}  // namespace sheaf::daemon
