// Label matchers (=, !=, =~, !~) with Prometheus semantics, and a parser
// for selectors such as `node_cpu_seconds_total{mode!="idle",host=~"web-.*"}`.
#ifndef SHEAF_MODEL_MATCHER_H_
#define SHEAF_MODEL_MATCHER_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "model/types.h"

namespace re2 {
class RE2;
}

namespace sheaf::model {

// Immutable and cheap to copy; safe to use from many threads.
class Matcher {
 public:
  enum class Op { kEqual, kNotEqual, kRegex, kNotRegex };

  // Regexes are RE2 syntax (linear time: a hostile query cannot hang the
  // daemon), fully anchored as in Prometheus. INVALID_ARGUMENT if the
  // regex does not compile.
  static absl::StatusOr<Matcher> Create(Op op, std::string name, std::string value);

  // A missing label has the value "" (so `{x=""}` matches series without x).
  bool Matches(std::string_view value) const;
  bool MatchesEmpty() const { return Matches(""); }

  Op op() const { return op_; }
  const std::string& name() const { return name_; }
  const std::string& value() const { return value_; }
  std::string ToString() const;

 private:
  Matcher(Op op, std::string name, std::string value, std::shared_ptr<const re2::RE2> re)
      : op_(op), name_(std::move(name)), value_(std::move(value)), re_(std::move(re)) {}

  Op op_;
  std::string name_;
  std::string value_;
  std::shared_ptr<const re2::RE2> re_;  // set for kRegex and kNotRegex
};

// True if every matcher accepts `labels` (REQUIRES: canonical labels).
bool MatchesAll(const std::vector<Matcher>& matchers, const Labels& labels);

// Parses `metric`, `{a="b"}` or `metric{a="b", c=~"d"}`. Values use
// Prometheus string escapes (\" \\ \n \t). INVALID_ARGUMENT with the
// position of the problem otherwise.
absl::StatusOr<std::vector<Matcher>> ParseSelector(std::string_view selector);

}  // namespace sheaf::model

#endif  // SHEAF_MODEL_MATCHER_H_
