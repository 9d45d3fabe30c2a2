// The evaluator over a real store, with expected values worked out by hand
// from Prometheus' definitions. tests/e2e/promql_compat_test.py compares
// against a real Prometheus on generated data.
#include "promql/engine.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <functional>
#include <map>
#include <sstream>

#include "model/labels.h"
#include "model/matcher.h"
#include "storage/series_store.h"
#include "tests/support/temp_dir.h"

namespace sheaf::promql {
namespace {

using model::Labels;
using model::Sample;

constexpr int64_t kMin = 60'000;

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    storage::StoreOptions o;
    o.path = dir_.Sub("db");
    o.sync = false;
    o.now_ms = [] { return int64_t{1'000'000'000}; };
    auto s = storage::SeriesStore::Open(o);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
    engine_ = std::make_unique<Engine>(store_.get(), options_);
  }

  void Reopen(EngineOptions options) { engine_ = std::make_unique<Engine>(store_.get(), options); }

  // One series in Prometheus' test notation: `name{a="b"}` and values such
  // as `0+10x5` (0, 10, ... 50), `1 2 _ 4` (_: no sample), `stale`, one
  // every `interval_ms` from 0.
  void Load(std::string_view selector, std::string_view values, int64_t interval_ms = kMin,
            model::MetricType type = model::MetricType::kGauge) {
    auto matchers = model::ParseSelector(selector);
    ASSERT_TRUE(matchers.ok()) << matchers.status();
    Labels labels;
    for (const auto& m : *matchers) labels.push_back({m.name(), m.value()});
    ASSERT_TRUE(model::Canonicalize(labels).ok());
    auto id = store_->GetOrCreateSeries(labels, type);
    ASSERT_TRUE(id.ok()) << id.status();
    std::vector<Sample> samples;
    int64_t t = 0;
    std::istringstream in{std::string(values)};
    std::string word;
    while (in >> word) {
      if (word == "_") {
        t += interval_ms;
      } else if (word == "stale") {
        samples.push_back({t, std::bit_cast<double>(uint64_t{0x7ff0000000000002})});
        t += interval_ms;
      } else if (size_t x = word.find('x'); x != std::string::npos) {
        size_t sign = word.find_first_of("+-", 1);
        double start = std::stod(word.substr(0, sign));
        double step = std::stod(word.substr(sign, x - sign));
        int count = std::stoi(word.substr(x + 1));
        for (int i = 0; i <= count; ++i, t += interval_ms) samples.push_back({t, start + step * i});
      } else {
        samples.push_back({t, std::stod(word)});
        t += interval_ms;
      }
    }
    storage::AppendBatch batch;
    batch.series.push_back({*id, samples});
    auto r = store_->Append(batch);
    ASSERT_TRUE(r.ok()) << r.status();
  }

  absl::StatusOr<QueryResult> Instant(std::string_view q, int64_t t_ms) {
    QueryParams p;
    p.start_ms = p.end_ms = t_ms;
    return engine_->Query(q, p);
  }

  absl::StatusOr<QueryResult> Range(std::string_view q, int64_t start, int64_t end, int64_t step) {
    QueryParams p;
    p.start_ms = start;
    p.end_ms = end;
    p.step_ms = step;
    return engine_->Query(q, p);
  }

  // Label set (as text) -> value of an instant vector or scalar.
  std::map<std::string, double> Values(std::string_view q, int64_t t_ms) {
    auto r = Instant(q, t_ms);
    EXPECT_TRUE(r.ok()) << q << ": " << r.status();
    std::map<std::string, double> out;
    if (!r.ok()) return out;
    for (const auto& s : r->series) {
      EXPECT_EQ(s.points.size(), 1u) << q;
      if (!s.points.empty()) out[model::FormatLabels(s.labels)] = s.points[0].value;
    }
    return out;
  }

  double One(std::string_view q, int64_t t_ms) {
    auto v = Values(q, t_ms);
    EXPECT_EQ(v.size(), 1u) << q;
    return v.empty() ? NAN : v.begin()->second;
  }

  sheaf::testing::TempDir dir_;
  std::unique_ptr<storage::SeriesStore> store_;
  EngineOptions options_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(EngineTest, SelectorLooksBackFiveMinutesAndStopsAtStaleMarkers) {
  Load(R"(m{a="1"})", "1 2 3");        // 0, 1m, 2m
  Load(R"(m{a="2"})", "5 _ _ stale");  // 0; stale at 3m
  EXPECT_EQ(Values("m", 2 * kMin), (std::map<std::string, double>{{R"(m{a="1"})", 3}, {R"(m{a="2"})", 5}}));
  // 7m: a=1's last sample (2m) is exactly 5m old: still seen (2.42 includes the edge).
  EXPECT_EQ(Values("m", 7 * kMin), (std::map<std::string, double>{{R"(m{a="1"})", 3}}));
  EXPECT_TRUE(Values("m", 7 * kMin + 1).empty());
  // a=2 is gone once its stale marker is the newest sample.
  EXPECT_EQ(Values(R"(m{a="2"})", 2 * kMin + 59'000).size(), 1u);
  EXPECT_TRUE(Values(R"(m{a="2"})", 3 * kMin).empty());
  EXPECT_EQ(Values(R"(m{a="1"} offset 1m)", 2 * kMin).begin()->second, 2);
  EXPECT_EQ(Values(R"(m{a="1"} @ 60)", 100 * kMin).begin()->second, 2);
}

TEST_F(EngineTest, RateIncreaseAndDeltaExtrapolateAsPrometheus) {
  Load("c", "0+10x10", kMin, model::MetricType::kCounter);  // 0..100 over 0..10m
  // [5m, 10m] holds 6 samples 50..100: no extrapolation needed.
  EXPECT_DOUBLE_EQ(One("rate(c[5m])", 10 * kMin), 50.0 / 300);
  EXPECT_DOUBLE_EQ(One("increase(c[5m])", 10 * kMin), 50);
  // [4m30s, 9m30s]: samples 5m..9m (50..90); extrapolated 30s each side.
  EXPECT_DOUBLE_EQ(One("increase(c[5m])", 9 * kMin + 30'000), 40.0 * 300 / 240);
  EXPECT_DOUBLE_EQ(One("delta(c[5m])", 9 * kMin + 30'000), 40.0 * 300 / 240);
  EXPECT_DOUBLE_EQ(One("irate(c[5m])", 10 * kMin), 10.0 / 60);
  EXPECT_DOUBLE_EQ(One("idelta(c[5m])", 10 * kMin), 10);
  EXPECT_DOUBLE_EQ(One("deriv(c[5m])", 10 * kMin), 10.0 / 60);
  EXPECT_DOUBLE_EQ(One("predict_linear(c[5m], 60)", 10 * kMin), 110);
  // Fewer than two samples: no rate.
  EXPECT_TRUE(Values("rate(c[30s])", 10 * kMin).empty());
  // The name is dropped.
  EXPECT_EQ(Values("rate(c[5m])", 10 * kMin).begin()->first, "{}");
}

TEST_F(EngineTest, CounterResetsAreCompensated) {
  Load("r", "10 20 30 5 15", kMin, model::MetricType::kCounter);
  // Increase: 10 + 10 + 5 (restart from 0) + 10 = 35 over 4m, window [0, 4m].
  EXPECT_DOUBLE_EQ(One("increase(r[4m])", 4 * kMin), 35);
  EXPECT_DOUBLE_EQ(One("resets(r[10m])", 4 * kMin), 1);
  EXPECT_DOUBLE_EQ(One("changes(r[10m])", 4 * kMin), 4);
  EXPECT_DOUBLE_EQ(One("irate(r[10m])", 4 * kMin), 10.0 / 60);
  // A counter's extrapolation stops at zero: [0, 2m] over 0..2m of "10 20 30" with the window
  // [-30s, 2m]: to_zero = 120 * 10/20 = 60 > 30, so 30s is used: 20 * 150/120.
  EXPECT_DOUBLE_EQ(One("increase(r[150s])", 2 * kMin), 20.0 * 150 / 120);
}

TEST_F(EngineTest, OverTimeFunctions) {
  Load("g", "1 4 2 8 NaN 3");
  const int64_t t = 5 * kMin;
  EXPECT_DOUBLE_EQ(One("max_over_time(g[3m])", 3 * kMin), 8);
  EXPECT_DOUBLE_EQ(One("min_over_time(g[3m])", 3 * kMin), 1);
  EXPECT_DOUBLE_EQ(One("sum_over_time(g[3m])", 3 * kMin), 15);
  EXPECT_DOUBLE_EQ(One("avg_over_time(g[3m])", 3 * kMin), 3.75);
  EXPECT_DOUBLE_EQ(One("count_over_time(g[10m])", t), 6);
  EXPECT_DOUBLE_EQ(One("last_over_time(g[10m])", t), 3);
  EXPECT_EQ(Values("last_over_time(g[10m])", t).begin()->first, "g{}");  // keeps the name
  EXPECT_DOUBLE_EQ(One("present_over_time(g[10m])", t), 1);
  EXPECT_DOUBLE_EQ(One("quantile_over_time(0.5, g[3m])", 3 * kMin), 3);  // 1 2 4 8: 2 + (4-2)*0.5
  EXPECT_DOUBLE_EQ(One("stdvar_over_time(g[3m])", 3 * kMin), 7.1875);
  EXPECT_DOUBLE_EQ(One("stddev_over_time(g[3m])", 3 * kMin), std::sqrt(7.1875));
  EXPECT_TRUE(std::isnan(One("sum_over_time(g[10m])", t)));
  EXPECT_TRUE(Values("absent_over_time(g[10m])", t).empty());
  EXPECT_EQ(Values(R"(absent_over_time(nope{a="x",b=~"y"}[1m]))", t),
            (std::map<std::string, double>{{R"({a="x"})", 1}}));
}

TEST_F(EngineTest, Aggregations) {
  Load(R"(x{job="a",i="1"})", "1");
  Load(R"(x{job="a",i="2"})", "3");
  Load(R"(x{job="b",i="3"})", "10");
  Load(R"(x{job="b",i="4"})", "NaN");
  EXPECT_EQ(Values("sum by (job) (x)", 0).size(), 2u);
  EXPECT_TRUE(std::isnan(Values("sum by (job) (x)", 0)[R"({job="b"})"]));
  EXPECT_DOUBLE_EQ(Values("sum by (job) (x)", 0)[R"({job="a"})"], 4);
  EXPECT_DOUBLE_EQ(Values("avg without (i) (x)", 0)[R"({job="a"})"], 2);
  EXPECT_DOUBLE_EQ(Values("count(x)", 0)["{}"], 4);
  EXPECT_DOUBLE_EQ(Values("max by (job) (x)", 0)[R"({job="b"})"], 10);  // NaN loses to a number
  EXPECT_DOUBLE_EQ(Values("min by (job) (x)", 0)[R"({job="b"})"], 10);
  EXPECT_DOUBLE_EQ(Values("group by (job) (x)", 0)[R"({job="b"})"], 1);
  EXPECT_DOUBLE_EQ(Values(R"(stddev(x{job="a"}))", 0)["{}"], 1);
  EXPECT_DOUBLE_EQ(Values(R"(stdvar(x{job="a"}))", 0)["{}"], 1);
  EXPECT_DOUBLE_EQ(Values(R"(quantile(0.5, x{job="a"}))", 0)["{}"], 2);
  EXPECT_EQ(Values(R"(count_values("v", x{job="a"}))", 0),
            (std::map<std::string, double>{{R"({v="1"})", 1}, {R"({v="3"})", 1}}));
  // topk keeps the series' labels and answers best first; NaN is last.
  auto top = Instant("topk(2, x)", 0);
  ASSERT_TRUE(top.ok());
  ASSERT_EQ(top->series.size(), 2u);
  EXPECT_EQ(model::FormatLabels(top->series[0].labels), R"(x{i="3", job="b"})");
  EXPECT_EQ(model::FormatLabels(top->series[1].labels), R"(x{i="2", job="a"})");
  auto bottom = Instant("bottomk by (job) (1, x)", 0);
  ASSERT_TRUE(bottom.ok());
  ASSERT_EQ(bottom->series.size(), 2u);
  EXPECT_EQ(bottom->series[0].points[0].value, 1);
  EXPECT_EQ(bottom->series[1].points[0].value, 10);
  EXPECT_FALSE(Instant(R"(count_values("a-b", x))", 0).ok());
}

TEST_F(EngineTest, VectorMatching) {
  Load(R"(req{job="a",instance="1"})", "10");
  Load(R"(req{job="a",instance="2"})", "20");
  Load(R"(limit{job="a"})", "100");
  Load(R"(info{instance="1",version="v1"})", "1");
  // one-to-one with on(): only the matching labels stay.
  auto err = Instant("req / on (job) limit", 0);
  ASSERT_FALSE(err.ok());
  EXPECT_TRUE(IsExecutionError(err.status())) << err.status();
  EXPECT_NE(err.status().message().find("many-to-one matching must be explicit"), std::string::npos);
  EXPECT_EQ(Values("req / on (job) group_left limit", 0),
            (std::map<std::string, double>{{R"({instance="1", job="a"})", 0.1}, {R"({instance="2", job="a"})", 0.2}}));
  EXPECT_EQ(Values("req * on (instance) group_left (version) info", 0),
            (std::map<std::string, double>{{R"({instance="1", job="a", version="v1"})", 10}}));
  EXPECT_EQ(Values("limit / on (job) group_right req", 0),
            (std::map<std::string, double>{{R"({instance="1", job="a"})", 10}, {R"({instance="2", job="a"})", 5}}));
  // Comparisons filter and keep the left value; with bool they answer 0/1 without the name.
  EXPECT_EQ(Values("req > 15", 0), (std::map<std::string, double>{{R"(req{instance="2", job="a"})", 20}}));
  EXPECT_EQ(Values("15 < req", 0), (std::map<std::string, double>{{R"(req{instance="2", job="a"})", 20}}));
  EXPECT_EQ(Values("req > bool 15", 0),
            (std::map<std::string, double>{{R"({instance="1", job="a"})", 0}, {R"({instance="2", job="a"})", 1}}));
  EXPECT_EQ(Values(R"(req{instance="1"} + ignoring (instance) limit)", 0),
            (std::map<std::string, double>{{R"({job="a"})", 110}}));
  // Set operators.
  EXPECT_EQ(Values("req and on (instance) info", 0).size(), 1u);
  EXPECT_EQ(Values("req unless on (instance) info", 0).size(), 1u);
  EXPECT_EQ(Values("req or limit", 0).size(), 3u);
  // Many on the "one" side.
  auto dup = Instant("limit / on (job) req", 0);
  ASSERT_FALSE(dup.ok());
  EXPECT_NE(dup.status().message().find("found duplicate series for the match group"), std::string::npos)
      << dup.status();
  // Scalars.
  EXPECT_DOUBLE_EQ(One("2 ^ 3 - 1", 0), 7);
  EXPECT_DOUBLE_EQ(One("1 < bool 2", 0), 1);
  EXPECT_DOUBLE_EQ(One(R"(scalar(limit) * 2)", 0), 200);
  EXPECT_DOUBLE_EQ(One("-req{instance=\"1\"} % 3", 0), std::fmod(-10, 3));
}

TEST_F(EngineTest, Functions) {
  Load(R"(m{a="x-1"})", "-2.5");
  Load(R"(h_bucket{le="0.1"})", "10", kMin, model::MetricType::kHistogram);
  Load(R"(h_bucket{le="1"})", "20", kMin, model::MetricType::kHistogram);
  Load(R"(h_bucket{le="+Inf"})", "20", kMin, model::MetricType::kHistogram);
  EXPECT_DOUBLE_EQ(One("abs(m)", 0), 2.5);
  EXPECT_DOUBLE_EQ(One("ceil(m)", 0), -2);
  EXPECT_DOUBLE_EQ(One("floor(m)", 0), -3);
  EXPECT_DOUBLE_EQ(One("round(m)", 0), -2);  // floor(x + 0.5)
  EXPECT_DOUBLE_EQ(One("round(m, 2)", 0), -2);
  EXPECT_DOUBLE_EQ(One("clamp(m, -1, 1)", 0), -1);
  EXPECT_TRUE(Values("clamp(m, 1, -1)", 0).empty());
  EXPECT_DOUBLE_EQ(One("clamp_min(m, 0)", 0), 0);
  EXPECT_DOUBLE_EQ(One("clamp_max(m, -3)", 0), -3);
  EXPECT_DOUBLE_EQ(One("sgn(m)", 0), -1);
  EXPECT_DOUBLE_EQ(One("timestamp(m)", 2 * kMin), 0);
  EXPECT_DOUBLE_EQ(One("time()", 2 * kMin), 120);
  EXPECT_DOUBLE_EQ(One("vector(1)", 0), 1);
  EXPECT_DOUBLE_EQ(One("year(vector(86400 * 365))", 0), 1971);
  EXPECT_DOUBLE_EQ(One("days_in_month(vector(86400 * 40))", 0), 28);
  EXPECT_DOUBLE_EQ(One("day_of_week()", 0), 4);  // 1970-01-01 was a Thursday
  EXPECT_EQ(Values(R"(absent(nope{a="b"}))", 0), (std::map<std::string, double>{{R"({a="b"})", 1}}));
  EXPECT_TRUE(Values("absent(m)", 0).empty());
  EXPECT_EQ(Values(R"q(label_replace(m, "b", "$1-$2", "a", "(.*)-(.*)"))q", 0),
            (std::map<std::string, double>{{R"(m{a="x-1", b="x-1"})", -2.5}}));
  EXPECT_EQ(Values(R"(label_replace(m, "a", "", "a", ".*"))", 0), (std::map<std::string, double>{{"m{}", -2.5}}));
  EXPECT_EQ(Values(R"(label_join(m, "j", "+", "a", "__name__"))", 0),
            (std::map<std::string, double>{{R"(m{a="x-1", j="x-1+m"})", -2.5}}));
  EXPECT_FALSE(Instant(R"(label_replace(m, "1x", "", "a", ""))", 0).ok());
  EXPECT_FALSE(Instant(R"q(label_replace(m, "b", "", "a", "("))q", 0).ok());
  // rank 0.5 * 20 = 10: the first bucket's top.
  EXPECT_DOUBLE_EQ(One("histogram_quantile(0.5, h_bucket)", 0), 0.1);
  // rank 15: in (0.1, 1], half way.
  EXPECT_DOUBLE_EQ(One("histogram_quantile(0.75, h_bucket)", 0), 0.55);
  // Above the last finite bucket: its bound.
  EXPECT_DOUBLE_EQ(One("histogram_quantile(1, h_bucket)", 0), 1);
  auto sorted = Instant("sort_desc(m or h_bucket)", 0);
  ASSERT_TRUE(sorted.ok());
  ASSERT_EQ(sorted->series.size(), 4u);
  EXPECT_EQ(sorted->series[0].points[0].value, 20);
  EXPECT_EQ(sorted->series[3].points[0].value, -2.5);
}

TEST_F(EngineTest, RangeQueriesSubqueriesAndTypes) {
  Load("c", "0+1x20", kMin, model::MetricType::kCounter);
  auto r = Range("c", 0, 10 * kMin, 5 * kMin);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->type, ValueType::kMatrix);
  ASSERT_EQ(r->series.size(), 1u);
  ASSERT_EQ(r->series[0].points.size(), 3u);
  EXPECT_EQ(r->series[0].points[2].timestamp_ms, 10 * kMin);
  EXPECT_EQ(r->series[0].points[2].value, 10);
  // A scalar over a range is one series without labels.
  auto t = Range("time()", 0, 2 * kMin, kMin);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->series[0].points.size(), 3u);
  // Subquery: the max of the 1m rate over the last 5m, at 1m steps.
  EXPECT_DOUBLE_EQ(One("max_over_time(rate(c[2m])[5m:1m])", 10 * kMin), 1.0 / 60);
  EXPECT_DOUBLE_EQ(One("count_over_time(c[5m:1m])", 10 * kMin), 6);
  // A range vector at an instant is a matrix of raw samples.
  auto m = Instant("c[2m]", 10 * kMin);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->type, ValueType::kMatrix);
  EXPECT_EQ(m->series[0].points.size(), 3u);
  // A range query of a range vector is refused, as Prometheus does.
  auto bad = Range("c[5m]", 0, kMin, kMin);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("invalid expression type \"range vector\""), std::string::npos);
  auto s = Instant(R"("hello")", 0);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->type, ValueType::kString);
  EXPECT_EQ(s->string_value, "hello");
  auto parse = Instant("sum(rate(c[5m])", 0);
  ASSERT_FALSE(parse.ok());
  EXPECT_EQ(parse.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(IsExecutionError(parse.status()));
}

TEST_F(EngineTest, LimitsNameThemselves) {
  for (int i = 0; i < 10; ++i) Load(fmt::format("s{{i=\"{}\"}}", i), "0+1x100", 10'000);
  EngineOptions o;
  o.limits.max_series = 5;
  Reopen(o);
  auto r = Instant("sum(s)", 60'000);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(r.status().message().find("more than 5 series"), std::string::npos) << r.status();
  o = {};
  o.limits.max_samples = 100;
  Reopen(o);
  r = Instant("sum(s)", 1'000'000);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(r.status().message().find("100 samples"), std::string::npos) << r.status();
  o = {};
  o.limits.max_points = 20;
  Reopen(o);
  r = Range("s", 0, 100'000, 10'000);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("110 points, more than 20"), std::string::npos) << r.status();
  r = Range("s", 0, 1'000'000'000, 1);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("maximum resolution"), std::string::npos) << r.status();
  // Prometheus' bound exactly: (end - start) / step up to 11,000 is fine.
  Reopen({});
  EXPECT_TRUE(Range("s", 0, 11'000'000, 1'000).ok());
  r = Range("s", 0, 11'001'000, 1'000);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("maximum resolution of 11000"), std::string::npos) << r.status();
}

TEST_F(EngineTest, CheckStopsTheEvaluationItself) {
  for (int i = 0; i < 50; ++i) Load(fmt::format("s{{i=\"{}\"}}", i), "0+1x100", 10'000);
  int calls = 0;
  QueryParams p;
  p.start_ms = 0;
  p.end_ms = 1'000'000;
  p.step_ms = 10'000;
  p.check = [&]() -> absl::Status {
    if (++calls > 5) return absl::CancelledError("client cancelled");
    return absl::OkStatus();
  };
  auto r = engine_->Query("sum(rate(s[1m]))", p);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kCancelled);
  // It stopped after a handful of series, not after reading all 50.
  EXPECT_LT(calls, 10);
}

}  // namespace
}  // namespace sheaf::promql

namespace sheaf::promql {
namespace {

TEST_F(EngineTest, ParallelReadsGiveTheSameAnswerInOrder) {
  for (int i = 0; i < 700; ++i) Load(fmt::format("p{{i=\"{}\"}}", 1000 + i), fmt::format("{}+1x30", i), 10'000);
  auto run = [&](size_t threads, const std::function<absl::Status()>& check = nullptr) {
    EngineOptions o;
    o.read_threads = threads;
    o.rollups = EngineOptions::Rollups::kNever;
    Engine engine(store_.get(), o);
    QueryParams p;
    p.start_ms = 0;
    p.end_ms = 300'000;
    p.step_ms = 15'000;
    p.check = check;
    return engine.Query("p + 0 * rate(p[1m])", p);
  };
  auto one = run(1);
  auto four = run(4);
  ASSERT_TRUE(one.ok() && four.ok());
  ASSERT_EQ(one->series.size(), 700u);
  ASSERT_EQ(four->series.size(), 700u);
  for (size_t i = 0; i < 700; ++i) {
    ASSERT_EQ(one->series[i].labels, four->series[i].labels);
    ASSERT_EQ(one->series[i].points.size(), four->series[i].points.size());
    for (size_t k = 0; k < one->series[i].points.size(); ++k) {
      ASSERT_EQ(one->series[i].points[k].value, four->series[i].points[k].value);
    }
  }
  // Stopped half way: the readers are stopped and joined, nothing leaks or hangs.
  int calls = 0;
  auto stopped =
      run(4, [&]() -> absl::Status { return ++calls > 300 ? absl::CancelledError("stop") : absl::OkStatus(); });
  EXPECT_EQ(stopped.status().code(), absl::StatusCode::kCancelled);
}

}  // namespace
}  // namespace sheaf::promql

namespace sheaf::promql {
namespace {

// A sink gets exactly the series Query returns, in the same order; for a
// selector or a range function over one, it gets each series while the
// rest are still being read.
class EngineStreamingTest : public EngineTest {};

TEST_F(EngineStreamingTest, SinkGetsTheWholeAnswerInOrder) {
  for (int i = 0; i < 300; ++i) {
    Load(fmt::format("req_total{{host=\"h{:03}\",code=\"{}\"}}", i, i % 3 == 0 ? 500 : 200), "0+10x30 stale 5+1x10",
         kMin, model::MetricType::kCounter);
  }
  Load("other{host=\"h000\"}", "1 2 3");
  for (const char* q : {"req_total", "rate(req_total[5m])", "last_over_time(req_total[3m])",
                        "rate({__name__=~\"req_total|other\"}[5m])", "sum by (code) (rate(req_total[5m]))",
                        "absent_over_time(nothing[5m])", "req_total * 2", "1 + 1", "{host=\"h001\"}"}) {
    for (int64_t step : {int64_t{0}, 2 * kMin}) {
      QueryParams p;
      p.start_ms = 10 * kMin;
      p.end_ms = step > 0 ? 40 * kMin : p.start_ms;
      p.step_ms = step;
      auto whole = engine_->Query(q, p);
      ASSERT_TRUE(whole.ok()) << q << ": " << whole.status();
      std::vector<ResultSeries> got;
      ValueType type = ValueType::kNone;
      auto streamed = engine_->Query(q, p, [&](ValueType t, ResultSeries&& s) {
        type = t;
        got.push_back(std::move(s));
        return absl::OkStatus();
      });
      ASSERT_TRUE(streamed.ok()) << q << ": " << streamed.status();
      EXPECT_TRUE(streamed->series.empty()) << q;
      ASSERT_EQ(got.size(), whole->series.size()) << q << " step " << step;
      if (!got.empty()) {
        EXPECT_EQ(type, whole->type) << q;
      }
      EXPECT_EQ(streamed->type, whole->type) << q;
      EXPECT_EQ(streamed->stats.points_returned, whole->stats.points_returned) << q;
      for (size_t i = 0; i < got.size(); ++i) {
        ASSERT_EQ(got[i].labels, whole->series[i].labels) << q << " #" << i;
        ASSERT_EQ(got[i].points.size(), whole->series[i].points.size()) << q << " #" << i;
        for (size_t j = 0; j < got[i].points.size(); ++j) {
          EXPECT_EQ(got[i].points[j].timestamp_ms, whole->series[i].points[j].timestamp_ms);
          EXPECT_EQ(std::bit_cast<uint64_t>(got[i].points[j].value),
                    std::bit_cast<uint64_t>(whole->series[i].points[j].value))
              << q << " #" << i << " point " << j;
        }
      }
    }
  }
}

TEST_F(EngineStreamingTest, TheFirstSeriesGoesOutBeforeTheRestAreRead) {
  for (int i = 0; i < 1000; ++i) {
    Load(fmt::format("req_total{{host=\"h{:04}\"}}", i), "0+10x30", kMin, model::MetricType::kCounter);
  }
  for (const char* q : {"rate(req_total[5m])", "req_total"}) {
    // params.check is polled once per series read: how many polls had
    // happened when the sink got its first series shows how far the
    // evaluation had gone.
    int polls = 0, polls_at_first = -1, series = 0;
    QueryParams p;
    p.start_ms = 10 * kMin;
    p.end_ms = 30 * kMin;
    p.step_ms = kMin;
    p.check = [&] {
      ++polls;
      return absl::OkStatus();
    };
    auto r = engine_->Query(q, p, [&](ValueType, ResultSeries&&) {
      if (series++ == 0) polls_at_first = polls;
      return absl::OkStatus();
    });
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(series, 1000) << q;
    EXPECT_GE(polls, 1000) << q;
    EXPECT_LT(polls_at_first, 100) << q << ": the first series waited for " << polls_at_first << " of " << polls;
    // A sink that refuses stops the evaluation at once, with its error.
    polls = 0;
    series = 0;
    auto stopped = engine_->Query(q, p, [&](ValueType, ResultSeries&&) {
      return ++series == 3 ? absl::CancelledError("the client went away") : absl::OkStatus();
    });
    EXPECT_EQ(stopped.status().code(), absl::StatusCode::kCancelled) << q;
    EXPECT_EQ(series, 3);
    EXPECT_LT(polls, 100) << q;
  }
}

TEST_F(EngineStreamingTest, MaxPointsIsCheckedAsSeriesGoOut) {
  for (int i = 0; i < 50; ++i) Load(fmt::format("g{{i=\"{:02}\"}}", i), "1+1x30");
  EngineOptions o;
  o.limits.max_points = 100;
  Reopen(o);
  QueryParams p;
  p.start_ms = 0;
  p.end_ms = 30 * kMin;
  p.step_ms = kMin;  // 31 points a series: the fourth is over
  int series = 0;
  auto r = engine_->Query("g", p, [&](ValueType, ResultSeries&&) {
    ++series;
    return absl::OkStatus();
  });
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(r.status().message().find("max-points"), std::string_view::npos) << r.status();
  EXPECT_EQ(series, 3);
}

}  // namespace
}  // namespace sheaf::promql
