#include "daemon/tail_hub.h"

#include <fmt/format.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <algorithm>

namespace sheaf::daemon {
namespace {

// What a buffered run costs besides its samples and labels (the deque
// slot, three shared pointers, the sample vector's header): an estimate
// on the safe side.
constexpr size_t kRunOverhead = 128;
// Distinct match answers kept per generation before the generation is
// renewed (an answer per combination of matching subscriptions).
constexpr size_t kMaxMatchSets = 1 << 16;

size_t LabelBytes(const model::Labels& labels) {
  size_t bytes = 64;
  for (const model::Label& l : labels) bytes += l.name.size() + l.value.size() + 2 * sizeof(std::string);
  return bytes;
}

size_t RunBytes(const TailRun& run) { return kRunOverhead + run.series->bytes + run.size() * sizeof(model::Sample); }

bool ByTime(const model::Sample& a, const model::Sample& b) { return a.timestamp_ms < b.timestamp_ms; }

// The samples the store kept of one series of a batch (`runs`: its entries
// in the batch, in order): joined, in time order, the last of equal
// timestamps winning, without the `too_old` oldest (the store refuses
// exactly those: older than its newest sample by more than the window).
// Built only for a subscriber with room: with every buffer full, a batch
// costs no copy. The usual case (one entry, strictly increasing, nothing
// refused) is the batch's own vector.
class StoredSamples {
 public:
  StoredSamples(const std::vector<const storage::SeriesSamples*>& runs, uint64_t too_old) {
    if (runs.size() == 1 && too_old == 0) {
      const std::vector<model::Sample>& in = runs[0]->samples;
      if (std::adjacent_find(in.begin(), in.end(), [](const model::Sample& a, const model::Sample& b) {
            return a.timestamp_ms >= b.timestamp_ms;
          }) == in.end()) {
        plain_ = &in;
        return;
      }
    }
    auto out = std::make_shared<std::vector<model::Sample>>();
    for (const storage::SeriesSamples* r : runs) out->insert(out->end(), r->samples.begin(), r->samples.end());
    std::stable_sort(out->begin(), out->end(), ByTime);
    size_t kept = 0;
    for (size_t i = 0; i < out->size(); ++i) {
      if (i + 1 < out->size() && (*out)[i + 1].timestamp_ms == (*out)[i].timestamp_ms) continue;
      (*out)[kept++] = (*out)[i];
    }
    out->resize(kept);
    out->erase(out->begin(), out->begin() + static_cast<ptrdiff_t>(std::min<uint64_t>(too_old, out->size())));
    shared_ = std::move(out);
  }

  size_t size() const { return plain_ != nullptr ? plain_->size() : shared_->size(); }
  // The samples to keep in buffers (copied from the batch on first use).
  const std::shared_ptr<const std::vector<model::Sample>>& Get() {
    if (shared_ == nullptr) shared_ = std::make_shared<const std::vector<model::Sample>>(*plain_);
    return shared_;
  }

