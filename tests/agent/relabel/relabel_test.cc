// Relabeling: each action against the behaviour Prometheus documents and
// tests (model/relabel in prometheus/prometheus), template expansion as Go's
// Regexp.Expand, anchoring, the YAML checks, and MetricRelabeler's drops.
#include "agent/relabel/relabel.h"

#include <gtest/gtest.h>
#include <re2/re2.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <initializer_list>
#include <optional>
#include <string>

namespace sheaf::agent {
namespace {

RelabelRules MustParse(const std::string& yaml) {
  auto rules = RelabelRules::Parse(YAML::Load(yaml));
  EXPECT_TRUE(rules.ok()) << rules.status();
  return rules.ok() ? *std::move(rules) : RelabelRules();
}

std::string ParseError(const std::string& yaml) {
  auto rules = RelabelRules::Parse(YAML::Load(yaml));
  EXPECT_FALSE(rules.ok()) << yaml;
  return rules.ok() ? "" : std::string(rules.status().message());
}

model::Labels Sorted(model::Labels labels) {
  std::sort(labels.begin(), labels.end());
  return labels;
}

// The labels after `yaml`'s rules, or nullopt when the series is dropped.
std::optional<model::Labels> Relabel(const std::string& yaml, model::Labels labels) {
  if (!MustParse(yaml).Process(labels)) return std::nullopt;
  return Sorted(labels);
}

TEST(RelabelTest, ReplaceWithBracedGroups) {
  auto out = Relabel(R"Y([{source_labels: [a], regex: "f(.*)", target_label: d, replacement: "ch${1}-ch${1}"}])Y",
                 {{"a", "foo"}, {"b", "bar"}, {"c", "baz"}});
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, Sorted({{"a", "foo"}, {"b", "bar"}, {"c", "baz"}, {"d", "choo-choo"}}));
}

TEST(RelabelTest, ReplaceJoinsSourcesAndChainsRules) {
  // The second rule sees the first one's result (a = "boobam").
  auto out = Relabel(R"Y(
- source_labels: [a, b]
  regex: "f(.*);(.*)r"
  target_label: a
  replacement: "b${1}${2}m"
- source_labels: [c, a]
  regex: "(b).*b(.*)ba(.*)"
  target_label: d
  replacement: "$1$2$2$3"
)Y",
                 {{"a", "foo"}, {"b", "bar"}, {"c", "baz"}});
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, Sorted({{"a", "boobam"}, {"b", "bar"}, {"c", "baz"}, {"d", "boooom"}}));
}

TEST(RelabelTest, ReplaceWithoutMatchChangesNothing) {
  auto out = Relabel(R"Y([{source_labels: [a], regex: f, target_label: b, replacement: bar}])Y", {{"a", "boo"}});
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, Sorted({{"a", "boo"}}));
}

TEST(RelabelTest, ReplaceInnerGroup) {
  auto out = Relabel(R"Y([{source_labels: [a], regex: ".*(b).*", target_label: d}])Y", {{"a", "abc"}});
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, Sorted({{"a", "abc"}, {"d", "b"}}));
}

TEST(RelabelTest, ReplaceTemplatedTargetLabel) {
  auto out = Relabel(R"Y([{source_labels: [a], regex: "some-([^-]+)-([^,]+)", replacement: "${2}", target_label: "${1}"}])Y",
                 {{"a", "some-name-value"}});
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, Sorted({{"a", "some-name-value"}, {"name", "value"}}));

  // An empty replacement deletes the target, which did not exist: no change.
  out = Relabel(R"Y([{source_labels: [a], regex: "some-([^-]+)-([^,]+)", replacement: "${3}", target_label: "${1}"}])Y",
            {{"a", "some-name-value"}});
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, Sorted({{"a", "some-name-value"}}));

  // A target that expands to "" or "0" is not a label name: skipped.
  out = Relabel(R"Y(
- {source_labels: [a], regex: "some-([^-]+)-([^,]+)", replacement: "${1}", target_label: "${3}"}
- {source_labels: [a], regex: "some-([^-]+)(-[^,]+)", replacement: "${1}", target_label: "${3}"}
- {source_labels: [a], regex: "some-([^-]+)-([^,]+)", replacement: "${1}", target_label: "${2}"}
)Y",
            {{"a", "some-name-0"}});
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, Sorted({{"a", "some-name-0"}}));
}

