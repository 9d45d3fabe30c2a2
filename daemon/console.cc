#include "daemon/console.h"

#include <algorithm>
#include <memory>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "common/json_writer.h"
#include "daemon/agent_registry.h"
#include "daemon/console_assets.h"
#include "daemon/http_auth.h"
#include "daemon/rules.h"
#include "daemon/tail_hub.h"
#include "model/matcher.h"
#include "promql/parser.h"
#include "sheaf_version.h"
#include "storage/series_store.h"

namespace sheaf::daemon {
namespace {

// The pages the app draws (console.js picks by path).
constexpr std::string_view kPages[] = {"/graph", "/series", "/status", "/agents", "/tail"};

// Only sheafd itself: scripts, styles, fetches and images from this
// origin. Inline style attributes are allowed (Chart.js sizes its canvas
// through them); inline scripts are not.
constexpr char kContentSecurityPolicy[] =
    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

const ConsoleAsset* FindAsset(std::string_view name) {
  for (const ConsoleAsset& asset : ConsoleAssets()) {
    if (asset.name == name) return &asset;
  }
  return nullptr;
}

// The file, or 304 without a body when the browser holds this version.
HttpResponse ServeAsset(const HttpRequest& request, const ConsoleAsset& asset) {
  HttpResponse response;
  response.headers.emplace_back("ETag", std::string(asset.etag));
  response.headers.emplace_back("Cache-Control", "no-cache");
  response.headers.emplace_back("X-Content-Type-Options", "nosniff");
  if (const std::string* held = request.Header("If-None-Match"); held != nullptr && *held == asset.etag) {
    response.status = 304;
    return response;
  }
  response.content_type = std::string(asset.content_type);
  response.body = std::string(asset.body);
  return response;
}

// {"status":"success","data":<data>} as the public API answers.
HttpResponse Success(const std::string& data) {
  HttpResponse response;
  response.content_type = "application/json";
  response.body = R"({"status":"success","data":)" + data + "}";
  return response;
}

HttpResponse Failure(int status, std::string_view type, std::string_view message) {
  HttpResponse response;
  response.status = status;
  response.content_type = "application/json";
  JsonWriter json;
  json.BeginObject();
  json.Key("status");
  json.String("error");
  json.Key("errorType");
  json.String(type);
  json.Key("error");
  json.String(message);
  json.EndObject();
  response.body = json.Take();
  return response;
}

void Number(JsonWriter& json, std::string_view key, uint64_t value) {
  json.Key(key);
  json.Uint(value);
}

// A time in ms as the API writes times: float seconds.
void Seconds(JsonWriter& json, std::string_view key, int64_t ms) {
  json.Key(key);
  json.Double(static_cast<double>(ms) / 1000.0);
}

// A tail stream's waiter: the hub's delivery thread says when there is
// something to take; the stream's worker waits for it.
class TailWaiter final : public TailListener {
 public:
  void OnTailReady() override {
    absl::MutexLock lock(&mu_);
    ready_ = true;
  }
  // True if called within `timeout`; resets.
  bool Wait(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&ready_), timeout);
    const bool was = ready_;
    ready_ = false;
    return was;
  }

 private:
  absl::Mutex mu_;
  bool ready_ ABSL_GUARDED_BY(mu_) = false;
};

// One server-sent event of a delivery:
//   data: {"missed":N,"series":[{"labels":{...},"samples":[[t,v],...]},...]}
std::string TailEvent(const TailDelivery& delivery) {
  JsonWriter json;
  json.BeginObject();
  Number(json, "missed", delivery.missed);
  json.Key("series");
  json.BeginArray();
  for (const TailRun& run : delivery.runs) {
    json.BeginObject();
    json.Key("labels");
    json.BeginObject();
    for (const auto& label : run.series->labels) {
      json.Key(label.name);
      json.String(label.value);
    }
    json.EndObject();
    json.Key("samples");
    json.BeginArray();
    for (size_t i = run.begin; i < run.end; ++i) {
      const model::Sample& sample = (*run.samples)[i];
      json.BeginArray();
      json.Double(static_cast<double>(sample.timestamp_ms) / 1000.0);
      json.Double(sample.value);
      json.EndArray();
    }
    json.EndArray();
    json.EndObject();
  }
  json.EndArray();
  json.EndObject();
  return "data: " + json.Take() + "\n\n";
}

