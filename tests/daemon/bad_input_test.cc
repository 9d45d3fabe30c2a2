// The rows of docs/RELIABILITY.md's bad-input table that had no test:
// hostile or broken input sent to a real sheafd (in-process gRPC, HTTP on
// loopback), each checked for the exact code and message, for the rest of
// the request being kept, and for the daemon serving the next client. The
// rows that need a raw HTTP/2 client (truncated gzip on the wire, unknown
// grpc-encoding, wrong content-type, half-closed streams) are in
// tests/e2e/h2_probe_test.py.
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <thread>

#include <fmt/format.h>
#include <snappy.h>

#include "sheaf/v1/ingest_decode.pb.h"
#include "tests/daemon/daemon_fixture.h"
#include "tests/support/net.h"
#include "tests/support/process.h"

namespace sheaf::daemon {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::steady_clock;

// The protobuf wire by hand, for what the generated classes will not write
// (unknown fields) and for the remote-read request (no generated class in
// the tests).
std::string Varint(uint64_t v) {
  std::string out;
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
  return out;
}
std::string Tag(int field, int wire) { return Varint(static_cast<uint64_t>(field) << 3 | wire); }
std::string Bytes(int field, const std::string& body) { return Tag(field, 2) + Varint(body.size()) + body; }

using testing::RawHttpExchange;
using testing::RawHttpReply;
using testing::RawPostRequest;

v1::Series Gauge(const std::string& name, int64_t t, double v = 1) {
  return MakeSeries({{"__name__", name}}, v1::METRIC_TYPE_GAUGE, {{t, v}});
}

const v1::RejectCount* Rejected(const v1::PushAck& ack, v1::RejectReason reason) {
  for (const auto& r : ack.rejected()) {
    if (r.reason() == reason) return &r;
  }
  return nullptr;
}

class BadInputTest : public DaemonTest {
 protected:
  // The daemon serves the next client: a new batch is stored and can be
  // read back.
  void ExpectServesOn(const std::string& agent) {
    v1::PushAck ack;
    grpc::Status s = Push(
        {Batch(agent, 1, {MakeSeries({{"__name__", "served_on"}, {"by", agent}}, v1::METRIC_TYPE_GAUGE, {{kNow, 1}})})},
        &ack);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(ack.samples_stored(), 1u);
    auto r = Query(fmt::format("served_on{{by=\"{}\"}}", agent), kNow - 1, kNow + 1);
    EXPECT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.samples.size(), 1u);
  }
};

// Timestamp 0, -1, INT64_MIN and INT64_MAX are refused by the window check
// (which does no arithmetic on the sample's time), the good series of the
// same batch is stored.
TEST_F(BadInputTest, ExtremeTimestampsAreOutOfWindowAndTheRestIsStored) {
  v1::PushAck ack;
  grpc::Status s = Push({Batch("a", 1,
                               {Gauge("t_zero", 0), Gauge("t_negative", -1),
                                Gauge("t_min", std::numeric_limits<int64_t>::min()),
                                Gauge("t_max", std::numeric_limits<int64_t>::max()), Gauge("t_good", kNow)})},
                        &ack);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(ack.samples_stored(), 1u);
  ASSERT_EQ(ack.rejected_size(), 1);
  EXPECT_EQ(ack.rejected(0).reason(), v1::REJECT_REASON_TIMESTAMP_OUT_OF_WINDOW);
  EXPECT_EQ(ack.rejected(0).series(), 4u);
  EXPECT_EQ(ack.rejected(0).samples(), 4u);
  EXPECT_NE(ack.rejected(0).example().find("outside the accepted window"), std::string::npos)
      << ack.rejected(0).example();
  EXPECT_EQ(Stats().samples(), 1u);
  EXPECT_EQ(Query("t_good", kNow - 1, kNow + 1).samples.size(), 1u);
  ExpectServesOn("next");
}

