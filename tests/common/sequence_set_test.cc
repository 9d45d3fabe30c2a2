#include "common/sequence_set.h"

#include <gtest/gtest.h>

#include <random>
#include <set>

namespace sheaf {
namespace {

TEST(SequenceSetTest, InsertMergesTouchingAndOverlappingRanges) {
  SequenceSet s;
  s.Insert(5);
  s.Insert(7);
  EXPECT_EQ(s.ToString(), "5,7");
  s.Insert(6);
  EXPECT_EQ(s.ToString(), "5-7");
  s.InsertRange(1, 3);
  EXPECT_EQ(s.ToString(), "1-3,5-7");
  s.InsertRange(2, 10);
  EXPECT_EQ(s.ToString(), "1-10");
  EXPECT_TRUE(s.Contains(1));
  EXPECT_TRUE(s.Contains(10));
  EXPECT_FALSE(s.Contains(11));
  EXPECT_FALSE(s.Contains(0));
  EXPECT_EQ(s.Max(), 10u);
  EXPECT_EQ(s.FirstMissing(), 11u);
}

TEST(SequenceSetTest, TwoLanesMeetAndJoin) {
  // Fresh batches from 100 upwards while the backlog after 40 is replayed.
  SequenceSet s = SequenceSet::UpTo(40);
  for (uint64_t seq = 100; seq < 110; ++seq) s.Insert(seq);
  for (uint64_t seq = 41; seq < 100; ++seq) {
    EXPECT_FALSE(s.Contains(seq));
    s.Insert(seq);
    ASSERT_LE(s.ranges().size(), 2u);
  }
  EXPECT_EQ(s.ToString(), "1-109");
}

TEST(SequenceSetTest, ForgetBelowClosesGapsUnderTheFloor) {
  SequenceSet s = SequenceSet::UpTo(10);
  s.Insert(20);
  s.Insert(30);
  s.ForgetBelow(25);
  EXPECT_EQ(s.ToString(), "1-24,30");
  s.ForgetBelow(1);
  EXPECT_EQ(s.ToString(), "1-24,30");
  EXPECT_TRUE(s.Contains(15));
}

TEST(SequenceSetTest, BoundClosesTheLowestGapsAndCountsThem) {
  SequenceSet s;
  for (uint64_t seq = 2; seq <= 20; seq += 2) s.Insert(seq);  // 10 ranges
  EXPECT_EQ(s.Bound(4), 6u);  // gaps 3,5,7,9,11,13 closed
  EXPECT_EQ(s.ToString(), "2-14,16,18,20");
}

TEST(SequenceSetTest, ExtremesDoNotOverflow) {
  SequenceSet s;
  s.Insert(UINT64_MAX);
  s.Insert(UINT64_MAX - 1);
  s.Insert(1);
  EXPECT_EQ(s.ranges().size(), 2u);
  EXPECT_TRUE(s.Contains(UINT64_MAX));
  auto back = SequenceSet::Decode(s.Encode());
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, s);
  s.InsertRange(0, UINT64_MAX);
  EXPECT_EQ(s.ranges().size(), 1u);
}

TEST(SequenceSetTest, EncodeDecodeRoundTripsAndReadsAHighWaterMark) {
  SequenceSet s = SequenceSet::UpTo(1000);
  s.Insert(5000);
  s.InsertRange(7000, 7100);
  auto back = SequenceSet::Decode(s.Encode());
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, s);
  // What daemons before sequence sets wrote: 8 bytes, big-endian.
  std::string legacy("\0\0\0\0\0\0\x01\x00", 8);
  auto old = SequenceSet::Decode(legacy);
  ASSERT_TRUE(old.has_value());
  EXPECT_EQ(old->ToString(), "1-256");
  EXPECT_EQ(SequenceSet::Decode(SequenceSet().Encode())->ranges().size(), 0u);
}

TEST(SequenceSetTest, DecodeRejectsCorruptBytes) {
  SequenceSet s = SequenceSet::UpTo(10);
  s.Insert(20);
  std::string good = s.Encode();
  EXPECT_FALSE(SequenceSet::Decode("").has_value());
  EXPECT_FALSE(SequenceSet::Decode(std::string(1, '\x02')).has_value());  // unknown version
  EXPECT_FALSE(SequenceSet::Decode(good.substr(0, good.size() - 1)).has_value());
  EXPECT_FALSE(SequenceSet::Decode(good + "x").has_value());
  // Two ranges that touch (gap 1 after the first) are not a canonical form.
  std::string touching = {1, 2, 1, 0, 1, 0};
  EXPECT_FALSE(SequenceSet::Decode(touching).has_value());
}

TEST(SequenceSetTest, AgreesWithAPlainSetOnRandomInserts) {
  std::mt19937_64 rng(7);
  SequenceSet s;
  std::set<uint64_t> ref;
  for (int i = 0; i < 3000; ++i) {
    uint64_t a = 1 + rng() % 500, len = rng() % 4;
    s.InsertRange(a, a + len);
    for (uint64_t v = a; v <= a + len; ++v) ref.insert(v);
  }
  for (uint64_t v = 0; v < 520; ++v) ASSERT_EQ(s.Contains(v), ref.count(v) == 1) << v;
  for (size_t i = 1; i < s.ranges().size(); ++i) ASSERT_GT(s.ranges()[i].first, s.ranges()[i - 1].last + 1);
}

}  // namespace
}  // namespace sheaf
