// Wire types (sheaf.v1) <-> storage types.
#ifndef SHEAF_DAEMON_CONVERT_H_
#define SHEAF_DAEMON_CONVERT_H_

#include <google/protobuf/repeated_field.h>

#include "sheaf/v1/metrics.pb.h"
#include "storage/types.h"

namespace sheaf::daemon {

inline storage::Labels FromProto(const google::protobuf::RepeatedPtrField<v1::Label>& in) {
  storage::Labels out;
  out.reserve(in.size());
  for (const v1::Label& l : in) out.push_back({l.name(), l.value()});
  return out;
}

inline void ToProto(const storage::Labels& in, google::protobuf::RepeatedPtrField<v1::Label>* out) {
  out->Reserve(static_cast<int>(in.size()));
  for (const storage::Label& l : in) {
    v1::Label* p = out->Add();
    p->set_name(l.name);
    p->set_value(l.value);
  }
}

// Unknown enum numbers (from a newer agent) are kept as unspecified, which
// validates like a gauge: new types never make old daemons drop data.
inline storage::MetricType FromProto(v1::MetricType t) {
  switch (t) {
    case v1::METRIC_TYPE_COUNTER: return storage::MetricType::kCounter;
    case v1::METRIC_TYPE_GAUGE: return storage::MetricType::kGauge;
    case v1::METRIC_TYPE_HISTOGRAM: return storage::MetricType::kHistogram;
    default: return storage::MetricType::kUnspecified;
  }
}

inline v1::MetricType ToProto(storage::MetricType t) { return static_cast<v1::MetricType>(t); }

}  // namespace sheaf::daemon

#endif  // SHEAF_DAEMON_CONVERT_H_
