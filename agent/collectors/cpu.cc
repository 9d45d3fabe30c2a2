// The cpu collector: time spent per CPU and mode, from <proc>/stat.
#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "agent/collectors/collectors.h"
#include "agent/collectors/proc_text.h"
#include "fmt/format.h"

namespace sheaf::agent {

using proc_text::Emit;
using proc_text::Labels;

bool ParseCpuStat(std::string_view text, std::string_view source, double ticks_per_second, bool per_cpu,
                  std::vector<HostMetric>* out, std::vector<std::string>* errors) {
  // Order of the first eight columns of a "cpu" line; guest and guest_nice
  // follow. Like node_exporter we do not subtract guest time from user/nice
  // (the kernel counts it in both).
  static constexpr std::array<std::string_view, 8> kModes = {"user",   "nice", "system",  "idle",
                                                             "iowait", "irq",  "softirq", "steal"};
  static constexpr std::array<std::string_view, 2> kGuestModes = {"user", "nice"};

  bool found = false;
  std::vector<uint64_t> values;
  proc_text::ForEachFieldLine(text, source, errors, [&](int line_number, const auto& fields, auto& problems) {
    if (fields[0].substr(0, 3) != "cpu") return;
    const std::string_view key = fields[0];
    const bool total = key == "cpu";
    if (!total && !proc_text::IsDigits(key.substr(3))) return;  // Not a cpu line.
    if (total == per_cpu) return;                               // Not the wanted kind of line.
    if (fields.size() < 1 + kModes.size() || !proc_text::ParseU64Fields(fields, 1, &values)) {
      problems.Add(line_number, fmt::format("malformed {} line", key));
      return;
    }
    found = true;
    // Host-wide: no cpu label at all, rather than a made-up cpu="all" that
    // `count by (cpu)` would take for one more CPU.
    const auto labels = [&](std::string_view mode) {
      Labels l;
      if (!total) l.emplace_back("cpu", std::string(key.substr(3)));
      l.emplace_back("mode", std::string(mode));
      return l;
    };
    for (size_t i = 0; i < kModes.size(); ++i) {
      Emit(out, "node_cpu_seconds_total", labels(kModes[i]), MetricKind::kCounter,
           static_cast<double>(values[i]) / ticks_per_second);
    }
    for (size_t i = 0; i < kGuestModes.size() && kModes.size() + i < values.size(); ++i) {
      Emit(out, "node_cpu_guest_seconds_total", labels(kGuestModes[i]), MetricKind::kCounter,
           static_cast<double>(values[kModes.size() + i]) / ticks_per_second);
    }
  });

  return proc_text::RequireFound(found, source, per_cpu ? "per-cpu line" : "\"cpu\" line", errors);
}

std::unique_ptr<Collector> NewCpuCollector(const HostPaths& paths, double ticks_per_second, bool per_cpu) {
  return proc_text::MakeFileCollector(
      "cpu", paths.proc + "/stat",
      [ticks_per_second, per_cpu](std::string_view text, std::string_view source, std::vector<HostMetric>* out,
                                  std::vector<std::string>* errors) {
        return ParseCpuStat(text, source, ticks_per_second, per_cpu, out, errors);
      });
}

}  // namespace sheaf::agent
