#include "agent/discovery/etcd_source.h"

#include <grpcpp/grpcpp.h>

#include <map>
#include <random>

#include "common/log.h"
#include "etcd/rpc.grpc.pb.h"

namespace sheaf::agent::discovery {

std::string EtcdPrefixEnd(std::string prefix) {
  while (!prefix.empty()) {
    auto last = static_cast<unsigned char>(prefix.back());
    if (last < 0xff) {
      prefix.back() = static_cast<char>(last + 1);
      return prefix;
    }
    prefix.pop_back();
  }
  return std::string(1, '\0');
}

namespace {

class EtcdSource : public AddressSource {
 public:
  EtcdSource(const Target& target, const SourceOptions& options)
      : AddressSource(target.text), options_(options), prefix_(target.prefix), range_end_(EtcdPrefixEnd(prefix_)) {
    for (const auto& endpoint : target.addresses) {
      grpc::ChannelArguments args;
      // The watch waits for events for hours: pings while it is open find a
      // dead etcd or a dropped connection. Only while a call is open, and
      // never more often than etcd's default --grpc-keepalive-min-time
      // (5 s) allows, or etcd answers GOAWAY too_many_pings.
      args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(options.etcd_keepalive_time.count()));
      args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, static_cast<int>(options.etcd_rpc_timeout.count()));
      args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
      args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);  // an idle watch sends no data
      args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, static_cast<int>(options.etcd_retry_max.count()));
      endpoints_.push_back({endpoint, grpc::CreateCustomChannel(endpoint, grpc::InsecureChannelCredentials(), args)});
    }
    StartThread([this] { Run(); });
  }
  ~EtcdSource() override {
    StopThread([this] {
      absl::MutexLock lock(&call_mu_);
      if (call_ != nullptr) call_->TryCancel();
    });
  }

 private:
  struct Endpoint {
    std::string address;
    std::shared_ptr<grpc::Channel> channel;
  };

  void Run() {
    std::mt19937_64 rng(std::random_device{}());
    auto backoff = options_.etcd_retry_initial;
    for (size_t i = 0;; i = (i + 1) % endpoints_.size()) {
      bool watched = false;
      absl::Status s = Session(endpoints_[i].channel, &watched);
      if (stopping()) return;
      RecordError(fmt::format("etcd {}: {}", endpoints_[i].address, std::string(s.message())));
      if (watched) backoff = options_.etcd_retry_initial;  // it worked for a while: a fresh failure
      std::uniform_int_distribution<int64_t> jitter(backoff.count() / 2, backoff.count());
      if (WaitStopping(std::chrono::milliseconds(jitter(rng)))) return;
      backoff = std::min(backoff * 2, options_.etcd_retry_max);
    }
  }

  // Makes `ctx` cancellable by the destructor for as long as the call runs.
  // False if the source is already stopping.
  bool Track(grpc::ClientContext* ctx) {
    absl::MutexLock lock(&call_mu_);
    call_ = ctx;
    return !stopping();
  }
  void Untrack() {
    absl::MutexLock lock(&call_mu_);
    call_ = nullptr;
  }

  // One Range then one Watch, until the watch ends. Returns why it ended.
  absl::Status Session(const std::shared_ptr<grpc::Channel>& channel, bool* watched) {
    std::map<std::string, std::string> daemons;  // key -> host:port
    int64_t revision = 0;
    {
      auto kv = etcdserverpb::KV::NewStub(channel);
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + options_.etcd_rpc_timeout);
      etcdserverpb::RangeRequest req;
      req.set_key(prefix_);
      req.set_range_end(range_end_);
      req.set_limit(static_cast<int64_t>(options_.max_addresses) + 1);
      etcdserverpb::RangeResponse resp;
      if (!Track(&ctx)) return absl::CancelledError("stopping");
      grpc::Status st = kv->Range(&ctx, req, &resp);
      Untrack();
      if (!st.ok()) return absl::UnavailableError(fmt::format("Range {}: {}", prefix_, st.error_message()));
      for (const auto& item : resp.kvs()) Apply(&daemons, mvccpb::Event::PUT, item);
      revision = resp.header().revision();
    }
    Publish(daemons);

    auto watch = etcdserverpb::Watch::NewStub(channel);
    grpc::ClientContext ctx;
    if (!Track(&ctx)) return absl::CancelledError("stopping");
    auto stream = watch->Watch(&ctx);
    etcdserverpb::WatchRequest req;
    auto* create = req.mutable_create_request();
    create->set_key(prefix_);
    create->set_range_end(range_end_);
    create->set_start_revision(revision + 1);  // nothing between the Range and the watch is missed
    etcdserverpb::WatchResponse resp;
    std::string ended;
    if (stream->Write(req)) {
      while (stream->Read(&resp)) {
        if (resp.canceled()) {
          ended = resp.compact_revision() != 0
                      ? fmt::format("watch cancelled: revision {} compacted (at {})", revision + 1,
                                    resp.compact_revision())
                      : fmt::format("watch cancelled: {}", resp.cancel_reason());
          ctx.TryCancel();
          break;
        }
        if (resp.created()) *watched = true;
        if (resp.events_size() == 0) continue;
        for (const auto& ev : resp.events()) Apply(&daemons, ev.type(), ev.kv());
        Publish(daemons);
      }
    }
    grpc::Status st = stream->Finish();
    Untrack();
    if (!ended.empty()) return absl::UnavailableError(ended);
    return absl::UnavailableError(fmt::format("Watch {}: {}", prefix_, st.ok() ? "ended" : st.error_message()));
  }

  void Apply(std::map<std::string, std::string>* daemons, mvccpb::Event::EventType type,
             const mvccpb::KeyValue& kv) {
    if (type == mvccpb::Event::DELETE) {
      daemons->erase(kv.key());
      return;
    }
    auto hp = ParseHostPort(kv.value());
    if (!hp.ok()) {
      RecordError(fmt::format("key {}: value \"{}\" skipped: {}", kv.key(), kv.value(), std::string(hp.status().message())));
      daemons->erase(kv.key());
      return;
    }
    (*daemons)[kv.key()] = FormatHostPort(hp->host, hp->port);
  }

  void Publish(const std::map<std::string, std::string>& daemons) {
    std::vector<std::string> addresses;
    for (const auto& [key, address] : daemons) {
      if (addresses.size() == options_.max_addresses) {
        RecordError(fmt::format("more than {} daemons registered; using {}", options_.max_addresses,
                                options_.max_addresses));
        break;
      }
      addresses.push_back(address);
    }
    Set(std::move(addresses));
  }

  const SourceOptions options_;
  const std::string prefix_;
  const std::string range_end_;
  std::vector<Endpoint> endpoints_;
  absl::Mutex call_mu_;
  grpc::ClientContext* call_ ABSL_GUARDED_BY(call_mu_) = nullptr;
};

}  // namespace

absl::StatusOr<std::unique_ptr<AddressSource>> OpenEtcdSource(const Target& target, const SourceOptions& options) {
  if (target.kind != Target::Kind::kEtcd || target.addresses.empty()) {
    return absl::InvalidArgumentError(fmt::format("--daemon {}: not an etcd:// target with endpoints", target.text));
  }
  return std::unique_ptr<AddressSource>(new EtcdSource(target, options));
}

}  // namespace sheaf::agent::discovery
