// Backfill (AppendBatch::backfill): history older than the out-of-order
// window is stored, its roll-ups come out as Aggregate::Of over the same raw
// samples (weeks old too, after the raw data is gone), a re-sent import
// counts once, everything survives a restart, samples past every retention
// are refused and counted, and a long import through the head stays within
// the head's bound. The store's clock is a fake (StoreOptions::now_ms).
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "storage/key_codec.h"
#include "storage/series_store.h"
#include "tests/support/temp_dir.h"

namespace sheaf::storage {
namespace {

constexpr int64_t kMinute = 60'000;
constexpr int64_t kHour = 3'600'000;
// A block-window boundary (2 h), so roll-up slabs line up with days.
constexpr int64_t kNow = 1'800'000'000'000 - 1'800'000'000'000 % (2 * kHour);
constexpr int64_t kStep = 15'000;

// Samples every kStep in [from, to): exact decimals (cents), as exporters
// send; a counter rises and now and then restarts from near zero.
std::vector<Sample> History(int64_t from, int64_t to, bool counter, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<Sample> out;
  int64_t cents = 0;
  for (int64_t t = from; t < to; t += kStep) {
    if (counter) {
      cents = rng() % 400 == 0 ? rng() % 100 : cents + rng() % 1000;
    } else {
      cents = static_cast<int64_t>(rng() % 200'000) - 100'000;
    }
    out.push_back({t, cents / 100.0});
  }
  return out;
}

// What ReadRollup must say: Aggregate::Of over each window's samples.
std::vector<SeriesStore::Window> Windows(const std::vector<Sample>& samples, int64_t res, bool counter) {
  std::map<int64_t, std::vector<Sample>> by_window;
  for (const Sample& x : samples) by_window[keys::WindowStart(x.timestamp_ms, res)].push_back(x);
  std::vector<SeriesStore::Window> out;
  for (const auto& [start, in] : by_window) out.emplace_back(start, Aggregate::Of(in, counter));
  return out;
}

class BackfillTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }

  void Open() {
    store_.reset();
    StoreOptions o = options_;
    o.path = dir_.Sub(db_name_);
    o.sync = false;
    o.now_ms = [this] { return now_ms_.load(); };
    auto s = SeriesStore::Open(o);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
  }

  SeriesId Series(const std::string& name, MetricType type) {
    auto id = store_->GetOrCreateSeries({{"__name__", name}}, type);
    EXPECT_TRUE(id.ok()) << id.status();
    return id.value_or(0);
  }

  AppendResult Append(SeriesId id, std::vector<Sample> samples, bool backfill) {
    AppendBatch b{"importer", ++sequence_, {{id, std::move(samples)}}};
    b.backfill = backfill;
    auto r = store_->Append(b);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.value_or(AppendResult{});
  }

  // Sends `samples` as an import does: in time order, `per_batch` at a
  // time, so that roll-up windows are split across batches. Returns the
  // samples the store added.
  uint64_t Import(SeriesId id, const std::vector<Sample>& samples, size_t per_batch = 7) {
    uint64_t added = 0;
    for (size_t i = 0; i < samples.size(); i += per_batch) {
      auto end = samples.begin() + std::min(samples.size(), i + per_batch);
      AppendResult r = Append(id, std::vector<Sample>(samples.begin() + i, end), /*backfill=*/true);
      EXPECT_TRUE(r.too_old.empty());
      EXPECT_TRUE(r.beyond_retention.empty());
      added += r.samples_added;
    }
    return added;
  }

  std::vector<Sample> ReadAll(SeriesId id, int64_t from, int64_t to) {
    std::vector<Sample> out;
    auto it = store_->Read(id, from, to);
    for (; it->Valid(); it->Next()) out.push_back(it->sample());
    EXPECT_TRUE(it->status().ok()) << it->status();
    return out;
  }

