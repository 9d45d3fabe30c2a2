// The vmstat collector: paging, swapping and OOM-kill counters from
// <proc>/vmstat, the fields node_exporter exports by default. pswpin and
// pswpout are the swap activity meminfo's Swap* sizes do not show.
#include <string>
#include <string_view>
#include <vector>

#include "agent/collectors/collectors.h"
#include "agent/collectors/proc_text.h"
#include "fmt/format.h"

namespace sheaf::agent {

bool IsExportedVmstatField(std::string_view field) {
  if (field.starts_with("oom_kill") || field.starts_with("pgpg") || field.starts_with("pswp")) return true;
  // pg.*fault
  return field.starts_with("pg") && field.find("fault", 2) != std::string_view::npos;
}

bool ParseVmstat(std::string_view text, std::string_view source, std::vector<HostMetric>* out,
                 std::vector<std::string>* errors) {
  bool found = false;
  proc_text::ForEachFieldLine(text, source, errors, [&](int line_number, const auto& fields, auto& problems) {
    uint64_t v = 0;
    if (fields.size() != 2 || !proc_text::IsMetricNameSuffix(fields[0]) || !proc_text::ParseU64(fields[1], &v)) {
      problems.Add(line_number, "malformed vmstat line");
      return;
    }
    found = true;
    if (!IsExportedVmstatField(fields[0])) return;
    // node_exporter calls these untyped; every default field counts events
    // since boot, so sheaf says counter.
    proc_text::Emit(out, fmt::format("node_vmstat_{}", fields[0]), {}, MetricKind::kCounter, static_cast<double>(v));
  });

  return proc_text::RequireFound(found, source, "vmstat fields", errors);
}

std::unique_ptr<Collector> NewVmstatCollector(const HostPaths& paths) {
  return proc_text::MakeFileCollector("vmstat", paths.proc + "/vmstat", ParseVmstat);
}

}  // namespace sheaf::agent