 private:
  const std::vector<model::Sample>* plain_ = nullptr;
  std::shared_ptr<const std::vector<model::Sample>> shared_;
};

uint64_t Find(const std::vector<std::pair<storage::SeriesId, uint64_t>>& counts, storage::SeriesId id) {
  for (const auto& [sid, n] : counts) {
    if (sid == id) return n;
  }
  return 0;
}

}  // namespace

namespace {

// One unlabelled gauge or counter of the daemon's registry.
template <typename Builder>
auto& Metric(Builder builder, prometheus::Registry& r, const char* name, const char* help) {
  return builder.Name(name).Help(help).Register(r).Add({});
}

}  // namespace

struct TailHub::Metrics {
  explicit Metrics(prometheus::Registry& r)
      : subscribers(Metric(prometheus::BuildGauge(), r, "sheaf_tail_subscribers", "Open Tail streams.")),
        subscriptions(
            Metric(prometheus::BuildGauge(), r, "sheaf_tail_subscriptions", "Subscriptions of all open Tail streams.")),
        buffered_bytes(Metric(prometheus::BuildGauge(), r, "sheaf_tail_buffered_bytes",
                              "Estimated memory of the samples waiting in Tail buffers.")),
        delivered(Metric(prometheus::BuildCounter(), r, "sheaf_tail_samples_delivered_total",
                         "Samples handed to Tail streams.")),
        missed(Metric(prometheus::BuildCounter(), r, "sheaf_tail_samples_missed_total",
                      "Samples dropped for a Tail stream because its buffer was full (a slow reader).")) {}
  prometheus::Gauge& subscribers;
  prometheus::Gauge& subscriptions;
  prometheus::Gauge& buffered_bytes;
  prometheus::Counter& delivered;
  prometheus::Counter& missed;
};

// ---- TailSubscriber

absl::Status TailSubscriber::Subscribe(uint64_t id, std::vector<model::Matcher> matchers) {
  absl::MutexLock lock(&hub_->mu_);
  if (left_) return absl::FailedPreconditionError("the stream has ended");
  auto it = subscriptions_.find(id);
  if (it == subscriptions_.end() && subscriptions_.size() >= hub_->options_.max_subscriptions) {
    return absl::ResourceExhaustedError(
        fmt::format("this stream has {} subscriptions, sheafd's limit (--max-tail-subscriptions); unsubscribe one, "
                    "or open another stream",
                    subscriptions_.size()));
  }
  if (it != subscriptions_.end()) Purge(id);
  subscriptions_[id] = std::move(matchers);
  hub_->SubscriptionsChanged();
  return absl::OkStatus();
}

bool TailSubscriber::Unsubscribe(uint64_t id) {
  absl::MutexLock lock(&hub_->mu_);
  if (subscriptions_.erase(id) == 0) return false;
  Purge(id);
  hub_->SubscriptionsChanged();
  return true;
}

size_t TailSubscriber::subscriptions() const {
  absl::MutexLock lock(&hub_->mu_);
  return subscriptions_.size();
}

bool TailSubscriber::Append(const std::shared_ptr<const TailSeriesInfo>& series,
                            const std::shared_ptr<const std::vector<uint64_t>>& ids, size_t n,
                            absl::FunctionRef<std::shared_ptr<const std::vector<model::Sample>>()> samples,
                            uint64_t* missed) {
  const TailOptions& o = hub_->options_;
  const size_t fixed = kRunOverhead + series->bytes;
  absl::MutexLock lock(&buffer_mu_);
  if (closed_) return false;
  const size_t room_samples = o.max_buffer_samples > buffered_samples_ ? o.max_buffer_samples - buffered_samples_ : 0;
  const size_t room_bytes = o.max_buffer_bytes > buffered_bytes_ + fixed
                                ? (o.max_buffer_bytes - buffered_bytes_ - fixed) / sizeof(model::Sample)
                                : 0;
  const size_t kept = std::min({n, room_samples, room_bytes});
  if (kept < n) {
    missed_ += n - kept;
    *missed += n - kept;
  }
  if (kept > 0) {
    TailRun run{series, ids, samples(), 0, kept};
    const size_t bytes = RunBytes(run);
    buffer_.push_back(std::move(run));
    buffered_samples_ += kept;
    buffered_bytes_ += bytes;
    hub_->BufferedBytesChanged(static_cast<int64_t>(bytes));
  }
  const bool wake = armed_ && (kept > 0 || missed_ > 0);
  if (wake) armed_ = false;
  return wake;
}

void TailSubscriber::Purge(uint64_t id) {
  absl::MutexLock lock(&buffer_mu_);
  std::deque<TailRun> kept;
  size_t freed = 0;
  for (TailRun& run : buffer_) {
    const std::vector<uint64_t>& ids = *run.subscription_ids;
    if (!std::binary_search(ids.begin(), ids.end(), id)) {
      kept.push_back(std::move(run));
      continue;
    }
    if (ids.size() == 1) {
      buffered_samples_ -= run.size();
      freed += RunBytes(run);
      continue;
    }
    auto rest = std::make_shared<std::vector<uint64_t>>();
    for (uint64_t other : ids) {
      if (other != id) rest->push_back(other);
    }
    run.subscription_ids = std::move(rest);
    kept.push_back(std::move(run));
  }
  buffer_ = std::move(kept);
  buffered_bytes_ -= freed;
  hub_->BufferedBytesChanged(-static_cast<int64_t>(freed));
}

TailDelivery TailSubscriber::Take(size_t max_samples, size_t max_bytes) {
  TailDelivery d;
  size_t samples = 0, bytes = 0;
  {
    absl::MutexLock lock(&buffer_mu_);
    d.missed = missed_;
    missed_ = 0;
    d.closed = closed_;
    while (!d.closed && !buffer_.empty()) {
      TailRun& run = buffer_.front();
      const size_t run_bytes = RunBytes(run);
      if (!d.runs.empty() && (samples + run.size() > max_samples || bytes + run_bytes > max_bytes)) break;
      if (run.size() > max_samples) {  // a long run alone: split it
        TailRun part = run;
        part.end = part.begin + max_samples;
        run.begin = part.end;
        const size_t part_bytes = run_bytes - RunBytes(run);
        samples += part.size();
        bytes += part_bytes;
        buffered_samples_ -= part.size();
        buffered_bytes_ -= part_bytes;
        d.runs.push_back(std::move(part));
        break;
      }
      samples += run.size();
      bytes += run_bytes;
      buffered_samples_ -= run.size();
      buffered_bytes_ -= run_bytes;
      d.runs.push_back(std::move(run));
      buffer_.pop_front();
    }
    armed_ = d.empty();
    // Under the lock, as Append counts: the hub's total must never count a
    // run twice (it did, briefly, and its peak overshot the bound).
    hub_->BufferedBytesChanged(-static_cast<int64_t>(bytes));
  }
  hub_->Delivered(samples);
  return d;
}

void TailSubscriber::RequestReady() { hub_->Schedule(this); }

void TailSubscriber::Leave() { hub_->Leave(this); }

bool TailSubscriber::Close() {
  absl::MutexLock lock(&buffer_mu_);
  closed_ = true;
  armed_ = false;
  return true;
}

uint64_t TailSubscriber::buffered_samples() const {
  absl::MutexLock lock(&buffer_mu_);
  return buffered_samples_;
}

uint64_t TailSubscriber::buffered_bytes() const {
  absl::MutexLock lock(&buffer_mu_);
  return buffered_bytes_;
}

// ---- TailHub

TailHub::TailHub(SeriesLookup lookup, TailOptions options, prometheus::Registry* registry)
    : lookup_(std::move(lookup)),
      options_(options),
      metrics_(registry != nullptr ? std::make_unique<Metrics>(*registry) : nullptr),
      match_sets_(1) {
  delivery_ = std::thread([this] { DeliveryLoop(); });
}

TailHub::~TailHub() {
  Shutdown();
  {
    absl::MutexLock lock(&ready_mu_);
    stop_ = true;
    ready_cv_.Signal();
  }
  delivery_.join();
}

absl::StatusOr<std::shared_ptr<TailSubscriber>> TailHub::Join(std::weak_ptr<TailListener> listener,
                                                              storage::TenantId tenant) {
  absl::MutexLock lock(&mu_);
  if (shut_down_) return absl::UnavailableError("sheafd is shutting down");
  if (options_.max_subscribers == 0) {
    return absl::UnimplementedError("live tail is off in this sheafd (--max-tail-subscribers 0)");
  }
  if (subscribers_.size() >= options_.max_subscribers) {
    return absl::ResourceExhaustedError(
        fmt::format("{} Tail streams are open, sheafd's limit (--max-tail-subscribers); close one, or put several "
                    "subscriptions on one stream",
                    subscribers_.size()));
  }
  std::shared_ptr<TailSubscriber> s(new TailSubscriber(this, tenant, std::move(listener)));
  subscribers_.push_back(s);
  if (metrics_) metrics_->subscribers.Set(static_cast<double>(subscribers_.size()));
  return s;
}

void TailHub::Leave(TailSubscriber* s) {
  size_t freed = 0;
  {
    absl::MutexLock lock(&mu_);
    s->hub_->mu_.AssertHeld();  // s->hub_ is this: tells the lock analysis
    if (s->left_) return;
    s->left_ = true;
    subscribers_.erase(std::remove_if(subscribers_.begin(), subscribers_.end(),
                                      [s](const std::shared_ptr<TailSubscriber>& x) { return x.get() == s; }),
                       subscribers_.end());
    if (metrics_) metrics_->subscribers.Set(static_cast<double>(subscribers_.size()));
    if (!s->subscriptions_.empty()) {
      s->subscriptions_.clear();
      SubscriptionsChanged();
    }
    absl::MutexLock buffer_lock(&s->buffer_mu_);
    freed = s->buffered_bytes_;
    s->buffer_.clear();
    s->buffered_samples_ = 0;
    s->buffered_bytes_ = 0;
    s->closed_ = true;
  }
  BufferedBytesChanged(-static_cast<int64_t>(freed));
}

void TailHub::Shutdown() {
  absl::MutexLock lock(&mu_);
  if (shut_down_) return;
  shut_down_ = true;
  for (const auto& s : subscribers_) {
    if (s->Close()) Schedule(s.get());
  }
}

void TailHub::SubscriptionsChanged() {
  flat_.clear();
  for (const auto& s : subscribers_) {
    s->hub_->mu_.AssertHeld();  // s->hub_ is this
    for (const auto& [id, matchers] : s->subscriptions_) flat_.push_back({s.get(), id, &matchers});
  }
  active_subscriptions_.store(flat_.size(), std::memory_order_relaxed);
  if (metrics_) metrics_->subscriptions.Set(static_cast<double>(flat_.size()));
  // Every earlier answer is stale; a wrapped generation counter could make
  // an old stamp look current, so stamps start over then.
  if (++generation_ == 0) {
    generation_ = 1;
    std::fill(stamps_.begin(), stamps_.end(), Stamp{});
  }
  match_sets_.assign(1, nullptr);
  interned_.clear();
  if (flat_.empty()) {  // nobody tails: give the memory back
    std::vector<Stamp>().swap(stamps_);
    infos_.clear();
    info_bytes_ = 0;
  }
}

std::shared_ptr<const TailSeriesInfo> TailHub::Info(storage::SeriesId id,
                                                    std::optional<storage::SeriesInfo>* looked_up) {
  if (auto it = infos_.find(id); it != infos_.end()) return it->second;
  if (!looked_up->has_value()) *looked_up = lookup_(id);
  if (!looked_up->has_value()) return nullptr;
  auto info = std::make_shared<TailSeriesInfo>();
  info->id = id;
  info->labels = (*looked_up)->labels;
  info->type = (*looked_up)->type;
  info->bytes = LabelBytes(info->labels);
  if (info_bytes_ + info->bytes > options_.max_cached_label_bytes) {
    infos_.clear();
    info_bytes_ = 0;
  }
  info_bytes_ += info->bytes;
  infos_.emplace(id, info);
  return info;
}

std::shared_ptr<const TailHub::MatchSet> TailHub::MatchSeries(storage::SeriesId id,
                                                              std::shared_ptr<const TailSeriesInfo>* info) {
  if (id == 0) return nullptr;
  if (id > stamps_.size()) stamps_.resize(std::max<size_t>(id, stamps_.size() * 2));
  Stamp& stamp = stamps_[id - 1];
  std::optional<storage::SeriesInfo> looked_up;
  if (stamp.generation != generation_) {
    looked_up = lookup_(id);
    std::vector<uint32_t> matching;
    if (looked_up) {
      for (uint32_t i = 0; i < flat_.size(); ++i) {
        if (flat_[i].subscriber->tenant_ == looked_up->tenant &&
            model::MatchesAll(*flat_[i].matchers, looked_up->labels)) {
          matching.push_back(i);
        }
      }
    }
    uint32_t index = 0;
    if (!matching.empty()) {
      if (match_sets_.size() >= kMaxMatchSets) {
        match_sets_.assign(1, nullptr);
        interned_.clear();
        ++generation_;  // answers of this generation pointed into what was cleared
        if (generation_ == 0) generation_ = 1;
      }
      auto [it, inserted] = interned_.try_emplace(std::move(matching), static_cast<uint32_t>(match_sets_.size()));
      if (inserted) {
        auto set = std::make_shared<MatchSet>();
        for (uint32_t i : it->first) {
          const Flat& f = flat_[i];
          if (set->empty() || set->back().subscriber != f.subscriber) {
            set->push_back({f.subscriber, std::make_shared<std::vector<uint64_t>>()});
          }
          std::const_pointer_cast<std::vector<uint64_t>>(set->back().ids)->push_back(f.id);
        }
        match_sets_.push_back(std::move(set));
      }
      index = it->second;
    }
    stamp = {generation_, index};
  }
  if (stamp.match == 0) return nullptr;
  *info = Info(id, &looked_up);
  return *info ? match_sets_[stamp.match] : nullptr;
}

void TailHub::PublishMatching(const storage::AppendBatch& batch, const storage::AppendResult& result) {
  struct Hit {
    storage::SeriesId id;
    size_t index;  // in batch.series
    std::shared_ptr<const MatchSet> matches;
    std::shared_ptr<const TailSeriesInfo> info;
  };
  absl::MutexLock lock(&mu_);
  if (flat_.empty()) return;
  std::vector<Hit> hits;
  for (size_t i = 0; i < batch.series.size(); ++i) {
    const storage::SeriesSamples& ss = batch.series[i];
    if (ss.samples.empty()) continue;
    std::shared_ptr<const TailSeriesInfo> info;
    auto matches = MatchSeries(ss.id, &info);
    if (matches) hits.push_back({ss.id, i, std::move(matches), std::move(info)});
  }
  if (hits.empty()) return;
  // A series may appear more than once in a batch (the store joins its
  // entries): group them, keeping batch order within a series.
  if (!std::is_sorted(hits.begin(), hits.end(), [](const Hit& a, const Hit& b) { return a.id <= b.id; })) {
    std::stable_sort(hits.begin(), hits.end(), [](const Hit& a, const Hit& b) { return a.id < b.id; });
  }
  std::vector<const storage::SeriesSamples*> runs;
  uint64_t missed = 0;  // counted once per batch: a stalled subscriber costs little
  for (size_t i = 0; i < hits.size();) {
    const Hit& hit = hits[i];
    runs.clear();
    for (; i < hits.size() && hits[i].id == hit.id; ++i) runs.push_back(&batch.series[hits[i].index]);
    if (Find(result.deleted, hit.id) > 0) continue;
    StoredSamples samples(runs, Find(result.too_old, hit.id));
    if (samples.size() == 0) continue;
    for (const Match& m : *hit.matches) {
      if (m.subscriber->Append(
              hit.info, m.ids, samples.size(), [&samples] { return samples.Get(); }, &missed)) {
        Schedule(m.subscriber);
      }
    }
  }
  if (missed > 0) Missed(missed);
}

void TailHub::Schedule(TailSubscriber* s) {
  absl::MutexLock lock(&ready_mu_);
  s->hub_->ready_mu_.AssertHeld();  // s->hub_ is this
  if (s->scheduled_ || stop_) return;
  s->scheduled_ = true;
  ready_.push_back(s->shared_from_this());
  ready_cv_.Signal();
}

void TailHub::DeliveryLoop() {
  for (;;) {
    std::shared_ptr<TailSubscriber> s;
    {
      absl::MutexLock lock(&ready_mu_);
      while (!stop_ && ready_.empty()) ready_cv_.Wait(&ready_mu_);
      if (stop_) return;
      s = std::move(ready_.front());
      ready_.pop_front();
      s->hub_->ready_mu_.AssertHeld();  // s->hub_ is this
      s->scheduled_ = false;
    }
    if (auto listener = s->listener_.lock()) listener->OnTailReady();
  }
}

void TailHub::Delivered(uint64_t samples) {
  if (samples == 0) return;
  delivered_.fetch_add(samples, std::memory_order_relaxed);
  if (metrics_) metrics_->delivered.Increment(static_cast<double>(samples));
}

void TailHub::Missed(uint64_t samples) {
  missed_.fetch_add(samples, std::memory_order_relaxed);
  if (metrics_) metrics_->missed.Increment(static_cast<double>(samples));
}

void TailHub::BufferedBytesChanged(int64_t delta) {
  if (delta == 0) return;
  const int64_t now = buffered_bytes_.fetch_add(delta, std::memory_order_relaxed) + delta;
  int64_t peak = peak_buffered_bytes_.load(std::memory_order_relaxed);
  while (now > peak && !peak_buffered_bytes_.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
  if (metrics_) metrics_->buffered_bytes.Increment(static_cast<double>(delta));
}

TailStats TailHub::Stats() const {
  TailStats st;
  {
    absl::MutexLock lock(&mu_);
    st.subscribers = subscribers_.size();
    st.subscriptions = flat_.size();
  }
  st.samples_delivered = delivered_.load(std::memory_order_relaxed);
  st.samples_missed = missed_.load(std::memory_order_relaxed);
  st.buffered_bytes = static_cast<uint64_t>(std::max<int64_t>(0, buffered_bytes_.load(std::memory_order_relaxed)));
  st.peak_buffered_bytes = static_cast<uint64_t>(peak_buffered_bytes_.load(std::memory_order_relaxed));
  return st;
}

}  // namespace sheaf::daemon
