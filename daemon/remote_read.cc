#include "daemon/remote_read.h"

#include <fmt/format.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>
#include <snappy.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/log.h"
#include "common/work_queue.h"
#include "daemon/http_auth.h"
#include "daemon/http_metrics.h"
#include "daemon/query_service.h"
#include "daemon/remote_decode.h"
#include "model/matcher.h"
#include "prometheus/remote.pb.h"
#include "storage/series_store.h"

namespace sheaf::daemon {
namespace {

constexpr char kProtobuf[] = "application/x-protobuf";

// Appends a base-128 varint (protobuf's encoding of lengths and tags).
void AppendVarint(uint64_t v, std::string* out) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

// Appends field 1 of a message as a length-delimited field holding
// `bytes`: ReadResponse.results and QueryResult.timeseries are both field
// 1, so the answer is built from serialized parts without a message tree.
void AppendField1(std::string_view bytes, std::string* out) {
  out->push_back(static_cast<char>((1 << 3) | 2));  // field 1, wire type 2 (length-delimited)
  AppendVarint(bytes.size(), out);
  out->append(bytes);
}

using remote::ToMatchers;

// One request's answer being built, with what the limits count.
struct Answer {
  std::string body;  // the serialized ReadResponse
  size_t series = 0;
  size_t samples = 0;
};

class Server {
 public:
  Server(QueryService* query, storage::SeriesStore* store, RemoteReadOptions options, prometheus::Registry* registry)
      : query_(query),
        store_(store),
        options_(options),
        requests_(registry, "sheaf_remote_read_requests_total",
                  "POST /api/v1/read requests, by HTTP status code of the answer.") {
    if (options_.read_batch_series == 0) options_.read_batch_series = 1;
    if (registry == nullptr) return;
    auto counter = [&](const char* name, const char* help) {
      return &prometheus::BuildCounter().Name(name).Help(help).Register(*registry).Add({});
    };
    queries_ = counter("sheaf_remote_read_queries_total", "Queries answered by remote read (a request holds some).");
    series_ = counter("sheaf_remote_read_series_total", "Series returned by remote read.");
    samples_ = counter("sheaf_remote_read_samples_total", "Samples returned by remote read.");
  }

  HttpResponse Serve(const HttpRequest& request, storage::TenantId tenant) {
    HttpResponse response = Decode(request, tenant);
    requests_.Count(response.status);
    return response;
  }

 private:
  static HttpResponse Busy(std::string message) {
    HttpResponse busy = HttpResponse::Text(503, message);
    busy.headers.emplace_back("Retry-After", "1");
    return busy;
  }

  // Checks the sizes and the remote reads in flight; Parse does the rest.
  HttpResponse Decode(const HttpRequest& request, storage::TenantId tenant) {
    if (request.body.size() > options_.max_compressed_bytes) {
      return HttpResponse::Text(413, fmt::format("remote-read body of {} bytes is over the limit of {} bytes; send "
                                                 "fewer queries per request",
                                                 request.body.size(), options_.max_compressed_bytes));
    }
    // The decompressed size, from the snappy header: checked before
    // anything is allocated, so a small body claiming gigabytes costs nothing.
    size_t length = 0;
    if (!snappy::GetUncompressedLength(request.body.data(), request.body.size(), &length)) {
      return HttpResponse::Text(400, "body is not snappy-compressed (block format, not framed): cannot read its "
                                     "uncompressed length; a remote-read body is a snappy-compressed protobuf "
                                     "ReadRequest");
    }
    if (length > options_.max_uncompressed_bytes) {
      return HttpResponse::Text(413, fmt::format("remote-read body would decompress to {} bytes, over the limit of "
                                                 "{} bytes; send fewer queries per request",
                                                 length, options_.max_uncompressed_bytes));
    }
    // Bounded memory: a few requests decoded and answered at once.
    if (in_flight_.fetch_add(1) >= options_.max_concurrent) {
      in_flight_.fetch_sub(1);
      return Busy(fmt::format("{} remote reads are being answered already (the limit of sheafd's remote read); "
                              "retry with backoff",
                              options_.max_concurrent));
    }
    HttpResponse response = Parse(request.body, length, tenant);
    in_flight_.fetch_sub(1);
    return response;
  }

