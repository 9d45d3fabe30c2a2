// Tokens on HTTP: the `Authorization: Bearer TOKEN` header checked against
// the role a route needs (auth.h), before its handler runs. A missing or
// unknown token is 401 with `WWW-Authenticate: Bearer`, a missing role
// 403; the handler is told who called, so it reads and writes that
// tenant's series only. No gRPC here.
#ifndef SHEAF_DAEMON_HTTP_AUTH_H_
#define SHEAF_DAEMON_HTTP_AUTH_H_

#include <functional>

#include "absl/status/status.h"
#include "daemon/auth.h"
#include "daemon/http_server.h"

namespace sheaf::daemon {

// A handler that is told who is calling.
using TenantHttpHandler = std::function<HttpResponse(const HttpRequest&, const Principal&)>;

// How a refusal is written: plain text, or the Prometheus API's JSON
// error ({"status":"error","errorType":...}).
enum class AuthErrorStyle { kText, kJson };

// `handler` behind the check of `role` (kNoRole: anyone, no token needed).
// A null `auth` lets everyone in as the default tenant.
HttpHandler Authorized(Authenticator* auth, uint32_t role, TenantHttpHandler handler,
                       AuthErrorStyle style = AuthErrorStyle::kText);

// The answer to a refused request: 401 (UNAUTHENTICATED, with
// WWW-Authenticate: Bearer) or 403 (anything else).
HttpResponse AuthRefusal(const absl::Status& status, AuthErrorStyle style);

}  // namespace sheaf::daemon

#endif  // SHEAF_DAEMON_HTTP_AUTH_H_
