// The PromQL syntax tree, as Prometheus 2.42's parser builds it: every node
// knows its value type (as Prometheus' type checker computes it) and where
// it starts in the query. Format() prints canonical PromQL, the text
// Prometheus' printer (and /api/v1/format_query) writes.
#ifndef SHEAF_PROMQL_AST_H_
#define SHEAF_PROMQL_AST_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/matcher.h"

namespace sheaf::promql {

enum class ValueType { kNone, kScalar, kVector, kMatrix, kString };
// "scalar", "instant vector", "range vector", "string" (Prometheus' words).
std::string_view ValueTypeName(ValueType type);

// Where a node starts: byte offset and 1-based line and column (bytes).
struct Position {
  int offset = 0;
  int line = 1;
  int column = 1;
};

enum class BinaryOp {
  kAdd,
  kSub,
  kMul,
  kDiv,
  kMod,
  kPow,
  kAtan2,
  kEql,
  kNeq,
  kLss,
  kLte,
  kGtr,
  kGte,
  kAnd,
  kOr,
  kUnless,
};
std::string_view BinaryOpName(BinaryOp op);  // "+", "==", "and", "atan2", ...
bool IsComparison(BinaryOp op);
bool IsSetOperator(BinaryOp op);

enum class AggregateOp {
  kSum,
  kAvg,
  kCount,
  kMin,
  kMax,
  kGroup,
  kStddev,
  kStdvar,
  kTopk,
  kBottomk,
  kCountValues,
  kQuantile,
};
std::string_view AggregateOpName(AggregateOp op);  // "sum", "count_values", ...
// topk, bottomk, quantile and count_values take a parameter first.
bool AggregateTakesParam(AggregateOp op);
// Case-insensitive, as Prometheus' keywords are.
std::optional<AggregateOp> LookupAggregateOp(std::string_view name);

// The `@` modifier: none, a timestamp, `start()` or `end()`.
struct AtModifier {
  enum class Kind { kNone, kTimestamp, kStart, kEnd };
  Kind kind = Kind::kNone;
  int64_t timestamp_ms = 0;  // for kTimestamp
  bool IsSet() const { return kind != Kind::kNone; }
};

// A function of the PromQL function table.
struct Function {
  std::string_view name;
  std::vector<ValueType> arg_types;
  // 0: exactly arg_types; n > 0: the last argument is optional, up to n of
  // it; -1: the last argument repeats any number of times (label_join).
  int variadic;
  ValueType return_type;
};
// nullptr for an unknown name (function names are case-sensitive).
const Function* LookupFunction(std::string_view name);

enum class NodeKind {
  kNumberLiteral,
  kStringLiteral,
  kVectorSelector,
  kMatrixSelector,
  kSubquery,
  kCall,
  kAggregate,
  kBinary,
  kUnary,
  kParen,
};

struct Expr {
  explicit Expr(NodeKind k) : kind(k) {}
  virtual ~Expr() = default;
  Expr(const Expr&) = delete;
  Expr& operator=(const Expr&) = delete;

  virtual ValueType type() const = 0;
  template <typename T>
  const T& As() const {
    return static_cast<const T&>(*this);
  }
  template <typename T>
  T& As() {
    return static_cast<T&>(*this);
  }