TEST(RelabelTest, ReplaceRealLifeTags) {
  auto out = Relabel(R"Y(
- source_labels: [__meta_sd_tags]
  regex: "(?:.+,|^)path:(/[^,]+).*"
  replacement: "${1}"
  target_label: __metrics_path__
- source_labels: [__meta_sd_tags]
  regex: "(?:.+,|^)job:([^,]+).*"
  replacement: "${1}"
  target_label: job
- source_labels: [__meta_sd_tags]
  regex: "(?:.+,|^)label:([^=]+)=([^,]+).*"
  replacement: "${2}"
  target_label: "${1}"
)Y",
                 {{"__meta_sd_tags", "path:/secret,job:some-job,label:foo=bar"}});
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, Sorted({{"__meta_sd_tags", "path:/secret,job:some-job,label:foo=bar"},
                          {"__metrics_path__", "/secret"},
                          {"job", "some-job"},
                          {"foo", "bar"}}));
}

TEST(RelabelTest, StaticLabelIsReplaceWithoutSources) {
  auto out = Relabel(R"Y([{target_label: region, replacement: eu-west}])Y", {{"__name__", "up"}});
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, Sorted({{"__name__", "up"}, {"region", "eu-west"}}));
  // ...and it overwrites a label that is there.
  out = Relabel(R"Y([{target_label: region, replacement: eu-west}])Y", {{"__name__", "up"}, {"region", "us"}});
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, Sorted({{"__name__", "up"}, {"region", "eu-west"}}));
}

TEST(RelabelTest, RenameLabelIsReplacePlusLabeldrop) {
  auto out = Relabel(R"Y(
- {source_labels: [device], target_label: disk}
- {regex: device, action: labeldrop}
)Y",
                 {{"__name__", "node_disk_reads_completed_total"}, {"device", "sda"}});
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, Sorted({{"__name__", "node_disk_reads_completed_total"}, {"disk", "sda"}}));
}

TEST(RelabelTest, RenameMetricThroughName) {
  auto out = Relabel(R"Y([{source_labels: [__name__], regex: "node_(.*)", target_label: __name__, replacement: "host_$1"}])Y",
                 {{"__name__", "node_load1"}});
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, Sorted({{"__name__", "host_load1"}}));
}

TEST(RelabelTest, DropAndKeep) {
  EXPECT_FALSE(Relabel(R"Y([{source_labels: [a], regex: ".*o.*", action: drop}, {source_labels: [a], target_label: d}])Y",
                   {{"a", "foo"}}));
  EXPECT_FALSE(Relabel(R"Y([{source_labels: [a], regex: ".*o.*", action: drop}])Y", {{"a", "foo"}, {"b", "bar"}}));
  EXPECT_TRUE(Relabel(R"Y([{source_labels: [a], regex: no-match, action: drop}])Y", {{"a", "foo"}}));
  EXPECT_FALSE(Relabel(R"Y([{source_labels: [a], regex: no-match, action: keep}])Y", {{"a", "foo"}}));
  EXPECT_TRUE(Relabel(R"Y([{source_labels: [a], regex: "f.*", action: keep}])Y", {{"a", "foo"}}));
  // Actions are case-insensitive, as in Prometheus.
  EXPECT_FALSE(Relabel(R"Y([{source_labels: [a], regex: "f.*", action: DROP}])Y", {{"a", "foo"}}));
}

TEST(RelabelTest, RegexIsAnchoredAtBothEnds) {
  // "f|o" would match inside "foo" unanchored; anchored it is ^(?:f|o)$.
  EXPECT_TRUE(Relabel(R"Y([{source_labels: [a], regex: "f|o", action: drop}])Y", {{"a", "foo"}}));
  EXPECT_TRUE(Relabel(R"Y([{source_labels: [__name__], regex: foo, action: drop}])Y", {{"__name__", "foobar"}}));
  EXPECT_TRUE(Relabel(R"Y([{source_labels: [__name__], regex: bar, action: drop}])Y", {{"__name__", "foobar"}}));
  EXPECT_FALSE(Relabel(R"Y([{source_labels: [__name__], regex: foobar, action: drop}])Y", {{"__name__", "foobar"}}));
  EXPECT_FALSE(Relabel(R"Y([{source_labels: [__name__], regex: foo, action: keep}])Y", {{"__name__", "foobar"}}));
}

TEST(RelabelTest, MissingSourceLabelIsEmpty) {
  // Drop series without a "team" label: the joined value is "".
  EXPECT_FALSE(Relabel(R"Y([{source_labels: [team], regex: "", action: drop}])Y", {{"__name__", "x"}}));
  EXPECT_TRUE(Relabel(R"Y([{source_labels: [team], regex: "", action: drop}])Y", {{"__name__", "x"}, {"team", "a"}}));
  EXPECT_FALSE(Relabel(R"Y([{source_labels: [a, b], separator: "-", regex: "x-", action: drop}])Y", {{"a", "x"}}));
}

