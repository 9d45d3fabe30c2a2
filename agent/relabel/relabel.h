// Relabeling of series, with Prometheus' `relabel_config` semantics and YAML
// shape, so operators can paste the metric_relabel_configs they already
// know: drop or keep series by regex, add static labels, drop, keep, map or
// rename labels. No gRPC, no protobuf.
//
// A rule list is parsed once from YAML into compiled rules (RelabelRules,
// immutable, cheap to share) and applied to each series. `__name__` is a
// label like any other here, as in Prometheus.
//
// YAML: a sequence of mappings, each with these fields (all optional):
//   source_labels: [a, b]   labels whose values are joined (missing ones as "")
//   separator: ";"          put between the joined values (default ";")
//   regex: "(.*)"           RE2 syntax, anchored at both ends like Prometheus
//                           (`foo` does not match `foobar`); default "(.*)"
//   target_label: name      the label written by replace/lowercase/uppercase;
//                           for replace it may use $1 / ${1} / $name / ${name}
//   replacement: "$1"       the value written by replace (default "$1"), or
//                           the new label name of labelmap; $N, ${N}, $name,
//                           ${name} are the regex's groups and `$$` is a `$`,
//                           as in Go's Regexp.Expand: `$1x` means `${1x}`
//                           (no such group, so empty), write `${1}x`
//   action: replace         replace (default), keep, drop, keepequal,
//                           dropequal, labeldrop, labelkeep, labelmap,
//                           lowercase, uppercase (case-insensitive)
// A static label is a replace without source labels: the joined value is ""
// and matches "(.*)", so `{target_label: region, replacement: eu-west}`
// sets region="eu-west" on every series. Setting a label to "" removes it.
// hashmod is refused: it shards targets between Prometheus servers and has
// no use on one host's series.
//
// Thread-safe: RelabelRules is immutable; MetricRelabeler counts under a lock.
#ifndef SHEAF_AGENT_RELABEL_RELABEL_H_
#define SHEAF_AGENT_RELABEL_RELABEL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "agent/collectors/metric.h"
#include "model/types.h"

namespace YAML {
class Node;
}  // namespace YAML

namespace re2 {
class RE2;
}  // namespace re2

namespace sheaf::agent {

enum class RelabelAction {
  kReplace,
  kKeep,
  kDrop,
  kKeepEqual,
  kDropEqual,
  kLabelDrop,
  kLabelKeep,
  kLabelMap,
  kLowercase,
  kUppercase,
};
std::string_view RelabelActionName(RelabelAction action);  // "replace", ...

// One compiled rule. Build them with RelabelRules::Parse, which checks the
// combinations Prometheus refuses (e.g. labeldrop with a target_label).
struct RelabelRule {
  std::vector<std::string> source_labels;
  std::string separator = ";";
  std::string regex = "(.*)";  // as written, unanchored
  std::shared_ptr<const re2::RE2> compiled;  // "^(?:" + regex + ")$"
  std::string target_label;
  std::string replacement = "$1";
  RelabelAction action = RelabelAction::kReplace;
};

class RelabelRules {
 public:
  RelabelRules() = default;  // no rules: everything is kept unchanged

  // Parses a YAML sequence of rules (null or absent: no rules). Errors are
  // INVALID_ARGUMENT naming the rule and field, prefixed with `context`:
  //   relabel[2]: unknown action "kepp"; expected replace, keep, ... (line 7)
  static absl::StatusOr<RelabelRules> Parse(const YAML::Node& node, std::string_view context = "relabel");

  // Applies the rules in order to `labels` (names in any order, "__name__"
  // included; a label with an empty value counts as absent). false: a keep,
  // drop, keepequal or dropequal rule dropped the series (labels are then
  // left half-processed). Label names are not validated here.
  bool Process(model::Labels& labels) const;

  bool empty() const { return rules_.empty(); }
  size_t size() const { return rules_.size(); }
  const std::vector<RelabelRule>& rules() const { return rules_; }

 private:
  std::vector<RelabelRule> rules_;
};

// Why MetricRelabeler::Apply dropped a series.
enum class RelabelDropReason {
  kDroppedByRule,       // keep, drop, keepequal or dropequal: what the user asked
  kNoMetricName,        // the rules removed __name__
  kInvalidMetricName,   // __name__ does not match [a-zA-Z_:][a-zA-Z0-9_:]*
  kInvalidLabelName,    // e.g. a labelmap produced "1abc"
};
inline constexpr int kRelabelDropReasons = 4;
std::string_view RelabelDropReasonName(RelabelDropReason reason);  // "dropped_by_rule", ...

// Applies rules to the agent's metrics and checks what comes out: a series
// whose metric name or label names the rules made invalid is dropped (the
// daemon would refuse it), counted by reason and logged once per reason.
// Labels starting with "__" (other than __name__) are removed after the
// rules, as Prometheus does after target relabeling, so rules can use
// temporary labels such as __tmp_port.
class MetricRelabeler {
 public:
  // `context` names the rules in log lines, e.g. `job "node"`.
  MetricRelabeler(RelabelRules rules, std::string context);

  // true: *metric holds the relabeled series (labels sorted, without
  // __name__, which is in metric->name). false: dropped, counted.
  bool Apply(HostMetric* metric);
  // The same on a label set with __name__ (in any order; sorted on return).
  bool Apply(model::Labels* labels);

  struct Stats {
    uint64_t kept = 0;
    uint64_t dropped[kRelabelDropReasons] = {};
    uint64_t dropped_total() const;
  };
  Stats stats() const;
  const RelabelRules& rules() const { return rules_; }

 private:
  void Count(RelabelDropReason reason, const model::Labels& labels);

  const RelabelRules rules_;
  const std::string context_;
  mutable absl::Mutex mu_;
  Stats stats_ ABSL_GUARDED_BY(mu_);
  bool logged_[kRelabelDropReasons] ABSL_GUARDED_BY(mu_) = {};
};

// Go's Regexp.Expand on one match, as Prometheus uses it for target_label
// and replacement: `groups` are the match's submatches (groups[0] the whole
// match; a group that did not take part has data() == nullptr). Exposed for
// tests.
std::string ExpandTemplate(std::string_view tmpl, const re2::RE2& re, const std::vector<std::string_view>& groups);

}  // namespace sheaf::agent

#endif  // SHEAF_AGENT_RELABEL_RELABEL_H_