// A 1 MiB label value costs only its own series (the label set's 16 KiB
// bound is checked before the value's: labels_too_large), a 1 MiB name
// too (invalid_label_name), and the ack does not echo them.
TEST_F(BadInputTest, AMiBLabelValueOrNameIsRefusedAloneWithASmallAck) {
  const std::string mib(1 << 20, 'v');
  v1::PushAck ack;
  grpc::Status s = Push(
      {Batch("a", 1,
             {MakeSeries({{"__name__", "m"}, {"big", mib}}, v1::METRIC_TYPE_GAUGE, {{kNow, 1}}),
              MakeSeries({{"__name__", "m"}, {mib, "x"}}, v1::METRIC_TYPE_GAUGE, {{kNow, 1}}),
              MakeSeries({{"__name__", "m"}, {"big", "small"}}, v1::METRIC_TYPE_GAUGE, {{kNow, 1}})})},
      &ack);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(ack.samples_stored(), 1u);
  ASSERT_EQ(ack.rejected_size(), 2);
  const v1::RejectCount* value = Rejected(ack, v1::REJECT_REASON_LABELS_TOO_LARGE);
  ASSERT_NE(value, nullptr);
  EXPECT_EQ(value->series(), 1u);
  const v1::RejectCount* name = Rejected(ack, v1::REJECT_REASON_INVALID_LABEL_NAME);
  ASSERT_NE(name, nullptr);
  EXPECT_EQ(name->series(), 1u);
  EXPECT_LT(ack.ByteSizeLong(), 2048u);
  EXPECT_EQ(Stats().series(), 1u);
  ExpectServesOn("next");
}

// An empty label name is no name; an empty __name__ is dropped as empty
// values are, and then the series has no name.
TEST_F(BadInputTest, EmptyLabelNameAndEmptyMetricNameAreRefusedThroughPush) {
  v1::PushAck ack;
  grpc::Status s = Push({Batch("a", 1,
                               {MakeSeries({{"__name__", "m"}, {"", "x"}}, v1::METRIC_TYPE_GAUGE, {{kNow, 1}}),
                                MakeSeries({{"__name__", ""}, {"job", "x"}}, v1::METRIC_TYPE_GAUGE, {{kNow, 1}}),
                                Gauge("m", kNow)})},
                        &ack);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(ack.samples_stored(), 1u);
  const v1::RejectCount* name = Rejected(ack, v1::REJECT_REASON_INVALID_LABEL_NAME);
  ASSERT_NE(name, nullptr);
  EXPECT_EQ(name->series(), 1u);
  const v1::RejectCount* metric = Rejected(ack, v1::REJECT_REASON_INVALID_METRIC_NAME);
  ASSERT_NE(metric, nullptr);
  EXPECT_EQ(metric->series(), 1u);
  EXPECT_EQ(Stats().series(), 1u);
}

TEST_F(BadInputTest, AgentIdOfInvalidUtf8OrTooLongIsInvalidArgument) {
  for (const std::string& agent : {std::string("host-\xff"), std::string(257, 'a')}) {
    v1::decode::MetricBatch b;
    b.set_agent_id(agent);
    b.set_sequence(1);
    grpc::Status s = RawPush({b.SerializeAsString()});
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(s.error_message(), "batch 1: agent_id must be 1 to 256 bytes of UTF-8");
  }
  v1::PushAck ack;
  ASSERT_TRUE(Push({Batch(std::string(256, 'a'), 1, {Gauge("m", kNow)})}, &ack).ok());  // the longest allowed
  EXPECT_EQ(ack.samples_stored(), 1u);
}