TEST(RelabelTest, LabelMap) {
  auto out = Relabel(R"Y([{regex: "(b.*)", replacement: "bar_${1}", action: labelmap}])Y",
                 {{"a", "foo"}, {"b1", "bar"}, {"b2", "baz"}});
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, Sorted({{"a", "foo"}, {"b1", "bar"}, {"b2", "baz"}, {"bar_b1", "bar"}, {"bar_b2", "baz"}}));

  out = Relabel(R"Y([{regex: "__meta_(my.*)", replacement: "${1}", action: labelmap}])Y",
            {{"a", "foo"}, {"__meta_my_bar", "aaa"}, {"__meta_my_baz", "bbb"}, {"__meta_other", "ccc"}});
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, Sorted({{"a", "foo"},
                          {"__meta_my_bar", "aaa"},
                          {"__meta_my_baz", "bbb"},
                          {"__meta_other", "ccc"},
                          {"my_bar", "aaa"},
                          {"my_baz", "bbb"}}));
}

TEST(RelabelTest, LabelKeepAndLabelDrop) {
  auto out = Relabel(R"Y([{regex: "(b.*)", action: labelkeep}])Y", {{"a", "foo"}, {"b1", "bar"}, {"b2", "baz"}});
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, Sorted({{"b1", "bar"}, {"b2", "baz"}}));
  out = Relabel(R"Y([{regex: "(b.*)", action: labeldrop}])Y", {{"a", "foo"}, {"b1", "bar"}, {"b2", "baz"}});
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, Sorted({{"a", "foo"}}));
}

TEST(RelabelTest, LabelDropThenReplaceThenKeep) {
  // prometheus/prometheus#12283: a label dropped and then set again.
  auto out = Relabel(R"Y(
- {regex: "^__meta_kubernetes_pod_container_port_name$", action: labeldrop}
- source_labels: [__meta_kubernetes_pod_annotation_XXX_metrics_port]
  regex: "(.+)"
  replacement: metrics
  target_label: __meta_kubernetes_pod_container_port_name
- {source_labels: [__meta_kubernetes_pod_container_port_name], regex: "^metrics$", action: keep}
)Y",
                 {{"__meta_kubernetes_pod_container_port_name", "foo"},
                  {"__meta_kubernetes_pod_annotation_XXX_metrics_port", "9091"}});
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, Sorted({{"__meta_kubernetes_pod_annotation_XXX_metrics_port", "9091"},
                          {"__meta_kubernetes_pod_container_port_name", "metrics"}}));
}

TEST(RelabelTest, LowercaseAndUppercase) {
  auto out = Relabel(R"Y(
- {source_labels: [foo], action: uppercase, target_label: foo_uppercase}
- {source_labels: [foo], action: lowercase, target_label: foo_lowercase}
)Y",
                 {{"foo", "bAr123Foo"}});
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, Sorted({{"foo", "bAr123Foo"}, {"foo_lowercase", "bar123foo"}, {"foo_uppercase", "BAR123FOO"}}));
}

TEST(RelabelTest, KeepEqualAndDropEqual) {
  const model::Labels in = {{"__tmp_port", "1234"}, {"__port1", "1234"}, {"__port2", "5678"}};
  EXPECT_TRUE(Relabel(R"Y([{source_labels: [__tmp_port], action: keepequal, target_label: __port1}])Y", in));
  EXPECT_FALSE(Relabel(R"Y([{source_labels: [__tmp_port], action: keepequal, target_label: __port2}])Y", in));
  EXPECT_FALSE(Relabel(R"Y([{source_labels: [__tmp_port], action: dropequal, target_label: __port1}])Y", in));
  EXPECT_TRUE(Relabel(R"Y([{source_labels: [__tmp_port], action: dropequal, target_label: __port2}])Y", in));
}

