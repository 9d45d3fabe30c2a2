// The write path: series creation and deletion, appends, heads.
#include <algorithm>
#include <deque>
#include <span>

#include "absl/cleanup/cleanup.h"
#include "common/log.h"
#include "storage/sample_codec.h"
#include "storage/store.h"

namespace sheaf::storage {
namespace {

// The 'I' entry's value: tenant (4), type (1), canonical labels.
std::string SeriesByIdValue(TenantId tenant, uint8_t type, const std::string& canonical) {
  std::string v = TenantLabelsKey(tenant, {});
  v.push_back(static_cast<char>(type));
  return v + canonical;
}

// Time between two disjoint ranges, a before b.
uint64_t Gap(const keys::KeptRange& a, const keys::KeptRange& b) {
  return static_cast<uint64_t>(b.from_ms) - static_cast<uint64_t>(a.to_ms);
}

}  // namespace

void RocksSeriesStore::NoteWrite(const rocksdb::Status& s) {
  absl::MutexLock lock(&write_error_mu_);
  if (s.ok()) {
    write_error_ = absl::OkStatus();
  } else if (s.IsIOError() || s.IsNoSpace()) {
    write_error_ = FromRocks(s, "writing to the store");
  }
}

absl::StatusOr<SeriesId> RocksSeriesStore::GetOrCreateSeries(TenantId tenant, const Labels& labels, MetricType type) {
  const std::string canonical = keys::CanonicalLabels(labels);
  std::string key = TenantLabelsKey(tenant, canonical);
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = by_labels_.find(key);
    if (it != by_labels_.end()) return it->second;
  }
  if (auto disk = CheckDiskSpace(); !disk.ok()) return disk;
  // Creations are serialized by create_mu_ alone: readers and appends of
  // existing series never wait for this write (which may queue behind a
  // synced one).
  absl::MutexLock create(&create_mu_);
  SeriesId id;
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = by_labels_.find(key);
    if (it != by_labels_.end()) return it->second;
    if (entries_.size() >= options_.max_series) {
      return absl::ResourceExhaustedError("series limit of " + std::to_string(options_.max_series) +
                                          " reached; raise --max-series or drop high-cardinality labels");
    }
    id = entries_.size() + 1;
  }
  rocksdb::WriteBatch wb;
  std::string value;
  keys::PutFixed64BE(value, id);
  value.push_back(static_cast<char>(type));
  wb.Put(index_, keys::SeriesByLabelsKey(tenant, canonical), value);
  wb.Put(index_, keys::SeriesByIdKey(id), SeriesByIdValue(tenant, static_cast<uint8_t>(type), canonical));
  for (const Label& l : labels) wb.Put(index_, keys::PostingKey(tenant, l.name, l.value, id), "");
  std::string next;
  keys::PutFixed64BE(next, id + 1);
  wb.Put(meta_, keys::NextSeriesIdKey(), next);
  // Not synced on its own: the WAL is sequential, so the synced write of
  // the samples that use this id makes it durable too.
  auto s = db_->Write(rocksdb::WriteOptions(), &wb);
  NoteWrite(s);
  if (!s.ok()) return FromRocks(s, "creating series");
  absl::MutexLock lock(&mu_);
  entries_.push_back(Entry{tenant, false, canonical, type, kMaxTsUnknown, kMaxTsUnknown, {}});
  by_labels_.emplace(std::move(key), id);
  ++tenant_series_[tenant];
  return id;
}

std::optional<SeriesId> RocksSeriesStore::FindSeries(TenantId tenant, const Labels& labels) {
  const std::string key = TenantLabelsKey(tenant, keys::CanonicalLabels(labels));
  absl::ReaderMutexLock lock(&mu_);
  auto it = by_labels_.find(key);
  if (it == by_labels_.end()) return std::nullopt;
  return it->second;
}

uint64_t RocksSeriesStore::SeriesCount(TenantId tenant) {
  absl::ReaderMutexLock lock(&mu_);
  auto it = tenant_series_.find(tenant);
  return it == tenant_series_.end() ? 0 : it->second;
}

