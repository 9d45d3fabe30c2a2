// SeriesStore: the time-series store the daemon sees. The RocksDB-backed
// implementation stays behind this interface (storage/store.h, private).
//
// Thread-safety: every method may be called from any thread concurrently.
// Appends are serialized internally (that is what makes the idempotency check
// and the sample count exact); reads run in parallel with them and never
// wait for a disk sync. Maintenance (cutting heads into blocks, roll-ups)
// runs on the store's own background thread, off the append path.
//
// Tenants: series, listings and agent sequences belong to a tenant. The
// overloads without a tenant use kDefaultTenant.
#ifndef SHEAF_STORAGE_SERIES_STORE_H_
#define SHEAF_STORAGE_SERIES_STORE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/matcher.h"
#include "storage/rollup.h"
#include "storage/types.h"

namespace sheaf::storage {

using model::Matcher;

struct RollupSpec {
  int64_t resolution_ms;  // window length
  int64_t retention_ms;   // windows older than this are dropped at compaction
};

inline constexpr int64_t kDayMs = 86'400'000;

struct StoreOptions {
  std::string path;  // directory; created if missing
  // fsync the write-ahead log before Append returns. With it, whatever
  // Append reported survives a power cut; without it, a process crash.
  bool sync = true;
  // GetOrCreateSeries fails with RESOURCE_EXHAUSTED past this many series.
  uint64_t max_series = 5'000'000;
  // Memory: RocksDB block cache and memtables (all column families share
  // one write buffer manager, so this is the total).
  uint64_t block_cache_bytes = 64ull << 20;
  uint64_t write_buffer_bytes = 64ull << 20;

  // Raw samples are kept in compressed blocks of this many milliseconds per
  // series, and dropped once older than raw_retention_ms.
  int64_t block_window_ms = 2 * 3'600'000;
  int64_t raw_retention_ms = 15 * kDayMs;
  // Ingestion pauses (UNAVAILABLE, reads keep working) while the disk
  // holding `path` has less free space than this, and resumes by itself
  // once space is back. RocksDB must never meet a full disk: Debian's build
  // aborts on an assertion in its error path (and then cannot open while
  // the disk stays full).
  uint64_t min_free_disk_bytes = 128ull << 20;

