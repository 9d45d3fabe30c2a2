// POST /api/v1/write over a real store and ingest service: requests built
// with our WriteRequest messages and snappy, as Prometheus sends them.
// Proves: 204 and the samples readable; the stale marker stored bit for
// bit; 400 for bad snappy, bad protobuf and a wrong encoding; 413 for a
// body claiming a huge decompressed size (without allocating it); a bad
// series refused and counted while the others are stored; 405 for GET.
#include "daemon/remote_write.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <snappy.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <bit>
#include <memory>
#include <string>
#include <vector>

#include "daemon/ingest_metrics.h"
#include "daemon/ingest_service.h"
#include "prometheus/remote.pb.h"
#include "promql/parser.h"
#include "storage/series_store.h"
#include "tests/support/net.h"
#include "tests/support/temp_dir.h"

namespace sheaf::daemon {
namespace {

constexpr int64_t kNow = 1'800'000'000'000;
constexpr uint64_t kStaleBits = 0x7ff0000000000002ull;

struct Series {
  std::vector<std::pair<std::string, std::string>> labels;
  std::vector<model::Sample> samples;
};

std::string Encode(const std::vector<Series>& series) {
  prompb::WriteRequest request;
  for (const Series& s : series) {
    prompb::TimeSeries* ts = request.add_timeseries();
    for (const auto& [name, value] : s.labels) {
      prompb::Label* l = ts->add_labels();
      l->set_name(name);
      l->set_value(value);
    }
    for (const model::Sample& x : s.samples) {
      prompb::Sample* out = ts->add_samples();
      out->set_timestamp(x.timestamp_ms);
      out->set_value(x.value);
    }
  }
  prompb::MetricMetadata* m = request.add_metadata();  // Prometheus sends some; ignored
  m->set_type(prompb::MetricMetadata::COUNTER);
  m->set_metric_family_name("http_requests_total");
  return request.SerializeAsString();
}

std::string Compress(const std::string& raw) {
  std::string out;
  snappy::Compress(raw.data(), raw.size(), &out);
  return out;
}

HttpRequest Post(std::string body) {
  HttpRequest r;
  r.method = "POST";
  r.path = "/api/v1/write";
  r.body = std::move(body);
  r.headers = {{"Content-Encoding", "snappy"},
               {"Content-Type", "application/x-protobuf"},
               {"X-Prometheus-Remote-Write-Version", "0.1.0"}};
  return r;
}

class RemoteWriteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    storage::StoreOptions o;
    o.path = dir_.Sub("db");
    o.sync = false;
    o.now_ms = [] { return kNow; };
    auto s = storage::SeriesStore::Open(o);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
    metrics_ = std::make_unique<IngestMetrics>(registry_);
    IngestOptions ingest;
    ingest.now_ms = [] { return kNow; };
    ingest_ = std::make_unique<IngestService>(store_.get(), metrics_.get(), ingest);
    handler_ = RemoteWriteHandler(ingest_.get(), {}, &registry_);
  }
  void TearDown() override { ingest_->Stop(); }

  // The samples of the one series `selector` selects.
  std::vector<model::Sample> Read(const std::string& selector) {
    auto matchers = promql::ParseMetricSelector(selector);
    EXPECT_TRUE(matchers.ok()) << matchers.status();
    auto ids = store_->Select(*matchers);
    EXPECT_TRUE(ids.ok());
    if (!ids.ok() || ids->size() != 1) {
      ADD_FAILURE() << selector << " selects " << (ids.ok() ? ids->size() : 0) << " series";
      return {};
    }
    std::vector<model::Sample> out;
    for (auto it = store_->Read(ids->front(), 0, kNow * 2); it->Valid(); it->Next()) out.push_back(it->sample());
    return out;
  }

  std::string Metrics() {
    return prometheus::TextSerializer().Serialize(registry_.Collect());
  }

  testing::TempDir dir_;
  std::unique_ptr<storage::SeriesStore> store_;
  prometheus::Registry registry_;
  std::unique_ptr<IngestMetrics> metrics_;
  std::unique_ptr<IngestService> ingest_;
  HttpHandler handler_;
};

