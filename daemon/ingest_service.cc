#include "daemon/ingest_service.h"

#include <grpcpp/support/proto_buffer_reader.h>
#include <grpcpp/support/proto_buffer_writer.h>

#include <chrono>
#include <map>
#include <unordered_map>

#include "common/clock.h"
#include "daemon/convert.h"
#include "daemon/daemon_metrics.h"
#include "daemon/status_convert.h"
#include "common/work_queue.h"
#include "common/log.h"
#include "model/labels.h"
#include "storage/series_store.h"

namespace sheaf::daemon {
namespace {

constexpr size_t kMaxAgentIdBytes = 256;

}  // namespace

class IngestService::PushReactor : public grpc::ServerReadReactor<grpc::ByteBuffer> {
 public:
  PushReactor(IngestService* service, grpc::CallbackServerContext* context, grpc::ByteBuffer* response)
      : service_(service), context_(context), response_(response) {
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the client half-closed (or the call is gone)
      FinishWithAck();
      return;
    }
    bool queued = service_->queue_->TrySubmit([this] { ProcessAndContinue(); });
    service_->metrics_->SetIngestQueueDepth(static_cast<int64_t>(service_->queue_->depth()));
    if (!queued) {
      Fail(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        "sheafd's ingest queue is full or shutting down; retry this stream with backoff"));
    }
  }

  void OnDone() override { delete this; }

 private:
  struct RefEntry {
    storage::SeriesId id = 0;  // 0 when rejected
    model::MetricType type = model::MetricType::kUnspecified;
    model::Labels labels;
    std::optional<model::Rejection> rejection;
  };

  // Runs on a worker thread; exactly one per stream at a time.
  void ProcessAndContinue() {
    grpc::Status status = ProcessBatch();
    if (!status.ok()) {
      Fail(status);
      return;
    }
    StartRead(&request_);
  }

  grpc::Status ProcessBatch() {
    ++messages_;
    v1::MetricBatch batch;
    {
      grpc::ProtoBufferReader reader(&request_);
      if (!batch.ParseFromZeroCopyStream(&reader)) {
        return Invalid(fmt::format("message {} of the stream ({} bytes) is not a valid sheaf.v1.MetricBatch",
                                   messages_, request_.Length()));
      }
    }
    request_.Clear();
    if (batch.agent_id().empty() || batch.agent_id().size() > kMaxAgentIdBytes ||
        !model::IsValidLabelValue(batch.agent_id(), kMaxAgentIdBytes)) {
      return Invalid(fmt::format("batch {}: agent_id must be 1 to {} bytes of UTF-8", messages_, kMaxAgentIdBytes));
    }
    if (batch.sequence() == 0) {
      return Invalid(fmt::format("batch {} from agent \"{}\": sequence must be > 0", messages_, batch.agent_id()));
    }
    if (agent_id_.empty()) {
      agent_id_ = batch.agent_id();
    } else if (agent_id_ != batch.agent_id()) {
      return Invalid(fmt::format("batch {}: agent_id \"{}\" differs from \"{}\" earlier in the stream; "
                                 "use one stream per agent", messages_, batch.agent_id(), agent_id_));
    }

    // Definitions apply even to a duplicate batch: later batches of this
    // stream may refer to them.
    for (const v1::SeriesDefinition& def : batch.definitions()) {
      if (def.ref() == 0) return Invalid(fmt::format("batch {}: series definition with ref 0", messages_));
      if (refs_.size() >= service_->options_.max_refs_per_stream && !refs_.contains(def.ref())) {
        return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                            fmt::format("more than {} series defined in one stream; start a new stream",
                                        service_->options_.max_refs_per_stream));
      }
      RefEntry entry;
      entry.type = FromProto(def.type());
      entry.labels = FromProto(def.labels());
      Resolve(entry);
      refs_[def.ref()] = std::move(entry);
    }

    if (batch.sequence() <= service_->store_->AgentSequence(agent_id_)) {
      ack_.set_batches_duplicate(ack_.batches_duplicate() + 1);
      service_->metrics_->BatchDuplicate();
      return grpc::Status::OK;
    }

    const int64_t now = service_->options_.now_ms ? service_->options_.now_ms() : WallClockMs();
    storage::AppendBatch append;
    append.agent_id = agent_id_;
    append.sequence = batch.sequence();
    append.series.reserve(batch.samples_size() + batch.series_size());
    for (const v1::SeriesSamples& ss : batch.samples()) {
      size_t n = static_cast<size_t>(std::max(ss.timestamps_ms_size(), ss.values_size()));
      auto it = refs_.find(ss.ref());
      if (it == refs_.end()) {
        Count(model::Rejection{model::RejectReason::kUnknownRef,
                        fmt::format("ref {} was never defined in this stream", ss.ref())}, n);
        continue;
      }
      const RefEntry& ref = it->second;
      if (ref.rejection) {
        Count(*ref.rejection, n);
        continue;
      }
      if (ss.timestamps_ms_size() != ss.values_size()) {
        Count(model::Rejection{model::RejectReason::kMalformedSeries,
                        fmt::format("{} has {} timestamps but {} values", model::FormatLabelsShort(ref.labels),
                                    ss.timestamps_ms_size(), ss.values_size())}, n);
        continue;
      }
      storage::SeriesSamples out{ref.id, {}};
      out.samples.reserve(n);
      for (size_t i = 0; i < n; ++i) out.samples.push_back({ss.timestamps_ms(i), ss.values(i)});
      if (auto r = model::ValidateSamples(ref.labels, ref.type, out.samples, now, service_->options_.limits)) {
        Count(*r, n);
        continue;
      }
      append.series.push_back(std::move(out));
    }
    for (const v1::Series& s : batch.series()) {
      RefEntry entry;
      entry.type = FromProto(s.type());
      entry.labels = FromProto(s.labels());
      storage::SeriesSamples out{0, {}};
      out.samples.reserve(s.samples_size());
      for (const v1::Sample& p : s.samples()) out.samples.push_back({p.timestamp_ms(), p.value()});
      // Everything is checked before the series is created, so a rejected
      // series leaves nothing behind in the index.
      auto rejection = model::ValidateLabels(entry.labels, entry.type, service_->options_.limits);
      if (!rejection) {
        rejection = model::ValidateSamples(entry.labels, entry.type, out.samples, now, service_->options_.limits);
      }
      if (!rejection) rejection = CreateSeries(entry);
      if (rejection) {
        Count(*rejection, out.samples.size());
        continue;
      }
      out.id = entry.id;
      append.series.push_back(std::move(out));
    }

    auto result = service_->store_->Append(append);
    if (!result.ok()) {
      LogError("storing batch {} of agent \"{}\" failed: {}", batch.sequence(), agent_id_,
               result.status().ToString());
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          "the store could not write this batch; it was not acknowledged, retry later");
    }
    if (result->duplicate) {  // a concurrent stream of the same agent got there first
      ack_.set_batches_duplicate(ack_.batches_duplicate() + 1);
      service_->metrics_->BatchDuplicate();
      return grpc::Status::OK;
    }
    for (auto [id, n] : result->too_old) {
      auto info = service_->store_->GetSeries(id);
      Count(model::Rejection{model::RejectReason::kOutOfOrder,
                      fmt::format("{} has {} samples older than its newest sample by more than the "
                                  "out-of-order window", info ? model::FormatLabelsShort(info->labels) : "a series", n)},
            n);
    }
    ack_.set_batches_applied(ack_.batches_applied() + 1);
    ack_.set_samples_stored(ack_.samples_stored() + result->samples_added);
    service_->metrics_->BatchApplied(result->samples_added,
                                     static_cast<uint64_t>(batch.samples_size() + batch.series_size()));
    return grpc::Status::OK;
  }

  // Validates the labels and finds or creates the series.
  void Resolve(RefEntry& entry) {
    entry.rejection = model::ValidateLabels(entry.labels, entry.type, service_->options_.limits);
    if (!entry.rejection) entry.rejection = CreateSeries(entry);
  }

  // Sets entry.id from the store, creating the series if it is new.
  std::optional<model::Rejection> CreateSeries(RefEntry& entry) {
    auto id = service_->store_->GetOrCreateSeries(entry.labels, entry.type);
    if (!id.ok()) {
      return model::Rejection{id.status().code() == absl::StatusCode::kResourceExhausted ? model::RejectReason::kSeriesLimit
                                                                                  : model::RejectReason::kUnspecified,
                       fmt::format("{}: {}", model::FormatLabelsShort(entry.labels), std::string(id.status().message()))};
    }
    entry.id = *id;
    return std::nullopt;
  }

  void Count(const model::Rejection& r, size_t samples) {
    auto& count = rejected_[r.reason];
    if (count.series() == 0) {
      count.set_reason(ToProto(r.reason));
      count.set_example(r.detail);
      // One log line per reason per stream: a misbehaving agent can't flood the log.
      LogWarn("rejecting series from agent \"{}\" ({}): {}", agent_id_, model::ReasonName(r.reason), r.detail);
    }
    count.set_series(count.series() + 1);
    count.set_samples(count.samples() + samples);
    service_->metrics_->Rejected(r.reason, 1, samples);
  }

  grpc::Status Invalid(std::string message) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::move(message));
  }

  void Fail(const grpc::Status& status) {
    LogWarn("Push stream from {} (agent \"{}\") ended: {}: {}", context_->peer(), agent_id_,
            static_cast<int>(status.error_code()), status.error_message());
    service_->metrics_->StreamFailed(status.error_code());
    Finish(status);
  }

  void FinishWithAck() {
    ack_.set_durable_sequence(agent_id_.empty() ? 0 : service_->store_->AgentSequence(agent_id_));
    for (auto& [reason, count] : rejected_) *ack_.add_rejected() = count;
    grpc::ByteBuffer buffer;
    grpc::ProtoBufferWriter writer(&buffer, grpc::kProtoBufferWriterMaxBufferLength, ack_.ByteSizeLong());
    ack_.SerializeToZeroCopyStream(&writer);
    response_->Swap(&buffer);
    Finish(grpc::Status::OK);
  }

  IngestService* service_;
  grpc::CallbackServerContext* context_;
  grpc::ByteBuffer* response_;
  grpc::ByteBuffer request_;
  uint64_t messages_ = 0;
  std::string agent_id_;
  std::unordered_map<uint32_t, RefEntry> refs_;  // the stream's series dictionary
  std::map<model::RejectReason, v1::RejectCount> rejected_;
  v1::PushAck ack_;
};

IngestService::IngestService(storage::SeriesStore* store, DaemonMetrics* metrics, IngestOptions options)
    : store_(store),
      metrics_(metrics),
      options_(std::move(options)),
      queue_(std::make_unique<WorkQueue>(options_.workers, options_.queue_capacity)) {}

IngestService::~IngestService() { Stop(); }

grpc::ServerReadReactor<grpc::ByteBuffer>* IngestService::Push(grpc::CallbackServerContext* context,
                                                               grpc::ByteBuffer* response) {
  return new PushReactor(this, context, response);
}

void IngestService::Stop() { queue_->Stop(); }

}  // namespace sheaf::daemon
