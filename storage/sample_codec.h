// The compressed sample block: one series' samples over a stretch of time,
// in one self-describing byte string (a RocksDB value; RocksDB's LZ4/ZSTD
// and block checksums apply on top, so there is no checksum here).
//
// Layout of format version 1 ("zz" = zigzag, "varint" = LEB128):
//
//   kind       1 byte   version (high nibble, = 1) | value mode (low nibble:
//                       0 decimal, 1 xor)
//   count      varint   number of samples, <= kMaxBlockSamples
//   first_ts   zz varint                                   (count >= 1)
//   span       varint   last_ts - first_ts, mod 2^64       (count >= 2)
//   ts desc    IntSeq descriptor over the timestamps       (count >= 3)
//   decimal mode only:
//     exp      1 byte   int8 e in [-12, 12]: value = m * 10^e  (count >= 1)
//     m0       zz varint first mantissa                    (count >= 1)
//     val desc IntSeq descriptor over the mantissas        (count >= 2)
//   ts payload    bits, zero-padded to a byte (only if ts desc has one)
//   value payload bits, zero-padded to a byte (decimal: if val desc has one;
//                 xor: the whole Gorilla stream, count >= 1)
//
// Both descriptors precede both payloads so that a reader knows how many bits
// each sample costs at least before it allocates anything.
//
// IntSeq: a sequence x_0..x_{n-1} of 64-bit integers (timestamps or decimal
// mantissas; all arithmetic is mod 2^64, so any int64 works) whose x_0 is
// stored elsewhere. It is transformed into y_i = x_i - x_{i-1} ("delta") or
// y_i = (x_i - x_{i-1}) - (x_{i-1} - x_{i-2}) ("dod", delta of delta, with
// the first delta in the descriptor). Descriptor:
//
//   flags  1 byte  bit 0 dod; bit 1 constant (every y_i equals base, taken
//                  as is; no payload; no other bits); bit 2 zero flags;
//                  bit 3 offset (no zigzag);
//                  bit 4 gcd present; bits 5-7 j (residue bits)
//   first delta  zz varint   (dod only)
//   gcd          varint >= 2 (gcd present only)
//   base         zz varint   (omitted for constant timestamp deltas: those
//                             are span / (count - 1))
//   k            1 byte, 0..63, the Rice parameter (not constant only)
//
// Payload, per y_i, least significant bit first:
//   [zero flag]  1 bit: 1 means y_i == 0 and nothing else follows
//   s = y_i / gcd, t = s - base, q = t >> j (arithmetic unless offset),
//   u = offset ? q : zz(q), then u as Rice(k): (u >> k) zeros, a one, and
//   the low k bits of u; if u >> k >= 24, instead 24 zeros, 6 bits
//   (bit_width(u) - 1) and u in bit_width(u) bits.
//   [residue]    j > 0 only: 0 if t mod 2^j == 0, else 1 and j bits of it.
//
// The gcd is exact (all values are multiples of it). The encoder picks the
// transform, zero flags, j, offset/zigzag and k per block and per sequence
// by estimated size, from bit-width histograms of a sample of ~128 values;
// base is the mean (zigzag) or the minimum (offset). What each is for:
// regular scrapes make timestamps constant (0 bits); counters that did not
// move cost 1 bit with zero flags; byte counters in 512/1024/4096 units drop
// those bits via the gcd; disk counters that are "mostly whole pages" save
// ~2 bits/sample via j; bursts cost an escape instead of a huge unary code.
//
// Value modes:
//   decimal  every value is exactly m * 10^e for one e in [-12, 12] with
//            |m| < 2^53 (checked bit for bit, so -0.0, NaN and Inf never
//            qualify); the mantissas are an IntSeq. Decoded as m / 10^-e
//            (e < 0) or m * 10^e, which is how a parser rounds decimals.
//   xor      Gorilla: the first value's 64 bits, then per value the XOR with
//            the previous one: 0 = same; 10 + bits in the previous window;
//            11 + 5 bits leading zeros + 6 bits (length - 1) + the bits.
// The encoder uses decimal when it qualifies and is smaller, else xor.

