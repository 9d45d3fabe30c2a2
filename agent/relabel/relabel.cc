#include "agent/relabel/relabel.h"

#include <fmt/format.h>
#include <re2/re2.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <optional>
#include <set>
#include <utility>

#include "common/log.h"
#include "model/labels.h"

namespace sheaf::agent {
namespace {

constexpr std::string_view kDefaultSeparator = ";";
constexpr std::string_view kDefaultRegex = "(.*)";
constexpr std::string_view kDefaultReplacement = "$1";

struct ActionName {
  RelabelAction action;
  std::string_view name;
};
constexpr ActionName kActions[] = {
    {RelabelAction::kReplace, "replace"},     {RelabelAction::kKeep, "keep"},
    {RelabelAction::kDrop, "drop"},           {RelabelAction::kKeepEqual, "keepequal"},
    {RelabelAction::kDropEqual, "dropequal"}, {RelabelAction::kLabelDrop, "labeldrop"},
    {RelabelAction::kLabelKeep, "labelkeep"}, {RelabelAction::kLabelMap, "labelmap"},
    {RelabelAction::kLowercase, "lowercase"}, {RelabelAction::kUppercase, "uppercase"},
};

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

// Prometheus' check of a target_label (or labelmap replacement) that holds
// `$` references: label-name characters and $name / ${name} only.
const re2::RE2& TargetTemplatePattern() {
  static const re2::RE2* const kPattern =
      new re2::RE2(R"(^(?:(?:[a-zA-Z_]|\$(?:\{\w+\}|\w+))+\w*)+$)");
  return *kPattern;
}

std::string_view Get(const model::Labels& labels, std::string_view name) {
  for (const model::Label& l : labels) {
    if (l.name == name) return l.value;
  }
  return {};
}

void Del(model::Labels& labels, std::string_view name) {
  labels.erase(std::remove_if(labels.begin(), labels.end(), [&](const model::Label& l) { return l.name == name; }),
               labels.end());
}

// As Prometheus' labels.Builder: an empty value removes the label.
void Set(model::Labels& labels, std::string_view name, std::string value) {
  if (value.empty()) {
    Del(labels, name);
    return;
  }
  for (model::Label& l : labels) {
    if (l.name == name) {
      l.value = std::move(value);
      return;
    }
  }
  labels.push_back({std::string(name), std::move(value)});
}

// Runs the anchored regex over `text`; on a match fills *groups (views into
// `text`, data() == nullptr for groups that took no part).
bool MatchGroups(const re2::RE2& re, std::string_view text, std::vector<std::string_view>* groups) {
  const int n = 1 + re.NumberOfCapturingGroups();
  std::vector<re2::StringPiece> pieces(static_cast<size_t>(n));
  if (!re.Match(re2::StringPiece(text.data(), text.size()), 0, text.size(), re2::RE2::ANCHOR_BOTH, pieces.data(),
                n)) {
    return false;
  }
  groups->clear();
  for (const re2::StringPiece& p : pieces) groups->emplace_back(p.data(), p.size());
  return true;
}

bool FullMatch(const re2::RE2& re, std::string_view text) {
  return re.Match(re2::StringPiece(text.data(), text.size()), 0, text.size(), re2::RE2::ANCHOR_BOTH, nullptr, 0);
}

std::string AsciiCase(std::string_view text, bool upper) {
  std::string out(text);
  for (char& c : out) {
    if (upper && c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    if (!upper && c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// ---------------------------------------------------------------------------
// YAML

class RuleParser {
 public:
  RuleParser(std::string_view context, size_t index, const YAML::Node& node)
      : where_(fmt::format("{}[{}]", context, index)), node_(node) {}

  absl::StatusOr<RelabelRule> Parse();

 private:
  absl::Status Error(const YAML::Node& at, std::string_view message) const {
    const int line = at.Mark().line >= 0 ? at.Mark().line : node_.Mark().line;
    if (line < 0) return absl::InvalidArgumentError(fmt::format("{}: {}", where_, message));
    return absl::InvalidArgumentError(fmt::format("{}: {} (line {})", where_, message, line + 1));
  }
  // A scalar field; null is "". *given says whether the key was there.
  absl::Status Scalar(const char* key, std::string* out, bool* given) const;

  const std::string where_;
  const YAML::Node& node_;
};

absl::Status RuleParser::Scalar(const char* key, std::string* out, bool* given) const {
  const YAML::Node value = node_[key];
  *given = static_cast<bool>(value);
  if (!value) return absl::OkStatus();
  if (value.IsNull()) {
    out->clear();
  } else if (value.IsScalar()) {
    *out = value.Scalar();
  } else {
    return Error(value, fmt::format("{} must be a string", key));
  }
  return absl::OkStatus();
}

absl::StatusOr<RelabelRule> RuleParser::Parse() {
  if (!node_.IsMap()) return Error(node_, "a rule must be a mapping (source_labels, regex, action, ...)");
  static constexpr std::string_view kKnown[] = {"source_labels", "separator", "regex",  "target_label",
                                                "replacement",   "action",    "modulus"};
  std::set<std::string> seen;
  for (const auto& kv : node_) {
    const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : "";
    if (std::find(std::begin(kKnown), std::end(kKnown), key) == std::end(kKnown)) {
      return Error(kv.first, fmt::format("unknown field \"{}\"; known fields: source_labels, separator, regex, "
                                         "target_label, replacement, action",
                                         key));
    }
    if (!seen.insert(key).second) return Error(kv.first, fmt::format("field \"{}\" given twice", key));
  }
  if (node_["modulus"]) {
    return Error(node_["modulus"], "modulus: the hashmod action (sharding targets between servers) is not supported");
  }

  RelabelRule rule;
  bool given = false;
  std::string action = "replace";
  if (auto s = Scalar("action", &action, &given); !s.ok()) return s;
  std::string lowered = AsciiCase(action, false);
  const auto known = std::find_if(std::begin(kActions), std::end(kActions),
                                  [&](const ActionName& a) { return a.name == lowered; });
  if (known == std::end(kActions)) {
    return Error(node_["action"],
                 fmt::format("unknown action \"{}\"; expected replace, keep, drop, keepequal, dropequal, labeldrop, "
                             "labelkeep, labelmap, lowercase or uppercase",
                             action));
  }
  rule.action = known->action;
  const std::string_view action_name = known->name;

  bool has_sources = false;
  if (const YAML::Node sources = node_["source_labels"]) {
    has_sources = !sources.IsNull();
    if (has_sources && !sources.IsSequence()) {
      return Error(sources, "source_labels must be a list of label names, e.g. [__name__, device]");
    }
    for (const YAML::Node& s : sources) {
      if (!s.IsScalar() || !model::IsValidLabelName(s.Scalar())) {
        return Error(s, fmt::format("source_labels: \"{}\" is not a valid label name",
                                    s.IsScalar() ? model::Abbreviate(s.Scalar()) : "(not a string)"));
      }
      rule.source_labels.push_back(s.Scalar());
    }
  }
  bool has_separator = false, has_regex = false, has_target = false, has_replacement = false;
  if (auto s = Scalar("separator", &rule.separator, &has_separator); !s.ok()) return s;
  if (auto s = Scalar("regex", &rule.regex, &has_regex); !s.ok()) return s;
  if (auto s = Scalar("target_label", &rule.target_label, &has_target); !s.ok()) return s;
  if (auto s = Scalar("replacement", &rule.replacement, &has_replacement); !s.ok()) return s;

  re2::RE2::Options options;
  options.set_log_errors(false);
  auto compiled = std::make_shared<const re2::RE2>(fmt::format("^(?:{})$", rule.regex), options);
  if (!compiled->ok()) {
    return Error(node_["regex"], fmt::format("regex \"{}\" is invalid: {}", model::Abbreviate(rule.regex),
                                             compiled->error()));
  }
  rule.compiled = std::move(compiled);

  // The combinations Prometheus' config check refuses, in its order.
  const RelabelAction a = rule.action;
  const bool writes_target = a == RelabelAction::kReplace || a == RelabelAction::kLowercase ||
                             a == RelabelAction::kUppercase || a == RelabelAction::kKeepEqual ||
                             a == RelabelAction::kDropEqual;
  const YAML::Node target_node = node_["target_label"];
  if (writes_target && rule.target_label.empty()) {
    return Error(node_, fmt::format("target_label: the {} action needs a target_label", action_name));
  }
  if (a == RelabelAction::kReplace) {
    const bool templated = rule.target_label.find('$') != std::string::npos;
    if (templated ? !re2::RE2::FullMatch(rule.target_label, TargetTemplatePattern())
                  : !model::IsValidLabelName(rule.target_label)) {
      return Error(target_node, fmt::format("target_label: \"{}\" is not a valid label name (nor a template of "
                                            "one such as \"${{1}}_total\")",
                                            model::Abbreviate(rule.target_label)));
    }
  } else if (writes_target) {
    if (!model::IsValidLabelName(rule.target_label)) {
      return Error(target_node, fmt::format("target_label: \"{}\" is not a valid label name for the {} action",
                                            model::Abbreviate(rule.target_label), action_name));
    }
    if (rule.replacement != kDefaultReplacement) {
      return Error(node_["replacement"], fmt::format("replacement cannot be set for the {} action", action_name));
    }
  }
  if (a == RelabelAction::kLabelMap && !re2::RE2::FullMatch(rule.replacement, TargetTemplatePattern())) {
    return Error(node_["replacement"],
                 fmt::format("replacement: \"{}\" is not a label name (nor a template of one such as \"${{1}}\") "
                             "for the labelmap action",
                             model::Abbreviate(rule.replacement)));
  }
  if ((a == RelabelAction::kKeepEqual || a == RelabelAction::kDropEqual) &&
      (rule.regex != kDefaultRegex || rule.separator != kDefaultSeparator ||
       rule.replacement != kDefaultReplacement)) {
    return Error(node_, fmt::format("the {} action takes only source_labels and target_label", action_name));
  }
  if ((a == RelabelAction::kLabelDrop || a == RelabelAction::kLabelKeep) &&
      (has_sources || !rule.target_label.empty() || rule.separator != kDefaultSeparator ||
       rule.replacement != kDefaultReplacement)) {
    return Error(node_, fmt::format("the {} action takes only a regex (matched against label names)", action_name));
  }
  return rule;
}

}  // namespace

std::string_view RelabelActionName(RelabelAction action) {
  for (const ActionName& a : kActions) {
    if (a.action == action) return a.name;
  }
  return "unknown";
}

std::string ExpandTemplate(std::string_view tmpl, const re2::RE2& re, const std::vector<std::string_view>& groups) {
  std::string out;
  while (!tmpl.empty()) {
    const size_t dollar = tmpl.find('$');
    out.append(tmpl.substr(0, dollar));
    if (dollar == std::string_view::npos) break;
    tmpl.remove_prefix(dollar + 1);
    if (!tmpl.empty() && tmpl[0] == '$') {  // "$$" is a "$"
      out.push_back('$');
      tmpl.remove_prefix(1);
      continue;
    }
    // $name or ${name}: the longest run of letters, digits and '_'.
    const bool brace = !tmpl.empty() && tmpl[0] == '{';
    size_t i = brace ? 1 : 0;
    while (i < tmpl.size() && IsNameChar(tmpl[i])) ++i;
    const size_t start = brace ? 1 : 0;
    if (i == start || (brace && (i >= tmpl.size() || tmpl[i] != '}'))) {
      out.push_back('$');  // malformed: the '$' is text, as in Go
      continue;
    }
    const std::string_view name = tmpl.substr(start, i - start);
    tmpl.remove_prefix(brace ? i + 1 : i);
    // A number (no leading zero, as in Go) is a group index; anything else
    // names a group. Unknown groups and groups that took no part are "".
    int index = -1;
    if (std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
        (name.size() == 1 || name[0] != '0') && name.size() <= 8) {
      index = 0;
      for (char c : name) index = index * 10 + (c - '0');
    } else {
      const auto& named = re.NamedCapturingGroups();
      auto it = named.find(std::string(name));
      if (it != named.end()) index = it->second;
    }
    if (index >= 0 && static_cast<size_t>(index) < groups.size() && groups[static_cast<size_t>(index)].data()) {
      out.append(groups[static_cast<size_t>(index)]);
    }
  }
  return out;
}

absl::StatusOr<RelabelRules> RelabelRules::Parse(const YAML::Node& node, std::string_view context) {
  RelabelRules rules;
  if (!node || node.IsNull()) return rules;
  if (!node.IsSequence()) {
    const int line = node.Mark().line;
    return absl::InvalidArgumentError(fmt::format("{}: must be a list of rules, each a mapping such as "
                                                  "{{source_labels: [__name__], regex: \"go_.*\", action: drop}}{}",
                                                  context, line >= 0 ? fmt::format(" (line {})", line + 1) : ""));
  }
  size_t index = 0;
  for (const YAML::Node& item : node) {
    auto rule = RuleParser(context, index++, item).Parse();
    if (!rule.ok()) return rule.status();
    rules.rules_.push_back(*std::move(rule));
  }
  return rules;
}

bool RelabelRules::Process(model::Labels& labels) const {
  std::vector<std::string_view> groups;
  std::string value;
  for (const RelabelRule& rule : rules_) {
    const re2::RE2& re = *rule.compiled;
    value.clear();
    for (size_t i = 0; i < rule.source_labels.size(); ++i) {
      if (i > 0) value += rule.separator;
      value += Get(labels, rule.source_labels[i]);
    }
    switch (rule.action) {
      case RelabelAction::kDrop:
        if (FullMatch(re, value)) return false;
        break;
      case RelabelAction::kKeep:
        if (!FullMatch(re, value)) return false;
        break;
      case RelabelAction::kDropEqual:
        if (Get(labels, rule.target_label) == value) return false;
        break;
      case RelabelAction::kKeepEqual:
        if (Get(labels, rule.target_label) != value) return false;
        break;
      case RelabelAction::kReplace: {
        // No match: nothing changes. A target that expands to an invalid
        // name is skipped, as Prometheus does.
        if (!MatchGroups(re, value, &groups)) break;
        std::string target = ExpandTemplate(rule.target_label, re, groups);
        if (!model::IsValidLabelName(target)) break;
        Set(labels, target, ExpandTemplate(rule.replacement, re, groups));
        break;
      }
      case RelabelAction::kLowercase:
      case RelabelAction::kUppercase:
        Set(labels, rule.target_label, AsciiCase(value, rule.action == RelabelAction::kUppercase));
        break;
      case RelabelAction::kLabelMap:
      case RelabelAction::kLabelDrop:
      case RelabelAction::kLabelKeep: {
        // Over a sorted snapshot, as Prometheus' Builder.Range: labels a
        // labelmap adds are not mapped again in the same rule.
        model::Labels snapshot = labels;
        std::sort(snapshot.begin(), snapshot.end());
        for (const model::Label& l : snapshot) {
          if (rule.action == RelabelAction::kLabelMap) {
            if (MatchGroups(re, l.name, &groups)) Set(labels, ExpandTemplate(rule.replacement, re, groups), l.value);
          } else if (FullMatch(re, l.name) == (rule.action == RelabelAction::kLabelDrop)) {
            Del(labels, l.name);
          }
        }
        break;
      }
    }
  }
  return true;
}

// ---------------------------------------------------------------------------

std::string_view RelabelDropReasonName(RelabelDropReason reason) {
  switch (reason) {
    case RelabelDropReason::kDroppedByRule:
      return "dropped_by_rule";
    case RelabelDropReason::kNoMetricName:
      return "no_metric_name";
    case RelabelDropReason::kInvalidMetricName:
      return "invalid_metric_name";
    case RelabelDropReason::kInvalidLabelName:
      return "invalid_label_name";
  }
  return "unknown";
}

uint64_t MetricRelabeler::Stats::dropped_total() const {
  uint64_t total = 0;
  for (uint64_t d : dropped) total += d;
  return total;
}

MetricRelabeler::MetricRelabeler(RelabelRules rules, std::string context)
    : rules_(std::move(rules)), context_(std::move(context)) {}

MetricRelabeler::Stats MetricRelabeler::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

void MetricRelabeler::Count(RelabelDropReason reason, const model::Labels& labels) {
  const int r = static_cast<int>(reason);
  bool log = false;
  {
    absl::MutexLock lock(&mu_);
    ++stats_.dropped[r];
    log = reason != RelabelDropReason::kDroppedByRule && !logged_[r];
    if (log) logged_[r] = true;
  }
  if (log) {
    LogWarn("{}: relabeling made a series invalid ({}), dropping it (logged once, counted from now on): {}", context_,
            RelabelDropReasonName(reason), model::FormatLabelsShort(labels));
  }
}

bool MetricRelabeler::Apply(model::Labels* labels) {
  // An empty value is an absent label, before and after the rules.
  labels->erase(std::remove_if(labels->begin(), labels->end(), [](const model::Label& l) { return l.value.empty(); }),
                labels->end());
  if (!rules_.Process(*labels)) {
    Count(RelabelDropReason::kDroppedByRule, *labels);
    return false;
  }
  labels->erase(std::remove_if(labels->begin(), labels->end(),
                               [](const model::Label& l) {
                                 return l.name.starts_with("__") && l.name != model::kMetricNameLabel;
                               }),
                labels->end());
  std::sort(labels->begin(), labels->end());
  const std::string_view name = Get(*labels, model::kMetricNameLabel);
  std::optional<RelabelDropReason> reason;
  if (name.empty()) {
    reason = RelabelDropReason::kNoMetricName;
  } else if (!model::IsValidMetricName(name)) {
    reason = RelabelDropReason::kInvalidMetricName;
  } else if (!std::all_of(labels->begin(), labels->end(),
                          [](const model::Label& l) { return model::IsValidLabelName(l.name); })) {
    reason = RelabelDropReason::kInvalidLabelName;
  }
  if (reason) {
    Count(*reason, *labels);
    return false;
  }
  absl::MutexLock lock(&mu_);
  ++stats_.kept;
  return true;
}

bool MetricRelabeler::Apply(HostMetric* metric) {
  model::Labels labels;
  labels.reserve(metric->labels.size() + 1);
  labels.push_back({model::kMetricNameLabel, std::move(metric->name)});
  for (auto& [name, value] : metric->labels) labels.push_back({std::move(name), std::move(value)});
  const bool kept = Apply(&labels);
  metric->name.clear();
  metric->labels.clear();
  if (!kept) return false;
  for (model::Label& l : labels) {
    if (l.name == model::kMetricNameLabel) {
      metric->name = std::move(l.value);
    } else {
      metric->labels.emplace_back(std::move(l.name), std::move(l.value));
    }
  }
  return true;
}

}  // namespace sheaf::agent
