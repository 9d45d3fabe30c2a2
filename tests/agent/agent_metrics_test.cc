// The agent's own /metrics: the text it renders (exact lines, escaping, a
// cumulative histogram, `promtool check metrics`), what --metrics-listen
// accepts, and the server: GET /metrics with the format's Content-Type, 404
// and 405 elsewhere, idle sockets that never block a scrape for longer than
// the request timeout, a taken port, a quick stop.
#include "agent/agent_metrics.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/support/net.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace sheaf::agent {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

AgentMetricsSnapshot FullSnapshot() {
  AgentMetricsSnapshot s;
  s.agent_id = "agent-0123456789abcdef0123456789abcdef";
  s.version = "0.1.0";
  s.current_daemon = "10.0.0.7:7470";
  s.collections = 360;
  s.samples_collected = 123456789012ull;  // past 2^32: written exactly
  s.series_dropped_invalid = 3;
  s.samples_dropped_by_reason = {{"spool_full", 700}, {"validation:invalid_label_value", 2}};
  s.batches_dropped_by_reason = {{"spool_full", 7}};
  s.batches_spooled = 40;
  s.batches_sent = 361;
  s.batches_acked = 359;
  s.samples_spooled = 724000;
  s.samples_sent = 722000;
  s.samples_acked = 718000;
  s.spool_bytes = 1048576;
  s.spool_batches_unacked = 2;
  s.spool_oldest_age_seconds = 12.5;
  s.streams_ok = 6;
  s.streams_failed = 1;
  s.reconnects = 1;
  s.daemon_switches = 2;
  s.sequence_conflicts = 0;
  s.acked_sequence = 4097;
  s.ack_latency.Observe(0.003);
  s.ack_latency.Observe(0.01);  // on a bound: counted in that bucket
  s.ack_latency.Observe(0.2);
  s.ack_latency.Observe(75);  // above the last bound: +Inf only
  s.scrape_targets.push_back({"node", "127.0.0.1:9100", "http://127.0.0.1:9100/metrics", true, 0.0125, 812, 30, 0});
  // Quote, backslash and newline in label values, escaped as the format says.
  s.scrape_targets.push_back({"odd\"job\\", "h:1\nx", "http://h:1/m", false, 0, 0, 30, 30});
  return s;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t nl; (nl = text.find('\n', start)) != std::string::npos; start = nl + 1) {
    lines.push_back(text.substr(start, nl - start));
  }
  EXPECT_EQ(start, text.size()) << "the text must end with a newline";
  return lines;
}

bool HasLine(const std::vector<std::string>& lines, const std::string& line) {
  return std::find(lines.begin(), lines.end(), line) != lines.end();
}

