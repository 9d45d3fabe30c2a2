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

  // Fixed 73-byte little-endian layout: count(8) sum(8) min(8) max(8)
  // first_ts(8) first(8) last_ts(8) last(8) increase(8) flags(1).
  std::string Encode() const;
  static std::optional<Aggregate> Decode(std::string_view in);
};

}  // namespace sheaf::storage

#endif  // SHEAF_STORAGE_ROLLUP_H_
