// The PromQL evaluator: instant and range queries over the store, with
// Prometheus 2.42's semantics (docs/QUERY.md lists where sheaf differs).
//
// Reads storage only through storage::SeriesStore. A query holds its
// intermediate results in memory, bounded by EngineLimits::max_samples; a
// selector's raw samples are read one series at a time, so a range
// function over a long range costs one series' samples at once, not all.
// Selectors whose answer a rollup gives exactly (aligned steps, functions
// a rollup window can answer) read rollup windows instead of raw samples.
#ifndef SHEAF_PROMQL_ENGINE_H_
#define SHEAF_PROMQL_ENGINE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/types.h"
#include "model/validation.h"
#include "promql/ast.h"
#include "storage/types.h"

namespace sheaf::storage {
class SeriesStore;
}

namespace sheaf::promql {

// Every limit answers RESOURCE_EXHAUSTED naming it and its value.
struct EngineLimits {
  // Series read from the store, over all selectors of one query.
  uint64_t max_series = 200'000;
  // Raw samples and rollup windows read, plus points held by intermediate
  // results (Prometheus' --query.max-samples counts the latter only).
  uint64_t max_samples = 50'000'000;
  // Points in the answer.
  uint64_t max_points = 5'000'000;
  // Steps of a range query, (end - start) / step, as Prometheus' 11,000
  // (a series has at most one point more).
  uint64_t max_steps = 11'000;
};

struct EngineOptions {
  // How far back a selector looks for a sample at each step.
  int64_t lookback_ms = 5 * 60'000;
  // The step of a subquery without one (`x[1h:]`), as Prometheus'
  // global evaluation_interval default.
  int64_t default_subquery_step_ms = 60'000;
  // Read rollup windows where they give the same answer as raw samples:
  // kAuto where some of the range is already rolled up (recent windows are
  // computed from raw samples, which costs more than reading those),
  // kAlways wherever the steps allow (tests), kNever.
  enum class Rollups { kAuto, kAlways, kNever };
  Rollups rollups = Rollups::kAuto;
  // Threads that read a selector's raw samples ahead of the evaluation
  // (which is single-threaded): reading and decoding is most of a query's
  // work. 1 reads on the query's own thread.
  size_t read_threads = 2;
  EngineLimits limits;
};

struct QueryParams {
  storage::TenantId tenant = storage::kDefaultTenant;
  // A range query: start, start + step, ... <= end. An instant query:
  // step 0 and start == end (the query's time).
  int64_t start_ms = 0;
  int64_t end_ms = 0;
  int64_t step_ms = 0;
  // Called often while evaluating (between series, every few thousand
  // points); a non-OK status stops the evaluation and is its result. This
  // is how cancellation and deadlines reach the evaluation itself.
  std::function<absl::Status()> check;
};

struct QueryStats {
  uint64_t series_selected = 0;
  uint64_t samples_read = 0;  // raw samples decoded
  uint64_t windows_read = 0;  // rollup windows read instead
  uint64_t points_returned = 0;
  // Resolution of the rollup the selectors read; 0 when some read raw
  // samples (the finest wins when selectors differ).
  int64_t rollup_resolution_ms = 0;
};

struct ResultSeries {
  model::Labels labels;
  std::vector<model::Sample> points;  // time order; times in ms
};

struct QueryResult {
  // kMatrix (range queries, and range vectors at an instant), kVector,
  // kScalar (one series without labels, one point), kString.
  ValueType type = ValueType::kNone;
  // Sorted by labels, except for an instant query whose outermost
  // operation orders its answer (sort, sort_desc, topk, bottomk).
  std::vector<ResultSeries> series;
  std::string string_value;
  std::vector<std::string> warnings;
  QueryStats stats;
};

// Receives an answer's series one at a time, in the answer's order, with
// the answer's type (the same for every call). An error it returns stops
// the evaluation, and Query returns that error.
using SeriesSink = std::function<absl::Status(ValueType type, ResultSeries&& series)>;

class Engine {
 public:
  // `store` must outlive the engine. Thread-safe: queries run in parallel.
  Engine(storage::SeriesStore* store, EngineOptions options);

  // Parses and evaluates. INVALID_ARGUMENT for a bad query (with the
  // position) or one the data makes impossible (IsExecutionError), e.g.
  // many-to-many matching; RESOURCE_EXHAUSTED for a limit; whatever
  // params.check returned when it stopped the evaluation.
  absl::StatusOr<QueryResult> Query(std::string_view query, const QueryParams& params) const;
  absl::StatusOr<QueryResult> Query(const Expr& expr, const QueryParams& params) const;

  // The same answer, its series handed to `sink` instead of kept in
  // result.series (left empty). A selector, or a range function over one
  // (`rate(x[5m])`), streams: each series goes to the sink as soon as it
  // is complete, so memory holds a few series however many the answer
  // has. Other expressions (aggregations, joins: their series complete
  // only at the end) are evaluated whole, then handed over. The max-points
  // limit is checked as series go out: an answer over it fails after the
  // series before the limit were handed over.
  absl::StatusOr<QueryResult> Query(std::string_view query, const QueryParams& params, const SeriesSink& sink) const;

  const EngineOptions& options() const { return options_; }

 private:
  storage::SeriesStore* store_;
  EngineOptions options_;
};

// True for an error the data caused, not the query's text (Prometheus'
// "execution" errors: HTTP 422 rather than 400).
bool IsExecutionError(const absl::Status& status);

// The stale marker Prometheus writes when a series disappears (a NaN with
// one exact bit pattern; other NaNs are values): the model's definition.
using model::IsStaleMarker;

}  // namespace sheaf::promql

#endif  // SHEAF_PROMQL_ENGINE_H_
