// The parameter parsers of the Prometheus-compatible HTTP API (declared in
// daemon/http_api.h): times, durations and their formatting. Kept apart
// from the API's handlers so they can be tested and fuzzed alone
// (tests/fuzz/http_params.cc) without the query engine or the store.
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <optional>
#include <string>

#include <fmt/format.h>

#include "common/duration.h"
#include "daemon/http_api.h"

namespace sheaf::daemon {
namespace {

// Times beyond ~285,000 years are refused, as the gRPC Query refuses them:
// within this bound no step arithmetic can overflow.
constexpr int64_t kMaxAbsTimeMs = int64_t{1} << 53;

// Prometheus' RFC 3339: "2006-01-02T15:04:05.999999999Z07:00".
std::optional<int64_t> ParseRfc3339(std::string_view t) {
  auto digits = [&](size_t pos, size_t n, int* out) {
    if (pos + n > t.size()) return false;
    int v = 0;
    for (size_t i = pos; i < pos + n; ++i) {
      if (t[i] < '0' || t[i] > '9') return false;
      v = v * 10 + (t[i] - '0');
    }
    *out = v;
    return true;
  };
  int year, month, day, hour, minute, second;
  if (!digits(0, 4, &year) || t.size() < 20 || t[4] != '-' || !digits(5, 2, &month) || t[7] != '-' ||
      !digits(8, 2, &day) || t[10] != 'T' || !digits(11, 2, &hour) || t[13] != ':' || !digits(14, 2, &minute) ||
      t[16] != ':' || !digits(17, 2, &second)) {
    return std::nullopt;
  }
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 59) return std::nullopt;
  size_t pos = 19;
  int64_t ms = 0;
  if (t[pos] == '.') {
    ++pos;
    size_t n = 0;
    for (; pos < t.size() && t[pos] >= '0' && t[pos] <= '9'; ++pos, ++n) {
      if (n < 3) ms = ms * 10 + (t[pos] - '0');  // truncated to ms, as Prometheus' UnixNano()/1e6
    }
    if (n == 0 || n > 9) return std::nullopt;
    for (; n < 3; ++n) ms *= 10;
  }
  int64_t offset_s = 0;
  if (pos < t.size() && t[pos] == 'Z' && pos + 1 == t.size()) {
  } else if (pos + 6 == t.size() && (t[pos] == '+' || t[pos] == '-') && t[pos + 3] == ':') {
    int oh, om;
    if (!digits(pos + 1, 2, &oh) || !digits(pos + 4, 2, &om) || oh > 23 || om > 59) return std::nullopt;
    offset_s = (oh * 3600 + om * 60) * (t[pos] == '+' ? 1 : -1);
  } else {
    return std::nullopt;
  }
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  const int64_t seconds = static_cast<int64_t>(timegm(&tm)) - offset_s;
  if (tm.tm_mday != day) return std::nullopt;  // timegm normalized "02-30"
  return seconds * 1000 + ms;
}

// A double from the whole of `text` (Go's ParseFloat), or nothing.
std::optional<double> ParseFloat(std::string_view text) {
  if (text.empty() || text.front() == ' ' || text.front() == '\t' || text.front() == '\n') return std::nullopt;
  std::string s(text);
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size()) return std::nullopt;
  return v;
}
}  // namespace

absl::StatusOr<int64_t> ParseApiTime(std::string_view text) {
  auto bad = [&] { return absl::InvalidArgumentError(fmt::format("cannot parse \"{}\" to a valid timestamp", text)); };
  std::optional<int64_t> ms;
  if (auto f = ParseFloat(text); f) {
    if (!std::isfinite(*f) || std::abs(*f) > static_cast<double>(kMaxAbsTimeMs) / 1000) return bad();
    // As Prometheus: whole seconds, and the fraction rounded to ms, then
    // made nanoseconds (truncated) and back to ms.
    double whole;
    double fraction = std::modf(*f, &whole);
    fraction = std::round(fraction * 1000) / 1000;
    // Seconds and nanoseconds apart: whole seconds reach 2^53 / 1000, so
    // whole * 10^9 would overflow int64 (found by tests/fuzz, input
    // tests/corpus/http_params/overflow_ns). whole and fraction have one sign.
    int64_t sec = static_cast<int64_t>(whole);
    int64_t ns = static_cast<int64_t>(fraction * 1e9);
    if (ns < 0) {
      ns += 1'000'000'000;
      --sec;
    }
    ms = sec * 1000 + ns / 1'000'000;
  } else {
    ms = ParseRfc3339(text);
  }
  if (!ms || *ms > kMaxAbsTimeMs || *ms < -kMaxAbsTimeMs) return bad();
  return *ms;
}

absl::StatusOr<int64_t> ParseApiDuration(std::string_view text) {
  if (auto f = ParseFloat(text); f) {
    const double ms = *f * 1000;
    if (!std::isfinite(ms) || std::abs(ms) > static_cast<double>(kMaxAbsTimeMs)) {
      return absl::InvalidArgumentError(
          fmt::format("cannot parse \"{}\" to a valid duration. It overflows int64", text));
    }
    return static_cast<int64_t>(ms);
  }
  auto d = ParseDuration(text);
  if (!d.ok() || text.empty()) {
    return absl::InvalidArgumentError(fmt::format("cannot parse \"{}\" to a valid duration", text));
  }
  return d->count();
}

std::string FormatApiTime(int64_t ms) {
  const bool negative = ms < 0;
  const uint64_t abs = negative ? 0 - static_cast<uint64_t>(ms) : static_cast<uint64_t>(ms);
  std::string out = fmt::format("{}{}", negative ? "-" : "", abs / 1000);
  if (abs % 1000 != 0) out += fmt::format(".{:03}", abs % 1000);
  return out;
}
}  // namespace sheaf::daemon
