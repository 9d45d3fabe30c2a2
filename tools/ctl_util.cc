// What sheafctl's commands share.
#include "tools/ctl_util.h"

#include <grpcpp/support/status.h>

#include <cstdio>
#include <ctime>

#include "common/json_writer.h"

namespace sheaf::ctl {

bool ParseTime(const std::string& text, int64_t* ms) {
  if (text.empty()) return false;
  if (text.find_first_not_of("0123456789") == std::string::npos) {
    // At most 16 digits: seconds or milliseconds far past any real date,
    // and never an overflow (a 20-digit number once threw).
    if (text.size() > 16) return false;
    int64_t v = std::stoll(text);
    *ms = text.size() >= 13 ? v : v * 1000;
    return true;
  }
  // Unix seconds with a fraction, as Prometheus' API takes them: 1700000000.5.
  if (size_t dot = text.find('.'); dot != std::string::npos && dot > 0 && dot <= 12 && dot + 1 < text.size() &&
                                   text.find_first_not_of("0123456789") == dot &&
                                   text.find_first_not_of("0123456789", dot + 1) == std::string::npos) {
    std::string frac = text.substr(dot + 1, 3);
    frac.resize(3, '0');
    *ms = std::stoll(text.substr(0, dot)) * 1000 + std::stoll(frac);
    return true;
  }
  std::tm tm = {};
  const char* end = strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (end == nullptr) return false;
  int64_t frac_ms = 0;
  if (*end == '.') {
    int digits = 0;
    for (++end; *end >= '0' && *end <= '9'; ++end, ++digits) {
      if (digits < 3) frac_ms = frac_ms * 10 + (*end - '0');
    }
    for (; digits < 3; ++digits) frac_ms *= 10;
  }
  if (std::string(end) != "Z") return false;
  *ms = static_cast<int64_t>(timegm(&tm)) * 1000 + frac_ms;
  return true;
}

std::string FormatTime(int64_t ms) {
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm;
  gmtime_r(&secs, &tm);
  char buf[40];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  char out[48];
  std::snprintf(out, sizeof(out), "%s.%03dZ", buf, static_cast<int>(((ms % 1000) + 1000) % 1000));
  return out;
}

std::string SeriesName(const google::protobuf::RepeatedPtrField<v1::Label>& labels) {
  std::string name, rest;
  for (const auto& l : labels) {
    if (l.name() == "__name__") {
      name = l.value();
      continue;
    }
    if (!rest.empty()) rest += ", ";
    rest += l.name() + "=" + JsonWriter::Quote(l.value());
  }
  return name + "{" + rest + "}";
}

const char* TypeName(v1::MetricType t) {
  switch (t) {
    case v1::METRIC_TYPE_COUNTER:
      return "counter";
    case v1::METRIC_TYPE_GAUGE:
      return "gauge";
    case v1::METRIC_TYPE_HISTOGRAM:
      return "histogram";
    default:
      return "untyped";
  }
}

int Fail(const char* what, const grpc::Status& s) {
  static constexpr const char* kCodes[] = {
      "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
      "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
      "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
      "DATA_LOSS", "UNAUTHENTICATED"};
  int code = static_cast<int>(s.error_code());
  std::fprintf(stderr, "sheafctl: %s failed: %s: %s\n", what, code >= 0 && code <= 16 ? kCodes[code] : "?",
               s.error_message().c_str());
  return 1;
}

}  // namespace sheaf::ctl