  // ReadRollup at both resolutions over [from, to] equals Aggregate::Of
  // over `samples` (sorted, all of the series' samples in that range).
  void ExpectRollupsOf(SeriesId id, const std::vector<Sample>& samples, bool counter, int64_t from, int64_t to) {
    for (int64_t res : {kMinute, kHour}) {
      auto got = store_->ReadRollup(id, res, from, to);
      ASSERT_TRUE(got.ok()) << got.status();
      auto want = Windows(samples, res, counter);
      ASSERT_EQ(got->size(), want.size()) << "resolution " << res;
      for (size_t i = 0; i < want.size(); ++i) {
        ASSERT_EQ((*got)[i].first, want[i].first) << "resolution " << res << " window " << i;
        ASSERT_EQ((*got)[i].second, want[i].second)
            << "resolution " << res << " window " << want[i].first << ": count " << (*got)[i].second.count << " vs "
            << want[i].second.count << ", sum " << (*got)[i].second.sum << " vs " << want[i].second.sum << ", increase "
            << (*got)[i].second.increase << " vs " << want[i].second.increase;
      }
    }
  }

  std::string db_name_ = "db";
  StoreOptions options_;  // the defaults: raw 15 d, 1m for 90 d, 1h for 730 d, 1 h out-of-order window
  testing::TempDir dir_;
  std::atomic<int64_t> now_ms_ = kNow;
  std::unique_ptr<SeriesStore> store_;
  uint64_t sequence_ = 0;
};

TEST_F(BackfillTest, HistoryBeyondTheOutOfOrderWindowIsStoredOnlyWhenBackfilled) {
  SeriesId id = Series("g", MetricType::kGauge);
  Append(id, {{kNow, 1}}, false);
  const Sample old{kNow - 21 * kDayMs, 2};
  AppendResult live = Append(id, {old}, false);
  EXPECT_EQ(live.samples_added, 0u);
  EXPECT_EQ(live.too_old, (std::vector<std::pair<SeriesId, uint64_t>>{{id, 1}}));
  AppendResult backfilled = Append(id, {old}, true);
  EXPECT_EQ(backfilled.samples_added, 1u);
  EXPECT_TRUE(backfilled.too_old.empty());
  auto got = ReadAll(id, INT64_MIN, INT64_MAX);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].timestamp_ms, old.timestamp_ms);
  EXPECT_EQ(store_->Stats().samples, 2u);
}

// History into a series with live data (older than everything it has) and
// into a new one: weeks old (past raw retention) and days old (on both
// sides of the roll-up watermark), windows split across batches.
// The roll-ups equal Aggregate::Of over the raw samples, before and after a
// compaction, and still once the raw data has gone.
class BackfillRollupTest : public BackfillTest, public ::testing::WithParamInterface<bool> {};

TEST_P(BackfillRollupTest, RollUpsOfBackfilledRangesAreAggregatesOfTheRawSamples) {
  const bool existing = GetParam();
  struct Case {
    SeriesId id;
    bool counter;
    std::vector<Sample> samples;
  };
  std::vector<Case> cases;
  for (bool counter : {true, false}) {
    Case c{Series(counter ? "c" : "g", counter ? MetricType::kCounter : MetricType::kGauge), counter, {}};
    c.samples = History(kNow - 20 * kDayMs - kHour / 2, kNow - 19 * kDayMs, counter, counter ? 1 : 2);
    auto recent = History(kNow - 3 * kDayMs + 7 * kMinute, kNow - kDayMs, counter, counter ? 3 : 4);
    c.samples.insert(c.samples.end(), recent.begin(), recent.end());
    std::vector<Sample> live;
    if (existing) {
      live = History(kNow - 10 * kMinute, kNow, counter, 5);
      Append(c.id, live, false);
    }
    EXPECT_EQ(Import(c.id, c.samples), c.samples.size());
    c.samples.insert(c.samples.end(), live.begin(), live.end());
    cases.push_back(std::move(c));
  }
  const int64_t from = kNow - 21 * kDayMs, to = kNow;
  auto check = [&](bool raw_kept) {
    for (const Case& c : cases) {
      SCOPED_TRACE(c.counter ? "counter" : "gauge");
      ExpectRollupsOf(c.id, c.samples, c.counter, from, to);
      auto raw = ReadAll(c.id, from, to);
      if (raw_kept) {
        ASSERT_EQ(raw.size(), c.samples.size());
        for (size_t i = 0; i < raw.size(); ++i) ASSERT_EQ(raw[i].timestamp_ms, c.samples[i].timestamp_ms);
      }
    }
  };
  check(true);
  ASSERT_TRUE(store_->Flush().ok());  // cuts the heads and rolls up to the watermark
  EXPECT_GT(store_->Stats().rolled_up_until_ms, kNow - 3 * kDayMs);
  check(true);
  ASSERT_TRUE(store_->Compact().ok());
  check(true);
  // Past raw retention of everything but the live minutes: the raw blocks
  // go at compaction, the roll-ups stay and say the same.
  now_ms_ = kNow + options_.raw_retention_ms + 2 * kHour;
  ASSERT_TRUE(store_->Flush().ok());
  ASSERT_TRUE(store_->Compact().ok());
  for (const Case& c : cases) EXPECT_TRUE(ReadAll(c.id, from, kNow - kDayMs).empty());
  check(false);
  EXPECT_EQ(store_->Stats().samples, cases[0].samples.size() + cases[1].samples.size());
}

