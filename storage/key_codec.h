// Every byte layout the store writes to RocksDB, in one place.
//
// Column families and keys (all integers big-endian so that byte order is
// numeric order; "lp(x)" is a varint length followed by the bytes of x):
//
//   "meta" (RocksDB's default column family)
//     'V'                              -> schema version (fixed64 BE)
//     'N'                              -> next series id  (fixed64 BE)
//     'C'                              -> samples stored  (fixed64 BE)
//     'A' tenant(4) agent_id           -> highest durable sequence (fixed64 BE)
//     'T' tenant_name                  -> tenant id (4, BE); "default" (id 0)
//                                         is implicit, never written
//     'W'                              -> rolled up until (ms, fixed64 BE of
//                                         the sign-flipped int64): raw data
//                                         before it is in the rollups
//     'D'                              -> a roll-up in progress: target (8)
//                                         and the next series id to do (8)
//     'K'                              -> time ranges of backfilled raw data
//                                         kept past raw retention: repeated
//                                         { from (8), to (8), until (8) },
//                                         each a sign-flipped int64 (ms)
//   "index"
//     'S' tenant(4) canonical_labels   -> series id (8) type (1)
//     'I' series_id(8)                 -> tenant (4) type (1) canonical_labels
//     'P' tenant(4) lp(name) lp(value) series_id(8) -> ""      (postings)
//   "samples"   series_id(8) window_start(8) -> sample block (sample_codec.h),
//               one key per series per block window (2 h by default); new
//               data arrives as merge operands (partial blocks) that the
//               block merge operator combines.
//   "log"       log_seq(8)             -> samples not yet in blocks (head):
//               repeated { varint series_id, varint n, n x (zigzag varint
//               timestamp, 8-byte LE double) }. Replayed at open; deleted
//               in the same write that puts those samples into blocks.
//   "rollup_<resolution ms>"  series_id(8) window_start(8) -> Aggregate
//               (rollup.h), one key per series per window; merge operands.
//
// canonical_labels = for each label sorted by name: lp(name) lp(value).
// Length prefixes make it unambiguous for any bytes in names and values.
// window_start(8) is the int64 with its sign bit flipped, so negative times
// sort before positive ones.
//
// Series ids are global across tenants, so sample keys need no tenant; the
// tenant prefix on index keys keeps each tenant's index a contiguous range.
#ifndef SHEAF_STORAGE_KEY_CODEC_H_
#define SHEAF_STORAGE_KEY_CODEC_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/coding.h"
#include "storage/types.h"

namespace sheaf::storage::keys {

using storage::kDefaultTenant;
using storage::TenantId;
inline constexpr uint64_t kSchemaVersion = 1;

// Column family names.
inline constexpr char kIndexFamily[] = "index";
inline constexpr char kSamplesFamily[] = "samples";
inline constexpr char kLogFamily[] = "log";
std::string RollupFamily(int64_t resolution_ms);  // "rollup_60000"

// The integer encodings (common/coding.h), under the names keys use.
using sheaf::GetFixed64BE;
using sheaf::GetVarint;
using sheaf::PutFixed64BE;
using sheaf::PutVarint;

std::string CanonicalLabels(const Labels& labels);  // REQUIRES: canonical
// nullopt if the bytes are not a valid encoding (corruption).
std::optional<Labels> DecodeCanonicalLabels(std::string_view in);

std::string SchemaVersionKey();
std::string NextSeriesIdKey();
std::string SampleCountKey();
std::string RolledUpUntilKey();
std::string RollupProgressKey();
std::string KeptRawKey();
// Raw data of [from_ms, to_ms) is kept until until_ms (the 'K' record).
struct KeptRange {
  int64_t from_ms;
  int64_t to_ms;
  int64_t until_ms;
  friend bool operator==(const KeptRange&, const KeptRange&) = default;
};
std::string EncodeKeptRanges(const std::vector<KeptRange>& ranges);
// nullopt if the bytes are not a valid encoding (corruption).
std::optional<std::vector<KeptRange>> DecodeKeptRanges(std::string_view in);
// int64 <-> 8 bytes that sort like the numbers (sign bit flipped, BE).
std::string EncodeTime(int64_t t);
int64_t DecodeTime(std::string_view in);  // REQUIRES: in.size() >= 8
std::string AgentSequenceKey(TenantId tenant, std::string_view agent_id);
inline constexpr char kTenantPrefix = 'T';
std::string TenantKey(std::string_view tenant_name);

std::string SeriesByLabelsKey(TenantId tenant, std::string_view canonical_labels);
std::string SeriesByIdKey(SeriesId id);
inline constexpr char kSeriesByIdPrefix = 'I';
std::string PostingKey(TenantId tenant, std::string_view name, std::string_view value, SeriesId id);
// Prefix of every posting of name=value; the series id is the last 8 bytes.
std::string PostingPrefix(TenantId tenant, std::string_view name, std::string_view value);

// Key of a series' block or rollup window.
std::string SeriesTimeKey(SeriesId id, int64_t time_ms);
struct DecodedSeriesTimeKey {
  SeriesId id;
  int64_t time_ms;
};
std::optional<DecodedSeriesTimeKey> DecodeSeriesTimeKey(std::string_view key);

std::string LogKey(uint64_t log_seq);
// Log records (layout above): entries appended one series at a time.
void AppendLogEntry(std::string& record, SeriesId id, const Sample* samples, size_t n);
// Calls fn(id, sample) for every sample; false if the record is corrupt.
bool DecodeLogRecord(std::string_view record, const std::function<void(SeriesId, const Sample&)>& fn);

// Start of the window of length `window_ms` holding `t` (floor, also for
// negative t). Times within one window of INT64_MIN give INT64_MIN rather
// than overflow.
inline int64_t WindowStart(int64_t t, int64_t window_ms) {
  if (t < INT64_MIN + window_ms) return INT64_MIN;
  int64_t r = t % window_ms;
  return r < 0 ? t - r - window_ms : t - r;
}

}  // namespace sheaf::storage::keys

#endif  // SHEAF_STORAGE_KEY_CODEC_H_
