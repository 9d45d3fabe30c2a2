// The agent's shipper against a real sheafd over TCP, through the spool and
// the daemon picker: batches are spooled, acknowledged and stored once;
// they survive the daemon going away (spooled, then replayed beside fresh
// batches once it is back) and restarts of the agent (nothing acknowledged
// is sent again). Sequences come from the agent's state, so they continue
// across restarts; a daemon that holds sequences the agent never sent (a
// forged batch, a second agent with the same id) is detected, logged and
// healed, and the agent's data is stored anyway. A batch the daemon refuses
// with INVALID_ARGUMENT is found, dropped and counted, not retried forever.
#include "agent/shipper.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <mutex>
#include <thread>

#include "common/clock.h"
#include "tests/agent/agent_fixture.h"
#include "tests/agent/daemon_fixture.h"
#include "tests/agent/fake_ingest.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace sheaf::agent {
namespace {

using testing::SamplesOf;
using testing::StartDaemon;
using testing::StoredSamples;

std::vector<SeriesData> OneSample(const std::string& name, double value, int64_t ts = 0) {
  SeriesData s;
  s.labels = {{"__name__", name}, {"host", "test"}};
  s.key = SeriesKey(s.labels);
  s.type = v1::METRIC_TYPE_GAUGE;
  s.timestamps_ms = {ts != 0 ? ts : WallClockMs()};
  s.values = {value};
  return {s};
}

ShipperOptions FastOptions(const std::string& agent_id = "shipper-test") {
  ShipperOptions o;
  o.agent_id = agent_id;
  o.stream_max_age = std::chrono::milliseconds(200);
  o.backoff_initial = std::chrono::milliseconds(50);
  o.backoff_max = std::chrono::milliseconds(300);
  o.replay_rate = 1000;
  o.replay_jitter = std::chrono::milliseconds(0);
  return o;
}

TEST(ShipperTest, BatchesAreAcknowledgedAndStored) {
  testing::TempDir dir;
  auto d = StartDaemon(dir.Sub("data"), 0);
  ASSERT_NE(d, nullptr);
  auto state = OpenState(dir.Sub("state"));
  ASSERT_NE(state, nullptr);
  TestAgent agent(dir.path(), d->grpc_port(), state.get(), FastOptions());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(agent.shipper->Enqueue(OneSample("m" + std::to_string(i), i)).ok());
  ASSERT_TRUE(agent.shipper->WaitAcked(std::chrono::seconds(10)));
  EXPECT_EQ(StoredSamples(d->grpc_port()), 3u);
  auto st = agent.shipper->stats();
  EXPECT_EQ(st.batches_spooled, 3u);
  EXPECT_EQ(st.batches_acked, 3u);
  EXPECT_EQ(st.acked_sequence, 3u);  // dense, from 1: not from the clock
  EXPECT_EQ(st.sequence_conflicts, 0u);
  EXPECT_EQ(st.unexpected_duplicates, 0u);
  EXPECT_EQ(st.daemon, "127.0.0.1:" + std::to_string(d->grpc_port()));
  EXPECT_EQ(agent.shipper->Stop(std::chrono::seconds(5)), 0u);
  EXPECT_EQ(agent.spool->stats().records_unacked, 0u);
}

// The daemon is away: batches wait in the spool (nothing in memory grows),
// and once it is back the backlog is replayed at its rate while fresh
// batches go at once — each stored exactly once.
TEST(ShipperTest, BacklogIsReplayedBesideFreshBatchesAndStoredOnce) {
  testing::TempDir dir;
  const int port = testing::FreePort();
  auto state = OpenState(dir.Sub("state"));
  ASSERT_NE(state, nullptr);
  ShipperOptions o = FastOptions();
  o.replay_rate = 10;  // 20 batches of backlog take about 2 s
  o.stream_max_age = std::chrono::seconds(1);
  TestAgent agent(dir.path(), port, state.get(), o);
  const int64_t t0 = WallClockMs() - 60'000;
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(agent.shipper->Enqueue(OneSample("backlog", i, t0 + i * 1000)).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(agent.spool->stats().records_unacked, 20u);
  auto d = StartDaemon(dir.Sub("data"), port);
  ASSERT_NE(d, nullptr);
  // A fresh batch while the backlog drains reaches the daemon before the
  // backlog is through.
  ASSERT_TRUE(testing::WaitFor([&] { return SamplesOf(port, "backlog") >= 2; }, std::chrono::seconds(20)));
  ASSERT_TRUE(agent.shipper->Enqueue(OneSample("fresh", 1)).ok());
  ASSERT_TRUE(testing::WaitFor([&] { return SamplesOf(port, "fresh") == 1; }, std::chrono::seconds(10)));
  EXPECT_LT(SamplesOf(port, "backlog"), 20u) << "the fresh batch waited for the whole backlog";
  ASSERT_TRUE(agent.shipper->WaitAcked(std::chrono::seconds(20)));
  EXPECT_EQ(SamplesOf(port, "backlog"), 20u);
  EXPECT_EQ(StoredSamples(port), 21u);
  auto st = agent.shipper->stats();
  EXPECT_GE(st.batches_replayed, 18u);
  EXPECT_EQ(st.batches_acked, 21u);
  EXPECT_EQ(st.unexpected_duplicates, 0u);
  EXPECT_EQ(st.sequence_conflicts, 0u);
}

TEST(ShipperTest, RetriesUntilTheDaemonIsBackAndDeliversOnce) {
  testing::TempDir dir;
  const int port = testing::FreePort();
  auto state = OpenState(dir.Sub("state"));
  ASSERT_NE(state, nullptr);
  TestAgent agent(dir.path(), port, state.get(), FastOptions());
  ASSERT_TRUE(agent.shipper->Enqueue(OneSample("early", 1)).ok());
  ASSERT_TRUE(agent.shipper->Enqueue(OneSample("early2", 2)).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto d = StartDaemon(dir.Sub("data"), port);
  ASSERT_NE(d, nullptr);
  ASSERT_TRUE(agent.shipper->WaitAcked(std::chrono::seconds(20)));
  EXPECT_EQ(StoredSamples(port), 2u);
  // The daemon goes away mid-life and comes back on the same port.
  d.reset();
  ASSERT_TRUE(agent.shipper->Enqueue(OneSample("during", 3)).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  d = StartDaemon(dir.Sub("data"), port);
  ASSERT_NE(d, nullptr);
  ASSERT_TRUE(agent.shipper->Enqueue(OneSample("late", 4)).ok());
  ASSERT_TRUE(agent.shipper->WaitAcked(std::chrono::seconds(20)));
  EXPECT_EQ(StoredSamples(port), 4u);
  EXPECT_GE(agent.shipper->stats().reconnects, 1u);  // the stream after the failed ones
  EXPECT_EQ(agent.shipper->stats().acked_sequence, 4u);
  EXPECT_EQ(agent.shipper->stats().unexpected_duplicates, 0u);
  EXPECT_EQ(agent.shipper->stats().sequence_conflicts, 0u);
}

// Stopped before any daemon answered (sheaf-agent --count 1, a slow TLS
// handshake): the shutdown timeout is also the time to find a daemon, so
// the batch is delivered, not left in the spool.
TEST(ShipperTest, StopWaitsForTheFirstDaemonWithinItsTimeout) {
  testing::TempDir dir;
  const int port = testing::FreePort();
  auto state = OpenState(dir.Sub("state"));
  ASSERT_NE(state, nullptr);
  TestAgent agent(dir.path(), port, state.get(), FastOptions());
  ASSERT_TRUE(agent.shipper->Enqueue(OneSample("last", 1)).ok());
  std::unique_ptr<daemon::Daemon> d;
  std::thread starter([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // Stop() is already waiting
    d = StartDaemon(dir.Sub("data"), port);
  });
  const size_t left = agent.shipper->Stop(std::chrono::seconds(20));
  starter.join();
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(left, 0u);
  EXPECT_EQ(StoredSamples(port), 1u);
}

// A small spool and a long outage: the oldest batches go (counted by the
// spool), the newest arrive, and the daemon forgets the gap (the floor).
TEST(ShipperTest, FullSpoolDropsTheOldestAndTheRestArrive) {
  testing::TempDir dir;
  const int port = testing::FreePort();
  auto state = OpenState(dir.Sub("state"));
  ASSERT_NE(state, nullptr);
  TestAgent agent(dir.path(), port, state.get(), FastOptions(), /*spool_bytes=*/64 << 10);
  const std::string big(2000, 'x');
  const int64_t t0 = WallClockMs() - 600'000;
  for (int i = 0; i < 200; ++i) {
    auto batch = OneSample("bounded", i, t0 + i * 1000);
    batch[0].labels.push_back({"pad", big});
    batch[0].key = SeriesKey(batch[0].labels);
    ASSERT_TRUE(agent.shipper->Enqueue(batch).ok());
  }
  const Spool::Stats sp = agent.spool->stats();
  EXPECT_GT(sp.dropped_records_full, 0u);
  EXPECT_LE(sp.bytes, 64u << 10);
  auto d = StartDaemon(dir.Sub("data"), port);
  ASSERT_NE(d, nullptr);
  ASSERT_TRUE(agent.shipper->WaitAcked(std::chrono::seconds(20)));
  EXPECT_EQ(StoredSamples(port) + agent.spool->stats().dropped_records_full, 200u);
  EXPECT_EQ(agent.shipper->stats().unexpected_duplicates, 0u);
}

// The bug this replaces: sequences from the wall clock, so a clock stepped
// back across a restart made every later batch a duplicate, silently.
// Sequences from the state continue where the last run left them; what a
// run spooled and could not send goes at the next start, once.
TEST(ShipperTest, SequencesAndTheSpoolContinueAcrossAgentRestarts) {
  testing::TempDir dir;
  auto d = StartDaemon(dir.Sub("data"), 0);
  ASSERT_NE(d, nullptr);
  uint64_t last_acked = 0;
  for (int run = 0; run < 3; ++run) {
    auto state = OpenState(dir.Sub("state"));
    ASSERT_NE(state, nullptr);
    TestAgent agent(dir.path(), d->grpc_port(), state.get(), FastOptions());
    ASSERT_TRUE(agent.shipper->Enqueue(OneSample("run" + std::to_string(run) + "_a", 1)).ok());
    ASSERT_TRUE(agent.shipper->Enqueue(OneSample("run" + std::to_string(run) + "_b", 2)).ok());
    ASSERT_TRUE(agent.shipper->WaitAcked(std::chrono::seconds(10)));
    EXPECT_EQ(agent.shipper->Stop(std::chrono::seconds(5)), 0u);
    auto st = agent.shipper->stats();
    EXPECT_EQ(st.sequence_conflicts, 0u);
    EXPECT_EQ(st.unexpected_duplicates, 0u);
    EXPECT_EQ(st.batches_sent, 2u) << "nothing acknowledged is sent again";
    EXPECT_GT(st.acked_sequence, last_acked);
    last_acked = st.acked_sequence;
  }
  EXPECT_EQ(StoredSamples(d->grpc_port()), 6u);
  // A run without a daemon: its batches wait in the spool for the next run.
  const int nowhere = testing::FreePort();
  {
    auto state = OpenState(dir.Sub("state"));
    TestAgent agent(dir.path(), nowhere, state.get(), FastOptions());
    ASSERT_TRUE(agent.shipper->Enqueue(OneSample("waited", 1)).ok());
    EXPECT_EQ(agent.shipper->Stop(std::chrono::milliseconds(200)), 1u);
  }
  auto state = OpenState(dir.Sub("state"));
  TestAgent agent(dir.path(), d->grpc_port(), state.get(), FastOptions());
  ASSERT_TRUE(agent.shipper->WaitAcked(std::chrono::seconds(10)));
  EXPECT_EQ(SamplesOf(d->grpc_port(), "waited"), 1u);
  EXPECT_EQ(StoredSamples(d->grpc_port()), 7u);
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
  TestAgent agent(dir.path(), d->grpc_port(), state.get(), FastOptions());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(agent.shipper->Enqueue(OneSample("agent_m" + std::to_string(i), i)).ok());
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        return agent.shipper->WaitAcked(std::chrono::milliseconds(100)) &&
               SamplesOf(d->grpc_port(), "agent_m2") == 1;
      },
      std::chrono::seconds(20)));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(SamplesOf(d->grpc_port(), "agent_m" + std::to_string(i)), 1u) << i;
  EXPECT_EQ(StoredSamples(d->grpc_port()), 4u);  // the forged one and the agent's three
  auto st = agent.shipper->stats();
  EXPECT_EQ(st.sequence_conflicts, 1u);
  EXPECT_GT(st.acked_sequence, forged);
  EXPECT_GT(state->PeekNextSequence(), forged);  // durably: the next run starts above it too

  // Later batches go through without another conflict.
  ASSERT_TRUE(agent.shipper->Enqueue(OneSample("agent_later", 9)).ok());
  ASSERT_TRUE(agent.shipper->WaitAcked(std::chrono::seconds(10)));
  EXPECT_EQ(SamplesOf(d->grpc_port(), "agent_later"), 1u);
  EXPECT_EQ(agent.shipper->stats().sequence_conflicts, 1u);
  agent.shipper->Stop(std::chrono::seconds(5));
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
  TestAgent a(dir.Sub("agent_a"), d->grpc_port(), state_a.get(), FastOptions("same-id"));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(a.shipper->Enqueue(OneSample("from_a" + std::to_string(i), i)).ok());
  ASSERT_TRUE(a.shipper->WaitAcked(std::chrono::seconds(10)));
  TestAgent b(dir.Sub("agent_b"), d->grpc_port(), state_b.get(), FastOptions("same-id"));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(b.shipper->Enqueue(OneSample("from_b" + std::to_string(i), i)).ok());
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        return b.shipper->WaitAcked(std::chrono::milliseconds(100)) && SamplesOf(d->grpc_port(), "from_b2") == 1;
      },
      std::chrono::seconds(20)));
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(SamplesOf(d->grpc_port(), "from_a" + std::to_string(i)), 1u) << i;
    EXPECT_EQ(SamplesOf(d->grpc_port(), "from_b" + std::to_string(i)), 1u) << i;
  }
  auto st = b.shipper->stats();
  EXPECT_GE(st.unexpected_duplicates, 1u);
  EXPECT_GE(st.batches_resent, 1u);
  EXPECT_EQ(a.shipper->stats().unexpected_duplicates, 0u);
}

