#include "agent/scrape/scraper.h"

#include <curl/curl.h>
#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <mutex>
#include <optional>

#include "common/clock.h"
#include "common/log.h"
#include "model/labels.h"
#include "sheaf_version.h"

namespace sheaf::agent {
namespace {

CURL* Handle(void* p) { return static_cast<CURL*>(p); }

void InitCurlOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::string_view LabelValue(const model::Labels& labels, std::string_view name) {
  for (const model::Label& l : labels) {
    if (l.name == name) return l.value;
  }
  return {};
}

void SetLabel(model::Labels& labels, std::string_view name, std::string value) {
  for (model::Label& l : labels) {
    if (l.name == name) {
      l.value = std::move(value);
      return;
    }
  }
  labels.push_back({std::string(name), std::move(value)});
}

// Prometheus' honor_labels: false. Target labels win; a scraped label they
// replace is kept as exported_<name>, with more "exported_" until the name
// is free (shorter names are placed first).
void AddTargetLabels(model::Labels& labels, const model::Labels& target) {
  model::Labels conflicts;
  for (const model::Label& t : target) {
    std::string_view exposed = LabelValue(labels, t.name);
    if (!exposed.empty()) conflicts.push_back({t.name, std::string(exposed)});
    SetLabel(labels, t.name, t.value);
  }
  if (conflicts.empty()) return;
  std::stable_sort(conflicts.begin(), conflicts.end(),
                   [](const model::Label& a, const model::Label& b) { return a.name.size() < b.name.size(); });
  for (size_t i = 0; i < conflicts.size(); ++i) {
    std::string name = conflicts[i].name;
    for (;;) {
      name = fmt::format("exported_{}", name);
      const auto taken_before = [&](const model::Label& c) { return c.name == name; };
      if (LabelValue(labels, name).empty() && LabelValue(target, name).empty() &&
          std::none_of(conflicts.begin(), conflicts.begin() + static_cast<ptrdiff_t>(i), taken_before)) {
        break;
      }
    }
    conflicts[i].name = std::move(name);
  }
  for (model::Label& c : conflicts) SetLabel(labels, c.name, std::move(c.value));
}

HostMetric Synthetic(std::string name, const model::Labels& target_labels, double value, int64_t timestamp_ms) {
  HostMetric m;
  m.name = std::move(name);
  for (const model::Label& l : target_labels) m.labels.emplace_back(l.name, l.value);
  m.kind = MetricKind::kGauge;
  m.value = value;
  m.timestamp_ms = timestamp_ms;
  return m;
}

}  // namespace

// State of one transfer, shared with libcurl's callbacks.
struct TargetScraper::Transfer {
  TargetScraper* self = nullptr;
  ScrapeResult* result = nullptr;
  const std::atomic<bool>* cancel = nullptr;
  std::optional<model::ExpositionParser> parser;
  model::ExpositionSample sample;
  absl::Status error;  // why a callback ended the transfer
  bool headers_checked = false;
};

TargetScraper::TargetScraper(ScrapeTarget target, std::chrono::milliseconds default_interval)
    : target_(std::move(target)),
      relabeler_(target_.metric_relabel, fmt::format("scrape job \"{}\" target {}", target_.job, target_.url)) {
  InitCurlOnce();
  instance_ = InstanceOf(target_.url).value_or("");
  interval_ = target_.interval.count() > 0 ? target_.interval : default_interval;
  timeout_ = target_.timeout.count() > 0 ? target_.timeout : std::min(interval_, kDefaultScrapeTimeout);

  target_labels_ = {{"instance", instance_}, {"job", target_.job}};
  for (const auto& [name, value] : target_.labels) SetLabel(target_labels_, name, value);
  std::sort(target_labels_.begin(), target_labels_.end());

  error_buffer_ = std::make_unique<char[]>(CURL_ERROR_SIZE);
  curl_ = curl_easy_init();
  CURL* h = Handle(curl_);
  if (h == nullptr) return;  // Scrape() reports it
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, fmt::format("Accept: {}", kScrapeAcceptHeader).c_str());
  headers = curl_slist_append(
      headers, fmt::format("X-Prometheus-Scrape-Timeout-Seconds: {}", static_cast<double>(timeout_.count()) / 1000)
                   .c_str());
  headers_ = headers;
  curl_easy_setopt(h, CURLOPT_URL, target_.url.c_str());
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "sheaf-agent/" SHEAF_VERSION);
  curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "gzip");  // sent, and undone by libcurl
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_.count()));
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(timeout_.count()));
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);  // threads: no SIGALRM for DNS timeouts
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);  // as Prometheus' follow_redirects
  curl_easy_setopt(h, CURLOPT_MAXREDIRS, 10L);
  // Local targets: an http_proxy in the agent's environment must not
  // reroute them (Prometheus ignores it too unless told otherwise).
  curl_easy_setopt(h, CURLOPT_PROXY, "");
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error_buffer_.get());
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &TargetScraper::OnBody);
  curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, &TargetScraper::OnProgress);
}

