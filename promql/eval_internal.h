// Private to promql/: the evaluator's value types and the pieces its files
// share (functions.cc, aggregate.cc, binary.cc, eval.cc).
//
// Every instant-vector value is evaluated at all steps of the query at
// once, dense: a series holds one slot per step, present or not. A range
// query's 61 steps over 3,000 series are then 3,000 short arrays, and an
// aggregation maps a series to its group once, not once per step.
#ifndef SHEAF_PROMQL_EVAL_INTERNAL_H_
#define SHEAF_PROMQL_EVAL_INTERNAL_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/types.h"
#include "promql/ast.h"
#include "promql/engine.h"

#define PROMQL_RETURN_IF_ERROR(expr)                                  \
  do {                                                                \
    if (absl::Status status_ = (expr); !status_.ok()) return status_; \
  } while (0)

#define PROMQL_CONCAT_INNER_(a, b) a##b
#define PROMQL_CONCAT_(a, b) PROMQL_CONCAT_INNER_(a, b)
#define PROMQL_ASSIGN_OR_RETURN(lhs, expr) PROMQL_ASSIGN_OR_RETURN_IMPL_(PROMQL_CONCAT_(so_, __LINE__), lhs, expr)
#define PROMQL_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.ok()) return tmp.status();                 \
  lhs = *std::move(tmp)

namespace sheaf::promql::internal {

using model::Labels;
using model::Sample;

// The evaluation times: start, start + step, ... <= end (n of them).
struct Steps {
  int64_t start = 0;
  int64_t end = 0;
  int64_t step = 1;
  size_t n = 1;
  int64_t At(size_t i) const { return start + static_cast<int64_t>(i) * step; }
};

// An instant vector's series at every step.
struct VSeries {
  Labels labels;
  std::vector<double> v;     // one per step
  std::vector<uint8_t> has;  // 1 where the series has a value at that step
};

struct Value {
  ValueType type = ValueType::kNone;
  std::vector<double> scalar;  // kScalar: one per step
  std::vector<VSeries> vec;    // kVector
  std::string str;             // kString
};

// Errors the data causes (many-to-many matching, duplicate series...).
absl::Status ExecutionError(std::string message);

// Labels.
Labels WithoutName(Labels labels);
std::string_view LabelValue(const Labels& labels, std::string_view name);
void SetLabel(Labels& labels, std::string_view name, std::string_view value);  // "" deletes
// A map key for a label set (or a part of it): unambiguous, not for display.
std::string LabelsKey(const Labels& labels);
// INVALID_ARGUMENT (execution) if two series share a label set at a step.
absl::Status CheckNoDuplicateSeries(const std::vector<VSeries>& vec, size_t steps);
// Series with the same label set that never overlap in time are joined
// into one (Prometheus joins them in its range evaluation); overlapping
// ones are an execution error.
absl::Status MergeSameLabels(std::vector<VSeries>& vec);
void SortByLabels(std::vector<VSeries>& vec);

// Go's float semantics where they differ from C++'s.
double GoMax(double a, double b);
double GoMin(double a, double b);

// One series' samples in [range_start, range_end] at one step of a range
// function (stale markers removed), and the function's other arguments.
struct RangeWindow {
  std::span<const Sample> samples;
  int64_t range_start = 0;
  int64_t range_end = 0;
  int64_t range_ms = 0;
  int64_t eval_ms = 0;  // the step's time (predict_linear's "now")
  double arg = 0;       // quantile_over_time's q, predict_linear's t, holt_winters' sf
  double arg2 = 0;      // holt_winters' tf
};

// A function of a range vector: rate, avg_over_time, ...; false when it
// has no value for the window. absent_over_time is the evaluator's.
struct RangeFunction {
  bool (*fn)(const RangeWindow& w, double* out);
  bool keep_name;  // last_over_time keeps __name__; the others drop it
};
const RangeFunction* LookupRangeFunction(std::string_view name);

// rate, increase and delta (Prometheus' extrapolatedRate) from what they
// need of a window: the change (counter resets compensated for rate and
// increase), the first and last sample and how many there are (>= 2).
struct RateInput {
  double change;
  int64_t first_ts;
  double first;
  int64_t last_ts;
  size_t count;
};
double Extrapolate(const RateInput& in, int64_t range_start, int64_t range_end, int64_t range_ms, bool is_counter,
                   bool is_rate);

// abs, ceil, exp, sgn, ...: nullptr if `name` is not such a function.
using MathFn = double (*)(double);
MathFn LookupMathFunction(std::string_view name);

// minute, hour, ...: the part of a Unix time in seconds (UTC).
using DateFn = double (*)(double);
DateFn LookupDateFunction(std::string_view name);

// The φ-quantile of values as Prometheus computes it (sorts `values`).
double Quantile(double q, std::vector<double>& values);

// histogram_quantile over one group's buckets at one step.
struct Bucket {
  double upper_bound;
  double count;
};
double BucketQuantile(double q, std::vector<Bucket>& buckets);

}  // namespace sheaf::promql::internal

#endif  // SHEAF_PROMQL_EVAL_INTERNAL_H_
