// Bearer tokens (daemon/auth.h): the token file (plain and sha256 entries,
// roles, agent patterns, every kind of bad entry), reloads that keep the
// old tokens on a bad file, and the checks on every gRPC method (walked
// from the generated descriptors) and HTTP route of an in-process sheafd.
#include <google/protobuf/descriptor.h>
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "daemon/auth.h"
#include "daemon/grpc_auth.h"
#include "health.grpc.pb.h"
#include "tests/daemon/auth_fixture.h"
#include "tests/support/temp_dir.h"

namespace sheaf::daemon {
namespace {

// Tenant ids handed out in order, as the store's registry does.
TenantResolver FakeResolver() {
  auto ids = std::make_shared<std::map<std::string, storage::TenantId, std::less<>>>();
  (*ids)["default"] = 0;
  return [ids](std::string_view name) -> absl::StatusOr<storage::TenantId> {
    auto it = ids->find(name);
    if (it != ids->end()) return it->second;
    storage::TenantId id = static_cast<storage::TenantId>(ids->size());
    ids->emplace(std::string(name), id);
    return id;
  };
}

class TokenFileTest : public ::testing::Test {
 protected:
  absl::StatusOr<std::unique_ptr<TokenAuthenticator>> Load(const std::string& yaml) {
    WriteTextFile(path_, yaml);
    return TokenAuthenticator::Create(path_, FakeResolver());
  }
  testing::TempDir dir_;
  const std::string path_ = dir_.Sub("tokens.yaml");
};

constexpr char kTwoTokens[] = R"(
tokens:
  - name: web-agents
    token: plain-secret
    tenant: team-a
    roles: [ingest]
    agents: 'web-[0-9]+'
  - sha256: 4A9D7A1E5E3F5B2D0C1A6F6F4E58D9C0B7E5D44D5F2BC0A6B4C0D3E3C7B5A6F1
    tenant: team-b
    roles: [query, admin]
)";

TEST_F(TokenFileTest, PlainAndSha256EntriesGiveTheirTenantAndRoles) {
  // The sha256 entry of kTwoTokens is not a real digest: use one that is.
  const std::string digest = Sha256Hex("hashed-secret");
  ASSERT_EQ(digest.size(), 64u);
  std::string yaml = kTwoTokens;
  yaml.replace(yaml.find("4A9D"), 64, digest);
  auto auth = Load(yaml);
  ASSERT_TRUE(auth.ok()) << auth.status();

  auto a = (*auth)->Authenticate("Bearer plain-secret");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->tenant_name, "team-a");
  EXPECT_EQ(a->tenant, 1u);
  EXPECT_EQ(a->roles, kRoleIngest);
  EXPECT_EQ(a->token_name, "web-agents");

  auto b = (*auth)->Authenticate("bearer hashed-secret");  // the scheme is case-insensitive
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->tenant_name, "team-b");
  EXPECT_EQ(b->tenant, 2u);
  EXPECT_EQ(b->roles, kRoleQuery | kRoleAdmin);
  EXPECT_EQ(b->token_name, "sha256:" + digest.substr(0, 8));  // no name: the digest's start, never the token
}

