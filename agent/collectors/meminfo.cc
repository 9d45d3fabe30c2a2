// The meminfo collector: every field of <proc>/meminfo, swap included
// (SwapTotal, SwapFree, SwapCached), as node_memory_<Field>[_bytes].
#include <string>
#include <string_view>
#include <vector>

#include "agent/collectors/collectors.h"
#include "agent/collectors/proc_text.h"

namespace sheaf::agent {

bool ParseMeminfo(std::string_view text, std::string_view source, std::vector<HostMetric>* out,
                  std::vector<std::string>* errors) {
  bool found = false;
  std::string name;
  proc_text::ForEachFieldLine(text, source, errors, [&](int line_number, const auto& fields, auto& problems) {
    uint64_t v = 0;
    if (fields.size() < 2 || fields.size() > 3 || fields[0].size() < 2 || fields[0].back() != ':' ||
        !proc_text::ParseU64(fields[1], &v) || (fields.size() == 3 && fields[2] != "kB")) {
      problems.Add(line_number, "malformed meminfo line");
      return;
    }
    // node_exporter renames "Active(anon)" to "Active_anon" (its regex
    // \((.*)\) -> _$1); matching it keeps existing queries working.
    std::string_view key = fields[0].substr(0, fields[0].size() - 1);
    name.assign("node_memory_");
    const size_t open = key.find('(');
    const size_t close = key.rfind(')');
    if (open != std::string_view::npos && close != std::string_view::npos && open < close) {
      name.append(key.substr(0, open)).append("_").append(key.substr(open + 1, close - open - 1));
      name.append(key.substr(close + 1));
    } else {
      name.append(key);
    }
    if (!proc_text::IsMetricNameSuffix(std::string_view(name).substr(12))) {
      problems.Add(line_number, "meminfo key is not a valid metric name");
      return;
    }
    found = true;
    if (fields.size() == 3) {
      name.append("_bytes");
      proc_text::Emit(out, name, {}, MetricKind::kGauge, static_cast<double>(v) * 1024.0);
    } else {
      // Unitless counts such as HugePages_Total.
      proc_text::Emit(out, name, {}, MetricKind::kGauge, static_cast<double>(v));
    }
  });

  return proc_text::RequireFound(found, source, "meminfo fields", errors);
}

std::unique_ptr<Collector> NewMeminfoCollector(const HostPaths& paths) {
  return proc_text::MakeFileCollector("meminfo", paths.proc + "/meminfo", ParseMeminfo);
}

}  // namespace sheaf::agent
