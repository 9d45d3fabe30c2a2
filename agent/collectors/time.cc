// The time collector: the system clock and the local time zone's offset, so
// a host's clock can be compared with the daemon's and its neighbours'.
#include <time.h>

#include <string>
#include <string_view>
#include <vector>

#include "agent/collectors/collectors.h"
#include "agent/collectors/proc_text.h"
#include "fmt/format.h"

namespace sheaf::agent {

namespace {

class TimeCollector : public Collector {
 public:
  // localtime_r need not read the TZ rules itself (POSIX); do it once here.
  TimeCollector() { ::tzset(); }

  std::string_view name() const override { return "time"; }

  bool Collect(SourceReader&, std::vector<HostMetric>* out, std::vector<std::string>* errors) override {
    struct timespec now {};
    if (::clock_gettime(CLOCK_REALTIME, &now) != 0) {
      proc_text::AddError(errors, fmt::format("clock_gettime(CLOCK_REALTIME): {}", proc_text::ErrnoText(errno)));
      return false;
    }
    proc_text::Emit(out, "node_time_seconds", {}, MetricKind::kGauge,
                    static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) * 1e-9);
    struct tm local {};
    if (::localtime_r(&now.tv_sec, &local) == nullptr) {
      proc_text::AddError(errors, "localtime_r: cannot convert the current time to local time");
      return false;
    }
    proc_text::Emit(out, "node_time_zone_offset_seconds",
                    {{"time_zone", local.tm_zone != nullptr ? local.tm_zone : ""}}, MetricKind::kGauge,
                    static_cast<double>(local.tm_gmtoff));
    return true;
  }
};

}  // namespace

std::unique_ptr<Collector> NewTimeCollector() { return std::make_unique<TimeCollector>(); }

}  // namespace sheaf::agent
