// QueryService: streamed range queries, series listing and store stats.
#ifndef SHEAF_DAEMON_QUERY_SERVICE_H_
#define SHEAF_DAEMON_QUERY_SERVICE_H_

#include <chrono>
#include <vector>

#include "absl/status/statusor.h"
#include "sheaf/v1/query.grpc.pb.h"
#include "storage/matcher.h"

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

 private:
  class QueryReactor;

  storage::SeriesStore* store_;
  std::chrono::steady_clock::time_point started_;
};

// Matchers from a request's `matchers` and `selector` together. INVALID_ARGUMENT
// if neither selects anything, or if every matcher matches the empty string
// (that would select every series, as Prometheus forbids).
absl::StatusOr<std::vector<storage::Matcher>> RequestMatchers(
    const google::protobuf::RepeatedPtrField<v1::LabelMatcher>& matchers, const std::string& selector);

}  // namespace sheaf::daemon

#endif  // SHEAF_DAEMON_QUERY_SERVICE_H_