TEST(RelabelTest, ExpandFollowsGoRegexpExpand) {
  re2::RE2 re("^(?:(?P<first>a+)(b+)(x)?)$");
  ASSERT_TRUE(re.ok());
  const std::string text = "aabb";
  re2::StringPiece pieces[4];
  ASSERT_TRUE(re.Match(text, 0, text.size(), re2::RE2::ANCHOR_BOTH, pieces, 4));
  std::vector<std::string_view> groups;
  for (const auto& p : pieces) groups.emplace_back(p.data(), p.size());
  EXPECT_EQ(ExpandTemplate("$1-$2", re, groups), "aa-bb");
  EXPECT_EQ(ExpandTemplate("${1}x", re, groups), "aax");
  EXPECT_EQ(ExpandTemplate("$1x", re, groups), "");  // the group "1x", which does not exist
  EXPECT_EQ(ExpandTemplate("$first/${first}", re, groups), "aa/aa");
  EXPECT_EQ(ExpandTemplate("[$3]", re, groups), "[]");  // took no part
  EXPECT_EQ(ExpandTemplate("$9", re, groups), "");      // out of range
  EXPECT_EQ(ExpandTemplate("$$1 costs $", re, groups), "$1 costs $");
  EXPECT_EQ(ExpandTemplate("${1", re, groups), "${1");  // malformed: literal
  EXPECT_EQ(ExpandTemplate("$0", re, groups), "aabb");
  EXPECT_EQ(ExpandTemplate("$01", re, groups), "");  // leading zero: a name, not a number
}

TEST(RelabelTest, ParseDefaults) {
  RelabelRules rules = MustParse("[{target_label: x}]");
  ASSERT_EQ(rules.size(), 1u);
  const RelabelRule& r = rules.rules()[0];
  EXPECT_EQ(r.action, RelabelAction::kReplace);
  EXPECT_EQ(r.separator, ";");
  EXPECT_EQ(r.regex, "(.*)");
  EXPECT_EQ(r.replacement, "$1");
  EXPECT_TRUE(r.source_labels.empty());
  EXPECT_TRUE(MustParse("").empty());
  EXPECT_TRUE(MustParse("[]").empty());
}

TEST(RelabelTest, ParseErrorsNameRuleAndField) {
  EXPECT_EQ(ParseError("- {source_labels: [a], action: keep}\n- {target_label: b}\n- {action: kepp}\n"),
            "relabel[2]: unknown action \"kepp\"; expected replace, keep, drop, keepequal, dropequal, labeldrop, "
            "labelkeep, labelmap, lowercase or uppercase (line 3)");
  EXPECT_EQ(ParseError("[{source_labels: [a], regex: \"(\", action: drop}]").rfind("relabel[0]: regex \"(\" is invalid",
                                                                                  0),
            0u);
  EXPECT_NE(ParseError("[{action: replace}]").find("relabel[0]: target_label: the replace action needs a target_label"),
            std::string::npos);
  EXPECT_NE(ParseError("[{target_label: \"-x\"}]").find("target_label: \"-x\" is not a valid label name"),
            std::string::npos);
  EXPECT_NE(ParseError("[{target_label: \"0${1}\"}]").find("target_label: \"0${1}\""), std::string::npos);
  EXPECT_NE(ParseError("[{target_label: \"${\"}]").find("not a valid label name"), std::string::npos);
  EXPECT_NE(ParseError("[{source_labels: [a], action: lowercase, target_label: \"${1}\"}]")
                .find("not a valid label name for the lowercase action"),
            std::string::npos);
  EXPECT_NE(ParseError("[{source_labels: [a], action: uppercase, target_label: b, replacement: x}]")
                .find("replacement cannot be set for the uppercase action"),
            std::string::npos);
  EXPECT_NE(ParseError("[{regex: a, action: labeldrop, target_label: b}]")
                .find("the labeldrop action takes only a regex"),
            std::string::npos);
  EXPECT_NE(ParseError("[{source_labels: [a], regex: a, action: labelkeep}]").find("labelkeep action takes only"),
            std::string::npos);
  EXPECT_NE(ParseError("[{source_labels: [a], target_label: b, regex: x, action: keepequal}]")
                .find("the keepequal action takes only source_labels and target_label"),
            std::string::npos);
  EXPECT_NE(ParseError("[{regex: a, action: labelmap, replacement: \"-$1\"}]").find("for the labelmap action"),
            std::string::npos);
  EXPECT_NE(ParseError("[{source_labels: a, action: drop}]").find("source_labels must be a list"), std::string::npos);
  EXPECT_NE(ParseError("[{source_labels: [\"a-b\"], action: drop}]").find("\"a-b\" is not a valid label name"),
            std::string::npos);
  EXPECT_NE(ParseError("[{source_labels: [a], regexp: x, action: drop}]").find("relabel[0]: unknown field \"regexp\""),
            std::string::npos);
  EXPECT_NE(ParseError("[{source_labels: [a], target_label: b, action: hashmod, modulus: 4}]").find("hashmod"),
            std::string::npos);
  EXPECT_NE(ParseError("[{regex: [a]}]").find("regex must be a string"), std::string::npos);
  EXPECT_NE(ParseError("[{regex: a, regex: b, action: labeldrop}]").find("relabel[0]: field \"regex\" given twice"),
            std::string::npos);
  EXPECT_NE(ParseError("[drop]").find("relabel[0]: a rule must be a mapping"), std::string::npos);
  EXPECT_NE(ParseError("{action: drop}").find("relabel: must be a list of rules"), std::string::npos);

  auto scoped = RelabelRules::Parse(YAML::Load("[{action: nope}]"), "scrape[1].metric_relabel_configs");
  ASSERT_FALSE(scoped.ok());
  EXPECT_EQ(std::string(scoped.status().message()).rfind("scrape[1].metric_relabel_configs[0]: unknown action", 0), 0u);
}

