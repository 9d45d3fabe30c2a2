// Fuzz target "http_params": the HTTP API's parameter parsing, as a request
// reaches it: the query string or form body (daemon/http_server.h:
// ParseFormParams, DecodeFormComponent), then each value as a time and as a
// duration (daemon/http_api.h: ParseApiTime, ParseApiDuration), and
// FormatApiTime on what parsed (it must parse back to the same time).
#include <string>
#include <utility>
#include <vector>

#include "daemon/http_api.h"
#include "daemon/http_server.h"
#include "tests/fuzz/targets.h"

namespace sheaf::fuzz {

int FuzzHttpParams(const uint8_t* data, size_t size) {
  const std::string_view text = AsText(data, size);
  std::string decoded;
  (void)daemon::DecodeFormComponent(text, &decoded);
  std::vector<std::pair<std::string, std::string>> params;
  std::string error;
  if (!daemon::ParseFormParams(text, &params, &error)) return 0;
  params.emplace_back("raw", std::string(text));
  for (const auto& [name, value] : params) {
    auto t = daemon::ParseApiTime(value);
    if (t.ok()) {
      auto back = daemon::ParseApiTime(daemon::FormatApiTime(*t));
      CheckOrDie(back.ok() && *back == *t, "FormatApiTime's text does not parse back to the same time");
    }
    (void)daemon::ParseApiDuration(value);
  }
  return 0;
}

}  // namespace sheaf::fuzz