TEST_F(TokenFileTest, MissingUnknownAndWrongRoleAreRefusedAndCounted) {
  auto auth = Load(R"(- {token: t1, tenant: a, roles: [ingest]})");
  ASSERT_TRUE(auth.ok()) << auth.status();
  TokenAuthenticator& tokens = **auth;

  auto missing = Authorize(&tokens, "", kRoleIngest);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_NE(missing.status().message().find("missing bearer token: pass --token-file"), std::string_view::npos);
  auto unknown = Authorize(&tokens, "Bearer t2", kRoleIngest);
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_NE(unknown.status().message().find("unknown token"), std::string_view::npos);
  EXPECT_EQ(unknown.status().message().find("t2"), std::string_view::npos);  // never echoed
  auto role = Authorize(&tokens, "Bearer t1", kRoleQuery);
  EXPECT_EQ(role.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(role.status().message().find("query role"), std::string_view::npos) << role.status();
  EXPECT_TRUE(Authorize(&tokens, "Bearer t1", kRoleIngest).ok());
  EXPECT_TRUE(Authorize(&tokens, "Bearer t1", kAnyRole).ok());
  EXPECT_TRUE(Authorize(&tokens, "", kNoRole).ok());

  EXPECT_EQ(tokens.failures(kReasonMissingToken), 1u);
  EXPECT_EQ(tokens.failures(kReasonUnknownToken), 1u);
  EXPECT_EQ(tokens.failures(kReasonRole), 1u);
}

TEST_F(TokenFileTest, AgentPatternIsAWholeMatch) {
  auto auth = Load(kTwoTokens);
  ASSERT_TRUE(auth.ok()) << auth.status();
  auto a = (*auth)->Authenticate("Bearer plain-secret");
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(CheckAgent(*a, "web-1").ok());
  EXPECT_TRUE(CheckAgent(*a, "web-42").ok());
  for (const char* other : {"db-1", "web-1x", "xweb-1", "web-"}) {
    absl::Status s = CheckAgent(*a, other);
    EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << other;
    EXPECT_NE(s.message().find(fmt::format("\"{}\"", other)), std::string_view::npos) << s;
    EXPECT_NE(s.message().find("web-[0-9]+"), std::string_view::npos) << s;
  }
  EXPECT_TRUE(CheckAgent(Principal{}, "anything").ok());  // no pattern: any agent
}

TEST_F(TokenFileTest, WithoutAFileEveryoneIsTheDefaultTenantWithEveryRole) {
  auto auth = TokenAuthenticator::Create("", FakeResolver());
  ASSERT_TRUE(auth.ok());
  EXPECT_FALSE((*auth)->enabled());
  for (const char* header : {"", "Bearer whatever"}) {
    auto p = Authorize(auth->get(), header, kRoleAdmin);
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(p->tenant_name, "default");
    EXPECT_EQ(p->tenant, storage::kDefaultTenant);
    EXPECT_EQ(p->roles, kAllRoles);
  }
  EXPECT_TRUE((*auth)->Reload().ok());
}

TEST_F(TokenFileTest, BadEntriesAreRefusedWithFileLineAndReason) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"- {tenant: a, roles: [query]}", "missing token: or sha256:"},
      {"- {token: x, sha256: ab, tenant: a, roles: [query]}", "not both"},
      {"- {sha256: abc, tenant: a, roles: [query]}", "64 hex digits"},
      {"- {token: x, roles: [query]}", "missing tenant:"},
      {"- {token: x, tenant: 'a b', roles: [query]}", "tenant 'a b' is not valid"},
      {"- {token: x, tenant: a}", "missing roles:"},
      {"- {token: x, tenant: a, roles: [read]}", "unknown role 'read'"},
      {"- {token: x, tenant: a, roles: [query], agents: 'web-('}", "not a valid RE2 pattern"},
      {"- {token: x, tenant: a, roles: [query], tennant: b}", "unknown key 'tennant'"},
      {"- {token: x, tenant: a, roles: [query]}\n- {token: x, tenant: b, roles: [ingest]}", "the same token appears twice"},
      {"tokens: 3", "expected a list of tokens"},
      {"- {token: x, tenant: [", path_},
  };
  for (const auto& [yaml, want] : cases) {
    auto auth = Load(yaml);
    ASSERT_FALSE(auth.ok()) << yaml;
    EXPECT_NE(auth.status().message().find(want), std::string_view::npos) << yaml << " -> " << auth.status();
    EXPECT_NE(auth.status().message().find(path_), std::string_view::npos) << auth.status();
  }
  EXPECT_EQ(TokenAuthenticator::Create(dir_.Sub("absent.yaml"), FakeResolver()).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(TokenFileTest, ReloadTakesANewFileAndABadOneKeepsTheOldTokens) {
  auto auth = Load("- {token: old, tenant: a, roles: [query]}");
  ASSERT_TRUE(auth.ok());
  TokenAuthenticator& tokens = **auth;
  WriteTextFile(path_, "- {token: old, tenant: a, roles: [query]\n");  // broken YAML
  absl::Status bad = tokens.Reload();
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find(path_), std::string_view::npos) << bad;
  EXPECT_TRUE(tokens.Authenticate("Bearer old").ok());

  WriteTextFile(path_, "- {token: new, tenant: a, roles: [query]}");
  std::string summary;
  ASSERT_TRUE(tokens.Reload(&summary).ok());
  EXPECT_EQ(summary, "1 tokens, 1 tenants");
  EXPECT_TRUE(tokens.Authenticate("Bearer new").ok());
  EXPECT_EQ(tokens.Authenticate("Bearer old").status().code(), absl::StatusCode::kUnauthenticated);
}

