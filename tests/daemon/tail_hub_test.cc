// The tail hub alone: matching, subscriptions, bounded buffers and missed
// counts, what counts as stored, delivery wake-ups, limits, shutdown, and
// publishing while subscriptions change on other threads.
#include "daemon/tail_hub.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <thread>

#include "model/labels.h"

namespace sheaf::daemon {
namespace {

using model::Sample;
using storage::AppendBatch;
using storage::AppendResult;
using storage::SeriesId;

// A store's series table: id -> labels, counting look-ups.
class FakeSeries {
 public:
  SeriesId Add(model::Labels labels, storage::TenantId tenant = storage::kDefaultTenant) {
    absl::MutexLock lock(&mu_);
    series_[++next_] = {tenant, std::move(labels), model::MetricType::kGauge};
    return next_;
  }
  TailHub::SeriesLookup Lookup() {
    return [this](SeriesId id) -> std::optional<storage::SeriesInfo> {
      lookups_.fetch_add(1);
      absl::MutexLock lock(&mu_);
      auto it = series_.find(id);
      if (it == series_.end()) return std::nullopt;
      return it->second;
    };
  }
  uint64_t lookups() const { return lookups_.load(); }

 private:
  absl::Mutex mu_;
  std::map<SeriesId, storage::SeriesInfo> series_ ABSL_GUARDED_BY(mu_);
  SeriesId next_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<uint64_t> lookups_{0};
};

// Counts OnTailReady calls; tests wait for a count with a bound.
class CountingListener : public TailListener {
 public:
  void OnTailReady() override {
    absl::MutexLock lock(&mu_);
    ++calls_;
    called_.SignalAll();
  }
  bool WaitForCalls(int n) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    absl::MutexLock lock(&mu_);
    while (calls_ < n) {
      if (called_.WaitWithDeadline(&mu_, deadline)) return calls_ >= n;
    }
    return true;
  }
  int calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }

 private:
  absl::Mutex mu_;
  absl::CondVar called_;
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
};

std::vector<model::Matcher> Selector(const std::string& text) {
  auto m = model::ParseSelector(text);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? *m : std::vector<model::Matcher>{};
}

AppendBatch Batch(std::vector<std::pair<SeriesId, std::vector<Sample>>> series) {
  AppendBatch b;
  b.agent_id = "agent";
  b.sequence = 1;
  for (auto& [id, samples] : series) b.series.push_back({id, std::move(samples)});
  return b;
}

// Samples taken, by series name, and the subscription ids seen per name.
struct Taken {
  std::map<std::string, std::vector<Sample>> samples;
  std::map<std::string, std::vector<uint64_t>> ids;
  uint64_t missed = 0;
  size_t runs = 0;
};

Taken TakeAll(TailSubscriber& s) {
  Taken t;
  for (;;) {
    TailDelivery d = s.Take(1000, 1 << 20);
    t.missed += d.missed;
    if (d.runs.empty()) break;
    for (const TailRun& r : d.runs) {
      std::string name(model::MetricName(r.series->labels));
      for (size_t i = r.begin; i < r.end; ++i) t.samples[name].push_back((*r.samples)[i]);
      t.ids[name] = *r.subscription_ids;
      ++t.runs;
    }
  }
  return t;
}

std::vector<int64_t> Times(const std::vector<Sample>& samples) {
  std::vector<int64_t> out;
  for (const Sample& s : samples) out.push_back(s.timestamp_ms);
  return out;
}

class TailHubTest : public ::testing::Test {
 protected:
  std::shared_ptr<TailSubscriber> Join(TailHub& hub) {
    auto s = hub.Join(listener_);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *s : nullptr;
  }

  FakeSeries series_;
  SeriesId cpu_ = series_.Add({{"__name__", "cpu"}, {"host", "a"}});
  SeriesId mem_ = series_.Add({{"__name__", "mem"}, {"host", "a"}});
  SeriesId disk_ = series_.Add({{"__name__", "disk"}, {"host", "b"}});
  std::shared_ptr<CountingListener> listener_ = std::make_shared<CountingListener>();
};

