// The store's agents' applied sequence sets are a bounded cache over meta
// (store.h): at most max_cached_agent_sets in memory, the least recently
// used evicted and read back on a miss. Exactly-once must not depend on
// which agents happen to be cached, before or after a restart.
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "model/labels.h"
#include "storage/series_store.h"
#include "tests/support/temp_dir.h"

namespace sheaf::storage {
namespace {

constexpr uint64_t kCached = 8;
constexpr int kAgents = 100;

class AgentSequenceCacheTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }

  void Open(uint64_t max_cached = kCached) {
    store_.reset();
    StoreOptions o;
    o.path = dir_.Sub("db");
    o.sync = false;  // durability across processes is crash_test.cc's
    o.max_cached_agent_sets = max_cached;
    o.now_ms = [] { return kNow; };
    o.out_of_order_window_ms = kDayMs;  // agents' samples interleave by hours
    o.test_fault = [this](std::string_view point) {
      if (point == "agent_set_read" && gate_ != nullptr && std::this_thread::get_id() == gate_->reader) {
        gate_->reading.Notify();
        gate_->release.WaitForNotification();
      }
      return absl::OkStatus();
    };
    auto s = SeriesStore::Open(o);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
    Labels labels = {{"__name__", "pushes"}};
    ASSERT_TRUE(model::Canonicalize(labels).ok());
    auto id = store_->GetOrCreateSeries(labels, MetricType::kCounter);
    ASSERT_TRUE(id.ok()) << id.status();
    id_ = *id;
  }

  static std::string Agent(int k) { return "agent-" + std::to_string(k); }

  // Agent k's batch `seq` holds one sample of its own (timestamp kNow -
  // 1000 * (k * 100 + seq)): the stored count says which batches were
  // applied; `duplicate` says a batch was not applied again.
  AppendResult Push(int k, uint64_t seq, uint64_t floor = 0) {
    AppendBatch b{Agent(k), seq, {{id_, {{kNow - 1000 * (k * 100 + static_cast<int64_t>(seq)), 1}}}}};
    b.sequence_floor = floor;
    auto r = store_->Append(b);
    EXPECT_TRUE(r.ok()) << r.status();
    // The bound holds after every batch.
    EXPECT_LE(store_->Stats().agent_sets_cached, cache_bound_);
    return r.value_or(AppendResult{});
  }

  static constexpr int64_t kNow = 1'764'400'000'000;
  testing::TempDir dir_;
  std::unique_ptr<SeriesStore> store_;
  SeriesId id_ = 0;
  uint64_t cache_bound_ = kCached;
  // Holds the thread `reader` inside its read of a set from disk.
  struct Gate {
    std::thread::id reader;
    absl::Notification reading, release;
  };
  std::unique_ptr<Gate> gate_;
};

TEST_F(AgentSequenceCacheTest, ResentBatchesOfEvictedAgentsAreDuplicatesAcrossRestart) {
  // Round robin: every agent is evicted between two of its batches.
  for (uint64_t seq = 1; seq <= 3; ++seq) {
    for (int k = 0; k < kAgents; ++k) ASSERT_FALSE(Push(k, seq).duplicate) << Agent(k) << " " << seq;
  }
  StoreStats st = store_->Stats();
  EXPECT_EQ(st.agents, uint64_t(kAgents));
  EXPECT_EQ(st.agent_sets_cached, kCached);
  // Every agent after the first round was read back from meta.
  EXPECT_GE(st.agent_set_loads, uint64_t(2 * kAgents));
  EXPECT_EQ(st.samples, uint64_t(3 * kAgents));

  for (int round = 0; round < 2; ++round) {
    for (int k = 0; k < kAgents; ++k) {
      for (uint64_t seq = 1; seq <= 3; ++seq) {
        EXPECT_TRUE(store_->AgentSequenceApplied(kDefaultTenant, Agent(k), seq, 0)) << Agent(k) << " " << seq;
        AppendResult again = Push(k, seq);
        EXPECT_TRUE(again.duplicate) << Agent(k) << " " << seq;
        EXPECT_EQ(again.durable_sequence, 3u);
      }
      EXPECT_FALSE(store_->AgentSequenceApplied(kDefaultTenant, Agent(k), 4, 0));
    }
    EXPECT_EQ(store_->Stats().samples, uint64_t(3 * kAgents));
    // A restart loads no set: the cache fills again as agents push.
    Open();
    EXPECT_EQ(store_->Stats().agent_sets_cached, 0u);
    EXPECT_EQ(store_->Stats().agents, uint64_t(kAgents));
  }
  // New sequences are applied, once, and acknowledged for evicted agents too.
  for (int k = 0; k < kAgents; ++k) {
    AppendResult next = Push(k, 4);
    EXPECT_FALSE(next.duplicate) << Agent(k);
    EXPECT_EQ(next.durable_sequence, 4u);
  }
  for (int k = 0; k < kAgents; ++k) {
    EXPECT_EQ(store_->AgentSequence(Agent(k)), 4u) << Agent(k);
    EXPECT_TRUE(Push(k, 4).duplicate) << Agent(k);
  }
  st = store_->Stats();
  EXPECT_EQ(st.samples, uint64_t(4 * kAgents));
  EXPECT_EQ(st.agents, uint64_t(kAgents));
  EXPECT_EQ(st.agent_sets_cached, kCached);
}

