// IngestService.Push: client-streamed, gzip-compressed batches from agents.
#ifndef SHEAF_DAEMON_INGEST_SERVICE_H_
#define SHEAF_DAEMON_INGEST_SERVICE_H_

#include <functional>
#include <memory>

#include "model/validation.h"
#include "sheaf/v1/ingest.grpc.pb.h"

namespace sheaf {
class WorkQueue;
}

namespace sheaf::storage {
class SeriesStore;
}

namespace sheaf::daemon {

class DaemonMetrics;


struct IngestOptions {
  model::ValidationLimits limits;
  size_t max_refs_per_stream = 1'000'000;  // dictionary entries per Push stream
  size_t workers = 2;                      // threads writing batches to the store
  size_t queue_capacity = 256;             // batches waiting for a worker
  std::function<int64_t()> now_ms;         // clock; wall clock when empty (tests inject one)
};

// Batches are decoded by hand (a raw method) so that an undecodable message
// ends the call with INVALID_ARGUMENT instead of looking like end of stream.
// Each stream has at most one batch in flight; the work is done on a small
// worker pool, never on gRPC's callback threads, since it waits for fsync.
class IngestService final : public v1::IngestService::WithRawCallbackMethod_Push<v1::IngestService::Service> {
 public:
  IngestService(storage::SeriesStore* store, DaemonMetrics* metrics, IngestOptions options);
  ~IngestService() override;

  grpc::ServerReadReactor<grpc::ByteBuffer>* Push(grpc::CallbackServerContext* context,
                                                  grpc::ByteBuffer* response) override;

  // Finishes queued work and stops the workers. Call after the gRPC server
  // has shut down (no new batches can arrive).
  void Stop();

 private:
  class PushReactor;

  storage::SeriesStore* store_;
  DaemonMetrics* metrics_;
  IngestOptions options_;
  std::unique_ptr<WorkQueue> queue_;
};

}  // namespace sheaf::daemon

#endif  // SHEAF_DAEMON_INGEST_SERVICE_H_
