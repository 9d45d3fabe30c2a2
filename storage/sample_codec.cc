#include "storage/sample_codec.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cassert>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "common/coding.h"

namespace sheaf::storage {
namespace {

constexpr uint8_t kFormatVersion = 1;
// Unary codes of this length or more become an escape. Long enough that the
// Rice parameter, not the escape, codes the body of the distribution; short
// enough that a 10x burst costs ~30 bits instead of hundreds.
constexpr int kEscapeQ = 24;
constexpr int kMinExponent = -12;
constexpr int kMaxExponent = 12;
constexpr int kMaxResidueBits = 7;  // j fits in 3 bits of the flags byte

// IntSeq flags byte.
constexpr uint8_t kSeqDod = 1 << 0;
constexpr uint8_t kSeqConstant = 1 << 1;
constexpr uint8_t kSeqZeroFlags = 1 << 2;
constexpr uint8_t kSeqOffset = 1 << 3;
constexpr uint8_t kSeqGcd = 1 << 4;
constexpr int kSeqShiftPos = 5;

// 10^0..10^22 are exact doubles, so m / 10^k and m * 10^k round once.
constexpr std::array<double, 23> kPow10 = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                           1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

absl::Status Corrupt(std::string_view what) {
  return absl::DataLossError(std::string("sample block: ") + std::string(what));
}

// ---------------------------------------------------------------------------
// Integers. Everything is uint64 mod 2^64 so that no input can overflow a
// signed type; "signed" means the int64 with the same bits.

inline uint64_t Mask(int width) { return width >= 64 ? ~uint64_t{0} : (uint64_t{1} << width) - 1; }
inline bool IsNegative(uint64_t v) { return (v >> 63) != 0; }
inline uint64_t Magnitude(uint64_t v) { return IsNegative(v) ? 0 - v : v; }

bool GetByte(std::string_view* in, uint8_t* b) {
  if (in->empty()) return false;
  *b = static_cast<uint8_t>(in->front());
  in->remove_prefix(1);
  return true;
}

inline uint64_t LoadLE64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap64(v);
  return v;
}

// Binary gcd: no 64-bit divisions, which cost more than the whole Rice code.
uint64_t Gcd(uint64_t a, uint64_t b) {
  if (a == 0) return b;
  if (b == 0) return a;
  const int shift = std::countr_zero(a | b);
  a >>= std::countr_zero(a);
  do {
    b >>= std::countr_zero(b);
    if (a > b) std::swap(a, b);
    b -= a;
  } while (b != 0);
  return a << shift;
}

// Exact division of a signed value by a divisor of its magnitude.
class ExactDivider {
 public:
  explicit ExactDivider(uint64_t d) : d_(d), pow2_((d & (d - 1)) == 0), shift_(std::countr_zero(d)) {}
  uint64_t Divide(uint64_t v) const {
    // Exact, so an arithmetic shift needs no rounding fix-up.
    if (pow2_) return static_cast<uint64_t>(static_cast<int64_t>(v) >> shift_);
    const uint64_t m = Magnitude(v) / d_;
    return IsNegative(v) ? 0 - m : m;
  }

 private:
  uint64_t d_;
  bool pow2_;
  int shift_;
};

// ---------------------------------------------------------------------------
// Bits, least significant first, in little-endian 64-bit words.

class BitWriter {
 public:
  explicit BitWriter(std::string* out) : out_(out) {}

  // REQUIRES: 0 <= width <= 64 and bits < 2^width.
  void Put(uint64_t bits, int width) {
    acc_ |= bits << fill_;
    fill_ += width;
    if (fill_ >= 64) {
      Flush();
      fill_ -= 64;
      acc_ = fill_ == 0 ? 0 : bits >> (width - fill_);
    }
  }

  // Pads with zero bits to a byte boundary.
  void Finish() {
    char buf[8];
    Store(buf);
    out_->append(buf, static_cast<size_t>((fill_ + 7) / 8));
    acc_ = 0;
    fill_ = 0;
  }

 private:
  void Store(char* buf) const {
    uint64_t v = acc_;
    if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap64(v);
    std::memcpy(buf, &v, 8);
  }
  void Flush() {
    char buf[8];
    Store(buf);
    out_->append(buf, 8);
  }

  std::string* out_;
  uint64_t acc_ = 0;
  int fill_ = 0;  // < 64 between calls
};

class BitReader {
 public:
  explicit BitReader(std::string_view in) : data_(reinterpret_cast<const uint8_t*>(in.data())), size_(in.size()) {}

  // The next bits, at least 57 of them valid; zeros past the end (which
  // Overrun() reports), so a corrupt stream never reads out of bounds.
  uint64_t Peek() const {
    const size_t byte = pos_ >> 3;
    uint64_t w = 0;
    if (byte + 8 <= size_) {
      w = LoadLE64(data_ + byte);
    } else {
      for (size_t i = byte; i < size_; ++i) w |= uint64_t{data_[i]} << (8 * (i - byte));
    }
    return w >> (pos_ & 7);
  }
  void Skip(uint64_t n) { pos_ += n; }
  // REQUIRES: width <= 57.
  uint64_t Read(int width) {
    const uint64_t v = Peek() & Mask(width);
    pos_ += static_cast<uint64_t>(width);
    return v;
  }
  // REQUIRES: width <= 64.
  uint64_t ReadWide(int width) {
    if (width <= 57) return Read(width);
    const uint64_t lo = Read(32);
    return lo | Read(width - 32) << 32;
  }

