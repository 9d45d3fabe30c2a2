// Rollups: per-series aggregates over fixed time windows (1m and 1h by
// default), so that a query over a month reads hours, not raw samples.
// Stored one column family per resolution and updated with RocksDB's merge
// operator (an update is an associative merge: no read-modify-write).
#ifndef SHEAF_STORAGE_ROLLUP_H_
#define SHEAF_STORAGE_ROLLUP_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "storage/types.h"

namespace sheaf::storage {

// Aggregate of the samples of one series in one window.
//
// Counter increase: `increase` is the rise within the window with resets
// taken into account (a drop means the counter restarted from 0, as in
// Prometheus). Merging two aggregates of the same window that come from
// different flushes joins them at the seam: later.first - earlier.last, or
// later.first if that is a drop. Aggregates whose time ranges interleave
// (out-of-order samples) are joined in first_ts order, an approximation.
struct Aggregate {
  uint64_t count = 0;
  double sum = 0;
  double min = 0;
  double max = 0;
  int64_t first_ts = 0;
  double first = 0;
  int64_t last_ts = 0;
  double last = 0;
  double increase = 0;  // for counters; 0 for others
  bool counter = false;

  // Combines two aggregates of the same window.
  static Aggregate Merge(const Aggregate& a, const Aggregate& b);
  // REQUIRES: samples sorted by time, non-empty.
  static Aggregate Of(std::span<const Sample> samples, bool counter);

  friend bool operator==(const Aggregate&, const Aggregate&) = default;
};

// A run of windows of one series, window start and aggregate, sorted by
// window start with no repeats.
using RollupWindows = std::vector<std::pair<int64_t, Aggregate>>;

// Rollup blocks: the windows of one series over a longer stretch (a day of
// 1m windows, a month of 1h windows), stored column by column, each column
// a sample block (sample_codec.h) keyed by window start, so regular windows
// and decimal values compress as raw samples do. Columns that repeat
// another for the whole block (a counter's min is its first value, its max
// its last) are flagged instead of stored.
//
// Layout: version (1 byte, = 1), flags (1 byte: bit 0 counter, bit 1 min ==
// first, bit 2 max == last, bit 3 increase == last - first), then length-
// prefixed sample blocks: count, first_ts - start, last_ts - start, first,
// last, sum, [min], [max], [increase].
std::string EncodeRollupBlock(const RollupWindows& windows);
// Appends the windows to *out. DATA_LOSS on corrupt input.
absl::Status DecodeRollupBlock(std::string_view block, RollupWindows* out);
// Union of the blocks' windows; a window in several is Aggregate::Merge'd
// in argument order.
absl::StatusOr<std::string> MergeRollupBlocks(std::span<const std::string_view> blocks);

}  // namespace sheaf::storage

#endif  // SHEAF_STORAGE_ROLLUP_H_