// What a check costs per call: SHA-256 of the token and one lookup
// (measured ~0.5 us on the CI machine; the bound is loose for sanitizers).
TEST_F(TokenFileTest, ACheckCostsMicroseconds) {
  std::string yaml = "tokens:\n";
  for (int i = 0; i < 1000; ++i) {
    yaml += fmt::format("  - {{token: token-{:04}, tenant: t{}, roles: [query]}}\n", i, i % 10);
  }
  auto auth = Load(yaml);
  ASSERT_TRUE(auth.ok()) << auth.status();
  constexpr int kCalls = 100'000;
  const auto started = std::chrono::steady_clock::now();
  int ok = 0;
  for (int i = 0; i < kCalls; ++i) {
    ok += Authorize(auth->get(), i % 2 ? "Bearer token-0500" : "Bearer token-9999", kRoleQuery).ok();
  }
  const double us =
      std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - started).count() / kCalls;
  std::printf("one token check (1000 tokens in the file): %.2f us\n", us);
  EXPECT_EQ(ok, kCalls / 2);
  EXPECT_LT(us, 50.0);
}

constexpr char kDaemonTokens[] = R"(
- {name: ingester, token: ingest-token, tenant: default, roles: [ingest], agents: 'host-[a-z]+'}
- {name: reader, token: query-token, tenant: default, roles: [query]}
- {name: operator, token: admin-token, tenant: default, roles: [admin]}
)";

// Every method of every service in sheaf's proto files, from the
// generated descriptors: a service or method added later is walked too.
std::vector<std::string> SheafMethods() {
  std::vector<std::string> out;
  for (const google::protobuf::FileDescriptor* file :
       {v1::MetricBatch::descriptor()->file(), v1::QueryRequest::descriptor()->file()}) {
    for (int s = 0; s < file->service_count(); ++s) {
      const google::protobuf::ServiceDescriptor* service = file->service(s);
      for (int i = 0; i < service->method_count(); ++i) {
        out.push_back("/" + service->full_name() + "/" + service->method(i)->name());
      }
    }
  }
  return out;
}

class GrpcAuthTest : public AuthDaemonTest {};

