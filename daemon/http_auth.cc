#include "daemon/http_auth.h"

#include <fmt/format.h>

#include <string>

#include "common/json_writer.h"

namespace sheaf::daemon {

HttpResponse AuthRefusal(const absl::Status& status, AuthErrorStyle style) {
  const bool unauthenticated = status.code() == absl::StatusCode::kUnauthenticated;
  const int code = unauthenticated ? 401 : 403;
  const std::string message(status.message());
  HttpResponse response;
  if (style == AuthErrorStyle::kJson) {
    response.status = code;
    response.content_type = "application/json";
    response.body = fmt::format(R"({{"status":"error","errorType":"{}","error":{}}})",
                                unauthenticated ? "unauthorized" : "forbidden", JsonWriter::Quote(message));
  } else {
    response = HttpResponse::Text(code, message);
  }
  // RFC 6750: a 401 names the scheme the client should use.
  if (unauthenticated) response.headers.emplace_back("WWW-Authenticate", R"(Bearer realm="sheafd")");
  return response;
}

HttpHandler Authorized(Authenticator* auth, uint32_t role, TenantHttpHandler handler, AuthErrorStyle style) {
  return [auth, role, handler = std::move(handler), style](const HttpRequest& request) {
    const std::string* header = request.Header("Authorization");
    auto principal = Authorize(auth, header == nullptr ? std::string_view() : std::string_view(*header), role);
    if (!principal.ok()) return AuthRefusal(principal.status(), style);
    return handler(request, *principal);
  };
}

}  // namespace sheaf::daemon
