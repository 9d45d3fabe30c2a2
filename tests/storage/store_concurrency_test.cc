// The store under concurrent use, as sheafd uses it: several agents
// appending at once (each its own series and sequence, plus series they
// share), series created concurrently (the same labels from two threads),
// readers of every kind, and cuts, roll-ups and flushes racing with all of
// them. The amount of work is fixed (no wall-clock loops), small enough for
// a few seconds under ThreadSanitizer (deploy/test.sh --sanitizers).
//
// Results are checked, not just the absence of crashes: while it runs, every
// read sees every sample acknowledged before it, in time order, once, with
// its value, and no rollup window counts a sample twice; afterwards (and
// after reopening), every acknowledged sample reads back exactly once, the
// sample count is the number of distinct acknowledged (series, timestamp)
// pairs, and rollup windows match the raw samples in the rolled-up range.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "model/labels.h"
#include "model/matcher.h"
#include "storage/series_store.h"
#include "tests/support/temp_dir.h"

namespace sheaf::storage {
namespace {

constexpr int64_t kMinute = 60'000;
constexpr int64_t kTenMinutes = 10 * kMinute;
constexpr int64_t kHour = 3'600'000;
constexpr int64_t kT0 = 1'800'000'000'000 - 1'800'000'000'000 % kHour;  // hour-aligned

constexpr int kAgents = 4;
constexpr int kOwnSeries = 6;     // per agent; series 0 is a counter
constexpr int kSharedSeries = 3;  // every agent writes these
constexpr int kBatches = 120;     // per agent, one minute of data each: two hours
constexpr int kLateEvery = 5;     // from batch kLateFrom, every 5th batch also carries a late sample
constexpr int kLateFrom = 30;
constexpr int64_t kLateBy = 25 * kMinute + 500;  // within the out-of-order window, behind the roll-ups
constexpr int kResendEvery = 7;                  // an agent re-sends an acknowledged batch (lost ack)
constexpr int kCreated = 60;                     // series both creator threads create
// The one sample both creators append to created series n: in the first
// minute of the agents' data, so the second copy often arrives after that
// minute was rolled up (and must not be counted twice there).
int64_t CreatedTs(int n) { return kT0 + n * 1000 + 7; }
constexpr int kReaders = 2;
constexpr int kReaderRounds = 150;
constexpr int kFlushes = 12;
constexpr int kMaxRetries = 200;  // UNAVAILABLE (backpressure) is retried, as agents do

// Timestamps carry the agent in their milliseconds, so the agents' samples
// of a shared series are distinct; late samples are 500 ms further.
int64_t RegularTs(int agent, int batch) { return kT0 + batch * kMinute + agent; }
int64_t LateTs(int agent, int batch) { return RegularTs(agent, batch) - kLateBy; }
double OwnValue(int agent, int series, int batch) {
  return series == 0 ? batch : agent * 1e6 + series * 1e4 + batch;  // series 0: a counter
}
double LateValue(int agent, int batch) { return -(agent * 1e6 + batch); }
double SharedValue(int agent, int series, int batch) { return agent * 1e6 + 5e5 + series * 1e4 + batch; }
int LateSeries(int batch) { return 1 + batch % (kOwnSeries - 1); }  // gauges only
bool HasLate(int batch) { return batch >= kLateFrom && batch % kLateEvery == 0; }

Labels OwnLabels(int agent, int series) {
  return {{"__name__", "sheaf_test_own"}, {"agent", "agent-" + std::to_string(agent)}, {"idx", std::to_string(series)}};
}
Labels SharedLabels(int series) { return {{"__name__", "sheaf_test_shared"}, {"idx", std::to_string(series)}}; }
Labels CreatedLabels(int n) {
  return {{"__name__", "sheaf_test_created"}, {"n", std::to_string(n)}, {"shard", std::to_string(n % 4)}};
}

struct Expected {
  std::map<SeriesId, std::map<int64_t, double>> samples;  // what was acknowledged
  uint64_t added = 0;                                     // sum of samples_added
};

class StoreConcurrencyTest : public ::testing::Test {
 protected:
  StoreOptions Options() {
    StoreOptions o;
    o.path = dir_.Sub("db");
    o.sync = false;           // durability is crash_test.cc's business
    o.max_head_samples = 40;  // cut often; appends meet backpressure at 80
    o.head_flush_interval_ms = kTenMinutes;
    o.block_window_ms = kTenMinutes;
    o.rollups = {{kMinute, 90 * kDayMs}, {kTenMinutes, 730 * kDayMs}};
    o.downsample_after_ms = 15 * kMinute;  // roll-ups run every ten minutes of data
    o.out_of_order_window_ms = kHour;
    o.rollup_chunk_series = 3;  // many chunks, each racing with appends
    o.maintenance_interval_ms = 5;
    o.now_ms = [this] { return now_ms_.load(); };  // read by the background thread
    return o;
  }

