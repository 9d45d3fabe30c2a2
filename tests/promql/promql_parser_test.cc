// The PromQL parser: canonical round trips, precedence, every node kind,
// durations, offsets, `@`, subqueries, Prometheus' error messages with
// their positions, and robustness against random input.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "promql/ast.h"
#include "promql/lexer.h"
#include "promql/parser.h"

namespace sheaf::promql {
namespace {

// A fully parenthesized view of the tree, to check its shape.
std::string Tree(const Expr& e) {
  switch (e.kind) {
    case NodeKind::kBinary: {
      const auto& b = e.As<Binary>();
      std::string out = "(";
      out += Tree(*b.lhs);
      out += ' ';
      out += BinaryOpName(b.op);
      out += ' ';
      out += Tree(*b.rhs);
      out += ')';
      return out;
    }
    case NodeKind::kUnary: {
      const auto& u = e.As<Unary>();
      std::string out = "(";
      out += u.negate ? '-' : '+';
      out += Tree(*u.expr);
      out += ')';
      return out;
    }
    default:
      return Format(e);
  }
}

struct RoundTrip {
  const char* input;
  const char* canonical;
};

class RoundTripTest : public testing::TestWithParam<RoundTrip> {};

TEST_P(RoundTripTest, FormatsCanonically) {
  const RoundTrip& c = GetParam();
  auto e = Parse(c.input);
  ASSERT_TRUE(e.ok()) << c.input << ": " << e.status();
  EXPECT_EQ(Format(**e), c.canonical) << c.input;
  // The canonical text parses to itself.
  auto again = Parse(Format(**e));
  ASSERT_TRUE(again.ok()) << Format(**e) << ": " << again.status();
  EXPECT_EQ(Format(**again), c.canonical);
}

INSTANTIATE_TEST_SUITE_P(
    Literals, RoundTripTest,
    testing::Values(RoundTrip{"1", "1"}, RoundTrip{"1.5", "1.5"}, RoundTrip{".5", "0.5"}, RoundTrip{"0x1f", "31"},
                    RoundTrip{"0X1F", "31"}, RoundTrip{"1e3", "1000"}, RoundTrip{"1E3", "1000"},
                    RoundTrip{"1e6", "1e+06"}, RoundTrip{"123456", "123456"}, RoundTrip{"1e-5", "1e-05"},
                    RoundTrip{"0.0001", "0.0001"}, RoundTrip{"2.5e-3", "0.0025"}, RoundTrip{"Inf", "+Inf"},
                    RoundTrip{"inf", "+Inf"}, RoundTrip{"-Inf", "-Inf"}, RoundTrip{"+Inf", "+Inf"},
                    RoundTrip{"NaN", "NaN"}, RoundTrip{"nan", "NaN"}, RoundTrip{"-1", "-1"}, RoundTrip{"+1", "1"},
                    RoundTrip{"- 1", "-1"}, RoundTrip{"--1", "1"}, RoundTrip{"1.", "1"}, RoundTrip{"007", "7"},
                    RoundTrip{"\"a\\nb\"", "\"a\\nb\""}, RoundTrip{"'single'", "\"single\""},
                    RoundTrip{"`raw\\n`", "\"raw\\\\n\""}, RoundTrip{"\"\\x41\\u00e9\"", "\"A\xc3\xa9\""},
                    RoundTrip{"'it\\'s'", "\"it's\""}, RoundTrip{"\"say \\\"hi\\\"\"", "\"say \\\"hi\\\"\""},
                    RoundTrip{"\"\\101\\t\\a\\v\\f\\r\\b\\\\\"", "\"A\\t\\a\\v\\f\\r\\b\\\\\""},
                    RoundTrip{"\"\\U0001F600\"", "\"\xf0\x9f\x98\x80\""}, RoundTrip{"\"\\xff\"", "\"\\xff\""},
                    RoundTrip{"`a\nb`", "\"a\\nb\""}, RoundTrip{"'\"'", "\"\\\"\""}, RoundTrip{"\"\"", "\"\""}));

INSTANTIATE_TEST_SUITE_P(
    Selectors, RoundTripTest,
    testing::Values(RoundTrip{"foo", "foo"}, RoundTrip{"foo{}", "foo"}, RoundTrip{"foo{a=\"b\"}", "foo{a=\"b\"}"},
                    RoundTrip{"foo { b = '1' , a =~ \"x\" }", "foo{a=~\"x\",b=\"1\"}"},
                    RoundTrip{"foo{a!=\"b\", c!~\"d\"}", "foo{a!=\"b\",c!~\"d\"}"},
                    RoundTrip{"{a=\"b\",}", "{a=\"b\"}"}, RoundTrip{"{__name__=\"foo\"}", "{__name__=\"foo\"}"},
                    RoundTrip{"{__name__=~\"foo|bar\", job=\"x\"}", "{__name__=~\"foo|bar\",job=\"x\"}"},
                    RoundTrip{"foo:bar:baz", "foo:bar:baz"}, RoundTrip{":foo", ":foo"}, RoundTrip{"_x1", "_x1"},
                    RoundTrip{"foo{by=\"x\", offset=\"y\", on=\"z\", sum=\"w\"}",
                              "foo{by=\"x\",offset=\"y\",on=\"z\",sum=\"w\"}"},
                    RoundTrip{"offset", "offset"}, RoundTrip{"by", "by"}, RoundTrip{"bool", "bool"},
                    RoundTrip{"foo{a=\"\", b=\"c\"}", "foo{a=\"\",b=\"c\"}"}, RoundTrip{"{a=~\".+\"}", "{a=~\".+\"}"},
                    RoundTrip{"foo{a=\"\\\"q\\\"\"}", "foo{a=\"\\\"q\\\"\"}"}, RoundTrip{"foo[5m]", "foo[5m]"},
                    RoundTrip{"foo{a=\"b\"}[1h30m]", "foo{a=\"b\"}[1h30m]"}, RoundTrip{"foo[ 90m ]", "foo[1h30m]"},
                    RoundTrip{"foo[1d]", "foo[1d]"}, RoundTrip{"foo[7d]", "foo[1w]"}, RoundTrip{"foo[14d]", "foo[2w]"},
                    RoundTrip{"foo[8d]", "foo[8d]"}, RoundTrip{"foo[365d]", "foo[1y]"},
                    RoundTrip{"foo[1y2w]", "foo[379d]"}, RoundTrip{"foo[500ms]", "foo[500ms]"},
                    RoundTrip{"foo[1m30s500ms]", "foo[1m30s500ms]"}, RoundTrip{"foo[60s]", "foo[1m]"},
                    RoundTrip{"foo[1h0m]", "foo[1h]"}));

INSTANTIATE_TEST_SUITE_P(
    Modifiers, RoundTripTest,
    testing::Values(RoundTrip{"foo offset 5m", "foo offset 5m"}, RoundTrip{"foo OFFSET 5m", "foo offset 5m"},
                    RoundTrip{"foo offset -5m", "foo offset -5m"}, RoundTrip{"foo offset 90m", "foo offset 1h30m"},
                    RoundTrip{"foo offset 1d12h", "foo offset 1d12h"}, RoundTrip{"foo offset 7d", "foo offset 1w"},
                    RoundTrip{"foo{a=\"b\"} offset 1y", "foo{a=\"b\"} offset 1y"},
                    RoundTrip{"foo[5m] offset 1m", "foo[5m] offset 1m"},
                    RoundTrip{"foo @ 1609746000", "foo @ 1609746000.000"}, RoundTrip{"foo @ 1.5", "foo @ 1.500"},
                    RoundTrip{"foo @ -1.5", "foo @ -1.500"}, RoundTrip{"foo @ +2", "foo @ 2.000"},
                    RoundTrip{"foo @ 0x10", "foo @ 16.000"}, RoundTrip{"foo @ start()", "foo @ start()"},
                    RoundTrip{"foo @ END ( )", "foo @ end()"},
                    RoundTrip{"foo @ 100 offset 5m", "foo @ 100.000 offset 5m"},
                    RoundTrip{"foo offset 5m @ 100", "foo @ 100.000 offset 5m"},
                    RoundTrip{"foo[5m] @ end() offset 1m", "foo[5m] @ end() offset 1m"},
                    RoundTrip{"foo[5m] offset 1m @ start()", "foo[5m] @ start() offset 1m"},
                    RoundTrip{"foo @ 1.0005", "foo @ 1.001"}));

INSTANTIATE_TEST_SUITE_P(
    Subqueries, RoundTripTest,
    testing::Values(RoundTrip{"foo[30m:]", "foo[30m:]"}, RoundTrip{"foo[30m:1m]", "foo[30m:1m]"},
                    RoundTrip{"rate(foo[5m])[30m:1m]", "rate(foo[5m])[30m:1m]"},
                    RoundTrip{"(foo + bar)[1h:5m] offset 10m", "(foo + bar)[1h:5m] offset 10m"},
                    RoundTrip{"foo[5m:] @ start()", "foo[5m:] @ start()"},
                    RoundTrip{"foo[5m:] offset -1m @ 10", "foo[5m:] @ 10.000 offset -1m"},
                    RoundTrip{"max_over_time(rate(foo[5m])[1h:])", "max_over_time(rate(foo[5m])[1h:])"},
                    RoundTrip{"foo offset 5m [10m:]", "foo offset 5m[10m:]"},
                    RoundTrip{"sum(foo)[5m:1m]", "sum(foo)[5m:1m]"},
                    RoundTrip{"foo[1h:1m] offset 1m", "foo[1h:1m] offset 1m"}, RoundTrip{"(foo)[5m:]", "(foo)[5m:]"},
                    RoundTrip{"sum_over_time((foo)[5m:])", "sum_over_time((foo)[5m:])"}));

INSTANTIATE_TEST_SUITE_P(
    Calls, RoundTripTest,
    testing::Values(RoundTrip{"time()", "time()"}, RoundTrip{"rate(foo[5m])", "rate(foo[5m])"},
                    RoundTrip{"irate(foo[1m])", "irate(foo[1m])"}, RoundTrip{"round(foo)", "round(foo)"},
                    RoundTrip{"round(foo, 0.5)", "round(foo, 0.5)"},
                    RoundTrip{"label_join(foo, \"dst\", \",\", \"a\", \"b\", \"c\")",
                              "label_join(foo, \"dst\", \",\", \"a\", \"b\", \"c\")"},
                    RoundTrip{"label_join(foo, \"dst\", \",\")", "label_join(foo, \"dst\", \",\")"},
                    RoundTrip{"label_replace(up, 'a', '$1', 'b', '(.*)')",
                              "label_replace(up, \"a\", \"$1\", \"b\", \"(.*)\")"},
                    RoundTrip{"histogram_quantile(0.9, sum by (le) (rate(x_bucket[5m])))",
                              "histogram_quantile(0.9, sum by (le) (rate(x_bucket[5m])))"},
                    RoundTrip{"hour()", "hour()"}, RoundTrip{"hour(foo)", "hour(foo)"},
                    RoundTrip{"vector(1)", "vector(1)"}, RoundTrip{"scalar(foo)", "scalar(foo)"},
                    RoundTrip{"clamp(foo, 0, 1)", "clamp(foo, 0, 1)"},
                    RoundTrip{"clamp_min(foo, -1)", "clamp_min(foo, -1)"},
                    RoundTrip{"quantile_over_time(0.5, foo[5m])", "quantile_over_time(0.5, foo[5m])"},
                    RoundTrip{"predict_linear(foo[1h], 3600)", "predict_linear(foo[1h], 3600)"},
                    RoundTrip{"absent(nonexistent{job=\"x\"})", "absent(nonexistent{job=\"x\"})"},
                    RoundTrip{"absent_over_time(foo[5m])", "absent_over_time(foo[5m])"},
                    RoundTrip{"sort_desc(abs(ceil(floor(exp(ln(log2(log10(sqrt(foo)))))))))",
                              "sort_desc(abs(ceil(floor(exp(ln(log2(log10(sqrt(foo)))))))))"},
                    RoundTrip{"timestamp(foo)", "timestamp(foo)"},
                    RoundTrip{"days_in_month(vector(time()))", "days_in_month(vector(time()))"},
                    RoundTrip{"rate (foo[5m])", "rate(foo[5m])"}, RoundTrip{"time() - 60", "time() - 60"}));

INSTANTIATE_TEST_SUITE_P(
    Aggregates, RoundTripTest,
    testing::Values(
        RoundTrip{"sum(foo)", "sum(foo)"}, RoundTrip{"sum by (a, b) (foo)", "sum by (a, b) (foo)"},
        RoundTrip{"sum(foo) by (a)", "sum by (a) (foo)"}, RoundTrip{"SUM BY (a) (foo)", "sum by (a) (foo)"},
        RoundTrip{"sum without (a) (foo)", "sum without (a) (foo)"},
        RoundTrip{"sum(foo) WITHOUT (a)", "sum without (a) (foo)"}, RoundTrip{"sum by (a,) (foo)", "sum by (a) (foo)"},
        RoundTrip{"sum by () (foo)", "sum(foo)"}, RoundTrip{"sum without () (foo)", "sum without () (foo)"},
        RoundTrip{"topk(5, foo)", "topk(5, foo)"}, RoundTrip{"bottomk by (x) (3, foo)", "bottomk by (x) (3, foo)"},
        RoundTrip{"count_values(\"v\", foo)", "count_values(\"v\", foo)"},
        RoundTrip{"quantile(0.9, foo)", "quantile(0.9, foo)"}, RoundTrip{"group(foo)", "group(foo)"},
        RoundTrip{"stddev by (x) (foo)", "stddev by (x) (foo)"}, RoundTrip{"stdvar(foo)", "stdvar(foo)"},
        RoundTrip{"avg(foo) + count(foo) - min(foo) * max(foo)", "avg(foo) + count(foo) - min(foo) * max(foo)"},
        RoundTrip{"sum by (on, by, offset) (foo)", "sum by (on, by, offset) (foo)"},
        RoundTrip{"topk(scalar(bar), foo)", "topk(scalar(bar), foo)"},
        RoundTrip{"sum(rate(foo[5m])) by (job)", "sum by (job) (rate(foo[5m]))"}));

INSTANTIATE_TEST_SUITE_P(
    Binaries, RoundTripTest,
    testing::Values(RoundTrip{"a + b", "a + b"}, RoundTrip{"a+b*c", "a + b * c"},
                    RoundTrip{"a == bool b", "a == bool b"}, RoundTrip{"a == BOOL b", "a == bool b"},
                    RoundTrip{"1 == bool 2", "1 == bool 2"}, RoundTrip{"foo > 1", "foo > 1"},
                    RoundTrip{"a + on (x, y) b", "a + on (x, y) b"}, RoundTrip{"a + on(x,y,) b", "a + on (x, y) b"},
                    RoundTrip{"a + ignoring (x) group_left (y) b", "a + ignoring (x) group_left (y) b"},
                    RoundTrip{"a + on (x) group_right b", "a + on (x) group_right () b"},
                    RoundTrip{"a * on (x) GROUP_LEFT b", "a * on (x) group_left () b"},
                    RoundTrip{"a AND ON (x) b", "a and on (x) b"}, RoundTrip{"a + on () b", "a + on () b"},
                    RoundTrip{"a + ignoring () b", "a + b"}, RoundTrip{"a > bool on (x) b", "a > bool on (x) b"},
                    RoundTrip{"a or b unless c", "a or b unless c"}, RoundTrip{"a atan2 b", "a atan2 b"},
                    RoundTrip{"a ATAN2 b", "a atan2 b"}, RoundTrip{"a % b / c ^ d", "a % b / c ^ d"},
                    RoundTrip{"a != b <= c < d >= e > f", "a != b <= c < d >= e > f"}, RoundTrip{"(foo)", "(foo)"},
                    RoundTrip{"((1))", "((1))"}, RoundTrip{"-(foo)", "-(foo)"}, RoundTrip{"-foo", "-foo"},
                    RoundTrip{"+foo", "+foo"}, RoundTrip{"- - foo", "--foo"}, RoundTrip{"2 ^ -1", "2 ^ -1"},
                    RoundTrip{"2 + Inf ^ 2", "2 + Inf ^ 2"}, RoundTrip{"Inf * 2", "+Inf * 2"},
                    RoundTrip{"Inf ^ 2", "Inf ^ 2"}, RoundTrip{"+Inf ^ 2", "+Inf ^ 2"}, RoundTrip{"a - -1", "a - -1"},
                    RoundTrip{"1 + 2", "1 + 2"}, RoundTrip{"foo # a comment\n + bar # another", "foo + bar"},
                    RoundTrip{"# leading comment\nfoo", "foo"}, RoundTrip{"a\n+\nb", "a + b"},
                    RoundTrip{"foo and bar or baz", "foo and bar or baz"},
                    RoundTrip{"foo unless bar", "foo unless bar"}));

struct ShapeCase {
  const char* input;
  const char* tree;
};

class PrecedenceTest : public testing::TestWithParam<ShapeCase> {};

TEST_P(PrecedenceTest, BuildsTheRightTree) {
  auto e = Parse(GetParam().input);
  ASSERT_TRUE(e.ok()) << GetParam().input << ": " << e.status();
  EXPECT_EQ(Tree(**e), GetParam().tree) << GetParam().input;
}

INSTANTIATE_TEST_SUITE_P(
    All, PrecedenceTest,
    testing::Values(
        ShapeCase{"a + b * c", "(a + (b * c))"}, ShapeCase{"a * b + c", "((a * b) + c)"},
        ShapeCase{"a - b - c", "((a - b) - c)"}, ShapeCase{"a / b % c", "((a / b) % c)"},
        ShapeCase{"a ^ b ^ c", "(a ^ (b ^ c))"}, ShapeCase{"-a ^ b", "(-(a ^ b))"}, ShapeCase{"-a * b", "((-a) * b)"},
        ShapeCase{"-a + b", "((-a) + b)"}, ShapeCase{"a * -b", "(a * (-b))"}, ShapeCase{"a ^ -b", "(a ^ (-b))"},
        ShapeCase{"a or b and c", "(a or (b and c))"}, ShapeCase{"a and b or c", "((a and b) or c)"},
        ShapeCase{"a and b unless c", "((a and b) unless c)"}, ShapeCase{"a unless b and c", "((a unless b) and c)"},
        ShapeCase{"a or b or c", "((a or b) or c)"}, ShapeCase{"a == b + c", "(a == (b + c))"},
        ShapeCase{"a + b == c", "((a + b) == c)"}, ShapeCase{"a > b and c < d", "((a > b) and (c < d))"},
        ShapeCase{"a == b != c", "((a == b) != c)"}, ShapeCase{"a atan2 b * c", "((a atan2 b) * c)"},
        ShapeCase{"a * b atan2 c", "((a * b) atan2 c)"}, ShapeCase{"a + b atan2 c", "(a + (b atan2 c))"},
        ShapeCase{"1 + 2 * 3 ^ 2 ^ 3", "(1 + (2 * (3 ^ (2 ^ 3))))"}, ShapeCase{"a + b offset 5m", "(a + b offset 5m)"},
        ShapeCase{"-foo offset 5m", "(-foo offset 5m)"}, ShapeCase{"a + on (x) b * c", "(a + (b * c))"},
        ShapeCase{"-1 ^ 2", "(-(1 ^ 2))"}, ShapeCase{"2 ^ 3 * 4", "((2 ^ 3) * 4)"},
        ShapeCase{"(a + b) * c", "((a + b) * c)"}, ShapeCase{"a - - b", "(a - (-b))"}, ShapeCase{"- - a", "(-(-a))"},
        ShapeCase{"a or on (x) b and ignoring (y) c", "(a or (b and c))"}));

TEST(ParserTest, ValueTypes) {
  struct Case {
    const char* input;
    ValueType type;
  } cases[] = {
      {"1", ValueType::kScalar},         {"\"a\"", ValueType::kString},         {"foo", ValueType::kVector},
      {"foo[5m]", ValueType::kMatrix},   {"foo[5m:]", ValueType::kMatrix},      {"time()", ValueType::kScalar},
      {"1 + 1", ValueType::kScalar},     {"foo + 1", ValueType::kVector},       {"1 - foo", ValueType::kVector},
      {"(1)", ValueType::kScalar},       {"-foo", ValueType::kVector},          {"scalar(foo)", ValueType::kScalar},
      {"sum(foo)", ValueType::kVector},  {"rate(foo[1m])", ValueType::kVector}, {"-time()", ValueType::kScalar},
      {"(foo[5m])", ValueType::kMatrix}, {"1 > bool 2", ValueType::kScalar},
  };
  for (const Case& c : cases) {
    auto e = Parse(c.input);
    ASSERT_TRUE(e.ok()) << c.input << ": " << e.status();
    EXPECT_EQ((*e)->type(), c.type) << c.input;
  }
  EXPECT_EQ(ValueTypeName(ValueType::kMatrix), "range vector");
  EXPECT_EQ(ValueTypeName(ValueType::kVector), "instant vector");
}

TEST(ParserTest, VectorSelectorNode) {
  auto e = Parse("http_requests_total{job=\"api\", code=~\"5..\"} offset -1h @ 1000.5");
  ASSERT_TRUE(e.ok()) << e.status();
  ASSERT_EQ((*e)->kind, NodeKind::kVectorSelector);
  const auto& vs = (*e)->As<VectorSelector>();
  EXPECT_EQ(vs.name, "http_requests_total");
  ASSERT_EQ(vs.matchers.size(), 3u);
  EXPECT_EQ(vs.matchers[0].name(), "__name__");
  EXPECT_EQ(vs.matchers[0].op(), model::Matcher::Op::kEqual);
  EXPECT_EQ(vs.matchers[0].value(), "http_requests_total");
  EXPECT_EQ(vs.matchers[1].name(), "job");
  EXPECT_EQ(vs.matchers[2].op(), model::Matcher::Op::kRegex);
  EXPECT_TRUE(vs.matchers[2].Matches("503"));
  EXPECT_FALSE(vs.matchers[2].Matches("1503"));  // anchored
  EXPECT_EQ(vs.offset_ms, -3600 * 1000);
  EXPECT_EQ(vs.at.kind, AtModifier::Kind::kTimestamp);
  EXPECT_EQ(vs.at.timestamp_ms, 1000500);

  auto noname = Parse("{__name__=~\"a.*\"}");
  ASSERT_TRUE(noname.ok());
  EXPECT_EQ((*noname)->As<VectorSelector>().name, "");
  EXPECT_EQ((*noname)->As<VectorSelector>().matchers.size(), 1u);
}

TEST(ParserTest, MatrixAndSubqueryNodes) {
  auto m = Parse("foo[5m] offset 1m @ end()");
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_EQ((*m)->kind, NodeKind::kMatrixSelector);
  const auto& ms = (*m)->As<MatrixSelector>();
  EXPECT_EQ(ms.range_ms, 300000);
  EXPECT_EQ(ms.selector->offset_ms, 60000);
  EXPECT_EQ(ms.selector->at.kind, AtModifier::Kind::kEnd);

  auto s = Parse("rate(foo[1m])[1h:30s] offset 2m @ start()");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ((*s)->kind, NodeKind::kSubquery);
  const auto& sq = (*s)->As<Subquery>();
  EXPECT_EQ(sq.range_ms, 3600000);
  EXPECT_EQ(sq.step_ms, 30000);
  EXPECT_EQ(sq.offset_ms, 120000);
  EXPECT_EQ(sq.at.kind, AtModifier::Kind::kStart);
  EXPECT_EQ(sq.expr->kind, NodeKind::kCall);

  auto d = Parse("foo[5m:]");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ((*d)->As<Subquery>().step_ms, 0);
}

TEST(ParserTest, CallAggregateBinaryNodes) {
  auto c = Parse("label_join(foo, \"d\", \"-\", \"a\", \"b\")");
  ASSERT_TRUE(c.ok()) << c.status();
  const auto& call = (*c)->As<Call>();
  EXPECT_EQ(call.func->name, "label_join");
  EXPECT_EQ(call.args.size(), 5u);
  EXPECT_EQ(call.args[1]->As<StringLiteral>().value, "d");

  auto a = Parse("count_values without (x, y) (\"val\", foo)");
  ASSERT_TRUE(a.ok()) << a.status();
  const auto& agg = (*a)->As<Aggregate>();
  EXPECT_EQ(agg.op, AggregateOp::kCountValues);
  EXPECT_TRUE(agg.without);
  EXPECT_EQ(agg.grouping, (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(agg.param->kind, NodeKind::kStringLiteral);
  EXPECT_EQ(agg.expr->kind, NodeKind::kVectorSelector);

  auto b = Parse("a / on (x) group_left (y, z) b");
  ASSERT_TRUE(b.ok()) << b.status();
  const auto& bin = (*b)->As<Binary>();
  EXPECT_EQ(bin.op, BinaryOp::kDiv);
  ASSERT_TRUE(bin.matching.has_value());
  EXPECT_TRUE(bin.matching->on);
  EXPECT_EQ(bin.matching->card, Cardinality::kManyToOne);
  EXPECT_EQ(bin.matching->matching_labels, (std::vector<std::string>{"x"}));
  EXPECT_EQ(bin.matching->include, (std::vector<std::string>{"y", "z"}));

  auto set = Parse("a and b");
  ASSERT_TRUE(set.ok());
  EXPECT_EQ((*set)->As<Binary>().matching->card, Cardinality::kManyToMany);
  auto plain = Parse("a + b");
  EXPECT_EQ((*plain)->As<Binary>().matching->card, Cardinality::kOneToOne);
  auto scalar = Parse("a + 1");
  EXPECT_FALSE((*scalar)->As<Binary>().matching.has_value());
  auto cmp = Parse("a > bool 1");
  EXPECT_TRUE((*cmp)->As<Binary>().return_bool);

  auto u = Parse("-foo");
  ASSERT_EQ((*u)->kind, NodeKind::kUnary);
  EXPECT_TRUE((*u)->As<Unary>().negate);
  auto n = Parse("-0x10");
  ASSERT_EQ((*n)->kind, NodeKind::kNumberLiteral);
  EXPECT_EQ((*n)->As<NumberLiteral>().value, -16);
  auto p = Parse("(foo)");
  EXPECT_EQ((*p)->kind, NodeKind::kParen);
  auto nan = Parse("NaN");
  EXPECT_TRUE(std::isnan((*nan)->As<NumberLiteral>().value));
}

TEST(ParserTest, Positions) {
  auto e = Parse("foo +\n  sum(bar)");
  ASSERT_TRUE(e.ok());
  const auto& b = (*e)->As<Binary>();
  EXPECT_EQ(b.pos.line, 1);
  EXPECT_EQ(b.pos.column, 1);
  EXPECT_EQ(b.rhs->pos.line, 2);
  EXPECT_EQ(b.rhs->pos.column, 3);
  EXPECT_EQ(b.rhs->pos.offset, 8);
  auto u = Parse("x * -1");
  EXPECT_EQ((*u)->As<Binary>().rhs->pos.column, 5);
}

TEST(ParserTest, Durations) {
  struct Case {
    const char* text;
    int64_t ms;
  } ok[] = {{"0", 0},
            {"0s", 0},
            {"1ms", 1},
            {"5m", 300000},
            {"1h30m", 5400000},
            {"1d", 86400000},
            {"1w", 604800000},
            {"1y", 31536000000},
            {"1y1w1d1h1m1s1ms", 31536000000 + 604800000 + 86400000 + 3600000 + 60000 + 1000 + 1}};
  for (const Case& c : ok) {
    auto d = ParsePromDuration(c.text);
    ASSERT_TRUE(d.ok()) << c.text << ": " << d.status();
    EXPECT_EQ(*d, c.ms) << c.text;
  }
  for (const char* bad :
       {"", "5", "m", "5s5m", "1m1m", "1ms1s", "1.5m", "5x", "-5m", "1h 30m", "99999999999999999999s"}) {
    EXPECT_FALSE(ParsePromDuration(bad).ok()) << bad;
  }
  EXPECT_EQ(std::string(ParsePromDuration("5s5m").status().message()), "not a valid duration string: \"5s5m\"");
  EXPECT_EQ(std::string(ParsePromDuration("9999999999999999y").status().message()), "duration out of range");
  EXPECT_EQ(FormatDuration(0), "0s");
  EXPECT_EQ(FormatDuration(5400000), "1h30m");
  EXPECT_EQ(FormatDuration(90 * 86400000LL), "90d");
  EXPECT_EQ(FormatDuration(1500), "1s500ms");
}

TEST(ParserTest, Numbers) {
  EXPECT_EQ(FormatNumber(1), "1");
  EXPECT_EQ(FormatNumber(-0.5), "-0.5");
  EXPECT_EQ(FormatNumber(1e6), "1e+06");
  EXPECT_EQ(FormatNumber(999999), "999999");
  EXPECT_EQ(FormatNumber(1.5e100), "1.5e+100");
  EXPECT_EQ(FormatNumber(0.0001), "0.0001");
  EXPECT_EQ(FormatNumber(0.00001), "1e-05");
  EXPECT_EQ(FormatNumber(-INFINITY), "-Inf");
}

struct ErrorCase {
  const char* input;
  const char* message;
};

class ErrorTest : public testing::TestWithParam<ErrorCase> {};

TEST_P(ErrorTest, ReportsPrometheusMessage) {
  auto e = Parse(GetParam().input);
  ASSERT_FALSE(e.ok()) << GetParam().input << " parsed as " << Format(**e);
  EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(e.status().message()), GetParam().message) << GetParam().input;
}

INSTANTIATE_TEST_SUITE_P(
    Syntax, ErrorTest,
    testing::Values(
        ErrorCase{"", "1:1: no expression found in input"},
        ErrorCase{"  # only a comment", "1:19: no expression found in input"},
        ErrorCase{"foo +", "1:6: unexpected end of input; expected an expression"},
        ErrorCase{"foo +\n  )", "2:3: unexpected \")\"; expected an expression"},
        ErrorCase{"rate(foo[)", "1:10: unexpected \")\"; expected a duration"},
        ErrorCase{"sum(rate(foo[5m:)))", "1:17: unexpected \")\"; expected a duration or \"]\""},
        ErrorCase{"foo[5m", "1:7: unexpected end of input; expected \":\" or \"]\""},
        ErrorCase{"foo[5m:1m", "1:10: unexpected end of input; expected \"]\""},
        ErrorCase{"foo[5m:1m:]", "1:10: unexpected \":\"; expected \"]\""},
        ErrorCase{"foo[5]", "1:5: unexpected number \"5\"; expected a duration"},
        ErrorCase{"foo[5s5m]", "1:5: not a valid duration string: \"5s5m\""},
        ErrorCase{"foo[0s]", "1:5: duration must be greater than 0"},
        ErrorCase{"foo[1m:0s]", "1:8: duration must be greater than 0"},
        ErrorCase{"foo[1.5m]", "1:5: bad number or duration syntax: \"1.5m\""},
        ErrorCase{"5x", "1:1: bad number or duration syntax: \"5x\""},
        ErrorCase{"0x", "1:1: bad number syntax: \"0x\""},
        ErrorCase{"1e", "1:1: bad number or duration syntax: \"1e\""},
        ErrorCase{"5m", "1:1: unexpected duration \"5m\"; expected an expression"},
        ErrorCase{"foo bar", "1:5: unexpected identifier \"bar\"; expected an operator or end of input"},
        ErrorCase{"foo)", "1:4: unexpected \")\"; expected an operator or end of input"},
        ErrorCase{"(foo", "1:1: unclosed left parenthesis"},
        ErrorCase{"(foo bar)", "1:6: unexpected identifier \"bar\"; expected \")\""},
        ErrorCase{"sum(foo", "1:4: unclosed left parenthesis"},
        ErrorCase{"rate(foo[5m] bar)", "1:14: unexpected identifier \"bar\"; expected \",\" or \")\""},
        ErrorCase{"foo $ bar", "1:5: unexpected character: U+0024 '$'"},
        ErrorCase{"a ! b", "1:3: unexpected character after \"!\""},
        ErrorCase{"foo offset", "1:11: unexpected end of input; expected a duration"},
        ErrorCase{"foo offset 5", "1:12: unexpected number \"5\"; expected a duration"},
        ErrorCase{"foo @ bar",
                  "1:7: unexpected identifier \"bar\" in @ modifier; expected a timestamp, \"start()\" or \"end()\""},
        ErrorCase{"foo @ start", "1:12: unexpected end of input in @ modifier; expected \"(\""},
        ErrorCase{"foo @ start(1)", "1:13: unexpected number \"1\" in @ modifier; expected \")\""},
        ErrorCase{"a + group_left b",
                  "1:5: unexpected identifier \"group_left\"; expected \"on\" or \"ignoring\" before it"},
        ErrorCase{"a + on b", "1:8: unexpected identifier \"b\" in grouping opts; expected \"(\""}));

INSTANTIATE_TEST_SUITE_P(
    Strings, ErrorTest,
    testing::Values(ErrorCase{"\"unterminated", "1:1: unterminated quoted string"},
                    ErrorCase{"'a\nb'", "1:1: unterminated quoted string"},
                    ErrorCase{"foo{a=\"b}", "1:7: unterminated quoted string"},
                    ErrorCase{"`raw", "1:1: unterminated quoted string"},
                    ErrorCase{"\"a\\qb\"", "1:3: unknown escape sequence U+0071 'q'"},
                    ErrorCase{"'\\\"'", "1:2: unknown escape sequence U+0022 '\"'"},
                    ErrorCase{"\"\\u12\"", "1:2: unexpected end of escape sequence"},
                    ErrorCase{"\"\\xZZ\"", "1:4: illegal character U+005A 'Z' in escape sequence"},
                    ErrorCase{"\"\\ud800\"", "1:2: escape sequence is an invalid Unicode code point"},
                    ErrorCase{"\"\\U00110000\"", "1:2: escape sequence is an invalid Unicode code point"},
                    ErrorCase{"\"\\400\"", "1:2: escape sequence is an invalid Unicode code point"},
                    ErrorCase{"\"\xff\"", "1:1: invalid UTF-8 rune"}));

INSTANTIATE_TEST_SUITE_P(
    Selectors, ErrorTest,
    testing::Values(
        ErrorCase{"{}", "1:1: vector selector must contain at least one non-empty matcher"},
        ErrorCase{"{a=\"\"}", "1:1: vector selector must contain at least one non-empty matcher"},
        ErrorCase{"{a=~\".*\"}", "1:1: vector selector must contain at least one non-empty matcher"},
        ErrorCase{"{a!=\"x\"}", "1:1: vector selector must contain at least one non-empty matcher"},
        ErrorCase{"x + {a=~\".*\", b!~\"c\"}", "1:5: vector selector must contain at least one non-empty matcher"},
        ErrorCase{"foo{__name__=\"bar\"}", "1:1: metric name must not be set twice: \"foo\" or \"bar\""},
        ErrorCase{"foo{a=\"b\"", "1:10: unexpected end of input in label matching; expected \",\" or \"}\""},
        ErrorCase{"foo{a}", "1:6: unexpected \"}\" in label matching; expected one of \"=\", \"!=\", \"=~\", \"!~\""},
        ErrorCase{"foo{a==\"b\"}",
                  "1:6: unexpected \"==\" in label matching; expected one of \"=\", \"!=\", \"=~\", \"!~\""},
        ErrorCase{"foo{a=b}", "1:7: unexpected identifier \"b\" in label matching; expected a string"},
        ErrorCase{"foo{1=\"b\"}", "1:5: unexpected number \"1\" in label matching; expected a label name or \"}\""},
        ErrorCase{"foo{a:b=\"c\"}",
                  "1:5: unexpected identifier \"a:b\" in label matching; expected a label name or \"}\""},
        ErrorCase{"foo{a=\"b\" c=\"d\"}",
                  "1:11: unexpected identifier \"c\" in label matching; expected \",\" or \"}\""},
        ErrorCase{"foo{,}", "1:5: unexpected \",\" in label matching; expected a label name or \"}\""},
        ErrorCase{"foo offset 5m offset 1m", "1:15: offset may not be set multiple times"},
        ErrorCase{"sum(foo) offset 5m",
                  "1:10: offset modifier must be preceded by an instant vector selector or range vector selector or a "
                  "subquery"},
        ErrorCase{"1 @ 100",
                  "1:3: @ modifier must be preceded by an instant vector selector or range vector selector or a "
                  "subquery"},
        ErrorCase{"(foo) offset 1m",
                  "1:7: offset modifier must be preceded by an instant vector selector or range vector selector or a "
                  "subquery"},
        ErrorCase{"foo @ 1 @ 2", "1:9: @ <timestamp> may not be set multiple times"},
        ErrorCase{"foo @ start() @ end()", "1:15: @ <timestamp> may not be set multiple times"},
        ErrorCase{"foo @ Inf", "1:7: timestamp out of bounds for @ modifier: +Inf"},
        ErrorCase{"foo @ -NaN", "1:7: timestamp out of bounds for @ modifier: NaN"},
        ErrorCase{"foo @ 1e20", "1:7: timestamp out of bounds for @ modifier: 100000000000000000000.000000"},
        ErrorCase{"foo offset 5m [10m]", "1:15: no offset modifiers allowed before range"},
        ErrorCase{"foo @ 1 [10m]", "1:9: no offset modifiers allowed before range"},
        ErrorCase{"(foo)[5m]", "1:6: ranges only allowed for vector selectors"},
        ErrorCase{"rate(foo[5m])[5m]", "1:14: ranges only allowed for vector selectors"},
        ErrorCase{"foo[5m][10m:]", "1:1: subquery is only allowed on instant vector, got range vector instead"},
        ErrorCase{"1[10m:]", "1:1: subquery is only allowed on instant vector, got scalar instead"},
        ErrorCase{"foo{a=~\"(\"}", "1:5: invalid regex for label \"a\": missing ): ^(?:()$"}));

INSTANTIATE_TEST_SUITE_P(
    Types, ErrorTest,
    testing::Values(
        ErrorCase{"rate(foo)", "1:6: expected type range vector in call to function \"rate\", got instant vector"},
        ErrorCase{"abs(foo[5m])", "1:5: expected type instant vector in call to function \"abs\", got range vector"},
        ErrorCase{"histogram_quantile(foo, bar)",
                  "1:20: expected type scalar in call to function \"histogram_quantile\", got instant vector"},
        ErrorCase{"rate()", "1:1: expected 1 argument(s) in call to \"rate\", got 0"},
        ErrorCase{"time(foo)", "1:1: expected 0 argument(s) in call to \"time\", got 1"},
        ErrorCase{"clamp(foo, 1)", "1:1: expected 3 argument(s) in call to \"clamp\", got 2"},
        ErrorCase{"round()", "1:1: expected at least 1 argument(s) in call to \"round\", got 0"},
        ErrorCase{"round(a, 1, 2)", "1:1: expected at most 2 argument(s) in call to \"round\", got 3"},
        ErrorCase{"hour(a, b)", "1:1: expected at most 1 argument(s) in call to \"hour\", got 2"},
        ErrorCase{"label_join(a, \"b\")", "1:1: expected at least 3 argument(s) in call to \"label_join\", got 2"},
        ErrorCase{"label_join(a, \"b\", \",\", 1)",
                  "1:25: expected type string in call to function \"label_join\", got scalar"},
        ErrorCase{"label_replace(a, \"b\", \"c\", \"d\", 1)",
                  "1:33: expected type string in call to function \"label_replace\", got scalar"},
        ErrorCase{"nosuchfunc(a)", "1:1: unknown function with name \"nosuchfunc\""},
        ErrorCase{"Rate(foo[5m])", "1:1: unknown function with name \"Rate\""},
        ErrorCase{"rate(foo[5m],)", "1:13: trailing commas not allowed in function call args"},
        ErrorCase{"sum()", "1:1: no arguments for aggregate expression provided"},
        ErrorCase{"topk(foo)", "1:1: wrong number of arguments for aggregate expression provided, expected 2, got 1"},
        ErrorCase{"sum(a, b)", "1:1: wrong number of arguments for aggregate expression provided, expected 1, got 2"},
        ErrorCase{"sum(foo[5m])", "1:5: expected type instant vector in aggregation expression, got range vector"},
        ErrorCase{"sum(1)", "1:5: expected type instant vector in aggregation expression, got scalar"},
        ErrorCase{"topk(\"a\", foo)", "1:6: expected type scalar in aggregation parameter, got string"},
        ErrorCase{"count_values(1, foo)", "1:14: expected type string in aggregation parameter, got scalar"},
        ErrorCase{"sum foo", "1:5: unexpected identifier \"foo\" in aggregation; expected \"(\""},
        ErrorCase{"sum", "1:4: unexpected end of input in aggregation; expected \"(\""},
        ErrorCase{"sum by foo (x)", "1:8: unexpected identifier \"foo\" in grouping opts; expected \"(\""},
        ErrorCase{"sum by (a b) (x)", "1:11: unexpected identifier \"b\" in grouping opts; expected \",\" or \")\""},
        ErrorCase{"sum by (a:b) (x)",
                  "1:9: unexpected identifier \"a:b\" in grouping opts; expected a label name or \")\""},
        ErrorCase{"sum by (\"a\") (x)",
                  "1:9: unexpected string \"a\" in grouping opts; expected a label name or \")\""},
        ErrorCase{"sum by (a) (x) by (b)", "1:16: unexpected identifier \"by\"; expected an operator or end of input"},
        ErrorCase{"1 > 2", "1:3: comparisons between scalars must use BOOL modifier"},
        ErrorCase{"a + bool b", "1:3: bool modifier can only be used on comparison operators"},
        ErrorCase{"a and bool b", "1:3: bool modifier can only be used on comparison operators"},
        ErrorCase{"1 and foo", "1:1: set operator \"and\" not allowed in binary scalar expression"},
        ErrorCase{"foo or 1", "1:1: set operator \"or\" not allowed in binary scalar expression"},
        ErrorCase{"1 + on(a) foo", "1:1: vector matching only allowed between instant vectors"},
        ErrorCase{"foo and on(a) group_left(b) bar", "1:1: no grouping allowed for \"and\" operation"},
        ErrorCase{"a + on(x) group_left(x) b", "1:3: label \"x\" must not occur in ON and GROUP clause at once"},
        ErrorCase{"foo[5m] + 1", "1:1: binary expression must contain only scalar and instant vector types"},
        ErrorCase{"1 + \"a\"", "1:5: binary expression must contain only scalar and instant vector types"},
        ErrorCase{"-foo[5m]",
                  "1:1: unary expression only allowed on expressions of type scalar or instant vector, got \"range "
                  "vector\""},
        ErrorCase{"-\"a\"",
                  "1:1: unary expression only allowed on expressions of type scalar or instant vector, got "
                  "\"string\""},
        ErrorCase{"sum(\n  rate(foo)\n)",
                  "2:8: expected type range vector in call to function \"rate\", got instant vector"}));

TEST(ParserTest, NestingLimit) {
  auto nested = [](int n) {
    std::string q(static_cast<size_t>(n), '(');
    q += '1';
    q.append(static_cast<size_t>(n), ')');
    return q;
  };
  EXPECT_TRUE(Parse(nested(100)).ok());
  auto deep = Parse(nested(10000));
  ASSERT_FALSE(deep.ok());
  EXPECT_NE(deep.status().message().find("nested too deeply"), std::string::npos) << deep.status();

  EXPECT_TRUE(Parse(nested(kMaxParseDepth - 1)).ok());
  EXPECT_FALSE(Parse(nested(kMaxParseDepth + 1)).ok());

  std::string chain = "1";
  for (int i = 0; i < 1000; ++i) chain += " + 1";
  EXPECT_TRUE(Parse(chain).ok());
  std::string or_chain = "a";
  for (int i = 0; i < 1000; ++i) or_chain += " or a";
  EXPECT_TRUE(Parse(or_chain).ok());
  for (int i = 0; i < 100000; ++i) chain += "+1";
  EXPECT_EQ(Parse(chain).status().code(), absl::StatusCode::kInvalidArgument);

  std::string unary(100000, '-');
  unary += "foo";
  EXPECT_EQ(Parse(unary).status().code(), absl::StatusCode::kInvalidArgument);
  std::string pow = "2";
  for (int i = 0; i < 100000; ++i) pow += "^2";
  EXPECT_EQ(Parse(pow).status().code(), absl::StatusCode::kInvalidArgument);
  std::string calls;
  for (int i = 0; i < 100000; ++i) calls += "abs(";
  EXPECT_EQ(Parse(calls).status().code(), absl::StatusCode::kInvalidArgument);
}

// Parses `q`; when it parses, its canonical form must parse to itself.
void CheckRobust(const std::string& q) {
  auto e = Parse(q);
  if (!e.ok()) {
    ASSERT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument) << q;
    ASSERT_FALSE(e.status().message().empty());
    return;
  }
  std::string canonical = Format(**e);
  auto again = Parse(canonical);
  ASSERT_TRUE(again.ok()) << "input: " << q << "\ncanonical: " << canonical << "\n" << again.status();
  ASSERT_EQ(Format(**again), canonical) << q;
}

const char* const kValidQueries[] = {
    "sum by (job) (rate(http_requests_total{job=~\"api|web\", code!=\"200\"}[5m] offset 1h))",
    "histogram_quantile(0.99, sum without (instance) (rate(x_bucket[5m] @ end())))",
    "a / on (x) group_left (y) b * -c ^ 2 ^ 0.5 or d unless e and f > bool 3",
    "topk(5, max_over_time(rate(foo[1m])[1h:30s] offset -5m @ 100))",
    "label_join(label_replace(up, \"a\", \"$1\", \"b\", \"(.*)\"), \"d\", \",\", \"a\", \"b\")",
    "count_values(\"v\", round(foo, 0.1)) # comment\n + on () vector(time())",
    "-(foo{a='b'}) atan2 +bar @ start() % 0x1F",
    "clamp(sort_desc(absent_over_time(x[1y2w:1d])), -Inf, +Inf) == bool NaN",
};

TEST(ParserTest, RandomTruncationsNeverCrash) {
  for (const char* q : kValidQueries) {
    auto e = Parse(q);
    ASSERT_TRUE(e.ok()) << q << ": " << e.status();
    std::string s(q);
    for (size_t n = 0; n <= s.size(); ++n) CheckRobust(s.substr(0, n));
    for (size_t n = 0; n <= s.size(); ++n) CheckRobust(s.substr(n));
  }
}

TEST(ParserTest, RandomMutationsNeverCrash) {
  std::mt19937 rng(42);
  const std::string alphabet = "abfoxy_:{}[]()\"'`\\=!~<>+-*/%^@,.# \n0123456789emsdhwyIN";
  for (int i = 0; i < 20000; ++i) {
    std::string q = kValidQueries[rng() % std::size(kValidQueries)];
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < edits && !q.empty(); ++k) {
      size_t at = rng() % q.size();
      switch (rng() % 3) {
        case 0:
          q.erase(at, 1 + rng() % 3);
          break;
        case 1:
          q.insert(at, 1, alphabet[rng() % alphabet.size()]);
          break;
        default:
          q[at] = alphabet[rng() % alphabet.size()];
          break;
      }
    }
    CheckRobust(q);
  }
}

TEST(ParserTest, RandomBytesNeverCrash) {
  std::mt19937 rng(7);
  const std::string alphabet = "abfoxy_:{}[]()\"'`\\=!~<>+-*/%^@,.# \n0123456789emsdhwyIN";
  for (int i = 0; i < 20000; ++i) {
    std::string q;
    size_t len = rng() % 40;
    for (size_t k = 0; k < len; ++k) {
      q += i % 2 == 0 ? static_cast<char>(rng() % 256) : alphabet[rng() % alphabet.size()];
    }
    CheckRobust(q);
  }
}

TEST(ParserTest, FunctionTable) {
  const char* const vector_of_range[] = {"rate",
                                         "irate",
                                         "increase",
                                         "delta",
                                         "idelta",
                                         "deriv",
                                         "resets",
                                         "changes",
                                         "avg_over_time",
                                         "min_over_time",
                                         "max_over_time",
                                         "sum_over_time",
                                         "count_over_time",
                                         "last_over_time",
                                         "present_over_time",
                                         "absent_over_time",
                                         "stddev_over_time",
                                         "stdvar_over_time"};
  for (const char* name : vector_of_range) {
    const Function* f = LookupFunction(name);
    ASSERT_NE(f, nullptr) << name;
    EXPECT_EQ(f->arg_types, std::vector<ValueType>{ValueType::kMatrix}) << name;
    EXPECT_EQ(f->return_type, ValueType::kVector) << name;
    std::string q = name;
    q += "(x[5m])";
    EXPECT_TRUE(Parse(q).ok()) << q;
  }
  for (const char* name : {"abs",  "ceil",        "floor",        "exp",           "ln",     "log2",  "log10",
                           "sqrt", "timestamp",   "sort",         "sort_desc",     "absent", "round", "minute",
                           "hour", "day_of_week", "day_of_month", "days_in_month", "month",  "year"}) {
    std::string q = name;
    q += "(x)";
    auto e = Parse(q);
    ASSERT_TRUE(e.ok()) << q << ": " << e.status();
    EXPECT_EQ((*e)->type(), ValueType::kVector) << q;
  }
  for (const char* q : {"predict_linear(x[5m], 60)", "quantile_over_time(0.5, x[5m])", "histogram_quantile(0.5, x)",
                        "clamp(x, 1, 2)", "clamp_min(x, 1)", "clamp_max(x, 1)", "label_replace(x, 'a', 'b', 'c', 'd')",
                        "label_join(x, 'a', 'b')", "time()", "vector(1)", "scalar(x)"}) {
    EXPECT_TRUE(Parse(q).ok()) << q;
  }
  EXPECT_EQ(LookupFunction("holt_winters")->arg_types.size(), 3u);
  EXPECT_EQ(LookupFunction("pi")->return_type, ValueType::kScalar);
  EXPECT_EQ(LookupFunction("histogram_count"), nullptr);  // native histograms: not supported
  EXPECT_EQ(LookupFunction("RATE"), nullptr);
  EXPECT_EQ(LookupFunction("time")->return_type, ValueType::kScalar);
  EXPECT_EQ(LookupFunction("scalar")->return_type, ValueType::kScalar);
  EXPECT_EQ(LookupFunction("label_join")->variadic, -1);
}

TEST(ParserTest, MetricSelector) {
  auto m = ParseMetricSelector("up{job=~\"api|web\", instance!=\"\"}");
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_EQ(m->size(), 3u);
  EXPECT_EQ((*m)[0].ToString(), "__name__=\"up\"");
  EXPECT_EQ((*m)[1].op(), model::Matcher::Op::kRegex);
  EXPECT_EQ((*m)[2].op(), model::Matcher::Op::kNotEqual);
  EXPECT_TRUE(ParseMetricSelector("{__name__=~\"node_.*\"}").ok());
  EXPECT_EQ(std::string(ParseMetricSelector("sum(up)").status().message()),
            "1:1: expected a series selector, got instant vector");
  EXPECT_EQ(std::string(ParseMetricSelector("  up[5m]").status().message()),
            "1:3: expected a series selector, got range vector");
  EXPECT_EQ(std::string(ParseMetricSelector("up offset 5m").status().message()),
            "1:1: a series selector may not have offset or @ modifiers");
  EXPECT_EQ(std::string(ParseMetricSelector("{}").status().message()),
            "1:1: vector selector must contain at least one non-empty matcher");
  EXPECT_EQ(ParseMetricSelector("up{").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(LexerTest, Tokens) {
  auto toks = Lex("sum by(a) (x{y=~\"z\"}[5m:1m]) >= 0x1 # c");
  ASSERT_TRUE(toks.ok()) << toks.status();
  std::vector<TokenKind> kinds;
  for (const Token& t : *toks) kinds.push_back(t.kind);
  EXPECT_EQ(kinds, (std::vector<TokenKind>{TokenKind::kIdentifier, TokenKind::kIdentifier, TokenKind::kLParen,
                                           TokenKind::kIdentifier, TokenKind::kRParen,     TokenKind::kLParen,
                                           TokenKind::kIdentifier, TokenKind::kLBrace,     TokenKind::kIdentifier,
                                           TokenKind::kEqlRegex,   TokenKind::kString,     TokenKind::kRBrace,
                                           TokenKind::kLBracket,   TokenKind::kDuration,   TokenKind::kColon,
                                           TokenKind::kDuration,   TokenKind::kRBracket,   TokenKind::kRParen,
                                           TokenKind::kGte,        TokenKind::kNumber,     TokenKind::kEof}));
  EXPECT_EQ((*toks)[10].value, "z");
  EXPECT_EQ((*toks)[19].number, 1);
  EXPECT_EQ((*toks)[20].pos.column, 40);  // end of input, after the comment
}

}  // namespace
}  // namespace sheaf::promql
