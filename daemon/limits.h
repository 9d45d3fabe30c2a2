// Per-tenant and per-agent limits of sheafd (--limits FILE, reloaded on
// SIGHUP): ingest rates, cardinality, label sizes, message size, streams
// and queries. One tenant (or one agent) over its limits is refused with
// RESOURCE_EXHAUSTED and a retry hint; the others never wait for it.
//
// The file (YAML, like Mimir's runtime config):
//
//   defaults:                      # every tenant; absent keys: sheafd's flags
//     samples_per_second: 50000
//     agent_samples_per_second: 5000
//   tenants:
//     team-a:                      # overrides of `defaults` for one tenant
//       samples_per_second: 200000
//       active_series: 1000000
//
// Without a file every limit is what sheafd enforced before limits existed
// (the flags: --max-labels-bytes etc., --query-max-concurrent), and the
// rates, streams and cardinality are unlimited (0).
//
// Rates are token buckets: `*_per_second` (or per minute) refills, `*_burst`
// is the bucket's size (default: one second's, or one minute's, worth). A
// batch larger than the burst is admitted when the bucket is full and
// leaves it in debt, so no batch is refused forever.
//
// Keys are the tenant's name (auth.h's Principal::tenant_name, "default"
// without --auth-tokens) and the agent's id. No gRPC here: a refusal is an
// absl::Status carrying its retry hint (RetryAfterMs), which the gRPC and
// HTTP edges turn into trailers and Retry-After. Thread-safe.
#ifndef SHEAF_DAEMON_LIMITS_H_
#define SHEAF_DAEMON_LIMITS_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "model/validation.h"

namespace prometheus {
class Registry;
template <typename T>
class Family;
class Counter;
}  // namespace prometheus

namespace sheaf::daemon {

// One tenant's limits. 0 means unlimited where the comment says so.
struct TenantLimits {
  double samples_per_second = 0;        // samples accepted per second, whole tenant (0: unlimited)
  double samples_burst = 0;             // bucket size (0: one second of samples_per_second)
  double agent_samples_per_second = 0;  // the same, per agent of the tenant
  double agent_samples_burst = 0;
  size_t active_series = 0;           // series the tenant holds in the index (0: only --max-series)
  double new_series_per_minute = 0;   // series created per minute (0: unlimited)
  double new_series_burst = 0;        // bucket size (0: one minute of new_series_per_minute)
  size_t labels_per_series = 64;      // ValidationLimits::max_labels (no flag)
  size_t label_name_length = 128;     // --max-label-name-bytes
  size_t label_value_length = 2048;   // --max-label-value-bytes
  size_t message_bytes = 16 << 20;    // one Push batch, decompressed (never above --max-recv-message-bytes)
  size_t push_streams = 0;            // Push streams open at once, whole tenant (0: unlimited)
  size_t agent_streams = 0;           // the same, per agent
  size_t concurrent_queries = 16;     // PromQL queries at once (gRPC Query, HTTP API), per tenant

  // `base` with this tenant's label limits.
  model::ValidationLimits Apply(model::ValidationLimits base) const;
};

// The limits as sheafd's flags set them before any file: validation,
// message size and query slots from their options.
TenantLimits LimitsFromFlags(const model::ValidationLimits& validation, size_t max_message_bytes,
                             size_t max_concurrent_queries);

struct LimitsConfig {
  TenantLimits defaults;
  std::map<std::string, TenantLimits, std::less<>> tenants;  // each complete: defaults + the tenant's keys
  std::string source;  // "limits file PATH", or "sheafd's flags" without a file

