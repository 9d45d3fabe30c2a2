// Fuzz target "batch": what sheafd does with one Push message before it
// reaches the store (daemon/ingest_service.cc, PushReactor::ProcessBatch):
// the bounded inflate of daemon/grpc_codec.h (none, gzip or deflate, picked
// by the input's first byte; the rest cut into up to three slices as gRPC
// may hand them over), the parse into sheaf.v1.decode.MetricBatch, and
// model/validation.h on every definition and series.
#include <zlib.h>

#include <grpcpp/support/byte_buffer.h>

#include <algorithm>
#include <string>
#include <vector>

#include "daemon/grpc_codec.h"
#include "model/labels.h"
#include "model/validation.h"
#include "sheaf/v1/ingest_decode.pb.h"
#include "tests/fuzz/targets.h"

namespace sheaf::fuzz {
namespace {

constexpr size_t kMaxMessageBytes = 1 << 20;  // small, so bombs are found fast
constexpr int64_t kNowMs = 1'700'000'000'000;

model::Labels ToLabels(const google::protobuf::RepeatedPtrField<v1::decode::Label>& in) {
  model::Labels out;
  for (const auto& l : in) out.push_back({l.name(), l.value()});
  return out;
}

model::MetricType ToType(int type) {
  return type >= 1 && type <= 3 ? static_cast<model::MetricType>(type) : model::MetricType::kUnspecified;
}

void Validate(model::Labels labels, model::MetricType type, const std::vector<model::Sample>& samples) {
  const model::ValidationLimits limits;
  if (model::ValidateLabels(labels, type, limits)) return;
  CheckOrDie(std::is_sorted(labels.begin(), labels.end(),
                            [](const model::Label& a, const model::Label& b) { return a.name < b.name; }),
             "ValidateLabels accepted a label set it left unsorted");
  for (const model::Label& l : labels) CheckOrDie(!l.value.empty(), "ValidateLabels kept an empty value");
  (void)model::ValidateSamples(labels, type, samples, kNowMs, limits, /*backfill=*/false);
  (void)model::ValidateSamples(labels, type, samples, kNowMs, limits, /*backfill=*/true);
}

}  // namespace

int FuzzBatch(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const int mode = data[0] % 3;
  std::string_view rest = AsText(data + 1, size - 1);
  std::vector<grpc::Slice> slices;
  for (size_t i = 0; i < 3 && !rest.empty(); ++i) {
    const size_t n = i == 2 ? rest.size() : std::min(rest.size(), rest.size() / 3 + 1);
    slices.emplace_back(rest.data(), n);
    rest.remove_prefix(n);
  }
  std::string bytes;
  grpc::Status status;
  if (mode == 0) {
    const grpc::ByteBuffer buffer(slices.data(), slices.size());
    status = daemon::ReadMessageBytes(buffer, kMaxMessageBytes, "fuzz batch", &bytes);
  } else {
    status = daemon::Inflate(slices, mode == 1 ? 16 + MAX_WBITS : MAX_WBITS, kMaxMessageBytes, "fuzz batch", &bytes);
  }
  if (!status.ok()) {
    CheckOrDie(bytes.empty(), "a failed inflate left output behind");
    return 0;
  }
  CheckOrDie(bytes.size() <= kMaxMessageBytes, "inflate went past its limit");
  v1::decode::MetricBatch batch;
  if (!batch.ParseFromString(bytes)) return 0;
  (void)model::IsValidLabelValue(batch.agent_id(), 256);  // the agent_id check
  for (const auto& def : batch.definitions()) Validate(ToLabels(def.labels()), ToType(def.type()), {});
  for (const auto& s : batch.series()) {
    std::vector<model::Sample> samples;
    for (const auto& p : s.samples()) samples.push_back({p.timestamp_ms(), p.value()});
    Validate(ToLabels(s.labels()), ToType(s.type()), samples);
  }
  for (const auto& ss : batch.samples()) {
    if (ss.timestamps_ms_size() != ss.values_size()) continue;  // refused as malformed before validation
    std::vector<model::Sample> samples;
    for (int i = 0; i < ss.values_size(); ++i) samples.push_back({ss.timestamps_ms(i), ss.values(i)});
    Validate({{"__name__", "fuzz"}}, model::MetricType::kCounter, samples);
  }
  return 0;
}

}  // namespace sheaf::fuzz