TEST(AgentMetricsTest, RendersExactLines) {
  const std::string text = RenderAgentMetrics(FullSnapshot());
  const std::vector<std::string> lines = Lines(text);
  for (const char* want : {
           "# HELP sheaf_agent_samples_collected_total Samples collected from the host and the local scrape targets, "
           "after relabeling.",
           "# TYPE sheaf_agent_samples_collected_total counter",
           "sheaf_agent_samples_collected_total 123456789012",
           "sheaf_agent_build_info{agent_id=\"agent-0123456789abcdef0123456789abcdef\",version=\"0.1.0\"} 1",
           "sheaf_agent_daemon_connected 1",
           "sheaf_agent_current_daemon{daemon=\"10.0.0.7:7470\"} 1",
           "sheaf_agent_collections_total 360",
           "sheaf_agent_series_dropped_invalid_total 3",
           "# TYPE sheaf_agent_samples_dropped_total counter",
           "sheaf_agent_samples_dropped_total{reason=\"spool_full\"} 700",
           "sheaf_agent_samples_dropped_total{reason=\"validation:invalid_label_value\"} 2",
           "sheaf_agent_batches_dropped_total{reason=\"spool_full\"} 7",
           "sheaf_agent_batches_spooled_total 40",
           "sheaf_agent_batches_sent_total 361",
           "sheaf_agent_batches_acked_total 359",
           "sheaf_agent_samples_spooled_total 724000",
           "sheaf_agent_samples_sent_total 722000",
           "sheaf_agent_samples_acked_total 718000",
           "# TYPE sheaf_agent_spool_bytes gauge",
           "sheaf_agent_spool_bytes 1048576",
           "sheaf_agent_spool_batches_unacked 2",
           "sheaf_agent_spool_oldest_age_seconds 12.5",
           "sheaf_agent_streams_total{result=\"ok\"} 6",
           "sheaf_agent_streams_total{result=\"failed\"} 1",
           "sheaf_agent_reconnects_total 1",
           "sheaf_agent_daemon_switches_total 2",
           "sheaf_agent_sequence_conflicts_total 0",
           "sheaf_agent_acked_sequence 4097",
           "# TYPE sheaf_agent_ack_latency_seconds histogram",
           "sheaf_agent_ack_latency_seconds_bucket{le=\"0.01\"} 2",
           "sheaf_agent_ack_latency_seconds_bucket{le=\"0.025\"} 2",
           "sheaf_agent_ack_latency_seconds_bucket{le=\"0.1\"} 2",
           "sheaf_agent_ack_latency_seconds_bucket{le=\"0.25\"} 3",
           "sheaf_agent_ack_latency_seconds_bucket{le=\"60\"} 3",
           "sheaf_agent_ack_latency_seconds_bucket{le=\"+Inf\"} 4",
           "sheaf_agent_ack_latency_seconds_sum 75.213",
           "sheaf_agent_ack_latency_seconds_count 4",
           "sheaf_agent_scrape_target_up{job=\"node\",instance=\"127.0.0.1:9100\",url=\"http://127.0.0.1:9100/"
           "metrics\"} 1",
           "sheaf_agent_scrape_target_duration_seconds{job=\"node\",instance=\"127.0.0.1:9100\",url=\"http://"
           "127.0.0.1:9100/metrics\"} 0.0125",
           "sheaf_agent_scrape_target_samples{job=\"node\",instance=\"127.0.0.1:9100\",url=\"http://127.0.0.1:9100/"
           "metrics\"} 812",
           "sheaf_agent_scrape_target_up{job=\"odd\\\"job\\\\\",instance=\"h:1\\nx\",url=\"http://h:1/m\"} 0",
           "sheaf_agent_scrape_target_failures_total{job=\"odd\\\"job\\\\\",instance=\"h:1\\nx\",url=\"http://h:1/"
           "m\"} 30",
       }) {
    EXPECT_TRUE(HasLine(lines, want)) << "missing line: " << want << "\nin:\n" << text;
  }
  // Every family has HELP then TYPE, and every sample follows its family's
  // TYPE line (a histogram's by its suffixes).
  std::string family;
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string& line = lines[i];
    if (line.starts_with("# HELP ")) {
      family = line.substr(7, line.find(' ', 7) - 7);
      ASSERT_LT(i + 1, lines.size());
      EXPECT_TRUE(lines[i + 1].starts_with("# TYPE " + family + " ")) << lines[i + 1];
      ++i;
      continue;
    }
    ASSERT_FALSE(family.empty()) << line;
    EXPECT_TRUE(line.starts_with(family + " ") || line.starts_with(family + "{") || line.starts_with(family + "_"))
        << line << " outside family " << family;
  }
}

