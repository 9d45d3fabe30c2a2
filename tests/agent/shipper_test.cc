// The agent's shipper against a real sheafd over TCP: batches are
// acknowledged, survive the daemon going away (retried with backoff and
// delivered once it is back, on the same port), and are stored once.
// Sequences come from the agent's state, so they continue across restarts;
// a daemon that holds sequences the agent never sent (a forged batch, a
// second agent with the same id) is detected, logged and healed, and the
// agent's data is stored anyway.
#include "agent/shipper.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "common/clock.h"
#include "tests/agent/daemon_fixture.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace sheaf::agent {
namespace {

using testing::SamplesOf;
using testing::StartDaemon;
using testing::StoredSamples;

std::vector<SeriesData> OneSample(const std::string& name, double value) {
  SeriesData s;
  s.labels = {{"__name__", name}, {"host", "test"}};
  s.key = SeriesKey(s.labels);
  s.type = v1::METRIC_TYPE_GAUGE;
  s.timestamps_ms = {WallClockMs()};
  s.values = {value};
  return {s};
}

std::unique_ptr<AgentState> OpenState(const std::string& dir) {
  auto s = AgentState::Open({.dir = dir, .use_identity_file = false});
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *std::move(s) : nullptr;
}

ShipperOptions FastOptions(const std::string& agent_id = "shipper-test") {
  ShipperOptions o;
  o.agent_id = agent_id;
  o.stream_max_age = std::chrono::milliseconds(200);
  o.backoff_initial = std::chrono::milliseconds(50);
  o.backoff_max = std::chrono::milliseconds(300);
  return o;
}

std::shared_ptr<grpc::Channel> ChannelTo(int port) {
  return MakeDaemonChannel(std::string("127.0.0.1:") + std::to_string(port), {});
}

TEST(ShipperTest, BatchesAreAcknowledgedAndStored) {
  testing::TempDir dir;
  auto d = StartDaemon(dir.Sub("data"), 0);
  ASSERT_NE(d, nullptr);
  auto state = OpenState(dir.Sub("state"));
  ASSERT_NE(state, nullptr);
  Shipper shipper(FastOptions(), ChannelTo(d->grpc_port()), state.get());
  for (int i = 0; i < 3; ++i) shipper.Enqueue(OneSample(std::string("m") + std::to_string(i), i));
  ASSERT_TRUE(shipper.WaitAcked(std::chrono::seconds(10)));
  EXPECT_EQ(StoredSamples(d->grpc_port()), 3u);
  auto st = shipper.stats();
  EXPECT_EQ(st.pending, 0u);
  EXPECT_EQ(st.acked_sequence, 3u);  // dense, from 1: not from the clock
  EXPECT_EQ(st.sequence_conflicts, 0u);
  EXPECT_EQ(st.unexpected_duplicates, 0u);
  EXPECT_EQ(shipper.Stop(std::chrono::seconds(5)), 0u);
}

TEST(ShipperTest, RetriesUntilTheDaemonIsBackAndDeliversOnce) {
  testing::TempDir dir;
  const int port = testing::FreePort();
  auto state = OpenState(dir.Sub("state"));
  ASSERT_NE(state, nullptr);
  Shipper shipper(FastOptions(), ChannelTo(port), state.get());
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
  // Retried batches kept their sequences: 1, 2, then 3.
  EXPECT_EQ(shipper.stats().acked_sequence, 3u);
  EXPECT_EQ(shipper.stats().unexpected_duplicates, 0u);
  EXPECT_EQ(shipper.stats().sequence_conflicts, 0u);
}

TEST(ShipperTest, FullQueueDropsTheOldestAndStopReportsWhatIsLeft) {
  testing::TempDir dir;
  auto state = OpenState(dir.Sub("state"));
  ASSERT_NE(state, nullptr);
  ShipperOptions o = FastOptions();
  o.max_pending_batches = 2;
  Shipper shipper(o, ChannelTo(testing::FreePort()), state.get());
  for (int i = 0; i < 5; ++i) shipper.Enqueue(OneSample("m", i));
  EXPECT_EQ(shipper.stats().dropped, 3u);
  EXPECT_EQ(shipper.stats().pending, 2u);
  auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(shipper.Stop(std::chrono::milliseconds(300)), 2u);                     // nobody to deliver to
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));  // bounded
}

// The bug this replaces: sequences from the wall clock, so a clock stepped
// back across a restart made every later batch a duplicate, silently.
// Sequences from the state continue where the last run left them.
TEST(ShipperTest, SequencesContinueAcrossAgentRestarts) {
  testing::TempDir dir;
  auto d = StartDaemon(dir.Sub("data"), 0);
  ASSERT_NE(d, nullptr);
  uint64_t first_run_acked = 0;
  for (int run = 0; run < 3; ++run) {
    auto state = OpenState(dir.Sub("state"));
    ASSERT_NE(state, nullptr);
    Shipper shipper(FastOptions(), ChannelTo(d->grpc_port()), state.get());
    shipper.Enqueue(OneSample(std::string("run") + std::to_string(run) + "_a", 1));
    shipper.Enqueue(OneSample(std::string("run") + std::to_string(run) + "_b", 2));
    ASSERT_TRUE(shipper.WaitAcked(std::chrono::seconds(10)));
    EXPECT_EQ(shipper.Stop(std::chrono::seconds(5)), 0u);
    auto st = shipper.stats();
    EXPECT_EQ(st.sequence_conflicts, 0u);
    EXPECT_EQ(st.unexpected_duplicates, 0u);
    EXPECT_GT(st.acked_sequence, first_run_acked);
    first_run_acked = st.acked_sequence;
  }
  EXPECT_EQ(StoredSamples(d->grpc_port()), 6u);
  for (int run = 0; run < 3; ++run) {
    EXPECT_EQ(SamplesOf(d->grpc_port(), std::string("run") + std::to_string(run) + "_b"), 1u) << run;
  }
}

