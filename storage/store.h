// The RocksDB implementation of SeriesStore. Private to storage/ (and its
// tests); the daemon sees only series_store.h. Key layouts: key_codec.h.
//
// Write path. Agents send one sample per series per batch, so per-sample
// RocksDB entries would cost a memtable insert per sample. Instead each
// batch is one log record (the "log" column family) written in the same
// WriteBatch as the agent's sequence and the sample count, and its samples
// join the series' in-memory head. Heads are cut into compressed blocks
// (merge operands of the "samples" column family) and the log records they
// came from are deleted, in one atomic write: when the heads hold
// max_head_samples, every head_flush_interval_ms, and on Flush(). Opening
// replays the log into the heads, so an acknowledged sample is in the log or
// in a block, never lost and never in both.
//
// Out-of-order samples (within out_of_order_window_ms of the series' newest,
// or any age in a backfill) go into the head too, unless their timestamp is
// in a block already: then the new value goes straight into that block as a
// merge operand (and into no rollup: it is there). So a timestamp is in the
// head or in blocks, never both, and reads merge the two in time order.
//
// Rollups are built by rolling up raw blocks once they are
// downsample_after_ms old, a slab of time at a time, up to a watermark kept
// in meta ("rolled up until"); the raw retention filter never drops raw data
// past the watermark, and reads compute windows after it from raw samples.
// So fresh data costs its raw bytes only. A late sample older than the
// watermark (or in the slab being rolled up, for a series already done)
// adds its rollup operands at once.
//
// Backfill (AppendBatch::backfill) takes the same paths with no
// out-of-order window. Its raw data is kept raw_retention_ms after arrival
// even where older than raw retention: the time ranges are in meta ('K',
// written with the samples, dropped by maintenance once over) and the raw
// retention filter spares them, so a re-sent sample is still found in its
// block (and adds no rollup operand). Samples past every retention are
// refused (AppendResult::beyond_retention).
//
// Selection (Select, read.cc) works on the postings as Prometheus'
// PostingsForMatchers does, reading the lists in turns so the smallest is
// known first, and checks the matchers left on the candidates' labels in
// memory once they are few; a matcher runs once per distinct value.
//
// Maintenance (cuts and roll-ups) runs on a background thread (leveldb's
// MaybeScheduleCompaction and bg_error_ are the model): Append only wakes
// it. Its last error is kept, logged and reported in Stats. A roll-up holds
// the append lock one chunk of series at a time, so ingestion never waits
// for a whole roll-up.
//
// Files: store.cc (open, stats, flush, background thread), append.cc
// (series creation, appends, deletion), read.cc (selection, reads,
// listings), maintenance.cc (cuts and roll-ups), recovery.cc (loading the
// index and replaying the log).
#ifndef SHEAF_STORAGE_STORE_H_
#define SHEAF_STORAGE_STORE_H_

#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/listener.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/sequence_set.h"
#include "storage/key_codec.h"
#include "storage/series_store.h"

namespace sheaf::storage {

// rocksdb::Status -> absl::Status with `what` in front. Disk full and I/O
// errors are UNAVAILABLE (retry later), corruption DATA_LOSS.
absl::Status FromRocks(const rocksdb::Status& s, std::string_view what);

inline std::string_view View(const rocksdb::Slice& s) { return std::string_view(s.data(), s.size()); }

inline bool ByTime(const Sample& a, const Sample& b) { return a.timestamp_ms < b.timestamp_ms; }

// a + b, saturated at the int64 limits.
inline int64_t AddClamped(int64_t a, int64_t b) {
  int64_t sum;
  if (__builtin_add_overflow(a, b, &sum)) return b > 0 ? INT64_MAX : INT64_MIN;
  return sum;
}

// by_labels_ key: the tenant (4 bytes, big-endian), then the canonical labels.
inline std::string TenantLabelsKey(TenantId tenant, std::string_view canonical) {
  std::string key(4, '\0');
  for (int i = 0; i < 4; ++i) key[i] = static_cast<char>(tenant >> (24 - 8 * i));
  key.append(canonical);
  return key;
}

// Rollup windows are stored in blocks of this many windows per key (a day
// of 1m windows, two months of 1h windows).
inline constexpr int64_t kRollupBlockWindows = 1440;
inline int64_t RollupBlockMs(int64_t resolution_ms) { return resolution_ms * kRollupBlockWindows; }

// The aggregates of `samples` (sorted) per window of `res`.
RollupWindows Aggregates(const std::vector<Sample>& samples, int64_t res, bool counter);

// Counts slowdowns and stops of writes (compaction falling behind), and
// whether RocksDB has stopped accepting writes after a background error
// (disk full) and recovered.
class StoreEventListener : public rocksdb::EventListener {
 public:
  void OnStallConditionsChanged(const rocksdb::WriteStallInfo& info) override;
  void OnBackgroundError(rocksdb::BackgroundErrorReason reason, rocksdb::Status* error) override;
  void OnErrorRecoveryEnd(const rocksdb::BackgroundErrorRecoveryInfo& info) override;
  std::atomic<uint64_t> stalls{0};
};

class RocksSeriesStore final : public SeriesStore {
 public:
  RocksSeriesStore() = default;
  ~RocksSeriesStore() override;