TEST_F(RemoteWriteTest, GoodRequestIsStoredAndAnswered204) {
  HttpResponse r = handler_(Post(Compress(Encode({
      {{{"__name__", "up"}, {"job", "prometheus"}, {"instance", "localhost:9090"}},
       {{kNow - 2000, 1}, {kNow - 1000, 0}}},
      {{{"__name__", "http_requests_total"}, {"code", "200"}}, {{kNow - 1000, 42.5}}},
  }))));
  EXPECT_EQ(r.status, 204) << r.body;
  EXPECT_TRUE(r.body.empty());
  auto up = Read(R"(up{job="prometheus",instance="localhost:9090"})");
  ASSERT_EQ(up.size(), 2u);
  EXPECT_EQ(up[0].timestamp_ms, kNow - 2000);
  EXPECT_EQ(up[0].value, 1);
  EXPECT_EQ(up[1].value, 0);
  auto total = Read(R"(http_requests_total{code="200"})");
  ASSERT_EQ(total.size(), 1u);
  EXPECT_EQ(total[0].value, 42.5);
  const std::string m = Metrics();
  EXPECT_NE(m.find("sheaf_remote_write_received_requests_total{code=\"204\"} 1"), std::string::npos) << m;
  EXPECT_NE(m.find("sheaf_remote_write_samples_received_total 3"), std::string::npos) << m;
  EXPECT_NE(m.find("sheaf_ingest_samples_total 3"), std::string::npos) << m;

  // The same request again (a retry): nothing is stored twice.
  EXPECT_EQ(handler_(Post(Compress(Encode({{{{"__name__", "http_requests_total"}, {"code", "200"}},
                                            {{kNow - 1000, 42.5}}}}))))
                .status,
            204);
  EXPECT_EQ(Read(R"(http_requests_total{code="200"})").size(), 1u);
}

// Over --memory-limit, remote write is shed as Push is: 503 with
// Retry-After (Prometheus retries it), nothing decoded or stored.
TEST_F(RemoteWriteTest, OverTheMemoryLimitIs503WithRetryAfterAndStoresNothing) {
  IngestOptions ingest;
  ingest.now_ms = [] { return kNow; };
  ingest.memory_limit_bytes = 1 << 20;  // below any real resident set
  IngestService shedding(store_.get(), metrics_.get(), ingest);
  HttpHandler handler = RemoteWriteHandler(&shedding, {}, &registry_);
  HttpResponse r = handler(Post(Compress(Encode({{{{"__name__", "up"}, {"job", "shed"}}, {{kNow - 1000, 1}}}}))));
  shedding.Stop();
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_NE(r.body.find("--memory-limit=1048576"), std::string::npos) << r.body;
  ASSERT_EQ(r.headers.size(), 1u);
  EXPECT_EQ(r.headers[0], (std::pair<std::string, std::string>{"Retry-After", "1"}));
  auto matchers = promql::ParseMetricSelector(R"(up{job="shed"})");
  ASSERT_TRUE(matchers.ok());
  auto ids = store_->Select(*matchers);
  ASSERT_TRUE(ids.ok());
  EXPECT_TRUE(ids->empty());
}

TEST_F(RemoteWriteTest, StaleMarkerIsStoredBitForBit) {
  const double stale = std::bit_cast<double>(kStaleBits);
  HttpResponse r = handler_(Post(Compress(Encode({
      {{{"__name__", "gone"}}, {{kNow - 2000, 3}, {kNow - 1000, stale}}},
      // Another NaN is refused (the series alone).
      {{{"__name__", "other_nan"}}, {{kNow - 1000, std::bit_cast<double>(kStaleBits + 1)}}},
  }))));
  EXPECT_EQ(r.status, 204) << r.body;
  auto gone = Read("gone");
  ASSERT_EQ(gone.size(), 2u);
  EXPECT_EQ(std::bit_cast<uint64_t>(gone[1].value), kStaleBits);
  const std::string m = Metrics();
  EXPECT_NE(m.find("sheaf_ingest_rejected_series_total{reason=\"invalid_value\"} 1"), std::string::npos) << m;
}

TEST_F(RemoteWriteTest, InvalidSeriesIsRefusedAloneAndCounted) {
  HttpResponse r = handler_(Post(Compress(Encode({
      {{{"__name__", "good"}}, {{kNow, 1}}},
      {{{"__name__", "bad"}, {"0bad-label", "x"}}, {{kNow, 1}}},
      {{{"__name__", "good"}, {"second", "y"}}, {{kNow, 2}}},
  }))));
  EXPECT_EQ(r.status, 204) << r.body;
  ASSERT_EQ(r.headers.size(), 1u);
  EXPECT_EQ(r.headers[0], (std::pair<std::string, std::string>{"X-Sheaf-Rejected-Series", "1"}));
  EXPECT_EQ(Read(R"(good{second=""})").size(), 1u);
  EXPECT_EQ(Read(R"(good{second="y"})").size(), 1u);
  auto bad = store_->Select(*promql::ParseMetricSelector("bad"));
  ASSERT_TRUE(bad.ok());
  EXPECT_TRUE(bad->empty());
  const std::string m = Metrics();
  EXPECT_NE(m.find("sheaf_ingest_rejected_series_total{reason=\"invalid_label_name\"} 1"), std::string::npos) << m;
}

