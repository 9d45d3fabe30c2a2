// The live tail's hub: the ingest path publishes what the store accepted,
// and every Tail stream is a subscriber with its own bounded buffer. No
// gRPC here (the Tail reactor is in tail_service.cc), so it is tested alone.
//
// Cost to ingestion: Publish is one relaxed atomic load while nobody has a
// subscription. With subscriptions, each published series is matched once
// per change of the subscription set (a dense per-series stamp says whether
// the last answer still holds), and its samples are appended to the buffers
// of the subscribers it matches. Publish never waits for a subscriber: a
// full buffer drops the samples for that subscriber alone and counts them
// as missed, to be reported in its next response.
//
// Delivery: one hub thread calls a subscriber's TailListener when there is
// something to take (samples, a missed count, or the hub closing) and when
// the listener asks for it (RequestReady, after a write completed); the
// listener then Take()s at most one response's worth. So encoding and
// writing never run on the ingest threads.
//
// Locks: mu_ (subscriptions, the match cache) before a subscriber's
// buffer_mu_ before ready_mu_ (the delivery queue). Listeners are called
// with no hub lock held.
#ifndef SHEAF_DAEMON_TAIL_HUB_H_
#define SHEAF_DAEMON_TAIL_HUB_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "model/matcher.h"
#include "storage/series_store.h"

namespace prometheus {
class Registry;
}

namespace sheaf::daemon {

struct TailOptions {
  // Per subscriber (Tail stream): samples waiting to be sent, and an
  // estimate of the memory they hold (on the safe side: a buffered run is
  // charged its series' labels even when runs share them). Past either,
  // samples are dropped for that subscriber and counted as missed.
  size_t max_buffer_samples = 50'000;
  size_t max_buffer_bytes = 8ull << 20;
  // Open Tail streams; past it a new stream ends with RESOURCE_EXHAUSTED.
  size_t max_subscribers = 16;
  // Subscriptions per stream; past it a subscribe is answered
  // RESOURCE_EXHAUSTED (the stream goes on).
  size_t max_subscriptions = 64;
  // Labels of matching series kept to avoid looking them up again; the
  // cache is emptied when it holds more.
  size_t max_cached_label_bytes = 64ull << 20;
};

// A series as tails see it. Shared by the buffers that hold its samples.
struct TailSeriesInfo {
  storage::SeriesId id = 0;
  model::Labels labels;
  model::MetricType type = model::MetricType::kUnspecified;
  size_t bytes = 0;  // estimated memory of the labels
};

// Samples [begin, end) of one stored batch for one series, and the
// subscriber's subscriptions that match it (ascending).
struct TailRun {
  std::shared_ptr<const TailSeriesInfo> series;
  std::shared_ptr<const std::vector<uint64_t>> subscription_ids;
  std::shared_ptr<const std::vector<model::Sample>> samples;
  size_t begin = 0;
  size_t end = 0;
  size_t size() const { return end - begin; }
};

// What one Take hands over.
struct TailDelivery {
  std::vector<TailRun> runs;  // in publish order
  uint64_t missed = 0;        // samples dropped since the previous Take (buffer full)
  bool closed = false;        // the hub shut down: end the stream
  bool empty() const { return runs.empty() && missed == 0 && !closed; }
};

// Implemented by a Tail stream. Called on the hub's delivery thread, never
// concurrently with itself for one subscriber; may be called once more
// after the subscriber left (it must then do nothing).
class TailListener {
 public:
  virtual ~TailListener() = default;
  virtual void OnTailReady() = 0;
};

class TailSubscriber;

struct TailStats {
  uint64_t subscribers = 0;
  uint64_t subscriptions = 0;
  uint64_t samples_delivered = 0;  // handed to streams (Take)
  uint64_t samples_missed = 0;     // dropped because a buffer was full
  uint64_t buffered_bytes = 0;     // all buffers now
  uint64_t peak_buffered_bytes = 0;
};

class TailHub {
 public:
  // Labels and type of a series (the store's GetSeries).
  using SeriesLookup = std::function<std::optional<storage::SeriesInfo>(storage::SeriesId)>;