  // Decompresses and parses; then answers on the query executor, as the
  // query API does.
  HttpResponse Parse(const std::string& body, size_t length, storage::TenantId tenant) {
    std::string message(length, '\0');
    if (!snappy::RawUncompress(body.data(), body.size(), message.data())) {
      return HttpResponse::Text(400, "body is not valid snappy (block format, not framed): it does not decompress");
    }
    prompb::ReadRequest read;
    if (!read.ParseFromString(message)) {
      return HttpResponse::Text(400, "body is not a protobuf ReadRequest (Prometheus remote read): it does not decode");
    }
    if (read.accepted_response_types_size() > 0 &&
        std::none_of(read.accepted_response_types().begin(), read.accepted_response_types().end(),
                     [](int type) { return type == prompb::ReadRequest::SAMPLES; })) {
      return HttpResponse::Text(400, "none of the accepted response types is served: sheafd answers SAMPLES "
                                     "(0) only; accept it too");
    }
    size_t count = 0;
    for (const prompb::Query& q : read.queries()) count += static_cast<size_t>(q.matchers_size());
    if (count > options_.max_matchers) {
      return HttpResponse::Text(400, fmt::format("the request has {} matchers; at most {} are answered in one "
                                                 "request (send fewer queries, or fewer matchers per query)",
                                                 count, options_.max_matchers));
    }
    // Matchers first: a bad regex is 400 without taking a slot.
    std::vector<std::vector<model::Matcher>> matchers;
    matchers.reserve(static_cast<size_t>(read.queries_size()));
    for (int i = 0; i < read.queries_size(); ++i) {
      auto m = ToMatchers(read.queries(i), i);
      if (!m.ok()) return HttpResponse::Text(400, std::string(m.status().message()));
      matchers.push_back(*std::move(m));
    }

    auto promise = std::make_shared<std::promise<HttpResponse>>();
    std::future<HttpResponse> answer = promise->get_future();
    const auto work = [&] {
      if (auto s = query_->AcquireQuerySlot(); !s.ok()) return Busy(std::string(s.message()));
      HttpResponse r = Respond(read, matchers, tenant);
      query_->ReleaseQuerySlot();
      return r;
    };
    if (!query_->executor()->TrySubmit([promise, &work] { promise->set_value(work()); })) {
      return Busy("sheafd's query executor is full or shutting down; retry with backoff");
    }
    return answer.get();
  }

  HttpResponse Respond(const prompb::ReadRequest& read, const std::vector<std::vector<model::Matcher>>& matchers,
                       storage::TenantId tenant) {
    const auto timeout = query_->limits().query_timeout;
    const auto give_up = std::chrono::steady_clock::now() + timeout;
    Answer answer;
    for (int i = 0; i < read.queries_size(); ++i) {
      const prompb::Query& q = read.queries(i);
      std::string result;  // the serialized QueryResult
      if (auto s = AnswerQuery(tenant, q.start_timestamp_ms(), q.end_timestamp_ms(), matchers[static_cast<size_t>(i)],
                               give_up, &answer, &result);
          !s.ok()) {
        return FromStatus(s, timeout);
      }
      AppendField1(result, &answer.body);
    }
    HttpResponse response;
    response.content_type = kProtobuf;
    response.headers.emplace_back("Content-Encoding", "snappy");
    snappy::Compress(answer.body.data(), answer.body.size(), &response.body);
    if (queries_ != nullptr) {
      queries_->Increment(read.queries_size());
      series_->Increment(static_cast<double>(answer.series));
      samples_->Increment(static_cast<double>(answer.samples));
    }
    return response;
  }