  void Open() {
    store_.reset();
    auto s = SeriesStore::Open(Options());
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
  }

  // The clock follows the newest data, five minutes ahead.
  void AdvanceClock(int64_t ts) {
    int64_t want = ts + 5 * kMinute;
    int64_t cur = now_ms_.load();
    while (cur < want && !now_ms_.compare_exchange_weak(cur, want)) {
    }
  }

  absl::StatusOr<AppendResult> AppendRetrying(const AppendBatch& batch) {
    for (int attempt = 0;; ++attempt) {
      auto r = store_->Append(batch);
      if (r.ok() || r.status().code() != absl::StatusCode::kUnavailable || attempt == kMaxRetries) return r;
      std::this_thread::yield();
    }
  }

  SeriesId Create(const Labels& labels, MetricType type) {
    Labels l = labels;
    EXPECT_TRUE(model::Canonicalize(l).ok());
    auto id = store_->GetOrCreateSeries(l, type);
    EXPECT_TRUE(id.ok()) << id.status();
    return id.value_or(0);
  }

  // One agent: creates its series (and the shared ones, racing with the
  // other agents), then sends kBatches batches, retrying as agents do.
  void Agent(int k, Expected* out) {
    std::array<SeriesId, kOwnSeries> own{};
    std::array<SeriesId, kSharedSeries> shared{};
    for (int s = 0; s < kOwnSeries; ++s) {
      own[s] = Create(OwnLabels(k, s), s == 0 ? MetricType::kCounter : MetricType::kGauge);
      own_ids_[k][s].store(own[s]);
    }
    for (int s = 0; s < kSharedSeries; ++s) shared[s] = Create(SharedLabels(s), MetricType::kGauge);
    shared_ids_[k] = shared;
    const std::string agent = "agent-" + std::to_string(k);
    for (int i = 0; i < kBatches; ++i) {
      AppendBatch b{agent, static_cast<uint64_t>(i + 1), {}};
      for (int s = 0; s < kOwnSeries; ++s) b.series.push_back({own[s], {{RegularTs(k, i), OwnValue(k, s, i)}}});
      for (int s = 0; s < kSharedSeries; ++s) {
        b.series.push_back({shared[s], {{RegularTs(k, i), SharedValue(k, s, i)}}});
      }
      // The late sample as a second entry of its series (joined with the first).
      if (HasLate(i)) b.series.push_back({own[LateSeries(i)], {{LateTs(k, i), LateValue(k, i)}}});
      auto r = AppendRetrying(b);
      ASSERT_TRUE(r.ok()) << agent << " batch " << i << ": " << r.status();
      ASSERT_FALSE(r->duplicate) << agent << " batch " << i;
      ASSERT_EQ(r->durable_sequence, uint64_t(i + 1));
      ASSERT_TRUE(r->deleted.empty());
      // Only a shared series can be too old (another agent may be more
      // than the out-of-order window ahead); its one sample is then not stored.
      std::vector<bool> shared_too_old(kSharedSeries, false);
      uint64_t too_old = 0;
      for (auto [id, n] : r->too_old) {
        auto pos = std::find(shared.begin(), shared.end(), id);
        ASSERT_NE(pos, shared.end()) << "own series " << id << " reported too old";
        ASSERT_EQ(n, 1u);
        shared_too_old[pos - shared.begin()] = true;
        too_old += n;
      }
      const uint64_t sent = kOwnSeries + kSharedSeries + (HasLate(i) ? 1 : 0);
      ASSERT_EQ(r->samples_added, sent - too_old) << agent << " batch " << i;
      out->added += r->samples_added;
      for (int s = 0; s < kOwnSeries; ++s) out->samples[own[s]][RegularTs(k, i)] = OwnValue(k, s, i);
      for (int s = 0; s < kSharedSeries; ++s) {
        if (!shared_too_old[s]) out->samples[shared[s]][RegularTs(k, i)] = SharedValue(k, s, i);
      }
      if (HasLate(i)) out->samples[own[LateSeries(i)]][LateTs(k, i)] = LateValue(k, i);
      // Published for the readers only now that it is acknowledged.
      for (int s = 0; s < kOwnSeries; ++s) {
        own_acked_[k][s].store(out->samples[own[s]].size(), std::memory_order_release);
      }
      acked_total_.fetch_add(r->samples_added, std::memory_order_release);
      AdvanceClock(RegularTs(k, i));
      if (i % kResendEvery == 0) {
        // The ack was "lost": the agent sends the batch again.
        auto again = AppendRetrying(b);
        ASSERT_TRUE(again.ok()) << again.status();
        EXPECT_TRUE(again->duplicate) << agent << " batch " << i;
        EXPECT_EQ(again->samples_added, 0u);
        EXPECT_EQ(again->durable_sequence, uint64_t(i + 1));
      }
    }
  }