// Fields sheafd does not know (a newer agent's) are skipped, in the batch
// and in a series; the batch is stored.
TEST_F(BadInputTest, UnknownFieldsAreSkippedAndTheBatchIsStored) {
  const std::string unknown = Tag(99, 0) + Varint(7) + Bytes(100, "from a newer agent") + Tag(101, 1) +
                              std::string(8, '\x01') + Tag(102, 5) + std::string(4, '\x02');
  const std::string series = Gauge("m", kNow, 42).SerializeAsString() + unknown;
  v1::decode::MetricBatch b;
  b.set_agent_id("newer");
  b.set_sequence(1);
  const std::string batch = unknown + b.SerializeAsString() + Bytes(5, series);
  std::string response;
  grpc::Status s = RawCall("/sheaf.v1.IngestService/Push", {batch}, &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  v1::PushAck ack;
  ASSERT_TRUE(ack.ParseFromString(response));
  EXPECT_EQ(ack.samples_stored(), 1u);
  EXPECT_EQ(ack.rejected_size(), 0);
  auto r = Query("m", kNow - 1, kNow + 1);
  ASSERT_EQ(r.samples.size(), 1u);
  EXPECT_EQ(r.samples.begin()->second, (std::vector<std::pair<int64_t, double>>{{kNow, 42}}));
}

// Every NaN but the stale marker and both infinities are invalid_value for
// every type; the stale marker is stored for each.
TEST_F(BadInputTest, NanAndInfAreInvalidForEveryTypeAndTheStaleMarkerIsStored) {
  const double stale = std::bit_cast<double>(uint64_t{0x7ff0000000000002});
  const double other_nan = std::bit_cast<double>(uint64_t{0x7ff8000000000001});
  const std::vector<std::pair<v1::MetricType, std::string>> types = {{v1::METRIC_TYPE_UNSPECIFIED, "u"},
                                                                     {v1::METRIC_TYPE_GAUGE, "g"},
                                                                     {v1::METRIC_TYPE_COUNTER, "c_total"},
                                                                     {v1::METRIC_TYPE_HISTOGRAM, "h_count"}};
  std::vector<v1::Series> series;
  for (const auto& [type, name] : types) {
    int i = 0;
    for (double v : {std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity(), other_nan,
                     stale}) {
      series.push_back(MakeSeries({{"__name__", name}, {"case", std::to_string(i++)}}, type, {{kNow, v}}));
    }
  }
  v1::PushAck ack;
  ASSERT_TRUE(Push({Batch("a", 1, series)}, &ack).ok());
  EXPECT_EQ(ack.samples_stored(), 4u);  // the stale markers
  ASSERT_EQ(ack.rejected_size(), 1);
  EXPECT_EQ(ack.rejected(0).reason(), v1::REJECT_REASON_INVALID_VALUE);
  EXPECT_EQ(ack.rejected(0).series(), 12u);
  for (const auto& [type, name] : types) {
    auto r = Query(name, kNow - 1, kNow + 1);
    ASSERT_EQ(r.samples.size(), 1u) << name;
    EXPECT_EQ(std::bit_cast<uint64_t>(r.samples.begin()->second.at(0).second), 0x7ff0000000000002u) << name;
  }
}

class SeriesLimitTest : public BadInputTest {
 protected:
  void SetUp() override {
    DaemonConfig config;
    config.store.max_series = 2;
    Start(config);
  }
};

// Past the store's series limit a new series is refused as series_limit;
// the existing ones keep taking samples.
TEST_F(SeriesLimitTest, SeriesPastTheStoreLimitAreRefusedAsSeriesLimit) {
  v1::PushAck ack;
  ASSERT_TRUE(Push({Batch("a", 1, {Gauge("one", kNow), Gauge("two", kNow), Gauge("three", kNow)})}, &ack).ok());
  EXPECT_EQ(ack.samples_stored(), 2u);
  ASSERT_EQ(ack.rejected_size(), 1);
  EXPECT_EQ(ack.rejected(0).reason(), v1::REJECT_REASON_SERIES_LIMIT);
  EXPECT_EQ(ack.rejected(0).series(), 1u);
  EXPECT_NE(ack.rejected(0).example().find("three"), std::string::npos) << ack.rejected(0).example();
  ASSERT_TRUE(Push({Batch("a", 2, {Gauge("one", kNow + 1000), Gauge("two", kNow + 1000)})}, &ack).ok());
  EXPECT_EQ(ack.samples_stored(), 2u);
  EXPECT_EQ(ack.rejected_size(), 0);
  EXPECT_EQ(Stats().samples(), 4u);
  auto metrics = testing::HttpGet(daemon_->http_port(), "/metrics");
  EXPECT_NE(metrics.body.find("sheaf_ingest_rejected_series_total{reason=\"series_limit\"} 1\n"), std::string::npos)
      << metrics.body.substr(0, 2000);
}

// A batch defining `n` refs from `first`, each with one sample; labels of
// about `value_bytes` each.
v1::MetricBatch Definitions(const std::string& agent, uint64_t seq, uint32_t first, uint32_t n,
                            size_t value_bytes = 8) {
  v1::MetricBatch b;
  b.set_agent_id(agent);
  b.set_sequence(seq);
  for (uint32_t ref = first; ref < first + n; ++ref) {
    auto* def = b.add_definitions();
    def->set_ref(ref);
    def->set_type(v1::METRIC_TYPE_GAUGE);
    auto* l = def->add_labels();
    l->set_name("__name__");
    l->set_value("d");
    l = def->add_labels();
    l->set_name("ref");
    l->set_value(fmt::format("{:0>{}}", ref, value_bytes));
    auto* samples = b.add_samples();
    samples->set_ref(ref);
    samples->add_timestamps_ms(kNow);
    samples->add_values(ref);
  }
  return b;
}

class DictionaryBoundsTest : public BadInputTest {
 protected:
  void SetUp() override {
    DaemonConfig config;
    config.ingest.max_refs_per_stream = 100;
    config.ingest.max_dictionary_bytes_per_stream = 1 << 20;
    config.ingest.max_dictionary_bytes_total = 64 << 10;
    Start(config);
  }
};

// The 101st ref of a stream ends it; what the stream stored before stays.
TEST_F(DictionaryBoundsTest, MoreRefsThanAllowedEndTheStreamAndKeepWhatCameBefore) {
  v1::PushAck ack;
  grpc::Status s = Push({Definitions("a", 1, 1, 60), Definitions("a", 2, 61, 60)}, &ack);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(s.error_message(), "more than 100 series defined in one stream; start a new stream");
  EXPECT_EQ(Stats().samples(), 60u);  // the first batch's
  // A new stream starts afresh.
  ASSERT_TRUE(Push({Definitions("a", 3, 200, 3)}, &ack).ok());
  EXPECT_EQ(ack.samples_stored(), 3u);
}

// Two streams' dictionaries together past the total: the second stream is
// refused with a retry hint while the first goes on.
TEST_F(DictionaryBoundsTest, AllStreamsDictionariesPastTheTotalAreResourceExhausted) {
  grpc::ClientContext first_ctx;
  first_ctx.set_deadline(std::chrono::system_clock::now() + seconds(20));
  v1::PushAck first_ack;
  auto first = ingest_->Push(&first_ctx, &first_ack);
  // 40 refs of ~1 KiB each: about 44 KiB of the 64 KiB, held while the
  // stream is open.
  ASSERT_TRUE(first->Write(Definitions("first", 1, 1, 40, 1000)));
  // Its definitions are all held once its samples are stored.
  ASSERT_TRUE(testing::WaitFor([&] { return Stats().samples() == 40; }, seconds(10)));
  v1::PushAck ack;
  grpc::Status s = Push({Definitions("second", 1, 1, 40, 1000)}, &ack);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(s.error_message(),
            "sheafd's open streams hold 65536 bytes of series definitions, its limit; retry with backoff");
  // The first stream goes on and its batches are stored.
  ASSERT_TRUE(first->Write(Definitions("first", 2, 1, 0)));
  first->WritesDone();
  grpc::Status fs = first->Finish();
  ASSERT_TRUE(fs.ok()) << fs.error_message();
  EXPECT_EQ(first_ack.samples_stored(), 40u);
  // Its memory is given back (when the stream's reactor is done): the
  // second stream now fits.
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        return testing::HttpGet(daemon_->http_port(), "/metrics").body.find("sheaf_ingest_dictionary_bytes 0\n") !=
               std::string::npos;
      },
      seconds(10)));
  ASSERT_TRUE(Push({Definitions("second", 1, 41, 40, 1000)}, &ack).ok());
  EXPECT_EQ(ack.samples_stored(), 40u);
}

