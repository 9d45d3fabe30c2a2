// The `scrape:` config section: defaults, every field, and errors that name
// the target, the field and the line; the URL rules behind `instance`.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <chrono>
#include <string>

#include "agent/scrape/scraper.h"

namespace sheaf::agent {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

std::string ParseError(const std::string& yaml) {
  auto targets = ParseScrapeTargets(YAML::Load(yaml));
  EXPECT_FALSE(targets.ok()) << yaml;
  return targets.ok() ? "" : std::string(targets.status().message());
}

TEST(ScrapeConfigTest, ParsesEveryField) {
  auto targets = ParseScrapeTargets(YAML::Load(R"Y(
- url: http://127.0.0.1:9100/metrics
  job: node
- url: https://exporter.local/custom/path
  job: app
  interval: 15s
  timeout: 500ms
  labels: {region: eu-west, team: infra}
  metric_relabel_configs:
    - {source_labels: [__name__], regex: "go_.*", action: drop}
  max_body_bytes: 1048576
  sample_limit: 5000
)Y"));
  ASSERT_TRUE(targets.ok()) << targets.status();
  ASSERT_EQ(targets->size(), 2u);
  const ScrapeTarget& node = (*targets)[0];
  EXPECT_EQ(node.url, "http://127.0.0.1:9100/metrics");
  EXPECT_EQ(node.job, "node");
  EXPECT_EQ(node.interval, milliseconds(0));  // the agent's
  EXPECT_EQ(node.timeout, milliseconds(0));
  EXPECT_TRUE(node.labels.empty());
  EXPECT_TRUE(node.metric_relabel.empty());
  EXPECT_EQ(node.max_body_bytes, 16u << 20);
  EXPECT_EQ(node.sample_limit, 0u);

  const ScrapeTarget& app = (*targets)[1];
  EXPECT_EQ(app.interval, seconds(15));
  EXPECT_EQ(app.timeout, milliseconds(500));
  const std::vector<std::pair<std::string, std::string>> labels = {{"region", "eu-west"}, {"team", "infra"}};
  EXPECT_EQ(app.labels, labels);
  EXPECT_EQ(app.metric_relabel.size(), 1u);
  EXPECT_EQ(app.max_body_bytes, 1048576u);
  EXPECT_EQ(app.sample_limit, 5000u);

  EXPECT_TRUE(ParseScrapeTargets(YAML::Load("")).value().empty());
  EXPECT_TRUE(ParseScrapeTargets(YAML::Load("[]")).value().empty());
}

TEST(ScrapeConfigTest, DefaultIntervalAndTimeoutComeFromTheAgent) {
  ScrapeTarget t;
  t.url = "http://127.0.0.1:1/metrics";
  t.job = "j";
  EXPECT_EQ(TargetScraper(t, seconds(1)).interval(), seconds(1));
  EXPECT_EQ(TargetScraper(t, seconds(1)).timeout(), seconds(1));  // no longer than the interval
  EXPECT_EQ(TargetScraper(t, seconds(60)).timeout(), seconds(10));
  t.interval = seconds(30);
  t.timeout = seconds(3);
  EXPECT_EQ(TargetScraper(t, seconds(1)).interval(), seconds(30));
  EXPECT_EQ(TargetScraper(t, seconds(1)).timeout(), seconds(3));
}

TEST(ScrapeConfigTest, ErrorsNameTargetFieldAndLine) {
  EXPECT_EQ(ParseError("- {url: http://a:1/m, job: a}\n- {job: b}\n"), "scrape[1]: url is required (line 2)");
  EXPECT_EQ(ParseError("- url: http://a:1/m\n"), "scrape[0]: job is required (line 1)");
  EXPECT_EQ(ParseError("- url: localhost:9100\n  job: x\n"),
            "scrape[0]: url \"localhost:9100\": must start with http:// or https:// (e.g. "
            "http://127.0.0.1:9100/metrics) (line 1)");
  EXPECT_NE(ParseError("- {url: \"ftp://h:1/m\", job: x}").find("must start with http:// or https://"),
            std::string::npos);
  EXPECT_NE(ParseError("- {url: \"http://\", job: x}").find("scrape[0]: url \"http://\""), std::string::npos);
  EXPECT_EQ(ParseError("- url: http://a:1/m\n  job: x\n  intervall: 5s\n"),
            "scrape[0]: unknown field \"intervall\"; known fields: url, job, interval, timeout, labels, "
            "metric_relabel_configs, max_body_bytes, sample_limit (line 3)");
  EXPECT_NE(ParseError("- {url: http://a:1/m, job: x, interval: soon}")
                .find("interval \"soon\" is not a positive duration"),
            std::string::npos);
  EXPECT_NE(ParseError("- {url: http://a:1/m, job: x, interval: 0s}").find("not a positive duration"),
            std::string::npos);
  EXPECT_NE(ParseError("- {url: http://a:1/m, job: x, interval: 5s, timeout: 10s}")
                .find("scrape[0]: timeout 10s is longer than the interval 5s"),
            std::string::npos);
  EXPECT_NE(ParseError("- {url: http://a:1/m, job: x, labels: [a]}").find("labels must be a mapping"),
            std::string::npos);
  EXPECT_NE(ParseError("- {url: http://a:1/m, job: x, labels: {\"1a\": b}}").find("\"1a\" is not a valid label name"),
            std::string::npos);
  EXPECT_NE(ParseError("- {url: http://a:1/m, job: x, labels: {__a: b}}").find("not starting with __"),
            std::string::npos);
  EXPECT_NE(ParseError("- {url: http://a:1/m, job: x, labels: {a: \"\"}}").find("must be non-empty"),
            std::string::npos);
  EXPECT_NE(ParseError("- {url: http://a:1/m, job: x, max_body_bytes: -1}").find("max_body_bytes \"-1\""),
            std::string::npos);
  EXPECT_NE(ParseError("- {url: http://a:1/m, job: x, sample_limit: many}").find("sample_limit \"many\""),
            std::string::npos);
  EXPECT_EQ(ParseError("- url: http://a:1/m\n  job: x\n  metric_relabel_configs:\n    - {action: keep, "
                       "source_labels: [a]}\n    - {action: kepp}\n"),
            "scrape[0].metric_relabel_configs[1]: unknown action \"kepp\"; expected replace, keep, drop, keepequal, "
            "dropequal, labeldrop, labelkeep, labelmap, lowercase or uppercase (line 5)");
  EXPECT_EQ(ParseError("- {url: http://a:1/m, job: x}\n- {url: http://a:1/m, job: x}"),
            "scrape[1]: url \"http://a:1/m\" is already a target of job \"x\"");
  EXPECT_NE(ParseError("{url: http://a:1/m, job: x}").find("scrape: must be a list of targets"), std::string::npos);
  EXPECT_NE(ParseError("- http://a:1/m").find("scrape[0]: a target must be a mapping"), std::string::npos);
}

TEST(ScrapeConfigTest, InstanceIsHostAndPort) {
  EXPECT_EQ(InstanceOf("http://127.0.0.1:9100/metrics").value(), "127.0.0.1:9100");
  EXPECT_EQ(InstanceOf("http://localhost/metrics").value(), "localhost:80");
  EXPECT_EQ(InstanceOf("https://example.org/m").value(), "example.org:443");
  EXPECT_EQ(InstanceOf("http://[::1]:9090/metrics").value(), "[::1]:9090");
  EXPECT_FALSE(InstanceOf("localhost:9100").ok());
  EXPECT_FALSE(InstanceOf("file:///etc/passwd").ok());
  EXPECT_FALSE(InstanceOf("").ok());
}

TEST(ScrapeConfigTest, FormatFollowsContentType) {
  using model::ExpositionFormat;
  EXPECT_EQ(FormatOfContentType("text/plain; version=0.0.4; charset=utf-8"), ExpositionFormat::kPrometheusText);
  EXPECT_EQ(FormatOfContentType("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            ExpositionFormat::kOpenMetrics);
  EXPECT_EQ(FormatOfContentType("Application/OpenMetrics-Text"), ExpositionFormat::kOpenMetrics);
  EXPECT_EQ(FormatOfContentType(""), ExpositionFormat::kPrometheusText);
  EXPECT_EQ(FormatOfContentType("application/json"), ExpositionFormat::kPrometheusText);
}

}  // namespace
}  // namespace sheaf::agent
