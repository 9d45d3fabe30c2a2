// Runs a raw unary gRPC method: checks the caller's token against the
// method's role (grpc_auth.h), decodes the request with bounded
// decompression (grpc_codec.h), does the work on an executor (never on
// gRPC's callback threads), encodes the response and finishes the call.
#ifndef SHEAF_DAEMON_UNARY_CALL_H_
#define SHEAF_DAEMON_UNARY_CALL_H_

#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/callback_common.h>
#include <grpcpp/support/server_callback.h>

#include <string>
#include <string_view>

#include "common/work_queue.h"
#include "daemon/grpc_auth.h"
#include "daemon/grpc_codec.h"

namespace sheaf::daemon {

// `fn(const Principal&, const Request&, Response*) -> grpc::Status` runs
// on `executor` for a caller that may call `method` (the Principal says
// whose data it may touch); UNAUTHENTICATED / PERMISSION_DENIED before
// anything else otherwise. RESOURCE_EXHAUSTED when the executor is full;
// CANCELLED when the client left before the work started.
template <typename Request, typename Response, typename Fn>
grpc::ServerUnaryReactor* RunUnary(Authenticator* auth, std::string_view method, WorkQueue* executor,
                                   grpc::CallbackServerContext* context, const grpc::ByteBuffer& request_bytes,
                                   grpc::ByteBuffer* response_bytes, size_t max_request_bytes, Fn fn) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  auto principal = AuthorizeCall(auth, *context, method);
  if (!principal.ok()) {
    reactor->Finish(grpc::Status(static_cast<grpc::StatusCode>(principal.status().code()),
                                 std::string(principal.status().message())));
    return reactor;
  }
  Request request;
  grpc::Status status = DecodeMessage(request_bytes, max_request_bytes, "the request", &request);
  if (!status.ok()) {
    reactor->Finish(status);
    return reactor;
  }
  bool queued = executor->TrySubmit([reactor, context, response_bytes, request = std::move(request), fn,
                                     principal = *std::move(principal)] {
    if (context->IsCancelled()) {
      reactor->Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
      return;
    }
    Response response;
    grpc::Status s = fn(principal, request, &response);
    if (s.ok()) *response_bytes = EncodeMessage(response);
    reactor->Finish(s);
  });
  if (!queued) {
    reactor->Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                 "sheafd's query executor is full or shutting down; retry with backoff"));
  }
  return reactor;
}

}  // namespace sheaf::daemon

#endif  // SHEAF_DAEMON_UNARY_CALL_H_
