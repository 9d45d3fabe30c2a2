// POST /api/v1/read (Prometheus remote read, SAMPLES) of an in-process
// sheafd over real sockets: requests built with our ReadRequest messages
// and snappy, as Prometheus sends them. Proves: the four matcher kinds with
// anchored regexes; inclusive time ranges, empty answers and several
// queries in one request; labels sorted bytewise and series by label set;
// the stale marker bit for bit; the limits (series, samples, slots,
// timeout) and malformed input, each with its code and message; the
// answer's headers and the request metrics. tests/e2e/remote_read_e2e_test.py
// runs a real Prometheus against two sheafd.
#include "daemon/remote_read.h"

#include <fmt/format.h>
#include <snappy.h>

#include <bit>
#include <cstring>
#include <string>
#include <vector>

#include "common/work_queue.h"
#include "daemon/query_service.h"
#include "prometheus/remote.pb.h"
#include "storage/series_store.h"
#include "tests/daemon/daemon_fixture.h"
#include "tests/support/net.h"

namespace sheaf::daemon {
namespace {

constexpr uint64_t kStaleBits = 0x7ff0000000000002ull;

struct Matcher {
  prompb::LabelMatcher::Type type;
  std::string name, value;
};

struct ReadQuery {
  int64_t start, end;
  std::vector<Matcher> matchers;
};

std::string Compress(const std::string& raw) {
  std::string out;
  snappy::Compress(raw.data(), raw.size(), &out);
  return out;
}

std::string Encode(const std::vector<ReadQuery>& queries, std::vector<prompb::ReadRequest::ResponseType> accepted = {}) {
  prompb::ReadRequest request;
  for (const ReadQuery& q : queries) {
    prompb::Query* out = request.add_queries();
    out->set_start_timestamp_ms(q.start);
    out->set_end_timestamp_ms(q.end);
    for (const Matcher& m : q.matchers) {
      prompb::LabelMatcher* lm = out->add_matchers();
      lm->set_type(m.type);
      lm->set_name(m.name);
      lm->set_value(m.value);
    }
    out->mutable_hints()->set_step_ms(15'000);  // Prometheus sends hints; they change nothing
    out->mutable_hints()->set_func("rate");
  }
  for (auto t : accepted) request.add_accepted_response_types(t);
  return request.SerializeAsString();
}

using Reply = testing::RawHttpReply;

// POST `body` to /api/v1/read as Prometheus' remote-read client does, over
// a fresh connection, bounded to 10 s.
Reply Post(int port, const std::string& body, const std::string& accept_encoding = "snappy") {
  return testing::RawHttpExchange(
      port, testing::RawPostRequest("/api/v1/read",
                                    {"Content-Encoding: snappy", fmt::format("Accept-Encoding: {}", accept_encoding),
                                     "Content-Type: application/x-protobuf", "X-Prometheus-Remote-Read-Version: 0.1.0"},
                                    body));
}

// A series as "name=value,..." and its samples.
struct Got {
  std::string labels;
  std::vector<std::pair<int64_t, double>> samples;
  bool operator==(const Got&) const = default;
};
using Results = std::vector<std::vector<Got>>;  // by query

class RemoteReadTest : public DaemonTest {
 protected:
  void SetUp() override {
    DaemonConfig config;
    Configure(&config);
    Start(config);
    v1::PushAck ack;
    ASSERT_TRUE(Push({Batch("agent-1", 1,
                            {MakeSeries({{"__name__", "cpu"}, {"host", "web-1"}, {"region", "eu"}},
                                        v1::METRIC_TYPE_GAUGE, {{kNow - 60'000, 1}, {kNow - 30'000, 2}, {kNow, 3}}),
                             MakeSeries({{"__name__", "cpu"}, {"host", "web-10"}, {"region", "eu"}},
                                        v1::METRIC_TYPE_GAUGE, {{kNow - 60'000, 10}}),
                             MakeSeries({{"__name__", "cpu"}, {"host", "db-1"}, {"region", "us"}, {"Zone", "b"}},
                                        v1::METRIC_TYPE_GAUGE, {{kNow - 30'000, 0.5}}),
                             MakeSeries({{"__name__", "mem"}, {"host", "web-1"}}, v1::METRIC_TYPE_GAUGE,
                                        {{kNow - 30'000, 7}})})},
                     &ack)
                    .ok());
  }
  virtual void Configure(DaemonConfig*) {}

  Reply Read(const std::vector<ReadQuery>& queries) { return Post(daemon_->http_port(), Compress(Encode(queries))); }

  // The answer decoded; fails the test unless it is a 200 ReadResponse.
  Results Decode(const Reply& r) {
    Results out;
    EXPECT_EQ(r.status, 200) << r.body;
    std::string raw;
    if (!snappy::Uncompress(r.body.data(), r.body.size(), &raw)) {
      ADD_FAILURE() << "answer is not snappy";
      return out;
    }
    prompb::ReadResponse response;
    if (!response.ParseFromString(raw)) {
      ADD_FAILURE() << "answer is not a ReadResponse";
      return out;
    }
    for (const prompb::QueryResult& result : response.results()) {
      std::vector<Got>& series = out.emplace_back();
      for (const prompb::TimeSeries& ts : result.timeseries()) {
        Got g;
        for (const prompb::Label& l : ts.labels()) g.labels += (g.labels.empty() ? "" : ",") + l.name() + "=" + l.value();
        for (const prompb::Sample& s : ts.samples()) g.samples.emplace_back(s.timestamp(), s.value());
        series.push_back(std::move(g));
      }
    }
    return out;
  }

  // The label sets one query answers, in order.
  std::vector<std::string> Names(std::vector<Matcher> matchers) {
    Results r = Decode(Read({{kNow - 3'600'000, kNow, std::move(matchers)}}));
    std::vector<std::string> out;
    if (r.size() != 1) {
      ADD_FAILURE() << r.size() << " results";
      return out;
    }
    for (const Got& g : r[0]) out.push_back(g.labels);
    return out;
  }

  std::string Metrics() { return testing::HttpGet(daemon_->http_port(), "/metrics").body; }
};

using LM = prompb::LabelMatcher;

TEST_F(RemoteReadTest, AnswersSnappyProtobufWithSortedLabelsAndSamplesInTimeOrder) {
  Reply r = Read({{kNow - 3'600'000, kNow, {{LM::EQ, "__name__", "cpu"}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.head.find("Content-Type: application/x-protobuf"), std::string::npos) << r.head;
  EXPECT_NE(r.head.find("Content-Encoding: snappy"), std::string::npos) << r.head;
  // Labels bytewise by name ("Zone" < "__name__", as Prometheus sorts),
  // series by label set.
  EXPECT_EQ(Decode(r), (Results{{
                           {"Zone=b,__name__=cpu,host=db-1,region=us", {{kNow - 30'000, 0.5}}},
                           {"__name__=cpu,host=web-1,region=eu", {{kNow - 60'000, 1}, {kNow - 30'000, 2}, {kNow, 3}}},
                           {"__name__=cpu,host=web-10,region=eu", {{kNow - 60'000, 10}}},
                       }}));
}

TEST_F(RemoteReadTest, ClientTakingGzipStillGetsSnappyAlone) {
  std::vector<v1::Series> many;
  for (int i = 0; i < 500; ++i) {
    many.push_back(
        MakeSeries({{"__name__", "big"}, {"i", std::to_string(i)}}, v1::METRIC_TYPE_GAUGE, {{kNow - i, i / 7.0}}));
  }
  v1::PushAck ack;
  ASSERT_TRUE(Push({Batch("agent-1", 2, std::move(many))}, &ack).ok());
  const std::string request = Compress(Encode({{kNow - 60'000, kNow, {{LM::EQ, "__name__", "big"}}}}));
  Reply snappy_only = Post(daemon_->http_port(), request);
  ASSERT_GT(snappy_only.body.size(), 1024u);  // large enough for the server's gzip
  Reply both = Post(daemon_->http_port(), request, "gzip, snappy");
  EXPECT_EQ(both.status, 200);
  EXPECT_EQ(both.body, snappy_only.body);
  EXPECT_EQ(both.head.find("gzip"), std::string::npos) << both.head;
  ASSERT_EQ(Decode(both).size(), 1u);
  EXPECT_EQ(Decode(both)[0].size(), 500u);
}

TEST_F(RemoteReadTest, FourMatcherKindsWithAnchoredRegexes) {
  using V = std::vector<std::string>;
  EXPECT_EQ(Names({{LM::EQ, "host", "web-1"}}), (V{"__name__=cpu,host=web-1,region=eu", "__name__=mem,host=web-1"}));
  EXPECT_EQ(Names({{LM::EQ, "__name__", "cpu"}, {LM::NEQ, "region", "eu"}}),
            (V{"Zone=b,__name__=cpu,host=db-1,region=us"}));
  // Anchored: "web-1" does not select web-10, as in Prometheus.
  EXPECT_EQ(Names({{LM::EQ, "__name__", "cpu"}, {LM::RE, "host", "web-1"}}), (V{"__name__=cpu,host=web-1,region=eu"}));
  EXPECT_EQ(Names({{LM::RE, "host", "web-1.*|db-.*"}, {LM::EQ, "__name__", "cpu"}}),
            (V{"Zone=b,__name__=cpu,host=db-1,region=us", "__name__=cpu,host=web-1,region=eu",
               "__name__=cpu,host=web-10,region=eu"}));
  EXPECT_EQ(Names({{LM::EQ, "__name__", "cpu"}, {LM::NRE, "host", "web-.*"}}),
            (V{"Zone=b,__name__=cpu,host=db-1,region=us"}));
  // A missing label is "": region="" selects the series without one.
  EXPECT_EQ(Names({{LM::RE, "host", ".+"}, {LM::EQ, "region", ""}}), (V{"__name__=mem,host=web-1"}));
}

TEST_F(RemoteReadTest, TimeRangesAreInclusiveAndEmptyOnesAnswerNoSeries) {
  const std::vector<Matcher> web1 = {{LM::EQ, "__name__", "cpu"}, {LM::EQ, "host", "web-1"}};
  EXPECT_EQ(Decode(Read({{kNow - 30'000, kNow, web1}})),
            (Results{{{"__name__=cpu,host=web-1,region=eu", {{kNow - 30'000, 2}, {kNow, 3}}}}}));
  EXPECT_EQ(Decode(Read({{kNow - 60'000, kNow - 60'000, web1}})),
            (Results{{{"__name__=cpu,host=web-1,region=eu", {{kNow - 60'000, 1}}}}}));
  // No sample in range: the series is not answered; start after end: nothing.
  EXPECT_EQ(Decode(Read({{kNow - 29'999, kNow - 1, web1}})), (Results{{}}));
  EXPECT_EQ(Decode(Read({{kNow, kNow - 60'000, web1}})), (Results{{}}));
  EXPECT_EQ(Decode(Read({{kNow - 3'600'000, kNow, {{LM::EQ, "__name__", "nothing"}}}})), (Results{{}}));
}

TEST_F(RemoteReadTest, SeveralQueriesAreAnsweredInOrder) {
  Results r = Decode(Read({
      {kNow - 3'600'000, kNow, {{LM::EQ, "__name__", "mem"}}},
      {kNow - 3'600'000, kNow, {{LM::EQ, "__name__", "nothing"}}},
      {kNow, kNow, {{LM::EQ, "region", "eu"}}},
  }));
  EXPECT_EQ(r, (Results{{{"__name__=mem,host=web-1", {{kNow - 30'000, 7}}}},
                        {},
                        {{"__name__=cpu,host=web-1,region=eu", {{kNow, 3}}}}}));
  const std::string m = Metrics();
  EXPECT_NE(m.find("sheaf_remote_read_requests_total{code=\"200\"} 1"), std::string::npos) << m;
  EXPECT_NE(m.find("sheaf_remote_read_queries_total 3"), std::string::npos) << m;
  EXPECT_NE(m.find("sheaf_remote_read_series_total 2"), std::string::npos) << m;
  EXPECT_NE(m.find("sheaf_remote_read_samples_total 2"), std::string::npos) << m;
}

TEST_F(RemoteReadTest, StaleMarkerRoundTripsBitForBit) {
  v1::PushAck ack;
  ASSERT_TRUE(Push({Batch("agent-1", 2,
                          {MakeSeries({{"__name__", "cpu"}, {"host", "web-10"}, {"region", "eu"}},
                                      v1::METRIC_TYPE_GAUGE, {{kNow, std::bit_cast<double>(kStaleBits)}})})},
                   &ack)
                  .ok());
  Reply r = Read({{kNow - 60'000, kNow, {{LM::EQ, "host", "web-10"}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  std::string raw;
  ASSERT_TRUE(snappy::Uncompress(r.body.data(), r.body.size(), &raw));
  prompb::ReadResponse response;
  ASSERT_TRUE(response.ParseFromString(raw));
  ASSERT_EQ(response.results_size(), 1);
  ASSERT_EQ(response.results(0).timeseries_size(), 1);
  const auto& samples = response.results(0).timeseries(0).samples();
  ASSERT_EQ(samples.size(), 2);
  EXPECT_EQ(samples[0].value(), 10);
  EXPECT_EQ(samples[1].timestamp(), kNow);
  EXPECT_EQ(std::bit_cast<uint64_t>(samples[1].value()), kStaleBits);
}

TEST_F(RemoteReadTest, MalformedRequestsAre400WithTheReason) {
  const int port = daemon_->http_port();
  auto expect = [&](const std::string& body, int status, const std::string& message) {
    Reply r = Post(port, body);
    EXPECT_EQ(r.status, status) << message << ": " << r.body;
    EXPECT_NE(r.body.find(message), std::string::npos) << r.body;
  };
  expect("this is not snappy", 400, "not valid snappy");
  expect(std::string("\xff\xff\xff\xff\xff\xff", 6), 400, "not snappy-compressed");
  expect(Compress("\x0a\x05\x0a\x03"), 400, "not a protobuf ReadRequest");
  expect(Compress(Encode({{0, kNow, {{LM::RE, "host", "web-(1"}}}})), 400, "query #0:");
  expect(Compress(Encode({{0, kNow, {{LM::EQ, "a", "b"}}}, {0, kNow, {{static_cast<LM::Type>(7), "host", "x"}}}})),
         400, "query #1: matcher on \"host\" has type 7");
  expect(Compress(Encode({{0, kNow, {{LM::EQ, "__name__", "cpu"}}}}, {prompb::ReadRequest::STREAMED_XOR_CHUNKS})),
         400, "sheafd answers SAMPLES (0) only");
  // Both accepted (as later Prometheus clients send): SAMPLES.
  EXPECT_EQ(Post(port, Compress(Encode({{0, kNow, {{LM::EQ, "__name__", "cpu"}}}},
                                       {prompb::ReadRequest::STREAMED_XOR_CHUNKS, prompb::ReadRequest::SAMPLES})))
                .status,
            200);
  // Sizes: refused from the body's length and the snappy header alone.
  std::string bomb("\x80\x80\x80\x80\x0f", 5);  // claims 3.75 GiB
  bomb += std::string(10, '\0');
  expect(bomb, 413, "would decompress to 4026531840 bytes, over the limit of 262144");
  expect(std::string(300'000, 'x'), 413, "body of 300000 bytes is over the limit of 262144");
  EXPECT_EQ(testing::HttpGet(port, "/api/v1/read").status, 405);

  const std::string m = Metrics();
  EXPECT_NE(m.find("sheaf_remote_read_requests_total{code=\"400\"} 6"), std::string::npos) << m;
  EXPECT_NE(m.find("sheaf_remote_read_requests_total{code=\"413\"} 2"), std::string::npos) << m;
}

class RemoteReadSeriesLimitTest : public RemoteReadTest {
  void Configure(DaemonConfig* config) override { config->query.promql.limits.max_series = 2; }
};

TEST_F(RemoteReadSeriesLimitTest, OverMaxSeriesIs400NamingTheFlag) {
  EXPECT_EQ(Names({{LM::EQ, "region", "eu"}}).size(), 2u);
  Reply r = Read({{0, kNow, {{LM::EQ, "__name__", "cpu"}}}});
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("more than 2 series, the limit of one request (--query-max-series)"), std::string::npos)
      << r.body;
  // The limit is of the whole request: two queries of 2 series each are 4.
  r = Read({{0, kNow, {{LM::EQ, "region", "eu"}}}, {0, kNow, {{LM::EQ, "region", "eu"}}}});
  EXPECT_EQ(r.status, 400) << r.body;
}

class RemoteReadSampleLimitTest : public RemoteReadTest {
  void Configure(DaemonConfig* config) override { config->query.promql.limits.max_samples = 3; }
};

TEST_F(RemoteReadSampleLimitTest, OverMaxSamplesIs400NamingTheFlag) {
  // cpu{host="web-1"} has 3 samples: at the limit.
  EXPECT_EQ(Names({{LM::EQ, "__name__", "cpu"}, {LM::EQ, "host", "web-1"}}).size(), 1u);
  // With mem{host="web-1"}, 4.
  Reply r = Read({{0, kNow, {{LM::EQ, "host", "web-1"}}}});
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("more than 3 samples, the limit of one request (--query-max-samples)"), std::string::npos)
      << r.body;
}

class RemoteReadBusyTest : public RemoteReadTest {
  void Configure(DaemonConfig* config) override { config->query.max_concurrent_queries = 0; }
};

TEST_F(RemoteReadBusyTest, NoFreeQuerySlotIs503WithRetryAfter) {
  Reply r = Read({{0, kNow, {{LM::EQ, "__name__", "cpu"}}}});
  EXPECT_EQ(r.status, 503);
  EXPECT_NE(r.head.find("Retry-After: 1"), std::string::npos) << r.head;
  EXPECT_NE(r.body.find("--query-max-concurrent"), std::string::npos) << r.body;
}

class RemoteReadTimeoutTest : public RemoteReadTest {
  void Configure(DaemonConfig* config) override { config->query.query_timeout = std::chrono::milliseconds(0); }
};

TEST_F(RemoteReadTimeoutTest, PastQueryTimeoutIs503) {
  Reply r = Read({{0, kNow, {{LM::EQ, "__name__", "cpu"}}}});
  EXPECT_EQ(r.status, 503);
  EXPECT_NE(r.body.find("remote read ran longer than the --query-timeout (0 ms)"), std::string::npos) << r.body;
}

// The handler's own bounds, on a handler built with them.
TEST(RemoteReadOptionsTest, MatchersAndConcurrencyAreBounded) {
  testing::TempDir dir;
  storage::StoreOptions o;
  o.path = dir.Sub("db");
  o.sync = false;
  auto store = storage::SeriesStore::Open(o);
  ASSERT_TRUE(store.ok()) << store.status();
  WorkQueue executor(1, 4);
  QueryService query(store->get(), &executor);
  auto request = [](std::string body) {
    HttpRequest r;
    r.method = "POST";
    r.path = "/api/v1/read";
    r.body = std::move(body);
    return r;
  };
  const std::string three = Compress(
      Encode({{0, kNow, {{LM::EQ, "a", "1"}, {LM::EQ, "b", "2"}}}, {0, kNow, {{LM::EQ, "c", "3"}}}}));

  RemoteReadOptions options;
  options.max_matchers = 2;
  HttpResponse r = RemoteReadHandler(&query, store->get(), options)(request(three));
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("the request has 3 matchers; at most 2"), std::string::npos) << r.body;
  options.max_matchers = 3;
  EXPECT_EQ(RemoteReadHandler(&query, store->get(), options)(request(three)).status, 200);

  options.max_concurrent = 0;
  r = RemoteReadHandler(&query, store->get(), options)(request(three));
  EXPECT_EQ(r.status, 503);
  EXPECT_NE(r.body.find("0 remote reads are being answered already"), std::string::npos) << r.body;
  executor.Stop();
}

}  // namespace
}  // namespace sheaf::daemon
