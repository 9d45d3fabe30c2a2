#include "storage/series_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <thread>

#include "model/labels.h"
#include "model/matcher.h"
#include "storage/key_codec.h"
#include "tests/support/temp_dir.h"

namespace sheaf::storage {
namespace {

class SeriesStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }

  void Open(uint64_t max_series = 1000) {
    StoreOptions o;
    o.max_series = max_series;
    Open(o);
  }

  void Open(StoreOptions o) {
    store_.reset();
    o.path = dir_.Sub("db");
    o.sync = false;  // durability is tested across processes (crash_test.cc)
    o.now_ms = [this] { return now_ms_.load(); };
    auto s = SeriesStore::Open(o);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
  }

  SeriesId Series(Labels labels, MetricType type = MetricType::kGauge) {
    EXPECT_TRUE(model::Canonicalize(labels).ok());
    auto id = store_->GetOrCreateSeries(labels, type);
    EXPECT_TRUE(id.ok()) << id.status();
    return id.value_or(0);
  }

  std::vector<Sample> ReadAll(SeriesId id, int64_t start = INT64_MIN, int64_t end = INT64_MAX) {
    std::vector<Sample> out;
    auto it = store_->Read(id, start, end);
    for (; it->Valid(); it->Next()) out.push_back(it->sample());
    EXPECT_TRUE(it->status().ok());
    return out;
  }

  AppendResult Append(AppendBatch b) {
    auto r = store_->Append(b);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.value_or(AppendResult{});
  }

  testing::TempDir dir_;
  // Polls `cond` until it holds or 10 s pass (background work).
  static bool Eventually(const std::function<bool()>& cond) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!cond()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
  }

  // The store's clock (retention, head flushes); read by its background thread.
  std::atomic<int64_t> now_ms_ = 1'800'000'000'000;
  std::unique_ptr<SeriesStore> store_;
};

MATCHER_P2(IsSample, ts, v, "") { return arg.timestamp_ms == ts && arg.value == v; }

TEST_F(SeriesStoreTest, SameLabelsSameIdInAnyOrder) {
  SeriesId a = Series({{"__name__", "up"}, {"job", "node"}});
  SeriesId b = Series({{"job", "node"}, {"__name__", "up"}});
  SeriesId c = Series({{"__name__", "up"}, {"job", "other"}});
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  auto info = store_->GetSeries(a);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->labels, (Labels{{"__name__", "up"}, {"job", "node"}}));
  EXPECT_EQ(info->type, MetricType::kGauge);
  EXPECT_FALSE(store_->GetSeries(999).has_value());
}

TEST_F(SeriesStoreTest, ReadsBackInTimeOrderWithInclusiveBounds) {
  SeriesId id = Series({{"__name__", "m"}});
  SeriesId other = Series({{"__name__", "n"}});
  Append({"", 0, {{id, {{30, 3}, {10, 1}, {20, 2}}}, {other, {{15, 9}}}}});
  auto all = ReadAll(id);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_THAT(all, ::testing::ElementsAre(IsSample(10, 1), IsSample(20, 2), IsSample(30, 3)));
  EXPECT_THAT(ReadAll(id, 10, 20), ::testing::ElementsAre(IsSample(10, 1), IsSample(20, 2)));
  EXPECT_THAT(ReadAll(id, 11, 19), ::testing::IsEmpty());
  EXPECT_THAT(ReadAll(other), ::testing::ElementsAre(IsSample(15, 9)));
}

TEST_F(SeriesStoreTest, NegativeTimestampsSortBeforePositive) {
  SeriesId id = Series({{"__name__", "m"}});
  Append({"", 0, {{id, {{5, 1}, {-5, 2}}}}});
  EXPECT_THAT(ReadAll(id), ::testing::ElementsAre(IsSample(-5, 2), IsSample(5, 1)));
}

TEST_F(SeriesStoreTest, DuplicateSequenceIsNotAppliedTwice) {
  SeriesId id = Series({{"__name__", "c"}}, MetricType::kCounter);
  auto first = Append({"agent-a", 7, {{id, {{1, 1}, {2, 2}}}}});
  EXPECT_FALSE(first.duplicate);
  EXPECT_EQ(first.samples_added, 2u);
  EXPECT_EQ(first.durable_sequence, 7u);
  // Retried (and an older one): acknowledged, nothing written.
  for (uint64_t seq : {7u, 3u}) {
    auto again = Append({"agent-a", seq, {{id, {{3, 3}}}}});
    EXPECT_TRUE(again.duplicate);
    EXPECT_EQ(again.samples_added, 0u);
    EXPECT_EQ(again.durable_sequence, 7u);
  }
  // Another agent's sequence space is its own.
  EXPECT_FALSE(Append({"agent-b", 1, {{id, {{4, 4}}}}}).duplicate);
  EXPECT_EQ(ReadAll(id).size(), 3u);
  EXPECT_EQ(store_->Stats().samples, 3u);
  EXPECT_EQ(store_->Stats().agents, 2u);
  EXPECT_EQ(store_->AgentSequence("agent-a"), 7u);
  EXPECT_EQ(store_->AgentSequence("nobody"), 0u);
}