class HttpBadInputTest : public BadInputTest {
 protected:
  void SetUp() override {
    DaemonConfig config;
    config.http_request_timeout = milliseconds(1000);
    config.http_threads = 4;
    Start(config);
  }
};

// A query form POSTed as text/plain is not read as a form: the query is
// missing, 400 bad_data, as Prometheus answers.
TEST_F(HttpBadInputTest, QueryFormWithAWrongContentTypeIsBadData) {
  RawHttpReply r =
      RawHttpExchange(daemon_->http_port(), RawPostRequest("/api/v1/query", {"Content-Type: text/plain"}, "query=up"));
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.body, R"({"status":"error","errorType":"bad_data","error":"1:1: no expression found in input"})");
  r = RawHttpExchange(daemon_->http_port(),
                      RawPostRequest("/api/v1/query", {"Content-Type: application/x-www-form-urlencoded"}, "query=1"));
  EXPECT_EQ(r.status, 200) << r.body;
}

// Remote read reads the body as snappy whatever Content-Type and
// Content-Encoding say (as Prometheus does); a body that is not snappy is
// 400.
TEST_F(HttpBadInputTest, RemoteReadTakesSnappyWhateverTheHeadersSay) {
  v1::PushAck ack;
  ASSERT_TRUE(Push({Batch("a", 1, {Gauge("up", kNow)})}, &ack).ok());
  // ReadRequest{queries: [{start, end, matchers: [{EQ, __name__, up}]}]}
  const std::string matcher = Tag(1, 0) + Varint(0) + Bytes(2, "__name__") + Bytes(3, "up");
  const std::string query = Tag(1, 0) + Varint(kNow - 1000) + Tag(2, 0) + Varint(kNow + 1000) + Bytes(3, matcher);
  std::string body;
  snappy::Compress(Bytes(1, query).data(), Bytes(1, query).size(), &body);
  RawHttpReply r =
      RawHttpExchange(daemon_->http_port(),
                      RawPostRequest("/api/v1/read", {"Content-Type: text/plain", "Content-Encoding: gzip"}, body));
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.head.find("Content-Type: application/x-protobuf"), std::string::npos) << r.head;
  r = RawHttpExchange(daemon_->http_port(),
                      RawPostRequest("/api/v1/read", {"Content-Type: application/x-protobuf", "Content-Encoding: gzip"},
                                     std::string("\x1f\x8b\x08\x00garbage", 12)));
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("not valid snappy"), std::string::npos) << r.body;
}