// At most this much per event: a browser parses each event whole.
constexpr size_t kTailEventSamples = 2000;
constexpr size_t kTailEventBytes = 512 * 1024;
// A comment this often on an idle stream finds a client that left.
constexpr absl::Duration kTailKeepalive = absl::Seconds(10);

class ConsoleApi {
 public:
  explicit ConsoleApi(ConsoleSources sources)
      : sources_(std::move(sources)), started_ms_(Now()) {}

  // The store's figures are the whole daemon's: a caller who is not the
  // operator (admin of the default tenant) sees its tenant's series count
  // and no sample total (as
  // QueryService.Stats); rates and agents are its tenant's.
  HttpResponse Status(const Principal& principal) {
    storage::StoreStats stats = sources_.store->Stats();
    if (!principal.IsOperator()) {
      auto ids = sources_.store->Select(principal.tenant, {});
      if (!ids.ok()) return Failure(503, "unavailable", ids.status().ToString());
      stats.series = ids->size();
      stats.samples = 0;
    }
    const int64_t now = Now();
    JsonWriter json;
    json.BeginObject();
    json.Key("version");
    json.String(SHEAF_VERSION);
    Seconds(json, "startTime", started_ms_);
    Seconds(json, "uptimeSeconds", now - started_ms_);
    json.Key("settings");
    json.BeginArray();
    for (const auto& [name, value] : sources_.settings) {
      json.BeginArray();
      json.String(name);
      json.String(value);
      json.EndArray();
    }
    json.EndArray();
    json.Key("ingest");
    json.BeginObject();
    json.Key("samplesPerSecond");
    json.Double(sources_.agents->SamplesPerSecond(principal.tenant));
    Number(json, "agentsSinceStart", sources_.agents->Agents(principal.tenant).size());
    json.EndObject();
    json.Key("storage");
    json.BeginObject();
    Number(json, "series", stats.series);
    Number(json, "samples", stats.samples);
    Number(json, "diskBytes", stats.disk_bytes);
    Number(json, "walBytes", stats.wal_bytes);
    json.Key("bytesPerSample");
    json.Double(stats.samples > 0 ? static_cast<double>(stats.disk_bytes) / static_cast<double>(stats.samples) : 0);
    json.Key("columnFamilyBytes");
    json.BeginObject();
    for (const auto& [family, bytes] : stats.family_disk_bytes) Number(json, family, bytes);
    json.EndObject();
    Number(json, "pendingCompactionBytes", stats.pending_compaction_bytes);
    Number(json, "writeStalls", stats.write_stalls);
    Number(json, "headSamples", stats.head_samples);
    Number(json, "memtableBytes", stats.memtable_bytes);
    Number(json, "blockCacheBytes", stats.block_cache_bytes);
    Number(json, "diskFreeBytes", stats.disk_free_bytes);
    Number(json, "diskTotalBytes", stats.disk_total_bytes);
    json.Key("writable");
    json.Bool(stats.writable);
    json.Key("writeError");
    json.String(stats.write_error);
    Number(json, "maintenanceFailures", stats.maintenance_failures);
    json.Key("lastMaintenanceError");
    json.String(stats.last_maintenance_error);
    json.EndObject();
    json.Key("ruleGroups");
    json.BeginArray();
    if (sources_.rules != nullptr) {
      for (const RuleManager::GroupInfo& group : sources_.rules->Groups()) {
        json.BeginObject();
        json.Key("file");
        json.String(group.file);
        json.Key("name");
        json.String(group.name);
        Seconds(json, "intervalSeconds", group.interval_ms);
        Number(json, "rules", group.rules);
        json.EndObject();
      }
    }
    json.EndArray();
    json.EndObject();
    return Success(json.str());
  }

  HttpResponse Agents(storage::TenantId tenant) {
    JsonWriter json;
    json.BeginArray();
    for (const AgentInfo& a : sources_.agents->Agents(tenant)) {
      json.BeginObject();
      json.Key("id");
      json.String(a.id);
      json.Key("address");
      json.String(a.address);
      json.Key("host");
      json.String(a.host.empty() ? HostOf(a.address) : a.host);
      Seconds(json, "firstPush", a.first_push_ms);
      Seconds(json, "lastPush", a.last_push_ms);
      Number(json, "lastSequence", a.last_sequence);
      Number(json, "batches", a.batches);
      Number(json, "samples", a.samples);
      json.Key("samplesPerSecond");
      json.Double(a.samples_per_second);
      Seconds(json, "newestSample", a.newest_sample_ms);
      json.Key("behind");
      json.Bool(a.behind);
      json.Key("rejectedSamples");
      json.BeginObject();
      for (const auto& [reason, n] : a.rejected_samples) Number(json, reason, n);
      json.EndObject();
      json.EndObject();
    }
    json.EndArray();
    return Success(json.str());
  }

