// The helpers of targets.h.
#include <cstdio>
#include <cstdlib>

#include <snappy.h>

#include "tests/fuzz/targets.h"

namespace sheaf::fuzz {

void CheckOrDie(bool ok, std::string_view what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz property failed: %.*s\n", static_cast<int>(what.size()), what.data());
  std::abort();
}

std::vector<std::string_view> SplitParts(std::string_view input, size_t max_parts) {
  std::vector<std::string_view> parts;
  while (parts.size() + 1 < max_parts) {
    const size_t at = input.find("####");
    if (at == std::string_view::npos) break;
    parts.push_back(input.substr(0, at));
    input.remove_prefix(at + 4);
  }
  parts.push_back(input);
  return parts;
}

bool Unsnappy(const uint8_t* data, size_t size, size_t max_bytes, std::string* out) {
  const char* body = reinterpret_cast<const char*>(data);
  size_t length = 0;
  if (!snappy::GetUncompressedLength(body, size, &length) || length > max_bytes) return false;
  out->assign(length, '\0');
  return snappy::RawUncompress(body, size, out->data());
}

}  // namespace sheaf::fuzz