// Someone pushed sequence 2^40 under this agent's id before the agent ever
// sent: every batch the agent sends is "already durable" to the daemon.
// The agent must notice, move past 2^40 and get its data stored.
TEST(ShipperTest, DaemonAheadOfTheAgentIsAConflictThatHeals) {
  testing::TempDir dir;
  auto d = StartDaemon(dir.Sub("data"), 0);
  ASSERT_NE(d, nullptr);
  const uint64_t forged = uint64_t{1} << 40;
  v1::PushAck forged_ack = testing::RawPush(d->grpc_port(), "shipper-test", forged, "forged");
  ASSERT_EQ(forged_ack.durable_sequence(), forged);

  auto state = OpenState(dir.Sub("state"));
  ASSERT_NE(state, nullptr);
  Shipper shipper(FastOptions(), ChannelTo(d->grpc_port()), state.get());
  for (int i = 0; i < 3; ++i) shipper.Enqueue(OneSample(std::string("agent_m") + std::to_string(i), i));
  ASSERT_TRUE(shipper.WaitAcked(std::chrono::seconds(20)));
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(SamplesOf(d->grpc_port(), std::string("agent_m") + std::to_string(i)), 1u) << i;
  }
  EXPECT_EQ(StoredSamples(d->grpc_port()), 4u);  // the forged one and the agent's three
  auto st = shipper.stats();
  EXPECT_EQ(st.sequence_conflicts, 1u);
  EXPECT_GT(st.acked_sequence, forged);
  EXPECT_GT(state->PeekNextSequence(), forged);  // durably: the next run starts above it too

  // Later batches go through without another conflict.
  shipper.Enqueue(OneSample("agent_later", 9));
  ASSERT_TRUE(shipper.WaitAcked(std::chrono::seconds(10)));
  EXPECT_EQ(SamplesOf(d->grpc_port(), "agent_later"), 1u);
  EXPECT_EQ(shipper.stats().sequence_conflicts, 1u);
  shipper.Stop(std::chrono::seconds(5));
  state.reset();
  EXPECT_GT(OpenState(dir.Sub("state"))->PeekNextSequence(), forged);
}

// Two agents configured with the same id (each with its own state): the
// second one's sequences were all used by the first. Its batches are
// reported as duplicates; it must say so and still get them stored.
TEST(ShipperTest, SecondAgentWithTheSameIdIsLoudAndLosesNothing) {
  testing::TempDir dir;
  auto d = StartDaemon(dir.Sub("data"), 0);
  ASSERT_NE(d, nullptr);
  auto state_a = OpenState(dir.Sub("a"));
  auto state_b = OpenState(dir.Sub("b"));
  ASSERT_NE(state_a, nullptr);
  ASSERT_NE(state_b, nullptr);
  Shipper a(FastOptions("same-id"), ChannelTo(d->grpc_port()), state_a.get());
  for (int i = 0; i < 3; ++i) a.Enqueue(OneSample(std::string("from_a") + std::to_string(i), i));
  ASSERT_TRUE(a.WaitAcked(std::chrono::seconds(10)));
  Shipper b(FastOptions("same-id"), ChannelTo(d->grpc_port()), state_b.get());
  for (int i = 0; i < 3; ++i) b.Enqueue(OneSample(std::string("from_b") + std::to_string(i), i));
  ASSERT_TRUE(b.WaitAcked(std::chrono::seconds(20)));
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(SamplesOf(d->grpc_port(), std::string("from_a") + std::to_string(i)), 1u) << i;
    EXPECT_EQ(SamplesOf(d->grpc_port(), std::string("from_b") + std::to_string(i)), 1u) << i;
  }
  auto st = b.stats();
  EXPECT_GE(st.unexpected_duplicates, 1u);
  EXPECT_GE(st.batches_resent, 1u);
  EXPECT_EQ(a.stats().unexpected_duplicates, 0u);
}

// The state cannot hand out sequences: batches wait (nothing is sent
// without a sequence) and the error is counted, not hidden.
class BrokenSequences : public SequenceSource {
 public:
  absl::StatusOr<uint64_t> NextSequence() override { return absl::FailedPreconditionError("disk full"); }
  uint64_t PeekNextSequence() const override { return 1; }
  absl::Status AdvancePast(uint64_t) override { return absl::FailedPreconditionError("disk full"); }
};

TEST(ShipperTest, BatchesWaitWhileTheStateCannotHandOutSequences) {
  testing::TempDir dir;
  auto d = StartDaemon(dir.Sub("data"), 0);
  ASSERT_NE(d, nullptr);
  BrokenSequences broken;
  Shipper shipper(FastOptions(), ChannelTo(d->grpc_port()), &broken);
  shipper.Enqueue(OneSample("m", 1));
  ASSERT_TRUE(testing::WaitFor([&] { return shipper.stats().sequence_errors >= 2; }, std::chrono::seconds(10)));
  EXPECT_EQ(shipper.stats().pending, 1u);
  EXPECT_EQ(StoredSamples(d->grpc_port()), 0u);
  EXPECT_EQ(shipper.Stop(std::chrono::milliseconds(100)), 1u);
}

}  // namespace
}  // namespace sheaf::agent