  // Both creators create the same series, in opposite orders, and each
  // appends the same sample to each: it must be counted once in all.
  void Creator(int c, std::vector<SeriesId>* ids, std::vector<uint64_t>* added) {
    for (int j = 0; j < kCreated; ++j) {
      const int n = c == 0 ? j : kCreated - 1 - j;
      (*ids)[n] = Create(CreatedLabels(n), MetricType::kGauge);
      auto r = AppendRetrying({"", 0, {{(*ids)[n], {{CreatedTs(n), double(n)}}}}});
      ASSERT_TRUE(r.ok()) << r.status();
      ASSERT_TRUE(r->too_old.empty());
      (*added)[n] = r->samples_added;
      acked_total_.fetch_add(r->samples_added, std::memory_order_release);
    }
  }

  // Checks one read of agent k's own series s against the formulas.
  void CheckOwnSamples(int k, int s, const std::vector<Sample>& got) {
    for (size_t i = 0; i < got.size(); ++i) {
      if (i > 0) {
        ASSERT_LT(got[i - 1].timestamp_ms, got[i].timestamp_ms) << "out of order or repeated";
      }
      const int64_t offset = got[i].timestamp_ms - kT0 - k;
      if (offset % kMinute == 0) {
        ASSERT_EQ(got[i].value, OwnValue(k, s, offset / kMinute)) << "ts " << got[i].timestamp_ms;
      } else {
        const int batch = (offset + kLateBy) / kMinute;
        ASSERT_EQ(RegularTs(k, batch) - kLateBy, got[i].timestamp_ms);
        ASSERT_EQ(got[i].value, LateValue(k, batch));
      }
    }
  }

