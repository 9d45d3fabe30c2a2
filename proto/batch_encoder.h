// Writing MetricBatch messages with the per-stream series dictionary
// (sheaf.v1.SeriesDefinition): the first time a series appears in a stream
// its labels are sent with a small ref number; afterwards only the ref.
// Used by sheaf-agent and sheaf-loadgen alike, so the load generator measures
// the same wire format that agents send.
#ifndef SHEAF_PROTO_BATCH_ENCODER_H_
#define SHEAF_PROTO_BATCH_ENCODER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "sheaf/v1/ingest.pb.h"

namespace sheaf {

using LabelPairs = std::vector<std::pair<std::string, std::string>>;

// Key that identifies a label set in a dictionary (names and values joined
// with separators that cannot appear in valid UTF-8).
std::string SeriesKey(const LabelPairs& labels);

// One stream's dictionary. Not thread-safe; Reset() whenever a new stream
// starts (the daemon forgets refs when a stream ends).
class StreamEncoder {
 public:
  // Starts a batch in *out (cleared).
  void BeginBatch(const std::string& agent_id, uint64_t sequence, v1::MetricBatch* out);

  // Adds samples of one series to the batch begun last, defining the series
  // first if this stream has not seen it. `key` is SeriesKey(labels),
  // passed in so callers can compute it once per series.
  void Add(std::string_view key, const LabelPairs& labels, v1::MetricType type, const int64_t* timestamps_ms,
           const double* values, size_t n);

  void Reset();
  size_t dictionary_size() const { return refs_.size(); }

 private:
  v1::MetricBatch* batch_ = nullptr;
  std::unordered_map<std::string, uint32_t> refs_;
};

}  // namespace sheaf

#endif  // SHEAF_PROTO_BATCH_ENCODER_H_
