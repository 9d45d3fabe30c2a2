// The `scrape:` section of the agent's config, and the URL rules of a
// target (scraper.h).
#include <curl/curl.h>
#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <set>

#include "agent/scrape/scraper.h"
#include "common/duration.h"
#include "model/labels.h"

namespace sheaf::agent {
namespace {

constexpr std::string_view kTargetFields[] = {"url",    "job",          "interval",
                                              "timeout", "labels",      "metric_relabel_configs",
                                              "max_body_bytes", "sample_limit"};

class TargetParser {
 public:
  TargetParser(size_t index, const YAML::Node& node) : where_(fmt::format("scrape[{}]", index)), node_(node) {}

  absl::StatusOr<ScrapeTarget> Parse();

 private:
  absl::Status Error(const YAML::Node& at, std::string_view message) const {
    const int line = at && at.Mark().line >= 0 ? at.Mark().line : node_.Mark().line;
    if (line < 0) return absl::InvalidArgumentError(fmt::format("{}: {}", where_, message));
    return absl::InvalidArgumentError(fmt::format("{}: {} (line {})", where_, message, line + 1));
  }
  absl::StatusOr<std::string> RequiredString(const char* key) const;
  absl::Status Duration(const char* key, std::chrono::milliseconds* out) const;
  absl::Status Count(const char* key, size_t* out) const;