  bool Overrun() const { return pos_ > uint64_t{size_} * 8; }
  // Checks that the pad bits up to the next byte are zero and returns the
  // bytes consumed; REQUIRES: !Overrun().
  bool AlignedEnd(size_t* bytes) const {
    if ((pos_ & 7) != 0 && (data_[pos_ >> 3] >> (pos_ & 7)) != 0) return false;
    *bytes = static_cast<size_t>((pos_ + 7) >> 3);
    return true;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  uint64_t pos_ = 0;
};

inline void PutRice(BitWriter& w, uint64_t u, int k) {
  const uint64_t q = u >> k;
  if (q < kEscapeQ) {
    const int unary = static_cast<int>(q) + 1;
    if (unary + k <= 64) {
      w.Put((uint64_t{1} << q) | (u & Mask(k)) << unary, unary + k);
    } else {
      w.Put(uint64_t{1} << q, unary);
      w.Put(u & Mask(k), k);
    }
  } else {
    const int width = std::bit_width(u);
    w.Put(uint64_t(width - 1) << kEscapeQ, kEscapeQ + 6);
    w.Put(u, width);
  }
}

inline uint64_t ReadRice(BitReader& r, int k) {
  const uint64_t bits = r.Peek();
  const int q = std::countr_zero(bits);  // 64 if the window is all zero
  if (q < kEscapeQ) {
    const int used = q + 1 + k;
    if (used <= 57) {
      r.Skip(static_cast<uint64_t>(used));
      return (uint64_t(q) << k) | ((bits >> (q + 1)) & Mask(k));
    }
    r.Skip(static_cast<uint64_t>(q) + 1);
    return (uint64_t(q) << k) | r.ReadWide(k);
  }
  r.Skip(kEscapeQ);
  const int width = static_cast<int>(r.Read(6)) + 1;
  return r.ReadWide(width);
}

// ---------------------------------------------------------------------------
// IntSeq: see the layout in the header.

struct SeqDesc {
  bool dod = false;
  bool constant = false;
  bool zero_flags = false;
  bool offset = false;
  int shift = 0;  // j
  uint64_t gcd = 1;
  uint64_t first_delta = 0;
  uint64_t base = 0;
  int k = 0;
};

// Number of y values the payload codes (the rest are in the descriptor).
uint64_t CodedCount(const SeqDesc& d, uint64_t n) {
  if (d.constant) return 0;
  return d.dod ? n - 2 : n - 1;
}

int DescBytes(const SeqDesc& d, bool implied_base) {
  int bytes = 1;
  if (d.dod) bytes += VarintLength(ZigZag(d.first_delta));
  if (d.constant) {
    if (!implied_base || d.dod) bytes += VarintLength(ZigZag(d.base));
    return bytes;
  }
  if (d.gcd > 1) bytes += VarintLength(d.gcd);
  return bytes + VarintLength(ZigZag(d.base)) + 1;
}

// `implied_base`: the caller knows the sum of the deltas (timestamps know
// their span), so a constant delta needs no base.
void PutSeqDesc(const SeqDesc& d, bool implied_base, std::string* out) {
  uint8_t flags = 0;
  if (d.dod) flags |= kSeqDod;
  if (d.constant) {
    flags |= kSeqConstant;
  } else {
    if (d.zero_flags) flags |= kSeqZeroFlags;
    if (d.offset) flags |= kSeqOffset;
    if (d.gcd > 1) flags |= kSeqGcd;
    flags |= static_cast<uint8_t>(d.shift << kSeqShiftPos);
  }
  out->push_back(static_cast<char>(flags));
  if (d.dod) PutVarint(*out, ZigZag(d.first_delta));
  if (d.constant) {
    if (!implied_base || d.dod) PutVarint(*out, ZigZag(d.base));
    return;
  }
  if (d.gcd > 1) PutVarint(*out, d.gcd);
  PutVarint(*out, ZigZag(d.base));
  out->push_back(static_cast<char>(d.k));
}

// `n` >= 2 values in the sequence. With implied_base, `span` is x_{n-1} - x_0.
bool GetSeqDesc(std::string_view* in, uint64_t n, bool implied_base, uint64_t span, SeqDesc* d) {
  uint8_t flags;
  if (!GetByte(in, &flags)) return false;
  d->dod = (flags & kSeqDod) != 0;
  d->constant = (flags & kSeqConstant) != 0;
  d->zero_flags = (flags & kSeqZeroFlags) != 0;
  d->offset = (flags & kSeqOffset) != 0;
  d->shift = flags >> kSeqShiftPos;
  if (d->dod && n < 3) return false;
  if (d->dod && !GetVarint(in, &d->first_delta)) return false;
  d->first_delta = UnZigZag(d->first_delta);
  if (d->constant) {
    if ((flags & ~(kSeqDod | kSeqConstant)) != 0) return false;
    if (implied_base && !d->dod) {
      // Constant timestamp deltas: the span must split evenly.
      if (span % (n - 1) != 0) return false;
      d->base = span / (n - 1);
      return true;
    }
    if (!GetVarint(in, &d->base)) return false;
    d->base = UnZigZag(d->base);
    return true;
  }
  if ((flags & kSeqGcd) != 0) {
    if (!GetVarint(in, &d->gcd) || d->gcd < 2) return false;
  }
  if (!GetVarint(in, &d->base)) return false;
  d->base = UnZigZag(d->base);
  uint8_t k;
  if (!GetByte(in, &k) || k > 63) return false;
  d->k = k;
  return true;
}

// The y_i of a sequence under one transform: y_i for i >= 1 (delta) or
// i >= 2 (dod). REQUIRES: x.size() >= 2, or >= 3 for dod.
void Transform(std::span<const uint64_t> x, bool dod, std::vector<uint64_t>* y) {
  const size_t skip = dod ? 2 : 1;
  y->resize(x.size() - skip);
  uint64_t* out = y->data();
  if (!dod) {
    for (size_t i = 1; i < x.size(); ++i) out[i - 1] = x[i] - x[i - 1];
  } else {
    for (size_t i = 2; i < x.size(); ++i) out[i - 2] = (x[i] - x[i - 1]) - (x[i - 1] - x[i - 2]);
  }
}

// One non-zero-flagged y as the payload codes it: Rice value u and the low
// `shift` bits (the residue).
struct CodedValue {
  uint64_t u;
  uint64_t residue;
};
inline CodedValue CodeValue(uint64_t y, const SeqDesc& d, const ExactDivider& divider) {
  const uint64_t s = d.gcd > 1 ? divider.Divide(y) : y;
  const uint64_t t = s - d.base;
  const uint64_t u = d.offset ? t >> d.shift : ZigZag(static_cast<uint64_t>(static_cast<int64_t>(t) >> d.shift));
  return {u, t & Mask(d.shift)};
}

// Bit-width histogram, in four interleaved copies so that runs of values in
// one bucket do not serialize on one counter.
class WidthHistogram {
 public:
  void Add(size_t i, uint64_t u) { ++counts_[i & 3][std::bit_width(u)]; }

