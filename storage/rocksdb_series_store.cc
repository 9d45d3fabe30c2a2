// SeriesStore on RocksDB. Key layouts: storage/key_codec.h.
//
// Write path. Agents send one sample per series per batch, so per-sample
// RocksDB entries would cost a memtable insert per sample. Instead each
// batch is one log record (the "log" column family) written in the same
// WriteBatch as the agent's sequence and the sample count, and its samples
// join the series' in-memory head. Heads are cut into compressed blocks
// (merge operands of the "samples" column family) together with their
// rollup aggregates, and the log records they came from are deleted, in one
// atomic write: when the heads hold max_head_samples, every
// head_flush_interval_ms, and on Flush(). Opening replays the log into the
// heads, so an acknowledged sample is in the log or in a block, never lost
// and never in both.
//
// Out-of-order samples (within out_of_order_window_ms of the series' newest)
// go into the head if they fall inside its time range, otherwise straight
// into their block as a merge operand. Every sample in a block is older than
// every sample in its series' head.
//
// Rollups are built by rolling up raw blocks once they are
// downsample_after_ms old, a slab of time at a time, up to a watermark kept
// in meta ("rolled up until"); the raw retention filter never drops raw data
// past the watermark, and reads compute windows after it from raw samples.
// So fresh data costs its raw bytes only. A late sample older than the
// watermark adds its rollup operands at once.
#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/listener.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>
#include <rocksdb/write_buffer_manager.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <span>
#include <filesystem>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>

#include "storage/key_codec.h"
#include "common/clock.h"
#include "storage/rocksdb_operators.h"
#include "storage/sample_codec.h"
#include "storage/series_store.h"

namespace sheaf::storage {
namespace {

using keys::kDefaultTenant;

absl::Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return absl::OkStatus();
  std::string msg = std::string(what) + ": " + s.ToString();
  if (s.IsNotFound()) return absl::NotFoundError(msg);
  if (s.IsCorruption()) return absl::DataLossError(msg);
  if (s.IsInvalidArgument()) return absl::InvalidArgumentError(msg);
  if (s.IsBusy() || s.IsTimedOut() || s.IsTryAgain()) return absl::UnavailableError(msg);
  if (s.IsNoSpace()) return absl::ResourceExhaustedError(msg);
  return absl::InternalError(msg);
}

std::string_view View(const rocksdb::Slice& s) { return std::string_view(s.data(), s.size()); }

constexpr int64_t kMaxTsUnknown = INT64_MIN;
constexpr int64_t kNoSamples = INT64_MIN + 1;

bool ByTime(const Sample& a, const Sample& b) { return a.timestamp_ms < b.timestamp_ms; }

// Calls fn(window_start, first, n) for each run of `samples` (sorted) that
// falls into one window of `window_ms`.
template <typename Fn>
void ForEachWindow(const std::vector<Sample>& samples, int64_t window_ms, Fn fn) {
  size_t i = 0;
  while (i < samples.size()) {
    int64_t w = keys::WindowStart(samples[i].timestamp_ms, window_ms);
    size_t j = i;
    while (j < samples.size() && samples[j].timestamp_ms < w + window_ms) ++j;
    fn(w, &samples[i], j - i);
    i = j;
  }
}

// Rollup windows are stored in blocks of this many windows per key (a day
// of 1m windows, two months of 1h windows).
constexpr int64_t kRollupBlockWindows = 1440;
int64_t RollupBlockMs(int64_t resolution_ms) { return resolution_ms * kRollupBlockWindows; }

// Counts slowdowns and stops of writes (compaction falling behind).
class StallCounter : public rocksdb::EventListener {
 public:
  void OnStallConditionsChanged(const rocksdb::WriteStallInfo& info) override {
    if (info.condition.cur != rocksdb::WriteStallCondition::kNormal) ++stalls;
  }
  std::atomic<uint64_t> stalls{0};
};

// One series' blocks up to an upper key bound (decoded one at a time, kept
// to [start, end]), then its head snapshot.
class BlockSampleIterator : public SampleIterator {
 public:
  BlockSampleIterator(std::unique_ptr<rocksdb::Iterator> it, std::string upper, std::vector<Sample> head,
                       int64_t start, int64_t end)
      : it_(std::move(it)), upper_(std::move(upper)), head_(std::move(head)), start_(start), end_(end) {
    Fill();
  }
  bool Valid() const override { return pos_ < buffer_.size(); }
  void Next() override {
    if (++pos_ >= buffer_.size()) Fill();
  }
  Sample sample() const override { return buffer_[pos_]; }
  absl::Status status() const override { return status_; }