INSTANTIATE_TEST_SUITE_P(IntoSeries, BackfillRollupTest, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "WithLiveData" : "New"; });

// An import sent twice (a re-run after a failure): the second adds no
// sample and nothing to the roll-ups, although the history is older than
// raw retention and a compaction ran in between (and a restart).
TEST_F(BackfillTest, AReSentImportCountsOnce) {
  SeriesId id = Series("c", MetricType::kCounter);
  std::vector<Sample> live = History(kNow - 10 * kMinute, kNow, true, 7);
  Append(id, live, false);
  std::vector<Sample> history = History(kNow - 22 * kDayMs, kNow - 21 * kDayMs, true, 8);
  ASSERT_EQ(Import(id, history), history.size());
  ASSERT_TRUE(store_->Flush().ok());
  ASSERT_TRUE(store_->Compact().ok());
  std::vector<Sample> all = history;
  all.insert(all.end(), live.begin(), live.end());
  const uint64_t stored = store_->Stats().samples;
  ASSERT_EQ(stored, all.size());
  EXPECT_EQ(Import(id, history, 500), 0u);
  EXPECT_EQ(store_->Stats().samples, stored);
  ExpectRollupsOf(id, all, true, kNow - 23 * kDayMs, kNow);
  Open();
  ASSERT_TRUE(store_->Compact().ok());
  EXPECT_EQ(Import(id, history, 13), 0u);
  ASSERT_TRUE(store_->Flush().ok());
  EXPECT_EQ(store_->Stats().samples, stored);
  ExpectRollupsOf(id, all, true, kNow - 23 * kDayMs, kNow);
}

// Acknowledged backfill survives a restart before any cut: the history is
// in the heads (and the log), older than the roll-up watermark, and read
// back and rolled up from there; then cut into blocks and roll-ups.
TEST_F(BackfillTest, BackfillSurvivesARestart) {
  SeriesId fresh = Series("fresh", MetricType::kCounter);
  SeriesId lived = Series("lived", MetricType::kCounter);
  std::vector<Sample> live = History(kNow - 10 * kMinute, kNow, true, 9);
  Append(lived, live, false);
  ASSERT_TRUE(store_->Flush().ok());  // live data in blocks, the watermark 2 days back
  ASSERT_GT(store_->Stats().rolled_up_until_ms, kNow - 3 * kDayMs);
  std::vector<Sample> history = History(kNow - 30 * kDayMs, kNow - 30 * kDayMs + 6 * kHour, true, 10);
  Import(fresh, history, 100);
  Import(lived, history, 100);
  EXPECT_EQ(store_->Stats().head_samples, 2 * history.size());
  Open();  // no Flush: what is not in blocks is in the log
  std::vector<Sample> lived_all = history;
  lived_all.insert(lived_all.end(), live.begin(), live.end());
  EXPECT_EQ(store_->Stats().samples, history.size() + lived_all.size());
  EXPECT_EQ(ReadAll(fresh, INT64_MIN, INT64_MAX).size(), history.size());
  EXPECT_EQ(ReadAll(lived, INT64_MIN, INT64_MAX).size(), lived_all.size());
  ExpectRollupsOf(fresh, history, true, kNow - 31 * kDayMs, kNow);
  ExpectRollupsOf(lived, lived_all, true, kNow - 31 * kDayMs, kNow);
  ASSERT_TRUE(store_->Flush().ok());
  ExpectRollupsOf(fresh, history, true, kNow - 31 * kDayMs, kNow);
  ExpectRollupsOf(lived, lived_all, true, kNow - 31 * kDayMs, kNow);
}

