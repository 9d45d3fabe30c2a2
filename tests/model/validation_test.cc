#include "model/validation.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>

#include "model/labels.h"

namespace sheaf::model {
namespace {

constexpr int64_t kNow = 1'700'000'000'000;

std::optional<Rejection> Labels_(Labels labels, MetricType type = MetricType::kGauge) {
  return ValidateLabels(labels, type, ValidationLimits{});
}

std::optional<Rejection> Samples(std::vector<Sample> samples, MetricType type = MetricType::kGauge,
                                 Labels labels = {{"__name__", "m"}}) {
  return ValidateSamples(labels, type, samples, kNow, ValidationLimits{});
}

TEST(ValidationTest, AcceptsAndCanonicalizesGoodLabels) {
  Labels l = {{"job", "node"}, {"__name__", "up"}, {"empty", ""}};
  EXPECT_FALSE(ValidateLabels(l, MetricType::kGauge, ValidationLimits{}).has_value());
  // Empty values are dropped (Prometheus treats them as absent); sorted.
  EXPECT_EQ(l, (Labels{{"__name__", "up"}, {"job", "node"}}));
}

TEST(ValidationTest, EachLabelRejectionHasItsReason) {
  EXPECT_EQ(Labels_({{"job", "x"}})->reason, RejectReason::kInvalidMetricName);
  EXPECT_EQ(Labels_({{"__name__", "1bad"}})->reason, RejectReason::kInvalidMetricName);
  EXPECT_EQ(Labels_({{"__name__", "m"}, {"bad-name", "x"}})->reason, RejectReason::kInvalidLabelName);
  EXPECT_EQ(Labels_({{"__name__", "m"}, {"__reserved", "x"}})->reason, RejectReason::kInvalidLabelName);
  EXPECT_EQ(Labels_({{"__name__", "m"}, {"a", "x"}, {"a", "y"}})->reason, RejectReason::kDuplicateLabelName);
  EXPECT_EQ(Labels_({{"__name__", "m"}, {"a", "\xff"}})->reason, RejectReason::kInvalidLabelValue);
  EXPECT_EQ(Labels_({{"__name__", "m"}, {"a", std::string(3000, 'x')}})->reason, RejectReason::kInvalidLabelValue);
  Labels many = {{"__name__", "m"}};
  for (int i = 0; i < 70; ++i) many.push_back({fmt::format("l{}", i), "v"});
  EXPECT_EQ(Labels_(many)->reason, RejectReason::kTooManyLabels);
}

TEST(ValidationTest, MessagesNameTheProblem) {
  auto r = Labels_({{"__name__", "m"}, {"bad-name", "x"}});
  ASSERT_TRUE(r.has_value());
  EXPECT_NE(r->detail.find("bad-name"), std::string::npos) << r->detail;
  auto t = Samples({{kNow - 30LL * 24 * 3600 * 1000, 1}});
  ASSERT_TRUE(t.has_value());
  EXPECT_NE(t->detail.find("clock"), std::string::npos) << t->detail;
}

TEST(ValidationTest, HistogramParts) {
  EXPECT_FALSE(Labels_({{"__name__", "rq_bucket"}, {"le", "0.5"}}, MetricType::kHistogram).has_value());
  EXPECT_FALSE(Labels_({{"__name__", "rq_bucket"}, {"le", "+Inf"}}, MetricType::kHistogram).has_value());
  EXPECT_FALSE(Labels_({{"__name__", "rq_sum"}}, MetricType::kHistogram).has_value());
  EXPECT_FALSE(Labels_({{"__name__", "rq_count"}}, MetricType::kHistogram).has_value());
  EXPECT_EQ(Labels_({{"__name__", "rq_bucket"}}, MetricType::kHistogram)->reason, RejectReason::kMissingLeLabel);
  EXPECT_EQ(Labels_({{"__name__", "rq_bucket"}, {"le", "abc"}}, MetricType::kHistogram)->reason,
            RejectReason::kMissingLeLabel);
  EXPECT_EQ(Labels_({{"__name__", "rq"}}, MetricType::kHistogram)->reason, RejectReason::kInvalidMetricName);
}

TEST(ValidationTest, TimestampWindow) {
  EXPECT_FALSE(Samples({{kNow, 1}, {kNow - 3600'000, 1}, {kNow + 60'000, 1}}).has_value());
  EXPECT_EQ(Samples({{kNow - 8LL * 24 * 3600 * 1000, 1}})->reason, RejectReason::kTimestampOutOfWindow);
  EXPECT_EQ(Samples({{kNow + 3600'000, 1}})->reason, RejectReason::kTimestampOutOfWindow);
}

TEST(ValidationTest, BackfillWidensOnlyThePastBound) {
  constexpr int64_t kDay = 86'400'000;
  ValidationLimits limits;
  limits.backfill_accept_past = std::chrono::hours(24 * 730);
  const Labels m = {{"__name__", "m"}};
  auto check = [&](int64_t ts, bool backfill) {
    std::vector<Sample> s = {{ts, 1}};
    return ValidateSamples(m, MetricType::kGauge, s, kNow, limits, backfill);
  };
  EXPECT_EQ(check(kNow - 30 * kDay, false)->reason, RejectReason::kTimestampOutOfWindow);
  EXPECT_FALSE(check(kNow - 30 * kDay, true).has_value());
  EXPECT_FALSE(check(kNow - 730 * kDay, true).has_value());
  auto too_old = check(kNow - 730 * kDay - 1, true);
  ASSERT_TRUE(too_old.has_value());
  EXPECT_EQ(too_old->reason, RejectReason::kTimestampOutOfWindow);
  EXPECT_NE(too_old->detail.find("older than anything sheafd keeps"), std::string::npos) << too_old->detail;
  EXPECT_NE(too_old->detail.find("730 days"), std::string::npos) << too_old->detail;
  // The future bound stays.
  EXPECT_EQ(check(kNow + 3600'000, true)->reason, RejectReason::kTimestampOutOfWindow);
  // Never narrower than the live window.
  limits.backfill_accept_past = std::chrono::hours(1);
  EXPECT_FALSE(check(kNow - 6 * kDay, true).has_value());
}

TEST(ValidationTest, ValueRulesPerType) {
  const double nan = std::nan(""), inf = std::numeric_limits<double>::infinity();
  EXPECT_EQ(Samples({{kNow, nan}})->reason, RejectReason::kInvalidValue);
  EXPECT_EQ(Samples({{kNow, inf}})->reason, RejectReason::kInvalidValue);
  EXPECT_FALSE(Samples({{kNow, -5}}, MetricType::kGauge).has_value());
  EXPECT_EQ(Samples({{kNow, -5}}, MetricType::kCounter)->reason, RejectReason::kInvalidValue);
  EXPECT_FALSE(Samples({{kNow, 5}}, MetricType::kCounter).has_value());
  EXPECT_EQ(Samples({{kNow, -1}}, MetricType::kHistogram, {{"__name__", "h_count"}})->reason,
            RejectReason::kInvalidValue);
  // A histogram's sum may be negative.
  EXPECT_FALSE(Samples({{kNow, -1}}, MetricType::kHistogram, {{"__name__", "h_sum"}}).has_value());
}

TEST(ValidationTest, StaleMarkerIsTheOnlyNaNAccepted) {
  const double stale = std::bit_cast<double>(kStaleMarkerBits);
  ASSERT_TRUE(std::isnan(stale));
  for (MetricType type : {MetricType::kUnspecified, MetricType::kGauge, MetricType::kCounter, MetricType::kHistogram}) {
    EXPECT_FALSE(Samples({{kNow, 1}, {kNow + 1, stale}}, type, {{"__name__", "m_count"}}).has_value())
        << static_cast<int>(type);
    // Any other NaN (another payload, the quiet NaN) is still refused.
    EXPECT_EQ(Samples({{kNow, std::bit_cast<double>(kStaleMarkerBits + 1)}}, type, {{"__name__", "m_count"}})->reason,
              RejectReason::kInvalidValue);
    EXPECT_EQ(Samples({{kNow, std::nan("")}}, type, {{"__name__", "m_count"}})->reason, RejectReason::kInvalidValue);
  }
}

TEST(ValidationTest, EmptyOrOversizedSeriesIsMalformed) {
  EXPECT_EQ(Samples({})->reason, RejectReason::kMalformedSeries);
  std::vector<Sample> many(100'001, Sample{kNow, 1});
  EXPECT_EQ(Samples(many)->reason, RejectReason::kMalformedSeries);
}

TEST(ValidationTest, LongLabelNamesAndHugeLabelSetsAreRejected) {
  // A 5 MiB label name once made every listing fail for everyone.
  EXPECT_EQ(Labels_({{"__name__", "m"}, {std::string(5 << 20, 'a'), "x"}})->reason, RejectReason::kInvalidLabelName);
  EXPECT_FALSE(Labels_({{"__name__", "m"}, {std::string(128, 'a'), "x"}}).has_value());
  Labels big = {{"__name__", "m"}};
  for (int i = 0; i < 20; ++i) big.push_back({fmt::format("l{}", i), std::string(1000, 'v')});
  EXPECT_EQ(Labels_(big)->reason, RejectReason::kLabelsTooLarge);
}

TEST(ValidationTest, MessagesStaySmallWhateverTheSeries) {
  // 10,000 labels once made a 6 MB ack and a 6 MB log line.
  Labels many = {{"__name__", std::string(100'000, 'm')}};
  for (int i = 0; i < 10'000; ++i) many.push_back({fmt::format("label_{}", i), std::string(100, 'v')});
  auto r = Labels_(many);
  ASSERT_TRUE(r.has_value());
  EXPECT_LT(r->detail.size(), 1024u) << r->detail.substr(0, 2000);
  EXPECT_NE(r->detail.find("more"), std::string::npos);
  // Invalid UTF-8 is shown escaped: the message itself is valid UTF-8.
  auto bad = Labels_({{"__name__", "m\xff"}});
  ASSERT_TRUE(bad.has_value());
  EXPECT_TRUE(IsValidUtf8(bad->detail)) << bad->detail;
  EXPECT_NE(bad->detail.find("\\xFF"), std::string::npos) << bad->detail;
}

TEST(ValidationTest, ReasonNamesAreSnakeCase) {
  EXPECT_EQ(ReasonName(RejectReason::kInvalidMetricName), "invalid_metric_name");
  EXPECT_EQ(ReasonName(RejectReason::kTimestampOutOfWindow), "timestamp_out_of_window");
}

}  // namespace
}  // namespace sheaf::model
