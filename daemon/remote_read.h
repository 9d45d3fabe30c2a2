// POST /api/v1/read: the server side of Prometheus' remote-read protocol
// (https://prometheus.io/docs/prometheus/latest/querying/remote_read_api/),
// so that a Prometheus with `remote_read` to several sheafd answers PromQL
// over all of them. The body is a snappy block (not the framed format)
// holding a protobuf ReadRequest (proto/prometheus/remote.proto); the
// answer is a snappy block holding a ReadResponse: for every Query, in
// order, the default tenant's series its matchers select (=, !=, =~, !~
// with the PromQL engine's fully anchored RE2 matchers, model/matcher.h),
// each with its labels sorted by name, the series sorted by label set, and
// their raw samples with start_timestamp_ms <= t <= end_timestamp_ms in time
// order, stale markers bit for bit as stored. ReadHints are not used (as in
// Prometheus' own server: the client's engine evaluates the functions).
// docs/HTTP_API.md ("Remote read") is the user's page.
//
// Response types: SAMPLES only (Content-Type application/x-protobuf,
// Content-Encoding snappy). Prometheus 2.42's client (Debian 12) sends no
// accepted_response_types and reads SAMPLES only; later clients send
// [STREAMED_XOR_CHUNKS, SAMPLES] and take SAMPLES too. A list without
// SAMPLES is refused (400), as the spec says.
//
// Bounds, those of the PromQL query API (QueryService): the series of all
// queries of a request together are at most --query-max-series and their
// samples at most --query-max-samples (past either: 400 naming the flag,
// as Prometheus answers its --storage.remote.read-sample-limit); the work
// runs on the query executor in one of the --query-max-concurrent slots
// (all taken, the executor full, or more than max_concurrent remote reads
// at once: 503 with Retry-After) and stops after --query-timeout (503).
// The body is at most max_compressed_bytes and decompresses to at most
// max_uncompressed_bytes (413; the size is read from the snappy header
// before anything is allocated). Not snappy, not a ReadRequest, more than
// max_matchers matchers, an unknown matcher type or a regex that does not
// compile: 400 with the reason. A store error: 500.
//
// Memory: a request costs its parsed message (at worst ~30 times its
// decompressed size, for a body of nothing but empty matchers: ~8 MB) and
// its matchers; at most max_concurrent are held at once. The answer is built
// serialized, one series' message at a time (the samples of at most
// `read_batch_series` series are read at once), so it costs about its
// wire size (~18 bytes a sample, bounded by the sample limit) plus its
// snappy copy.
//
// No gRPC here: QueryService is used only for what it shares.
#ifndef SHEAF_DAEMON_REMOTE_READ_H_
#define SHEAF_DAEMON_REMOTE_READ_H_

#include <cstddef>

#include "daemon/http_server.h"

namespace prometheus {
class Registry;
}

namespace sheaf::storage {
class SeriesStore;
}

namespace sheaf::daemon {

class QueryService;

struct RemoteReadOptions {
  // A ReadRequest holds matchers and times: small (Prometheus sends one
  // query; a regex of 8,000 host names of 30 bytes is 240 KB). Past these:
  // 413. Parsed, a request costs up to ~30 times its decompressed size
  // (measured: 1 MB of empty matchers took 25 to 50 MB), so this bounds a
  // request's memory to ~8 MB.
  size_t max_compressed_bytes = 256 << 10;
  size_t max_uncompressed_bytes = 256 << 10;
  // Matchers of all queries of a request; past it 400. Checked after the
  // protobuf is parsed, before the matchers (and their regexes) are built.
  size_t max_matchers = 10'000;
  // Requests decoded or answered at once (Prometheus'
  // --storage.remote.read-concurrent-limit); past it 503 with Retry-After.
  // Each also takes a --query-max-concurrent slot while it reads.
  size_t max_concurrent = 10;
  // Series whose samples are read from the store at once.
  size_t read_batch_series = 256;
};

// The handler. `query` (limits, executor, slots) and `store` must outlive
// the server. With a `registry`, exports sheaf_remote_read_requests_total{code},
// sheaf_remote_read_queries_total, sheaf_remote_read_series_total and
// sheaf_remote_read_samples_total (what successful answers held).
HttpHandler RemoteReadHandler(QueryService* query, storage::SeriesStore* store, RemoteReadOptions options = {},
                              prometheus::Registry* registry = nullptr);

}  // namespace sheaf::daemon

#endif  // SHEAF_DAEMON_REMOTE_READ_H_
