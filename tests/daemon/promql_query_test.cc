// QueryService.Query with a PromQL `expr`: answers, result types, stats,
// errors, limits, and that cancellation and deadlines stop the evaluation
// itself (the query worker is free again), not just the reply.
#include <chrono>
#include <thread>

#include "tests/daemon/daemon_fixture.h"

namespace sheaf::daemon {
namespace {

class PromQLQueryTest : public DaemonTest {
 protected:
  void SetUp() override {}

  void StartWith(DaemonConfig config) { Start(std::move(config)); }

  // `n` counters `c{i="k"}`, one sample every 10 s over the hour before kNow.
  void Load(int n, int points = 360) {
    std::vector<v1::MetricBatch> batches;
    for (int k = 0; k < n; ++k) {
      std::vector<std::pair<int64_t, double>> samples;
      for (int p = 0; p < points; ++p) samples.emplace_back(kNow - 3'600'000 + p * 10'000, 10.0 * p + k);
      batches.push_back(Batch("loader", static_cast<uint64_t>(k + 1),
                              {MakeSeries({{"__name__", "c"}, {"i", std::to_string(k)}, {"g", k % 2 ? "odd" : "even"}},
                                          v1::METRIC_TYPE_COUNTER, samples)}));
    }
    v1::PushAck ack;
    ASSERT_TRUE(Push(batches, &ack).ok());
  }

  struct Answer {
    grpc::Status status;
    std::vector<v1::QueryResponse> messages;
  };

  Answer Run(v1::QueryRequest req, std::chrono::milliseconds deadline = std::chrono::seconds(30)) {
    Answer a;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + deadline);
    auto reader = query_->Query(&ctx, req);
    v1::QueryResponse resp;
    while (reader->Read(&resp)) a.messages.push_back(resp);
    a.status = reader->Finish();
    return a;
  }

