#include "storage/key_codec.h"

#include <bit>
#include <cstring>

namespace sheaf::storage::keys {
namespace {

void PutTenant(std::string& out, TenantId tenant) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>(tenant >> shift));
}

void PutLengthPrefixed(std::string& out, std::string_view s) {
  PutVarint(out, s.size());
  out.append(s);
}

constexpr uint64_t kSignBit = uint64_t{1} << 63;

}  // namespace

void PutFixed64BE(std::string& out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>(v >> shift));
}

uint64_t GetFixed64BE(std::string_view in) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(in[i]);
  return v;
}

void PutVarint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

std::optional<uint64_t> GetVarint(std::string_view* in) {
  uint64_t v = 0;
  for (int shift = 0, i = 0; shift <= 63 && i < static_cast<int>(in->size()); shift += 7, ++i) {
    auto byte = static_cast<unsigned char>((*in)[i]);
    v |= static_cast<uint64_t>(byte & 0x7F) << shift;
    if ((byte & 0x80) == 0) {
      in->remove_prefix(i + 1);
      return v;
    }
  }
  return std::nullopt;
}

std::string CanonicalLabels(const Labels& labels) {
  std::string out;
  for (const Label& l : labels) {
    PutLengthPrefixed(out, l.name);
    PutLengthPrefixed(out, l.value);
  }
  return out;
}

std::optional<Labels> DecodeCanonicalLabels(std::string_view in) {
  Labels out;
  auto take = [&in](std::string* s) {
    auto n = GetVarint(&in);
    if (!n || *n > in.size()) return false;
    s->assign(in.substr(0, *n));
    in.remove_prefix(*n);
    return true;
  };
  while (!in.empty()) {
    Label l;
    if (!take(&l.name) || !take(&l.value)) return std::nullopt;
    out.push_back(std::move(l));
  }
  return out;
}

std::string SchemaVersionKey() { return "V"; }
std::string NextSeriesIdKey() { return "N"; }
std::string SampleCountKey() { return "C"; }

std::string AgentSequenceKey(TenantId tenant, std::string_view agent_id) {
  std::string k = "A";
  PutTenant(k, tenant);
  k.append(agent_id);
  return k;
}

std::string SeriesByLabelsKey(TenantId tenant, std::string_view canonical_labels) {
  std::string k = "S";
  PutTenant(k, tenant);
  k.append(canonical_labels);
  return k;
}

std::string SeriesByIdKey(SeriesId id) {
  std::string k(1, kSeriesByIdPrefix);
  PutFixed64BE(k, id);
  return k;
}

std::string PostingPrefix(TenantId tenant, std::string_view name, std::string_view value) {
  std::string k = "P";
  PutTenant(k, tenant);
  PutLengthPrefixed(k, name);
  PutLengthPrefixed(k, value);
  return k;
}

std::string PostingKey(TenantId tenant, std::string_view name, std::string_view value,
                       SeriesId id) {
  std::string k = PostingPrefix(tenant, name, value);
  PutFixed64BE(k, id);
  return k;
}

std::string SampleKey(SeriesId id, int64_t timestamp_ms) {
  std::string k;
  k.reserve(16);
  PutFixed64BE(k, id);
  PutFixed64BE(k, static_cast<uint64_t>(timestamp_ms) ^ kSignBit);
  return k;
}

std::optional<DecodedSampleKey> DecodeSampleKey(std::string_view key) {
  if (key.size() != 16) return std::nullopt;
  return DecodedSampleKey{GetFixed64BE(key),
                          static_cast<int64_t>(GetFixed64BE(key.substr(8)) ^ kSignBit)};
}

std::string EncodeDouble(double v) {
  std::string out;
  PutFixed64BE(out, std::bit_cast<uint64_t>(v));
  return out;
}

double DecodeDouble(std::string_view in) { return std::bit_cast<double>(GetFixed64BE(in)); }

}  // namespace sheaf::storage::keys
