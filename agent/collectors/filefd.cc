// The filefd collector: the host's allocated and maximum file handles from
// <proc>/sys/fs/file-nr.
#include <string>
#include <string_view>
#include <vector>

#include "agent/collectors/collectors.h"
#include "agent/collectors/proc_text.h"

namespace sheaf::agent {

bool ParseFileNr(std::string_view text, std::string_view source, std::vector<HostMetric>* out,
                 std::vector<std::string>* errors) {
  bool seen = false;
  std::vector<uint64_t> values;
  proc_text::ForEachFieldLine(text, source, errors, [&](int line_number, const auto& fields, auto& problems) {
    // "allocated  unused  maximum"; unused is always 0 since Linux 2.6.
    if (seen || fields.size() != 3 || !proc_text::ParseU64Fields(fields, 0, &values)) {
      problems.Add(line_number, "malformed file-nr line");
      return;
    }
    seen = true;
    proc_text::Emit(out, "node_filefd_allocated", {}, MetricKind::kGauge, static_cast<double>(values[0]));
    proc_text::Emit(out, "node_filefd_maximum", {}, MetricKind::kGauge, static_cast<double>(values[2]));
  });

  return proc_text::RequireFound(seen, source, "file handle counts", errors);
}

std::unique_ptr<Collector> NewFilefdCollector(const HostPaths& paths) {
  return proc_text::MakeFileCollector("filefd", paths.proc + "/sys/fs/file-nr", ParseFileNr);
}

}  // namespace sheaf::agent
