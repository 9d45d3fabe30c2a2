#include "model/labels.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

namespace sheaf::model {
namespace {

TEST(LabelsTest, MetricNames) {
  for (const char* ok : {"up", "node_cpu_seconds_total", "job:rate5m", "_x", "A1"}) {
    EXPECT_TRUE(IsValidMetricName(ok)) << ok;
  }
  for (const char* bad : {"", "1up", "a-b", "a b", "é", "a.b"}) {
    EXPECT_FALSE(IsValidMetricName(bad)) << bad;
  }
}

TEST(LabelsTest, LabelNames) {
  for (const char* ok : {"host", "_x", "a1", "__name__"}) EXPECT_TRUE(IsValidLabelName(ok)) << ok;
  for (const char* bad : {"", "1a", "a:b", "a-b", "a b"}) EXPECT_FALSE(IsValidLabelName(bad)) << bad;
}

TEST(LabelsTest, LabelValuesMustBeUtf8AndBounded) {
  EXPECT_TRUE(IsValidLabelValue("", 10));
  EXPECT_TRUE(IsValidLabelValue("h\xC3\xA9llo", 10));      // é
  EXPECT_TRUE(IsValidLabelValue("\xF0\x9F\x98\x80", 10));  // emoji
  EXPECT_FALSE(IsValidLabelValue("\xC3", 10));             // truncated
  EXPECT_FALSE(IsValidLabelValue("\xC0\xAF", 10));         // overlong '/'
  EXPECT_FALSE(IsValidLabelValue("\xED\xA0\x80", 10));     // surrogate
  EXPECT_FALSE(IsValidLabelValue("\xFF", 10));
  EXPECT_FALSE(IsValidLabelValue("abcdefghijk", 10));  // too long
}

TEST(LabelsTest, CanonicalizeSortsAndRejectsDuplicates) {
  Labels l = {{"b", "2"}, {"__name__", "m"}, {"a", "1"}};
  ASSERT_TRUE(Canonicalize(l).ok());
  EXPECT_EQ(l, (Labels{{"__name__", "m"}, {"a", "1"}, {"b", "2"}}));
  Labels dup = {{"a", "1"}, {"b", "2"}, {"a", "3"}};
  auto s = Canonicalize(dup);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("\"a\""), std::string_view::npos);
}

TEST(LabelsTest, FormatEscapesValues) {
  Labels l = {{"__name__", "m"}, {"a", "x\"y\\z\nw"}};
  EXPECT_EQ(FormatLabels(l), R"(m{a="x\"y\\z\nw"})");
  EXPECT_EQ(MetricName(l), "m");
  EXPECT_EQ(MetricName({{"a", "b"}}), "");
}

TEST(LabelsTest, SanitizeUtf8ReplacesOnlyInvalidSequences) {
  bool changed = true;
  EXPECT_EQ(SanitizeUtf8("caf\xc3\xa9", &changed), "caf\xc3\xa9");
  EXPECT_FALSE(changed);
  EXPECT_EQ(SanitizeUtf8("/mnt/\xff\xfeok", &changed), "/mnt/\xEF\xBF\xBD\xEF\xBF\xBDok");
  EXPECT_TRUE(changed);
  EXPECT_EQ(SanitizeUtf8("\xe2\x82"), "\xEF\xBF\xBD\xEF\xBF\xBD");  // truncated sequence
  EXPECT_TRUE(IsValidUtf8(SanitizeUtf8("\xed\xa0\x80")));           // a surrogate
}

TEST(LabelsTest, AbbreviateBoundsAndEscapes) {
  EXPECT_EQ(Abbreviate("short"), "short");
  std::string cut = Abbreviate(std::string(1000, 'x'), 10);
  EXPECT_EQ(cut, "xxxxxxxxxx...(990 more bytes)");
  EXPECT_EQ(Abbreviate("a\xff"
                       "b"),
            "a\\xFFb");
  Labels l = {{"__name__", "m"}};
  for (int i = 0; i < 1000; ++i) l.push_back({fmt::format("n{}", i), std::string(50, 'v')});
  std::string s = FormatLabelsShort(l);
  EXPECT_LT(s.size(), 400u);
  EXPECT_NE(s.find("more labels"), std::string::npos) << s;
  EXPECT_EQ(FormatLabelsShort({{"__name__", "up"}, {"job", "x"}}), "up{job=\"x\"}");
}

}  // namespace
}  // namespace sheaf::model
