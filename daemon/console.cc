#include "daemon/console.h"

#include <string>
#include <string_view>

#include "daemon/console_assets.h"

namespace sheaf::daemon {
namespace {

// The pages the app draws (console.js picks by path).
constexpr std::string_view kPages[] = {"/graph", "/series", "/status", "/agents", "/tail"};

// Only sheafd itself: scripts, styles, fetches and images from this
// origin. Inline style attributes are allowed (Chart.js sizes its canvas
// through them); inline scripts are not.
constexpr char kContentSecurityPolicy[] =
    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

const ConsoleAsset* FindAsset(std::string_view name) {
  for (const ConsoleAsset& asset : ConsoleAssets()) {
    if (asset.name == name) return &asset;
  }
  return nullptr;
}

// The file, or 304 without a body when the browser holds this version.
HttpResponse ServeAsset(const HttpRequest& request, const ConsoleAsset& asset) {
  HttpResponse response;
  response.headers.emplace_back("ETag", std::string(asset.etag));
  response.headers.emplace_back("Cache-Control", "no-cache");
  response.headers.emplace_back("X-Content-Type-Options", "nosniff");
  if (const std::string* held = request.Header("If-None-Match"); held != nullptr && *held == asset.etag) {
    response.status = 304;
    return response;
  }
  response.content_type = std::string(asset.content_type);
  response.body = std::string(asset.body);
  return response;
}

}  // namespace

void RegisterConsole(HttpServer* server) {
  server->Handle("/", {"GET"}, [](const HttpRequest&) {
    HttpResponse response = HttpResponse::Text(302, "the console is at /graph");
    response.headers.emplace_back("Location", "/graph");
    return response;
  });
  const ConsoleAsset* page = FindAsset("index.html");
  for (std::string_view path : kPages) {
    server->Handle(std::string(path), {"GET"}, [page](const HttpRequest& request) {
      HttpResponse response = ServeAsset(request, *page);
      response.headers.emplace_back("Content-Security-Policy", kContentSecurityPolicy);
      return response;
    });
  }
  server->HandlePrefix("/console/", {"GET"}, [](const HttpRequest& request) {
    const std::string_view name = std::string_view(request.path).substr(std::string_view("/console/").size());
    const ConsoleAsset* asset = FindAsset(name);
    if (asset == nullptr) return HttpResponse::Text(404, "404 not found: " + request.path + " (no such console file)");
    return ServeAsset(request, *asset);
  });
}

}  // namespace sheaf::daemon
