#include "daemon/remote_write.h"

#include <fmt/format.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>
#include <snappy.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "common/log.h"
#include "daemon/http_auth.h"
#include "daemon/http_metrics.h"
#include "daemon/ingest_service.h"
#include "daemon/remote_decode.h"
#include "prometheus/types.pb.h"

namespace sheaf::daemon {
namespace {

using google::protobuf::internal::WireFormatLite;
using remote::ForEachField;
using remote::ForEachSeries;
using remote::kTimeSeriesLabels;
using remote::kTimeSeriesSamples;

// The media type without parameters, lower-case.
std::string MediaType(std::string_view content_type) {
  std::string out(content_type.substr(0, content_type.find(';')));
  while (!out.empty() && out.back() == ' ') out.pop_back();
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

class Receiver {
 public:
  Receiver(IngestService* ingest, RemoteWriteOptions options, prometheus::Registry* registry)
      : ingest_(ingest),
        options_(options),
        requests_(registry, "sheaf_remote_write_received_requests_total",
                  "POST /api/v1/write requests, by HTTP status code of the answer.") {
    if (registry == nullptr) return;
    samples_received_ = &prometheus::BuildCounter()
                              .Name("sheaf_remote_write_samples_received_total")
                              .Help("Samples received by remote write, valid or not (stored ones are in "
                                    "sheaf_ingest_samples_total).")
                              .Register(*registry)
                              .Add({});
  }

  HttpResponse Serve(const HttpRequest& request, storage::TenantId tenant, std::string_view tenant_name) {
    HttpResponse response = Decode(request, tenant, tenant_name);
    requests_.Count(response.status);
    return response;
  }

 private:
  HttpResponse Decode(const HttpRequest& request, storage::TenantId tenant, std::string_view tenant_name) {
    // Over --memory-limit: refused before decoding allocates anything.
    // 503 with Retry-After, which Prometheus' remote write retries (with
    // its backoff) and never drops.
    if (absl::Status memory = ingest_->CheckMemory(); !memory.ok()) {
      HttpResponse refused = HttpResponse::Text(503, std::string(memory.message()));
      refused.headers.emplace_back("Retry-After", "1");
      return refused;
    }
    const std::string* encoding = request.Header("Content-Encoding");
    if (encoding == nullptr || MediaType(*encoding) != "snappy") {
      return HttpResponse::Text(400,
                                "Content-Encoding must be snappy: a remote-write body is a snappy-compressed "
                                "protobuf WriteRequest (Prometheus remote write 1.0)");
    }
    const std::string* type = request.Header("Content-Type");
    if (type != nullptr && MediaType(*type) != "application/x-protobuf") {
      return HttpResponse::Text(415, fmt::format("Content-Type {} is not supported: send application/x-protobuf "
                                                 "(Prometheus remote write 1.0)",
                                                 *type));
    }
    if (type != nullptr && type->find("proto=") != std::string::npos &&
        type->find("proto=prometheus.WriteRequest") == std::string::npos) {
      return HttpResponse::Text(415, fmt::format("Content-Type {}: only remote write 1.0's prometheus.WriteRequest "
                                                 "is supported; configure the sender for remote write 1.0",
                                                 *type));
    }
    if (request.body.size() > options_.max_compressed_bytes) {
      return HttpResponse::Text(413, fmt::format("body of {} bytes is over the limit of {} bytes; send smaller "
                                                 "requests (Prometheus: lower queue_config.max_samples_per_send)",
                                                 request.body.size(), options_.max_compressed_bytes));
    }
    // The decompressed size, from the snappy header: checked before
    // anything is allocated, so a small body claiming gigabytes costs nothing.
    size_t length = 0;
    if (!snappy::GetUncompressedLength(request.body.data(), request.body.size(), &length)) {
      return HttpResponse::Text(400, "body is not snappy-compressed (block format, not framed): cannot read its "
                                     "uncompressed length");
    }
    if (length > options_.max_uncompressed_bytes) {
      return HttpResponse::Text(413, fmt::format("body would decompress to {} bytes, over the limit of {} bytes; "
                                                 "send smaller requests (Prometheus: lower "
                                                 "queue_config.max_samples_per_send)",
                                                 length, options_.max_uncompressed_bytes));
    }
    // Bounded memory: a few requests decoded at once, the others retried.
    if (in_flight_.fetch_add(1) >= options_.max_concurrent) {
      in_flight_.fetch_sub(1);
      HttpResponse busy = HttpResponse::Text(
          503, fmt::format("{} remote-write requests are being decoded already; retry", options_.max_concurrent));
      busy.headers.emplace_back("Retry-After", "1");
      return busy;
    }
    HttpResponse response = Store(request.body, length, tenant, tenant_name);
    in_flight_.fetch_sub(1);
    return response;
  }

  HttpResponse Store(const std::string& body, size_t length, storage::TenantId tenant, std::string_view tenant_name) {
    std::string message(length, '\0');
    if (!snappy::RawUncompress(body.data(), body.size(), message.data())) {
      return HttpResponse::Text(400, "body is not valid snappy (block format, not framed): it does not decompress");
    }
    // First pass: the whole message must decode before anything is stored,
    // as a Push batch does (an undecodable one stores nothing). Labels and
    // samples are counted on the wire first: a parsed message costs ~20
    // times its wire size when its parts are tiny, so only bounded series
    // are parsed.
    prompb::TimeSeries ts;  // reused: its buffers stay allocated
    size_t index = 0;
    uint64_t request_samples = 0;
    std::string error;
    const auto check = [&](std::string_view bytes) {
      size_t labels = 0, samples = 0;
      std::string why;
      const bool wire_ok = ForEachField(
          bytes,
          [&](int number, WireFormatLite::WireType, std::string_view) {
            labels += number == kTimeSeriesLabels;
            samples += number == kTimeSeriesSamples;
            return true;
          },
          &why);
      if (!wire_ok || !ts.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
        error = fmt::format("not a protobuf WriteRequest: timeseries #{} does not decode as a TimeSeries{}{}", index,
                            why.empty() ? "" : ": ", why);
        return false;
      }
      if (labels > options_.max_labels_per_series || samples > options_.max_samples_per_series) {
        error = fmt::format("timeseries #{} has {} labels and {} samples; at most {} and {} are decoded "
                            "(send fewer samples per series and request)",
                            index, labels, samples, options_.max_labels_per_series, options_.max_samples_per_series);
        return false;
      }
      ++index;
      request_samples += samples;
      return true;
    };
    if (!ForEachSeries(message, check, &error)) return HttpResponse::Text(400, error);
    // The tenant's rate (limits.h), for the request as a whole: refused
    // whole (429, Retry-After), nothing of it is stored.
    if (absl::Status s = ingest_->AdmitWrite(tenant_name, request_samples); !s.ok()) {
      HttpResponse refused = HttpResponse::Text(429, std::string(s.message()));
      refused.headers.emplace_back("Retry-After", std::to_string((RetryAfterMs(s) + 999) / 1000));
      return refused;
    }

    // Second pass: convert and write, a bounded number of samples at a time.
    std::vector<std::pair<model::Labels, std::vector<model::Sample>>> batch;
    size_t batch_samples = 0, batch_labels = 0, received = 0;
    IngestService::WriteResult total;
    absl::Status failed;
    const auto flush = [&] {
      if (batch.empty()) return true;
      auto written = ingest_->Write("", 0, model::MetricType::kUnspecified, std::move(batch), tenant, tenant_name);
      batch.clear();
      batch_samples = batch_labels = 0;
      if (!written.ok()) {
        failed = written.status();
        return false;
      }
      total.samples_stored += written->samples_stored;
      if (total.series_rejected == 0) total.first_rejection = written->first_rejection;
      total.series_rejected += written->series_rejected;
      return true;
    };
    const auto convert = [&](std::string_view bytes) {
      ts.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()));  // decoded in the first pass
      model::Labels labels;
      labels.reserve(static_cast<size_t>(ts.labels_size()));
      for (const prompb::Label& l : ts.labels()) labels.push_back({l.name(), l.value()});
      std::vector<model::Sample> samples;
      samples.reserve(static_cast<size_t>(ts.samples_size()));
      for (const prompb::Sample& s : ts.samples()) samples.push_back({s.timestamp(), s.value()});
      received += samples.size();
      batch_samples += samples.size();
      batch_labels += labels.size();
      batch.emplace_back(std::move(labels), std::move(samples));
      return (batch_samples < options_.max_samples_per_write && batch_labels < options_.max_labels_per_write) ||
             flush();
    };
    const bool ok = ForEachSeries(message, convert, &error) && flush();
    if (samples_received_ != nullptr) samples_received_->Increment(static_cast<double>(received));
    if (!ok) {
      // What was written before stays (a retry re-sends it; the store keeps
      // one sample per series and timestamp).
      LogLimited(store_log_, LogLevel::kWarn, "remote write: cannot write to the store: {}", failed.ToString());
      HttpResponse unavailable =
          HttpResponse::Text(503, fmt::format("cannot write to the store now: {}; retry", failed.ToString()));
      unavailable.headers.emplace_back("Retry-After", "5");
      return unavailable;
    }
    HttpResponse response;
    response.status = 204;
    if (total.series_rejected > 0) {
      LogLimited(reject_log_, LogLevel::kWarn, "remote write: {} series refused, the first: {}",
                 total.series_rejected, total.first_rejection);
      response.headers.emplace_back("X-Sheaf-Rejected-Series", std::to_string(total.series_rejected));
    }
    return response;
  }

  IngestService* const ingest_;
  const RemoteWriteOptions options_;
  std::atomic<size_t> in_flight_ = 0;
  RequestsByCode requests_;
  prometheus::Counter* samples_received_ = nullptr;
  LogRateLimiter reject_log_{20, std::chrono::minutes(1)};
  LogRateLimiter store_log_{20, std::chrono::minutes(1)};
};

}  // namespace

HttpHandler RemoteWriteHandler(IngestService* ingest, RemoteWriteOptions options, prometheus::Registry* registry) {
  auto receiver = std::make_shared<Receiver>(ingest, options, registry);
  // The ingest role; the series go to the caller's tenant.
  return Authorized(ingest->authenticator(), kRoleIngest,
                    [receiver](const HttpRequest& request, const Principal& principal) {
                      return receiver->Serve(request, principal.tenant, principal.tenant_name);
                    });
}

}  // namespace sheaf::daemon
