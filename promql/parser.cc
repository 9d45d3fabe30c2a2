#include "promql/parser.h"

#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "fmt/format.h"
#include "promql/lexer.h"

namespace sheaf::promql {

#define PROMQL_TRY(var, expr)                   \
  auto var##_or = (expr);                       \
  if (!var##_or.ok()) return var##_or.status(); \
  auto var = *std::move(var##_or)

#define PROMQL_RETURN_IF_ERROR(expr) \
  do {                               \
    absl::Status s_ = (expr);        \
    if (!s_.ok()) return s_;         \
  } while (0)

absl::StatusOr<int64_t> ParsePromDuration(std::string_view text) {
  struct Unit {
    std::string_view name;
    int64_t ms;
  };
  static constexpr Unit kUnits[] = {{"y", 365LL * 24 * 3600 * 1000},
                                    {"w", 7LL * 24 * 3600 * 1000},
                                    {"d", 24LL * 3600 * 1000},
                                    {"h", 3600LL * 1000},
                                    {"m", 60LL * 1000},
                                    {"s", 1000},
                                    {"ms", 1}};
  auto invalid = [&] {
    return absl::InvalidArgumentError(fmt::format("not a valid duration string: {}", QuoteString(text)));
  };
  if (text.empty()) return absl::InvalidArgumentError("empty duration string");
  if (text == "0") return 0;
  int64_t total = 0;
  int next_unit = 0;  // units must come in decreasing order, each once
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    uint64_t n = 0;
    bool too_big = false;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      n = n * 10 + static_cast<uint64_t>(text[i] - '0');
      if (n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) too_big = true;
      ++i;
    }
    if (i == start || i == text.size()) return invalid();
    int unit = -1;
    if (text.substr(i, 2) == "ms") {
      unit = 6;
    } else {
      for (int u = 0; u < 6; ++u) {
        if (text[i] == kUnits[u].name[0]) unit = u;
      }
    }
    if (unit < next_unit) return invalid();
    i += kUnits[unit].name.size();
    next_unit = unit + 1;
    int64_t mult = kUnits[unit].ms;
    if (too_big || static_cast<int64_t>(n) > (std::numeric_limits<int64_t>::max() - total) / mult) {
      return absl::InvalidArgumentError("duration out of range");
    }
    total += static_cast<int64_t>(n) * mult;
  }
  return total;
}

namespace {

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char c = a[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != b[i]) return false;
  }
  return true;
}

int Precedence(BinaryOp op) {
  switch (op) {
    case BinaryOp::kOr:
      return 1;
    case BinaryOp::kAnd:
    case BinaryOp::kUnless:
      return 2;
    case BinaryOp::kEql:
    case BinaryOp::kNeq:
    case BinaryOp::kLss:
    case BinaryOp::kLte:
    case BinaryOp::kGtr:
    case BinaryOp::kGte:
      return 3;
    case BinaryOp::kAdd:
    case BinaryOp::kSub:
      return 4;
    case BinaryOp::kMul:
    case BinaryOp::kDiv:
    case BinaryOp::kMod:
    case BinaryOp::kAtan2:
      return 5;
    case BinaryOp::kPow:
      return 6;
  }
  return 0;
}
constexpr int kPowPrecedence = 6;

