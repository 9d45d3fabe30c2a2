// AdminService: Compact (one at a time, on a thread of its own, cancelled at
// shutdown), DeleteSeries and Snapshot (on the query executor). Raw
// methods, decoded with bounded decompression like every other request.
#ifndef SHEAF_DAEMON_ADMIN_SERVICE_H_
#define SHEAF_DAEMON_ADMIN_SERVICE_H_

#include <string>
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

class Authenticator;

using AdminServiceBase = v1::AdminService::WithRawCallbackMethod_Compact<v1::AdminService::WithRawCallbackMethod_DeleteSeries<
    v1::AdminService::WithRawCallbackMethod_Snapshot<v1::AdminService::Service>>>;

class AdminService final : public AdminServiceBase {
 public:
  // Snapshots go into `snapshot_dir` (created when the first is taken).
  AdminService(storage::SeriesStore* store, WorkQueue* executor, std::string snapshot_dir)
      : store_(store), executor_(executor), snapshot_dir_(std::move(snapshot_dir)) {}
  ~AdminService() override { Stop(); }

  grpc::ServerUnaryReactor* Compact(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                                    grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* DeleteSeries(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                                         grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Snapshot(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;

  // Tokens: each method asks `auth` for its role (grpc_auth.h) first;
  // DeleteSeries deletes in the caller's tenant only. Compact and Snapshot
  // act on the whole store (on sheafd's own disk). Null: no checks.
  void set_authenticator(Authenticator* auth) { auth_ = auth; }

  // Cancels a running compaction and waits for it to return (it answers
  // CANCELLED). Call before closing the store.
  void Stop();

 private:
  storage::SeriesStore* store_;
  WorkQueue* executor_;
  Authenticator* auth_ = nullptr;
  const std::string snapshot_dir_;
  absl::Mutex snapshot_mu_;  // one snapshot at a time
  absl::Mutex mu_;
  std::thread worker_ ABSL_GUARDED_BY(mu_);
  bool running_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace sheaf::daemon

#endif  // SHEAF_DAEMON_ADMIN_SERVICE_H_