TargetScraper::~TargetScraper() {
  if (curl_ != nullptr) curl_easy_cleanup(Handle(curl_));
  curl_slist_free_all(static_cast<curl_slist*>(headers_));
}

int TargetScraper::OnProgress(void* user, int64_t, int64_t, int64_t, int64_t) {
  const Transfer* t = static_cast<const Transfer*>(user);
  return t->cancel != nullptr && t->cancel->load(std::memory_order_relaxed) ? 1 : 0;
}

size_t TargetScraper::OnBody(char* data, size_t size, size_t count, void* user) {
  Transfer& t = *static_cast<Transfer*>(user);
  TargetScraper& self = *t.self;
  const size_t n = size * count;
  if (!t.headers_checked) {
    t.headers_checked = true;
    long code = 0;
    curl_easy_getinfo(Handle(self.curl_), CURLINFO_RESPONSE_CODE, &code);
    if (code != 200) {
      t.error = absl::UnavailableError(fmt::format("server returned HTTP status {}", code));
      return 0;  // the body of an error page is of no use
    }
    char* content_type = nullptr;
    curl_easy_getinfo(Handle(self.curl_), CURLINFO_CONTENT_TYPE, &content_type);
    t.result->format = FormatOfContentType(content_type == nullptr ? "" : content_type);
    t.parser.emplace(t.result->format);
  }
  t.result->body_bytes += n;
  if (t.result->body_bytes > self.target_.max_body_bytes) {
    t.error = absl::ResourceExhaustedError(
        fmt::format("body size limit exceeded: more than max_body_bytes ({} bytes, after gzip) came; raise "
                    "max_body_bytes for this target or make it expose fewer series",
                    self.target_.max_body_bytes));
    return 0;
  }
  t.parser->Feed(std::string_view(data, n));
  return self.Drain(t) ? n : 0;
}

bool TargetScraper::Drain(Transfer& t) {
  for (;;) {
    absl::StatusOr<bool> next = t.parser->Next(&t.sample);
    if (!next.ok()) {
      t.error = absl::InvalidArgumentError(fmt::format("parse error in the {} body, {}",
                                                       model::ExpositionFormatName(t.result->format),
                                                       std::string(next.status().message())));
      return false;
    }
    if (!*next) return true;
    AddSample(t, t.sample);
    if (!t.error.ok()) return false;
  }
}

void TargetScraper::AddSample(Transfer& t, const model::ExpositionSample& sample) {
  ScrapeResult& r = *t.result;
  ++r.samples_scraped;
  model::Labels labels = sample.labels;
  labels.erase(std::remove_if(labels.begin(), labels.end(), [](const model::Label& l) { return l.value.empty(); }),
               labels.end());
  AddTargetLabels(labels, target_labels_);
  if (!relabeler_.Apply(&labels)) return;
  ++r.samples_post_relabel;
  if (target_.sample_limit > 0 && r.samples_post_relabel > target_.sample_limit) {
    t.error = absl::ResourceExhaustedError(fmt::format(
        "sample limit exceeded: more than sample_limit ({}) samples after relabeling; raise sample_limit or drop "
        "series with metric_relabel_configs",
        target_.sample_limit));
    return;
  }
  HostMetric m;
  m.labels.reserve(labels.size());
  for (model::Label& l : labels) {  // sorted by Apply
    if (l.name == model::kMetricNameLabel) {
      m.name = std::move(l.value);
    } else {
      m.labels.emplace_back(std::move(l.name), std::move(l.value));
    }
  }
  m.kind = sample.type;
  m.value = sample.value;
  m.timestamp_ms = sample.timestamp_ms.value_or(r.timestamp_ms);
  r.metrics.push_back(std::move(m));
}

