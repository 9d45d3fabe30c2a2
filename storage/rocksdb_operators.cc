#include "storage/rocksdb_operators.h"

#include <algorithm>
#include <string_view>
#include <vector>

#include "storage/key_codec.h"
#include "storage/rollup.h"
#include "storage/sample_codec.h"

namespace sheaf::storage {
namespace {

std::string_view View(const rocksdb::Slice& s) { return std::string_view(s.data(), s.size()); }

// Values and operands are blocks of some kind; merging is `merge` over the
// existing value and the operands in order (later ones win).
using MergeFn = absl::StatusOr<std::string> (*)(std::span<const std::string_view>);

class BlockListMergeOperator : public rocksdb::MergeOperator {
 public:
  BlockListMergeOperator(const char* name, MergeFn merge) : name_(name), merge_(merge) {}

  bool FullMergeV2(const MergeOperationInput& in, MergeOperationOutput* out) const override {
    std::vector<std::string_view> blocks;
    blocks.reserve(in.operand_list.size() + 1);
    if (in.existing_value != nullptr) blocks.push_back(View(*in.existing_value));
    for (const auto& op : in.operand_list) blocks.push_back(View(op));
    return Merge(blocks, &out->new_value);
  }

  bool PartialMergeMulti(const rocksdb::Slice& /*key*/, const std::deque<rocksdb::Slice>& operands,
                         std::string* new_value, rocksdb::Logger* /*logger*/) const override {
    std::vector<std::string_view> blocks;
    for (const auto& op : operands) blocks.push_back(View(op));
    return Merge(blocks, new_value);
  }

  const char* Name() const override { return name_; }

 private:
  bool Merge(const std::vector<std::string_view>& blocks, std::string* out) const {
    if (blocks.size() == 1) {
      out->assign(blocks[0]);
      return true;
    }
    auto merged = merge_(blocks);
    if (!merged.ok()) return false;  // RocksDB reports corruption
    *out = *std::move(merged);
    return true;
  }

  const char* name_;
  MergeFn merge_;
};

absl::StatusOr<std::string> MergeSampleBlocks(std::span<const std::string_view> blocks) { return MergeBlocks(blocks); }

class RetentionFilter : public rocksdb::CompactionFilter {
 public:
  RetentionFilter(int64_t window_ms, RetentionCutoff cutoff) : window_ms_(window_ms), cutoff_(std::move(cutoff)) {}

  bool Filter(int /*level*/, const rocksdb::Slice& key, const rocksdb::Slice& /*value*/, std::string* /*new_value*/,
              bool* /*value_changed*/) const override {
    return Expired(key);
  }
  bool FilterMergeOperand(int /*level*/, const rocksdb::Slice& key, const rocksdb::Slice& /*operand*/) const override {
    return Expired(key);
  }
  const char* Name() const override { return "sheaf.Retention"; }

 private:
  bool Expired(const rocksdb::Slice& key) const {
    auto k = keys::DecodeSeriesTimeKey(View(key));
    if (!k || k->time_ms + window_ms_ > cutoff_.cutoff_ms) return false;
    // Kept: the first range ending after the window start holds it if it starts at or before it.
    auto r = std::upper_bound(cutoff_.kept.begin(), cutoff_.kept.end(), k->time_ms,
                              [](int64_t t, const std::pair<int64_t, int64_t>& range) { return t < range.second; });
    return r == cutoff_.kept.end() || r->first > k->time_ms;
  }
  int64_t window_ms_;
  RetentionCutoff cutoff_;
};

class RetentionFilterFactory : public rocksdb::CompactionFilterFactory {
 public:
  RetentionFilterFactory(int64_t window_ms, std::function<RetentionCutoff()> cutoff)
      : window_ms_(window_ms), cutoff_(std::move(cutoff)) {}

  std::unique_ptr<rocksdb::CompactionFilter> CreateCompactionFilter(
      const rocksdb::CompactionFilter::Context& /*context*/) override {
    // One cutoff per compaction: the clock is read once, not per key.
    return std::make_unique<RetentionFilter>(window_ms_, cutoff_());
  }
  const char* Name() const override { return "sheaf.RetentionFactory"; }

 private:
  int64_t window_ms_;
  std::function<RetentionCutoff()> cutoff_;
};

}  // namespace

// The names are stored in the database's options: never change them.
std::shared_ptr<rocksdb::MergeOperator> NewBlockMergeOperator() {
  return std::make_shared<BlockListMergeOperator>("sheaf.BlockMerge", &MergeSampleBlocks);
}

std::shared_ptr<rocksdb::MergeOperator> NewRollupMergeOperator() {
  return std::make_shared<BlockListMergeOperator>("sheaf.RollupBlockMerge", &MergeRollupBlocks);
}

std::shared_ptr<rocksdb::CompactionFilterFactory> NewRetentionFilterFactory(int64_t window_ms,
                                                                            std::function<RetentionCutoff()> cutoff) {
  return std::make_shared<RetentionFilterFactory>(window_ms, std::move(cutoff));
}

}  // namespace sheaf::storage
