#include "daemon/auth.h"

#include <openssl/evp.h>
#include <prometheus/counter.h>
#include <prometheus/registry.h>
#include <re2/re2.h>
#include <yaml-cpp/yaml.h>

#include <fmt/format.h>

#include <fstream>
#include <set>
#include <sstream>
#include <unordered_map>

#include "common/log.h"
#include "storage/series_store.h"

namespace sheaf::daemon {

struct TokenAuthenticator::Table {
  // SHA-256 digest (32 raw bytes) -> who holds it. Lookups hash the
  // presented token first, so the map compares digests, never tokens.
  std::unordered_map<std::string, Principal> by_digest;
  size_t tenants = 0;
};

struct TokenAuthenticator::Counters {
  prometheus::Counter* missing_token;
  prometheus::Counter* unknown_token;
  prometheus::Counter* role;
  prometheus::Counter* agent;

  prometheus::Counter* For(std::string_view reason) const {
    if (reason == kReasonMissingToken) return missing_token;
    if (reason == kReasonUnknownToken) return unknown_token;
    if (reason == kReasonAgent) return agent;
    return role;
  }
};

namespace {

std::string Sha256Raw(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  // EVP_Digest with SHA-256 cannot fail short of memory exhaustion; an
  // empty digest then matches no entry (every entry holds 32 bytes).
  if (EVP_Digest(data.data(), data.size(), digest, &n, EVP_sha256(), nullptr) != 1) return {};
  return std::string(reinterpret_cast<const char*>(digest), n);
}

std::string Hex(std::string_view raw) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(raw.size() * 2);
  for (unsigned char c : raw) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

// 64 hex digits (any case) -> 32 raw bytes; nullopt otherwise.
std::optional<std::string> FromHex(std::string_view hex) {
  if (hex.size() != 64) return std::nullopt;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  for (size_t i = 0; i < hex.size(); i += 2) {
    int hi = nibble(hex[i]), lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi << 4 | lo));
  }
  return out;
}

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  }
  return true;
}

absl::StatusOr<uint32_t> ParseRoles(const YAML::Node& node) {
  std::vector<std::string> names;
  if (node.IsScalar()) {
    names.push_back(node.as<std::string>());
  } else if (node.IsSequence()) {
    for (const YAML::Node& n : node) names.push_back(n.as<std::string>());
  }
  if (names.empty()) return absl::InvalidArgumentError("roles: give a list of ingest, query, admin");
  uint32_t roles = 0;
  for (const std::string& name : names) {
    if (name == "ingest") {
      roles |= kRoleIngest;
    } else if (name == "query") {
      roles |= kRoleQuery;
    } else if (name == "admin") {
      roles |= kRoleAdmin;
    } else {
      return absl::InvalidArgumentError(fmt::format("unknown role '{}': use ingest, query or admin", name));
    }
  }
  return roles;
}

// One entry of the file -> (digest, principal).
absl::StatusOr<std::pair<std::string, Principal>> ParseEntry(const YAML::Node& node, const TenantResolver& resolver) {
  if (!node.IsMap()) return absl::InvalidArgumentError("an entry must be a map (token/sha256, tenant, roles)");
  static const std::set<std::string> kKeys = {"token", "sha256", "tenant", "roles", "name", "agents"};
  for (const auto& kv : node) {
    const std::string key = kv.first.as<std::string>();
    if (!kKeys.contains(key)) {
      return absl::InvalidArgumentError(
          fmt::format("unknown key '{}' (allowed: token, sha256, tenant, roles, name, agents)", key));
    }
  }
  Principal p;
  std::string digest;
  if (node["token"] && node["sha256"]) return absl::InvalidArgumentError("give token: or sha256:, not both");
  if (const YAML::Node token = node["token"]) {
    const std::string text = token.as<std::string>();
    if (text.empty()) return absl::InvalidArgumentError("token: is empty");
    digest = Sha256Raw(text);
  } else if (const YAML::Node sha = node["sha256"]) {
    auto raw = FromHex(sha.as<std::string>());
    if (!raw) {
      return absl::InvalidArgumentError(
          "sha256: must be the 64 hex digits of the token's SHA-256 (printf %s TOKEN | sha256sum)");
    }
    digest = *std::move(raw);
  } else {
    return absl::InvalidArgumentError("missing token: or sha256:");
  }
  if (!node["tenant"]) return absl::InvalidArgumentError("missing tenant:");
  p.tenant_name = node["tenant"].as<std::string>();
  if (!storage::ValidTenantName(p.tenant_name)) {
    return absl::InvalidArgumentError(
        fmt::format("tenant '{}' is not valid: use 1 to 64 of A-Z a-z 0-9 _ . -", p.tenant_name));
  }
  if (!node["roles"]) return absl::InvalidArgumentError("missing roles: (any of ingest, query, admin)");
  auto roles = ParseRoles(node["roles"]);
  if (!roles.ok()) return roles.status();
  p.roles = *roles;
  p.token_name = node["name"] ? node["name"].as<std::string>() : "sha256:" + Hex(digest).substr(0, 8);
  if (const YAML::Node agents = node["agents"]) {
    p.agents_pattern = agents.as<std::string>();
    auto re = std::make_shared<re2::RE2>(p.agents_pattern, re2::RE2::Quiet);
    if (!re->ok()) {
      return absl::InvalidArgumentError(
          fmt::format("agents: '{}' is not a valid RE2 pattern: {}", p.agents_pattern, re->error()));
    }
    p.agents = std::move(re);
  }
  auto tenant = resolver(p.tenant_name);
  if (!tenant.ok()) return tenant.status();
  p.tenant = *tenant;
  return std::make_pair(std::move(digest), std::move(p));
}

}  // namespace