// History that interleaves with samples in blocks waits in the head; reads
// merge the two in time order (any range), a timestamp the blocks hold gets
// its new value there and is not counted again; the same after a restart
// and after the cut.
TEST_F(BackfillTest, HistoryInterleavedWithBlocksReadsBackInTimeOrder) {
  SeriesId id = Series("g", MetricType::kGauge);
  std::map<int64_t, double> want;
  std::vector<Sample> live;
  for (int64_t t = kNow - 2 * kHour; t < kNow; t += 10'000) live.push_back({t, double(t / 10'000 % 97)});
  Append(id, live, false);
  ASSERT_TRUE(store_->Flush().ok());
  for (const Sample& x : live) want[x.timestamp_ms] = x.value;
  std::vector<Sample> history;  // every 5 s of the first hour: half of them there already
  for (int64_t t = kNow - 2 * kHour; t < kNow - kHour; t += 5'000) history.push_back({t, -double(t / 5'000 % 89)});
  uint64_t added = 0;
  for (size_t i = 0; i < history.size(); i += 50) {
    auto end = history.begin() + std::min(history.size(), i + 50);
    added += Append(id, std::vector<Sample>(history.begin() + i, end), true).samples_added;
  }
  EXPECT_EQ(added, history.size() / 2);
  for (const Sample& x : history) want[x.timestamp_ms] = x.value;
  auto check = [&] {
    for (auto [from, to] : std::vector<std::pair<int64_t, int64_t>>{{INT64_MIN, INT64_MAX},
                                                                    {kNow - 2 * kHour + 2'500, kNow - kHour + 5'000},
                                                                    {kNow - 90 * kMinute - 5'000, kNow - 90 * kMinute},
                                                                    {kNow - kHour + 1, kNow - kHour + 9'999}}) {
      auto got = ReadAll(id, from, to);
      auto lo = want.lower_bound(from), hi = want.upper_bound(to);
      ASSERT_EQ(got.size(), static_cast<size_t>(std::distance(lo, hi))) << from << ".." << to;
      for (const Sample& x : got) {
        ASSERT_EQ(lo->first, x.timestamp_ms);
        ASSERT_EQ(lo->second, x.value) << x.timestamp_ms;
        ++lo;
      }
    }
    std::vector<Sample> all;
    for (auto [t, v] : want) all.push_back({t, v});
    ExpectRollupsOf(id, all, false, kNow - 3 * kHour, kNow);
    EXPECT_EQ(store_->Stats().samples, want.size());
  };
  check();
  Open();
  check();
  ASSERT_TRUE(store_->Flush().ok());
  EXPECT_EQ(store_->Stats().head_samples, 0u);
  check();
}

// A history sample is checked against its block (which is then remembered),
// waits in the head, is cut into that block: sent again, it is found there.
TEST_F(BackfillTest, ASampleCutIntoItsBlockIsFoundThereWhenSentAgain) {
  SeriesId id = Series("c", MetricType::kCounter);
  std::vector<Sample> live;
  for (int64_t t = kNow - 2 * kHour; t < kNow; t += 10'000) live.push_back({t, double(t / 10'000)});
  Append(id, live, false);
  ASSERT_TRUE(store_->Flush().ok());
  const Sample between{kNow - 2 * kHour + 5'000, 1};
  EXPECT_EQ(Append(id, {between}, true).samples_added, 1u);
  ASSERT_TRUE(store_->Flush().ok());
  EXPECT_EQ(Append(id, {between}, true).samples_added, 0u);
  ASSERT_TRUE(store_->Flush().ok());
  EXPECT_EQ(store_->Stats().samples, live.size() + 1);
  EXPECT_EQ(ReadAll(id, INT64_MIN, INT64_MAX).size(), live.size() + 1);
}

TEST_F(BackfillTest, SamplesOlderThanEveryRetentionAreCountedNotStored) {
  SeriesId id = Series("g", MetricType::kGauge);
  SeriesId other = Series("h", MetricType::kGauge);
  AppendBatch b{"importer", 1, {}};
  b.backfill = true;
  b.series = {{id, {{kNow - 731 * kDayMs, 1}, {kNow - 729 * kDayMs, 2}, {kNow - 100 * kDayMs, 3}}},
              {other, {{kNow - 800 * kDayMs, 4}, {kNow - 900 * kDayMs, 5}}}};
  auto r = store_->Append(b);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->samples_added, 2u);
  EXPECT_EQ(r->beyond_retention, (std::vector<std::pair<SeriesId, uint64_t>>{{id, 1}, {other, 2}}));
  auto kept = ReadAll(id, INT64_MIN, INT64_MAX);
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_EQ(kept[0].timestamp_ms, kNow - 729 * kDayMs);
  EXPECT_TRUE(ReadAll(other, INT64_MIN, INT64_MAX).empty());
  EXPECT_EQ(store_->Stats().samples, 2u);
  // The hour roll-up (kept 730 days) has the 729-day-old sample.
  auto hour = store_->ReadRollup(id, kHour, kNow - 730 * kDayMs, kNow);
  ASSERT_TRUE(hour.ok());
  ASSERT_EQ(hour->size(), 2u);
  EXPECT_EQ((*hour)[0].second.last, 2);

  // Without roll-ups, raw retention is the limit.
  options_.rollups = {};
  db_name_ = "raw-only";
  Open();
  id = Series("g", MetricType::kGauge);
  AppendBatch raw_only{"importer", 2, {{id, {{kNow - 16 * kDayMs, 6}, {kNow - 14 * kDayMs, 7}}}}};
  raw_only.backfill = true;
  r = store_->Append(raw_only);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->samples_added, 1u);
  EXPECT_EQ(r->beyond_retention, (std::vector<std::pair<SeriesId, uint64_t>>{{id, 1}}));
}

