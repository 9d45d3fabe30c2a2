// The pure decoding steps of Prometheus remote write and remote read
// (daemon/remote_write.cc, daemon/remote_read.cc): the walk over a
// WriteRequest's wire bytes and the conversion of a remote-read Query's
// matchers. No HTTP server, store or gRPC here, so they can be fuzzed alone
// (tests/fuzz/remote_write.cc, tests/fuzz/remote_read.cc).
#ifndef SHEAF_DAEMON_REMOTE_DECODE_H_
#define SHEAF_DAEMON_REMOTE_DECODE_H_

#include <google/protobuf/wire_format_lite.h>

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "model/matcher.h"
#include "prometheus/remote.pb.h"

namespace sheaf::daemon::remote {

// Field numbers of proto/prometheus/*.proto, for the walk over the wire.
inline constexpr int kWriteRequestTimeseries = 1;  // WriteRequest.timeseries
inline constexpr int kTimeSeriesLabels = 1;        // TimeSeries.labels
inline constexpr int kTimeSeriesSamples = 2;       // TimeSeries.samples

// Walks the fields of a protobuf message without building it: calls
// `field` with each field's number, wire type and, for a length-delimited
// one, its bytes. False, with *error set, when the bytes are not a
// protobuf message or `field` returns false.
using FieldFn = std::function<bool(int number, google::protobuf::internal::WireFormatLite::WireType type,
                                   std::string_view bytes)>;
bool ForEachField(std::string_view message, const FieldFn& field, std::string* error);

// Calls `series` with the bytes of each TimeSeries of a WriteRequest
// (field 1); skips metadata and fields of later versions.
bool ForEachSeries(std::string_view message, const std::function<bool(std::string_view)>& series,
                   std::string* error);

// The matchers of remote-read query #`index` as the engine's matchers;
// INVALID_ARGUMENT for an unknown matcher type or a regex that does not
// compile.
absl::StatusOr<std::vector<model::Matcher>> ToMatchers(const prompb::Query& query, int index);

}  // namespace sheaf::daemon::remote

#endif  // SHEAF_DAEMON_REMOTE_DECODE_H_
