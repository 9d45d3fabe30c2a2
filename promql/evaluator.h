// Private to promql/: the evaluator of one query. Not thread-safe; one per
// query (Engine::Query makes it).
#ifndef SHEAF_PROMQL_EVALUATOR_H_
#define SHEAF_PROMQL_EVALUATOR_H_

#include <functional>

#include "promql/eval_internal.h"
#include "storage/rollup.h"

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

  // Whether EvalStreaming can hand out `e`'s series one by one, each as
  // soon as it is complete, in the order of the whole answer (labels):
  // a vector selector, or a range function of a matrix selector whose
  // series keep distinct, ordered labels (it keeps __name__, or the
  // selector names one metric).
  static bool CanStream(const Expr& e);
  // Evaluates `e` (CanStream) handing each series with a value to `sink`
  // as it completes, in label order; an error from the sink stops the
  // evaluation. Series read through rollups complete together, at the end.
  using VSeriesSink = std::function<absl::Status(VSeries&& series)>;
  absl::Status EvalStreaming(const Expr& e, const Steps& steps, const VSeriesSink& sink);

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

  // One series' values at every step from its samples (time order, stale
  // markers kept): sets v[i] and has[i] where step i has a value, and
  // returns whether any has. Runs on the reader threads, several series at
  // once: it may only read shared state.
  using StepFn = std::function<bool(std::span<const Sample> samples, double* v, uint8_t* has)>;
  // The selector's series (label order) that have a value at some step,
  // with their values computed by `fn` from their samples in [min_ms,
  // max_ms] on the reader threads — so series-local work (a range function
  // at every step) runs on every core. Appended to *out, named with or
  // without __name__.
  // With a sink, the series go to it instead of *out, as each completes.
  absl::Status MapSelectedSeries(const VectorSelector& sel, int64_t min_ms, int64_t max_ms, size_t steps,
                                 bool keep_name, const StepFn& fn, std::vector<VSeries>* out,
                                 const VSeriesSink* sink = nullptr);
  // The same for one series whose samples are at hand, on this thread.
  absl::Status AddStepSeries(const Labels& labels, bool keep_name, std::span<const Sample> samples, size_t steps,
                             const StepFn& fn, std::vector<VSeries>* out);

  struct Selected {
    Labels labels;
    storage::SeriesId id;
    model::MetricType type;
  };
  // The selector's series, sorted by labels; counts them against the limit.
  absl::StatusOr<std::vector<Selected>> Select(const VectorSelector& sel);
  // One series' raw samples in [min_ms, max_ms], time order, counted.
  absl::Status ReadRaw(storage::SeriesId id, int64_t min_ms, int64_t max_ms, std::vector<Sample>* samples);
  absl::Status CountRaw(const std::vector<Sample>& samples);  // stats and the samples limit
  // One series' rollup windows starting in [min_ms, max_ms], counted. False
  // when a window holds a NaN (the caller reads raw samples instead).
  using Window = std::pair<int64_t, storage::Aggregate>;
  absl::StatusOr<bool> ReadWindows(storage::SeriesId id, int64_t resolution, int64_t min_ms, int64_t max_ms,
                                   std::vector<Window>* windows);
  // The coarsest rollup resolution whose windows give exactly the raw
  // answer for a selector read at these steps (every window edge a
  // multiple of it), or 0.
  int64_t PickRollup(const AtModifier& at, int64_t offset_ms, int64_t range_ms, const Steps& steps) const;
  void NoteResolution(int64_t resolution);

  // `sink`: see MapSelectedSeries.
  absl::StatusOr<Value> EvalVectorSelector(const VectorSelector& sel, const Steps& steps, bool timestamps,
                                           const VSeriesSink* sink = nullptr);
  absl::StatusOr<Value> EvalCall(const Call& call, const Steps& steps);
  absl::StatusOr<Value> EvalRangeFunction(const Call& call, const Steps& steps, const VSeriesSink* sink = nullptr);
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
  bool resolution_noted_ = false;
  uint64_t polls_ = 0;
};

}  // namespace sheaf::promql::internal

#endif  // SHEAF_PROMQL_EVALUATOR_H_
