// The host collectors, one per file in agent/collectors/, and the parsers
// they are made of. The facade that runs the enabled ones, and the list of
// every metric they export, is agent/collectors/host_collector.h.
//
// Parsers are exposed so tests can feed them text directly. Each takes the
// whole file content and `source` (the path, used only in error lines),
// appends metrics to *out, appends at most a few error lines to *errors
// (errors may be nullptr), never throws on malformed input, and returns false
// when nothing usable was in the text. The line rules they share are in
// agent/collectors/proc_text.h.
#ifndef SHEAF_AGENT_COLLECTORS_COLLECTORS_H_
#define SHEAF_AGENT_COLLECTORS_COLLECTORS_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "agent/collectors/collector.h"
#include "agent/collectors/metric.h"

namespace sheaf::agent {

// ---- cpu (cpu.cc): <proc>/stat ---------------------------------------------
// `ticks_per_second` converts jiffies (USER_HZ) to seconds. per_cpu: one
// series per CPU, labelled cpu="N", as node_exporter does; otherwise the
// host-wide "cpu" line only, without the cpu label (a 128-CPU host then sends
// 10 series instead of 1280). Fails if the wanted lines are missing, since
// every real /proc/stat has them.
std::unique_ptr<Collector> NewCpuCollector(const HostPaths& paths, double ticks_per_second, bool per_cpu);
bool ParseCpuStat(std::string_view text, std::string_view source, double ticks_per_second, bool per_cpu,
                  std::vector<HostMetric>* out, std::vector<std::string>* errors);

// ---- stat (stat.cc): <proc>/stat -------------------------------------------
std::unique_ptr<Collector> NewStatCollector(const HostPaths& paths);
bool ParseStat(std::string_view text, std::string_view source, std::vector<HostMetric>* out,
               std::vector<std::string>* errors);
// The "btime" line of /proc/stat, or false.
bool ParseBootTime(std::string_view text, double* boot_time_seconds);

// ---- meminfo (meminfo.cc): <proc>/meminfo ("Key:   123 kB" lines) --------
std::unique_ptr<Collector> NewMeminfoCollector(const HostPaths& paths);
bool ParseMeminfo(std::string_view text, std::string_view source, std::vector<HostMetric>* out,
                  std::vector<std::string>* errors);

// ---- vmstat (vmstat.cc): <proc>/vmstat -------------------------------------
std::unique_ptr<Collector> NewVmstatCollector(const HostPaths& paths);
bool ParseVmstat(std::string_view text, std::string_view source, std::vector<HostMetric>* out,
                 std::vector<std::string>* errors);
// node_exporter's default --collector.vmstat.fields, ^(oom_kill|pgpg|pswp|pg.*fault).*
bool IsExportedVmstatField(std::string_view field);

// ---- loadavg (loadavg.cc): <proc>/loadavg ("0.01 0.03 0.01 1/84 3525") ----
std::unique_ptr<Collector> NewLoadavgCollector(const HostPaths& paths);
bool ParseLoadavg(std::string_view text, std::string_view source, std::vector<HostMetric>* out,
                  std::vector<std::string>* errors);

// ---- pressure (pressure.cc): <proc>/pressure/{cpu,io,memory} ---------------
// A kernel without PSI (no <proc>/pressure, or EOPNOTSUPP when reading, as
// with psi=0) is not an error: the collector exports nothing and succeeds.
std::unique_ptr<Collector> NewPressureCollector(const HostPaths& paths);
// `resource` is "cpu", "io" or "memory".
bool ParsePressure(std::string_view text, std::string_view source, std::string_view resource,
                   std::vector<HostMetric>* out, std::vector<std::string>* errors);

// ---- diskstats (diskstats.cc): <proc>/diskstats ----------------------------
// Needs the 11 classic statistics per line; the discard (kernel 4.18+) and
// flush (5.5+) statistics are exported when the line has them.
std::unique_ptr<Collector> NewDiskstatsCollector(const HostPaths& paths);
bool ParseDiskstats(std::string_view text, std::string_view source, std::vector<HostMetric>* out,
                    std::vector<std::string>* errors);
// True for device names node_exporter 1.5 ignores by default:
// ^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$ — partitions of common
// disks, ram disks, loop and floppy devices.
bool IsIgnoredDiskDevice(std::string_view device);

// ---- netdev (netdev.cc): <proc>/net/dev ------------------------------------
// Skips the two "|"-separated header lines and accepts "eth0:1234 ..." as
// well as "  eth0: 1234 ...". Every interface, lo included (node_exporter
// 1.5's default; Debian's package excludes lo by default).
std::unique_ptr<Collector> NewNetdevCollector(const HostPaths& paths);
bool ParseNetDev(std::string_view text, std::string_view source, std::vector<HostMetric>* out,
                 std::vector<std::string>* errors);

// ---- filesystem (filesystem.cc): the mounts file and statvfs(3) -------------
// statvfs on a hung network filesystem can block; like the rest of the agent
// the collection is expected to run on a thread that may stall.
std::unique_ptr<Collector> NewFilesystemCollector(const HostPaths& paths);

// One line of a mounts file, with octal escapes already undone.
struct MountEntry {
  std::string device;
  std::string mount_point;
  std::string fstype;
  bool read_only = false;  // "ro" among the mount options
};
// Undoes the kernel's octal escaping in mounts files ("\040" is a space,
// "\134" a backslash). A backslash not followed by three octal digits is kept
// literally.
std::string UnescapeMountField(std::string_view field);
// Parses a file in /proc/self/mounts format. Lines need at least device,
// mount point, fstype and options; the mount point must be absolute.
std::vector<MountEntry> ParseMounts(std::string_view text, std::string_view source, std::vector<std::string>* errors);
// node_exporter's default --collector.filesystem.fs-types-exclude (autofs,
// proc, sysfs, overlay, squashfs, ...).
bool IsIgnoredFilesystemType(std::string_view fstype);
// node_exporter 1.5's default --collector.filesystem.mount-points-exclude,
// ^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)
// (Debian's package also excludes /run, /mnt and /media; sheaf keeps
// upstream's default, which dashboards are written against.)
bool IsIgnoredMountPoint(std::string_view mount_point);
// The mounts worth a statvfs call: when a mount point appears more than once
// only the last entry is kept (it is the one visible at that path), then
// ignored types and mount points are dropped. Order follows the input.
std::vector<MountEntry> SelectMounts(std::vector<MountEntry> mounts);

// ---- time (time.cc): the system clock --------------------------------------
std::unique_ptr<Collector> NewTimeCollector();

// ---- filefd (filefd.cc): <proc>/sys/fs/file-nr ("allocated unused max") ---
std::unique_ptr<Collector> NewFilefdCollector(const HostPaths& paths);
bool ParseFileNr(std::string_view text, std::string_view source, std::vector<HostMetric>* out,
                 std::vector<std::string>* errors);

// ---- process (process.cc): the agent itself, from <proc>/self ---------------
// Named as the Prometheus client libraries name their process collector's
// metrics. `page_size` converts resident pages to bytes.
std::unique_ptr<Collector> NewProcessCollector(const HostPaths& paths, double ticks_per_second, double page_size);

// The fields of /proc/<pid>/stat the process collector needs, in kernel
// units: clock ticks and bytes (vsize), pages (rss).
struct ProcessStat {
  uint64_t utime_ticks = 0;
  uint64_t stime_ticks = 0;
  uint64_t start_ticks = 0;  // since boot
  uint64_t virtual_bytes = 0;
  uint64_t resident_pages = 0;
};
// /proc/<pid>/stat is one line; the command name (field 2) is in parentheses
// and may itself contain spaces and ')', so fields are counted from the last
// ')'.
bool ParseProcessStat(std::string_view text, ProcessStat* stat);
// /proc/<pid>/limits: the soft limits "Max open files" and "Max address
// space" ("unlimited" is 2^64 - 1, as client_golang reports it).
bool ParseLimits(std::string_view text, double* max_open_files, double* max_address_space);

}  // namespace sheaf::agent

#endif  // SHEAF_AGENT_COLLECTORS_COLLECTORS_H_
