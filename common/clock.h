// The one clock. Code that needs "now" takes a std::function<int64_t()>
// (tests inject a fake one) and defaults to WallClockMs.
#ifndef SHEAF_COMMON_CLOCK_H_
#define SHEAF_COMMON_CLOCK_H_

#include <chrono>
#include <cstdint>

namespace sheaf {

// Milliseconds since the Unix epoch, from the system (wall) clock.
inline int64_t WallClockMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Milliseconds on a clock that never goes back (for durations and timeouts).
inline int64_t MonotonicMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace sheaf

#endif  // SHEAF_COMMON_CLOCK_H_
