#include "common/prom_format.h"

#include <charconv>
#include <cmath>
#include <string_view>

namespace sheaf {
namespace {

bool Special(double v, std::string* out) {
  if (std::isnan(v)) {
    *out = "NaN";
    return true;
  }
  if (std::isinf(v)) {
    *out = v > 0 ? "+Inf" : "-Inf";
    return true;
  }
  return false;
}

}  // namespace

std::string FormatPromFloat(double v) {
  std::string out;
  if (Special(v, &out)) return out;
  // The shortest digits, then Go's choice: an exponent when it is below -4
  // or at least 6 (Go's rule for the shortest precision), else plain.
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::scientific);
  std::string_view sci(buf, r.ptr - buf);  // [-]d[.ddd]e[+-]xx
  size_t e = sci.find('e');
  int exp = std::stoi(std::string(sci.substr(e + 1)));
  if (exp < -4 || exp >= 6) {
    out.assign(sci.substr(0, e));
    out += 'e';
    out += exp < 0 ? '-' : '+';
    int a = exp < 0 ? -exp : exp;
    if (a < 10) out += '0';
    out += std::to_string(a);
    return out;
  }
  r = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::fixed);
  return std::string(buf, r.ptr);
}

std::string FormatPromApiFloat(double v) {
  std::string out;
  if (Special(v, &out)) return out;
  char buf[400];
  auto r = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::fixed);
  return std::string(buf, r.ptr);
}

}  // namespace sheaf