  // Appends the series of one query to *result, counting them in *answer
  // against the limits of the whole request.
  absl::Status AnswerQuery(storage::TenantId tenant, int64_t start_ms, int64_t end_ms, const std::vector<model::Matcher>& matchers,
                           std::chrono::steady_clock::time_point give_up, Answer* answer,
                           std::string* result) {
    const promql::EngineLimits& limits = query_->engine().options().limits;
    if (start_ms > end_ms) return absl::OkStatus();
    auto ids = store_->Select(tenant, matchers);
    if (!ids.ok()) return ids.status();
    if (answer->series + ids->size() > limits.max_series) {
      return absl::ResourceExhaustedError(
          fmt::format("remote read selects more than {} series, the limit of one request (--query-max-series); "
                      "narrow the selectors with more labels",
                      limits.max_series));
    }
    // Sorted by label set, as Prometheus' storage gives series.
    std::vector<std::pair<model::Labels, storage::SeriesId>> series;
    series.reserve(ids->size());
    for (storage::SeriesId id : *ids) {
      if (auto info = store_->GetSeries(id)) series.emplace_back(std::move(info->labels), id);  // else deleted meanwhile
    }
    std::sort(series.begin(), series.end());

    std::vector<storage::SeriesId> batch;
    std::vector<std::vector<model::Sample>> samples;  // reused: their memory stays
    prompb::TimeSeries ts;                            // reused too
    std::string bytes;
    for (size_t from = 0; from < series.size(); from += options_.read_batch_series) {
      if (std::chrono::steady_clock::now() > give_up) {
        return absl::DeadlineExceededError("remote read ran longer than the --query-timeout");
      }
      const size_t to = std::min(series.size(), from + options_.read_batch_series);
      batch.clear();
      for (size_t i = from; i < to; ++i) batch.push_back(series[i].second);
      if (auto s = store_->ReadMany(batch, start_ms, end_ms, &samples); !s.ok()) return s;
      for (size_t i = from; i < to; ++i) {
        const std::vector<model::Sample>& points = samples[i - from];
        if (points.empty()) continue;  // no sample in the range: not answered, as in Prometheus
        answer->samples += points.size();
        if (answer->samples > limits.max_samples) {
          return absl::ResourceExhaustedError(fmt::format(
              "remote read would return more than {} samples, the limit of one request (--query-max-samples); "
              "select fewer series or a shorter range",
              limits.max_samples));
        }
        ts.Clear();
        for (const model::Label& l : series[i].first) {
          prompb::Label* out = ts.add_labels();
          out->set_name(l.name);
          out->set_value(l.value);
        }
        for (const model::Sample& x : points) {
          prompb::Sample* out = ts.add_samples();
          out->set_timestamp(x.timestamp_ms);
          out->set_value(x.value);
        }
        bytes.clear();
        ts.AppendToString(&bytes);
        AppendField1(bytes, result);
        ++answer->series;
      }
    }
    return absl::OkStatus();
  }

  // How an error is answered: a limit 400 (as Prometheus answers its
  // remote-read sample limit), the timeout 503, the store 500.
  HttpResponse FromStatus(const absl::Status& s, std::chrono::milliseconds timeout) {
    switch (s.code()) {
      case absl::StatusCode::kResourceExhausted:
      case absl::StatusCode::kInvalidArgument:
        return HttpResponse::Text(400, std::string(s.message()));
      case absl::StatusCode::kDeadlineExceeded:
        return Busy(fmt::format("{} ({} ms); select fewer series or a shorter range", std::string(s.message()),
                                timeout.count()));
      case absl::StatusCode::kUnavailable:
        return Busy(std::string(s.message()));
      default:
        LogLimited(store_log_, LogLevel::kWarn, "remote read: {}", s.ToString());
        return HttpResponse::Text(500, fmt::format("cannot read the store: {}", s.ToString()));
    }
  }

  QueryService* const query_;
  storage::SeriesStore* const store_;
  RemoteReadOptions options_;
  std::atomic<size_t> in_flight_ = 0;
  RequestsByCode requests_;
  prometheus::Counter* queries_ = nullptr;
  prometheus::Counter* series_ = nullptr;
  prometheus::Counter* samples_ = nullptr;
  LogRateLimiter store_log_{20, std::chrono::minutes(1)};
};

}  // namespace

HttpHandler RemoteReadHandler(QueryService* query, storage::SeriesStore* store, RemoteReadOptions options,
                              prometheus::Registry* registry) {
  auto server = std::make_shared<Server>(query, store, options, registry);
  // The query role; the caller's tenant is all it reads.
  return Authorized(query->authenticator(), kRoleQuery, [server](const HttpRequest& request, const Principal& principal) {
    return server->Serve(request, principal.tenant);
  });
}

}  // namespace sheaf::daemon
