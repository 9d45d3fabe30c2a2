// A set of batch sequences kept as sorted, disjoint, non-adjacent ranges.
//
// Exactly-once ingestion needs to know which of an agent's sequences have
// been applied (the daemon) or acknowledged (the agent's spool). An agent
// sends its fresh batches and the backlog of an outage side by side, so the
// set is not one high-water mark: it is "everything up to some point, plus a
// few runs above it" — two or three ranges in practice. Where a sequence can
// no longer arrive (the agent says so with a floor, or dropped it from its
// spool), ForgetBelow closes the gaps under it, so the set stays small.
//
// Thread-compatible.
#ifndef SHEAF_COMMON_SEQUENCE_SET_H_
#define SHEAF_COMMON_SEQUENCE_SET_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sheaf {

class SequenceSet {
 public:
  struct Range {
    uint64_t first = 0;  // inclusive
    uint64_t last = 0;   // inclusive, >= first
    bool operator==(const Range&) const = default;
  };

  SequenceSet() = default;
  // Every sequence in [1, high] — how a single high-water mark reads.
  static SequenceSet UpTo(uint64_t high);

  bool Contains(uint64_t seq) const;
  // Adds one sequence (0 is ignored: sequences start at 1).
  void Insert(uint64_t seq);
  void InsertRange(uint64_t first, uint64_t last);
  // Treats every sequence below `floor` as present: it will never arrive
  // again, so the gaps under it need not be remembered.
  void ForgetBelow(uint64_t floor);
  // Past `max_ranges`, the lowest gaps are closed (their sequences treated
  // as present) until it fits. Returns how many sequences that closed over.
  uint64_t Bound(size_t max_ranges);

  // Highest sequence in the set; 0 when empty.
  uint64_t Max() const { return ranges_.empty() ? 0 : ranges_.back().last; }
  // Lowest sequence > 0 not in the set.
  uint64_t FirstMissing() const;
  bool empty() const { return ranges_.empty(); }
  const std::vector<Range>& ranges() const { return ranges_; }
  bool operator==(const SequenceSet&) const = default;

  // Byte form: a version byte (1), the number of ranges and, per range, the
  // gap from the previous range's end and the range's length, as varints.
  std::string Encode() const;
  // Accepts Encode()'s form and, for sets written by older daemons, an
  // 8-byte big-endian high-water mark (read as UpTo). nullopt when corrupt.
  static std::optional<SequenceSet> Decode(std::string_view bytes);

  // "1-40,45,50-52" for logs and messages.
  std::string ToString() const;

 private:
  std::vector<Range> ranges_;  // sorted; ranges neither overlap nor touch
};

}  // namespace sheaf

#endif  // SHEAF_COMMON_SEQUENCE_SET_H_
