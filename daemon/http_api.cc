#include "daemon/http_api.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <future>
#include <iterator>
#include <limits>
#include <memory>
#include <optional>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/duration.h"
#include "common/json_writer.h"
#include "common/prom_format.h"
#include "common/work_queue.h"
#include "daemon/http_auth.h"
#include "daemon/query_service.h"
#include "model/labels.h"
#include "promql/engine.h"
#include "promql/parser.h"
#include "sheaf_version.h"
#include "storage/series_store.h"

namespace sheaf::daemon {
namespace {

// Prometheus' bound on the points of one series of a range query.
constexpr int64_t kMaxRangePoints = 11'000;
constexpr char kJson[] = "application/json";

// An answer that is not a success: Prometheus' errorType and HTTP code.
struct ApiError {
  int status;
  const char* type;  // "bad_data", "execution", "timeout", "unavailable", "internal", "not_found"
  std::string message;
};

ApiError BadData(std::string message) { return {400, "bad_data", std::move(message)}; }

// How an engine or store error is answered, as Prometheus answers the
// errors it has: parse errors 400 bad_data, errors the data causes 422
// execution, the deadline 503 timeout, storage 500 internal. A limit
// (RESOURCE_EXHAUSTED) is an execution error, as Prometheus answers its
// --query.max-samples; a full executor or all --query-max-concurrent
// slots taken is 503 unavailable (Prometheus queues instead).
ApiError FromStatus(const absl::Status& s) {
  std::string message(s.message());
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument:
      return promql::IsExecutionError(s) ? ApiError{422, "execution", message} : BadData(message);
    case absl::StatusCode::kResourceExhausted:
      return {422, "execution", message};
    case absl::StatusCode::kDeadlineExceeded:
      return {503, "timeout", message};
    case absl::StatusCode::kUnavailable:
      return {503, "unavailable", message};
    default:
      return {500, "internal", s.ToString()};
  }
}

HttpResponse Json(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.content_type = kJson;
  r.body = std::move(body);
  return r;
}

HttpResponse Error(const ApiError& e) {
  return Json(e.status,
              fmt::format(R"({{"status":"error","errorType":"{}","error":{}}})", e.type, JsonWriter::Quote(e.message)));
}

// `data` is JSON already.
HttpResponse Success(std::string_view data, const std::vector<std::string>& warnings = {}) {
  std::string body = R"({"status":"success","data":)";
  body += data;
  if (!warnings.empty()) {
    body += R"(,"warnings":[)";
    for (size_t i = 0; i < warnings.size(); ++i) {
      if (i > 0) body += ',';
      body += JsonWriter::Quote(warnings[i]);
    }
    body += ']';
  }
  body += '}';
  return Json(200, std::move(body));
}

void AppendPoint(int64_t ms, double value, std::string* out) {
  *out += '[';
  *out += FormatApiTime(ms);
  *out += ",\"";
  *out += FormatPromApiFloat(value);
  *out += "\"]";
}

// {"__name__":"x","a":"b"}: labels are sorted by name, as Go sorts map keys.
void AppendLabels(const model::Labels& labels, std::string* out) {
  *out += '{';
  bool first = true;
  for (const model::Label& l : labels) {
    if (!first) *out += ',';
    first = false;
    *out += JsonWriter::Quote(l.name);
    *out += ':';
    *out += JsonWriter::Quote(l.value);
  }
  *out += '}';
}

// The `data` of a query answer, in Prometheus' shapes.
std::string QueryData(const promql::QueryResult& result, int64_t time_ms, bool range) {
  std::string out = R"({"resultType":")";
  promql::ValueType type = range ? promql::ValueType::kMatrix : result.type;
  switch (type) {
    case promql::ValueType::kScalar: {
      out += R"(scalar","result":)";
      if (!result.series.empty() && !result.series[0].points.empty()) {
        AppendPoint(result.series[0].points[0].timestamp_ms, result.series[0].points[0].value, &out);
      } else {
        out += "null";
      }
      break;
    }
    case promql::ValueType::kString:
      out += R"(string","result":[)";
      out += FormatApiTime(time_ms);
      out += ',';
      out += JsonWriter::Quote(result.string_value);
      out += ']';
      break;
    case promql::ValueType::kVector:
    case promql::ValueType::kMatrix: {
      const bool vector = type == promql::ValueType::kVector;
      out += vector ? R"(vector","result":[)" : R"(matrix","result":[)";
      bool first = true;
      for (const promql::ResultSeries& s : result.series) {
        if (vector && s.points.empty()) continue;
        if (!first) out += ',';
        first = false;
        out += R"({"metric":)";
        AppendLabels(s.labels, &out);
        if (vector) {
          out += R"(,"value":)";
          AppendPoint(s.points[0].timestamp_ms, s.points[0].value, &out);
        } else {
          out += R"(,"values":[)";
          for (size_t i = 0; i < s.points.size(); ++i) {
            if (i > 0) out += ',';
            AppendPoint(s.points[i].timestamp_ms, s.points[i].value, &out);
          }
          out += ']';
        }
        out += '}';
      }
      out += ']';
      break;
    }
    default:
      out += R"(vector","result":[])";
      break;
  }
  out += '}';
  return out;
}