 private:
  void Fill() {
    buffer_.clear();
    pos_ = 0;
    while (buffer_.empty() && it_ && it_->Valid() && View(it_->key()) < upper_) {
      block_.clear();
      if (auto s = DecodeBlockAppend(View(it_->value()), &block_); !s.ok()) {
        status_ = absl::DataLossError("corrupt block: " + std::string(s.message()));
        it_.reset();
        return;
      }
      for (const Sample& x : block_) {
        if (x.timestamp_ms >= start_ && x.timestamp_ms <= end_) buffer_.push_back(x);
      }
      it_->Next();
    }
    if (it_ && (!it_->Valid() || View(it_->key()) >= upper_)) {
      if (!it_->status().ok()) status_ = FromRocks(it_->status(), "reading blocks");
      it_.reset();
    }
    if (buffer_.empty() && !it_ && !head_done_) {
      head_done_ = true;
      buffer_ = std::move(head_);
    }
  }

  std::unique_ptr<rocksdb::Iterator> it_;
  std::string upper_;
  std::vector<Sample> head_;
  int64_t start_, end_;
  std::vector<Sample> block_, buffer_;
  size_t pos_ = 0;
  bool head_done_ = false;
  absl::Status status_;
};


class RocksSeriesStore : public SeriesStore {
 public:
  ~RocksSeriesStore() override {
    if (!db_) return;  // Open failed
    // Handles must go before the DB (RocksDB asserts on it).
    for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h);
    db_->Close().PermitUncheckedError();
  }

  absl::Status Init(const StoreOptions& options) {
    options_ = options;
    if (!options_.now_ms) options_.now_ms = WallClockMs;
    if (options_.block_window_ms <= 0 || options_.out_of_order_window_ms < 0) {
      return absl::InvalidArgumentError("block window must be > 0 and out-of-order window >= 0");
    }
    for (const RollupSpec& r : options_.rollups) {
      // Roll-up slabs are whole blocks; a window must not straddle two.
      if (r.resolution_ms <= 0 || options_.block_window_ms % r.resolution_ms != 0) {
        return absl::InvalidArgumentError("rollup resolution " + std::to_string(r.resolution_ms) +
                                          " ms must divide the block window of " +
                                          std::to_string(options_.block_window_ms) + " ms");
      }
    }
    std::error_code ec;
    std::filesystem::create_directories(options.path, ec);
    if (ec) {
      return absl::FailedPreconditionError("cannot create data directory " + options.path + ": " + ec.message());
    }

    rocksdb::Options db_options;
    db_options.create_if_missing = true;
    db_options.create_missing_column_families = true;
    db_options.max_background_jobs = 2;
    db_options.write_buffer_manager = std::make_shared<rocksdb::WriteBufferManager>(options.write_buffer_bytes);
    stalls_ = std::make_shared<StallCounter>();
    db_options.listeners.push_back(stalls_);
    block_cache_ = rocksdb::NewLRUCache(options.block_cache_bytes);
    rocksdb::BlockBasedTableOptions table;
    table.block_cache = block_cache_;
    auto base = [&] {
      rocksdb::ColumnFamilyOptions cf;
      cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
      cf.compression = rocksdb::kLZ4Compression;
      cf.bottommost_compression = rocksdb::kZSTD;
      return cf;
    };
    std::vector<rocksdb::ColumnFamilyDescriptor> families = {
        {rocksdb::kDefaultColumnFamilyName, base()},
        {keys::kIndexFamily, base()},
    };
    rocksdb::ColumnFamilyOptions samples_cf = base();
    samples_cf.merge_operator = NewBlockMergeOperator();
    // Raw data goes only once it is rolled up (or if there are no rollups).
    // NOTE: reads rolled_up_until_, loaded before any compaction can start.
    samples_cf.compaction_filter_factory = NewRetentionFilterFactory(options_.block_window_ms, [this] {
      int64_t cutoff = options_.now_ms() - options_.raw_retention_ms;
      return options_.rollups.empty() ? cutoff : std::min(cutoff, rolled_up_until_.load());
    });
    families.push_back({keys::kSamplesFamily, samples_cf});
    rocksdb::ColumnFamilyOptions log_cf = base();
    log_cf.compression = rocksdb::kNoCompression;  // short-lived: deleted at the next head flush
    families.push_back({keys::kLogFamily, log_cf});
    for (const RollupSpec& r : options_.rollups) {
      rocksdb::ColumnFamilyOptions cf = base();
      cf.merge_operator = NewRollupMergeOperator();
      const int64_t retention = r.retention_ms;
      cf.compaction_filter_factory = NewRetentionFilterFactory(
          RollupBlockMs(r.resolution_ms), [this, retention] { return options_.now_ms() - retention; });
      families.push_back({keys::RollupFamily(r.resolution_ms), cf});
    }
    rocksdb::DB* db = nullptr;
    auto s = rocksdb::DB::Open(rocksdb::DBOptions(db_options), options.path, families, &handles_, &db);
    if (!s.ok()) {
      std::string hint = s.IsIOError() && s.ToString().find("lock") != std::string::npos
                             ? " (is another sheafd using this data directory?)"
                             : "";
      return FromRocks(s, "opening store at " + options.path + hint);
    }
    db_.reset(db);
    meta_ = handles_[0];
    index_ = handles_[1];
    samples_ = handles_[2];
    log_ = handles_[3];
    rollups_.assign(handles_.begin() + 4, handles_.end());
    last_flush_ms_ = options_.now_ms();
    if (auto st = Load(); !st.ok()) return st;
    return ReplayLog();
  }