  absl::Status Init(const StoreOptions& options);

  absl::StatusOr<SeriesId> GetOrCreateSeries(TenantId tenant, const Labels& labels, MetricType type) override;
  std::optional<SeriesId> FindSeries(TenantId tenant, const Labels& labels) override;
  uint64_t SeriesCount(TenantId tenant) override;
  absl::StatusOr<AppendResult> Append(const AppendBatch& batch) override;
  uint64_t AgentSequence(TenantId tenant, std::string_view agent_id) override;
  bool AgentSequenceApplied(TenantId tenant, std::string_view agent_id, uint64_t sequence, uint64_t floor) override;
  absl::StatusOr<std::vector<SeriesId>> Select(TenantId tenant, const std::vector<Matcher>& matchers) override;
  absl::StatusOr<uint64_t> DeleteSeries(TenantId tenant, const std::vector<Matcher>& matchers) override;
  std::optional<SeriesInfo> GetSeries(SeriesId id) override;
  std::unique_ptr<SampleIterator> Read(SeriesId id, int64_t start_ms, int64_t end_ms) override;
  absl::Status ReadMany(std::span<const SeriesId> ids, int64_t start_ms, int64_t end_ms,
                        std::vector<std::vector<Sample>>* out) override;
  absl::StatusOr<std::vector<Window>> ReadRollup(SeriesId id, int64_t resolution_ms, int64_t start_ms,
                                                 int64_t end_ms) override;
  std::vector<int64_t> RollupResolutions() const override;
  int64_t RolledUpUntil() const override { return rolled_up_until_.load(); }
  absl::StatusOr<std::vector<std::string>> LabelNames(TenantId tenant, size_t limit, bool* truncated) override;
  absl::StatusOr<std::vector<std::string>> LabelValues(TenantId tenant, std::string_view name, size_t limit,
                                                       bool* truncated) override;
  StoreStats Stats() override;
  absl::StatusOr<TenantId> TenantIdFor(std::string_view name) override;
  std::map<std::string, TenantId> Tenants() override;
  absl::Status Flush() override;
  absl::Status Compact() override;
  void CancelCompaction() override;
  absl::Status Checkpoint(const std::string& dir) override;

 private:
  struct Entry {
    TenantId tenant;
    bool deleted;
    std::string canonical;
    MetricType type;
    // Newest stored timestamp, and newest in blocks: kMaxTsUnknown until
    // first needed after open, kNoSamples if the series has none. Guarded
    // by append_mu_.
    int64_t max_ts;
    int64_t blocks_max;
    // Sorted; none of them in blocks (they may interleave with the blocks'
    // samples: late and backfilled ones). Contents guarded by head_mu_
    // (readers) and written only with append_mu_ held too.
    std::vector<Sample> head;
  };
  static constexpr int64_t kMaxTsUnknown = INT64_MIN;
  static constexpr int64_t kNoSamples = INT64_MIN + 1;
  // The type byte of a deleted series' 'I' index entry.
  static constexpr uint8_t kDeletedType = 0xFF;

