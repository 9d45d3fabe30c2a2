// RocksDB plug-ins of the store: the merge operators that combine sample
// blocks and rollup aggregates, and the compaction filter that enforces
// retention. Internal to storage/. Nothing here may throw into RocksDB:
// corrupt input makes a merge fail (RocksDB reports corruption), never crash.
#ifndef SHEAF_STORAGE_ROCKSDB_OPERATORS_H_
#define SHEAF_STORAGE_ROCKSDB_OPERATORS_H_

#include <rocksdb/compaction_filter.h>
#include <rocksdb/merge_operator.h>

#include <functional>
#include <memory>
#include <utility>
#include <vector>

namespace sheaf::storage {

// Operands and values are sample blocks; the merge is the blocks' union in
// time order, last write winning on equal timestamps. Name never changes.
std::shared_ptr<rocksdb::MergeOperator> NewBlockMergeOperator();

// Operands and values are rollup blocks; the merge is MergeRollupBlocks.
std::shared_ptr<rocksdb::MergeOperator> NewRollupMergeOperator();

// What a compaction drops: keys whose window ended at or before cutoff_ms,
// except those whose window starts in one of the `kept` [from, to) ranges.
struct RetentionCutoff {
  int64_t cutoff_ms;
  std::vector<std::pair<int64_t, int64_t>> kept;  // sorted, disjoint
};

// Drops keys (series_id, window_start) whose window of `window_ms` is
// expired by cutoff(), read once per compaction.
std::shared_ptr<rocksdb::CompactionFilterFactory> NewRetentionFilterFactory(int64_t window_ms,
                                                                            std::function<RetentionCutoff()> cutoff);

}  // namespace sheaf::storage

#endif  // SHEAF_STORAGE_ROCKSDB_OPERATORS_H_
