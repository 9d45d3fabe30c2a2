// The keepalive pair: the agent's channel (agent/discovery/channel.h)
// against a real in-process sheafd's enforcement policy (daemon/daemon.cc),
// with times shortened (agent pings every 1 s; sheafd accepts one per
// 500 ms). Idle and with a stream open, the connection must stay up: no
// GOAWAY too_many_pings, no reconnect. The same channel against a daemon
// that wants pings 5 s apart is dropped: the check can tell.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "agent/discovery/channel.h"
#include "daemon/daemon.h"
#include "health.grpc.pb.h"
#include "tests/support/temp_dir.h"

namespace sheaf::agent::discovery {
namespace {

using std::chrono::milliseconds;

std::unique_ptr<daemon::Daemon> StartDaemon(const std::string& dir, milliseconds min_ping_interval) {
  daemon::DaemonConfig config;
  config.grpc_listen = "127.0.0.1:0";
  config.http_listen = "127.0.0.1:0";
  config.store.path = dir;
  config.store.sync = false;
  config.keepalive_min_ping_interval = min_ping_interval;
  config.keepalive_max_ping_strikes = 2;
  auto d = daemon::Daemon::Start(config);
  EXPECT_TRUE(d.ok()) << d.status();
  return d.ok() ? *std::move(d) : nullptr;
}

std::shared_ptr<grpc::Channel> AgentChannel(int port) {
  ChannelOptions o;
  o.keepalive_time = milliseconds(1000);
  o.keepalive_timeout = milliseconds(1000);
  return MakeDaemonChannel("127.0.0.1:" + std::to_string(port), o);
}

// True if the channel, READY now, stays READY for `d`.
bool StaysReady(grpc::Channel* channel, milliseconds d) {
  if (channel->GetState(false) != GRPC_CHANNEL_READY) return false;
  return !channel->WaitForStateChange(GRPC_CHANNEL_READY, std::chrono::system_clock::now() + d);
}

bool Check(const std::shared_ptr<grpc::Channel>& channel) {
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + milliseconds(2000));
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  return stub->Check(&ctx, req, &resp).ok() && resp.status() == grpc::health::v1::HealthCheckResponse::SERVING;
}

TEST(KeepaliveTest, AgentPingsAreAcceptedIdleAndWithAStreamOpen) {
  testing::TempDir dir;
  auto d = StartDaemon(dir.path(), milliseconds(500));
  ASSERT_NE(d, nullptr);
  auto channel = AgentChannel(d->grpc_port());
  ASSERT_TRUE(channel->WaitForConnected(std::chrono::system_clock::now() + milliseconds(5000)));

  // Idle: about five pings, no call open.
  EXPECT_TRUE(StaysReady(channel.get(), milliseconds(5000))) << "the idle connection was dropped";

  // A stream open and quiet (Health.Watch answers once, then waits), as a
  // Push stream between batches.
  {
    auto stub = grpc::health::v1::Health::NewStub(channel);
    grpc::ClientContext ctx;
    grpc::health::v1::HealthCheckRequest req;
    auto reader = stub->Watch(&ctx, req);
    grpc::health::v1::HealthCheckResponse resp;
    ASSERT_TRUE(reader->Read(&resp));
    EXPECT_TRUE(StaysReady(channel.get(), milliseconds(5000))) << "the connection with a stream open was dropped";
    ctx.TryCancel();
    reader->Finish();
  }
  // A call afterwards goes over the same connection.
  EXPECT_TRUE(Check(channel));
  EXPECT_EQ(channel->GetState(false), GRPC_CHANNEL_READY);
}

// The control: pings at 1 s against a daemon that accepts one per 5 s are
// abuse; after two strikes sheafd sends GOAWAY and the channel leaves READY.
TEST(KeepaliveTest, TooFrequentPingsAreRefused) {
  testing::TempDir dir;
  auto d = StartDaemon(dir.path(), milliseconds(5000));
  ASSERT_NE(d, nullptr);
  auto channel = AgentChannel(d->grpc_port());
  ASSERT_TRUE(channel->WaitForConnected(std::chrono::system_clock::now() + milliseconds(5000)));
  EXPECT_FALSE(StaysReady(channel.get(), milliseconds(8000))) << "GOAWAY too_many_pings expected";
}

}  // namespace
}  // namespace sheaf::agent::discovery
