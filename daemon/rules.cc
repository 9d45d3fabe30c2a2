#include "daemon/rules.h"

#include <fmt/format.h>
#include <glob.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <utility>

#include "common/clock.h"
#include "model/labels.h"
#include "promql/parser.h"
#include "storage/series_store.h"

namespace sheaf::daemon {
namespace {

constexpr size_t kMaxRuleFileBytes = 16 << 20;
constexpr size_t kMaxAgentIdBytes = 256;  // as for agents' own ids

absl::Status FileError(const std::string& file, int line, std::string_view reason) {
  return absl::InvalidArgumentError(fmt::format("{}:{}: {}", file, line, reason));
}

// 1-based; `fallback` for nodes without a position (absent ones).
int LineOf(const YAML::Node& node, int fallback) {
  const int line = node.Mark().line;
  return line >= 0 ? line + 1 : fallback;
}

// Checks that every key of `node` (a mapping) is allowed and given once,
// as Prometheus' strict YAML decoding does.
absl::Status CheckKeys(const std::string& file, const YAML::Node& node, std::initializer_list<std::string_view> allowed,
                       std::string_view what) {
  std::set<std::string> seen;
  for (const auto& kv : node) {
    const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : "";
    const int line = LineOf(kv.first, LineOf(node, 1));
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      std::string names;
      for (std::string_view a : allowed) names += fmt::format("{}{}", names.empty() ? "" : ", ", a);
      return FileError(file, line, fmt::format("unknown field \"{}\" in {} (known: {})", key, what, names));
    }
    if (!seen.insert(key).second) return FileError(file, line, fmt::format("field \"{}\" given twice", key));
  }
  return absl::OkStatus();
}

// The file line (1-based) of the position `expr_line`:`expr_column` inside
// the expression held by `node`. A literal block (`|`) keeps its lines; a
// plain, quoted or folded (`>`) scalar is one line joined from the file's
// lines by spaces, so the column says which file line it is.
int ExprFileLine(std::string_view text, const YAML::Node& node, int expr_line, int expr_column) {
  const YAML::Mark mark = node.Mark();
  if (mark.line < 0 || mark.pos < 0 || static_cast<size_t>(mark.pos) >= text.size()) return 1;
  const char indicator = text[static_cast<size_t>(mark.pos)];
  const bool block = indicator == '|' || indicator == '>';
  const int first = mark.line + (block ? 1 : 0);  // 0-based line of the expression's first line
  if (indicator == '|' || expr_line > 1) return first + expr_line;
  // The file's lines from `first` on.
  size_t pos = 0;
  for (int line = 0; line < first && pos != std::string_view::npos; ++line) {
    pos = text.find('\n', pos);
    if (pos != std::string_view::npos) ++pos;
  }
  int column = expr_column;
  for (int line = first; pos != std::string_view::npos && pos < text.size(); ++line) {
    size_t end = text.find('\n', pos);
    std::string_view content = text.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos);
    if (line == mark.line) {
      // The first line starts at the scalar (after its quote).
      const size_t skip = static_cast<size_t>(mark.column) + (indicator == '"' || indicator == '\'' ? 1 : 0);
      content.remove_prefix(std::min(skip, content.size()));
    } else {
      content.remove_prefix(std::min(content.find_first_not_of(" \t"), content.size()));
    }
    while (!content.empty() && (content.back() == ' ' || content.back() == '\t' || content.back() == '\r')) {
      content.remove_suffix(1);
    }
    if (column <= static_cast<int>(content.size()) + 1) return line + 1;
    column -= static_cast<int>(content.size()) + 1;
    pos = end == std::string_view::npos ? end : end + 1;
  }
  return first + 1;
}

// "LINE:COL: message" from the PromQL parser -> LINE and COL.
bool ParsePosition(std::string_view message, int* line, int* column) {
  return std::sscanf(std::string(message.substr(0, 32)).c_str(), "%d:%d:", line, column) == 2;
}

