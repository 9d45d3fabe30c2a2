// Wire types (sheaf.v1) <-> storage types.
#ifndef SHEAF_DAEMON_CONVERT_H_
#define SHEAF_DAEMON_CONVERT_H_

#include <google/protobuf/repeated_field.h>

#include "model/types.h"
#include "model/validation.h"
#include "sheaf/v1/ingest.pb.h"
#include "sheaf/v1/metrics.pb.h"

namespace sheaf::daemon {

inline model::Labels FromProto(const google::protobuf::RepeatedPtrField<v1::Label>& in) {
  model::Labels out;
  out.reserve(in.size());
  for (const v1::Label& l : in) out.push_back({l.name(), l.value()});
  return out;
}

inline void ToProto(const model::Labels& in, google::protobuf::RepeatedPtrField<v1::Label>* out) {
  out->Reserve(static_cast<int>(in.size()));
  for (const model::Label& l : in) {
    v1::Label* p = out->Add();
    p->set_name(l.name);
    p->set_value(l.value);
  }
}

// Unknown enum numbers (from a newer agent) are kept as unspecified, which
// validates like a gauge: new types never make old daemons drop data.
inline model::MetricType FromProto(v1::MetricType t) {
  switch (t) {
    case v1::METRIC_TYPE_COUNTER:
      return model::MetricType::kCounter;
    case v1::METRIC_TYPE_GAUGE:
      return model::MetricType::kGauge;
    case v1::METRIC_TYPE_HISTOGRAM:
      return model::MetricType::kHistogram;
    default:
      return model::MetricType::kUnspecified;
  }
}

inline v1::MetricType ToProto(model::MetricType t) { return static_cast<v1::MetricType>(t); }

// The model's reasons carry the wire's numbers.
static_assert(static_cast<int>(model::RejectReason::kOutOfOrder) == v1::REJECT_REASON_OUT_OF_ORDER);
static_assert(static_cast<int>(model::RejectReason::kLabelsTooLarge) == v1::REJECT_REASON_LABELS_TOO_LARGE);
static_assert(model::kMaxRejectReason == v1::RejectReason_MAX);
inline v1::RejectReason ToProto(model::RejectReason r) { return static_cast<v1::RejectReason>(r); }

}  // namespace sheaf::daemon

#endif  // SHEAF_DAEMON_CONVERT_H_
