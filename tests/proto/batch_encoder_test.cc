#include "proto/batch_encoder.h"

#include <gtest/gtest.h>

namespace sheaf {
namespace {

TEST(BatchEncoderTest, DefinesEachSeriesOncePerStream) {
  StreamEncoder enc;
  LabelPairs a = {{"__name__", "up"}, {"job", "x"}};
  LabelPairs b = {{"__name__", "up"}, {"job", "y"}};
  int64_t ts = 5;
  double v = 1;
  v1::MetricBatch batch;
  enc.BeginBatch("agent", 1, &batch);
  enc.Add(SeriesKey(a), a, v1::METRIC_TYPE_GAUGE, &ts, &v, 1);
  enc.Add(SeriesKey(b), b, v1::METRIC_TYPE_COUNTER, &ts, &v, 1);
  EXPECT_EQ(batch.agent_id(), "agent");
  EXPECT_EQ(batch.sequence(), 1u);
  ASSERT_EQ(batch.definitions_size(), 2);
  EXPECT_EQ(batch.definitions(1).type(), v1::METRIC_TYPE_COUNTER);
  EXPECT_EQ(batch.definitions(1).labels(1).value(), "y");
  ASSERT_EQ(batch.samples_size(), 2);
  EXPECT_NE(batch.samples(0).ref(), batch.samples(1).ref());

  enc.BeginBatch("agent", 2, &batch);
  enc.Add(SeriesKey(b), b, v1::METRIC_TYPE_COUNTER, &ts, &v, 1);
  EXPECT_EQ(batch.definitions_size(), 0);  // already defined in this stream
  EXPECT_EQ(batch.samples(0).ref(), batch.definitions_size() == 0 ? 2u : 0u);

  enc.Reset();  // new stream: define again
  enc.BeginBatch("agent", 3, &batch);
  enc.Add(SeriesKey(b), b, v1::METRIC_TYPE_COUNTER, &ts, &v, 1);
  EXPECT_EQ(batch.definitions_size(), 1);
}

TEST(BatchEncoderTest, SeriesKeysDistinguishBoundaries) {
  EXPECT_NE(SeriesKey({{"ab", "c"}}), SeriesKey({{"a", "bc"}}));
  EXPECT_NE(SeriesKey({{"a", "b"}, {"c", "d"}}), SeriesKey({{"a", "bc"}, {"", "d"}}));
}

}  // namespace
}  // namespace sheaf
