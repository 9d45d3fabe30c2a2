// Scraping over loopback: Debian's prometheus-node-exporter and prometheus
// started by the test (gzip, real bodies, a real histogram), and a tiny HTTP
// server of the test's own for what real servers will not do on demand
// (an exact body, a bad line, a huge body, a slow answer, an HTTP error).
#include <arpa/inet.h>
#include <curl/curl.h>
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "agent/scrape/scraper.h"
#include "model/exposition_parser.h"
#include "tests/support/net.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace sheaf::agent {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// One HTTP/1.1 answer per connection, then close. Serves `body` with
// `content_type` and `status` after `delay`; remembers the last request.
class TestServer {
 public:
  TestServer() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    listen(fd_, 16);
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { Accept(); });
  }
  ~TestServer() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    acceptor_.join();
    for (std::thread& t : handlers_) t.join();
    close(fd_);
  }

  void Serve(std::string body, std::string content_type = "text/plain; version=0.0.4; charset=utf-8",
             int status = 200, milliseconds delay = milliseconds(0)) {
    std::lock_guard<std::mutex> lock(mu_);
    body_ = std::move(body);
    content_type_ = std::move(content_type);
    status_ = status;
    delay_ = delay;
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/metrics"; }
  int port() const { return port_; }
  std::string last_request() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_request_;
  }

 private:
  void Accept() {
    while (true) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (stop_) return;
      }
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      const int client = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client >= 0) handlers_.emplace_back([this, client] { Handle(client); });
    }
  }
  void Handle(int client) {
    std::string request;
    char buf[4096];
    while (request.find("\r\n\r\n") == std::string::npos) {
      pollfd p{client, POLLIN, 0};
      if (poll(&p, 1, 5000) <= 0) break;
      const ssize_t n = read(client, buf, sizeof(buf));
      if (n <= 0) break;
      request.append(buf, static_cast<size_t>(n));
    }
    std::unique_lock<std::mutex> lock(mu_);
    last_request_ = request;
    // The slow target: answers after `delay_` unless the test ends first.
    cv_.wait_for(lock, delay_, [this] { return stop_; });
    const std::string head = "HTTP/1.1 " + std::to_string(status_) + " X\r\nContent-Type: " + content_type_ +
                             "\r\nContent-Length: " + std::to_string(body_.size()) + "\r\nConnection: close\r\n\r\n";
    const std::string response = head + body_;
    lock.unlock();
    for (size_t off = 0; off < response.size();) {
      const ssize_t n = send(client, response.data() + off, response.size() - off, MSG_NOSIGNAL);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    close(client);
  }

  int fd_ = -1;
  int port_ = 0;
  std::thread acceptor_;
  std::vector<std::thread> handlers_;  // touched by the acceptor only, joined after it
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::string body_;
  std::string content_type_;
  int status_ = 200;
  milliseconds delay_{0};
  std::string last_request_;
};

ScrapeTarget Target(const std::string& url, const std::string& job) {
  ScrapeTarget t;
  t.url = url;
  t.job = job;
  return t;
}

RelabelRules Rules(const std::string& yaml) { return RelabelRules::Parse(YAML::Load(yaml)).value(); }

const HostMetric* Find(const std::vector<HostMetric>& metrics, const std::string& name,
                       const std::map<std::string, std::string>& labels = {}) {
  for (const HostMetric& m : metrics) {
    if (m.name != name) continue;
    bool all = true;
    for (const auto& [k, v] : labels) {
      all = all && std::find(m.labels.begin(), m.labels.end(), std::make_pair(k, v)) != m.labels.end();
    }
    if (all) return &m;
  }
  return nullptr;
}

double Value(const std::vector<HostMetric>& metrics, const std::string& name) {
  const HostMetric* m = Find(metrics, name);
  EXPECT_NE(m, nullptr) << name;
  return m == nullptr ? -1 : m->value;
}

std::string Label(const HostMetric& m, const std::string& name) {
  for (const auto& [k, v] : m.labels) {
    if (k == name) return v;
  }
  return "";
}

// Samples in an exposition, counted by the model's parser.
size_t CountSamples(const std::string& body) {
  model::ExpositionParser parser(model::DetectExpositionFormat(body));
  parser.Feed(body);
  parser.Close();
  model::ExpositionSample sample;
  size_t n = 0;
  for (;;) {
    auto next = parser.Next(&sample);
    if (next.ok() && !*next) return n;
    if (next.ok()) ++n;
  }
}

