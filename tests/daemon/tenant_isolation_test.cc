// Tenants (docs/SECURITY.md): with two tenants' tokens, tenant A can
// neither read, list, tail, federate, remote-read, remote-write-out, delete nor overwrite
// tenant B's series, whatever the matchers ({__name__=~".+"} included),
// the same label set in two tenants is two series, agent sequences are per
// tenant, and tenant ids survive a restart (the store's registry).
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <snappy.h>

#include <string>
#include <vector>

#include "prometheus/remote.pb.h"
#include "storage/series_store.h"
#include "tests/daemon/auth_fixture.h"
#include "tests/support/net.h"
#include "tests/support/process.h"

namespace sheaf::daemon {
namespace {

constexpr char kTokens[] = R"(
tokens:
  - {name: a, token: token-a, tenant: team-a, roles: [ingest, query, admin]}
  - {name: b, token: token-b, tenant: team-b, roles: [ingest, query, admin]}
)";

const char* const kEverything[] = {R"({__name__=~".+"})", R"({host=~".+"})", "cpu",
                                   R"({host="h1"})", R"({__name__!=""})"};

v1::MetricBatch CpuBatch(const std::string& agent, uint64_t seq, double value, const std::string& extra_label = "") {
  std::vector<std::pair<std::string, std::string>> labels = {{"__name__", "cpu"}, {"host", "h1"}};
  if (!extra_label.empty()) labels.push_back({extra_label, "x"});
  return Batch(agent, seq, {MakeSeries(labels, v1::METRIC_TYPE_GAUGE, {{kNow, value}})});
}

class TenantIsolationTest : public AuthDaemonTest {
 protected:
  // The values of every sample in a result, any series.
  static std::vector<double> Values(const QueryResult& r) {
    std::vector<double> out;
    for (const auto& [key, samples] : r.samples) {
      for (const auto& [t, v] : samples) out.push_back(v);
    }
    return out;
  }