absl::StatusOr<AppendResult> RocksSeriesStore::Append(const AppendBatch& batch) {
  if (auto disk = CheckDiskSpace(); !disk.ok()) return disk;
  // Memory stays bounded: past twice the head budget, an append waits for
  // the background cut (backpressure), and is refused as retryable if the
  // cut fails or takes too long.
  if (head_samples_ >= 2 * options_.max_head_samples) {
    ScheduleMaintenance();
    absl::MutexLock lock(&bg_mu_);
    const absl::Time deadline = absl::Now() + absl::Seconds(5);
    while (head_samples_ >= 2 * options_.max_head_samples && bg_error_.ok()) {
      if (bg_cv_.WaitWithDeadline(&bg_mu_, deadline)) break;
    }
    if (head_samples_ >= 2 * options_.max_head_samples) {
      std::string why = bg_error_.ok() ? "maintenance is behind" : std::string(bg_error_.message());
      return absl::UnavailableError("the store's in-memory head is full (" + std::to_string(head_samples_.load()) +
                                    " samples) because it cannot be cut into blocks: " + why);
    }
  }
  absl::MutexLock append_lock(&append_mu_);
  AppendResult result;
  const bool idempotent = !batch.agent_id.empty();
  // The agent's applied set as it will be after this batch (when it is not
  // a duplicate); written in the same WriteBatch as the samples.
  SequenceSet applied;
  bool known_agent = false;  // meta holds a set for it already
  const std::string agent_key = idempotent ? keys::AgentSequenceKey(batch.tenant, batch.agent_id) : std::string();
  if (idempotent) {
    auto stored = StoredAgentSet(agent_key, &known_agent);
    if (!stored.ok()) return stored.status();
    applied = *stored;
    CloseBelowFloor(applied, batch.sequence, batch.sequence_floor);
    if (applied.Contains(batch.sequence)) {
      result.duplicate = true;
      result.durable_sequence = applied.Max();
      // The agent is active: keep its set at hand (a re-send after an
      // eviction reads meta once).
      if (known_agent) CacheAgentSet(agent_key, *std::move(stored), false);
      return result;
    }
    applied.Insert(batch.sequence);
    // An agent that skips sequences without a floor (an old agent whose
    // queue overflowed) leaves gaps that never fill; past this many ranges
    // the oldest gaps are closed (their batches would count as duplicates).
    constexpr size_t kMaxSequenceRanges = 64;
    if (uint64_t closed = applied.Bound(kMaxSequenceRanges); closed > 0) {
      LogWarn("agent \"{}\": more than {} runs of applied batch sequences; {} never-sent sequences below {} are "
              "now taken as applied",
              batch.agent_id, kMaxSequenceRanges, closed, applied.ranges().front().last + 1);
    }
  }
  // A series named twice in one batch is joined into one run of samples,
  // so each (series, timestamp) is counted once. Repeats are rare: they are
  // found with a sort of the ids, and only then are samples copied.
  struct Run {
    SeriesId id;
    const std::vector<Sample>* samples;
    std::vector<Sample>* owned = nullptr;  // set once the run is a joined copy
  };
  std::vector<Run> runs;
  runs.reserve(batch.series.size());
  for (const SeriesSamples& ss : batch.series) runs.push_back({ss.id, &ss.samples});
  std::deque<std::vector<Sample>> joined;  // owns joined runs (a deque: references stay valid)
  auto has_repeats = [&runs] {
    // Strictly increasing ids (how clients usually send them) cannot repeat.
    bool increasing = true;
    for (size_t i = 1; i < runs.size() && increasing; ++i) increasing = runs[i - 1].id < runs[i].id;
    if (increasing) return false;
    std::vector<SeriesId> ids;
    ids.reserve(runs.size());
    for (const Run& r : runs) ids.push_back(r.id);
    std::sort(ids.begin(), ids.end());
    return std::adjacent_find(ids.begin(), ids.end()) != ids.end();
  };
  {
    if (has_repeats()) {
      std::vector<Run> distinct;
      std::unordered_map<SeriesId, size_t> position;
      for (const Run& r : runs) {
        auto [it, inserted] = position.try_emplace(r.id, distinct.size());
        if (inserted) {
          distinct.push_back(r);
          continue;
        }
        Run& target = distinct[it->second];
        if (target.owned == nullptr) {
          target.owned = &joined.emplace_back(*target.samples);
          target.samples = target.owned;
        }
        target.owned->insert(target.owned->end(), r.samples->begin(), r.samples->end());
      }
      runs = std::move(distinct);
    }
  }

  // The entries, looked up under mu_ (which is not held across the reads
  // below: series creation never waits for them). What is read of an entry
  // afterwards (deleted, max_ts, head) changes only under append_mu_, held.
  std::vector<Entry*> entries;
  entries.reserve(runs.size());
  {
    absl::ReaderMutexLock lock(&mu_);
    for (const Run& run : runs) {
      if (run.id == 0 || run.id > entries_.size() || entries_[run.id - 1].tenant != batch.tenant) {
        return absl::InvalidArgumentError("unknown series id " + std::to_string(run.id));
      }
      entries.push_back(&entries_[run.id - 1]);
    }
  }
  const int64_t now = options_.now_ms();
  // Backfill stores what some retention still keeps, however old.
  const int64_t oldest_kept = batch.backfill ? OldestRetained(now) : INT64_MIN;
  int64_t backfill_from = INT64_MAX, backfill_to = INT64_MIN;  // stored backfilled samples
  rocksdb::WriteBatch wb;
  std::string log_record;
  // Applied to the heads only once the write succeeded.
  std::vector<std::pair<Entry*, std::vector<Sample>>> to_head;
  std::vector<Sample> sorted, in_head, maybe_in_blocks, to_blocks;
  std::vector<int64_t> replaced;
  for (size_t r = 0; r < runs.size(); ++r) {
    const SeriesId id = runs[r].id;
    const std::vector<Sample>* samples = runs[r].samples;
    Entry& e = *entries[r];
    if (e.deleted) {
      result.deleted.emplace_back(id, samples->size());
      continue;
    }
    if (auto st = EnsureMaxTs(id, e); !st.ok()) return st;
    // Sorted, and the last of equal timestamps kept (last write wins),
    // so each (series, timestamp) is counted once.
    sorted.assign(samples->begin(), samples->end());
    std::stable_sort(sorted.begin(), sorted.end(), ByTime);
    size_t kept = 0;
    for (size_t i = 0; i < sorted.size(); ++i) {
      if (i + 1 < sorted.size() && sorted[i + 1].timestamp_ms == sorted[i].timestamp_ms) continue;
      sorted[kept++] = sorted[i];
    }
    sorted.resize(kept);
    in_head.clear();
    maybe_in_blocks.clear();
    to_blocks.clear();
    uint64_t too_old = 0, beyond_retention = 0;
    const int64_t max_ts = e.max_ts;
    // Into the head, counted unless the head has the timestamp already.
    auto to_head_counted = [&](const Sample& x) {
      if (!std::binary_search(e.head.begin(), e.head.end(), x, ByTime)) ++result.samples_added;
      in_head.push_back(x);
    };
    for (const Sample& x : sorted) {
      if (x.timestamp_ms < oldest_kept) {
        ++beyond_retention;
        continue;
      }
      if (x.timestamp_ms > max_ts) {
        ++result.samples_added;
        in_head.push_back(x);
        continue;  // max_ts moves on below, after the write
      }
      if (!batch.backfill && max_ts != kNoSamples && x.timestamp_ms < max_ts - options_.out_of_order_window_ms) {
        ++too_old;
        continue;
      }
      if (x.timestamp_ms > e.blocks_max) {
        to_head_counted(x);
      } else {
        maybe_in_blocks.push_back(x);
      }
    }
    if (!maybe_in_blocks.empty()) {
      if (auto st = InBlocks(id, maybe_in_blocks, &replaced); !st.ok()) return st;
      for (const Sample& x : maybe_in_blocks) {
        if (std::binary_search(replaced.begin(), replaced.end(), x.timestamp_ms)) {
          to_blocks.push_back(x);  // a new value for a sample there: not counted again, nor rolled up
        } else {
          to_head_counted(x);
        }
      }
      std::sort(in_head.begin(), in_head.end(), ByTime);
    }
    if (too_old > 0) result.too_old.emplace_back(id, too_old);
    if (beyond_retention > 0) result.beyond_retention.emplace_back(id, beyond_retention);
    if (batch.backfill) {
      for (const auto* part : {&in_head, &to_blocks}) {
        if (part->empty()) continue;
        backfill_from = std::min(backfill_from, part->front().timestamp_ms);
        backfill_to = std::max(backfill_to, part->back().timestamp_ms);
      }
    }
    if (!in_head.empty()) {
      keys::AppendLogEntry(log_record, id, in_head.data(), in_head.size());
      to_head.emplace_back(&e, in_head);
    }
    if (!to_blocks.empty()) WriteBlocks(wb, id, e.type, to_blocks, replaced);
  }
  // Backfilled raw data outlives raw retention by its arrival, so that a
  // re-import is still recognised sample by sample (see KeepRaw).
  std::optional<std::vector<keys::KeptRange>> kept_raw;
  if (backfill_from <= backfill_to) {
    kept_raw = KeepRaw(backfill_from, backfill_to, now);
    if (kept_raw) wb.Put(meta_, keys::KeptRawKey(), keys::EncodeKeptRanges(*kept_raw));
  }
  const uint64_t log_seq = next_log_seq_;
  if (!log_record.empty()) wb.Put(log_, keys::LogKey(log_seq), log_record);
  std::string count;
  keys::PutFixed64BE(count, sample_count_ + result.samples_added);
  wb.Put(meta_, keys::SampleCountKey(), count);
  if (idempotent) {
    // One run from 1 (every agent that sends in order) keeps the 8-byte
    // high-water form that daemons before sequence sets read.
    std::string seq;
    if (applied.ranges().size() == 1 && applied.ranges()[0].first == 1) {
      keys::PutFixed64BE(seq, applied.Max());
    } else {
      seq = applied.Encode();
    }
    wb.Put(meta_, agent_key, seq);
  }
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync;
  auto s = db_->Write(wo, &wb);
  NoteWrite(s);
  if (!s.ok()) return FromRocks(s, "writing samples");
  if (!log_record.empty()) ++next_log_seq_;
  sample_count_ += result.samples_added;
  if (kept_raw) {
    absl::MutexLock lock(&kept_mu_);
    kept_raw_ = *std::move(kept_raw);
  }
  {
    absl::MutexLock lock(&head_mu_);
    for (auto& [e, samples] : to_head) {
      for (const Sample& x : samples) AddToHead(*e, x);
    }
  }
  if (idempotent) {
    result.durable_sequence = applied.Max();
    CacheAgentSet(agent_key, std::move(applied), !known_agent);
  }
  if (head_samples_ >= options_.max_head_samples ||
      options_.now_ms() - last_cut_ms_ >= options_.head_flush_interval_ms) {
    ScheduleMaintenance();  // the cut runs on the background thread
  }
  return result;
}

