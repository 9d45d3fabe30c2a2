// Fuzz target "sample_block": the sample block decoder (storage/
// sample_codec.h) on corrupt blocks as RocksDB could hand them over, and
// MergeBlocks (the merge operator) on up to three of them, "####" apart.
// Properties: whatever decodes re-encodes and decodes to the same samples
// bit for bit, with strictly increasing timestamps; PeekBlock agrees with
// the decode; a merge's result decodes.
#include <bit>
#include <string>
#include <vector>

#include "storage/sample_codec.h"
#include "tests/fuzz/targets.h"

namespace sheaf::fuzz {
namespace {

bool SameBits(const std::vector<model::Sample>& a, const std::vector<model::Sample>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].timestamp_ms != b[i].timestamp_ms ||
        std::bit_cast<uint64_t>(a[i].value) != std::bit_cast<uint64_t>(b[i].value)) {
      return false;
    }
  }
  return true;
}

void CheckBlock(std::string_view block) {
  auto samples = storage::DecodeBlock(block);
  auto info = storage::PeekBlock(block);
  (void)storage::MeasureBlock(block);
  if (!samples.ok()) return;
  CheckOrDie(info.ok(), "a block decodes but its header does not peek");
  CheckOrDie(info->count == samples->size(), "PeekBlock's count differs from the decoded samples");
  for (size_t i = 1; i < samples->size(); ++i) {
    CheckOrDie((*samples)[i - 1].timestamp_ms < (*samples)[i].timestamp_ms, "decoded timestamps not increasing");
  }
  if (!samples->empty()) {
    CheckOrDie(info->first_ts == samples->front().timestamp_ms && info->last_ts == samples->back().timestamp_ms,
               "PeekBlock's first/last timestamps differ from the decoded samples");
  }
  auto again = storage::DecodeBlock(storage::EncodeBlock(*samples));
  CheckOrDie(again.ok() && SameBits(*samples, *again), "decoded samples do not round-trip through EncodeBlock");
}

}  // namespace

int FuzzSampleBlock(const uint8_t* data, size_t size) {
  const std::vector<std::string_view> blocks = SplitParts(AsText(data, size), 3);
  for (std::string_view b : blocks) CheckBlock(b);
  auto merged = storage::MergeBlocks(blocks);
  if (merged.ok()) CheckOrDie(storage::DecodeBlock(*merged).ok(), "MergeBlocks made a block that does not decode");
  return 0;
}

}  // namespace sheaf::fuzz