#ifndef SHEAF_STORAGE_SAMPLE_CODEC_H_
#define SHEAF_STORAGE_SAMPLE_CODEC_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "storage/types.h"

namespace sheaf::storage {

// The most samples one block may hold. A decoder trusts no more than this
// from a header: a block whose streams cost at least one bit per sample must
// also carry that many bits, and only a constant, regularly scraped series
// (0 bits per sample) can reach this cap from a few bytes.
inline constexpr uint32_t kMaxBlockSamples = uint32_t{1} << 24;

// Stored in the block; never renumber.
enum class BlockValueMode : uint8_t {
  kDecimal = 0,
  kXor = 1,
};

struct BlockEncodeOptions {
  // For tests and measurements: use this value mode instead of the smaller
  // one. kDecimal still falls back to kXor if the values are not decimals.
  std::optional<BlockValueMode> value_mode;
};

// Encodes samples into one block, overwriting *out (its capacity is reused).
// REQUIRES: timestamps strictly increasing; samples.size() <= kMaxBlockSamples.
// An empty span gives a valid empty block. Values round-trip bit for bit
// (including -0.0, NaN payloads and infinities).
void EncodeBlock(std::span<const Sample> samples, std::string* out, const BlockEncodeOptions& options = {});
std::string EncodeBlock(std::span<const Sample> samples, const BlockEncodeOptions& options = {});

// Decodes a block. Errors (DATA_LOSS) on truncated, corrupt or trailing
// bytes and on an unknown format version; never reads outside `block`, and
// allocates at most 8 samples per byte of block (or kMaxBlockSamples for a
// constant regular series). The decoded timestamps are strictly increasing
// and end at the header's last timestamp, or it is an error. There is no
// checksum: a flipped payload bit may decode to other values.
absl::StatusOr<std::vector<Sample>> DecodeBlock(std::string_view block);
// Same, appending to *out. On error *out keeps its previous contents.
absl::Status DecodeBlockAppend(std::string_view block, std::vector<Sample>* out);

// What the header says, without decoding the samples: O(1).
struct BlockInfo {
  uint32_t count = 0;
  int64_t first_ts = 0;  // 0 for an empty block
  int64_t last_ts = 0;   // 0 for an empty block; == first_ts if count == 1
  BlockValueMode mode = BlockValueMode::kDecimal;
};
// Errors (DATA_LOSS) if the header is truncated or inconsistent. An OK result
// does not vouch for the rest of the block.
absl::StatusOr<BlockInfo> PeekBlock(std::string_view block);

// Where a block's bytes go, for tools and compression measurements.
// Decodes the whole block (same errors as DecodeBlock).
struct BlockSizes {
  size_t header = 0;      // kind, count, first timestamp, span
  size_t timestamps = 0;  // timestamp descriptor and payload
  size_t values = 0;      // exponent, first mantissa, descriptor, payload
};
absl::StatusOr<BlockSizes> MeasureBlock(std::string_view block);

// Merges blocks (any order, may overlap) into one: sorted by time; on equal
// timestamps the sample from the LATER block in argument order wins (last
// write wins). Zero blocks give an empty block. Errors: DATA_LOSS if any
// block does not decode; RESOURCE_EXHAUSTED if the result would exceed
// kMaxBlockSamples. Made for a RocksDB merge operator: blocks already in
// time order are concatenated without sorting.
absl::StatusOr<std::string> MergeBlocks(std::span<const std::string_view> blocks);
// Same, overwriting *out (left unspecified on error).
absl::Status MergeBlocks(std::span<const std::string_view> blocks, std::string* out);

}  // namespace sheaf::storage

#endif  // SHEAF_STORAGE_SAMPLE_CODEC_H_