absl::StatusOr<RecordingRule> ParseRule(const std::string& file, std::string_view text, const YAML::Node& node,
                                        const std::string& group, size_t index) {
  const int line = LineOf(node, 1);
  if (!node.IsMap()) return FileError(file, line, fmt::format("group \"{}\": rule {} is not a mapping", group, index));
  if (node["alert"]) {
    return FileError(file, LineOf(node["alert"], line),
                     fmt::format("group \"{}\": alerting rule \"{}\": sheafd evaluates recording rules only; evaluate "
                                 "alerting rules in Prometheus (over /federate) and remove them here",
                                 group, node["alert"].IsScalar() ? node["alert"].Scalar() : ""));
  }
  for (const char* key : {"for", "annotations", "keep_firing_for"}) {
    if (node[key]) {
      return FileError(file, LineOf(node[key], line),
                       fmt::format("group \"{}\": invalid field '{}' in recording rule", group, key));
    }
  }
  if (auto s = CheckKeys(file, node, {"record", "expr", "labels"}, "a recording rule"); !s.ok()) return s;
  RecordingRule rule;
  rule.line = line;
  const YAML::Node record = node["record"];
  if (!record || !record.IsScalar() || record.Scalar().empty()) {
    return FileError(file, line,
                     fmt::format("group \"{}\": rule {} has no record (the name of its results)", group, index));
  }
  rule.record = record.Scalar();
  if (!model::IsValidMetricName(rule.record)) {
    return FileError(file, LineOf(record, line),
                     fmt::format("group \"{}\": invalid recording rule name: {}", group, rule.record));
  }
  const std::string where = fmt::format("group \"{}\", record \"{}\"", group, rule.record);
  const YAML::Node expr = node["expr"];
  if (!expr || !expr.IsScalar() || expr.Scalar().empty()) {
    return FileError(file, line, where + ": field 'expr' must be set in rule");
  }
  rule.expr = expr.Scalar();
  auto parsed = promql::Parse(rule.expr);
  if (!parsed.ok()) {
    int expr_line = 1, expr_column = 1;
    ParsePosition(std::string(parsed.status().message()), &expr_line, &expr_column);
    return FileError(file, ExprFileLine(text, expr, expr_line, expr_column),
                     fmt::format("{}: expr: {}", where, std::string(parsed.status().message())));
  }
  const promql::ValueType type = (*parsed)->type();
  if (type != promql::ValueType::kVector && type != promql::ValueType::kScalar) {
    return FileError(file, LineOf(expr, line),
                     fmt::format("{}: expr is a {}; a recording rule needs an instant vector or a scalar", where,
                                 promql::ValueTypeName(type)));
  }
  rule.parsed = std::shared_ptr<const promql::Expr>(std::move(*parsed));
  if (const YAML::Node labels = node["labels"]) {
    if (!labels.IsMap() && !labels.IsNull())
      return FileError(file, LineOf(labels, line), where + ": labels must be a mapping");
    for (const auto& kv : labels) {
      const std::string name = kv.first.Scalar();
      const int label_line = LineOf(kv.first, line);
      if (!model::IsValidLabelName(name) || name == model::kMetricNameLabel) {
        return FileError(file, label_line, fmt::format("{}: invalid label name: {}", where, name));
      }
      if (!kv.second.IsScalar() && !kv.second.IsNull()) {
        return FileError(file, label_line, fmt::format("{}: label {} must have a string value", where, name));
      }
      const std::string value = kv.second.IsNull() ? "" : kv.second.Scalar();
      if (!model::IsValidUtf8(value)) {
        return FileError(file, label_line, fmt::format("{}: invalid label value: {}", where, model::Abbreviate(value)));
      }
      rule.labels.push_back({name, value});
    }
    std::sort(rule.labels.begin(), rule.labels.end());
  }
  return rule;
}