  const std::string where_;
  const YAML::Node& node_;
};

absl::StatusOr<std::string> TargetParser::RequiredString(const char* key) const {
  const YAML::Node value = node_[key];
  if (!value || value.IsNull()) return Error(node_, fmt::format("{} is required", key));
  if (!value.IsScalar() || value.Scalar().empty()) return Error(value, fmt::format("{} must be a non-empty string", key));
  return value.Scalar();
}

absl::Status TargetParser::Duration(const char* key, std::chrono::milliseconds* out) const {
  const YAML::Node value = node_[key];
  if (!value) return absl::OkStatus();
  auto d = value.IsScalar() ? ParseDuration(value.Scalar())
                            : absl::StatusOr<std::chrono::milliseconds>(absl::InvalidArgumentError("not a string"));
  if (!d.ok() || d->count() <= 0) {
    return Error(value, fmt::format("{} \"{}\" is not a positive duration such as 15s, 500ms or 1m", key,
                                    value.IsScalar() ? value.Scalar() : ""));
  }
  *out = *d;
  return absl::OkStatus();
}

absl::Status TargetParser::Count(const char* key, size_t* out) const {
  const YAML::Node value = node_[key];
  if (!value) return absl::OkStatus();
  try {
    const int64_t n = value.as<int64_t>();
    if (n < 0) throw YAML::Exception(value.Mark(), "negative");
    *out = static_cast<size_t>(n);
  } catch (const YAML::Exception&) {
    return Error(value, fmt::format("{} \"{}\" is not a number of at least 0", key,
                                    value.IsScalar() ? value.Scalar() : ""));
  }
  return absl::OkStatus();
}

absl::StatusOr<ScrapeTarget> TargetParser::Parse() {
  if (!node_.IsMap()) return Error(node_, "a target must be a mapping with at least url and job");
  std::set<std::string> seen;
  for (const auto& kv : node_) {
    const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : "";
    if (std::find(std::begin(kTargetFields), std::end(kTargetFields), key) == std::end(kTargetFields)) {
      return Error(kv.first, fmt::format("unknown field \"{}\"; known fields: url, job, interval, timeout, labels, "
                                         "metric_relabel_configs, max_body_bytes, sample_limit",
                                         key));
    }
    if (!seen.insert(key).second) return Error(kv.first, fmt::format("field \"{}\" given twice", key));
  }

  ScrapeTarget target;
  auto url = RequiredString("url");
  if (!url.ok()) return url.status();
  target.url = *url;
  if (auto instance = InstanceOf(target.url); !instance.ok()) {
    return Error(node_["url"], fmt::format("url \"{}\": {}", model::Abbreviate(target.url),
                                           std::string(instance.status().message())));
  }
  auto job = RequiredString("job");
  if (!job.ok()) return job.status();
  if (!model::IsValidUtf8(*job)) return Error(node_["job"], "job must be UTF-8 text");
  target.job = *job;

  if (auto s = Duration("interval", &target.interval); !s.ok()) return s;
  if (auto s = Duration("timeout", &target.timeout); !s.ok()) return s;
  if (target.interval.count() > 0 && target.timeout > target.interval) {
    return Error(node_["timeout"], fmt::format("timeout {} is longer than the interval {}; a scrape must end before "
                                               "the next one is due",
                                               FormatDuration(target.timeout), FormatDuration(target.interval)));
  }
  if (auto s = Count("max_body_bytes", &target.max_body_bytes); !s.ok()) return s;
  if (target.max_body_bytes == 0) return Error(node_["max_body_bytes"], "max_body_bytes must be at least 1");
  if (auto s = Count("sample_limit", &target.sample_limit); !s.ok()) return s;

  if (const YAML::Node labels = node_["labels"]; labels && !labels.IsNull()) {
    if (!labels.IsMap()) return Error(labels, "labels must be a mapping of label names to values, e.g. {region: eu}");
    for (const auto& kv : labels) {
      const std::string name = kv.first.IsScalar() ? kv.first.Scalar() : "";
      if (!model::IsValidLabelName(name) || name.starts_with("__")) {
        return Error(kv.first, fmt::format("labels: \"{}\" is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*, not "
                                           "starting with __)",
                                           model::Abbreviate(name)));
      }
      if (!kv.second.IsScalar() || kv.second.Scalar().empty() || !model::IsValidUtf8(kv.second.Scalar())) {
        return Error(kv.second, fmt::format("labels: the value of \"{}\" must be non-empty UTF-8 text", name));
      }
      target.labels.emplace_back(name, kv.second.Scalar());
    }
    std::sort(target.labels.begin(), target.labels.end());
  }
  auto rules = RelabelRules::Parse(node_["metric_relabel_configs"], where_ + ".metric_relabel_configs");
  if (!rules.ok()) return rules.status();
  target.metric_relabel = *std::move(rules);
  return target;
}

}  // namespace

absl::StatusOr<std::vector<ScrapeTarget>> ParseScrapeTargets(const YAML::Node& node) {
  std::vector<ScrapeTarget> targets;
  if (!node || node.IsNull()) return targets;
  if (!node.IsSequence()) {
    return absl::InvalidArgumentError(
        "scrape: must be a list of targets, e.g. [{url: \"http://127.0.0.1:9100/metrics\", job: node}]");
  }
  std::set<std::pair<std::string, std::string>> seen;  // (job, url)
  size_t index = 0;
  for (const YAML::Node& item : node) {
    auto target = TargetParser(index, item).Parse();
    if (!target.ok()) return target.status();
    if (!seen.emplace(target->job, target->url).second) {
      // Both would write the same series.
      return absl::InvalidArgumentError(fmt::format("scrape[{}]: url \"{}\" is already a target of job \"{}\"", index,
                                                    model::Abbreviate(target->url), model::Abbreviate(target->job)));
    }
    targets.push_back(*std::move(target));
    ++index;
  }
  return targets;
}

absl::StatusOr<std::string> InstanceOf(std::string_view url) {
  constexpr char kSchemeHint[] = "must start with http:// or https:// (e.g. http://127.0.0.1:9100/metrics)";
  if (!url.starts_with("http://") && !url.starts_with("https://")) return absl::InvalidArgumentError(kSchemeHint);
  std::unique_ptr<CURLU, void (*)(CURLU*)> h(curl_url(), curl_url_cleanup);
  if (h == nullptr) return absl::ResourceExhaustedError("out of memory parsing a URL");
  if (CURLUcode rc = curl_url_set(h.get(), CURLUPART_URL, std::string(url).c_str(), 0); rc != CURLUE_OK) {
    return absl::InvalidArgumentError(fmt::format("not a URL: {}", curl_url_strerror(rc)));
  }
  auto part = [&](CURLUPart which, unsigned flags) -> std::string {
    char* text = nullptr;
    if (curl_url_get(h.get(), which, &text, flags) != CURLUE_OK || text == nullptr) return "";
    std::string out(text);
    curl_free(text);
    return out;
  };
  const std::string scheme = part(CURLUPART_SCHEME, 0);
  if (scheme != "http" && scheme != "https") return absl::InvalidArgumentError(kSchemeHint);
  const std::string host = part(CURLUPART_HOST, 0);
  if (host.empty()) return absl::InvalidArgumentError("has no host");
  const std::string port = part(CURLUPART_PORT, CURLU_DEFAULT_PORT);
  return fmt::format("{}:{}", host, port.empty() ? (scheme == "https" ? "443" : "80") : port);
}

model::ExpositionFormat FormatOfContentType(std::string_view content_type) {
  std::string_view media = content_type.substr(0, content_type.find(';'));
  while (!media.empty() && (media.front() == ' ' || media.front() == '\t')) media.remove_prefix(1);
  while (!media.empty() && (media.back() == ' ' || media.back() == '\t')) media.remove_suffix(1);
  constexpr std::string_view kOpenMetrics = "application/openmetrics-text";
  const bool om = media.size() == kOpenMetrics.size() &&
                  std::equal(media.begin(), media.end(), kOpenMetrics.begin(), [](char a, char b) {
                    return (a >= 'A' && a <= 'Z' ? static_cast<char>(a - 'A' + 'a') : a) == b;
                  });
  return om ? model::ExpositionFormat::kOpenMetrics : model::ExpositionFormat::kPrometheusText;
}

}  // namespace sheaf::agent