  // Estimated Rice bits for the best k, and that k. Assumes values spread
  // evenly within a bucket; good enough to rank plans. Integer arithmetic
  // in half bits: this runs a few times per block.
  std::pair<int, double> EstimateRice() const {
    std::array<uint64_t, 65> count;
    for (int b = 0; b <= 64; ++b) {
      count[b] = uint64_t{counts_[0][b]} + counts_[1][b] + counts_[2][b] + counts_[3][b];
    }
    int hi = 64;
    while (hi > 0 && count[hi] == 0) --hi;
    uint64_t n = 0;
    for (int b = 0; b <= hi; ++b) n += count[b];
    // The best k sits a little below the typical width: try a few around
    // the median bucket.
    int median = 0;
    for (uint64_t seen = count[0]; 2 * seen < n;) seen += count[++median];
    int best_k = 0;
    uint64_t best = std::numeric_limits<uint64_t>::max();
    for (int k = std::max(0, median - 2); k <= std::min(median + 1, 63); ++k) {
      uint64_t halves = 2 * n * static_cast<uint64_t>(k + 1);
      for (int b = k + 1; b <= hi; ++b) {
        // Bucket b holds q in [2^e, 2^(e+1)), e = b - 1 - k: about
        // 1.5 * 2^e - 0.5 on average, or an escape instead of the unary
        // code and the k low bits.
        const int e = b - 1 - k;
        const auto escape = static_cast<uint64_t>(2 * (kEscapeQ + 6 + b - (k + 1)));
        const uint64_t unary = e == 0 ? 2 : e >= 6 ? escape : (uint64_t{3} << e) - 1;
        halves += count[b] * std::min(unary, escape);
      }
      if (halves < best) {
        best = halves;
        best_k = k;
      }
    }
    return {best_k, static_cast<double>(best) / 2};
  }

