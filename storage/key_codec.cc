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
std::string RolledUpUntilKey() { return "W"; }
std::string RollupProgressKey() { return "D"; }
std::string KeptRawKey() { return "K"; }

std::string EncodeTime(int64_t t) {
  std::string out;
  PutFixed64BE(out, static_cast<uint64_t>(t) ^ kSignBit);
  return out;
}

int64_t DecodeTime(std::string_view in) { return static_cast<int64_t>(GetFixed64BE(in) ^ kSignBit); }

std::string EncodeKeptRanges(const std::vector<KeptRange>& ranges) {
  std::string out;
  for (const KeptRange& r : ranges) out += EncodeTime(r.from_ms) + EncodeTime(r.to_ms) + EncodeTime(r.until_ms);
  return out;
}

std::optional<std::vector<KeptRange>> DecodeKeptRanges(std::string_view in) {
  if (in.size() % 24 != 0) return std::nullopt;
  std::vector<KeptRange> out;
  for (; !in.empty(); in.remove_prefix(24)) {
    out.push_back({DecodeTime(in), DecodeTime(in.substr(8)), DecodeTime(in.substr(16))});
  }
  return out;
}

std::string AgentSequenceKey(TenantId tenant, std::string_view agent_id) {
  std::string k = "A";
  PutTenant(k, tenant);
  k.append(agent_id);
  return k;
}

std::string TenantKey(std::string_view tenant_name) {
  std::string k(1, kTenantPrefix);
  k.append(tenant_name);
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

std::string PostingKey(TenantId tenant, std::string_view name, std::string_view value, SeriesId id) {
  std::string k = PostingPrefix(tenant, name, value);
  PutFixed64BE(k, id);
  return k;
}

std::string SeriesTimeKey(SeriesId id, int64_t time_ms) {
  std::string k;
  k.reserve(16);
  PutFixed64BE(k, id);
  k += EncodeTime(time_ms);
  return k;
}

std::optional<DecodedSeriesTimeKey> DecodeSeriesTimeKey(std::string_view key) {
  if (key.size() != 16) return std::nullopt;
  return DecodedSeriesTimeKey{GetFixed64BE(key), static_cast<int64_t>(GetFixed64BE(key.substr(8)) ^ kSignBit)};
}

std::string LogKey(uint64_t log_seq) {
  std::string k;
  PutFixed64BE(k, log_seq);
  return k;
}

void AppendLogEntry(std::string& record, SeriesId id, const Sample* samples, size_t n) {
  PutVarint(record, id);
  PutVarint(record, n);
  for (size_t i = 0; i < n; ++i) {
    int64_t t = samples[i].timestamp_ms;
    PutVarint(record, (static_cast<uint64_t>(t) << 1) ^ static_cast<uint64_t>(t >> 63));  // zigzag
    uint64_t bits = std::bit_cast<uint64_t>(samples[i].value);
    for (int b = 0; b < 8; ++b) record.push_back(static_cast<char>(bits >> (8 * b)));
  }
}

bool DecodeLogRecord(std::string_view record, const std::function<void(SeriesId, const Sample&)>& fn) {
  while (!record.empty()) {
    auto id = GetVarint(&record);
    auto n = GetVarint(&record);
    if (!id || !n || *n > record.size()) return false;
    for (uint64_t i = 0; i < *n; ++i) {
      auto z = GetVarint(&record);
      if (!z || record.size() < 8) return false;
      uint64_t bits = 0;
      for (int b = 7; b >= 0; --b) bits = (bits << 8) | static_cast<unsigned char>(record[b]);
      record.remove_prefix(8);
      fn(*id, Sample{static_cast<int64_t>((*z >> 1) ^ (~(*z & 1) + 1)), std::bit_cast<double>(bits)});
    }
  }
  return true;
}

std::string RollupFamily(int64_t resolution_ms) { return "rollup_" + std::to_string(resolution_ms); }

}  // namespace sheaf::storage::keys
