#include "storage/rollup.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <map>

#include "storage/key_codec.h"
#include "storage/sample_codec.h"

namespace sheaf::storage {
namespace {

// Sums and differences of decimals (what exporters send: 0.01 s of CPU,
// whole bytes) come out of binary floating point a hair off the exact
// decimal (0.1 + 0.2 = 0.30000000000000004). Snapping them back to the
// nearest decimal of at most 9 fractional digits when that is within 1e-12
// relative makes them exact again, which is more accurate and lets the
// rollup columns use the codec's decimal mode instead of raw doubles.
double SnapDecimal(double v) {
  if (!std::isfinite(v) || v == 0) return v;
  double scale = 1;
  for (int p = 0; p <= 9; ++p, scale *= 10) {
    double m = std::round(v * scale);
    if (std::fabs(m) >= 9007199254740992.0) return v;  // 2^53: no exact mantissa
    double snapped = m / scale;
    if (std::fabs(snapped - v) <= std::fabs(v) * 1e-12) return snapped;
  }
  return v;
}

}  // namespace

Aggregate Aggregate::Merge(const Aggregate& x, const Aggregate& y) {
  if (x.count == 0) return y;
  if (y.count == 0) return x;
  const Aggregate& a = x.first_ts <= y.first_ts ? x : y;  // earlier
  const Aggregate& b = x.first_ts <= y.first_ts ? y : x;  // later
  Aggregate out;
  out.count = a.count + b.count;
  out.sum = SnapDecimal(a.sum + b.sum);
  out.min = std::min(a.min, b.min);
  out.max = std::max(a.max, b.max);
  out.first_ts = a.first_ts;
  out.first = a.first;
  const Aggregate& newest = a.last_ts >= b.last_ts ? a : b;
  out.last_ts = newest.last_ts;
  out.last = newest.last;
  out.counter = a.counter || b.counter;
  if (out.counter) {
    double seam = b.first >= a.last ? b.first - a.last : b.first;
    out.increase = SnapDecimal(a.increase + b.increase + seam);
  }
  return out;
}

Aggregate Aggregate::Of(std::span<const Sample> samples, bool counter) {
  Aggregate out;
  out.counter = counter;
  out.count = samples.size();
  out.first_ts = samples.front().timestamp_ms;
  out.first = samples.front().value;
  out.last_ts = samples.back().timestamp_ms;
  out.last = samples.back().value;
  out.min = out.max = samples.front().value;
  for (size_t i = 0; i < samples.size(); ++i) {
    double v = samples[i].value;
    out.sum += v;
    out.min = std::min(out.min, v);
    out.max = std::max(out.max, v);
    if (counter && i > 0) {
      double prev = samples[i - 1].value;
      out.increase += v >= prev ? v - prev : v;
    }
  }
  out.sum = SnapDecimal(out.sum);
  out.increase = SnapDecimal(out.increase);
  return out;
}

namespace {

enum Flags : uint8_t { kCounter = 1, kMinIsFirst = 2, kMaxIsLast = 4, kIncreaseIsDelta = 8 };
constexpr uint8_t kRollupBlockVersion = 1;

bool SameBits(double a, double b) { return std::bit_cast<uint64_t>(a) == std::bit_cast<uint64_t>(b); }

void PutColumn(std::string& out, const RollupWindows& w, double (*field)(int64_t, const Aggregate&)) {
  std::vector<Sample> col;
  col.reserve(w.size());
  for (const auto& [start, a] : w) col.push_back({start, field(start, a)});
  std::string block = EncodeBlock(col);
  keys::PutVarint(out, block.size());
  out += block;
}

}  // namespace

std::string EncodeRollupBlock(const RollupWindows& w) {
  uint8_t flags = 0;
  bool counter = !w.empty() && w.front().second.counter;
  bool min_first = true, max_last = true, inc_delta = true;
  for (const auto& [start, a] : w) {
    min_first &= SameBits(a.min, a.first);
    max_last &= SameBits(a.max, a.last);
    inc_delta &= SameBits(a.increase, SnapDecimal(a.last - a.first));
  }
  if (counter) flags |= kCounter;
  if (min_first) flags |= kMinIsFirst;
  if (max_last) flags |= kMaxIsLast;
  if (inc_delta || !counter) flags |= kIncreaseIsDelta;
  std::string out;
  out.push_back(static_cast<char>(kRollupBlockVersion));
  out.push_back(static_cast<char>(flags));
  PutColumn(out, w, [](int64_t, const Aggregate& a) { return static_cast<double>(a.count); });
  PutColumn(out, w, [](int64_t s, const Aggregate& a) { return static_cast<double>(a.first_ts - s); });
  PutColumn(out, w, [](int64_t s, const Aggregate& a) { return static_cast<double>(a.last_ts - s); });
  PutColumn(out, w, [](int64_t, const Aggregate& a) { return a.first; });
  PutColumn(out, w, [](int64_t, const Aggregate& a) { return a.last; });
  PutColumn(out, w, [](int64_t, const Aggregate& a) { return a.sum; });
  if (!min_first) PutColumn(out, w, [](int64_t, const Aggregate& a) { return a.min; });
  if (!max_last) PutColumn(out, w, [](int64_t, const Aggregate& a) { return a.max; });
  if (!(flags & kIncreaseIsDelta)) PutColumn(out, w, [](int64_t, const Aggregate& a) { return a.increase; });
  return out;
}

absl::Status DecodeRollupBlock(std::string_view in, RollupWindows* out) {
  auto corrupt = [](const char* what) { return absl::DataLossError(std::string("corrupt rollup block: ") + what); };
  if (in.size() < 2 || static_cast<uint8_t>(in[0]) != kRollupBlockVersion) return corrupt("version");
  const uint8_t flags = static_cast<uint8_t>(in[1]);
  in.remove_prefix(2);
  const int columns = 6 + !(flags & kMinIsFirst) + !(flags & kMaxIsLast) + !(flags & kIncreaseIsDelta);
  std::vector<std::vector<Sample>> col(columns);
  for (int c = 0; c < columns; ++c) {
    auto n = keys::GetVarint(&in);
    if (!n || *n > in.size()) return corrupt("column length");
    if (auto s = DecodeBlockAppend(in.substr(0, *n), &col[c]); !s.ok()) return corrupt("column");
    in.remove_prefix(*n);
    if (col[c].size() != col[0].size()) return corrupt("column sizes differ");
  }
  if (!in.empty()) return corrupt("trailing bytes");
  // Counts and time offsets are integers stored as doubles: a corrupt block
  // may hold anything (NaN, 1e300, -1), and converting such a double to an
  // integer is undefined behaviour, so each is range-checked first.
  constexpr double kMaxExact = 9007199254740992.0;  // 2^53
  auto exact = [&](double v, double lo, double hi) { return v >= lo && v <= hi && v == std::floor(v); };
  for (size_t i = 0; i < col[0].size(); ++i) {
    int64_t start = col[0][i].timestamp_ms;
    // Offsets within a rollup block: at most a block's length (far below 2^40 ms).
    constexpr double kMaxOffset = double(int64_t{1} << 40);
    if (!exact(col[0][i].value, 1, kMaxExact)) return corrupt("window count");
    if (!exact(col[1][i].value, 0, kMaxOffset) || !exact(col[2][i].value, 0, kMaxOffset)) {
      return corrupt("time offset");
    }
    if (start > INT64_MAX - (int64_t{1} << 40)) return corrupt("window start");
    Aggregate a;
    a.counter = flags & kCounter;
    a.count = static_cast<uint64_t>(col[0][i].value);
    a.first_ts = start + static_cast<int64_t>(col[1][i].value);
    a.last_ts = start + static_cast<int64_t>(col[2][i].value);
    a.first = col[3][i].value;
    a.last = col[4][i].value;
    a.sum = col[5][i].value;
    int c = 6;
    a.min = flags & kMinIsFirst ? a.first : col[c++][i].value;
    a.max = flags & kMaxIsLast ? a.last : col[c++][i].value;
    a.increase = flags & kIncreaseIsDelta ? (a.counter ? SnapDecimal(a.last - a.first) : 0) : col[c++][i].value;
    out->emplace_back(start, a);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> MergeRollupBlocks(std::span<const std::string_view> blocks) {
  std::map<int64_t, Aggregate> merged;
  RollupWindows w;
  for (std::string_view b : blocks) {
    w.clear();
    if (auto s = DecodeRollupBlock(b, &w); !s.ok()) return s;
    for (auto& [start, a] : w) {
      auto [it, inserted] = merged.try_emplace(start, a);
      if (!inserted) it->second = Aggregate::Merge(it->second, a);
    }
  }
  return EncodeRollupBlock(RollupWindows(merged.begin(), merged.end()));
}

}  // namespace sheaf::storage
