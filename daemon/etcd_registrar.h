// sheafd's entry in etcd, for agents that find their daemons with an
// etcd:// target (agent/discovery/etcd_source.h): the key
// `prefix + advertise address` holding the advertise address (host:port),
// attached to a lease that the registrar keeps alive.
//
// On a thread of its own: grant a lease of lease_ttl, put the key with it,
// then renew the lease every third of its TTL, each renewal one short
// LeaseKeepAlive stream with a deadline (a hung etcd cannot hold the
// registrar past it). A failed renewal is tried again on the next endpoint;
// a lease that etcd no longer knows (it expired while etcd was unreachable,
// or etcd lost its data) is granted anew and the key put again. Errors are
// logged once each (with the endpoint) and counted; the daemon serves on
// whatever etcd does.
//
// Stop() revokes the lease, so the key goes at once and agents move to
// their next daemon without waiting for the TTL. A daemon that dies
// without Stop() (SIGKILL, a crash, a lost host) leaves its key until the
// lease expires: within lease_ttl plus etcd's expiry check (~0.5 s).
#ifndef SHEAF_DAEMON_ETCD_REGISTRAR_H_
#define SHEAF_DAEMON_ETCD_REGISTRAR_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace grpc {
class Channel;
class ClientContext;
}  // namespace grpc

namespace sheaf::daemon {

struct EtcdRegistrarOptions {
  std::vector<std::string> endpoints;  // etcd's client addresses, host:port (--etcd-endpoints)
  std::string prefix = "/sheaf/daemons/";  // --etcd-prefix
  std::string advertise_address;           // host:port agents connect to (--advertise-address)
  // --etcd-lease-ttl. etcd raises a TTL below its minimum (about 2 s with
  // its default election timeout); renewals follow the TTL it grants.
  std::chrono::milliseconds lease_ttl = std::chrono::seconds(10);
  std::chrono::milliseconds rpc_timeout = std::chrono::seconds(5);
  std::chrono::milliseconds retry_initial = std::chrono::milliseconds(500);
  std::chrono::milliseconds retry_max = std::chrono::seconds(5);
};

class EtcdRegistrar {
 public:
  // Checks the options (INVALID_ARGUMENT naming the flag) and starts
  // registering; does not wait for etcd.
  static absl::StatusOr<std::unique_ptr<EtcdRegistrar>> Start(EtcdRegistrarOptions options);
  ~EtcdRegistrar();  // Stop()
  EtcdRegistrar(const EtcdRegistrar&) = delete;
  EtcdRegistrar& operator=(const EtcdRegistrar&) = delete;

  // Stops renewing and revokes the lease (deleting the key), trying each
  // endpoint within rpc_timeout. Idempotent.
  void Stop();
  // Stops renewing without revoking: the key stays until the lease
  // expires, as when the daemon dies (tests).
  void Abandon();

  // Blocks until the key is registered (now) or `timeout` passes.
  bool WaitRegistered(std::chrono::milliseconds timeout) const;

  struct Stats {
    bool registered = false;  // the key is in etcd under a live lease, as far as we know
    int64_t lease_id = 0;
    uint64_t registrations = 0;  // leases granted and the key put
    uint64_t renewals = 0;
    uint64_t errors = 0;
  };
  Stats stats() const;
  const std::string& key() const { return key_; }

 private:
  explicit EtcdRegistrar(EtcdRegistrarOptions options);
  void Run();
  // Registers if needed, then renews until a renewal fails or stopping.
  absl::Status Session(const std::shared_ptr<grpc::Channel>& channel);
  absl::Status Register(const std::shared_ptr<grpc::Channel>& channel);
  // The lease's TTL now in seconds; 0 if etcd no longer has the lease.
  absl::StatusOr<int64_t> Renew(const std::shared_ptr<grpc::Channel>& channel, int64_t lease);
  void Halt();  // stops and joins the thread
  bool Track(grpc::ClientContext* ctx);
  void Untrack();
  bool WaitStopping(std::chrono::milliseconds d) const;

  const EtcdRegistrarOptions options_;
  const std::string key_;
  std::vector<std::pair<std::string, std::shared_ptr<grpc::Channel>>> endpoints_;
  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  int64_t granted_ttl_s_ ABSL_GUARDED_BY(mu_) = 0;
  std::string last_error_ ABSL_GUARDED_BY(mu_);
  Stats stats_ ABSL_GUARDED_BY(mu_);
  grpc::ClientContext* call_ ABSL_GUARDED_BY(mu_) = nullptr;  // the call in flight, cancelled on stop
  std::thread thread_;
};

}  // namespace sheaf::daemon

#endif  // SHEAF_DAEMON_ETCD_REGISTRAR_H_
