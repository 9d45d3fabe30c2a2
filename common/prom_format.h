// Numbers as Prometheus writes them (text exposition, HTTP API, promtool):
// the shortest decimal that reads back to the same double, and "+Inf",
// "-Inf", "NaN" for the special values.
#ifndef SHEAF_COMMON_PROM_FORMAT_H_
#define SHEAF_COMMON_PROM_FORMAT_H_

#include <string>

namespace sheaf {

std::string FormatPromFloat(double v);

}  // namespace sheaf

#endif  // SHEAF_COMMON_PROM_FORMAT_H_