TEST(MetricRelabelerTest, AppliesToHostMetricAndCountsDrops) {
  MetricRelabeler relabeler(MustParse(R"Y(
- {source_labels: [__name__], regex: "go_.*", action: drop}
- {target_label: region, replacement: eu}
- {source_labels: [mode], target_label: __tmp_mode}
- {source_labels: [__tmp_mode], regex: "idle", target_label: idle, replacement: "yes"}
)Y"),
                            "test");
  HostMetric m{"node_cpu_seconds_total", {{"cpu", "0"}, {"mode", "idle"}}, model::MetricType::kCounter, 5.0, 0};
  ASSERT_TRUE(relabeler.Apply(&m));
  EXPECT_EQ(m.name, "node_cpu_seconds_total");
  // Sorted, and the temporary __tmp_mode is gone.
  const std::vector<std::pair<std::string, std::string>> want = {
      {"cpu", "0"}, {"idle", "yes"}, {"mode", "idle"}, {"region", "eu"}};
  EXPECT_EQ(m.labels, want);
  EXPECT_EQ(m.kind, model::MetricType::kCounter);
  EXPECT_EQ(m.value, 5.0);

  HostMetric go{"go_goroutines", {}, model::MetricType::kGauge, 7, 0};
  EXPECT_FALSE(relabeler.Apply(&go));
  const MetricRelabeler::Stats stats = relabeler.stats();
  EXPECT_EQ(stats.kept, 1u);
  EXPECT_EQ(stats.dropped[static_cast<int>(RelabelDropReason::kDroppedByRule)], 1u);
  EXPECT_EQ(stats.dropped_total(), 1u);
}

TEST(MetricRelabelerTest, InvalidResultsAreDroppedByReason) {
  MetricRelabeler checker(MustParse(R"Y(
- {source_labels: [kind], regex: "noname", target_label: __name__, replacement: ""}
- {source_labels: [kind], regex: "badname", target_label: __name__, replacement: "1bad"}
)Y"),
                          "test");
  auto apply = [&](const std::string& kind) {
    model::Labels labels = {{"__name__", "m"}, {"kind", kind}};
    return checker.Apply(&labels);
  };
  EXPECT_FALSE(apply("noname"));
  EXPECT_FALSE(apply("badname"));
  EXPECT_TRUE(apply("fine"));
  const MetricRelabeler::Stats stats = checker.stats();
  EXPECT_EQ(stats.dropped[static_cast<int>(RelabelDropReason::kNoMetricName)], 1u);
  EXPECT_EQ(stats.dropped[static_cast<int>(RelabelDropReason::kInvalidMetricName)], 1u);
  EXPECT_EQ(stats.kept, 1u);

  // A labelmap can produce a name that is no label name: dropped, counted.
  MetricRelabeler mapper(MustParse(R"Y([{regex: "a(.*)", action: labelmap, replacement: "${1}"}])Y"), "test");
  model::Labels labels = {{"__name__", "m"}, {"a9z", "v"}};
  EXPECT_FALSE(mapper.Apply(&labels));  // "9z"
  EXPECT_EQ(mapper.stats().dropped[static_cast<int>(RelabelDropReason::kInvalidLabelName)], 1u);
}

TEST(MetricRelabelerTest, NoRulesKeepsEverything) {
  MetricRelabeler relabeler(RelabelRules(), "test");
  HostMetric m{"x", {{"b", "2"}, {"a", "1"}, {"empty", ""}}, model::MetricType::kGauge, 1, 0};
  ASSERT_TRUE(relabeler.Apply(&m));
  const std::vector<std::pair<std::string, std::string>> want = {{"a", "1"}, {"b", "2"}};
  EXPECT_EQ(m.labels, want);  // sorted, the empty label is absent
}

}  // namespace
}  // namespace sheaf::agent
