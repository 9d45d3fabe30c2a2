// QueryService: streamed range queries, series listing and store stats.
#ifndef SHEAF_DAEMON_QUERY_SERVICE_H_
#define SHEAF_DAEMON_QUERY_SERVICE_H_

#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "sheaf/v1/query.grpc.pb.h"
#include "model/matcher.h"

namespace sheaf::storage {
class SeriesStore;
}

namespace sheaf::daemon {

class QueryService final : public v1::QueryService::CallbackService {
 public:
  explicit QueryService(storage::SeriesStore* store);

  grpc::ServerWriteReactor<v1::QueryResponse>* Query(grpc::CallbackServerContext* context,
                                                     const v1::QueryRequest* request) override;
  grpc::ServerUnaryReactor* ListSeries(grpc::CallbackServerContext* context, const v1::ListSeriesRequest* request,
                                       v1::ListSeriesResponse* response) override;
  grpc::ServerUnaryReactor* Stats(grpc::CallbackServerContext* context, const v1::StatsRequest* request,
                                  v1::StatsResponse* response) override;
  grpc::ServerUnaryReactor* LabelNames(grpc::CallbackServerContext* context, const v1::LabelNamesRequest* request,
                                       v1::LabelNamesResponse* response) override;
  grpc::ServerUnaryReactor* LabelValues(grpc::CallbackServerContext* context, const v1::LabelValuesRequest* request,
                                        v1::LabelValuesResponse* response) override;

 private:
  class QueryReactor;

  storage::SeriesStore* store_;
  std::chrono::steady_clock::time_point started_;
};

// AdminService.Compact. One compaction at a time; it runs on a thread of its
// own, not on gRPC's. Stop() waits for a running one (call before closing
// the store).
class AdminService final : public v1::AdminService::CallbackService {
 public:
  explicit AdminService(storage::SeriesStore* store) : store_(store) {}
  ~AdminService() override { Stop(); }
  grpc::ServerUnaryReactor* Compact(grpc::CallbackServerContext* context, const v1::CompactRequest* request,
                                    v1::CompactResponse* response) override;
  void Stop();

 private:
  storage::SeriesStore* store_;
  std::mutex mu_;
  std::thread worker_;
  bool running_ = false;
};

// Matchers from a request's `matchers` and `selector` together. INVALID_ARGUMENT
// if neither selects anything, or if every matcher matches the empty string
// (that would select every series, as Prometheus forbids).
absl::StatusOr<std::vector<model::Matcher>> RequestMatchers(
    const google::protobuf::RepeatedPtrField<v1::LabelMatcher>& matchers, const std::string& selector);

}  // namespace sheaf::daemon

#endif  // SHEAF_DAEMON_QUERY_SERVICE_H_
