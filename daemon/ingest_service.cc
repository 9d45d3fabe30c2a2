#include "daemon/ingest_service.h"

#include <map>
#include <unordered_map>

#include "common/clock.h"
#include "common/log.h"
#include "common/work_queue.h"
#include "daemon/agent_registry.h"
#include "daemon/convert.h"
#include "daemon/grpc_auth.h"
#include "daemon/grpc_codec.h"
#include "daemon/ingest_metrics.h"
#include "daemon/memory_limit.h"
#include "daemon/remote_write_sender.h"
#include "daemon/status_convert.h"
#include "daemon/tail_hub.h"
#include "model/labels.h"
#include "sheaf/v1/ingest_decode.pb.h"
#include "storage/series_store.h"

namespace sheaf::daemon {
namespace {

constexpr size_t kMaxAgentIdBytes = 256;
// Sequences stay below 2^63, so a forged huge sequence can never leave an
// agent without room to move on (it re-sequences above the durable one).
constexpr uint64_t kMaxSequence = uint64_t{1} << 63;
// What a dictionary entry costs besides its label bytes (map node, vector
// headers, strings): an estimate on the safe side.
constexpr size_t kRefEntryOverhead = 160;

model::Labels FromWire(const google::protobuf::RepeatedPtrField<v1::decode::Label>& in) {
  model::Labels out;
  out.reserve(in.size());
  for (const v1::decode::Label& l : in) out.push_back({l.name(), l.value()});
  return out;
}

}  // namespace

class IngestService::PushReactor : public grpc::ServerReadReactor<grpc::ByteBuffer> {
 public:
  PushReactor(IngestService* service, grpc::CallbackServerContext* context, grpc::ByteBuffer* response)
      : service_(service), context_(context), response_(response) {
    auto principal = AuthorizeCall(service->options_.auth, *context, "/sheaf.v1.IngestService/Push");
    if (!principal.ok()) {
      Fail(ToGrpcStatus(principal.status()));
      return;
    }
    principal_ = *std::move(principal);
    StartRead(&request_);
  }