// The daemon refuses a batch with INVALID_ARGUMENT (here: a sequence at
// 2^63, past what it accepts). The shipper isolates it — the stream's
// batches one per stream — drops it, counts it, and the others arrive:
// it is never retried forever.
TEST(ShipperTest, ABatchRefusedAsInvalidIsFoundDroppedAndCounted) {
  testing::TempDir dir;
  auto d = StartDaemon(dir.Sub("data"), 0);
  ASSERT_NE(d, nullptr);
  auto state = OpenState(dir.Sub("state"));
  ASSERT_NE(state, nullptr);
  const int nowhere = testing::FreePort();
  {
    // Spooled while no daemon answers, so they share the first stream.
    TestAgent agent(dir.path(), nowhere, state.get(), FastOptions());
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(agent.shipper->Enqueue(OneSample("good" + std::to_string(i), i)).ok());
    ASSERT_TRUE(state->AdvancePast(uint64_t{1} << 63).ok());
    ASSERT_TRUE(agent.shipper->Enqueue(OneSample("refused", 1)).ok());
    agent.shipper->Stop(std::chrono::milliseconds(0));
  }
  TestAgent agent(dir.path(), d->grpc_port(), state.get(), FastOptions());
  ASSERT_TRUE(agent.shipper->WaitAcked(std::chrono::seconds(20)));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(SamplesOf(d->grpc_port(), "good" + std::to_string(i)), 1u) << i;
  EXPECT_EQ(SamplesOf(d->grpc_port(), "refused"), 0u);
  auto st = agent.shipper->stats();
  EXPECT_EQ(st.batches_dropped_invalid, 1u);
  EXPECT_EQ(st.samples_dropped_invalid, 1u);
}

