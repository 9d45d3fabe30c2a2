// ReadMany gives, for every id in any order (repeats included), exactly
// what Read gives: blocks and head merged, kept to the range.
#include <gtest/gtest.h>

#include <random>

#include "model/labels.h"
#include "storage/series_store.h"
#include "tests/support/temp_dir.h"

namespace sheaf::storage {
namespace {

std::vector<Sample> ReadOne(SeriesStore& store, SeriesId id, int64_t start, int64_t end) {
  std::vector<Sample> out;
  auto it = store.Read(id, start, end);
  for (; it->Valid(); it->Next()) out.push_back(it->sample());
  EXPECT_TRUE(it->status().ok());
  return out;
}

bool Same(const std::vector<Sample>& a, const std::vector<Sample>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].timestamp_ms != b[i].timestamp_ms || a[i].value != b[i].value) return false;
  }
  return true;
}

TEST(ReadManyTest, SameAsReadForAnyIdsAndRanges) {
  sheaf::testing::TempDir dir;
  StoreOptions o;
  o.path = dir.Sub("db");
  o.sync = false;
  o.now_ms = [] { return int64_t{1'000'000'000}; };
  o.block_window_ms = 600'000;
  o.rollups = {{60'000, 90 * kDayMs}};
  auto opened = SeriesStore::Open(o);
  ASSERT_TRUE(opened.ok()) << opened.status();
  SeriesStore& store = **opened;
  std::mt19937_64 rng(3);
  std::vector<SeriesId> ids;
  for (int s = 0; s < 60; ++s) {
    Labels l = {{"__name__", "m"}, {"s", std::to_string(s)}};
    auto id = store.GetOrCreateSeries(l, MetricType::kGauge);
    ASSERT_TRUE(id.ok());
    ids.push_back(*id);
  }
  // Three rounds of samples, the first two cut into blocks, the last in the
  // head; some series skip rounds, one series has nothing at all.
  for (int round = 0; round < 3; ++round) {
    AppendBatch b;
    for (size_t s = 0; s + 1 < ids.size(); ++s) {
      if ((s + round) % 4 == 0) continue;
      SeriesSamples ss{ids[s], {}};
      for (int64_t t = round * 3'000'000 + static_cast<int64_t>(rng() % 50'000); t < (round + 1) * 3'000'000;
           t += 40'000 + static_cast<int64_t>(rng() % 30'000)) {
        ss.samples.push_back({t, static_cast<double>(rng() % 1000)});
      }
      b.series.push_back(std::move(ss));
    }
    ASSERT_TRUE(store.Append(b).ok());
    if (round < 2) {
      ASSERT_TRUE(store.Flush().ok());
    }
  }
  // One output reused across trials, as the query engine's readers reuse
  // theirs: what a trial leaves in it must not leak into the next.
  std::vector<std::vector<Sample>> got;
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<SeriesId> want;
    for (size_t n = rng() % 40; n > 0; --n) want.push_back(ids[rng() % ids.size()]);
    if (trial % 10 == 0) want.push_back(999'999);  // not a series
    int64_t start = static_cast<int64_t>(rng() % 9'000'000) - 100'000;
    int64_t end = trial % 7 == 0 ? INT64_MAX : start + static_cast<int64_t>(rng() % 6'000'000);
    ASSERT_TRUE(store.ReadMany(want, start, end, &got).ok());
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      ASSERT_TRUE(Same(got[i], ReadOne(store, want[i], start, end)))
          << "trial " << trial << " id " << want[i] << " [" << start << ", " << end << "]";
    }
  }
}

}  // namespace
}  // namespace sheaf::storage