  // A pushes cpu{host="h1"} = 1, B the same label set = 2 (and a label of
  // its own, "secret_b", on a second series), both as agent "agent-1" with
  // sequence 1.
  void PushBoth() {
    v1::PushAck ack;
    ASSERT_TRUE(PushAs("token-a", {CpuBatch("agent-1", 1, 1)}, &ack).ok());
    EXPECT_EQ(ack.batches_applied(), 1u);
    // The same agent id and sequence in another tenant is not a duplicate.
    ASSERT_TRUE(PushAs("token-b", {CpuBatch("agent-1", 1, 2), CpuBatch("agent-1", 2, 2, "secret_b")}, &ack).ok());
    EXPECT_EQ(ack.batches_applied(), 2u);
    EXPECT_EQ(ack.batches_duplicate(), 0u);
    EXPECT_EQ(ack.durable_sequence(), 2u);
  }
};

TEST_F(TenantIsolationTest, ReadsAndListingsSeeOnlyTheCallersTenant) {
  StartWithTokens(kTokens);
  PushBoth();
  for (const char* selector : kEverything) {
    SCOPED_TRACE(selector);
    auto a = QueryAs("token-a", selector);
    ASSERT_TRUE(a.status.ok()) << a.status.error_message();
    EXPECT_EQ(Values(a), std::vector<double>{1});
    auto b = QueryAs("token-b", selector);
    ASSERT_TRUE(b.status.ok()) << b.status.error_message();
    EXPECT_EQ(Values(b), (std::vector<double>{2, 2}));
    // PromQL, through the engine.
    auto pa = QueryAs("token-a", "", selector);
    ASSERT_TRUE(pa.status.ok()) << pa.status.error_message();
    EXPECT_EQ(Values(pa), std::vector<double>{1});
  }
  auto sum = QueryAs("token-a", "", "sum(cpu)");
  EXPECT_EQ(Values(sum), std::vector<double>{1});

  grpc::ClientContext list_ctx;
  AddToken(&list_ctx, "token-a");
  v1::ListSeriesRequest list;
  list.set_selector(R"({__name__=~".+"})");
  v1::ListSeriesResponse series;
  ASSERT_TRUE(query_->ListSeries(&list_ctx, list, &series).ok());
  EXPECT_EQ(series.series_size(), 1);

  grpc::ClientContext names_ctx;
  AddToken(&names_ctx, "token-a");
  v1::LabelNamesResponse names;
  ASSERT_TRUE(query_->LabelNames(&names_ctx, v1::LabelNamesRequest(), &names).ok());
  EXPECT_EQ(std::vector<std::string>(names.names().begin(), names.names().end()),
            (std::vector<std::string>{"__name__", "host"}));

  grpc::ClientContext values_ctx;
  AddToken(&values_ctx, "token-a");
  v1::LabelValuesRequest values_req;
  values_req.set_name("secret_b");
  v1::LabelValuesResponse values;
  ASSERT_TRUE(query_->LabelValues(&values_ctx, values_req, &values).ok());
  EXPECT_EQ(values.values_size(), 0);
}

TEST_F(TenantIsolationTest, DeleteSeriesDeletesOnlyTheCallersSeries) {
  StartWithTokens(kTokens);
  PushBoth();
  grpc::ClientContext ctx;
  AddToken(&ctx, "token-a");
  auto admin = v1::AdminService::NewStub(channel_);
  v1::DeleteSeriesRequest req;
  req.set_selector(R"({__name__=~".+"})");
  v1::DeleteSeriesResponse resp;
  ASSERT_TRUE(admin->DeleteSeries(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.deleted(), 1u);
  EXPECT_TRUE(QueryAs("token-a", R"({__name__=~".+"})").samples.empty());
  EXPECT_EQ(Values(QueryAs("token-b", R"({__name__=~".+"})")), (std::vector<double>{2, 2}));
}

TEST_F(TenantIsolationTest, TailSeesOnlyTheCallersTenant) {
  StartWithTokens(kTokens);
  grpc::ClientContext ctx;
  AddToken(&ctx, "token-a");
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(15));
  auto stream = query_->Tail(&ctx);
  v1::TailRequest sub;
  sub.mutable_subscribe()->set_subscription_id(1);
  sub.mutable_subscribe()->set_selector(R"({__name__=~".+"})");
  ASSERT_TRUE(stream->Write(sub));
  v1::TailResponse response;
  ASSERT_TRUE(stream->Read(&response));  // the ack
  ASSERT_EQ(response.acks_size(), 1);
  EXPECT_EQ(response.acks(0).code(), 0);

  // B first, then A: the first sample A's tail sees must be A's own.
  v1::PushAck ack;
  ASSERT_TRUE(PushAs("token-b", {CpuBatch("agent-b", 1, 2, "secret_b")}, &ack).ok());
  ASSERT_TRUE(PushAs("token-a", {CpuBatch("agent-a", 1, 1)}, &ack).ok());
  std::vector<double> seen;
  while (seen.empty() && stream->Read(&response)) {
    for (const auto& s : response.series()) {
      for (const auto& l : s.labels()) EXPECT_NE(l.name(), "secret_b");
      for (const auto& p : s.samples()) seen.push_back(p.value());
    }
  }
  EXPECT_EQ(seen, std::vector<double>{1});
  ctx.TryCancel();
  (void)stream->Finish();
}

TEST_F(TenantIsolationTest, TheConsolesTailSeesOnlyTheCallersTenant) {
  StartWithTokens(kTokens);
  testing::RawHttpStream tail(daemon_->http_port(),
                              "GET /api/v1/tail?match=%7B__name__%3D~%22.%2B%22%7D HTTP/1.1\r\nHost: x\r\n"
                              "Authorization: Bearer token-a\r\n\r\n");
  ASSERT_TRUE(tail.sent());
  const std::string& got = tail.received();
  ASSERT_TRUE(tail.ReadUntil(": sheafd tail\n\n")) << got;
  // B first, then A: the first event A's tail gets is A's sample.
  v1::PushAck ack;
  ASSERT_TRUE(PushAs("token-b", {CpuBatch("agent-b", 1, 2, "secret_b")}, &ack).ok());
  ASSERT_TRUE(PushAs("token-a", {CpuBatch("agent-a", 1, 1)}, &ack).ok());
  ASSERT_TRUE(tail.ReadUntil("}]}\n\n")) << got;
  EXPECT_NE(got.find(R"("samples":[[1.8e+09,1]])"), std::string::npos) << got;
  EXPECT_EQ(got.find("secret_b"), std::string::npos) << got;
}

TEST_F(TenantIsolationTest, HttpReadsWritesFederateAndRemoteReadStayInTheTenant) {
  DaemonConfig config;
  config.federate.now_ms = [] { return kNow; };
  StartWithTokens(kTokens, config);
  PushBoth();
  const int port = daemon_->http_port();
  auto body_a = HttpCall(port, "GET", "/api/v1/query?query=%7B__name__%3D~%22.%2B%22%7D&time=1800000000", "token-a");
  ASSERT_EQ(body_a.status, 200) << body_a.body;
  EXPECT_NE(body_a.body.find(R"("1")"), std::string::npos) << body_a.body;
  EXPECT_EQ(body_a.body.find(R"("2")"), std::string::npos) << body_a.body;
  auto labels = HttpCall(port, "GET", "/api/v1/labels", "token-a");
  EXPECT_EQ(labels.body.find("secret_b"), std::string::npos) << labels.body;
  auto series = HttpCall(port, "GET", "/api/v1/series?match[]=%7B__name__%3D~%22.%2B%22%7D", "token-a");
  EXPECT_EQ(series.body.find("secret_b"), std::string::npos) << series.body;
  EXPECT_NE(series.body.find("cpu"), std::string::npos) << series.body;

  // The console's data: cardinality and the agents of the caller's tenant.
  auto tsdb = HttpCall(port, "GET", "/api/v1/status/tsdb", "token-a");
  ASSERT_EQ(tsdb.status, 200) << tsdb.body;
  EXPECT_NE(tsdb.body.find(R"("numSeries":1)"), std::string::npos) << tsdb.body;
  EXPECT_EQ(tsdb.body.find("secret_b"), std::string::npos) << tsdb.body;
  auto agents_a = HttpCall(port, "GET", "/api/v1/status/agents", "token-a");
  EXPECT_NE(agents_a.body.find(R"("batches":1)"), std::string::npos) << agents_a.body;
  auto agents_b = HttpCall(port, "GET", "/api/v1/status/agents", "token-b");
  EXPECT_NE(agents_b.body.find(R"("batches":2)"), std::string::npos) << agents_b.body;

  auto federate = HttpCall(port, "GET", "/federate?match[]=%7B__name__%3D~%22.%2B%22%7D", "token-a");
  ASSERT_EQ(federate.status, 200) << federate.body;
  EXPECT_NE(federate.body.find(R"(cpu{host="h1"} 1 )"), std::string::npos) << federate.body;
  EXPECT_EQ(federate.body.find("secret_b"), std::string::npos) << federate.body;
  EXPECT_EQ(federate.body.find(" 2 "), std::string::npos) << federate.body;

  // Remote read of everything as A.
  prompb::ReadRequest read;
  prompb::Query* q = read.add_queries();
  q->set_start_timestamp_ms(0);
  q->set_end_timestamp_ms(kNow + 60'000);
  prompb::LabelMatcher* m = q->add_matchers();
  m->set_type(prompb::LabelMatcher::RE);
  m->set_name("__name__");
  m->set_value(".+");
  std::string raw = read.SerializeAsString(), compressed;
  snappy::Compress(raw.data(), raw.size(), &compressed);
  auto answer = HttpCall(port, "POST", "/api/v1/read", "token-a", compressed,
                         {"Content-Type: application/x-protobuf", "Content-Encoding: snappy"});
  ASSERT_EQ(answer.status, 200) << answer.body;
  std::string decoded;
  ASSERT_TRUE(snappy::Uncompress(answer.body.data(), answer.body.size(), &decoded));
  prompb::ReadResponse response;
  ASSERT_TRUE(response.ParseFromString(decoded));
  ASSERT_EQ(response.results_size(), 1);
  std::vector<double> values;
  for (const auto& ts : response.results(0).timeseries()) {
    for (const auto& l : ts.labels()) EXPECT_NE(l.name(), "secret_b");
    for (const auto& s : ts.samples()) values.push_back(s.value());
  }
  std::sort(values.begin(), values.end());
  EXPECT_EQ(values, std::vector<double>{1});  // A's cpu only

  // Remote write as B of A's label set at the same time: a series of B's,
  // A's value stays.
  prompb::WriteRequest write;
  prompb::TimeSeries* ts = write.add_timeseries();
  for (auto [n, v] : {std::pair{"__name__", "cpu"}, {"host", "h1"}}) {
    prompb::Label* l = ts->add_labels();
    l->set_name(n);
    l->set_value(v);
  }
  prompb::Sample* s = ts->add_samples();
  s->set_timestamp(kNow);
  s->set_value(99);
  raw = write.SerializeAsString();
  compressed.clear();
  snappy::Compress(raw.data(), raw.size(), &compressed);
  auto written = HttpCall(port, "POST", "/api/v1/write", "token-b", compressed,
                          {"Content-Type: application/x-protobuf", "Content-Encoding: snappy",
                           "X-Prometheus-Remote-Write-Version: 0.1.0"});
  ASSERT_EQ(written.status, 204) << written.body;
  EXPECT_EQ(Values(QueryAs("token-a", "cpu")), std::vector<double>{1});
  auto b = Values(QueryAs("token-b", R"(cpu{secret_b=""})"));
  EXPECT_EQ(b, std::vector<double>{99});
}

TEST_F(TenantIsolationTest, TenantIdsSurviveARestartWhateverTheFileOrder) {
  StartWithTokens(kTokens);
  PushBoth();
  daemon_.reset();
  // The same tokens listed the other way round: ids come from the store's
  // registry, not from the file's order.
  WriteTextFile(tokens_path_, R"(
- {name: b, token: token-b, tenant: team-b, roles: [ingest, query, admin]}
- {name: c, token: token-c, tenant: team-c, roles: [query]}
- {name: a, token: token-a, tenant: team-a, roles: [ingest, query, admin]}
)");
  DaemonConfig config;
  config.auth_tokens = tokens_path_;
  config.store.path = dir_.Sub("data");
  Start(config);
  EXPECT_EQ(Values(QueryAs("token-a", "cpu")), std::vector<double>{1});
  EXPECT_EQ(Values(QueryAs("token-b", R"(cpu{secret_b=""})")), std::vector<double>{2});
  EXPECT_TRUE(QueryAs("token-c", R"({__name__=~".+"})").samples.empty());
  // Agent sequences stayed per tenant: A's agent-1 is at 1, so 2 is new.
  v1::PushAck ack;
  ASSERT_TRUE(PushAs("token-a", {CpuBatch("agent-1", 2, 5)}, &ack).ok());
  EXPECT_EQ(ack.batches_applied(), 1u);
}

// A remote with `tenant: team-b` forwards team-b's series and never
// team-a's: the receiver is a second sheafd (remote write in).
TEST_F(TenantIsolationTest, RemoteWriteOutForwardsOnlyItsTenantsSeries) {
  DaemonConfig receiver_config;
  receiver_config.grpc_listen = "127.0.0.1:0";
  receiver_config.http_listen = "127.0.0.1:0";
  receiver_config.store.path = dir_.Sub("receiver");
  receiver_config.store.sync = false;
  receiver_config.ingest.now_ms = [] { return kNow; };
  auto receiver = Daemon::Start(receiver_config);
  ASSERT_TRUE(receiver.ok()) << receiver.status();

  DaemonConfig config;
  RemoteWriteConfig rw;
  rw.url = fmt::format("http://127.0.0.1:{}/api/v1/write", (*receiver)->http_port());
  rw.tenant = "team-b";
  rw.match = {R"({__name__=~".+"})"};
  rw.queue_sync = false;
  rw.batch_send_deadline = std::chrono::milliseconds(50);
  ASSERT_TRUE(ValidateRemoteWriteConfig(&rw, dir_.Sub("data"), "test").ok());
  config.remote_write = {rw};
  StartWithTokens(kTokens, config);
  PushBoth();

  auto received = [&] {
    QueryResult r;
    grpc::ClientContext ctx;
    v1::QueryRequest req;
    req.set_selector(R"({__name__=~".+"})");
    req.set_start_ms(kNow - 3'600'000);
    req.set_end_ms(kNow + 3'600'000);
    ReadAll(v1::QueryService::NewStub((*receiver)->InProcessChannel())->Query(&ctx, req).get(), &r);
    return r;
  };
  ASSERT_TRUE(testing::WaitFor([&] { return received().samples.size() == 2; }, std::chrono::seconds(20)));
  EXPECT_EQ(Values(received()), (std::vector<double>{2, 2}));  // team-b's two series; team-a's 1 never left
  EXPECT_EQ(received().samples.count("__name__=cpu,host=h1,"), 1u);
  EXPECT_EQ(received().samples.count("__name__=cpu,host=h1,secret_b=x,"), 1u);
}

TEST_F(TenantIsolationTest, RuleGroupsReadAndWriteTheirOwnTenant) {
  StartWithTokens(kTokens);
  PushBoth();
  daemon_.reset();
  // The same daemon with rules, on a frozen clock: each group is evaluated
  // once at kNow, right after the start.
  const std::string rules = dir_.Sub("rules.yml");
  WriteTextFile(rules, R"yaml(
groups:
  - name: of-a
    tenant: team-a
    rules:
      - {record: "tenant_cpu:sum", expr: "sum(cpu)"}
  - name: of-b
    tenant: team-b
    rules:
      - {record: "tenant_cpu:sum", expr: "sum(cpu) * 10"}
)yaml");
  DaemonConfig config;
  config.auth_tokens = tokens_path_;
  config.store.path = dir_.Sub("data");
  config.rules.files = {rules};
  config.rules.default_interval_ms = 1000;
  config.rules.now_ms = [] { return kNow; };
  Start(config);
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        return !QueryAs("token-a", "tenant_cpu:sum").samples.empty() &&
               !QueryAs("token-b", "tenant_cpu:sum").samples.empty();
      },
      std::chrono::seconds(10)));
  EXPECT_EQ(Values(QueryAs("token-a", "tenant_cpu:sum")), std::vector<double>{1});
  EXPECT_EQ(Values(QueryAs("token-b", "tenant_cpu:sum")), std::vector<double>{40});
}