std::string StringArray(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ',';
    out += JsonWriter::Quote(items[i]);
  }
  out += ']';
  return out;
}

// Parses parameter `name` as a time; `fallback` when absent, and without
// one an absent parameter is refused as "" is.
absl::StatusOr<int64_t> TimeParam(const HttpRequest& request, std::string_view name, std::optional<int64_t> fallback) {
  const std::string* value = request.Param(name);
  if (value == nullptr && fallback) return *fallback;
  auto t = ParseApiTime(value == nullptr ? std::string_view() : std::string_view(*value));
  if (!t.ok())
    return absl::InvalidArgumentError(
        fmt::format("invalid parameter \"{}\": {}", name, std::string(t.status().message())));
  return t;
}

absl::StatusOr<int64_t> DurationParam(const HttpRequest& request, std::string_view name) {
  const std::string* value = request.Param(name);
  auto d = ParseApiDuration(value == nullptr ? std::string_view() : std::string_view(*value));
  if (!d.ok())
    return absl::InvalidArgumentError(
        fmt::format("invalid parameter \"{}\": {}", name, std::string(d.status().message())));
  return d;
}

class HttpApi {
 public:
  HttpApi(QueryService* query, storage::SeriesStore* store, HttpApiOptions options)
      : query_(query), store_(store), options_(std::move(options)), started_ms_(WallClockMs()) {}

  // Every handler goes through here: the token (the query role; its
  // tenant is all the handler sees), the size bound, then `serve`.
  using Serve = HttpResponse (HttpApi::*)(const HttpRequest&, storage::TenantId);
  HttpHandler Wrap(Serve serve) {
    return Authorized(query_->authenticator(), kRoleQuery, [this, serve](const HttpRequest& request,
                                                                          const Principal& principal) {
      size_t bytes = request.body.size();
      for (const auto& [name, value] : request.params) bytes += name.size() + value.size() + 2;
      if (bytes > options_.max_request_bytes) {
        return Error({413, "bad_data",
                      fmt::format("the request's parameters are {} bytes, more than the {} bytes one API request "
                                  "may have; shorten the query or the match[] selectors",
                                  bytes, options_.max_request_bytes)});
      }
      // The tenant's share of the query slots (limits.h), for the
      // evaluations (the listings take none, as over gRPC).
      Limiter::Slot slot;
      if (serve == &HttpApi::Query || serve == &HttpApi::QueryRange) {
        auto acquired = query_->AcquireTenantQuerySlot(principal.tenant_name);
        if (!acquired.ok()) return TooMany(acquired.status());
        slot = *std::move(acquired);
      }
      return (this->*serve)(request, principal.tenant);
    }, AuthErrorStyle::kJson);
  }