 private:
  std::array<std::array<uint32_t, 65>, 4> counts_{};
};

struct SeqPlan {
  SeqDesc desc;
  double bits = std::numeric_limits<double>::infinity();  // estimated, incl. descriptor
  // Delta plans: a rough size of the dod transform's payload.
  double dod_guess = std::numeric_limits<double>::infinity();
};

// Options are ranked on at most about this many y's, taken at a fixed
// stride: their statistics, not every value, decide the plan, and a full
// pass per option would cost more than all of the decoding.
constexpr size_t kPlanSample = 128;

// Plans one transform's y values. Only the gcd, the minimum and the zero
// count must be exact (the plan must fit every value); everything else is an
// estimate from the sample. An exact size would pick a better k for ~0.05%
// of the bytes.
SeqPlan PlanTransform(std::span<const uint64_t> y, bool dod, uint64_t first_delta, bool implied_base) {
  const uint64_t m = y.size();
  SeqDesc d;
  d.dod = dod;
  d.first_delta = first_delta;

  uint64_t differ = 0;  // branch-free, so that it vectorizes
  for (uint64_t v : y) differ |= v ^ y[0];
  if (differ == 0) {
    d.constant = true;
    d.base = y[0];
    return {d, 8.0 * DescBytes(d, implied_base), 0};
  }

  uint64_t zeros = 0;
  uint64_t g = 0;
  __int128 sum = 0;
  int64_t min = std::numeric_limits<int64_t>::max();
  int64_t min_nonzero = std::numeric_limits<int64_t>::max();
  for (uint64_t v : y) {
    const auto sv = static_cast<int64_t>(v);
    sum += sv;
    min = std::min(min, sv);
    if (v == 0) {
      ++zeros;
      continue;
    }
    min_nonzero = std::min(min_nonzero, sv);
    if (g == 1) continue;
    const uint64_t mag = Magnitude(v);
    if (g != 0 && ((g & (g - 1)) == 0 ? (mag & (g - 1)) == 0 : mag % g == 0)) continue;
    g = Gcd(g, mag);
  }
  d.gcd = g;
  const ExactDivider divider(g);
  const size_t stride = (m + kPlanSample - 1) / kPlanSample;

  SeqPlan best;
  double dod_guess = std::numeric_limits<double>::infinity();
  // Zero flags cost a bit for every value, so they only pay off when zeros
  // are frequent; 1/32 is below any break-even point.
  for (bool zero_flags : {false, true}) {
    if (zero_flags && zeros * 32 < m) continue;
    d.zero_flags = zero_flags;
    const uint64_t count = zero_flags ? m - zeros : m;
    const uint64_t mean =
        divider.Divide(static_cast<uint64_t>(static_cast<int64_t>(sum / static_cast<int64_t>(count))));
    const uint64_t lowest = divider.Divide(static_cast<uint64_t>(zero_flags ? min_nonzero : min));

    // Histograms the sample under `shift` and keeps the better of zigzag
    // around the mean (cheaper to find than the median, and as good here)
    // and offset from the minimum, both floored to a multiple of 2^shift so
    // that the residues are the values' own low bits. `residue_bits` is
    // for the sample; per_value(i, s) sees every sampled value.
    const auto consider = [&](int shift, uint64_t residue_bits, auto&& per_value) {
      const uint64_t low = Mask(shift);
      const uint64_t center = mean & ~low;
      const uint64_t floor = lowest & ~low;
      WidthHistogram zigzag, offset;
      size_t sampled = 0;
      for (size_t i = 0; i < m; i += stride) {
        const uint64_t v = y[i];
        if (zero_flags && v == 0) continue;
        const uint64_t s = g > 1 ? divider.Divide(v) : v;
        zigzag.Add(sampled, ZigZag(static_cast<uint64_t>(static_cast<int64_t>(s - center) >> shift)));
        offset.Add(sampled, (s - floor) >> shift);
        ++sampled;
        per_value(i, s);
      }
      if (sampled == 0) return;
      const double scale = static_cast<double>(count) / static_cast<double>(sampled);
      d.shift = shift;
      for (bool is_offset : {false, true}) {
        d.offset = is_offset;
        d.base = is_offset ? floor : center;
        const auto [k, rice_bits] = (is_offset ? offset : zigzag).EstimateRice();
        d.k = k;
        const double bits = (rice_bits + static_cast<double>(residue_bits)) * scale +
                            (zero_flags ? static_cast<double>(m) : 0.0) + 8.0 * DescBytes(d, implied_base);
        if (bits < best.bits) best = {d, bits};
      }
    };

    // divisible[j]: sampled values with exactly j (or, for the last, at
    // least kMaxResidueBits) trailing zero bits.
    std::array<uint64_t, kMaxResidueBits + 1> divisible{};
    size_t sampled = 0;
    // The dod transform's y are these y's differences and share their gcd:
    // estimate it from the same sample so that PlanSeq plans it in full only
    // when it may win, which noisy series (most of them) never do.
    WidthHistogram second;
    size_t pairs = 0;
    consider(0, 0, [&](size_t i, uint64_t s) {
      ++divisible[std::min(std::countr_zero(s), kMaxResidueBits)];
      ++sampled;
      if (!dod && !zero_flags && i > 0) {
        const uint64_t dd = y[i] - y[i - 1];
        second.Add(pairs++, ZigZag(g > 1 ? divider.Divide(dd) : dd));
      }
    });
    if (pairs > 0) {
      dod_guess = second.EstimateRice().second * static_cast<double>(m - 1) / static_cast<double>(pairs);
    }

    // j > 0 drops j low bits from the Rice code for a residue of 1 bit, or
    // 1 + j bits where they are not all zero: worth a look if that gains.
    int best_shift = 0;
    int64_t best_gain = 0;
    uint64_t at_least = 0;
    for (int j = kMaxResidueBits; j >= 1; --j) {
      at_least += divisible[j];
      const int64_t gain = static_cast<int64_t>(at_least * j) - static_cast<int64_t>(sampled);
      if (gain > best_gain) {
        best_gain = gain;
        best_shift = j;
      }
    }
    if (best_shift > 0) {
      uint64_t at_least_shift = 0;
      for (int j = best_shift; j <= kMaxResidueBits; ++j) at_least_shift += divisible[j];
      const uint64_t residue_bits = sampled + (sampled - at_least_shift) * static_cast<uint64_t>(best_shift);
      consider(best_shift, residue_bits, [](size_t, uint64_t) {});
    }
  }
  best.dod_guess = dod_guess;
  return best;
}

// Plans an IntSeq for x (size >= 2). Leaves the plan's transform of x in *y.
SeqPlan PlanSeq(std::span<const uint64_t> x, bool implied_base, std::vector<uint64_t>* y) {
  Transform(x, /*dod=*/false, y);
  SeqPlan delta = PlanTransform(*y, false, 0, implied_base);
  if (x.size() < 3 || delta.desc.constant || delta.dod_guess >= delta.bits) return delta;
  Transform(x, /*dod=*/true, y);
  SeqPlan dod = PlanTransform(*y, true, x[1] - x[0], implied_base);
  if (dod.bits < delta.bits) return dod;
  Transform(x, /*dod=*/false, y);
  return delta;
}

// Writes the payload for plan d; `ys` is d's transform (PlanSeq leaves it).
void WriteSeq(std::span<const uint64_t> ys, const SeqDesc& d, BitWriter& w) {
  if (d.constant) return;
  const ExactDivider divider(d.gcd);
  for (uint64_t y : ys) {
    if (d.zero_flags) {
      w.Put(y == 0 ? 1 : 0, 1);
      if (y == 0) continue;
    }
    const CodedValue c = CodeValue(y, d, divider);
    PutRice(w, c.u, d.k);
    if (d.shift > 0) {
      if (c.residue == 0) {
        w.Put(0, 1);
      } else {
        w.Put(1 | c.residue << 1, 1 + d.shift);
      }
    }
  }
}

// Decodes x_1..x_{n-1} (x_0 given), calling sink(i, x_i).
template <typename Sink>
void ReadSeq(BitReader& r, const SeqDesc& d, uint64_t x0, uint64_t n, Sink&& sink) {
  uint64_t x = x0;
  uint64_t delta = 0;
  size_t i = 1;
  if (d.dod) {
    delta = d.first_delta;
    x += delta;
    sink(i++, x);
  }
  if (d.constant) {
    for (; i < n; ++i) {
      if (d.dod) {
        delta += d.base;
        x += delta;
      } else {
        x += d.base;
      }
      sink(i, x);
    }
    return;
  }
  const uint64_t low = Mask(d.shift);
  for (; i < n; ++i) {
    uint64_t y = 0;
    bool zero = false;
    if (d.zero_flags) {
      zero = (r.Peek() & 1) != 0;
      r.Skip(1);
    }
    if (!zero) {
      const uint64_t u = ReadRice(r, d.k);
      uint64_t t = d.offset ? u : UnZigZag(u);
      if (d.shift > 0) {
        t <<= d.shift;
        const uint64_t bits = r.Peek();
        if ((bits & 1) == 0) {
          r.Skip(1);
        } else {
          t |= (bits >> 1) & low;
          r.Skip(1 + static_cast<uint64_t>(d.shift));
        }
      }
      y = (t + d.base) * d.gcd;
    }
    if (d.dod) {
      delta += y;
      x += delta;
    } else {
      x += y;
    }
    sink(i, x);
  }
}

// ---------------------------------------------------------------------------
// Decimal values.

inline double FromMantissa(int64_t m, int e) {
  return e < 0 ? static_cast<double>(m) / kPow10[-e] : static_cast<double>(m) * kPow10[e];
}

// The mantissa of v at exponent e, if FromMantissa gives v back bit for bit.
inline bool ToMantissa(double v, int e, int64_t* m) {
  const double x = e <= 0 ? v * kPow10[-e] : v / kPow10[e];
  const double ax = std::fabs(x);
  if (!(ax < 0x1p53)) return false;  // also NaN and Inf
  // Below 2^52, x +- 0.5 is exact and truncation rounds to nearest; above,
  // x is already an integer.
  const int64_t r = ax < 0x1p52 ? static_cast<int64_t>(x < 0 ? x - 0.5 : x + 0.5) : static_cast<int64_t>(x);
  if (std::bit_cast<uint64_t>(FromMantissa(r, e)) != std::bit_cast<uint64_t>(v)) return false;
  *m = r;
  return true;
}

// Finds the exponent and mantissas of decimal values; false if none fits.
bool ToDecimal(std::span<const Sample> samples, int* exponent, std::vector<uint64_t>* mantissas) {
  mantissas->clear();
  mantissas->reserve(samples.size());
  int e = 0;
  bool lowered = false;
  bool huge = false;
  for (const Sample& s : samples) {
    int64_t m;
    while (!ToMantissa(s.value, e, &m)) {
      // A finite value with too many digits needs more decimals; one too
      // large for 53 bits at e = 0 needs e > 0 (tried below).
      if (!std::isfinite(s.value)) return false;
      if (std::fabs(s.value) >= 0x1p53) {
        huge = true;
        e = kMinExponent - 1;
        break;
      }
      if (--e < kMinExponent) break;
      lowered = true;
    }
    if (e < kMinExponent) break;
    mantissas->push_back(static_cast<uint64_t>(m));
  }
  if (e >= kMinExponent) {
    if (lowered) {
      // Values that fit a coarser exponent fit this one too (same rational,
      // same rounding); recompute them at the final one.
      mantissas->clear();
      for (const Sample& s : samples) {
        int64_t m;
        if (!ToMantissa(s.value, e, &m)) return false;
        mantissas->push_back(static_cast<uint64_t>(m));
      }
    }
    *exponent = e;
    return true;
  }
  if (!huge || lowered) return false;
  // Huge integers: try a positive exponent.
  for (e = 1; e <= kMaxExponent; ++e) {
    mantissas->clear();
    bool ok = true;
    for (const Sample& s : samples) {
      int64_t m;
      if (!ToMantissa(s.value, e, &m)) {
        ok = false;
        break;
      }
      mantissas->push_back(static_cast<uint64_t>(m));
    }
    if (ok) {
      *exponent = e;
      return true;
    }
  }
  return false;
}

// ---------------------------------------------------------------------------
// Xor values (Gorilla).

inline uint64_t ValueBits(const Sample& s) { return std::bit_cast<uint64_t>(s.value); }

// Calls emit(bits, width) for every field of the stream; counting and
// writing share it so that the size estimate is exact.
template <typename Emit>
void XorStream(std::span<const Sample> samples, Emit&& emit) {
  uint64_t prev = ValueBits(samples[0]);
  emit(prev, 64);
  int window_lead = -1;
  int window_trail = 0;
  for (size_t i = 1; i < samples.size(); ++i) {
    const uint64_t cur = ValueBits(samples[i]);
    const uint64_t x = cur ^ prev;
    prev = cur;
    if (x == 0) {
      emit(0, 1);
      continue;
    }
    const int lead = std::min(std::countl_zero(x), 31);
    const int trail = std::countr_zero(x);
    if (window_lead >= 0 && lead >= window_lead && trail >= window_trail) {
      emit(1, 2);  // '1' then '0'
      emit(x >> window_trail, 64 - window_lead - window_trail);
    } else {
      const int len = 64 - lead - trail;
      emit(3 | uint64_t(lead) << 2 | uint64_t(len - 1) << 7, 13);
      emit(x >> trail, len);
      window_lead = lead;
      window_trail = trail;
    }
  }
}

uint64_t XorBits(std::span<const Sample> samples) {
  uint64_t bits = 0;
  XorStream(samples, [&](uint64_t, int width) { bits += static_cast<uint64_t>(width); });
  return bits;
}

// False if a window does not fit in 64 bits, which no encoder writes.
bool ReadXor(BitReader& r, Sample* out, uint64_t n) {
  uint64_t prev = r.ReadWide(64);
  out[0].value = std::bit_cast<double>(prev);
  int window_lead = 0;
  int window_len = 64;
  for (uint64_t i = 1; i < n; ++i) {
    const uint64_t bits = r.Peek();
    if ((bits & 1) == 0) {
      r.Skip(1);
    } else if ((bits & 2) == 0) {
      r.Skip(2);
      prev ^= r.ReadWide(window_len) << (64 - window_lead - window_len);
    } else {
      window_lead = static_cast<int>((bits >> 2) & 31);
      window_len = static_cast<int>((bits >> 7) & 63) + 1;
      r.Skip(13);
      if (window_len > 64 - window_lead) return false;
      prev ^= r.ReadWide(window_len) << (64 - window_lead - window_len);
    }
    out[i].value = std::bit_cast<double>(prev);
  }
  return true;
}

// ---------------------------------------------------------------------------
// Header.

struct Header {
  uint32_t count = 0;
  int64_t first_ts = 0;
  uint64_t span = 0;
  BlockValueMode mode = BlockValueMode::kDecimal;
};

absl::Status ParseHeader(std::string_view* in, Header* h) {
  uint8_t kind;
  if (!GetByte(in, &kind)) return Corrupt("empty");
  if ((kind >> 4) != kFormatVersion) {
    return Corrupt("unknown format version " + std::to_string(kind >> 4));
  }
  const int mode = kind & 0x0f;
  if (mode > static_cast<int>(BlockValueMode::kXor)) return Corrupt("unknown value mode");
  h->mode = static_cast<BlockValueMode>(mode);
  uint64_t count;
  if (!GetVarint(in, &count)) return Corrupt("truncated count");
  if (count > kMaxBlockSamples) return Corrupt("count over kMaxBlockSamples");
  h->count = static_cast<uint32_t>(count);
  if (count == 0) return absl::OkStatus();
  uint64_t first;
  if (!GetVarint(in, &first)) return Corrupt("truncated first timestamp");
  h->first_ts = static_cast<int64_t>(UnZigZag(first));
  if (count == 1) return absl::OkStatus();
  if (!GetVarint(in, &h->span)) return Corrupt("truncated span");
  // Strictly increasing: at least 1 ms per step, and no overflow past
  // INT64_MAX (the difference is exact in uint64).
  const uint64_t room = static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) - static_cast<uint64_t>(h->first_ts);
  if (h->span < count - 1 || h->span > room) return Corrupt("impossible time span");
  return absl::OkStatus();
}

void EncodeImpl(std::span<const Sample> samples, std::string* out, const BlockEncodeOptions& options) {
  out->clear();
  const size_t n = samples.size();
  assert(n <= kMaxBlockSamples);
#ifndef NDEBUG
  for (size_t i = 1; i < n; ++i) assert(samples[i].timestamp_ms > samples[i - 1].timestamp_ms);
#endif
  // Values: decimal if it qualifies and is smaller (or is asked for).
  std::vector<uint64_t> mantissas;
  std::vector<uint64_t> value_y;  // the plan's transform of the mantissas
  int exponent = 0;
  SeqPlan value_plan;
  double value_bits = 0;  // estimated, to reserve the output
  bool decimal = false;
  if (n > 0 && options.value_mode != BlockValueMode::kXor && ToDecimal(samples, &exponent, &mantissas)) {
    decimal = true;
    if (n >= 2) value_plan = PlanSeq(mantissas, /*implied_base=*/false, &value_y);
    value_bits = n >= 2 ? value_plan.bits : 0.0;
    if (options.value_mode != BlockValueMode::kDecimal) {
      const double decimal_bits = 8.0 * (1 + VarintLength(ZigZag(mantissas[0]))) + value_bits;
      // Decimal values rarely lose; a prefix tells when xor is far behind
      // (the usual case) without a full pass.
      constexpr size_t kXorPrefix = 16;
      const bool xor_hopeless =
          n > 4 * kXorPrefix && static_cast<double>(XorBits(samples.first(kXorPrefix))) * static_cast<double>(n) >
                                    1.5 * kXorPrefix * decimal_bits;
      if (!xor_hopeless) {
        const auto xor_bits = static_cast<double>(XorBits(samples));
        decimal = decimal_bits <= xor_bits;
        if (!decimal) value_bits = xor_bits;
      }
    }
  } else if (n > 0) {
    value_bits = static_cast<double>(XorBits(samples));
  }
  const BlockValueMode mode = decimal || n == 0 ? BlockValueMode::kDecimal : BlockValueMode::kXor;

  out->push_back(static_cast<char>(kFormatVersion << 4 | static_cast<uint8_t>(mode)));
  PutVarint(*out, n);
  if (n == 0) return;
  const auto first = static_cast<uint64_t>(samples[0].timestamp_ms);
  PutVarint(*out, ZigZag(first));
  if (n >= 2) PutVarint(*out, static_cast<uint64_t>(samples[n - 1].timestamp_ms) - first);

  std::vector<uint64_t> timestamps;
  std::vector<uint64_t> ts_y;
  SeqPlan ts_plan;
  if (n >= 3) {
    // Regular scrapes are the common case: spot them without building the
    // sequence.
    const auto ts = [&](size_t i) { return static_cast<uint64_t>(samples[i].timestamp_ms); };
    const uint64_t step = ts(1) - ts(0);
    uint64_t irregular = 0;
    for (size_t i = 2; i < n; ++i) irregular |= (ts(i) - ts(i - 1)) ^ step;
    if (irregular == 0) {
      ts_plan.desc.constant = true;
      ts_plan.desc.base = step;
      ts_plan.bits = 8;
    } else {
      timestamps.resize(n);
      for (size_t i = 0; i < n; ++i) timestamps[i] = ts(i);
      ts_plan = PlanSeq(timestamps, /*implied_base=*/true, &ts_y);
    }
    PutSeqDesc(ts_plan.desc, /*implied_base=*/true, out);
  }
  if (decimal) {
    out->push_back(static_cast<char>(static_cast<int8_t>(exponent)));
    PutVarint(*out, ZigZag(mantissas[0]));
    if (n >= 2) PutSeqDesc(value_plan.desc, /*implied_base=*/false, out);
  }
  const double payload_bits = (n >= 3 ? ts_plan.bits : 0.0) + value_bits;
  out->reserve(out->size() + static_cast<size_t>(payload_bits / 8) + 16);

  BitWriter w(out);
  if (n >= 3) {
    WriteSeq(ts_y, ts_plan.desc, w);
    w.Finish();
  }
  if (decimal) {
    if (n >= 2) WriteSeq(value_y, value_plan.desc, w);
  } else {
    XorStream(samples, [&](uint64_t bits, int width) { w.Put(bits, width); });
  }
  w.Finish();
}

// `sizes` may be null.
absl::Status DecodeImpl(std::string_view block, std::vector<Sample>* out, BlockSizes* sizes) {
  std::string_view in = block;
  Header h;
  if (absl::Status s = ParseHeader(&in, &h); !s.ok()) return s;
  const uint64_t n = h.count;
  BlockSizes measured;
  measured.header = block.size() - in.size();
  if (n == 0) {
    if (!in.empty()) return Corrupt("trailing bytes");
    if (sizes != nullptr) *sizes = measured;
    return absl::OkStatus();
  }
  SeqDesc ts_desc;
  if (n >= 3 && !GetSeqDesc(&in, n, /*implied_base=*/true, h.span, &ts_desc)) {
    return Corrupt("bad timestamp descriptor");
  }
  measured.timestamps = block.size() - in.size() - measured.header;
  const bool decimal = h.mode == BlockValueMode::kDecimal;
  int exponent = 0;
  uint64_t m0 = 0;
  SeqDesc value_desc;
  if (decimal) {
    uint8_t e;
    if (!GetByte(&in, &e)) return Corrupt("truncated exponent");
    exponent = static_cast<int8_t>(e);
    if (exponent < kMinExponent || exponent > kMaxExponent) return Corrupt("bad exponent");
    if (!GetVarint(&in, &m0)) return Corrupt("truncated first value");
    m0 = UnZigZag(m0);
    if (n >= 2 && !GetSeqDesc(&in, n, /*implied_base=*/false, 0, &value_desc)) {
      return Corrupt("bad value descriptor");
    }
  }
  // Every coded value costs at least one bit, so the payload bounds the
  // count before anything is allocated.
  const uint64_t min_bits =
      (n >= 3 ? CodedCount(ts_desc, n) : 0) + (decimal ? (n >= 2 ? CodedCount(value_desc, n) : 0) : 63 + n);
  if (min_bits > uint64_t{in.size()} * 8) return Corrupt("truncated payload");

  const size_t old_size = out->size();
  out->resize(old_size + n);
  Sample* samples = out->data() + old_size;
  const auto fail = [&](std::string_view what) {
    out->resize(old_size);
    return Corrupt(what);
  };

  samples[0].timestamp_ms = h.first_ts;
  const int64_t last_ts = static_cast<int64_t>(static_cast<uint64_t>(h.first_ts) + h.span);
  if (n == 2) samples[1].timestamp_ms = last_ts;
  if (n >= 3) {
    BitReader r(in);
    bool increasing = true;
    int64_t prev = h.first_ts;
    ReadSeq(r, ts_desc, static_cast<uint64_t>(h.first_ts), n, [&](size_t i, uint64_t x) {
      const auto ts = static_cast<int64_t>(x);
      increasing &= ts > prev;
      prev = ts;
      samples[i].timestamp_ms = ts;
    });
    size_t used;
    if (r.Overrun() || !r.AlignedEnd(&used)) return fail("truncated timestamps");
    if (!increasing || prev != last_ts) return fail("timestamps not increasing");
    in.remove_prefix(used);
    measured.timestamps += used;
  }

  BitReader r(in);
  if (decimal) {
    samples[0].value = FromMantissa(static_cast<int64_t>(m0), exponent);
    if (n >= 2) {
      if (exponent < 0) {
        const double scale = kPow10[-exponent];
        ReadSeq(r, value_desc, m0, n,
                [&](size_t i, uint64_t m) { samples[i].value = static_cast<double>(static_cast<int64_t>(m)) / scale; });
      } else {
        const double scale = kPow10[exponent];
        ReadSeq(r, value_desc, m0, n,
                [&](size_t i, uint64_t m) { samples[i].value = static_cast<double>(static_cast<int64_t>(m)) * scale; });
      }
    }
  } else {
    if (!ReadXor(r, samples, n)) return fail("bad xor window");
  }
  size_t used;
  if (r.Overrun() || !r.AlignedEnd(&used)) return fail("truncated values");
  if (used != in.size()) return fail("trailing bytes");
  if (sizes != nullptr) {
    measured.values = block.size() - measured.header - measured.timestamps;
    *sizes = measured;
  }
  return absl::OkStatus();
}

}  // namespace

