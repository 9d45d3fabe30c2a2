// Fuzz target "promql": the PromQL parser (promql/parser.h) on any text,
// as the query API hands it over, plus its selector and duration parsers.
// Property: an accepted query prints (promql::Format) as canonical PromQL
// that parses again and prints the same.
#include <string>

#include "promql/ast.h"
#include "promql/parser.h"
#include "tests/fuzz/targets.h"

namespace sheaf::fuzz {

int FuzzPromql(const uint8_t* data, size_t size) {
  const std::string_view text = AsText(data, size);
  (void)promql::ParseMetricSelector(text);
  (void)promql::ParsePromDuration(text);
  auto expr = promql::Parse(text);
  if (!expr.ok()) return 0;
  const std::string printed = promql::Format(**expr);
  auto again = promql::Parse(printed);
  CheckOrDie(again.ok(), "Format() printed a query that does not parse again");
  CheckOrDie(promql::Format(**again) == printed, "Format() is not stable across a reparse");
  return 0;
}

}  // namespace sheaf::fuzz