constexpr int kSynthetic = 4;  // up, scrape_duration_seconds, _samples_scraped, _post_metric_relabeling

// ---------------------------------------------------------------------------
// Against the test's own server.

TEST(ScraperTest, ExactBodyLabelsTypesAndTimestamps) {
  TestServer server;
  server.Serve(
      "# TYPE http_requests_total counter\n"
      "http_requests_total{code=\"200\"} 10\n"
      "http_requests_total{code=\"500\"} 2 1700000000123\n"
      "# TYPE temp gauge\n"
      "temp 21.5\n"
      "# TYPE latency histogram\n"
      "latency_bucket{le=\"0.1\"} 3\n"
      "latency_bucket{le=\"+Inf\"} 4\n"
      "latency_sum 0.5\n"
      "latency_count 4\n"
      "untyped_thing 1\n"
      "clash{job=\"inner\",instance=\"elsewhere\",exported_job=\"taken\",empty=\"\"} 1\n");
  ScrapeTarget target = Target(server.url(), "app");
  target.labels = {{"region", "eu"}};
  TargetScraper scraper(target, seconds(10));
  const ScrapeResult r = scraper.Scrape();
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(r.samples_scraped, 9u);
  EXPECT_EQ(r.samples_post_relabel, 9u);
  ASSERT_EQ(r.metrics.size(), 9u + kSynthetic);
  EXPECT_EQ(r.format, model::ExpositionFormat::kPrometheusText);

  // The Accept header Prometheus sends, gzip offered.
  const std::string request = server.last_request();
  EXPECT_NE(request.find(std::string("Accept: ") + kScrapeAcceptHeader), std::string::npos) << request;
  EXPECT_NE(request.find("Accept-Encoding: gzip"), std::string::npos) << request;
  EXPECT_NE(request.find("X-Prometheus-Scrape-Timeout-Seconds: 10"), std::string::npos) << request;

  const std::string instance = "127.0.0.1:" + std::to_string(server.port());
  const HostMetric* ok = Find(r.metrics, "http_requests_total", {{"code", "200"}});
  ASSERT_NE(ok, nullptr);
  const std::vector<std::pair<std::string, std::string>> want = {
      {"code", "200"}, {"instance", instance}, {"job", "app"}, {"region", "eu"}};
  EXPECT_EQ(ok->labels, want);
  EXPECT_EQ(ok->kind, model::MetricType::kCounter);
  EXPECT_EQ(ok->value, 10);
  EXPECT_EQ(ok->timestamp_ms, r.timestamp_ms);  // no timestamp exposed: the scrape's
  EXPECT_EQ(Find(r.metrics, "http_requests_total", {{"code", "500"}})->timestamp_ms, 1700000000123);
  EXPECT_EQ(Find(r.metrics, "temp")->kind, model::MetricType::kGauge);
  const HostMetric* bucket = Find(r.metrics, "latency_bucket", {{"le", "+Inf"}});
  ASSERT_NE(bucket, nullptr);
  EXPECT_EQ(bucket->kind, model::MetricType::kHistogram);
  EXPECT_EQ(Find(r.metrics, "latency_sum")->kind, model::MetricType::kHistogram);
  EXPECT_EQ(Find(r.metrics, "untyped_thing")->kind, model::MetricType::kUnspecified);

  // honor_labels: false — the target's job and instance win, the scraped
  // ones become exported_*, past names already taken; empty labels are absent.
  const HostMetric* clash = Find(r.metrics, "clash");
  ASSERT_NE(clash, nullptr);
  const std::vector<std::pair<std::string, std::string>> clash_want = {{"exported_exported_job", "inner"},
                                                                       {"exported_instance", "elsewhere"},
                                                                       {"exported_job", "taken"},
                                                                       {"instance", instance},
                                                                       {"job", "app"},
                                                                       {"region", "eu"}};
  EXPECT_EQ(clash->labels, clash_want);

  const HostMetric* up = Find(r.metrics, "up");
  ASSERT_NE(up, nullptr);
  EXPECT_EQ(up->value, 1);
  EXPECT_EQ(up->labels, (std::vector<std::pair<std::string, std::string>>{
                            {"instance", instance}, {"job", "app"}, {"region", "eu"}}));
  EXPECT_EQ(Value(r.metrics, "scrape_samples_scraped"), 9);
  EXPECT_EQ(Value(r.metrics, "scrape_samples_post_metric_relabeling"), 9);
  EXPECT_GT(Value(r.metrics, "scrape_duration_seconds"), 0);
  EXPECT_LT(Value(r.metrics, "scrape_duration_seconds"), 5);
}