absl::StatusOr<uint64_t> RocksSeriesStore::DeleteSeries(TenantId tenant, const std::vector<Matcher>& matchers) {
  auto ids = Select(tenant, matchers);
  if (!ids.ok()) return ids.status();
  // No append or cut interleaves: the heads of the deleted series are
  // dropped together with their blocks.
  absl::MutexLock append_lock(&append_mu_);
  absl::MutexLock create(&create_mu_);
  ForgetKnownBlocks();
  // Odd from here until every deleted series is unpublished (see Select).
  ++delete_generation_;
  absl::Cleanup done = [this] { ++delete_generation_; };
  uint64_t deleted = 0;
  for (SeriesId id : *ids) {
    std::string canonical;
    {
      absl::ReaderMutexLock lock(&mu_);
      const Entry& e = entries_[id - 1];
      if (e.deleted || e.tenant != tenant) continue;
      canonical = e.canonical;
    }
    auto labels = keys::DecodeCanonicalLabels(canonical);
    if (!labels) return absl::DataLossError("corrupt labels of series " + std::to_string(id));
    // The samples it held leave the exact count.
    uint64_t samples = 0;
    for (auto it = Read(id, INT64_MIN, INT64_MAX); it->Valid(); it->Next()) ++samples;
    rocksdb::WriteBatch wb;
    wb.Delete(index_, keys::SeriesByLabelsKey(tenant, canonical));
    wb.Put(index_, keys::SeriesByIdKey(id), SeriesByIdValue(tenant, kDeletedType, ""));
    for (const Label& l : *labels) wb.Delete(index_, keys::PostingKey(tenant, l.name, l.value, id));
    const std::string from = keys::SeriesTimeKey(id, INT64_MIN);
    const std::string to = keys::SeriesTimeKey(id + 1, INT64_MIN);
    wb.DeleteRange(samples_, from, to);
    for (auto* r : rollups_) wb.DeleteRange(r, from, to);
    std::string count;
    keys::PutFixed64BE(count, sample_count_ - std::min<uint64_t>(samples, sample_count_));
    wb.Put(meta_, keys::SampleCountKey(), count);
    rocksdb::WriteOptions wo;
    wo.sync = options_.sync;
    auto s = db_->Write(wo, &wb);
    NoteWrite(s);
    if (!s.ok()) return FromRocks(s, "deleting series");
    sample_count_ -= std::min<uint64_t>(samples, sample_count_);
    if (auto f = Fault("delete_series"); !f.ok()) return f;  // as a crash would: gone once reopened
    absl::MutexLock lock(&mu_);
    Entry& e = entries_[id - 1];
    by_labels_.erase(TenantLabelsKey(tenant, e.canonical));
    --tenant_series_[tenant];
    e.deleted = true;
    e.canonical.clear();
    absl::MutexLock head_lock(&head_mu_);
    head_samples_ -= e.head.size();
    e.head.clear();
    e.head.shrink_to_fit();
    ++deleted;
  }
  return deleted;
}

