#include "storage/series_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "storage/labels.h"

#include "tests/support/temp_dir.h"

namespace sheaf::storage {
namespace {

class SeriesStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }

  void Open(uint64_t max_series = 1000) {
    store_.reset();
    StoreOptions o;
    o.path = dir_.Sub("db");
    o.max_series = max_series;
    o.sync = false;  // durability is tested across processes elsewhere
    auto s = SeriesStore::Open(o);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
  }

  SeriesId Series(Labels labels, MetricType type = MetricType::kGauge) {
    EXPECT_TRUE(Canonicalize(labels).ok());
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
    auto m = ParseSelector(sel);
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
  EXPECT_NE(second.status().message().find("another sheafd"), std::string_view::npos)
      << second.status();
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
}

}  // namespace
}  // namespace sheaf::storage
