// Per-tenant and per-agent limits (daemon/limits.h): the limiter alone on
// an injected clock (buckets, cardinality, slots, the file and its
// reload), then through a real in-process Daemon: what clients see, and
// two tenants, one flooding past its limit, the other unaffected.
#include "daemon/limits.h"

#include <gtest/gtest.h>
#include <snappy.h>

#include <fmt/format.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <thread>

#include "common/log.h"
#include "prometheus/remote.pb.h"
#include "tests/daemon/auth_fixture.h"
#include "tests/daemon/daemon_fixture.h"
#include "tests/support/temp_dir.h"

namespace sheaf::daemon {
namespace {

class LimiterTest : public ::testing::Test {
 protected:
  // A limiter whose file is `yaml`, on the test's clock.
  std::unique_ptr<Limiter> Make(const std::string& yaml) {
    auto limiter = std::make_unique<Limiter>(TenantLimits{}, [this] { return now_; });
    path_ = dir_.Sub("limits.yaml");
    Write(yaml);
    absl::Status loaded = limiter->Load(path_);
    EXPECT_TRUE(loaded.ok()) << loaded;
    return limiter;
  }
  void Write(const std::string& yaml) { std::ofstream(path_) << yaml; }

  int64_t now_ = 1'000'000;
  testing::TempDir dir_;
  std::string path_;
};

TEST_F(LimiterTest, WithoutAFileNothingIsLimitedButTheFlags) {
  Limiter limiter(LimitsFromFlags(model::ValidationLimits{}, 16 << 20, 16));
  EXPECT_TRUE(limiter.AdmitBatch("default", "a", 1'000'000'000, 1'000'000).ok());
  EXPECT_TRUE(limiter.AdmitSeries("default", 100'000'000).ok());
  std::vector<Limiter::Slot> slots;
  for (int i = 0; i < 1000; ++i) {
    auto s = limiter.AcquireStream("default", "a");
    ASSERT_TRUE(s.ok());
    slots.push_back(*std::move(s));
  }
  EXPECT_EQ(limiter.For("default").labels_per_series, model::ValidationLimits{}.max_labels);
  EXPECT_EQ(limiter.For("x").concurrent_queries, 16u);
}

TEST_F(LimiterTest, SamplesBucketRefillsWithTheClock) {
  auto limiter = Make("defaults:\n  samples_per_second: 1000\n  samples_burst: 2000\n");
  EXPECT_TRUE(limiter->AdmitBatch("a", "h1", 1500, 0).ok());
  absl::Status s = limiter->AdmitBatch("a", "h1", 1000, 0);  // 500 left
  ASSERT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(RetryAfterMs(s), 500);
  EXPECT_EQ(s.message(), "tenant \"a\" is over samples_per_second=1000 (limits file " + path_ + "); retry in 0.5s");
  now_ += 499;
  EXPECT_FALSE(limiter->AdmitBatch("a", "h1", 1000, 0).ok());
  now_ += 1;
  EXPECT_TRUE(limiter->AdmitBatch("a", "h1", 1000, 0).ok());
  // Never above the burst, however long the pause.
  now_ += 3'600'000;
  EXPECT_TRUE(limiter->AdmitBatch("a", "h1", 2000, 0).ok());
  EXPECT_FALSE(limiter->AdmitBatch("a", "h1", 1, 0).ok());
  EXPECT_EQ(limiter->refused("a", "samples_per_second"), 3u);
  // Another tenant has its own bucket.
  EXPECT_TRUE(limiter->AdmitBatch("b", "h1", 2000, 0).ok());
}

TEST_F(LimiterTest, BatchOverTheBurstPassesWhenFullAndLeavesADebt) {
  auto limiter = Make("defaults:\n  samples_per_second: 100\n");
  EXPECT_TRUE(limiter->AdmitBatch("a", "", 1000, 0).ok());  // full bucket: admitted, 900 in debt
  absl::Status s = limiter->AdmitBatch("a", "", 1000, 0);
  EXPECT_EQ(RetryAfterMs(s), 10'000);  // 900 of debt + 100 of burst at 100/s
  now_ += 10'000;
  EXPECT_TRUE(limiter->AdmitBatch("a", "", 1000, 0).ok());
}

TEST_F(LimiterTest, AgentLimitRefusesOneAgentNotItsNeighbour) {
  auto limiter = Make("defaults:\n  agent_samples_per_second: 100\ntenants:\n  big:\n    agent_samples_per_second: 1000\n");
  EXPECT_TRUE(limiter->AdmitBatch("a", "h1", 100, 0).ok());
  absl::Status s = limiter->AdmitBatch("a", "h1", 50, 0);
  ASSERT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(s.message(), "agent \"h1\" of tenant \"a\" is over agent_samples_per_second=100 (limits file " + path_ +
                             "); retry in 0.5s");
  EXPECT_TRUE(limiter->AdmitBatch("a", "h2", 100, 0).ok());
  EXPECT_TRUE(limiter->AdmitBatch("big", "h1", 1000, 0).ok());
  EXPECT_EQ(limiter->refused("a", "agent_samples_per_second"), 1u);
}

TEST_F(LimiterTest, RefusedBatchTakesFromNoBucket) {
  auto limiter = Make("defaults:\n  samples_per_second: 1000\n  agent_samples_per_second: 100\n");
  EXPECT_TRUE(limiter->AdmitBatch("a", "h1", 100, 0).ok());
  EXPECT_FALSE(limiter->AdmitBatch("a", "h1", 50, 0).ok());  // the agent's bucket is empty...
  EXPECT_TRUE(limiter->AdmitBatch("a", "h2", 100, 0).ok());  // ...and the tenant's kept those 50
  EXPECT_TRUE(limiter->AdmitBatch("a", "h3", 100, 0).ok());
  for (int h = 4; h <= 10; ++h) EXPECT_TRUE(limiter->AdmitBatch("a", fmt::format("h{}", h), 100, 0).ok());
  EXPECT_EQ(limiter->AdmitBatch("a", "h11", 1, 0).message().find("tenant \"a\" is over samples_per_second"), 0u);
}

TEST_F(LimiterTest, NewSeriesPerMinute) {
  auto limiter = Make("defaults:\n  new_series_per_minute: 60\n");
  EXPECT_TRUE(limiter->AdmitBatch("a", "h1", 0, 60).ok());
  absl::Status s = limiter->AdmitBatch("a", "h1", 0, 1);
  ASSERT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(RetryAfterMs(s), 1000);  // one a second
  EXPECT_NE(s.message().find("new_series_per_minute=60"), std::string_view::npos) << s;
  now_ += 1000;
  EXPECT_TRUE(limiter->AdmitBatch("a", "h1", 0, 1).ok());
  EXPECT_TRUE(limiter->AdmitBatch("a", "h1", 5000, 0).ok());  // samples of known series: no limit here
}

TEST_F(LimiterTest, ActiveSeries) {
  auto limiter = Make("tenants:\n  a:\n    active_series: 3\n");
  EXPECT_TRUE(limiter->AdmitSeries("a", 2).ok());
  absl::Status s = limiter->AdmitSeries("a", 3);
  ASSERT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("tenant \"a\" is over active_series=3"), std::string_view::npos) << s;
  EXPECT_EQ(RetryAfterMs(s), 0);  // waiting would not help: no hint
  EXPECT_TRUE(limiter->AdmitSeries("b", 3'000'000).ok());
  EXPECT_EQ(limiter->refused("a", "active_series"), 1u);
}

TEST_F(LimiterTest, LabelLimitsOverrideTheFlags) {
  model::ValidationLimits flags;
  flags.max_labels = 30;
  Limiter limiter(LimitsFromFlags(flags, 1 << 20, 4), [this] { return now_; });
  path_ = dir_.Sub("l.yaml");
  Write("defaults:\n  label_value_length: 100\ntenants:\n  a:\n    labels_per_series: 5\n    label_name_length: 10\n");
  ASSERT_TRUE(limiter.Load(path_).ok());
  model::ValidationLimits a = limiter.For("a").Apply(flags);
  EXPECT_EQ(a.max_labels, 5u);
  EXPECT_EQ(a.max_label_name_bytes, 10u);
  EXPECT_EQ(a.max_label_value_bytes, 100u);  // the file's default
  model::ValidationLimits b = limiter.For("b").Apply(flags);
  EXPECT_EQ(b.max_labels, 30u);  // the flag
  EXPECT_EQ(b.max_label_value_bytes, 100u);
  EXPECT_EQ(limiter.For("b").message_bytes, size_t{1} << 20);
}

TEST_F(LimiterTest, TheDeployExampleIsValid) {
  const char* root = std::getenv("SHEAF_SOURCE_DIR");
  if (root == nullptr) GTEST_SKIP() << "SHEAF_SOURCE_DIR is not set (meson test sets it)";
  auto config = LoadLimitsFile(std::string(root) + "/deploy/limits.example.yaml", TenantLimits{});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->For("team-a").samples_per_second, 1'000'000);
  EXPECT_EQ(config->For("team-a").agent_samples_per_second, 20'000);  // the file's default
  EXPECT_EQ(config->For("sandbox").labels_per_series, 20u);
  EXPECT_EQ(config->For("other").concurrent_queries, 8u);
}

TEST_F(LimiterTest, StreamsPerTenantAndPerAgent) {
  auto limiter = Make("defaults:\n  push_streams: 3\n  agent_streams: 1\n");
  auto h1 = limiter->AcquireStream("a", "h1");
  ASSERT_TRUE(h1.ok());
  auto again = limiter->AcquireStream("a", "h1");
  ASSERT_EQ(again.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(again.status().message().find("agent \"h1\" of tenant \"a\" is over agent_streams=1"), std::string::npos);
  auto h2 = limiter->AcquireStream("a", "h2");
  auto h3 = limiter->AcquireStream("a", "h3");
  ASSERT_TRUE(h2.ok() && h3.ok());
  auto h4 = limiter->AcquireStream("a", "h4");
  EXPECT_NE(h4.status().message().find("tenant \"a\" is over push_streams=3"), std::string::npos) << h4.status();
  EXPECT_EQ(RetryAfterMs(h4.status()), 1000);
  EXPECT_TRUE(limiter->AcquireStream("b", "h4").ok());  // another tenant
  h1->Release();
  EXPECT_TRUE(limiter->AcquireStream("a", "h4").ok());  // h1's slot is free (and released again here)
  {
    Limiter::Slot moved = *std::move(h2);
  }  // released by its new owner, once
  EXPECT_TRUE(limiter->AcquireStream("a", "h2").ok());
}

TEST_F(LimiterTest, ConcurrentQueries) {
  auto limiter = Make("tenants:\n  a:\n    concurrent_queries: 2\n");
  auto q1 = limiter->AcquireQuery("a");
  auto q2 = limiter->AcquireQuery("a");
  ASSERT_TRUE(q1.ok() && q2.ok());
  auto q3 = limiter->AcquireQuery("a");
  EXPECT_EQ(q3.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(q3.status().message().find("over concurrent_queries=2"), std::string::npos);
  EXPECT_TRUE(limiter->AcquireQuery("b").ok());
  *q1 = Limiter::Slot();
  EXPECT_TRUE(limiter->AcquireQuery("a").ok());
  EXPECT_EQ(limiter->refused("a", "concurrent_queries"), 1u);
}

TEST_F(LimiterTest, ReloadKeepsTheOldLimitsOnABadFile) {
  auto limiter = Make("defaults:\n  samples_per_second: 10\n");
  Write("defaults:\n  samples_per_secnd: 10\n");
  absl::Status s = limiter->Reload();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find(path_ + ":2: unknown limit \"samples_per_secnd\""), std::string_view::npos) << s;
  EXPECT_EQ(limiter->For("a").samples_per_second, 10);
  Write("defaults:\n  samples_per_second: -1\n");
  EXPECT_FALSE(limiter->Reload().ok());
  Write("defaults:\n  push_streams: 1.5\n");
  EXPECT_FALSE(limiter->Reload().ok());
  Write("defaults: [\n");
  EXPECT_FALSE(limiter->Reload().ok());
  EXPECT_EQ(limiter->For("a").samples_per_second, 10);
  // A good file takes effect.
  Write("defaults:\n  samples_per_second: 20\n");
  EXPECT_TRUE(limiter->Reload().ok());
  EXPECT_EQ(limiter->For("a").samples_per_second, 20);
  EXPECT_NE(limiter->Load(dir_.Sub("missing.yaml")).message().find("cannot read the limits file"),
            std::string_view::npos);
  EXPECT_EQ(limiter->For("a").samples_per_second, 20);
}

// Through a real daemon: what a client sees.
class LimitsDaemonTest : public DaemonTest {
 protected:
  void SetUp() override {}

  void StartWithLimits(const std::string& yaml) {
    const std::string file = dir_.Sub("limits.yaml");
    std::ofstream(file) << yaml;
    DaemonConfig config;
    config.limits_file = file;
    Start(config);
  }

  // One Push stream of `batches`; the trailers go to *trailers.
  grpc::Status PushWithTrailers(const std::vector<v1::MetricBatch>& batches, v1::PushAck* ack,
                                std::multimap<std::string, std::string>* trailers) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    auto writer = ingest_->Push(&ctx, ack);
    for (const auto& b : batches) {
      if (!writer->Write(b)) break;
    }
    writer->WritesDone();
    grpc::Status status = writer->Finish();
    for (const auto& [k, v] : ctx.GetServerTrailingMetadata()) {
      trailers->emplace(std::string(k.data(), k.size()), std::string(v.data(), v.size()));
    }
    return status;
  }

  // A batch of `n` samples of one gauge named `name`.
  static v1::MetricBatch Samples(const std::string& agent, uint64_t seq, const std::string& name, int n) {
    std::vector<std::pair<int64_t, double>> points;
    for (int i = 0; i < n; ++i) points.emplace_back(kNow - 1000 * (n - i) - 1000 * static_cast<int64_t>(seq), i);
    return Batch(agent, seq, {MakeSeries({{"__name__", name}}, v1::METRIC_TYPE_GAUGE, points)});
  }
};

TEST_F(LimitsDaemonTest, PushOverTheRateIsRefusedWholeWithTheRetryTrailer) {
  StartWithLimits("defaults:\n  samples_per_second: 1\n  samples_burst: 10\n");
  v1::PushAck ack;
  std::multimap<std::string, std::string> trailers;
  ASSERT_TRUE(PushWithTrailers({Samples("h1", 1, "a", 8)}, &ack, &trailers).ok());
  EXPECT_EQ(ack.samples_stored(), 8u);
  // 2 tokens left, 10 wanted (the burst): refused, ~8 s to wait.
  ack.Clear();
  trailers.clear();
  grpc::Status s = PushWithTrailers({Samples("h1", 2, "b", 10)}, &ack, &trailers);
  ASSERT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  EXPECT_NE(s.error_message().find("tenant \"default\" is over samples_per_second=1 (limits file "),
            std::string::npos)
      << s.error_message();
  EXPECT_NE(s.error_message().find("; retry in 8.0s"), std::string::npos) << s.error_message();
  ASSERT_EQ(trailers.count("grpc-retry-pushback-ms"), 1u);
  const int64_t pushback = std::stoll(trailers.find("grpc-retry-pushback-ms")->second);
  EXPECT_GT(pushback, 7000);
  EXPECT_LE(pushback, 8000);
  EXPECT_EQ(trailers.find("sheaf-retry-after-ms")->second, trailers.find("grpc-retry-pushback-ms")->second);
  // Nothing of it was stored, and its sequence was not applied: sent
  // again under a higher limit (a reload), it is stored, not a duplicate.
  EXPECT_TRUE(Query("b", kNow - 3'600'000, kNow).samples.empty());
  EXPECT_EQ(Stats().samples(), 8u);
  EXPECT_EQ(daemon_->limiter()->refused("default", "samples_per_second"), 1u);
  EXPECT_NE(HttpCall(daemon_->http_port(), "GET", "/metrics", "")
                .body.find("sheaf_limits_refused_total{limit=\"samples_per_second\",tenant=\"default\"} 1"),
            std::string::npos);
  std::ofstream(dir_.Sub("limits.yaml")) << "defaults:\n  samples_per_second: 1000\n";
  ASSERT_TRUE(daemon_->Reload().ok());
  // The bucket refills at the new rate (a few ms for 10 samples).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  do {
    ack.Clear();
    s = PushWithTrailers({Samples("h1", 2, "b", 10)}, &ack, &trailers);
  } while (!s.ok() && std::chrono::steady_clock::now() < deadline);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(ack.batches_applied(), 1u);
  EXPECT_EQ(ack.batches_duplicate(), 0u);
  EXPECT_EQ(ack.samples_stored(), 10u);
  EXPECT_EQ(Stats().samples(), 18u);
}

TEST_F(LimitsDaemonTest, AgentOverItsRateIsRefusedItsNeighbourIsNot) {
  StartWithLimits("defaults:\n  agent_samples_per_second: 1\n  agent_samples_burst: 10\n");
  v1::PushAck ack;
  std::multimap<std::string, std::string> trailers;
  ASSERT_TRUE(PushWithTrailers({Samples("h1", 1, "a", 10)}, &ack, &trailers).ok());
  grpc::Status s = PushWithTrailers({Samples("h1", 2, "a", 5)}, &ack, &trailers);
  ASSERT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(s.error_message().find("agent \"h1\" of tenant \"default\" is over agent_samples_per_second=1"),
            std::string::npos)
      << s.error_message();
  EXPECT_EQ(trailers.count("grpc-retry-pushback-ms"), 1u);
  ack.Clear();
  ASSERT_TRUE(PushWithTrailers({Samples("h2", 1, "b", 10)}, &ack, &trailers).ok());
  EXPECT_EQ(ack.samples_stored(), 10u);
  EXPECT_EQ(daemon_->limiter()->refused("default", "agent_samples_per_second"), 1u);
}

TEST_F(LimitsDaemonTest, ActiveSeriesRefusesOnlyNewSeries) {
  StartWithLimits("defaults:\n  active_series: 2\n");
  v1::PushAck ack;
  std::multimap<std::string, std::string> trailers;
  ASSERT_TRUE(PushWithTrailers({Batch("h1", 1,
                                      {MakeSeries({{"__name__", "a"}}, v1::METRIC_TYPE_GAUGE, {{kNow, 1}}),
                                       MakeSeries({{"__name__", "b"}}, v1::METRIC_TYPE_GAUGE, {{kNow, 1}}),
                                       MakeSeries({{"__name__", "c"}}, v1::METRIC_TYPE_GAUGE, {{kNow, 1}})}),
                                Batch("h1", 2, {MakeSeries({{"__name__", "a"}}, v1::METRIC_TYPE_GAUGE, {{kNow + 1, 2}})})},
                               &ack, &trailers)
                  .ok());
  EXPECT_EQ(ack.samples_stored(), 3u);  // a and b, then a again
  ASSERT_EQ(ack.rejected_size(), 1);
  EXPECT_EQ(ack.rejected(0).reason(), v1::REJECT_REASON_SERIES_LIMIT);
  EXPECT_NE(ack.rejected(0).example().find("tenant \"default\" is over active_series=2"), std::string::npos)
      << ack.rejected(0).example();
  EXPECT_EQ(daemon_->limiter()->refused("default", "active_series"), 1u);
}

TEST_F(LimitsDaemonTest, NewSeriesPerMinuteRefusesTheBatchNotItsKnownSeries) {
  StartWithLimits("defaults:\n  new_series_per_minute: 2\n");
  v1::PushAck ack;
  std::multimap<std::string, std::string> trailers;
  // A full bucket takes a batch over the burst (3 new series), leaving a debt.
  ASSERT_TRUE(PushWithTrailers({Batch("h1", 1,
                                      {MakeSeries({{"__name__", "a"}}, v1::METRIC_TYPE_GAUGE, {{kNow, 1}}),
                                       MakeSeries({{"__name__", "b"}}, v1::METRIC_TYPE_GAUGE, {{kNow, 1}}),
                                       MakeSeries({{"__name__", "c"}}, v1::METRIC_TYPE_GAUGE, {{kNow, 1}})})},
                               &ack, &trailers)
                  .ok());
  EXPECT_EQ(ack.samples_stored(), 3u);
  // Known series cost nothing; one new one is refused with the whole batch.
  ASSERT_TRUE(PushWithTrailers({Batch("h1", 2, {MakeSeries({{"__name__", "a"}}, v1::METRIC_TYPE_GAUGE, {{kNow + 1, 2}})})},
                               &ack, &trailers)
                  .ok());
  grpc::Status s = PushWithTrailers({Batch("h1", 3,
                                           {MakeSeries({{"__name__", "a"}}, v1::METRIC_TYPE_GAUGE, {{kNow + 2, 3}}),
                                            MakeSeries({{"__name__", "d"}}, v1::METRIC_TYPE_GAUGE, {{kNow + 2, 3}})})},
                                    &ack, &trailers);
  ASSERT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(s.error_message().find("tenant \"default\" is over new_series_per_minute=2"), std::string::npos)
      << s.error_message();
  EXPECT_EQ(Stats().samples(), 4u);  // nothing of batch 3, not even a's sample
  EXPECT_EQ(Stats().series(), 3u);   // and d was not created
}

TEST_F(LimitsDaemonTest, LabelLimitsPerTenantOverrideTheFlags) {
  StartWithLimits("defaults:\n  labels_per_series: 2\n");
  v1::PushAck ack;
  std::multimap<std::string, std::string> trailers;
  ASSERT_TRUE(PushWithTrailers({Batch("h1", 1,
                                      {MakeSeries({{"__name__", "a"}, {"x", "1"}}, v1::METRIC_TYPE_GAUGE, {{kNow, 1}}),
                                       MakeSeries({{"__name__", "b"}, {"x", "1"}, {"y", "2"}}, v1::METRIC_TYPE_GAUGE, {{kNow, 1}})})},
                               &ack, &trailers)
                  .ok());
  EXPECT_EQ(ack.samples_stored(), 1u);
  ASSERT_EQ(ack.rejected_size(), 1);
  EXPECT_EQ(ack.rejected(0).reason(), v1::REJECT_REASON_TOO_MANY_LABELS);
}

TEST_F(LimitsDaemonTest, StreamsPerAgent) {
  StartWithLimits("defaults:\n  agent_streams: 1\n");
  grpc::ClientContext first;
  v1::PushAck first_ack;
  auto open = ingest_->Push(&first, &first_ack);
  ASSERT_TRUE(open->Write(Samples("h1", 1, "a", 1)));
  // The first batch is processed once its stream holds the slot: wait for it.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (Stats().samples() < 1 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  v1::PushAck ack;
  std::multimap<std::string, std::string> trailers;
  grpc::Status s = PushWithTrailers({Samples("h1", 2, "a", 1)}, &ack, &trailers);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(s.error_message().find("over agent_streams=1"), std::string::npos) << s.error_message();
  open->WritesDone();
  ASSERT_TRUE(open->Finish().ok());
  EXPECT_TRUE(PushWithTrailers({Samples("h1", 2, "a", 1)}, &ack, &trailers).ok());  // the slot is free again
}

TEST_F(LimitsDaemonTest, ReloadKeepsOldLimitsOnABadFileAndSaysSo) {
  StartWithLimits("defaults:\n  samples_per_second: 5\n");
  std::ofstream(dir_.Sub("limits.yaml")) << "defaults:\n  samples_per_second: [\n";
  absl::Status s = daemon_->Reload();
  EXPECT_NE(s.message().find("limits: " + dir_.Sub("limits.yaml") + ":"), std::string_view::npos) << s;
  EXPECT_EQ(daemon_->limiter()->For("default").samples_per_second, 5);
  std::ofstream(dir_.Sub("limits.yaml")) << "defaults:\n  samples_per_second: 7\n";
  EXPECT_TRUE(daemon_->Reload().ok());
  EXPECT_EQ(daemon_->limiter()->For("default").samples_per_second, 7);
}

TEST_F(LimitsDaemonTest, RemoteWriteOverTheRateIs429WithRetryAfterAndStoresNothing) {
  StartWithLimits("defaults:\n  samples_per_second: 1\n  samples_burst: 5\n");
  const auto post = [&](int samples) {
    prompb::WriteRequest request;
    prompb::TimeSeries* ts = request.add_timeseries();
    prompb::Label* l = ts->add_labels();
    l->set_name("__name__");
    l->set_value(fmt::format("rw{}", samples));
    for (int i = 0; i < samples; ++i) {
      prompb::Sample* x = ts->add_samples();
      x->set_timestamp(kNow - samples + i);
      x->set_value(i);
    }
    std::string raw = request.SerializeAsString(), body;
    snappy::Compress(raw.data(), raw.size(), &body);
    return HttpCall(daemon_->http_port(), "POST", "/api/v1/write", "", body,
                    {"Content-Encoding: snappy", "Content-Type: application/x-protobuf"});
  };
  EXPECT_EQ(post(4).status, 204);
  HttpAnswer refused = post(5);  // 1 token left, 5 wanted: 4 s
  EXPECT_EQ(refused.status, 429);
  EXPECT_NE(refused.body.find("tenant \"default\" is over samples_per_second=1"), std::string::npos) << refused.body;
  EXPECT_NE(refused.headers.find("Retry-After: 4"), std::string::npos) << refused.headers;
  EXPECT_EQ(Stats().samples(), 4u);
}

TEST_F(LimitsDaemonTest, TenantQuerySlotsOnGrpcAndHttp) {
  StartWithLimits("defaults:\n  concurrent_queries: 1\n");
  auto held = daemon_->limiter()->AcquireQuery("default");  // a query running
  ASSERT_TRUE(held.ok());
  grpc::ClientContext ctx;
  v1::QueryRequest req;
  req.set_expr("1");
  req.set_time_ms(kNow);
  auto reader = query_->Query(&ctx, req);
  v1::QueryResponse resp;
  while (reader->Read(&resp)) {
  }
  grpc::Status s = reader->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(s.error_message().find("tenant \"default\" is over concurrent_queries=1"), std::string::npos)
      << s.error_message();
  EXPECT_EQ(ctx.GetServerTrailingMetadata().count("grpc-retry-pushback-ms"), 1u);
  HttpAnswer http = HttpCall(daemon_->http_port(), "GET", "/api/v1/query?query=1", "");
  EXPECT_EQ(http.status, 429);
  EXPECT_NE(http.body.find("over concurrent_queries=1"), std::string::npos) << http.body;
  EXPECT_NE(http.headers.find("Retry-After: 1"), std::string::npos) << http.headers;
  *held = Limiter::Slot();  // the query ends: the next one runs
  EXPECT_EQ(HttpCall(daemon_->http_port(), "GET", "/api/v1/query?query=1", "").status, 200);
  EXPECT_EQ(daemon_->limiter()->refused("default", "concurrent_queries"), 2u);
}

// Two tenants on one daemon, A's agent trying to send far more than its
// samples_per_second and, as sheaf-agent does, waiting the pushback each
// time it is refused: B's accepted rate stays within noise of its rate
// alone. (A client that ignores the hints and reconnects at once costs the
// daemon a stream and a decode per refusal: in this process, whose client
// threads share the machine's cores with the daemon, that took B to ~64 %.)
class TwoTenantsTest : public AuthDaemonTest {
 protected:
  // Pushes as `token` for `seconds`, streams of 5 batches of 2000 samples
  // of one series per tenant; the samples stored per second.
  double IngestRate(const std::string& token, const std::string& agent, double seconds, uint64_t* seq) {
    uint64_t stored = 0;
    const auto start = std::chrono::steady_clock::now();
    const auto end = start + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < end) {
      std::vector<v1::MetricBatch> batches;
      for (int b = 0; b < 5; ++b) {
        ++*seq;
        std::vector<std::pair<int64_t, double>> points;
        // Increasing timestamps, a day back: within the accepted window.
        for (int i = 0; i < 2000; ++i) points.emplace_back(kNow - 86'400'000 + int64_t(*seq) * 2000 + i, i);
        batches.push_back(Batch(agent, *seq, {MakeSeries({{"__name__", "load"}}, v1::METRIC_TYPE_GAUGE, points)}));
      }
      v1::PushAck ack;
      if (PushAs(token, batches, &ack).ok()) stored += ack.samples_stored();
    }
    return static_cast<double>(stored) /
           std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
};

TEST_F(TwoTenantsTest, OneTenantOverItsLimitLeavesTheOthersRateUnchanged) {
  const std::string limits = dir_.Sub("limits.yaml");
  // a may send 100k samples/s (a twentieth of what b sends here alone); it tries to send more.
  WriteTextFile(limits, "tenants:\n  a:\n    samples_per_second: 100000\n");
  DaemonConfig config;
  config.limits_file = limits;
  StartWithTokens(
      "tokens:\n"
      "  - {token: token-a, tenant: a, roles: [ingest, query]}\n"
      "  - {token: token-b, tenant: b, roles: [ingest, query]}\n",
      config);
  uint64_t seq_b = 0;
  IngestRate("token-b", "b-1", 0.5, &seq_b);  // warm up (series created, caches)
  // b alone before and after the flood (the machine's load drifts).
  const double alone_before = IngestRate("token-b", "b-1", 1.25, &seq_b);
  // Tenant a's agent: the same batch again and again under new sequences
  // (built once: the client's own work is not what is measured), a new
  // stream after the pushback when one is refused.
  std::atomic<bool> stop = false;
  std::atomic<uint64_t> a_streams = 0;
  std::thread flood([&] {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<std::pair<int64_t, double>> points;
    for (int i = 0; i < 2000; ++i) points.emplace_back(kNow - 3'600'000 + i, i);
    v1::MetricBatch batch = Batch("a-1", 0, {MakeSeries({{"__name__", "load"}}, v1::METRIC_TYPE_GAUGE, points)});
    uint64_t seq = 0;
    while (!stop) {
      grpc::ClientContext ctx;
      AddToken(&ctx, "token-a");
      v1::PushAck ack;
      auto writer = ingest_->Push(&ctx, &ack);
      for (int b = 0; b < 5; ++b) {
        batch.set_sequence(++seq);
        if (!writer->Write(batch)) break;
      }
      writer->WritesDone();
      grpc::Status status = writer->Finish();
      ++a_streams;
      auto pushback = ctx.GetServerTrailingMetadata().find("grpc-retry-pushback-ms");
      if (status.ok() || pushback == ctx.GetServerTrailingMetadata().end()) continue;
      const int64_t ms = std::stoll(std::string(pushback->second.data(), pushback->second.size()));
      std::unique_lock lock(mu);
      cv.wait_for(lock, std::chrono::milliseconds(std::min<int64_t>(ms, 10'000)), [&] { return stop.load(); });
    }
  });
  const double beside_a = IngestRate("token-b", "b-1", 2.5, &seq_b);
  stop = true;
  flood.join();  // within 10 s: it waits for one pushback at most
  const double alone = (alone_before + IngestRate("token-b", "b-1", 1.25, &seq_b)) / 2;
  LogInfo("tenant b: {:.0f} samples/s alone, {:.0f} beside tenant a flooding ({} streams of a)", alone, beside_a,
          a_streams.load());
  EXPECT_GT(alone, 0);
  EXPECT_GE(beside_a, 0.7 * alone);
  EXPECT_GE(daemon_->limiter()->refused("a", "samples_per_second"), 1u);  // a really was over its limit
  EXPECT_EQ(daemon_->limiter()->refused("b", "samples_per_second"), 0u);
}

}  // namespace
}  // namespace sheaf::daemon
