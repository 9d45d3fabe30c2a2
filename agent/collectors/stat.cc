// The stat collector: the kernel's host-wide counters from <proc>/stat
// (context switches, interrupts, forks, runnable and blocked processes, boot
// time). CPU time is the cpu collector's, as in node_exporter.
#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "agent/collectors/collectors.h"
#include "agent/collectors/proc_text.h"
#include "fmt/format.h"

namespace sheaf::agent {

namespace {

struct Scalar {
  std::string_view key;
  std::string_view name;
  MetricKind kind;
};
constexpr std::array<Scalar, 6> kScalars = {{
    {"ctxt", "node_context_switches_total", MetricKind::kCounter},
    // "intr" is followed by per-irq counts; only the total is exported.
    {"intr", "node_intr_total", MetricKind::kCounter},
    {"processes", "node_forks_total", MetricKind::kCounter},
    {"procs_running", "node_procs_running", MetricKind::kGauge},
    {"procs_blocked", "node_procs_blocked", MetricKind::kGauge},
    {"btime", "node_boot_time_seconds", MetricKind::kGauge},
}};

// Single-valued keys must have exactly one value; anything else means the
// line is not what we think it is.
bool ScalarValue(const std::vector<std::string_view>& fields, uint64_t* value) {
  const bool shape_ok = fields[0] == "intr" ? fields.size() >= 2 : fields.size() == 2;
  return shape_ok && proc_text::ParseU64(fields[1], value);
}

}  // namespace

bool ParseStat(std::string_view text, std::string_view source, std::vector<HostMetric>* out,
               std::vector<std::string>* errors) {
  bool found = false;
  proc_text::ForEachFieldLine(text, source, errors, [&](int line_number, const auto& fields, auto& problems) {
    for (const Scalar& s : kScalars) {
      if (fields[0] != s.key) continue;
      uint64_t v = 0;
      if (!ScalarValue(fields, &v)) {
        problems.Add(line_number, fmt::format("malformed {} line", s.key));
        return;
      }
      found = true;
      proc_text::Emit(out, s.name, {}, s.kind, static_cast<double>(v));
      return;
    }
    // Other keys (cpu lines, softirq, newer additions) are not ours.
  });

  return proc_text::RequireFound(found, source, "ctxt, intr, processes or btime line", errors);
}

bool ParseBootTime(std::string_view text, double* boot_time_seconds) {
  // Lines end in '\n'; "btime" is never the first line.
  const size_t at = text.find("\nbtime ");
  if (at == std::string_view::npos) return false;
  std::string_view rest = text.substr(at + 1);
  const size_t end = rest.find('\n');
  if (end == std::string_view::npos) return false;  // Truncated.
  std::vector<std::string_view> fields;
  proc_text::SplitFields(rest.substr(0, end), &fields);
  uint64_t v = 0;
  if (fields.size() != 2 || !proc_text::ParseU64(fields[1], &v)) return false;
  *boot_time_seconds = static_cast<double>(v);
  return true;
}

std::unique_ptr<Collector> NewStatCollector(const HostPaths& paths) {
  return proc_text::MakeFileCollector("stat", paths.proc + "/stat", ParseStat);
}

}  // namespace sheaf::agent