  HttpResponse Tail(const HttpRequest& request, storage::TenantId tenant) {
    const std::string* match = request.Param("match");
    if (match == nullptr || match->empty()) {
      return Failure(400, "bad_data", "match: give a series selector, e.g. match=node_load1{region=\"eu-west-1\"}");
    }
    auto matchers = promql::ParseMetricSelector(*match);
    if (!matchers.ok()) return Failure(400, "bad_data", "match: " + std::string(matchers.status().message()));
    auto waiter = std::make_shared<TailWaiter>();
    auto joined = sources_.tail->Join(waiter, tenant);
    if (!joined.ok()) {
      HttpResponse r = Failure(503, "unavailable", "tail: " + std::string(joined.status().message()));
      r.headers.emplace_back("Retry-After", "10");
      return r;
    }
    // Leaves the hub however the stream ends, or when it never runs (HEAD).
    std::shared_ptr<TailSubscriber> subscriber(joined->get(), [keep = *joined](TailSubscriber* s) { s->Leave(); });
    if (auto s = subscriber->Subscribe(1, *std::move(matchers)); !s.ok()) {
      return Failure(503, "unavailable", "tail: " + std::string(s.message()));
    }
    HttpResponse response;
    response.content_type = "text/event-stream; charset=utf-8";
    response.headers.emplace_back("Cache-Control", "no-cache");
    response.stream = [subscriber, waiter](HttpStream& out) {
      // A first line at once: the browser's EventSource opens.
      if (!out.Write(": sheafd tail\n\n")) return;
      absl::Time last_write = absl::Now();
      while (!out.stopping()) {
        TailDelivery delivery = subscriber->Take(kTailEventSamples, kTailEventBytes);
        if (delivery.closed) return;
        if (delivery.empty()) {
          // Woken by the hub, or each second to see whether sheafd stops.
          if (!waiter->Wait(absl::Seconds(1)) && absl::Now() - last_write > kTailKeepalive) {
            if (!out.Write(": keepalive\n\n")) return;
            last_write = absl::Now();
          }
          continue;
        }
        if (!out.Write(TailEvent(delivery))) return;
        last_write = absl::Now();
      }
    };
    return response;
  }

  // Prometheus' /api/v1/status/tsdb, the parts a sheaf store can answer.
  HttpResponse Cardinality(const HttpRequest& request, storage::TenantId tenant) {
    size_t limit = 10;
    if (const std::string* text = request.Param("limit")) {
      char* end = nullptr;
      const unsigned long long n = std::strtoull(text->c_str(), &end, 10);
      if (text->empty() || *end != '\0' || n == 0 || n > 10000) {
        return Failure(400, "bad_data", "limit: give a number from 1 to 10000, not \"" + *text + "\"");
      }
      limit = static_cast<size_t>(n);
    }
    bool truncated = false;
    auto names =
        sources_.store->LabelValues(tenant, "__name__", sources_.max_cardinality_names, &truncated);
    if (!names.ok()) return Failure(503, "unavailable", names.status().ToString());
    std::vector<std::pair<std::string, uint64_t>> by_metric;
    for (const std::string& name : *names) {
      auto matcher = model::Matcher::Create(model::Matcher::Op::kEqual, "__name__", name);
      if (!matcher.ok()) continue;
      auto ids = sources_.store->Select(tenant, {*matcher});
      if (!ids.ok()) return Failure(503, "unavailable", ids.status().ToString());
      by_metric.emplace_back(name, ids->size());
    }
    auto labels = sources_.store->LabelNames(tenant, 0, nullptr);
    if (!labels.ok()) return Failure(503, "unavailable", labels.status().ToString());
    std::vector<std::pair<std::string, uint64_t>> by_label;
    for (const std::string& label : *labels) {
      auto values = sources_.store->LabelValues(tenant, label, 0, nullptr);
      if (!values.ok()) return Failure(503, "unavailable", values.status().ToString());
      by_label.emplace_back(label, values->size());
    }
    JsonWriter json;
    json.BeginObject();
    json.Key("headStats");
    json.BeginObject();
    auto all = sources_.store->Select(tenant, {});
    if (!all.ok()) return Failure(503, "unavailable", all.status().ToString());
    Number(json, "numSeries", all->size());
    json.EndObject();
    WriteTop(json, "seriesCountByMetricName", by_metric, limit);
    WriteTop(json, "labelValueCountByLabelName", by_label, limit);
    json.Key("metricNamesCounted");
    json.Uint(by_metric.size());
    json.Key("metricNamesTruncated");
    json.Bool(truncated);
    json.EndObject();
    return Success(json.str());
  }