  ~PushReactor() override { service_->ReleaseDictionary(dictionary_bytes_); }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the client half-closed (or the call is gone)
      FinishWithAck();
      return;
    }
    bool queued = service_->queue_->TrySubmit([this] { ProcessAndContinue(); });
    service_->metrics_->SetQueueDepth(static_cast<int64_t>(service_->queue_->depth()));
    if (!queued) {
      Fail(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        "sheafd's ingest queue is full or shutting down; retry this stream with backoff"));
    }
  }

  void OnDone() override { delete this; }

 private:
  // A dictionary entry: the series, or why it was rejected. A rejected
  // definition keeps no labels.
  struct RefEntry {
    storage::SeriesId id = 0;  // 0 when rejected
    model::MetricType type = model::MetricType::kUnspecified;
    model::Labels labels;  // empty when rejected
    model::RejectReason rejection = model::RejectReason::kUnspecified;
  };

  // Runs on a worker thread; exactly one per stream at a time.
  void ProcessAndContinue() {
    // Over --memory-limit the batch is refused undecoded, with the stream
    // (the agent keeps it in its spool and retries after the hint). Checked
    // when a worker takes it, not when it arrives: batches that waited in
    // the queue meanwhile are refused too.
    grpc::Status status = grpc::Status::OK;
    if (absl::Status memory = service_->memory_limit_->Check(); !memory.ok()) {
      request_.Clear();
      status = grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, std::string(memory.message()));
    } else {
      status = ProcessBatch();
    }
    if (!status.ok()) {
      Fail(status);
      return;
    }
    StartRead(&request_);
  }

  grpc::Status ProcessBatch() {
    ++messages_;
    // The tenant's limits as they are now (a reload applies from the next
    // batch on).
    const TenantLimits limits = service_->LimitsFor(principal_.tenant_name);
    tenant_ = service_->TenantOf(principal_.tenant, principal_.tenant_name, limits);
    v1::decode::MetricBatch batch;
    {
      grpc::Status s = DecodeMessage(request_, std::min(service_->options_.max_message_bytes, limits.message_bytes),
                                     fmt::format("message {} of the stream", messages_), &batch);
      request_.Clear();
      if (!s.ok()) return s;
    }
    if (batch.agent_id().empty() || !model::IsValidLabelValue(batch.agent_id(), kMaxAgentIdBytes)) {
      return Invalid(fmt::format("batch {}: agent_id must be 1 to {} bytes of UTF-8", messages_, kMaxAgentIdBytes));
    }
    if (batch.sequence() == 0 || batch.sequence() >= kMaxSequence) {
      return Invalid(
          fmt::format("batch {} from agent \"{}\": sequence must be > 0 and < 2^63", messages_, batch.agent_id()));
    }
    if (agent_id_.empty()) {
      // A token limited to some agent ids (its agents: pattern) cannot
      // push as another agent, so it cannot forge that agent's sequence.
      if (auto s = CheckAgent(principal_, batch.agent_id()); !s.ok()) {
        if (service_->options_.auth != nullptr) service_->options_.auth->CountFailure(kReasonAgent);
        return ToGrpcStatus(s);
      }
      if (Limiter* limiter = service_->options_.limiter; limiter != nullptr) {
        auto slot = limiter->AcquireStream(principal_.tenant_name, batch.agent_id());
        if (!slot.ok()) return Limited(slot.status());
        stream_slot_ = *std::move(slot);
      }
      agent_id_ = batch.agent_id();
    } else if (agent_id_ != batch.agent_id()) {
      return Invalid(
          fmt::format("batch {}: agent_id \"{}\" differs from \"{}\" earlier in the stream; "
                      "use one stream per agent",
                      messages_, model::Abbreviate(batch.agent_id()), agent_id_));
    }

    if (grpc::Status s = AdmitBatch(batch, limits); !s.ok()) return s;

    // Definitions apply even to a duplicate batch: later batches of this
    // stream may refer to them.
    for (v1::decode::SeriesDefinition& def : *batch.mutable_definitions()) {
      if (def.ref() == 0) return Invalid(fmt::format("batch {}: series definition with ref 0", messages_));
      if (refs_.size() >= service_->options_.max_refs_per_stream && !refs_.contains(def.ref())) {
        return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                            fmt::format("more than {} series defined in one stream; start a new stream",
                                        service_->options_.max_refs_per_stream));
      }
      RefEntry entry;
      entry.type = FromProto(static_cast<v1::MetricType>(def.type()));
      entry.labels = FromWire(def.labels());
      def.clear_labels();
      if (auto rejection = Resolve(entry)) {
        if (rejection->reason == model::RejectReason::kStoreError) return StoreUnavailable(rejection->detail);
        NoteExample(*rejection);  // counted when samples refer to it
        entry.rejection = rejection->reason;
        entry.labels = {};  // a rejected definition keeps no labels
      }
      if (auto s = Account(entry); !s.ok()) return s;
      auto [it, inserted] = refs_.try_emplace(def.ref());
      if (!inserted) Unaccount(it->second);
      it->second = std::move(entry);
    }

    if (batch.sequence_floor() > batch.sequence()) {
      return Invalid(fmt::format("batch {} from agent \"{}\": sequence_floor {} is above the batch's sequence {}",
                                 messages_, agent_id_, batch.sequence_floor(), batch.sequence()));
    }
    if (service_->store_->AgentSequenceApplied(principal_.tenant, agent_id_, batch.sequence(),
                                               batch.sequence_floor())) {
      return Duplicate(batch, service_->store_->AgentSequence(principal_.tenant, agent_id_));
    }

    const int64_t now = service_->options_.now_ms ? service_->options_.now_ms() : WallClockMs();
    // Backfill is chosen per batch by the client: validated like any batch
    // except the past bound, which reaches back as far as the store keeps
    // anything (limits.backfill_accept_past), and the store accepts the
    // samples behind the out-of-order window and redoes their roll-ups.
    // Only tokens with the admin role may set it: history written into the
    // past is an operator's act (sheafctl import), not an agent's.
    const bool backfill = batch.backfill();
    if (backfill) {
      if (auto s = RequireRole(principal_, kRoleAdmin); !s.ok()) {
        if (service_->options_.auth != nullptr) service_->options_.auth->CountFailure(kReasonRole);
        return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                            fmt::format("batch {}: a backfill batch needs the admin role: {}", messages_,
                                        std::string(s.message())));
      }
    }
    storage::AppendBatch append;
    append.tenant = principal_.tenant;
    append.agent_id = agent_id_;
    append.sequence = batch.sequence();
    append.sequence_floor = batch.sequence_floor();
    append.backfill = backfill;
    append.series.reserve(batch.samples_size() + batch.series_size());
    for (const v1::decode::SeriesSamples& ss : batch.samples()) {
      const size_t n = static_cast<size_t>(std::max(ss.timestamps_ms_size(), ss.values_size()));
      auto it = refs_.find(ss.ref());
      if (it == refs_.end()) {
        Count({model::RejectReason::kUnknownRef, fmt::format("ref {} was never defined in this stream", ss.ref())}, n);
        continue;
      }
      const RefEntry& ref = it->second;
      if (ref.id == 0) {
        Count({ref.rejection, ""}, n);
        continue;
      }
      if (ss.timestamps_ms_size() != ss.values_size()) {
        Count({model::RejectReason::kMalformedSeries,
               fmt::format("{} has {} timestamps but {} values", model::FormatLabelsShort(ref.labels),
                           ss.timestamps_ms_size(), ss.values_size())},
              n);
        continue;
      }
      storage::SeriesSamples out{ref.id, {}};
      out.samples.reserve(n);
      for (size_t i = 0; i < n; ++i) out.samples.push_back({ss.timestamps_ms(i), ss.values(i)});
      if (auto r = model::ValidateSamples(ref.labels, ref.type, out.samples, now, tenant_.validation, backfill)) {
        Count(*r, n);
        continue;
      }
      append.series.push_back(std::move(out));
      if (host_.empty() && service_->options_.agents != nullptr) host_ = AgentRegistry::HostLabel(ref.labels);
    }
    for (const v1::decode::Series& s : batch.series()) {
      RefEntry entry;
      entry.type = FromProto(static_cast<v1::MetricType>(s.type()));
      entry.labels = FromWire(s.labels());
      storage::SeriesSamples out{0, {}};
      out.samples.reserve(s.samples_size());
      for (const v1::decode::Sample& p : s.samples()) out.samples.push_back({p.timestamp_ms(), p.value()});
      if (auto rejection =
              service_->AdmitSeries(tenant_, entry.labels, entry.type, out.samples, now, backfill, &out.id)) {
        if (rejection->reason == model::RejectReason::kStoreError) return StoreUnavailable(rejection->detail);
        Count(*rejection, out.samples.size());
        continue;
      }
      append.series.push_back(std::move(out));
      if (host_.empty() && service_->options_.agents != nullptr) host_ = AgentRegistry::HostLabel(entry.labels);
    }

    auto result = service_->Append(append, [this](const model::Rejection& r, size_t n) { Count(r, n); });
    if (!result.ok()) return StoreUnavailable(std::string(result.status().message()));
    if (result->duplicate) return Duplicate(batch, result->durable_sequence);  // a concurrent stream won
    ++applied_;
    ack_.set_batches_applied(ack_.batches_applied() + 1);
    ack_.set_samples_stored(ack_.samples_stored() + result->samples_added);
    service_->metrics_->BatchApplied(result->samples_added,
                                     static_cast<uint64_t>(batch.samples_size() + batch.series_size()));
    if (backfill) service_->metrics_->BackfillApplied(result->samples_added);
    if (AgentRegistry* agents = service_->options_.agents; agents != nullptr) {
      int64_t newest = 0;
      for (const auto& series : append.series) {
        for (const auto& sample : series.samples) newest = std::max(newest, sample.timestamp_ms);
      }
      agents->Applied(agent_id_, context_->peer(), host_, batch.sequence(), result->samples_added, newest,
                      principal_.tenant);
    }
    return grpc::Status::OK;
  }

  // A batch the store has applied before: acknowledged again, not stored
  // again. A retry after a lost ack comes first in its stream; for an agent
  // that sends in order (no sequence_floor), one after a batch this stream
  // applied means another writer moved the agent's sequence meanwhile (two
  // agents with one identity). An agent that sends its backlog beside fresh
  // batches interleaves them, so there a duplicate says nothing; it finds
  // an identity clash itself, from the durable sequence in the ack.
  grpc::Status Duplicate(const v1::decode::MetricBatch& batch, uint64_t durable) {
    const uint64_t sequence = batch.sequence();
    const bool unexpected = applied_ > 0 && batch.sequence_floor() == 0;
    ack_.set_batches_duplicate(ack_.batches_duplicate() + 1);
    service_->metrics_->BatchDuplicate(unexpected);
    if (!logged_duplicate_ || unexpected) {
      logged_duplicate_ = true;
      LogLimited(service_->duplicate_log_, unexpected ? LogLevel::kError : LogLevel::kInfo,
                 "agent \"{}\" ({}) sent batch {}, which is already applied (highest applied: {}): acknowledged, "
                 "not stored again. {}",
                 agent_id_, context_->peer(), sequence, durable,
                 unexpected ? "This stream had just stored a newer batch: another agent is using the same identity "
                              "(give each agent its own --state-dir / --agent-id)."
                            : "Normal when a stream is retried after a lost acknowledgement; if this agent never "
                              "sent it, another agent uses the same identity.");
    }
    return grpc::Status::OK;
  }

  grpc::Status StoreUnavailable(const std::string& why) {
    LogLimited(service_->reject_log_, LogLevel::kError, "storing a batch of agent \"{}\" failed: {}", agent_id_, why);
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "sheafd could not store this batch, so it is not acknowledged; retry later: " + why);
  }

  // Validates the labels and finds or creates the series.
  std::optional<model::Rejection> Resolve(RefEntry& entry) {
    if (auto r = model::ValidateLabels(entry.labels, entry.type, tenant_.validation)) return r;
    return CreateSeries(entry);
  }

  // Sets entry.id from the store, creating the series if it is new. A full
  // series table rejects the series; a store that cannot write (disk full)
  // is kStoreError, which fails the stream so nothing is acknowledged.
  std::optional<model::Rejection> CreateSeries(RefEntry& entry) {
    return service_->CreateSeries(tenant_, entry.labels, entry.type, &entry.id);
  }

  // The tenant's and the agent's rates (limits.h), before anything of the
  // batch is created or stored: a batch over one is refused whole (the
  // stream ends with RESOURCE_EXHAUSTED), so its sequence is not applied,
  // nothing of it counts as stored, and the agent sends it again from its
  // spool after the hint. A duplicate passes free: it stores nothing.
  grpc::Status AdmitBatch(const v1::decode::MetricBatch& batch, const TenantLimits& limits) {
    Limiter* limiter = service_->options_.limiter;
    if (limiter == nullptr) return grpc::Status::OK;
    if (service_->store_->AgentSequenceApplied(tenant_.id, agent_id_, batch.sequence(), batch.sequence_floor())) {
      return grpc::Status::OK;
    }
    uint64_t samples = 0;
    for (const v1::decode::SeriesSamples& ss : batch.samples()) {
      samples += static_cast<uint64_t>(std::max(ss.timestamps_ms_size(), ss.values_size()));
    }
    for (const v1::decode::Series& s : batch.series()) samples += static_cast<uint64_t>(s.samples_size());
    uint64_t fresh = 0;
    if (limits.new_series_per_minute > 0) {
      std::vector<model::Labels> labels;
      labels.reserve(batch.definitions_size() + batch.series_size());
      for (const v1::decode::SeriesDefinition& def : batch.definitions()) labels.push_back(FromWire(def.labels()));
      for (const v1::decode::Series& s : batch.series()) labels.push_back(FromWire(s.labels()));
      fresh = service_->CountNewSeries(tenant_, labels);
    }
    if (absl::Status s = limiter->AdmitBatch(tenant_.name, agent_id_, samples, fresh); !s.ok()) return Limited(s);
    return grpc::Status::OK;
  }

  // A limit's refusal: RESOURCE_EXHAUSTED with its message, and its hint
  // for the trailers (Fail).
  grpc::Status Limited(const absl::Status& refusal) {
    retry_after_ms_ = RetryAfterMs(refusal);
    return ToGrpcStatus(refusal);
  }

  static size_t Cost(const RefEntry& e) {
    size_t bytes = kRefEntryOverhead;
    for (const model::Label& l : e.labels) bytes += l.name.size() + l.value.size() + 2 * sizeof(std::string);
    return bytes;
  }

  grpc::Status Account(const RefEntry& e) {
    const size_t cost = Cost(e);
    if (dictionary_bytes_ + cost > service_->options_.max_dictionary_bytes_per_stream) {
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          fmt::format("this stream's series definitions hold more than {} bytes; start a new stream",
                                      service_->options_.max_dictionary_bytes_per_stream));
    }
    if (!service_->ReserveDictionary(cost)) {
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          fmt::format("sheafd's open streams hold {} bytes of series definitions, its limit; "
                                      "retry with backoff",
                                      service_->options_.max_dictionary_bytes_total));
    }
    dictionary_bytes_ += cost;
    return grpc::Status::OK;
  }

  void Unaccount(const RefEntry& e) {
    const size_t cost = Cost(e);
    dictionary_bytes_ -= cost;
    service_->ReleaseDictionary(cost);
  }

  // The first example of each reason goes into the ack and the log.
  v1::RejectCount& NoteExample(const model::Rejection& r) {
    auto& count = rejected_[r.reason];
    if (count.example().empty() && !r.detail.empty()) {
      count.set_reason(ToProto(r.reason));
      count.set_example(r.detail);
      // One line per reason per stream, and few per minute in all: a
      // misbehaving agent can't flood the log.
      LogLimited(service_->reject_log_, LogLevel::kWarn, "rejecting series from agent \"{}\" ({}): {}", agent_id_,
                 model::ReasonName(r.reason), r.detail);
    }
    return count;
  }

  void Count(const model::Rejection& r, size_t samples) {
    auto& count = NoteExample(r);
    count.set_reason(ToProto(r.reason));
    count.set_series(count.series() + 1);
    count.set_samples(count.samples() + samples);
    service_->metrics_->Rejected(r.reason, 1, samples);
    if (AgentRegistry* agents = service_->options_.agents; agents != nullptr) {
      agents->Rejected(agent_id_, model::ReasonName(r.reason), samples, principal_.tenant);
    }
  }

  grpc::Status Invalid(std::string message) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::move(message));
  }

  void Fail(const grpc::Status& status) {
    LogLimited(service_->reject_log_, LogLevel::kWarn, "Push stream from {} (agent \"{}\") ended: {}: {}",
               context_->peer(), agent_id_, GrpcCodeName(status.error_code()), status.error_message());
    service_->metrics_->StreamFailed(status.error_code());
    // A hint for the client's backoff (sheaf-agent waits at least this
    // long): the daemon is busy (a queue or limit) or cannot store now. A
    // limit's own hint goes in gRPC's standard trailer too.
    if (retry_after_ms_ > 0) {
      context_->AddTrailingMetadata("grpc-retry-pushback-ms", std::to_string(retry_after_ms_));
      context_->AddTrailingMetadata("sheaf-retry-after-ms", std::to_string(retry_after_ms_));
    } else if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      context_->AddTrailingMetadata("sheaf-retry-after-ms", "1000");
    } else if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
      context_->AddTrailingMetadata("sheaf-retry-after-ms", "2000");
    }
    stream_slot_.Release();  // before the client hears the end: its next stream may take the slot
    Finish(status);
  }

  void FinishWithAck() {
    ack_.set_durable_sequence(agent_id_.empty() ? 0 : service_->store_->AgentSequence(principal_.tenant, agent_id_));
    for (auto& [reason, count] : rejected_) {
      if (count.series() > 0) *ack_.add_rejected() = count;
    }
    *response_ = EncodeMessage(ack_);
    stream_slot_.Release();
    Finish(grpc::Status::OK);
  }

  IngestService* service_;
  grpc::CallbackServerContext* context_;
  grpc::ByteBuffer* response_;
  grpc::ByteBuffer request_;
  uint64_t messages_ = 0;
  uint64_t applied_ = 0;
  bool logged_duplicate_ = false;
  Principal principal_;  // the caller: its tenant owns the series and the agent's sequence
  IngestService::Tenant tenant_;  // the principal's tenant and limits, set per batch
  Limiter::Slot stream_slot_;     // this stream's place under push_streams / agent_streams
  int64_t retry_after_ms_ = 0;    // a limit's retry hint, for the trailers
  std::string agent_id_;
  std::string host_;  // the "host" label of its series, for the console's agent list
  std::unordered_map<uint32_t, RefEntry> refs_;  // the stream's series dictionary
  size_t dictionary_bytes_ = 0;                  // what refs_ holds, as reserved with the service
  std::map<model::RejectReason, v1::RejectCount> rejected_;
  v1::PushAck ack_;
};