  const TenantLimits& For(std::string_view tenant) const;
};

// Parses a limits file's text; errors say "FILE:LINE: reason". Absent keys
// keep `base` (defaults) or the file's defaults (tenants).
absl::StatusOr<LimitsConfig> ParseLimits(std::string_view yaml, const std::string& file, const TenantLimits& base);
absl::StatusOr<LimitsConfig> LoadLimitsFile(const std::string& file, const TenantLimits& base);

// How long a refusal asks the client to wait (0 when `s` carries no hint).
int64_t RetryAfterMs(const absl::Status& s);

class Limiter {
 public:
  // `now_ms`: a monotonic clock (tests inject one); MonotonicMs when empty.
  // `registry`: where sheaf_limits_refused_total goes (none: not exported).
  Limiter(TenantLimits base, std::function<int64_t()> now_ms = {}, prometheus::Registry* registry = nullptr);
  ~Limiter();

  // Reads `file` (empty: the flags' limits only). On error the limits in
  // force stay, and the error names the file and line.
  absl::Status Load(const std::string& file);
  // The same file again (SIGHUP); OK without a file.
  absl::Status Reload();

  TenantLimits For(std::string_view tenant) const;
  std::string source() const;

  // A batch of `samples` samples creating `new_series` series, from
  // `agent` (empty: no agent limits) of `tenant`: admitted whole, taking
  // from every bucket, or refused whole (RESOURCE_EXHAUSTED naming the
  // first limit it is over, with the retry hint), taking nothing.
  absl::Status AdmitBatch(std::string_view tenant, std::string_view agent, uint64_t samples, uint64_t new_series);

  // Whether `tenant`, holding `held` series, may create one more
  // (active_series); the refusal is counted.
  absl::Status AdmitSeries(std::string_view tenant, uint64_t held);

  // A slot (a Push stream, a query), released when destroyed.
  class Slot {
   public:
    Slot() = default;
    Slot(Slot&& other) noexcept { *this = std::move(other); }
    Slot& operator=(Slot&& other) noexcept;
    ~Slot() { Release(); }
    void Release();

   private:
    friend class Limiter;
    Limiter* limiter_ = nullptr;
    std::string tenant_key_, agent_key_;  // counters' keys; agent_key_ empty for tenant-only slots
    bool query_ = false;
  };
  // A Push stream of `agent` (push_streams, agent_streams).
  absl::StatusOr<Slot> AcquireStream(std::string_view tenant, std::string_view agent);
  // A PromQL query (concurrent_queries).
  absl::StatusOr<Slot> AcquireQuery(std::string_view tenant);

  // Refusals so far, by tenant and limit (tests; /metrics has them too).
  uint64_t refused(std::string_view tenant, std::string_view limit) const;

 private:
  struct Bucket {
    double tokens = 0;
    int64_t last_ms = 0;
    bool fresh = true;  // not yet used: starts full
  };
  // Refills `b` to `now`; the ms until it holds min(n, burst) (0: now).
  static int64_t Wait(Bucket& b, double rate_per_ms, double burst, double n, int64_t now);
  absl::Status Refuse(std::string_view tenant, std::string_view agent, std::string_view limit, double value,
                      int64_t retry_ms) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Count(std::string_view tenant, std::string_view limit) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReleaseSlot(const Slot& slot);
  // Bounds the buckets kept for agents: full ones are forgotten (they
  // would start full again anyway).
  void TrimAgentBuckets(int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const TenantLimits base_;
  const std::function<int64_t()> now_ms_;
  prometheus::Family<prometheus::Counter>* refused_family_ = nullptr;
  mutable absl::Mutex mu_;
  std::string file_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const LimitsConfig> config_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Bucket> tenant_samples_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Bucket> agent_samples_ ABSL_GUARDED_BY(mu_);  // key: tenant \0 agent
  absl::flat_hash_map<std::string, Bucket> new_series_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, size_t> tenant_streams_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, size_t> agent_streams_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, size_t> queries_ ABSL_GUARDED_BY(mu_);
  std::map<std::pair<std::string, std::string>, uint64_t, std::less<>> refused_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sheaf::daemon

#endif  // SHEAF_DAEMON_LIMITS_H_