TEST_F(TailHubTest, PublishingWithoutSubscriptionsLooksNothingUp) {
  TailHub hub(series_.Lookup(), {});
  auto s = Join(hub);  // a subscriber without subscriptions costs nothing either
  hub.Publish(Batch({{cpu_, {{1, 1}}}, {mem_, {{1, 2}}}}), {});
  EXPECT_EQ(series_.lookups(), 0u);
  EXPECT_TRUE(s->Take(100, 1 << 20).empty());
}

TEST_F(TailHubTest, DeliversMatchingSeriesWithTheirSubscriptionIds) {
  TailHub hub(series_.Lookup(), {});
  auto a = Join(hub);
  auto b = Join(hub);
  ASSERT_TRUE(a->Subscribe(7, Selector(R"({host="a"})")).ok());
  ASSERT_TRUE(a->Subscribe(3, Selector("cpu")).ok());
  ASSERT_TRUE(b->Subscribe(1, Selector(R"({__name__=~"disk|cpu"})")).ok());
  hub.Publish(Batch({{cpu_, {{1, 1.5}, {2, 2.5}}}, {mem_, {{1, 10}}}, {disk_, {{1, 100}}}}), {});

  Taken ta = TakeAll(*a);
  EXPECT_EQ(Times(ta.samples["cpu"]), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(ta.samples["cpu"][1].value, 2.5);
  EXPECT_EQ(ta.ids["cpu"], (std::vector<uint64_t>{3, 7}));
  EXPECT_EQ(ta.ids["mem"], (std::vector<uint64_t>{7}));
  EXPECT_EQ(ta.samples.count("disk"), 0u);
  Taken tb = TakeAll(*b);
  EXPECT_EQ(tb.samples.size(), 2u);
  EXPECT_EQ(tb.ids["disk"], (std::vector<uint64_t>{1}));
  EXPECT_EQ(ta.missed + tb.missed, 0u);
  EXPECT_EQ(hub.Stats().samples_delivered, 6u);
}

TEST_F(TailHubTest, MatchesAreCachedUntilSubscriptionsChange) {
  TailHub hub(series_.Lookup(), {});
  auto s = Join(hub);
  ASSERT_TRUE(s->Subscribe(1, Selector("cpu")).ok());
  for (int i = 0; i < 10; ++i) hub.Publish(Batch({{cpu_, {{i, 1}}}, {mem_, {{i, 1}}}}), {});
  // One look-up per series for the answer (the labels of cpu come with it).
  EXPECT_EQ(series_.lookups(), 2u);
  EXPECT_EQ(TakeAll(*s).samples["cpu"].size(), 10u);
  ASSERT_TRUE(s->Subscribe(2, Selector("mem")).ok());
  hub.Publish(Batch({{cpu_, {{20, 1}}}, {mem_, {{20, 1}}}}), {});
  EXPECT_EQ(series_.lookups(), 4u);  // once more each after the change
}

TEST_F(TailHubTest, UnsubscribeAndReplaceDropWhatIsBufferedForTheOldSelector) {
  TailHub hub(series_.Lookup(), {});
  auto s = Join(hub);
  ASSERT_TRUE(s->Subscribe(1, Selector("cpu")).ok());
  ASSERT_TRUE(s->Subscribe(2, Selector("mem")).ok());
  hub.Publish(Batch({{cpu_, {{1, 1}}}, {mem_, {{1, 1}}}}), {});
  EXPECT_TRUE(s->Unsubscribe(1));
  EXPECT_FALSE(s->Unsubscribe(1));
  // Replacing subscription 2's selector drops mem's buffered sample.
  ASSERT_TRUE(s->Subscribe(2, Selector("disk")).ok());
  EXPECT_EQ(s->buffered_samples(), 0u);
  EXPECT_EQ(s->buffered_bytes(), 0u);
  hub.Publish(Batch({{cpu_, {{2, 1}}}, {mem_, {{2, 1}}}, {disk_, {{2, 1}}}}), {});
  Taken t = TakeAll(*s);
  EXPECT_EQ(t.samples.size(), 1u);
  EXPECT_EQ(t.ids["disk"], (std::vector<uint64_t>{2}));
  EXPECT_EQ(t.missed, 0u);  // dropped on purpose, not missed
  EXPECT_EQ(s->subscriptions(), 1u);
}

TEST_F(TailHubTest, SharedRunKeepsTheOtherSubscriptionWhenOneIsDropped) {
  TailHub hub(series_.Lookup(), {});
  auto s = Join(hub);
  ASSERT_TRUE(s->Subscribe(1, Selector("cpu")).ok());
  ASSERT_TRUE(s->Subscribe(2, Selector(R"({host="a"})")).ok());
  hub.Publish(Batch({{cpu_, {{1, 1}}}}), {});
  EXPECT_TRUE(s->Unsubscribe(1));
  Taken t = TakeAll(*s);
  EXPECT_EQ(t.samples["cpu"].size(), 1u);
  EXPECT_EQ(t.ids["cpu"], (std::vector<uint64_t>{2}));
}

TEST_F(TailHubTest, FullBufferDropsForThatSubscriberOnlyAndCountsMissed) {
  TailOptions options;
  options.max_buffer_samples = 10;
  TailHub hub(series_.Lookup(), options);
  auto slow = Join(hub);
  auto fast = Join(hub);
  ASSERT_TRUE(slow->Subscribe(1, Selector("cpu")).ok());
  ASSERT_TRUE(fast->Subscribe(1, Selector("cpu")).ok());
  uint64_t fast_got = 0;
  for (int b = 0; b < 5; ++b) {
    std::vector<Sample> samples;
    for (int i = 0; i < 5; ++i) samples.push_back({b * 5 + i, 1});
    hub.Publish(Batch({{cpu_, samples}}), {});
    fast_got += TakeAll(*fast).samples["cpu"].size();
  }
  EXPECT_EQ(fast_got, 25u);
  EXPECT_EQ(slow->buffered_samples(), 10u);
  // The oldest ten were kept; the fifteen after them are reported missed
  // with the next Take, and only once.
  TailDelivery d = slow->Take(100, 1 << 20);
  EXPECT_EQ(d.missed, 15u);
  size_t n = 0;
  for (const auto& r : d.runs) n += r.size();
  EXPECT_EQ(n, 10u);
  EXPECT_EQ((*d.runs[0].samples)[d.runs[0].begin].timestamp_ms, 0);
  EXPECT_EQ(slow->Take(100, 1 << 20).missed, 0u);
  EXPECT_EQ(hub.Stats().samples_missed, 15u);
  // Once read, it receives again.
  hub.Publish(Batch({{cpu_, {{100, 1}}}}), {});
  EXPECT_EQ(TakeAll(*slow).samples["cpu"].size(), 1u);
}

TEST_F(TailHubTest, BufferBytesAreBoundedToo) {
  TailOptions options;
  options.max_buffer_bytes = 4096;
  TailHub hub(series_.Lookup(), options);
  auto s = Join(hub);
  ASSERT_TRUE(s->Subscribe(1, Selector("cpu")).ok());
  for (int b = 0; b < 100; ++b) hub.Publish(Batch({{cpu_, {{b, 1}}}}), {});
  EXPECT_LE(s->buffered_bytes(), 4096u);
  EXPECT_LE(hub.Stats().peak_buffered_bytes, 4096u);
  Taken t = TakeAll(*s);
  EXPECT_GT(t.missed, 0u);
  EXPECT_EQ(t.samples["cpu"].size() + t.missed, 100u);
  EXPECT_EQ(hub.Stats().buffered_bytes, 0u);
}

TEST_F(TailHubTest, TakeSplitsByResponseSize) {
  TailHub hub(series_.Lookup(), {});
  auto s = Join(hub);
  ASSERT_TRUE(s->Subscribe(1, Selector("cpu")).ok());
  std::vector<Sample> samples;
  for (int i = 0; i < 25; ++i) samples.push_back({i, 1});
  hub.Publish(Batch({{cpu_, samples}}), {});
  std::vector<int64_t> times;
  int takes = 0;
  for (TailDelivery d = s->Take(10, 1 << 20); !d.runs.empty(); d = s->Take(10, 1 << 20)) {
    ++takes;
    for (const auto& r : d.runs) {
      EXPECT_LE(r.size(), 10u);
      for (size_t i = r.begin; i < r.end; ++i) times.push_back((*r.samples)[i].timestamp_ms);
    }
  }
  EXPECT_EQ(takes, 3);
  ASSERT_EQ(times.size(), 25u);
  for (int i = 0; i < 25; ++i) EXPECT_EQ(times[i], i);
}

TEST_F(TailHubTest, PublishesOnlyWhatTheStoreKept) {
  TailHub hub(series_.Lookup(), {});
  auto s = Join(hub);
  ASSERT_TRUE(s->Subscribe(1, Selector(R"({__name__=~".+"})")).ok());
  // cpu: two entries in one batch, unsorted, timestamp 3 twice (the later
  // value wins), and the store refused the two oldest as too old. mem was
  // deleted meanwhile. disk has no samples.
  AppendBatch batch = Batch({{cpu_, {{5, 1}, {3, 1}, {1, 1}}}, {mem_, {{1, 1}}}, {cpu_, {{3, 9}, {2, 1}}}});
  batch.series.push_back({disk_, {}});
  AppendResult result;
  result.too_old = {{cpu_, 2}};
  result.deleted = {{mem_, 1}};
  hub.Publish(batch, result);
  Taken t = TakeAll(*s);
  ASSERT_EQ(t.samples.size(), 1u);
  EXPECT_EQ(Times(t.samples["cpu"]), (std::vector<int64_t>{3, 5}));
  EXPECT_EQ(t.samples["cpu"][0].value, 9);
  EXPECT_EQ(t.runs, 1u);
}

TEST_F(TailHubTest, ListenerIsCalledWhenSomethingArrivesAfterAnEmptyTake) {
  TailHub hub(series_.Lookup(), {});
  auto s = Join(hub);
  ASSERT_TRUE(s->Subscribe(1, Selector("cpu")).ok());
  EXPECT_TRUE(s->Take(10, 1 << 20).empty());   // armed
  hub.Publish(Batch({{mem_, {{1, 1}}}}), {});  // not for it
  hub.Publish(Batch({{cpu_, {{1, 1}}}}), {});
  ASSERT_TRUE(listener_->WaitForCalls(1));
  // Not armed again until it takes everything: more samples, no more calls.
  hub.Publish(Batch({{cpu_, {{2, 1}}}}), {});
  EXPECT_EQ(TakeAll(*s).samples["cpu"].size(), 2u);
  // Asked for explicitly (after a write), it is called again.
  s->RequestReady();
  ASSERT_TRUE(listener_->WaitForCalls(2));
  hub.Publish(Batch({{cpu_, {{3, 1}}}}), {});
  ASSERT_TRUE(listener_->WaitForCalls(3));
}

TEST_F(TailHubTest, LimitsNameTheirFlags) {
  TailOptions options;
  options.max_subscribers = 1;
  options.max_subscriptions = 2;
  TailHub hub(series_.Lookup(), options);
  auto s = Join(hub);
  auto second = hub.Join(listener_);
  ASSERT_EQ(second.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(second.status().message().find("--max-tail-subscribers"), std::string::npos);
  ASSERT_TRUE(s->Subscribe(1, Selector("cpu")).ok());
  ASSERT_TRUE(s->Subscribe(2, Selector("mem")).ok());
  ASSERT_TRUE(s->Subscribe(2, Selector("disk")).ok());  // replacing is not adding
  auto third = s->Subscribe(3, Selector("disk"));
  ASSERT_EQ(third.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(third.message().find("--max-tail-subscriptions"), std::string::npos);
  // Leaving frees the slot and the subscriptions.
  s->Leave();
  s->Leave();
  EXPECT_EQ(hub.Stats().subscriptions, 0u);
  EXPECT_TRUE(hub.Join(listener_).ok());
}

TEST_F(TailHubTest, ShutdownClosesSubscribersAndRefusesNewOnes) {
  TailHub hub(series_.Lookup(), {});
  auto s = Join(hub);
  ASSERT_TRUE(s->Subscribe(1, Selector("cpu")).ok());
  hub.Publish(Batch({{cpu_, {{1, 1}}}}), {});
  ASSERT_TRUE(listener_->WaitForCalls(1));
  hub.Shutdown();
  ASSERT_TRUE(listener_->WaitForCalls(2));  // told even though it had not taken yet
  EXPECT_TRUE(s->Take(10, 1 << 20).closed);
  EXPECT_EQ(hub.Join(listener_).status().code(), absl::StatusCode::kUnavailable);
  s->Leave();
  EXPECT_EQ(hub.Stats().buffered_bytes, 0u);
}

TEST_F(TailHubTest, ConcurrentPublishAndSubscriptionChanges) {
  TailOptions options;
  options.max_buffer_samples = 1000;
  TailHub hub(series_.Lookup(), options);
  std::vector<SeriesId> ids;
  for (int i = 0; i < 50; ++i) ids.push_back(series_.Add({{"__name__", fmt::format("m{}", i)}, {"k", "v"}}));
  auto steady = Join(hub);
  ASSERT_TRUE(steady->Subscribe(1, Selector(R"({k="v"})")).ok());
  constexpr int kPublishers = 3, kBatches = 400;
  std::atomic<bool> done{false};
  std::atomic<uint64_t> taken{0}, missed{0};
  std::thread reader([&] {
    auto drain = [&] {
      for (TailDelivery d = steady->Take(100, 1 << 20); !d.empty(); d = steady->Take(100, 1 << 20)) {
        missed += d.missed;
        for (const auto& r : d.runs) taken += r.size();
      }
    };
    while (!done) drain();
    drain();
  });
  std::thread churn([&] {
    for (int i = 0; !done; ++i) {
      auto s = hub.Join(listener_);
      if (!s.ok()) continue;
      (*s)->Subscribe(i % 7, Selector(fmt::format("m{}", i % 50))).IgnoreError();
      (*s)->Subscribe(100, Selector(R"({k=~"v|w"})")).IgnoreError();
      (*s)->Take(10, 1 << 20);
      (*s)->Unsubscribe(i % 7);
      (*s)->Leave();
    }
  });
  std::vector<std::thread> publishers;
  for (int p = 0; p < kPublishers; ++p) {
    publishers.emplace_back([&, p] {
      for (int b = 0; b < kBatches; ++b) {
        AppendBatch batch;
        for (SeriesId id : ids) batch.series.push_back({id, {{int64_t{p} * kBatches + b, 1}}});
        hub.Publish(batch, {});
      }
    });
  }
  for (auto& t : publishers) t.join();
  done = true;
  churn.join();
  reader.join();
  // Every sample published for the steady subscription was either taken
  // or counted as missed.
  EXPECT_EQ(taken + missed, uint64_t{kPublishers} * kBatches * ids.size());
  EXPECT_EQ(hub.Stats().subscribers, 1u);
  EXPECT_EQ(hub.Stats().subscriptions, 1u);
  steady->Leave();
  EXPECT_EQ(hub.Stats().buffered_bytes, 0u);
}

}  // namespace
}  // namespace sheaf::daemon