TEST_F(SeriesStoreTest, BacklogBesideFreshBatchesIsAppliedOnceAcrossReopen) {
  SeriesId id = Series({{"__name__", "g"}});
  auto batch = [&](uint64_t seq, uint64_t floor) {
    AppendBatch b{"agent", seq, {{id, {{static_cast<int64_t>(seq), double(seq)}}}}};
    b.sequence_floor = floor;
    return Append(b);
  };
  for (uint64_t seq = 1; seq <= 10; ++seq) ASSERT_FALSE(batch(seq, 0).duplicate);
  // The daemon was away: 11..20 are in the agent's spool. Fresh 21, 22
  // arrive before the backlog, with the floor at the oldest spooled one.
  EXPECT_FALSE(batch(21, 11).duplicate);
  EXPECT_FALSE(batch(22, 11).duplicate);
  EXPECT_EQ(store_->AgentSequence("agent"), 22u);
  for (uint64_t seq = 11; seq <= 15; ++seq) EXPECT_FALSE(batch(seq, seq).duplicate) << seq;
  // Restart: the applied set is durable, gaps and all.
  Open();
  EXPECT_TRUE(batch(13, 13).duplicate);  // a retry of the backlog
  EXPECT_TRUE(batch(21, 16).duplicate);  // a retry of a fresh batch
  EXPECT_TRUE(store_->AgentSequenceApplied(kDefaultTenant, "agent", 22, 16));
  EXPECT_FALSE(store_->AgentSequenceApplied(kDefaultTenant, "agent", 16, 16));
  // 16 and 17 fell off the agent's spool: it raises its floor to 18, and
  // the gap below is forgotten.
  EXPECT_FALSE(batch(18, 18).duplicate);
  EXPECT_TRUE(store_->AgentSequenceApplied(kDefaultTenant, "agent", 16, 18));
  EXPECT_FALSE(batch(19, 19).duplicate);
  EXPECT_FALSE(batch(20, 20).duplicate);
  EXPECT_FALSE(batch(23, 23).duplicate);
  EXPECT_EQ(ReadAll(id).size(), 21u);  // 1..15, 18..23: each once
  // Without a floor (an old agent) the old rule holds: at or below the
  // highest applied is a duplicate.
  EXPECT_TRUE(batch(5, 0).duplicate);
  EXPECT_FALSE(batch(24, 0).duplicate);
  Open();
  EXPECT_EQ(store_->AgentSequence("agent"), 24u);
  EXPECT_TRUE(batch(24, 0).duplicate);
}

TEST_F(SeriesStoreTest, SameTimestampIsOneSampleLastWriteWins) {
  SeriesId id = Series({{"__name__", "g"}});
  EXPECT_EQ(Append({"", 0, {{id, {{10, 1}, {10, 2}}}}}).samples_added, 1u);
  EXPECT_EQ(Append({"", 0, {{id, {{10, 3}}}}}).samples_added, 0u);
  // Out of order but new: counted.
  EXPECT_EQ(Append({"", 0, {{id, {{5, 4}}}}}).samples_added, 1u);
  EXPECT_THAT(ReadAll(id), ::testing::ElementsAre(IsSample(5, 4), IsSample(10, 3)));
  EXPECT_EQ(store_->Stats().samples, 2u);
}

TEST_F(SeriesStoreTest, EverythingSurvivesReopen) {
  SeriesId id = Series({{"__name__", "m"}, {"host", "a"}}, MetricType::kCounter);
  Append({"agent", 5, {{id, {{100, 1.5}, {200, 2.5}}}}});
  Open();
  EXPECT_EQ(store_->Stats().series, 1u);
  EXPECT_EQ(store_->Stats().samples, 2u);
  EXPECT_EQ(store_->AgentSequence("agent"), 5u);
  EXPECT_EQ(Series({{"__name__", "m"}, {"host", "a"}}), id);
  EXPECT_THAT(ReadAll(id), ::testing::ElementsAre(IsSample(100, 1.5), IsSample(200, 2.5)));
  // The newest timestamp is recovered: re-sending it is not a new sample.
  EXPECT_EQ(Append({"", 0, {{id, {{200, 2.5}, {300, 3}}}}}).samples_added, 1u);
  EXPECT_EQ(store_->Stats().samples, 3u);
  // New series continue the id sequence.
  EXPECT_EQ(Series({{"__name__", "other"}}), id + 1);
}