TEST(ScraperTest, OpenMetricsByContentType) {
  TestServer server;
  server.Serve(
      "# TYPE jobs counter\njobs_total 3\njobs_created 1700000000.5\n# TYPE t gauge\nt 1 1700000000.25\n# EOF\n",
      "application/openmetrics-text; version=1.0.0; charset=utf-8");
  TargetScraper scraper(Target(server.url(), "om"), seconds(10));
  ScrapeResult r = scraper.Scrape();
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(r.format, model::ExpositionFormat::kOpenMetrics);
  EXPECT_EQ(r.samples_scraped, 3u);
  EXPECT_EQ(Find(r.metrics, "jobs_total")->kind, model::MetricType::kCounter);
  EXPECT_EQ(Find(r.metrics, "t")->timestamp_ms, 1700000000250);  // seconds in OpenMetrics

  // OpenMetrics without its final # EOF is a truncated body: the scrape fails.
  server.Serve("# TYPE t gauge\nt 1\n", "application/openmetrics-text; version=1.0.0");
  r = scraper.Scrape();
  EXPECT_EQ(r.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status.message().find("# EOF"), std::string::npos) << r.status;
  EXPECT_EQ(Value(r.metrics, "up"), 0);
}

TEST(ScraperTest, ParseErrorFailsTheWholeScrapeAsInPrometheus) {
  TestServer server;
  server.Serve("a 1\nb 2\nc{oops 3\nd 4\n");
  TargetScraper scraper(Target(server.url(), "bad"), seconds(10));
  const ScrapeResult r = scraper.Scrape();
  EXPECT_EQ(r.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status.message().find("GET " + server.url() + ": parse error in the prometheus body, line 3"),
            std::string::npos)
      << r.status;
  ASSERT_EQ(r.metrics.size(), static_cast<size_t>(kSynthetic));  // a, b are not kept
  EXPECT_EQ(Value(r.metrics, "up"), 0);
  EXPECT_EQ(Value(r.metrics, "scrape_samples_scraped"), 2);  // read before the bad line
}

TEST(ScraperTest, HttpErrorIsDown) {
  TestServer server;
  server.Serve("not found\n", "text/plain", 404);
  TargetScraper scraper(Target(server.url(), "missing"), seconds(10));
  const ScrapeResult r = scraper.Scrape();
  EXPECT_FALSE(r.status.ok());
  EXPECT_NE(r.status.message().find("server returned HTTP status 404"), std::string::npos) << r.status;
  EXPECT_EQ(Value(r.metrics, "up"), 0);
}

