// Recording rules and /federate end to end, with real processes on
// loopback: promtool accepts the shipped rule file (deploy/rules/fleet.yml),
// a real sheafd evaluates it over a real sheaf-agent's data, its /federate
// answer passes `promtool check metrics`, and a real Prometheus federates
// the recorded series. Also: a bad rule file stops the start, and on SIGHUP
// it is logged while the old rules keep running. Paths come from the
// environment (set by meson): SHEAFD, SHEAF_AGENT, FLEET_RULES.
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdlib>
#include <fstream>
#include <regex>

#include "tests/support/net.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace sheaf {
namespace {

using std::chrono::seconds;
using testing::Process;
using testing::RunCommand;
using testing::WaitFor;

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// A command's stdout and stderr together.
testing::CommandResult Shell(const std::string& command) { return RunCommand({"/bin/sh", "-c", command + " 2>&1"}); }

// The value of a sample line `name{labels} VALUE` (or `name VALUE`); -1 if absent.
double Sample(const std::string& text, const std::string& series) {
  size_t at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::strtod(text.c_str() + at + series.size() + 2, nullptr);
}

// `promtool check metrics` on `text`.
testing::CommandResult CheckMetrics(const testing::TempDir& dir, const std::string& text) {
  std::ofstream(dir.Sub("check.txt")) << text;
  return Shell("promtool check metrics < " + dir.Sub("check.txt"));
}

constexpr char kFederateRegions[] = "/federate?match[]=%7B__name__%3D~%22region%3A.*%22%7D";

class Sheafd {
 public:
  Sheafd(const testing::TempDir& dir, std::vector<std::string> extra) {
    const std::string ready = dir.Sub("ready");
    std::vector<std::string> argv = {Env("SHEAFD"),   "--grpc-listen", "127.0.0.1:0",
                                     "--http-listen", "127.0.0.1:0",   "--data-dir",
                                     dir.Sub("data"), "--ready-file",  ready};
    argv.insert(argv.end(), extra.begin(), extra.end());
    process_ = Process::Start(argv, dir.Sub("sheafd.log"));
    WaitFor([&] { return !testing::ReadFile(ready).empty() || !process_->running(); }, seconds(30));
    std::smatch m;
    const std::string text = testing::ReadFile(ready);
    if (std::regex_search(text, m, std::regex("grpc_port=([0-9]+)\nhttp_port=([0-9]+)"))) {
      grpc_port_ = std::stoi(m[1]);
      http_port_ = std::stoi(m[2]);
    }
  }
  bool ok() { return process_->running() && http_port_ > 0; }
  std::string addr() const { return "127.0.0.1:" + std::to_string(grpc_port_); }
  int http_port() const { return http_port_; }
  Process& process() { return *process_; }
  std::string log() const { return testing::ReadFile(process_->log_path()); }

