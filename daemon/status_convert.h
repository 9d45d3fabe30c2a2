// absl::Status (inside the libraries) -> grpc::Status (at the service
// edge). The codes are the same numbers by design; only the type changes.
#ifndef SHEAF_DAEMON_STATUS_CONVERT_H_
#define SHEAF_DAEMON_STATUS_CONVERT_H_

#include <grpcpp/support/status.h>

#include <string>

#include "absl/status/status.h"

namespace sheaf::daemon {

inline grpc::Status ToGrpcStatus(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

}  // namespace sheaf::daemon

#endif  // SHEAF_DAEMON_STATUS_CONVERT_H_
