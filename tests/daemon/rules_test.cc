// Recording rules: the file format (good files, bad files named by
// FILE:LINE), globs, evaluation over a real store (labels, a rule using an
// earlier rule's output, scalars, sequences, failures and their metrics),
// reload keeping the old rules on error, the scheduler, and an in-process
// sheafd that evaluates a group and answers the recorded series over gRPC
// and /federate.
#include "daemon/rules.h"

#include <gtest/gtest.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>

#include "common/clock.h"
#include "model/labels.h"
#include "promql/parser.h"
#include "storage/series_store.h"
#include "tests/daemon/daemon_fixture.h"
#include "tests/support/net.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace sheaf::daemon {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

void WriteFile(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path) << text;
}

// ---------------------------------------------------------------------------
// The file format.

constexpr char kGoodFile[] = R"(# Fleet aggregates.
groups:
  - name: fleet
    interval: 30s
    rules:
      - record: region:node_cpu:rate1m
        expr: sum by (region) (rate(node_cpu_seconds_total[1m]))
      - record: fleet:node_cpu:rate1m
        expr: |
          sum without (region) (
            region:node_cpu:rate1m
          )
        labels:
          scope: fleet
          team: "infra"
  - name: defaults
    limit: 10
    rules:
      - record: answer
        expr: "42"
  - name: empty
    rules: []
)";

