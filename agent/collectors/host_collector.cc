#include "agent/collectors/host_collector.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <functional>
#include <string>
#include <utility>

#include "agent/collectors/collectors.h"
#include "agent/collectors/proc_text.h"
#include "fmt/format.h"

namespace sheaf::agent {

namespace {

// Conventional values; only used if sysconf cannot tell us.
constexpr double kDefaultTicksPerSecond = 100.0;
constexpr double kDefaultPageSize = 4096.0;

double SysconfOr(int name, double fallback) {
  const long v = ::sysconf(name);
  return v > 0 ? static_cast<double>(v) : fallback;
}

struct Config {
  const HostPaths& paths;
  const HostCollectorOptions& options;
  double ticks_per_second;
  double page_size;
};

struct Entry {
  std::string name;
  std::function<std::unique_ptr<Collector>(const Config&)> make;
};

// The registry: every collector, in the order they run.
const std::vector<Entry>& Registry() {
  static const std::vector<Entry>* registry = new std::vector<Entry>{
      {"cpu", [](const Config& c) { return NewCpuCollector(c.paths, c.ticks_per_second, c.options.cpu_per_cpu); }},
      {"stat", [](const Config& c) { return NewStatCollector(c.paths); }},
      {"meminfo", [](const Config& c) { return NewMeminfoCollector(c.paths); }},
      {"vmstat", [](const Config& c) { return NewVmstatCollector(c.paths); }},
      {"loadavg", [](const Config& c) { return NewLoadavgCollector(c.paths); }},
      {"pressure", [](const Config& c) { return NewPressureCollector(c.paths); }},
      {"diskstats", [](const Config& c) { return NewDiskstatsCollector(c.paths); }},
      {"netdev", [](const Config& c) { return NewNetdevCollector(c.paths); }},
      {"filesystem", [](const Config& c) { return NewFilesystemCollector(c.paths); }},
      {"time", [](const Config&) { return NewTimeCollector(); }},
      {"filefd", [](const Config& c) { return NewFilefdCollector(c.paths); }},
      {"process", [](const Config& c) { return NewProcessCollector(c.paths, c.ticks_per_second, c.page_size); }},
  };
  return *registry;
}

}  // namespace

const std::vector<std::string>& HostCollectorNames() {
  static const std::vector<std::string>* names = [] {
    auto* v = new std::vector<std::string>;
    for (const Entry& e : Registry()) v->push_back(e.name);
    return v;
  }();
  return *names;
}

absl::Status ValidateHostCollectorOptions(const HostCollectorOptions& options) {
  const std::vector<std::string>& known = HostCollectorNames();
  for (const std::string& name : options.disabled) {
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      std::string list;
      for (const std::string& k : known) list.append(list.empty() ? "" : ", ").append(k);
      return absl::InvalidArgumentError(fmt::format("unknown collector \"{}\"; the collectors are: {}", name, list));
    }
  }
  return absl::OkStatus();
}

HostCollector::HostCollector(HostPaths paths, HostCollectorOptions options) {
  const Config config{paths, options, SysconfOr(_SC_CLK_TCK, kDefaultTicksPerSecond),
                      SysconfOr(_SC_PAGESIZE, kDefaultPageSize)};
  for (const Entry& e : Registry()) {
    if (!options.disabled.contains(e.name)) collectors_.push_back(e.make(config));
  }
}

HostCollector::~HostCollector() = default;
HostCollector::HostCollector(HostCollector&&) = default;
HostCollector& HostCollector::operator=(HostCollector&&) = default;

std::vector<std::string_view> HostCollector::enabled() const {
  std::vector<std::string_view> names;
  for (const auto& c : collectors_) names.push_back(c->name());
  return names;
}

std::vector<HostMetric> HostCollector::Collect(std::vector<std::string>* errors) {
  std::vector<HostMetric> out;
  out.reserve(last_count_);
  reader_.NewRound();
  // The per-collector figures are appended after all collectors ran, so a
  // collector that throws cannot take them with it.
  struct Outcome {
    std::string_view name;
    bool ok;
    double seconds;
  };
  std::vector<Outcome> outcomes;
  outcomes.reserve(collectors_.size());
  for (const auto& collector : collectors_) {
    const size_t before = out.size();
    const auto start = std::chrono::steady_clock::now();
    bool ok = false;
    try {
      ok = collector->Collect(reader_, &out, errors);
    } catch (const std::exception& e) {
      out.resize(before);
      proc_text::AddError(errors, fmt::format("{} collector failed: {}", collector->name(), e.what()));
    } catch (...) {
      out.resize(before);
      proc_text::AddError(errors, fmt::format("{} collector failed", collector->name()));
    }
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
    outcomes.push_back({collector->name(), ok, took.count()});
  }
  try {
    for (const Outcome& o : outcomes) {
      proc_text::Emit(&out, "node_scrape_collector_success", {{"collector", std::string(o.name)}}, MetricKind::kGauge,
                      o.ok ? 1 : 0);
      proc_text::Emit(&out, "node_scrape_collector_duration_seconds", {{"collector", std::string(o.name)}},
                      MetricKind::kGauge, o.seconds);
    }
  } catch (const std::exception& e) {
    proc_text::AddError(errors, fmt::format("collector figures not exported: {}", e.what()));
  }
  last_count_ = out.size();
  return out;
}

}  // namespace sheaf::agent
