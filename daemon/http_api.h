// The Prometheus HTTP query API on sheafd's HTTP server, so that Grafana's
// Prometheus data source (and anything else that speaks the API) works
// unchanged: /api/v1/query, /api/v1/query_range, /api/v1/series,
// /api/v1/labels, /api/v1/label/<name>/values, /api/v1/metadata,
// /api/v1/status/buildinfo, /api/v1/status/runtimeinfo and
// /api/v1/format_query. docs/HTTP_API.md is the user's page, with every
// difference from Prometheus 2.42.
//
// Answers are Prometheus' envelope byte for byte where it can be:
// {"status":"success","data":...,"warnings":[...]} or
// {"status":"error","errorType":"bad_data","error":"..."}, with its HTTP
// codes (400 bad_data, 422 execution, 503 timeout/unavailable, 500
// internal, 404 not_found), values as strings ("+Inf", "NaN") and times as
// float seconds. Queries are evaluated by the gRPC Query's engine, with its
// limits, its executor and its --query-max-concurrent slots
// (QueryService::AcquireQuerySlot): the HTTP thread only waits.
//
// No gRPC here: QueryService is used only for what it shares.
#ifndef SHEAF_DAEMON_HTTP_API_H_
#define SHEAF_DAEMON_HTTP_API_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "daemon/http_server.h"

namespace sheaf::storage {
class SeriesStore;
}

namespace sheaf::daemon {

class QueryService;

struct HttpApiOptions {
  // The parameters of one request (query string and form body together);
  // past it the answer is 413.
  size_t max_request_bytes = 1 << 20;
  // Shown by /api/v1/status/runtimeinfo as storageRetention ("15d").
  std::string storage_retention;
  std::function<int64_t()> now_ms;  // wall clock when empty (tests inject one)
};

// Registers every /api/v1/ route on `server`, and a catch-all that answers
// 404 with the JSON envelope for any other path under /api/v1/ (routes
// registered exactly, such as remote write, still win). `query` and
// `store` must outlive the server. REQUIRES: before server->Start().
void RegisterHttpApi(HttpServer* server, QueryService* query, storage::SeriesStore* store, HttpApiOptions options);

// Prometheus' `time`/`start`/`end` parameters: Unix seconds with a
// fraction ("1435781451.781"; rounded to ms as Prometheus does) or RFC
// 3339 ("2015-07-01T20:10:51.781Z", "...+02:00"). In ms.
// INVALID_ARGUMENT with Prometheus' message otherwise.
absl::StatusOr<int64_t> ParseApiTime(std::string_view text);
// Prometheus' `step`/`timeout`: float seconds ("15", "0.5") or a duration
// ("15s", "1m30s"). In ms.
absl::StatusOr<int64_t> ParseApiDuration(std::string_view text);
// A timestamp in ms as Prometheus' API writes it: seconds, then "." and
// the three digits of the ms when there are any ("1435781451.781",
// "1435781451.080", "1435781451").
std::string FormatApiTime(int64_t ms);

}  // namespace sheaf::daemon

#endif  // SHEAF_DAEMON_HTTP_API_H_