  void Reader(int r) {
    uint64_t last_samples = 0;
    for (int q = 0; q < kReaderRounds; ++q) {
      const int k = (q + r) % kAgents;
      const int s = (q / kAgents + r) % kOwnSeries;
      const SeriesId id = own_ids_[k][s].load();
      const uint64_t acked_before = own_acked_[k][s].load(std::memory_order_acquire);
      const uint64_t total_before = acked_total_.load(std::memory_order_acquire);
      if (id != 0) {
        std::vector<Sample> got;
        auto it = store_->Read(id, INT64_MIN, INT64_MAX);
        for (; it->Valid(); it->Next()) got.push_back(it->sample());
        ASSERT_TRUE(it->status().ok()) << it->status();
        ASSERT_GE(got.size(), acked_before) << "an acknowledged sample is missing";
        CheckOwnSamples(k, s, got);

        // One regular and at most one late sample per minute: more is a
        // sample counted twice.
        auto windows = store_->ReadRollup(id, kMinute, kT0 - kHour, kT0 + 3 * kHour);
        ASSERT_TRUE(windows.ok()) << windows.status();
        uint64_t counted = 0;
        for (size_t i = 0; i < windows->size(); ++i) {
          const auto& [w, a] = (*windows)[i];
          if (i > 0) {
            ASSERT_LT((*windows)[i - 1].first, w);
          }
          ASSERT_GE(a.count, 1u);
          ASSERT_LE(a.count, 2u) << "window " << w << " of series " << id;
          counted += a.count;
        }
        ASSERT_GE(counted, acked_before) << "an acknowledged sample is missing from the rollups";

        auto info = store_->GetSeries(id);
        ASSERT_TRUE(info.has_value());
        Labels want = OwnLabels(k, s);
        ASSERT_TRUE(model::Canonicalize(want).ok());
        ASSERT_EQ(info->labels, want);
      }
      switch (q % 4) {
        case 0: {
          auto m = model::ParseSelector("sheaf_test_own{agent=\"agent-" + std::to_string(k) + "\"}");
          ASSERT_TRUE(m.ok()) << m.status();
          auto ids = store_->Select(*m);
          ASSERT_TRUE(ids.ok()) << ids.status();
          ASSERT_TRUE(std::is_sorted(ids->begin(), ids->end()));
          ASSERT_LE(ids->size(), size_t(kOwnSeries));
          if (id != 0) {
            ASSERT_TRUE(std::binary_search(ids->begin(), ids->end(), id));
          }
          break;
        }
        case 1: {
          auto m = model::ParseSelector(R"(sheaf_test_created{shard=~"1|3"})");
          ASSERT_TRUE(m.ok()) << m.status();
          auto ids = store_->Select(*m);
          ASSERT_TRUE(ids.ok()) << ids.status();
          for (SeriesId x : *ids) {
            auto info = store_->GetSeries(x);
            ASSERT_TRUE(info.has_value());
            std::string shard;
            for (const Label& l : info->labels) {
              if (l.name == "shard") shard = l.value;
            }
            ASSERT_TRUE(shard == "1" || shard == "3") << shard;
          }
          break;
        }
        case 2: {
          auto names = store_->LabelNames();
          ASSERT_TRUE(names.ok()) << names.status();
          ASSERT_TRUE(std::is_sorted(names->begin(), names->end()));
          ASSERT_EQ(std::adjacent_find(names->begin(), names->end()), names->end());
          auto values = store_->LabelValues("agent");
          ASSERT_TRUE(values.ok()) << values.status();
          ASSERT_LE(values->size(), size_t(kAgents));
          if (id != 0) {
            ASSERT_TRUE(std::binary_search(values->begin(), values->end(), "agent-" + std::to_string(k)));
          }
          break;
        }
        case 3: {
          StoreStats st = store_->Stats();
          ASSERT_GE(st.samples, total_before);
          ASSERT_GE(st.samples, last_samples) << "the sample count went back";
          last_samples = st.samples;
          break;
        }
      }
    }
  }

  // Everything acknowledged reads back exactly once; counts and rollups agree.
  void Verify(const Expected& want) {
    uint64_t distinct = 0;
    for (const auto& [id, samples] : want.samples) {
      distinct += samples.size();
      std::vector<Sample> got;
      auto it = store_->Read(id, INT64_MIN, INT64_MAX);
      for (; it->Valid(); it->Next()) got.push_back(it->sample());
      ASSERT_TRUE(it->status().ok()) << it->status();
      ASSERT_EQ(got.size(), samples.size()) << "series " << id;
      size_t i = 0;
      for (const auto& [ts, v] : samples) {
        ASSERT_EQ(got[i].timestamp_ms, ts) << "series " << id;
        ASSERT_EQ(got[i].value, v) << "series " << id << " ts " << ts;
        ++i;
      }
    }
    const StoreStats st = store_->Stats();
    EXPECT_EQ(st.samples, distinct);
    EXPECT_EQ(st.samples, want.added);
    EXPECT_EQ(st.series, want.samples.size());
    EXPECT_EQ(st.head_samples, 0u);
    for (int k = 0; k < kAgents; ++k) {
      EXPECT_EQ(store_->AgentSequence("agent-" + std::to_string(k)), uint64_t(kBatches));
    }

    // The roll-ups ran and covered most of the data.
    EXPECT_GE(st.rolled_up_until_ms, kT0 + kHour);
    uint64_t rolled_up_windows = 0;
    for (const auto& [id, samples] : want.samples) {
      for (int64_t res : {kMinute, kTenMinutes}) {
        std::map<int64_t, std::vector<double>> by_window;
        for (const auto& [ts, v] : samples) by_window[ts - ts % res].push_back(v);
        auto windows = store_->ReadRollup(id, res, kT0 - kHour, kT0 + 4 * kHour);
        ASSERT_TRUE(windows.ok()) << windows.status();
        ASSERT_EQ(windows->size(), by_window.size()) << "series " << id << " resolution " << res;
        auto w = by_window.begin();
        for (const auto& [start, a] : *windows) {
          ASSERT_EQ(start, w->first) << "series " << id << " resolution " << res;
          double sum = 0;
          for (double v : w->second) sum += v;
          ASSERT_EQ(a.count, w->second.size()) << "series " << id << " resolution " << res << " window " << start
                                               << (start < st.rolled_up_until_ms ? " (rolled up)" : " (raw)");
          EXPECT_EQ(a.sum, sum) << "series " << id << " window " << start;
          EXPECT_EQ(a.min, *std::min_element(w->second.begin(), w->second.end()));
          EXPECT_EQ(a.max, *std::max_element(w->second.begin(), w->second.end()));
          if (start < st.rolled_up_until_ms) ++rolled_up_windows;
          ++w;
        }
      }
    }
    EXPECT_GT(rolled_up_windows, 0u);
  }

