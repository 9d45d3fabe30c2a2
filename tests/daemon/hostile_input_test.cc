// Hostile and broken input against a real sheafd (in-process, and over TCP
// where compression or HTTP is involved): each case was tried against an
// earlier main and hurt it (memory, a poisoned listing, a blocked /metrics,
// a whole batch lost). Each must now cost the sender alone.
#include <unistd.h>
#include <zlib.h>

#include "sheaf/v1/ingest_decode.pb.h"
#include "tests/daemon/daemon_fixture.h"
#include "tests/support/net.h"

namespace sheaf::daemon {
namespace {

std::shared_ptr<grpc::Channel> TcpChannel(int port) {
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(-1);
  args.SetMaxReceiveMessageSize(-1);
  return grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials(), args);
}

// A batch whose labels hold whatever bytes the test wants (the public
// MetricBatch refuses to carry invalid UTF-8; the wire is the same).
std::string RawBatch(const std::string& agent, uint64_t seq,
                     const std::vector<std::vector<std::pair<std::string, std::string>>>& series) {
  v1::decode::MetricBatch b;
  b.set_agent_id(agent);
  b.set_sequence(seq);
  for (const auto& labels : series) {
    auto* s = b.add_series();
    s->set_type(v1::METRIC_TYPE_GAUGE);
    for (const auto& [n, v] : labels) {
      auto* l = s->add_labels();
      l->set_name(n);
      l->set_value(v);
    }
    auto* p = s->add_samples();
    p->set_timestamp_ms(kNow);
    p->set_value(1);
  }
  return b.SerializeAsString();
}

class HostileInputTest : public DaemonTest {};

// gRPC 1.51 inflates a whole message before its size check: a 4 MB bomb
// once cost 4.9 GB. sheafd inflates itself and stops at the limit.
TEST_F(HostileInputTest, GzipBombIsResourceExhaustedAndCostsNoMemory) {
  // 48 MiB of one label value: ~48 KiB gzipped, three times the 16 MiB limit.
  v1::MetricBatch bomb =
      Batch("bomber", 1,
            {MakeSeries({{"__name__", "m"}, {"x", std::string(48 << 20, 'a')}}, v1::METRIC_TYPE_GAUGE, {{kNow, 1}})});
  v1::PushAck ack;
  grpc::Status s = Push({bomb}, &ack, TcpChannel(daemon_->grpc_port()), /*gzip=*/true);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  EXPECT_NE(s.error_message().find("after decompression"), std::string::npos) << s.error_message();
  // The daemon serves on, and a normal batch over the same path is stored.
  s = Push({Batch("good", 1, {MakeSeries({{"__name__", "ok"}}, v1::METRIC_TYPE_GAUGE, {{kNow, 1}})})}, &ack,
           TcpChannel(daemon_->grpc_port()), true);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(ack.samples_stored(), 1u);
}

// With gRPC's own decompression off, every method decodes its request
// itself: compressed queries and listings still work.
TEST_F(HostileInputTest, CompressedRequestsToEveryServiceStillWork) {
  v1::PushAck ack;
  ASSERT_TRUE(Push({Batch("a", 1, {MakeSeries({{"__name__", "up"}}, v1::METRIC_TYPE_GAUGE, {{kNow, 1}})})}, &ack,
                   TcpChannel(daemon_->grpc_port()), true)
                  .ok());
  auto stub = v1::QueryService::NewStub(TcpChannel(daemon_->grpc_port()));
  grpc::ClientContext ctx;
  ctx.set_compression_algorithm(GRPC_COMPRESS_GZIP);
  v1::ListSeriesRequest req;
  req.set_selector("up");
  v1::ListSeriesResponse resp;
  grpc::Status s = stub->ListSeries(&ctx, req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.series_size(), 1);
  grpc::ClientContext qctx;
  qctx.set_compression_algorithm(GRPC_COMPRESS_DEFLATE);
  v1::QueryRequest q;
  q.set_selector("up");
  q.set_start_ms(kNow - 1000);
  q.set_end_ms(kNow + 1000);
  auto reader = stub->Query(&qctx, q);
  v1::QueryResponse r;
  int chunks = 0;
  while (reader->Read(&r)) chunks += r.chunks_size();
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(chunks, 1);
}

// One label with invalid UTF-8 (a real host's odd mount point) once made
// protobuf refuse the whole batch: every good series of the host was lost.
TEST_F(HostileInputTest, InvalidUtf8CostsOnlyItsOwnSeries) {
  std::string response;
  grpc::Status s = RawCall("/sheaf.v1.IngestService/Push",
                           {RawBatch("host-1", 1,
                                     {{{"__name__", "node_filesystem_avail_bytes"}, {"mountpoint", "/mnt/\xff\xfe"}},
                                      {{"__name__", "node_filesystem_avail_bytes"}, {"mountpoint", "/"}},
                                      {{"__name__", "node_load1"}}})},
                           &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  v1::PushAck ack;
  ASSERT_TRUE(ack.ParseFromString(response));
  EXPECT_EQ(ack.samples_stored(), 2u);
  ASSERT_EQ(ack.rejected_size(), 1);
  EXPECT_EQ(ack.rejected(0).reason(), v1::REJECT_REASON_INVALID_LABEL_VALUE);
  EXPECT_EQ(ack.rejected(0).series(), 1u);
  EXPECT_EQ(Stats().series(), 2u);
  // The same through a dictionary definition.
  v1::decode::MetricBatch b;
  b.set_agent_id("host-2");
  b.set_sequence(1);
  auto* def = b.add_definitions();
  def->set_ref(1);
  auto* l = def->add_labels();
  l->set_name("__name__");
  l->set_value("bad\xc3");
  auto* samples = b.add_samples();
  samples->set_ref(1);
  samples->add_timestamps_ms(kNow);
  samples->add_values(1);
  response.clear();
  ASSERT_TRUE(RawCall("/sheaf.v1.IngestService/Push", {b.SerializeAsString()}, &response).ok());
  ASSERT_TRUE(ack.ParseFromString(response));
  ASSERT_EQ(ack.rejected_size(), 1);
  EXPECT_EQ(ack.rejected(0).reason(), v1::REJECT_REASON_INVALID_METRIC_NAME);
}

// A 5 MiB label name was once accepted, and from then on every listing
// failed for everyone, even after a restart.
TEST_F(HostileInputTest, HugeLabelNamesAreRejectedAndListingsStayUsable) {
  v1::PushAck ack;
  ASSERT_TRUE(
      Push(
          {Batch("a", 1,
                 {MakeSeries({{"__name__", "m"}, {std::string(5 << 20, 'n'), "x"}}, v1::METRIC_TYPE_GAUGE, {{kNow, 1}}),
                  MakeSeries({{"__name__", "m"}, {"ok", "x"}}, v1::METRIC_TYPE_GAUGE, {{kNow, 1}})})},
          &ack, TcpChannel(daemon_->grpc_port()), true)
          .ok());
  ASSERT_EQ(ack.rejected_size(), 1);
  EXPECT_EQ(ack.rejected(0).reason(), v1::REJECT_REASON_INVALID_LABEL_NAME);
  EXPECT_LT(ack.ByteSizeLong(), 2048u);  // the example is abbreviated
  grpc::ClientContext ctx;
  v1::LabelNamesResponse names;
  ASSERT_TRUE(query_->LabelNames(&ctx, v1::LabelNamesRequest(), &names).ok());
  EXPECT_EQ(names.names_size(), 2);  // __name__, ok
}

// 10,000 labels in one series once made a 6 MB ack (beyond a 4 MiB client
// limit, for a batch that was durable) and a 6 MB log line.
TEST_F(HostileInputTest, RejectionsDoNotEchoTheWholeSeries) {
  std::vector<std::pair<std::string, std::string>> labels = {{"__name__", "m"}};
  for (int i = 0; i < 10'000; ++i) labels.emplace_back("label_" + std::to_string(i), std::string(100, 'v'));
  v1::PushAck ack;
  ASSERT_TRUE(Push({Batch("a", 1, {MakeSeries(labels, v1::METRIC_TYPE_GAUGE, {{kNow, 1}})})}, &ack).ok());
  ASSERT_EQ(ack.rejected_size(), 1);
  EXPECT_EQ(ack.rejected(0).reason(), v1::REJECT_REASON_TOO_MANY_LABELS);
  EXPECT_LT(ack.ByteSizeLong(), 1024u) << ack.rejected(0).example();
}

class DictionaryLimitTest : public DaemonTest {
 protected:
  void SetUp() override {
    DaemonConfig config;
    config.ingest.max_dictionary_bytes_per_stream = 64 << 10;
    Start(config);
  }
};

// Rejected definitions once kept their labels: 0.59 MB of gzip grew RSS
// from 81 MB to 733 MB. They keep none now, and the dictionary is bounded.
TEST_F(DictionaryLimitTest, RejectedDefinitionsKeepNoLabelsAndTheDictionaryIsBounded) {
  v1::MetricBatch bad;
  bad.set_agent_id("a");
  bad.set_sequence(1);
  for (uint32_t i = 1; i <= 300; ++i) {  // 300 x 1 KiB of labels: over 64 KiB if they were kept
    auto* def = bad.add_definitions();
    def->set_ref(i);
    auto* l = def->add_labels();
    l->set_name("__name__");
    l->set_value("bad-name-" + std::string(1024, 'x'));
  }
  v1::PushAck ack;
  ASSERT_TRUE(Push({bad}, &ack).ok());
  v1::MetricBatch good;
  good.set_agent_id("a");
  good.set_sequence(2);
  for (uint32_t i = 1; i <= 200; ++i) {  // 200 x 1 KiB kept: over the bound
    auto* def = good.add_definitions();
    def->set_ref(1000 + i);
    auto* l = def->add_labels();
    l->set_name("__name__");
    l->set_value("m");
    l = def->add_labels();
    l->set_name("x");
    l->set_value(std::to_string(i) + std::string(1024, 'x'));
  }
  grpc::Status s = Push({good}, &ack);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  EXPECT_NE(s.error_message().find("start a new stream"), std::string::npos) << s.error_message();
  auto metrics = testing::HttpGet(daemon_->http_port(), "/metrics");
  EXPECT_NE(metrics.body.find("sheaf_ingest_dictionary_bytes 0\n"), std::string::npos)
      << "dictionary memory is released when the streams end";
}

// 2,000 invented method names once grew /metrics by 4.6 MB.
TEST_F(HostileInputTest, UnknownMethodsFoldIntoOneLabelValue) {
  for (int i = 0; i < 50; ++i) {
    grpc::Status s = RawCall("/sheaf.v1.QueryService/Invented" + std::to_string(i), {"x"}, nullptr);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  }
  auto metrics = testing::HttpGet(daemon_->http_port(), "/metrics");
  ASSERT_EQ(metrics.status, 200);
  EXPECT_EQ(metrics.body.find("Invented"), std::string::npos);
  EXPECT_NE(metrics.body.find("grpc_method=\"unknown\""), std::string::npos);
}

// Two idle connections once blocked every scrape for 30 s (civetweb's 2
// workers waited for their requests).
TEST_F(HostileInputTest, IdleHttpConnectionsDoNotBlockScrapes) {
  std::vector<int> idle;
  for (int i = 0; i < 8; ++i) idle.push_back(testing::ConnectLoopback(daemon_->http_port()));
  auto started = std::chrono::steady_clock::now();
  auto metrics = testing::HttpGet(daemon_->http_port(), "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(3));
  for (int fd : idle) close(fd);
}

// end=INT64_MAX with a step once answered OK with nothing (overflow).
TEST_F(HostileInputTest, ExtremeQueryRangesAreInvalidArgumentNamingTheField) {
  auto r = Query("up", 0, INT64_MAX, 60'000);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(r.status.error_message().find("end_ms"), std::string::npos) << r.status.error_message();
  r = Query("up", INT64_MIN, 1, 0);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(r.status.error_message().find("start_ms"), std::string::npos) << r.status.error_message();
  r = Query("up", 0, 1, INT64_MAX);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(r.status.error_message().find("step_ms"), std::string::npos) << r.status.error_message();
}

// Two refs with the same labels and timestamp once stored one sample but
// counted two.
TEST_F(HostileInputTest, TheSameSeriesTwiceInOneBatchIsCountedOnce) {
  v1::MetricBatch b = Batch("a", 1,
                            {MakeSeries({{"__name__", "m"}}, v1::METRIC_TYPE_GAUGE, {{kNow, 1}}),
                             MakeSeries({{"__name__", "m"}}, v1::METRIC_TYPE_GAUGE, {{kNow, 2}})});
  v1::PushAck ack;
  ASSERT_TRUE(Push({b}, &ack).ok());
  EXPECT_EQ(ack.samples_stored(), 1u);
  EXPECT_EQ(Stats().samples(), 1u);
}

TEST_F(HostileInputTest, SequencesAtOrAbove2To63AreInvalid) {
  v1::PushAck ack;
  grpc::Status s = Push({Batch("a", uint64_t{1} << 63, {})}, &ack);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("2^63"), std::string::npos);
}

// A duplicate that follows a batch the same stream stored means another
// writer moved the agent's sequence: counted apart from ordinary retries.
TEST_F(HostileInputTest, UnexpectedDuplicatesAreCounted) {
  v1::PushAck ack;
  ASSERT_TRUE(Push({Batch("twin", 10, {})}, &ack).ok());  // the other twin
  // A retry: the first batch of a stream is a duplicate; expected.
  ASSERT_TRUE(Push({Batch("twin", 5, {}), Batch("twin", 11, {}), Batch("twin", 6, {})}, &ack).ok());
  EXPECT_EQ(ack.batches_duplicate(), 2u);
  auto metrics = testing::HttpGet(daemon_->http_port(), "/metrics");
  EXPECT_NE(metrics.body.find("sheaf_ingest_batches_total{result=\"duplicate\"} 2\n"), std::string::npos);
  EXPECT_NE(metrics.body.find("sheaf_ingest_unexpected_duplicates_total 1\n"), std::string::npos) << metrics.body;
}

TEST_F(HostileInputTest, DeleteSeriesRemovesAPoisonedSeries) {
  v1::PushAck ack;
  ASSERT_TRUE(Push({Batch("a", 1,
                          {MakeSeries({{"__name__", "m"}, {"secret", "hunter2"}}, v1::METRIC_TYPE_GAUGE, {{kNow, 1}}),
                           MakeSeries({{"__name__", "m"}, {"ok", "1"}}, v1::METRIC_TYPE_GAUGE, {{kNow, 1}})})},
                   &ack)
                  .ok());
  auto admin = v1::AdminService::NewStub(channel_);
  {
    grpc::ClientContext ctx;
    v1::DeleteSeriesRequest req;
    req.set_selector("{secret=~\".*\"}");  // matches everything: refused
    v1::DeleteSeriesResponse resp;
    EXPECT_EQ(admin->DeleteSeries(&ctx, req, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  grpc::ClientContext ctx;
  v1::DeleteSeriesRequest req;
  req.set_selector("m{secret!=\"\"}");
  v1::DeleteSeriesResponse resp;
  ASSERT_TRUE(admin->DeleteSeries(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.deleted(), 1u);
  grpc::ClientContext vctx;
  v1::LabelValuesRequest vreq;
  vreq.set_name("secret");
  v1::LabelValuesResponse values;
  ASSERT_TRUE(query_->LabelValues(&vctx, vreq, &values).ok());
  EXPECT_EQ(values.values_size(), 0);
  EXPECT_EQ(Stats().series(), 1u);
}

}  // namespace
}  // namespace sheaf::daemon