TEST(TenantRegistryTest, NamesGetIdsOnFirstUseKeptAcrossReopen) {
  testing::TempDir dir;
  storage::StoreOptions options;
  options.path = dir.Sub("store");
  options.sync = false;
  {
    auto store = storage::SeriesStore::Open(options);
    ASSERT_TRUE(store.ok()) << store.status();
    EXPECT_EQ(*(*store)->TenantIdFor("default"), storage::kDefaultTenant);
    EXPECT_EQ(*(*store)->TenantIdFor("x"), 1u);
    EXPECT_EQ(*(*store)->TenantIdFor("y.z-1_2"), 2u);
    EXPECT_EQ(*(*store)->TenantIdFor("x"), 1u);
    for (const char* bad : {"", "a b", "ü", "a/b"}) {
      EXPECT_EQ((*store)->TenantIdFor(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
    }
    EXPECT_EQ((*store)->TenantIdFor(std::string(65, 'a')).status().code(), absl::StatusCode::kInvalidArgument);
    // The same labels in two tenants: two series.
    const storage::Labels labels = {{"__name__", "cpu"}};
    auto in_x = (*store)->GetOrCreateSeries(1, labels, model::MetricType::kGauge);
    auto in_default = (*store)->GetOrCreateSeries(labels, model::MetricType::kGauge);
    ASSERT_TRUE(in_x.ok() && in_default.ok());
    EXPECT_NE(*in_x, *in_default);
  }
  auto store = storage::SeriesStore::Open(options);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ(*(*store)->TenantIdFor("y.z-1_2"), 2u);
  EXPECT_EQ(*(*store)->TenantIdFor("new"), 3u);
  EXPECT_EQ((*store)->Tenants(),
            (std::map<std::string, storage::TenantId>{{"default", 0}, {"new", 3}, {"x", 1}, {"y.z-1_2", 2}}));
}

}  // namespace
}  // namespace sheaf::daemon
