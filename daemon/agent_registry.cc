#include "daemon/agent_registry.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/log.h"

namespace sheaf::daemon {

// The rate window is cut into this many slots: pushes within a slot of
// the agent's last kept push share its entry, so an agent keeps at most
// kRateSlots + 1 entries however fast it pushes (<= 512 bytes; at most
// 256, 4 KB, were kept before: ~400 MiB for 100,000 fast agents). The
// rate's window edge moves by at most a slot (3.75 s of 60 s).
constexpr int64_t kRateSlots = 16;
// Past max_agents, this fraction of them is forgotten at once.
constexpr size_t kForgetFraction = 64;

AgentRegistry::AgentRegistry(AgentRegistryOptions options) : options_(std::move(options)) {}

int64_t AgentRegistry::Now() const { return options_.now_ms ? options_.now_ms() : WallClockMs(); }

AgentRegistry::Agent& AgentRegistry::Find(storage::TenantId tenant, std::string_view id, int64_t now) {
  Key key{tenant, std::string(id)};
  if (auto it = agents_.find(key); it != agents_.end()) return it->second;
  if (agents_.size() >= options_.max_agents && !agents_.empty()) {
    // Forget the 1/kForgetFraction that pushed longest ago at once: one
    // O(agents) scan per that many new agents, not per new agent (ids that
    // churn at the bound would otherwise cost a scan of 100,000 agents,
    // ~5 ms under mu_, per push).
    const size_t forget = std::min(agents_.size(), std::max<size_t>(1, options_.max_agents / kForgetFraction));
    std::vector<std::pair<int64_t, std::map<Key, Agent>::iterator>> by_age;
    by_age.reserve(agents_.size());
    for (auto it = agents_.begin(); it != agents_.end(); ++it) by_age.emplace_back(it->second.info.last_push_ms, it);
    std::nth_element(by_age.begin(), by_age.begin() + static_cast<ptrdiff_t>(forget - 1), by_age.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    if (forgotten_ == 0) {
      LogWarn("more than {} agents pushed since sheafd started: the console's agent list forgets those that "
              "pushed longest ago, 1/{} of them at a time (one: \"{}\")",
              options_.max_agents, kForgetFraction, by_age.front().second->first.second);
    }
    forgotten_ += forget;
    for (size_t i = 0; i < forget; ++i) agents_.erase(by_age[i].second);
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
  if (!agent.recent.empty() && now - agent.recent.back().first < options_.rate_window_ms / kRateSlots) {
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
