#include "daemon/daemon_metrics.h"

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

#include "model/validation.h"
#include "sheaf_version.h"
#include "storage/series_store.h"

namespace sheaf::daemon {
namespace {

const char* GrpcCodeName(int code) {
  static constexpr const char* kNames[] = {
      "OK",           "CANCELLED",          "UNKNOWN",        "INVALID_ARGUMENT",
      "DEADLINE_EXCEEDED", "NOT_FOUND",     "ALREADY_EXISTS", "PERMISSION_DENIED",
      "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
      "UNIMPLEMENTED", "INTERNAL",          "UNAVAILABLE",    "DATA_LOSS",
      "UNAUTHENTICATED"};
  return code >= 0 && code <= 16 ? kNames[code] : "UNKNOWN";
}

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

// Storage and process figures, read when scraped rather than copied into
// gauges on every change.
class ScrapeTimeCollectable : public prometheus::Collectable {
 public:
  explicit ScrapeTimeCollectable(storage::SeriesStore* store) : store_(store) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    std::vector<prometheus::MetricFamily> out;
    storage::StoreStats st = store_->Stats();
    out.push_back(Gauge("sheaf_storage_series", "Series in the store.", st.series));
    out.push_back(Gauge("sheaf_storage_samples", "Samples in the store (distinct series and timestamp).", st.samples));
    out.push_back(Gauge("sheaf_storage_disk_bytes", "Bytes of live SST files and write-ahead log.", st.disk_bytes));
    out.push_back(Gauge("sheaf_storage_agents", "Agents with a recorded durable sequence.", st.agents));
    prometheus::MetricFamily families = Gauge("sheaf_storage_family_disk_bytes",
                                              "Live SST bytes by RocksDB column family.", 0);
    families.metric.clear();
    for (const auto& [name, bytes] : st.family_disk_bytes) {
      prometheus::ClientMetric m;
      m.label.push_back({"family", name});
      m.gauge.value = static_cast<double>(bytes);
      families.metric.push_back(m);
    }
    out.push_back(families);
    out.push_back(Gauge("sheaf_storage_wal_bytes", "Bytes of RocksDB write-ahead log files.", st.wal_bytes));
    out.push_back(Gauge("sheaf_storage_pending_compaction_bytes", "Compaction debt: bytes RocksDB estimates it must compact.",
                        st.pending_compaction_bytes));
    out.push_back(Counter("sheaf_storage_write_stalls_total", "Times writes were slowed or stopped for compaction.",
                          st.write_stalls));
    out.push_back(Gauge("sheaf_storage_head_samples", "Recent samples in memory, not yet cut into blocks.", st.head_samples));
    out.push_back(Gauge("sheaf_storage_memtable_bytes", "Bytes in RocksDB memtables (bounded by --write-buffer-bytes).",
                        st.memtable_bytes));
    out.push_back(Gauge("sheaf_storage_block_cache_bytes", "Bytes in use in the RocksDB block cache.", st.block_cache_bytes));
    AddProcess(out);
    return out;
  }

 private:
  static void AddProcess(std::vector<prometheus::MetricFamily>& out) {
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

  storage::SeriesStore* store_;
};

}  // namespace

struct DaemonMetrics::Impl {
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  std::shared_ptr<prometheus::Collectable> scrape;
  prometheus::Counter* samples = nullptr;
  prometheus::Counter* series = nullptr;
  prometheus::Counter* batches_applied = nullptr;
  prometheus::Counter* batches_duplicate = nullptr;
  prometheus::Family<prometheus::Counter>* rejected_series = nullptr;
  prometheus::Family<prometheus::Counter>* rejected_samples = nullptr;
  prometheus::Family<prometheus::Counter>* stream_errors = nullptr;
  prometheus::Family<prometheus::Counter>* handled = nullptr;
  prometheus::Family<prometheus::Histogram>* latency = nullptr;
  prometheus::Gauge* queue_depth = nullptr;

