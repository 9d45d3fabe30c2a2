#include "daemon/ingest_metrics.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <string>

namespace sheaf::daemon {

const char* GrpcCodeName(int code) {
  static constexpr const char* kNames[] = {
      "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
      "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
      "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
      "DATA_LOSS", "UNAUTHENTICATED"};
  return code >= 0 && code <= 16 ? kNames[code] : "UNKNOWN";
}

struct IngestMetrics::Impl {
  prometheus::Counter* samples = nullptr;
  prometheus::Counter* series = nullptr;
  prometheus::Counter* batches_applied = nullptr;
  prometheus::Counter* batches_duplicate = nullptr;
  prometheus::Counter* backfill_samples = nullptr;
  prometheus::Counter* backfill_batches = nullptr;
  prometheus::Counter* duplicates_unexpected = nullptr;
  prometheus::Family<prometheus::Counter>* rejected_series = nullptr;
  prometheus::Family<prometheus::Counter>* rejected_samples = nullptr;
  prometheus::Family<prometheus::Counter>* stream_errors = nullptr;
  prometheus::Gauge* queue_depth = nullptr;
  prometheus::Gauge* dictionary_bytes = nullptr;
};

IngestMetrics::IngestMetrics(prometheus::Registry& r) : impl_(std::make_unique<Impl>()) {
  impl_->samples = &prometheus::BuildCounter()
                        .Name("sheaf_ingest_samples_total")
                        .Help("Samples stored by ingestion (new series and timestamp pairs).")
                        .Register(r)
                        .Add({});
  impl_->series = &prometheus::BuildCounter()
                       .Name("sheaf_ingest_series_total")
                       .Help("Series entries received in applied batches, valid or not.")
                       .Register(r)
                       .Add({});
  auto& batches = prometheus::BuildCounter()
                      .Name("sheaf_ingest_batches_total")
                      .Help("Batches received, by result: applied, or duplicate (already durable, not applied again).")
                      .Register(r);
  impl_->batches_applied = &batches.Add({{"result", "applied"}});
  impl_->batches_duplicate = &batches.Add({{"result", "duplicate"}});
  impl_->backfill_samples =
      &prometheus::BuildCounter()
           .Name("sheaf_ingest_backfill_samples_total")
           .Help(
               "Samples stored from backfill batches (history imported on purpose, e.g. sheafctl import "
               "--backfill); also counted in sheaf_ingest_samples_total.")
           .Register(r)
           .Add({});
  impl_->backfill_batches = &prometheus::BuildCounter()
                                 .Name("sheaf_ingest_backfill_batches_total")
                                 .Help("Backfill batches applied; also counted in sheaf_ingest_batches_total.")
                                 .Register(r)
                                 .Add({});
  impl_->duplicates_unexpected =
      &prometheus::BuildCounter()
           .Name("sheaf_ingest_unexpected_duplicates_total")
           .Help(
               "Duplicate batches that were not retries: the first batch of a stream at or below its agent's "
               "durable sequence. Two agents share an identity, or an agent's state was reset.")
           .Register(r)
           .Add({});
  impl_->rejected_series = &prometheus::BuildCounter()
                                .Name("sheaf_ingest_rejected_series_total")
                                .Help("Series rejected by validation or limits, by reason.")
                                .Register(r);
  impl_->rejected_samples = &prometheus::BuildCounter()
                                 .Name("sheaf_ingest_rejected_samples_total")
                                 .Help("Samples in rejected series, by reason.")
                                 .Register(r);
  // Every reason exists from the start at 0, so rate() and alerts work
  // before the first rejection.
  for (int i = 1; i <= model::kMaxRejectReason; ++i) {
    std::string reason(model::ReasonName(static_cast<model::RejectReason>(i)));
    impl_->rejected_series->Add({{"reason", reason}});
    impl_->rejected_samples->Add({{"reason", reason}});
  }
  impl_->stream_errors = &prometheus::BuildCounter()
                              .Name("sheaf_ingest_stream_errors_total")
                              .Help("Push streams ended with an error, by gRPC code.")
                              .Register(r);
  impl_->queue_depth = &prometheus::BuildGauge()
                            .Name("sheaf_ingest_queue_depth")
                            .Help("Batches waiting for an ingest worker.")
                            .Register(r)
                            .Add({});
  impl_->dictionary_bytes = &prometheus::BuildGauge()
                                 .Name("sheaf_ingest_dictionary_bytes")
                                 .Help("Memory held by the series dictionaries of open Push streams.")
                                 .Register(r)
                                 .Add({});
}

IngestMetrics::~IngestMetrics() = default;

void IngestMetrics::BatchApplied(uint64_t samples_stored, uint64_t series_received) {
  impl_->batches_applied->Increment();
  impl_->samples->Increment(static_cast<double>(samples_stored));
  impl_->series->Increment(static_cast<double>(series_received));
}

void IngestMetrics::BackfillApplied(uint64_t samples_stored) {
  impl_->backfill_batches->Increment();
  impl_->backfill_samples->Increment(static_cast<double>(samples_stored));
}

void IngestMetrics::BatchDuplicate(bool unexpected) {
  impl_->batches_duplicate->Increment();
  if (unexpected) impl_->duplicates_unexpected->Increment();
}

void IngestMetrics::Rejected(model::RejectReason reason, uint64_t series, uint64_t samples) {
  std::string name(model::ReasonName(reason));
  impl_->rejected_series->Add({{"reason", name}}).Increment(static_cast<double>(series));
  impl_->rejected_samples->Add({{"reason", name}}).Increment(static_cast<double>(samples));
}

void IngestMetrics::StreamFailed(int grpc_code) {
  impl_->stream_errors->Add({{"grpc_code", GrpcCodeName(grpc_code)}}).Increment();
}

void IngestMetrics::SetQueueDepth(int64_t depth) { impl_->queue_depth->Set(static_cast<double>(depth)); }
void IngestMetrics::SetDictionaryBytes(int64_t bytes) { impl_->dictionary_bytes->Set(static_cast<double>(bytes)); }

}  // namespace sheaf::daemon
