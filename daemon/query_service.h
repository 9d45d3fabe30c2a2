// QueryService: streamed range queries, series listing, labels and store
// stats; AdminService: compaction and series deletion.
//
// Every method is a raw (ByteBuffer) method so its request is decoded with
// bounded decompression (grpc_codec.h), and the work runs on the query
// executor, never on gRPC's callback threads: reads can wait on the disk.
#ifndef SHEAF_DAEMON_QUERY_SERVICE_H_
#define SHEAF_DAEMON_QUERY_SERVICE_H_

#include <atomic>
#include <chrono>
#include <vector>

#include "absl/status/statusor.h"
#include "daemon/limits.h"
#include "model/matcher.h"
#include "promql/engine.h"
#include "sheaf/v1/query.grpc.pb.h"

namespace sheaf {
class WorkQueue;
}

namespace sheaf::storage {
class SeriesStore;
}

namespace sheaf::daemon {

class Authenticator;
class TailHub;

struct QueryLimits {
  size_t max_request_bytes = 1 << 20;    // a request, after decompression
  size_t max_response_bytes = 4 << 20;   // a unary answer; listings are truncated past it
  uint32_t default_list_limit = 10'000;  // series, names or values when the request says 0
  uint32_t max_list_limit = 100'000;
  // PromQL queries (QueryRequest.expr): the engine's limits, how many may
  // evaluate at once (more: RESOURCE_EXHAUSTED), and how long one may take
  // (longer: DEADLINE_EXCEEDED, whatever the client's deadline).
  promql::EngineOptions promql;
  size_t max_concurrent_queries = 16;
  std::chrono::milliseconds query_timeout{120'000};
};

using QueryServiceBase = v1::QueryService::WithRawCallbackMethod_Query<
    v1::QueryService::WithRawCallbackMethod_ListSeries<v1::QueryService::WithRawCallbackMethod_Stats<
        v1::QueryService::WithRawCallbackMethod_LabelNames<v1::QueryService::WithRawCallbackMethod_LabelValues<
            v1::QueryService::WithRawCallbackMethod_Tail<v1::QueryService::Service>>>>>>;

class QueryService final : public QueryServiceBase {
 public:
  // `executor` runs the work; both must outlive the gRPC server.
  QueryService(storage::SeriesStore* store, WorkQueue* executor, QueryLimits limits = {});

  grpc::ServerWriteReactor<grpc::ByteBuffer>* Query(grpc::CallbackServerContext* context,
                                                    const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* ListSeries(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                                       grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Stats(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                                  grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* LabelNames(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                                       grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* LabelValues(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                                        grpc::ByteBuffer* response) override;

  // Live tail (tail_service.cc), served from `hub` (it must outlive the
  // server); without one, Tail answers UNIMPLEMENTED.
  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* Tail(grpc::CallbackServerContext* context) override;
  void set_tail_hub(TailHub* hub) { tail_hub_ = hub; }
  // Tokens: each method asks `auth` for its role (grpc_auth.h) first and
  // works in the caller's tenant. Null (the default): no checks, the
  // default tenant. It must outlive the server.
  void set_authenticator(Authenticator* auth) { auth_ = auth; }
  Authenticator* authenticator() const { return auth_; }

  // What the Prometheus HTTP API (http_api.h) shares with Query: the same
  // engine, limits and executor, and the same --query-max-concurrent slots.
  const promql::Engine& engine() const { return engine_; }
  const QueryLimits& limits() const { return limits_; }
  WorkQueue* executor() const { return executor_; }
  // Takes one of the max_concurrent_queries slots for a PromQL evaluation:
  // RESOURCE_EXHAUSTED naming the limit when all are taken. Each OK is
  // paired with one ReleaseQuerySlot().
  absl::Status AcquireQuerySlot();
  void ReleaseQuerySlot() { running_queries_.fetch_sub(1); }
  // Per-tenant limits (limits.h); null (the default): none. It must
  // outlive the server.
  void set_limiter(Limiter* limiter) { limiter_ = limiter; }
  // Beside a slot above: one of the tenant's concurrent_queries, held
  // until the returned slot is released or destroyed; RESOURCE_EXHAUSTED
  // with a retry hint (RetryAfterMs) when the tenant has them all.
  absl::StatusOr<Limiter::Slot> AcquireTenantQuerySlot(std::string_view tenant_name);

 private:
  class QueryReactor;
  class TailReactor;

  storage::SeriesStore* store_;
  WorkQueue* executor_;
  QueryLimits limits_;
  promql::Engine engine_;
  std::atomic<size_t> running_queries_{0};  // PromQL evaluations in progress
  std::chrono::steady_clock::time_point started_;
  TailHub* tail_hub_ = nullptr;
  Authenticator* auth_ = nullptr;
  Limiter* limiter_ = nullptr;
};

// Matchers from a request's `matchers` and `selector` together. INVALID_ARGUMENT
// if neither selects anything, or if every matcher matches the empty string
// (that would select every series, as Prometheus forbids).
absl::StatusOr<std::vector<model::Matcher>> RequestMatchers(
    const google::protobuf::RepeatedPtrField<v1::LabelMatcher>& matchers, const std::string& selector);

}  // namespace sheaf::daemon

#endif  // SHEAF_DAEMON_QUERY_SERVICE_H_