TEST_F(AgentSequenceCacheTest, EvictedAgentKeepsTheGapsOfItsBacklog) {
  // Agent 0 applied 1..10, then fresh 21, 22 with its spool's floor at 11.
  for (uint64_t seq = 1; seq <= 10; ++seq) ASSERT_FALSE(Push(0, seq).duplicate);
  ASSERT_FALSE(Push(0, 21, 11).duplicate);
  ASSERT_FALSE(Push(0, 22, 11).duplicate);
  // Others push it out of the cache.
  for (int k = 1; k <= 2 * static_cast<int>(kCached); ++k) ASSERT_FALSE(Push(k, 1).duplicate);
  // Its backlog is still new, its fresh batches still duplicates.
  for (uint64_t seq = 11; seq <= 20; ++seq) EXPECT_FALSE(Push(0, seq, seq).duplicate) << seq;
  EXPECT_TRUE(Push(0, 21, 21).duplicate);
  EXPECT_EQ(store_->AgentSequence(Agent(0)), 22u);
  EXPECT_EQ(store_->Stats().samples, uint64_t(22 + 2 * kCached));
}

TEST_F(AgentSequenceCacheTest, NothingCachedStillExactlyOnce) {
  cache_bound_ = 0;
  Open(0);
  for (int k = 0; k < 10; ++k) {
    ASSERT_FALSE(Push(k, 1).duplicate);
    ASSERT_FALSE(Push(k, 2).duplicate);
    EXPECT_TRUE(Push(k, 1).duplicate);
    EXPECT_TRUE(Push(k, 2).duplicate);
    EXPECT_EQ(store_->AgentSequence(Agent(k)), 2u);
  }
  EXPECT_EQ(store_->Stats().samples, 20u);
  EXPECT_EQ(store_->Stats().agents, 10u);
}

// A reader (the ingest service's early duplicate check) that read an
// evicted agent's set from disk is held there while the agent's next batch
// is applied, and, the second time, pushed out of the cache again: when it
// goes on, it must not put its older set in the cache, or the batch re-sent
// would be applied twice.
TEST_F(AgentSequenceCacheTest, AReaderThatMissedNeverCachesAnOlderSet) {
  ASSERT_FALSE(Push(0, 1).duplicate);
  for (uint64_t seq = 2; seq <= 3; ++seq) {
    const bool evict_again = seq == 3;
    for (int k = 1; k <= static_cast<int>(kCached); ++k) Push(k, seq);  // agent 0 out of the cache
    gate_ = std::make_unique<Gate>();
    std::thread reader([&] {
      gate_->reader = std::this_thread::get_id();
      EXPECT_FALSE(store_->AgentSequenceApplied(kDefaultTenant, Agent(0), seq, 0));
    });
    gate_->reading.WaitForNotification();
    ASSERT_FALSE(Push(0, seq).duplicate);
    if (evict_again) {
      for (int k = 1; k <= static_cast<int>(kCached); ++k) Push(k, seq + 10);
    }
    gate_->release.Notify();
    reader.join();
    gate_.reset();
    EXPECT_TRUE(Push(0, seq).duplicate) << seq;
    EXPECT_EQ(store_->AgentSequence(Agent(0)), seq);
  }
  EXPECT_EQ(store_->Stats().samples, 3 + 3 * kCached);
}

// Readers that miss the cache (the ingest service's early duplicate check,
// the acknowledgement) read meta while Append writes it: none may put a
// stale set back in the cache, or a later batch would be applied twice.
TEST_F(AgentSequenceCacheTest, ReadersRacingAppendsNeverMakeABatchCountTwice) {
  constexpr int kRaceAgents = 20;
  constexpr uint64_t kBatches = 40;
  cache_bound_ = 4;
  Open(4);
  std::atomic<bool> done = false;
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; ++r) {
    readers.emplace_back([&, r] {
      for (uint64_t i = 0; !done; ++i) {
        const std::string agent = Agent(static_cast<int>((i * 7 + r) % kRaceAgents));
        store_->AgentSequenceApplied(kDefaultTenant, agent, i % kBatches + 1, 0);
        store_->AgentSequence(agent);
      }
    });
  }
  for (uint64_t seq = 1; seq <= kBatches; ++seq) {
    for (int k = 0; k < kRaceAgents; ++k) {
      // Each batch sent twice, the second time as a retry.
      EXPECT_FALSE(Push(k, seq).duplicate) << Agent(k) << " " << seq;
      EXPECT_TRUE(Push(k, seq).duplicate) << Agent(k) << " " << seq;
    }
  }
  done = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(store_->Stats().samples, kRaceAgents * kBatches);
  for (int k = 0; k < kRaceAgents; ++k) EXPECT_EQ(store_->AgentSequence(Agent(k)), kBatches);
}

}  // namespace
}  // namespace sheaf::storage
