// The netdev collector: traffic and errors per network interface from
// <proc>/net/dev.
#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "agent/collectors/collectors.h"
#include "agent/collectors/proc_text.h"

namespace sheaf::agent {

namespace {

// The columns after "name:", in order: 8 receive then 8 transmit. The names
// are the header's, as node_exporter uses them.
constexpr std::array<std::string_view, 16> kColumns = {
    "node_network_receive_bytes_total",      "node_network_receive_packets_total",
    "node_network_receive_errs_total",       "node_network_receive_drop_total",
    "node_network_receive_fifo_total",       "node_network_receive_frame_total",
    "node_network_receive_compressed_total", "node_network_receive_multicast_total",
    "node_network_transmit_bytes_total",     "node_network_transmit_packets_total",
    "node_network_transmit_errs_total",      "node_network_transmit_drop_total",
    "node_network_transmit_fifo_total",      "node_network_transmit_colls_total",
    "node_network_transmit_carrier_total",   "node_network_transmit_compressed_total",
};

}  // namespace

bool ParseNetDev(std::string_view text, std::string_view source, std::vector<HostMetric>* out,
                 std::vector<std::string>* errors) {
  proc_text::LineProblems problems(source);
  std::vector<std::string_view> fields;
  std::vector<uint64_t> values;
  const size_t before = out->size();

  proc_text::ForEachLine(text, problems, [&](int line_number, std::string_view line) {
    if (proc_text::Trim(line).empty()) return;
    // Header lines ("Inter-|   Receive ...", " face |bytes ...") are the only
    // ones with '|'; data lines never have it.
    if (line.find('|') != std::string_view::npos) return;
    // Interface names cannot contain ':' (dev_valid_name), so the first one
    // ends the name even when the kernel prints no space after it, as it
    // does once the byte count gets wide ("eth0:1234567890 ...").
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      problems.Add(line_number, "malformed net/dev line (no ':')");
      return;
    }
    const std::string_view device = proc_text::Trim(line.substr(0, colon));
    proc_text::SplitFields(line.substr(colon + 1), &fields);
    if (device.empty() || device.find_first_of(" \t") != std::string_view::npos || fields.size() < kColumns.size() ||
        !proc_text::ParseU64Fields(fields, 0, &values)) {
      problems.Add(line_number, "malformed net/dev line");
      return;
    }
    const std::string name(device);
    for (size_t i = 0; i < kColumns.size(); ++i) {
      proc_text::Emit(out, kColumns[i], {{"device", name}}, MetricKind::kCounter, static_cast<double>(values[i]));
    }
  });

  problems.Report(errors);
  // Every kernel with networking has at least lo; but a network namespace
  // can be empty, so an empty table is not a failure.
  return !problems.any() || out->size() > before;
}

std::unique_ptr<Collector> NewNetdevCollector(const HostPaths& paths) {
  return proc_text::MakeFileCollector("netdev", paths.proc + "/net/dev", ParseNetDev);
}

}  // namespace sheaf::agent
