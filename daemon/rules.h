// Recording rules: Prometheus rule files (groups of `record:` rules),
// evaluated by sheafd on a schedule with the PromQL engine, their results
// written back through the ingest path as series of their own (so they are
// stored, rolled up, queryable, tailed and federated). docs/RULES.md is the
// user's side of this file.
//
// The format is Prometheus' own, so `promtool check rules` accepts sheaf's
// files:
//
//   groups:
//     - name: fleet                # unique across every file
//       interval: 30s              # optional; default --rule-evaluation-interval
//       limit: 0                   # optional; series one rule may produce (0: no limit)
//       tenant: team-a             # optional (sheaf's own key); default "default"
//       rules:
//         - record: region:node_cpu:rate1m
//           expr: sum by (region) (rate(node_cpu_seconds_total[1m]))
//           labels: {source: sheaf}  # optional; set on every result
//
// Alerting rules (`alert:`) are refused at load: sheafd does not evaluate
// them (yet).
//
// Scheduling: each group has its own thread and is evaluated at the
// multiples of its interval (wall clock), each evaluation at that
// scheduled time; rules in file order, each rule's results written before
// the next rule runs, so a rule may use an earlier rule's output of the
// same evaluation. Results go in as agent `rules/GROUP` with sequence
// TIME_MS * 1000 + RULE (1-based): an evaluation that is repeated (a
// restart, a reload within an interval) writes nothing twice.
//
// No gRPC here: results leave through a RecordWriter (the daemon binds it
// to IngestService::Write).
#ifndef SHEAF_DAEMON_RULES_H_
#define SHEAF_DAEMON_RULES_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/log.h"
#include "model/types.h"
#include "promql/ast.h"
#include "promql/engine.h"

namespace prometheus {
class Registry;
}

namespace sheaf::storage {
class SeriesStore;
}

namespace sheaf::daemon {

// A group holds at most this many rules (sequences leave room for 999).
inline constexpr size_t kMaxRulesPerGroup = 999;

struct RecordingRule {
  std::string record;                          // the metric name of every result
  std::string expr;                            // as written in the file
  std::shared_ptr<const promql::Expr> parsed;  // parsed once, at load
  model::Labels labels;                        // set on (and overriding) every result's labels
  int line = 0;                                // where the rule starts in its file (1-based)
};

struct RuleGroup {
  std::string file;
  std::string name;
  int line = 0;
  int64_t interval_ms = 0;
  uint64_t limit = 0;  // series one rule may produce; 0: no limit
  // Whose series the rules read and whose the results become (the
  // `tenant:` key, sheaf's own; storage::ValidTenantName).
  std::string tenant = "default";
  std::vector<RecordingRule> rules;

  std::string agent_id() const { return "rules/" + name; }
};

// The groups of one rule file. INVALID_ARGUMENT "FILE:LINE: reason" for the
// first problem found (YAML syntax, an unknown or repeated key, a missing
// or invalid field, an expression that does not parse — its line within
// the file — or is not an instant vector or scalar, an alerting rule).
absl::StatusOr<std::vector<RuleGroup>> ParseRuleFile(const std::string& file, std::string_view text,
                                                     int64_t default_interval_ms);

// Every file named by `patterns`: paths or globs, each possibly a
// comma-separated list. A path that does not exist is an error; a glob
// that matches nothing is not (it is logged). Group names must be unique
// across all files.
absl::StatusOr<std::vector<RuleGroup>> LoadRuleFiles(const std::vector<std::string>& patterns,
                                                     int64_t default_interval_ms);

// One result of a rule: the series' labels (with __name__) and its sample.
struct RecordedSample {
  model::Labels labels;
  model::Sample sample;
};
// What became of a batch of results (IngestService::WriteResult's fields).
struct RecordOutcome {
  bool duplicate = false;
  uint64_t stored = 0;
  uint64_t rejected = 0;
  std::string rejection;  // why the first rejected series was
};
// Writes one rule's results as one batch of `agent_id` with `sequence`
// into `tenant`'s series (`tenant_name`: its name, for limits and logs).
using RecordWriter = std::function<absl::StatusOr<RecordOutcome>(
    const std::string& agent_id, uint64_t sequence, std::vector<RecordedSample> samples, storage::TenantId tenant,
    const std::string& tenant_name)>;

struct RulesOptions {
  std::vector<std::string> files;        // --rule-files: paths or globs; none: no rules
  int64_t default_interval_ms = 60'000;  // --rule-evaluation-interval
  std::function<int64_t()> now_ms;       // wall clock when empty (tests inject one)
};

// Loads, schedules, evaluates and reloads the rule groups, and owns their
// metrics (sheaf_rule_*). Thread-safe.
class RuleManager {
 public:
  // `store` and `registry` must outlive the manager.
  RuleManager(storage::SeriesStore* store, promql::EngineOptions engine, RecordWriter writer, RulesOptions options,
              prometheus::Registry* registry);
  ~RuleManager();  // Stop()s

  // Reads the files. An error leaves the manager without rules. Call once,
  // before Start.
  absl::Status Load();
  // Starts evaluating the loaded groups, each on its own thread.
  void Start();
  // Reads the files again (SIGHUP). On success the new groups replace the
  // old ones (a group that keeps its name goes on from its last evaluation,
  // and a running evaluation finishes first); on error the old groups keep
  // running and the error is returned (and logged).
  absl::Status Reload();
  // Stops the threads; an evaluation in progress is cancelled. Idempotent;
  // call before the store closes.
  void Stop();

  // Evaluates every group once at `time_ms`, on this thread, as the
  // scheduler would (tests). The error of the last rule that failed.
  absl::Status EvaluateAll(int64_t time_ms);

  struct GroupInfo {
    std::string file;
    std::string name;
    int64_t interval_ms;
    size_t rules;
  };
  std::vector<GroupInfo> Groups() const;

 private:
  struct Metrics;
  struct Runner;

  int64_t Now() const;
  void Run(Runner* runner);
  void EvaluateGroup(Runner& runner, int64_t time_ms, absl::Status* last_error);
  absl::Status EvaluateRule(const RuleGroup& group, size_t index, int64_t time_ms, uint64_t* stored);
  std::unique_ptr<Runner> MakeRunner(RuleGroup group);
  void StartRunner(Runner& runner);
  void StopRunners(std::vector<std::unique_ptr<Runner>>& runners);

  storage::SeriesStore* store_;  // the tenant registry (rule groups name their tenant)
  promql::Engine engine_;
  RecordWriter writer_;
  RulesOptions options_;
  std::unique_ptr<Metrics> metrics_;
  std::atomic<bool> cancel_{false};  // set by Stop: running queries end
  LogRateLimiter failure_log_{20, std::chrono::minutes(1)};

  absl::Mutex reload_mu_;  // one Load/Reload/Stop at a time
  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<Runner>> runners_ ABSL_GUARDED_BY(mu_);
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace sheaf::daemon

#endif  // SHEAF_DAEMON_RULES_H_