TEST(ScraperTest, TargetDownIsUpZeroWithTheReason) {
  const int port = testing::FreePort();  // nothing listens there
  TargetScraper scraper(Target("http://127.0.0.1:" + std::to_string(port) + "/metrics", "gone"), seconds(10));
  const ScrapeResult r = scraper.Scrape();
  EXPECT_EQ(r.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(r.status.message().find("Couldn't connect to server"), std::string::npos) << r.status;
  EXPECT_NE(r.status.message().find(std::to_string(port)), std::string::npos) << r.status;
  ASSERT_EQ(r.metrics.size(), static_cast<size_t>(kSynthetic));
  EXPECT_EQ(Value(r.metrics, "up"), 0);
  EXPECT_EQ(Value(r.metrics, "scrape_samples_scraped"), 0);
  EXPECT_EQ(Label(*Find(r.metrics, "up"), "instance"), "127.0.0.1:" + std::to_string(port));
  EXPECT_EQ(Label(*Find(r.metrics, "up"), "job"), "gone");
}

TEST(ScraperTest, StaticLabelsMaySetInstanceAndJob) {
  // As in a Prometheus static_config, the target's labels win over the
  // instance taken from the URL and the job name.
  ScrapeTarget target = Target("http://127.0.0.1:" + std::to_string(testing::FreePort()) + "/metrics", "j");
  target.labels = {{"instance", "db-1"}, {"team", "infra"}};
  TargetScraper scraper(target, seconds(10));
  const ScrapeResult r = scraper.Scrape();
  const std::vector<std::pair<std::string, std::string>> want = {
      {"instance", "db-1"}, {"job", "j"}, {"team", "infra"}};
  EXPECT_EQ(Find(r.metrics, "up")->labels, want);
}

TEST(ScraperTest, BodyOverTheLimitFails) {
  TestServer server;
  std::string body;
  for (int i = 0; body.size() < (2u << 20); ++i) body += "metric_with_a_long_name{index=\"" + std::to_string(i) + "\"} 1\n";
  server.Serve(body);
  ScrapeTarget target = Target(server.url(), "big");
  target.max_body_bytes = 1 << 20;
  TargetScraper scraper(target, seconds(10));
  ScrapeResult r = scraper.Scrape();
  EXPECT_EQ(r.status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(r.status.message().find("body size limit exceeded: more than max_body_bytes (1048576 bytes"),
            std::string::npos)
      << r.status;
  EXPECT_EQ(r.metrics.size(), static_cast<size_t>(kSynthetic));
  EXPECT_EQ(Value(r.metrics, "up"), 0);
  EXPECT_LE(r.body_bytes, (1u << 20) + CURL_MAX_WRITE_SIZE);

  // The same body under a larger limit is fine.
  target.max_body_bytes = 4 << 20;
  TargetScraper roomy(target, seconds(10));
  r = roomy.Scrape();
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(r.samples_scraped, static_cast<uint64_t>(CountSamples(body)));
}

TEST(ScraperTest, SampleLimitFailsTheScrape) {
  TestServer server;
  server.Serve("a 1\nb 1\nc 1\ngo_x 1\n");
  ScrapeTarget target = Target(server.url(), "limited");
  target.sample_limit = 2;
  target.metric_relabel = Rules("[{source_labels: [__name__], regex: 'go_.*', action: drop}]");
  TargetScraper scraper(target, seconds(10));
  ScrapeResult r = scraper.Scrape();
  EXPECT_EQ(r.status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(r.status.message().find("sample limit exceeded"), std::string::npos) << r.status;
  // Relabeling counts first: 3 samples are kept of 4, within a limit of 3.
  ScrapeTarget three = target;
  three.sample_limit = 3;
  TargetScraper fits(three, seconds(10));
  r = fits.Scrape();
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(r.samples_scraped, 4u);
  EXPECT_EQ(r.samples_post_relabel, 3u);
}

TEST(ScraperTest, SlowTargetTimesOut) {
  TestServer server;
  server.Serve("a 1\n", "text/plain", 200, seconds(20));
  ScrapeTarget target = Target(server.url(), "slow");
  target.timeout = milliseconds(300);
  TargetScraper scraper(target, seconds(10));
  const auto start = std::chrono::steady_clock::now();
  const ScrapeResult r = scraper.Scrape();
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(r.status.code(), absl::StatusCode::kDeadlineExceeded) << r.status;
  EXPECT_NE(r.status.message().find("within the scrape timeout of 300 ms"), std::string::npos) << r.status;
  EXPECT_GE(took, milliseconds(290));
  EXPECT_LT(took, seconds(3));
  EXPECT_EQ(Value(r.metrics, "up"), 0);
  EXPECT_GE(Value(r.metrics, "scrape_duration_seconds"), 0.29);
}

TEST(ScraperTest, RelabelingRewritesAndCounts) {
  TestServer server;
  server.Serve("keep_me{device=\"sda\"} 1\ndrop_me 2\nkeep_too 3\n");
  ScrapeTarget target = Target(server.url(), "rl");
  target.metric_relabel = Rules(R"Y(
- {source_labels: [__name__], regex: "drop_.*", action: drop}
- {source_labels: [device], target_label: disk}
- {regex: device, action: labeldrop}
- {source_labels: [job], target_label: job, replacement: "renamed-$1"}
)Y");
  TargetScraper scraper(target, seconds(10));
  const ScrapeResult r = scraper.Scrape();
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(r.samples_scraped, 3u);
  EXPECT_EQ(r.samples_post_relabel, 2u);
  EXPECT_EQ(Find(r.metrics, "drop_me"), nullptr);
  const HostMetric* keep = Find(r.metrics, "keep_me");
  ASSERT_NE(keep, nullptr);
  EXPECT_EQ(Label(*keep, "disk"), "sda");
  EXPECT_EQ(Label(*keep, "device"), "");
  EXPECT_EQ(Label(*keep, "job"), "renamed-rl");  // relabeling runs after job is set
  EXPECT_EQ(Label(*Find(r.metrics, "up"), "job"), "rl");  // synthetic series are not relabeled
  EXPECT_EQ(Value(r.metrics, "scrape_samples_post_metric_relabeling"), 2);
  EXPECT_EQ(scraper.relabel_stats().dropped[static_cast<int>(RelabelDropReason::kDroppedByRule)], 1u);
}

// ---------------------------------------------------------------------------
// The Scraper's threads: schedule, never block Collect, bounded, prompt stop.

TEST(ScraperTest, ScrapesOnItsOwnThreadsAndCollectNeverWaits) {
  TestServer fast, slow;
  fast.Serve("fast_metric 1\n");
  slow.Serve("slow_metric 1\n", "text/plain", 200, seconds(20));
  ScrapeTarget f = Target(fast.url(), "fast");
  f.interval = milliseconds(100);
  ScrapeTarget s = Target(slow.url(), "slow");
  s.interval = milliseconds(400);
  s.timeout = milliseconds(400);
  const int down_port = testing::FreePort();
  ScrapeTarget d = Target("http://127.0.0.1:" + std::to_string(down_port) + "/metrics", "down");
  d.interval = milliseconds(100);
  ScraperOptions options;
  options.max_concurrent_scrapes = 2;
  Scraper scraper({f, s, d}, options);
  scraper.Start();

  std::vector<HostMetric> got;
  int64_t max_collect_us = 0;
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        const auto start = std::chrono::steady_clock::now();
        std::vector<HostMetric> batch = scraper.Collect();
        max_collect_us = std::max<int64_t>(
            max_collect_us,
            std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count());
        got.insert(got.end(), batch.begin(), batch.end());
        const HostMetric* slow_up = Find(got, "up", {{"job", "slow"}});
        return Find(got, "fast_metric") && Find(got, "up", {{"job", "down"}}) && slow_up && slow_up->value == 0;
      },
      seconds(15)));
  EXPECT_LT(max_collect_us, 200'000);  // never waited for the slow target (400 ms per scrape)
  EXPECT_EQ(Find(got, "up", {{"job", "fast"}})->value, 1);
  EXPECT_EQ(Find(got, "up", {{"job", "down"}})->value, 0);
  EXPECT_EQ(Find(got, "slow_metric"), nullptr);

  // The fast target went on being scraped while the slow one hung.
  ASSERT_TRUE(testing::WaitFor([&] { return scraper.Targets()[0].scrapes >= 5; }, seconds(10)));
  const std::vector<Scraper::TargetStatus> status = scraper.Targets();
  ASSERT_EQ(status.size(), 3u);
  EXPECT_TRUE(status[0].up);
  EXPECT_EQ(status[0].last_error, "");
  EXPECT_FALSE(status[1].up);
  EXPECT_NE(status[1].last_error.find("scrape timeout"), std::string::npos) << status[1].last_error;
  EXPECT_FALSE(status[2].up);
  EXPECT_NE(status[2].last_error.find("Couldn't connect"), std::string::npos) << status[2].last_error;
  EXPECT_GT(status[2].failures, 0u);

  const auto stop_start = std::chrono::steady_clock::now();
  scraper.Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - stop_start, seconds(3));
}

