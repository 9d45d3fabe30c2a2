#include "daemon/store_collector.h"

#include <prometheus/metric_family.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

#include "storage/series_store.h"

namespace sheaf::daemon {
namespace {

prometheus::MetricFamily Gauge(const std::string& name, const std::string& help, double value) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = prometheus::MetricType::Gauge;
  prometheus::ClientMetric m;
  m.gauge.value = value;
  f.metric.push_back(m);
  return f;
}

prometheus::MetricFamily Counter(const std::string& name, const std::string& help, double value) {
  prometheus::MetricFamily f = Gauge(name, help, 0);
  f.type = prometheus::MetricType::Counter;
  f.metric[0].counter.value = value;
  return f;
}

void AddProcess(std::vector<prometheus::MetricFamily>& out) {
  // /proc/self/stat fields 14 and 15 (utime, stime, in ticks), 22
  // (starttime, ticks since boot) and 24 (rss, pages).
  std::ifstream stat("/proc/self/stat");
  std::string content((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  auto paren = content.rfind(')');
  if (paren == std::string::npos) return;
  std::istringstream fields(content.substr(paren + 2));
  std::vector<std::string> f;
  for (std::string s; fields >> s;) f.push_back(s);
  if (f.size() < 22) return;  // f[0] is field 3
  const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  out.push_back(Counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
                        (std::stod(f[11]) + std::stod(f[12])) / tick));
  out.push_back(Gauge("process_resident_memory_bytes", "Resident memory size in bytes.", std::stod(f[21]) * page));
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.starts_with("VmHWM:")) {
      out.push_back(Gauge("process_resident_memory_max_bytes", "Peak resident memory size in bytes.",
                          std::stod(line.substr(6)) * 1024));
    }
  }
}

}  // namespace

std::vector<prometheus::MetricFamily> StoreCollector::Collect() const {
  std::vector<prometheus::MetricFamily> out;
  storage::StoreStats st = store_->Stats();
  out.push_back(Gauge("sheaf_storage_series", "Series in the store.", st.series));
  out.push_back(Gauge("sheaf_storage_samples", "Samples in the store (distinct series and timestamp).", st.samples));
  out.push_back(Gauge("sheaf_storage_disk_bytes", "Bytes of live SST files and write-ahead log.", st.disk_bytes));
  out.push_back(Gauge("sheaf_storage_agents", "Agents with a recorded durable sequence.", st.agents));
  out.push_back(Gauge("sheaf_storage_agent_sets_cached",
                      "Agents whose applied sequences are held in memory (bounded by --max-cached-agent-sets).",
                      st.agent_sets_cached));
  out.push_back(Counter("sheaf_storage_agent_set_loads_total",
                        "Lookups of an agent's applied sequences that went to disk (not in memory, or a new agent).",
                        st.agent_set_loads));
  prometheus::MetricFamily families =
      Gauge("sheaf_storage_family_disk_bytes", "Live SST bytes by RocksDB column family.", 0);
  families.metric.clear();
  for (const auto& [name, bytes] : st.family_disk_bytes) {
    prometheus::ClientMetric m;
    m.label.push_back({"family", name});
    m.gauge.value = static_cast<double>(bytes);
    families.metric.push_back(m);
  }
  out.push_back(families);
  out.push_back(Gauge("sheaf_storage_wal_bytes", "Bytes of RocksDB write-ahead log files.", st.wal_bytes));
  out.push_back(Gauge("sheaf_storage_pending_compaction_bytes",
                      "Compaction debt: bytes RocksDB estimates it must compact.", st.pending_compaction_bytes));
  out.push_back(Counter("sheaf_storage_write_stalls_total", "Times writes were slowed or stopped for compaction.",
                        st.write_stalls));
  out.push_back(
      Gauge("sheaf_storage_head_samples", "Recent samples in memory, not yet cut into blocks.", st.head_samples));
  out.push_back(Gauge("sheaf_storage_memtable_bytes", "Bytes in RocksDB memtables (bounded by --write-buffer-bytes).",
                      st.memtable_bytes));
  out.push_back(
      Gauge("sheaf_storage_block_cache_bytes", "Bytes in use in the RocksDB block cache.", st.block_cache_bytes));
  out.push_back(Counter("sheaf_storage_cuts_total", "Times the in-memory heads were cut into blocks.", st.cuts));
  out.push_back(Counter("sheaf_storage_rollups_total", "Roll-up runs completed.", st.rollups));
  out.push_back(Counter("sheaf_storage_maintenance_failures_total",
                        "Cuts or roll-ups that failed (the last error is logged and in sheafctl stats).",
                        st.maintenance_failures));
  out.push_back(Gauge("sheaf_storage_maintenance_healthy",
                      "1 while background maintenance works, 0 after a failure until it works again.",
                      st.last_maintenance_error.empty() ? 1 : 0));
  out.push_back(
      Gauge("sheaf_storage_last_cut_seconds", "Duration of the last cut of heads into blocks.", st.last_cut_seconds));
  out.push_back(
      Gauge("sheaf_storage_last_rollup_seconds", "Duration of the last roll-up run.", st.last_rollup_seconds));
  out.push_back(Gauge("sheaf_storage_writable",
                      "1 while the store accepts writes, 0 while the disk refuses them (full, I/O error).",
                      st.writable ? 1 : 0));
  out.push_back(Gauge("sheaf_storage_disk_free_bytes",
                      "Space available on the data directory's filesystem; ingestion pauses below "
                      "--min-free-disk-bytes.",
                      static_cast<double>(st.disk_free_bytes)));
  out.push_back(Gauge("sheaf_storage_disk_size_bytes", "Size of the data directory's filesystem.",
                      static_cast<double>(st.disk_total_bytes)));
  AddProcess(out);
  return out;
}

}  // namespace sheaf::daemon