IngestService::IngestService(storage::SeriesStore* store, IngestMetrics* metrics, IngestOptions options)
    : store_(store),
      metrics_(metrics),
      options_(std::move(options)),
      queue_(std::make_unique<WorkQueue>(options_.workers, options_.queue_capacity)),
      memory_limit_(std::make_unique<MemoryLimit>(options_.memory_limit_bytes)) {}

IngestService::~IngestService() { Stop(); }

grpc::ServerReadReactor<grpc::ByteBuffer>* IngestService::Push(grpc::CallbackServerContext* context,
                                                               grpc::ByteBuffer* response) {
  return new PushReactor(this, context, response);
}

void IngestService::Stop() { queue_->Stop(); }

TenantLimits IngestService::LimitsFor(std::string_view tenant_name) const {
  if (options_.limiter != nullptr) return options_.limiter->For(tenant_name);
  return LimitsFromFlags(options_.limits, options_.max_message_bytes, 0);
}

IngestService::Tenant IngestService::TenantOf(storage::TenantId id, std::string_view name,
                                              const TenantLimits& limits) const {
  return Tenant{id, name, limits.Apply(options_.limits), limits.active_series};
}

uint64_t IngestService::CountNewSeries(const Tenant& tenant, std::span<const model::Labels> labels) {
  uint64_t fresh = 0;
  for (model::Labels l : labels) {
    // Invalid ones are never created; valid ones are now canonical.
    if (model::ValidateLabels(l, model::MetricType::kUnspecified, tenant.validation)) continue;
    if (!store_->FindSeries(tenant.id, l)) ++fresh;
  }
  return fresh;
}