  const NodeKind kind;
  Position pos;
};
using ExprPtr = std::unique_ptr<Expr>;

struct NumberLiteral : Expr {
  static constexpr NodeKind kKind = NodeKind::kNumberLiteral;
  NumberLiteral() : Expr(kKind) {}
  ValueType type() const override { return ValueType::kScalar; }
  double value = 0;
};

struct StringLiteral : Expr {
  static constexpr NodeKind kKind = NodeKind::kStringLiteral;
  StringLiteral() : Expr(kKind) {}
  ValueType type() const override { return ValueType::kString; }
  std::string value;  // unquoted
};

struct VectorSelector : Expr {
  static constexpr NodeKind kKind = NodeKind::kVectorSelector;
  VectorSelector() : Expr(kKind) {}
  ValueType type() const override { return ValueType::kVector; }
  std::string name;  // "" for `{__name__="x"}` or a selector without a name
  // Every matcher, including `__name__="name"` when there is a name.
  std::vector<model::Matcher> matchers;
  int64_t offset_ms = 0;  // may be negative
  AtModifier at;
};

// `selector[range]`; its offset and `@` are the selector's (as in Prometheus).
struct MatrixSelector : Expr {
  static constexpr NodeKind kKind = NodeKind::kMatrixSelector;
  MatrixSelector() : Expr(kKind) {}
  ValueType type() const override { return ValueType::kMatrix; }
  std::unique_ptr<VectorSelector> selector;
  int64_t range_ms = 0;
};

struct Subquery : Expr {
  static constexpr NodeKind kKind = NodeKind::kSubquery;
  Subquery() : Expr(kKind) {}
  ValueType type() const override { return ValueType::kMatrix; }
  ExprPtr expr;
  int64_t range_ms = 0;
  int64_t step_ms = 0;  // 0: the evaluation's default step (`[5m:]`)
  int64_t offset_ms = 0;
  AtModifier at;
};

struct Call : Expr {
  static constexpr NodeKind kKind = NodeKind::kCall;
  Call() : Expr(kKind) {}
  ValueType type() const override { return func->return_type; }
  const Function* func = nullptr;
  std::vector<ExprPtr> args;
};

struct Aggregate : Expr {
  static constexpr NodeKind kKind = NodeKind::kAggregate;
  Aggregate() : Expr(kKind) {}
  ValueType type() const override { return ValueType::kVector; }
  AggregateOp op = AggregateOp::kSum;
  ExprPtr expr;
  ExprPtr param;  // topk, bottomk, quantile, count_values
  std::vector<std::string> grouping;
  bool without = false;
};

enum class Cardinality { kOneToOne, kManyToOne, kOneToMany, kManyToMany };

struct VectorMatching {
  Cardinality card = Cardinality::kOneToOne;
  bool on = false;                           // on(...) rather than ignoring(...)
  std::vector<std::string> matching_labels;  // the on/ignoring labels
  std::vector<std::string> include;          // group_left/group_right labels
};

struct Binary : Expr {
  static constexpr NodeKind kKind = NodeKind::kBinary;
  Binary() : Expr(kKind) {}
  ValueType type() const override {
    return lhs->type() == ValueType::kScalar && rhs->type() == ValueType::kScalar ? ValueType::kScalar
                                                                                  : ValueType::kVector;
  }
  BinaryOp op = BinaryOp::kAdd;
  ExprPtr lhs;
  ExprPtr rhs;
  bool return_bool = false;
  // Set iff both sides are instant vectors (set operators: many-to-many).
  std::optional<VectorMatching> matching;
};

struct Unary : Expr {
  static constexpr NodeKind kKind = NodeKind::kUnary;
  Unary() : Expr(kKind) {}
  ValueType type() const override { return expr->type(); }
  bool negate = true;  // `-x`; false for `+x`
  ExprPtr expr;
};

struct Paren : Expr {
  static constexpr NodeKind kKind = NodeKind::kParen;
  Paren() : Expr(kKind) {}
  ValueType type() const override { return expr->type(); }
  ExprPtr expr;
};

// Canonical PromQL, as Prometheus prints it: `sum by (job) (rate(x[5m]))`,
// `a + on (b) group_left () c`, `x{a="b",c=~"d"} @ 100.000 offset 5m`.
std::string Format(const Expr& expr);
// A PromQL duration as Prometheus prints it: "1h30m", "1d", "2w", "0s".
std::string FormatDuration(int64_t ms);
// A number as Prometheus prints it (Go's %v): "1", "0.5", "1e+06", "+Inf", "NaN".
std::string FormatNumber(double value);
// A double-quoted string with Go escapes (Go's strconv.Quote).
std::string QuoteString(std::string_view s);

}  // namespace sheaf::promql

#endif  // SHEAF_PROMQL_AST_H_
