#include "daemon/grpc_auth.h"

#include <fmt/format.h>

namespace sheaf::daemon {
namespace {

constexpr MethodRole kMethodRoles[] = {
    {"/sheaf.v1.IngestService/Push", kRoleIngest},
    {"/sheaf.v1.QueryService/Query", kRoleQuery},
    {"/sheaf.v1.QueryService/ListSeries", kRoleQuery},
    {"/sheaf.v1.QueryService/Stats", kRoleQuery},
    {"/sheaf.v1.QueryService/LabelNames", kRoleQuery},
    {"/sheaf.v1.QueryService/LabelValues", kRoleQuery},
    {"/sheaf.v1.QueryService/Tail", kRoleQuery},
    {"/sheaf.v1.AdminService/Compact", kRoleOperator},
    {"/sheaf.v1.AdminService/DeleteSeries", kRoleAdmin},
    {"/sheaf.v1.AdminService/Snapshot", kRoleOperator},
    {"/grpc.health.v1.Health/Check", kNoRole},
    {"/grpc.health.v1.Health/Watch", kNoRole},
    {"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", kNoRole},
};

}  // namespace

std::span<const MethodRole> MethodRoles() { return kMethodRoles; }

std::optional<uint32_t> RoleFor(std::string_view method) {
  for (const MethodRole& m : kMethodRoles) {
    if (m.method == method) return m.role;
  }
  return std::nullopt;
}

absl::StatusOr<Principal> AuthorizeCall(Authenticator* auth, const grpc::ServerContextBase& context,
                                        std::string_view method) {
  auto role = RoleFor(method);
  if (!role) {
    // Fails closed: a method added without a row in the table serves no one.
    if (auth != nullptr) auth->CountFailure(kReasonRole);
    return absl::PermissionDeniedError(
        fmt::format("{} has no role in sheafd's table (daemon/grpc_auth.cc); nobody may call it", method));
  }
  std::string_view authorization;
  const auto& metadata = context.client_metadata();
  if (auto it = metadata.find("authorization"); it != metadata.end()) {
    authorization = std::string_view(it->second.data(), it->second.size());
  }
  return Authorize(auth, authorization, *role);
}

}  // namespace sheaf::daemon
