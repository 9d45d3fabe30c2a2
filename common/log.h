// Plain-text logging to stderr, shared by every sheaf binary: one line per
// event, `2026-01-02T03:04:05.678Z LEVEL message`, written with a single
// write(2) so lines from different threads never interleave.
#ifndef SHEAF_COMMON_LOG_H_
#define SHEAF_COMMON_LOG_H_

#include <fmt/format.h>

#include <string_view>
#include <utility>

namespace sheaf {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// Lines below `level` are dropped. Default: kInfo.
void SetLogLevel(LogLevel level);
bool ParseLogLevel(std::string_view name, LogLevel* level);
void LogLine(LogLevel level, std::string_view message);
bool LogEnabled(LogLevel level);

template <typename... Args>
void Log(LogLevel level, fmt::format_string<Args...> format, Args&&... args) {
  if (LogEnabled(level)) LogLine(level, fmt::format(format, std::forward<Args>(args)...));
}
#define SHEAF_LOG_FN(fn, level)                                   \
  template <typename... Args>                                     \
  void fn(fmt::format_string<Args...> format, Args&&... args) {   \
    Log(level, format, std::forward<Args>(args)...);              \
  }
SHEAF_LOG_FN(LogDebug, LogLevel::kDebug)
SHEAF_LOG_FN(LogInfo, LogLevel::kInfo)
SHEAF_LOG_FN(LogWarn, LogLevel::kWarn)
SHEAF_LOG_FN(LogError, LogLevel::kError)
#undef SHEAF_LOG_FN

}  // namespace sheaf

#endif  // SHEAF_COMMON_LOG_H_
