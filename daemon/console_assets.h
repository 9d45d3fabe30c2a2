// The web console's files (daemon/console/: HTML, JS, CSS) and the chart
// library (Debian's libjs-chart.js), embedded into sheafd at build time by
// daemon/console/embed_assets.py, so the binary is self-contained and the
// console loads nothing from outside sheafd. The definition is generated.
#ifndef SHEAF_DAEMON_CONSOLE_ASSETS_H_
#define SHEAF_DAEMON_CONSOLE_ASSETS_H_

#include <span>
#include <string_view>

namespace sheaf::daemon {

struct ConsoleAsset {
  std::string_view name;          // base name: "console.js", "chart.min.js"
  std::string_view content_type;  // "text/javascript; charset=utf-8"
  std::string_view etag;          // quoted hash of the bytes: "\"3f2a...\""
  std::string_view body;
};

// Every embedded file; static storage, lives as long as the program.
std::span<const ConsoleAsset> ConsoleAssets();

}  // namespace sheaf::daemon

#endif  // SHEAF_DAEMON_CONSOLE_ASSETS_H_
