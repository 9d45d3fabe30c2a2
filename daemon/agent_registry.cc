#include "daemon/agent_registry.h"

#include <algorithm>
#include <utility>

#include "common/clock.h"
#include "common/log.h"

namespace sheaf::daemon {

// At most this many pushes per agent are kept for the rate: an agent
// pushing faster shares the last entry (the rate stays exact, the memory
// bounded).
constexpr size_t kMaxRecentPushes = 256;

AgentRegistry::AgentRegistry(AgentRegistryOptions options) : options_(std::move(options)) {}

int64_t AgentRegistry::Now() const { return options_.now_ms ? options_.now_ms() : WallClockMs(); }

AgentRegistry::Agent& AgentRegistry::Find(storage::TenantId tenant, std::string_view id, int64_t now) {
  Key key{tenant, std::string(id)};
  if (auto it = agents_.find(key); it != agents_.end()) return it->second;
  if (agents_.size() >= options_.max_agents && !agents_.empty()) {
    // Forget the agent that pushed longest ago: O(agents), only at the bound.
    auto oldest = std::min_element(agents_.begin(), agents_.end(), [](const auto& a, const auto& b) {
      return a.second.info.last_push_ms < b.second.info.last_push_ms;
    });
    if (forgotten_++ == 0) {
      LogWarn("more than {} agents pushed since sheafd started: the console's agent list forgets those that "
              "pushed longest ago (first: \"{}\")",
              options_.max_agents, oldest->first.second);
    }
    agents_.erase(oldest);
  }
  Agent& agent = agents_[std::move(key)];
  agent.info.id = std::string(id);
  agent.info.tenant = tenant;
  agent.info.first_push_ms = now;
  return agent;
}

void AgentRegistry::Prune(Agent& agent, int64_t now) const {
  auto& r = agent.recent;
  auto keep = std::find_if(r.begin(), r.end(), [&](const auto& p) { return p.first > now - options_.rate_window_ms; });
  r.erase(r.begin(), keep);
}

double AgentRegistry::Rate(const Agent& agent, int64_t now) const {
  uint64_t samples = 0;
  for (const auto& [t, n] : agent.recent) {
    if (t > now - options_.rate_window_ms) samples += n;
  }
  // Over the window, or since the first push when the agent is newer.
  const int64_t span = std::min(options_.rate_window_ms, std::max<int64_t>(now - agent.info.first_push_ms, 1000));
  return static_cast<double>(samples) * 1000.0 / static_cast<double>(span);
}

std::string_view AgentRegistry::HostLabel(const model::Labels& labels) {
  for (const model::Label& label : labels) {
    if (label.name == "host") return label.value;
  }
  return {};
}

void AgentRegistry::Applied(std::string_view id, std::string_view address, std::string_view host, uint64_t sequence,
                            uint64_t samples, int64_t newest_sample_ms, storage::TenantId tenant) {
  const int64_t now = Now();
  absl::MutexLock lock(&mu_);
  Agent& agent = Find(tenant, id, now);
  AgentInfo& info = agent.info;
  info.address = std::string(address);
  if (!host.empty()) info.host = std::string(host);
  info.last_push_ms = now;
  info.last_sequence = std::max(info.last_sequence, sequence);
  ++info.batches;
  info.samples += samples;
  if (newest_sample_ms > 0) {
    info.newest_sample_ms = newest_sample_ms;
    info.behind = now - newest_sample_ms > options_.behind_after_ms;
  }
  Prune(agent, now);
  if (agent.recent.size() >= kMaxRecentPushes) {
    agent.recent.back().second += samples;
  } else {
    agent.recent.emplace_back(now, samples);
  }
}

void AgentRegistry::Rejected(std::string_view id, std::string_view reason, uint64_t samples,
                             storage::TenantId tenant) {
  const int64_t now = Now();
  absl::MutexLock lock(&mu_);
  Agent& agent = Find(tenant, id, now);
  agent.info.rejected_samples[std::string(reason)] += samples;
}

std::vector<AgentInfo> AgentRegistry::Agents(std::optional<storage::TenantId> tenant) const {
  const int64_t now = Now();
  absl::MutexLock lock(&mu_);
  std::vector<AgentInfo> out;
  out.reserve(agents_.size());
  for (const auto& [key, agent] : agents_) {
    if (tenant && key.first != *tenant) continue;
    out.push_back(agent.info);
    out.back().samples_per_second = Rate(agent, now);
  }
  return out;
}

double AgentRegistry::SamplesPerSecond(std::optional<storage::TenantId> tenant) const {
  const int64_t now = Now();
  absl::MutexLock lock(&mu_);
  double total = 0;
  for (const auto& [key, agent] : agents_) {
    if (!tenant || key.first == *tenant) total += Rate(agent, now);
  }
  return total;
}

uint64_t AgentRegistry::forgotten() const {
  absl::MutexLock lock(&mu_);
  return forgotten_;
}

}  // namespace sheaf::daemon