  testing::TempDir dir_;
  std::atomic<int64_t> now_ms_ = kT0;
  std::unique_ptr<SeriesStore> store_;
  std::array<std::array<std::atomic<SeriesId>, kOwnSeries>, kAgents> own_ids_{};
  std::array<std::array<std::atomic<uint64_t>, kOwnSeries>, kAgents> own_acked_{};
  std::array<std::array<SeriesId, kSharedSeries>, kAgents> shared_ids_{};  // each written by its agent
  std::atomic<uint64_t> acked_total_ = 0;
};

TEST_F(StoreConcurrencyTest, AgentsCreatorsReadersAndMaintenanceAtOnce) {
  Open();
  ASSERT_NE(store_, nullptr);

  std::array<Expected, kAgents> agents;
  std::array<std::vector<SeriesId>, 2> created_ids{std::vector<SeriesId>(kCreated), std::vector<SeriesId>(kCreated)};
  std::array<std::vector<uint64_t>, 2> created_added{std::vector<uint64_t>(kCreated), std::vector<uint64_t>(kCreated)};
  std::vector<std::thread> threads;
  for (int k = 0; k < kAgents; ++k) threads.emplace_back([&, k] { Agent(k, &agents[k]); });
  for (int c = 0; c < 2; ++c) threads.emplace_back([&, c] { Creator(c, &created_ids[c], &created_added[c]); });
  for (int r = 0; r < kReaders; ++r) threads.emplace_back([&, r] { Reader(r); });
  threads.emplace_back([&] {
    // Flushes from another thread, racing with the background thread.
    for (int i = 0; i < kFlushes; ++i) {
      EXPECT_TRUE(store_->Flush().ok());
      std::this_thread::sleep_for(std::chrono::milliseconds(3));
    }
  });
  for (auto& t : threads) t.join();
  ASSERT_FALSE(HasFatalFailure());

  // The same labels got the same id in every thread, different labels not.
  for (int k = 1; k < kAgents; ++k) EXPECT_EQ(shared_ids_[k], shared_ids_[0]);
  EXPECT_EQ(created_ids[0], created_ids[1]);
  Expected want;
  for (const Expected& a : agents) {
    want.added += a.added;
    for (const auto& [id, samples] : a.samples) want.samples[id].insert(samples.begin(), samples.end());
  }
  for (int n = 0; n < kCreated; ++n) {
    EXPECT_EQ(created_added[0][n] + created_added[1][n], 1u) << "created series " << n;
    want.added += created_added[0][n] + created_added[1][n];
    want.samples[created_ids[0][n]][CreatedTs(n)] = n;
  }
  ASSERT_EQ(want.samples.size(), size_t(kAgents * kOwnSeries + kSharedSeries + kCreated));

  ASSERT_TRUE(store_->Flush().ok());
  const StoreStats st = store_->Stats();
  EXPECT_GT(st.cuts, 0u);
  EXPECT_GT(st.rollups, 0u);
  EXPECT_EQ(st.maintenance_failures, 0u) << st.last_maintenance_error;
  Verify(want);

  // And the same after reopening (index, counters and log replay).
  Open();
  ASSERT_NE(store_, nullptr);
  Verify(want);
}

}  // namespace
}  // namespace sheaf::storage
