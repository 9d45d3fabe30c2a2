// Host metrics collector for sheaf-agent.
//
// Reads this Linux host's metrics from /proc and statvfs(3) and returns them
// under node_exporter-compatible names, so dashboards and alerts written for
// node_exporter work unchanged against data shipped by sheaf-agent.
//
// Uses only the C++ standard library and POSIX: the agent runs on every host
// and must not drag in gRPC or protobuf just to read a few text files.

#ifndef SHEAF_AGENT_HOST_COLLECTOR_H_
#define SHEAF_AGENT_HOST_COLLECTOR_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "model/types.h"

namespace sheaf::agent {

// The model's one metric type; the host collector makes counters and gauges.
using MetricKind = model::MetricType;

// One sample. Labels never include __name__ and are sorted by label name, so
// two samples of the same series compare equal field by field.
struct HostMetric {
  std::string name;  // e.g. "node_load1"
  // e.g. {{"cpu", "0"}, {"mode", "user"}}
  std::vector<std::pair<std::string, std::string>> labels;
  MetricKind kind = MetricKind::kGauge;
  double value = 0.0;
  // 0: stamped with the collection's time. A scraped target may expose its
  // own timestamp (milliseconds), which is kept as Prometheus keeps it.
  int64_t timestamp_ms = 0;
};

// Where the collector reads from. These are roots rather than fixed paths so
// tests (and anyone debugging a captured host) can point at a fake tree.
struct HostPaths {
  std::string proc = "/proc";
  // Read for the filesystem collector; format of /proc/self/mounts.
  std::string mounts = "/proc/self/mounts";
};

// Collects host metrics from these sources, in this order:
//   <proc>/stat       node_cpu_seconds_total{cpu,mode} (modes user, nice,
//                     system, idle, iowait, irq, softirq, steal; ticks divided
//                     by sysconf(_SC_CLK_TCK); the aggregate "cpu" line is not
//                     exported), node_context_switches_total,
//                     node_intr_total, node_forks_total, node_procs_running,
//                     node_procs_blocked, node_boot_time_seconds.
//   <proc>/meminfo    node_memory_<Field>_bytes for every "kB" field (value *
//                     1024), node_memory_<Field> for unitless ones
//                     (HugePages_*); "Active(anon)" becomes "Active_anon".
//   <proc>/loadavg    node_load1, node_load5, node_load15.
//   <proc>/diskstats  node_disk_* per whole disk (partitions, ram, loop and fd
//                     devices are skipped, see IsIgnoredDiskDevice).
//   <proc>/net/dev    node_network_{receive,transmit}_{bytes,packets,errs,
//                     drop}_total per interface.
//   <mounts>          node_filesystem_{size,free,avail}_bytes,
//                     node_filesystem_files, node_filesystem_files_free per
//                     real mount point (see SelectMounts), via statvfs.
//
// Thread-compatible: Collect is const and keeps no state between calls, so
// concurrent calls on one collector are safe.
class HostCollector {
 public:
  explicit HostCollector(HostPaths paths = {});

  // Reads every source once. A source that cannot be read or parsed is
  // skipped and a human-readable line naming the file and the problem is
  // appended to *errors (errors may be nullptr). Malformed lines inside an
  // otherwise readable file are skipped (one error line per file summarises
  // them) while the file's good lines are still exported. A statvfs failure
  // on one mount point is an error line for that mount point only. Never
  // throws, never aborts on malformed input.
  //
  // statvfs on a hung network filesystem can block; like the rest of the
  // agent this call is expected to run on a thread that may stall.
  std::vector<HostMetric> Collect(std::vector<std::string>* errors) const;

 private:
  HostPaths paths_;
  double ticks_per_second_;  // USER_HZ; sysconf(_SC_CLK_TCK), 100 on Linux.
};

// ---------------------------------------------------------------------------
// Parsers, exposed so tests can feed them text directly. Each takes the whole
// file content and `source` (the path, used only in error messages), appends
// at most a few error lines to *errors (errors may be nullptr) and never
// throws on malformed input.
//
// Line rules shared by all parsers: the kernel terminates every line with
// '\n', so a final line without one is treated as truncated and skipped (a
// cut-off number would otherwise be exported as a plausible wrong value).
// Lines with too few fields or non-numeric values where numbers belong are
// skipped. Unknown but well-formed lines (keys added by newer kernels) are
// ignored silently.
// ---------------------------------------------------------------------------

// /proc/stat. `ticks_per_second` converts cpu jiffies to seconds. Reports an
// error if no per-cpu line is found, since every real /proc/stat has one.
std::vector<HostMetric> ParseProcStat(std::string_view text, std::string_view source, double ticks_per_second,
                                      std::vector<std::string>* errors);

// /proc/meminfo ("Key:   123 kB" lines).
std::vector<HostMetric> ParseMeminfo(std::string_view text, std::string_view source, std::vector<std::string>* errors);

// /proc/loadavg ("0.01 0.03 0.01 1/84 3525").
std::vector<HostMetric> ParseLoadavg(std::string_view text, std::string_view source, std::vector<std::string>* errors);

// /proc/diskstats. Needs the 11 classic statistics fields per line; newer
// kernels' extra discard/flush fields are accepted and ignored.
std::vector<HostMetric> ParseDiskstats(std::string_view text, std::string_view source,
                                       std::vector<std::string>* errors);

// /proc/net/dev. Skips the two "|"-separated header lines and accepts
// "eth0:1234 ..." as well as "  eth0: 1234 ...".
std::vector<HostMetric> ParseNetDev(std::string_view text, std::string_view source, std::vector<std::string>* errors);

// True for device names node_exporter ignores by default:
// ^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$ — i.e. partitions of
// common disks, ram disks, loop and floppy devices.
bool IsIgnoredDiskDevice(std::string_view device);

// One line of a mounts file, with octal escapes already undone.
struct MountEntry {
  std::string device;
  std::string mount_point;
  std::string fstype;
};

// Undoes the kernel's octal escaping in mounts files ("\040" is a space,
// "\134" a backslash). A backslash not followed by three octal digits is kept
// literally.
std::string UnescapeMountField(std::string_view field);

// Parses a file in /proc/self/mounts format. Lines need at least device,
// mount point, fstype and options; the mount point must be absolute.
std::vector<MountEntry> ParseMounts(std::string_view text, std::string_view source, std::vector<std::string>* errors);

// node_exporter's default pseudo filesystem types (autofs, proc, sysfs, ...).
bool IsIgnoredFilesystemType(std::string_view fstype);

// Mount points at or under /dev, /proc, /sys, /run/credentials and
// /var/lib/docker.
bool IsIgnoredMountPoint(std::string_view mount_point);

// The mounts worth a statvfs call: when a mount point appears more than once
// only the last entry is kept (it is the one visible at that path), then
// ignored types and mount points are dropped. Order follows the input.
std::vector<MountEntry> SelectMounts(std::vector<MountEntry> mounts);

}  // namespace sheaf::agent

#endif  // SHEAF_AGENT_HOST_COLLECTOR_H_