  // A limit's refusal: 429 with Retry-After (whole seconds, rounded up).
  HttpResponse TooMany(const absl::Status& refusal) {
    HttpResponse response = Error({429, "unavailable", std::string(refusal.message())});
    response.headers.emplace_back("Retry-After", std::to_string((RetryAfterMs(refusal) + 999) / 1000));
    return response;
  }

  HttpResponse Query(const HttpRequest& request, storage::TenantId tenant) {
    auto time = TimeParam(request, "time", Now());
    if (!time.ok()) return Error(BadData(std::string(time.status().message())));
    auto timeout = Timeout(request);
    if (!timeout.ok()) return Error(BadData(std::string(timeout.status().message())));
    promql::QueryParams params;
    params.tenant = tenant;
    params.start_ms = params.end_ms = *time;
    return Evaluate(request, params, *timeout, false);
  }

  HttpResponse QueryRange(const HttpRequest& request, storage::TenantId tenant) {
    // The order of Prometheus' checks, so the same request fails with the
    // same message.
    auto start = TimeParam(request, "start", std::nullopt);
    if (!start.ok()) return Error(BadData(std::string(start.status().message())));
    auto end = TimeParam(request, "end", std::nullopt);
    if (!end.ok()) return Error(BadData(std::string(end.status().message())));
    if (*end < *start) return Error(BadData("end timestamp must not be before start time"));
    auto step = DurationParam(request, "step");
    if (!step.ok()) return Error(BadData(std::string(step.status().message())));
    if (*step <= 0) {
      return Error(BadData("zero or negative query resolution step widths are not accepted. Try a positive integer"));
    }
    if ((*end - *start) / *step > kMaxRangePoints) {
      return Error(
          BadData("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution "
                  "(?step=XX)"));
    }
    auto timeout = Timeout(request);
    if (!timeout.ok()) return Error(BadData(std::string(timeout.status().message())));
    promql::QueryParams params;
    params.tenant = tenant;
    params.start_ms = *start;
    params.end_ms = *end;
    params.step_ms = *step;
    return Evaluate(request, params, *timeout, true);
  }

  HttpResponse Series(const HttpRequest& request, storage::TenantId tenant) {
    const std::vector<std::string> selectors = request.Params("match[]");
    if (selectors.empty()) return Error(BadData("no match[] parameter provided"));
    auto range = Range(request);
    if (!range.ok()) return Error(BadData(std::string(range.status().message())));
    auto limit = Limit(request);
    if (!limit.ok()) return Error(BadData(std::string(limit.status().message())));
    return OnExecutor([&]() -> HttpResponse {
      auto ids = SelectUnion(tenant, selectors, *range);
      if (!ids.ok()) return Error(FromStatus(ids.status()));
      std::vector<model::Labels> series;
      std::vector<std::string> warnings;
      for (storage::SeriesId id : *ids) {
        auto info = store_->GetSeries(id);
        if (!info) continue;  // deleted meanwhile
        if (series.size() >= *limit) {
          warnings.push_back("results truncated due to limit");
          break;
        }
        series.push_back(std::move(info->labels));
      }
      std::sort(series.begin(), series.end());
      std::string data = "[";
      for (size_t i = 0; i < series.size(); ++i) {
        if (i > 0) data += ',';
        AppendLabels(series[i], &data);
      }
      data += ']';
      return Success(data, warnings);
    });
  }

  HttpResponse Labels(const HttpRequest& request, storage::TenantId tenant) {
    return Listing(request, tenant, std::nullopt);
  }

  HttpResponse LabelValues(const HttpRequest& request, storage::TenantId tenant) {
    std::string_view rest = std::string_view(request.path).substr(std::string_view("/api/v1/label/").size());
    const size_t slash = rest.find('/');
    if (slash == std::string_view::npos || rest.substr(slash) != "/values") return NotFound(request, tenant);
    const std::string name(rest.substr(0, slash));
    if (!model::IsValidLabelName(name)) return Error(BadData(fmt::format("invalid label name: \"{}\"", name)));
    return Listing(request, tenant, name);
  }