TEST(AgentMetricsTest, OmitsWhatIsNotThere) {
  AgentMetricsSnapshot s;
  s.agent_id = "agent-x";
  const std::vector<std::string> lines = Lines(RenderAgentMetrics(s));
  EXPECT_TRUE(HasLine(lines, "sheaf_agent_daemon_connected 0"));
  EXPECT_TRUE(HasLine(lines, "sheaf_agent_ack_latency_seconds_bucket{le=\"+Inf\"} 0"));
  EXPECT_TRUE(HasLine(lines, "sheaf_agent_ack_latency_seconds_sum 0"));
  EXPECT_TRUE(HasLine(lines, "sheaf_agent_build_info{agent_id=\"agent-x\",version=\"\"} 1"));
  for (const std::string& line : lines) {
    // No daemon, no drop reasons, no targets: no families for them.
    EXPECT_FALSE(line.find("sheaf_agent_current_daemon") != std::string::npos) << line;
    EXPECT_FALSE(line.find("_dropped_total") != std::string::npos) << line;
    EXPECT_FALSE(line.find("scrape_target") != std::string::npos) << line;
  }
}

TEST(AgentMetricsTest, HistogramBucketsByUpperBound) {
  LatencyHistogram h;
  h.Observe(0);
  h.Observe(0.01);
  h.Observe(0.0100001);
  h.Observe(60);
  h.Observe(60.5);
  EXPECT_EQ(h.counts[0], 2u);                                     // le 0.01
  EXPECT_EQ(h.counts[1], 1u);                                     // le 0.025
  EXPECT_EQ(h.counts[LatencyHistogram::kBounds.size() - 1], 1u);  // le 60
  EXPECT_EQ(h.counts.back(), 1u);                                 // +Inf only
  EXPECT_EQ(h.count(), 5u);
  EXPECT_DOUBLE_EQ(h.sum, 120.5200001);
}

