// POST /api/v1/write: the receiver of Prometheus remote write 1.0
// (https://prometheus.io/docs/concepts/remote_write_spec/). The body is a
// snappy block (not the framed format) holding a protobuf WriteRequest
// (proto/prometheus/remote.proto). Every series goes through the ingest
// service's in-process path (IngestService::Write): the validation, series
// creation, append, live tail and ingest metrics of a Push batch.
// docs/PROTOCOL.md ("Remote write") is the user's description.
//
// Answers, as the spec asks:
// - 204: the request decoded; every valid series is stored. Series refused
//   by validation (a bad label name, a NaN that is not the stale marker, a
//   timestamp out of the window...) are counted in
//   sheaf_ingest_rejected_series_total{reason}, logged (rate-limited) and
//   named in the X-Sheaf-Rejected-Series header; they do not fail the
//   request (see PROTOCOL.md for why).
// - 400 (never retried by the sender): not snappy, not a WriteRequest, a
//   wrong Content-Encoding, a series over the hard bounds below.
// - 413: a body or its decompressed size over the limits. The decompressed
//   size is read from the snappy header before anything is allocated.
// - 415: another Content-Type (remote write 2.0's message).
// - 503 with Retry-After (retried by every Prometheus version; 429 is
//   retried only when configured to in Prometheus 2.x): more requests being
//   decoded at once than allowed, or the store cannot write.
//
// Memory: at most `max_concurrent` requests are decoded at once, each
// holding its body, its decompressed bytes (<= max_uncompressed_bytes) and
// at most `max_samples_per_write` samples converted at a time: series are
// decoded one at a time from the wire, never the whole message, so a
// message of many tiny series costs no more than a few large ones.
//
// Samples carry no metric type in remote write 1.0: series are written
// with MetricType::kUnspecified (validated as a gauge; an existing series
// keeps its type). No sequence either: a re-sent request is not detected,
// but the store keeps one sample per series and timestamp, so a retry
// stores nothing twice.
#ifndef SHEAF_DAEMON_REMOTE_WRITE_H_
#define SHEAF_DAEMON_REMOTE_WRITE_H_

#include <cstddef>

#include "daemon/http_server.h"

namespace prometheus {
class Registry;
}

namespace sheaf::daemon {

class IngestService;

struct RemoteWriteOptions {
  size_t max_compressed_bytes = 16ull << 20;    // the body; past it 413 (the HTTP server's own limit also applies)
  size_t max_uncompressed_bytes = 64ull << 20;  // after snappy; past it 413
  size_t max_concurrent = 4;                    // requests decoded at once; past it 503 with Retry-After
  // Hard bounds of one series, checked on the wire before it is parsed;
  // past them the request is refused (400). Far above the validation
  // limits (ValidationLimits: 64 labels, 100,000 samples by default), which
  // refuse such a series alone, as for Push.
  size_t max_labels_per_series = 4096;
  size_t max_samples_per_series = 1'000'000;
  // Handed to IngestService::Write at a time (whichever comes first).
  size_t max_samples_per_write = 50'000;
  size_t max_labels_per_write = 200'000;
};

// The handler. `ingest` must outlive the server. With a `registry`,
// exports sheaf_remote_write_received_requests_total{code} and
// sheaf_remote_write_samples_received_total (what was sent; what was stored
// is in sheaf_ingest_samples_total).
HttpHandler RemoteWriteHandler(IngestService* ingest, RemoteWriteOptions options,
                               prometheus::Registry* registry = nullptr);

}  // namespace sheaf::daemon

#endif  // SHEAF_DAEMON_REMOTE_WRITE_H_
