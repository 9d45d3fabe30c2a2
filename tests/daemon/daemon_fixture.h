// A sheafd started in-process on loopback ports picked by the kernel, with
// helpers to push batches (typed or as raw bytes), query, and read stats.
// Shared by the daemon test files.
#ifndef SHEAF_TESTS_DAEMON_DAEMON_FIXTURE_H_
#define SHEAF_TESTS_DAEMON_DAEMON_FIXTURE_H_

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "daemon/daemon.h"
#include "sheaf/v1/ingest.grpc.pb.h"
#include "sheaf/v1/query.grpc.pb.h"
#include "tests/support/temp_dir.h"

namespace sheaf::daemon {

inline constexpr int64_t kNow = 1'800'000'000'000;

inline v1::Series MakeSeries(std::vector<std::pair<std::string, std::string>> labels, v1::MetricType type,
                             std::vector<std::pair<int64_t, double>> samples) {
  v1::Series s;
  for (auto& [n, v] : labels) {
    auto* l = s.add_labels();
    l->set_name(n);
    l->set_value(v);
  }
  s.set_type(type);
  for (auto [t, v] : samples) {
    auto* p = s.add_samples();
    p->set_timestamp_ms(t);
    p->set_value(v);
  }
  return s;
}

inline v1::MetricBatch Batch(const std::string& agent, uint64_t seq, std::vector<v1::Series> series) {
  v1::MetricBatch b;
  b.set_agent_id(agent);
  b.set_sequence(seq);
  for (auto& s : series) *b.add_series() = std::move(s);
  return b;
}

class DaemonTest : public ::testing::Test {
 protected:
  void SetUp() override { Start(DaemonConfig{}); }

  // Starts the daemon on loopback ports picked by the kernel, with `config`
  // for everything else; the data directory is the test's own unless
  // `config` names one.
  void Start(DaemonConfig config) {
    config.grpc_listen = "127.0.0.1:0";
    config.http_listen = "127.0.0.1:0";
    if (config.store.path == DaemonConfig().store.path) config.store.path = dir_.Sub("data");
    config.store.sync = false;
    config.grace_period = std::chrono::seconds(1);
    config.ingest.now_ms = [] { return kNow; };
    auto d = Daemon::Start(config);
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = *std::move(d);
    channel_ = daemon_->InProcessChannel();
    ingest_ = v1::IngestService::NewStub(channel_);
    query_ = v1::QueryService::NewStub(channel_);
  }

  grpc::Status Push(const std::vector<v1::MetricBatch>& batches, v1::PushAck* ack,
                    std::shared_ptr<grpc::Channel> channel = nullptr, bool gzip = true) {
    grpc::ClientContext ctx;
    if (gzip) ctx.set_compression_algorithm(GRPC_COMPRESS_GZIP);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    auto stub = channel ? v1::IngestService::NewStub(channel) : nullptr;
    auto writer = (stub ? stub : ingest_)->Push(&ctx, ack);
    for (const auto& b : batches) {
      if (!writer->Write(b)) break;
    }
    writer->WritesDone();
    return writer->Finish();
  }

  // Sends raw bytes as messages of a Push stream, as a broken client would.
  grpc::Status RawPush(const std::vector<std::string>& messages) {
    return RawCall("/sheaf.v1.IngestService/Push", messages, nullptr);
  }

  // Any streaming call with hand-made request bytes; the first response's
  // bytes go to *response. A non-empty `token` goes out as a bearer token.
  grpc::Status RawCall(const std::string& method, const std::vector<std::string>& messages, std::string* response,
                       const std::string& token = "") {
    grpc::GenericStub stub(channel_);
    grpc::ClientContext ctx;
    if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    grpc::CompletionQueue cq;
    auto call = stub.PrepareCall(&ctx, method, &cq);
    void* tag;
    bool ok;
    call->StartCall(reinterpret_cast<void*>(1));
    cq.Next(&tag, &ok);
    for (const auto& m : messages) {
      grpc::Slice slice(m);
      grpc::ByteBuffer bb(&slice, 1);
      call->Write(bb, reinterpret_cast<void*>(2));
      cq.Next(&tag, &ok);
      if (!ok) break;
    }
    call->WritesDone(reinterpret_cast<void*>(3));
    cq.Next(&tag, &ok);
    grpc::ByteBuffer resp;
    call->Read(&resp, reinterpret_cast<void*>(4));
    cq.Next(&tag, &ok);
    if (ok && response != nullptr) {
      std::vector<grpc::Slice> slices;
      (void)resp.Dump(&slices);
      for (const auto& sl : slices) response->append(reinterpret_cast<const char*>(sl.begin()), sl.size());
    }
    grpc::Status status;
    call->Finish(&status, reinterpret_cast<void*>(5));
    cq.Next(&tag, &ok);
    cq.Shutdown();
    while (cq.Next(&tag, &ok)) {
    }
    return status;
  }

  struct QueryResult {
    grpc::Status status;
    std::vector<v1::QueryResponse> messages;
    std::map<std::string, std::vector<std::pair<int64_t, double>>> samples;  // by series name+labels
  };

  QueryResult Query(const std::string& selector, int64_t start, int64_t end, int64_t step = 0, uint32_t chunk = 0) {
    QueryResult r;
    grpc::ClientContext ctx;
    v1::QueryRequest req;
    req.set_selector(selector);
    req.set_start_ms(start);
    req.set_end_ms(end);
    req.set_step_ms(step);
    req.set_max_samples_per_chunk(chunk);
    ReadAll(query_->Query(&ctx, req).get(), &r);
    return r;
  }

  // Every response of a Query call into *r, then its status.
  static void ReadAll(grpc::ClientReaderInterface<v1::QueryResponse>* reader, QueryResult* r) {
    v1::QueryResponse resp;
    while (reader->Read(&resp)) {
      r->messages.push_back(resp);
      for (const auto& c : resp.chunks()) {
        std::string key;
        for (const auto& l : c.labels()) key += l.name() + "=" + l.value() + ",";
        for (const auto& s : c.samples()) r->samples[key].emplace_back(s.timestamp_ms(), s.value());
      }
    }
    r->status = reader->Finish();
  }

  v1::StatsResponse Stats() {
    grpc::ClientContext ctx;
    v1::StatsResponse resp;
    EXPECT_TRUE(query_->Stats(&ctx, v1::StatsRequest(), &resp).ok());
    return resp;
  }

  testing::TempDir dir_;
  std::unique_ptr<Daemon> daemon_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::IngestService::Stub> ingest_;
  std::unique_ptr<v1::QueryService::Stub> query_;
};

}  // namespace sheaf::daemon

#endif  // SHEAF_TESTS_DAEMON_DAEMON_FIXTURE_H_
