// The clients' token file (client/channel.h) re-read while they run:
// TokenFile on its own (a replaced file's token next, the last good token
// kept when the file is emptied, removed or made unusable, the once-a-second
// throttle) and through a real channel to an in-process gRPC server that
// records each call's "authorization" metadata (~3 s). The TLS half of
// rotation runs with real processes in tls_test.py.
#include <fmt/format.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "client/channel.h"
#include "sheaf/v1/query.grpc.pb.h"
#include "tests/support/temp_dir.h"

namespace sheaf::client {
namespace {

using std::chrono::milliseconds;

// Writes `text` to `path` the way the docs ask: a new file renamed into place.
void Replace(const std::string& path, const std::string& text) {
  {
    std::ofstream out(path + ".new", std::ios::binary | std::ios::trunc);
    out << text;
  }
  ASSERT_EQ(std::rename((path + ".new").c_str(), path.c_str()), 0);
}

// Rewrites `path` in place (what the docs advise against).
void Overwrite(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

TEST(TokenFileTest, OpenChecksTheFileAndNamesIt) {
  testing::TempDir dir;
  const std::string path = dir.Sub("token");
  auto missing = TokenFile::Open(path);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("--token-file " + path + ": cannot read"), std::string::npos)
      << missing.status();
  Replace(path, " \n");
  auto blank = TokenFile::Open(path);
  ASSERT_FALSE(blank.ok());
  EXPECT_NE(blank.status().message().find("only white space"), std::string::npos) << blank.status();
  Replace(path, "  first-token\n");
  auto token = TokenFile::Open(path);
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ((*token)->Header(), "Bearer first-token");
}

TEST(TokenFileTest, ANewFileIsReadAndABadOneLeavesTheLastGoodToken) {
  testing::TempDir dir;
  const std::string path = dir.Sub("token");
  Replace(path, "first-token\n");
  auto opened = TokenFile::Open(path, milliseconds(0));  // looks at every call
  ASSERT_TRUE(opened.ok()) << opened.status();
  TokenFile& token = **opened;
  EXPECT_EQ(token.Header(), "Bearer first-token");

  Replace(path, "second-token\n");
  EXPECT_EQ(token.Header(), "Bearer second-token");
  Overwrite(path, "");  // emptied in place: the last good token stays
  EXPECT_EQ(token.Header(), "Bearer second-token");
  EXPECT_EQ(token.Header(), "Bearer second-token");
  Replace(path, "two\nlines\n");  // not one printable line
  EXPECT_EQ(token.Header(), "Bearer second-token");
  ASSERT_EQ(std::remove(path.c_str()), 0);  // gone
  EXPECT_EQ(token.Header(), "Bearer second-token");
  Replace(path, "third-token");
  EXPECT_EQ(token.Header(), "Bearer third-token");
  // Same size, same inode, written in place: the mtime's nanoseconds tell
  // it from the one before (given a clock tick between the two writes,
  // which the kernel's file times count in).
  std::this_thread::sleep_for(milliseconds(50));
  Overwrite(path, "fifth-token");
  EXPECT_EQ(token.Header(), "Bearer fifth-token");
}

TEST(TokenFileTest, LooksAtTheFileAtMostOnceAnInterval) {
  testing::TempDir dir;
  const std::string path = dir.Sub("token");
  Replace(path, "first-token\n");
  auto opened = TokenFile::Open(path);  // the default: once a second
  ASSERT_TRUE(opened.ok()) << opened.status();
  TokenFile& token = **opened;
  const auto replaced = std::chrono::steady_clock::now();
  Replace(path, "second-token\n");
  EXPECT_EQ(token.Header(), "Bearer first-token");  // within the second
  std::string header;
  const auto deadline = replaced + std::chrono::seconds(3);
  while ((header = token.Header()) != "Bearer second-token" && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(20));
  }
  EXPECT_EQ(header, "Bearer second-token");
  const auto took = std::chrono::steady_clock::now() - replaced;
  EXPECT_GE(took, milliseconds(900));
  EXPECT_LE(took, milliseconds(2000));
}

// Answers Stats and records each call's "authorization" metadata.
class RecordingQuery final : public sheaf::v1::QueryService::Service {
 public:
  grpc::Status Stats(grpc::ServerContext* context, const sheaf::v1::StatsRequest*,
                     sheaf::v1::StatsResponse*) override {
    auto it = context->client_metadata().find("authorization");
    std::lock_guard<std::mutex> lock(mu_);
    seen_.push_back(it == context->client_metadata().end() ? "" : std::string(it->second.data(), it->second.size()));
    return grpc::Status::OK;
  }
  std::string last() {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_.empty() ? "" : seen_.back();
  }

 private:
  std::mutex mu_;
  std::vector<std::string> seen_;
};

TEST(ClientSecurityTest, TheInterceptorSendsTheNewTokenAndKeepsTheLastGoodOne) {
  testing::TempDir dir;
  const std::string path = dir.Sub("token");
  Replace(path, "first-token\n");
  RecordingQuery service;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(port, 0);

  SecurityFlags flags;
  flags.token_file = path;
  auto security = ClientSecurity::Load(flags);
  ASSERT_TRUE(security.ok()) << security.status();
  auto stub = sheaf::v1::QueryService::NewStub((*security)->NewChannel(fmt::format("127.0.0.1:{}", port)));
  auto call = [&] {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    sheaf::v1::StatsRequest request;
    sheaf::v1::StatsResponse response;
    grpc::Status status = stub->Stats(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return service.last();
  };
  EXPECT_EQ(call(), "Bearer first-token");

  // On the same channel, the next calls after the check carry the new one.
  Replace(path, "second-token\n");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  std::string seen;
  while ((seen = call()) != "Bearer second-token" && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(50));
  }
  EXPECT_EQ(seen, "Bearer second-token");

  // Emptied: past the next check, calls still carry the last good token.
  Overwrite(path, "");
  std::this_thread::sleep_for(milliseconds(1200));
  EXPECT_EQ(call(), "Bearer second-token");
  EXPECT_EQ(call(), "Bearer second-token");
  server->Shutdown();
}

TEST(ClientSecurityTest, RefreshIntervalBelowASecondIsRefused) {
  SecurityFlags flags;
  flags.tls_refresh_ms = 500;
  auto security = ClientSecurity::Load(flags);
  ASSERT_FALSE(security.ok());
  EXPECT_NE(security.status().message().find("--tls-refresh-interval 500ms"), std::string::npos)
      << security.status();
}

}  // namespace
}  // namespace sheaf::client
