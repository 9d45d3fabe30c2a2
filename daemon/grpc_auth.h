// Tokens on gRPC: the role every method needs, in one table, and the check
// each handler makes before anything else (AuthorizeCall).
//
// Why not a server interceptor: gRPC 1.51's server interceptors can read
// the metadata but cannot end a call with a status (Hijack is for clients
// only, grpcpp/support/interceptor.h), so a refusal has to come from the
// handler. The table is what keeps that structural: a handler names its
// method, the table gives the role, a method missing from the table is
// refused (PERMISSION_DENIED), and tests/daemon/auth_test.cc walks every
// method of every sheaf service in the generated descriptors and proves
// each is refused without a token.
#ifndef SHEAF_DAEMON_GRPC_AUTH_H_
#define SHEAF_DAEMON_GRPC_AUTH_H_

#include <grpcpp/server_context.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "absl/status/statusor.h"
#include "daemon/auth.h"

namespace sheaf::daemon {

struct MethodRole {
  std::string_view method;  // "/sheaf.v1.QueryService/Query"
  uint32_t role;            // kRoleIngest, kRoleQuery, kRoleAdmin or kNoRole
};

// Every method sheafd serves and the role it needs (health and
// reflection: none).
std::span<const MethodRole> MethodRoles();
// The role `method` needs; nullopt for a method not in the table.
std::optional<uint32_t> RoleFor(std::string_view method);

// The first thing every handler does: the caller (the `authorization`
// metadata) if it may call `method`; UNAUTHENTICATED / PERMISSION_DENIED
// (counted) otherwise. A null `auth` lets everyone in.
absl::StatusOr<Principal> AuthorizeCall(Authenticator* auth, const grpc::ServerContextBase& context,
                                        std::string_view method);

}  // namespace sheaf::daemon

#endif  // SHEAF_DAEMON_GRPC_AUTH_H_
