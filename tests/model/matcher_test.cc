#include "model/matcher.h"

#include <gtest/gtest.h>

namespace sheaf::model {
namespace {

Matcher M(Matcher::Op op, const std::string& name, const std::string& value) {
  auto m = Matcher::Create(op, name, value);
  EXPECT_TRUE(m.ok()) << m.status();
  return *m;
}

TEST(MatcherTest, Operators) {
  EXPECT_TRUE(M(Matcher::Op::kEqual, "a", "x").Matches("x"));
  EXPECT_FALSE(M(Matcher::Op::kEqual, "a", "x").Matches("xy"));
  EXPECT_TRUE(M(Matcher::Op::kNotEqual, "a", "x").Matches("y"));
  EXPECT_FALSE(M(Matcher::Op::kNotEqual, "a", "x").Matches("x"));
  EXPECT_TRUE(M(Matcher::Op::kRegex, "a", "web-.*").Matches("web-1"));
  EXPECT_TRUE(M(Matcher::Op::kNotRegex, "a", "web-.*").Matches("db-1"));
}

TEST(MatcherTest, RegexIsFullyAnchored) {
  auto m = M(Matcher::Op::kRegex, "a", "b|c");
  EXPECT_TRUE(m.Matches("b"));
  EXPECT_TRUE(m.Matches("c"));
  EXPECT_FALSE(m.Matches("ab"));
  EXPECT_FALSE(m.Matches("bc"));
}

TEST(MatcherTest, InvalidRegexIsInvalidArgument) {
  auto m = Matcher::Create(Matcher::Op::kRegex, "host", "web-(");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(m.status().message().find("host"), std::string_view::npos);
}

TEST(MatcherTest, MissingLabelIsEmptyValue) {
  Labels l = {{"__name__", "up"}, {"job", "node"}};
  EXPECT_TRUE(MatchesAll({M(Matcher::Op::kEqual, "host", "")}, l));
  EXPECT_FALSE(MatchesAll({M(Matcher::Op::kNotEqual, "host", "")}, l));
  EXPECT_TRUE(MatchesAll({M(Matcher::Op::kEqual, "job", "node"), M(Matcher::Op::kNotRegex, "host", ".+")}, l));
}

TEST(MatcherTest, ParsesFullSelector) {
  auto ms = ParseSelector(R"( node_cpu_seconds_total { mode != "idle", host=~'web-\d+' , a!~"x\"y" } )");
  ASSERT_TRUE(ms.ok()) << ms.status();
  ASSERT_EQ(ms->size(), 4u);
  EXPECT_EQ((*ms)[0].ToString(), R"(__name__="node_cpu_seconds_total")");
  EXPECT_EQ((*ms)[1].ToString(), R"(mode!="idle")");
  EXPECT_EQ((*ms)[2].op(), Matcher::Op::kRegex);
  EXPECT_EQ((*ms)[2].value(), R"(web-\d+)");
  EXPECT_TRUE((*ms)[2].Matches("web-12"));
  EXPECT_EQ((*ms)[3].value(), "x\"y");
}

TEST(MatcherTest, ParsesBareNameAndBracesOnly) {
  auto a = ParseSelector("up");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->size(), 1u);
  auto b = ParseSelector(R"({__name__=~"node_.*",})");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->size(), 1u);
}

TEST(MatcherTest, RejectsMalformedSelectorsWithPosition) {
  for (const char* bad :
       {"", "{", "up{a}", "up{a=b}", "up{a=\"b\"", "up{a=\"b}", "up extra", "up{a=~\"(\"}", "{a==\"b\"}"}) {
    auto r = ParseSelector(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_NE(ParseSelector("up{a}").status().message().find("position"), std::string_view::npos);
}

}  // namespace
}  // namespace sheaf::model
