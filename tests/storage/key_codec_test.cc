#include "storage/key_codec.h"

#include <gtest/gtest.h>

namespace sheaf::storage::keys {
namespace {

TEST(KeyCodecTest, SeriesTimeKeysSortByIdThenTime) {
  std::vector<std::string> in = {
      SeriesTimeKey(1, -5),        SeriesTimeKey(1, 0),         SeriesTimeKey(1, 7),
      SeriesTimeKey(2, INT64_MIN), SeriesTimeKey(2, INT64_MAX), SeriesTimeKey(UINT64_MAX, 0),
  };
  for (size_t i = 1; i < in.size(); ++i) EXPECT_LT(in[i - 1], in[i]) << i;
}

TEST(KeyCodecTest, SeriesTimeKeyRoundTripsExtremes) {
  for (auto [id, ts] : std::vector<std::pair<uint64_t, int64_t>>{
           {1, 0}, {UINT64_MAX, INT64_MAX}, {42, INT64_MIN}, {7, -1}, {7, 1700000000000}}) {
    auto k = DecodeSeriesTimeKey(SeriesTimeKey(id, ts));
    ASSERT_TRUE(k.has_value());
    EXPECT_EQ(k->id, id);
    EXPECT_EQ(k->time_ms, ts);
  }
  EXPECT_FALSE(DecodeSeriesTimeKey("short").has_value());
}

TEST(KeyCodecTest, WindowStartFloorsAlsoForNegativeTimes) {
  EXPECT_EQ(WindowStart(0, 60'000), 0);
  EXPECT_EQ(WindowStart(59'999, 60'000), 0);
  EXPECT_EQ(WindowStart(60'000, 60'000), 60'000);
  EXPECT_EQ(WindowStart(-1, 60'000), -60'000);
  EXPECT_EQ(WindowStart(-60'000, 60'000), -60'000);
}

TEST(KeyCodecTest, LogKeysSortBySequence) {
  EXPECT_LT(LogKey(1), LogKey(2));
  EXPECT_LT(LogKey(255), LogKey(256));
}

TEST(KeyCodecTest, CanonicalLabelsRoundTripAnyBytes) {
  Labels labels = {{"__name__", "up"}, {"a", std::string("x\0y", 3)}, {"b", ""}, {"c", std::string(300, 'z')}};
  auto decoded = DecodeCanonicalLabels(CanonicalLabels(labels));
  ASSERT_TRUE(decoded.has_value());
  EXPECT_EQ(*decoded, labels);
}

TEST(KeyCodecTest, CanonicalLabelsAreUnambiguous) {
  // Without length prefixes these two would encode alike.
  Labels a = {{"ab", "c"}};
  Labels b = {{"a", "bc"}};
  EXPECT_NE(CanonicalLabels(a), CanonicalLabels(b));
}

TEST(KeyCodecTest, TruncatedCanonicalLabelsAreRejected) {
  std::string enc = CanonicalLabels({{"name", "value"}});
  for (size_t n = 1; n < enc.size(); ++n) {
    EXPECT_FALSE(DecodeCanonicalLabels(enc.substr(0, n)).has_value()) << n;
  }
}

TEST(KeyCodecTest, PostingKeysShareTheirPrefixAndEndWithTheId) {
  std::string prefix = PostingPrefix(kDefaultTenant, "job", "node");
  std::string key = PostingKey(kDefaultTenant, "job", "node", 0x0102030405060708);
  ASSERT_EQ(key.substr(0, prefix.size()), prefix);
  EXPECT_EQ(GetFixed64BE(key.substr(prefix.size())), 0x0102030405060708u);
  // "job"="node" must not be a prefix of "job"="node2"'s postings.
  EXPECT_NE(PostingKey(kDefaultTenant, "job", "node2", 1).substr(0, prefix.size()), prefix);
}

TEST(KeyCodecTest, TenantsHaveDisjointIndexRanges) {
  EXPECT_LT(SeriesByLabelsKey(1, CanonicalLabels({{"z", "z"}})), SeriesByLabelsKey(2, CanonicalLabels({{"a", "a"}})));
}

TEST(KeyCodecTest, VarintRoundTripsAndDetectsTruncation) {
  for (uint64_t v : std::vector<uint64_t>{0, 1, 127, 128, 300, UINT64_MAX}) {
    std::string s;
    PutVarint(s, v);
    std::string_view in = s;
    EXPECT_EQ(GetVarint(&in), v);
    EXPECT_TRUE(in.empty());
    std::string_view cut(s.data(), s.size() - 1);
    if (!cut.empty()) {
      EXPECT_FALSE(GetVarint(&cut).has_value());
    }
  }
}

}  // namespace
}  // namespace sheaf::storage::keys
