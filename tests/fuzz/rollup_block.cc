// Fuzz target "rollup_block": the roll-up block decoder (storage/rollup.h)
// and MergeRollupBlocks on up to three blocks, "####" apart. Properties:
// decoded windows are sorted without repeats and survive an encode/decode
// round trip; a merge's result decodes.
#include <string>
#include <vector>

#include "storage/rollup.h"
#include "tests/fuzz/targets.h"

namespace sheaf::fuzz {

int FuzzRollupBlock(const uint8_t* data, size_t size) {
  const std::vector<std::string_view> blocks = SplitParts(AsText(data, size), 3);
  for (std::string_view b : blocks) {
    storage::RollupWindows windows;
    if (!storage::DecodeRollupBlock(b, &windows).ok()) continue;
    for (size_t i = 1; i < windows.size(); ++i) {
      CheckOrDie(windows[i - 1].first < windows[i].first, "decoded windows not sorted or repeated");
    }
    storage::RollupWindows again;
    CheckOrDie(storage::DecodeRollupBlock(storage::EncodeRollupBlock(windows), &again).ok() &&
                   again.size() == windows.size(),
               "decoded windows do not round-trip through EncodeRollupBlock");
  }
  auto merged = storage::MergeRollupBlocks(blocks);
  if (merged.ok()) {
    storage::RollupWindows windows;
    CheckOrDie(storage::DecodeRollupBlock(*merged, &windows).ok(), "MergeRollupBlocks made a block that does not decode");
  }
  return 0;
}

}  // namespace sheaf::fuzz