  // ---- append.cc
  // Inserts in time order; an equal timestamp replaces (last write wins).
  void AddToHead(Entry& e, const Sample& x) ABSL_EXCLUSIVE_LOCKS_REQUIRED(append_mu_, head_mu_);
  // Merge operands for `samples` (sorted) of one series in the sample
  // blocks, and in the rollups for those already rolled up (see above).
  // `replaced` (sorted) are timestamps the blocks already hold: the new
  // value replaces the old one in the block, and they add nothing to the
  // rollups (a resent sample must not count twice there).
  void WriteBlocks(rocksdb::WriteBatch& wb, SeriesId id, MetricType type, const std::vector<Sample>& samples,
                   const std::vector<int64_t>& replaced = {}) ABSL_EXCLUSIVE_LOCKS_REQUIRED(append_mu_);
  // Rollup operands for `samples` (sorted), one per rollup block touched.
  void WriteRollups(rocksdb::WriteBatch& wb, SeriesId id, MetricType type, const std::vector<Sample>& samples);
  absl::Status EnsureMaxTs(SeriesId id, Entry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(append_mu_);
  // The timestamps of `samples` (sorted) that the blocks of `id` hold
  // already, sorted, into *present (for exact counting of out-of-order and
  // backfilled samples): one read per block window.
  absl::Status InBlocks(SeriesId id, const std::vector<Sample>& samples, std::vector<int64_t>* present)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(append_mu_);
  // The timestamps the blocks of a series hold in the block window
  // InBlocks read last for it, so that an import sending a series' history
  // a few samples per batch reads each block once, not once a batch. Exact:
  // every write that adds timestamps to blocks (cuts) or removes them
  // (deletions) holds append_mu_ and forgets it (appends only give new
  // values to timestamps there). Blocks that retention drops stay
  // "known": their samples are rolled up, so a re-sent one must not count
  // again in the rollups anyway.
  struct KnownBlock {
    int64_t window;
    std::vector<int64_t> timestamps;  // sorted
  };
  std::unordered_map<SeriesId, KnownBlock> known_blocks_ ABSL_GUARDED_BY(append_mu_);
  size_t known_timestamps_ ABSL_GUARDED_BY(append_mu_) = 0;
  static constexpr size_t kMaxKnownTimestamps = 4'000'000;  // 32 MB
  void ForgetKnownBlocks() ABSL_EXCLUSIVE_LOCKS_REQUIRED(append_mu_);
  // Samples older than this are past every retention (raw and rollups).
  int64_t OldestRetained(int64_t now) const;
  // Backfilled raw data of [first_ts, last_ts] is kept (despite raw
  // retention) until raw_retention_ms after `now`, so that a re-sent sample
  // is still recognised in its block and adds nothing to the rollups. The
  // new list of kept ranges if it must change (nullopt: covered already).
  std::optional<std::vector<keys::KeptRange>> KeepRaw(int64_t first_ts, int64_t last_ts, int64_t now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(append_mu_);
  // A kept range is written again only when it would end within
  // raw_retention_ms: with this slack, once an hour at most.
  static constexpr int64_t kKeptRawSlackMs = 3'600'000;
  static constexpr size_t kMaxKeptRanges = 32;
  // What the raw retention filter keeps: kept ranges not yet over.
  std::vector<std::pair<int64_t, int64_t>> KeptRawRanges(int64_t now);

  // ---- maintenance.cc
  // Cuts every head into blocks and deletes the log they came from, in one
  // write.
  absl::Status CutHeads() ABSL_EXCLUSIVE_LOCKS_REQUIRED(append_mu_);
  // Forgets the kept ranges of backfilled raw data that are over.
  absl::Status DropExpiredKeptRaw() ABSL_EXCLUSIVE_LOCKS_REQUIRED(append_mu_);
  // Rolls up raw data older than downsample_after_ms, whole block windows
  // at a time, in chunks of series. Each chunk records its progress (target
  // and next series) in the same write; a roll-up interrupted by a crash or
  // an error is finished, to the target it recorded, before any newer one,
  // so no window is ever counted twice.
  absl::Status RollUp() ABSL_LOCKS_EXCLUDED(append_mu_);
  absl::Status RollUpTo(int64_t target, SeriesId next) ABSL_LOCKS_EXCLUDED(append_mu_);
  // A cut and/or roll-up if due (or if `force`), with timings and errors
  // recorded. Serialized by maintenance_mu_.
  absl::Status Maintain(bool force) ABSL_LOCKS_EXCLUDED(append_mu_);
  void BackgroundLoop();
  // Wakes the background thread.
  void ScheduleMaintenance();
  absl::Status Fault(std::string_view point) {
    return options_.test_fault ? options_.test_fault(point) : absl::OkStatus();
  }

  // ---- recovery.cc
  // Reads the series table and counters into memory (agent sequence sets
  // stay on disk until their agents push: CountAgents).
  absl::Status Load();
  // Rebuilds the heads from the log: the samples acknowledged but not yet
  // cut into blocks.
  absl::Status ReplayLog();
  // Counts the agents with a stored applied set (and checks each decodes),
  // keeping none of them in memory: the cache fills as agents push.
  absl::Status CountAgents() ABSL_LOCKS_EXCLUDED(agents_mu_);

  // ---- store.cc: the agents' applied sequence sets
  // The agent's applied set (under key AgentSequenceKey) as stored: from
  // the cache (made the most recently used), else read from meta (counted
  // in agent_set_loads_, not cached). Empty, with *found false when given,
  // for an agent never seen.
  absl::StatusOr<SequenceSet> StoredAgentSet(const std::string& key, bool* found = nullptr)
      ABSL_LOCKS_EXCLUDED(agents_mu_);
  // DATA_LOSS naming the agent of `key` and what to do.
  absl::Status CorruptAgentSet(std::string_view key) const;
  // Closes the gaps of an applied set below a batch's `floor` (0: its
  // `sequence`): what the agent says can no longer arrive.
  static void CloseBelowFloor(SequenceSet& set, uint64_t sequence, uint64_t floor) {
    set.ForgetBelow(floor == 0 ? sequence : std::min(floor, sequence));
  }
  // Caches `set` (what meta holds for `key` now) as the most recently used,
  // evicting the least recently used past max_cached_agent_sets;
  // `new_agent`: meta had no set for it before (counted in Stats().agents).
  // Only Append calls it, holding append_mu_ from its read of the set to
  // here: a reader that missed the cache never puts back a set older than
  // the one Append just wrote.
  void CacheAgentSet(const std::string& key, SequenceSet set, bool new_agent)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(append_mu_) ABSL_LOCKS_EXCLUDED(agents_mu_);

  // ---- read.cc
  // Read() with or without the head (roll-ups read blocks only: head
  // samples get their rollup operands when they are cut).
  std::unique_ptr<SampleIterator> ReadImpl(SeriesId id, int64_t start_ms, int64_t end_ms, bool with_head);
  // The distinct length-prefixed strings that follow `prefix` in posting
  // keys, sorted, at most `limit` (0: all).
  absl::StatusOr<std::vector<std::string>> DistinctPostingParts(const std::string& prefix, size_t limit,
                                                                bool* truncated);
  // Select checks the matchers left against the candidates' labels once
  // there are at most 1/kFewCandidates as many candidates as series.
  static constexpr size_t kFewCandidates = 4;

  StoreOptions options_;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  rocksdb::ColumnFamilyHandle* meta_ = nullptr;
  rocksdb::ColumnFamilyHandle* index_ = nullptr;
  rocksdb::ColumnFamilyHandle* samples_ = nullptr;
  rocksdb::ColumnFamilyHandle* log_ = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> rollups_;  // parallel to options_.rollups
  std::shared_ptr<rocksdb::Cache> block_cache_;
  std::shared_ptr<StoreEventListener> events_;
  std::atomic<bool> compaction_disabled_ = false;

  // Lock order: maintenance_mu_, append_mu_, create_mu_, mu_, head_mu_,
  // agents_mu_, kept_mu_, bg_mu_. No lock is held across a synced write except
  // append_mu_, which only writers take (that is what makes the sample
  // count and the idempotency check exact).
  absl::Mutex maintenance_mu_ ABSL_ACQUIRED_BEFORE(append_mu_);  // one cut/roll-up at a time
  absl::Mutex append_mu_ ABSL_ACQUIRED_BEFORE(create_mu_);       // one writer at a time
  absl::Mutex create_mu_ ABSL_ACQUIRED_BEFORE(mu_);              // one series creation/deletion at a time
  // Guards the shape of entries_ and by_labels_. Held exclusively only to
  // publish or unpublish an entry, never across I/O.
  mutable absl::Mutex mu_ ABSL_ACQUIRED_BEFORE(head_mu_);
  std::deque<Entry> entries_ ABSL_GUARDED_BY(mu_);  // entries_[id - 1]; a deque, so growing never moves heads
  // (tenant, canonical labels) -> id
  std::unordered_map<std::string, SeriesId> by_labels_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<TenantId, uint64_t> tenant_series_ ABSL_GUARDED_BY(mu_);  // live series per tenant
  // Odd while a DeleteSeries is under way, incremented when it starts and
  // ends: Select sees whether a deletion may have overlapped it.
  std::atomic<uint64_t> delete_generation_ = 0;
  absl::Mutex head_mu_;  // guards head contents against readers
  std::atomic<uint64_t> head_samples_ = 0;
  uint64_t next_log_seq_ ABSL_GUARDED_BY(append_mu_) = 1;
  uint64_t first_log_seq_ ABSL_GUARDED_BY(append_mu_) = 1;  // oldest log record not yet cut
  std::atomic<int64_t> last_cut_ms_ = 0;
  std::atomic<int64_t> rolled_up_until_ = INT64_MIN;  // raw data before this is in the rollups
  // Time ranges of backfilled raw data kept past raw retention (KeepRaw),
  // sorted and disjoint. Changed only with append_mu_ held too; kept_mu_
  // lets compactions read it. Everything is kept until Load() reads it.
  absl::Mutex kept_mu_;
  std::vector<keys::KeptRange> kept_raw_ ABSL_GUARDED_BY(kept_mu_) = {{INT64_MIN, INT64_MAX, INT64_MAX}};
  // The roll-up in progress: series below rollup_next_ are rolled up to
  // rollup_target_ already (appends of late samples add their operands).
  int64_t rollup_target_ ABSL_GUARDED_BY(append_mu_) = INT64_MIN;
  SeriesId rollup_next_ ABSL_GUARDED_BY(append_mu_) = 0;
  SeriesId rollup_last_ ABSL_GUARDED_BY(append_mu_) = 0;  // series after this one were created during it

  // OK while the data directory's disk has at least min_free_disk_bytes
  // free; UNAVAILABLE naming the disk otherwise. statvfs at most every
  // 500 ms (the answer is cached).
  absl::Status CheckDiskSpace();
  static constexpr int64_t kNeverChecked = INT64_MIN;
  std::atomic<int64_t> disk_checked_ms_ = kNeverChecked;
  std::atomic<uint64_t> free_disk_bytes_ = UINT64_MAX;
  std::atomic<uint64_t> total_disk_bytes_ = 0;

  // The last write's error if it failed for a reason outside the request
  // (disk full, I/O error): reported in Stats until a write succeeds.
  void NoteWrite(const rocksdb::Status& s);
  absl::Mutex write_error_mu_;
  absl::Status write_error_ ABSL_GUARDED_BY(write_error_mu_);

  std::atomic<uint64_t> sample_count_ = 0;
  absl::Mutex agents_mu_;
  // Applied sequences per agent (key: AgentSequenceKey, tenant(4) agent
  // id), a bounded cache: every set is in meta (written in the WriteBatch
  // of the batch it records), at most max_cached_agent_sets of them are
  // also here, the most recently used first, so memory does not grow with
  // every agent id ever seen. An evicted agent's set is read back from
  // meta on its next batch. Appends are serialised by append_mu_, so the
  // read-check-write of one agent's set in Append cannot interleave with
  // another. ~170 bytes per set plus its id (measured, docs/RELIABILITY.md).
  struct CachedAgentSet {
    std::string key;
    SequenceSet set;
  };
  std::list<CachedAgentSet> agent_lru_ ABSL_GUARDED_BY(agents_mu_);
  // Keys view agent_lru_'s strings, which list nodes never move.
  std::unordered_map<std::string_view, std::list<CachedAgentSet>::iterator> agent_sets_
      ABSL_GUARDED_BY(agents_mu_);
  uint64_t agents_ ABSL_GUARDED_BY(agents_mu_) = 0;           // agents with a set in meta
  uint64_t agent_set_loads_ ABSL_GUARDED_BY(agents_mu_) = 0;  // sets read from meta on a miss

  // ---- tenants.cc
  // Reads the tenant registry ('T' keys) into tenants_.
  absl::Status LoadTenants() ABSL_LOCKS_EXCLUDED(tenants_mu_);
  // Tenant names -> ids. Taken alone (never with another lock held), also
  // across the synced write of a new tenant, which is rare.
  absl::Mutex tenants_mu_;
  std::map<std::string, TenantId, std::less<>> tenants_ ABSL_GUARDED_BY(tenants_mu_);

  // Background maintenance.
  absl::Mutex bg_mu_;
  absl::CondVar bg_cv_;
  bool bg_stop_ ABSL_GUARDED_BY(bg_mu_) = false;
  bool bg_wake_ ABSL_GUARDED_BY(bg_mu_) = false;
  uint64_t cuts_ ABSL_GUARDED_BY(bg_mu_) = 0;
  uint64_t rollup_runs_ ABSL_GUARDED_BY(bg_mu_) = 0;
  uint64_t maintenance_failures_ ABSL_GUARDED_BY(bg_mu_) = 0;
  double last_cut_seconds_ ABSL_GUARDED_BY(bg_mu_) = 0;
  double last_rollup_seconds_ ABSL_GUARDED_BY(bg_mu_) = 0;
  absl::Status bg_error_ ABSL_GUARDED_BY(bg_mu_);  // last maintenance error; OK once it succeeds again
  std::thread bg_thread_;
};

}  // namespace sheaf::storage

#endif  // SHEAF_STORAGE_STORE_H_
