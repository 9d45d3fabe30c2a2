// The loadavg collector: the 1, 5 and 15 minute load averages from
// <proc>/loadavg.
#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "agent/collectors/collectors.h"
#include "agent/collectors/proc_text.h"

namespace sheaf::agent {

bool ParseLoadavg(std::string_view text, std::string_view source, std::vector<HostMetric>* out,
                  std::vector<std::string>* errors) {
  bool seen = false;
  proc_text::ForEachFieldLine(text, source, errors, [&](int line_number, const auto& fields, auto& problems) {
    std::array<double, 3> load{};
    if (seen || fields.size() < 3 || !proc_text::ParseNonNegativeDouble(fields[0], &load[0]) ||
        !proc_text::ParseNonNegativeDouble(fields[1], &load[1]) ||
        !proc_text::ParseNonNegativeDouble(fields[2], &load[2])) {
      problems.Add(line_number, "malformed loadavg line");
      return;
    }
    seen = true;
    proc_text::Emit(out, "node_load1", {}, MetricKind::kGauge, load[0]);
    proc_text::Emit(out, "node_load5", {}, MetricKind::kGauge, load[1]);
    proc_text::Emit(out, "node_load15", {}, MetricKind::kGauge, load[2]);
  });

  return proc_text::RequireFound(seen, source, "load averages", errors);
}

std::unique_ptr<Collector> NewLoadavgCollector(const HostPaths& paths) {
  return proc_text::MakeFileCollector("loadavg", paths.proc + "/loadavg", ParseLoadavg);
}

}  // namespace sheaf::agent