void RocksSeriesStore::AddToHead(Entry& e, const Sample& x) {
  if (e.head.empty() || x.timestamp_ms > e.head.back().timestamp_ms) {
    e.head.push_back(x);
    ++head_samples_;
  } else {
    auto it = std::lower_bound(e.head.begin(), e.head.end(), x, ByTime);
    if (it != e.head.end() && it->timestamp_ms == x.timestamp_ms) {
      it->value = x.value;
    } else {
      e.head.insert(it, x);
      ++head_samples_;
    }
  }
  e.max_ts = std::max(e.max_ts, x.timestamp_ms);
}

void RocksSeriesStore::WriteBlocks(rocksdb::WriteBatch& wb, SeriesId id, MetricType type,
                                   const std::vector<Sample>& samples, const std::vector<int64_t>& replaced) {
  size_t i = 0;
  while (i < samples.size()) {
    const int64_t w = keys::WindowStart(samples[i].timestamp_ms, options_.block_window_ms);
    size_t j = i;
    while (j < samples.size() && samples[j].timestamp_ms < w + options_.block_window_ms) ++j;
    wb.Merge(samples_, keys::SeriesTimeKey(id, w), EncodeBlock(std::span<const Sample>(&samples[i], j - i)));
    i = j;
  }
  // Already rolled up: before the watermark, and, while a roll-up is under
  // way, before its target for the series it has done.
  int64_t until = rolled_up_until_;
  if (rollup_target_ > until && (id < rollup_next_ || id > rollup_last_)) until = rollup_target_;
  std::vector<Sample> old;
  for (const Sample& x : samples) {
    if (x.timestamp_ms >= until) break;
    if (!std::binary_search(replaced.begin(), replaced.end(), x.timestamp_ms)) old.push_back(x);
  }
  if (!old.empty()) WriteRollups(wb, id, type, old);
}