 private:
  std::unique_ptr<Process> process_;
  int grpc_port_ = 0, http_port_ = 0;
};

TEST(RulesEndToEndTest, PromtoolAcceptsTheShippedRuleFile) {
  auto check = Shell("promtool check rules " + Env("FLEET_RULES"));
  EXPECT_EQ(check.exit_code, 0) << check.output;
  EXPECT_NE(check.output.find("SUCCESS: 12 rules found"), std::string::npos) << check.output;
}

TEST(RulesEndToEndTest, PrometheusFederatesTheRecordedSeries) {
  testing::TempDir dir;
  // The shipped rules, and one without ':' in its name (promtool's lint
  // objects to ':' in /federate's output, as it does to Prometheus' own).
  const std::string extra = dir.Sub("e2e.yml");
  std::ofstream(extra) << "groups:\n  - name: e2e\n    rules:\n      - record: fleet_hosts\n"
                       << "        expr: count(node_load1)\n";
  ASSERT_EQ(Shell("promtool check rules " + extra).exit_code, 0);

  Sheafd daemon(dir, {"--rule-files", Env("FLEET_RULES") + "," + extra, "--rule-evaluation-interval", "1s"});
  ASSERT_TRUE(daemon.ok()) << daemon.log();
  auto agent =
      Process::Start({Env("SHEAF_AGENT"), "--daemon", daemon.addr(), "--interval", "1s", "--stream-max-age", "1s",
                      "--state-dir", dir.Sub("agent-state"), "--label", "host=e2e-host", "--label", "region=e2e"},
                     dir.Sub("agent.log"));

  // The agent's CPU counters arrive, a rate over them is recorded.
  testing::HttpResponse federated;
  ASSERT_TRUE(WaitFor(
      [&] {
        federated = testing::HttpGet(daemon.http_port(), kFederateRegions);
        return federated.body.find("\nregion:node_cpu_busy_seconds:rate1m{region=\"e2e\"} ") != std::string::npos &&
               federated.body.find("\nregion:hosts:count{region=\"e2e\"} 1 ") != std::string::npos;
      },
      seconds(60)))
      << federated.status << " " << federated.body << daemon.log() << testing::ReadFile(dir.Sub("agent.log"));
  EXPECT_NE(federated.body.find("# TYPE region:node_memory_utilisation:ratio untyped\n"), std::string::npos);
  // The text parses; the lint's only objection is the ':' in the names.
  auto lint = CheckMetrics(dir, federated.body);
  EXPECT_EQ(lint.exit_code, 3) << lint.output;
  EXPECT_EQ(std::regex_replace(lint.output, std::regex("[a-z_:A-Z0-9]+ metric names should not contain ':'\n"), ""), "")
      << lint.output;
  testing::HttpResponse hosts;
  ASSERT_TRUE(WaitFor(
      [&] {
        hosts = testing::HttpGet(daemon.http_port(), "/federate?match[]=fleet_hosts");
        return hosts.body.find("\nfleet_hosts 1 ") != std::string::npos;
      },
      seconds(30)))
      << hosts.body;
  lint = CheckMetrics(dir, hosts.body);
  EXPECT_EQ(lint.exit_code, 0) << lint.output << hosts.body;
  EXPECT_EQ(testing::HttpGet(daemon.http_port(), "/federate").status, 400);

  // A real Prometheus federates them: honor_labels and params match[], as
  // Prometheus' federation documentation configures it.
  const int prom_port = testing::FreePort();
  std::ofstream(dir.Sub("prometheus.yml"))
      << "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: sheafd-federate\n"
      << "    honor_labels: true\n    metrics_path: /federate\n    params:\n      'match[]':\n"
      << "        - '{__name__=~\"region:.*\"}'\n        - 'fleet_hosts'\n"
      << "    static_configs:\n      - targets: ['127.0.0.1:" << daemon.http_port() << "']\n";
  ASSERT_EQ(Shell("promtool check config " + dir.Sub("prometheus.yml")).exit_code, 0);
  auto prom = Process::Start(
      {"/usr/bin/prometheus", "--config.file=" + dir.Sub("prometheus.yml"), "--storage.tsdb.path=" + dir.Sub("prom"),
       "--web.listen-address=127.0.0.1:" + std::to_string(prom_port)},
      dir.Sub("prometheus.log"));
  testing::HttpResponse r;
  EXPECT_TRUE(WaitFor(
      [&] {
        r = testing::HttpGet(prom_port, "/api/v1/query?query=region%3Anode_cpu_busy_seconds%3Arate1m");
        return r.body.find("\"region\":\"e2e\"") != std::string::npos;
      },
      seconds(60)))
      << r.body << testing::ReadFile(dir.Sub("prometheus.log"));
  EXPECT_NE(r.body.find("\"__name__\":\"region:node_cpu_busy_seconds:rate1m\""), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("\"job\":\"sheafd-federate\""), std::string::npos) << r.body;
  EXPECT_TRUE(WaitFor(
      [&] {
        r = testing::HttpGet(prom_port, "/api/v1/query?query=fleet_hosts");
        return r.body.find("\"1\"]") != std::string::npos;
      },
      seconds(30)))
      << r.body;
  auto up = testing::HttpGet(prom_port, "/api/v1/query?query=up%7Bjob%3D%22sheafd-federate%22%7D");
  EXPECT_NE(up.body.find("\"1\"]"), std::string::npos) << up.body;
  prom->Signal(SIGTERM);
  EXPECT_EQ(prom->Wait(seconds(30)), 0);

  // Every rule evaluated without a failure, as /metrics says.
  auto metrics = testing::HttpGet(daemon.http_port(), "/metrics");
  for (const char* group : {"fleet_cpu", "fleet_memory_disk_network", "e2e"}) {
    const std::string label = std::string("{group=\"") + group + "\"}";
    EXPECT_GT(Sample(metrics.body, "sheaf_rule_evaluations_total" + label), 0) << metrics.body;
    EXPECT_EQ(Sample(metrics.body, "sheaf_rule_evaluation_failures_total" + label), 0) << metrics.body;
    EXPECT_EQ(Sample(metrics.body, "sheaf_rule_group_interval_seconds" + label), 1) << metrics.body;
  }
  EXPECT_EQ(CheckMetrics(dir, metrics.body).exit_code, 0);

  // SIGHUP with a bad file: logged with its line, the old rules go on.
  std::ofstream(extra) << "groups:\n  - name: e2e\n    rules:\n      - record: fleet_hosts\n"
                       << "        expr: count(node_load1\n";
  const double before = Sample(metrics.body, "sheaf_rule_group_iterations_total{group=\"e2e\"}");
  daemon.process().Signal(SIGHUP);
  EXPECT_TRUE(WaitFor([&] { return daemon.log().find(extra + ":5: group \"e2e\"") != std::string::npos; }, seconds(10)))
      << daemon.log();
  EXPECT_NE(daemon.log().find("the rules loaded before keep running"), std::string::npos);
  EXPECT_TRUE(WaitFor(
      [&] {
        auto m = testing::HttpGet(daemon.http_port(), "/metrics").body;
        return Sample(m, "sheaf_rule_group_iterations_total{group=\"e2e\"}") > before + 2 &&
               Sample(m, "sheaf_rule_config_last_reload_successful") == 0;
      },
      seconds(20)));

  agent->Signal(SIGTERM);
  EXPECT_EQ(agent->Wait(seconds(15)), 0) << testing::ReadFile(dir.Sub("agent.log"));
  daemon.process().Signal(SIGTERM);
  EXPECT_EQ(daemon.process().Wait(seconds(20)), 0) << daemon.log();
}

TEST(RulesEndToEndTest, ABadRuleFileStopsTheStartNamingFileAndLine) {
  testing::TempDir dir;
  const std::string bad = dir.Sub("bad.yml");
  std::ofstream(bad) << "groups:\n  - name: g\n    rules:\n      - alert: Down\n        expr: up == 0\n";
  auto sheafd = Process::Start({Env("SHEAFD"), "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
                                "--data-dir", dir.Sub("data"), "--rule-files", bad},
                               dir.Sub("sheafd.log"));
  EXPECT_EQ(sheafd->Wait(seconds(20)), 1);
  const std::string log = testing::ReadFile(dir.Sub("sheafd.log"));
  EXPECT_NE(log.find(bad + ":4: group \"g\": alerting rule \"Down\""), std::string::npos) << log;
}

}  // namespace
}  // namespace sheaf
