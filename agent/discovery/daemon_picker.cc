#include "agent/discovery/daemon_picker.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>

#include "agent/discovery/rendezvous.h"
#include "common/log.h"
#include "health.grpc.pb.h"

namespace sheaf::agent::discovery {

using HealthResponse = grpc::health::v1::HealthCheckResponse;

DaemonPicker::DaemonPicker(AddressSource* source, PickerOptions options)
    : source_(source), options_(std::move(options)) {
  source_->SetListener([this] {
    absl::MutexLock lock(&mu_);
    wake_ = true;
  });
  thread_ = std::thread([this] { Run(); });
}

DaemonPicker::~DaemonPicker() {
  source_->SetListener(nullptr);  // no wake-up from the source after this
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

std::optional<Pick> DaemonPicker::Current() const {
  absl::MutexLock lock(&mu_);
  return current_;
}

std::optional<Pick> DaemonPicker::WaitForPick(std::chrono::milliseconds timeout) const {
  absl::MutexLock lock(&mu_);
  auto picked = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return current_.has_value(); };
  mu_.AwaitWithTimeout(absl::Condition(&picked), absl::FromChrono(timeout));
  return current_;
}

std::optional<Pick> DaemonPicker::WaitForChange(uint64_t generation, std::chrono::milliseconds timeout) const {
  absl::MutexLock lock(&mu_);
  auto changed = [this, generation]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stats_.generation > generation; };
  mu_.AwaitWithTimeout(absl::Condition(&changed), absl::FromChrono(timeout));
  return current_;
}

void DaemonPicker::ReportFailure(const std::string& address) {
  absl::MutexLock lock(&mu_);
  ++stats_.failures_reported;
  if (current_ && current_->address == address) wake_ = true;
}

DaemonPicker::Stats DaemonPicker::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

std::vector<std::string> DaemonPicker::Order() const {
  absl::MutexLock lock(&mu_);
  return order_;
}

void DaemonPicker::Run() {
  auto next_round = std::chrono::steady_clock::now();
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      auto due = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return wake_ || stopping_; };
      mu_.AwaitWithDeadline(absl::Condition(&due), absl::FromChrono(std::chrono::system_clock::now() +
                                                                       (next_round - std::chrono::steady_clock::now())));
      if (stopping_) return;
      wake_ = false;
    }
    Round();
    next_round = std::chrono::steady_clock::now() + options_.health_interval;
  }
}

std::shared_ptr<grpc::Channel> DaemonPicker::ChannelFor(const std::string& address) {
  Daemon& d = daemons_[address];
  if (!d.channel) d.channel = MakeDaemonChannel(address, options_.channel);
  return d.channel;
}

void DaemonPicker::SetCurrent(const std::string& address, const std::string& why) {
  std::string was = current_ ? current_->address : "";
  if (address == was) return;
  ++stats_.switches;
  ++stats_.generation;
  stats_.current = address;
  if (address.empty()) {
    current_.reset();
    LogWarn("no healthy daemon ({}; was sending to {}): batches wait", why, was.empty() ? "none" : was);
    return;
  }
  current_ = Pick{address, ChannelFor(address), stats_.generation};
  LogInfo("sending to daemon {} ({}; was {})", address, why, was.empty() ? "none" : was);
}

