#include "daemon/limits.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>
#include <yaml-cpp/yaml.h>

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>
#include <variant>

#include "common/clock.h"
#include "common/log.h"

namespace sheaf::daemon {
namespace {

constexpr char kRetryPayload[] = "type.sheaf.dev/retry-after-ms";
// Slots (streams, queries) free up when a call ends: a short, fixed hint.
constexpr int64_t kSlotRetryMs = 1000;
// Agents' sample buckets idle this long are forgotten (they would be full
// again by then at any sensible rate), so their number stays bounded by
// the agents active lately.
constexpr int64_t kAgentBucketIdleMs = 60'000;
constexpr size_t kAgentBucketsBeforeTrim = 10'000;

// A key of the file and the field it sets.
using Field = std::variant<double TenantLimits::*, size_t TenantLimits::*>;
const std::vector<std::pair<std::string_view, Field>>& Fields() {
  static const auto* fields = new std::vector<std::pair<std::string_view, Field>>{
      {"samples_per_second", &TenantLimits::samples_per_second},
      {"samples_burst", &TenantLimits::samples_burst},
      {"agent_samples_per_second", &TenantLimits::agent_samples_per_second},
      {"agent_samples_burst", &TenantLimits::agent_samples_burst},
      {"active_series", &TenantLimits::active_series},
      {"new_series_per_minute", &TenantLimits::new_series_per_minute},
      {"new_series_burst", &TenantLimits::new_series_burst},
      {"labels_per_series", &TenantLimits::labels_per_series},
      {"label_name_length", &TenantLimits::label_name_length},
      {"label_value_length", &TenantLimits::label_value_length},
      {"message_bytes", &TenantLimits::message_bytes},
      {"push_streams", &TenantLimits::push_streams},
      {"agent_streams", &TenantLimits::agent_streams},
      {"concurrent_queries", &TenantLimits::concurrent_queries},
  };
  return *fields;
}

absl::Status FileError(const std::string& file, const YAML::Node& node, std::string_view reason) {
  const int line = node.Mark().line;
  return absl::InvalidArgumentError(fmt::format("{}:{}: {}", file, line >= 0 ? line + 1 : 1, reason));
}

// Sets the fields named in `node` (a mapping) on `out`.
absl::Status ParseTenant(const std::string& file, const YAML::Node& node, std::string_view what,
                         TenantLimits* out) {
  if (!node || node.IsNull()) return absl::OkStatus();
  if (!node.IsMap()) return FileError(file, node, fmt::format("{} must be a mapping of limit: value", what));
  std::set<std::string> seen;
  for (const auto& kv : node) {
    const std::string key = kv.first.Scalar();
    auto it = std::find_if(Fields().begin(), Fields().end(), [&](const auto& f) { return f.first == key; });
    if (it == Fields().end()) {
      std::string known;
      for (const auto& f : Fields()) known += fmt::format("{}{}", known.empty() ? "" : ", ", f.first);
      return FileError(file, kv.first, fmt::format("unknown limit \"{}\" in {} (known: {})", key, what, known));
    }
    if (!seen.insert(key).second) return FileError(file, kv.first, fmt::format("limit \"{}\" given twice", key));
    double value = 0;
    try {
      value = kv.second.as<double>();
    } catch (const YAML::Exception&) {
      return FileError(file, kv.second, fmt::format("{}: \"{}\" is not a number", key, kv.second.Scalar()));
    }
    if (!std::isfinite(value) || value < 0 || value > 1e18) {
      return FileError(file, kv.second, fmt::format("{}: {} must be a number from 0 to 1e18", key, value));
    }
    const bool integral = !std::holds_alternative<double TenantLimits::*>(it->second);
    if (integral && value != std::floor(value)) {
      return FileError(file, kv.second, fmt::format("{}: {} must be a whole number", key, value));
    }
    std::visit([&](auto member) { out->*member = static_cast<std::remove_reference_t<decltype(out->*member)>>(value); },
               it->second);
  }
  return absl::OkStatus();
}

std::string Quoted(std::string_view s) { return fmt::format("\"{}\"", s); }

std::string AgentKey(std::string_view tenant, std::string_view agent) {
  std::string key(tenant);
  key.push_back('\0');
  key.append(agent);
  return key;
}

}  // namespace

model::ValidationLimits TenantLimits::Apply(model::ValidationLimits base) const {
  base.max_labels = labels_per_series;
  base.max_label_name_bytes = label_name_length;
  base.max_label_value_bytes = label_value_length;
  return base;
}

TenantLimits LimitsFromFlags(const model::ValidationLimits& validation, size_t max_message_bytes,
                             size_t max_concurrent_queries) {
  TenantLimits t;
  t.labels_per_series = validation.max_labels;
  t.label_name_length = validation.max_label_name_bytes;
  t.label_value_length = validation.max_label_value_bytes;
  t.message_bytes = max_message_bytes;
  t.concurrent_queries = max_concurrent_queries;
  return t;
}

const TenantLimits& LimitsConfig::For(std::string_view tenant) const {
  auto it = tenants.find(tenant);
  return it == tenants.end() ? defaults : it->second;
}

absl::StatusOr<LimitsConfig> ParseLimits(std::string_view yaml, const std::string& file, const TenantLimits& base) {
  YAML::Node loaded;
  try {
    loaded = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(fmt::format("{}:{}: {}", file, e.mark.line + 1, e.msg));
  }
  const YAML::Node& root = loaded;  // const: operator[] never inserts
  LimitsConfig config;
  config.defaults = base;
  config.source = "limits file " + file;
  if (root.IsNull()) return config;
  if (!root.IsMap()) return FileError(file, root, "a limits file is a mapping with `defaults:` and `tenants:`");
  for (const auto& kv : root) {
    const std::string key = kv.first.Scalar();
    if (key != "defaults" && key != "tenants") {
      return FileError(file, kv.first, fmt::format("unknown field \"{}\" (known: defaults, tenants)", key));
    }
  }
  if (auto s = ParseTenant(file, root["defaults"], "defaults", &config.defaults); !s.ok()) return s;
  const YAML::Node tenants = root["tenants"];
  if (tenants && !tenants.IsNull()) {
    if (!tenants.IsMap()) return FileError(file, tenants, "tenants must be a mapping of tenant name: limits");
    for (const auto& kv : tenants) {
      const std::string name = kv.first.Scalar();
      if (name.empty()) return FileError(file, kv.first, "a tenant's name is empty");
      TenantLimits t = config.defaults;
      if (auto s = ParseTenant(file, kv.second, fmt::format("tenant \"{}\"", name), &t); !s.ok()) return s;
      if (!config.tenants.emplace(name, t).second) {
        return FileError(file, kv.first, fmt::format("tenant \"{}\" given twice", name));
      }
    }
  }
  return config;
}

absl::StatusOr<LimitsConfig> LoadLimitsFile(const std::string& file, const TenantLimits& base) {
  std::ifstream in(file);
  if (!in) {
    return absl::NotFoundError(
        fmt::format("cannot read the limits file {} (--limits): {}", file, std::strerror(errno)));
  }
  std::stringstream text;
  text << in.rdbuf();
  return ParseLimits(text.str(), file, base);
}

int64_t RetryAfterMs(const absl::Status& s) {
  auto payload = s.GetPayload(kRetryPayload);
  if (!payload) return 0;
  int64_t ms = 0;
  const std::string text(*payload);
  std::from_chars(text.data(), text.data() + text.size(), ms);
  return ms;
}

Limiter::Limiter(TenantLimits base, std::function<int64_t()> now_ms, prometheus::Registry* registry)
    : base_(base), now_ms_(now_ms ? std::move(now_ms) : std::function<int64_t()>(MonotonicMs)) {
  auto config = std::make_shared<LimitsConfig>();
  config->defaults = base_;
  config->source = "sheafd's flags";
  config_ = std::move(config);
  if (registry != nullptr) {
    refused_family_ = &prometheus::BuildCounter()
                           .Name("sheaf_limits_refused_total")
                           .Help("Batches, series, streams and queries refused by a per-tenant or per-agent limit "
                                 "(--limits), by tenant and limit.")
                           .Register(*registry);
  }
}

Limiter::~Limiter() = default;

absl::Status Limiter::Load(const std::string& file) {
  std::shared_ptr<const LimitsConfig> loaded;
  if (file.empty()) {
    auto config = std::make_shared<LimitsConfig>();
    config->defaults = base_;
    config->source = "sheafd's flags";
    loaded = std::move(config);
  } else {
    auto config = LoadLimitsFile(file, base_);
    if (!config.ok()) return config.status();
    LogInfo("limits from {}: defaults and {} tenant(s) of their own", file, config->tenants.size());
    loaded = std::make_shared<const LimitsConfig>(*std::move(config));
  }
  absl::MutexLock lock(&mu_);
  file_ = file;
  config_ = std::move(loaded);
  return absl::OkStatus();
}

absl::Status Limiter::Reload() {
  std::string file;
  {
    absl::MutexLock lock(&mu_);
    file = file_;
  }
  if (file.empty()) return absl::OkStatus();
  return Load(file);
}

TenantLimits Limiter::For(std::string_view tenant) const {
  absl::MutexLock lock(&mu_);
  return config_->For(tenant);
}

std::string Limiter::source() const {
  absl::MutexLock lock(&mu_);
  return config_->source;
}

int64_t Limiter::Wait(Bucket& b, double rate_per_ms, double burst, double n, int64_t now) {
  if (b.fresh) {
    b = {burst, now, false};
  } else if (now > b.last_ms) {
    b.tokens = std::min(burst, b.tokens + static_cast<double>(now - b.last_ms) * rate_per_ms);
    b.last_ms = now;
  }
  b.tokens = std::min(b.tokens, burst);  // a reload may have shrunk the bucket
  const double need = std::min(n, burst);
  if (b.tokens >= need) return 0;
  return static_cast<int64_t>(std::ceil((need - b.tokens) / rate_per_ms));
}

void Limiter::Count(std::string_view tenant, std::string_view limit) {
  ++refused_[{std::string(tenant), std::string(limit)}];
  if (refused_family_ != nullptr) {
    refused_family_->Add({{"tenant", std::string(tenant)}, {"limit", std::string(limit)}}).Increment();
  }
}

absl::Status Limiter::Refuse(std::string_view tenant, std::string_view agent, std::string_view limit, double value,
                             int64_t retry_ms) {
  Count(tenant, limit);
  const std::string who = agent.empty() ? fmt::format("tenant {}", Quoted(tenant))
                                        : fmt::format("agent {} of tenant {}", Quoted(agent), Quoted(tenant));
  if (retry_ms <= 0) {  // waiting would not help
    return absl::ResourceExhaustedError(fmt::format("{} is over {}={} ({}); {}", who, limit, value,
                                                    config_->source, "the limit's owner must raise it"));
  }
  // Rounded up to a tenth of a second: never a hint shorter than the wait.
  const double seconds = std::ceil(static_cast<double>(retry_ms) / 100.0) / 10.0;
  absl::Status s = absl::ResourceExhaustedError(
      fmt::format("{} is over {}={} ({}); retry in {:.1f}s", who, limit, value, config_->source, seconds));
  s.SetPayload(kRetryPayload, absl::Cord(std::to_string(retry_ms)));
  return s;
}

absl::Status Limiter::AdmitBatch(std::string_view tenant, std::string_view agent, uint64_t samples,
                                 uint64_t new_series) {
  absl::MutexLock lock(&mu_);
  const TenantLimits& t = config_->For(tenant);
  const int64_t now = now_ms_();
  struct Check {
    Bucket* bucket;
    double rate_per_ms, burst, n;
    std::string_view limit;
    double value;
    bool agent;
  };
  std::vector<Check> checks;
  // The default burst is one period's worth (a second, a minute).
  const auto burst_of = [](double rate, double burst, double periods) { return burst > 0 ? burst : rate * periods; };
  if (t.samples_per_second > 0 && samples > 0) {
    checks.push_back({&tenant_samples_[std::string(tenant)], t.samples_per_second / 1000,
                      burst_of(t.samples_per_second, t.samples_burst, 1), static_cast<double>(samples),
                      "samples_per_second", t.samples_per_second, false});
  }
  if (t.agent_samples_per_second > 0 && samples > 0 && !agent.empty()) {
    TrimAgentBuckets(now);
    checks.push_back({&agent_samples_[AgentKey(tenant, agent)], t.agent_samples_per_second / 1000,
                      burst_of(t.agent_samples_per_second, t.agent_samples_burst, 1), static_cast<double>(samples),
                      "agent_samples_per_second", t.agent_samples_per_second, true});
  }
  if (t.new_series_per_minute > 0 && new_series > 0) {
    checks.push_back({&new_series_[std::string(tenant)], t.new_series_per_minute / 60'000,
                      burst_of(t.new_series_per_minute, t.new_series_burst, 1), static_cast<double>(new_series),
                      "new_series_per_minute", t.new_series_per_minute, false});
  }
  // All or nothing: the first limit over names the refusal, the longest
  // wait is the hint (waiting less would only be refused again).
  const Check* over = nullptr;
  int64_t wait = 0;
  for (Check& c : checks) {
    const int64_t w = Wait(*c.bucket, c.rate_per_ms, c.burst, c.n, now);
    if (w > 0 && over == nullptr) over = &c;
    wait = std::max(wait, w);
  }
  if (over != nullptr) return Refuse(tenant, over->agent ? agent : "", over->limit, over->value, wait);
  for (Check& c : checks) c.bucket->tokens -= c.n;  // may go below 0: a batch over the burst leaves a debt
  return absl::OkStatus();
}

absl::Status Limiter::AdmitSeries(std::string_view tenant, uint64_t held) {
  absl::MutexLock lock(&mu_);
  const TenantLimits& t = config_->For(tenant);
  if (t.active_series == 0 || held < t.active_series) return absl::OkStatus();
  // Series leave only when deleted: no wait would help, so no hint (the
  // series is refused alone; nothing is retried).
  return Refuse(tenant, "", "active_series", static_cast<double>(t.active_series), 0);
}

Limiter::Slot& Limiter::Slot::operator=(Slot&& other) noexcept {
  if (this != &other) {
    Release();
    limiter_ = std::exchange(other.limiter_, nullptr);
    tenant_key_ = std::move(other.tenant_key_);
    agent_key_ = std::move(other.agent_key_);
    query_ = other.query_;
  }
  return *this;
}

void Limiter::Slot::Release() {
  if (limiter_ == nullptr) return;
  std::exchange(limiter_, nullptr)->ReleaseSlot(*this);
}

void Limiter::ReleaseSlot(const Slot& slot) {
  absl::MutexLock lock(&mu_);
  const auto down = [](absl::flat_hash_map<std::string, size_t>& counts, const std::string& key) {
    auto it = counts.find(key);
    if (it != counts.end() && --it->second == 0) counts.erase(it);
  };
  if (slot.query_) {
    down(queries_, slot.tenant_key_);
    return;
  }
  down(tenant_streams_, slot.tenant_key_);
  down(agent_streams_, slot.agent_key_);
}

absl::StatusOr<Limiter::Slot> Limiter::AcquireStream(std::string_view tenant, std::string_view agent) {
  absl::MutexLock lock(&mu_);
  const TenantLimits& t = config_->For(tenant);
  Slot slot;
  slot.tenant_key_ = std::string(tenant);
  slot.agent_key_ = AgentKey(tenant, agent);
  size_t& tenant_open = tenant_streams_[slot.tenant_key_];
  size_t& agent_open = agent_streams_[slot.agent_key_];
  absl::Status refused;
  if (t.push_streams > 0 && tenant_open >= t.push_streams) {
    refused = Refuse(tenant, "", "push_streams", static_cast<double>(t.push_streams), kSlotRetryMs);
  } else if (t.agent_streams > 0 && agent_open >= t.agent_streams) {
    refused = Refuse(tenant, agent, "agent_streams", static_cast<double>(t.agent_streams), kSlotRetryMs);
  }
  if (!refused.ok()) {
    if (tenant_open == 0) tenant_streams_.erase(slot.tenant_key_);
    if (agent_open == 0) agent_streams_.erase(slot.agent_key_);
    return refused;
  }
  ++tenant_open;
  ++agent_open;
  slot.limiter_ = this;
  return slot;
}

absl::StatusOr<Limiter::Slot> Limiter::AcquireQuery(std::string_view tenant) {
  absl::MutexLock lock(&mu_);
  const TenantLimits& t = config_->For(tenant);
  const std::string key(tenant);
  size_t& running = queries_[key];
  if (t.concurrent_queries > 0 && running >= t.concurrent_queries) {
    if (running == 0) queries_.erase(key);
    return Refuse(tenant, "", "concurrent_queries", static_cast<double>(t.concurrent_queries), kSlotRetryMs);
  }
  ++running;
  Slot slot;
  slot.tenant_key_ = std::string(tenant);
  slot.query_ = true;
  slot.limiter_ = this;
  return slot;
}

uint64_t Limiter::refused(std::string_view tenant, std::string_view limit) const {
  absl::MutexLock lock(&mu_);
  auto it = refused_.find(std::make_pair(std::string(tenant), std::string(limit)));
  return it == refused_.end() ? 0 : it->second;
}

void Limiter::TrimAgentBuckets(int64_t now) {
  if (agent_samples_.size() < kAgentBucketsBeforeTrim) return;
  absl::erase_if(agent_samples_, [now](const auto& kv) { return now - kv.second.last_ms > kAgentBucketIdleMs; });
}

}  // namespace sheaf::daemon