TEST_F(SeriesStoreTest, SelectByMatchers) {
  SeriesId a = Series({{"__name__", "cpu"}, {"host", "web-1"}, {"mode", "idle"}});
  SeriesId b = Series({{"__name__", "cpu"}, {"host", "web-2"}, {"mode", "user"}});
  SeriesId c = Series({{"__name__", "cpu"}, {"host", "db-1"}, {"mode", "idle"}});
  SeriesId d = Series({{"__name__", "mem"}, {"host", "web-1"}});
  auto select = [&](const std::string& sel) {
    auto m = model::ParseSelector(sel);
    EXPECT_TRUE(m.ok()) << m.status();
    auto r = store_->Select(*m);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.value_or(std::vector<SeriesId>{});
  };
  EXPECT_EQ(select("cpu"), (std::vector<SeriesId>{a, b, c}));
  EXPECT_EQ(select(R"(cpu{mode="idle"})"), (std::vector<SeriesId>{a, c}));
  EXPECT_EQ(select(R"(cpu{host=~"web-.*"})"), (std::vector<SeriesId>{a, b}));
  EXPECT_EQ(select(R"(cpu{host!~"web-.*", mode!="user"})"), (std::vector<SeriesId>{c}));
  EXPECT_EQ(select(R"({host="web-1"})"), (std::vector<SeriesId>{a, d}));
  EXPECT_EQ(select(R"({__name__=~".+", mode=""})"), (std::vector<SeriesId>{d}));
  EXPECT_EQ(select(R"(cpu{host="nope"})"), (std::vector<SeriesId>{}));
  // A value that is a prefix of another must not match it.
  Series({{"__name__", "cpu"}, {"host", "web-10"}, {"mode", "idle"}});
  EXPECT_EQ(select(R"(cpu{host="web-1"})"), (std::vector<SeriesId>{a}));
}

TEST_F(SeriesStoreTest, SeriesLimitIsResourceExhausted) {
  Open(/*max_series=*/2);
  Series({{"__name__", "a"}});
  Series({{"__name__", "b"}});
  auto third = store_->GetOrCreateSeries({{"__name__", "c"}}, MetricType::kGauge);
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  // Existing series still resolve.
  EXPECT_TRUE(store_->GetOrCreateSeries({{"__name__", "a"}}, MetricType::kGauge).ok());
}

// RocksDB must never meet a full disk (Debian's 7.8.3 aborts): ingestion
// pauses below min_free_disk_bytes, and a memtable flush must fit in it.
TEST_F(SeriesStoreTest, FreeDiskReserveSmallerThanTheMemtablesIsRefused) {
  StoreOptions o;
  o.path = dir_.Sub("reserve");
  o.write_buffer_bytes = 64ull << 20;
  o.min_free_disk_bytes = 0;
  auto s = SeriesStore::Open(o);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.status().message()), ::testing::HasSubstr("--min-free-disk-bytes"));
  o.min_free_disk_bytes = o.write_buffer_bytes;
  EXPECT_TRUE(SeriesStore::Open(o).ok());
}

TEST_F(SeriesStoreTest, UnknownSeriesIdWritesNothing) {
  SeriesId id = Series({{"__name__", "m"}});
  auto r = store_->Append({"agent", 1, {{id, {{1, 1}}}, {id + 100, {{1, 1}}}}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ReadAll(id).empty());
  EXPECT_EQ(store_->AgentSequence("agent"), 0u);
  EXPECT_EQ(store_->Stats().samples, 0u);
}

TEST_F(SeriesStoreTest, SecondOpenOfTheSameDirectoryFailsClearly) {
  StoreOptions o;
  o.path = dir_.Sub("db");
  auto second = SeriesStore::Open(o);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("another sheafd"), std::string_view::npos) << second.status();
}