void TargetScraper::AddSynthetic(ScrapeResult& r) const {
  const int64_t ts = r.timestamp_ms;
  r.metrics.push_back(Synthetic("up", target_labels_, r.status.ok() ? 1 : 0, ts));
  r.metrics.push_back(Synthetic("scrape_duration_seconds", target_labels_, r.duration_seconds, ts));
  r.metrics.push_back(
      Synthetic("scrape_samples_scraped", target_labels_, static_cast<double>(r.samples_scraped), ts));
  r.metrics.push_back(Synthetic("scrape_samples_post_metric_relabeling", target_labels_,
                                static_cast<double>(r.samples_post_relabel), ts));
}

ScrapeResult TargetScraper::Scrape(const std::atomic<bool>* cancel) {
  ScrapeResult r;
  r.timestamp_ms = WallClockMs();
  const auto start = std::chrono::steady_clock::now();
  Transfer t;
  t.self = this;
  t.result = &r;
  t.cancel = cancel;

  CURL* h = Handle(curl_);
  CURLcode rc = CURLE_FAILED_INIT;
  if (h != nullptr) {
    error_buffer_[0] = '\0';
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &t);
    rc = curl_easy_perform(h);
  }
  if (!t.error.ok()) {
    r.status = t.error;
  } else if (rc == CURLE_OPERATION_TIMEDOUT) {
    r.status = absl::DeadlineExceededError(
        fmt::format("no complete answer within the scrape timeout of {} ms ({})", timeout_.count(),
                    error_buffer_[0] != '\0' ? error_buffer_.get() : curl_easy_strerror(rc)));
  } else if (rc == CURLE_ABORTED_BY_CALLBACK) {
    r.status = absl::CancelledError("the scraper is stopping");
  } else if (rc != CURLE_OK) {
    r.status = absl::UnavailableError(fmt::format("{} ({})", curl_easy_strerror(rc),
                                                  error_buffer_[0] != '\0' ? error_buffer_.get() : "no detail"));
  } else {
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    if (code != 200) {
      r.status = absl::UnavailableError(fmt::format("server returned HTTP status {}", code));
    } else if (t.parser) {
      // The last line may lack its '\n'; OpenMetrics must end with # EOF.
      t.parser->Close();
      if (!Drain(t)) r.status = t.error;
    }
  }
  if (!r.status.ok()) {
    r.status = absl::Status(r.status.code(), fmt::format("GET {}: {}", target_.url, std::string(r.status.message())));
    r.metrics.clear();  // a failed scrape keeps nothing, as in Prometheus
  }
  r.duration_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  AddSynthetic(r);
  return r;
}

// ---------------------------------------------------------------------------

Scraper::Scraper(std::vector<ScrapeTarget> targets, ScraperOptions options) : options_(options) {
  absl::MutexLock lock(&mu_);
  const auto now = std::chrono::steady_clock::now();
  slots_.reserve(targets.size());
  for (ScrapeTarget& target : targets) {
    Slot slot;
    slot.scraper = std::make_unique<TargetScraper>(std::move(target), options_.default_interval);
    const TargetScraper& s = *slot.scraper;
    slot.status.url = s.target().url;
    slot.status.job = s.target().job;
    slot.status.instance = s.instance();
    // Spread the targets' scrapes over the interval, the same offset for a
    // target every time the agent starts.
    const size_t offset_ms = std::hash<std::string>()(s.target().job + s.target().url) %
                             static_cast<size_t>(std::max<int64_t>(1, s.interval().count()));
    slot.next_due = now + std::chrono::milliseconds(offset_ms);
    slots_.push_back(std::move(slot));
  }
}

Scraper::~Scraper() { Stop(); }

void Scraper::Start() {
  absl::MutexLock lock(&mu_);
  if (!threads_.empty() || stopping_) return;
  const size_t n = std::min(std::max<size_t>(1, options_.max_concurrent_scrapes), slots_.size());
  for (size_t i = 0; i < n; ++i) threads_.emplace_back([this] { Worker(); });
}

