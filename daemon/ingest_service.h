// IngestService.Push: client-streamed, gzip-compressed batches from agents.
#ifndef SHEAF_DAEMON_INGEST_SERVICE_H_
#define SHEAF_DAEMON_INGEST_SERVICE_H_

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/log.h"
#include "daemon/limits.h"
#include "model/validation.h"
#include "sheaf/v1/ingest.grpc.pb.h"
#include "storage/types.h"

namespace sheaf {
class WorkQueue;
}

namespace sheaf::storage {
class SeriesStore;
struct AppendBatch;
struct AppendResult;
}  // namespace sheaf::storage

namespace sheaf::daemon {

class AgentRegistry;
class Authenticator;
class IngestMetrics;
class MemoryLimit;
class RemoteWriteFanout;
class TailHub;

struct IngestOptions {
  model::ValidationLimits limits;
  size_t max_message_bytes = 16ull << 20;  // one batch, after decompression
  size_t max_refs_per_stream = 1'000'000;  // dictionary entries per Push stream
  // Memory of the series dictionaries (labels of defined series), per
  // stream and across all open streams. Past either bound a stream ends
  // with RESOURCE_EXHAUSTED; it never grows the daemon's memory further.
  size_t max_dictionary_bytes_per_stream = 64ull << 20;
  size_t max_dictionary_bytes_total = 512ull << 20;
  size_t workers = 2;               // threads writing batches to the store
  size_t queue_capacity = 256;      // batches waiting for a worker
  std::function<int64_t()> now_ms;  // clock; wall clock when empty (tests inject one)
  TailHub* tail_hub = nullptr;      // live tail: what the store accepted is published here
  RemoteWriteFanout* remote_write = nullptr;  // remote write out: the same, for the selected series
  AgentRegistry* agents = nullptr;  // per-agent state for the web console (agent_registry.h)
  // Tokens (auth.h): Push needs the ingest role, writes into the caller's
  // tenant, and may send only the agent ids its token allows. Null: no
  // checks, the default tenant.
  Authenticator* auth = nullptr;
  // --memory-limit: past 7/8 of it new Push batches are refused with
  // RESOURCE_EXHAUSTED (memory_limit.h). 0: no limit.
  uint64_t memory_limit_bytes = 0;
  // Per-tenant and per-agent limits (--limits, limits.h): rates, streams,
  // cardinality, and the label and message limits above per tenant. Null:
  // the limits above for everyone, nothing else.
  Limiter* limiter = nullptr;
};

// Batches are decoded by hand (a raw method): an undecodable message ends
// the call with INVALID_ARGUMENT instead of looking like end of stream,
// decompression is bounded (grpc_codec.h), and strings are checked by
// sheafd, so one invalid UTF-8 label costs only its own series.
// Each stream has at most one batch in flight; the work is done on a small
// worker pool, never on gRPC's callback threads, since it waits for fsync.
class IngestService final : public v1::IngestService::WithRawCallbackMethod_Push<v1::IngestService::Service> {
 public:
  IngestService(storage::SeriesStore* store, IngestMetrics* metrics, IngestOptions options);
  ~IngestService() override;

  grpc::ServerReadReactor<grpc::ByteBuffer>* Push(grpc::CallbackServerContext* context,
                                                  grpc::ByteBuffer* response) override;

  Authenticator* authenticator() const { return options_.auth; }

  // Finishes queued work and stops the workers. Call after the gRPC server
  // has shut down (no new batches can arrive).
  void Stop();

  // What an in-process batch (Write) became.
  struct WriteResult {
    bool duplicate = false;  // the sequence was durable already: nothing was written
    uint64_t samples_stored = 0;
    uint64_t series_rejected = 0;  // refused by validation or a limit, counted as for Push
    std::string first_rejection;   // "reason: detail" of the first one, for logs
  };
  // For writers inside sheafd (recording rules): one batch of `series`
  // (labels with __name__, samples) of `type` from `agent_id` with
  // `sequence`, on the caller's thread, through the steps a Push batch of
  // inline series takes: the same validation, series creation, append
  // (idempotent by sequence), live tail and ingest metrics. An empty
  // `agent_id` with `sequence` 0 writes without a sequence (remote write:
  // not idempotent; a repeated sample is stored once anyway), into
  // `tenant`'s series (and its agent sequence). UNAVAILABLE when the store
  // cannot write.
  absl::StatusOr<WriteResult> Write(const std::string& agent_id, uint64_t sequence, model::MetricType type,
                                    std::vector<std::pair<model::Labels, std::vector<model::Sample>>> series,
                                    storage::TenantId tenant = storage::kDefaultTenant,
                                    std::string_view tenant_name = "default");

  // The tenant's samples_per_second (limits.h) for a request of `samples`
  // samples that will be written with Write (remote write; not the
  // rules): OK, or RESOURCE_EXHAUSTED with the retry hint (RetryAfterMs),
  // taking nothing. A request refused here must not be written at all.
  absl::Status AdmitWrite(std::string_view tenant_name, uint64_t samples);
  // OK unless sheafd is over --memory-limit (memory_limit.h): then
  // RESOURCE_EXHAUSTED saying so, as Push answers. For writers other than
  // Push (remote write), checked before a request is decoded.
  absl::Status CheckMemory();

 private:
  class PushReactor;
  using RejectFn = std::function<void(const model::Rejection&, size_t samples)>;

  // The steps every batch takes, Push or Write. Validates a series and
  // finds or creates it (*id), or says why it is refused (kStoreError: the
  // store cannot write; fail the batch).
  // Whose a batch is and the limits its series meet: the store's tenant
  // id, its name (the key of its limits), the label limits and its series
  // limit (active_series, 0: only the store's --max-series).
  struct Tenant {
    storage::TenantId id = storage::kDefaultTenant;
    std::string_view name = "default";
    model::ValidationLimits validation;
    size_t active_series = 0;
  };
  Tenant TenantOf(storage::TenantId id, std::string_view name, const TenantLimits& limits) const;
  TenantLimits LimitsFor(std::string_view tenant_name) const;
  // Series in `labels` (validated copies) the tenant does not hold yet:
  // what new_series_per_minute counts.
  uint64_t CountNewSeries(const Tenant& tenant, std::span<const model::Labels> labels);
  std::optional<model::Rejection> AdmitSeries(const Tenant& tenant, model::Labels& labels, model::MetricType type,
                                              std::span<const model::Sample> samples, int64_t now, bool backfill,
                                              storage::SeriesId* id);
  std::optional<model::Rejection> CreateSeries(const Tenant& tenant, const model::Labels& labels,
                                               model::MetricType type, storage::SeriesId* id);
  // Appends; unless it is a duplicate, publishes what was stored to live
  // tails and tells `reject` of samples the store did not keep.
  absl::StatusOr<storage::AppendResult> Append(const storage::AppendBatch& append, const RejectFn& reject);

  // Reserves dictionary memory across streams; false past the total bound.
  bool ReserveDictionary(size_t bytes);
  void ReleaseDictionary(size_t bytes);

  storage::SeriesStore* store_;
  IngestMetrics* metrics_;
  IngestOptions options_;
  std::unique_ptr<WorkQueue> queue_;
  std::unique_ptr<MemoryLimit> memory_limit_;
  std::atomic<size_t> dictionary_bytes_ = 0;
  LogRateLimiter reject_log_{20, std::chrono::minutes(1)};
  LogRateLimiter duplicate_log_{20, std::chrono::minutes(1)};
};

}  // namespace sheaf::daemon

#endif  // SHEAF_DAEMON_INGEST_SERVICE_H_
