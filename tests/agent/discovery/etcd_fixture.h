// Debian's etcd (/usr/bin/etcd, 3.4) for tests: one member on free
// loopback ports with its data in a directory the test owns, stopped (and
// reaped) with the object.
#ifndef SHEAF_TESTS_AGENT_DISCOVERY_ETCD_FIXTURE_H_
#define SHEAF_TESTS_AGENT_DISCOVERY_ETCD_FIXTURE_H_

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <map>
#include <memory>
#include <string>

#include "etcd/rpc.grpc.pb.h"
#include "tests/support/process.h"

namespace sheaf::testing {

class EtcdServer {
 public:
  static constexpr char kBinary[] = "/usr/bin/etcd";

  // Starts etcd with its data in `data_dir` on `client_port` (0: a free
  // one) and waits until it answers a Range. Null (with a test failure) if
  // it does not within 20 s.
  static std::unique_ptr<EtcdServer> Start(const std::string& data_dir, const std::string& log_path,
                                           int client_port = 0) {
    auto e = std::unique_ptr<EtcdServer>(new EtcdServer());
    e->client_port_ = client_port != 0 ? client_port : FreePort();
    int peer_port = FreePort();
    std::string client = "http://127.0.0.1:" + std::to_string(e->client_port_);
    std::string peer = "http://127.0.0.1:" + std::to_string(peer_port);
    e->process_ = Process::Start({kBinary, "--name", "sheaf-test", "--data-dir", data_dir, "--listen-client-urls",
                                  client, "--advertise-client-urls", client, "--listen-peer-urls", peer,
                                  "--initial-advertise-peer-urls", peer, "--initial-cluster", "sheaf-test=" + peer,
                                  "--logger", "zap", "--log-outputs", "stderr"},
                                 log_path);
    if (!e->process_ || !WaitFor([&] { return e->Answers(); }, std::chrono::seconds(20))) {
      ADD_FAILURE() << "etcd did not start; see " << log_path;
      return nullptr;
    }
    return e;
  }

  std::string endpoint() const { return "127.0.0.1:" + std::to_string(client_port_); }
  int client_port() const { return client_port_; }
  void Kill() {
    process_->Signal(SIGKILL);
    process_->Wait(std::chrono::seconds(10));
  }

  // Puts a key without a lease; true if etcd took it.
  bool Put(const std::string& key, const std::string& value) const {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    etcdserverpb::PutRequest req;
    req.set_key(key);
    req.set_value(value);
    etcdserverpb::PutResponse resp;
    return etcdserverpb::KV::NewStub(Channel())->Put(&ctx, req, &resp).ok();
  }

  // The keys under `prefix` now, with their values.
  std::map<std::string, std::string> Keys(const std::string& prefix) const {
    std::map<std::string, std::string> out;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    etcdserverpb::RangeRequest req;
    req.set_key(prefix);
    std::string end = prefix;
    end.back() = static_cast<char>(end.back() + 1);
    req.set_range_end(end);
    etcdserverpb::RangeResponse resp;
    if (!etcdserverpb::KV::NewStub(Channel())->Range(&ctx, req, &resp).ok()) return out;
    for (const auto& kv : resp.kvs()) out[kv.key()] = kv.value();
    return out;
  }

 private:
  EtcdServer() = default;
  std::shared_ptr<grpc::Channel> Channel() const {
    return grpc::CreateChannel(endpoint(), grpc::InsecureChannelCredentials());
  }
  bool Answers() const {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
    etcdserverpb::RangeRequest req;
    req.set_key("/");
    etcdserverpb::RangeResponse resp;
    return etcdserverpb::KV::NewStub(Channel())->Range(&ctx, req, &resp).ok();
  }

  int client_port_ = 0;
  std::unique_ptr<Process> process_;
};

}  // namespace sheaf::testing

#endif  // SHEAF_TESTS_AGENT_DISCOVERY_ETCD_FIXTURE_H_
