// What one collection of the agent's host collectors costs on this host: the
// CPU time of HostCollector::Collect() with every collector enabled, read
// from the real /proc and mounts. Items are metrics collected.
//
//   BM_CollectAll        every collector, per-CPU cpu series (the default)
//   BM_CollectOne/<i>    only collector i of HostCollectorNames(), to see
//                        which one costs what
//
// At a 10 s interval the agent's budget is 0.5% of a core, 50 ms of CPU per
// collection; this shows how far below it the collectors stay.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "agent/collectors/host_collector.h"

namespace sheaf::agent {
namespace {

void BM_CollectAll(benchmark::State& state) {
  HostCollector collector;
  std::vector<std::string> errors;
  size_t metrics = 0;
  for (auto _ : state) {
    errors.clear();
    std::vector<HostMetric> out = collector.Collect(&errors);
    metrics += out.size();
    benchmark::DoNotOptimize(out);
  }
  state.SetItemsProcessed(static_cast<int64_t>(metrics));
  state.counters["metrics"] = static_cast<double>(metrics) / static_cast<double>(state.iterations());
  state.counters["errors"] = static_cast<double>(errors.size());
}
BENCHMARK(BM_CollectAll)->Unit(benchmark::kMicrosecond);

void BM_CollectOne(benchmark::State& state) {
  const std::vector<std::string>& names = HostCollectorNames();
  const std::string& name = names.at(static_cast<size_t>(state.range(0)));
  HostCollectorOptions options;
  for (const std::string& other : names) {
    if (other != name) options.disabled.insert(other);
  }
  HostCollector collector(HostPaths{}, options);
  std::vector<std::string> errors;
  for (auto _ : state) {
    errors.clear();
    std::vector<HostMetric> out = collector.Collect(&errors);
    benchmark::DoNotOptimize(out);
  }
  state.SetLabel(name);
}
BENCHMARK(BM_CollectOne)->DenseRange(0, 11)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace sheaf::agent