std::string Sha256Hex(std::string_view data) { return Hex(Sha256Raw(data)); }

std::string_view RoleName(uint32_t role) {
  switch (role) {
    case kRoleIngest:
      return "ingest";
    case kRoleQuery:
      return "query";
    case kRoleAdmin:
      return "admin";
    case kAnyRole:
      return "any";
    default:
      return "none";
  }
}

absl::Status RequireRole(const Principal& principal, uint32_t role) {
  const uint32_t needed = role & ~kStoreWide;
  if (!principal.Has(needed)) {
    return absl::PermissionDeniedError(fmt::format("token '{}' (tenant {}) lacks the {} role this needs",
                                                   principal.token_name, principal.tenant_name, RoleName(needed)));
  }
  if ((role & kStoreWide) != 0 && !principal.IsOperator()) {
    return absl::PermissionDeniedError(
        fmt::format("token '{}' is an admin of tenant {} only: this acts on every tenant's data and needs an admin "
                    "token of tenant {} (the operator's)",
                    principal.token_name, principal.tenant_name, kDefaultTenantName));
  }
  return absl::OkStatus();
}

absl::Status CheckAgent(const Principal& principal, std::string_view agent_id) {
  if (principal.agents == nullptr || re2::RE2::FullMatch(agent_id, *principal.agents)) return absl::OkStatus();
  return absl::PermissionDeniedError(fmt::format("token '{}' may not push as agent id \"{}\": its agents: pattern '{}' "
                                                 "does not match it (RE2, whole id)",
                                                 principal.token_name, agent_id, principal.agents_pattern));
}

absl::StatusOr<Principal> Authorize(Authenticator* auth, std::string_view authorization, uint32_t role) {
  if (auth == nullptr || role == kNoRole) return Principal{};
  auto principal = auth->Authenticate(authorization);
  if (!principal.ok()) {
    auth->CountFailure(authorization.empty() ? kReasonMissingToken : kReasonUnknownToken);
    return principal.status();
  }
  if (role == kAnyRole) return principal;
  if (auto s = RequireRole(*principal, role); !s.ok()) {
    auth->CountFailure(kReasonRole);
    return s;
  }
  return principal;
}

TokenAuthenticator::TokenAuthenticator(std::string path, TenantResolver resolver, prometheus::Registry* registry)
    : path_(std::move(path)), resolver_(std::move(resolver)) {
  if (registry == nullptr) {
    own_registry_ = std::make_shared<prometheus::Registry>();
    registry = own_registry_.get();
  }
  auto& family = prometheus::BuildCounter()
                     .Name("sheaf_auth_failures_total")
                     .Help("Calls refused by token checks, by reason: missing_token, unknown_token (UNAUTHENTICATED, "
                           "HTTP 401), role, agent (PERMISSION_DENIED, HTTP 403)")
                     .Register(*registry);
  counters_ = std::make_unique<Counters>(Counters{&family.Add({{"reason", kReasonMissingToken}}),
                                                  &family.Add({{"reason", kReasonUnknownToken}}),
                                                  &family.Add({{"reason", kReasonRole}}),
                                                  &family.Add({{"reason", kReasonAgent}})});
}