TEST(ScraperTest, PendingSamplesAreBounded) {
  TestServer server;
  server.Serve("a 1\nb 1\nc 1\nd 1\n");  // 4 + 4 synthetic per scrape
  ScrapeTarget target = Target(server.url(), "busy");
  target.interval = milliseconds(50);
  ScraperOptions options;
  options.max_pending_samples = 20;
  Scraper scraper({target}, options);
  scraper.Start();
  ASSERT_TRUE(testing::WaitFor([&] { return scraper.pending_samples_dropped() >= 16; }, seconds(10)));
  scraper.Stop();
  const std::vector<HostMetric> got = scraper.Collect();
  EXPECT_LE(got.size(), 20u);
  EXPECT_GE(got.size(), 8u);
  EXPECT_EQ(got.size() % 8, 0u);  // whole scrapes only
}

// ---------------------------------------------------------------------------
// Real exporters, started here on loopback.

class RealTargetTest : public ::testing::Test {
 protected:
  // Starts `argv` and waits until http://127.0.0.1:port/metrics answers.
  std::unique_ptr<testing::Process> StartServer(std::vector<std::string> argv, int port, const std::string& log) {
    if (access(argv[0].c_str(), X_OK) != 0) {
      ADD_FAILURE() << argv[0] << " is missing: deploy/setup.sh installs it";
      return nullptr;
    }
    auto process = testing::Process::Start(argv, dir_.Sub(log));
    const bool ready =
        testing::WaitFor([&] { return testing::HttpGet(port, "/metrics").status == 200; }, seconds(60));
    EXPECT_TRUE(ready) << testing::ReadFile(dir_.Sub(log));
    return ready ? std::move(process) : nullptr;
  }