  static v1::QueryRequest Instant(const std::string& expr, int64_t t) {
    v1::QueryRequest req;
    req.set_expr(expr);
    req.set_time_ms(t);
    return req;
  }
};

TEST_F(PromQLQueryTest, InstantAndRangeAnswersStreamWithTypeAndStats) {
  StartWith(DaemonConfig{});
  Load(4);
  auto a = Run(Instant("sum by (g) (rate(c[1m]))", kNow - 60'000));
  ASSERT_TRUE(a.status.ok()) << a.status.error_message();
  ASSERT_FALSE(a.messages.empty());
  EXPECT_EQ(a.messages.front().result_type(), v1::RESULT_TYPE_VECTOR);
  // Series go out as the engine hands them over: they may be spread over
  // messages however the writes happen to go.
  std::vector<v1::SeriesChunk> chunks;
  for (const auto& m : a.messages) chunks.insert(chunks.end(), m.chunks().begin(), m.chunks().end());
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_EQ(chunks[0].labels(0).name(), "g");
  EXPECT_EQ(chunks[0].labels(0).value(), "even");
  EXPECT_DOUBLE_EQ(chunks[0].samples(0).value(), 2.0);  // two series at 1/s each
  EXPECT_EQ(chunks[0].samples(0).timestamp_ms(), kNow - 60'000);
  EXPECT_EQ(chunks[1].labels(0).value(), "odd");
  const v1::QueryStats& stats = a.messages.back().stats();
  EXPECT_EQ(stats.series_selected(), 4u);
  EXPECT_EQ(stats.points_returned(), 2u);
  EXPECT_GT(stats.samples_read() + stats.windows_read(), 0u);

  // A range query in small chunks: a series continues across messages.
  v1::QueryRequest range;
  range.set_expr("c{i=\"1\"}");
  range.set_start_ms(kNow - 3'000'000);
  range.set_end_ms(kNow - 60'000);
  range.set_step_ms(60'000);
  range.set_max_samples_per_chunk(10);
  a = Run(range);
  ASSERT_TRUE(a.status.ok()) << a.status.error_message();
  EXPECT_EQ(a.messages.front().result_type(), v1::RESULT_TYPE_MATRIX);
  size_t points = 0;
  bool last = false;
  for (const auto& m : a.messages) {
    for (const auto& c : m.chunks()) {
      points += c.samples_size();
      last = c.last_chunk();
    }
  }
  EXPECT_EQ(points, 50u);
  EXPECT_TRUE(last);
  EXPECT_GE(a.messages.size(), 5u);

  auto scalar = Run(Instant("1 + 2", kNow));
  ASSERT_TRUE(scalar.status.ok());
  EXPECT_EQ(scalar.messages.front().result_type(), v1::RESULT_TYPE_SCALAR);
  EXPECT_EQ(scalar.messages.front().chunks(0).samples(0).value(), 3);
  auto str = Run(Instant("\"hi\"", kNow));
  ASSERT_TRUE(str.status.ok());
  EXPECT_EQ(str.messages.front().result_type(), v1::RESULT_TYPE_STRING);
  EXPECT_EQ(str.messages.front().string_result(), "hi");
}

// A selector's (or a range function's) series go to the client as each is
// evaluated: when the answer turns out to be over the max-points limit,
// the series before the limit arrive, then the error — evaluated whole, the
// client would have had nothing but the error.
TEST_F(PromQLQueryTest, SeriesStreamAsTheyCompleteInBoundedMemory) {
  DaemonConfig config;
  config.query.promql.limits.max_points = 100 * 60;  // 100 series of 60 points
  StartWith(config);
  Load(300);
  for (const char* expr : {"c", "rate(c[1m])"}) {
    v1::QueryRequest req;
    req.set_expr(expr);
    req.set_start_ms(kNow - 3'600'000 + 60'000);
    req.set_end_ms(kNow - 60'000);
    req.set_step_ms(60'000);  // 59 points a series
    auto a = Run(req);
    EXPECT_EQ(a.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << expr;
    size_t series = 0;
    for (const auto& m : a.messages) {
      for (const auto& c : m.chunks()) series += c.last_chunk();
    }
    // 59 points a series: the 102nd would pass 6,000. Every series the
    // engine handed over before the limit reaches the client, then the error.
    EXPECT_EQ(series, 101u) << expr;
  }
  // An aggregation completes at the end: nothing goes out before the error.
  v1::QueryRequest agg;
  agg.set_expr("c + 0");
  agg.set_start_ms(kNow - 3'600'000 + 60'000);
  agg.set_end_ms(kNow - 60'000);
  agg.set_step_ms(60'000);
  auto a = Run(agg);
  EXPECT_EQ(a.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(a.messages.empty());
}

TEST_F(PromQLQueryTest, OldClientsWithMatchersStillGetRawSamples) {
  StartWith(DaemonConfig{});
  Load(1);
  auto r = Query("c", kNow - 3'600'000, kNow);
  ASSERT_TRUE(r.status.ok());
  ASSERT_EQ(r.samples.size(), 1u);
  EXPECT_EQ(r.samples.begin()->second.size(), 360u);
  EXPECT_EQ(r.messages.front().result_type(), v1::RESULT_TYPE_UNSPECIFIED);
}

TEST_F(PromQLQueryTest, BadRequestsSayWhatIsWrong) {
  StartWith(DaemonConfig{});
  auto a = Run(Instant("sum(rate(c[5m])", kNow));
  EXPECT_EQ(a.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(a.status.error_message().find("1:"), std::string::npos) << a.status.error_message();
  auto bad = Instant("rate(c[5m])", kNow);
  bad.set_selector("c");
  a = Run(bad);
  EXPECT_EQ(a.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(a.status.error_message().find("not both"), std::string::npos);
  v1::QueryRequest range;
  range.set_expr("c[5m]");
  range.set_start_ms(kNow - 60'000);
  range.set_end_ms(kNow);
  range.set_step_ms(10'000);
  a = Run(range);
  EXPECT_EQ(a.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(a.status.error_message().find("range vector"), std::string::npos);
}

TEST_F(PromQLQueryTest, LimitsNameTheFlagAndValue) {
  DaemonConfig config;
  config.query.promql.limits.max_series = 3;
  config.query.promql.limits.max_points = 10;
  StartWith(config);
  Load(5);
  auto a = Run(Instant("sum(c)", kNow));
  EXPECT_EQ(a.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(a.status.error_message().find("more than 3 series"), std::string::npos) << a.status.error_message();
  v1::QueryRequest range;
  range.set_expr("sum(c{i=\"1\"})");
  range.set_start_ms(kNow - 3'000'000);
  range.set_end_ms(kNow);
  range.set_step_ms(60'000);
  a = Run(range);
  EXPECT_EQ(a.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(a.status.error_message().find("more than 10"), std::string::npos) << a.status.error_message();
}

// A query that takes many seconds of CPU: the median of every hour-long
// window at 11,000 steps, for 300 series.
v1::QueryRequest HeavyQuery() {
  v1::QueryRequest req;
  req.set_expr("quantile_over_time(0.5, c[1h])");
  req.set_start_ms(kNow - 3'600'000);
  req.set_end_ms(kNow);
  req.set_step_ms(330);
  return req;
}

TEST_F(PromQLQueryTest, ADeadlineStopsTheEvaluationItself) {
  DaemonConfig config;
  config.query_workers = 1;  // the heavy query's worker is the only one
  StartWith(config);
  Load(300);
  auto start = std::chrono::steady_clock::now();
  auto heavy = Run(HeavyQuery(), std::chrono::milliseconds(300));
  EXPECT_EQ(heavy.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << heavy.status.error_message();
  // The next query needs the same single worker: it answers promptly only
  // if the heavy evaluation stopped at the deadline.
  auto light = Run(Instant("vector(1)", kNow), std::chrono::seconds(20));
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(light.status.ok()) << light.status.error_message();
  EXPECT_LT(took, std::chrono::seconds(3));
}

TEST_F(PromQLQueryTest, CancellationStopsTheEvaluationItself) {
  DaemonConfig config;
  config.query_workers = 1;
  StartWith(config);
  Load(300);
  grpc::ClientContext ctx;
  auto reader = query_->Query(&ctx, HeavyQuery());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the evaluation is under way
  auto start = std::chrono::steady_clock::now();
  ctx.TryCancel();
  v1::QueryResponse resp;
  while (reader->Read(&resp)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  auto light = Run(Instant("vector(1)", kNow), std::chrono::seconds(20));
  ASSERT_TRUE(light.status.ok()) << light.status.error_message();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
}

TEST_F(PromQLQueryTest, QueryTimeoutAndConcurrencyLimits) {
  DaemonConfig config;
  config.query.query_timeout = std::chrono::milliseconds(200);
  StartWith(config);
  Load(300);
  auto a = Run(HeavyQuery());
  EXPECT_EQ(a.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_NE(a.status.error_message().find("--query-timeout"), std::string::npos) << a.status.error_message();

  config = DaemonConfig{};
  config.query.max_concurrent_queries = 0;
  daemon_.reset();
  StartWith(config);
  a = Run(Instant("vector(1)", kNow));
  EXPECT_EQ(a.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(a.status.error_message().find("--query-max-concurrent"), std::string::npos);
}

}  // namespace
}  // namespace sheaf::daemon
