// Storage-layer benchmarks on the realistic fleet (tools/fleet_generator.h):
// the append path (durable WriteBatch writes, WAL on, counted per second of
// the whole process's CPU, background compaction included), series
// selection by matchers (also over 100,000 series with a regex on a label
// of few values), and range reads.
//   ./build/tests/bench/storage_bench --benchmark_repetitions=3
#include <benchmark/benchmark.h>

#include <functional>

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

// Every point of `points` for every series, sample(i, p) for series ids[i]
// at point p, as copies of `batch` (its series filled in) of 2000 samples,
// one sample per series each, as agents send them.
std::vector<AppendBatch> FleetBatches(const std::vector<SeriesId>& ids, int points,
                                      const std::function<Sample(size_t, int)>& sample, AppendBatch batch) {
  std::vector<AppendBatch> batches;
  for (int p = 0; p < points; ++p) {
    for (size_t i = 0; i < ids.size(); ++i) {
      batch.series.push_back({ids[i], {sample(i, p)}});
      if (batch.series.size() == 2000) {
        ++batch.sequence;
        batches.push_back(batch);
        batch.series.clear();
      }
    }
  }
  if (!batch.series.empty()) {
    ++batch.sequence;
    batches.push_back(batch);
  }
  return batches;
}

// An ingest benchmark: per iteration a fresh store with the series of a
// fleet of `hosts` (x 10 series) and `points` points, the batches `make`
// builds (untimed; it may also prepare the store), then those batches
// appended and the heads cut into blocks (part of ingest), timed.
using MakeBatches =
    std::function<std::vector<AppendBatch>(SeriesStore&, tools::FleetGenerator&, const std::vector<SeriesId>&)>;
void IngestFleet(benchmark::State& state, int hosts, int points, bool sync, const MakeBatches& make) {
  for (auto _ : state) {
    state.PauseTiming();
    testing::TempDir dir;
    auto store = OpenStore(dir.Sub("db"), sync);
    Fleet fleet(hosts, points);
    auto ids = CreateSeries(*store, *fleet.gen);
    auto batches = make(*store, *fleet.gen, ids);
    state.ResumeTiming();
    for (const auto& batch : batches) {
      if (!store->Append(batch).ok()) std::abort();
    }
    if (!store->Flush().ok()) std::abort();
    state.PauseTiming();
    store.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * hosts * 10 * points);
}

// The default fleet's shape, 1000 hosts x 10 series x `points` points.
void BM_AppendFleet(benchmark::State& state) {
  const int points = static_cast<int>(state.range(0));
  IngestFleet(state, 1000, points, state.range(1) != 0,
              [points](SeriesStore&, tools::FleetGenerator& gen, const std::vector<SeriesId>& ids) {
                // Values are generated ahead so only the store is measured.
                std::vector<std::vector<double>> values(ids.size(), std::vector<double>(points));
                for (int p = 0; p < points; ++p) {
                  for (size_t i = 0; i < ids.size(); ++i) values[i][p] = gen.Value(i, p);
                }
                return FleetBatches(
                    ids, points,
                    [&](size_t i, int p) {
                      return Sample{gen.TimestampMs(p), values[i][p]};
                    },
                    AppendBatch{"bench", 0, {}});
              });
}
BENCHMARK(BM_AppendFleet)
    ->Args({360, 1})
    ->Args({360, 0})
    ->MeasureProcessCPUTime()
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1);

// An import (AppendBatch::backfill) of `points` points of history per
// series of 100 hosts (1000 series), in the order an export file has them
// (every series at one time, then the next time), 2000 samples per batch,
// a month old. It goes through the heads like live data (and into the
// roll-ups at the cut). With live data (a sample at "now" in every series,
// in blocks, the roll-up watermark set) the history is older than
// everything the series hold, so each series' blocks are also looked up.
void BM_BackfillFleet(benchmark::State& state) {
  const int points = static_cast<int>(state.range(0));
  const bool live = state.range(1) != 0;
  IngestFleet(state, 100, points, false,
              [points, live](SeriesStore& store, tools::FleetGenerator& gen, const std::vector<SeriesId>& ids) {
                if (live) {
                  AppendBatch now{"agent", 1, {}};
                  for (SeriesId id : ids) now.series.push_back({id, {{kStart, 1}}});
                  if (!store.Append(now).ok() || !store.Flush().ok()) std::abort();
                }
                AppendBatch import{"import", 0, {}};
                import.backfill = true;
                return FleetBatches(
                    ids, points,
                    [&](size_t i, int p) {
                      return Sample{gen.TimestampMs(p) - 30 * kDayMs, gen.Value(i, p)};
                    },
                    import);
              });
}
BENCHMARK(BM_BackfillFleet)
    ->Args({360, 0})
    ->Args({360, 1})
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

// Selection over many series whose label `v` has few distinct values:
// 100,000 series, `v` one of 100 values, `host` one per series.
SeriesStore& ManySeries() {
  static SeriesStore* store = [] {
    static testing::TempDir dir;
    auto* s = OpenStore(dir.Sub("many"), false).release();
    for (int i = 0; i < 100'000; ++i) {
      Labels l = {
          {"__name__", "bench_metric"}, {"host", "h" + std::to_string(i)}, {"v", "v" + std::to_string(i % 100)}};
      if (!s->GetOrCreateSeries(l, MetricType::kGauge).ok()) std::abort();
    }
    if (!s->Compact().ok()) std::abort();
    return s;
  }();
  return *store;
}

void BM_SelectRegexFewValues(benchmark::State& state) {
  static const char* kSelectors[] = {
      R"({v=~"v1.*"})",                  // a regex alone: 11 of 100 values
      R"(bench_metric{v=~"v1.*"})",      // and a name matching every series
      R"(bench_metric{v!~"v[0-8].*"})",  // a negative regex (accepts the empty value)
      R"(bench_metric{host=~"h1.*"})",   // a regex over a label with a value per series
  };
  auto matchers = model::ParseSelector(kSelectors[state.range(0)]);
  if (!matchers.ok()) std::abort();
  auto& store = ManySeries();
  size_t n = 0;
  for (auto _ : state) {
    auto ids = store.Select(*matchers);
    if (!ids.ok()) std::abort();
    n = ids->size();
    benchmark::DoNotOptimize(ids);
  }
  state.SetLabel(std::string(kSelectors[state.range(0)]) + " -> " + std::to_string(n) + " of 100000 series");
}
BENCHMARK(BM_SelectRegexFewValues)->DenseRange(0, 3)->Unit(benchmark::kMillisecond);

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
