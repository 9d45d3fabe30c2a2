// The PromQL parser: recursive descent with precedence climbing, for PromQL
// as Prometheus 2.42 parses it, with Prometheus' type checks (docs/QUERY.md).
#ifndef SHEAF_PROMQL_PARSER_H_
#define SHEAF_PROMQL_PARSER_H_

#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "model/matcher.h"
#include "promql/ast.h"

namespace sheaf::promql {

// Limits that keep a hostile query from exhausting the stack (Prometheus
// has none): at most 256 levels of parentheses, calls, aggregations and
// unary operators, and a tree at most 1024 deep (binary operators count).
inline constexpr int kMaxParseDepth = 256;
inline constexpr int kMaxTreeDepth = 1024;

// The tree of `query`, or INVALID_ARGUMENT "LINE:COL: message" (1-based,
// columns in bytes), e.g. `1:9: unexpected ")"; expected a duration`.
absl::StatusOr<ExprPtr> Parse(std::string_view query);

// A series selector (`foo{a="b"}`, `{__name__=~"x.*"}`) as the match[]
// parameters of the series, labels and federation APIs take it: the
// PromQL grammar and checks, but nothing else than a plain selector.
// Supersedes model::ParseSelector's grammar.
absl::StatusOr<std::vector<model::Matcher>> ParseMetricSelector(std::string_view selector);

// A PromQL duration ("1h30m", "5m", "500ms", "1y"; units in decreasing
// order, each at most once) in milliseconds. INVALID_ARGUMENT
// `not a valid duration string: "5s5m"` otherwise. "0s" is 0.
absl::StatusOr<int64_t> ParsePromDuration(std::string_view text);

}  // namespace sheaf::promql

#endif  // SHEAF_PROMQL_PARSER_H_
