#include "promql/ast.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <map>

#include "fmt/format.h"

namespace sheaf::promql {

std::string_view ValueTypeName(ValueType type) {
  switch (type) {
    case ValueType::kNone:
      return "none";
    case ValueType::kScalar:
      return "scalar";
    case ValueType::kVector:
      return "instant vector";
    case ValueType::kMatrix:
      return "range vector";
    case ValueType::kString:
      return "string";
  }
  return "none";
}

std::string_view BinaryOpName(BinaryOp op) {
  static constexpr std::string_view kNames[] = {
      "+", "-", "*", "/", "%", "^", "atan2", "==", "!=", "<", "<=", ">", ">=", "and", "or", "unless"};
  return kNames[static_cast<int>(op)];
}

bool IsComparison(BinaryOp op) { return op >= BinaryOp::kEql && op <= BinaryOp::kGte; }
bool IsSetOperator(BinaryOp op) { return op >= BinaryOp::kAnd; }

namespace {
constexpr std::string_view kAggregateNames[] = {"sum",    "avg",    "count", "min",     "max",          "group",
                                                "stddev", "stdvar", "topk",  "bottomk", "count_values", "quantile"};
}  // namespace

std::string_view AggregateOpName(AggregateOp op) { return kAggregateNames[static_cast<int>(op)]; }

bool AggregateTakesParam(AggregateOp op) { return op >= AggregateOp::kTopk; }

std::optional<AggregateOp> LookupAggregateOp(std::string_view name) {
  for (size_t i = 0; i < std::size(kAggregateNames); ++i) {
    std::string_view n = kAggregateNames[i];
    if (n.size() == name.size() && std::equal(n.begin(), n.end(), name.begin(), [](char a, char b) {
          return a == (b >= 'A' && b <= 'Z' ? static_cast<char>(b - 'A' + 'a') : b);
        })) {
      return static_cast<AggregateOp>(i);
    }
  }
  return std::nullopt;
}

const Function* LookupFunction(std::string_view name) {
  using V = ValueType;
  constexpr V kS = V::kScalar, kV = V::kVector, kM = V::kMatrix, kStr = V::kString;
  static const auto* const kTable = [&] {
    auto* t = new std::map<std::string_view, Function>();
    auto add = [&](std::string_view n, std::vector<V> args, int variadic, V ret) {
      t->emplace(n, Function{n, std::move(args), variadic, ret});
    };
    for (std::string_view n :
         {"rate", "irate", "increase", "delta", "idelta", "deriv", "resets", "changes", "avg_over_time",
          "min_over_time", "max_over_time", "sum_over_time", "count_over_time", "last_over_time", "present_over_time",
          "absent_over_time", "stddev_over_time", "stdvar_over_time"}) {
      add(n, {kM}, 0, kV);
    }
    add("predict_linear", {kM, kS}, 0, kV);
    add("holt_winters", {kM, kS, kS}, 0, kV);
    add("quantile_over_time", {kS, kM}, 0, kV);
    add("histogram_quantile", {kS, kV}, 0, kV);
    for (std::string_view n : {"abs",   "ceil",      "floor",  "exp", "ln",   "log2",  "log10", "sqrt",  "timestamp",
                               "sort",  "sort_desc", "absent", "sgn", "acos", "acosh", "asin",  "asinh", "atan",
                               "atanh", "cos",       "cosh",   "sin", "sinh", "tan",   "tanh",  "deg",   "rad"}) {
      add(n, {kV}, 0, kV);
    }
    add("round", {kV, kS}, 1, kV);
    add("clamp", {kV, kS, kS}, 0, kV);
    add("clamp_min", {kV, kS}, 0, kV);
    add("clamp_max", {kV, kS}, 0, kV);
    add("label_replace", {kV, kStr, kStr, kStr, kStr}, 0, kV);
    add("label_join", {kV, kStr, kStr, kStr}, -1, kV);
    add("time", {}, 0, kS);
    add("pi", {}, 0, kS);
    add("vector", {kS}, 0, kV);
    add("scalar", {kV}, 0, kS);
    for (std::string_view n :
         {"minute", "hour", "day_of_week", "day_of_month", "day_of_year", "days_in_month", "month", "year"}) {
      add(n, {kV}, 1, kV);
    }
    return t;
  }();
  auto it = kTable->find(name);
  return it == kTable->end() ? nullptr : &it->second;
}

std::string FormatDuration(int64_t ms) {
  if (ms == 0) return "0s";
  std::string out;
  if (ms < 0) {
    out += '-';
    ms = -ms;
  }
  auto unit = [&](const char* name, int64_t mult, bool exact) {
    if (exact && ms % mult != 0) return;
    if (int64_t v = ms / mult; v > 0) {
      out += std::to_string(v);
      out += name;
      ms -= v * mult;
    }
  };
  constexpr int64_t kDay = 24LL * 3600 * 1000;
  unit("y", 365 * kDay, true);
  unit("w", 7 * kDay, true);
  unit("d", kDay, false);
  unit("h", 3600 * 1000, false);
  unit("m", 60 * 1000, false);
  unit("s", 1000, false);
  unit("ms", 1, false);
  return out;
}

std::string FormatNumber(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  // Go's %v: shortest digits; exponent form when the exponent is < -4 or >= 6.
  char buf[64];
  auto sci = std::to_chars(buf, buf + sizeof(buf), value, std::chars_format::scientific);
  std::string s(buf, sci.ptr);
  size_t e = s.find('e');
  int exp = std::atoi(s.c_str() + e + 1);
  if (exp < -4 || exp >= 6) return s;
  auto fixed = std::to_chars(buf, buf + sizeof(buf), value, std::chars_format::fixed);
  return std::string(buf, fixed.ptr);
}

std::string QuoteString(std::string_view s) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '"':
        out += "\\\"";
        continue;
      case '\\':
        out += "\\\\";
        continue;
      case '\a':
        out += "\\a";
        continue;
      case '\b':
        out += "\\b";
        continue;
      case '\f':
        out += "\\f";
        continue;
      case '\n':
        out += "\\n";
        continue;
      case '\r':
        out += "\\r";
        continue;
      case '\t':
        out += "\\t";
        continue;
      case '\v':
        out += "\\v";
        continue;
      default:
        break;
    }
    if (c < 0x20 || c == 0x7f) {
      out += fmt::format("\\x{:02x}", c);
      continue;
    }
    if (c < 0x80) {
      out += static_cast<char>(c);
      continue;
    }
    // Copy a valid UTF-8 sequence; escape a byte that does not start one.
    size_t len = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
    bool valid = len > 0 && i + len <= s.size();
    for (size_t k = 1; valid && k < len; ++k) {
      valid = (static_cast<unsigned char>(s[i + k]) & 0xc0) == 0x80;
    }
    if (valid && len == 3) {
      unsigned char c1 = static_cast<unsigned char>(s[i + 1]);
      valid = !(c == 0xe0 && c1 < 0xa0) && !(c == 0xed && c1 >= 0xa0);
    }
    if (valid && len == 4) {
      unsigned char c1 = static_cast<unsigned char>(s[i + 1]);
      valid = !(c == 0xf0 && c1 < 0x90) && !(c == 0xf4 && c1 >= 0x90);
    }
    if (!valid) {
      out += fmt::format("\\x{:02x}", c);
      continue;
    }
    out.append(s.substr(i, len));
    i += len - 1;
  }
  out += '"';
  return out;
}