  testing::TempDir dir_;
};

TEST_F(RealTargetTest, NodeExporter) {
  const int port = testing::FreePort();
  auto exporter = StartServer({"/usr/bin/prometheus-node-exporter",
                               "--web.listen-address=127.0.0.1:" + std::to_string(port)},
                              port, "node_exporter.log");
  ASSERT_TRUE(exporter);
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/metrics";
  TargetScraper scraper(Target(url, "node"), seconds(10));
  const ScrapeResult r = scraper.Scrape();
  ASSERT_TRUE(r.status.ok()) << r.status;
  // node_exporter gzips its answer (Accept-Encoding: gzip); this many bytes
  // were the text after inflating.
  const std::string body = testing::HttpGet(port, "/metrics").body;
  EXPECT_GT(r.body_bytes, body.size() * 9 / 10);
  EXPECT_LT(r.body_bytes, body.size() * 11 / 10);
  // Same samples as a separate fetch holds, give or take a few.
  const size_t expected = CountSamples(body);
  EXPECT_GT(expected, 100u);
  EXPECT_NEAR(static_cast<double>(r.samples_scraped), static_cast<double>(expected), expected * 0.05);
  EXPECT_EQ(r.samples_post_relabel, r.samples_scraped);
  EXPECT_EQ(r.metrics.size(), r.samples_scraped + kSynthetic);
  EXPECT_EQ(Value(r.metrics, "up"), 1);
  EXPECT_EQ(Value(r.metrics, "scrape_samples_scraped"), static_cast<double>(r.samples_scraped));

  const HostMetric* load = Find(r.metrics, "node_load1");
  ASSERT_NE(load, nullptr);
  EXPECT_EQ(Label(*load, "job"), "node");
  EXPECT_EQ(Label(*load, "instance"), "127.0.0.1:" + std::to_string(port));
  EXPECT_EQ(load->kind, model::MetricType::kGauge);
  const HostMetric* cpu = Find(r.metrics, "node_cpu_seconds_total", {{"mode", "idle"}});
  ASSERT_NE(cpu, nullptr);
  EXPECT_EQ(cpu->kind, model::MetricType::kCounter);
  EXPECT_FALSE(Label(*cpu, "cpu").empty());

  // keep: only the load averages (and the synthetic series) remain.
  ScrapeTarget keep = Target(url, "node");
  keep.metric_relabel = Rules("[{source_labels: [__name__], regex: 'node_load(1|5|15)', action: keep}]");
  TargetScraper keeper(keep, seconds(10));
  const ScrapeResult k = keeper.Scrape();
  ASSERT_TRUE(k.status.ok()) << k.status;
  EXPECT_EQ(k.samples_post_relabel, 3u);
  EXPECT_EQ(k.metrics.size(), 3u + kSynthetic);
  EXPECT_NE(Find(k.metrics, "node_load15"), nullptr);
  EXPECT_GT(k.samples_scraped, 100u);
  EXPECT_EQ(Value(k.metrics, "scrape_samples_post_metric_relabeling"), 3);

  // drop: every go_ series goes, the rest stays.
  ScrapeTarget drop = Target(url, "node");
  drop.metric_relabel = Rules("[{source_labels: [__name__], regex: 'go_.*', action: drop}]");
  TargetScraper dropper(drop, seconds(10));
  const ScrapeResult d = dropper.Scrape();
  ASSERT_TRUE(d.status.ok()) << d.status;
  EXPECT_EQ(Find(d.metrics, "go_goroutines"), nullptr);
  EXPECT_NE(Find(d.metrics, "node_load1"), nullptr);
  EXPECT_LT(d.samples_post_relabel, d.samples_scraped);
  EXPECT_GT(dropper.relabel_stats().dropped[static_cast<int>(RelabelDropReason::kDroppedByRule)], 10u);

  // Stopped: the same target is down, with the reason.
  exporter->Signal(SIGTERM);
  ASSERT_TRUE(exporter->Wait(seconds(10)).has_value());
  const ScrapeResult gone = scraper.Scrape();
  EXPECT_FALSE(gone.status.ok());
  EXPECT_NE(gone.status.message().find("Couldn't connect to server"), std::string::npos) << gone.status;
  EXPECT_EQ(Value(gone.metrics, "up"), 0);
}

