// Durations as people write them in flags and config files: Prometheus
// style, "500ms", "10s", "15m", "1h30m", "7d", "2w".
#ifndef SHEAF_COMMON_DURATION_H_
#define SHEAF_COMMON_DURATION_H_

#include <chrono>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace sheaf {

// INVALID_ARGUMENT naming the text when it is not a duration. "0" is zero.
absl::StatusOr<std::chrono::milliseconds> ParseDuration(std::string_view text);
// The shortest form ParseDuration reads back, e.g. "1h30m", "250ms".
std::string FormatDuration(std::chrono::milliseconds d);

}  // namespace sheaf

#endif  // SHEAF_COMMON_DURATION_H_
