// PromQL evaluation in the engine alone (no gRPC), on sheaf-loadgen's
// default fleet (tools/fleet_generator.h: 1000 hosts x 10 series x 360
// points at 10 s, 4,000 node_cpu_seconds_total series):
//   - BM_FleetCpuRate: the peers' query, sum by (region)
//     (rate(node_cpu_seconds_total[1m])) over the hour at a 60 s step, from
//     the in-memory head and from blocks;
//   - BM_ThirtyDays: a 30-day range at a 1 h step over rollups, for a
//     smaller fleet (50 hosts x 10 series at 5 min), with the samples and
//     windows each evaluation read as counters.
//   ./build/tests/bench/promql_bench --benchmark_repetitions=5
//   (docs/BENCHMARKS.md has the figures and the machine.)
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "model/labels.h"
#include "promql/engine.h"
#include "storage/series_store.h"
#include "tests/support/temp_dir.h"
#include "tools/fleet_generator.h"

namespace sheaf::promql {
namespace {

constexpr int64_t kStart = 1'800'000'000'000;
constexpr int64_t kHour = 3'600'000;
constexpr int64_t kDay = 24 * kHour;

struct LoadedFleet {
  LoadedFleet(int hosts, int points, int64_t interval_ms, int64_t now_ms, bool flush) {
    tools::FleetOptions fo;
    fo.hosts = hosts;
    fo.points = points;
    fo.interval_ms = interval_ms;
    fo.start_ms = kStart;
    tools::FleetGenerator gen(fo);
    storage::StoreOptions o;
    o.path = dir.Sub("db");
    o.sync = false;
    o.now_ms = [now_ms] { return now_ms; };
    o.raw_retention_ms = 60 * kDay;
    o.maintenance_interval_ms = 50;
    o.max_head_samples = 50'000'000;
    store = *storage::SeriesStore::Open(o);
    std::vector<storage::SeriesId> ids;
    for (const auto& s : gen.series()) {
      model::Labels l;
      for (const auto& [n, v] : s.labels) l.push_back({n, v});
      ids.push_back(*store->GetOrCreateSeries(
          l, s.kind == tools::FleetMetricKind::kCounter ? model::MetricType::kCounter : model::MetricType::kGauge));
    }
    // One series' points per append: the same store, built fast.
    for (size_t i = 0; i < ids.size(); ++i) {
      storage::AppendBatch b;
      b.series.push_back({ids[i], {}});
      for (int p = 0; p < points; ++p) b.series[0].samples.push_back({gen.TimestampMs(p), gen.Value(i, p)});
      if (!store->Append(b).ok()) std::abort();
    }
    if (flush && !store->Flush().ok()) std::abort();
  }
  sheaf::testing::TempDir dir;
  std::unique_ptr<storage::SeriesStore> store;
};

double ProcessCpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

void RunQuery(benchmark::State& state, storage::SeriesStore* store, const std::string& q, int64_t start, int64_t end,
              int64_t step, size_t read_threads = EngineOptions{}.read_threads) {
  EngineOptions options;
  options.read_threads = read_threads;
  Engine engine(store, options);
  QueryParams p;
  p.start_ms = start;
  p.end_ms = end;
  p.step_ms = step;
  QueryStats stats;
  // CPU of every thread (the evaluation and its readers), per query: on a
  // shared machine a steadier figure than wall time.
  const double cpu_before = ProcessCpuSeconds();
  for (auto _ : state) {
    auto r = engine.Query(q, p);
    if (!r.ok()) {
      state.SkipWithError(std::string(r.status().message()).c_str());
      return;
    }
    stats = r->stats;
    benchmark::DoNotOptimize(r->series.data());
  }
  state.counters["process_cpu_ms"] =
      1000 * (ProcessCpuSeconds() - cpu_before) / static_cast<double>(std::max<int64_t>(state.iterations(), 1));
  state.counters["series_read"] = static_cast<double>(stats.series_selected);
  state.counters["samples_read"] = static_cast<double>(stats.samples_read);
  state.counters["windows_read"] = static_cast<double>(stats.windows_read);
  state.counters["points"] = static_cast<double>(stats.points_returned);
  state.counters["rollup_ms"] = static_cast<double>(stats.rollup_resolution_ms);
}

void BM_FleetCpuRate(benchmark::State& state) {
  static LoadedFleet* head = new LoadedFleet(1000, 360, 10'000, kStart + kHour, false);
  static LoadedFleet* blocks = new LoadedFleet(1000, 360, 10'000, kStart + kHour, true);
  LoadedFleet* fleet = state.range(0) ? blocks : head;
  RunQuery(state, fleet->store.get(), "sum by (region) (rate(node_cpu_seconds_total[1m]))", kStart, kStart + kHour,
           60'000);
}
BENCHMARK(BM_FleetCpuRate)->ArgName("blocks")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

// The same from blocks with 1, 2 and 3 reader threads (the engine's
// default is 2): how the work spreads over this machine's cores.
void BM_FleetCpuRateReaders(benchmark::State& state) {
  static LoadedFleet* blocks = new LoadedFleet(1000, 360, 10'000, kStart + kHour, true);
  RunQuery(state, blocks->store.get(), "sum by (region) (rate(node_cpu_seconds_total[1m]))", kStart, kStart + kHour,
           60'000, static_cast<size_t>(state.range(0)));
}
BENCHMARK(BM_FleetCpuRateReaders)->ArgName("readers")->Arg(1)->Arg(2)->Arg(3)->Unit(benchmark::kMillisecond);

// The same series and samples read, almost nothing computed: what reading costs.
void BM_FleetReadOnly(benchmark::State& state) {
  static LoadedFleet* blocks = new LoadedFleet(1000, 360, 10'000, kStart + kHour, true);
  RunQuery(state, blocks->store.get(), "count_over_time(node_cpu_seconds_total[61m])", kStart + kHour, kStart + kHour,
           0);
}
BENCHMARK(BM_FleetReadOnly)->Unit(benchmark::kMillisecond);

void BM_ThirtyDays(benchmark::State& state) {
  static LoadedFleet* fleet = [] {
    const int points = static_cast<int>(30 * kDay / 300'000);
    auto* f = new LoadedFleet(50, points, 300'000, kStart + 33 * kDay, true);
    // Wait for the background roll-up of everything older than 2 days.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(5);
    while (f->store->Stats().rolled_up_until_ms < kStart + 30 * kDay - 2 * kHour &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return f;
  }();
  const char* q = state.range(0) == 0 ? "sum by (region) (rate(node_cpu_seconds_total[1h]))"
                                      : "max by (region) (max_over_time(node_load1[1h]))";
  RunQuery(state, fleet->store.get(), q, kStart + kHour, kStart + 30 * kDay, kHour);
}
BENCHMARK(BM_ThirtyDays)->ArgName("query")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace sheaf::promql
