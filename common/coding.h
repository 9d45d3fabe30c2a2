// Integer encodings shared by every byte layout sheaf writes: big-endian
// fixed64 (byte order is numeric order, for keys), LEB128 varints and
// zigzag for signed deltas. Decoders never read past their input and
// reject encodings longer than 64 bits, so corrupt bytes are an error,
// never undefined behaviour.
#ifndef SHEAF_COMMON_CODING_H_
#define SHEAF_COMMON_CODING_H_

#include <bit>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sheaf {

inline void PutFixed64BE(std::string& out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>(v >> shift));
}

// REQUIRES: in.size() >= 8.
inline uint64_t GetFixed64BE(std::string_view in) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(in[i]);
  return v;
}

inline void PutVarint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

inline int VarintLength(uint64_t v) { return v == 0 ? 1 : (std::bit_width(v) + 6) / 7; }

// Reads a varint at the front of *in and advances past it. False (and *in
// unchanged) if truncated or longer than 64 bits.
inline bool GetVarint(std::string_view* in, uint64_t* v) {
  uint64_t result = 0;
  for (size_t i = 0; i < in->size() && i < 10; ++i) {
    const auto byte = static_cast<uint8_t>((*in)[i]);
    if (i == 9 && byte > 1) return false;
    result |= uint64_t{byte & 0x7fu} << (7 * i);
    if ((byte & 0x80) == 0) {
      in->remove_prefix(i + 1);
      *v = result;
      return true;
    }
  }
  return false;
}

inline std::optional<uint64_t> GetVarint(std::string_view* in) {
  uint64_t v;
  if (!GetVarint(in, &v)) return std::nullopt;
  return v;
}

// Small magnitudes of either sign to small unsigned numbers. Works on the
// bits (mod 2^64), so no input can overflow a signed type.
inline uint64_t ZigZag(uint64_t v) { return (v << 1) ^ (0 - (v >> 63)); }
inline uint64_t UnZigZag(uint64_t u) { return (u >> 1) ^ (0 - (u & 1)); }

}  // namespace sheaf

#endif  // SHEAF_COMMON_CODING_H_
