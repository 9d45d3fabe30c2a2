// Host metrics for sheaf-agent: runs the enabled host collectors
// (agent/collectors/collectors.h, one file each) and returns their metrics
// under node_exporter 1.5's names, label names and units, so dashboards and
// alerts written for node_exporter work unchanged against data shipped by
// sheaf-agent. tests/agent/collectors/node_exporter_compat_test.cc checks
// this against Debian's prometheus-node-exporter on the same host.
//
// Collectors (named as node_exporter names them) and what they export:
//   cpu         <proc>/stat: node_cpu_seconds_total{cpu,mode} (modes user,
//               nice, system, idle, iowait, irq, softirq, steal; ticks /
//               USER_HZ), node_cpu_guest_seconds_total{cpu,mode} (user,
//               nice). With cpu_per_cpu off: the same without the cpu label,
//               from the host-wide line.
//   stat        <proc>/stat: node_boot_time_seconds,
//               node_context_switches_total, node_intr_total,
//               node_forks_total, node_procs_running, node_procs_blocked.
//   meminfo     <proc>/meminfo: node_memory_<Field>_bytes for every "kB"
//               field (value * 1024; swap as node_memory_SwapTotal_bytes,
//               SwapFree_bytes, SwapCached_bytes), node_memory_<Field> for
//               unitless ones (HugePages_*); "Active(anon)" becomes
//               "Active_anon".
//   vmstat      <proc>/vmstat: node_vmstat_<field> for oom_kill, pgpgin,
//               pgpgout, pswpin, pswpout, pgfault, pgmajfault (node_exporter's
//               default fields ^(oom_kill|pgpg|pswp|pg.*fault).*).
//   loadavg     <proc>/loadavg: node_load1, node_load5, node_load15.
//   pressure    <proc>/pressure/{cpu,io,memory}:
//               node_pressure_cpu_waiting_seconds_total,
//               node_pressure_{io,memory}_{waiting,stalled}_seconds_total
//               ("some" and "full" totals, µs / 1e6). Nothing, and no error,
//               on a kernel without PSI.
//   diskstats   <proc>/diskstats, per device{device} except partitions, ram,
//               loop and fd devices (node_exporter's default exclusion):
//               node_disk_{reads,writes}_completed_total,
//               node_disk_{reads,writes}_merged_total,
//               node_disk_read_bytes_total, node_disk_written_bytes_total
//               (sectors * 512), node_disk_{read,write}_time_seconds_total,
//               node_disk_io_now, node_disk_io_time_seconds_total,
//               node_disk_io_time_weighted_seconds_total; when the kernel
//               has them: node_disk_discards_{completed,merged}_total,
//               node_disk_discarded_sectors_total,
//               node_disk_discard_time_seconds_total,
//               node_disk_flush_requests_total,
//               node_disk_flush_requests_time_seconds_total.
//   netdev      <proc>/net/dev, per interface{device}:
//               node_network_receive_{bytes,packets,errs,drop,fifo,frame,
//               compressed,multicast}_total and node_network_transmit_{bytes,
//               packets,errs,drop,fifo,colls,carrier,compressed}_total.
//   filesystem  <mounts> + statvfs, per real mount{device,fstype,mountpoint}
//               (pseudo filesystem types and /dev, /proc, /sys, ... skipped as
//               node_exporter skips them): node_filesystem_{size,free,avail}
//               _bytes, node_filesystem_files, node_filesystem_files_free,
//               node_filesystem_readonly, node_filesystem_device_error (1 and
//               no sizes when statvfs fails).
//   time        the clock: node_time_seconds,
//               node_time_zone_offset_seconds{time_zone}.
//   filefd      <proc>/sys/fs/file-nr: node_filefd_allocated,
//               node_filefd_maximum.
//   process     the agent itself, <proc>/self/{stat,limits,fd}:
//               process_cpu_seconds_total, process_resident_memory_bytes,
//               process_virtual_memory_bytes,
//               process_virtual_memory_max_bytes, process_open_fds,
//               process_max_fds, process_start_time_seconds.
// And for every collector that ran:
//   node_scrape_collector_success{collector}           1, or 0 when it failed
//   node_scrape_collector_duration_seconds{collector}  its run time
// A failing collector's problem is otherwise only an error line the agent
// logs; exported, it can be graphed and alerted on per host like any
// node_exporter's, and the durations show what a collection costs.
//
// Uses only the C++ standard library, POSIX and the model library: no gRPC,
// no protobuf.
#ifndef SHEAF_AGENT_COLLECTORS_HOST_COLLECTOR_H_
#define SHEAF_AGENT_COLLECTORS_HOST_COLLECTOR_H_

#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "agent/collectors/collector.h"
#include "agent/collectors/metric.h"

namespace sheaf::agent {

struct HostCollectorOptions {
  // Names from HostCollectorNames() not to run, e.g. {"filesystem"} on a host
  // whose network mounts hang statvfs. Check with
  // ValidateHostCollectorOptions() first: unknown names are ignored here.
  std::set<std::string> disabled;
  // node_cpu_seconds_total per CPU, as node_exporter exports it, or
  // host-wide (no cpu label) for hosts with many CPUs.
  bool cpu_per_cpu = true;
};

// Every collector's name, in the order they run.
const std::vector<std::string>& HostCollectorNames();

// OK, or INVALID_ARGUMENT naming the first unknown collector in `disabled`
// and listing the known ones.
absl::Status ValidateHostCollectorOptions(const HostCollectorOptions& options);

// Thread-compatible: Collect keeps buffers between calls (so a steady-state
// collection reads its files without allocating), so one call at a time.
class HostCollector {
 public:
  explicit HostCollector(HostPaths paths = {}, HostCollectorOptions options = {});
  ~HostCollector();
  HostCollector(HostCollector&&);
  HostCollector& operator=(HostCollector&&);

  // Runs every enabled collector once, in HostCollectorNames() order. A
  // collector that cannot read or parse its source adds a human-readable line
  // naming the file and the problem to *errors (errors may be nullptr) and
  // the others go on. Malformed lines inside an otherwise readable file are
  // skipped (one error line per file summarises them) while the file's good
  // lines are still exported. Never throws (a collector that throws, in
  // practice only bad_alloc, loses its own output and reports an error line),
  // never aborts on malformed input.
  //
  // statvfs on a hung network filesystem can block; like the rest of the
  // agent this call is expected to run on a thread that may stall.
  std::vector<HostMetric> Collect(std::vector<std::string>* errors);

  // The names of the collectors this one runs, in order.
  std::vector<std::string_view> enabled() const;

 private:
  std::vector<std::unique_ptr<Collector>> collectors_;
  SourceReader reader_;
  size_t last_count_ = 0;  // metrics of the previous collection, to reserve
};

}  // namespace sheaf::agent

#endif  // SHEAF_AGENT_COLLECTORS_HOST_COLLECTOR_H_
