// SeriesStore: the time-series store the daemon sees. The RocksDB-backed
// implementation stays behind this interface (storage/rocksdb_series_store.cc).
//
// Thread-safety: every method may be called from any thread concurrently.
// Appends are serialized internally (that is what makes the idempotency check
// and the sample count exact); reads run in parallel with them.
#ifndef SHEAF_STORAGE_SERIES_STORE_H_
#define SHEAF_STORAGE_SERIES_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "storage/matcher.h"
#include "storage/types.h"

namespace sheaf::storage {

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
};

struct SeriesSamples {
  SeriesId id;
  std::vector<Sample> samples;  // any order; same timestamp twice: last wins
};

struct AppendBatch {
  // Who sent it. Empty: not idempotent (no sequence is checked or kept).
  std::string agent_id;
  uint64_t sequence = 0;
  std::vector<SeriesSamples> series;
};

struct AppendResult {
  bool duplicate = false;         // sequence was already durable; nothing written
  uint64_t samples_added = 0;     // new (series, timestamp) pairs
  uint64_t durable_sequence = 0;  // agent's highest durable sequence after this call
};

struct SeriesInfo {
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

struct StoreStats {
  uint64_t series = 0;
  uint64_t samples = 0;     // exact: distinct (series, timestamp) pairs stored
  uint64_t disk_bytes = 0;  // live SST files + write-ahead log
  uint64_t agents = 0;      // agents with a recorded sequence
};

class SeriesStore {
 public:
  static absl::StatusOr<std::unique_ptr<SeriesStore>> Open(const StoreOptions& options);
  virtual ~SeriesStore() = default;

  // The id of the series with these labels, created if new (the type of an
  // existing series is kept). REQUIRES: labels canonical and validated.
  // RESOURCE_EXHAUSTED when max_series is reached.
  virtual absl::StatusOr<SeriesId> GetOrCreateSeries(const Labels& labels, MetricType type) = 0;

  // Writes all samples and the agent's sequence in one atomic write. If the
  // agent's sequence is already >= batch.sequence, writes nothing and
  // reports a duplicate. INVALID_ARGUMENT for an unknown series id.
  virtual absl::StatusOr<AppendResult> Append(const AppendBatch& batch) = 0;

  // Highest durable sequence of the agent; 0 if none.
  virtual uint64_t AgentSequence(std::string_view agent_id) = 0;

  // Ids of the series matching every matcher, ascending.
  virtual absl::StatusOr<std::vector<SeriesId>> Select(const std::vector<Matcher>& matchers) = 0;

  virtual std::optional<SeriesInfo> GetSeries(SeriesId id) = 0;

  // Samples of `id` with start_ms <= timestamp <= end_ms, in time order.
  virtual std::unique_ptr<SampleIterator> Read(SeriesId id, int64_t start_ms, int64_t end_ms) = 0;

  virtual StoreStats Stats() = 0;

  // Memtables to disk (for a clean shutdown and before measuring size).
  virtual absl::Status Flush() = 0;
  // Full manual compaction of every column family.
  virtual absl::Status Compact() = 0;
};

}  // namespace sheaf::storage

#endif  // SHEAF_STORAGE_SERIES_STORE_H_
