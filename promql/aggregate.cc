// Aggregation operators (sum, avg, topk, quantile, count_values, ...) with
// `by` and `without`. A series is mapped to its group once; the steps are
// then plain array work. Formulas and NaN handling follow Prometheus 2.42.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "common/prom_format.h"
#include "model/labels.h"
#include "promql/evaluator.h"

namespace sheaf::promql::internal {
namespace {

class Grouper {
 public:
  Grouper(const Aggregate& agg) : without_(agg.without), names_(agg.grouping) {
    std::sort(names_.begin(), names_.end());
    names_.erase(std::unique(names_.begin(), names_.end()), names_.end());
  }
  Labels Of(const Labels& labels) const {
    Labels g;
    for (const model::Label& l : labels) {
      bool listed = std::binary_search(names_.begin(), names_.end(), l.name);
      if (without_ ? !listed && l.name != model::kMetricNameLabel : listed) g.push_back(l);
    }
    return g;
  }
  void Add(const std::string& name) { names_.insert(std::lower_bound(names_.begin(), names_.end(), name), name); }

 private:
  bool without_;
  std::vector<std::string> names_;
};

// Index of each series' group, and the groups' labels in order of first
// appearance (Prometheus' output order).
struct Groups {
  std::vector<size_t> of;
  std::vector<Labels> labels;
};

Groups GroupSeries(const std::vector<VSeries>& vec, const Grouper& grouper) {
  Groups g;
  std::map<std::string, size_t> index;
  for (const VSeries& s : vec) {
    Labels l = grouper.Of(s.labels);
    auto [it, fresh] = index.emplace(LabelsKey(l), g.labels.size());
    if (fresh) g.labels.push_back(std::move(l));
    g.of.push_back(it->second);
  }
  return g;
}

bool AnyPresent(const VSeries& s) { return std::find(s.has.begin(), s.has.end(), 1) != s.has.end(); }

}  // namespace

absl::StatusOr<Value> Evaluator::EvalAggregate(const Aggregate& agg, const Steps& steps) {
  const size_t n = steps.n;
  Value param;
  if (agg.param) {
    PROMQL_ASSIGN_OR_RETURN(param, Eval(*agg.param, steps));
  }
  Grouper grouper(agg);
  if (agg.op == AggregateOp::kCountValues) {
    if (!model::IsValidLabelName(param.str) && !(param.str.size() > 2 && param.str.compare(0, 2, "__") == 0)) {
      return ExecutionError(fmt::format("invalid label name \"{}\"", param.str));
    }
    if (!agg.without) grouper.Add(param.str);
  }
  PROMQL_ASSIGN_OR_RETURN(Value in, Eval(*agg.expr, steps));
  Value out;
  out.type = ValueType::kVector;

  if (agg.op == AggregateOp::kCountValues) {
    // Groups depend on the values, so they are found step by step.
    std::map<std::string, size_t> index;
    for (size_t i = 0; i < n; ++i) {
      for (const VSeries& s : in.vec) {
        if (!s.has[i]) continue;
        Labels l = s.labels;
        SetLabel(l, param.str, FormatPromApiFloat(s.v[i]));
        l = grouper.Of(l);
        auto [it, fresh] = index.emplace(LabelsKey(l), out.vec.size());
        if (fresh) {
          PROMQL_RETURN_IF_ERROR(Charge(n));
          out.vec.push_back(NewSeries(std::move(l), n));
        }
        VSeries& g = out.vec[it->second];
        g.v[i] = g.has[i] ? g.v[i] + 1 : 1;
        g.has[i] = 1;
      }
    }
    return out;
  }

  Groups groups = GroupSeries(in.vec, grouper);
  const size_t num_groups = groups.labels.size();

  if (agg.op == AggregateOp::kTopk || agg.op == AggregateOp::kBottomk) {
    // The k largest (smallest) of each group at each step; NaN counts as
    // the least wanted. The series keep their labels.
    const bool top = agg.op == AggregateOp::kTopk;
    std::vector<VSeries> picked(in.vec.size());
    std::vector<std::vector<size_t>> members(num_groups);
    std::vector<size_t> instant_order;  // for an instant query: groups in order, best first
    for (size_t i = 0; i < n; ++i) {
      double kf = param.scalar[i];
      if (!(kf >= 1)) continue;
      size_t k = kf >= 9.2e18 ? SIZE_MAX : static_cast<size_t>(static_cast<int64_t>(kf));
      for (auto& m : members) m.clear();
      for (size_t s = 0; s < in.vec.size(); ++s) {
        if (in.vec[s].has[i]) members[groups.of[s]].push_back(s);
      }
      for (auto& m : members) {
        std::stable_sort(m.begin(), m.end(), [&](size_t a, size_t b) {
          double x = in.vec[a].v[i], y = in.vec[b].v[i];
          if (std::isnan(x)) return false;
          if (std::isnan(y)) return true;
          return top ? x > y : x < y;
        });
        if (m.size() > k) m.resize(k);
        for (size_t s : m) {
          if (picked[s].v.empty()) picked[s] = NewSeries(in.vec[s].labels, n);
          picked[s].v[i] = in.vec[s].v[i];
          picked[s].has[i] = 1;
          if (n == 1) instant_order.push_back(s);
        }
      }
    }
    if (n == 1) {
      for (size_t s : instant_order) out.vec.push_back(std::move(picked[s]));
    } else {
      for (VSeries& s : picked) {
        if (!s.v.empty()) out.vec.push_back(std::move(s));
      }
    }
    return out;
  }

  std::vector<VSeries> result;
  result.reserve(num_groups);
  for (Labels& l : groups.labels) result.push_back(NewSeries(std::move(l), n));
  PROMQL_RETURN_IF_ERROR(Charge(num_groups * n));

  if (agg.op == AggregateOp::kQuantile) {
    std::vector<std::vector<double>> values(num_groups);
    for (size_t i = 0; i < n; ++i) {
      for (auto& v : values) v.clear();
      for (size_t s = 0; s < in.vec.size(); ++s) {
        if (in.vec[s].has[i]) values[groups.of[s]].push_back(in.vec[s].v[i]);
      }
      for (size_t g = 0; g < num_groups; ++g) {
        if (values[g].empty()) continue;
        result[g].v[i] = Quantile(param.scalar[i], values[g]);
        result[g].has[i] = 1;
      }
    }
  } else {
    // Running state per group and step, updated series by series in
    // input order (as Prometheus adds them up).
    std::vector<std::vector<double>> mean(num_groups), count(num_groups);
    const bool needs_mean =
        agg.op == AggregateOp::kAvg || agg.op == AggregateOp::kStddev || agg.op == AggregateOp::kStdvar;
    for (size_t g = 0; g < num_groups; ++g) {
      count[g].assign(n, 0);
      if (needs_mean) mean[g].assign(n, 0);
    }
    for (size_t s = 0; s < in.vec.size(); ++s) {
      const VSeries& x = in.vec[s];
      const size_t g = groups.of[s];
      VSeries& r = result[g];
      for (size_t i = 0; i < n; ++i) {
        if (!x.has[i]) continue;
        const double v = x.v[i];
        double& c = count[g][i];
        if (!r.has[i]) {
          r.has[i] = 1;
          c = 1;
          switch (agg.op) {
            case AggregateOp::kCount:
            case AggregateOp::kGroup:
              r.v[i] = 1;
              break;
            case AggregateOp::kStddev:
            case AggregateOp::kStdvar:
              r.v[i] = 0;
              mean[g][i] = v;
              break;
            case AggregateOp::kAvg:
              mean[g][i] = v;
              break;
            default:
              r.v[i] = v;
          }
          continue;
        }
        c += 1;
        switch (agg.op) {
          case AggregateOp::kSum:
            r.v[i] += v;
            break;
          case AggregateOp::kAvg: {
            double& m = mean[g][i];
            if (std::isinf(m)) {
              if (std::isinf(v) && (m > 0) == (v > 0)) break;
              if (!std::isinf(v) && !std::isnan(v)) break;
            }
            // Each side divided by the count first, so no overflow.
            m += v / c - m / c;
            break;
          }
          case AggregateOp::kCount:
            r.v[i] += 1;
            break;
          case AggregateOp::kGroup:
            break;
          case AggregateOp::kMax:
            if (r.v[i] < v || std::isnan(r.v[i])) r.v[i] = v;
            break;
          case AggregateOp::kMin:
            if (r.v[i] > v || std::isnan(r.v[i])) r.v[i] = v;
            break;
          case AggregateOp::kStddev:
          case AggregateOp::kStdvar: {
            double& m = mean[g][i];
            double delta = v - m;
            m += delta / c;
            r.v[i] += delta * (v - m);
            break;
          }
          default:
            return absl::InternalError("unexpected aggregation");
        }
      }
      if (s % 1024 == 1023) PROMQL_RETURN_IF_ERROR(Poll());
    }
    for (size_t g = 0; g < num_groups; ++g) {
      for (size_t i = 0; i < n; ++i) {
        if (!result[g].has[i]) continue;
        if (agg.op == AggregateOp::kAvg) result[g].v[i] = mean[g][i];
        if (agg.op == AggregateOp::kStdvar) result[g].v[i] /= count[g][i];
        if (agg.op == AggregateOp::kStddev) result[g].v[i] = std::sqrt(result[g].v[i] / count[g][i]);
      }
    }
  }
  for (VSeries& r : result) {
    if (AnyPresent(r)) out.vec.push_back(std::move(r));
  }
  return out;
}

}  // namespace sheaf::promql::internal