// A daemon that is busy answers RESOURCE_EXHAUSTED with a retry hint in
// the trailing metadata: the agent waits at least that long before the
// next attempt (its own backoff here is far shorter), then delivers.
TEST(ShipperTest, TheDaemonsRetryHintIsHonoured) {
  RefusingIngest busy(1, {{"sheaf-retry-after-ms", "1500"}}, "busy; retry later");
  FakeDaemon fake(&busy);
  ASSERT_NE(fake.server, nullptr);
  testing::TempDir dir;
  auto state = OpenState(dir.Sub("state"));
  ASSERT_NE(state, nullptr);
  TestAgent agent(dir.path(), fake.port, state.get(), FastOptions());  // backoff 50-300 ms
  ASSERT_TRUE(agent.shipper->Enqueue(OneSample("m", 1)).ok());
  ASSERT_TRUE(agent.shipper->WaitAcked(std::chrono::seconds(20)));
  std::lock_guard lock(busy.mu);
  ASSERT_GE(busy.attempts.size(), 2u);
  EXPECT_GE(busy.attempts[1] - busy.attempts[0], std::chrono::milliseconds(1500));
  agent.shipper->Stop(std::chrono::seconds(1));
}

// The state cannot hand out sequences: the batch is not kept, and the
// caller is told (it counts and logs it); nothing half-written is sent.
class BrokenSequences : public SequenceSource {
 public:
  absl::StatusOr<uint64_t> NextSequence() override { return absl::FailedPreconditionError("disk full"); }
  uint64_t PeekNextSequence() const override { return 1; }
  absl::Status AdvancePast(uint64_t) override { return absl::FailedPreconditionError("disk full"); }
};

TEST(ShipperTest, ABatchWithoutASequenceIsRefusedAndCounted) {
  testing::TempDir dir;
  auto d = StartDaemon(dir.Sub("data"), 0);
  ASSERT_NE(d, nullptr);
  BrokenSequences broken;
  TestAgent agent(dir.path(), d->grpc_port(), &broken, FastOptions());
  absl::Status s = agent.shipper->Enqueue(OneSample("m", 1));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(agent.shipper->stats().enqueue_errors, 1u);
  EXPECT_EQ(agent.spool->stats().records, 0u);
  EXPECT_EQ(StoredSamples(d->grpc_port()), 0u);
}

}  // namespace
}  // namespace sheaf::agent
