#include "storage/rollup.h"

#include <gtest/gtest.h>

#include <vector>

namespace sheaf::storage {
namespace {

TEST(RollupTest, OfComputesEveryField) {
  std::vector<Sample> s = {{10, 5}, {20, 7}, {30, 2}, {40, 4}};
  Aggregate a = Aggregate::Of(s, /*counter=*/true);
  EXPECT_EQ(a.count, 4u);
  EXPECT_EQ(a.sum, 18);
  EXPECT_EQ(a.min, 2);
  EXPECT_EQ(a.max, 7);
  EXPECT_EQ(a.first_ts, 10);
  EXPECT_EQ(a.first, 5);
  EXPECT_EQ(a.last_ts, 40);
  EXPECT_EQ(a.last, 4);
  EXPECT_EQ(a.increase, 2 + 2 + 2);  // 5->7, reset to 2 (+2), 2->4
  EXPECT_EQ(Aggregate::Of(s, false).increase, 0);
}

TEST(RollupTest, MergeEqualsAggregatingTheUnionInEitherOrder) {
  std::vector<Sample> all = {{10, 5}, {20, 9}, {30, 1}, {40, 6}, {50, 8}};
  Aggregate whole = Aggregate::Of(all, true);
  Aggregate a = Aggregate::Of(std::span<const Sample>(all.data(), 2), true);
  Aggregate b = Aggregate::Of(std::span<const Sample>(all.data() + 2, 3), true);
  for (const Aggregate& m : {Aggregate::Merge(a, b), Aggregate::Merge(b, a)}) {
    EXPECT_EQ(m.count, whole.count);
    EXPECT_EQ(m.sum, whole.sum);
    EXPECT_EQ(m.min, whole.min);
    EXPECT_EQ(m.max, whole.max);
    EXPECT_EQ(m.first_ts, whole.first_ts);
    EXPECT_EQ(m.last, whole.last);
    EXPECT_EQ(m.increase, whole.increase);
  }
  EXPECT_EQ(Aggregate::Merge(Aggregate{}, a).count, a.count);
}

TEST(RollupTest, EncodeRoundTripsAndRejectsWrongSizes) {
  Aggregate a = Aggregate::Of(std::vector<Sample>{{-5, -1.5}, {7, 2.25}}, true);
  auto d = Aggregate::Decode(a.Encode());
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->count, 2u);
  EXPECT_EQ(d->first_ts, -5);
  EXPECT_EQ(d->min, -1.5);
  EXPECT_EQ(d->last, 2.25);
  EXPECT_TRUE(d->counter);
  EXPECT_FALSE(Aggregate::Decode("short").has_value());
  EXPECT_FALSE(Aggregate::Decode(a.Encode() + "x").has_value());
}

}  // namespace
}  // namespace sheaf::storage