  HttpResponse Metadata(const HttpRequest&, storage::TenantId) { return Success("{}"); }

  HttpResponse BuildInfo(const HttpRequest&, storage::TenantId) {
    JsonWriter w;
    w.BeginObject();
    for (auto [key, value] : {std::pair<const char*, const char*>{"version", SHEAF_VERSION},
                              {"revision", ""},
                              {"branch", ""},
                              {"buildUser", ""},
                              {"buildDate", ""},
                              {"goVersion", ""}}) {
      w.Key(key);
      w.String(value);
    }
    w.EndObject();
    return Success(w.str());
  }

  HttpResponse RuntimeInfo(const HttpRequest&, storage::TenantId) {
    char cwd[4096] = "";
    if (getcwd(cwd, sizeof(cwd)) == nullptr) cwd[0] = '\0';
    const std::string started = FormatRfc3339(started_ms_);
    JsonWriter w;
    w.BeginObject();
    w.Key("startTime");
    w.String(started);
    w.Key("CWD");
    w.String(cwd);
    w.Key("reloadConfigSuccess");
    w.Bool(true);
    w.Key("lastConfigTime");
    w.String(started);
    w.Key("corruptionCount");
    w.Int(0);
    w.Key("goroutineCount");
    w.Int(0);
    w.Key("GOMAXPROCS");
    w.Uint(std::thread::hardware_concurrency());
    w.Key("GOGC");
    w.String("");
    w.Key("GODEBUG");
    w.String("");
    w.Key("storageRetention");
    w.String(options_.storage_retention);
    w.EndObject();
    return Success(w.str());
  }

  HttpResponse FormatQuery(const HttpRequest& request, storage::TenantId) {
    const std::string* query = request.Param("query");
    auto expr = promql::Parse(query == nullptr ? std::string_view() : std::string_view(*query));
    if (!expr.ok()) return Error(BadData(std::string(expr.status().message())));
    return Success(JsonWriter::Quote(promql::Format(**expr)));
  }

  HttpResponse NotFound(const HttpRequest& request, storage::TenantId) {
    return Error({404, "not_found",
                  fmt::format("unknown API endpoint {} (sheafd serves query, query_range, series, labels, "
                              "label/<name>/values, metadata, status/buildinfo, status/runtimeinfo, format_query)",
                              request.path)});
  }

 private:
  int64_t Now() const { return options_.now_ms ? options_.now_ms() : WallClockMs(); }

  // `timeout`, at most --query-timeout (the gRPC Query's limit).
  absl::StatusOr<std::chrono::milliseconds> Timeout(const HttpRequest& request) {
    const auto limit = query_->limits().query_timeout;
    if (request.Param("timeout") == nullptr) return limit;
    auto d = DurationParam(request, "timeout");
    if (!d.ok()) return d.status();
    return *d <= 0 ? limit : std::min(limit, std::chrono::milliseconds(*d));
  }

  // `start`/`end` of the series and label endpoints; unbounded when absent.
  struct TimeRange {
    int64_t start = std::numeric_limits<int64_t>::min();
    int64_t end = std::numeric_limits<int64_t>::max();
    bool bounded() const {
      return start != std::numeric_limits<int64_t>::min() || end != std::numeric_limits<int64_t>::max();
    }
  };
  absl::StatusOr<TimeRange> Range(const HttpRequest& request) {
    TimeRange r;
    auto start = TimeParam(request, "start", r.start);
    if (!start.ok()) return start.status();
    auto end = TimeParam(request, "end", r.end);
    if (!end.ok()) return end.status();
    r.start = *start;
    r.end = *end;
    return r;
  }

  // `limit`: 0 or absent is QueryLimits::max_list_limit (Prometheus has no
  // limit; a bound there must be).
  absl::StatusOr<size_t> Limit(const HttpRequest& request) {
    const size_t most = query_->limits().max_list_limit;
    const std::string* value = request.Param("limit");
    if (value == nullptr || value->empty()) return most;
    char* end = nullptr;
    errno = 0;
    const long long n = std::strtoll(value->c_str(), &end, 10);
    if (end != value->c_str() + value->size() || errno != 0 || n < 0) {
      return absl::InvalidArgumentError(
          fmt::format("invalid parameter \"limit\": cannot parse \"{}\" to a non-negative integer", *value));
    }
    return n == 0 ? most : std::min(most, static_cast<size_t>(n));
  }