void EncodeBlock(std::span<const Sample> samples, std::string* out, const BlockEncodeOptions& options) {
  EncodeImpl(samples, out, options);
}

std::string EncodeBlock(std::span<const Sample> samples, const BlockEncodeOptions& options) {
  std::string out;
  EncodeImpl(samples, &out, options);
  return out;
}

absl::Status DecodeBlockAppend(std::string_view block, std::vector<Sample>* out) {
  return DecodeImpl(block, out, nullptr);
}

absl::StatusOr<std::vector<Sample>> DecodeBlock(std::string_view block) {
  std::vector<Sample> out;
  if (absl::Status s = DecodeImpl(block, &out, nullptr); !s.ok()) return s;
  return out;
}

absl::StatusOr<BlockSizes> MeasureBlock(std::string_view block) {
  std::vector<Sample> samples;
  BlockSizes sizes;
  if (absl::Status s = DecodeImpl(block, &samples, &sizes); !s.ok()) return s;
  return sizes;
}

absl::StatusOr<BlockInfo> PeekBlock(std::string_view block) {
  Header h;
  if (absl::Status s = ParseHeader(&block, &h); !s.ok()) return s;
  BlockInfo info;
  info.count = h.count;
  info.mode = h.mode;
  if (h.count > 0) {
    info.first_ts = h.first_ts;
    info.last_ts = static_cast<int64_t>(static_cast<uint64_t>(h.first_ts) + h.span);
  }
  return info;
}