TEST_F(RealTargetTest, PrometheusWithItsHistograms) {
  const int port = testing::FreePort();
  std::ofstream(dir_.Sub("prometheus.yml")) << "global:\n  scrape_interval: 1h\nscrape_configs: []\n";
  auto prometheus = StartServer({"/usr/bin/prometheus", "--config.file=" + dir_.Sub("prometheus.yml"),
                                 "--storage.tsdb.path=" + dir_.Sub("data"),
                                 "--web.listen-address=127.0.0.1:" + std::to_string(port)},
                                port, "prometheus.log");
  ASSERT_TRUE(prometheus);
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/metrics";
  TargetScraper scraper(Target(url, "prometheus"), seconds(10));
  const ScrapeResult r = scraper.Scrape();
  ASSERT_TRUE(r.status.ok()) << r.status;
  const size_t expected = CountSamples(testing::HttpGet(port, "/metrics").body);
  EXPECT_GT(expected, 100u);
  // Prometheus' own request metrics grow with each request: roughly equal.
  EXPECT_NEAR(static_cast<double>(r.samples_scraped), static_cast<double>(expected), expected * 0.2);
  EXPECT_EQ(Value(r.metrics, "up"), 1);

  // The histogram of its HTTP handlers arrives as buckets with le, typed
  // for the daemon's histogram checks, the +Inf bucket equal to _count.
  const HostMetric* inf =
      Find(r.metrics, "prometheus_http_request_duration_seconds_bucket", {{"handler", "/metrics"}, {"le", "+Inf"}});
  ASSERT_NE(inf, nullptr);
  EXPECT_EQ(inf->kind, model::MetricType::kHistogram);
  EXPECT_EQ(Label(*inf, "job"), "prometheus");
  EXPECT_EQ(Label(*inf, "instance"), "127.0.0.1:" + std::to_string(port));
  const HostMetric* count =
      Find(r.metrics, "prometheus_http_request_duration_seconds_count", {{"handler", "/metrics"}});
  ASSERT_NE(count, nullptr);
  EXPECT_EQ(count->kind, model::MetricType::kHistogram);
  EXPECT_EQ(count->value, inf->value);
  size_t buckets = 0;
  for (const HostMetric& m : r.metrics) {
    if (m.name != "prometheus_http_request_duration_seconds_bucket" || Label(m, "handler") != "/metrics") continue;
    ++buckets;
    EXPECT_FALSE(Label(m, "le").empty());
    EXPECT_EQ(m.kind, model::MetricType::kHistogram);
  }
  EXPECT_GT(buckets, 3u);
  // A summary's quantiles are gauges, its _count a counter.
  const HostMetric* quantile = Find(r.metrics, "go_gc_duration_seconds", {{"quantile", "0.5"}});
  ASSERT_NE(quantile, nullptr);
  EXPECT_EQ(quantile->kind, model::MetricType::kGauge);
  EXPECT_EQ(Find(r.metrics, "go_gc_duration_seconds_count")->kind, model::MetricType::kCounter);
}

}  // namespace
}  // namespace sheaf::agent