TEST_F(GrpcAuthTest, EveryMethodOfEveryServiceIsRefusedWithoutAToken) {
  StartWithTokens(kDaemonTokens);
  const std::vector<std::string> methods = SheafMethods();
  ASSERT_GE(methods.size(), 10u);
  std::set<std::string> in_table;
  for (const MethodRole& m : MethodRoles()) in_table.insert(std::string(m.method));
  const std::map<uint32_t, std::string> token_of = {
      {kRoleIngest, "ingest-token"}, {kRoleQuery, "query-token"}, {kRoleAdmin, "admin-token"}};
  for (const std::string& method : methods) {
    SCOPED_TRACE(method);
    auto role = RoleFor(method);
    ASSERT_TRUE(role.has_value()) << "add it to the table in daemon/grpc_auth.cc";
    ASSERT_NE(*role, kNoRole);
    in_table.erase(method);

    grpc::Status none = RawCallAs(method, "");
    EXPECT_EQ(none.error_code(), grpc::StatusCode::UNAUTHENTICATED) << none.error_message();
    EXPECT_NE(none.error_message().find("missing bearer token: pass --token-file"), std::string::npos);
    grpc::Status unknown = RawCallAs(method, "forged");
    EXPECT_EQ(unknown.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_NE(unknown.error_message().find("unknown token"), std::string::npos);
    // Every token but the one with the method's role: PERMISSION_DENIED
    // naming the role.
    const uint32_t needed = *role & kAllRoles;  // kRoleOperator: admin (of the default tenant)
    for (const auto& [other_role, token] : token_of) {
      if (other_role == needed) continue;
      grpc::Status wrong = RawCallAs(method, token);
      EXPECT_EQ(wrong.error_code(), grpc::StatusCode::PERMISSION_DENIED) << token;
      EXPECT_NE(wrong.error_message().find(fmt::format("lacks the {} role", RoleName(needed))), std::string::npos)
          << wrong.error_message();
    }
  }
  // Only health and reflection are in the table besides sheaf's methods,
  // and they need no role.
  for (const std::string& rest : in_table) {
    EXPECT_EQ(RoleFor(rest), kNoRole) << rest;
    EXPECT_TRUE(rest.starts_with("/grpc.")) << rest;
  }
  EXPECT_EQ(RoleFor("/sheaf.v1.QueryService/NoSuchMethod"), std::nullopt);

  // Health needs no token.
  grpc::ClientContext ctx;
  grpc::health::v1::HealthCheckResponse health;
  EXPECT_TRUE(grpc::health::v1::Health::NewStub(channel_)
                  ->Check(&ctx, grpc::health::v1::HealthCheckRequest(), &health)
                  .ok());
}

TEST_F(GrpcAuthTest, TheRightTokenIsServedAndAnIngestTokenPushesOnlyAsItsAgents) {
  StartWithTokens(kDaemonTokens);
  v1::PushAck ack;
  auto batch = [](const std::string& agent, uint64_t seq) {
    return Batch(agent, seq, {MakeSeries({{"__name__", "up"}, {"host", agent}}, v1::METRIC_TYPE_GAUGE, {{kNow, 1}})});
  };
  ASSERT_TRUE(PushAs("ingest-token", {batch("host-a", 1)}, &ack).ok());
  EXPECT_EQ(ack.durable_sequence(), 1u);

  // A sequence forged far ahead under another agent's id is refused, and
  // that agent's sequence is untouched.
  grpc::Status forged = PushAs("ingest-token", {batch("db-1", 1'000'000)}, &ack);
  EXPECT_EQ(forged.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(forged.error_message().find("\"db-1\""), std::string::npos) << forged.error_message();
  EXPECT_NE(forged.error_message().find("host-[a-z]+"), std::string::npos) << forged.error_message();
  // A backfill batch needs the admin role.
  auto backfill = batch("host-a", 2);
  backfill.set_backfill(true);
  grpc::Status refused = PushAs("ingest-token", {backfill}, &ack);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(refused.error_message().find("admin role"), std::string::npos) << refused.error_message();

  auto read = QueryAs("query-token", "{__name__=\"up\"}");
  ASSERT_TRUE(read.status.ok()) << read.status.error_message();
  ASSERT_EQ(read.samples.size(), 1u);
  EXPECT_EQ(read.samples.begin()->first, "__name__=up,host=host-a,");

  // The refusals were counted by reason (/metrics).
  auto metrics = HttpCall(daemon_->http_port(), "GET", "/metrics", "");
  ASSERT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find("sheaf_auth_failures_total{reason=\"agent\"} 1"), std::string::npos);
  EXPECT_NE(metrics.body.find("sheaf_auth_failures_total{reason=\"role\"} 1"), std::string::npos);
}

// Compact and Snapshot act on every tenant's data, and the store's totals
// count it: only an admin of the default tenant (the operator) may; a
// tenant's own admin manages its tenant only.
TEST_F(GrpcAuthTest, StoreWideOperationsNeedTheOperatorNotATenantsAdmin) {
  StartWithTokens(R"(
- {name: operator, token: op-token, tenant: default, roles: [ingest, query, admin]}
- {name: team-a-admin, token: a-admin, tenant: team-a, roles: [ingest, query, admin]}
)");
  auto up = [](const std::string& host) {
    return MakeSeries({{"__name__", "up"}, {"host", host}}, v1::METRIC_TYPE_GAUGE, {{kNow, 1}});
  };
  v1::PushAck ack;
  ASSERT_TRUE(PushAs("op-token", {Batch("agent-d", 1, {up("d1"), up("d2")})}, &ack).ok());
  ASSERT_TRUE(PushAs("a-admin", {Batch("agent-a", 1, {up("a1")})}, &ack).ok());

  for (const char* method : {"/sheaf.v1.AdminService/Compact", "/sheaf.v1.AdminService/Snapshot"}) {
    SCOPED_TRACE(method);
    grpc::Status refused = RawCallAs(method, "a-admin");
    EXPECT_EQ(refused.error_code(), grpc::StatusCode::PERMISSION_DENIED) << refused.error_message();
    EXPECT_NE(refused.error_message().find("admin of tenant team-a only"), std::string::npos)
        << refused.error_message();
    grpc::Status served = RawCallAs(method, "op-token");
    EXPECT_TRUE(served.ok()) << served.error_message();
  }

  auto stats = [&](const std::string& token) {
    std::string bytes;
    grpc::Status s = RawCall("/sheaf.v1.QueryService/Stats", {""}, &bytes, token);
    EXPECT_TRUE(s.ok()) << s.error_message();
    v1::StatsResponse resp;
    EXPECT_TRUE(resp.ParseFromString(bytes));
    return resp;
  };
  v1::StatsResponse of_a = stats("a-admin");
  EXPECT_EQ(of_a.series(), 1u);  // its tenant's, not the store's 3
  EXPECT_EQ(of_a.samples(), 0u);
  EXPECT_EQ(of_a.agents(), 0u);
  v1::StatsResponse of_op = stats("op-token");
  EXPECT_EQ(of_op.series(), 3u);
  EXPECT_EQ(of_op.samples(), 3u);

  // A tenant's admin still deletes its own series (and only those).
  v1::DeleteSeriesRequest del;
  del.set_selector("{__name__=\"up\"}");
  std::string bytes;
  ASSERT_TRUE(RawCall("/sheaf.v1.AdminService/DeleteSeries", {del.SerializeAsString()}, &bytes, "a-admin").ok());
  v1::DeleteSeriesResponse deleted;
  ASSERT_TRUE(deleted.ParseFromString(bytes));
  EXPECT_EQ(deleted.deleted(), 1u);
  EXPECT_EQ(QueryAs("op-token", "{__name__=\"up\"}").samples.size(), 2u);
}

TEST_F(GrpcAuthTest, ReloadSwapsTokensAndABadFileKeepsThem) {
  StartWithTokens(kDaemonTokens);
  EXPECT_TRUE(QueryAs("query-token", "{__name__=\"up\"}").status.ok());
  WriteTextFile(tokens_path_, "- {token: rotated, tenant: default, roles: [query]}\n");
  ASSERT_TRUE(daemon_->Reload().ok());
  EXPECT_EQ(QueryAs("query-token", "{__name__=\"up\"}").status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(QueryAs("rotated", "{__name__=\"up\"}").status.ok());

  WriteTextFile(tokens_path_, "- {token: broken, tenant: 'no spaces', roles: [query]}\n");
  absl::Status bad = daemon_->Reload();
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("auth tokens: "), std::string_view::npos) << bad;
  EXPECT_TRUE(QueryAs("rotated", "{__name__=\"up\"}").status.ok());
}

TEST_F(GrpcAuthTest, HttpRoutesAskForTheirRole) {
  DaemonConfig config;
  config.metrics_auth = true;
  StartWithTokens(kDaemonTokens, config);
  const int port = daemon_->http_port();
  // Query routes: 401 with WWW-Authenticate without a token, 403 with the
  // wrong role, 200 with the query role.
  for (const std::string path : {"/api/v1/query?query=up", "/api/v1/labels", "/api/v1/series?match[]=up",
                                 "/api/v1/label/host/values", "/federate?match[]=up", "/api/v1/status/tsdb"}) {
    SCOPED_TRACE(path);
    auto none = HttpCall(port, "GET", path, "");
    EXPECT_EQ(none.status, 401);
    EXPECT_NE(none.headers.find("WWW-Authenticate: Bearer"), std::string::npos) << none.headers;
    EXPECT_EQ(HttpCall(port, "GET", path, "nope").status, 401);
    auto wrong = HttpCall(port, "GET", path, "ingest-token");
    EXPECT_EQ(wrong.status, 403);
    EXPECT_NE(wrong.body.find("query role"), std::string::npos) << wrong.body;
    EXPECT_EQ(HttpCall(port, "GET", path, "query-token").status, 200);
  }
  // Remote write needs ingest, remote read query (both refused before the
  // body is looked at).
  EXPECT_EQ(HttpCall(port, "POST", "/api/v1/write", "", "x").status, 401);
  EXPECT_EQ(HttpCall(port, "POST", "/api/v1/write", "query-token", "x").status, 403);
  EXPECT_EQ(HttpCall(port, "POST", "/api/v1/write", "ingest-token", "x").status, 400);
  EXPECT_EQ(HttpCall(port, "POST", "/api/v1/read", "ingest-token", "x").status, 403);
  EXPECT_EQ(HttpCall(port, "POST", "/api/v1/read", "query-token", "x").status, 400);
  // /metrics with --metrics-auth: any valid token.
  EXPECT_EQ(HttpCall(port, "GET", "/metrics", "").status, 401);
  EXPECT_EQ(HttpCall(port, "GET", "/metrics", "ingest-token").status, 200);
  // The console's files hold no data: open.
  EXPECT_EQ(HttpCall(port, "GET", "/graph", "").status, 200);
}

}  // namespace
}  // namespace sheaf::daemon
