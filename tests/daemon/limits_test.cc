// Per-tenant and per-agent limits (daemon/limits.h): the limiter alone on
// an injected clock (buckets, cardinality, slots, the file and its
// reload), then through a real in-process Daemon.
#include "daemon/limits.h"

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <fstream>

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

}  // namespace
}  // namespace sheaf::daemon
