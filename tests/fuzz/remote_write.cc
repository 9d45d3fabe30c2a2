// Fuzz target "remote_write": the decoding half of POST /api/v1/write
// (daemon/remote_write.cc): the snappy block's length header, the bounded
// uncompress, the wire walk over the WriteRequest (daemon/remote_decode.h:
// ForEachSeries, ForEachField), each TimeSeries' parse, and validation of
// the converted series as IngestService::Write validates them.
#include <string>
#include <vector>

#include "daemon/remote_decode.h"
#include "model/validation.h"
#include "prometheus/types.pb.h"
#include "tests/fuzz/targets.h"

namespace sheaf::fuzz {
namespace {

constexpr size_t kMaxUncompressedBytes = 1 << 20;  // the handler's limit is 64 MiB; small finds the same bugs faster
constexpr int64_t kNowMs = 1'700'000'000'000;

}  // namespace

int FuzzRemoteWrite(const uint8_t* data, size_t size) {
  std::string message;
  if (!Unsnappy(data, size, kMaxUncompressedBytes, &message)) return 0;

  prompb::TimeSeries ts;
  const model::ValidationLimits limits;
  std::string error;
  const bool ok = daemon::remote::ForEachSeries(
      message,
      [&](std::string_view bytes) {
        size_t labels = 0;
        std::string why;
        const bool wire_ok = daemon::remote::ForEachField(
            bytes,
            [&](int number, auto, std::string_view) {
              labels += number == daemon::remote::kTimeSeriesLabels;
              return true;
            },
            &why);
        const bool parsed = ts.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()));
        if (!wire_ok || !parsed) return false;
        // The walk counts every field 1, also one of another wire type that
        // the parse keeps as an unknown field: it may count more labels
        // (so the bound is on the safe side), never fewer.
        CheckOrDie(labels >= static_cast<size_t>(ts.labels_size()), "the wire walk counted fewer labels than the parse");
        model::Labels converted;
        for (const prompb::Label& l : ts.labels()) converted.push_back({l.name(), l.value()});
        std::vector<model::Sample> samples;
        for (const prompb::Sample& s : ts.samples()) samples.push_back({s.timestamp(), s.value()});
        if (!model::ValidateLabels(converted, model::MetricType::kUnspecified, limits)) {
          (void)model::ValidateSamples(converted, model::MetricType::kUnspecified, samples, kNowMs, limits);
        }
        return true;
      },
      &error);
  CheckOrDie(ok || !error.empty(), "ForEachSeries failed without saying why");
  return 0;
}

}  // namespace sheaf::fuzz
