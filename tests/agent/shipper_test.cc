// The agent's shipper against a real sheafd over TCP: batches are
// acknowledged, survive the daemon going away (retried with backoff and
// delivered once it is back, on the same port), and are stored once.
#include "agent/shipper.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "common/clock.h"
#include "daemon/daemon.h"
#include "sheaf/v1/query.grpc.pb.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace sheaf::agent {
namespace {

std::vector<SeriesData> OneSample(const std::string& name, double value) {
  SeriesData s;
  s.labels = {{"__name__", name}, {"host", "test"}};
  s.key = SeriesKey(s.labels);
  s.type = v1::METRIC_TYPE_GAUGE;
  s.timestamps_ms = {WallClockMs()};
  s.values = {value};
  return {s};
}

std::unique_ptr<daemon::Daemon> StartDaemon(const std::string& dir, int port) {
  daemon::DaemonConfig config;
  config.grpc_listen = "127.0.0.1:" + std::to_string(port);
  config.http_listen = "127.0.0.1:0";
  config.store.path = dir;
  config.store.sync = false;
  auto d = daemon::Daemon::Start(config);
  EXPECT_TRUE(d.ok()) << d.status();
  return d.ok() ? *std::move(d) : nullptr;
}

uint64_t StoredSamples(int port) {
  auto stub = v1::QueryService::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  v1::StatsResponse resp;
  return stub->Stats(&ctx, v1::StatsRequest(), &resp).ok() ? resp.samples() : 0;
}

ShipperOptions FastOptions() {
  ShipperOptions o;
  o.agent_id = "shipper-test";
  o.stream_max_age = std::chrono::milliseconds(200);
  o.backoff_initial = std::chrono::milliseconds(50);
  o.backoff_max = std::chrono::milliseconds(300);
  return o;
}

TEST(ShipperTest, BatchesAreAcknowledgedAndStored) {
  testing::TempDir dir;
  auto d = StartDaemon(dir.Sub("data"), 0);
  ASSERT_NE(d, nullptr);
  Shipper shipper(FastOptions(), MakeDaemonChannel("127.0.0.1:" + std::to_string(d->grpc_port()), {}));
  for (int i = 0; i < 3; ++i) shipper.Enqueue(OneSample("m" + std::to_string(i), i));
  ASSERT_TRUE(shipper.WaitAcked(std::chrono::seconds(10)));
  EXPECT_EQ(StoredSamples(d->grpc_port()), 3u);
  auto st = shipper.stats();
  EXPECT_EQ(st.pending, 0u);
  EXPECT_GT(st.acked_sequence, 0u);
  EXPECT_EQ(shipper.Stop(std::chrono::seconds(5)), 0u);
}

TEST(ShipperTest, RetriesUntilTheDaemonIsBackAndDeliversOnce) {
  testing::TempDir dir;
  const int port = testing::FreePort();
  Shipper shipper(FastOptions(), MakeDaemonChannel("127.0.0.1:" + std::to_string(port), {}));
  // No daemon yet: batches wait and streams fail.
  shipper.Enqueue(OneSample("early", 1));
  shipper.Enqueue(OneSample("early2", 2));
  ASSERT_TRUE(testing::WaitFor([&] { return shipper.stats().streams_failed >= 2; }, std::chrono::seconds(10)));
  EXPECT_EQ(shipper.stats().pending, 2u);
  auto d = StartDaemon(dir.Sub("data"), port);
  ASSERT_NE(d, nullptr);
  ASSERT_TRUE(shipper.WaitAcked(std::chrono::seconds(20)));
  EXPECT_EQ(StoredSamples(port), 2u);
  shipper.Enqueue(OneSample("late", 3));
  ASSERT_TRUE(shipper.WaitAcked(std::chrono::seconds(10)));
  EXPECT_EQ(StoredSamples(port), 3u);
}

TEST(ShipperTest, FullQueueDropsTheOldestAndStopReportsWhatIsLeft) {
  ShipperOptions o = FastOptions();
  o.max_pending_batches = 2;
  Shipper shipper(o, MakeDaemonChannel("127.0.0.1:" + std::to_string(testing::FreePort()), {}));
  for (int i = 0; i < 5; ++i) shipper.Enqueue(OneSample("m", i));
  EXPECT_EQ(shipper.stats().dropped, 3u);
  EXPECT_EQ(shipper.stats().pending, 2u);
  auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(shipper.Stop(std::chrono::milliseconds(300)), 2u);  // nobody to deliver to
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));  // bounded
}

}  // namespace
}  // namespace sheaf::agent
