#include "daemon/etcd_registrar.h"

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>

#include <random>

#include "common/log.h"
#include "etcd/rpc.grpc.pb.h"

namespace sheaf::daemon {
namespace {

bool LooksLikeHostPort(const std::string& s) {
  size_t colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == s.size()) return false;
  for (size_t i = colon + 1; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
  }
  return s.size() - colon - 1 <= 5 && std::stoi(s.substr(colon + 1)) <= 65535;
}

std::chrono::system_clock::time_point Deadline(std::chrono::milliseconds timeout) {
  return std::chrono::system_clock::now() + timeout;
}

}  // namespace

absl::StatusOr<std::unique_ptr<EtcdRegistrar>> EtcdRegistrar::Start(EtcdRegistrarOptions options) {
  if (options.endpoints.empty()) return absl::InvalidArgumentError("--etcd-endpoints: no endpoint");
  for (const auto& e : options.endpoints) {
    if (!LooksLikeHostPort(e)) {
      return absl::InvalidArgumentError(fmt::format("--etcd-endpoints: \"{}\" is not host:port", e));
    }
  }
  if (!LooksLikeHostPort(options.advertise_address)) {
    return absl::InvalidArgumentError(
        fmt::format("--advertise-address: \"{}\" is not host:port (the address agents connect to)",
                    options.advertise_address));
  }
  if (options.prefix.empty()) return absl::InvalidArgumentError("--etcd-prefix: empty");
  if (options.lease_ttl < std::chrono::seconds(1)) {
    return absl::InvalidArgumentError("--etcd-lease-ttl: must be at least 1s (etcd leases count whole seconds)");
  }
  std::unique_ptr<EtcdRegistrar> r(new EtcdRegistrar(std::move(options)));
  r->thread_ = std::thread([p = r.get()] { p->Run(); });
  return r;
}

EtcdRegistrar::EtcdRegistrar(EtcdRegistrarOptions options)
    : options_(std::move(options)), key_(options_.prefix + options_.advertise_address) {
  for (const auto& e : options_.endpoints) {
    // No keepalive: every call has a deadline, and etcd (Go gRPC, without
    // PermitWithoutStream) would count pings between calls as abuse.
    endpoints_.emplace_back(e, grpc::CreateChannel(e, grpc::InsecureChannelCredentials()));
  }
}

EtcdRegistrar::~EtcdRegistrar() { Stop(); }

void EtcdRegistrar::Halt() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    if (call_ != nullptr) call_->TryCancel();
  }
  if (thread_.joinable()) thread_.join();
}

void EtcdRegistrar::Abandon() {
  Halt();
  absl::MutexLock lock(&mu_);
  stopped_ = true;
}

void EtcdRegistrar::Stop() {
  Halt();
  int64_t lease = 0;
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    stopped_ = true;
    lease = stats_.lease_id;
    stats_.registered = false;
  }
  if (lease == 0) return;
  for (const auto& [address, channel] : endpoints_) {
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline(options_.rpc_timeout));
    etcdserverpb::LeaseRevokeRequest req;
    req.set_id(lease);
    etcdserverpb::LeaseRevokeResponse resp;
    grpc::Status st = etcdserverpb::Lease::NewStub(channel)->LeaseRevoke(&ctx, req, &resp);
    if (st.ok() || st.error_code() == grpc::StatusCode::NOT_FOUND) {
      LogInfo("etcd: removed {} (lease {} revoked)", key_, lease);
      return;
    }
    LogWarn("etcd {}: revoking lease {}: {}", address, lease, st.error_message());
  }
  LogWarn("etcd: could not revoke lease {}; {} goes when it expires", lease, key_);
}

bool EtcdRegistrar::WaitRegistered(std::chrono::milliseconds timeout) const {
  absl::MutexLock lock(&mu_);
  auto registered = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stats_.registered; };
  return mu_.AwaitWithTimeout(absl::Condition(&registered), absl::FromChrono(timeout));
}

EtcdRegistrar::Stats EtcdRegistrar::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

bool EtcdRegistrar::Track(grpc::ClientContext* ctx) {
  absl::MutexLock lock(&mu_);
  call_ = ctx;
  return !stopping_;
}

void EtcdRegistrar::Untrack() {
  absl::MutexLock lock(&mu_);
  call_ = nullptr;
}

bool EtcdRegistrar::WaitStopping(std::chrono::milliseconds d) const {
  absl::MutexLock lock(&mu_);
  auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
  mu_.AwaitWithTimeout(absl::Condition(&stop), absl::FromChrono(d));
  return stopping_;
}