namespace {

void FormatModifiers(std::string& out, const AtModifier& at, int64_t offset_ms) {
  switch (at.kind) {
    case AtModifier::Kind::kNone:
      break;
    case AtModifier::Kind::kTimestamp:
      out += fmt::format(" @ {:.3f}", static_cast<double>(at.timestamp_ms) / 1000.0);
      break;
    case AtModifier::Kind::kStart:
      out += " @ start()";
      break;
    case AtModifier::Kind::kEnd:
      out += " @ end()";
      break;
  }
  if (offset_ms > 0) {
    out += " offset ";
    out += FormatDuration(offset_ms);
  } else if (offset_ms < 0) {
    out += " offset -";
    out += FormatDuration(-offset_ms);
  }
}

std::string Join(const std::vector<std::string>& items) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ", ";
    out += items[i];
  }
  return out;
}

void FormatSelectorBody(std::string& out, const VectorSelector& vs) {
  static constexpr std::string_view kOps[] = {"=", "!=", "=~", "!~"};
  std::vector<std::string> labels;
  for (const model::Matcher& m : vs.matchers) {
    if (m.name() == model::kMetricNameLabel && m.op() == model::Matcher::Op::kEqual && m.value() == vs.name) {
      continue;
    }
    std::string s = m.name();
    s += kOps[static_cast<int>(m.op())];
    s += QuoteString(m.value());
    labels.push_back(std::move(s));
  }
  out += vs.name;
  if (labels.empty()) return;
  std::sort(labels.begin(), labels.end());
  out += '{';
  for (size_t i = 0; i < labels.size(); ++i) {
    if (i > 0) out += ',';
    out += labels[i];
  }
  out += '}';
}