  std::mutex mu;  // guards the caches below
  std::map<std::pair<std::string, int>, prometheus::Counter*> handled_cache;
  std::map<std::string, prometheus::Histogram*> latency_cache;
};

DaemonMetrics::DaemonMetrics(storage::SeriesStore* store) : impl_(std::make_unique<Impl>()) {
  auto& r = *impl_->registry;
  impl_->scrape = std::make_shared<ScrapeTimeCollectable>(store);
  impl_->samples = &prometheus::BuildCounter()
                        .Name("sheaf_ingest_samples_total")
                        .Help("Samples stored by ingestion (new series and timestamp pairs).")
                        .Register(r)
                        .Add({});
  impl_->series = &prometheus::BuildCounter()
                       .Name("sheaf_ingest_series_total")
                       .Help("Series entries received in applied batches, valid or not.")
                       .Register(r)
                       .Add({});
  auto& batches = prometheus::BuildCounter()
                      .Name("sheaf_ingest_batches_total")
                      .Help("Batches received, by result: applied, or duplicate (already durable, not applied again).")
                      .Register(r);
  impl_->batches_applied = &batches.Add({{"result", "applied"}});
  impl_->batches_duplicate = &batches.Add({{"result", "duplicate"}});
  impl_->rejected_series = &prometheus::BuildCounter()
                                .Name("sheaf_ingest_rejected_series_total")
                                .Help("Series rejected by validation or limits, by reason.")
                                .Register(r);
  impl_->rejected_samples = &prometheus::BuildCounter()
                                 .Name("sheaf_ingest_rejected_samples_total")
                                 .Help("Samples in rejected series, by reason.")
                                 .Register(r);
  // Every reason exists from the start at 0, so rate() and alerts work
  // before the first rejection.
  for (int i = 1; i <= model::kMaxRejectReason; ++i) {
    std::string reason(model::ReasonName(static_cast<model::RejectReason>(i)));
    impl_->rejected_series->Add({{"reason", reason}});
    impl_->rejected_samples->Add({{"reason", reason}});
  }
  impl_->stream_errors = &prometheus::BuildCounter()
                              .Name("sheaf_ingest_stream_errors_total")
                              .Help("Push streams ended with an error, by gRPC code.")
                              .Register(r);
  impl_->handled = &prometheus::BuildCounter()
                        .Name("sheaf_grpc_server_handled_total")
                        .Help("gRPC calls completed on the server, by service, method and status code.")
                        .Register(r);
  impl_->latency = &prometheus::BuildHistogram()
                        .Name("sheaf_grpc_server_handling_seconds")
                        .Help("Time from the start of a gRPC call to its status, by service and method.")
                        .Register(r);
  impl_->queue_depth = &prometheus::BuildGauge()
                            .Name("sheaf_ingest_queue_depth")
                            .Help("Batches waiting for an ingest worker.")
                            .Register(r)
                            .Add({});
  prometheus::BuildGauge()
      .Name("sheaf_build_info")
      .Help("Always 1; the version is a label.")
      .Register(r)
      .Add({{"version", SHEAF_VERSION}})
      .Set(1);
}

DaemonMetrics::~DaemonMetrics() = default;

std::shared_ptr<prometheus::Registry> DaemonMetrics::registry() const { return impl_->registry; }
std::shared_ptr<prometheus::Collectable> DaemonMetrics::storage_collectable() const { return impl_->scrape; }

void DaemonMetrics::BatchApplied(uint64_t samples_stored, uint64_t series_received) {
  impl_->batches_applied->Increment();
  impl_->samples->Increment(static_cast<double>(samples_stored));
  impl_->series->Increment(static_cast<double>(series_received));
}

void DaemonMetrics::BatchDuplicate() { impl_->batches_duplicate->Increment(); }

void DaemonMetrics::Rejected(model::RejectReason reason, uint64_t series, uint64_t samples) {
  std::string name(model::ReasonName(reason));
  impl_->rejected_series->Add({{"reason", name}}).Increment(static_cast<double>(series));
  impl_->rejected_samples->Add({{"reason", name}}).Increment(static_cast<double>(samples));
}

void DaemonMetrics::StreamFailed(int grpc_code) {
  impl_->stream_errors->Add({{"grpc_code", GrpcCodeName(grpc_code)}}).Increment();
}

void DaemonMetrics::RpcHandled(std::string_view full_method, int grpc_code, double seconds) {
  prometheus::Counter* counter;
  prometheus::Histogram* histogram;
  {
    std::lock_guard lock(impl_->mu);
    std::string method(full_method);
    auto key = std::make_pair(method, grpc_code);
    auto it = impl_->handled_cache.find(key);
    // "/sheaf.v1.QueryService/Query" -> service and method labels.
    std::string_view m = full_method;
    if (m.starts_with('/')) m.remove_prefix(1);
    auto slash = m.find('/');
    std::string service(slash == std::string_view::npos ? m : m.substr(0, slash));
    std::string name(slash == std::string_view::npos ? "" : m.substr(slash + 1));
    if (it == impl_->handled_cache.end()) {
      counter = &impl_->handled->Add(
          {{"grpc_service", service}, {"grpc_method", name}, {"grpc_code", GrpcCodeName(grpc_code)}});
      impl_->handled_cache.emplace(key, counter);
    } else {
      counter = it->second;
    }
    auto hit = impl_->latency_cache.find(method);
    if (hit == impl_->latency_cache.end()) {
      histogram = &impl_->latency->Add(
          {{"grpc_service", service}, {"grpc_method", name}},
          prometheus::Histogram::BucketBoundaries{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                  0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300});
      impl_->latency_cache.emplace(method, histogram);
    } else {
      histogram = hit->second;
    }
  }
  counter->Increment();
  histogram->Observe(seconds);
}

void DaemonMetrics::SetIngestQueueDepth(int64_t depth) { impl_->queue_depth->Set(static_cast<double>(depth)); }

}  // namespace sheaf::daemon
