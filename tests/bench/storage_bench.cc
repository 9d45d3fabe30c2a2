// Storage-layer benchmarks on the realistic fleet (tools/fleet_generator.h):
// the append path (durable WriteBatch writes, WAL on, counted per second of
// the whole process's CPU, background compaction included), series
// selection by matchers, and range reads.
//   ./build/tests/bench/storage_bench --benchmark_repetitions=3
#include <benchmark/benchmark.h>

#include "model/labels.h"
#include "storage/series_store.h"
#include "tests/support/temp_dir.h"
#include "tools/fleet_generator.h"

namespace sheaf::storage {
namespace {

constexpr int64_t kStart = 1'800'000'000'000;

struct Fleet {
  explicit Fleet(int hosts, int points) {
    tools::FleetOptions o;
    o.hosts = hosts;
    o.points = points;
    o.start_ms = kStart;
    gen = std::make_unique<tools::FleetGenerator>(o);
  }
  std::unique_ptr<tools::FleetGenerator> gen;
};

std::unique_ptr<SeriesStore> OpenStore(const std::string& path, bool sync) {
  StoreOptions o;
  o.path = path;
  o.sync = sync;
  o.now_ms = [] { return kStart; };
  auto s = SeriesStore::Open(o);
  if (!s.ok()) std::abort();
  return *std::move(s);
}

std::vector<SeriesId> CreateSeries(SeriesStore& store, const tools::FleetGenerator& gen) {
  std::vector<SeriesId> ids;
  for (const auto& s : gen.series()) {
    Labels l;
    for (const auto& [n, v] : s.labels) l.push_back({n, v});
    auto id = store.GetOrCreateSeries(
        l, s.kind == tools::FleetMetricKind::kCounter ? MetricType::kCounter : MetricType::kGauge);
    if (!id.ok()) std::abort();
    ids.push_back(*id);
  }
  return ids;
}

// Every point of the fleet in batches of `batch` samples, as agents send them
// (one sample per series per batch), each batch one durable Append.
void AppendFleet(SeriesStore& store, tools::FleetGenerator& gen, const std::vector<SeriesId>& ids, int points,
                 size_t batch) {
  AppendBatch b{"bench", 0, {}};
  for (int p = 0; p < points; ++p) {
    for (size_t i = 0; i < ids.size(); ++i) {
      b.series.push_back({ids[i], {{gen.TimestampMs(p), gen.Value(i, p)}}});
      if (b.series.size() == batch) {
        ++b.sequence;
        if (!store.Append(b).ok()) std::abort();
        b.series.clear();
      }
    }
  }
  if (!b.series.empty()) {
    ++b.sequence;
    if (!store.Append(b).ok()) std::abort();
  }
}

// The default fleet's shape, 1000 hosts x 10 series x `points` points.
void BM_AppendFleet(benchmark::State& state) {
  const int points = static_cast<int>(state.range(0));
  const bool sync = state.range(1) != 0;
  for (auto _ : state) {
    state.PauseTiming();
    testing::TempDir dir;
    auto store = OpenStore(dir.Sub("db"), sync);
    Fleet fleet(1000, points);
    auto ids = CreateSeries(*store, *fleet.gen);
    // Values are generated ahead so only the store is measured.
    std::vector<std::vector<double>> values(ids.size(), std::vector<double>(points));
    for (int p = 0; p < points; ++p) {
      for (size_t i = 0; i < ids.size(); ++i) values[i][p] = fleet.gen->Value(i, p);
    }
    std::vector<AppendBatch> batches;
    AppendBatch b{"bench", 0, {}};
    for (int p = 0; p < points; ++p) {
      for (size_t i = 0; i < ids.size(); ++i) {
        b.series.push_back({ids[i], {{fleet.gen->TimestampMs(p), values[i][p]}}});
        if (b.series.size() == 2000) {
          ++b.sequence;
          batches.push_back(b);
          b.series.clear();
        }
      }
    }
    state.ResumeTiming();
    for (const auto& batch : batches) {
      if (!store->Append(batch).ok()) std::abort();
    }
    if (!store->Flush().ok()) std::abort();  // the heads' cut into blocks is part of ingest
    state.PauseTiming();
    store.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * 10'000 * points);
}
BENCHMARK(BM_AppendFleet)
    ->Args({360, 1})
    ->Args({360, 0})
    ->MeasureProcessCPUTime()
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1);

class StoreFixture {
 public:
  StoreFixture() : fleet_(1000, 360) {
    store_ = OpenStore(dir_.Sub("db"), false);
    ids_ = CreateSeries(*store_, *fleet_.gen);
    AppendFleet(*store_, *fleet_.gen, ids_, 360, 2000);
    if (!store_->Compact().ok()) std::abort();
  }
  SeriesStore& store() { return *store_; }
  const std::vector<SeriesId>& ids() const { return ids_; }

 private:
  testing::TempDir dir_;
  Fleet fleet_;
  std::unique_ptr<SeriesStore> store_;
  std::vector<SeriesId> ids_;
};

StoreFixture& Shared() {
  static StoreFixture* f = new StoreFixture();
  return *f;
}

void BM_SelectByMatchers(benchmark::State& state) {
  static const char* kSelectors[] = {
      R"(node_cpu_seconds_total{host="host-0042"})",      // two postings intersected
      R"(node_load1)",                                    // one posting, 1000 series
      R"({host=~"host-00[0-4].*", region="eu-west-1"})",  // posting + regex filter
  };
  auto matchers = model::ParseSelector(kSelectors[state.range(0)]);
  if (!matchers.ok()) std::abort();
  auto& store = Shared().store();
  size_t n = 0;
  for (auto _ : state) {
    auto ids = store.Select(*matchers);
    n = ids->size();
    benchmark::DoNotOptimize(ids);
  }
  state.SetLabel(std::string(kSelectors[state.range(0)]) + " -> " + std::to_string(n) + " series");
}
BENCHMARK(BM_SelectByMatchers)->DenseRange(0, 2);

void BM_ReadSeriesRange(benchmark::State& state) {
  auto& f = Shared();
  size_t i = 0;
  int64_t samples = 0;
  for (auto _ : state) {
    SeriesId id = f.ids()[i++ % f.ids().size()];
    for (auto it = f.store().Read(id, kStart, kStart + 3600'000); it->Valid(); it->Next()) {
      benchmark::DoNotOptimize(it->sample());
      ++samples;
    }
  }
  state.SetItemsProcessed(samples);
}
BENCHMARK(BM_ReadSeriesRange);

void BM_ReadRollupHour(benchmark::State& state) {
  auto& f = Shared();
  size_t i = 0;
  for (auto _ : state) {
    auto w = f.store().ReadRollup(f.ids()[i++ % f.ids().size()], 60'000, kStart, kStart + 3600'000);
    benchmark::DoNotOptimize(w);
  }
}
BENCHMARK(BM_ReadRollupHour);

}  // namespace
}  // namespace sheaf::storage