void FormatTo(std::string& out, const Expr& e) {
  switch (e.kind) {
    case NodeKind::kNumberLiteral:
      out += FormatNumber(e.As<NumberLiteral>().value);
      return;
    case NodeKind::kStringLiteral:
      out += QuoteString(e.As<StringLiteral>().value);
      return;
    case NodeKind::kVectorSelector: {
      const auto& vs = e.As<VectorSelector>();
      FormatSelectorBody(out, vs);
      FormatModifiers(out, vs.at, vs.offset_ms);
      return;
    }
    case NodeKind::kMatrixSelector: {
      const auto& ms = e.As<MatrixSelector>();
      FormatSelectorBody(out, *ms.selector);
      out += '[';
      out += FormatDuration(ms.range_ms);
      out += ']';
      FormatModifiers(out, ms.selector->at, ms.selector->offset_ms);
      return;
    }
    case NodeKind::kSubquery: {
      const auto& sq = e.As<Subquery>();
      FormatTo(out, *sq.expr);
      out += '[';
      out += FormatDuration(sq.range_ms);
      out += ':';
      if (sq.step_ms != 0) out += FormatDuration(sq.step_ms);
      out += ']';
      FormatModifiers(out, sq.at, sq.offset_ms);
      return;
    }
    case NodeKind::kCall: {
      const auto& c = e.As<Call>();
      out += c.func->name;
      out += '(';
      for (size_t i = 0; i < c.args.size(); ++i) {
        if (i > 0) out += ", ";
        FormatTo(out, *c.args[i]);
      }
      out += ')';
      return;
    }
    case NodeKind::kAggregate: {
      const auto& a = e.As<Aggregate>();
      out += AggregateOpName(a.op);
      if (a.without) {
        out += " without (";
        out += Join(a.grouping);
        out += ") ";
      } else if (!a.grouping.empty()) {
        out += " by (";
        out += Join(a.grouping);
        out += ") ";
      }
      out += '(';
      if (a.param != nullptr) {
        FormatTo(out, *a.param);
        out += ", ";
      }
      FormatTo(out, *a.expr);
      out += ')';
      return;
    }
    case NodeKind::kBinary: {
      const auto& b = e.As<Binary>();
      if (b.op == BinaryOp::kPow && b.lhs->kind == NodeKind::kNumberLiteral &&
          std::isinf(b.lhs->As<NumberLiteral>().value) && b.lhs->As<NumberLiteral>().value > 0) {
        // "+Inf ^ x" would read back as +(Inf ^ x): `^` binds tighter than a sign.
        out += "Inf";
      } else {
        FormatTo(out, *b.lhs);
      }
      out += ' ';
      out += BinaryOpName(b.op);
      if (b.return_bool) out += " bool";
      if (b.matching.has_value() && (b.matching->on || !b.matching->matching_labels.empty())) {
        out += b.matching->on ? " on (" : " ignoring (";
        out += Join(b.matching->matching_labels);
        out += ')';
        if (b.matching->card == Cardinality::kManyToOne || b.matching->card == Cardinality::kOneToMany) {
          out += b.matching->card == Cardinality::kManyToOne ? " group_left (" : " group_right (";
          out += Join(b.matching->include);
          out += ')';
        }
      }
      out += ' ';
      FormatTo(out, *b.rhs);
      return;
    }
    case NodeKind::kUnary: {
      const auto& u = e.As<Unary>();
      out += u.negate ? '-' : '+';
      FormatTo(out, *u.expr);
      return;
    }
    case NodeKind::kParen:
      out += '(';
      FormatTo(out, *e.As<Paren>().expr);
      out += ')';
      return;
  }
}

}  // namespace

std::string Format(const Expr& expr) {
  std::string out;
  FormatTo(out, expr);
  return out;
}

}  // namespace sheaf::promql
