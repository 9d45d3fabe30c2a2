// What sheafd knows about each agent that pushed to it since it started,
// for the web console's /agents page and /api/v1/status/agents: where it
// pushes from, when it last pushed, its sample rate, its last sequence,
// what was rejected and why, and whether it is behind (sending old
// samples: the backlog of its spool after an outage).
//
// Bounded: at most `max_agents` agents are kept; past it the 1/64 that
// pushed longest ago are forgotten (counted in forgotten(), logged once).
// An agent costs ~400 bytes (one push; ~500 pushing every 10 s), at most
// ~650 however fast it pushes, plus its id and address beyond 15 bytes
// (measured with heap accounting, docs/RELIABILITY.md): ~60 MiB at the
// default bound. Kept in memory only: a restarted sheafd starts empty (the
// durable sequence of every agent stays in the store).
//
// Thread-safe. No gRPC.
#ifndef SHEAF_DAEMON_AGENT_REGISTRY_H_
#define SHEAF_DAEMON_AGENT_REGISTRY_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "model/types.h"
#include "storage/types.h"

namespace sheaf::daemon {

struct AgentRegistryOptions {
  size_t max_agents = 100'000;
  // An agent whose newest sample in a batch is older than this when it
  // arrives is "behind": it is sending what it spooled.
  int64_t behind_after_ms = 60'000;
  // The sample rate is the samples of the pushes within this window.
  int64_t rate_window_ms = 60'000;
  std::function<int64_t()> now_ms;  // wall clock when empty (tests inject one)
};

struct AgentInfo {
  std::string id;
  storage::TenantId tenant = storage::kDefaultTenant;  // agents are per tenant: the same id in two is two agents
  std::string address;  // the peer of its last stream ("ipv4:10.0.0.5:41234")
  std::string host;     // the "host" label of its series (sheaf-agent adds it), when any
  int64_t first_push_ms = 0;
  int64_t last_push_ms = 0;
  uint64_t last_sequence = 0;  // of its last applied batch
  uint64_t batches = 0;
  uint64_t samples = 0;  // stored, since sheafd started
  double samples_per_second = 0;  // over the rate window, 0 once it stops
  int64_t newest_sample_ms = 0;   // in its last batch
  bool behind = false;            // its last batch's newest sample was older than behind_after_ms
  std::map<std::string, uint64_t> rejected_samples;  // by reason name ("too_old", ...)
};

class AgentRegistry {
 public:
  explicit AgentRegistry(AgentRegistryOptions options = {});

  // A batch of agent `id` from `address` was applied: `samples` stored,
  // the newest sample at `newest_sample_ms` (0: none); `host` from
  // HostLabel of its series ("": keep the one known).
  void Applied(std::string_view id, std::string_view address, std::string_view host, uint64_t sequence,
               uint64_t samples, int64_t newest_sample_ms, storage::TenantId tenant = storage::kDefaultTenant);
  // The value of the "host" label; "" without one.
  static std::string_view HostLabel(const model::Labels& labels);
  // `samples` of agent `id` were rejected for `reason` (model::ReasonName).
  void Rejected(std::string_view id, std::string_view reason, uint64_t samples,
                storage::TenantId tenant = storage::kDefaultTenant);

  // Every agent kept (of `tenant` only, when given), by tenant and id.
  std::vector<AgentInfo> Agents(std::optional<storage::TenantId> tenant = std::nullopt) const;
  // Samples stored per second over the rate window, all agents (of
  // `tenant`) together.
  double SamplesPerSecond(std::optional<storage::TenantId> tenant = std::nullopt) const;
  uint64_t forgotten() const;

 private:
  struct Agent {
    AgentInfo info;
    // (push time, samples) of the pushes within the rate window, oldest
    // first; pushes close together share one (at most 17: agent_registry.cc).
    std::vector<std::pair<int64_t, uint64_t>> recent;
  };
  Agent& Find(storage::TenantId tenant, std::string_view id, int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Prune(Agent& agent, int64_t now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  double Rate(const Agent& agent, int64_t now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int64_t Now() const;

  const AgentRegistryOptions options_;
  mutable absl::Mutex mu_;
  using Key = std::pair<storage::TenantId, std::string>;
  std::map<Key, Agent> agents_ ABSL_GUARDED_BY(mu_);
  uint64_t forgotten_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace sheaf::daemon

#endif  // SHEAF_DAEMON_AGENT_REGISTRY_H_