absl::Status IngestService::CheckMemory() { return memory_limit_->Check(); }

absl::Status IngestService::AdmitWrite(std::string_view tenant_name, uint64_t samples) {
  if (options_.limiter == nullptr) return absl::OkStatus();
  return options_.limiter->AdmitBatch(tenant_name, "", samples, 0);
}

std::optional<model::Rejection> IngestService::CreateSeries(const Tenant& tenant, const model::Labels& labels,
                                                            model::MetricType type, storage::SeriesId* id) {
  // The tenant's series limit (active_series): only a series it does not
  // hold yet is refused, like one past --max-series (the rest of the
  // batch is stored; the agent does not resend it).
  if (tenant.active_series > 0 && options_.limiter != nullptr) {
    if (auto existing = store_->FindSeries(tenant.id, labels)) {
      *id = *existing;
      return std::nullopt;
    }
    if (auto s = options_.limiter->AdmitSeries(tenant.name, store_->SeriesCount(tenant.id)); !s.ok()) {
      return model::Rejection{model::RejectReason::kSeriesLimit,
                              fmt::format("{}: {}", model::FormatLabelsShort(labels), std::string(s.message()))};
    }
  }
  auto created = store_->GetOrCreateSeries(tenant.id, labels, type);
  if (!created.ok()) {
    const bool limit = created.status().code() == absl::StatusCode::kResourceExhausted;
    return model::Rejection{
        limit ? model::RejectReason::kSeriesLimit : model::RejectReason::kStoreError,
        fmt::format("{}: {}", model::FormatLabelsShort(labels), std::string(created.status().message()))};
  }
  *id = *created;
  return std::nullopt;
}

