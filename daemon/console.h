// sheafd's web console (issue 10): the pages /graph, /series, /status,
// /agents and /tail on the HTTP server, one embedded single-page app
// (daemon/console/, console_assets.h) that uses only the public HTTP API
// (http_api.h) and the JSON endpoints registered here. docs/CONSOLE.md is
// the user's page.
//
// Caching: every file answers with an ETag (a hash of its bytes) and
// "Cache-Control: no-cache", so a browser revalidates each load and gets
// a 304 with no body while sheafd was not upgraded. The pages carry a
// Content-Security-Policy that allows nothing but sheafd itself.
//
// No gRPC here.
#ifndef SHEAF_DAEMON_CONSOLE_H_
#define SHEAF_DAEMON_CONSOLE_H_

#include "daemon/http_server.h"

namespace sheaf::daemon {

// The console's pages and files: "/" redirects (302) to "/graph"; the
// pages answer the app's HTML; "/console/<file>" the embedded files.
// REQUIRES: before server->Start().
void RegisterConsole(HttpServer* server);

}  // namespace sheaf::daemon

#endif  // SHEAF_DAEMON_CONSOLE_H_