void EtcdRegistrar::Run() {
  std::mt19937_64 rng(std::random_device{}());
  auto backoff = options_.retry_initial;
  for (size_t i = 0;; i = (i + 1) % endpoints_.size()) {
    uint64_t renewals_before = stats().renewals;
    absl::Status s = Session(endpoints_[i].second);
    if (WaitStopping(std::chrono::milliseconds(0))) return;
    std::string error = fmt::format("etcd {}: {}", endpoints_[i].first, std::string(s.message()));
    {
      absl::MutexLock lock(&mu_);
      ++stats_.errors;
      if (error != last_error_) LogWarn("{} (registering {}; retrying)", error, key_);
      last_error_ = error;
    }
    if (stats().renewals > renewals_before) backoff = options_.retry_initial;
    std::uniform_int_distribution<int64_t> jitter(backoff.count() / 2, backoff.count());
    if (WaitStopping(std::chrono::milliseconds(jitter(rng)))) return;
    backoff = std::min(backoff * 2, options_.retry_max);
  }
}

absl::Status EtcdRegistrar::Session(const std::shared_ptr<grpc::Channel>& channel) {
  for (;;) {
    int64_t lease = 0, ttl = 0;
    {
      absl::MutexLock lock(&mu_);
      if (stats_.registered) {
        lease = stats_.lease_id;
        ttl = granted_ttl_s_;
      }
    }
    if (lease == 0) {
      if (auto s = Register(channel); !s.ok()) return s;
      continue;
    }
    // A third of the TTL: two renewals may fail before the lease expires.
    auto every = std::max(std::chrono::milliseconds(500), std::chrono::milliseconds(ttl * 1000 / 3));
    if (WaitStopping(every)) return absl::CancelledError("stopping");
    auto left = Renew(channel, lease);
    if (!left.ok()) return left.status();
    absl::MutexLock lock(&mu_);
    if (*left <= 0) {
      stats_.registered = false;  // granted again by the next loop
      LogWarn("etcd: lease {} of {} is gone (expired or revoked); registering again", lease, key_);
      continue;
    }
    ++stats_.renewals;
    if (!last_error_.empty()) LogInfo("etcd: {} renewed again", key_);
    last_error_.clear();
  }
}

absl::Status EtcdRegistrar::Register(const std::shared_ptr<grpc::Channel>& channel) {
  etcdserverpb::LeaseGrantResponse grant;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline(options_.rpc_timeout));
    etcdserverpb::LeaseGrantRequest req;
    req.set_ttl(std::chrono::duration_cast<std::chrono::seconds>(options_.lease_ttl).count());
    if (!Track(&ctx)) return absl::CancelledError("stopping");
    grpc::Status st = etcdserverpb::Lease::NewStub(channel)->LeaseGrant(&ctx, req, &grant);
    Untrack();
    if (!st.ok()) return absl::UnavailableError(fmt::format("LeaseGrant: {}", st.error_message()));
    if (!grant.error().empty()) return absl::UnavailableError(fmt::format("LeaseGrant: {}", grant.error()));
  }
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline(options_.rpc_timeout));
    etcdserverpb::PutRequest req;
    req.set_key(key_);
    req.set_value(options_.advertise_address);
    req.set_lease(grant.id());
    etcdserverpb::PutResponse resp;
    if (!Track(&ctx)) return absl::CancelledError("stopping");
    grpc::Status st = etcdserverpb::KV::NewStub(channel)->Put(&ctx, req, &resp);
    Untrack();
    // The lease is left to expire: without the key it holds nothing.
    if (!st.ok()) return absl::UnavailableError(fmt::format("Put {}: {}", key_, st.error_message()));
  }
  absl::MutexLock lock(&mu_);
  stats_.registered = true;
  stats_.lease_id = grant.id();
  granted_ttl_s_ = grant.ttl();
  ++stats_.registrations;
  last_error_.clear();
  LogInfo("etcd: registered {} = {} (lease {}, TTL {} s)", key_, options_.advertise_address, grant.id(), grant.ttl());
  return absl::OkStatus();
}

absl::StatusOr<int64_t> EtcdRegistrar::Renew(const std::shared_ptr<grpc::Channel>& channel, int64_t lease) {
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(options_.rpc_timeout));
  if (!Track(&ctx)) return absl::CancelledError("stopping");
  auto stream = etcdserverpb::Lease::NewStub(channel)->LeaseKeepAlive(&ctx);
  etcdserverpb::LeaseKeepAliveRequest req;
  req.set_id(lease);
  etcdserverpb::LeaseKeepAliveResponse resp;
  bool answered = stream->Write(req) && stream->WritesDone() && stream->Read(&resp);
  if (answered) ctx.TryCancel();  // one answer is all this stream is for
  grpc::Status st = stream->Finish();
  Untrack();
  if (answered) return resp.ttl();
  if (st.error_code() == grpc::StatusCode::NOT_FOUND) return 0;  // "requested lease not found"
  return absl::UnavailableError(fmt::format("LeaseKeepAlive: {}", st.ok() ? "no answer" : st.error_message()));
}

}  // namespace sheaf::daemon
