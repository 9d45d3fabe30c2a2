// The evaluator answers from rollup windows where they give exactly the raw
// answer: the same store queried with and without rollups must agree, and
// a 30-day range at a 1h step must not decode a single raw sample.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <random>
#include <thread>

#include "model/labels.h"
#include "model/matcher.h"
#include "promql/engine.h"
#include "storage/series_store.h"
#include "tests/support/temp_dir.h"

namespace sheaf::promql {
namespace {

constexpr int64_t kHour = 3'600'000;
constexpr int64_t kDay = 24 * kHour;
// Data: 30 days ending here (an hour edge), every 5 minutes with jitter.
constexpr int64_t kEnd = 1'790'000'000'000 - 1'790'000'000'000 % kHour;
constexpr int64_t kStart = kEnd - 30 * kDay;
constexpr int64_t kRecent = kEnd + 2 * kDay + 12 * kHour;

class RollupQueryTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new sheaf::testing::TempDir();
    storage::StoreOptions o;
    o.path = dir_->Sub("db");
    o.sync = false;
    o.now_ms = [] { return kEnd + 3 * kDay; };
    o.raw_retention_ms = 60 * kDay;  // keep raw too, to compare against it
    o.maintenance_interval_ms = 20;
    auto s = storage::SeriesStore::Open(o);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = s->release();
    std::mt19937_64 rng(7);
    for (int i = 0; i < 12; ++i) {
      bool counter = i % 2 == 0;
      model::Labels labels = {{"__name__", counter ? "requests_total" : "temperature"},
                              {"host", fmt::format("h{}", i)},
                              {"region", i % 3 == 0 ? "eu" : "us"}};
      ASSERT_TRUE(model::Canonicalize(labels).ok());
      auto id = store_->GetOrCreateSeries(labels, counter ? model::MetricType::kCounter : model::MetricType::kGauge);
      ASSERT_TRUE(id.ok());
      std::vector<model::Sample> samples;
      double v = 100;
      for (int64_t t = kStart + static_cast<int64_t>(rng() % 300'000); t < kEnd; t += 300'000 + rng() % 5'000) {
        if (i == 4 && t > kStart + 10 * kDay && t < kStart + 12 * kDay) continue;  // a two-day gap
        if (counter) {
          v = rng() % 500 == 0 ? static_cast<double>(rng() % 10) : v + static_cast<double>(rng() % 100);
        } else {
          v = static_cast<double>(static_cast<int64_t>(rng() % 4000)) / 100 - 10;
        }
        samples.push_back({t, v});
      }
      // Some samples exactly on hour edges, where windows meet.
      if (i == 2) samples.push_back({kEnd - 5 * kHour, samples.back().value + 1});
      std::sort(samples.begin(), samples.end(),
                [](const model::Sample& a, const model::Sample& b) { return a.timestamp_ms < b.timestamp_ms; });
      storage::AppendBatch batch;
      batch.series.push_back({*id, samples});
      ASSERT_TRUE(store_->Append(batch).ok());
    }
    ASSERT_TRUE(store_->Flush().ok());
    // The background roll-up covers everything older than 2 days before "now".
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (store_->Stats().rolled_up_until_ms < kEnd && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ASSERT_GE(store_->Stats().rolled_up_until_ms, kEnd) << "the roll-up did not run";
    // And two recent hours, after the rolled-up range.
    auto ids = store_->Select({*model::Matcher::Create(model::Matcher::Op::kEqual, "host", "h0")});
    ASSERT_TRUE(ids.ok() && ids->size() == 1);
    storage::AppendBatch recent;
    recent.series.push_back({(*ids)[0], {}});
    for (int64_t t = kRecent; t < kRecent + 2 * kHour; t += 10'000) {
      recent.series[0].samples.push_back({t, static_cast<double>(t - kRecent) / 1000});
    }
    ASSERT_TRUE(store_->Append(recent).ok());
  }
  static void TearDownTestSuite() {
    delete store_;
    delete dir_;
  }

  static absl::StatusOr<QueryResult> Run(bool rollups, const std::string& q, int64_t start, int64_t end, int64_t step) {
    EngineOptions o;
    o.rollups = rollups ? EngineOptions::Rollups::kAuto : EngineOptions::Rollups::kNever;
    Engine engine(store_, o);
    QueryParams p;
    p.start_ms = start;
    p.end_ms = end;
    p.step_ms = step;
    return engine.Query(q, p);
  }

  static void ExpectSame(const QueryResult& a, const QueryResult& b, const std::string& q) {
    ASSERT_EQ(a.series.size(), b.series.size()) << q;
    for (size_t i = 0; i < a.series.size(); ++i) {
      ASSERT_EQ(a.series[i].labels, b.series[i].labels) << q;
      ASSERT_EQ(a.series[i].points.size(), b.series[i].points.size())
          << q << " " << model::FormatLabels(a.series[i].labels);
      for (size_t k = 0; k < a.series[i].points.size(); ++k) {
        const auto& x = a.series[i].points[k];
        const auto& y = b.series[i].points[k];
        ASSERT_EQ(x.timestamp_ms, y.timestamp_ms) << q;
        ASSERT_NEAR(x.value, y.value, 1e-9 * std::max({std::fabs(x.value), std::fabs(y.value), 1e-3}))
            << q << " at " << x.timestamp_ms;
      }
    }
  }

  static sheaf::testing::TempDir* dir_;
  static storage::SeriesStore* store_;
};

sheaf::testing::TempDir* RollupQueryTest::dir_ = nullptr;
storage::SeriesStore* RollupQueryTest::store_ = nullptr;

TEST_F(RollupQueryTest, SameAnswerAsRawSamples) {
  const std::vector<std::string> queries = {
      "requests_total",
      "temperature",
      "timestamp(temperature)",
      "rate(requests_total[1h])",
      "increase(requests_total[2h])",
      "delta(temperature[1h])",
      "rate(temperature[1h])",  // a gauge: rate reads raw samples, still the same answer
      "sum by (region) (rate(requests_total[1h]))",
      "count_over_time(temperature[1h])",
      "sum_over_time(temperature[3h])",
      "avg_over_time(temperature[1h])",
      "min_over_time(temperature[1h])",
      "max_over_time(requests_total[1d])",
      "last_over_time(temperature[1h])",
      "present_over_time(temperature[1h])",
      "absent_over_time(temperature{host=\"h4\"}[1h])",
      "max by (region) (max_over_time(temperature[1h] offset 1d))",
      "rate(requests_total[1m])",
  };
  struct Range {
    int64_t start, end, step;
  };
  for (Range r : {Range{kStart, kEnd, kHour}, Range{kEnd - 2 * kDay, kEnd, 5 * 60'000},
                  Range{kStart + 7 * kHour, kStart + 9 * kHour, 60'000}}) {
    for (const std::string& q : queries) {
      auto with = Run(true, q, r.start, r.end, r.step);
      auto without = Run(false, q, r.start, r.end, r.step);
      ASSERT_TRUE(with.ok()) << q << ": " << with.status();
      ASSERT_TRUE(without.ok()) << q << ": " << without.status();
      EXPECT_EQ(without->stats.windows_read, 0u) << q;
      ExpectSame(*with, *without, q);
    }
  }
}

TEST_F(RollupQueryTest, RecentDataIsReadRawUnlessAskedOtherwise) {
  // Past the rolled-up range, windows would be computed from raw samples:
  // auto reads the raw samples directly; always gives the same answer.
  const std::string q = "rate(requests_total[5m])";
  auto fresh = Run(true, q, kRecent + kHour, kRecent + 2 * kHour, 60'000);
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(fresh->stats.rollup_resolution_ms, 0);
  EXPECT_EQ(fresh->stats.windows_read, 0u);
  EXPECT_GT(fresh->stats.samples_read, 300u);
  EngineOptions o;
  o.rollups = EngineOptions::Rollups::kAlways;
  QueryParams p;
  p.start_ms = kRecent + kHour;
  p.end_ms = kRecent + 2 * kHour;
  p.step_ms = 60'000;
  auto always = Engine(store_, o).Query(q, p);
  ASSERT_TRUE(always.ok());
  EXPECT_EQ(always->stats.rollup_resolution_ms, 60'000);
  EXPECT_GT(always->stats.windows_read, 0u);
  ExpectSame(*always, *fresh, q);
}

TEST_F(RollupQueryTest, ThirtyDaysAtAnHourStepReadNoRawSamples) {
  for (const char* q :
       {"sum by (region) (rate(requests_total[1h]))", "max_over_time(temperature[1h])", "temperature"}) {
    auto r = Run(true, q, kStart, kEnd, kHour);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->stats.samples_read, 0u) << q;
    EXPECT_GT(r->stats.windows_read, 0u) << q;
    EXPECT_EQ(r->stats.rollup_resolution_ms, kHour) << q;
    EXPECT_GT(r->stats.points_returned, 700u) << q;
  }
  // A step that is not a multiple of an hour uses the 1m rollup; one that
  // is not aligned at all reads raw samples.
  auto minute = Run(true, "rate(requests_total[5m])", kEnd - kDay, kEnd, 5 * 60'000);
  ASSERT_TRUE(minute.ok());
  EXPECT_EQ(minute->stats.rollup_resolution_ms, 60'000);
  EXPECT_EQ(minute->stats.samples_read, 0u);
  auto raw = Run(true, "rate(requests_total[5m])", kEnd - kDay + 1'234, kEnd, 5 * 60'000);
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(raw->stats.rollup_resolution_ms, 0);
  EXPECT_GT(raw->stats.samples_read, 0u);
}

}  // namespace
}  // namespace sheaf::promql