std::optional<model::Rejection> IngestService::AdmitSeries(const Tenant& tenant, model::Labels& labels,
                                                           model::MetricType type,
                                                           std::span<const model::Sample> samples, int64_t now,
                                                           bool backfill, storage::SeriesId* id) {
  // Everything is checked before the series is created, so a rejected
  // series leaves nothing behind in the index.
  if (auto r = model::ValidateLabels(labels, type, tenant.validation)) return r;
  if (auto r = model::ValidateSamples(labels, type, samples, now, tenant.validation, backfill)) return r;
  return CreateSeries(tenant, labels, type, id);
}

absl::StatusOr<storage::AppendResult> IngestService::Append(const storage::AppendBatch& append,
                                                            const RejectFn& reject) {
  auto result = store_->Append(append);
  if (!result.ok() || result->duplicate) return result;
  // Live tails see what was stored (not history being backfilled).
  if (options_.tail_hub != nullptr && !append.backfill) options_.tail_hub->Publish(append, *result);
  // So does remote write (buffered: never waits for its disk or network).
  if (options_.remote_write != nullptr && !append.backfill) options_.remote_write->Publish(append, *result);
  // Samples the store did not keep, by series.
  auto dropped = [&](const std::vector<std::pair<storage::SeriesId, uint64_t>>& series, model::RejectReason reason,
                     std::string_view why) {
    for (auto [id, n] : series) {
      auto info = store_->GetSeries(id);
      reject({reason,
              fmt::format("{} has {} samples {}", info ? model::FormatLabelsShort(info->labels) : "a series", n, why)},
             n);
    }
  };
  dropped(result->too_old, model::RejectReason::kOutOfOrder,
          "older than its newest sample by more than the out-of-order window");
  dropped(result->beyond_retention, model::RejectReason::kTimestampOutOfWindow,
          "older than anything the store keeps (its longest retention)");
  for (auto [id, n] : result->deleted) {
    reject({model::RejectReason::kSeriesDeleted,
            fmt::format("series {} was deleted while this stream referred to it; a new stream recreates it", id)},
           n);
  }
  return result;
}

