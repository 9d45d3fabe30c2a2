// UTF-8 scanning shared by everything that must keep text valid: label
// rules (model/labels.h), JSON output (json_writer.h).
#ifndef SHEAF_COMMON_UTF8_H_
#define SHEAF_COMMON_UTF8_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace sheaf {

// Length (1-4) of the valid UTF-8 sequence starting at text[i], or 0 if
// none starts there: overlong forms, surrogates, code points above
// U+10FFFF and truncated sequences are invalid. REQUIRES: i < text.size().
inline size_t Utf8SequenceLength(std::string_view text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char c = byte(i);
  if (c < 0x80) return 1;
  const size_t n = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
  if (n == 0 || i + n > text.size()) return 0;
  uint32_t cp = c & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

}  // namespace sheaf

#endif  // SHEAF_COMMON_UTF8_H_