  absl::StatusOr<SeriesId> GetOrCreateSeries(const Labels& labels, MetricType type) override {
    std::string canonical = keys::CanonicalLabels(labels);
    {
      std::shared_lock lock(mu_);
      auto it = by_labels_.find(canonical);
      if (it != by_labels_.end()) return it->second;
    }
    std::unique_lock lock(mu_);
    auto it = by_labels_.find(canonical);
    if (it != by_labels_.end()) return it->second;
    if (entries_.size() >= options_.max_series) {
      return absl::ResourceExhaustedError("series limit of " + std::to_string(options_.max_series) +
                                          " reached; raise --max-series or drop high-cardinality labels");
    }
    SeriesId id = entries_.size() + 1;
    rocksdb::WriteBatch wb;
    std::string value;
    keys::PutFixed64BE(value, id);
    value.push_back(static_cast<char>(type));
    wb.Put(index_, keys::SeriesByLabelsKey(kDefaultTenant, canonical), value);
    std::string reverse(4, '\0');  // tenant
    reverse.push_back(static_cast<char>(type));
    reverse += canonical;
    wb.Put(index_, keys::SeriesByIdKey(id), reverse);
    for (const Label& l : labels) wb.Put(index_, keys::PostingKey(kDefaultTenant, l.name, l.value, id), "");
    std::string next;
    keys::PutFixed64BE(next, id + 1);
    wb.Put(meta_, keys::NextSeriesIdKey(), next);
    // Not synced on its own: the WAL is sequential, so the synced write of
    // the samples that use this id makes it durable too.
    auto s = db_->Write(rocksdb::WriteOptions(), &wb);
    if (!s.ok()) return FromRocks(s, "creating series");
    entries_.push_back(Entry{canonical, type, kMaxTsUnknown, {}});
    by_labels_.emplace(std::move(canonical), id);
    return id;
  }

  absl::StatusOr<AppendResult> Append(const AppendBatch& batch) override {
    std::lock_guard append_lock(append_mu_);
    AppendResult result;
    const bool idempotent = !batch.agent_id.empty();
    if (idempotent) {
      uint64_t seq = AgentSequence(batch.agent_id);
      if (batch.sequence <= seq) {
        result.duplicate = true;
        result.durable_sequence = seq;
        return result;
      }
    }
    rocksdb::WriteBatch wb;
    std::string log_record;
    // Applied to the heads only once the write succeeded.
    std::vector<std::pair<Entry*, std::vector<Sample>>> to_head;
    {
      std::shared_lock lock(mu_);
      std::vector<Sample> sorted, in_head, to_blocks;
      for (const SeriesSamples& ss : batch.series) {
        if (ss.id == 0 || ss.id > entries_.size()) {
          return absl::InvalidArgumentError("unknown series id " + std::to_string(ss.id));
        }
        Entry& e = entries_[ss.id - 1];
        if (auto st = EnsureMaxTs(ss.id, e); !st.ok()) return st;
        // Sorted, and the last of equal timestamps kept (last write wins),
        // so each (series, timestamp) is counted once.
        sorted.assign(ss.samples.begin(), ss.samples.end());
        std::stable_sort(sorted.begin(), sorted.end(), ByTime);
        size_t kept = 0;
        for (size_t i = 0; i < sorted.size(); ++i) {
          if (i + 1 < sorted.size() && sorted[i + 1].timestamp_ms == sorted[i].timestamp_ms) continue;
          sorted[kept++] = sorted[i];
        }
        sorted.resize(kept);
        in_head.clear();
        to_blocks.clear();
        uint64_t too_old = 0;
        int64_t max_ts = e.max_ts;
        const int64_t head_first = e.head.empty() ? INT64_MAX : e.head.front().timestamp_ms;
        for (const Sample& x : sorted) {
          if (x.timestamp_ms > max_ts) {
            ++result.samples_added;
            in_head.push_back(x);
            continue;  // max_ts moves on below, after the write
          }
          if (max_ts != kNoSamples && x.timestamp_ms < max_ts - options_.out_of_order_window_ms) {
            ++too_old;
            continue;
          }
          if (x.timestamp_ms >= head_first) {
            if (!std::binary_search(e.head.begin(), e.head.end(), x, ByTime)) ++result.samples_added;
            in_head.push_back(x);
          } else {
            auto exists = InBlocks(ss.id, x.timestamp_ms);
            if (!exists.ok()) return exists.status();
            if (!*exists) ++result.samples_added;
            to_blocks.push_back(x);
          }
        }
        if (too_old > 0) result.too_old.emplace_back(ss.id, too_old);
        if (!in_head.empty()) {
          keys::AppendLogEntry(log_record, ss.id, in_head.data(), in_head.size());
          to_head.emplace_back(&e, in_head);
        }
        if (!to_blocks.empty()) WriteBlocks(wb, ss.id, e.type, to_blocks);
      }
    }
    uint64_t log_seq = next_log_seq_;
    if (!log_record.empty()) wb.Put(log_, keys::LogKey(log_seq), log_record);
    std::string count;
    keys::PutFixed64BE(count, sample_count_ + result.samples_added);
    wb.Put(meta_, keys::SampleCountKey(), count);
    if (idempotent) {
      std::string seq;
      keys::PutFixed64BE(seq, batch.sequence);
      wb.Put(meta_, keys::AgentSequenceKey(kDefaultTenant, batch.agent_id), seq);
    }
    rocksdb::WriteOptions wo;
    wo.sync = options_.sync;
    auto s = db_->Write(wo, &wb);
    if (!s.ok()) return FromRocks(s, "writing samples");
    if (!log_record.empty()) ++next_log_seq_;
    sample_count_ += result.samples_added;
    {
      std::lock_guard lock(head_mu_);
      for (auto& [e, samples] : to_head) {
        for (const Sample& x : samples) AddToHead(*e, x);
      }
    }
    if (idempotent) {
      std::lock_guard lock(agents_mu_);
      agent_seq_[batch.agent_id] = batch.sequence;
      result.durable_sequence = batch.sequence;
    }
    if (head_samples_ >= options_.max_head_samples ||
        options_.now_ms() - last_flush_ms_ >= options_.head_flush_interval_ms) {
      // The batch is durable already; a failed cut leaves it in the log.
      (void)CutAndRollUp();
    }
    return result;
  }

