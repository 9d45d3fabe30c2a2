// A fake sheafd for the shipper's tests: an IngestService that refuses the
// first streams as a busy or limited daemon does (RESOURCE_EXHAUSTED with
// retry trailers) and acknowledges the rest, served on a loopback port; and
// the agent state the shipper takes its sequences from. Shared by
// shipper_test (the retry hint) and shipper_limits_test (the pushback).
#ifndef SHEAF_TESTS_AGENT_FAKE_INGEST_H_
#define SHEAF_TESTS_AGENT_FAKE_INGEST_H_

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "agent/agent_state.h"
#include "sheaf/v1/ingest.grpc.pb.h"

namespace sheaf::agent {

// The agent's state in `dir` (no identity file), or null with the test failed.
inline std::unique_ptr<AgentState> OpenState(const std::string& dir) {
  auto s = AgentState::Open({.dir = dir, .use_identity_file = false});
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *std::move(s) : nullptr;
}

// Refuses the first `refusals` streams with RESOURCE_EXHAUSTED, `message`
// and `trailers` (name, value), then acknowledges every batch; records
// when each stream ended.
class RefusingIngest final : public v1::IngestService::Service {
 public:
  RefusingIngest(int refusals, std::vector<std::pair<std::string, std::string>> trailers, std::string message)
      : refusals_(refusals), trailers_(std::move(trailers)), message_(std::move(message)) {}
  grpc::Status Push(grpc::ServerContext* context, grpc::ServerReader<v1::MetricBatch>* reader,
                    v1::PushAck* ack) override {
    v1::MetricBatch batch;
    uint64_t n = 0;
    while (reader->Read(&batch)) ++n;
    std::lock_guard lock(mu);
    attempts.push_back(std::chrono::steady_clock::now());
    if (static_cast<int>(attempts.size()) <= refusals_) {
      for (const auto& [name, value] : trailers_) context->AddTrailingMetadata(name, value);
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, message_);
    }
    ack->set_durable_sequence(batch.sequence());
    ack->set_batches_applied(n);
    return grpc::Status::OK;
  }
  std::mutex mu;
  std::vector<std::chrono::steady_clock::time_point> attempts;

 private:
  const int refusals_;
  const std::vector<std::pair<std::string, std::string>> trailers_;
  const std::string message_;
};

// `service` served on 127.0.0.1 at a port the kernel chooses, with the
// health service the daemon picker asks; `server` is null if it could
// not start.
struct FakeDaemon {
  explicit FakeDaemon(grpc::Service* service) {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service);
    server = builder.BuildAndStart();
  }
  ~FakeDaemon() {
    if (server != nullptr) server->Shutdown();
  }
  int port = 0;
  std::unique_ptr<grpc::Server> server;
};

}  // namespace sheaf::agent

#endif  // SHEAF_TESTS_AGENT_FAKE_INGEST_H_
