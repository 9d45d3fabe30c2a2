// Scraping of local Prometheus endpoints (`http://127.0.0.1:9100/metrics`)
// by sheaf-agent, the way Prometheus scrapes them, so what the agent ships
// matches what a Prometheus server would have stored: the same Accept
// header, gzip, the body parsed by the model's exposition parser (Prometheus
// text 0.0.4 or OpenMetrics, chosen by Content-Type), `job` and `instance`
// labels, exposed timestamps kept, and per target the series `up`,
// `scrape_duration_seconds`, `scrape_samples_scraped` and
// `scrape_samples_post_metric_relabeling`. No gRPC, no protobuf: HTTP is
// libcurl's.
//
// Prometheus' rules followed here (and where sheaf differs):
//   - honor_labels: false. A scraped label that clashes with a target label
//     (job, instance, or a static label of the target) is renamed
//     exported_<name> (exported_exported_<name> if that is taken too).
//   - honor_timestamps: true. A sample's own timestamp is kept; the others
//     get the time the scrape started.
//   - A failed scrape keeps nothing: connection errors, HTTP statuses other
//     than 200, a body over max_body_bytes, the timeout, more samples than
//     sample_limit, and a parse error anywhere in the body (Prometheus fails
//     the whole scrape on the first bad line, and so does sheaf). Then up is
//     0 and the error says why; scrape_samples_scraped counts the samples
//     read before the failure, as Prometheus reports it.
//   - metric_relabel_configs run after job/instance are set (their output
//     may rewrite them); the synthetic series are not relabeled.
//   - Differs: a series that relabeling makes invalid (no or a bad metric
//     name, a bad label name) is dropped and counted, where Prometheus fails
//     the whole scrape; labels starting with "__" are removed after
//     relabeling. scrape_series_added is not reported.
//   - Types: the model's rule (model::ModelTypeOf): counters are counters,
//     a histogram's _bucket/_sum/_count samples are kHistogram (each bucket
//     carries `le`), untyped samples kUnspecified, the rest gauges.
//
// Bounds: body bytes (max_body_bytes, after gzip is undone; the body is
// parsed as it arrives and never held whole), samples (sample_limit), time
// (timeout, connect included), concurrent scrapes (max_concurrent_scrapes
// threads), samples waiting for Collect() (max_pending_samples).
#ifndef SHEAF_AGENT_SCRAPE_SCRAPER_H_
#define SHEAF_AGENT_SCRAPE_SCRAPER_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "agent/collectors/metric.h"
#include "agent/relabel/relabel.h"
#include "model/exposition_parser.h"

namespace YAML {
class Node;
}  // namespace YAML

namespace sheaf::agent {

inline constexpr size_t kDefaultMaxBodyBytes = 16 << 20;
inline constexpr std::chrono::milliseconds kDefaultScrapeTimeout = std::chrono::seconds(10);

// The Accept header Prometheus 2.x sends: OpenMetrics preferred, then the
// text format 0.0.4, then anything.
inline constexpr char kScrapeAcceptHeader[] =
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

// One target as configured.
struct ScrapeTarget {
  std::string url;  // http://host[:port]/path or https://...
  std::string job;
  std::chrono::milliseconds interval{0};  // 0: the Scraper's default (the agent's interval)
  std::chrono::milliseconds timeout{0};   // 0: the interval, at most 10 s
  // Static labels added to every series of the target (and its synthetic
  // series), like the labels of a Prometheus static_config: they may set
  // job or instance too.
  std::vector<std::pair<std::string, std::string>> labels;
  RelabelRules metric_relabel;  // metric_relabel_configs
  size_t max_body_bytes = kDefaultMaxBodyBytes;
  size_t sample_limit = 0;  // samples kept after relabeling; 0: no limit
};

// Parses the agent config's `scrape:` list (null: no targets):
//   scrape:
//     - url: http://127.0.0.1:9100/metrics   # required
//       job: node                            # required
//       interval: 15s                        # default: the agent's interval
//       timeout: 5s                          # default: min(interval, 10s); <= interval
//       labels: {region: eu-west}            # static labels
//       metric_relabel_configs: [...]        # relabel rules (see relabel.h)
//       max_body_bytes: 16777216             # default 16 MiB
//       sample_limit: 0                      # default 0 (none)
// INVALID_ARGUMENT naming the target and field, e.g.
//   scrape[1]: url "localhost:9100": must start with http:// or https:// (line 4)
absl::StatusOr<std::vector<ScrapeTarget>> ParseScrapeTargets(const YAML::Node& node);

// The instance label of a URL: host:port, the port defaulting to 80 or 443
// as Prometheus does ("[::1]:9100" for IPv6). INVALID_ARGUMENT for a URL
// libcurl cannot parse, a scheme other than http(s) or no host.
absl::StatusOr<std::string> InstanceOf(std::string_view url);

// Which parser a Content-Type calls for (Prometheus' rule: OpenMetrics for
// application/openmetrics-text, the text format for anything else).
model::ExpositionFormat FormatOfContentType(std::string_view content_type);

struct ScrapeResult {
  absl::Status status;  // OK: the target is up
  // The target's samples (none when the scrape failed), then up,
  // scrape_duration_seconds, scrape_samples_scraped and
  // scrape_samples_post_metric_relabeling. Labels sorted, without __name__.
  std::vector<HostMetric> metrics;
  int64_t timestamp_ms = 0;  // when the scrape started: the samples' time
  double duration_seconds = 0;
  uint64_t samples_scraped = 0;        // samples in the body (before relabeling)
  uint64_t samples_post_relabel = 0;   // samples relabeling kept
  uint64_t body_bytes = 0;             // after gzip was undone
  model::ExpositionFormat format = model::ExpositionFormat::kPrometheusText;
};

// Scrapes one target, one scrape at a time (thread-compatible). Keeps its
// HTTP connection open between scrapes, as Prometheus does.
class TargetScraper {
 public:
  // REQUIRES: InstanceOf(target.url) is ok (ParseScrapeTargets checked it).
  TargetScraper(ScrapeTarget target, std::chrono::milliseconds default_interval);
  ~TargetScraper();
  TargetScraper(const TargetScraper&) = delete;
  TargetScraper& operator=(const TargetScraper&) = delete;

