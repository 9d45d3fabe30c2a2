// The diskstats collector: I/O per block device from <proc>/diskstats, with
// node_exporter's default exclusion of partitions, ram, loop and floppy
// devices.
#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "agent/collectors/collectors.h"
#include "agent/collectors/proc_text.h"

namespace sheaf::agent {

namespace {

// The kernel reports disk sectors in 512-byte units whatever the device's
// real sector size, and node_exporter multiplies by exactly this.
constexpr double kSectorBytes = 512.0;
constexpr double kMillisecond = 1e-3;

struct Column {
  size_t index;  // among the statistics after major, minor and name
  std::string_view name;
  MetricKind kind;
  double scale;
};

// Documentation/admin-guide/iostats.rst. node_exporter leaves discarded
// sectors in sectors, and so do we (the name says so).
constexpr std::array<Column, 17> kColumns = {{
    {0, "node_disk_reads_completed_total", MetricKind::kCounter, 1},
    {1, "node_disk_reads_merged_total", MetricKind::kCounter, 1},
    {2, "node_disk_read_bytes_total", MetricKind::kCounter, kSectorBytes},
    {3, "node_disk_read_time_seconds_total", MetricKind::kCounter, kMillisecond},
    {4, "node_disk_writes_completed_total", MetricKind::kCounter, 1},
    {5, "node_disk_writes_merged_total", MetricKind::kCounter, 1},
    {6, "node_disk_written_bytes_total", MetricKind::kCounter, kSectorBytes},
    {7, "node_disk_write_time_seconds_total", MetricKind::kCounter, kMillisecond},
    {8, "node_disk_io_now", MetricKind::kGauge, 1},
    {9, "node_disk_io_time_seconds_total", MetricKind::kCounter, kMillisecond},
    {10, "node_disk_io_time_weighted_seconds_total", MetricKind::kCounter, kMillisecond},
    // Linux 4.18+.
    {11, "node_disk_discards_completed_total", MetricKind::kCounter, 1},
    {12, "node_disk_discards_merged_total", MetricKind::kCounter, 1},
    {13, "node_disk_discarded_sectors_total", MetricKind::kCounter, 1},
    {14, "node_disk_discard_time_seconds_total", MetricKind::kCounter, kMillisecond},
    // Linux 5.5+.
    {15, "node_disk_flush_requests_total", MetricKind::kCounter, 1},
    {16, "node_disk_flush_requests_time_seconds_total", MetricKind::kCounter, kMillisecond},
}};

// Statistics every kernel since 2.6 writes.
constexpr size_t kClassicStats = 11;

}  // namespace

bool IsIgnoredDiskDevice(std::string_view device) {
  // Equivalent to ^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$ without a
  // regex per line: every alternative ends in a non-digit, so the trailing
  // \d+ is exactly the device's trailing run of digits.
  size_t digits_start = device.size();
  while (digits_start > 0 && device[digits_start - 1] >= '0' && device[digits_start - 1] <= '9') --digits_start;
  if (digits_start == device.size()) return false;  // \d+ needs a digit.
  const std::string_view prefix = device.substr(0, digits_start);

  if (prefix == "ram" || prefix == "loop" || prefix == "fd") return true;

  auto is_lower = [](char c) { return c >= 'a' && c <= 'z'; };
  // (h|s|v|xv)d[a-z]
  if (prefix.size() == 3 && (prefix[0] == 'h' || prefix[0] == 's' || prefix[0] == 'v') && prefix[1] == 'd' &&
      is_lower(prefix[2])) {
    return true;
  }
  if (prefix.size() == 4 && prefix.substr(0, 3) == "xvd" && is_lower(prefix[3])) return true;
  // nvme\d+n\d+p
  if (prefix.size() > 4 && prefix.substr(0, 4) == "nvme" && prefix.back() == 'p') {
    const std::string_view middle = prefix.substr(4, prefix.size() - 5);  // "\d+n\d+"
    const size_t n = middle.find('n');
    return n != std::string_view::npos && proc_text::IsDigits(middle.substr(0, n)) &&
           proc_text::IsDigits(middle.substr(n + 1));
  }
  return false;
}

bool ParseDiskstats(std::string_view text, std::string_view source, std::vector<HostMetric>* out,
                    std::vector<std::string>* errors) {
  std::vector<uint64_t> stats;
  const size_t before = out->size();
  const bool clean =
      proc_text::ForEachFieldLine(text, source, errors, [&](int line_number, const auto& fields, auto& problems) {
        uint64_t major = 0;
        uint64_t minor = 0;
        if (fields.size() < 3 + kClassicStats || !proc_text::ParseU64(fields[0], &major) ||
            !proc_text::ParseU64(fields[1], &minor) || !proc_text::ParseU64Fields(fields, 3, &stats)) {
          problems.Add(line_number, "malformed diskstats line");
          return;
        }
        if (IsIgnoredDiskDevice(fields[2])) return;
        const std::string device(fields[2]);
        for (const Column& c : kColumns) {
          if (c.index >= stats.size()) break;
          proc_text::Emit(out, c.name, {{"device", device}}, c.kind, static_cast<double>(stats[c.index]) * c.scale);
        }
      });

  // A host may have no disk at all (a container with no block devices): an
  // empty file is not a failure.
  return clean || out->size() > before;
}

std::unique_ptr<Collector> NewDiskstatsCollector(const HostPaths& paths) {
  return proc_text::MakeFileCollector("diskstats", paths.proc + "/diskstats", ParseDiskstats);
}

}  // namespace sheaf::agent