absl::StatusOr<RuleGroup> ParseGroup(const std::string& file, std::string_view text, const YAML::Node& node,
                                     int64_t default_interval_ms) {
  const int line = LineOf(node, 1);
  if (!node.IsMap()) return FileError(file, line, "a group must be a mapping (name, interval, rules)");
  if (auto s = CheckKeys(file, node, {"name", "interval", "limit", "tenant", "rules"}, "a rule group"); !s.ok()) {
    return s;
  }
  RuleGroup group;
  group.file = file;
  group.line = line;
  const YAML::Node name = node["name"];
  if (!name || !name.IsScalar() || name.Scalar().empty()) return FileError(file, line, "groupname must not be empty");
  group.name = name.Scalar();
  if (!model::IsValidLabelValue(group.agent_id(), kMaxAgentIdBytes)) {
    return FileError(file, LineOf(name, line),
                     fmt::format("group name \"{}\": must be UTF-8 and at most {} bytes", model::Abbreviate(group.name),
                                 kMaxAgentIdBytes - 6));
  }
  group.interval_ms = default_interval_ms;
  if (const YAML::Node interval = node["interval"]) {
    auto ms = interval.IsScalar() ? promql::ParsePromDuration(interval.Scalar())
                                  : absl::StatusOr<int64_t>(absl::InvalidArgumentError("not a duration"));
    if (!ms.ok()) {
      return FileError(file, LineOf(interval, line),
                       fmt::format("group \"{}\": interval: {}", group.name, std::string(ms.status().message())));
    }
    if (*ms > 0) group.interval_ms = *ms;  // 0: the default, as Prometheus
  }
  if (const YAML::Node limit = node["limit"]) {
    try {
      group.limit = limit.as<uint64_t>();
    } catch (const YAML::Exception&) {
      return FileError(file, LineOf(limit, line),
                       fmt::format("group \"{}\": limit must be a non-negative integer", group.name));
    }
  }
  if (const YAML::Node tenant = node["tenant"]) {
    if (!tenant.IsScalar() || !storage::ValidTenantName(tenant.Scalar())) {
      return FileError(file, LineOf(tenant, line),
                       fmt::format("group \"{}\": tenant must be 1 to 64 of A-Z a-z 0-9 _ . -", group.name));
    }
    group.tenant = tenant.Scalar();
  }
  const YAML::Node rules = node["rules"];
  if (rules && !rules.IsSequence() && !rules.IsNull()) {
    return FileError(file, LineOf(rules, line), fmt::format("group \"{}\": rules must be a list", group.name));
  }
  if (rules && rules.size() > kMaxRulesPerGroup) {
    return FileError(file, LineOf(rules, line),
                     fmt::format("group \"{}\" has {} rules; sheafd takes at most {} per group (split it)", group.name,
                                 rules.size(), kMaxRulesPerGroup));
  }
  for (size_t i = 0; rules && i < rules.size(); ++i) {
    auto rule = ParseRule(file, text, rules[i], group.name, i + 1);
    if (!rule.ok()) return rule.status();
    group.rules.push_back(*std::move(rule));
  }
  return group;
}

bool IsGlob(std::string_view pattern) { return pattern.find_first_of("*?[") != std::string_view::npos; }

absl::StatusOr<std::string> ReadRuleFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(fmt::format("{}: cannot read rule file: {}", path, std::strerror(errno)));
  std::string text;
  char buf[64 * 1024];
  while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
    text.append(buf, static_cast<size_t>(in.gcount()));
    if (text.size() > kMaxRuleFileBytes) {
      return absl::InvalidArgumentError(fmt::format("{}: larger than {} bytes", path, kMaxRuleFileBytes));
    }
  }
  return text;
}

