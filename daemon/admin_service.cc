#include "daemon/admin_service.h"

#include <chrono>

#include "common/log.h"
#include "daemon/grpc_codec.h"
#include "daemon/query_service.h"
#include "daemon/status_convert.h"
#include "daemon/unary_call.h"
#include "storage/series_store.h"

namespace sheaf::daemon {

grpc::ServerUnaryReactor* AdminService::Compact(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                                                grpc::ByteBuffer* response) {
  auto* reactor = context->DefaultReactor();
  v1::CompactRequest req;
  if (auto s = DecodeMessage(*request, 1 << 16, "the CompactRequest", &req); !s.ok()) {
    reactor->Finish(s);
    return reactor;
  }
  absl::MutexLock lock(&mu_);
  if (running_) {
    reactor->Finish(
        grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "a compaction is already running; wait for it to finish"));
    return reactor;
  }
  if (worker_.joinable()) worker_.join();
  running_ = true;
  worker_ = std::thread([this, reactor, response] {
    v1::CompactResponse resp;
    auto started = std::chrono::steady_clock::now();
    resp.set_storage_bytes_before(store_->Stats().disk_bytes);
    absl::Status s = store_->Compact();
    resp.set_storage_bytes_after(store_->Stats().disk_bytes);
    resp.set_seconds(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    if (s.ok()) *response = EncodeMessage(resp);
    {
      absl::MutexLock lock(&mu_);
      running_ = false;
    }
    reactor->Finish(ToGrpcStatus(s));
  });
  return reactor;
}

grpc::ServerUnaryReactor* AdminService::DeleteSeries(grpc::CallbackServerContext* context,
                                                     const grpc::ByteBuffer* request, grpc::ByteBuffer* response) {
  return RunUnary<v1::DeleteSeriesRequest, v1::DeleteSeriesResponse>(
      executor_, context, *request, response, 1 << 20,
      [this, peer = context->peer()](const v1::DeleteSeriesRequest& req, v1::DeleteSeriesResponse* resp) {
        auto matchers = RequestMatchers(req.matchers(), req.selector());
        if (!matchers.ok()) return ToGrpcStatus(matchers.status());
        auto deleted = store_->DeleteSeries(storage::kDefaultTenant, *matchers);
        if (!deleted.ok()) return ToGrpcStatus(deleted.status());
        resp->set_deleted(*deleted);
        std::string selector;
        for (const auto& m : *matchers) selector += (selector.empty() ? "" : ", ") + m.ToString();
        LogWarn("deleted {} series matching {{{}}} at the request of {}", *deleted, selector, peer);
        return grpc::Status::OK;
      });
}

void AdminService::Stop() {
  std::thread worker;
  {
    absl::MutexLock lock(&mu_);
    if (running_) store_->CancelCompaction();  // returns within moments, answering CANCELLED
    worker = std::move(worker_);
  }
  if (worker.joinable()) worker.join();
}

}  // namespace sheaf::daemon
