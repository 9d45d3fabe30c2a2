// The pressure collector: pressure stall information (PSI, Linux 4.20+) from
// <proc>/pressure/{cpu,io,memory}, as the total time tasks waited ("some")
// and were all stalled ("full") on each resource.
#include <cerrno>
#include <string>
#include <string_view>
#include <vector>

#include "agent/collectors/collectors.h"
#include "agent/collectors/proc_text.h"
#include "fmt/format.h"

namespace sheaf::agent {

namespace {

constexpr double kMicrosecondsPerSecond = 1e6;

class PressureCollector : public Collector {
 public:
  explicit PressureCollector(const HostPaths& paths)
      : paths_{paths.proc + "/pressure/cpu", paths.proc + "/pressure/io", paths.proc + "/pressure/memory"} {}

  std::string_view name() const override { return "pressure"; }

  bool Collect(SourceReader& reader, std::vector<HostMetric>* out, std::vector<std::string>* errors) override {
    static constexpr std::string_view kResources[] = {"cpu", "io", "memory"};
    bool ok = true;
    for (size_t i = 0; i < std::size(kResources); ++i) {
      std::string error;
      int error_number = 0;
      const std::string* text = reader.Read(paths_[i], &error, &error_number);
      if (text == nullptr) {
        // No PSI in this kernel (no /proc/pressure), or PSI compiled in but
        // disabled with psi=0 (reads fail with EOPNOTSUPP): nothing to
        // export, and nothing wrong with the host.
        if (error_number == ENOENT || error_number == EOPNOTSUPP) continue;
        proc_text::AddError(errors, std::move(error));
        ok = false;
        continue;
      }
      ok = ParsePressure(*text, paths_[i], kResources[i], out, errors) && ok;
    }
    return ok;
  }

 private:
  const std::string paths_[3];
};

}  // namespace

bool ParsePressure(std::string_view text, std::string_view source, std::string_view resource,
                   std::vector<HostMetric>* out, std::vector<std::string>* errors) {
  bool found = false;
  proc_text::ForEachFieldLine(text, source, errors, [&](int line_number, const auto& fields, auto& problems) {
    // "some avg10=0.34 avg60=0.45 avg300=1.22 total=4738654914" (µs)
    uint64_t total = 0;
    const bool some = fields[0] == "some";
    if ((!some && fields[0] != "full") || fields.size() != 5 || !fields[4].starts_with("total=") ||
        !proc_text::ParseU64(fields[4].substr(6), &total)) {
      problems.Add(line_number, "malformed pressure line");
      return;
    }
    found = true;
    // The kernel reports "full" for cpu since 5.13 but documents it as
    // undefined (always zero) for the whole system; node_exporter does not
    // export it either.
    if (!some && resource == "cpu") return;
    proc_text::Emit(out, fmt::format("node_pressure_{}_{}_seconds_total", resource, some ? "waiting" : "stalled"), {},
                    MetricKind::kCounter, static_cast<double>(total) / kMicrosecondsPerSecond);
  });

  return proc_text::RequireFound(found, source, "pressure lines", errors);
}

std::unique_ptr<Collector> NewPressureCollector(const HostPaths& paths) {
  return std::make_unique<PressureCollector>(paths);
}

}  // namespace sheaf::agent
