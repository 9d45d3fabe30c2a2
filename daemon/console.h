// sheafd's web console (issue 10): the pages /graph, /series, /status,
// /agents and /tail on the HTTP server, one embedded single-page app
// (daemon/console/, console_assets.h) that uses only the public HTTP API
// (http_api.h) and the JSON endpoints registered here. docs/CONSOLE.md is
// the user's page.
//
// Caching: every file answers with an ETag (a hash of its bytes) and
// "Cache-Control: no-cache", so a browser revalidates each load and gets
// a 304 with no body while sheafd was not upgraded. The pages carry a
// Content-Security-Policy that allows nothing but sheafd itself.
//
// No gRPC here.
#ifndef SHEAF_DAEMON_CONSOLE_H_
#define SHEAF_DAEMON_CONSOLE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "daemon/http_server.h"

namespace sheaf::storage {
class SeriesStore;
}

namespace sheaf::daemon {

class AgentRegistry;
class Authenticator;
class RuleManager;
class TailHub;

// What the console's JSON endpoints read. Each must outlive the server.
struct ConsoleSources {
  storage::SeriesStore* store = nullptr;
  AgentRegistry* agents = nullptr;
  RuleManager* rules = nullptr;  // null: no rule groups shown
  TailHub* tail = nullptr;       // null: no /api/v1/tail
  // Tokens (auth.h): the JSON endpoints need the query role and answer for
  // the caller's tenant; the pages and files stay open. Null: no checks.
  Authenticator* auth = nullptr;
  // The daemon's settings as NAME, VALUE ("data-dir", "/var/lib/sheaf"),
  // shown by /status in this order.
  std::vector<std::pair<std::string, std::string>> settings;
  // /api/v1/status/tsdb counts the series of at most this many metric
  // names (each a Select of the store); past it the answer says so.
  size_t max_cardinality_names = 5000;
  std::function<int64_t()> now_ms;  // wall clock when empty (tests inject one)
};

// The console's pages and files: "/" redirects (302) to "/graph"; the
// pages answer the app's HTML; "/console/<file>" the embedded files. And
// the JSON endpoints the public API lacks (docs/HTTP_API.md):
//   GET /api/v1/status/sheaf   version, uptime, settings, ingest rate,
//                              storage (bytes per column family,
//                              bytes/sample, compaction debt), rule groups
//   GET /api/v1/status/agents  every agent that pushed (agent_registry.h)
//   GET /api/v1/status/tsdb    Prometheus' cardinality statistics:
//                              seriesCountByMetricName,
//                              labelValueCountByLabelName (?limit=, 10)
//   GET /api/v1/tail?match=SELECTOR  the samples stored from now on for
//                              the series SELECTOR matches, as server-sent
//                              events (one event per delivery of the tail
//                              hub, whose per-subscriber buffer bounds
//                              what waits; what it drops is reported as
//                              "missed"); 503 past the hub's subscribers
// REQUIRES: before server->Start().
void RegisterConsole(HttpServer* server, ConsoleSources sources);

}  // namespace sheaf::daemon

#endif  // SHEAF_DAEMON_CONSOLE_H_
