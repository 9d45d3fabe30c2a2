#include "storage/rollup.h"

#include <algorithm>
#include <bit>
#include <cstring>

namespace sheaf::storage {
namespace {

constexpr size_t kEncodedSize = 9 * 8 + 1;

void PutLE(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}
uint64_t GetLE(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
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
  out.sum = a.sum + b.sum;
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
    out.increase = a.increase + b.increase + seam;
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
  return out;
}

std::string Aggregate::Encode() const {
  std::string out;
  out.reserve(kEncodedSize);
  PutLE(out, count);
  for (double d : {sum, min, max}) PutLE(out, std::bit_cast<uint64_t>(d));
  PutLE(out, static_cast<uint64_t>(first_ts));
  PutLE(out, std::bit_cast<uint64_t>(first));
  PutLE(out, static_cast<uint64_t>(last_ts));
  PutLE(out, std::bit_cast<uint64_t>(last));
  PutLE(out, std::bit_cast<uint64_t>(increase));
  out.push_back(counter ? 1 : 0);
  return out;
}

std::optional<Aggregate> Aggregate::Decode(std::string_view in) {
  if (in.size() != kEncodedSize) return std::nullopt;
  const char* p = in.data();
  Aggregate a;
  a.count = GetLE(p);
  a.sum = std::bit_cast<double>(GetLE(p + 8));
  a.min = std::bit_cast<double>(GetLE(p + 16));
  a.max = std::bit_cast<double>(GetLE(p + 24));
  a.first_ts = static_cast<int64_t>(GetLE(p + 32));
  a.first = std::bit_cast<double>(GetLE(p + 40));
  a.last_ts = static_cast<int64_t>(GetLE(p + 48));
  a.last = std::bit_cast<double>(GetLE(p + 56));
  a.increase = std::bit_cast<double>(GetLE(p + 64));
  a.counter = p[72] != 0;
  return a;
}

}  // namespace sheaf::storage