void DaemonPicker::Round() {
  std::vector<std::string> order = RendezvousOrder(options_.identity, source_->Addresses());
  std::string current;
  {
    absl::MutexLock lock(&mu_);
    order_ = order;
    stats_.daemons = order.size();
    // Addresses that left the list lose their channel (the shipper keeps
    // its copy of a pick's channel while it uses it).
    for (auto it = daemons_.begin(); it != daemons_.end();) {
      it = std::find(order.begin(), order.end(), it->first) == order.end() ? daemons_.erase(it) : std::next(it);
    }
    if (current_) current = current_->address;
  }
  auto at = std::find(order.begin(), order.end(), current);
  size_t checked = current.empty() || at == order.end() ? 0 : static_cast<size_t>(at - order.begin()) + 1;
  // The current daemon and those ahead of it.
  std::vector<bool> ok = Check(std::vector<std::string>(order.begin(), order.begin() + static_cast<long>(checked)));
  {
    absl::MutexLock lock(&mu_);
    for (size_t i = 0; i < checked; ++i) {
      Daemon& d = daemons_[order[i]];
      d.passes_in_a_row = ok[i] ? d.passes_in_a_row + 1 : 0;
    }
    if (checked > 0 && ok[checked - 1]) {
      // The current daemon is healthy: only a better one that has stayed
      // healthy takes over.
      for (size_t i = 0; i + 1 < checked; ++i) {
        if (daemons_[order[i]].passes_in_a_row >= options_.recover_checks) {
          SetCurrent(order[i], "it is healthy again and comes first in this agent's order");
          return;
        }
      }
      return;
    }
    // The current daemon failed (or is gone, or there is none): the first
    // daemon that passed now, else the first past the current that passes.
    for (size_t i = 0; i < checked; ++i) {
      if (ok[i]) {
        SetCurrent(order[i], fmt::format("{} failed its health check", current));
        return;
      }
    }
  }
  std::string why = current.empty()                 ? "first healthy daemon"
                    : at == order.end()             ? fmt::format("{} left the daemon list", current)
                                                    : fmt::format("{} failed its health check", current);
  for (size_t from = checked; from < order.size(); from += options_.max_parallel_checks) {
    size_t to = std::min(order.size(), from + options_.max_parallel_checks);
    std::vector<bool> more = Check(std::vector<std::string>(order.begin() + static_cast<long>(from),
                                                            order.begin() + static_cast<long>(to)));
    absl::MutexLock lock(&mu_);
    for (size_t i = from; i < to; ++i) {
      Daemon& d = daemons_[order[i]];
      d.passes_in_a_row = more[i - from] ? d.passes_in_a_row + 1 : 0;
    }
    for (size_t i = from; i < to; ++i) {
      if (more[i - from]) {
        SetCurrent(order[i], why);
        return;
      }
    }
  }
  absl::MutexLock lock(&mu_);
  SetCurrent("", order.empty() ? "no daemon known" : fmt::format("none of {} daemon(s) healthy", order.size()));
}

std::vector<bool> DaemonPicker::Check(const std::vector<std::string>& addresses) {
  struct Call {
    grpc::ClientContext ctx;
    grpc::health::v1::HealthCheckRequest req;
    HealthResponse resp;
    std::unique_ptr<grpc::health::v1::Health::Stub> stub;
  };
  std::vector<std::unique_ptr<Call>> calls;
  std::vector<bool> ok(addresses.size(), false);
  absl::Mutex done_mu;
  size_t done = 0;
  auto deadline = std::chrono::system_clock::now() + options_.health_timeout;
  for (size_t i = 0; i < addresses.size(); ++i) {
    std::shared_ptr<grpc::Channel> channel;
    {
      absl::MutexLock lock(&mu_);
      channel = ChannelFor(addresses[i]);
    }
    // A daemon that was down leaves its channel waiting out a reconnect
    // backoff (up to ChannelOptions::max_reconnect_backoff): try now, so a
    // daemon that is back is seen at this check.
    if (channel->GetState(false) == GRPC_CHANNEL_TRANSIENT_FAILURE) {
      grpc::experimental::ChannelResetConnectionBackoff(channel.get());
    }
    auto call = std::make_unique<Call>();
    call->ctx.set_deadline(deadline);
    call->ctx.set_wait_for_ready(true);  // connecting is part of the check, within the deadline
    call->req.set_service(options_.health_service);
    call->stub = grpc::health::v1::Health::NewStub(channel);
    Call* c = call.get();
    calls.push_back(std::move(call));
    c->stub->async()->Check(&c->ctx, &c->req, &c->resp, [&, i, c](grpc::Status status) {
      bool serving = status.ok() && c->resp.status() == HealthResponse::SERVING;
      absl::MutexLock lock(&done_mu);
      ok[i] = serving;
      ++done;
    });
  }
  {
    absl::MutexLock lock(&done_mu);
    auto all = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(done_mu) { return done == addresses.size(); };
    done_mu.Await(absl::Condition(&all));  // every call ends by its deadline
  }
  absl::MutexLock lock(&mu_);
  stats_.checks += addresses.size();
  stats_.checks_failed += static_cast<uint64_t>(std::count(ok.begin(), ok.end(), false));
  return ok;
}

}  // namespace sheaf::agent::discovery