constexpr char kModifierTarget[] =
    "modifier must be preceded by an instant vector selector or range vector selector or a subquery";

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : toks_(std::move(tokens)) {}

  absl::StatusOr<ExprPtr> ParseQuery() {
    if (Peek().kind == TokenKind::kEof) return Err(Peek().pos, "no expression found in input");
    PROMQL_TRY(expr, ParseExpr(0));
    if (Peek().kind != TokenKind::kEof) return Unexpected(Peek(), "", "an operator or end of input");
    return expr;
  }

 private:
  const Token& Peek(size_t ahead = 0) const {
    size_t i = std::min(pos_ + ahead, toks_.size() - 1);
    return toks_[i];
  }
  const Token& Next() {
    const Token& t = toks_[pos_];
    if (pos_ + 1 < toks_.size()) ++pos_;
    return t;
  }
  bool IsKeyword(const Token& t, std::string_view keyword) const {
    return t.kind == TokenKind::kIdentifier && EqualsIgnoreCase(t.text, keyword);
  }

  [[gnu::noinline]] static absl::Status Err(Position p, std::string_view message) {
    std::string text = fmt::format("{}:{}: ", p.line, p.column);
    text += message;
    return absl::InvalidArgumentError(text);
  }
  [[gnu::noinline]] static absl::Status Unexpected(const Token& t, std::string_view context,
                                                   std::string_view expected) {
    std::string msg = "unexpected ";
    msg += DescribeToken(t);
    if (!context.empty()) {
      msg += " in ";
      msg += context;
    }
    if (!expected.empty()) {
      msg += "; expected ";
      msg += expected;
    }
    return Err(t.pos, msg);
  }

  std::optional<BinaryOp> BinaryOpAt(const Token& t) const {
    switch (t.kind) {
      case TokenKind::kAdd:
        return BinaryOp::kAdd;
      case TokenKind::kSub:
        return BinaryOp::kSub;
      case TokenKind::kMul:
        return BinaryOp::kMul;
      case TokenKind::kDiv:
        return BinaryOp::kDiv;
      case TokenKind::kMod:
        return BinaryOp::kMod;
      case TokenKind::kPow:
        return BinaryOp::kPow;
      case TokenKind::kEql:
        return BinaryOp::kEql;
      case TokenKind::kNeq:
        return BinaryOp::kNeq;
      case TokenKind::kLss:
        return BinaryOp::kLss;
      case TokenKind::kLte:
        return BinaryOp::kLte;
      case TokenKind::kGtr:
        return BinaryOp::kGtr;
      case TokenKind::kGte:
        return BinaryOp::kGte;
      case TokenKind::kIdentifier:
        if (IsKeyword(t, "and")) return BinaryOp::kAnd;
        if (IsKeyword(t, "or")) return BinaryOp::kOr;
        if (IsKeyword(t, "unless")) return BinaryOp::kUnless;
        if (IsKeyword(t, "atan2")) return BinaryOp::kAtan2;
        return std::nullopt;
      default:
        return std::nullopt;
    }
  }

  // Guards every recursion: parentheses, calls, unary operators.
  struct DepthGuard {
    explicit DepthGuard(int& d) : depth(d) { ++depth; }
    ~DepthGuard() { --depth; }
    int& depth;
  };
  absl::Status CheckDepth(const Token& t) const {
    if (depth_ > kMaxParseDepth || depth_ + chain_depth_ > kMaxTreeDepth) {
      return Err(t.pos, fmt::format("expression nested too deeply (more than {} levels, or a tree deeper than {})",
                                    kMaxParseDepth, kMaxTreeDepth));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<ExprPtr> ParseExpr(int min_prec) {
    DepthGuard guard(depth_);
    PROMQL_RETURN_IF_ERROR(CheckDepth(Peek()));
    PROMQL_TRY(lhs, ParseUnary());
    // Each operator of a chain deepens the tree by one: count it for the
    // right-hand sides parsed below, and give it back on return.
    int chain = 0;
    struct ChainGuard {
      int& depth;
      int& chain;
      ~ChainGuard() { depth -= chain; }
    } chain_guard{chain_depth_, chain};
    while (true) {
      std::optional<BinaryOp> op = BinaryOpAt(Peek());
      if (!op.has_value() || Precedence(*op) < min_prec) break;
      const Token& op_tok = Next();
      ++chain;
      ++chain_depth_;
      PROMQL_RETURN_IF_ERROR(CheckDepth(op_tok));
      auto bin = std::make_unique<Binary>();
      bin->op = *op;
      bin->pos = lhs->pos;
      if (IsKeyword(Peek(), "bool")) {
        Next();
        bin->return_bool = true;
      }
      VectorMatching vm;
      bool has_matching = false;
      if (IsKeyword(Peek(), "on") || IsKeyword(Peek(), "ignoring")) {
        has_matching = true;
        vm.on = IsKeyword(Next(), "on");
        PROMQL_TRY(labels, ParseLabelList());
        vm.matching_labels = std::move(labels);
        if (IsKeyword(Peek(), "group_left") || IsKeyword(Peek(), "group_right")) {
          vm.card = IsKeyword(Next(), "group_left") ? Cardinality::kManyToOne : Cardinality::kOneToMany;
          if (Peek().kind == TokenKind::kLParen) {
            PROMQL_TRY(include, ParseLabelList());
            vm.include = std::move(include);
          }
        }
      } else if (IsKeyword(Peek(), "group_left") || IsKeyword(Peek(), "group_right")) {
        return Unexpected(Peek(), "", "\"on\" or \"ignoring\" before it");
      }
      int next_min = *op == BinaryOp::kPow ? Precedence(*op) : Precedence(*op) + 1;
      PROMQL_TRY(rhs, ParseExpr(next_min));
      bin->lhs = std::move(lhs);
      bin->rhs = std::move(rhs);
      PROMQL_RETURN_IF_ERROR(CheckBinary(*bin, op_tok, has_matching ? std::optional(std::move(vm)) : std::nullopt));
      lhs = std::move(bin);
    }
    return lhs;
  }

  // Prometheus' checks on a binary expression, in its order.
  [[gnu::noinline]] absl::Status CheckBinary(Binary& b, const Token& op_tok, std::optional<VectorMatching> vm) {
    ValueType lt = b.lhs->type(), rt = b.rhs->type();
    if (b.return_bool && !IsComparison(b.op)) {
      return Err(op_tok.pos, "bool modifier can only be used on comparison operators");
    }
    if (IsComparison(b.op) && !b.return_bool && lt == ValueType::kScalar && rt == ValueType::kScalar) {
      return Err(op_tok.pos, "comparisons between scalars must use BOOL modifier");
    }
    if (vm.has_value() && vm->on) {
      for (const std::string& l1 : vm->matching_labels) {
        for (const std::string& l2 : vm->include) {
          if (l1 == l2) {
            return Err(op_tok.pos,
                       fmt::format("label {} must not occur in ON and GROUP clause at once", QuoteString(l1)));
          }
        }
      }
    }
    if (lt != ValueType::kScalar && lt != ValueType::kVector) {
      return Err(b.lhs->pos, "binary expression must contain only scalar and instant vector types");
    }
    if (rt != ValueType::kScalar && rt != ValueType::kVector) {
      return Err(b.rhs->pos, "binary expression must contain only scalar and instant vector types");
    }
    if (lt != ValueType::kVector || rt != ValueType::kVector) {
      if (vm.has_value() && (vm->on || !vm->matching_labels.empty())) {
        return Err(b.pos, "vector matching only allowed between instant vectors");
      }
      if (IsSetOperator(b.op)) {
        return Err(b.pos,
                   fmt::format("set operator \"{}\" not allowed in binary scalar expression", BinaryOpName(b.op)));
      }
      return absl::OkStatus();
    }
    if (!vm.has_value()) vm.emplace();
    if (IsSetOperator(b.op)) {
      if (vm->card == Cardinality::kOneToMany || vm->card == Cardinality::kManyToOne) {
        return Err(b.pos, fmt::format("no grouping allowed for \"{}\" operation", BinaryOpName(b.op)));
      }
      vm->card = Cardinality::kManyToMany;
    }
    b.matching = std::move(vm);
    return absl::OkStatus();
  }

  absl::StatusOr<ExprPtr> ParseUnary() {
    const Token& t = Peek();
    if (t.kind != TokenKind::kAdd && t.kind != TokenKind::kSub) {
      PROMQL_TRY(primary, ParsePrimary());
      return ParsePostfix(std::move(primary));
    }
    Next();
    PROMQL_TRY(operand, ParseExpr(kPowPrecedence));
    bool negate = t.kind == TokenKind::kSub;
    if (operand->kind == NodeKind::kNumberLiteral) {
      // As Prometheus: a sign folds into a number literal.
      if (negate) operand->As<NumberLiteral>().value *= -1;
      operand->pos = t.pos;
      return operand;
    }
    ValueType type = operand->type();
    if (type != ValueType::kScalar && type != ValueType::kVector) {
      return Err(t.pos, fmt::format("unary expression only allowed on expressions of type scalar or instant "
                                    "vector, got \"{}\"",
                                    ValueTypeName(type)));
    }
    auto u = std::make_unique<Unary>();
    u->pos = t.pos;
    u->negate = negate;
    u->expr = std::move(operand);
    return ExprPtr(std::move(u));
  }

  absl::StatusOr<ExprPtr> ParsePrimary() {
    const Token& t = Peek();
    switch (t.kind) {
      case TokenKind::kNumber: {
        Next();
        auto n = std::make_unique<NumberLiteral>();
        n->pos = t.pos;
        n->value = t.number;
        return ExprPtr(std::move(n));
      }
      case TokenKind::kString: {
        Next();
        auto s = std::make_unique<StringLiteral>();
        s->pos = t.pos;
        s->value = t.value;
        return ExprPtr(std::move(s));
      }
      case TokenKind::kLParen: {
        Next();
        PROMQL_TRY(inner, ParseExpr(0));
        if (Peek().kind != TokenKind::kRParen) {
          if (Peek().kind == TokenKind::kEof) return Err(t.pos, "unclosed left parenthesis");
          return Unexpected(Peek(), "", "\")\"");
        }
        Next();
        auto p = std::make_unique<Paren>();
        p->pos = t.pos;
        p->expr = std::move(inner);
        return ExprPtr(std::move(p));
      }
      case TokenKind::kLBrace:
        return ParseSelector("", t.pos);
      case TokenKind::kIdentifier: {
        if (IsKeyword(t, "inf") || IsKeyword(t, "nan")) {
          Next();
          auto n = std::make_unique<NumberLiteral>();
          n->pos = t.pos;
          n->value =
              IsKeyword(t, "inf") ? std::numeric_limits<double>::infinity() : std::numeric_limits<double>::quiet_NaN();
          return ExprPtr(std::move(n));
        }
        if (std::optional<AggregateOp> op = LookupAggregateOp(t.text)) return ParseAggregate(*op);
        if (Peek(1).kind == TokenKind::kLParen) return ParseCall();
        Next();
        return ParseSelector(std::string(t.text), t.pos);
      }
      default:
        return Unexpected(t, "", "an expression");
    }
  }

  [[gnu::noinline]] absl::StatusOr<ExprPtr> ParseSelector(std::string name, Position pos) {
    auto vs = std::make_unique<VectorSelector>();
    vs->pos = pos;
    vs->name = std::move(name);
    if (!vs->name.empty()) {
      PROMQL_TRY(m, model::Matcher::Create(model::Matcher::Op::kEqual, model::kMetricNameLabel, vs->name));
      vs->matchers.push_back(std::move(m));
    }
    if (Peek().kind == TokenKind::kLBrace) {
      Next();
      while (Peek().kind != TokenKind::kRBrace) {
        const Token& label = Peek();
        if (label.kind != TokenKind::kIdentifier || label.text.find(':') != std::string_view::npos) {
          return Unexpected(label, "label matching", "a label name or \"}\"");
        }
        Next();
        const Token& op_tok = Peek();
        model::Matcher::Op op;
        switch (op_tok.kind) {
          case TokenKind::kAssign:
            op = model::Matcher::Op::kEqual;
            break;
          case TokenKind::kNeq:
            op = model::Matcher::Op::kNotEqual;
            break;
          case TokenKind::kEqlRegex:
            op = model::Matcher::Op::kRegex;
            break;
          case TokenKind::kNeqRegex:
            op = model::Matcher::Op::kNotRegex;
            break;
          default:
            return Unexpected(op_tok, "label matching", "one of \"=\", \"!=\", \"=~\", \"!~\"");
        }
        Next();
        const Token& value = Peek();
        if (value.kind != TokenKind::kString) return Unexpected(value, "label matching", "a string");
        Next();
        auto m = model::Matcher::Create(op, std::string(label.text), value.value);
        if (!m.ok()) return Err(label.pos, std::string(m.status().message()));
        if (label.text == model::kMetricNameLabel && !vs->name.empty()) {
          return Err(pos, fmt::format("metric name must not be set twice: {} or {}", QuoteString(vs->name),
                                      QuoteString(value.value)));
        }
        vs->matchers.push_back(*std::move(m));
        if (Peek().kind == TokenKind::kComma) {
          Next();
        } else if (Peek().kind != TokenKind::kRBrace) {
          return Unexpected(Peek(), "label matching", "\",\" or \"}\"");
        }
      }
      Next();
    }
    bool non_empty = false;
    for (const model::Matcher& m : vs->matchers) non_empty = non_empty || !m.MatchesEmpty();
    if (!non_empty) return Err(pos, "vector selector must contain at least one non-empty matcher");
    return ExprPtr(std::move(vs));
  }

  // Reads a duration token (error: `unexpected X; expected a duration`).
  absl::StatusOr<int64_t> ParseDurationToken(std::string_view expected = "a duration") {
    const Token& t = Peek();
    if (t.kind != TokenKind::kDuration) return Unexpected(t, "", expected);
    Next();
    auto d = ParsePromDuration(t.text);
    if (!d.ok()) return Err(t.pos, std::string(d.status().message()));
    if (*d == 0) return Err(t.pos, "duration must be greater than 0");
    return *d;
  }

  [[gnu::noinline]] absl::StatusOr<ExprPtr> ParsePostfix(ExprPtr expr) {
    while (true) {
      const Token& t = Peek();
      if (t.kind == TokenKind::kLBracket) {
        PROMQL_TRY(e, ParseRange(std::move(expr)));
        expr = std::move(e);
      } else if (IsKeyword(t, "offset")) {
        Next();
        bool negative = false;
        if (Peek().kind == TokenKind::kSub) {
          Next();
          negative = true;
        }
        PROMQL_TRY(d, ParseDurationToken());
        int64_t* target = OffsetTarget(*expr);
        if (target == nullptr) return Err(t.pos, fmt::format("offset {}", kModifierTarget));
        if (*target != 0) return Err(t.pos, "offset may not be set multiple times");
        *target = negative ? -d : d;
      } else if (t.kind == TokenKind::kAt) {
        Next();
        PROMQL_TRY(at, ParseAtValue());
        AtModifier* target = AtTarget(*expr);
        if (target == nullptr) return Err(t.pos, fmt::format("@ {}", kModifierTarget));
        if (target->IsSet()) return Err(t.pos, "@ <timestamp> may not be set multiple times");
        *target = at;
      } else {
        return expr;
      }
    }
  }

  static int64_t* OffsetTarget(Expr& e) {
    switch (e.kind) {
      case NodeKind::kVectorSelector:
        return &e.As<VectorSelector>().offset_ms;
      case NodeKind::kMatrixSelector:
        return &e.As<MatrixSelector>().selector->offset_ms;
      case NodeKind::kSubquery:
        return &e.As<Subquery>().offset_ms;
      default:
        return nullptr;
    }
  }
  static AtModifier* AtTarget(Expr& e) {
    switch (e.kind) {
      case NodeKind::kVectorSelector:
        return &e.As<VectorSelector>().at;
      case NodeKind::kMatrixSelector:
        return &e.As<MatrixSelector>().selector->at;
      case NodeKind::kSubquery:
        return &e.As<Subquery>().at;
      default:
        return nullptr;
    }
  }

  [[gnu::noinline]] absl::StatusOr<AtModifier> ParseAtValue() {
    constexpr std::string_view kExpected = "a timestamp, \"start()\" or \"end()\"";
    AtModifier at;
    const Token& t = Peek();
    if (IsKeyword(t, "start") || IsKeyword(t, "end")) {
      Next();
      if (Peek().kind != TokenKind::kLParen) return Unexpected(Peek(), "@ modifier", "\"(\"");
      Next();
      if (Peek().kind != TokenKind::kRParen) return Unexpected(Peek(), "@ modifier", "\")\"");
      Next();
      at.kind = IsKeyword(t, "start") ? AtModifier::Kind::kStart : AtModifier::Kind::kEnd;
      return at;
    }
    double sign = 1;
    if (t.kind == TokenKind::kSub || t.kind == TokenKind::kAdd) {
      Next();
      if (t.kind == TokenKind::kSub) sign = -1;
    }
    const Token& n = Peek();
    double seconds;
    if (n.kind == TokenKind::kNumber) {
      seconds = n.number;
    } else if (IsKeyword(n, "inf")) {
      seconds = std::numeric_limits<double>::infinity();
    } else if (IsKeyword(n, "nan")) {
      seconds = std::numeric_limits<double>::quiet_NaN();
    } else {
      return Unexpected(n, "@ modifier", kExpected);
    }
    Next();
    seconds *= sign;
    double ms = std::round(seconds * 1000);
    // 2^63 is exactly representable; anything at or past it cannot be an int64.
    constexpr double kLimit = 9223372036854775808.0;
    if (!std::isfinite(ms) || ms >= kLimit || ms <= -kLimit) {
      std::string shown = std::isfinite(seconds) ? fmt::format("{:f}", seconds) : FormatNumber(seconds);
      return Err(t.pos, fmt::format("timestamp out of bounds for @ modifier: {}", shown));
    }
    at.kind = AtModifier::Kind::kTimestamp;
    at.timestamp_ms = static_cast<int64_t>(ms);
    return at;
  }

  [[gnu::noinline]] absl::StatusOr<ExprPtr> ParseRange(ExprPtr expr) {
    const Token& lb = Next();  // '['
    PROMQL_TRY(range, ParseDurationToken());
    if (Peek().kind == TokenKind::kRBracket) {
      Next();
      if (expr->kind != NodeKind::kVectorSelector) return Err(lb.pos, "ranges only allowed for vector selectors");
      auto vs = std::unique_ptr<VectorSelector>(static_cast<VectorSelector*>(expr.release()));
      if (vs->offset_ms != 0 || vs->at.IsSet()) return Err(lb.pos, "no offset modifiers allowed before range");
      auto ms = std::make_unique<MatrixSelector>();
      ms->pos = vs->pos;
      ms->range_ms = range;
      ms->selector = std::move(vs);
      return ExprPtr(std::move(ms));
    }
    if (Peek().kind != TokenKind::kColon) return Unexpected(Peek(), "", "\":\" or \"]\"");
    Next();
    int64_t step = 0;
    if (Peek().kind != TokenKind::kRBracket) {
      PROMQL_TRY(s, ParseDurationToken("a duration or \"]\""));
      step = s;
    }
    if (Peek().kind != TokenKind::kRBracket) return Unexpected(Peek(), "", "\"]\"");
    Next();
    if (expr->type() != ValueType::kVector) {
      return Err(expr->pos, fmt::format("subquery is only allowed on instant vector, got {} instead",
                                        ValueTypeName(expr->type())));
    }
    auto sq = std::make_unique<Subquery>();
    sq->pos = expr->pos;
    sq->range_ms = range;
    sq->step_ms = step;
    sq->expr = std::move(expr);
    return ExprPtr(std::move(sq));
  }

  // `(` [label {, label} [,]] `)`, for by/without, on/ignoring, group_x.
  [[gnu::noinline]] absl::StatusOr<std::vector<std::string>> ParseLabelList() {
    if (Peek().kind != TokenKind::kLParen) return Unexpected(Peek(), "grouping opts", "\"(\"");
    Next();
    std::vector<std::string> labels;
    while (Peek().kind != TokenKind::kRParen) {
      const Token& t = Peek();
      if (t.kind != TokenKind::kIdentifier || t.text.find(':') != std::string_view::npos) {
        return Unexpected(t, "grouping opts", "a label name or \")\"");
      }
      Next();
      labels.emplace_back(t.text);
      if (Peek().kind == TokenKind::kComma) {
        Next();
      } else if (Peek().kind != TokenKind::kRParen) {
        return Unexpected(Peek(), "grouping opts", "\",\" or \")\"");
      }
    }
    Next();
    return labels;
  }

  // After the opening parenthesis: arguments up to and including `)`.
  absl::StatusOr<std::vector<ExprPtr>> ParseArgs(const Token& open) {
    std::vector<ExprPtr> args;
    if (Peek().kind == TokenKind::kRParen) {
      Next();
      return args;
    }
    while (true) {
      PROMQL_TRY(arg, ParseExpr(0));
      args.push_back(std::move(arg));
      const Token& t = Peek();
      if (t.kind == TokenKind::kComma) {
        Next();
        if (Peek().kind == TokenKind::kRParen) return Err(t.pos, "trailing commas not allowed in function call args");
        continue;
      }
      if (t.kind == TokenKind::kRParen) {
        Next();
        return args;
      }
      if (t.kind == TokenKind::kEof) return Err(open.pos, "unclosed left parenthesis");
      return Unexpected(t, "", "\",\" or \")\"");
    }
  }

  [[gnu::noinline]] absl::StatusOr<ExprPtr> ParseAggregate(AggregateOp op) {
    const Token& op_tok = Next();
    auto agg = std::make_unique<Aggregate>();
    agg->pos = op_tok.pos;
    agg->op = op;
    bool grouped = false;
    auto grouping = [&]() -> absl::Status {
      agg->without = IsKeyword(Next(), "without");
      auto labels = ParseLabelList();
      if (!labels.ok()) return labels.status();
      agg->grouping = *std::move(labels);
      grouped = true;
      return absl::OkStatus();
    };
    if (IsKeyword(Peek(), "by") || IsKeyword(Peek(), "without")) PROMQL_RETURN_IF_ERROR(grouping());
    if (Peek().kind != TokenKind::kLParen) return Unexpected(Peek(), "aggregation", "\"(\"");
    const Token& open = Next();
    PROMQL_TRY(args, ParseArgs(open));
    if (!grouped && (IsKeyword(Peek(), "by") || IsKeyword(Peek(), "without"))) PROMQL_RETURN_IF_ERROR(grouping());
    size_t want = AggregateTakesParam(op) ? 2 : 1;
    if (args.empty()) return Err(op_tok.pos, "no arguments for aggregate expression provided");
    if (args.size() != want) {
      return Err(op_tok.pos, fmt::format("wrong number of arguments for aggregate expression provided, expected "
                                         "{}, got {}",
                                         want, args.size()));
    }
    agg->expr = std::move(args.back());
    if (want == 2) agg->param = std::move(args.front());
    if (agg->expr->type() != ValueType::kVector) {
      return Err(agg->expr->pos, fmt::format("expected type instant vector in aggregation expression, got {}",
                                             ValueTypeName(agg->expr->type())));
    }
    if (agg->param != nullptr) {
      ValueType want_type = op == AggregateOp::kCountValues ? ValueType::kString : ValueType::kScalar;
      if (agg->param->type() != want_type) {
        return Err(agg->param->pos, fmt::format("expected type {} in aggregation parameter, got {}",
                                                ValueTypeName(want_type), ValueTypeName(agg->param->type())));
      }
    }
    return ExprPtr(std::move(agg));
  }

  [[gnu::noinline]] absl::StatusOr<ExprPtr> ParseCall() {
    const Token& name = Next();
    const Function* func = LookupFunction(name.text);
    if (func == nullptr) {
      return Err(name.pos, fmt::format("unknown function with name {}", QuoteString(name.text)));
    }
    const Token& open = Next();  // '('
    PROMQL_TRY(args, ParseArgs(open));
    int nargs = static_cast<int>(func->arg_types.size());
    int got = static_cast<int>(args.size());
    if (func->variadic == 0) {
      if (nargs != got) {
        return Err(name.pos,
                   fmt::format("expected {} argument(s) in call to {}, got {}", nargs, QuoteString(func->name), got));
      }
    } else {
      int min = nargs - 1;
      if (min > got) {
        return Err(name.pos, fmt::format("expected at least {} argument(s) in call to {}, got {}", min,
                                         QuoteString(func->name), got));
      }
      if (func->variadic > 0 && min + func->variadic < got) {
        return Err(name.pos, fmt::format("expected at most {} argument(s) in call to {}, got {}", min + func->variadic,
                                         QuoteString(func->name), got));
      }
    }
    for (int i = 0; i < got; ++i) {
      ValueType want = func->arg_types[static_cast<size_t>(std::min(i, nargs - 1))];
      ValueType have = args[static_cast<size_t>(i)]->type();
      if (have != want) {
        return Err(args[static_cast<size_t>(i)]->pos,
                   fmt::format("expected type {} in call to function {}, got {}", ValueTypeName(want),
                               QuoteString(func->name), ValueTypeName(have)));
      }
    }
    auto call = std::make_unique<Call>();
    call->pos = name.pos;
    call->func = func;
    call->args = std::move(args);
    return ExprPtr(std::move(call));
  }

  std::vector<Token> toks_;
  size_t pos_ = 0;
  int depth_ = 0;        // recursion: parentheses, calls, aggregations, unary operators
  int chain_depth_ = 0;  // binary operators above the current point of the tree
};

}  // namespace

absl::StatusOr<ExprPtr> Parse(std::string_view query) {
  PROMQL_TRY(tokens, Lex(query));
  Parser parser(std::move(tokens));
  return parser.ParseQuery();
}

absl::StatusOr<std::vector<model::Matcher>> ParseMetricSelector(std::string_view selector) {
  PROMQL_TRY(expr, Parse(selector));
  if (expr->kind != NodeKind::kVectorSelector) {
    return absl::InvalidArgumentError(fmt::format("{}:{}: expected a series selector, got {}", expr->pos.line,
                                                  expr->pos.column, ValueTypeName(expr->type())));
  }
  auto& vs = expr->As<VectorSelector>();
  if (vs.offset_ms != 0 || vs.at.IsSet()) {
    return absl::InvalidArgumentError(
        fmt::format("{}:{}: a series selector may not have offset or @ modifiers", vs.pos.line, vs.pos.column));
  }
  return std::move(vs.matchers);
}

#undef PROMQL_TRY
#undef PROMQL_RETURN_IF_ERROR

}  // namespace sheaf::promql