void Scraper::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    changed_.SignalAll();
  }
  cancel_.store(true);
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

void Scraper::Worker() {
  while (Slot* slot = NextDue()) Finish(slot, slot->scraper->Scrape(&cancel_));
}

Scraper::Slot* Scraper::NextDue() {
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    Slot* next = nullptr;
    for (Slot& s : slots_) {
      if (!s.busy && (next == nullptr || s.next_due < next->next_due)) next = &s;
    }
    const auto now = std::chrono::steady_clock::now();
    if (next == nullptr) {
      changed_.Wait(&mu_);
    } else if (next->next_due > now) {
      changed_.WaitWithTimeout(&mu_, absl::FromChrono(next->next_due - now));
    } else {
      next->busy = true;
      return next;
    }
  }
  return nullptr;
}

void Scraper::Finish(Slot* slot, ScrapeResult result) {
  const TargetScraper& scraper = *slot->scraper;
  const MetricRelabeler::Stats relabel = scraper.relabel_stats();
  const auto now = std::chrono::steady_clock::now();
  bool log_down = false, log_up = false;
  {
    absl::MutexLock lock(&mu_);
    slot->busy = false;
    // The next slot of the grid; slots a long scrape ran over are skipped.
    slot->next_due += scraper.interval();
    if (slot->next_due <= now) {
      const auto behind = (now - slot->next_due) / scraper.interval() + 1;
      slot->next_due += behind * scraper.interval();
      slot->status.missed_intervals += static_cast<uint64_t>(behind);
    }
    TargetStatus& st = slot->status;
    const bool was_up = st.up || st.scrapes == 0;
    st.up = result.status.ok();
    log_down = was_up && !st.up && !(stopping_ && absl::IsCancelled(result.status));
    log_up = st.up && !was_up;
    st.last_error = st.up ? "" : std::string(result.status.message());
    st.last_scrape_ms = result.timestamp_ms;
    st.last_duration_seconds = result.duration_seconds;
    st.last_samples = result.samples_post_relabel;
    ++st.scrapes;
    if (!st.up) ++st.failures;
    st.relabel = relabel;

    if (!stopping_) {
      // Bounded: the oldest scrapes go first, one scrape always fits.
      while (!pending_.empty() && pending_count_ + result.metrics.size() > options_.max_pending_samples) {
        pending_count_ -= pending_.front().size();
        pending_dropped_ += pending_.front().size();
        pending_.pop_front();
        if (!logged_pending_drop_) {
          logged_pending_drop_ = true;
          LogWarn("scraped samples are not being collected fast enough: dropping the oldest scrapes past {} "
                  "waiting samples (logged once, counted from now on)",
                  options_.max_pending_samples);
        }
      }
      pending_count_ += result.metrics.size();
      pending_.push_back(std::move(result.metrics));
    }
    changed_.SignalAll();  // this slot's due time moved
  }
  if (log_down) {
    LogWarn("scrape target down (job \"{}\"): {}; up is 0 until it answers", scraper.target().job,
            std::string(result.status.message()));
  }
  if (log_up) LogInfo("scrape target {} (job \"{}\") is up again", scraper.target().url, scraper.target().job);
}

std::vector<HostMetric> Scraper::Collect() {
  std::deque<std::vector<HostMetric>> taken;
  {
    absl::MutexLock lock(&mu_);
    taken.swap(pending_);
    pending_count_ = 0;
  }
  std::vector<HostMetric> out;
  size_t total = 0;
  for (const auto& batch : taken) total += batch.size();
  out.reserve(total);
  for (auto& batch : taken) std::move(batch.begin(), batch.end(), std::back_inserter(out));
  return out;
}

std::vector<Scraper::TargetStatus> Scraper::Targets() const {
  absl::MutexLock lock(&mu_);
  std::vector<TargetStatus> out;
  out.reserve(slots_.size());
  for (const Slot& s : slots_) out.push_back(s.status);
  return out;
}

uint64_t Scraper::pending_samples_dropped() const {
  absl::MutexLock lock(&mu_);
  return pending_dropped_;
}

}  // namespace sheaf::agent