  // Metrics go to `registry` when given. Starts the delivery thread.
  TailHub(SeriesLookup lookup, TailOptions options, prometheus::Registry* registry = nullptr);
  ~TailHub();  // Shutdown()s and joins the delivery thread

  // A subscriber for one Tail stream of `tenant`. RESOURCE_EXHAUSTED past
  // max_subscribers, UNAVAILABLE after Shutdown.
  absl::StatusOr<std::shared_ptr<TailSubscriber>> Join(std::weak_ptr<TailListener> listener,
                                                       storage::TenantId tenant = storage::kDefaultTenant);

  // What the store accepted for `batch`: its series minus samples the store
  // reported as too old or deleted. Call only after a successful,
  // non-duplicate Append. Never blocks on a subscriber.
  void Publish(const storage::AppendBatch& batch, const storage::AppendResult& result) {
    if (active_subscriptions_.load(std::memory_order_relaxed) == 0) return;
    PublishMatching(batch, result);
  }

  // Refuses new subscribers and tells every subscriber to end (Take
  // reports closed). The delivery thread keeps running until destruction.
  void Shutdown();

  TailStats Stats() const;
  const TailOptions& options() const { return options_; }

 private:
  friend class TailSubscriber;
  struct Metrics;

  // Which subscribers (and which of their subscriptions) match a series,
  // for one generation of the subscription set.
  struct Match {
    TailSubscriber* subscriber;
    std::shared_ptr<const std::vector<uint64_t>> ids;
  };
  using MatchSet = std::vector<Match>;
  // Per series id: the generation its answer was computed for, and the
  // index of that answer in match_sets_ (0: matches nothing).
  struct Stamp {
    uint32_t generation = 0;
    uint32_t match = 0;
  };

  void PublishMatching(const storage::AppendBatch& batch, const storage::AppendResult& result);
  // Who matches series `id` now (null: nobody); fills *info when someone does.
  std::shared_ptr<const MatchSet> MatchSeries(storage::SeriesId id, std::shared_ptr<const TailSeriesInfo>* info)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The cached labels of `id`, looked up (into *looked_up, unless it holds
  // them already) when not cached. Null if the series is gone.
  std::shared_ptr<const TailSeriesInfo> Info(storage::SeriesId id, std::optional<storage::SeriesInfo>* looked_up)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // After any change of subscriptions: a new generation of answers.
  void SubscriptionsChanged() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Leave(TailSubscriber* s);
  // Queues `s` for a call of its listener (once, however often asked).
  void Schedule(TailSubscriber* s);
  void DeliveryLoop();
  void Delivered(uint64_t samples);
  void Missed(uint64_t samples);
  void BufferedBytesChanged(int64_t delta);

  const SeriesLookup lookup_;
  const TailOptions options_;
  std::unique_ptr<Metrics> metrics_;
  std::atomic<uint64_t> active_subscriptions_{0};
  std::atomic<uint64_t> delivered_{0};
  std::atomic<uint64_t> missed_{0};
  std::atomic<int64_t> buffered_bytes_{0};
  std::atomic<int64_t> peak_buffered_bytes_{0};

  mutable absl::Mutex mu_;
  std::vector<std::shared_ptr<TailSubscriber>> subscribers_ ABSL_GUARDED_BY(mu_);
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  // The subscription set, flattened: (subscriber, id, tenant, matchers)
  // grouped by subscriber, ids ascending.
  struct Flat {
    TailSubscriber* subscriber;
    uint64_t id;
    const std::vector<model::Matcher>* matchers;
  };
  std::vector<Flat> flat_ ABSL_GUARDED_BY(mu_);
  uint32_t generation_ ABSL_GUARDED_BY(mu_) = 1;
  std::vector<Stamp> stamps_ ABSL_GUARDED_BY(mu_);                                // by series id
  std::vector<std::shared_ptr<const MatchSet>> match_sets_ ABSL_GUARDED_BY(mu_);  // [0]: nothing
  std::map<std::vector<uint32_t>, uint32_t> interned_ ABSL_GUARDED_BY(mu_);       // flat_ indices -> match set
  std::unordered_map<storage::SeriesId, std::shared_ptr<const TailSeriesInfo>> infos_ ABSL_GUARDED_BY(mu_);
  size_t info_bytes_ ABSL_GUARDED_BY(mu_) = 0;

  absl::Mutex ready_mu_;
  absl::CondVar ready_cv_;  // ready_ got an entry, or stop_
  std::deque<std::shared_ptr<TailSubscriber>> ready_ ABSL_GUARDED_BY(ready_mu_);
  bool stop_ ABSL_GUARDED_BY(ready_mu_) = false;
  std::thread delivery_;
};

// One Tail stream's subscriptions and buffer. Thread-safe. Created by
// TailHub::Join; Leave() when the stream ends.
class TailSubscriber : public std::enable_shared_from_this<TailSubscriber> {
 public:
  // Starts subscription `id`, or replaces its matchers (dropping what is
  // buffered for it). RESOURCE_EXHAUSTED past TailOptions::max_subscriptions;
  // FAILED_PRECONDITION once left.
  absl::Status Subscribe(uint64_t id, std::vector<model::Matcher> matchers);
  // Ends subscription `id` and drops what is buffered for it. False if
  // there is no such subscription.
  bool Unsubscribe(uint64_t id);
  size_t subscriptions() const;

