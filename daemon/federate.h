// GET /federate: the latest sample of every series matching the `match[]`
// selectors, in the Prometheus text format, as Prometheus' own /federate.
// A Prometheus server scrapes it (with `honor_labels: true` and
// `params: {match[]: [...]}`) to pull sheaf's fleet aggregates (recording
// rule results) into its own storage. docs/RULES.md describes it for users.
//
// What it writes, as Prometheus 2.42 does: one `# TYPE NAME untyped` line
// per metric name (after a `# HELP` line, which Prometheus leaves out and
// promtool's lint asks for), then that name's series, each with its labels
// (values escaped), its latest value and that sample's timestamp in ms.
// "Latest" means the newest sample in [now - lookback, now]; a series whose
// newest sample there is a stale marker is left out.
#ifndef SHEAF_DAEMON_FEDERATE_H_
#define SHEAF_DAEMON_FEDERATE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "daemon/http_server.h"
#include "model/types.h"

namespace sheaf::storage {
class SeriesStore;
}

namespace sheaf::daemon {

class Authenticator;

struct FederateOptions {
  int64_t lookback_ms = 5 * 60'000;  // Prometheus' lookback delta
  // One answer holds at most this many series and bytes (before gzip);
  // past either it is refused with 422 naming the limit, so a broad
  // match[] costs a bounded amount of memory.
  size_t max_series = 100'000;
  size_t max_bytes = 64ull << 20;
  std::function<int64_t()> now_ms;  // wall clock when empty (tests inject one)
};

// The handler: 400 for no or a bad match[], 422 past a limit, 503 when the
// store cannot be read. `store` must outlive the server.
// GET/POST /federate: the latest sample of each selected series of the
// caller's tenant (the query role; `auth` null: the default tenant).
HttpHandler FederateHandler(storage::SeriesStore* store, FederateOptions options, Authenticator* auth = nullptr);

// One sample line of the text format: `name{a="x",b="y"} 1.5 1700000000000`
// followed by a newline (labels in the given order, __name__ as the name).
void AppendTextSample(const model::Labels& labels, const model::Sample& sample, std::string* out);

}  // namespace sheaf::daemon

#endif  // SHEAF_DAEMON_FEDERATE_H_