TEST(AgentMetricsTest, PromtoolAcceptsTheText) {
  if (!std::filesystem::exists("/usr/bin/promtool")) {
    GTEST_SKIP() << "promtool not installed (Debian's prometheus package has it)";
  }
  testing::TempDir tmp;
  const std::string file = tmp.Sub("metrics.txt");
  for (const AgentMetricsSnapshot& s : {FullSnapshot(), AgentMetricsSnapshot{}}) {
    const std::string text = RenderAgentMetrics(s);
    FILE* f = std::fopen(file.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fwrite(text.data(), 1, text.size(), f);
    std::fclose(f);
    const testing::CommandResult r =
        testing::RunCommand({"/bin/sh", "-c", "/usr/bin/promtool check metrics < " + file + " 2>&1"});
    EXPECT_EQ(r.exit_code, 0) << "promtool check metrics:\n" << r.output << "\non:\n" << text;
    EXPECT_EQ(r.output, "") << text;  // not even a lint remark
  }
}

TEST(AgentMetricsTest, ParsesListenAddresses) {
  struct Case {
    std::string in, out;
    bool loopback;
  };
  for (const Case& c : std::vector<Case>{
           {"127.0.0.1:9475", "127.0.0.1:9475", true},
           {"9475", "127.0.0.1:9475", true},
           {":0", "127.0.0.1:0", true},
           {"localhost:9475", "127.0.0.1:9475", true},
           {"127.1.2.3:80", "127.1.2.3:80", true},
           {"[::1]:9475", "[::1]:9475", true},
           {"0.0.0.0:9475", "0.0.0.0:9475", false},
           {"[::]:9475", "[::]:9475", false},
           {"10.1.2.3:9475", "10.1.2.3:9475", false},
       }) {
    bool loopback = !c.loopback;
    absl::StatusOr<std::string> got = ParseMetricsListen(c.in, &loopback);
    ASSERT_TRUE(got.ok()) << c.in << ": " << got.status();
    EXPECT_EQ(*got, c.out) << c.in;
    EXPECT_EQ(loopback, c.loopback) << c.in;
  }
  for (const std::string bad :
       {"", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:x", "host.example:9475", "[::1]9475", "[::1", "1.2.3.4:-1"}) {
    bool loopback = false;
    absl::StatusOr<std::string> got = ParseMetricsListen(bad, &loopback);
    ASSERT_FALSE(got.ok()) << bad;
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(got.status().message().find("--metrics-listen"), std::string_view::npos) << got.status();
  }
}

// One HTTP exchange over loopback; the raw answer (status line, headers,
// body), "" if nothing came within 10 s.
std::string Exchange(int port, const std::string& request) {
  const int fd = testing::ConnectLoopback(port);
  if (fd < 0) return "";
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::string raw;
  if (write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
    char buf[16384];
    for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;) raw.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return raw;
}

std::string Request(const std::string& method, const std::string& path) {
  return method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
}

struct ServedSnapshot {
  std::atomic<int> calls{0};
  AgentMetricsServer::SnapshotFn fn() {
    return [this] {
      ++calls;
      return FullSnapshot();
    };
  }
};

std::unique_ptr<AgentMetricsServer> StartOrDie(AgentMetricsServerOptions options, AgentMetricsServer::SnapshotFn fn) {
  absl::StatusOr<std::unique_ptr<AgentMetricsServer>> server = AgentMetricsServer::Start(std::move(options), fn);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? std::move(*server) : nullptr;
}

TEST(AgentMetricsServerTest, AnswersGetMetricsOnly) {
  ServedSnapshot snapshot;
  absl::StatusOr<std::unique_ptr<AgentMetricsServer>> started = AgentMetricsServer::Start("127.0.0.1:0", snapshot.fn());
  ASSERT_TRUE(started.ok()) << started.status();
  const AgentMetricsServer& server = **started;
  ASSERT_GT(server.port(), 0);
  EXPECT_EQ(server.address(), "127.0.0.1:0");

  const std::string body = RenderAgentMetrics(FullSnapshot());
  const std::string ok = Exchange(server.port(), Request("GET", "/metrics"));
  ASSERT_TRUE(ok.starts_with("HTTP/1.1 200 ")) << ok;
  EXPECT_NE(ok.find("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"), std::string::npos) << ok;
  EXPECT_NE(ok.find("\r\nContent-Length: " + std::to_string(body.size()) + "\r\n"), std::string::npos) << ok;
  ASSERT_NE(ok.find("\r\n\r\n"), std::string::npos);
  EXPECT_EQ(ok.substr(ok.find("\r\n\r\n") + 4), body);
  EXPECT_EQ(snapshot.calls.load(), 1);

  const std::string head = Exchange(server.port(), Request("HEAD", "/metrics"));
  EXPECT_TRUE(head.starts_with("HTTP/1.1 200 ")) << head;
  EXPECT_TRUE(head.ends_with("\r\n\r\n")) << "HEAD answers headers only: " << head;

  const std::string other = Exchange(server.port(), Request("GET", "/other"));
  EXPECT_TRUE(other.starts_with("HTTP/1.1 404 ")) << other;
  EXPECT_NE(other.find("serves only /metrics"), std::string::npos) << other;
  EXPECT_TRUE(Exchange(server.port(), Request("GET", "/metrics/x")).starts_with("HTTP/1.1 404 "));
  EXPECT_TRUE(Exchange(server.port(), Request("GET", "/")).starts_with("HTTP/1.1 404 "));

  const std::string post = Exchange(server.port(),
                                    "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                                    "Connection: close\r\n\r\nabc");
  EXPECT_TRUE(post.starts_with("HTTP/1.1 405 ")) << post;
  EXPECT_NE(post.find("\r\nAllow: GET, HEAD\r\n"), std::string::npos) << post;
  EXPECT_EQ(snapshot.calls.load(), 2);  // the GET and the HEAD, nothing else
}

TEST(AgentMetricsServerTest, RefusesOversizedRequests) {
  ServedSnapshot snapshot;
  AgentMetricsServerOptions options;
  options.listen = "127.0.0.1:0";
  options.max_request_bytes = 2048;
  std::unique_ptr<AgentMetricsServer> server = StartOrDie(options, snapshot.fn());
  ASSERT_NE(server, nullptr);
  const std::string big = "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: " + std::string(4096, 'a') + "\r\n\r\n";
  const std::string answer = Exchange(server->port(), big);
  EXPECT_FALSE(answer.starts_with("HTTP/1.1 200 ")) << answer;
  EXPECT_EQ(snapshot.calls.load(), 0);
  // The server is still there.
  EXPECT_EQ(testing::HttpGet(server->port(), "/metrics").status, 200);
}

TEST(AgentMetricsServerTest, SurvivesClientsThatSendNothing) {
  ServedSnapshot snapshot;
  AgentMetricsServerOptions options;
  options.listen = "127.0.0.1:0";
  options.threads = 2;
  options.request_timeout = milliseconds(1500);
  std::unique_ptr<AgentMetricsServer> server = StartOrDie(options, snapshot.fn());
  ASSERT_NE(server, nullptr);

  // One silent socket holds one worker; the other answers at once.
  const int silent = testing::ConnectLoopback(server->port());
  ASSERT_GE(silent, 0);
  auto start = steady_clock::now();
  EXPECT_EQ(testing::HttpGet(server->port(), "/metrics").status, 200);
  EXPECT_LT(steady_clock::now() - start, milliseconds(750));  // blocked, it would take 1.5 s

  // More silent sockets than workers: a scrape waits for request timeouts
  // (two rounds of two here), after which civetweb closes the silent ones.
  std::vector<int> more;
  for (int i = 0; i < 4; ++i) more.push_back(testing::ConnectLoopback(server->port()));
  start = steady_clock::now();
  EXPECT_EQ(testing::HttpGet(server->port(), "/metrics").status, 200);
  EXPECT_LT(steady_clock::now() - start, milliseconds(5000));

  // The server closed the first silent socket: reading it ends.
  pollfd p{silent, POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 5000), 1);
  char c;
  EXPECT_LE(read(silent, &c, 1), 0);
  close(silent);
  for (int fd : more) close(fd);
}

TEST(AgentMetricsServerTest, TakenPortIsAnError) {
  ServedSnapshot snapshot;
  std::unique_ptr<AgentMetricsServer> first = StartOrDie({.listen = "127.0.0.1:0"}, snapshot.fn());
  ASSERT_NE(first, nullptr);
  absl::StatusOr<std::unique_ptr<AgentMetricsServer>> second =
      AgentMetricsServer::Start("127.0.0.1:" + std::to_string(first->port()), snapshot.fn());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(second.status().message().find("--metrics-listen"), std::string_view::npos) << second.status();
  EXPECT_EQ(AgentMetricsServer::Start("nowhere:1", snapshot.fn()).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(AgentMetricsServerTest, StopsQuickly) {
  ServedSnapshot snapshot;
  std::unique_ptr<AgentMetricsServer> server = StartOrDie({.listen = "127.0.0.1:0"}, snapshot.fn());
  ASSERT_NE(server, nullptr);
  const int port = server->port();
  EXPECT_EQ(testing::HttpGet(port, "/metrics").status, 200);
  const auto start = steady_clock::now();
  server.reset();
  // civetweb alone takes up to 2 s (its listener's poll); woken, far less.
  EXPECT_LT(steady_clock::now() - start, milliseconds(1000));
  EXPECT_EQ(testing::ConnectLoopback(port), -1);
}

TEST(AgentMetricsServerTest, SnapshotExceptionAnswers500) {
  std::unique_ptr<AgentMetricsServer> server = StartOrDie(
      {.listen = "127.0.0.1:0"}, []() -> AgentMetricsSnapshot { throw std::runtime_error("snapshot failed"); });
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(testing::HttpGet(server->port(), "/metrics").status, 500);
  EXPECT_EQ(testing::HttpGet(server->port(), "/other").status, 404);
}

}  // namespace
}  // namespace sheaf::agent
