// The web console's server side: the agent registry (bounds, rate,
// behind, rejections) and, on an in-process daemon, the pages, the
// embedded files (content types, ETag and 304, CSP), the redirect and the
// JSON endpoints /api/v1/status/{agents,sheaf,tsdb}. The pages themselves
// run in a real browser in tests/e2e/console_browser_test.py.
#include "daemon/agent_registry.h"

#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "tests/daemon/daemon_fixture.h"
#include "tests/support/net.h"

namespace sheaf::daemon {
namespace {

TEST(AgentRegistryTest, KeepsRateSequenceRejectionsAndBehind) {
  int64_t now = 1'000'000;
  AgentRegistryOptions options;
  options.now_ms = [&] { return now; };
  AgentRegistry registry(options);
  registry.Applied("a", "ipv4:10.0.0.1:5000", "web-1", 7, 600, now - 1000);
  now += 30'000;
  registry.Applied("a", "ipv4:10.0.0.1:5001", "", 8, 600, now - 120'000);  // two minutes old: spooled
  registry.Rejected("a", "too_old", 3);
  registry.Rejected("a", "too_old", 2);
  auto agents = registry.Agents();
  ASSERT_EQ(agents.size(), 1u);
  const AgentInfo& a = agents[0];
  EXPECT_EQ(a.address, "ipv4:10.0.0.1:5001");
  EXPECT_EQ(a.host, "web-1");
  EXPECT_EQ(a.last_sequence, 8u);
  EXPECT_EQ(a.batches, 2u);
  EXPECT_EQ(a.samples, 1200u);
  EXPECT_TRUE(a.behind);
  EXPECT_EQ(a.rejected_samples.at("too_old"), 5u);
  EXPECT_DOUBLE_EQ(a.samples_per_second, 1200.0 / 30.0);  // 30 s since its first push
  now += 31'000;  // the first push leaves the 60 s window
  EXPECT_DOUBLE_EQ(registry.SamplesPerSecond(), 600.0 / 60.0);
  now += 60'000;
  EXPECT_EQ(registry.SamplesPerSecond(), 0);
  registry.Applied("a", "ipv4:10.0.0.1:5001", "", 9, 1, now);
  EXPECT_FALSE(registry.Agents()[0].behind);
}

TEST(AgentRegistryTest, ForgetsTheAgentThatPushedLongestAgoPastTheBound) {
  int64_t now = 1'000'000;
  AgentRegistryOptions options;
  options.max_agents = 2;
  options.now_ms = [&] { return now; };
  AgentRegistry registry(options);
  registry.Applied("old", "x", "", 1, 1, now);
  now += 1000;
  registry.Applied("new", "x", "", 1, 1, now);
  now += 1000;
  registry.Applied("old", "x", "", 2, 1, now);  // now "new" pushed longest ago
  now += 1000;
  registry.Applied("third", "x", "", 1, 1, now);
  auto agents = registry.Agents();
  ASSERT_EQ(agents.size(), 2u);
  EXPECT_EQ(agents[0].id, "old");
  EXPECT_EQ(agents[1].id, "third");
  EXPECT_EQ(registry.forgotten(), 1u);
}

// One raw request with `headers`, "Connection: close"; the whole answer.
std::string RawGet(int port, const std::string& path, const std::string& headers = "") {
  int fd = testing::ConnectLoopback(port);
  if (fd < 0) return "";
  timeval timeout{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  const std::string request = "GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + headers + "\r\n";
  if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) < 0) {
    close(fd);
    return "";
  }
  std::string out;
  char buf[65536];
  for (ssize_t n; (n = recv(fd, buf, sizeof(buf), 0)) > 0;) out.append(buf, static_cast<size_t>(n));
  close(fd);
  return out;
}

std::string HeaderValue(const std::string& answer, const std::string& name) {
  const size_t at = answer.find("\r\n" + name + ": ");
  if (at == std::string::npos) return "";
  const size_t start = at + name.size() + 4;
  return answer.substr(start, answer.find("\r\n", start) - start);
}

class ConsoleTest : public DaemonTest {};

TEST_F(ConsoleTest, RedirectsServesPagesAndEmbeddedFiles) {
  const int port = daemon_->http_port();
  std::string r = RawGet(port, "/");
  EXPECT_TRUE(r.starts_with("HTTP/1.1 302")) << r;
  EXPECT_EQ(HeaderValue(r, "Location"), "/graph");

  for (const char* page : {"/graph", "/series", "/agents", "/status", "/tail"}) {
    r = RawGet(port, page);
    EXPECT_TRUE(r.starts_with("HTTP/1.1 200")) << page << ": " << r.substr(0, 200);
    EXPECT_EQ(HeaderValue(r, "Content-Type"), "text/html; charset=utf-8") << page;
    EXPECT_TRUE(HeaderValue(r, "Content-Security-Policy").starts_with("default-src 'self'")) << page;
    EXPECT_NE(r.find("<script src=\"/console/console.js\""), std::string::npos) << page;
  }

  r = RawGet(port, "/console/chart.min.js");
  EXPECT_TRUE(r.starts_with("HTTP/1.1 200")) << r.substr(0, 200);
  EXPECT_EQ(HeaderValue(r, "Content-Type"), "text/javascript; charset=utf-8");
  EXPECT_EQ(HeaderValue(r, "Cache-Control"), "no-cache");
  EXPECT_NE(r.find("Chart.js v3.9.1"), std::string::npos);  // Debian's file, byte for byte
  EXPECT_GT(r.size(), 150'000u);
  const std::string etag = HeaderValue(r, "ETag");
  ASSERT_FALSE(etag.empty());
  r = RawGet(port, "/console/chart.min.js", "If-None-Match: " + etag + "\r\n");
  EXPECT_TRUE(r.starts_with("HTTP/1.1 304")) << r.substr(0, 200);
  EXPECT_EQ(r.find("Chart.js"), std::string::npos);
  r = RawGet(port, "/console/chart.min.js", "If-None-Match: \"stale\"\r\n");
  EXPECT_TRUE(r.starts_with("HTTP/1.1 200"));

  EXPECT_EQ(HeaderValue(RawGet(port, "/console/console.css"), "Content-Type"), "text/css; charset=utf-8");
  EXPECT_EQ(testing::HttpGet(port, "/console/nope.js").status, 404);
}

TEST_F(ConsoleTest, StatusEndpointsShowAgentsStorageAndCardinality) {
  v1::PushAck ack;
  ASSERT_TRUE(Push({Batch("agent-7", 3,
                          {MakeSeries({{"__name__", "m"}, {"host", "h1"}}, v1::METRIC_TYPE_GAUGE, {{kNow, 1}}),
                           MakeSeries({{"__name__", "m"}, {"host", "h2"}}, v1::METRIC_TYPE_GAUGE, {{kNow, 2}}),
                           MakeSeries({{"__name__", "n"}, {"host", "h1"}}, v1::METRIC_TYPE_GAUGE, {{kNow, 3}})})},
                   &ack)
                  .ok());
  const int port = daemon_->http_port();
  auto agents = testing::HttpGet(port, "/api/v1/status/agents");
  EXPECT_EQ(agents.status, 200);
  EXPECT_NE(agents.body.find(R"({"status":"success","data":[{"id":"agent-7","address":")"), std::string::npos)
      << agents.body;
  EXPECT_NE(agents.body.find(R"("host":"h1","firstPush":)"), std::string::npos) << agents.body;
  EXPECT_NE(agents.body.find(R"("lastSequence":3,"batches":1,"samples":3,)"), std::string::npos) << agents.body;

  auto status = testing::HttpGet(port, "/api/v1/status/sheaf");
  EXPECT_EQ(status.status, 200);
  EXPECT_NE(status.body.find(R"("storage":{"series":3,"samples":3,)"), std::string::npos) << status.body;
  EXPECT_NE(status.body.find(R"("columnFamilyBytes":{)"), std::string::npos) << status.body;
  EXPECT_NE(status.body.find(R"("agentsSinceStart":1)"), std::string::npos) << status.body;

  auto tsdb = testing::HttpGet(port, "/api/v1/status/tsdb?limit=1");
  EXPECT_EQ(tsdb.status, 200);
  EXPECT_NE(tsdb.body.find(R"("seriesCountByMetricName":[{"name":"m","value":2}],)"), std::string::npos)
      << tsdb.body;
  EXPECT_NE(tsdb.body.find(R"("labelValueCountByLabelName":[{"name":"__name__","value":2}],)"), std::string::npos)
      << tsdb.body;
  EXPECT_EQ(testing::HttpGet(port, "/api/v1/status/tsdb?limit=x").status, 400);
}

TEST_F(ConsoleTest, TailStreamsStoredSamplesAsServerSentEvents) {
  const int port = daemon_->http_port();
  auto bad = testing::HttpGet(port, "/api/v1/tail?match=m%7B");  // "m{"
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.body.find("match: 1:3: unexpected end of input"), std::string::npos) << bad.body;
  EXPECT_EQ(testing::HttpGet(port, "/api/v1/tail").status, 400);

  testing::RawHttpStream tail(port, "GET /api/v1/tail?match=m%7Bhost%3D%22h2%22%7D HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(tail.sent());
  const std::string& got = tail.received();
  ASSERT_TRUE(tail.ReadUntil(": sheafd tail\n\n")) << got;
  EXPECT_TRUE(got.starts_with("HTTP/1.1 200")) << got;
  EXPECT_EQ(HeaderValue(got, "Content-Type"), "text/event-stream; charset=utf-8");
  EXPECT_EQ(HeaderValue(got, "Content-Length"), "");
  v1::PushAck ack;
  ASSERT_TRUE(Push({Batch("agent-1", 1,
                          {MakeSeries({{"__name__", "m"}, {"host", "h1"}}, v1::METRIC_TYPE_GAUGE, {{kNow, 1}}),
                           MakeSeries({{"__name__", "m"}, {"host", "h2"}}, v1::METRIC_TYPE_GAUGE,
                                      {{kNow, 2.5}, {kNow + 1000, 3}})})},
                   &ack)
                  .ok());
  ASSERT_TRUE(tail.ReadUntil("}]}\n\n")) << got;
  EXPECT_NE(got.find(R"(data: {"missed":0,"series":[{"labels":{"__name__":"m","host":"h2"},"samples":[[1.8e+09,2.5],[1.800000001e+09,3]]}]})"
                     "\n\n"),
            std::string::npos)
      << got;
  EXPECT_EQ(got.find("h1"), std::string::npos);  // not selected
  EXPECT_EQ(daemon_->tail_stats().subscribers, 1u);
  tail.Close();
  // The stream notices the client left at its next write (at most the 10 s keepalive) and leaves the hub;
  // shutting down with it open must not wait for that.
  const auto stop_started = std::chrono::steady_clock::now();
  daemon_->Shutdown();
  EXPECT_LT(std::chrono::steady_clock::now() - stop_started, std::chrono::seconds(3));
}

}  // namespace
}  // namespace sheaf::daemon
