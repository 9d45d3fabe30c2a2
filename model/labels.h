// Label sets: canonical form and the Prometheus naming rules.
#ifndef SHEAF_MODEL_LABELS_H_
#define SHEAF_MODEL_LABELS_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "model/types.h"

namespace sheaf::model {

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

// For messages, logs and acks, where the text came from a client: at most
// about `max_bytes`, cut with "...(N more bytes)", invalid UTF-8 shown as
// \xNN. A hostile series can never make a log line or an ack large, and
// the result is always valid UTF-8 (protobuf strings require it).
std::string Abbreviate(std::string_view text, size_t max_bytes = 128);
std::string FormatLabelsShort(const Labels& labels, size_t max_bytes = 256);

// Valid UTF-8 (no overlong forms, surrogates or code points > 10FFFF).
bool IsValidUtf8(std::string_view text);
// `text` with every invalid UTF-8 sequence replaced by U+FFFD; true in
// *changed if anything was replaced.
std::string SanitizeUtf8(std::string_view text, bool* changed = nullptr);

}  // namespace sheaf::model

#endif  // SHEAF_MODEL_LABELS_H_
