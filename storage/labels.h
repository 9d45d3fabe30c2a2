// Label sets: canonical form and the Prometheus naming rules.
#ifndef SHEAF_STORAGE_LABELS_H_
#define SHEAF_STORAGE_LABELS_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "storage/types.h"

namespace sheaf::storage {

// Metric names: [a-zA-Z_:][a-zA-Z0-9_:]*
bool IsValidMetricName(std::string_view name);
// Label names: [a-zA-Z_][a-zA-Z0-9_]*; names starting with "__" are
// reserved for sheaf itself (only "__name__" is accepted from clients).
bool IsValidLabelName(std::string_view name);
// Valid UTF-8, at most `max_bytes` long.
bool IsValidLabelValue(std::string_view value, size_t max_bytes);

// Sorts by name. Fails with INVALID_ARGUMENT naming the label if two
// labels share a name.
absl::Status Canonicalize(Labels& labels);

// The metric name (value of __name__), or "" if there is none.
std::string_view MetricName(const Labels& labels);

// `"value"` with \\, \" and \n escaped, as in the Prometheus text format.
std::string QuoteLabelValue(std::string_view value);

// `name{a="x", b="y"}` in Prometheus text syntax, for messages and tools.
std::string FormatLabels(const Labels& labels);

}  // namespace sheaf::storage

#endif  // SHEAF_STORAGE_LABELS_H_