// Methods HTTP does not have are 400 (civetweb does not parse them), one
// it knows but sheafd does not serve is 405; the server serves on.
TEST_F(HttpBadInputTest, UnknownHttpMethodsAreRefused) {
  for (const auto& [method, status] : std::vector<std::pair<std::string, int>>{
           {"FOO", 400}, {"BREW", 400}, {"PROPFIND", 405}}) {
    RawHttpReply r = RawHttpExchange(
        daemon_->http_port(), fmt::format("{} /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", method));
    EXPECT_EQ(r.status, status) << method << ": " << r.head;
  }
  EXPECT_EQ(testing::HttpGet(daemon_->http_port(), "/metrics").status, 200);
}

// Request headers trickled a byte every 100 ms, on as many connections as
// the server has workers: each is cut off (closed, or answered 4xx) within
// a bound, never served as a request, and /metrics answers meanwhile.
TEST_F(HttpBadInputTest, SlowlorisHeadersAreCutOffAndDoNotBlockOthers) {
  const std::string request = "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " + std::string(200, 's') + "\r\n\r\n";
  struct Trickler {
    int fd = -1;
    size_t sent = 0;
    bool cut = false;
    steady_clock::duration after{};
  };
  std::vector<Trickler> slow(4);
  for (auto& t : slow) t.fd = testing::ConnectLoopback(daemon_->http_port());
  const auto started = steady_clock::now();
  std::atomic<bool> done{false};
  std::thread trickle([&] {
    while (!done && steady_clock::now() - started < seconds(12)) {
      for (auto& t : slow) {
        if (t.cut) continue;
        char c = request[t.sent % request.size()];
        if (::send(t.fd, &c, 1, MSG_NOSIGNAL) != 1) {
          t.cut = true;
          t.after = steady_clock::now() - started;
          continue;
        }
        ++t.sent;
        char buf[256];
        ssize_t n = ::recv(t.fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0 || (n > 0 && std::string(buf, n).starts_with("HTTP/1.1 4"))) {
          t.cut = true;
          t.after = steady_clock::now() - started;
        }
      }
      bool all = true;
      for (auto& t : slow) all = all && t.cut;
      if (all) break;
      std::this_thread::sleep_for(milliseconds(100));
    }
  });
  std::this_thread::sleep_for(milliseconds(500));
  const auto asked = steady_clock::now();
  auto metrics = testing::HttpGet(daemon_->http_port(), "/metrics");
  const auto answered_in = steady_clock::now() - asked;
  trickle.join();
  done = true;
  EXPECT_EQ(metrics.status, 200);
  EXPECT_LT(answered_in, seconds(3)) << "4 trickling connections, 4 workers";
  for (auto& t : slow) {
    EXPECT_TRUE(t.cut) << "still open after " << t.sent << " bytes";
    EXPECT_LT(t.sent, request.size()) << "the whole request went through";
    EXPECT_LT(t.after, seconds(8));
    ::close(t.fd);
  }
}

}  // namespace
}  // namespace sheaf::daemon