absl::StatusOr<IngestService::WriteResult> IngestService::Write(
    const std::string& agent_id, uint64_t sequence, model::MetricType type,
    std::vector<std::pair<model::Labels, std::vector<model::Sample>>> series, storage::TenantId tenant_id,
    std::string_view tenant_name) {
  const Tenant tenant = TenantOf(tenant_id, tenant_name, LimitsFor(tenant_name));
  const bool unsequenced = agent_id.empty() && sequence == 0;  // remote write: no exactly-once
  if (!unsequenced && (!model::IsValidLabelValue(agent_id, kMaxAgentIdBytes) || agent_id.empty() || sequence == 0 ||
                       sequence >= kMaxSequence)) {
    return absl::InvalidArgumentError(fmt::format(
        "agent_id must be 1 to {} bytes of UTF-8 and 0 < sequence < 2^63 (or both empty)", kMaxAgentIdBytes));
  }
  WriteResult out;
  const auto duplicate = [&] {
    out.duplicate = true;
    metrics_->BatchDuplicate(/*unexpected=*/false);
    return out;
  };
  if (!unsequenced && store_->AgentSequenceApplied(tenant.id, agent_id, sequence, 0)) {
    return duplicate();  // before any work, as Push
  }
  const auto reject = [&](const model::Rejection& r, size_t samples) {
    metrics_->Rejected(r.reason, 1, samples);
    if (out.series_rejected++ == 0) out.first_rejection = fmt::format("{}: {}", model::ReasonName(r.reason), r.detail);
  };
  const int64_t now = options_.now_ms ? options_.now_ms() : WallClockMs();
  storage::AppendBatch append;
  append.tenant = tenant.id;
  append.agent_id = agent_id;
  append.sequence = sequence;
  for (auto& [labels, samples] : series) {
    storage::SeriesSamples s{0, std::move(samples)};
    if (auto r = AdmitSeries(tenant, labels, type, s.samples, now, /*backfill=*/false, &s.id)) {
      if (r->reason == model::RejectReason::kStoreError) return absl::UnavailableError(r->detail);
      reject(*r, s.samples.size());
      continue;
    }
    append.series.push_back(std::move(s));
  }
  auto result = Append(append, reject);
  if (!result.ok()) return result.status();
  if (result->duplicate) return duplicate();
  out.samples_stored = result->samples_added;
  metrics_->BatchApplied(result->samples_added, series.size());
  return out;
}

bool IngestService::ReserveDictionary(size_t bytes) {
  size_t now = dictionary_bytes_.fetch_add(bytes) + bytes;
  if (now > options_.max_dictionary_bytes_total) {
    dictionary_bytes_ -= bytes;
    return false;
  }
  metrics_->SetDictionaryBytes(static_cast<int64_t>(now));
  return true;
}

void IngestService::ReleaseDictionary(size_t bytes) {
  if (bytes == 0) return;
  size_t now = dictionary_bytes_.fetch_sub(bytes) - bytes;
  metrics_->SetDictionaryBytes(static_cast<int64_t>(now));
}

}  // namespace sheaf::daemon
