// Engine::Query: checks the request, evaluates the tree and shapes the
// answer as Prometheus does.
#include "promql/engine.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cstring>

#include "promql/evaluator.h"
#include "promql/parser.h"

namespace sheaf::promql {
namespace {

// An instant query keeps the order of these; everything else is sorted.
bool OrdersItsAnswer(const Expr& e) {
  const Expr* p = &e;
  while (p->kind == NodeKind::kParen) p = p->As<Paren>().expr.get();
  if (p->kind == NodeKind::kCall) {
    std::string_view name = p->As<Call>().func->name;
    return name == "sort" || name == "sort_desc";
  }
  if (p->kind == NodeKind::kAggregate) {
    AggregateOp op = p->As<Aggregate>().op;
    return op == AggregateOp::kTopk || op == AggregateOp::kBottomk;
  }
  return false;
}

// The evaluation times of a query, or the error a bad range gets.
absl::StatusOr<internal::Steps> StepsOf(const Expr& expr, const QueryParams& params, const EngineLimits& limits) {
  internal::Steps steps;
  steps.start = params.start_ms;
  steps.end = params.step_ms > 0 ? params.end_ms : params.start_ms;
  if (params.step_ms > 0) {
    if (params.end_ms < params.start_ms) {
      return absl::InvalidArgumentError("end timestamp must not be before start time");
    }
    // As Prometheus: (end - start) / step may be at most the limit (so a
    // series has at most limit + 1 points).
    uint64_t n = static_cast<uint64_t>((params.end_ms - params.start_ms) / params.step_ms) + 1;
    if (n - 1 > limits.max_steps) {
      return absl::InvalidArgumentError(
          fmt::format("exceeded maximum resolution of {} points per timeseries. Try decreasing the query "
                      "resolution (a larger step)",
                      limits.max_steps));
    }
    steps.step = params.step_ms;
    steps.n = static_cast<size_t>(n);
    if (expr.type() != ValueType::kScalar && expr.type() != ValueType::kVector) {
      return absl::InvalidArgumentError(
          fmt::format("invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                      ValueTypeName(expr.type())));
    }
  }
  return steps;
}

// A series of the answer from its values at the steps (none if it has no point).
ResultSeries ToResult(internal::VSeries&& v, const internal::Steps& steps) {
  ResultSeries s;
  s.labels = std::move(v.labels);
  for (size_t i = 0; i < steps.n; ++i) {
    if (v.has[i]) s.points.push_back(model::Sample{steps.At(i), v.v[i]});
  }
  return s;
}

// Adds a streamed series' points to the answer's count; RESOURCE_EXHAUSTED
// past the limit (the whole answer's count is not known yet).
absl::Status CountPoints(const ResultSeries& s, const EngineLimits& limits, QueryStats* stats) {
  stats->points_returned += s.points.size();
  if (stats->points_returned <= limits.max_points) return absl::OkStatus();
  return absl::ResourceExhaustedError(
      fmt::format("the answer has more than {} points (the query max-points limit); use a larger step or aggregate",
                  limits.max_points));
}

}  // namespace

bool IsExecutionError(const absl::Status& status) { return status.GetPayload("sheaf.promql/execution").has_value(); }

Engine::Engine(storage::SeriesStore* store, EngineOptions options) : store_(store), options_(std::move(options)) {}

absl::StatusOr<QueryResult> Engine::Query(std::string_view query, const QueryParams& params) const {
  auto expr = Parse(query);
  if (!expr.ok()) return expr.status();
  return Query(**expr, params);
}

absl::StatusOr<QueryResult> Engine::Query(std::string_view query, const QueryParams& params,
                                          const SeriesSink& sink) const {
  auto expr = Parse(query);
  if (!expr.ok()) return expr.status();
  const bool instant = params.step_ms <= 0;
  if (!internal::Evaluator::CanStream(**expr)) {
    auto result = Query(**expr, params);
    if (!result.ok()) return result.status();
    for (ResultSeries& s : result->series) {
      if (auto st = sink(result->type, std::move(s)); !st.ok()) return st;
    }
    result->series.clear();
    return result;
  }
  auto steps = StepsOf(**expr, params, options_.limits);
  if (!steps.ok()) return steps.status();
  QueryResult result;
  result.type = instant ? ValueType::kVector : ValueType::kMatrix;
  internal::Evaluator ev(store_, options_, params, &result.stats);
  absl::Status s = ev.EvalStreaming(**expr, *steps, [&](internal::VSeries&& v) -> absl::Status {
    ResultSeries out = ToResult(std::move(v), *steps);
    if (out.points.empty()) return absl::OkStatus();
    if (auto st = CountPoints(out, options_.limits, &result.stats); !st.ok()) return st;
    return sink(result.type, std::move(out));
  });
  if (!s.ok()) return s;
  return result;
}

absl::StatusOr<QueryResult> Engine::Query(const Expr& expr, const QueryParams& params) const {
  auto steps_or = StepsOf(expr, params, options_.limits);
  if (!steps_or.ok()) return steps_or.status();
  const internal::Steps& steps = *steps_or;

  QueryResult result;
  internal::Evaluator ev(store_, options_, params, &result.stats);
  const bool instant = params.step_ms <= 0;
  if (expr.type() == ValueType::kMatrix) {
    auto series = ev.EvalRangeAt(expr, params.start_ms);
    if (!series.ok()) return series.status();
    result.type = ValueType::kMatrix;
    result.series = *std::move(series);
    std::sort(result.series.begin(), result.series.end(),
              [](const ResultSeries& a, const ResultSeries& b) { return a.labels < b.labels; });
  } else {
    auto value = ev.Eval(expr, steps);
    if (!value.ok()) return value.status();
    switch (value->type) {
      case ValueType::kString:
        result.type = ValueType::kString;
        result.string_value = std::move(value->str);
        break;
      case ValueType::kScalar: {
        result.type = instant ? ValueType::kScalar : ValueType::kMatrix;
        ResultSeries s;
        for (size_t i = 0; i < steps.n; ++i) s.points.push_back(model::Sample{steps.At(i), value->scalar[i]});
        result.series.push_back(std::move(s));
        break;
      }
      case ValueType::kVector: {
        result.type = instant ? ValueType::kVector : ValueType::kMatrix;
        if (!instant || !OrdersItsAnswer(expr)) internal::SortByLabels(value->vec);
        for (internal::VSeries& v : value->vec) {
          ResultSeries s = ToResult(std::move(v), steps);
          if (!s.points.empty()) result.series.push_back(std::move(s));
        }
        break;
      }
      default:
        return absl::InternalError("evaluation gave no value");
    }
  }
  for (const ResultSeries& s : result.series) result.stats.points_returned += s.points.size();
  if (result.stats.points_returned > options_.limits.max_points) {
    return absl::ResourceExhaustedError(
        fmt::format("the answer has {} points, more than {} (the query max-points limit); use a larger step or "
                    "aggregate",
                    result.stats.points_returned, options_.limits.max_points));
  }
  return result;
}

}  // namespace sheaf::promql