void RocksSeriesStore::WriteRollups(rocksdb::WriteBatch& wb, SeriesId id, MetricType type,
                                    const std::vector<Sample>& samples) {
  for (size_t r = 0; r < options_.rollups.size(); ++r) {
    const int64_t res = options_.rollups[r].resolution_ms;
    RollupWindows windows = Aggregates(samples, res, type == MetricType::kCounter);
    const int64_t block_ms = RollupBlockMs(res);
    for (size_t i = 0; i < windows.size();) {
      const int64_t block = keys::WindowStart(windows[i].first, block_ms);
      size_t j = i;
      while (j < windows.size() && windows[j].first < block + block_ms) ++j;
      wb.Merge(rollups_[r], keys::SeriesTimeKey(id, block),
               EncodeRollupBlock(RollupWindows(windows.begin() + i, windows.begin() + j)));
      i = j;
    }
  }
}

absl::Status RocksSeriesStore::EnsureMaxTs(SeriesId id, Entry& e) {
  if (e.max_ts != kMaxTsUnknown) return absl::OkStatus();
  int64_t newest = kNoSamples;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), samples_));
  it->SeekForPrev(keys::SeriesTimeKey(id, INT64_MAX));
  if (it->Valid()) {
    auto k = keys::DecodeSeriesTimeKey(View(it->key()));
    if (k && k->id == id) {
      auto info = PeekBlock(View(it->value()));
      if (!info.ok()) return absl::DataLossError("corrupt block of series " + std::to_string(id));
      newest = info->last_ts;
    }
  } else if (!it->status().ok()) {
    return FromRocks(it->status(), "finding the newest sample");
  }
  e.blocks_max = newest;
  if (!e.head.empty()) newest = std::max(newest, e.head.back().timestamp_ms);
  e.max_ts = newest;
  return absl::OkStatus();
}