  // Rollup resolutions, finest first. Rollups are built from raw blocks
  // once those are downsample_after_ms old (fresh data costs raw bytes
  // only); until then ReadRollup computes the windows from raw samples, with
  // the same answer. Raw data is never dropped before it is rolled up.
  std::vector<RollupSpec> rollups = {{60'000, 90 * kDayMs}, {3'600'000, 730 * kDayMs}};
  int64_t downsample_after_ms = 2 * kDayMs;
  // A sample older than its series' newest sample by more than this is
  // rejected (counted in AppendResult::too_old) unless its batch is a
  // backfill; within it, it is stored in time order (same timestamp: last
  // write wins).
  int64_t out_of_order_window_ms = 3'600'000;
  // Recent samples live in memory (the head, 16 bytes each) and in a log
  // until they are cut into blocks: at this many samples, or this often.
  uint64_t max_head_samples = 4'000'000;
  int64_t head_flush_interval_ms = 10 * 60'000;
  // Agents' applied batch sequences (exactly-once) are kept in meta; at
  // most this many agents' sets are also cached in memory, the most
  // recently used: ~170 bytes each plus the agent id's bytes past 10
  // (measured), ~17 MiB at the default for short ids, ~21 MiB for
  // 36-byte UUIDs, ~43 MiB for the longest (256 bytes). A batch of an
  // agent not cached costs one RocksDB read.
  uint64_t max_cached_agent_sets = 100'000;
  // Clock for retention and head flushes; the wall clock when empty.
  std::function<int64_t()> now_ms;
  // Roll-ups write their progress after every this many series.
  uint64_t rollup_chunk_series = 512;
  // How often the background thread looks for due maintenance (it is also
  // woken when the heads fill up).
  int64_t maintenance_interval_ms = 10'000;

  // Tests only: called at named points ("cut", "rollup_chunk" after a
  // roll-up chunk is written, "compact" before each column family of a
  // Compact, "select_match" each time Select runs a matcher on a label
  // value, "delete_series" after a deleted series' write, before it leaves
  // memory, "agent_set_read" after an agent's applied set is read from
  // disk on a cache miss); a non-OK status makes the operation fail there,
  // as a crash or a disk error would, and a slow hook makes it slow.
  std::function<absl::Status(std::string_view point)> test_fault;
};

struct SeriesSamples {
  SeriesId id;
  std::vector<Sample> samples;  // any order; same timestamp twice: last wins
};

struct AppendBatch {
  // Who sent it. Empty: not idempotent (no sequence is checked or kept).
  std::string agent_id;
  uint64_t sequence = 0;
  // A series may appear more than once; its samples are then joined (the
  // later of two equal timestamps wins) and counted once.
  std::vector<SeriesSamples> series;
  TenantId tenant = kDefaultTenant;  // last, so {agent, sequence, series} still reads
  // History being imported on purpose (sheafctl import). Without it, a
  // sample older than its series' newest by more than
  // out_of_order_window_ms is refused (too_old). With it:
  // - every sample is stored however far behind its series' newest it is,
  //   unless it is older than every retention (raw_retention_ms and each
  //   rollup's retention_ms, before now_ms()): those are counted in
  //   AppendResult::beyond_retention and not stored;
  // - a timestamp the series holds already is replaced (last write wins),
  //   counted once and added to no roll-up again, so a re-sent import
  //   counts once;
  // - the roll-ups of its time range come out as if the data had arrived
  //   live: samples older than the roll-up watermark add their windows
  //   when the head is cut into blocks (ReadRollup counts them from the
  //   head until then), newer ones are rolled up from raw blocks like live
  //   data. ReadRollup over a backfilled range
  //   equals Aggregate::Of over its raw samples when each window's samples
  //   arrive in time order (batches may split a window; sums then agree
  //   to rounding, exactly for decimal values); samples that interleave
  //   with ones already rolled up are merged as rollup.h says (an
  //   approximation), and a re-sent sample with a new value changes the
  //   raw value but not the roll-ups;
  // - the raw data of a backfilled time range is kept raw_retention_ms
  //   after it arrived even where it is older than raw retention (then
  //   dropped at compaction, the roll-ups staying), so that a re-sent
  //   import is recognised sample by sample for that long; one re-sent
  //   later than that is counted again in the roll-ups;
  // - memory stays bounded: like live samples, they go through the head
  //   (max_head_samples and its backpressure apply; cuts write them into
  //   blocks and roll-ups a block window at a time), so an import sending
  //   each series a sample per batch costs no read or write per sample.
  bool backfill = false;
  // Every sequence of the agent below this floor that the store has not
  // applied will never come (the agent gave it up), so the store forgets
  // the gaps under it. 0 means `sequence`: the old rule, where sequences
  // only grow and anything at or below the highest applied is a duplicate.
  // A newer agent sends its backlog and fresh batches side by side and
  // sets it to the oldest sequence it still holds.
  uint64_t sequence_floor = 0;
};

struct AppendResult {
  bool duplicate = false;         // sequence was already durable; nothing written
  uint64_t samples_added = 0;     // new (series, timestamp) pairs
  uint64_t durable_sequence = 0;  // agent's highest durable sequence after this call
  // Samples not stored because they were older than their series' newest
  // sample by more than out_of_order_window_ms, by series.
  std::vector<std::pair<SeriesId, uint64_t>> too_old;
  // Samples not stored because their series was deleted (DeleteSeries)
  // after the caller looked up its id, by series.
  std::vector<std::pair<SeriesId, uint64_t>> deleted;
  // Backfill only: samples not stored because they are older than every
  // retention (raw_retention_ms and each rollup's retention_ms) before
  // now, by series.
  std::vector<std::pair<SeriesId, uint64_t>> beyond_retention;
};

struct SeriesInfo {
  TenantId tenant;
  Labels labels;
  MetricType type;
};

// Reads one series' samples in time order (leveldb-style iterator).
// Holds a consistent snapshot; must not outlive the store.
class SampleIterator {
 public:
  virtual ~SampleIterator() = default;
  virtual bool Valid() const = 0;
  virtual void Next() = 0;
  virtual Sample sample() const = 0;  // REQUIRES: Valid()
  virtual absl::Status status() const = 0;
};

// A SampleIterator over samples in memory (or over an error).
class VectorSampleIterator : public SampleIterator {
 public:
  explicit VectorSampleIterator(std::vector<Sample> samples) : samples_(std::move(samples)) {}
  explicit VectorSampleIterator(absl::Status error) : status_(std::move(error)) {}
  bool Valid() const override { return pos_ < samples_.size(); }
  void Next() override { ++pos_; }
  Sample sample() const override { return samples_[pos_]; }
  absl::Status status() const override { return status_; }

 private:
  std::vector<Sample> samples_;
  size_t pos_ = 0;
  absl::Status status_;
};

struct StoreStats {
  uint64_t series = 0;
  uint64_t samples = 0;                               // exact: distinct (series, timestamp) pairs stored
  uint64_t disk_bytes = 0;                            // live SST files + write-ahead log
  uint64_t agents = 0;                                // agents with a recorded sequence
  uint64_t agent_sets_cached = 0;                     // of them, in memory (<= max_cached_agent_sets)
  uint64_t agent_set_loads = 0;                       // sets read back from disk (not cached)
  std::map<std::string, uint64_t> family_disk_bytes;  // live SST bytes per column family
  uint64_t wal_bytes = 0;
  uint64_t pending_compaction_bytes = 0;  // compaction debt (estimate)
  uint64_t write_stalls = 0;              // times writes were slowed or stopped
  uint64_t head_samples = 0;              // samples in memory not yet in blocks
  uint64_t memtable_bytes = 0;
  uint64_t block_cache_bytes = 0;  // in use
  int64_t rolled_up_until_ms = 0;  // raw data before this is in the rollups

  // Background maintenance (cuts of heads into blocks, roll-ups).
  uint64_t cuts = 0;
  uint64_t rollups = 0;               // roll-up runs completed
  uint64_t maintenance_failures = 0;  // cuts or roll-ups that failed
  double last_cut_seconds = 0;
  double last_rollup_seconds = 0;
  std::string last_maintenance_error;  // empty once maintenance succeeds again
  bool writable = true;                // false while RocksDB refuses writes (disk full, I/O error)
  std::string write_error;             // why, when not writable
  // The data directory's filesystem (statvfs, at most 500 ms old): space
  // available to sheafd, and its size.
  uint64_t disk_free_bytes = 0;
  uint64_t disk_total_bytes = 0;
};

// [A-Za-z0-9_.-]{1,64}: what a tenant may be named.
bool ValidTenantName(std::string_view name);
inline constexpr char kDefaultTenantName[] = "default";

class SeriesStore {
 public:
  static absl::StatusOr<std::unique_ptr<SeriesStore>> Open(const StoreOptions& options);
  virtual ~SeriesStore() = default;

  // The id of the tenant's series with these labels, created if new (the
  // type of an existing series is kept). REQUIRES: labels canonical and
  // validated. RESOURCE_EXHAUSTED when max_series is reached; UNAVAILABLE
  // when the disk refuses the write.
  virtual absl::StatusOr<SeriesId> GetOrCreateSeries(TenantId tenant, const Labels& labels, MetricType type) = 0;
  absl::StatusOr<SeriesId> GetOrCreateSeries(const Labels& labels, MetricType type) {
    return GetOrCreateSeries(kDefaultTenant, labels, type);
  }
  // The tenant's series with these labels, if it exists; never creates
  // one. REQUIRES: labels canonical. One hash lookup.
  virtual std::optional<SeriesId> FindSeries(TenantId tenant, const Labels& labels) = 0;
  // How many series the tenant holds in the index (deleted ones left it):
  // what a per-tenant series limit counts. Constant time.
  virtual uint64_t SeriesCount(TenantId tenant) = 0;

  // Writes all samples and the agent's sequence in one atomic write. If the
  // agent's sequence is already >= batch.sequence, writes nothing and
  // reports a duplicate. INVALID_ARGUMENT for an unknown series id or one
  // of another tenant; UNAVAILABLE when the disk refuses the write or the
  // in-memory head is full because maintenance keeps failing.
  virtual absl::StatusOr<AppendResult> Append(const AppendBatch& batch) = 0;

  // Highest durable sequence of the agent; 0 if none.
  virtual uint64_t AgentSequence(TenantId tenant, std::string_view agent_id) = 0;
  uint64_t AgentSequence(std::string_view agent_id) { return AgentSequence(kDefaultTenant, agent_id); }
  // Whether Append would take `sequence` (with `floor`, as in AppendBatch)
  // for a duplicate: a cheap check before the work of decoding a batch.
  virtual bool AgentSequenceApplied(TenantId tenant, std::string_view agent_id, uint64_t sequence,
                                    uint64_t floor) = 0;

  // Ids of the tenant's series matching every matcher, ascending (a
  // missing label matches as ""). Costs about the smallest posting list of
  // the matchers that reject "" (or the tenant's series if none does), and
  // a matcher runs once per distinct value of its label, not per series.
  virtual absl::StatusOr<std::vector<SeriesId>> Select(TenantId tenant, const std::vector<Matcher>& matchers) = 0;
  absl::StatusOr<std::vector<SeriesId>> Select(const std::vector<Matcher>& matchers) {
    return Select(kDefaultTenant, matchers);
  }

  // Deletes the tenant's series matching every matcher: their index
  // entries, samples and rollups. Returns how many were deleted. Appends
  // that still hold a deleted id drop those samples (AppendResult::deleted).
  virtual absl::StatusOr<uint64_t> DeleteSeries(TenantId tenant, const std::vector<Matcher>& matchers) = 0;

  virtual std::optional<SeriesInfo> GetSeries(SeriesId id) = 0;

  // Samples of `id` with start_ms <= timestamp <= end_ms, in time order.
  virtual std::unique_ptr<SampleIterator> Read(SeriesId id, int64_t start_ms, int64_t end_ms) = 0;
  // The samples of many series at once, as Read gives them: (*out)[i] gets
  // those of ids[i] in [start_ms, end_ms], in time order. One snapshot and
  // one RocksDB iterator for all, decoded straight into the vectors: what a
  // query over thousands of series wants (a Read per series costs an
  // iterator each). DATA_LOSS on a corrupt block. *out is resized to
  // ids.size(); the memory of the vectors already in it is reused.
  virtual absl::Status ReadMany(std::span<const SeriesId> ids, int64_t start_ms, int64_t end_ms,
                                std::vector<std::vector<Sample>>* out) = 0;

  // Rollup windows of `id` at one of the configured resolutions that start
  // in [start_ms, end_ms], in time order: stored windows where data was
  // rolled up, computed from raw samples (head included) after that.
  // INVALID_ARGUMENT for a resolution that is not configured.
  using Window = std::pair<int64_t, Aggregate>;  // window start, aggregate
  virtual absl::StatusOr<std::vector<Window>> ReadRollup(SeriesId id, int64_t resolution_ms, int64_t start_ms,
                                                         int64_t end_ms) = 0;
  virtual std::vector<int64_t> RollupResolutions() const = 0;
  // Raw data before this time is in the stored rollups, so reading windows
  // there decodes no raw samples; INT64_MIN while nothing is rolled up.
  virtual int64_t RolledUpUntil() const = 0;

  // Every label name in use by the tenant, sorted; and the values of one
  // name, sorted. At most `limit` entries (0: no limit); *truncated is set
  // when there were more.
  virtual absl::StatusOr<std::vector<std::string>> LabelNames(TenantId tenant, size_t limit, bool* truncated) = 0;
  virtual absl::StatusOr<std::vector<std::string>> LabelValues(TenantId tenant, std::string_view name, size_t limit,
                                                               bool* truncated) = 0;
  absl::StatusOr<std::vector<std::string>> LabelNames() { return LabelNames(kDefaultTenant, 0, nullptr); }
  absl::StatusOr<std::vector<std::string>> LabelValues(std::string_view name) {
    return LabelValues(kDefaultTenant, name, 0, nullptr);
  }

  virtual StoreStats Stats() = 0;

  // Tenants by name (sheafd's --auth-tokens): the id of `name`, given on
  // first use and kept in the store ("meta" 'T', key_codec.h), so it stays
  // the same across restarts. "default" is kDefaultTenant. INVALID_ARGUMENT
  // for a name that is not ValidTenantName; UNAVAILABLE when the disk
  // refuses the write.
  virtual absl::StatusOr<TenantId> TenantIdFor(std::string_view name) = 0;
  // Every tenant given an id so far, by name ("default" always).
  virtual std::map<std::string, TenantId> Tenants() = 0;

  // Cuts every head into blocks and writes memtables to disk (for a clean
  // shutdown and before measuring size).
  virtual absl::Status Flush() = 0;
  // Flush(), then a full manual compaction of every column family (applies
  // retention, merges block fragments into whole blocks). CANCELLED if
  // CancelCompaction() is called meanwhile.
  virtual absl::Status Compact() = 0;
  // Makes a running Compact() return soon (for shutdown). Later ones run.
  virtual void CancelCompaction() = 0;
  // Writes a consistent copy of the whole store (samples, heads, series,
  // agent sequences) to `dir`, which must not exist; its parent must. Files
  // are hard-linked where `dir` is on the store's filesystem, so a snapshot
  // costs little space until compaction rewrites the originals. Opening
  // `dir` as a store gives the data as of the call: that is the restore.
  // ALREADY_EXISTS if `dir` exists.
  virtual absl::Status Checkpoint(const std::string& dir) = 0;
};

}  // namespace sheaf::storage

#endif  // SHEAF_STORAGE_SERIES_STORE_H_
