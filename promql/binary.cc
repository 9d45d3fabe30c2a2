// Binary operators: arithmetic, comparisons (filtering or `bool`) and set
// operators, between scalars and vectors, with `on`/`ignoring` and
// `group_left`/`group_right`, as Prometheus 2.42's VectorBinop and
// VectorAnd/Or/Unless do. Signatures are computed once per series; the
// steps then only look up small per-signature lists.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <unordered_map>

#include "model/labels.h"
#include "promql/evaluator.h"

namespace sheaf::promql::internal {
namespace {

// The result and whether to keep it (comparisons filter).
std::pair<double, bool> Apply(BinaryOp op, double l, double r) {
  switch (op) {
    case BinaryOp::kAdd:
      return {l + r, true};
    case BinaryOp::kSub:
      return {l - r, true};
    case BinaryOp::kMul:
      return {l * r, true};
    case BinaryOp::kDiv:
      return {l / r, true};
    case BinaryOp::kPow:
      return {std::pow(l, r), true};
    case BinaryOp::kMod:
      return {std::fmod(l, r), true};
    case BinaryOp::kAtan2:
      return {std::atan2(l, r), true};
    case BinaryOp::kEql:
      return {l, l == r};
    case BinaryOp::kNeq:
      return {l, l != r};
    case BinaryOp::kGtr:
      return {l, l > r};
    case BinaryOp::kLss:
      return {l, l < r};
    case BinaryOp::kGte:
      return {l, l >= r};
    case BinaryOp::kLte:
      return {l, l <= r};
    default:
      return {0, false};
  }
}

bool DropsName(BinaryOp op) {
  switch (op) {
    case BinaryOp::kAdd:
    case BinaryOp::kSub:
    case BinaryOp::kMul:
    case BinaryOp::kDiv:
    case BinaryOp::kPow:
    case BinaryOp::kMod:
      return true;  // not atan2: Prometheus 2.42 keeps the name there
    default:
      return false;
  }
}

bool Listed(const std::vector<std::string>& names, std::string_view name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

// The labels two series are matched on.
Labels Signature(const Labels& labels, const VectorMatching& m) {
  Labels sig;
  for (const model::Label& l : labels) {
    bool listed = Listed(m.matching_labels, l.name);
    if (m.on ? listed : !listed && l.name != model::kMetricNameLabel) sig.push_back(l);
  }
  return sig;
}

// Series grouped by signature: for each series its signature's index.
struct SignatureIndex {
  std::map<std::string, size_t> index;
  std::vector<Labels> labels;
  size_t Of(const Labels& series, const VectorMatching& m) {
    Labels sig = Signature(series, m);
    auto [it, fresh] = index.emplace(LabelsKey(sig), labels.size());
    if (fresh) labels.push_back(std::move(sig));
    return it->second;
  }
};

std::string LabelsText(const Labels& labels) {
  std::string out = "{";
  for (size_t i = 0; i < labels.size(); ++i) {
    if (i > 0) out += ", ";
    out += labels[i].name;
    out += '=';
    out += model::QuoteLabelValue(labels[i].value);
  }
  return out + "}";
}

bool AnyPresent(const VSeries& s) { return std::find(s.has.begin(), s.has.end(), 1) != s.has.end(); }

}  // namespace

absl::StatusOr<Value> Evaluator::EvalBinary(const Binary& bin, const Steps& steps) {
  PROMQL_ASSIGN_OR_RETURN(Value lhs, Eval(*bin.lhs, steps));
  PROMQL_ASSIGN_OR_RETURN(Value rhs, Eval(*bin.rhs, steps));
  const size_t n = steps.n;
  if (lhs.type == ValueType::kScalar && rhs.type == ValueType::kScalar) {
    for (size_t i = 0; i < n; ++i) {
      auto [v, keep] = Apply(bin.op, lhs.scalar[i], rhs.scalar[i]);
      lhs.scalar[i] = IsComparison(bin.op) ? (keep ? 1 : 0) : v;
    }
    return lhs;
  }
  if (lhs.type == ValueType::kVector && rhs.type == ValueType::kVector) {
    if (IsSetOperator(bin.op)) return EvalSetBinary(bin, std::move(lhs), std::move(rhs), steps);
    return EvalVectorBinary(bin, std::move(lhs), std::move(rhs), steps);
  }
  // A vector and a scalar: the operation applies to each sample; a
  // comparison keeps the vector's value whichever side it is on.
  const bool swap = lhs.type == ValueType::kScalar;
  Value out = swap ? std::move(rhs) : std::move(lhs);
  const std::vector<double>& scalar = swap ? lhs.scalar : rhs.scalar;
  const bool drop_name = DropsName(bin.op) || bin.return_bool;
  for (VSeries& s : out.vec) {
    if (drop_name) s.labels = WithoutName(std::move(s.labels));
    for (size_t i = 0; i < n; ++i) {
      if (!s.has[i]) continue;
      double l = s.v[i], r = scalar[i];
      if (swap) std::swap(l, r);
      auto [v, keep] = Apply(bin.op, l, r);
      if (IsComparison(bin.op) && swap) v = r;
      if (bin.return_bool) {
        v = keep ? 1 : 0;
        keep = true;
      }
      s.v[i] = v;
      s.has[i] = keep ? 1 : 0;
    }
  }
  std::erase_if(out.vec, [](const VSeries& s) { return !AnyPresent(s); });
  PROMQL_RETURN_IF_ERROR(MergeSameLabels(out.vec));
  return out;
}

absl::StatusOr<Value> Evaluator::EvalVectorBinary(const Binary& bin, Value lhs, Value rhs, const Steps& steps) {
  const VectorMatching& m = *bin.matching;
  const size_t n = steps.n;
  // group_right: the right side is the "many" side.
  const bool swapped = m.card == Cardinality::kOneToMany;
  const std::vector<VSeries>& many = swapped ? rhs.vec : lhs.vec;
  const std::vector<VSeries>& one = swapped ? lhs.vec : rhs.vec;

  SignatureIndex sigs;
  std::vector<size_t> many_sig, one_sig;
  for (const VSeries& s : many) many_sig.push_back(sigs.Of(s.labels, m));
  for (const VSeries& s : one) one_sig.push_back(sigs.Of(s.labels, m));
  std::vector<std::vector<size_t>> many_of(sigs.labels.size()), one_of(sigs.labels.size());
  for (size_t k = 0; k < many.size(); ++k) many_of[many_sig[k]].push_back(k);
  for (size_t k = 0; k < one.size(); ++k) one_of[one_sig[k]].push_back(k);

  // The answer's series by label set; a (many, one) pair's series found once.
  Value out;
  out.type = ValueType::kVector;
  std::map<std::string, size_t> out_index;
  std::unordered_map<uint64_t, size_t> pair_out;
  auto result_series = [&](size_t mi, size_t oi) -> size_t {
    uint64_t key = static_cast<uint64_t>(mi) * (one.size() + 1) + oi;
    if (auto it = pair_out.find(key); it != pair_out.end()) return it->second;
    Labels labels = many[mi].labels;
    if (DropsName(bin.op) || bin.return_bool) labels = WithoutName(std::move(labels));
    if (m.card == Cardinality::kOneToOne) {
      std::erase_if(labels, [&](const model::Label& l) { return Listed(m.matching_labels, l.name) != m.on; });
    }
    for (const std::string& name : m.include) SetLabel(labels, name, LabelValue(one[oi].labels, name));
    auto [it, fresh] = out_index.emplace(LabelsKey(labels), out.vec.size());
    if (fresh) out.vec.push_back(NewSeries(std::move(labels), n));
    pair_out.emplace(key, it->second);
    return it->second;
  };

  std::vector<size_t> present_many;
  std::vector<size_t> inserted;  // result series of this signature at this step
  for (size_t i = 0; i < n; ++i) {
    for (size_t sig = 0; sig < sigs.labels.size(); ++sig) {
      size_t oi = SIZE_MAX;
      for (size_t k : one_of[sig]) {
        if (!one[k].has[i]) continue;
        if (oi != SIZE_MAX) {
          return ExecutionError(fmt::format(
              "found duplicate series for the match group {} on the {} hand-side of the operation: [{}, {}];"
              "many-to-many matching not allowed: matching labels must be unique on one side",
              LabelsText(sigs.labels[sig]), swapped ? "left" : "right", LabelsText(one[k].labels),
              LabelsText(one[oi].labels)));
        }
        oi = k;
      }
      if (oi == SIZE_MAX) continue;
      present_many.clear();
      for (size_t k : many_of[sig]) {
        if (many[k].has[i]) present_many.push_back(k);
      }
      if (m.card == Cardinality::kOneToOne && present_many.size() > 1) {
        return ExecutionError(
            "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)");
      }
      inserted.clear();
      for (size_t mi : present_many) {
        double vl = many[mi].v[i], vr = one[oi].v[i];
        if (swapped) std::swap(vl, vr);
        auto [v, keep] = Apply(bin.op, vl, vr);
        if (bin.return_bool) {
          v = keep ? 1 : 0;
        } else if (!keep) {
          continue;
        }
        size_t r = result_series(mi, oi);
        if (m.card != Cardinality::kOneToOne) {
          if (std::find(inserted.begin(), inserted.end(), r) != inserted.end()) {
            return ExecutionError("multiple matches for labels: grouping labels must ensure unique matches");
          }
          inserted.push_back(r);
        }
        out.vec[r].v[i] = v;
        out.vec[r].has[i] = 1;
      }
    }
    if (i % 256 == 255) PROMQL_RETURN_IF_ERROR(Poll());
  }
  PROMQL_RETURN_IF_ERROR(Charge(out.vec.size() * n));
  std::erase_if(out.vec, [](const VSeries& s) { return !AnyPresent(s); });
  return out;
}

absl::StatusOr<Value> Evaluator::EvalSetBinary(const Binary& bin, Value lhs, Value rhs, const Steps& steps) {
  const VectorMatching& m = *bin.matching;
  const size_t n = steps.n;
  SignatureIndex sigs;
  std::vector<size_t> lhs_sig, rhs_sig;
  for (const VSeries& s : lhs.vec) lhs_sig.push_back(sigs.Of(s.labels, m));
  for (const VSeries& s : rhs.vec) rhs_sig.push_back(sigs.Of(s.labels, m));
  std::vector<uint8_t> in_lhs(sigs.labels.size()), in_rhs(sigs.labels.size());
  Value out;
  out.type = ValueType::kVector;
  for (size_t i = 0; i < n; ++i) {
    std::fill(in_lhs.begin(), in_lhs.end(), 0);
    std::fill(in_rhs.begin(), in_rhs.end(), 0);
    for (size_t k = 0; k < lhs.vec.size(); ++k) {
      if (lhs.vec[k].has[i]) in_lhs[lhs_sig[k]] = 1;
    }
    for (size_t k = 0; k < rhs.vec.size(); ++k) {
      if (rhs.vec[k].has[i]) in_rhs[rhs_sig[k]] = 1;
    }
    for (size_t k = 0; k < lhs.vec.size(); ++k) {
      if (!lhs.vec[k].has[i]) continue;
      bool keep = bin.op == BinaryOp::kAnd      ? in_rhs[lhs_sig[k]]
                  : bin.op == BinaryOp::kUnless ? !in_rhs[lhs_sig[k]]
                                                : true;
      if (!keep) lhs.vec[k].has[i] = 0;
    }
    if (bin.op == BinaryOp::kOr) {
      for (size_t k = 0; k < rhs.vec.size(); ++k) {
        if (rhs.vec[k].has[i] && in_lhs[rhs_sig[k]]) rhs.vec[k].has[i] = 0;
      }
    }
  }
  for (VSeries& s : lhs.vec) {
    if (AnyPresent(s)) out.vec.push_back(std::move(s));
  }
  if (bin.op == BinaryOp::kOr) {
    for (VSeries& s : rhs.vec) {
      if (AnyPresent(s)) out.vec.push_back(std::move(s));
    }
    // A series on both sides (at different steps) is one series.
    PROMQL_RETURN_IF_ERROR(MergeSameLabels(out.vec));
  }
  return out;
}

}  // namespace sheaf::promql::internal
