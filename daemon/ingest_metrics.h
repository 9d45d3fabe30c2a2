// Ingestion's own metrics on /metrics: batches, samples (and those of them
// backfilled), rejections by reason, duplicates, failed streams, the
// worker queue and the stream dictionaries' memory. Owned by the ingest
// service, built from the daemon's registry. prometheus-cpp stays behind
// this header.
#ifndef SHEAF_DAEMON_INGEST_METRICS_H_
#define SHEAF_DAEMON_INGEST_METRICS_H_

#include <cstdint>
#include <memory>

#include "model/validation.h"

namespace prometheus {
class Registry;
}

namespace sheaf::daemon {

// Thread-safe.
class IngestMetrics {
 public:
  explicit IngestMetrics(prometheus::Registry& registry);
  ~IngestMetrics();

  void BatchApplied(uint64_t samples_stored, uint64_t series_received);
  // A backfill batch (MetricBatch.backfill) was applied, after BatchApplied.
  void BackfillApplied(uint64_t samples_stored);
  // An already durable batch arrived again: a retry after a lost ack
  // (expected), or a sequence this agent never sent (`unexpected`: two
  // agents share an identity, or a sequence was forged).
  void BatchDuplicate(bool unexpected);
  void Rejected(model::RejectReason reason, uint64_t series, uint64_t samples);
  void StreamFailed(int grpc_code);
  void SetQueueDepth(int64_t depth);
  void SetDictionaryBytes(int64_t bytes);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// "RESOURCE_EXHAUSTED" etc., for labels and logs.
const char* GrpcCodeName(int code);

}  // namespace sheaf::daemon

#endif  // SHEAF_DAEMON_INGEST_METRICS_H_
