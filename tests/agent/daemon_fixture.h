// Helpers for agent tests that talk to a real, in-process sheafd over TCP:
// start it, read back what it stored, push a raw batch as another client.
#ifndef SHEAF_TESTS_AGENT_DAEMON_FIXTURE_H_
#define SHEAF_TESTS_AGENT_DAEMON_FIXTURE_H_

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "daemon/daemon.h"
#include "sheaf/v1/ingest.grpc.pb.h"
#include "sheaf/v1/query.grpc.pb.h"

namespace sheaf::testing {

inline std::unique_ptr<daemon::Daemon> StartDaemon(const std::string& dir, int port) {
  daemon::DaemonConfig config;
  config.grpc_listen = "127.0.0.1:" + std::to_string(port);
  config.http_listen = "127.0.0.1:0";
  config.store.path = dir;
  config.store.sync = false;
  auto d = daemon::Daemon::Start(config);
  EXPECT_TRUE(d.ok()) << d.status();
  return d.ok() ? *std::move(d) : nullptr;
}

inline std::shared_ptr<grpc::Channel> Channel(int port) {
  return grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials());
}

inline uint64_t StoredSamples(int port) {
  auto stub = v1::QueryService::NewStub(Channel(port));
  grpc::ClientContext ctx;
  v1::StatsResponse resp;
  return stub->Stats(&ctx, v1::StatsRequest(), &resp).ok() ? resp.samples() : 0;
}

// Every series the selector matches, with all its samples of the last hour.
inline std::vector<v1::SeriesChunk> Query(int port, const std::string& selector) {
  auto stub = v1::QueryService::NewStub(Channel(port));
  grpc::ClientContext ctx;
  v1::QueryRequest req;
  req.set_selector(selector);
  req.set_start_ms(WallClockMs() - 3600 * 1000);
  auto reader = stub->Query(&ctx, req);
  std::vector<v1::SeriesChunk> out;
  v1::QueryResponse resp;
  while (reader->Read(&resp)) {
    for (const auto& c : resp.chunks()) out.push_back(c);
  }
  grpc::Status st = reader->Finish();
  EXPECT_TRUE(st.ok()) << selector << ": " << st.error_message();
  return out;
}

inline size_t SamplesOf(int port, const std::string& selector) {
  size_t n = 0;
  for (const auto& c : Query(port, selector)) n += static_cast<size_t>(c.samples_size());
  return n;
}

inline std::string LabelValue(const v1::SeriesChunk& chunk, const std::string& name) {
  for (const auto& l : chunk.labels()) {
    if (l.name() == name) return l.value();
  }
  return "";
}

// Pushes one gauge sample under `agent_id` and `sequence` as a client of
// its own (not the agent's shipper); returns the ack.
inline v1::PushAck RawPush(int port, const std::string& agent_id, uint64_t sequence, const std::string& metric) {
  auto stub = v1::IngestService::NewStub(Channel(port));
  grpc::ClientContext ctx;
  v1::PushAck ack;
  auto writer = stub->Push(&ctx, &ack);
  v1::MetricBatch batch;
  batch.set_agent_id(agent_id);
  batch.set_sequence(sequence);
  v1::Series* s = batch.add_series();
  s->set_type(v1::METRIC_TYPE_GAUGE);
  auto* name = s->add_labels();
  name->set_name("__name__");
  name->set_value(metric);
  auto* sample = s->add_samples();
  sample->set_timestamp_ms(WallClockMs());
  sample->set_value(1);
  EXPECT_TRUE(writer->Write(batch));
  writer->WritesDone();
  grpc::Status st = writer->Finish();
  EXPECT_TRUE(st.ok()) << st.error_message();
  return ack;
}

}  // namespace sheaf::testing

#endif  // SHEAF_TESTS_AGENT_DAEMON_FIXTURE_H_