// Two months of history into a new series go through the head in time
// order; the head stays within its bound (cuts, and backpressure past twice
// max_head_samples) and the roll-ups come out whole.
TEST_F(BackfillTest, AMonthsLongImportStaysWithinTheHeadBound) {
  options_.max_head_samples = 2000;
  Open();
  SeriesId id = Series("c", MetricType::kCounter);
  std::vector<Sample> history;
  for (int64_t t = kNow - 60 * kDayMs; t < kNow - kDayMs; t += kMinute)
    history.push_back({t, double(t / kMinute % 1000)});
  uint64_t peak = 0;
  for (size_t i = 0; i < history.size(); i += 500) {
    auto end = history.begin() + std::min(history.size(), i + 500);
    Append(id, std::vector<Sample>(history.begin() + i, end), true);
    peak = std::max(peak, store_->Stats().head_samples);
  }
  EXPECT_LE(peak, 2 * options_.max_head_samples + 500);
  EXPECT_GT(store_->Stats().cuts, 0u);
  EXPECT_EQ(store_->Stats().samples, history.size());
  ASSERT_TRUE(store_->Flush().ok());
  auto hours = store_->ReadRollup(id, kHour, kNow - 61 * kDayMs, kNow);
  ASSERT_TRUE(hours.ok()) << hours.status();
  ASSERT_EQ(hours->size(), history.size() / 60);
  for (const auto& [start, a] : *hours) ASSERT_EQ(a.count, 60u) << start;
  ExpectRollupsOf(id, history, true, kNow - 61 * kDayMs, kNow);
}

}  // namespace
}  // namespace sheaf::storage
