#include "daemon/admin_service.h"

#include <chrono>
#include <filesystem>

#include "absl/time/clock.h"
#include "absl/time/time.h"

#include "common/log.h"
#include "daemon/grpc_auth.h"
#include "daemon/grpc_codec.h"
#include "daemon/query_service.h"
#include "daemon/status_convert.h"
#include "daemon/unary_call.h"
#include "storage/series_store.h"

namespace sheaf::daemon {

grpc::ServerUnaryReactor* AdminService::Compact(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                                                grpc::ByteBuffer* response) {
  auto* reactor = context->DefaultReactor();
  if (auto principal = AuthorizeCall(auth_, *context, "/sheaf.v1.AdminService/Compact"); !principal.ok()) {
    reactor->Finish(ToGrpcStatus(principal.status()));
    return reactor;
  }
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
      auth_, "/sheaf.v1.AdminService/DeleteSeries", executor_, context, *request, response, 1 << 20,
      [this, peer = context->peer()](const Principal& principal, const v1::DeleteSeriesRequest& req,
                                     v1::DeleteSeriesResponse* resp) {
        auto matchers = RequestMatchers(req.matchers(), req.selector());
        if (!matchers.ok()) return ToGrpcStatus(matchers.status());
        // Only the caller's tenant's series, whatever the matchers.
        auto deleted = store_->DeleteSeries(principal.tenant, *matchers);
        if (!deleted.ok()) return ToGrpcStatus(deleted.status());
        resp->set_deleted(*deleted);
        std::string selector;
        for (const auto& m : *matchers) selector += (selector.empty() ? "" : ", ") + m.ToString();
        LogWarn("deleted {} series of tenant {} matching {{{}}} at the request of {} (token '{}')", *deleted,
                principal.tenant_name, selector, peer, principal.token_name);
        return grpc::Status::OK;
      });
}

namespace {

// A snapshot name is one path component of a safe alphabet: a client must
// not make sheafd write outside --snapshot-dir ("../x", "/etc").
bool ValidSnapshotName(const std::string& name) {
  if (name.empty() || name.size() > 128 || name == "." || name == "..") return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

grpc::ServerUnaryReactor* AdminService::Snapshot(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                                                 grpc::ByteBuffer* response) {
  return RunUnary<v1::SnapshotRequest, v1::SnapshotResponse>(
      auth_, "/sheaf.v1.AdminService/Snapshot", executor_, context, *request, response, 1 << 16,
      [this, peer = context->peer()](const Principal&, const v1::SnapshotRequest& req, v1::SnapshotResponse* resp) {
        const std::string name =
            req.name().empty() ? absl::FormatTime("%Y%m%dT%H%M%SZ", absl::Now(), absl::UTCTimeZone()) : req.name();
        if (!ValidSnapshotName(name)) {
          return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                              "snapshot name \"" + name.substr(0, 200) +
                                  "\" is not allowed: use 1 to 128 letters, digits, '.', '_' or '-'");
        }
        absl::MutexLock lock(&snapshot_mu_);
        std::error_code ec;
        std::filesystem::create_directories(snapshot_dir_, ec);
        if (ec) {
          return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                              "cannot create the snapshot directory " + snapshot_dir_ + " (--snapshot-dir): " +
                                  ec.message());
        }
        const std::string path = (std::filesystem::path(snapshot_dir_) / name).string();
        const auto started = std::chrono::steady_clock::now();
        if (auto s = store_->Checkpoint(path); !s.ok()) return ToGrpcStatus(s);
        resp->set_seconds(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
        resp->set_path(std::filesystem::absolute(path, ec).string());
        uint64_t bytes = 0;
        uint32_t files = 0;
        for (const auto& entry : std::filesystem::directory_iterator(path, ec)) {
          if (!entry.is_regular_file(ec)) continue;
          bytes += entry.file_size(ec);
          ++files;
        }
        resp->set_bytes(bytes);
        resp->set_files(files);
        LogInfo("snapshot {} written ({} files, {} bytes, {:.2f} s) at the request of {}", resp->path(), files,
                bytes, resp->seconds(), peer);
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
