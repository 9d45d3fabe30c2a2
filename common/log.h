// Plain-text logging to stderr, shared by every sheaf binary: one line per
// event, `2026-01-02T03:04:05.678Z LEVEL message`, written with a single
// write(2) so lines from different threads never interleave.
#ifndef SHEAF_COMMON_LOG_H_
#define SHEAF_COMMON_LOG_H_

#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
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
#define SHEAF_LOG_FN(fn, level)                                 \
  template <typename... Args>                                   \
  void fn(fmt::format_string<Args...> format, Args&&... args) { \
    Log(level, format, std::forward<Args>(args)...);            \
  }
SHEAF_LOG_FN(LogDebug, LogLevel::kDebug)
SHEAF_LOG_FN(LogInfo, LogLevel::kInfo)
SHEAF_LOG_FN(LogWarn, LogLevel::kWarn)
SHEAF_LOG_FN(LogError, LogLevel::kError)
#undef SHEAF_LOG_FN

// At most `burst` lines per `period`, for log lines a client can trigger
// over and over (a misbehaving agent must not flood the log). Lines over
// the budget are counted; the next line let through says how many were
// suppressed. Thread-safe.
class LogRateLimiter {
 public:
  LogRateLimiter(int burst, std::chrono::milliseconds period) : burst_(burst), period_ms_(period.count()) {}

  // True if a line may be written now; then *suppressed is how many were
  // dropped since the last one written.
  bool Allow(uint64_t* suppressed);

 private:
  const int burst_;
  const int64_t period_ms_;
  std::mutex mu_;
  int64_t window_start_ms_ = 0;
  int used_ = 0;
  uint64_t suppressed_ = 0;
};

template <typename... Args>
void LogLimited(LogRateLimiter& limiter, LogLevel level, fmt::format_string<Args...> format, Args&&... args) {
  uint64_t suppressed = 0;
  if (!LogEnabled(level) || !limiter.Allow(&suppressed)) return;
  std::string line = fmt::format(format, std::forward<Args>(args)...);
  if (suppressed > 0) line += fmt::format(" ({} similar lines suppressed)", suppressed);
  LogLine(level, line);
}

}  // namespace sheaf

#endif  // SHEAF_COMMON_LOG_H_
