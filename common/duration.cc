#include "common/duration.h"

#include <cstdint>
#include <limits>

namespace sheaf {
namespace {

struct Unit {
  std::string_view suffix;
  int64_t ms;
};
// Longest suffixes first so "ms" is not read as "m".
constexpr Unit kUnits[] = {{"ms", 1},         {"s", 1000},        {"m", 60'000},        {"h", 3'600'000},
                           {"d", 86'400'000}, {"w", 604'800'000}, {"y", 31'536'000'000}};

}  // namespace

absl::StatusOr<std::chrono::milliseconds> ParseDuration(std::string_view text) {
  auto bad = [&] {
    // Built by appends: GCC 12 at -O3 reports a false -Wrestrict on
    // `"..." + std::string(...)` (release builds must be warning-free).
    std::string message = "\"";
    message.append(text);
    message.append("\" is not a duration (examples: 500ms, 10s, 15m, 1h30m, 7d)");
    return absl::InvalidArgumentError(message);
  };
  if (text == "0") return std::chrono::milliseconds(0);
  if (text.empty()) return bad();
  int64_t total = 0;
  size_t i = 0;
  while (i < text.size()) {
    int64_t n = 0;
    size_t digits = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      if (n > (std::numeric_limits<int64_t>::max() - 9) / 10) return bad();
      n = n * 10 + (text[i++] - '0');
      ++digits;
    }
    if (digits == 0) return bad();
    const Unit* unit = nullptr;
    for (const Unit& u : kUnits) {
      if (text.substr(i, u.suffix.size()) == u.suffix) {
        unit = &u;
        break;
      }
    }
    if (unit == nullptr) return bad();
    i += unit->suffix.size();
    if (n > std::numeric_limits<int64_t>::max() / unit->ms) return bad();
    total += n * unit->ms;
  }
  return std::chrono::milliseconds(total);
}

std::string FormatDuration(std::chrono::milliseconds d) {
  int64_t ms = d.count();
  if (ms == 0) return "0s";
  std::string out;
  if (ms < 0) {
    out = "-";
    ms = -ms;
  }
  for (int u = 4; u >= 0; --u) {  // d down to ms: "15d" reads better than "2w1d"
    int64_t n = ms / kUnits[u].ms;
    if (n > 0) {
      // Two appends, not `a + b`: GCC 12 at -O3 reports a false -Wrestrict
      // on the concatenation (release builds must be warning-free).
      out += std::to_string(n);
      out += kUnits[u].suffix;
      ms -= n * kUnits[u].ms;
    }
  }
  return out;
}

}  // namespace sheaf
