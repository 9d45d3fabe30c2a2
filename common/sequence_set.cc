#include "common/sequence_set.h"

#include <algorithm>

#include "common/coding.h"

namespace sheaf {

SequenceSet SequenceSet::UpTo(uint64_t high) {
  SequenceSet s;
  if (high > 0) s.ranges_.push_back({1, high});
  return s;
}

bool SequenceSet::Contains(uint64_t seq) const {
  // The first range that ends at or after seq is the only one that can hold it.
  auto it = std::lower_bound(ranges_.begin(), ranges_.end(), seq,
                             [](const Range& r, uint64_t v) { return r.last < v; });
  return it != ranges_.end() && it->first <= seq;
}

void SequenceSet::Insert(uint64_t seq) { InsertRange(seq, seq); }

void SequenceSet::InsertRange(uint64_t first, uint64_t last) {
  if (first == 0) first = 1;
  if (last < first) return;
  // Ranges that overlap or touch [first, last] merge into it. "Touch" uses
  // r.last + 1 >= first, written so that it cannot overflow at 2^64 - 1.
  auto lo = std::lower_bound(ranges_.begin(), ranges_.end(), first,
                             [](const Range& r, uint64_t v) { return r.last < v - 1; });  // v >= 1
  auto hi = lo;
  while (hi != ranges_.end() && (last == UINT64_MAX || hi->first <= last + 1)) {
    first = std::min(first, hi->first);
    last = std::max(last, hi->last);
    ++hi;
  }
  lo = ranges_.erase(lo, hi);
  ranges_.insert(lo, Range{first, last});
}

void SequenceSet::ForgetBelow(uint64_t floor) {
  if (floor <= 1) return;
  InsertRange(1, floor - 1);
}

uint64_t SequenceSet::Bound(size_t max_ranges) {
  if (max_ranges == 0) max_ranges = 1;
  uint64_t closed = 0;
  while (ranges_.size() > max_ranges) {
    // Close the gap between the first two ranges.
    closed += ranges_[1].first - ranges_[0].last - 1;
    ranges_[1].first = ranges_[0].first;
    ranges_.erase(ranges_.begin());
  }
  return closed;
}

uint64_t SequenceSet::FirstMissing() const {
  if (ranges_.empty() || ranges_[0].first > 1) return 1;
  return ranges_[0].last + 1;
}

std::string SequenceSet::Encode() const {
  std::string out;
  out.push_back(1);
  PutVarint(out, ranges_.size());
  uint64_t prev = 0;
  for (const Range& r : ranges_) {
    PutVarint(out, r.first - prev);
    PutVarint(out, r.last - r.first);
    prev = r.last;
  }
  return out;
}

std::optional<SequenceSet> SequenceSet::Decode(std::string_view bytes) {
  if (bytes.size() == 8) return UpTo(GetFixed64BE(bytes));
  if (bytes.empty() || bytes[0] != 1) return std::nullopt;
  bytes.remove_prefix(1);
  uint64_t n = 0;
  if (!GetVarint(&bytes, &n) || n > bytes.size()) return std::nullopt;
  SequenceSet s;
  s.ranges_.reserve(n);
  uint64_t prev = 0;
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t gap = 0, len = 0;
    if (!GetVarint(&bytes, &gap) || !GetVarint(&bytes, &len)) return std::nullopt;
    // Ranges must be sorted and apart: a gap of at least 2 after a range
    // (1 for the first, which starts after 0), and no overflow.
    if (gap < (i == 0 ? 1 : 2) || gap > UINT64_MAX - prev || len > UINT64_MAX - (prev + gap)) return std::nullopt;
    Range r{prev + gap, prev + gap + len};
    s.ranges_.push_back(r);
    prev = r.last;
  }
  if (!bytes.empty()) return std::nullopt;
  return s;
}

std::string SequenceSet::ToString() const {
  std::string out;
  for (const Range& r : ranges_) {
    if (!out.empty()) out += ',';
    out += std::to_string(r.first);
    if (r.last != r.first) {
      out += '-';
      out += std::to_string(r.last);
    }
  }
  return out;
}

}  // namespace sheaf
