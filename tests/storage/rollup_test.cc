#include "storage/rollup.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "storage/key_codec.h"
#include "storage/sample_codec.h"

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

}  // namespace
}  // namespace sheaf::storage

namespace sheaf::storage {
namespace {

TEST(RollupTest, SumsOfDecimalsStayDecimal) {
  // 0.1 + 0.2 is 0.30000000000000004 in binary floating point.
  Aggregate a = Aggregate::Of(std::vector<Sample>{{1, 0.1}, {2, 0.2}}, false);
  EXPECT_EQ(a.sum, 0.3);
  Aggregate c = Aggregate::Of(std::vector<Sample>{{1, 12340.12}, {2, 12345.67}}, true);
  EXPECT_EQ(c.increase, 5.55);
  // Values that are not decimals are left alone.
  Aggregate t = Aggregate::Of(std::vector<Sample>{{1, 1.0 / 3}, {2, 1.0 / 3}}, false);
  EXPECT_EQ(t.sum, 1.0 / 3 + 1.0 / 3);
}

TEST(RollupTest, BlocksRoundTripAndMergeWindows) {
  RollupWindows w = {{0, Aggregate::Of(std::vector<Sample>{{0, 1}, {30, 2}}, true)},
                     {60, Aggregate::Of(std::vector<Sample>{{60, 0.5}, {90, 4.25}}, true)},
                     {120, Aggregate::Of(std::vector<Sample>{{125, 7}}, true)}};
  std::string block = EncodeRollupBlock(w);
  RollupWindows back;
  ASSERT_TRUE(DecodeRollupBlock(block, &back).ok());
  ASSERT_EQ(back.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(back[i].first, w[i].first);
    EXPECT_EQ(back[i].second, w[i].second) << i;
  }
  // A later fragment of window 120 merges into it.
  RollupWindows more = {{120, Aggregate::Of(std::vector<Sample>{{150, 9}}, true)}};
  std::string b2 = EncodeRollupBlock(more);
  std::vector<std::string_view> parts = {block, b2};
  auto merged = MergeRollupBlocks(parts);
  ASSERT_TRUE(merged.ok());
  back.clear();
  ASSERT_TRUE(DecodeRollupBlock(*merged, &back).ok());
  ASSERT_EQ(back.size(), 3u);
  EXPECT_EQ(back[2].second.count, 2u);
  EXPECT_EQ(back[2].second.increase, 2);
  EXPECT_EQ(back[2].second.last, 9);
  // Corrupt input is an error, not a crash.
  for (size_t n = 0; n < block.size(); ++n) {
    RollupWindows x;
    EXPECT_FALSE(DecodeRollupBlock(std::string_view(block).substr(0, n), &x).ok()) << n;
  }
}

// A corrupt block whose count or time offsets are not small integers is
// DATA_LOSS: converting such doubles to integers would be undefined
// behaviour (UBSan catches it without the check).
TEST(RollupTest, DecodeRejectsCountsAndOffsetsOutOfRange) {
  auto block = [](double count, double first_off) {
    std::string out;
    out.push_back(1);     // version
    out.push_back(0x0e);  // min == first, max == last, increase == last - first: six columns
    const double columns[6] = {count, first_off, 0, 1, 2, 3};
    for (double v : columns) {
      Sample s{60'000, v};
      std::string col = EncodeBlock(std::span<const Sample>(&s, 1));
      keys::PutVarint(out, col.size());
      out += col;
    }
    return out;
  };
  RollupWindows w;
  ASSERT_TRUE(DecodeRollupBlock(block(5, 10), &w).ok());
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0].second.count, 5u);
  EXPECT_EQ(w[0].second.first_ts, 60'010);
  for (double bad : {1e300, -1.0, 0.5, std::nan(""), 0.0}) {
    EXPECT_EQ(DecodeRollupBlock(block(bad, 10), &w).code(), absl::StatusCode::kDataLoss) << bad;
    EXPECT_EQ(DecodeRollupBlock(block(5, bad == 0.0 ? -5 : bad), &w).code(), absl::StatusCode::kDataLoss) << bad;
  }
}

}  // namespace
}  // namespace sheaf::storage