TEST_F(SeriesStoreTest, OutOfOrderWithinTheWindowIsStoredInOrderOlderIsRejected) {
  SeriesId id = Series({{"__name__", "g"}});
  const int64_t t = 10'000'000;
  Append({"", 0, {{id, {{t, 1}, {t + 60'000, 2}}}}});
  // 30 min late: inside the 1 h window, stored in order and counted.
  auto late = Append({"", 0, {{id, {{t + 60'000 - 1'800'000, 3}}}}});
  EXPECT_EQ(late.samples_added, 1u);
  EXPECT_TRUE(late.too_old.empty());
  // 2 h late: rejected, reported per series.
  auto old = Append({"", 0, {{id, {{t + 60'000 - 7'200'000, 4}, {t + 60'000 - 7'300'000, 5}}}}});
  EXPECT_EQ(old.samples_added, 0u);
  ASSERT_EQ(old.too_old.size(), 1u);
  EXPECT_EQ(old.too_old[0], std::make_pair(id, uint64_t{2}));
  EXPECT_THAT(ReadAll(id),
              ::testing::ElementsAre(IsSample(t + 60'000 - 1'800'000, 3), IsSample(t, 1), IsSample(t + 60'000, 2)));
  EXPECT_EQ(store_->Stats().samples, 3u);
}

TEST_F(SeriesStoreTest, HeadsAreCutIntoBlocksAndEverythingReadsBackAcrossThem) {
  StoreOptions o;
  o.max_head_samples = 25;  // cut often
  Open(o);
  SeriesId a = Series({{"__name__", "a"}});
  SeriesId b = Series({{"__name__", "b"}}, MetricType::kCounter);
  std::vector<Sample> expect_a, expect_b;
  for (int i = 0; i < 100; ++i) {
    Sample sa{1'000'000 + i * 10'000LL, i * 0.5}, sb{1'000'000 + i * 10'000LL, i * 3.0};
    expect_a.push_back(sa);
    expect_b.push_back(sb);
    Append({"agent", static_cast<uint64_t>(i + 1), {{a, {sa}}, {b, {sb}}}});
  }
  // The background thread cuts the heads into blocks (woken by Append).
  EXPECT_TRUE(Eventually([&] { return store_->Stats().head_samples < 25u; }));
  EXPECT_GT(store_->Stats().cuts, 0u);
  auto check = [&] {
    auto got_a = ReadAll(a);
    ASSERT_EQ(got_a.size(), expect_a.size());
    for (size_t i = 0; i < got_a.size(); ++i)
      EXPECT_THAT(got_a[i], IsSample(expect_a[i].timestamp_ms, expect_a[i].value));
    EXPECT_EQ(ReadAll(b).size(), 100u);
    // A range inside the data, across block and head.
    auto mid = ReadAll(a, 1'000'000 + 40 * 10'000, 1'000'000 + 95 * 10'000);
    ASSERT_EQ(mid.size(), 56u);
    EXPECT_THAT(mid.front(), IsSample(1'000'000 + 40 * 10'000, 20.0));
    EXPECT_EQ(store_->Stats().samples, 200u);
  };
  check();
  // Re-sending a cut sample is not new (exact counts survive the cut).
  EXPECT_EQ(Append({"", 0, {{a, {{1'000'000 + 5 * 10'000, 9.0}}}}}).samples_added, 0u);
  EXPECT_THAT(ReadAll(a, 1'050'000, 1'050'000), ::testing::ElementsAre(IsSample(1'050'000, 9.0)));
  expect_a[5].value = 9.0;
  Open(o);
  check();
}

TEST_F(SeriesStoreTest, UnflushedHeadIsReplayedFromTheLogOnOpen) {
  SeriesId id = Series({{"__name__", "m"}});
  Append({"agent", 1, {{id, {{100, 1}, {200, 2}}}}});
  EXPECT_EQ(store_->Stats().head_samples, 2u);
  Open();  // no Flush: the samples live only in the log
  EXPECT_EQ(store_->Stats().head_samples, 2u);
  EXPECT_THAT(ReadAll(id), ::testing::ElementsAre(IsSample(100, 1), IsSample(200, 2)));
  EXPECT_EQ(store_->Stats().samples, 2u);
  ASSERT_TRUE(store_->Flush().ok());
  EXPECT_EQ(store_->Stats().head_samples, 0u);
  Open();
  EXPECT_EQ(store_->Stats().head_samples, 0u);  // the log was emptied with the cut
  EXPECT_THAT(ReadAll(id), ::testing::ElementsAre(IsSample(100, 1), IsSample(200, 2)));
}

TEST_F(SeriesStoreTest, RollupsAggregateWindowsWithCounterResets) {
  SeriesId c = Series({{"__name__", "requests_total"}}, MetricType::kCounter);
  const int64_t m0 = 60'000 * 1000;  // a minute boundary
  // Minute 0: 10, 15, 20 -> increase 10. Minute 1: reset to 3, then 8:
  // seam 20 -> 3 is a reset (+3), then +5.
  Append({"", 0, {{c, {{m0 + 0, 10}, {m0 + 20'000, 15}, {m0 + 40'000, 20}}}}});
  ASSERT_TRUE(store_->Flush().ok());  // minute 0 in the store, minute 1 in the head
  Append({"", 0, {{c, {{m0 + 60'000, 3}, {m0 + 80'000, 8}}}}});
  auto windows = store_->ReadRollup(c, 60'000, m0, m0 + 119'999);
  ASSERT_TRUE(windows.ok()) << windows.status();
  ASSERT_EQ(windows->size(), 2u);
  const Aggregate& w0 = (*windows)[0].second;
  EXPECT_EQ((*windows)[0].first, m0);
  EXPECT_EQ(w0.count, 3u);
  EXPECT_EQ(w0.sum, 45);
  EXPECT_EQ(w0.min, 10);
  EXPECT_EQ(w0.max, 20);
  EXPECT_EQ(w0.last, 20);
  EXPECT_EQ(w0.increase, 10);
  const Aggregate& w1 = (*windows)[1].second;
  EXPECT_EQ(w1.count, 2u);
  EXPECT_EQ(w1.increase, 5);  // within the window; the seam is across windows
  // The hour window holds everything, with the reset counted.
  auto hour = store_->ReadRollup(c, 3'600'000, m0, m0 + 119'999);
  ASSERT_TRUE(hour.ok());
  ASSERT_EQ(hour->size(), 1u);
  EXPECT_EQ((*hour)[0].second.count, 5u);
  EXPECT_EQ((*hour)[0].second.increase, 10 + 3 + 5);
  // After a cut, the stored aggregates say the same.
  ASSERT_TRUE(store_->Flush().ok());
  auto again = store_->ReadRollup(c, 3'600'000, m0, m0 + 119'999);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)[0].second.increase, 18);
  EXPECT_EQ((*again)[0].second.count, 5u);
  EXPECT_FALSE(store_->ReadRollup(c, 123, 0, 1).ok());  // not a configured resolution
}

TEST_F(SeriesStoreTest, RetentionDropsExpiredWindowsPerResolutionAtCompaction) {
  StoreOptions o;
  o.raw_retention_ms = 2 * kDayMs;
  o.rollups = {{60'000, 10 * kDayMs}, {3'600'000, 100 * kDayMs}};
  Open(o);
  SeriesId id = Series({{"__name__", "m"}});
  const int64_t t0 = now_ms_;
  Append({"", 0, {{id, {{t0, 1}, {t0 + 60'000, 2}}}}});
  ASSERT_TRUE(store_->Compact().ok());
  auto count_rollup = [&](int64_t res) {
    auto w = store_->ReadRollup(id, res, t0 - kDayMs, t0 + kDayMs);
    EXPECT_TRUE(w.ok());
    return w.ok() ? w->size() : 0;
  };
  EXPECT_EQ(ReadAll(id).size(), 2u);
  now_ms_ = t0 + 3 * kDayMs;  // past raw retention only
  ASSERT_TRUE(store_->Compact().ok());
  EXPECT_TRUE(ReadAll(id).empty());
  EXPECT_EQ(count_rollup(60'000), 2u);
  EXPECT_EQ(count_rollup(3'600'000), 1u);
  now_ms_ = t0 + 11 * kDayMs;  // past the 1m rollups' retention
  ASSERT_TRUE(store_->Compact().ok());
  EXPECT_EQ(count_rollup(60'000), 0u);
  EXPECT_EQ(count_rollup(3'600'000), 1u);
}

TEST_F(SeriesStoreTest, FreshDataIsRolledUpFromRawOnceOldEnoughAndRawWaitsForIt) {
  StoreOptions o;
  o.raw_retention_ms = 1 * kDayMs;
  o.downsample_after_ms = 3 * kDayMs;  // longer than raw retention: raw must wait
  Open(o);
  SeriesId id = Series({{"__name__", "c"}}, MetricType::kCounter);
  const int64_t t0 = keys::WindowStart(now_ms_, 3'600'000);
  std::vector<Sample> samples;
  for (int i = 0; i < 360; ++i) samples.push_back({t0 + i * 10'000, i * 2.0});
  Append({"", 0, {{id, samples}}});
  auto before = store_->ReadRollup(id, 60'000, t0, t0 + 3'599'999);
  ASSERT_TRUE(before.ok());
  ASSERT_EQ(before->size(), 60u);
  EXPECT_EQ((*before)[1].second.count, 6u);
  EXPECT_EQ((*before)[1].second.increase, 10);
  // Fresh data costs raw bytes only.
  ASSERT_TRUE(store_->Compact().ok());
  EXPECT_EQ(store_->Stats().family_disk_bytes["rollup_60000"], 0u);
  // Two days on: past raw retention, but not rolled up yet, so raw stays.
  now_ms_ += 2 * kDayMs;
  ASSERT_TRUE(store_->Compact().ok());
  EXPECT_EQ(ReadAll(id).size(), 360u);
  // Four days on: rolled up, then raw goes; the windows read the same.
  now_ms_ += 2 * kDayMs;
  ASSERT_TRUE(store_->Compact().ok());
  EXPECT_GT(store_->Stats().rolled_up_until_ms, t0);
  EXPECT_TRUE(ReadAll(id).empty());
  EXPECT_GT(store_->Stats().family_disk_bytes["rollup_60000"], 0u);
  auto after = store_->ReadRollup(id, 60'000, t0, t0 + 3'599'999);
  ASSERT_TRUE(after.ok());
  ASSERT_EQ(after->size(), before->size());
  for (size_t i = 0; i < after->size(); ++i) {
    EXPECT_EQ((*after)[i].first, (*before)[i].first);
    EXPECT_EQ((*after)[i].second, (*before)[i].second) << i;
  }
  // The watermark survives a reopen.
  int64_t until = store_->Stats().rolled_up_until_ms;
  Open(o);
  EXPECT_EQ(store_->Stats().rolled_up_until_ms, until);
}

TEST_F(SeriesStoreTest, ListsLabelNamesAndValues) {
  Series({{"__name__", "cpu"}, {"host", "web-1"}, {"mode", "idle"}});
  Series({{"__name__", "cpu"}, {"host", "web-10"}, {"mode", "user"}});
  Series({{"__name__", "mem"}, {"host", "db"}});
  auto names = store_->LabelNames();
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, (std::vector<std::string>{"__name__", "host", "mode"}));
  auto hosts = store_->LabelValues("host");
  ASSERT_TRUE(hosts.ok());
  EXPECT_EQ(*hosts, (std::vector<std::string>{"db", "web-1", "web-10"}));
  EXPECT_EQ(*store_->LabelValues("__name__"), (std::vector<std::string>{"cpu", "mem"}));
  EXPECT_TRUE(store_->LabelValues("nope")->empty());
}

TEST_F(SeriesStoreTest, StatsReportDiskBytes) {
  SeriesId id = Series({{"__name__", "m"}});
  std::vector<Sample> samples;
  for (int i = 0; i < 1000; ++i) samples.push_back({i, i * 0.5});
  Append({"", 0, {{id, samples}}});
  ASSERT_TRUE(store_->Flush().ok());
  auto st = store_->Stats();
  EXPECT_EQ(st.samples, 1000u);
  EXPECT_EQ(st.series, 1u);
  EXPECT_GT(st.disk_bytes, 0u);
  EXPECT_GT(st.family_disk_bytes["samples"], 0u);
  EXPECT_GT(st.family_disk_bytes["rollup_60000"], 0u);
  EXPECT_EQ(st.head_samples, 0u);
}

TEST_F(SeriesStoreTest, ASeriesRepeatedInOneBatchIsCountedOnce) {
  SeriesId a = Series({{"__name__", "a"}});
  // Two refs (or inline series) resolving to the same series, same time.
  auto r = Append({"agent", 1, {{a, {{1000, 1}}}, {a, {{1000, 2}}}}});
  EXPECT_EQ(r.samples_added, 1u);
  EXPECT_EQ(store_->Stats().samples, 1u);
  auto got = ReadAll(a);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].value, 2);  // the later one wins
  r = Append({"agent", 2, {{a, {{2000, 1}}}, {a, {{3000, 2}, {2000, 5}}}}});
  EXPECT_EQ(r.samples_added, 2u);
  EXPECT_EQ(store_->Stats().samples, 3u);
}

// A roll-up interrupted after some chunks (crash or error) and resumed in a
// later 2-hour window once restarted at series 1 towards the newer target,
// adding the finished chunks' windows a second time (count 60 -> 120).
TEST_F(SeriesStoreTest, AnInterruptedRollUpIsFinishedNotRepeated) {
  std::atomic<bool> fail = false;
  StoreOptions o;
  o.rollup_chunk_series = 1;
  o.test_fault = [&](std::string_view point) {
    return fail && point == "rollup_chunk" ? absl::UnavailableError("injected: disk gone") : absl::OkStatus();
  };
  Open(o);
  const int64_t t0 = keys::WindowStart(now_ms_, 2 * 3'600'000);
  std::vector<SeriesId> ids;
  for (int i = 0; i < 3; ++i)
    ids.push_back(Series({{"__name__", "c"}, {"i", std::to_string(i)}}, MetricType::kCounter));
  for (int s = 0; s < 3600; ++s) {
    AppendBatch b{"agent", static_cast<uint64_t>(s + 1), {}};
    for (SeriesId id : ids) b.series.push_back({id, {{t0 + s * 1000LL, double(s)}}});
    Append(b);
  }
  now_ms_ = t0 + 2 * kDayMs + 2 * 3'600'000 + 1;  // the first 2 h slab is due
  fail = true;
  EXPECT_FALSE(store_->Flush().ok());  // interrupted after a chunk
  EXPECT_GT(store_->Stats().maintenance_failures, 0u);
  EXPECT_NE(store_->Stats().last_maintenance_error.find("injected"), std::string::npos);
  // Resumed after a restart, in a later window.
  Open(o);
  now_ms_ = now_ms_ + 2 * 3'600'000;
  fail = false;
  ASSERT_TRUE(store_->Flush().ok());
  EXPECT_EQ(store_->Stats().last_maintenance_error, "");
  EXPECT_GE(store_->Stats().rolled_up_until_ms, t0 + 2 * 3'600'000);
  for (SeriesId id : ids) {
    auto w = store_->ReadRollup(id, 60'000, t0, t0 + 3'599'999);
    ASSERT_TRUE(w.ok()) << w.status();
    ASSERT_EQ(w->size(), 60u);
    for (const auto& [start, agg] : *w) {
      EXPECT_EQ(agg.count, 60u) << "series " << id << " window " << start;
      EXPECT_EQ(agg.increase, 59) << "series " << id << " window " << start;
    }
  }
}

// Maintenance runs off the append path; its errors are kept and reported,
// nothing acknowledged is lost, and memory stays bounded while it fails.
TEST_F(SeriesStoreTest, FailingCutsAreReportedAndBoundHeadMemory) {
  std::atomic<bool> fail = true;
  StoreOptions o;
  o.max_head_samples = 10;
  o.test_fault = [&](std::string_view point) {
    return fail && point == "cut" ? absl::UnavailableError("injected: cannot cut") : absl::OkStatus();
  };
  Open(o);
  SeriesId a = Series({{"__name__", "a"}});
  uint64_t seq = 0;
  absl::Status refused;
  for (int i = 0; i < 100 && refused.ok(); ++i) {
    auto r = store_->Append({"agent", ++seq, {{a, {{1000 + i, double(i)}}}}});
    if (!r.ok()) refused = r.status();
  }
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable) << refused;
  EXPECT_NE(std::string(refused.message()).find("injected"), std::string::npos) << refused;
  EXPECT_LE(store_->Stats().head_samples, 20u);
  EXPECT_GT(store_->Stats().maintenance_failures, 0u);
  const uint64_t stored = ReadAll(a).size();
  EXPECT_EQ(stored, store_->Stats().samples);  // every acknowledged sample reads back
  fail = false;
  ASSERT_TRUE(store_->Flush().ok());
  EXPECT_EQ(store_->Stats().last_maintenance_error, "");
  EXPECT_TRUE(store_->Append({"agent", ++seq, {{a, {{5000, 1}}}}}).ok());
  EXPECT_EQ(ReadAll(a).size(), stored + 1);
}

TEST_F(SeriesStoreTest, DeletedSeriesAreGoneEverywhereAndStayGone) {
  SeriesId bad = Series({{"__name__", "m"}, {"host", "poison"}});
  SeriesId good = Series({{"__name__", "m"}, {"host", "ok"}});
  Append({"agent", 1, {{bad, {{1000, 1}, {2000, 2}}}, {good, {{1000, 3}}}}});
  ASSERT_TRUE(store_->Flush().ok());
  Append({"agent", 2, {{bad, {{3000, 4}}}}});  // one in the head too
  EXPECT_EQ(store_->Stats().samples, 4u);
  auto n = store_->DeleteSeries(kDefaultTenant, *model::ParseSelector(R"(m{host="poison"})"));
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 1u);
  auto check = [&] {
    EXPECT_EQ(*store_->Select(*model::ParseSelector("m")), std::vector<SeriesId>{good});
    EXPECT_FALSE(store_->GetSeries(bad).has_value());
    EXPECT_EQ(*store_->LabelValues("host"), std::vector<std::string>{"ok"});
    EXPECT_EQ(store_->Stats().series, 1u);
    EXPECT_EQ(store_->Stats().samples, 1u);
    EXPECT_TRUE(ReadAll(bad).empty());
  };
  check();
  // An append still holding the id drops its samples, visibly.
  auto r = Append({"agent", 3, {{bad, {{4000, 5}}}, {good, {{4000, 6}}}}});
  EXPECT_EQ(r.samples_added, 1u);
  ASSERT_EQ(r.deleted.size(), 1u);
  EXPECT_EQ(r.deleted[0], (std::pair<SeriesId, uint64_t>{bad, 1}));
  Open(StoreOptions{});
  EXPECT_EQ(store_->Stats().samples, 2u);
  EXPECT_FALSE(store_->GetSeries(bad).has_value());
  // The same labels again make a new, empty series.
  SeriesId again = Series({{"__name__", "m"}, {"host", "poison"}});
  EXPECT_NE(again, bad);
  EXPECT_TRUE(ReadAll(again).empty());
}

TEST_F(SeriesStoreTest, TenantsAreSeparate) {
  Labels l = {{"__name__", "up"}, {"job", "x"}};
  auto t0 = store_->GetOrCreateSeries(0, l, MetricType::kGauge);
  auto t1 = store_->GetOrCreateSeries(1, l, MetricType::kGauge);
  ASSERT_TRUE(t0.ok() && t1.ok());
  EXPECT_NE(*t0, *t1);  // the same label set in two tenants is two series
  EXPECT_EQ(*store_->Select(0, *model::ParseSelector("up")), std::vector<SeriesId>{*t0});
  EXPECT_EQ(*store_->Select(1, *model::ParseSelector("up")), std::vector<SeriesId>{*t1});
  EXPECT_TRUE(store_->Select(2, *model::ParseSelector("up"))->empty());
  AppendBatch b{"agent", 5, {{*t1, {{1000, 1}}}}};
  b.tenant = 1;
  ASSERT_TRUE(store_->Append(b).ok());
  EXPECT_EQ(store_->AgentSequence(1, "agent"), 5u);
  EXPECT_EQ(store_->AgentSequence(0, "agent"), 0u);     // sequences are per tenant
  AppendBatch cross{"agent", 1, {{*t1, {{1000, 1}}}}};  // tenant 0 writing tenant 1's series
  EXPECT_EQ(store_->Append(cross).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(store_->LabelNames(2, 0, nullptr)->empty());
  Open(StoreOptions{});
  EXPECT_EQ(store_->AgentSequence(1, "agent"), 5u);
  EXPECT_EQ(*store_->Select(1, *model::ParseSelector("up")), std::vector<SeriesId>{*t1});
}

TEST_F(SeriesStoreTest, LabelListingsCanBeBounded) {
  for (int i = 0; i < 50; ++i) Series({{"__name__", "m"}, {"v", "value" + std::to_string(100 + i)}});
  bool truncated = false;
  auto values = store_->LabelValues(kDefaultTenant, "v", 10, &truncated);
  ASSERT_TRUE(values.ok());
  EXPECT_TRUE(truncated);
  ASSERT_EQ(values->size(), 10u);
  EXPECT_EQ(values->front(), "value100");
  EXPECT_EQ(values->back(), "value109");
  values = store_->LabelValues(kDefaultTenant, "v", 50, &truncated);
  EXPECT_FALSE(truncated);
  EXPECT_EQ(values->size(), 50u);
}

TEST_F(SeriesStoreTest, ARollupResolutionTwiceIsAClearError) {
  store_.reset();
  StoreOptions o;
  o.path = dir_.Sub("db2");
  o.rollups = {{60'000, kDayMs}, {60'000, kDayMs}};
  auto s = SeriesStore::Open(o);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(s.status().message()).find("twice"), std::string::npos);
}

// An agent that re-sends batches (after a sequence conflict) sends samples
// the store holds already: stored once, and counted once in the rollups
// even when they are older than the roll-up watermark.
TEST_F(SeriesStoreTest, ResentSamplesOlderThanTheWatermarkCountOnceInRollups) {
  const int64_t t0 = keys::WindowStart(now_ms_, 2 * 3'600'000);
  SeriesId c = Series({{"__name__", "c"}}, MetricType::kCounter);
  AppendBatch first{"agent", 1, {{c, {}}}};
  for (int s = 0; s < 60; ++s) first.series[0].samples.push_back({t0 + s * 1000LL, double(s)});
  Append(first);
  now_ms_ = t0 + 3 * kDayMs;
  ASSERT_TRUE(store_->Flush().ok());
  ASSERT_GT(store_->Stats().rolled_up_until_ms, t0 + 60'000);
  AppendBatch again = first;
  again.sequence = 2;
  auto r = Append(again);
  EXPECT_EQ(r.samples_added, 0u);
  EXPECT_EQ(store_->Stats().samples, 60u);
  auto w = store_->ReadRollup(c, 60'000, t0, t0 + 59'999);
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_EQ(w->size(), 1u);
  EXPECT_EQ((*w)[0].second.count, 60u);
  EXPECT_EQ((*w)[0].second.increase, 59);
}

}  // namespace
}  // namespace sheaf::storage