TokenAuthenticator::~TokenAuthenticator() = default;

absl::StatusOr<std::unique_ptr<TokenAuthenticator>> TokenAuthenticator::Create(std::string path,
                                                                               TenantResolver resolver,
                                                                               prometheus::Registry* registry) {
  std::unique_ptr<TokenAuthenticator> auth(new TokenAuthenticator(std::move(path), std::move(resolver), registry));
  if (auto s = auth->Reload(); !s.ok()) return s;
  return auth;
}

absl::StatusOr<std::shared_ptr<const TokenAuthenticator::Table>> TokenAuthenticator::Load() const {
  std::ifstream in(path_);
  if (!in) return absl::NotFoundError(fmt::format("{}: cannot read the token file (--auth-tokens)", path_));
  std::stringstream text;
  text << in.rdbuf();
  auto table = std::make_shared<Table>();
  std::set<storage::TenantId> tenants;
  try {
    const YAML::Node root = YAML::Load(text.str());
    const YAML::Node list = root.IsMap() ? root["tokens"] : root;
    if (!list || !list.IsSequence()) {
      return absl::InvalidArgumentError(
          fmt::format("{}: expected a list of tokens (or a map with a tokens: list); see docs/SECURITY.md", path_));
    }
    size_t index = 0;
    for (const YAML::Node& node : list) {
      ++index;
      auto entry = ParseEntry(node, resolver_);
      if (!entry.ok()) {
        return absl::Status(entry.status().code(), fmt::format("{}:{}: token entry {}: {}", path_,
                                                               node.Mark().line + 1, index, std::string(entry.status().message())));
      }
      tenants.insert(entry->second.tenant);
      if (!table->by_digest.emplace(std::move(entry->first), std::move(entry->second)).second) {
        return absl::InvalidArgumentError(fmt::format(
            "{}:{}: token entry {}: the same token appears twice; give each its own", path_, node.Mark().line + 1,
            index));
      }
    }
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(fmt::format("{}: {}", path_, e.what()));
  }
  table->tenants = tenants.size();
  return std::shared_ptr<const Table>(std::move(table));
}

absl::Status TokenAuthenticator::Reload(std::string* summary) {
  if (!enabled()) return absl::OkStatus();
  auto table = Load();
  if (!table.ok()) return table.status();
  const std::string loaded = fmt::format("{} tokens, {} tenants", (*table)->by_digest.size(), (*table)->tenants);
  LogInfo("auth tokens: {} from {}", loaded, path_);
  if (summary != nullptr) *summary = loaded;
  absl::MutexLock lock(&mu_);
  table_ = *std::move(table);
  return absl::OkStatus();
}

absl::StatusOr<Principal> TokenAuthenticator::Authenticate(std::string_view authorization) const {
  if (!enabled()) return Principal{};
  constexpr std::string_view kScheme = "bearer ";
  if (authorization.size() <= kScheme.size() || !IEquals(authorization.substr(0, kScheme.size()), kScheme)) {
    return absl::UnauthenticatedError(
        "missing bearer token: pass --token-file (or send the header 'authorization: Bearer TOKEN')");
  }
  std::string_view token = authorization.substr(kScheme.size());
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  while (!token.empty() && (token.back() == ' ' || token.back() == '\r' || token.back() == '\n')) {
    token.remove_suffix(1);
  }
  const std::string digest = Sha256Raw(token);
  std::shared_ptr<const Table> table;
  {
    absl::MutexLock lock(&mu_);
    table = table_;
  }
  if (table != nullptr) {
    if (auto it = table->by_digest.find(digest); it != table->by_digest.end()) return it->second;
  }
  return absl::UnauthenticatedError("unknown token: check --token-file against sheafd's --auth-tokens");
}

void TokenAuthenticator::CountFailure(std::string_view reason) { counters_->For(reason)->Increment(); }

uint64_t TokenAuthenticator::failures(std::string_view reason) const {
  return static_cast<uint64_t>(counters_->For(reason)->Value());
}

}  // namespace sheaf::daemon