// Paths named by `patterns` (comma-separated lists of paths and globs), in
// order, each once.
absl::StatusOr<std::vector<std::string>> ExpandPatterns(const std::vector<std::string>& patterns) {
  std::vector<std::string> files;
  auto add = [&](std::string path) {
    if (std::find(files.begin(), files.end(), path) == files.end()) files.push_back(std::move(path));
  };
  for (const std::string& list : patterns) {
    std::stringstream items(list);
    for (std::string item; std::getline(items, item, ',');) {
      item.erase(0, item.find_first_not_of(" \t"));
      item.erase(item.find_last_not_of(" \t") + 1);
      if (item.empty()) continue;
      if (!IsGlob(item)) {
        add(item);
        continue;
      }
      glob_t matches{};
      const int rc = glob(item.c_str(), 0, nullptr, &matches);
      if (rc == 0) {
        for (size_t i = 0; i < matches.gl_pathc; ++i) add(matches.gl_pathv[i]);
      } else if (rc == GLOB_NOMATCH) {
        LogWarn("--rule-files: \"{}\" matches no file", item);
      } else {
        globfree(&matches);
        return absl::InvalidArgumentError(fmt::format("--rule-files: cannot expand \"{}\"", item));
      }
      globfree(&matches);
    }
  }
  return files;
}

int64_t AlignUp(int64_t t, int64_t interval) { return (t + interval - 1) / interval * interval; }

}  // namespace

absl::StatusOr<std::vector<RuleGroup>> ParseRuleFile(const std::string& file, std::string_view text,
                                                     int64_t default_interval_ms) {
  std::vector<RuleGroup> groups;
  try {
    const YAML::Node root = YAML::Load(std::string(text));
    if (root.IsNull()) return groups;  // an empty file: no groups, as Prometheus
    if (!root.IsMap()) return FileError(file, LineOf(root, 1), "a rule file is a mapping with a \"groups\" list");
    if (auto s = CheckKeys(file, root, {"groups"}, "a rule file"); !s.ok()) return s;
    const YAML::Node list = root["groups"];
    if (!list || list.IsNull()) return groups;
    if (!list.IsSequence()) return FileError(file, LineOf(list, 1), "groups must be a list");
    std::map<std::string, int> lines;
    for (const YAML::Node& node : list) {
      auto group = ParseGroup(file, text, node, default_interval_ms);
      if (!group.ok()) return group.status();
      if (auto [it, inserted] = lines.emplace(group->name, group->line); !inserted) {
        return FileError(
            file, group->line,
            fmt::format("groupname: \"{}\" is repeated in the same file (line {})", group->name, it->second));
      }
      groups.push_back(*std::move(group));
    }
  } catch (const YAML::Exception& e) {
    return FileError(file, e.mark.line >= 0 ? e.mark.line + 1 : 1, "YAML: " + e.msg);
  }
  return groups;
}

absl::StatusOr<std::vector<RuleGroup>> LoadRuleFiles(const std::vector<std::string>& patterns,
                                                     int64_t default_interval_ms) {
  auto files = ExpandPatterns(patterns);
  if (!files.ok()) return files.status();
  std::vector<RuleGroup> all;
  std::map<std::string, const RuleGroup*> by_name;
  for (const std::string& file : *files) {
    auto text = ReadRuleFile(file);
    if (!text.ok()) return text.status();
    auto groups = ParseRuleFile(file, *text, default_interval_ms);
    if (!groups.ok()) return groups.status();
    for (RuleGroup& g : *groups) all.push_back(std::move(g));
  }
  for (const RuleGroup& g : all) {
    if (auto [it, inserted] = by_name.emplace(g.name, &g); !inserted) {
      return FileError(g.file, g.line,
                       fmt::format("group \"{}\" is also defined at {}:{}; sheafd needs group names unique across "
                                   "rule files (each group writes as agent \"rules/NAME\")",
                                   g.name, it->second->file, it->second->line));
    }
  }
  return all;
}

// ---------------------------------------------------------------------------
// Evaluation.

