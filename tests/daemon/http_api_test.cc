// The Prometheus HTTP query API of an in-process sheafd: exact JSON for
// each answer shape (vector, matrix, scalar, string; series, labels, label
// values), GET and form POST alike, and every error type with its HTTP
// code (400 bad_data, 422 execution, 503 timeout and unavailable, 404
// not_found, 413). tests/e2e/http_api_compat_test.py compares the same
// endpoints with a real Prometheus.
#include "daemon/http_api.h"

#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "common/json_writer.h"
#include "tests/daemon/daemon_fixture.h"
#include "tests/support/net.h"

namespace sheaf::daemon {
namespace {

// kNow (1800000000000 ms) in the API's seconds.
constexpr char kNowSeconds[] = "1800000000";

std::string Encode(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

// "a=1&b=2" with the values encoded.
std::string Form(const std::vector<std::pair<std::string, std::string>>& params) {
  std::string out;
  for (const auto& [name, value] : params) out += (out.empty() ? "" : "&") + Encode(name) + "=" + Encode(value);
  return out;
}

// POST with a form body over a fresh connection, as HttpGet does for GET.
testing::HttpResponse HttpPostForm(int port, const std::string& path, const std::string& form) {
  testing::HttpResponse out;
  int fd = testing::ConnectLoopback(port);
  if (fd < 0) return out;
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  const std::string request = fmt::format(
      "POST {} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: "
      "application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{}",
      path, form.size(), form);
  std::string raw;
  if (write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
    char buf[65536];
    for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;) raw.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  const size_t space = raw.find(' '), end = raw.find("\r\n\r\n");
  if (space == std::string::npos || end == std::string::npos) return out;
  out.status = std::atoi(raw.c_str() + space + 1);
  out.body = raw.substr(end + 4);
  return out;
}

class HttpApiTest : public DaemonTest {
 protected:
  void SetUp() override {
    DaemonConfig config;
    Configure(&config);
    Start(config);
    v1::PushAck ack;
    ASSERT_TRUE(
        Push({Batch("agent-1", 1,
                    {MakeSeries({{"__name__", "up"}, {"job", "a"}}, v1::METRIC_TYPE_GAUGE,
                                {{kNow - 60'000, 1}, {kNow - 30'000, 0.25}}),
                     MakeSeries({{"__name__", "up"}, {"job", "b"}}, v1::METRIC_TYPE_GAUGE, {{kNow - 60'000, 2}}),
                     MakeSeries({{"__name__", "temp"}, {"room", "lab \"1\""}}, v1::METRIC_TYPE_GAUGE,
                                {{kNow - 10'000, -3.5}})})},
             &ack)
            .ok());
  }
  virtual void Configure(DaemonConfig*) {}

  testing::HttpResponse Get(const std::string& path, const std::vector<std::pair<std::string, std::string>>& params) {
    return testing::HttpGet(daemon_->http_port(), path + "?" + Form(params));
  }
};

TEST_F(HttpApiTest, InstantVectorIsPrometheusJsonByteForByte) {
  auto r = Get("/api/v1/query", {{"query", "up"}, {"time", "1800000000.5"}});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, R"({"status":"success","data":{"resultType":"vector","result":[)"
                    R"({"metric":{"__name__":"up","job":"a"},"value":[1800000000.500,"0.25"]},)"
                    R"({"metric":{"__name__":"up","job":"b"},"value":[1800000000.500,"2"]}]}})");
  // Values as Prometheus writes them: "+Inf", no exponent; label values escaped.
  r = Get("/api/v1/query", {{"query", "up{job=\"a\"} / 0 or temp * 1e6"}, {"time", kNowSeconds}});
  EXPECT_EQ(Get("/api/v1/query", {{"query", "up{job=\"a\"} / 0 or temp * 1e6"}, {"time", "2027-01-15T08:00:00Z"}}).body,
            r.body);
  EXPECT_EQ(r.body, R"({"status":"success","data":{"resultType":"vector","result":[)"
                    R"({"metric":{"job":"a"},"value":[1800000000,"+Inf"]},)"
                    R"({"metric":{"room":"lab \"1\""},"value":[1800000000,"-3500000"]}]}})");
}

TEST_F(HttpApiTest, RangeScalarStringAndMatrixShapes) {
  auto r = Get("/api/v1/query_range",
               {{"query", "up{job=\"a\"}"}, {"start", "1799999940"}, {"end", kNowSeconds}, {"step", "30s"}});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body,
            R"({"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"a"},)"
            R"("values":[[1799999940,"1"],[1799999970,"0.25"],[1800000000,"0.25"]]}]}})");
  // A scalar over a range is a matrix of one series without labels; the
  // step as float seconds, the times as RFC 3339 with an offset.
  r = Get(
      "/api/v1/query_range",
      {{"query", "1.5"}, {"start", "2027-01-15T09:00:00+01:00"}, {"end", "2027-01-15T08:00:30.000Z"}, {"step", "30"}});
  EXPECT_EQ(r.body, R"({"status":"success","data":{"resultType":"matrix","result":[{"metric":{},)"
                    R"("values":[[1800000000,"1.5"],[1800000030,"1.5"]]}]}})");
  r = Get("/api/v1/query", {{"query", "1.5"}, {"time", kNowSeconds}});
  EXPECT_EQ(r.body, R"({"status":"success","data":{"resultType":"scalar","result":[1800000000,"1.5"]}})");
  r = Get("/api/v1/query", {{"query", "\"hi\""}, {"time", "1800000000.001"}});
  EXPECT_EQ(r.body, R"({"status":"success","data":{"resultType":"string","result":[1800000000.001,"hi"]}})");
  r = Get("/api/v1/query", {{"query", "up{job=\"b\"}[2m]"}, {"time", kNowSeconds}});
  EXPECT_EQ(r.body, R"({"status":"success","data":{"resultType":"matrix","result":[{"metric":)"
                    R"({"__name__":"up","job":"b"},"values":[[1799999940,"2"]]}]}})");
}

TEST_F(HttpApiTest, FormPostAnswersAsGet) {
  const std::vector<std::pair<std::string, std::string>> params = {
      {"query", "sum(up)"}, {"start", "1799999940"}, {"end", kNowSeconds}, {"step", "1m"}};
  auto get = Get("/api/v1/query_range", params);
  auto post = HttpPostForm(daemon_->http_port(), "/api/v1/query_range", Form(params));
  EXPECT_EQ(get.status, 200);
  EXPECT_EQ(post.status, 200);
  EXPECT_EQ(post.body, get.body);
  EXPECT_EQ(post.body, R"({"status":"success","data":{"resultType":"matrix","result":[{"metric":{},)"
                       R"("values":[[1799999940,"3"],[1800000000,"2.25"]]}]}})");
}

TEST_F(HttpApiTest, BadDataIs400WithPrometheusMessages) {
  auto expect = [&](const std::string& path, const std::vector<std::pair<std::string, std::string>>& params,
                    const std::string& message) {
    auto r = Get(path, params);
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_EQ(r.body, R"({"status":"error","errorType":"bad_data","error":)" + JsonWriter::Quote(message) + "}");
  };
  expect("/api/v1/query", {{"query", "up"}, {"time", "abc"}},
         "invalid parameter \"time\": cannot parse \"abc\" to a valid timestamp");
  expect("/api/v1/query_range", {{"query", "up"}, {"end", kNowSeconds}, {"step", "15s"}},
         "invalid parameter \"start\": cannot parse \"\" to a valid timestamp");
  expect("/api/v1/query_range", {{"query", "up"}, {"start", "10"}, {"end", "5"}, {"step", "15s"}},
         "end timestamp must not be before start time");
  expect("/api/v1/query_range", {{"query", "up"}, {"start", "0"}, {"end", "5"}, {"step", "x"}},
         "invalid parameter \"step\": cannot parse \"x\" to a valid duration");
  expect("/api/v1/query_range", {{"query", "up"}, {"start", "0"}, {"end", "5"}, {"step", "0"}},
         "zero or negative query resolution step widths are not accepted. Try a positive integer");
  expect("/api/v1/query_range", {{"query", "up"}, {"start", "0"}, {"end", "11001"}, {"step", "1"}},
         "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution "
         "(?step=XX)");
  expect("/api/v1/series", {}, "no match[] parameter provided");
  expect("/api/v1/series", {{"match[]", "{job=~\".*\"}"}},
         "1:1: vector selector must contain at least one non-empty matcher");
  expect("/api/v1/label/1bad/values", {}, "invalid label name: \"1bad\"");
  // 11,000 points are allowed (Prometheus also allows 11,001: HTTP_API.md).
  EXPECT_EQ(Get("/api/v1/query_range", {{"query", "up"}, {"start", "0"}, {"end", "10999"}, {"step", "1"}}).status, 200);
  auto r = Get("/api/v1/query", {{"query", "sum(up"}, {"time", kNowSeconds}});
  EXPECT_EQ(r.status, 400);
  EXPECT_TRUE(r.body.starts_with(R"({"status":"error","errorType":"bad_data","error":")")) << r.body;
}

TEST_F(HttpApiTest, ExecutionErrorsAre422AndUnknownEndpoints404) {
  // Many-to-many matching: the data makes it impossible, not the text.
  auto r = Get("/api/v1/query", {{"query", "up + on() group_left up"}, {"time", kNowSeconds}});
  EXPECT_EQ(r.status, 422) << r.body;
  EXPECT_TRUE(r.body.starts_with(R"({"status":"error","errorType":"execution","error":")")) << r.body;
  r = Get("/api/v1/nope", {});
  EXPECT_EQ(r.status, 404);
  EXPECT_TRUE(
      r.body.starts_with(R"({"status":"error","errorType":"not_found","error":"unknown API endpoint /api/v1/nope)"))
      << r.body;
  EXPECT_EQ(Get("/api/v1/label/job/nope", {}).status, 404);
  // Parameters past 1 MiB: 413.
  r = HttpPostForm(daemon_->http_port(), "/api/v1/query", Form({{"query", std::string(1 << 20, 'x')}}));
  EXPECT_EQ(r.status, 413);
  EXPECT_TRUE(r.body.starts_with(R"({"status":"error","errorType":"bad_data")")) << r.body;
}

TEST_F(HttpApiTest, TimeoutIs503) {
  // A 1 ms timeout on 11,000 steps of a 3,600-point subquery (~200 ms):
  // the evaluation polls the deadline between the operands.
  auto r = Get("/api/v1/query_range", {{"query", "sum_over_time(vector(1)[1h:1s]) + sum_over_time(vector(2)[1h:1s])"},
                                       {"start", "0"},
                                       {"end", "10999"},
                                       {"step", "1"},
                                       {"timeout", "1ms"}});
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_TRUE(r.body.starts_with(R"({"status":"error","errorType":"timeout","error":"query timed out)")) << r.body;
  EXPECT_EQ(Get("/api/v1/query", {{"query", "up"}, {"timeout", "soon"}}).status, 400);
}

TEST_F(HttpApiTest, SeriesLabelsAndValues) {
  auto r = Get("/api/v1/series", {{"match[]", "up"}, {"match[]", "{room=~\"lab.*\"}"}});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, R"({"status":"success","data":[{"__name__":"temp","room":"lab \"1\""},)"
                    R"({"__name__":"up","job":"a"},{"__name__":"up","job":"b"}]})");
  // A time range keeps the series with a sample in it.
  r = Get("/api/v1/series", {{"match[]", "{__name__=~\".+\"}"}, {"start", "1799999980"}, {"end", kNowSeconds}});
  EXPECT_EQ(r.body, R"({"status":"success","data":[{"__name__":"temp","room":"lab \"1\""}]})");
  r = Get("/api/v1/series", {{"match[]", "up"}, {"limit", "1"}});
  EXPECT_EQ(r.body, R"({"status":"success","data":[{"__name__":"up","job":"a"}],)"
                    R"("warnings":["results truncated due to limit"]})");
  EXPECT_EQ(Get("/api/v1/labels", {}).body, R"({"status":"success","data":["__name__","job","room"]})");
  EXPECT_EQ(Get("/api/v1/labels", {{"match[]", "up"}}).body, R"({"status":"success","data":["__name__","job"]})");
  EXPECT_EQ(Get("/api/v1/label/__name__/values", {}).body, R"({"status":"success","data":["temp","up"]})");
  EXPECT_EQ(Get("/api/v1/label/job/values", {{"match[]", "up{job=\"b\"}"}}).body,
            R"({"status":"success","data":["b"]})");
  EXPECT_EQ(Get("/api/v1/label/nothing/values", {}).body, R"({"status":"success","data":[]})");
}

TEST_F(HttpApiTest, StatusMetadataAndFormatQuery) {
  EXPECT_EQ(Get("/api/v1/metadata", {}).body, R"({"status":"success","data":{}})");
  auto r = Get("/api/v1/status/buildinfo", {});
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.body.starts_with(R"({"status":"success","data":{"version":")")) << r.body;
  r = Get("/api/v1/status/runtimeinfo", {});
  EXPECT_NE(r.body.find(R"("reloadConfigSuccess":true)"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find(R"("storageRetention":"15d")"), std::string::npos) << r.body;  // --raw-retention
  r = Get("/api/v1/format_query", {{"query", "sum by(job)(rate(up[5m]))"}});
  EXPECT_EQ(r.body, R"j({"status":"success","data":"sum by (job) (rate(up[5m]))"})j");
}

class HttpApiBusyTest : public HttpApiTest {
  void Configure(DaemonConfig* config) override {
    config->query.max_concurrent_queries = 0;
    config->query.promql.limits.max_points = 1;
  }
};

TEST_F(HttpApiBusyTest, NoFreeSlotIs503Unavailable) {
  auto r = Get("/api/v1/query", {{"query", "up"}, {"time", kNowSeconds}});
  EXPECT_EQ(r.status, 503);
  EXPECT_TRUE(r.body.starts_with(R"({"status":"error","errorType":"unavailable","error":"0 PromQL queries)")) << r.body;
}

class HttpApiLimitTest : public HttpApiTest {
  void Configure(DaemonConfig* config) override { config->query.promql.limits.max_points = 1; }
};

TEST_F(HttpApiLimitTest, AnEngineLimitIs422Execution) {
  auto r = Get("/api/v1/query", {{"query", "up"}, {"time", kNowSeconds}});
  EXPECT_EQ(r.status, 422) << r.body;
  EXPECT_TRUE(r.body.starts_with(R"({"status":"error","errorType":"execution")")) << r.body;
}

TEST(HttpApiParseTest, TimesDurationsAndTheirFormat) {
  EXPECT_EQ(*ParseApiTime("1435781451.781"), 1435781451781);
  EXPECT_EQ(*ParseApiTime("1435781451"), 1435781451000);
  EXPECT_EQ(*ParseApiTime("-1.5"), -1500);
  EXPECT_EQ(*ParseApiTime("2015-07-01T20:10:51.781Z"), 1435781451781);
  EXPECT_EQ(*ParseApiTime("2015-07-01T22:10:51.7819+02:00"), 1435781451781);
  EXPECT_FALSE(ParseApiTime("2015-07-01 20:10:51Z").ok());
  EXPECT_FALSE(ParseApiTime("2015-02-30T20:10:51Z").ok());
  EXPECT_FALSE(ParseApiTime("NaN").ok());
  EXPECT_FALSE(ParseApiTime("").ok());
  EXPECT_EQ(*ParseApiDuration("15s"), 15'000);
  EXPECT_EQ(*ParseApiDuration("1m30s"), 90'000);
  EXPECT_EQ(*ParseApiDuration("0.5"), 500);
  EXPECT_FALSE(ParseApiDuration("1x").ok());
  EXPECT_EQ(FormatApiTime(1435781451781), "1435781451.781");
  EXPECT_EQ(FormatApiTime(1435781451080), "1435781451.080");
  EXPECT_EQ(FormatApiTime(1435781451000), "1435781451");
  EXPECT_EQ(FormatApiTime(-1500), "-1.500");
}

}  // namespace
}  // namespace sheaf::daemon