TEST_F(RemoteWriteTest, UndecodableBodiesAre400AndStoreNothing) {
  // No snappy length header (a varint past 32 bits).
  HttpResponse r = handler_(Post(std::string("\xff\xff\xff\xff\xff\xff", 6)));
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("not snappy-compressed"), std::string::npos) << r.body;
  r = handler_(Post("this is not snappy"));
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("does not decompress"), std::string::npos) << r.body;

  // A valid snappy header with a truncated payload.
  std::string truncated = Compress(Encode({{{{"__name__", "x"}}, {{kNow, 1}}}}));
  truncated.resize(truncated.size() - 3);
  r = handler_(Post(truncated));
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("does not decompress"), std::string::npos) << r.body;

  // Snappy, but not a WriteRequest: the first series is good, the second
  // runs past the end: nothing at all is stored.
  std::string raw = Encode({{{{"__name__", "first"}}, {{kNow, 1}}}});
  raw += std::string("\x0a\x40\x0a\x02", 4);
  r = handler_(Post(Compress(raw)));
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("not a protobuf WriteRequest"), std::string::npos) << r.body;
  // A timeseries whose label is not a message.
  r = handler_(Post(Compress(std::string("\x0a\x03\x0a\x01\xff", 5))));
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("timeseries #0 does not decode"), std::string::npos) << r.body;
  auto first = store_->Select(*promql::ParseMetricSelector("first"));
  ASSERT_TRUE(first.ok());
  EXPECT_TRUE(first->empty());

  HttpRequest gzip = Post(Compress(raw));
  gzip.headers[0].second = "gzip";
  r = handler_(gzip);
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("Content-Encoding must be snappy"), std::string::npos) << r.body;

  HttpRequest v2 = Post(Compress(raw));
  v2.headers[1].second = "application/x-protobuf;proto=io.prometheus.write.v2.Request";
  EXPECT_EQ(handler_(v2).status, 415);

  const std::string m = Metrics();
  EXPECT_NE(m.find("sheaf_remote_write_received_requests_total{code=\"400\"} 6"), std::string::npos) << m;
}

TEST_F(RemoteWriteTest, SnappyBombIsRefusedBeforeAllocating) {
  // A snappy block starts with its uncompressed length (a varint): this one
  // claims 3.75 GiB and holds nothing. Answered from the header alone.
  std::string bomb("\x80\x80\x80\x80\x0f", 5);
  bomb += std::string(10, '\0');
  HttpResponse r = handler_(Post(bomb));
  EXPECT_EQ(r.status, 413);
  EXPECT_NE(r.body.find("would decompress to 4026531840 bytes, over the limit of 67108864"), std::string::npos)
      << r.body;

  // A real one: 80 MiB of zeros compress to ~4 MiB.
  std::string zeros = Compress(std::string(80u << 20, '\0'));
  r = handler_(Post(zeros));
  EXPECT_EQ(r.status, 413);
  EXPECT_NE(r.body.find("would decompress to 83886080 bytes"), std::string::npos) << r.body;

  // Many tiny series past the hard bound of one series: refused before parsing.
  std::string labels;
  for (int i = 0; i < 5000; ++i) labels += std::string("\x0a\x00", 2);
  std::string raw = std::string("\x0a", 1);
  raw += static_cast<char>(0x80 | (labels.size() & 0x7f));
  raw += static_cast<char>(labels.size() >> 7);
  raw += labels;
  r = handler_(Post(Compress(raw)));
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("timeseries #0 has 5000 labels"), std::string::npos) << r.body;
}

TEST_F(RemoteWriteTest, OverTheServerEndpointPostIs204AndGetIs405) {
  HttpServerOptions o;
  o.listen = "127.0.0.1:0";
  o.threads = 2;
  HttpServer server(o);
  server.Handle("/api/v1/write", {"POST"}, handler_);
  ASSERT_TRUE(server.Start().ok());

  testing::HttpResponse get = testing::HttpGet(server.port(), "/api/v1/write");
  EXPECT_EQ(get.status, 405);

  const std::string body = Compress(Encode({{{{"__name__", "wire"}}, {{kNow, 7}}}}));
  int fd = testing::ConnectLoopback(server.port());
  ASSERT_GE(fd, 0);
  const timeval bound{10, 0};  // a server that never answers fails the test, not hangs it
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof bound);
  const std::string request = fmt::format(
      "POST /api/v1/write HTTP/1.1\r\nHost: x\r\nContent-Encoding: snappy\r\nContent-Type: "
      "application/x-protobuf\r\nX-Prometheus-Remote-Write-Version: 0.1.0\r\nContent-Length: {}\r\n"
      "Connection: close\r\n\r\n{}",
      body.size(), body);
  ASSERT_EQ(::send(fd, request.data(), request.size(), MSG_NOSIGNAL), static_cast<ssize_t>(request.size()));
  std::string answer;
  char buf[4096];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) answer.append(buf, static_cast<size_t>(n));
  ::close(fd);
  EXPECT_EQ(answer.substr(0, 12), "HTTP/1.1 204") << answer;
  auto wire = Read("wire");
  ASSERT_EQ(wire.size(), 1u);
  EXPECT_EQ(wire[0].value, 7);
  server.Stop();
}

}  // namespace
}  // namespace sheaf::daemon
