// sheafd's services in-process (InProcessChannel), plus what must cross a
// real socket: gzip on the wire and the HTTP /metrics endpoint.
#include "daemon/daemon.h"

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <thread>

#include "health.grpc.pb.h"
#include "proto/batch_encoder.h"
#include "sheaf/v1/ingest.grpc.pb.h"
#include "sheaf/v1/query.grpc.pb.h"
#include "tests/daemon/daemon_fixture.h"
#include "tests/support/net.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace sheaf::daemon {
namespace {

TEST_F(DaemonTest, PushWithDictionaryAndInlineSeriesThenQueryBack) {
  StreamEncoder enc;
  LabelPairs cpu = {{"__name__", "node_cpu_seconds_total"}, {"host", "a"}, {"mode", "idle"}};
  std::vector<v1::MetricBatch> batches(2);
  for (int b = 0; b < 2; ++b) {
    enc.BeginBatch("agent-1", b + 1, &batches[b]);
    int64_t ts[] = {kNow - 20'000 + b * 10'000};
    double v[] = {100.0 + b};
    enc.Add(SeriesKey(cpu), cpu, v1::METRIC_TYPE_COUNTER, ts, v, 1);
  }
  *batches[1].add_series() = MakeSeries({{"__name__", "node_load1"}, {"host", "a"}}, v1::METRIC_TYPE_GAUGE,
                                        {{kNow - 5000, 0.5}, {kNow, 0.75}});
  v1::PushAck ack;
  ASSERT_TRUE(Push(batches, &ack).ok());
  EXPECT_EQ(ack.durable_sequence(), 2u);
  EXPECT_EQ(ack.batches_applied(), 2u);
  EXPECT_EQ(ack.samples_stored(), 4u);
  EXPECT_EQ(ack.rejected_size(), 0);

  auto r = Query(R"(node_cpu_seconds_total{mode="idle"})", kNow - 60'000, kNow);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  ASSERT_EQ(r.samples.size(), 1u);
  auto& s = r.samples.begin()->second;
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0], std::make_pair(kNow - 20'000, 100.0));
  EXPECT_EQ(s[1], std::make_pair(kNow - 10'000, 101.0));
  EXPECT_EQ(r.messages[0].chunks(0).type(), v1::METRIC_TYPE_COUNTER);

  auto stats = Stats();
  EXPECT_EQ(stats.series(), 2u);
  EXPECT_EQ(stats.samples(), 4u);
  EXPECT_EQ(stats.agents(), 1u);
  EXPECT_FALSE(stats.version().empty());
}

TEST_F(DaemonTest, DuplicateAgentSequenceIsAppliedOnce) {
  auto b1 = Batch("agent-x", 10, {MakeSeries({{"__name__", "c"}}, v1::METRIC_TYPE_COUNTER, {{kNow - 1000, 1}})});
  auto b2 = Batch("agent-x", 11, {MakeSeries({{"__name__", "c"}}, v1::METRIC_TYPE_COUNTER, {{kNow, 2}})});
  v1::PushAck ack;
  // The same batch twice in one stream.
  ASSERT_TRUE(Push({b1, b1}, &ack).ok());
  EXPECT_EQ(ack.batches_applied(), 1u);
  EXPECT_EQ(ack.batches_duplicate(), 1u);
  // A retried stream: the old batch is acknowledged again, the new applied.
  ASSERT_TRUE(Push({b1, b2}, &ack).ok());
  EXPECT_EQ(ack.batches_duplicate(), 1u);
  EXPECT_EQ(ack.batches_applied(), 1u);
  EXPECT_EQ(ack.durable_sequence(), 11u);
  EXPECT_EQ(Stats().samples(), 2u);
  // A duplicate with different content still changes nothing.
  auto changed = Batch("agent-x", 10, {MakeSeries({{"__name__", "c"}}, v1::METRIC_TYPE_COUNTER, {{kNow - 500, 9}})});
  ASSERT_TRUE(Push({changed}, &ack).ok());
  EXPECT_EQ(ack.batches_duplicate(), 1u);
  EXPECT_EQ(Stats().samples(), 2u);
}

TEST_F(DaemonTest, InvalidSeriesAreRejectedAndCountedWhileValidOnesAreStored) {
  v1::MetricBatch b =
      Batch("agent-v", 1,
            {
                MakeSeries({{"__name__", "good"}}, v1::METRIC_TYPE_GAUGE, {{kNow, 1}}),
                MakeSeries({{"__name__", "bad-name"}}, v1::METRIC_TYPE_GAUGE, {{kNow, 1}, {kNow - 1, 2}}),
                MakeSeries({{"__name__", "nan"}}, v1::METRIC_TYPE_GAUGE, {{kNow, std::nan("")}}),
                MakeSeries({{"__name__", "neg"}}, v1::METRIC_TYPE_COUNTER, {{kNow, -1}}),
                MakeSeries({{"__name__", "old"}}, v1::METRIC_TYPE_GAUGE, {{kNow - 30LL * 86'400'000, 1}}),
                MakeSeries({{"__name__", "dup"}, {"a", "1"}, {"a", "2"}}, v1::METRIC_TYPE_GAUGE, {{kNow, 1}}),
            });
  auto* unknown = b.add_samples();
  unknown->set_ref(77);
  unknown->add_timestamps_ms(kNow);
  unknown->add_values(1);
  v1::PushAck ack;
  ASSERT_TRUE(Push({b}, &ack).ok());
  EXPECT_EQ(ack.batches_applied(), 1u);
  EXPECT_EQ(ack.samples_stored(), 1u);
  std::map<v1::RejectReason, v1::RejectCount> by_reason;
  for (const auto& r : ack.rejected()) by_reason[r.reason()] = r;
  EXPECT_EQ(by_reason[v1::REJECT_REASON_INVALID_METRIC_NAME].series(), 1u);
  EXPECT_EQ(by_reason[v1::REJECT_REASON_INVALID_METRIC_NAME].samples(), 2u);
  EXPECT_NE(by_reason[v1::REJECT_REASON_INVALID_METRIC_NAME].example().find("bad-name"), std::string::npos);
  EXPECT_EQ(by_reason[v1::REJECT_REASON_INVALID_VALUE].series(), 2u);
  EXPECT_EQ(by_reason[v1::REJECT_REASON_TIMESTAMP_OUT_OF_WINDOW].series(), 1u);
  EXPECT_EQ(by_reason[v1::REJECT_REASON_DUPLICATE_LABEL_NAME].series(), 1u);
  EXPECT_EQ(by_reason[v1::REJECT_REASON_UNKNOWN_REF].series(), 1u);
  EXPECT_EQ(Stats().series(), 1u);
  EXPECT_EQ(Stats().samples(), 1u);
}

TEST_F(DaemonTest, UndecodableMessageEndsTheCallWithInvalidArgument) {
  v1::MetricBatch good = Batch("agent-u", 1, {MakeSeries({{"__name__", "m"}}, v1::METRIC_TYPE_GAUGE, {{kNow, 1}})});
  auto status = RawPush({good.SerializeAsString(), std::string("\xff\xff\xff\xff\xff", 5)});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("message 2"), std::string::npos) << status.error_message();
  // The good batch before it was stored, and the daemon still serves.
  EXPECT_EQ(Stats().samples(), 1u);
}

TEST_F(DaemonTest, BadBatchHeadersAreInvalidArgument) {
  v1::PushAck ack;
  auto s = Batch("", 1, {});
  EXPECT_EQ(Push({s}, &ack).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  auto zero = Batch("a", 0, {});
  auto st = Push({zero}, &ack);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("sequence"), std::string::npos);
  auto mixed = Push({Batch("a", 1, {}), Batch("b", 2, {})}, &ack);
  EXPECT_EQ(mixed.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(mixed.error_message().find("one stream per agent"), std::string::npos);
}

TEST_F(DaemonTest, QueryStreamsInChunksAndDownsamplesBySteps) {
  std::vector<std::pair<int64_t, double>> samples;
  for (int i = 0; i < 25; ++i) samples.emplace_back(kNow - 250'000 + i * 10'000, i);
  v1::PushAck ack;
  ASSERT_TRUE(Push({Batch("q", 1,
                          {MakeSeries({{"__name__", "m"}, {"k", "a"}}, v1::METRIC_TYPE_GAUGE, samples),
                           MakeSeries({{"__name__", "m"}, {"k", "b"}}, v1::METRIC_TYPE_GAUGE, {{kNow, 7}})})},
                   &ack)
                  .ok());
  auto r = Query("m", kNow - 300'000, kNow, 0, 10);
  ASSERT_TRUE(r.status.ok());
  // 25 samples of k=a in chunks of 10, then k=b: 3 messages.
  ASSERT_EQ(r.messages.size(), 3u);
  EXPECT_EQ(r.messages[0].chunks(0).samples_size(), 10);
  EXPECT_FALSE(r.messages[0].chunks(0).last_chunk());
  EXPECT_FALSE(r.messages[1].chunks(0).last_chunk());
  EXPECT_TRUE(r.messages[2].chunks(0).last_chunk());
  EXPECT_EQ(r.samples["__name__=m,k=a,"].size(), 25u);
  EXPECT_EQ(r.samples["__name__=m,k=b,"].size(), 1u);

  // Step 60 s from start = kNow - 240 s: the last sample in each
  // [t - 60 s, t) window, stamped t.
  auto stepped = Query(R"(m{k="a"})", kNow - 240'000, kNow, 60'000);
  ASSERT_TRUE(stepped.status.ok());
  auto& s = stepped.samples["__name__=m,k=a,"];
  ASSERT_EQ(s.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(s[i].first, kNow - 240'000 + i * 60'000);
    // Index of the last sample before t = kNow - 240 s + 60 s * i; sample j is at kNow - 250 s + 10 s * j.
    EXPECT_EQ(s[i].second, 6 * i);
  }
}

TEST_F(DaemonTest, SamplesTooFarOutOfOrderAreRejectedWithTheirReason) {
  v1::PushAck ack;
  ASSERT_TRUE(Push({Batch("o", 1, {MakeSeries({{"__name__", "m"}}, v1::METRIC_TYPE_GAUGE, {{kNow, 1}})})}, &ack).ok());
  ASSERT_TRUE(Push({Batch("o", 2,
                          {MakeSeries({{"__name__", "m"}}, v1::METRIC_TYPE_GAUGE,
                                      {{kNow - 7'200'000, 2}, {kNow - 600'000, 3}})})},
                   &ack)
                  .ok());
  EXPECT_EQ(ack.samples_stored(), 1u);  // 10 min late is fine, 2 h is not
  ASSERT_EQ(ack.rejected_size(), 1);
  EXPECT_EQ(ack.rejected(0).reason(), v1::REJECT_REASON_OUT_OF_ORDER);
  EXPECT_EQ(ack.rejected(0).samples(), 1u);
  EXPECT_NE(ack.rejected(0).example().find("out-of-order window"), std::string::npos);
}

// With a step of an hour the answer comes from the 1h rollup: the last
// sample of each hour, the same as from raw samples when aligned (the raw
// path is checked against the same windows with a 30 s step below).
TEST_F(DaemonTest, StepQueriesOverRollupsMatchRawSamples) {
  const int64_t hour0 = (kNow - 3 * 3'600'000) / 3'600'000 * 3'600'000;
  std::vector<std::pair<int64_t, double>> samples;
  for (int i = 0; i < 3 * 360; ++i) samples.emplace_back(hour0 + i * 10'000, i);
  v1::PushAck ack;
  ASSERT_TRUE(Push({Batch("r", 1, {MakeSeries({{"__name__", "m"}}, v1::METRIC_TYPE_GAUGE, samples)})}, &ack).ok());
  auto hourly = Query("m", hour0 + 3'600'000, hour0 + 3 * 3'600'000, 3'600'000);
  ASSERT_TRUE(hourly.status.ok()) << hourly.status.error_message();
  auto& s = hourly.samples["__name__=m,"];
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0], std::make_pair(hour0 + 3'600'000, 359.0));  // last sample before the hour
  EXPECT_EQ(s[1], std::make_pair(hour0 + 7'200'000, 719.0));
  EXPECT_EQ(s[2], std::make_pair(hour0 + 10'800'000, 1079.0));
  auto raw = Query("m", hour0 + 3'600'000, hour0 + 3 * 3'600'000, 30'000);  // below every resolution: raw
  auto& r = raw.samples["__name__=m,"];
  ASSERT_EQ(r.size(), 241u);
  EXPECT_EQ(r[0], s[0]);
  EXPECT_EQ(r[120], s[1]);
  EXPECT_EQ(r[240], s[2]);
}

TEST_F(DaemonTest, LabelNamesValuesAndCompaction) {
  v1::PushAck ack;
  ASSERT_TRUE(Push({Batch("l", 1,
                          {MakeSeries({{"__name__", "up"}, {"job", "a"}}, v1::METRIC_TYPE_GAUGE, {{kNow, 1}}),
                           MakeSeries({{"__name__", "up"}, {"job", "b"}}, v1::METRIC_TYPE_GAUGE, {{kNow, 1}})})},
                   &ack)
                  .ok());
  {
    grpc::ClientContext ctx;
    v1::LabelNamesResponse resp;
    ASSERT_TRUE(query_->LabelNames(&ctx, v1::LabelNamesRequest(), &resp).ok());
    EXPECT_EQ(std::vector<std::string>(resp.names().begin(), resp.names().end()),
              (std::vector<std::string>{"__name__", "job"}));
  }
  {
    grpc::ClientContext ctx;
    v1::LabelValuesRequest req;
    req.set_name("job");
    v1::LabelValuesResponse resp;
    ASSERT_TRUE(query_->LabelValues(&ctx, req, &resp).ok());
    EXPECT_EQ(std::vector<std::string>(resp.values().begin(), resp.values().end()),
              (std::vector<std::string>{"a", "b"}));
    grpc::ClientContext ctx2;
    EXPECT_EQ(query_->LabelValues(&ctx2, v1::LabelValuesRequest(), &resp).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  EXPECT_EQ(Stats().head_samples(), 2u);
  grpc::ClientContext ctx;
  v1::CompactResponse resp;
  auto admin = v1::AdminService::NewStub(channel_);
  ASSERT_TRUE(admin->Compact(&ctx, v1::CompactRequest(), &resp).ok());
  EXPECT_GT(resp.storage_bytes_after(), 0u);
  auto st = Stats();
  EXPECT_EQ(st.head_samples(), 0u);
  EXPECT_EQ(st.samples(), 2u);
  EXPECT_GT(st.column_family_bytes().at("samples"), 0u);
  EXPECT_EQ(Query("up", kNow - 1000, kNow).samples.size(), 2u);
}

// Backup and restore: a snapshot holds exactly what was acknowledged before
// it (heads included, as they are only in the log until cut), and a daemon
// started on it has the data and the agents' sequences of that moment.
TEST_F(DaemonTest, SnapshotRestoresTheDataAndSequencesOfItsMoment) {
  auto series = [](double v, int64_t t) {
    return MakeSeries({{"__name__", "c"}, {"host", "a"}}, v1::METRIC_TYPE_COUNTER, {{t, v}});
  };
  v1::PushAck ack;
  ASSERT_TRUE(Push({Batch("agent-s", 1, {series(1, kNow - 3000)}), Batch("agent-s", 2, {series(2, kNow - 2000)})},
                   &ack)
                  .ok());
  auto admin = v1::AdminService::NewStub(channel_);
  auto snapshot = [&](const std::string& name, v1::SnapshotResponse* resp) {
    grpc::ClientContext ctx;
    v1::SnapshotRequest req;
    req.set_name(name);
    return admin->Snapshot(&ctx, req, resp);
  };
  v1::SnapshotResponse snap;
  ASSERT_TRUE(snapshot("before-upgrade", &snap).ok());
  EXPECT_EQ(snap.path(), dir_.Sub("data") + "/snapshots/before-upgrade");
  EXPECT_GT(snap.files(), 0u);
  EXPECT_GT(snap.bytes(), 0u);
  // Acknowledged after the snapshot: not in it.
  ASSERT_TRUE(Push({Batch("agent-s", 3, {series(3, kNow - 1000)})}, &ack).ok());

  // Names are one safe path component; a taken name is refused.
  v1::SnapshotResponse other;
  for (const std::string& bad : std::vector<std::string>{"../escape", "a/b", "..", std::string(129, 'x'), "sp ace"}) {
    grpc::Status s = snapshot(bad, &other);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bad;
    EXPECT_NE(s.error_message().find("letters, digits"), std::string::npos) << s.error_message();
  }
  grpc::Status taken = snapshot("before-upgrade", &other);
  EXPECT_EQ(taken.error_code(), grpc::StatusCode::ALREADY_EXISTS) << taken.error_message();
  ASSERT_TRUE(snapshot("", &other).ok());  // named by the time
  EXPECT_NE(other.path().find("/snapshots/20"), std::string::npos) << other.path();

  // Restore: a daemon on the snapshot.
  daemon_->Shutdown();
  daemon_.reset();
  DaemonConfig restored;
  restored.store.path = snap.path();
  Start(restored);
  auto r = Query("c", kNow - 60'000, kNow);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  ASSERT_EQ(r.samples.size(), 1u);
  EXPECT_EQ(r.samples.begin()->second,
            (std::vector<std::pair<int64_t, double>>{{kNow - 3000, 1.0}, {kNow - 2000, 2.0}}));
  // Sequence 2 was applied before the snapshot (a resend is a duplicate);
  // 3 was not, so the agent's resend of it is stored.
  ASSERT_TRUE(Push({Batch("agent-s", 2, {series(2, kNow - 2000)}), Batch("agent-s", 3, {series(3, kNow - 1000)})},
                   &ack)
                  .ok());
  EXPECT_EQ(ack.batches_duplicate(), 1u);
  EXPECT_EQ(ack.batches_applied(), 1u);
  EXPECT_EQ(Stats().samples(), 3u);
}

TEST_F(DaemonTest, QueryErrorsAreInvalidArgumentWithAReason) {
  auto bad = Query("m{a=", 0, kNow);
  EXPECT_EQ(bad.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(bad.status.error_message().find("position"), std::string::npos);
  auto all = Query(R"({a=~".*"})", 0, kNow);
  EXPECT_EQ(all.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(all.status.error_message().find("every series"), std::string::npos);
  auto range = Query("m", kNow, kNow - 1);
  EXPECT_EQ(range.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  auto regex = Query(R"(m{a=~"(("})", 0, kNow);
  EXPECT_EQ(regex.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(DaemonTest, CancelledQueryStopsAndTheDaemonServesOn) {
  std::vector<v1::Series> series;
  for (int i = 0; i < 200; ++i) {
    std::vector<std::pair<int64_t, double>> samples;
    for (int j = 0; j < 100; ++j) samples.emplace_back(kNow - j * 1000, j);
    series.push_back(MakeSeries({{"__name__", "big"}, {"i", std::to_string(i)}}, v1::METRIC_TYPE_GAUGE, samples));
  }
  v1::PushAck ack;
  ASSERT_TRUE(Push({Batch("big", 1, series)}, &ack).ok());
  grpc::ClientContext ctx;
  v1::QueryRequest req;
  req.set_selector("big");
  req.set_start_ms(kNow - 200'000);
  req.set_end_ms(kNow);
  req.set_max_samples_per_chunk(100);
  auto reader = query_->Query(&ctx, req);
  v1::QueryResponse resp;
  ASSERT_TRUE(reader->Read(&resp));
  ctx.TryCancel();
  int more = 0;
  while (reader->Read(&resp)) ++more;
  EXPECT_LT(more, 199);  // it stopped well before the end
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_EQ(Stats().samples(), 20'000u);
}

TEST_F(DaemonTest, ExpiredDeadlineIsDeadlineExceeded) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() - std::chrono::seconds(1));
  v1::StatsResponse resp;
  EXPECT_EQ(query_->Stats(&ctx, v1::StatsRequest(), &resp).error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
}

TEST_F(DaemonTest, ListSeriesHonoursTheLimit) {
  std::vector<v1::Series> series;
  for (int i = 0; i < 5; ++i) {
    series.push_back(MakeSeries({{"__name__", "s"}, {"i", std::to_string(i)}}, v1::METRIC_TYPE_GAUGE, {{kNow, 1}}));
  }
  v1::PushAck ack;
  ASSERT_TRUE(Push({Batch("l", 1, series)}, &ack).ok());
  grpc::ClientContext ctx;
  v1::ListSeriesRequest req;
  req.set_selector(R"(s{i=~"[0-3]"})");
  req.set_limit(3);
  v1::ListSeriesResponse resp;
  ASSERT_TRUE(query_->ListSeries(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.series_size(), 3);
  EXPECT_TRUE(resp.truncated());
  EXPECT_EQ(resp.series(0).labels(0).value(), "s");
}

TEST_F(DaemonTest, HealthIsServing) {
  grpc::ClientContext ctx;
  grpc::health::v1::HealthCheckResponse resp;
  auto stub = grpc::health::v1::Health::NewStub(channel_);
  ASSERT_TRUE(stub->Check(&ctx, grpc::health::v1::HealthCheckRequest(), &resp).ok());
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
}

// grpcurl and friends find the services through reflection (v1alpha on
// gRPC 1.51). Request: ServerReflectionRequest{list_services: ""} = field 7.
TEST_F(DaemonTest, ReflectionListsTheServices) {
  std::string response;
  auto status = RawCall("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", {std::string("\x3a\x00", 2)},
                        &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  for (const char* service : {"sheaf.v1.IngestService", "sheaf.v1.QueryService", "grpc.health.v1.Health"}) {
    EXPECT_NE(response.find(service), std::string::npos) << service;
  }
}

// A stream that is open when shutdown begins may finish within the grace
// period: its later batches are stored and acknowledged. New calls are
// refused. Over TCP, like agents.
TEST_F(DaemonTest, InFlightStreamFinishesDuringGracefulShutdown) {
  auto tcp =
      grpc::CreateChannel("127.0.0.1:" + std::to_string(daemon_->grpc_port()), grpc::InsecureChannelCredentials());
  auto ingest = v1::IngestService::NewStub(tcp);
  auto query = v1::QueryService::NewStub(tcp);
  grpc::ClientContext ctx;
  ctx.set_compression_algorithm(GRPC_COMPRESS_GZIP);
  v1::PushAck ack;
  auto writer = ingest->Push(&ctx, &ack);
  ASSERT_TRUE(writer->Write(Batch("g", 1, {MakeSeries({{"__name__", "m"}}, v1::METRIC_TYPE_GAUGE, {{kNow - 1, 1}})})));
  // Make sure the first batch is in before shutting down.
  ASSERT_TRUE(testing::WaitFor([&] { return Stats().samples() == 1; }, std::chrono::seconds(10)));
  channel_.reset();  // the in-process channel must not outlive the server
  query_.reset();
  ingest_.reset();
  std::thread stopper([&] { daemon_->Shutdown(); });
  // Shutdown has begun once new calls are refused.
  grpc::Status refused;
  EXPECT_TRUE(testing::WaitFor(
      [&] {
        grpc::ClientContext c;
        c.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(100));
        v1::StatsResponse r;
        refused = query->Stats(&c, v1::StatsRequest(), &r);
        return !refused.ok();
      },
      std::chrono::seconds(10)));
  EXPECT_TRUE(writer->Write(Batch("g", 2, {MakeSeries({{"__name__", "m"}}, v1::METRIC_TYPE_GAUGE, {{kNow, 2}})})));
  writer->WritesDone();
  auto status = writer->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(ack.durable_sequence(), 2u);
  EXPECT_EQ(ack.batches_applied(), 2u);
  stopper.join();
}

// Over TCP through a relay that counts bytes: the batch is very
// compressible, so gzip must shrink what crosses the socket. With gzip off
// the same batch is bigger than its raw size; this fails if compression is
// not negotiated.
TEST_F(DaemonTest, GzipIsNegotiatedOnTheWire) {
  std::vector<v1::Series> series;
  for (int i = 0; i < 2000; ++i) {
    series.push_back(MakeSeries({{"__name__", "compressible_metric_name_repeated"},
                                 {"instance", "host-" + std::to_string(i)},
                                 {"job", "a-rather-long-job-name"}},
                                v1::METRIC_TYPE_GAUGE, {{kNow, 1}}));
  }
  const size_t raw = Batch("g", 1, series).ByteSizeLong();
  auto measure = [&](bool gzip, uint64_t seq) {
    testing::CountingRelay relay(daemon_->grpc_port());
    auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(relay.port()), grpc::InsecureChannelCredentials());
    v1::PushAck ack;
    EXPECT_TRUE(Push({Batch("g", seq, series)}, &ack, channel, gzip).ok());
    EXPECT_EQ(ack.batches_applied(), 1u);
    return relay.client_to_server_bytes();
  };
  uint64_t plain = measure(false, 1);
  uint64_t gzipped = measure(true, 2);
  EXPECT_GT(plain, raw);
  EXPECT_LT(gzipped * 5, raw) << "gzip: " << gzipped << " bytes, raw batch: " << raw;
}

TEST_F(DaemonTest, MetricsEndpointServesValidExposition) {
  v1::PushAck ack;
  ASSERT_TRUE(Push({Batch("m", 1,
                          {MakeSeries({{"__name__", "bad-name"}}, v1::METRIC_TYPE_GAUGE, {{kNow, 1}}),
                           MakeSeries({{"__name__", "ok"}}, v1::METRIC_TYPE_GAUGE, {{kNow, 1}})})},
                   &ack)
                  .ok());
  auto resp = testing::HttpGet(daemon_->http_port(), "/metrics");
  ASSERT_EQ(resp.status, 200);
  const std::string& body = resp.body;
  EXPECT_NE(body.find("sheaf_ingest_samples_total 1\n"), std::string::npos) << body;
  EXPECT_NE(body.find("sheaf_ingest_rejected_series_total{reason=\"invalid_metric_name\"} 1\n"), std::string::npos);
  EXPECT_NE(body.find("sheaf_ingest_rejected_series_total{reason=\"series_limit\"} 0\n"), std::string::npos);
  EXPECT_NE(body.find("sheaf_grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Push\",grpc_service=\"sheaf.v1."
                      "IngestService\"} 1"),
            std::string::npos);
  EXPECT_NE(body.find("sheaf_grpc_server_handling_seconds_bucket{grpc_method=\"Push\""), std::string::npos);
  EXPECT_NE(body.find("sheaf_storage_samples 1\n"), std::string::npos);
  EXPECT_NE(body.find("sheaf_storage_disk_bytes "), std::string::npos);
  EXPECT_NE(body.find("sheaf_storage_agents 1\n"), std::string::npos);
  EXPECT_NE(body.find("sheaf_storage_agent_sets_cached 1\n"), std::string::npos) << body;
  EXPECT_NE(body.find("\nsheaf_storage_agent_set_loads_total "), std::string::npos);  // a new agent: looked up on disk
  // The data disk's free space and size, as statvfs gives them.
  auto gauge = [&](const std::string& name) {
    size_t at = body.find("\n" + name + " ");
    return at == std::string::npos ? -1.0 : std::strtod(body.c_str() + at + name.size() + 2, nullptr);
  };
  const double free = gauge("sheaf_storage_disk_free_bytes"), size = gauge("sheaf_storage_disk_size_bytes");
  EXPECT_GT(free, 0);
  EXPECT_GE(size, free);
  // Every answer of the HTTP server is counted by route and code.
  EXPECT_EQ(testing::HttpGet(daemon_->http_port(), "/no/such/page").status, 404);
  const std::string again = testing::HttpGet(daemon_->http_port(), "/metrics").body;
  EXPECT_NE(again.find("sheaf_http_requests_total{code=\"200\",handler=\"/metrics\"} 1\n"), std::string::npos) << again;
  EXPECT_NE(again.find("sheaf_http_requests_total{code=\"404\",handler=\"\"} 1\n"), std::string::npos);
  EXPECT_NE(again.find("sheaf_http_request_duration_seconds_count{handler=\"/metrics\"} 1\n"), std::string::npos);
  // promtool is the reference linter of the exposition format.
  testing::TempDir tmp;
  std::string file = tmp.Sub("metrics.txt");
  FILE* f = std::fopen(file.c_str(), "w");
  std::fwrite(body.data(), 1, body.size(), f);
  std::fclose(f);
  std::string cmd = "promtool check metrics < " + file + " > " + tmp.Sub("out.txt") + " 2>&1";
  int rc = std::system(cmd.c_str());
  std::string out;
  if (FILE* o = std::fopen(tmp.Sub("out.txt").c_str(), "r")) {
    char buf[4096];
    for (size_t n; (n = std::fread(buf, 1, sizeof(buf), o)) > 0;) out.append(buf, n);
    std::fclose(o);
  }
  EXPECT_EQ(rc, 0) << "promtool check metrics: " << out;
}

// Bytes of a MetricBatch as the first version of sheaf.v1 wrote it (agent
// "web-1", one dictionary series and one inline series). Whatever the proto
// becomes, these must decode and store the same way: old agents stay in
// the field for years.
constexpr char kFirstVersionBatch[] =
    "\x0a\x05\x77\x65\x62\x2d\x31\x10\x81\x80\xf9\xc0\xc1\xc4\x82\x03\x1a\x36\x08\x01\x12\x22\x0a\x08\x5f\x5f\x6e\x61"
    "\x6d\x65\x5f\x5f\x12\x16\x6e\x6f\x64\x65\x5f\x63\x70\x75\x5f\x73\x65\x63\x6f\x6e\x64\x73\x5f\x74\x6f\x74\x61\x6c"
    "\x12\x0c\x0a\x04\x6d\x6f\x64\x65\x12\x04\x69\x64\x6c\x65\x18\x01\x22\x14\x08\x01\x12\x06\x98\x98\xf1\xc2\xb1\x34"
    "\x1a\x08\x29\x5c\x8f\xc2\xd5\x1c\xc8\x40\x2a\x2c\x0a\x16\x0a\x08\x5f\x5f\x6e\x61\x6d\x65\x5f\x5f\x12\x0a\x6e\x6f"
    "\x64\x65\x5f\x6c\x6f\x61\x64\x31\x10\x02\x1a\x10\x08\x98\x98\xf1\xc2\xb1\x34\x11\x00\x00\x00\x00\x00\x00\xd0\x3f";

TEST_F(DaemonTest, FirstVersionBatchBytesAreStillAccepted) {
  std::string bytes(kFirstVersionBatch, sizeof(kFirstVersionBatch) - 1);
  v1::MetricBatch decoded;
  ASSERT_TRUE(decoded.ParseFromString(bytes));
  EXPECT_EQ(decoded.agent_id(), "web-1");
  EXPECT_EQ(decoded.sequence(), 1700000000000001u);
  ASSERT_EQ(decoded.definitions_size(), 1);
  EXPECT_EQ(decoded.definitions(0).type(), v1::METRIC_TYPE_COUNTER);
  EXPECT_EQ(decoded.samples(0).values(0), 12345.67);
  EXPECT_EQ(decoded.series(0).samples(0).value(), 0.25);

  // And the daemon stores both series from the raw bytes.
  ASSERT_TRUE(RawPush({bytes}).ok());
  EXPECT_EQ(Stats().series(), 2u);
  EXPECT_EQ(Stats().samples(), 2u);
}

TEST(DaemonStartTest, TakenPortIsAClearError) {
  testing::TempDir dir;
  DaemonConfig config;
  config.grpc_listen = "127.0.0.1:0";
  config.http_listen = "127.0.0.1:0";
  config.store.path = dir.Sub("a");
  auto first = Daemon::Start(config);
  ASSERT_TRUE(first.ok()) << first.status();
  DaemonConfig second = config;
  second.store.path = dir.Sub("b");
  second.grpc_listen = "127.0.0.1:" + std::to_string((*first)->grpc_port());
  auto taken = Daemon::Start(second);
  ASSERT_FALSE(taken.ok());
  EXPECT_EQ(taken.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(taken.status().message().find("grpc"), std::string::npos) << taken.status();
  DaemonConfig third = config;
  third.store.path = dir.Sub("c");
  third.http_listen = "127.0.0.1:" + std::to_string((*first)->http_port());
  auto http_taken = Daemon::Start(third);
  ASSERT_FALSE(http_taken.ok());
  EXPECT_NE(http_taken.status().message().find("HTTP"), std::string::npos) << http_taken.status();
}

// A manual compaction can take minutes; it once held shutdown past the
// grace period. It is cancelled now, and answers CANCELLED.
class SlowCompactionTest : public DaemonTest {
 protected:
  void SetUp() override {
    DaemonConfig config;
    config.store.test_fault = [this](std::string_view point) {
      if (point == "compact") {
        compacting_ = true;
        std::this_thread::sleep_for(std::chrono::seconds(1));  // each column family takes a second
      }
      return absl::OkStatus();
    };
    Start(config);
  }
  std::atomic<bool> compacting_ = false;
};

TEST_F(SlowCompactionTest, ShutdownCancelsARunningCompaction) {
  auto admin = v1::AdminService::NewStub(channel_);
  grpc::Status compact_status;
  std::thread client([&] {
    grpc::ClientContext ctx;
    v1::CompactResponse resp;
    compact_status = admin->Compact(&ctx, v1::CompactRequest(), &resp);
  });
  ASSERT_TRUE(testing::WaitFor([&] { return compacting_.load(); }, std::chrono::seconds(10)));
  auto started = std::chrono::steady_clock::now();
  daemon_->Shutdown();  // grace period: 1 s; the compaction alone would take 6
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::milliseconds(2500));
  client.join();
  EXPECT_EQ(compact_status.error_code(), grpc::StatusCode::CANCELLED) << compact_status.error_message();
}

}  // namespace
}  // namespace sheaf::daemon