  bool has_tail() const { return sources_.tail != nullptr; }

 private:
  int64_t Now() const { return sources_.now_ms ? sources_.now_ms() : WallClockMs(); }

  // "ipv4:10.0.0.5:41234" -> "10.0.0.5"; "ipv6:[::1]:5" -> "::1".
  static std::string HostOf(std::string_view peer) {
    if (auto colon = peer.find(':'); colon != std::string_view::npos && peer.substr(0, 3) == "ipv") {
      peer.remove_prefix(colon + 1);
    }
    if (auto colon = peer.rfind(':'); colon != std::string_view::npos) peer = peer.substr(0, colon);
    if (peer.size() >= 2 && peer.front() == '[' && peer.back() == ']') peer = peer.substr(1, peer.size() - 2);
    return std::string(peer);
  }

  // The `limit` largest, largest first, as [{"name":..,"value":..}].
  static void WriteTop(JsonWriter& json, std::string_view key, std::vector<std::pair<std::string, uint64_t>>& counts,
                       size_t limit) {
    const size_t n = std::min(limit, counts.size());
    std::partial_sort(counts.begin(), counts.begin() + static_cast<std::ptrdiff_t>(n), counts.end(),
                      [](const auto& a, const auto& b) { return a.second != b.second ? a.second > b.second : a.first < b.first; });
    json.Key(key);
    json.BeginArray();
    for (size_t i = 0; i < n; ++i) {
      json.BeginObject();
      json.Key("name");
      json.String(counts[i].first);
      Number(json, "value", counts[i].second);
      json.EndObject();
    }
    json.EndArray();
  }

  const ConsoleSources sources_;
  const int64_t started_ms_;
};

}  // namespace

void RegisterConsole(HttpServer* server, ConsoleSources sources) {
  // Shared by the handlers, which the server keeps as long as it lives.
  Authenticator* auth = sources.auth;
  auto api = std::make_shared<ConsoleApi>(std::move(sources));
  // The data endpoints need the query role and answer for the caller's
  // tenant; the pages and files below hold no data and stay open.
  auto data = [auth](TenantHttpHandler handler) {
    return Authorized(auth, kRoleQuery, std::move(handler), AuthErrorStyle::kJson);
  };
  server->Handle("/api/v1/status/sheaf", {"GET"},
                 data([api](const HttpRequest&, const Principal& p) { return api->Status(p); }));
  server->Handle("/api/v1/status/agents", {"GET"},
                 data([api](const HttpRequest&, const Principal& p) { return api->Agents(p.tenant); }));
  if (api->has_tail()) {
    server->Handle("/api/v1/tail", {"GET"},
                   data([api](const HttpRequest& request, const Principal& p) { return api->Tail(request, p.tenant); }));
  }
  server->Handle("/api/v1/status/tsdb", {"GET"}, data([api](const HttpRequest& request, const Principal& p) {
                   return api->Cardinality(request, p.tenant);
                 }));
  server->Handle("/", {"GET"}, [](const HttpRequest&) {
    HttpResponse response = HttpResponse::Text(302, "the console is at /graph");
    response.headers.emplace_back("Location", "/graph");
    return response;
  });
  const ConsoleAsset* page = FindAsset("index.html");
  for (std::string_view path : kPages) {
    server->Handle(std::string(path), {"GET"}, [page](const HttpRequest& request) {
      HttpResponse response = ServeAsset(request, *page);
      response.headers.emplace_back("Content-Security-Policy", kContentSecurityPolicy);
      return response;
    });
  }
  server->HandlePrefix("/console/", {"GET"}, [](const HttpRequest& request) {
    const std::string_view name = std::string_view(request.path).substr(std::string_view("/console/").size());
    const ConsoleAsset* asset = FindAsset(name);
    if (asset == nullptr) return HttpResponse::Text(404, "404 not found: " + request.path + " (no such console file)");
    return ServeAsset(request, *asset);
  });
}

}  // namespace sheaf::daemon