prometheus::Family<prometheus::Counter>& CounterFamily(prometheus::Registry& registry, const char* name,
                                                       const char* help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(registry);
}

prometheus::Family<prometheus::Gauge>& GaugeFamily(prometheus::Registry& registry, const char* name, const char* help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(registry);
}

// One group: its rules, its metric series, its thread.
struct RuleManager::Runner {
  RuleGroup group;
  prometheus::Counter* evaluations;
  prometheus::Counter* failures;
  prometheus::Counter* iterations;
  prometheus::Counter* missed;
  prometheus::Gauge* duration;
  prometheus::Gauge* last_timestamp;
  prometheus::Gauge* interval;
  prometheus::Gauge* lag;
  prometheus::Gauge* rules;
  prometheus::Gauge* samples;

  absl::Mutex mu;
  bool stop ABSL_GUARDED_BY(mu) = false;
  absl::Mutex evaluating;                   // one evaluation of the group at a time
  std::atomic<int64_t> last_evaluation{0};  // scheduled time of the last one (ms)
  std::thread thread;
};

struct RuleManager::Metrics {
  explicit Metrics(prometheus::Registry& r)
      : evaluations(CounterFamily(r, "sheaf_rule_evaluations_total",
                                  "Rule evaluations (each rule of each group evaluation), by group.")),
        failures(CounterFamily(r, "sheaf_rule_evaluation_failures_total",
                               "Rule evaluations that failed (query error, a limit, results refused or not "
                               "written), by group.")),
        iterations(CounterFamily(r, "sheaf_rule_group_iterations_total", "Group evaluations run.")),
        missed(CounterFamily(r, "sheaf_rule_group_iterations_missed_total",
                             "Scheduled group evaluations skipped because the previous one took too long.")),
        duration(
            GaugeFamily(r, "sheaf_rule_group_last_duration_seconds", "How long the group's last evaluation took.")),
        last_timestamp(GaugeFamily(r, "sheaf_rule_group_last_evaluation_timestamp_seconds",
                                   "Scheduled time of the group's last evaluation (the time its results carry).")),
        interval(GaugeFamily(r, "sheaf_rule_group_interval_seconds", "The group's evaluation interval.")),
        lag(GaugeFamily(r, "sheaf_rule_group_last_evaluation_lag_seconds",
                        "How late the group's last evaluation started after its scheduled time.")),
        rules(GaugeFamily(r, "sheaf_rule_group_rules", "Rules in the group.")),
        samples(
            GaugeFamily(r, "sheaf_rule_group_last_evaluation_samples", "Samples the group's last evaluation stored.")),
        reload_success(GaugeFamily(r, "sheaf_rule_config_last_reload_successful",
                                   "1 if the rule files were last loaded without error (SIGHUP), else 0.")
                           .Add({})),
        reload_timestamp(GaugeFamily(r, "sheaf_rule_config_last_reload_success_timestamp_seconds",
                                     "When the rule files were last loaded without error.")
                             .Add({})) {}

  // Calls f(family, runner's series) for each per-group family.
  template <typename F>
  void ForEachGroupSeries(Runner& r, F f) {
    f(evaluations, r.evaluations);
    f(failures, r.failures);
    f(iterations, r.iterations);
    f(missed, r.missed);
    f(duration, r.duration);
    f(last_timestamp, r.last_timestamp);
    f(interval, r.interval);
    f(lag, r.lag);
    f(rules, r.rules);
    f(samples, r.samples);
  }

  prometheus::Family<prometheus::Counter>& evaluations;
  prometheus::Family<prometheus::Counter>& failures;
  prometheus::Family<prometheus::Counter>& iterations;
  prometheus::Family<prometheus::Counter>& missed;
  prometheus::Family<prometheus::Gauge>& duration;
  prometheus::Family<prometheus::Gauge>& last_timestamp;
  prometheus::Family<prometheus::Gauge>& interval;
  prometheus::Family<prometheus::Gauge>& lag;
  prometheus::Family<prometheus::Gauge>& rules;
  prometheus::Family<prometheus::Gauge>& samples;
  prometheus::Gauge& reload_success;
  prometheus::Gauge& reload_timestamp;
};

