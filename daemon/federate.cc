#include "daemon/federate.h"

#include <fmt/format.h>

#include <algorithm>
#include <iterator>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/prom_format.h"
#include "daemon/http_auth.h"
#include "model/labels.h"
#include "promql/engine.h"
#include "promql/parser.h"
#include "storage/series_store.h"

namespace sheaf::daemon {
namespace {

// Prometheus' own content type for the text format.
constexpr char kTextFormat[] = "text/plain; version=0.0.4; charset=utf-8";

struct Row {
  model::Labels labels;
  model::Sample sample;
};

HttpResponse Federate(storage::SeriesStore* store, const FederateOptions& options, const HttpRequest& request,
                      storage::TenantId tenant) {
  const std::vector<std::string> selectors = request.Params("match[]");
  if (selectors.empty()) {
    return HttpResponse::Text(400,
                              "no match[] parameter: give one or more series selectors, e.g. "
                              "/federate?match[]={__name__=~\"job:.*\"}");
  }
  auto too_many = [&] {
    return HttpResponse::Text(422, fmt::format("match[] selects more than {} series, the limit of one /federate "
                                               "answer (--federate-max-series); narrow the selectors",
                                               options.max_series));
  };
  std::vector<storage::SeriesId> ids;
  for (const std::string& selector : selectors) {
    auto matchers = promql::ParseMetricSelector(selector);
    if (!matchers.ok()) {
      return HttpResponse::Text(400, fmt::format("match[] {}: {}", model::QuoteLabelValue(model::Abbreviate(selector)),
                                                 std::string(matchers.status().message())));
    }
    auto selected = store->Select(tenant, *matchers);
    if (!selected.ok()) return HttpResponse::Text(503, "cannot read the store: " + selected.status().ToString());
    std::vector<storage::SeriesId> merged;
    merged.reserve(ids.size() + selected->size());
    std::set_union(ids.begin(), ids.end(), selected->begin(), selected->end(), std::back_inserter(merged));
    ids = std::move(merged);
    if (ids.size() > options.max_series) return too_many();
  }

  const int64_t now = options.now_ms ? options.now_ms() : WallClockMs();
  std::vector<Row> rows;
  rows.reserve(ids.size());
  for (storage::SeriesId id : ids) {
    auto info = store->GetSeries(id);
    if (!info) continue;  // deleted meanwhile
    auto it = store->Read(id, now - options.lookback_ms, now);
    bool found = false;
    model::Sample latest;
    for (; it->Valid(); it->Next()) {
      latest = it->sample();
      found = true;
    }
    if (!it->status().ok()) return HttpResponse::Text(503, "cannot read the store: " + it->status().ToString());
    // The text format has no stale markers: a series that ended is left
    // out, as Prometheus does.
    if (!found || promql::IsStaleMarker(latest.value)) continue;
    rows.push_back({std::move(info->labels), latest});
  }
  // Grouped by metric name: a family's lines must be together.
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    std::string_view na = model::MetricName(a.labels), nb = model::MetricName(b.labels);
    return na != nb ? na < nb : a.labels < b.labels;
  });

  HttpResponse response;
  response.content_type = kTextFormat;
  std::string_view family;
  for (const Row& row : rows) {
    std::string_view name = model::MetricName(row.labels);
    if (name != family || response.body.empty()) {
      family = name;
      // Prometheus writes no HELP here; promtool's lint wants one.
      response.body += fmt::format("# HELP {} Federated from sheafd.\n# TYPE {} untyped\n", name, name);
    }
    AppendTextSample(row.labels, row.sample, &response.body);
    if (response.body.size() > options.max_bytes) {
      return HttpResponse::Text(422, fmt::format("the answer would be larger than {} bytes, the limit of one "
                                                 "/federate answer; narrow the match[] selectors",
                                                 options.max_bytes));
    }
  }
  return response;
}

}  // namespace

void AppendTextSample(const model::Labels& labels, const model::Sample& sample, std::string* out) {
  *out += model::MetricName(labels);
  bool first = true;
  for (const model::Label& l : labels) {
    if (l.name == model::kMetricNameLabel) continue;
    *out += first ? '{' : ',';
    first = false;
    *out += l.name;
    *out += '=';
    *out += model::QuoteLabelValue(l.value);
  }
  if (!first) *out += '}';
  *out += ' ';
  *out += FormatPromFloat(sample.value);
  *out += ' ';
  *out += std::to_string(sample.timestamp_ms);
  *out += '\n';
}

HttpHandler FederateHandler(storage::SeriesStore* store, FederateOptions options, Authenticator* auth) {
  return Authorized(auth, kRoleQuery,
                    [store, options = std::move(options)](const HttpRequest& request, const Principal& principal) {
                      return Federate(store, options, request, principal.tenant);
                    });
}

}  // namespace sheaf::daemon