  uint64_t AgentSequence(std::string_view agent_id) override {
    std::lock_guard lock(agents_mu_);
    auto it = agent_seq_.find(std::string(agent_id));
    return it == agent_seq_.end() ? 0 : it->second;
  }

  absl::StatusOr<std::vector<SeriesId>> Select(const std::vector<Matcher>& matchers) override {
    // Candidates from the postings of every `name="value"` matcher
    // (intersected); without one, every series. Then each candidate is
    // checked against all matchers.
    std::optional<std::vector<SeriesId>> candidates;
    for (const Matcher& m : matchers) {
      if (m.op() != Matcher::Op::kEqual || m.value().empty()) continue;
      auto postings = Postings(m.name(), m.value());
      if (!postings.ok()) return postings.status();
      if (!candidates) {
        candidates = *std::move(postings);
      } else {
        std::vector<SeriesId> both;
        std::set_intersection(candidates->begin(), candidates->end(), postings->begin(), postings->end(),
                              std::back_inserter(both));
        candidates = std::move(both);
      }
      if (candidates->empty()) return std::vector<SeriesId>{};
    }
    std::vector<SeriesId> out;
    std::shared_lock lock(mu_);
    auto consider = [&](SeriesId id) {
      auto labels = keys::DecodeCanonicalLabels(entries_[id - 1].canonical);
      if (labels && model::MatchesAll(matchers, *labels)) out.push_back(id);
    };
    if (candidates) {
      for (SeriesId id : *candidates) {
        if (id >= 1 && id <= entries_.size()) consider(id);
      }
    } else {
      for (SeriesId id = 1; id <= entries_.size(); ++id) consider(id);
    }
    return out;
  }

  std::optional<SeriesInfo> GetSeries(SeriesId id) override {
    std::shared_lock lock(mu_);
    if (id == 0 || id > entries_.size()) return std::nullopt;
    auto labels = keys::DecodeCanonicalLabels(entries_[id - 1].canonical);
    if (!labels) return std::nullopt;
    return SeriesInfo{*std::move(labels), entries_[id - 1].type};
  }

  std::unique_ptr<SampleIterator> Read(SeriesId id, int64_t start_ms, int64_t end_ms) override {
    std::string upper = end_ms == INT64_MAX ? keys::SeriesTimeKey(id + 1, INT64_MIN)
                                            : keys::SeriesTimeKey(id, end_ms + 1);
    std::vector<Sample> head;
    std::unique_ptr<rocksdb::Iterator> it;
    {
      std::shared_lock lock(mu_);
      // The head is copied and the blocks' snapshot taken under head_mu_, so
      // a concurrent cut is seen whole or not at all.
      std::lock_guard head_lock(head_mu_);
      if (id >= 1 && id <= entries_.size()) {
        for (const Sample& x : entries_[id - 1].head) {
          if (x.timestamp_ms >= start_ms && x.timestamp_ms <= end_ms) head.push_back(x);
        }
      }
      it.reset(db_->NewIterator(rocksdb::ReadOptions(), samples_));
    }
    it->Seek(keys::SeriesTimeKey(id, keys::WindowStart(start_ms, options_.block_window_ms)));
    return std::make_unique<BlockSampleIterator>(std::move(it), std::move(upper), std::move(head), start_ms, end_ms);
  }

