#include "daemon/validation.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace sheaf::daemon {
namespace {

using storage::Labels;
using storage::MetricType;
using storage::Sample;

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
  EXPECT_EQ(Labels_({{"job", "x"}})->reason, v1::REJECT_REASON_INVALID_METRIC_NAME);
  EXPECT_EQ(Labels_({{"__name__", "1bad"}})->reason, v1::REJECT_REASON_INVALID_METRIC_NAME);
  EXPECT_EQ(Labels_({{"__name__", "m"}, {"bad-name", "x"}})->reason, v1::REJECT_REASON_INVALID_LABEL_NAME);
  EXPECT_EQ(Labels_({{"__name__", "m"}, {"__reserved", "x"}})->reason, v1::REJECT_REASON_INVALID_LABEL_NAME);
  EXPECT_EQ(Labels_({{"__name__", "m"}, {"a", "x"}, {"a", "y"}})->reason, v1::REJECT_REASON_DUPLICATE_LABEL_NAME);
  EXPECT_EQ(Labels_({{"__name__", "m"}, {"a", "\xff"}})->reason, v1::REJECT_REASON_INVALID_LABEL_VALUE);
  EXPECT_EQ(Labels_({{"__name__", "m"}, {"a", std::string(3000, 'x')}})->reason,
            v1::REJECT_REASON_INVALID_LABEL_VALUE);
  Labels many = {{"__name__", "m"}};
  for (int i = 0; i < 70; ++i) many.push_back({"l" + std::to_string(i), "v"});
  EXPECT_EQ(Labels_(many)->reason, v1::REJECT_REASON_TOO_MANY_LABELS);
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
  EXPECT_EQ(Labels_({{"__name__", "rq_bucket"}}, MetricType::kHistogram)->reason, v1::REJECT_REASON_MISSING_LE_LABEL);
  EXPECT_EQ(Labels_({{"__name__", "rq_bucket"}, {"le", "abc"}}, MetricType::kHistogram)->reason,
            v1::REJECT_REASON_MISSING_LE_LABEL);
  EXPECT_EQ(Labels_({{"__name__", "rq"}}, MetricType::kHistogram)->reason, v1::REJECT_REASON_INVALID_METRIC_NAME);
}

TEST(ValidationTest, TimestampWindow) {
  EXPECT_FALSE(Samples({{kNow, 1}, {kNow - 3600'000, 1}, {kNow + 60'000, 1}}).has_value());
  EXPECT_EQ(Samples({{kNow - 8LL * 24 * 3600 * 1000, 1}})->reason, v1::REJECT_REASON_TIMESTAMP_OUT_OF_WINDOW);
  EXPECT_EQ(Samples({{kNow + 3600'000, 1}})->reason, v1::REJECT_REASON_TIMESTAMP_OUT_OF_WINDOW);
}

TEST(ValidationTest, ValueRulesPerType) {
  const double nan = std::nan(""), inf = std::numeric_limits<double>::infinity();
  EXPECT_EQ(Samples({{kNow, nan}})->reason, v1::REJECT_REASON_INVALID_VALUE);
  EXPECT_EQ(Samples({{kNow, inf}})->reason, v1::REJECT_REASON_INVALID_VALUE);
  EXPECT_FALSE(Samples({{kNow, -5}}, MetricType::kGauge).has_value());
  EXPECT_EQ(Samples({{kNow, -5}}, MetricType::kCounter)->reason, v1::REJECT_REASON_INVALID_VALUE);
  EXPECT_FALSE(Samples({{kNow, 5}}, MetricType::kCounter).has_value());
  EXPECT_EQ(Samples({{kNow, -1}}, MetricType::kHistogram, {{"__name__", "h_count"}})->reason,
            v1::REJECT_REASON_INVALID_VALUE);
  // A histogram's sum may be negative.
  EXPECT_FALSE(Samples({{kNow, -1}}, MetricType::kHistogram, {{"__name__", "h_sum"}}).has_value());
}

TEST(ValidationTest, EmptyOrOversizedSeriesIsMalformed) {
  EXPECT_EQ(Samples({})->reason, v1::REJECT_REASON_MALFORMED_SERIES);
  std::vector<Sample> many(100'001, Sample{kNow, 1});
  EXPECT_EQ(Samples(many)->reason, v1::REJECT_REASON_MALFORMED_SERIES);
}

TEST(ValidationTest, ReasonNamesAreSnakeCase) {
  EXPECT_EQ(ReasonName(v1::REJECT_REASON_INVALID_METRIC_NAME), "invalid_metric_name");
  EXPECT_EQ(ReasonName(v1::REJECT_REASON_TIMESTAMP_OUT_OF_WINDOW), "timestamp_out_of_window");
}

}  // namespace
}  // namespace sheaf::daemon