absl::Status RocksSeriesStore::InBlocks(SeriesId id, const std::vector<Sample>& samples,
                                        std::vector<int64_t>* present) {
  present->clear();
  std::vector<Sample> held;
  for (size_t i = 0; i < samples.size();) {
    const int64_t w = keys::WindowStart(samples[i].timestamp_ms, options_.block_window_ms);
    auto known = known_blocks_.find(id);
    if (known == known_blocks_.end() || known->second.window != w) {
      std::string block;
      auto s = db_->Get(rocksdb::ReadOptions(), samples_, keys::SeriesTimeKey(id, w), &block);
      if (!s.ok() && !s.IsNotFound()) return FromRocks(s, "checking for existing samples");
      held.clear();
      if (s.ok() && !DecodeBlockAppend(block, &held).ok()) {
        return absl::DataLossError("corrupt block of series " + std::to_string(id));
      }
      if (known_timestamps_ + held.size() > kMaxKnownTimestamps) ForgetKnownBlocks();
      KnownBlock& k = known_blocks_[id];
      known_timestamps_ += held.size() - k.timestamps.size();
      k.window = w;
      k.timestamps.clear();
      for (const Sample& x : held) k.timestamps.push_back(x.timestamp_ms);
      known = known_blocks_.find(id);
    }
    const std::vector<int64_t>& ts = known->second.timestamps;
    for (; i < samples.size() && samples[i].timestamp_ms < w + options_.block_window_ms; ++i) {
      if (std::binary_search(ts.begin(), ts.end(), samples[i].timestamp_ms))
        present->push_back(samples[i].timestamp_ms);
    }
  }
  return absl::OkStatus();
}

void RocksSeriesStore::ForgetKnownBlocks() {
  known_blocks_.clear();
  known_timestamps_ = 0;
}

int64_t RocksSeriesStore::OldestRetained(int64_t now) const {
  int64_t longest = options_.raw_retention_ms;
  for (const RollupSpec& r : options_.rollups) longest = std::max(longest, r.retention_ms);
  return now < INT64_MIN + longest ? INT64_MIN : now - longest;
}

std::optional<std::vector<keys::KeptRange>> RocksSeriesStore::KeepRaw(int64_t first_ts, int64_t last_ts, int64_t now) {
  const int64_t window = options_.block_window_ms;
  const int64_t keep_until = AddClamped(now, options_.raw_retention_ms);
  const int64_t last_block = keys::WindowStart(last_ts, window);
  keys::KeptRange add{keys::WindowStart(first_ts, window), AddClamped(last_block, window),
                      AddClamped(keep_until, kKeptRawSlackMs)};
  std::vector<keys::KeptRange> ranges;
  {
    absl::MutexLock lock(&kept_mu_);
    ranges = kept_raw_;
  }
  for (const keys::KeptRange& r : ranges) {
    if (r.from_ms <= add.from_ms && r.to_ms >= add.to_ms && r.until_ms >= keep_until) return std::nullopt;
  }
  ranges.push_back(add);
  std::sort(ranges.begin(), ranges.end(), [](const auto& a, const auto& b) { return a.from_ms < b.from_ms; });
  std::vector<keys::KeptRange> merged;
  auto join = [](keys::KeptRange& into, const keys::KeptRange& r) {
    into.to_ms = std::max(into.to_ms, r.to_ms);
    into.until_ms = std::max(into.until_ms, r.until_ms);
  };
  for (const keys::KeptRange& r : ranges) {
    if (!merged.empty() && r.from_ms <= merged.back().to_ms) {
      join(merged.back(), r);
    } else {
      merged.push_back(r);
    }
  }
  // Bounded: the two ranges with the smallest gap between them become one.
  while (merged.size() > kMaxKeptRanges) {
    size_t best = 0;
    for (size_t i = 1; i + 1 < merged.size(); ++i) {
      if (Gap(merged[i], merged[i + 1]) < Gap(merged[best], merged[best + 1])) best = i;
    }
    join(merged[best], merged[best + 1]);
    merged.erase(merged.begin() + best + 1);
  }
  return merged;
}

}  // namespace sheaf::storage