absl::Status MergeBlocks(std::span<const std::string_view> blocks, std::string* out) {
  std::vector<Sample> all;
  // [begin, end) of each non-empty block's samples in `all`.
  std::vector<std::pair<size_t, size_t>> runs;
  bool in_order = true;
  for (std::string_view block : blocks) {
    const size_t begin = all.size();
    if (absl::Status s = DecodeBlockAppend(block, &all); !s.ok()) return s;
    if (all.size() == begin) continue;
    if (!runs.empty() && all[begin].timestamp_ms <= all[begin - 1].timestamp_ms) in_order = false;
    runs.emplace_back(begin, all.size());
  }
  if (!in_order) {
    // Bottom-up merge of adjacent runs. std::merge puts equal elements of
    // the first range first, so a later block's sample always ends up after
    // an earlier block's sample with the same timestamp.
    const auto by_time = [](const Sample& a, const Sample& b) { return a.timestamp_ms < b.timestamp_ms; };
    std::vector<Sample> buffer(all.size());
    while (runs.size() > 1) {
      std::vector<std::pair<size_t, size_t>> merged;
      for (size_t i = 0; i < runs.size(); i += 2) {
        const auto [b1, e1] = runs[i];
        if (i + 1 == runs.size()) {
          std::copy(all.begin() + b1, all.begin() + e1, buffer.begin() + b1);
          merged.emplace_back(b1, e1);
          continue;
        }
        const auto [b2, e2] = runs[i + 1];
        std::merge(all.begin() + b1, all.begin() + e1, all.begin() + b2, all.begin() + e2, buffer.begin() + b1,
                   by_time);
        merged.emplace_back(b1, e2);
      }
      all.swap(buffer);
      runs.swap(merged);
    }
    // Keep the last sample of each run of equal timestamps.
    size_t kept = 0;
    for (size_t i = 0; i < all.size(); ++i) {
      if (i + 1 < all.size() && all[i + 1].timestamp_ms == all[i].timestamp_ms) continue;
      all[kept++] = all[i];
    }
    all.resize(kept);
  }
  if (all.size() > kMaxBlockSamples) {
    return absl::ResourceExhaustedError("merged sample block over kMaxBlockSamples");
  }
  EncodeBlock(all, out);
  return absl::OkStatus();
}

absl::StatusOr<std::string> MergeBlocks(std::span<const std::string_view> blocks) {
  std::string out;
  if (absl::Status s = MergeBlocks(blocks, &out); !s.ok()) return s;
  return out;
}

}  // namespace sheaf::storage