RuleManager::RuleManager(storage::SeriesStore* store, promql::EngineOptions engine, RecordWriter writer,
                         RulesOptions options, prometheus::Registry* registry)
    : store_(store),
      engine_(store, std::move(engine)),
      writer_(std::move(writer)),
      options_(std::move(options)),
      metrics_(std::make_unique<Metrics>(*registry)) {}

RuleManager::~RuleManager() { Stop(); }

int64_t RuleManager::Now() const { return options_.now_ms ? options_.now_ms() : WallClockMs(); }

std::unique_ptr<RuleManager::Runner> RuleManager::MakeRunner(RuleGroup group) {
  auto r = std::make_unique<Runner>();
  const std::map<std::string, std::string> labels = {{"group", group.name}};
  metrics_->ForEachGroupSeries(*r, [&](auto& family, auto*& series) { series = &family.Add(labels); });
  r->interval->Set(static_cast<double>(group.interval_ms) / 1000.0);
  r->rules->Set(static_cast<double>(group.rules.size()));
  r->group = std::move(group);
  return r;
}

void RuleManager::StartRunner(Runner& runner) {
  runner.thread = std::thread([this, r = &runner] { Run(r); });
}

void RuleManager::StopRunners(std::vector<std::unique_ptr<Runner>>& runners) {
  for (auto& r : runners) {
    absl::MutexLock l(&r->mu);
    r->stop = true;
  }
  for (auto& r : runners) {
    if (r->thread.joinable()) r->thread.join();
  }
}

absl::Status RuleManager::Load() {
  absl::MutexLock reload(&reload_mu_);
  auto groups = LoadRuleFiles(options_.files, options_.default_interval_ms);
  if (!groups.ok()) {
    metrics_->reload_success.Set(0);
    return groups.status();
  }
  size_t rules = 0;
  std::vector<std::unique_ptr<Runner>> runners;
  for (RuleGroup& g : *groups) {
    rules += g.rules.size();
    runners.push_back(MakeRunner(std::move(g)));
  }
  if (!runners.empty()) LogInfo("rules: {} groups with {} recording rules loaded", runners.size(), rules);
  metrics_->reload_success.Set(1);
  metrics_->reload_timestamp.Set(static_cast<double>(WallClockMs()) / 1000.0);
  absl::MutexLock l(&mu_);
  runners_ = std::move(runners);
  return absl::OkStatus();
}

void RuleManager::Start() {
  absl::MutexLock l(&mu_);
  if (started_ || stopped_) return;
  started_ = true;
  for (auto& r : runners_) StartRunner(*r);
}

absl::Status RuleManager::Reload() {
  absl::MutexLock reload(&reload_mu_);
  auto groups = LoadRuleFiles(options_.files, options_.default_interval_ms);
  if (!groups.ok()) {
    metrics_->reload_success.Set(0);
    LogError("reloading the rule files failed; the rules loaded before keep running: {}",
             std::string(groups.status().message()));
    return groups.status();
  }
  std::vector<std::unique_ptr<Runner>> old;
  {
    absl::MutexLock l(&mu_);
    if (stopped_) return absl::FailedPreconditionError("rules are stopped (shutting down)");
    old.swap(runners_);
  }
  // The old groups finish the evaluation they are in, then stop.
  StopRunners(old);
  std::map<std::string, int64_t> last;
  for (const auto& r : old) last[r->group.name] = r->last_evaluation;
  size_t rules = 0;
  std::vector<std::unique_ptr<Runner>> runners;
  for (RuleGroup& g : *groups) {
    rules += g.rules.size();
    auto r = MakeRunner(std::move(g));
    if (auto it = last.find(r->group.name); it != last.end()) {
      r->last_evaluation = it->second;
      last.erase(it);
    }
    runners.push_back(std::move(r));
  }
  // Groups that are gone take their series off /metrics.
  for (const auto& r : old) {
    if (!last.contains(r->group.name)) continue;
    metrics_->ForEachGroupSeries(*r, [](auto& family, auto* series) { family.Remove(series); });
  }
  metrics_->reload_success.Set(1);
  metrics_->reload_timestamp.Set(static_cast<double>(WallClockMs()) / 1000.0);
  LogInfo("rules reloaded: {} groups with {} recording rules", runners.size(), rules);
  absl::MutexLock l(&mu_);
  runners_ = std::move(runners);
  if (started_) {
    for (auto& r : runners_) StartRunner(*r);
  }
  return absl::OkStatus();
}