  // Fetches and parses the target once, within the timeout. A true
  // `*cancel` (checked while waiting) ends the scrape early as CANCELLED.
  ScrapeResult Scrape(const std::atomic<bool>* cancel = nullptr);

  const ScrapeTarget& target() const { return target_; }
  const std::string& instance() const { return instance_; }
  std::chrono::milliseconds interval() const { return interval_; }
  std::chrono::milliseconds timeout() const { return timeout_; }
  MetricRelabeler::Stats relabel_stats() const { return relabeler_.stats(); }

 private:
  struct Transfer;
  static size_t OnBody(char* data, size_t size, size_t count, void* user);
  static int OnProgress(void* user, int64_t, int64_t, int64_t, int64_t);
  // Parses what was fed; false (and t.error) on a bad line or a limit.
  bool Drain(Transfer& t);
  void AddSample(Transfer& t, const model::ExpositionSample& sample);
  void AddSynthetic(ScrapeResult& result) const;

  const ScrapeTarget target_;
  std::string instance_;
  std::chrono::milliseconds interval_;
  std::chrono::milliseconds timeout_;
  model::Labels target_labels_;  // job, instance, static labels; sorted
  MetricRelabeler relabeler_;
  void* curl_ = nullptr;          // CURL*, reused so connections stay open
  void* headers_ = nullptr;       // curl_slist*
  std::unique_ptr<char[]> error_buffer_;
};

struct ScraperOptions {
  std::chrono::milliseconds default_interval = std::chrono::seconds(10);
  size_t max_concurrent_scrapes = 4;  // worker threads (fewer if fewer targets)
  // Samples scraped and not yet taken by Collect(). Past it the oldest
  // scrapes' samples are dropped, counted and logged once; one scrape alone
  // is always kept whole.
  size_t max_pending_samples = 200'000;
};

// Scrapes every target at its interval on a few threads of its own, so the
// agent's collection loop never waits for a target: it takes what has been
// scraped with Collect(). Start times are spread over the interval (by a
// hash of the URL, as Prometheus spreads them); a scrape that takes longer
// than its interval skips the slots it missed (counted).
//
// Thread-safe.
class Scraper {
 public:
  explicit Scraper(std::vector<ScrapeTarget> targets, ScraperOptions options = {});
  ~Scraper();  // Stop()

  void Start();
  // Cancels scrapes in flight and joins the threads; returns within about a
  // second (libcurl checks for cancellation at least once per second).
  void Stop();

  // Everything scraped since the last call, oldest scrape first. Never
  // waits for a scrape.
  std::vector<HostMetric> Collect();

  // Like Prometheus' targets page.
  struct TargetStatus {
    std::string url;
    std::string job;
    std::string instance;
    bool up = false;
    std::string last_error;  // empty while up
    int64_t last_scrape_ms = 0;  // 0: not scraped yet
    double last_duration_seconds = 0;
    uint64_t last_samples = 0;  // samples kept by the last scrape
    uint64_t scrapes = 0;
    uint64_t failures = 0;
    uint64_t missed_intervals = 0;  // slots skipped because a scrape ran long
    MetricRelabeler::Stats relabel;
  };
  std::vector<TargetStatus> Targets() const;

  uint64_t pending_samples_dropped() const;

 private:
  struct Slot {
    std::unique_ptr<TargetScraper> scraper;
    std::chrono::steady_clock::time_point next_due;
    bool busy = false;
    TargetStatus status;
  };
  void Worker();
  // The next slot to scrape, marked busy, once it is due; nullptr to stop.
  Slot* NextDue() ABSL_LOCKS_EXCLUDED(mu_);
  void Finish(Slot* slot, ScrapeResult result) ABSL_LOCKS_EXCLUDED(mu_);

  const ScraperOptions options_;
  std::atomic<bool> cancel_{false};
  std::vector<std::thread> threads_;

  mutable absl::Mutex mu_;
  absl::CondVar changed_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<Slot> slots_ ABSL_GUARDED_BY(mu_);
  std::deque<std::vector<HostMetric>> pending_ ABSL_GUARDED_BY(mu_);
  size_t pending_count_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t pending_dropped_ ABSL_GUARDED_BY(mu_) = 0;
  bool logged_pending_drop_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace sheaf::agent

#endif  // SHEAF_AGENT_SCRAPE_SCRAPER_H_
