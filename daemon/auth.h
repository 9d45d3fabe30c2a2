// Who is calling: bearer tokens (`--auth-tokens FILE`) mapped to a tenant
// and roles. Every gRPC method and HTTP route needs one role (ingest, query
// or admin; health, reflection and the console's static files need none);
// the tenant decides whose series a call reads and writes.
//
// Without --auth-tokens there is one tenant, "default" (id 0), and every
// caller has every role, token or not: sheafd behaves as before tokens.
//
// The token file (docs/SECURITY.md, "Tokens, roles and tenants") is YAML:
//
//   tokens:
//     - name: web-1                  # optional; for logs and metrics
//       token: s3cr3t                # or sha256: <hex digest of the token>
//       tenant: team-a               # [A-Za-z0-9_.-]{1,64}
//       roles: [ingest]              # any of ingest, query, admin
//       agents: 'web-[0-9]+'         # optional, ingest: RE2 full match
//
// Tokens are looked up by their SHA-256 digest, never compared as text, so
// the time a lookup takes tells nothing about how much of a guess matched.
// The token itself is never logged.
//
// Thread-safety: Authenticate() may be called from any thread while
// Reload() swaps the table.
#ifndef SHEAF_DAEMON_AUTH_H_
#define SHEAF_DAEMON_AUTH_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "storage/types.h"

namespace prometheus {
class Registry;
}
namespace re2 {
class RE2;
}

namespace sheaf::daemon {

// Role bits (Principal::roles).
inline constexpr uint32_t kRoleIngest = 1u << 0;  // Push, remote write
inline constexpr uint32_t kRoleQuery = 1u << 1;   // queries, tail, listings, stats, federate, remote read, console data
inline constexpr uint32_t kRoleAdmin = 1u << 2;   // AdminService (delete series, snapshot, compact...)
inline constexpr uint32_t kAllRoles = kRoleIngest | kRoleQuery | kRoleAdmin;
inline constexpr uint32_t kNoRole = 0;  // health, reflection, static files
// A valid token of any role (/metrics with --metrics-auth).
inline constexpr uint32_t kAnyRole = 1u << 31;
// Store-wide operations (Compact, Snapshot, the store's totals) act on
// every tenant's data: they need the admin role *in the default tenant*,
// the operator's. A tenant's own admin token manages only its tenant
// (DeleteSeries). Without --auth-tokens everyone is that operator.
inline constexpr uint32_t kStoreWide = 1u << 30;
inline constexpr uint32_t kRoleOperator = kRoleAdmin | kStoreWide;

// "ingest", "query", "admin" (one bit); "any" for kAnyRole, "none" for kNoRole.
std::string_view RoleName(uint32_t role);

inline constexpr char kDefaultTenantName[] = "default";

struct Principal {
  std::string tenant_name = kDefaultTenantName;
  storage::TenantId tenant = storage::kDefaultTenant;
  uint32_t roles = kAllRoles;
  std::string token_name;  // the entry's `name:` (or "sha256:<first 8 hex>"); empty without tokens
  // Ingest only: the agent ids this token may push as (RE2, full match);
  // null: any. `agents_pattern` is its text, for messages.
  std::shared_ptr<const re2::RE2> agents;
  std::string agents_pattern;

  bool Has(uint32_t role) const { return (roles & role) == role; }
  bool IsOperator() const { return Has(kRoleAdmin) && tenant == storage::kDefaultTenant; }
};

// OK if the principal has `role` (and, for kStoreWide, is the operator);
// otherwise PERMISSION_DENIED naming the role needed and the token's name.
absl::Status RequireRole(const Principal& principal, uint32_t role);
// OK if the principal may send batches as `agent_id`; otherwise
// PERMISSION_DENIED naming the id and the token's pattern.
absl::Status CheckAgent(const Principal& principal, std::string_view agent_id);

// Why a call was refused, the label of sheaf_auth_failures_total{reason}.
inline constexpr char kReasonMissingToken[] = "missing_token";
inline constexpr char kReasonUnknownToken[] = "unknown_token";
inline constexpr char kReasonRole[] = "role";
inline constexpr char kReasonAgent[] = "agent";

class Authenticator {
 public:
  virtual ~Authenticator() = default;
  // `authorization`: the value of the Authorization header or metadata
  // ("Bearer <token>"), empty when none was sent. UNAUTHENTICATED for a
  // missing or unknown token, with a message telling the caller what to
  // do; the Principal otherwise.
  virtual absl::StatusOr<Principal> Authenticate(std::string_view authorization) const = 0;
  // Whether tokens are required at all (false: everyone is the default
  // tenant with every role).
  virtual bool enabled() const = 0;
  // Counts a refusal under sheaf_auth_failures_total{reason}.
  virtual void CountFailure(std::string_view reason) = 0;
};

// The one check every gRPC method and HTTP route makes: the caller behind
// `authorization` (header value, empty when none) if it has `role`;
// UNAUTHENTICATED or PERMISSION_DENIED otherwise, counted under its reason.
// kNoRole needs no token. A null `auth` lets everyone in (the default
// tenant, every role): services built without an authenticator (tests).
absl::StatusOr<Principal> Authorize(Authenticator* auth, std::string_view authorization, uint32_t role);

// Tenant name -> id (the store's registry, SeriesStore::TenantIdFor).
using TenantResolver = std::function<absl::StatusOr<storage::TenantId>(std::string_view name)>;

// The Authenticator of sheafd. Without a file it lets everyone in as the
// default tenant.
class TokenAuthenticator : public Authenticator {
 public:
  // `path` empty: tokens are off. Otherwise the file is read now; an error
  // (FILE: reason) fails Create. Tenant names become ids through
  // `resolver`. Refusals are counted in sheaf_auth_failures_total{reason}
  // of `registry` (a private one when null).
  static absl::StatusOr<std::unique_ptr<TokenAuthenticator>> Create(std::string path, TenantResolver resolver,
                                                                    prometheus::Registry* registry = nullptr);
  ~TokenAuthenticator() override;

  absl::StatusOr<Principal> Authenticate(std::string_view authorization) const override;
  bool enabled() const override { return !path_.empty(); }
  void CountFailure(std::string_view reason) override;

  // Reads the file again (SIGHUP). On error the tokens loaded before stay
  // and the error (FILE: reason) is returned. OK and nothing done without a
  // file. Logs, and puts in `*summary` (may be null), e.g. "3 tokens, 2 tenants".
  absl::Status Reload(std::string* summary = nullptr);

  // Refusals so far with this reason (kReason*; tests).
  uint64_t failures(std::string_view reason) const;

  struct Table;     // digest -> entry (auth.cc)
  struct Counters;  // the metric's children (auth.cc)

 private:
  TokenAuthenticator(std::string path, TenantResolver resolver, prometheus::Registry* registry);
  absl::StatusOr<std::shared_ptr<const Table>> Load() const;

  const std::string path_;
  const TenantResolver resolver_;
  std::shared_ptr<prometheus::Registry> own_registry_;  // when none was given
  std::unique_ptr<Counters> counters_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const Table> table_ ABSL_GUARDED_BY(mu_);
};

// Lower-case hex SHA-256 of `data` (what a `sha256:` entry holds).
std::string Sha256Hex(std::string_view data);

}  // namespace sheaf::daemon

#endif  // SHEAF_DAEMON_AUTH_H_
