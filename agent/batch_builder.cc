#include "agent/batch_builder.h"

#include <algorithm>
#include <span>

#include "common/log.h"
#include "model/labels.h"

namespace sheaf::agent {

BatchBuilder::BatchBuilder(LabelPairs extra, model::ValidationLimits limits)
    : extra_(std::move(extra)), limits_(limits) {}

std::vector<SeriesData> BatchBuilder::Build(const std::vector<HostMetric>& metrics, int64_t timestamp_ms) {
  std::vector<SeriesData> out;
  out.reserve(metrics.size());
  for (const HostMetric& m : metrics) {
    const int64_t ts = m.timestamp_ms != 0 ? m.timestamp_ms : timestamp_ms;
    const model::MetricType type = m.kind;
    model::Labels labels;
    labels.reserve(1 + m.labels.size() + extra_.size());
    labels.push_back({model::kMetricNameLabel, m.name});
    for (const auto& [name, value] : m.labels) labels.push_back({name, value});
    for (const auto& [name, value] : extra_) {
      bool present = std::any_of(labels.begin(), labels.end(), [&](const model::Label& l) { return l.name == name; });
      if (!present) labels.push_back({name, value});
    }

    // Label values come from the host (mount points, interface names) and
    // may be any bytes; the wire and the daemon want UTF-8. Names are not
    // repaired: a replacement character makes no valid name anyway.
    size_t repaired = 0;
    std::string example;
    for (model::Label& l : labels) {
      if (l.name == model::kMetricNameLabel || model::IsValidUtf8(l.value)) continue;
      if (example.empty()) example = model::Abbreviate(l.name) + "=\"" + model::Abbreviate(l.value) + "\"";
      l.value = model::SanitizeUtf8(l.value);
      ++repaired;
    }

    std::optional<model::Rejection> rejection = model::ValidateLabels(labels, type, limits_);
    if (!rejection) {
      // The window check is the daemon's (its clock): pass our own stamp as "now".
      const model::Sample sample{ts, m.value};
      rejection =
          model::ValidateSamples(labels, type, std::span<const model::Sample>(&sample, 1), ts, limits_);
    }
    if (rejection) {
      ++stats_.series_dropped;
      ++stats_.dropped_by_reason[rejection->reason];
      if (logged_reasons_.insert(rejection->reason).second) {
        LogWarn("not sending series the daemon would reject ({}; logged once, counted from now on): {}",
                model::ReasonName(rejection->reason), rejection->detail);
      }
      continue;
    }
    if (repaired > 0) {
      ++stats_.series_sanitized;
      stats_.labels_sanitized += repaired;
      if (!logged_sanitized_) {
        logged_sanitized_ = true;
        LogWarn(
            "label values that are not UTF-8 are sent with U+FFFD in place of the bad bytes (logged once, "
            "counted from now on): {} in {}",
            example, model::Abbreviate(m.name));
      }
    }

    SeriesData s;
    s.labels.reserve(labels.size());
    for (model::Label& l : labels) s.labels.emplace_back(std::move(l.name), std::move(l.value));  // sorted by name
    s.key = SeriesKey(s.labels);
    s.type = static_cast<v1::MetricType>(m.kind);  // the model's numbering is the wire's
    s.timestamps_ms.push_back(ts);
    s.values.push_back(m.value);
    out.push_back(std::move(s));
    ++stats_.series_built;
  }
  return out;
}

}  // namespace sheaf::agent
