// The names storage uses: the model's value types, and the store's own id.
#ifndef SHEAF_STORAGE_TYPES_H_
#define SHEAF_STORAGE_TYPES_H_

#include <cstdint>

#include "model/types.h"

namespace sheaf::storage {

using SeriesId = uint64_t;  // 1-based, dense, never reused

// Whose data it is. Every series, listing and agent sequence belongs to one
// tenant; until authentication assigns them, everything is kDefaultTenant.
using TenantId = uint32_t;
inline constexpr TenantId kDefaultTenant = 0;

using model::kMetricNameLabel;
using model::Label;
using model::Labels;
using model::MetricType;
using model::Sample;

}  // namespace sheaf::storage

#endif  // SHEAF_STORAGE_TYPES_H_
