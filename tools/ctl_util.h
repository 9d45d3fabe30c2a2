// What sheafctl's commands share: times, series names, error reports.
#ifndef SHEAF_TOOLS_CTL_UTIL_H_
#define SHEAF_TOOLS_CTL_UTIL_H_

#include <cstdint>
#include <string>

#include "sheaf/v1/metrics.pb.h"

namespace grpc {
class Status;
}

namespace sheaf::ctl {

// Unix seconds, Unix milliseconds (13+ digits) or RFC 3339 UTC
// (2026-01-02T03:04:05Z, fractions allowed). False if it is none of them.
bool ParseTime(const std::string& text, int64_t* ms);
// RFC 3339 UTC with milliseconds: 2026-01-02T03:04:05.000Z.
std::string FormatTime(int64_t ms);
// `name{a="x", b="y"}`.
std::string SeriesName(const google::protobuf::RepeatedPtrField<v1::Label>& labels);
const char* TypeName(v1::MetricType t);
// Prints "sheafctl: WHAT failed: CODE: message" on stderr; returns 1.
int Fail(const char* what, const grpc::Status& s);

}  // namespace sheaf::ctl

#endif  // SHEAF_TOOLS_CTL_UTIL_H_
