// Numbers as Prometheus (that is, Go's strconv) writes them: the shortest
// decimal that reads back to the same double, and "+Inf", "-Inf", "NaN"
// for the special values.
#ifndef SHEAF_COMMON_PROM_FORMAT_H_
#define SHEAF_COMMON_PROM_FORMAT_H_

#include <string>

namespace sheaf {

// Go's FormatFloat(v, 'g', -1, 64), as the text exposition format and
// PromQL's printer write numbers: "140", "0.0001", "1e-05", "1.234567e+06".
std::string FormatPromFloat(double v);

// Go's FormatFloat(v, 'f', -1, 64), as Prometheus' HTTP API writes sample
// values and count_values its label: never an exponent ("1234567",
// "0.00001").
std::string FormatPromApiFloat(double v);

}  // namespace sheaf

#endif  // SHEAF_COMMON_PROM_FORMAT_H_