TEST(RuleFileTest, ParsesPrometheusRuleFiles) {
  auto groups = ParseRuleFile("fleet.yml", kGoodFile, 60'000);
  ASSERT_TRUE(groups.ok()) << groups.status();
  ASSERT_EQ(groups->size(), 3u);
  const RuleGroup& fleet = (*groups)[0];
  EXPECT_EQ(fleet.name, "fleet");
  EXPECT_EQ(fleet.file, "fleet.yml");
  EXPECT_EQ(fleet.line, 3);
  EXPECT_EQ(fleet.interval_ms, 30'000);
  EXPECT_EQ(fleet.limit, 0u);
  EXPECT_EQ(fleet.agent_id(), "rules/fleet");
  ASSERT_EQ(fleet.rules.size(), 2u);
  EXPECT_EQ(fleet.rules[0].record, "region:node_cpu:rate1m");
  EXPECT_EQ(fleet.rules[0].expr, "sum by (region) (rate(node_cpu_seconds_total[1m]))");
  EXPECT_EQ(fleet.rules[0].line, 6);
  EXPECT_TRUE(fleet.rules[0].labels.empty());
  EXPECT_EQ(fleet.rules[1].line, 8);
  EXPECT_EQ(fleet.rules[1].labels, (model::Labels{{"scope", "fleet"}, {"team", "infra"}}));
  EXPECT_NE(fleet.rules[1].parsed, nullptr);
  EXPECT_EQ((*groups)[1].interval_ms, 60'000);  // the default
  EXPECT_EQ((*groups)[1].limit, 10u);
  EXPECT_EQ((*groups)[1].rules[0].parsed->type(), promql::ValueType::kScalar);
  EXPECT_TRUE((*groups)[2].rules.empty());

  for (const char* empty : {"", "# nothing\n", "groups:\n", "groups: []\n"}) {
    auto none = ParseRuleFile("e.yml", empty, 60'000);
    ASSERT_TRUE(none.ok()) << empty << ": " << none.status();
    EXPECT_TRUE(none->empty());
  }
}

struct BadFile {
  const char* text;
  const char* where;  // "FILE:LINE:"
  const char* says;
};

// A rule group header for the cases below: `rules:` is on line 3.
#define GROUP "groups:\n  - name: g\n    rules:\n"

TEST(RuleFileTest, BadFilesNameFileLineAndReason) {
  const BadFile cases[] = {
      {"groups:\n  - name: g\n    rules: [\n", "bad.yml:4:", "YAML: "},
      {"group:\n  - name: g\n", "bad.yml:1:", "unknown field \"group\" in a rule file"},
      {"groups:\n  - name: g\n    intervall: 1m\n    rules: []\n", "bad.yml:3:", "unknown field \"intervall\""},
      {GROUP "      - record: a\n        expr: up\n        label: {x: y}\n", "bad.yml:6:", "unknown field \"label\""},
      {GROUP "      - record: a\n        record: b\n        expr: up\n", "bad.yml:5:", "field \"record\" given twice"},
      {"groups:\n  - rules: []\n", "bad.yml:2:", "groupname must not be empty"},
      {"groups:\n  - name: g\n  - name: h\n  - name: g\n",
       "bad.yml:4:", "groupname: \"g\" is repeated in the same file (line 2)"},
      {"groups: {name: g}\n", "bad.yml:1:", "groups must be a list"},
      {GROUP "      - alert: HostDown\n        expr: up == 0\n",
       "bad.yml:4:", "alerting rule \"HostDown\": sheafd evaluates recording rules only"},
      {GROUP "      - record: a\n        expr: up\n        for: 5m\n",
       "bad.yml:6:", "invalid field 'for' in recording rule"},
      {GROUP "      - record: a\n        expr: up\n        annotations: {a: b}\n",
       "bad.yml:6:", "invalid field 'annotations'"},
      {GROUP "      - expr: up\n", "bad.yml:4:", "rule 1 has no record"},
      {GROUP "      - record: 1abc\n        expr: up\n", "bad.yml:4:", "invalid recording rule name: 1abc"},
      {GROUP "      - record: a\n", "bad.yml:4:", "field 'expr' must be set in rule"},
      // A PromQL error: the line of the file where it is.
      {GROUP "      - record: a\n        expr: sum(rate(x[5m]) by (a)\n",
       "bad.yml:5:", "group \"g\", record \"a\": expr: 1:"},
      {GROUP "      - record: ok\n        expr: up\n      - record: a\n        expr: |\n          sum by (a) (\n"
             "            rate(x[5m]) +\n          )\n",
       "bad.yml:10:", "expr: 3:"},
      {GROUP "      - record: a\n        expr: sum by (a)\n          (rate(x[5m]) +)\n", "bad.yml:6:", "expr: 1:"},
      {GROUP "      - record: a\n        expr: >\n          sum by (a)\n          (rate(x[5m] +)\n",
       "bad.yml:7:", "expr: 1:"},
      {GROUP "      - record: a\n        expr: x[5m]\n",
       "bad.yml:5:", "expr is a range vector; a recording rule needs an instant vector or a scalar"},
      {GROUP "      - record: a\n        expr: '\"text\"'\n", "bad.yml:5:", "expr is a string"},
      {GROUP "      - record: a\n        expr: up\n        labels:\n          bad-name: x\n",
       "bad.yml:7:", "invalid label name: bad-name"},
      {GROUP "      - record: a\n        expr: up\n        labels:\n          __name__: x\n",
       "bad.yml:7:", "invalid label name: __name__"},
      {GROUP "      - record: a\n        expr: up\n        labels: [a]\n", "bad.yml:6:", "labels must be a mapping"},
      {"groups:\n  - name: g\n    interval: 5 minutes\n", "bad.yml:3:", "interval: not a valid duration string"},
      {"groups:\n  - name: g\n    limit: -1\n", "bad.yml:3:", "limit must be a non-negative integer"},
      {"groups:\n  - name: g\n    rules: 5\n", "bad.yml:3:", "rules must be a list"},
      {"- a\n- b\n", "bad.yml:1:", "a rule file is a mapping"},
  };
  for (const BadFile& c : cases) {
    auto groups = ParseRuleFile("bad.yml", c.text, 60'000);
    ASSERT_FALSE(groups.ok()) << c.text;
    const std::string message(groups.status().message());
    EXPECT_EQ(groups.status().code(), absl::StatusCode::kInvalidArgument) << message;
    EXPECT_EQ(message.rfind(std::string(c.where) + " ", 0), 0u) << "expected " << c.where << " in: " << message;
    EXPECT_NE(message.find(c.says), std::string::npos) << "expected \"" << c.says << "\" in: " << message;
  }
}

TEST(RuleFileTest, GroupsAreBoundedInRulesAndNameLength) {
  std::string many = GROUP;
  for (size_t i = 0; i <= kMaxRulesPerGroup; ++i)
    many += "      - record: r" + std::to_string(i) + "\n        expr: up\n";
  auto groups = ParseRuleFile("big.yml", many, 60'000);
  ASSERT_FALSE(groups.ok());
  EXPECT_NE(groups.status().message().find("1000 rules; sheafd takes at most 999"), std::string::npos)
      << groups.status();
  groups = ParseRuleFile("long.yml", "groups:\n  - name: " + std::string(300, 'n') + "\n", 60'000);
  ASSERT_FALSE(groups.ok());
  EXPECT_EQ(std::string(groups.status().message()).rfind("long.yml:2: group name", 0), 0u) << groups.status();
}

TEST(RuleFileTest, FilesComeFromPathsGlobsAndCommaLists) {
  testing::TempDir dir;
  WriteFile(dir.Sub("rules/a.yml"), "groups:\n  - name: a\n    rules: []\n");
  WriteFile(dir.Sub("rules/b.yml"), "groups:\n  - name: b\n    rules: []\n");
  WriteFile(dir.Sub("rules/skip.txt"), "not yaml: [");
  WriteFile(dir.Sub("more/c.yml"), "groups:\n  - name: c\n    rules: []\n");
  auto groups = LoadRuleFiles(
      {dir.Sub("rules/*.yml") + ", " + dir.Sub("more/c.yml"), dir.Sub("rules/a.yml"), dir.Sub("none/*.yml")}, 60'000);
  ASSERT_TRUE(groups.ok()) << groups.status();
  ASSERT_EQ(groups->size(), 3u);  // a.yml once, the glob without matches adds nothing
  EXPECT_EQ((*groups)[0].name, "a");
  EXPECT_EQ((*groups)[1].name, "b");
  EXPECT_EQ((*groups)[2].name, "c");
  EXPECT_EQ((*groups)[2].file, dir.Sub("more/c.yml"));

  auto missing = LoadRuleFiles({dir.Sub("rules/nope.yml")}, 60'000);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find(dir.Sub("rules/nope.yml") + ": cannot read rule file"), std::string::npos)
      << missing.status();

  WriteFile(dir.Sub("more/d.yml"), "groups:\n  - name: x\n    rules: []\n  - name: a\n    rules: []\n");
  auto twice = LoadRuleFiles({dir.Sub("rules/a.yml"), dir.Sub("more/d.yml")}, 60'000);
  ASSERT_FALSE(twice.ok());
  EXPECT_EQ(std::string(twice.status().message()),
            dir.Sub("more/d.yml") + ":4: group \"a\" is also defined at " + dir.Sub("rules/a.yml") +
                ":2; sheafd needs group names unique across rule files (each group writes as agent \"rules/NAME\")");
}

// ---------------------------------------------------------------------------
// Evaluation over a real store.

// node_cpu_seconds_total of three hosts in two regions over the 10
// minutes before kNow, one sample every 10 s, growing at known rates: the
// idle mode at `rate` per second, user at twice that.
void LoadCpu(const std::function<void(model::Labels, model::MetricType, std::vector<model::Sample>)>& add) {
  const std::vector<std::tuple<std::string, std::string, double>> hosts = {
      {"h1", "eu", 1.0}, {"h2", "eu", 0.5}, {"h3", "us", 0.25}};
  for (const auto& [host, region, rate] : hosts) {
    for (const auto& [mode, factor] : std::vector<std::pair<std::string, double>>{{"idle", 1}, {"user", 2}}) {
      std::vector<model::Sample> samples;
      for (int64_t t = kNow - 600'000; t <= kNow; t += 10'000) {
        samples.push_back({t, rate * factor * static_cast<double>(t - (kNow - 600'000)) / 1000.0});
      }
      add({{"__name__", "node_cpu_seconds_total"}, {"host", host}, {"mode", mode}, {"region", region}},
          model::MetricType::kCounter, std::move(samples));
    }
  }
}

class RuleEvalTest : public ::testing::Test {
 protected:
  struct Call {
    std::string agent;
    uint64_t sequence;
    std::vector<RecordedSample> samples;
  };

  void SetUp() override {
    storage::StoreOptions o;
    o.path = dir_.Sub("db");
    o.sync = false;
    o.now_ms = [] { return kNow; };
    auto s = storage::SeriesStore::Open(o);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
    LoadCpu([&](model::Labels labels, model::MetricType type, std::vector<model::Sample> samples) {
      AppendNow(std::move(labels), type, std::move(samples));
    });
  }

  void AppendNow(model::Labels labels, model::MetricType type, std::vector<model::Sample> samples,
                 const std::string& agent = "", uint64_t sequence = 0, storage::AppendResult* result = nullptr) {
    auto id = store_->GetOrCreateSeries(labels, type);
    ASSERT_TRUE(id.ok()) << id.status();
    storage::AppendBatch b;
    b.agent_id = agent;
    b.sequence = sequence;
    b.series.push_back({*id, std::move(samples)});
    auto r = store_->Append(b);
    ASSERT_TRUE(r.ok()) << r.status();
    if (result) *result = *r;
  }

  // A writer that records its calls and appends to the store directly
  // (the daemon test below goes through the ingest service).
  RecordWriter Writer() {
    return [this](const std::string& agent, uint64_t sequence, std::vector<RecordedSample> samples,
                  storage::TenantId tenant, const std::string&) -> absl::StatusOr<RecordOutcome> {
      std::lock_guard lock(calls_mu_);
      calls_.push_back({agent, sequence, samples});
      if (fail_writes_) return absl::UnavailableError("disk full (test)");
      storage::AppendBatch b;
      b.agent_id = agent;
      b.sequence = sequence;
      b.tenant = tenant;
      for (RecordedSample& s : samples) {
        auto id = store_->GetOrCreateSeries(tenant, s.labels, model::MetricType::kGauge);
        if (!id.ok()) return id.status();
        b.series.push_back({*id, {s.sample}});
      }
      auto r = store_->Append(b);
      if (!r.ok()) return r.status();
      return RecordOutcome{r->duplicate, r->samples_added, 0, ""};
    };
  }

  std::unique_ptr<RuleManager> Manager(
      const std::string& rules, std::function<int64_t()> now = [] { return kNow; }) {
    WriteFile(rule_file_, rules);
    RulesOptions options;
    options.files = {rule_file_};
    options.now_ms = std::move(now);
    auto m = std::make_unique<RuleManager>(store_.get(), promql::EngineOptions{}, Writer(), options, &registry_);
    absl::Status loaded = m->Load();
    EXPECT_TRUE(loaded.ok()) << loaded;
    return m;
  }

  // The newest sample of every series `selector` matches at or before `t`.
  // (As "labels -> (time, value)".)
  std::map<std::string, std::pair<int64_t, double>> Latest(const std::string& selector, int64_t t = kNow) {
    std::map<std::string, std::pair<int64_t, double>> out;
    auto matchers = promql::ParseMetricSelector(selector);
    EXPECT_TRUE(matchers.ok()) << matchers.status();
    auto ids = store_->Select(*matchers);
    EXPECT_TRUE(ids.ok()) << ids.status();
    for (storage::SeriesId id : *ids) {
      auto it = store_->Read(id, 0, t);
      for (; it->Valid(); it->Next()) {
        out[model::FormatLabels(store_->GetSeries(id)->labels)] = {it->sample().timestamp_ms, it->sample().value};
      }
    }
    return out;
  }

  std::string Metrics() { return prometheus::TextSerializer().Serialize(registry_.Collect()); }

  testing::TempDir dir_;
  std::string rule_file_ = dir_.Sub("rules/rules.yml");
  prometheus::Registry registry_;
  std::unique_ptr<storage::SeriesStore> store_;
  std::mutex calls_mu_;
  std::vector<Call> calls_;
  bool fail_writes_ = false;
};

constexpr char kFleetRules[] = R"(groups:
  - name: fleet
    interval: 10s
    rules:
      - record: region:node_cpu:rate1m
        expr: sum by (region) (rate(node_cpu_seconds_total[1m]))
        labels:
          source: rules
      # Uses the rule above, as written by this same evaluation.
      - record: fleet:node_cpu:rate1m
        expr: sum without (region) (region:node_cpu:rate1m)
      - record: fleet:hosts:count
        expr: count(count by (host) (node_cpu_seconds_total))
        labels:
          host: ignored
      - record: fleet:answer
        expr: 6 * 7
      - record: fleet:nothing
        expr: absent_metric
)";

TEST_F(RuleEvalTest, EvaluationWritesEachRulesResultsBeforeTheNextRuleRuns) {
  auto rules = Manager(kFleetRules);
  ASSERT_TRUE(rules->EvaluateAll(kNow).ok());
  using Map = std::map<std::string, std::pair<int64_t, double>>;
  EXPECT_EQ(Latest("region:node_cpu:rate1m"),
            (Map{{"region:node_cpu:rate1m{region=\"eu\", source=\"rules\"}", {kNow, 4.5}},
                 {"region:node_cpu:rate1m{region=\"us\", source=\"rules\"}", {kNow, 0.75}}}));
  EXPECT_EQ(Latest("fleet:node_cpu:rate1m"), (Map{{"fleet:node_cpu:rate1m{source=\"rules\"}", {kNow, 5.25}}}));
  // The rule's labels win over the result's (count() has none; host is added).
  EXPECT_EQ(Latest("fleet:hosts:count"), (Map{{"fleet:hosts:count{host=\"ignored\"}", {kNow, 3}}}));
  EXPECT_EQ(Latest("fleet:answer"), (Map{{"fleet:answer{}", {kNow, 42}}}));  // a scalar: the name alone
  EXPECT_TRUE(Latest(R"({__name__="fleet:nothing"})").empty());

  // One batch per rule with results, as agent rules/GROUP, sequences
  // TIME * 1000 + RULE.
  ASSERT_EQ(calls_.size(), 4u);
  for (const Call& c : calls_) EXPECT_EQ(c.agent, "rules/fleet");
  const uint64_t base = static_cast<uint64_t>(kNow) * 1000;
  EXPECT_EQ(calls_[0].sequence, base + 1);
  EXPECT_EQ(calls_[1].sequence, base + 2);
  EXPECT_EQ(calls_[2].sequence, base + 3);
  EXPECT_EQ(calls_[3].sequence, base + 4);
  EXPECT_EQ(store_->AgentSequence("rules/fleet"), base + 4);

  // The same evaluation again writes nothing twice.
  const uint64_t samples = store_->Stats().samples;
  ASSERT_TRUE(rules->EvaluateAll(kNow).ok());
  EXPECT_EQ(store_->Stats().samples, samples);
  // The next one adds a sample to each recorded series.
  ASSERT_TRUE(rules->EvaluateAll(kNow + 10'000).ok());
  EXPECT_EQ(store_->Stats().samples, samples + 5);
  EXPECT_EQ(Latest("fleet:answer", kNow + 10'000).begin()->second.first, kNow + 10'000);

  const std::string metrics = Metrics();
  EXPECT_NE(metrics.find("sheaf_rule_evaluations_total{group=\"fleet\"} 15\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("sheaf_rule_evaluation_failures_total{group=\"fleet\"} 0\n"), std::string::npos);
  EXPECT_NE(metrics.find("sheaf_rule_group_iterations_total{group=\"fleet\"} 3\n"), std::string::npos);
  EXPECT_NE(metrics.find("sheaf_rule_group_last_evaluation_timestamp_seconds{group=\"fleet\"} 1800000010\n"),
            std::string::npos);
  EXPECT_NE(metrics.find("sheaf_rule_group_interval_seconds{group=\"fleet\"} 10\n"), std::string::npos);
  EXPECT_NE(metrics.find("sheaf_rule_group_rules{group=\"fleet\"} 5\n"), std::string::npos);
  EXPECT_NE(metrics.find("sheaf_rule_group_last_evaluation_samples{group=\"fleet\"} 5\n"), std::string::npos);
  EXPECT_NE(metrics.find("sheaf_rule_group_last_duration_seconds{group=\"fleet\"} "), std::string::npos);
  EXPECT_NE(metrics.find("sheaf_rule_group_last_evaluation_lag_seconds{group=\"fleet\"} "), std::string::npos);
  EXPECT_NE(metrics.find("sheaf_rule_config_last_reload_successful 1\n"), std::string::npos);
}

TEST_F(RuleEvalTest, FailingRulesAreCountedAndTheOthersStillRun) {
  auto rules = Manager(R"(groups:
  - name: bad
    limit: 2
    rules:
      - record: same:labels
        expr: node_cpu_seconds_total{host="h1"}
        labels:
          mode: overwritten
      - record: many:to:many
        expr: node_cpu_seconds_total + on (region) node_cpu_seconds_total
      - record: over:limit
        expr: node_cpu_seconds_total{host="h1"} or node_cpu_seconds_total{host="h2"}
      - record: fine
        expr: vector(1)
)");
  absl::Status s = rules->EvaluateAll(kNow);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("4 series, more than the group's limit of 2; none were written"), std::string::npos) << s;
  EXPECT_EQ(Latest("fine").size(), 1u);
  EXPECT_TRUE(Latest("same:labels").empty());
  EXPECT_TRUE(Latest("over:limit").empty());
  std::string metrics = Metrics();
  EXPECT_NE(metrics.find("sheaf_rule_evaluations_total{group=\"bad\"} 4\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("sheaf_rule_evaluation_failures_total{group=\"bad\"} 3\n"), std::string::npos) << metrics;

  // A writer that cannot write fails the rule too.
  fail_writes_ = true;
  s = rules->EvaluateAll(kNow + 10'000);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  metrics = Metrics();
  EXPECT_NE(metrics.find("sheaf_rule_evaluation_failures_total{group=\"bad\"} 7\n"), std::string::npos) << metrics;
}

TEST_F(RuleEvalTest, AReloadWithABadFileKeepsTheOldRules) {
  auto rules = Manager("groups:\n  - name: old\n    rules:\n      - record: old:one\n        expr: vector(1)\n");
  ASSERT_TRUE(rules->EvaluateAll(kNow).ok());
  EXPECT_EQ(Latest("old:one").size(), 1u);

  WriteFile(rule_file_, "groups:\n  - name: new\n    rules:\n      - record: new:one\n        expr: vector(1\n");
  absl::Status s = rules->Reload();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(std::string(s.message()).rfind(rule_file_ + ":5: group \"new\", record \"new:one\": expr: ", 0), 0u) << s;
  ASSERT_EQ(rules->Groups().size(), 1u);
  EXPECT_EQ(rules->Groups()[0].name, "old");
  EXPECT_NE(Metrics().find("sheaf_rule_config_last_reload_successful 0\n"), std::string::npos);
  // The old rules go on.
  ASSERT_TRUE(rules->EvaluateAll(kNow + 60'000).ok());
  EXPECT_EQ(Latest("old:one", kNow + 60'000).begin()->second.first, kNow + 60'000);

  // A file gone is an error too; the old rules still stay.
  std::filesystem::remove(rule_file_);
  EXPECT_FALSE(rules->Reload().ok());
  EXPECT_EQ(rules->Groups()[0].name, "old");

  WriteFile(rule_file_,
            "groups:\n  - name: new\n    interval: 5s\n    rules:\n      - record: new:one\n"
            "        expr: vector(2)\n");
  ASSERT_TRUE(rules->Reload().ok());
  ASSERT_EQ(rules->Groups().size(), 1u);
  EXPECT_EQ(rules->Groups()[0].name, "new");
  EXPECT_EQ(rules->Groups()[0].interval_ms, 5'000);
  ASSERT_TRUE(rules->EvaluateAll(kNow + 120'000).ok());
  EXPECT_EQ(Latest("new:one", kNow + 120'000).begin()->second.second, 2);
  const std::string metrics = Metrics();
  EXPECT_NE(metrics.find("sheaf_rule_config_last_reload_successful 1\n"), std::string::npos);
  EXPECT_EQ(metrics.find("group=\"old\""), std::string::npos) << "a removed group's series go: " << metrics;
  EXPECT_NE(metrics.find("sheaf_rule_group_rules{group=\"new\"} 1\n"), std::string::npos);
}

// The scheduler on the wall clock: evaluations at multiples of the
// interval, in order, each once; a reload goes on from the last one.
TEST_F(RuleEvalTest, GroupsRunAtMultiplesOfTheirIntervalAndStopPromptly) {
  auto rules = Manager(
      "groups:\n  - name: ticker\n    interval: 100ms\n    rules:\n      - record: tick\n"
      "        expr: vector(1)\n",
      nullptr);
  auto count = [&] {
    std::lock_guard lock(calls_mu_);
    return calls_.size();
  };
  rules->Start();
  ASSERT_TRUE(testing::WaitFor([&] { return count() >= 3; }, seconds(10)));
  WriteFile(rule_file_,
            "groups:\n  - name: ticker\n    interval: 200ms\n    rules:\n      - record: tick\n"
            "        expr: vector(1)\n      - record: tock\n        expr: vector(2)\n");
  ASSERT_TRUE(rules->Reload().ok());
  const size_t before_reload = count();
  ASSERT_TRUE(testing::WaitFor([&] { return count() >= before_reload + 4; }, seconds(10)));
  auto started = std::chrono::steady_clock::now();
  rules->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - started, seconds(2));

  std::lock_guard lock(calls_mu_);
  int64_t last_time = 0;
  uint64_t last_sequence = 0;
  for (size_t i = 0; i < calls_.size(); ++i) {
    const Call& c = calls_[i];
    EXPECT_EQ(c.agent, "rules/ticker");
    ASSERT_EQ(c.samples.size(), 1u);
    const int64_t t = c.samples[0].sample.timestamp_ms;
    EXPECT_EQ(t % (i < before_reload ? 100 : 200), 0) << t;
    EXPECT_GE(t, last_time);
    EXPECT_GT(c.sequence, last_sequence) << "call " << i;
    EXPECT_EQ(c.sequence / 1000, static_cast<uint64_t>(t));
    last_time = t;
    last_sequence = c.sequence;
  }
}

TEST_F(RuleEvalTest, StopIsPromptWhileAGroupWaitsForItsSlot) {
  auto rules = Manager(
      "groups:\n  - name: hourly\n    interval: 1h\n    rules:\n      - record: h\n"
      "        expr: vector(1)\n",
      nullptr);
  rules->Start();
  auto started = std::chrono::steady_clock::now();
  rules->Stop();
  rules->Stop();  // idempotent
  EXPECT_LT(std::chrono::steady_clock::now() - started, seconds(1));
  EXPECT_FALSE(rules->Reload().ok()) << "a stopped manager does not start again";
}

// ---------------------------------------------------------------------------
// An in-process sheafd: pushed data, a group evaluated by the scheduler,
// the recorded series read back over gRPC, /federate and /metrics.

class DaemonRulesTest : public DaemonTest {
 protected:
  void SetUp() override {}

  // The daemon's clock for rules and /federate: kNow plus the wall time
  // since the test started (the fixture's ingest clock stays at kNow,
  // which accepts samples up to 10 minutes later).
  std::function<int64_t()> Clock() const {
    return [start = start_] { return kNow + (WallClockMs() - start); };
  }

  void StartWithRules(const std::string& rules) {
    rule_file_ = dir_.Sub("rules.yml");
    WriteFile(rule_file_, rules);
    DaemonConfig config;
    config.rules.files = {rule_file_};
    config.rules.now_ms = Clock();
    config.federate.now_ms = Clock();
    Start(config);
  }

  void PushCpu() {
    std::vector<v1::Series> series;
    LoadCpu([&](model::Labels labels, model::MetricType, std::vector<model::Sample> samples) {
      std::vector<std::pair<std::string, std::string>> pairs;
      for (auto& l : labels) pairs.emplace_back(l.name, l.value);
      std::vector<std::pair<int64_t, double>> points;
      for (auto& s : samples) points.emplace_back(s.timestamp_ms, s.value);
      series.push_back(MakeSeries(pairs, v1::METRIC_TYPE_COUNTER, points));
    });
    v1::PushAck ack;
    ASSERT_TRUE(Push({Batch("agent-1", 1, series)}, &ack).ok());
    ASSERT_EQ(ack.batches_applied(), 1u);
  }

  // QueryService.Query with `expr` at `t`: "labels -> value".
  std::map<std::string, double> Instant(const std::string& expr, int64_t t) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + seconds(10));
    v1::QueryRequest req;
    req.set_expr(expr);
    req.set_time_ms(t);
    auto reader = query_->Query(&ctx, req);
    std::map<std::string, double> out;
    v1::QueryResponse resp;
    while (reader->Read(&resp)) {
      for (const auto& c : resp.chunks()) {
        std::string key;
        for (const auto& l : c.labels()) key += l.name() + "=" + l.value() + ",";
        if (c.samples_size() > 0) out[key] = c.samples(0).value();
      }
    }
    EXPECT_TRUE(reader->Finish().ok());
    return out;
  }

  const int64_t start_ = WallClockMs();
  std::string rule_file_;
};

TEST_F(DaemonRulesTest, AGroupEvaluatesAndItsSeriesAreQueryableAndFederated) {
  StartWithRules(R"(groups:
  - name: fleet
    interval: 1s
    rules:
      - record: region:node_cpu:rate1m
        expr: sum by (region) (rate(node_cpu_seconds_total[1m]))
      - record: fleet:node_cpu:rate1m
        expr: sum(region:node_cpu:rate1m)
  - name: nan
    interval: 1s
    rules:
      - record: zero:over:zero
        expr: vector(0) / 0
)");
  PushCpu();
  const std::string expr = "region:node_cpu:rate1m";
  std::map<std::string, double> answer;
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        answer = Instant(expr, Clock()());
        return answer.size() == 2;
      },
      seconds(20)));
  EXPECT_EQ(answer, (std::map<std::string, double>{{"__name__=region:node_cpu:rate1m,region=eu,", 4.5},
                                                   {"__name__=region:node_cpu:rate1m,region=us,", 0.75}}));
  ASSERT_TRUE(testing::WaitFor([&] { return Instant("fleet:node_cpu:rate1m", Clock()()).size() == 1; }, seconds(10)));
  EXPECT_EQ(Instant("fleet:node_cpu:rate1m", Clock()()).begin()->second, 5.25);

  // Written through the ingest path: counted there, idempotent per group.
  auto metrics = testing::HttpGet(daemon_->http_port(), "/metrics");
  ASSERT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find("sheaf_rule_evaluations_total{group=\"fleet\"} "), std::string::npos) << metrics.body;
  EXPECT_NE(metrics.body.find("sheaf_rule_evaluation_failures_total{group=\"fleet\"} 0\n"), std::string::npos);
  EXPECT_NE(metrics.body.find("sheaf_ingest_batches_total{result=\"applied\"} "), std::string::npos);
  EXPECT_EQ(metrics.body.find("sheaf_ingest_batches_total{result=\"applied\"} 1\n"), std::string::npos)
      << "rule batches count as applied batches";
  // Validated as Push is: a NaN result is refused (sheaf stores no NaN),
  // counted by ingest, and the rule's evaluation fails.
  EXPECT_NE(metrics.body.find("sheaf_ingest_rejected_series_total{reason=\"invalid_value\"} "), std::string::npos);
  EXPECT_EQ(metrics.body.find("sheaf_ingest_rejected_series_total{reason=\"invalid_value\"} 0\n"), std::string::npos)
      << metrics.body;
  EXPECT_EQ(metrics.body.find("sheaf_rule_evaluation_failures_total{group=\"nan\"} 0\n"), std::string::npos);

  // /federate answers the recorded series.
  auto federated =
      testing::HttpGet(daemon_->http_port(), "/federate?match[]=%7B__name__%3D~%22.*%3Anode_cpu%3A.*%22%7D");
  ASSERT_EQ(federated.status, 200) << federated.body;
  EXPECT_NE(federated.body.find("# TYPE fleet:node_cpu:rate1m untyped\nfleet:node_cpu:rate1m 5.25 "), std::string::npos)
      << federated.body;
  EXPECT_NE(federated.body.find("region:node_cpu:rate1m{region=\"eu\"} 4.5 "), std::string::npos) << federated.body;

  // A bad file on reload: an error naming the line, and the group goes on.
  WriteFile(rule_file_, "groups:\n  - name: fleet\n    rules:\n      - record: x\n        expr: rate(\n");
  absl::Status reload = daemon_->ReloadRules();
  EXPECT_EQ(std::string(reload.message()).rfind(rule_file_ + ":5: ", 0), 0u) << reload;
  const int64_t now = Clock()();
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        auto a = Instant("timestamp(fleet:node_cpu:rate1m)", Clock()());
        return !a.empty() && a.begin()->second * 1000 > static_cast<double>(now);
      },
      seconds(10)))
      << "the old rules keep running after a failed reload";
}

}  // namespace
}  // namespace sheaf::daemon