  absl::StatusOr<std::vector<Window>> ReadRollup(SeriesId id, int64_t resolution_ms, int64_t start_ms,
                                                 int64_t end_ms) override {
    size_t r = 0;
    while (r < options_.rollups.size() && options_.rollups[r].resolution_ms != resolution_ms) ++r;
    if (r == options_.rollups.size()) {
      return absl::InvalidArgumentError("no rollup at resolution " + std::to_string(resolution_ms) + " ms");
    }
    const int64_t first_window = keys::WindowStart(start_ms, resolution_ms);
    bool counter = false;
    std::unique_ptr<rocksdb::Iterator> it;
    int64_t until;
    std::vector<Sample> late;  // head samples older than the watermark: not in the rollups until the next cut
    {
      std::shared_lock lock(mu_);
      // Watermark, head and snapshot together, so a cut can't slip between.
      std::lock_guard head_lock(head_mu_);
      until = rolled_up_until_;
      if (id >= 1 && id <= entries_.size()) {
        counter = entries_[id - 1].type == MetricType::kCounter;
        for (const Sample& x : entries_[id - 1].head) {
          if (x.timestamp_ms < until) late.push_back(x);
        }
      }
      it.reset(db_->NewIterator(rocksdb::ReadOptions(), rollups_[r]));
    }
    std::vector<Window> out;
    // Rolled up: the stored windows.
    if (first_window < until) {
      const std::string upper = keys::SeriesTimeKey(id, std::min(end_ms, until - 1));
      RollupWindows stored;
      for (it->Seek(keys::SeriesTimeKey(id, keys::WindowStart(first_window, RollupBlockMs(resolution_ms))));
           it->Valid() && View(it->key()) <= upper; it->Next()) {
        stored.clear();
        if (auto s = DecodeRollupBlock(View(it->value()), &stored); !s.ok()) {
          return absl::DataLossError("series " + std::to_string(id) + ": " + std::string(s.message()));
        }
        for (auto& [w, a] : stored) {
          if (w >= first_window && w <= end_ms && w < until) out.emplace_back(w, a);
        }
      }
      if (!it->status().ok()) return FromRocks(it->status(), "reading rollups");
      if (!late.empty()) {
        std::map<int64_t, Aggregate> merged(out.begin(), out.end());
        for (auto& [w, a] : Aggregates(late, resolution_ms, counter)) {
          if (w < first_window || w > end_ms) continue;
          auto [pos, inserted] = merged.try_emplace(w, a);
          if (!inserted) pos->second = Aggregate::Merge(pos->second, a);
        }
        out.assign(merged.begin(), merged.end());
      }
    }
    // Not rolled up yet: computed from raw samples, head included.
    if (end_ms >= until) {
      const int64_t from = std::max(first_window, until);
      const int64_t to = keys::WindowStart(end_ms, resolution_ms) + (resolution_ms - 1);
      std::vector<Sample> raw;
      auto samples = Read(id, from, to);
      for (; samples->Valid(); samples->Next()) raw.push_back(samples->sample());
      if (!samples->status().ok()) return samples->status();
      for (auto& w : Aggregates(raw, resolution_ms, counter)) out.push_back(std::move(w));
    }
    return out;
  }

  std::vector<int64_t> RollupResolutions() const override {
    std::vector<int64_t> out;
    for (const auto& r : options_.rollups) out.push_back(r.resolution_ms);
    return out;
  }

  absl::StatusOr<std::vector<std::string>> LabelNames() override {
    return DistinctPostingParts(keys::PostingPrefix(kDefaultTenant, "", "").substr(0, 5));  // 'P' tenant
  }

  absl::StatusOr<std::vector<std::string>> LabelValues(std::string_view name) override {
    std::string prefix = keys::PostingPrefix(kDefaultTenant, "", "").substr(0, 5);
    keys::PutVarint(prefix, name.size());
    prefix.append(name);
    return DistinctPostingParts(prefix);
  }

  StoreStats Stats() override {
    StoreStats st;
    {
      std::shared_lock lock(mu_);
      st.series = entries_.size();
    }
    st.samples = sample_count_;
    st.head_samples = head_samples_;
    {
      std::lock_guard lock(agents_mu_);
      st.agents = agent_seq_.size();
    }
    for (auto* h : handles_) {
      uint64_t v = 0;
      if (db_->GetIntProperty(h, "rocksdb.live-sst-files-size", &v)) {
        st.family_disk_bytes[h->GetName() == rocksdb::kDefaultColumnFamilyName ? "meta" : h->GetName()] = v;
        st.disk_bytes += v;
      }
      if (db_->GetIntProperty(h, "rocksdb.estimate-pending-compaction-bytes", &v)) st.pending_compaction_bytes += v;
      if (db_->GetIntProperty(h, "rocksdb.cur-size-all-mem-tables", &v)) st.memtable_bytes += v;
    }
    rocksdb::VectorLogPtr wal;
    if (db_->GetSortedWalFiles(wal).ok()) {
      for (const auto& f : wal) st.wal_bytes += f->SizeFileBytes();
    }
    st.disk_bytes += st.wal_bytes;
    st.write_stalls = stalls_->stalls;
    st.block_cache_bytes = block_cache_->GetUsage();
    st.rolled_up_until_ms = rolled_up_until_;
    return st;
  }

