// Private to promql/: the evaluator of one query. Not thread-safe; one per
// query (Engine::Query makes it).
#ifndef SHEAF_PROMQL_EVALUATOR_H_
#define SHEAF_PROMQL_EVALUATOR_H_

#include <functional>

#include "promql/eval_internal.h"

namespace sheaf::storage {
class SeriesStore;
}

namespace sheaf::promql::internal {

class Evaluator {
 public:
  Evaluator(storage::SeriesStore* store, const EngineOptions& options, const QueryParams& params, QueryStats* stats)
      : store_(store), options_(options), params_(params), stats_(stats) {}

  // The value of `e` at every step of `steps`.
  absl::StatusOr<Value> Eval(const Expr& e, const Steps& steps);

  // A range vector at one instant (the answer of an instant query whose
  // expression is `x[5m]` or a subquery): the samples in each window.
  absl::StatusOr<std::vector<ResultSeries>> EvalRangeAt(const Expr& e, int64_t t);

  // Counts work against the limits and polls params.check.
  absl::Status Charge(uint64_t samples);
  absl::Status Poll();

 private:
  // Calls `fn` for each series of a matrix selector or subquery, in label
  // order, with its samples (stale markers removed) covering every window
  // the steps need.
  using RangeSeriesFn = std::function<absl::Status(const Labels& labels, std::span<const Sample> samples)>;
  absl::Status ForEachRangeSeries(const Expr& e, const Steps& steps, const RangeSeriesFn& fn);
  // The selector's series, sorted by labels, with their samples in
  // [min_ms, max_ms] (stale markers kept), one series at a time.
  absl::Status ForEachSelectedSeries(const VectorSelector& sel, int64_t min_ms, int64_t max_ms,
                                     const RangeSeriesFn& fn);

  absl::StatusOr<Value> EvalVectorSelector(const VectorSelector& sel, const Steps& steps, bool timestamps);
  absl::StatusOr<Value> EvalCall(const Call& call, const Steps& steps);
  absl::StatusOr<Value> EvalRangeFunction(const Call& call, const Steps& steps);
  absl::StatusOr<Value> EvalAggregate(const Aggregate& agg, const Steps& steps);
  absl::StatusOr<Value> EvalBinary(const Binary& bin, const Steps& steps);
  absl::StatusOr<Value> EvalVectorBinary(const Binary& bin, Value lhs, Value rhs, const Steps& steps);
  absl::StatusOr<Value> EvalSetBinary(const Binary& bin, Value lhs, Value rhs, const Steps& steps);

  // Where a selector with this `@` and offset reads at time t.
  int64_t RefTime(const AtModifier& at, int64_t offset_ms, int64_t t) const;
  // The window ends (ref times) the steps need: the first and the last.
  void RefRange(const AtModifier& at, int64_t offset_ms, const Steps& steps, int64_t* min_ref, int64_t* max_ref) const;

  VSeries NewSeries(Labels labels, size_t n) const;

  storage::SeriesStore* store_;
  const EngineOptions& options_;
  const QueryParams& params_;
  QueryStats* stats_;
  uint64_t charged_ = 0;
  uint64_t polls_ = 0;
};

}  // namespace sheaf::promql::internal

#endif  // SHEAF_PROMQL_EVALUATOR_H_