  // Moves out up to about `max_samples` samples and `max_bytes` (at least
  // one run if any is buffered), and the missed count since the last Take.
  // If it returns empty(), the listener is called once something arrives.
  TailDelivery Take(size_t max_samples, size_t max_bytes);
  // Calls the listener again soon (on the delivery thread), e.g. once a
  // write completed, whether or not anything is buffered.
  void RequestReady();
  // Unsubscribes all and releases the buffer and the subscriber's slot.
  // Idempotent.
  void Leave();

  uint64_t buffered_samples() const;
  uint64_t buffered_bytes() const;

 private:
  friend class TailHub;
  TailSubscriber(TailHub* hub, storage::TenantId tenant, std::weak_ptr<TailListener> listener)
      : hub_(hub), tenant_(tenant), listener_(std::move(listener)) {}

  // Called by the hub under its mu_, for `n` samples that `samples()`
  // returns (called only if some fit). Appends what fits; drops the rest,
  // counting them here and in *missed. True if the listener should be woken.
  bool Append(const std::shared_ptr<const TailSeriesInfo>& series,
              const std::shared_ptr<const std::vector<uint64_t>>& ids, size_t n,
              absl::FunctionRef<std::shared_ptr<const std::vector<model::Sample>>()> samples, uint64_t* missed);
  // Drops buffered samples of subscription `id` (not counted as missed).
  void Purge(uint64_t id);
  // The hub shut down: Take reports closed. True if the listener should be woken.
  bool Close();

  TailHub* const hub_;
  const storage::TenantId tenant_;
  const std::weak_ptr<TailListener> listener_;

  mutable absl::Mutex buffer_mu_;
  std::deque<TailRun> buffer_ ABSL_GUARDED_BY(buffer_mu_);
  size_t buffered_samples_ ABSL_GUARDED_BY(buffer_mu_) = 0;
  size_t buffered_bytes_ ABSL_GUARDED_BY(buffer_mu_) = 0;
  uint64_t missed_ ABSL_GUARDED_BY(buffer_mu_) = 0;
  // The listener took everything and waits to be called when more arrives.
  bool armed_ ABSL_GUARDED_BY(buffer_mu_) = true;
  bool closed_ ABSL_GUARDED_BY(buffer_mu_) = false;

  // Under the hub's locks.
  std::map<uint64_t, std::vector<model::Matcher>> subscriptions_ ABSL_GUARDED_BY(hub_->mu_);
  bool left_ ABSL_GUARDED_BY(hub_->mu_) = false;
  bool scheduled_ ABSL_GUARDED_BY(hub_->ready_mu_) = false;  // in the delivery queue
};

}  // namespace sheaf::daemon

#endif  // SHEAF_DAEMON_TAIL_HUB_H_