void RuleManager::Stop() {
  cancel_ = true;  // first: a reload waiting on an evaluation gets it back soon
  absl::MutexLock reload(&reload_mu_);
  std::vector<Runner*> runners;
  {
    absl::MutexLock l(&mu_);
    if (stopped_) return;
    stopped_ = true;
    for (auto& r : runners_) runners.push_back(r.get());
  }
  for (Runner* r : runners) {
    absl::MutexLock l(&r->mu);
    r->stop = true;
  }
  for (Runner* r : runners) {
    if (r->thread.joinable()) r->thread.join();
  }
}

std::vector<RuleManager::GroupInfo> RuleManager::Groups() const {
  absl::MutexLock l(&mu_);
  std::vector<GroupInfo> out;
  for (const auto& r : runners_) {
    out.push_back({r->group.file, r->group.name, r->group.interval_ms, r->group.rules.size()});
  }
  return out;
}

absl::Status RuleManager::EvaluateAll(int64_t time_ms) {
  absl::MutexLock l(&mu_);
  absl::Status last_error;
  for (auto& r : runners_) EvaluateGroup(*r, time_ms, &last_error);
  return last_error;
}

void RuleManager::Run(Runner* runner) {
  const int64_t interval = runner->group.interval_ms;
  // At multiples of the interval, and after the last evaluation (of the
  // group before a reload, whose interval may have been another).
  int64_t next = AlignUp(std::max(runner->last_evaluation + interval, Now()), interval);
  for (;;) {
    {
      absl::MutexLock l(&runner->mu);
      for (;;) {
        if (runner->stop) return;
        const int64_t wait = next - Now();
        if (wait <= 0) break;
        runner->mu.AwaitWithTimeout(absl::Condition(&runner->stop), absl::Milliseconds(wait));
      }
    }
    runner->lag->Set(static_cast<double>(Now() - next) / 1000.0);
    EvaluateGroup(*runner, next, nullptr);
    // The next slot still ahead; slots that passed meanwhile are skipped.
    const int64_t after = Now();
    const int64_t following = std::max(next + interval, AlignUp(after, interval));
    if (const int64_t missed = (following - next) / interval - 1; missed > 0) {
      runner->missed->Increment(static_cast<double>(missed));
      LogLimited(failure_log_, LogLevel::kWarn,
                 "rule group \"{}\": an evaluation took {} ms, longer than its interval of {} ms; {} evaluations "
                 "skipped",
                 runner->group.name, after - next, interval, missed);
    }
    next = following;
  }
}

