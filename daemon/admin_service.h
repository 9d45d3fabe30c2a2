// AdminService: Compact (one at a time, on a thread of its own, cancelled at
// shutdown) and DeleteSeries (on the query executor). Raw methods, decoded
// with bounded decompression like every other request.
#ifndef SHEAF_DAEMON_ADMIN_SERVICE_H_
#define SHEAF_DAEMON_ADMIN_SERVICE_H_

#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "sheaf/v1/query.grpc.pb.h"

namespace sheaf {
class WorkQueue;
}

namespace sheaf::storage {
class SeriesStore;
}

namespace sheaf::daemon {

using AdminServiceBase = v1::AdminService::WithRawCallbackMethod_Compact<
    v1::AdminService::WithRawCallbackMethod_DeleteSeries<v1::AdminService::Service>>;

class AdminService final : public AdminServiceBase {
 public:
  AdminService(storage::SeriesStore* store, WorkQueue* executor) : store_(store), executor_(executor) {}
  ~AdminService() override { Stop(); }

  grpc::ServerUnaryReactor* Compact(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                                    grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* DeleteSeries(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                                         grpc::ByteBuffer* response) override;

  // Cancels a running compaction and waits for it to return (it answers
  // CANCELLED). Call before closing the store.
  void Stop();

 private:
  storage::SeriesStore* store_;
  WorkQueue* executor_;
  absl::Mutex mu_;
  std::thread worker_ ABSL_GUARDED_BY(mu_);
  bool running_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace sheaf::daemon

#endif  // SHEAF_DAEMON_ADMIN_SERVICE_H_
