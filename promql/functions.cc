// PromQL's functions of one series (range functions over a window, math,
// dates), quantiles, and the label helpers the evaluator shares. Each
// follows Prometheus 2.42's promql/functions.go: the same formulas in the
// same order, so results agree to the last bits wherever that is possible.
#include <algorithm>
#include <cmath>
#include <ctime>
#include <map>

#include "promql/eval_internal.h"

namespace sheaf::promql::internal {
namespace {

// Kahan-Neumaier summation step, as Prometheus' kahanSumInc.
void KahanInc(double inc, double& sum, double& c) {
  double t = sum + inc;
  if (std::fabs(sum) >= std::fabs(inc)) {
    c += (sum - t) + inc;
  } else {
    c += (inc - t) + sum;
  }
  sum = t;
}

// rate, increase and delta: the change over the window.
bool ExtrapolatedRate(const RangeWindow& w, bool is_counter, bool is_rate, double* out) {
  const auto& s = w.samples;
  if (s.size() < 2) return false;
  double result = s.back().value - s.front().value;
  if (is_counter) {
    double last = 0;
    for (const Sample& x : s) {
      if (x.value < last) result += last;
      last = x.value;
    }
  }
  *out = Extrapolate(RateInput{result, s.front().timestamp_ms, s.front().value, s.back().timestamp_ms, s.size()},
                     w.range_start, w.range_end, w.range_ms, is_counter, is_rate);
  return true;
}

bool Rate(const RangeWindow& w, double* out) { return ExtrapolatedRate(w, true, true, out); }
bool Increase(const RangeWindow& w, double* out) { return ExtrapolatedRate(w, true, false, out); }
bool Delta(const RangeWindow& w, double* out) { return ExtrapolatedRate(w, false, false, out); }

bool InstantValue(const RangeWindow& w, bool is_rate, double* out) {
  const auto& s = w.samples;
  if (s.size() < 2) return false;
  const Sample& last = s[s.size() - 1];
  const Sample& prev = s[s.size() - 2];
  double result = is_rate && last.value < prev.value ? last.value : last.value - prev.value;
  int64_t interval = last.timestamp_ms - prev.timestamp_ms;
  if (interval == 0) return false;
  if (is_rate) result /= static_cast<double>(interval) / 1000;
  *out = result;
  return true;
}
bool Irate(const RangeWindow& w, double* out) { return InstantValue(w, true, out); }
bool Idelta(const RangeWindow& w, double* out) { return InstantValue(w, false, out); }

// Least squares fit of the samples; x in seconds relative to `intercept_ms`.
void LinearRegression(std::span<const Sample> s, int64_t intercept_ms, double* slope, double* intercept) {
  double n = 0, sum_x = 0, c_x = 0, sum_y = 0, c_y = 0, sum_xy = 0, c_xy = 0, sum_x2 = 0, c_x2 = 0;
  double init_y = s[0].value;
  bool const_y = true;
  for (size_t i = 0; i < s.size(); ++i) {
    if (const_y && i > 0 && s[i].value != init_y) const_y = false;
    n += 1;
    double x = static_cast<double>(s[i].timestamp_ms - intercept_ms) / 1e3;
    KahanInc(x, sum_x, c_x);
    KahanInc(s[i].value, sum_y, c_y);
    KahanInc(x * s[i].value, sum_xy, c_xy);
    KahanInc(x * x, sum_x2, c_x2);
  }
  if (const_y) {
    if (std::isinf(init_y)) {
      *slope = *intercept = std::nan("");
    } else {
      *slope = 0;
      *intercept = init_y;
    }
    return;
  }
  sum_x += c_x;
  sum_y += c_y;
  sum_xy += c_xy;
  sum_x2 += c_x2;
  double cov_xy = sum_xy - sum_x * sum_y / n;
  double var_x = sum_x2 - sum_x * sum_x / n;
  *slope = cov_xy / var_x;
  *intercept = sum_y / n - *slope * sum_x / n;
}

bool Deriv(const RangeWindow& w, double* out) {
  if (w.samples.size() < 2) return false;
  double intercept;
  LinearRegression(w.samples, w.samples[0].timestamp_ms, out, &intercept);
  return true;
}

bool PredictLinear(const RangeWindow& w, double* out) {
  if (w.samples.size() < 2) return false;
  double slope, intercept;
  LinearRegression(w.samples, w.eval_ms, &slope, &intercept);
  *out = slope * w.arg + intercept;
  return true;
}

double TrendValue(size_t i, double tf, double s0, double s1, double b) {
  if (i == 0) return b;
  return tf * (s1 - s0) + (1 - tf) * b;
}

bool HoltWinters(const RangeWindow& w, double* out) {
  const auto& s = w.samples;
  if (s.size() < 2) return false;
  double sf = w.arg, tf = w.arg2;
  double s0 = 0, s1 = s[0].value, b = s[1].value - s[0].value;
  for (size_t i = 1; i < s.size(); ++i) {
    double x = sf * s[i].value;
    b = TrendValue(i - 1, tf, s0, s1, b);
    double y = (1 - sf) * (s1 + b);
    s0 = s1;
    s1 = x + y;
  }
  *out = s1;
  return true;
}

bool Resets(const RangeWindow& w, double* out) {
  if (w.samples.empty()) return false;
  double n = 0;
  for (size_t i = 1; i < w.samples.size(); ++i) {
    if (w.samples[i].value < w.samples[i - 1].value) ++n;
  }
  *out = n;
  return true;
}

bool Changes(const RangeWindow& w, double* out) {
  if (w.samples.empty()) return false;
  double n = 0;
  for (size_t i = 1; i < w.samples.size(); ++i) {
    double a = w.samples[i - 1].value, b = w.samples[i].value;
    if (a != b && !(std::isnan(a) && std::isnan(b))) ++n;
  }
  *out = n;
  return true;
}

bool AvgOverTime(const RangeWindow& w, double* out) {
  if (w.samples.empty()) return false;
  double mean = 0, count = 0, c = 0;
  for (const Sample& x : w.samples) {
    count++;
    if (std::isinf(mean)) {
      if (std::isinf(x.value) && (mean > 0) == (x.value > 0)) continue;
      if (!std::isinf(x.value) && !std::isnan(x.value)) continue;
    }
    KahanInc(x.value / count - mean / count, mean, c);
  }
  *out = std::isinf(mean) ? mean : mean + c;
  return true;
}

bool SumOverTime(const RangeWindow& w, double* out) {
  if (w.samples.empty()) return false;
  double sum = 0, c = 0;
  for (const Sample& x : w.samples) KahanInc(x.value, sum, c);
  *out = std::isinf(sum) ? sum : sum + c;
  return true;
}

bool CountOverTime(const RangeWindow& w, double* out) {
  if (w.samples.empty()) return false;
  *out = static_cast<double>(w.samples.size());
  return true;
}

bool MinOverTime(const RangeWindow& w, double* out) {
  if (w.samples.empty()) return false;
  double m = w.samples[0].value;
  for (const Sample& x : w.samples) {
    if (x.value < m || std::isnan(m)) m = x.value;
  }
  *out = m;
  return true;
}

bool MaxOverTime(const RangeWindow& w, double* out) {
  if (w.samples.empty()) return false;
  double m = w.samples[0].value;
  for (const Sample& x : w.samples) {
    if (x.value > m || std::isnan(m)) m = x.value;
  }
  *out = m;
  return true;
}

bool LastOverTime(const RangeWindow& w, double* out) {
  if (w.samples.empty()) return false;
  *out = w.samples.back().value;
  return true;
}

bool PresentOverTime(const RangeWindow& w, double* out) {
  if (w.samples.empty()) return false;
  *out = 1;
  return true;
}

bool QuantileOverTime(const RangeWindow& w, double* out) {
  if (w.samples.empty()) return false;
  std::vector<double> values;
  values.reserve(w.samples.size());
  for (const Sample& x : w.samples) values.push_back(x.value);
  *out = Quantile(w.arg, values);
  return true;
}

void Variance(std::span<const Sample> s, double* var) {
  double count = 0, mean = 0, c_mean = 0, aux = 0, c_aux = 0;
  for (const Sample& x : s) {
    count++;
    double delta = x.value - (mean + c_mean);
    KahanInc(delta / count, mean, c_mean);
    KahanInc(delta * (x.value - (mean + c_mean)), aux, c_aux);
  }
  *var = (aux + c_aux) / count;
}

bool StdvarOverTime(const RangeWindow& w, double* out) {
  if (w.samples.empty()) return false;
  Variance(w.samples, out);
  return true;
}

bool StddevOverTime(const RangeWindow& w, double* out) {
  if (w.samples.empty()) return false;
  Variance(w.samples, out);
  *out = std::sqrt(*out);
  return true;
}

double Sgn(double v) {
  if (v < 0) return -1;
  if (v > 0) return 1;
  return v;  // 0, -0 and NaN as they are
}
double Deg(double v) { return v * 180 / M_PI; }
double Rad(double v) { return v * M_PI / 180; }

std::tm UtcTime(double seconds) {
  std::time_t t = static_cast<std::time_t>(static_cast<int64_t>(seconds));
  std::tm tm = {};
  gmtime_r(&t, &tm);
  return tm;
}
double Minute(double s) { return UtcTime(s).tm_min; }
double Hour(double s) { return UtcTime(s).tm_hour; }
double DayOfWeek(double s) { return UtcTime(s).tm_wday; }
double DayOfMonth(double s) { return UtcTime(s).tm_mday; }
double DayOfYear(double s) { return UtcTime(s).tm_yday + 1; }
double Month(double s) { return UtcTime(s).tm_mon + 1; }
double Year(double s) { return UtcTime(s).tm_year + 1900; }
double DaysInMonth(double s) {
  std::tm tm = UtcTime(s);
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int year = tm.tm_year + 1900;
  bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  return tm.tm_mon == 1 && leap ? 29 : kDays[tm.tm_mon];
}

}  // namespace

double Extrapolate(const RateInput& in, int64_t range_start, int64_t range_end, int64_t range_ms, bool is_counter,
                   bool is_rate) {
  double result = in.change;
  double to_start = static_cast<double>(in.first_ts - range_start) / 1000;
  double to_end = static_cast<double>(range_end - in.last_ts) / 1000;
  double sampled = static_cast<double>(in.last_ts - in.first_ts) / 1000;
  double average = sampled / static_cast<double>(in.count - 1);
  if (is_counter && result > 0 && in.first >= 0) {
    // A counter starts at 0: never extrapolate below it.
    double to_zero = sampled * (in.first / result);
    if (to_zero < to_start) to_start = to_zero;
  }
  // Extrapolate to an edge of the range unless the series seems to start
  // or end inside it (further from the edge than 1.1 sample intervals).
  double threshold = average * 1.1;
  double interval = sampled;
  interval += to_start < threshold ? to_start : average / 2;
  interval += to_end < threshold ? to_end : average / 2;
  result = result * (interval / sampled);
  if (is_rate) result /= static_cast<double>(range_ms) / 1000;
  return result;
}

const RangeFunction* LookupRangeFunction(std::string_view name) {
  static const auto* const kTable = new std::map<std::string_view, RangeFunction>{
      {"rate", {Rate, false}},
      {"increase", {Increase, false}},
      {"delta", {Delta, false}},
      {"irate", {Irate, false}},
      {"idelta", {Idelta, false}},
      {"deriv", {Deriv, false}},
      {"predict_linear", {PredictLinear, false}},
      {"holt_winters", {HoltWinters, false}},
      {"resets", {Resets, false}},
      {"changes", {Changes, false}},
      {"avg_over_time", {AvgOverTime, false}},
      {"sum_over_time", {SumOverTime, false}},
      {"count_over_time", {CountOverTime, false}},
      {"min_over_time", {MinOverTime, false}},
      {"max_over_time", {MaxOverTime, false}},
      {"last_over_time", {LastOverTime, true}},
      {"present_over_time", {PresentOverTime, false}},
      {"quantile_over_time", {QuantileOverTime, false}},
      {"stddev_over_time", {StddevOverTime, false}},
      {"stdvar_over_time", {StdvarOverTime, false}},
  };
  auto it = kTable->find(name);
  return it == kTable->end() ? nullptr : &it->second;
}

MathFn LookupMathFunction(std::string_view name) {
  static const auto* const kTable = new std::map<std::string_view, MathFn>{
      {"abs", [](double v) { return std::fabs(v); }},
      {"ceil", [](double v) { return std::ceil(v); }},
      {"floor", [](double v) { return std::floor(v); }},
      {"exp", [](double v) { return std::exp(v); }},
      {"sqrt", [](double v) { return std::sqrt(v); }},
      {"ln", [](double v) { return std::log(v); }},
      {"log2", [](double v) { return std::log2(v); }},
      {"log10", [](double v) { return std::log10(v); }},
      {"sin", [](double v) { return std::sin(v); }},
      {"cos", [](double v) { return std::cos(v); }},
      {"tan", [](double v) { return std::tan(v); }},
      {"asin", [](double v) { return std::asin(v); }},
      {"acos", [](double v) { return std::acos(v); }},
      {"atan", [](double v) { return std::atan(v); }},
      {"sinh", [](double v) { return std::sinh(v); }},
      {"cosh", [](double v) { return std::cosh(v); }},
      {"tanh", [](double v) { return std::tanh(v); }},
      {"asinh", [](double v) { return std::asinh(v); }},
      {"acosh", [](double v) { return std::acosh(v); }},
      {"atanh", [](double v) { return std::atanh(v); }},
      {"deg", Deg},
      {"rad", Rad},
      {"sgn", Sgn},
  };
  auto it = kTable->find(name);
  return it == kTable->end() ? nullptr : it->second;
}

DateFn LookupDateFunction(std::string_view name) {
  static const auto* const kTable = new std::map<std::string_view, DateFn>{
      {"minute", Minute},         {"hour", Hour},
      {"day_of_week", DayOfWeek}, {"day_of_month", DayOfMonth},
      {"day_of_year", DayOfYear}, {"days_in_month", DaysInMonth},
      {"month", Month},           {"year", Year},
  };
  auto it = kTable->find(name);
  return it == kTable->end() ? nullptr : it->second;
}

double Quantile(double q, std::vector<double>& values) {
  if (values.empty() || std::isnan(q)) return std::nan("");
  if (q < 0) return -INFINITY;
  if (q > 1) return INFINITY;
  // NaNs sort first, as in Prometheus' vectorByValueHeap.
  std::sort(values.begin(), values.end(), [](double a, double b) { return std::isnan(a) ? !std::isnan(b) : a < b; });
  double n = static_cast<double>(values.size());
  double rank = q * (n - 1);
  double lower = std::max(0.0, std::floor(rank));
  double upper = std::min(n - 1, lower + 1);
  double weight = rank - std::floor(rank);
  return values[static_cast<size_t>(lower)] * (1 - weight) + values[static_cast<size_t>(upper)] * weight;
}

double BucketQuantile(double q, std::vector<Bucket>& buckets) {
  if (std::isnan(q)) return std::nan("");
  if (q < 0) return -INFINITY;
  if (q > 1) return INFINITY;
  std::sort(buckets.begin(), buckets.end(),
            [](const Bucket& a, const Bucket& b) { return a.upper_bound < b.upper_bound; });
  if (buckets.empty() || !std::isinf(buckets.back().upper_bound) || buckets.back().upper_bound < 0) {
    return std::nan("");
  }
  // Buckets with the same bound (e.g. "1" and "1.0") are one bucket.
  std::vector<Bucket> merged;
  for (const Bucket& b : buckets) {
    if (!merged.empty() && merged.back().upper_bound == b.upper_bound) {
      merged.back().count += b.count;
    } else {
      merged.push_back(b);
    }
  }
  // Counts must not fall with the bound (they can, when buckets were
  // scraped at slightly different times): take the running maximum.
  double max = -INFINITY;
  for (Bucket& b : merged) {
    if (b.count > max) {
      max = b.count;
    } else if (b.count < max) {
      b.count = max;
    }
  }
  if (merged.size() < 2) return std::nan("");
  double observations = merged.back().count;
  if (observations == 0) return std::nan("");
  double rank = q * observations;
  size_t b = 0;
  while (b < merged.size() - 1 && !(merged[b].count >= rank)) ++b;
  if (b == merged.size() - 1) return merged[merged.size() - 2].upper_bound;
  if (b == 0 && merged[0].upper_bound <= 0) return merged[0].upper_bound;
  double start = 0, end = merged[b].upper_bound, count = merged[b].count;
  if (b > 0) {
    start = merged[b - 1].upper_bound;
    count -= merged[b - 1].count;
    rank -= merged[b - 1].count;
  }
  return start + (end - start) * (rank / count);
}

absl::Status ExecutionError(std::string message) {
  absl::Status s = absl::InvalidArgumentError(std::move(message));
  s.SetPayload("sheaf.promql/execution", absl::Cord("1"));
  return s;
}

Labels WithoutName(Labels labels) {
  std::erase_if(labels, [](const model::Label& l) { return l.name == model::kMetricNameLabel; });
  return labels;
}

std::string_view LabelValue(const Labels& labels, std::string_view name) {
  for (const model::Label& l : labels) {
    if (l.name == name) return l.value;
  }
  return {};
}

void SetLabel(Labels& labels, std::string_view name, std::string_view value) {
  auto it = std::lower_bound(labels.begin(), labels.end(), name,
                             [](const model::Label& l, std::string_view n) { return l.name < n; });
  bool found = it != labels.end() && it->name == name;
  if (value.empty()) {
    if (found) labels.erase(it);
  } else if (found) {
    it->value = std::string(value);
  } else {
    labels.insert(it, model::Label{std::string(name), std::string(value)});
  }
}

std::string LabelsKey(const Labels& labels) {
  std::string key;
  for (const model::Label& l : labels) {
    key += l.name;
    key += '\xff';
    key += l.value;
    key += '\xff';
  }
  return key;
}

void SortByLabels(std::vector<VSeries>& vec) {
  std::sort(vec.begin(), vec.end(), [](const VSeries& a, const VSeries& b) { return a.labels < b.labels; });
}

absl::Status MergeSameLabels(std::vector<VSeries>& vec) {
  std::map<std::string, size_t> seen;
  std::vector<VSeries> out;
  for (VSeries& s : vec) {
    auto [it, fresh] = seen.emplace(LabelsKey(s.labels), out.size());
    if (fresh) {
      out.push_back(std::move(s));
      continue;
    }
    VSeries& into = out[it->second];
    for (size_t i = 0; i < s.v.size(); ++i) {
      if (!s.has[i]) continue;
      if (into.has[i]) return ExecutionError("vector cannot contain metrics with the same labelset");
      into.has[i] = 1;
      into.v[i] = s.v[i];
    }
  }
  vec = std::move(out);
  return absl::OkStatus();
}

double GoMax(double a, double b) {
  if (std::isinf(a) && a > 0) return a;
  if (std::isinf(b) && b > 0) return b;
  if (std::isnan(a) || std::isnan(b)) return std::nan("");
  if (a == 0 && a == b) return std::signbit(a) ? b : a;
  return a > b ? a : b;
}

double GoMin(double a, double b) {
  if (std::isinf(a) && a < 0) return a;
  if (std::isinf(b) && b < 0) return b;
  if (std::isnan(a) || std::isnan(b)) return std::nan("");
  if (a == 0 && a == b) return std::signbit(a) ? a : b;
  return a < b ? a : b;
}

}  // namespace sheaf::promql::internal