void RuleManager::EvaluateGroup(Runner& runner, int64_t time_ms, absl::Status* last_error) {
  absl::MutexLock l(&runner.evaluating);
  const auto started = std::chrono::steady_clock::now();
  const RuleGroup& group = runner.group;
  uint64_t stored = 0;
  for (size_t i = 0; i < group.rules.size() && !cancel_; ++i) {
    runner.evaluations->Increment();
    absl::Status s = EvaluateRule(group, i, time_ms, &stored);
    if (s.ok()) continue;
    runner.failures->Increment();
    if (last_error != nullptr) *last_error = s;
    if (!cancel_) {
      const RecordingRule& rule = group.rules[i];
      LogLimited(failure_log_, LogLevel::kWarn, "rule group \"{}\" ({}:{}), record \"{}\", at {} ms: {}", group.name,
                 group.file, rule.line, rule.record, time_ms, s.ToString());
    }
  }
  runner.iterations->Increment();
  runner.duration->Set(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  runner.last_timestamp->Set(static_cast<double>(time_ms) / 1000.0);
  runner.samples->Set(static_cast<double>(stored));
  runner.last_evaluation = std::max<int64_t>(runner.last_evaluation, time_ms);
}

absl::Status RuleManager::EvaluateRule(const RuleGroup& group, size_t index, int64_t time_ms, uint64_t* stored) {
  const RecordingRule& rule = group.rules[index];
  // The group's tenant: what its rules read and where results go. Its id
  // comes from the store's registry (given on first use, then a lookup).
  auto tenant = store_->TenantIdFor(group.tenant);
  if (!tenant.ok()) return tenant.status();
  promql::QueryParams params;
  params.tenant = *tenant;
  params.start_ms = params.end_ms = time_ms;
  params.check = [this] {
    return cancel_.load(std::memory_order_relaxed) ? absl::CancelledError("sheafd is shutting down") : absl::OkStatus();
  };
  auto result = engine_.Query(*rule.parsed, params);
  if (!result.ok()) return result.status();

  // Results: the rule's name and labels over each result's labels.
  std::vector<RecordedSample> out;
  auto add = [&](model::Labels labels, double value) {
    std::erase_if(labels, [&](const model::Label& l) {
      return l.name == model::kMetricNameLabel || std::any_of(rule.labels.begin(), rule.labels.end(),
                                                              [&](const model::Label& r) { return r.name == l.name; });
    });
    for (const model::Label& l : rule.labels) {
      if (!l.value.empty()) labels.push_back(l);  // an empty value removes the label, as in Prometheus
    }
    labels.push_back({std::string(model::kMetricNameLabel), rule.record});
    std::sort(labels.begin(), labels.end());
    out.push_back({std::move(labels), {time_ms, value}});
  };
  if (result->type == promql::ValueType::kScalar) {
    if (!result->series.empty() && !result->series[0].points.empty()) add({}, result->series[0].points[0].value);
  } else if (result->type == promql::ValueType::kVector) {
    for (promql::ResultSeries& s : result->series) {
      if (!s.points.empty()) add(std::move(s.labels), s.points.back().value);
    }
  } else {
    return absl::InvalidArgumentError(
        fmt::format("the result is a {}, not an instant vector or a scalar", promql::ValueTypeName(result->type)));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.labels < b.labels; });
  auto same =
      std::adjacent_find(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.labels == b.labels; });
  if (same != out.end()) {
    return absl::InvalidArgumentError("vector contains metrics with the same labelset after applying rule labels: " +
                                      model::FormatLabelsShort(same->labels));
  }
  if (group.limit > 0 && out.size() > group.limit) {
    return absl::ResourceExhaustedError(
        fmt::format("{} series, more than the group's limit of {}; none were written", out.size(), group.limit));
  }
  if (out.empty()) return absl::OkStatus();
  const size_t results = out.size();
  const uint64_t sequence = static_cast<uint64_t>(time_ms) * (kMaxRulesPerGroup + 1) + index + 1;
  auto written = writer_(group.agent_id(), sequence, std::move(out), *tenant, group.tenant);
  if (!written.ok()) return written.status();
  *stored += written->stored;
  if (written->rejected > 0) {
    return absl::InvalidArgumentError(fmt::format("{} of {} results were refused by ingest validation, e.g. {}",
                                                  written->rejected, results, written->rejection));
  }
  return absl::OkStatus();
}

}  // namespace sheaf::daemon
