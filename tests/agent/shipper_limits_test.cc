// The shipper against sheafd's limits (daemon/limits.h): a stream refused
// with RESOURCE_EXHAUSTED and gRPC's grpc-retry-pushback-ms trailer is
// sent again from the spool after at least the pushback (bounded by
// max_pushback), not after the agent's own (shorter) backoff, and the
// daemon is not taken for a failed one. Against a real daemon whose
// agent_samples_per_second the agent exceeds, everything arrives, once.
#include <fmt/format.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <fstream>
#include <mutex>

#include "agent/shipper.h"
#include "common/clock.h"
#include "tests/agent/agent_fixture.h"
#include "tests/agent/daemon_fixture.h"
#include "tests/agent/fake_ingest.h"
#include "tests/support/temp_dir.h"

namespace sheaf::agent {
namespace {

std::vector<SeriesData> Samples(const std::string& name, int n) {
  SeriesData s;
  s.labels = {{"__name__", name}, {"host", "test"}};
  s.key = SeriesKey(s.labels);
  s.type = v1::METRIC_TYPE_GAUGE;
  const int64_t now = WallClockMs();
  for (int i = 0; i < n; ++i) {
    s.timestamps_ms.push_back(now - n + i);
    s.values.push_back(i);
  }
  return {s};
}

ShipperOptions FastOptions() {
  ShipperOptions o;
  o.agent_id = "limited";
  o.stream_max_age = std::chrono::milliseconds(200);
  o.backoff_initial = std::chrono::milliseconds(50);
  o.backoff_max = std::chrono::milliseconds(100);
  o.replay_rate = 1000;
  o.replay_jitter = std::chrono::milliseconds(0);
  return o;
}

// Refuses the first `refusals` streams as sheafd does over a limit: with
// the pushback in gRPC's trailer and in sheaf's own.
RefusingIngest LimitedIngest(int refusals, const std::string& pushback_ms) {
  return RefusingIngest(refusals, {{"grpc-retry-pushback-ms", pushback_ms}, {"sheaf-retry-after-ms", pushback_ms}},
                        "agent \"limited\" of tenant \"default\" is over agent_samples_per_second=1; retry in 1.0s");
}

TEST(ShipperLimitsTest, WaitsAtLeastThePushbackInsteadOfItsBackoff) {
  RefusingIngest limited = LimitedIngest(2, "1000");
  FakeDaemon fake(&limited);
  ASSERT_NE(fake.server, nullptr);
  testing::TempDir dir;
  auto state = OpenState(dir.Sub("state"));
  ASSERT_NE(state, nullptr);
  TestAgent agent(dir.path(), fake.port, state.get(), FastOptions());  // backoff 50-100 ms
  ASSERT_TRUE(agent.shipper->Enqueue(Samples("m", 1)).ok());
  ASSERT_TRUE(agent.shipper->WaitAcked(std::chrono::seconds(20)));
  {
    std::lock_guard lock(limited.mu);
    ASSERT_EQ(limited.attempts.size(), 3u);
    for (size_t i = 1; i < 3; ++i) {
      const auto gap = limited.attempts[i] - limited.attempts[i - 1];
      EXPECT_GE(gap, std::chrono::milliseconds(1000)) << "attempt " << i;
      EXPECT_LT(gap, std::chrono::milliseconds(3000)) << "attempt " << i;  // 1 s + a tenth of jitter, not more
    }
  }
  auto st = agent.shipper->stats();
  EXPECT_EQ(st.streams_limited, 2u);
  EXPECT_EQ(st.batches_acked, 1u);
  agent.shipper->Stop(std::chrono::seconds(1));
}

TEST(ShipperLimitsTest, PushbackIsBounded) {
  RefusingIngest limited = LimitedIngest(1, "3600000");  // an hour
  FakeDaemon fake(&limited);
  ASSERT_NE(fake.server, nullptr);
  testing::TempDir dir;
  auto state = OpenState(dir.Sub("state"));
  ASSERT_NE(state, nullptr);
  ShipperOptions options = FastOptions();
  options.max_pushback = std::chrono::milliseconds(500);
  TestAgent agent(dir.path(), fake.port, state.get(), options);
  ASSERT_TRUE(agent.shipper->Enqueue(Samples("m", 1)).ok());
  ASSERT_TRUE(agent.shipper->WaitAcked(std::chrono::seconds(20)));
  std::lock_guard lock(limited.mu);
  ASSERT_EQ(limited.attempts.size(), 2u);
  EXPECT_GE(limited.attempts[1] - limited.attempts[0], std::chrono::milliseconds(500));
  EXPECT_LT(limited.attempts[1] - limited.attempts[0], std::chrono::seconds(10));
  agent.shipper->Stop(std::chrono::seconds(1));
}

// End to end: sheafd allows this agent 20 samples/s (burst 20); it ships
// 100 in 5 batches as fast as it can. The daemon refuses what is over the
// rate, the agent waits as told, and every sample is stored exactly once.
TEST(ShipperLimitsTest, AnAgentOverItsRateSlowsDownAndLosesNothing) {
  testing::TempDir dir;
  const std::string limits = dir.Sub("limits.yaml");
  std::ofstream(limits) << "defaults:\n  agent_samples_per_second: 20\n";
  daemon::DaemonConfig config;
  config.grpc_listen = "127.0.0.1:0";
  config.http_listen = "127.0.0.1:0";
  config.store.path = dir.Sub("data");
  config.store.sync = false;
  config.limits_file = limits;
  auto d = daemon::Daemon::Start(config);
  ASSERT_TRUE(d.ok()) << d.status();
  const int port = (*d)->grpc_port();
  auto state = OpenState(dir.Sub("state"));
  ASSERT_NE(state, nullptr);
  TestAgent agent(dir.path(), port, state.get(), FastOptions());
  const auto started = std::chrono::steady_clock::now();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(agent.shipper->Enqueue(Samples(fmt::format("m{}", i), 20)).ok());
  ASSERT_TRUE(agent.shipper->WaitAcked(std::chrono::seconds(25)));
  const auto took = std::chrono::steady_clock::now() - started;
  // 100 samples at 20/s after a burst of 20: at least 4 s.
  EXPECT_GE(took, std::chrono::milliseconds(3900));
  EXPECT_EQ(testing::StoredSamples(port), 100u);
  auto st = agent.shipper->stats();
  EXPECT_GE(st.streams_limited, 1u);
  EXPECT_EQ(st.samples_acked, 100u);
  EXPECT_GE((*d)->limiter()->refused("default", "agent_samples_per_second"), 1u);
  agent.shipper->Stop(std::chrono::seconds(1));
}

}  // namespace
}  // namespace sheaf::agent