  // Runs `work` on the query executor and waits for it: store reads and
  // evaluations take the executor's threads, as the gRPC calls do.
  HttpResponse OnExecutor(const std::function<HttpResponse()>& work) {
    auto promise = std::make_shared<std::promise<HttpResponse>>();
    std::future<HttpResponse> answer = promise->get_future();
    if (!query_->executor()->TrySubmit([promise, &work] { promise->set_value(work()); })) {
      return Error({503, "unavailable", "sheafd's query executor is full or shutting down; retry with backoff"});
    }
    return answer.get();
  }

  HttpResponse Evaluate(const HttpRequest& request, promql::QueryParams params, std::chrono::milliseconds timeout,
                        bool range) {
    const std::string* text = request.Param("query");
    const std::string query = text == nullptr ? std::string() : *text;
    // Parsed here: a bad expression is bad_data without taking a slot.
    auto expr = promql::Parse(query);
    if (!expr.ok()) return Error(BadData(std::string(expr.status().message())));
    if (range && (*expr)->type() != promql::ValueType::kVector && (*expr)->type() != promql::ValueType::kScalar) {
      return Error(
          BadData(fmt::format("invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                              promql::ValueTypeName((*expr)->type()))));
    }
    return OnExecutor([&]() -> HttpResponse {
      if (auto s = query_->AcquireQuerySlot(); !s.ok()) {
        return Error({503, "unavailable", std::string(s.message())});
      }
      const auto give_up = std::chrono::steady_clock::now() + timeout;
      params.check = [give_up, timeout]() -> absl::Status {
        if (std::chrono::steady_clock::now() > give_up) {
          return absl::DeadlineExceededError(fmt::format(
              "query timed out in expression evaluation: it ran longer than {} ms (the timeout parameter or "
              "--query-timeout)",
              timeout.count()));
        }
        return absl::OkStatus();
      };
      auto result = query_->engine().Query(**expr, params);
      query_->ReleaseQuerySlot();
      if (!result.ok()) return Error(FromStatus(result.status()));
      return Success(QueryData(*result, params.end_ms, range), result->warnings);
    });
  }

  // Ids of the series any of `selectors` selects (ascending, no repeats);
  // with a time range, only those with a sample in it.
  absl::StatusOr<std::vector<storage::SeriesId>> SelectUnion(storage::TenantId tenant,
                                                             const std::vector<std::string>& selectors,
                                                             const TimeRange& range) {
    const uint64_t max_series = query_->engine().options().limits.max_series;
    std::vector<storage::SeriesId> ids;
    for (const std::string& selector : selectors) {
      auto matchers = promql::ParseMetricSelector(selector);
      if (!matchers.ok()) {
        return absl::InvalidArgumentError(std::string(matchers.status().message()));
      }
      if (std::all_of(matchers->begin(), matchers->end(), [](const model::Matcher& m) { return m.MatchesEmpty(); })) {
        return absl::InvalidArgumentError("match[] must contain at least one non-empty matcher");
      }
      auto selected = store_->Select(tenant, *matchers);
      if (!selected.ok()) return selected.status();
      std::vector<storage::SeriesId> merged;
      merged.reserve(ids.size() + selected->size());
      std::set_union(ids.begin(), ids.end(), selected->begin(), selected->end(), std::back_inserter(merged));
      ids = std::move(merged);
      if (ids.size() > max_series) {
        return absl::ResourceExhaustedError(fmt::format(
            "match[] selects more than {} series, the limit of one query (--query-max-series); narrow the selectors",
            max_series));
      }
    }
    if (!range.bounded()) return ids;
    std::vector<storage::SeriesId> in_range;
    for (storage::SeriesId id : ids) {
      auto it = store_->Read(id, range.start, range.end);
      if (!it->status().ok()) return it->status();
      if (it->Valid()) in_range.push_back(id);
    }
    return in_range;
  }

  // /api/v1/labels (name empty) and /api/v1/label/<name>/values.
  HttpResponse Listing(const HttpRequest& request, storage::TenantId tenant, const std::optional<std::string>& name) {
    const std::vector<std::string> selectors = request.Params("match[]");
    auto range = Range(request);
    if (!range.ok()) return Error(BadData(std::string(range.status().message())));
    auto limit = Limit(request);
    if (!limit.ok()) return Error(BadData(std::string(limit.status().message())));
    return OnExecutor([&]() -> HttpResponse {
      std::vector<std::string> items;
      bool truncated = false;
      if (selectors.empty()) {
        // The store's index; start and end are not applied (HTTP_API.md).
        auto listed = name ? store_->LabelValues(tenant, *name, *limit, &truncated)
                           : store_->LabelNames(tenant, *limit, &truncated);
        if (!listed.ok()) return Error(FromStatus(listed.status()));
        items = *std::move(listed);
      } else {
        auto ids = SelectUnion(tenant, selectors, *range);
        if (!ids.ok()) return Error(FromStatus(ids.status()));
        std::set<std::string> found;
        for (storage::SeriesId id : *ids) {
          auto info = store_->GetSeries(id);
          if (!info) continue;
          for (const model::Label& l : info->labels) {
            if (!name) {
              found.insert(l.name);
            } else if (l.name == *name && !l.value.empty()) {
              found.insert(l.value);
            }
          }
        }
        for (const std::string& s : found) {
          if (items.size() >= *limit) {
            truncated = true;
            break;
          }
          items.push_back(s);
        }
      }
      std::vector<std::string> warnings;
      if (truncated) warnings.push_back("results truncated due to limit");
      return Success(StringArray(items), warnings);
    });
  }

  static std::string FormatRfc3339(int64_t ms) {
    const std::time_t seconds = static_cast<std::time_t>(ms / 1000);
    std::tm tm{};
    gmtime_r(&seconds, &tm);
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                       tm.tm_hour, tm.tm_min, tm.tm_sec, ms % 1000);
  }

  QueryService* query_;
  storage::SeriesStore* store_;
  HttpApiOptions options_;
  const int64_t started_ms_;
};

}  // namespace

void RegisterHttpApi(HttpServer* server, QueryService* query, storage::SeriesStore* store, HttpApiOptions options) {
  // Owned by the handlers (shared): it lives as long as the server's routes.
  auto api = std::make_shared<HttpApi>(query, store, std::move(options));
  auto route = [&](HttpApi::Serve serve) {
    return [api, handler = api->Wrap(serve)](const HttpRequest& request) { return handler(request); };
  };
  const std::vector<std::string> get_post = {"GET", "POST"};
  server->Handle("/api/v1/query", get_post, route(&HttpApi::Query));
  server->Handle("/api/v1/query_range", get_post, route(&HttpApi::QueryRange));
  server->Handle("/api/v1/series", get_post, route(&HttpApi::Series));
  server->Handle("/api/v1/labels", get_post, route(&HttpApi::Labels));
  server->HandlePrefix("/api/v1/label/", {"GET"}, route(&HttpApi::LabelValues));
  server->Handle("/api/v1/metadata", {"GET"}, route(&HttpApi::Metadata));
  server->Handle("/api/v1/status/buildinfo", {"GET"}, route(&HttpApi::BuildInfo));
  server->Handle("/api/v1/status/runtimeinfo", {"GET"}, route(&HttpApi::RuntimeInfo));
  server->Handle("/api/v1/format_query", get_post, route(&HttpApi::FormatQuery));
  server->HandlePrefix("/api/v1/", {"GET", "POST", "PUT", "DELETE"}, route(&HttpApi::NotFound));
}

}  // namespace sheaf::daemon