  absl::Status Flush() override {
    {
      std::lock_guard append_lock(append_mu_);
      if (auto s = CutAndRollUp(); !s.ok()) return s;
    }
    rocksdb::FlushOptions fo;
    fo.wait = true;
    return FromRocks(db_->Flush(fo, handles_), "flushing memtables");
  }

  absl::Status Compact() override {
    if (auto s = Flush(); !s.ok()) return s;
    for (auto* h : handles_) {
      rocksdb::CompactRangeOptions co;
      co.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
      auto s = db_->CompactRange(co, h, nullptr, nullptr);
      if (!s.ok()) return FromRocks(s, "compacting");
    }
    return absl::OkStatus();
  }

 private:
  struct Entry {
    std::string canonical;
    MetricType type;
    // Newest stored timestamp: kMaxTsUnknown until first needed after open,
    // kNoSamples if the series has none.
    int64_t max_ts;
    std::vector<Sample> head;  // sorted; newer than any sample in blocks
  };

  // Inserts in time order; an equal timestamp replaces (last write wins).
  // REQUIRES: head_mu_ and append_mu_ held.
  void AddToHead(Entry& e, const Sample& x) {
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

  // Adds merge operands for `samples` (sorted) of one series to the sample
  // blocks, and to the rollups for those older than the roll-up watermark
  // (newer ones are rolled up from the blocks later).
  void WriteBlocks(rocksdb::WriteBatch& wb, SeriesId id, MetricType type, const std::vector<Sample>& samples) {
    ForEachWindow(samples, options_.block_window_ms, [&](int64_t w, const Sample* first, size_t n) {
      wb.Merge(samples_, keys::SeriesTimeKey(id, w), EncodeBlock(std::span<const Sample>(first, n)));
    });
    const int64_t until = rolled_up_until_;
    auto old_end = std::lower_bound(samples.begin(), samples.end(), Sample{until, 0}, ByTime);
    if (old_end != samples.begin()) WriteRollups(wb, id, type, std::vector<Sample>(samples.begin(), old_end));
  }

  // Rollup operands for `samples` (sorted), one per rollup block touched.
  void WriteRollups(rocksdb::WriteBatch& wb, SeriesId id, MetricType type, const std::vector<Sample>& samples) {
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

  static RollupWindows Aggregates(const std::vector<Sample>& samples, int64_t res, bool counter) {
    RollupWindows windows;
    ForEachWindow(samples, res, [&](int64_t w, const Sample* first, size_t n) {
      windows.emplace_back(w, Aggregate::Of(std::span<const Sample>(first, n), counter));
    });
    return windows;
  }

  // Rolls up raw data older than downsample_after_ms, whole block windows at
  // a time, in chunks of series; each chunk records its progress in the
  // same write, so a crash resumes without counting anything twice.
  // REQUIRES: append_mu_ held.
  absl::Status RollUp() {
    if (options_.rollups.empty()) return absl::OkStatus();
    const int64_t target =
        keys::WindowStart(options_.now_ms() - options_.downsample_after_ms, options_.block_window_ms);
    const int64_t from = rolled_up_until_;
    if (target <= from) return absl::OkStatus();
    SeriesId next = 1;
    std::string progress;
    auto s = db_->Get(rocksdb::ReadOptions(), meta_, keys::RollupProgressKey(), &progress);
    if (s.ok() && progress.size() == 16 && keys::DecodeTime(progress) == target) {
      next = keys::GetFixed64BE(std::string_view(progress).substr(8));
    } else if (!s.ok() && !s.IsNotFound()) {
      return FromRocks(s, "reading roll-up progress");
    }
    size_t count;
    {
      std::shared_lock lock(mu_);
      count = entries_.size();
    }
    constexpr SeriesId kChunk = 512;
    for (; next <= count; next += kChunk) {
      rocksdb::WriteBatch wb;
      for (SeriesId id = next; id < next + kChunk && id <= count; ++id) {
        std::vector<Sample> raw;
        auto it = Read(id, from, target - 1);
        for (; it->Valid(); it->Next()) raw.push_back(it->sample());
        if (!it->status().ok()) return it->status();
        MetricType type;
        {
          std::shared_lock lock(mu_);
          type = entries_[id - 1].type;
        }
        if (!raw.empty()) WriteRollups(wb, id, type, raw);
      }
      std::string p = keys::EncodeTime(target);
      keys::PutFixed64BE(p, next + kChunk);
      wb.Put(meta_, keys::RollupProgressKey(), p);
      if (auto w = db_->Write(rocksdb::WriteOptions(), &wb); !w.ok()) return FromRocks(w, "writing rollups");
    }
    rocksdb::WriteBatch done;
    done.Put(meta_, keys::RolledUpUntilKey(), keys::EncodeTime(target));
    done.Delete(meta_, keys::RollupProgressKey());
    if (auto w = db_->Write(rocksdb::WriteOptions(), &done); !w.ok()) return FromRocks(w, "writing roll-up watermark");
    rolled_up_until_ = target;
    return absl::OkStatus();
  }

  // Cuts every head into blocks and rollups and deletes the log they came
  // from, in one write. REQUIRES: append_mu_ held.
  absl::Status FlushHeads() {
    last_flush_ms_ = options_.now_ms();
    if (head_samples_ == 0 && next_log_seq_ == first_log_seq_) return absl::OkStatus();
    rocksdb::WriteBatch wb;
    {
      std::shared_lock lock(mu_);
      for (size_t i = 0; i < entries_.size(); ++i) {
        if (!entries_[i].head.empty()) WriteBlocks(wb, i + 1, entries_[i].type, entries_[i].head);
      }
    }
    wb.DeleteRange(log_, keys::LogKey(0), keys::LogKey(next_log_seq_));
    rocksdb::WriteOptions wo;
    wo.sync = options_.sync;
    std::shared_lock lock(mu_);
    std::lock_guard head_lock(head_mu_);  // readers see the cut whole or not at all
    auto s = db_->Write(wo, &wb);
    if (!s.ok()) return FromRocks(s, "cutting heads into blocks");
    for (Entry& e : entries_) {
      e.head.clear();
      e.head.shrink_to_fit();
    }
    head_samples_ = 0;
    first_log_seq_ = next_log_seq_;
    return absl::OkStatus();
  }

  // A cut, then whatever roll-up is due. REQUIRES: append_mu_ held.
  absl::Status CutAndRollUp() {
    if (auto s = FlushHeads(); !s.ok()) return s;
    return RollUp();
  }

  // REQUIRES: append_mu_ held, mu_ shared.
  absl::Status EnsureMaxTs(SeriesId id, Entry& e) {
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
    if (!e.head.empty()) newest = std::max(newest, e.head.back().timestamp_ms);
    e.max_ts = newest;
    return absl::OkStatus();
  }

  // Whether the blocks of `id` hold a sample at `ts` (for exact counting of
  // out-of-order samples).
  absl::StatusOr<bool> InBlocks(SeriesId id, int64_t ts) {
    std::string block;
    auto s = db_->Get(rocksdb::ReadOptions(), samples_, keys::SeriesTimeKey(id, keys::WindowStart(ts, options_.block_window_ms)),
                      &block);
    if (s.IsNotFound()) return false;
    if (!s.ok()) return FromRocks(s, "checking for an existing sample");
    std::vector<Sample> samples;
    if (auto st = DecodeBlockAppend(block, &samples); !st.ok()) {
      return absl::DataLossError("corrupt block of series " + std::to_string(id));
    }
    return std::binary_search(samples.begin(), samples.end(), Sample{ts, 0}, ByTime);
  }

  // Reads the series table, agent sequences and counters into memory.
  absl::Status Load() {
    std::string v;
    auto s = db_->Get(rocksdb::ReadOptions(), meta_, keys::SchemaVersionKey(), &v);
    if (s.IsNotFound()) {
      std::string ver;
      keys::PutFixed64BE(ver, keys::kSchemaVersion);
      s = db_->Put(rocksdb::WriteOptions(), meta_, keys::SchemaVersionKey(), ver);
      if (!s.ok()) return FromRocks(s, "writing schema version");
    } else if (!s.ok()) {
      return FromRocks(s, "reading schema version");
    } else if (v.size() != 8 || keys::GetFixed64BE(v) != keys::kSchemaVersion) {
      return absl::FailedPreconditionError("data directory " + options_.path + " has an unsupported schema version");
    }
    s = db_->Get(rocksdb::ReadOptions(), meta_, keys::SampleCountKey(), &v);
    if (s.ok() && v.size() == 8) sample_count_ = keys::GetFixed64BE(v);
    else if (!s.ok() && !s.IsNotFound()) return FromRocks(s, "reading sample count");
    s = db_->Get(rocksdb::ReadOptions(), meta_, keys::RolledUpUntilKey(), &v);
    if (s.ok() && v.size() == 8) rolled_up_until_ = keys::DecodeTime(v);
    else if (!s.ok() && !s.IsNotFound()) return FromRocks(s, "reading the roll-up watermark");

    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), index_));
    std::string prefix(1, keys::kSeriesByIdPrefix);
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      std::string_view key = View(it->key());
      std::string_view value = View(it->value());
      if (key.size() != 9 || value.size() < 5) return absl::DataLossError("corrupt series index entry");
      SeriesId id = keys::GetFixed64BE(key.substr(1));
      if (id != entries_.size() + 1) return absl::DataLossError("series ids in the index are not dense");
      std::string canonical(value.substr(5));
      entries_.push_back(Entry{canonical, static_cast<MetricType>(value[4]), kMaxTsUnknown, {}});
      by_labels_.emplace(std::move(canonical), id);
    }
    if (!it->status().ok()) return FromRocks(it->status(), "loading series index");

    it.reset(db_->NewIterator(rocksdb::ReadOptions(), meta_));
    std::string agent_prefix = keys::AgentSequenceKey(kDefaultTenant, "");
    for (it->Seek(agent_prefix); it->Valid() && it->key().starts_with(agent_prefix); it->Next()) {
      if (it->value().size() != 8) return absl::DataLossError("corrupt agent sequence");
      agent_seq_[std::string(View(it->key()).substr(agent_prefix.size()))] = keys::GetFixed64BE(View(it->value()));
    }
    return FromRocks(it->status(), "loading agent sequences");
  }

  // Rebuilds the heads from the log: the samples acknowledged but not yet
  // cut into blocks.
  absl::Status ReplayLog() {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), log_));
    bool first = true;
    std::lock_guard head_lock(head_mu_);
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      if (it->key().size() != 8) return absl::DataLossError("corrupt log key");
      uint64_t seq = keys::GetFixed64BE(View(it->key()));
      if (first) first_log_seq_ = seq;
      first = false;
      next_log_seq_ = seq + 1;
      bool bad_id = false;
      bool ok = keys::DecodeLogRecord(View(it->value()), [&](SeriesId id, const Sample& x) {
        if (id == 0 || id > entries_.size()) {
          bad_id = true;
          return;
        }
        AddToHead(entries_[id - 1], x);
      });
      if (!ok || bad_id) return absl::DataLossError("corrupt log record " + std::to_string(seq));
    }
    if (!it->status().ok()) return FromRocks(it->status(), "replaying the log");
    // max_ts is "unknown" until blocks are consulted too.
    for (Entry& e : entries_) e.max_ts = kMaxTsUnknown;
    if (first) first_log_seq_ = next_log_seq_;
    return absl::OkStatus();
  }

  // The distinct length-prefixed strings that follow `prefix` in posting
  // keys (label names after 'P' tenant; values after a name), sorted. One
  // seek per distinct string: all keys of a string start with prefix + lp(s),
  // and the next string's keys sort after prefix + lp(s) + 0xFF x 10 (a
  // length varint ends in a byte < 0x80; an id is 8 bytes).
  absl::StatusOr<std::vector<std::string>> DistinctPostingParts(const std::string& prefix) {
    std::vector<std::string> out;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), index_));
    it->Seek(prefix);
    while (it->Valid() && it->key().starts_with(prefix)) {
      std::string_view rest = View(it->key()).substr(prefix.size());
      auto n = keys::GetVarint(&rest);
      if (!n || *n > rest.size()) return absl::DataLossError("corrupt posting key");
      std::string part(rest.substr(0, *n));
      std::string next = prefix;
      keys::PutVarint(next, part.size());
      next += part;
      next.append(10, '\xff');
      out.push_back(std::move(part));
      it->Seek(next);
    }
    if (!it->status().ok()) return FromRocks(it->status(), "listing labels");
    std::sort(out.begin(), out.end());  // keys order by length first
    return out;
  }

  absl::StatusOr<std::vector<SeriesId>> Postings(const std::string& name, const std::string& value) {
    std::vector<SeriesId> ids;
    std::string prefix = keys::PostingPrefix(kDefaultTenant, name, value);
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), index_));
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      if (it->key().size() != prefix.size() + 8) continue;
      ids.push_back(keys::GetFixed64BE(View(it->key()).substr(prefix.size())));
    }
    if (!it->status().ok()) return FromRocks(it->status(), "reading postings");
    return ids;
  }

  StoreOptions options_;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  rocksdb::ColumnFamilyHandle* meta_ = nullptr;
  rocksdb::ColumnFamilyHandle* index_ = nullptr;
  rocksdb::ColumnFamilyHandle* samples_ = nullptr;
  rocksdb::ColumnFamilyHandle* log_ = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> rollups_;  // parallel to options_.rollups
  std::shared_ptr<rocksdb::Cache> block_cache_;
  std::shared_ptr<StallCounter> stalls_;

  // Lock order: append_mu_, then mu_, then head_mu_.
  std::mutex append_mu_;  // one writer at a time: Append, FlushHeads; guards max_ts and the log sequence
  std::shared_mutex mu_;  // guards the shape of entries_ and by_labels_
  std::deque<Entry> entries_;  // entries_[id - 1]; a deque, so growing never moves heads
  std::unordered_map<std::string, SeriesId> by_labels_;
  std::mutex head_mu_;  // guards head contents against readers
  std::atomic<uint64_t> head_samples_ = 0;
  uint64_t next_log_seq_ = 1;
  uint64_t first_log_seq_ = 1;  // oldest log record not yet cut
  int64_t last_flush_ms_ = 0;
  std::atomic<int64_t> rolled_up_until_ = INT64_MIN;  // raw data before this is in the rollups

  std::atomic<uint64_t> sample_count_ = 0;
  std::mutex agents_mu_;
  std::unordered_map<std::string, uint64_t> agent_seq_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<SeriesStore>> SeriesStore::Open(const StoreOptions& options) {
  auto store = std::make_unique<RocksSeriesStore>();
  if (auto s = store->Init(options); !s.ok()) return s;
  return store;
}

}  // namespace sheaf::storage
