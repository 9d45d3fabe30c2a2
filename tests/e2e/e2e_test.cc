// End to end with real processes on loopback: sheafd, sheaf-agent,
// sheafctl, sheaf-loadgen, promtool and a real Prometheus. Binaries come
// from the environment (set by meson): SHEAFD, SHEAF_AGENT, SHEAFCTL,
// SHEAF_LOADGEN.
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>

#include "tests/support/net.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace sheaf {
namespace {

using std::chrono::seconds;
using testing::Process;
using testing::RunCommand;
using testing::WaitFor;

std::string Bin(const char* env) {
  const char* v = std::getenv(env);
  return v ? v : "";
}

// Value of `key N`, `key=N` or `"key":N` in a tool's output; -1 if absent.
int64_t Field(const std::string& out, const std::string& key) {
  std::smatch m;
  std::regex re("\"?" + key + "\"?[ :=]+([0-9]+)");
  return std::regex_search(out, m, re) ? std::stoll(m[1]) : -1;
}

class Sheafd {
 public:
  Sheafd(const testing::TempDir& dir, const std::string& data) {
    ready_ = dir.Sub("ready-" + std::to_string(++starts_));
    std::vector<std::string> argv = {Bin("SHEAFD"), "--grpc-listen",  "127.0.0.1:0", "--http-listen",
                                     "127.0.0.1:0", "--data-dir",     data,          "--ready-file",
                                     ready_,        "--grace-period", "5s"};
    process_ = Process::Start(argv, dir.Sub("sheafd.log"));
    ok_ = WaitFor([&] { return !testing::ReadFile(ready_).empty() || !process_->running(); }, seconds(30)) &&
          process_->running();
    std::string r = testing::ReadFile(ready_);
    grpc_port_ = static_cast<int>(Field(r, "grpc_port"));
    http_port_ = static_cast<int>(Field(r, "http_port"));
  }
  bool ok() const { return ok_ && grpc_port_ > 0 && http_port_ > 0; }
  std::string addr() const { return "127.0.0.1:" + std::to_string(grpc_port_); }
  int http_port() const { return http_port_; }
  Process& process() { return *process_; }
  std::string log() const { return testing::ReadFile(process_->log_path()); }

 private:
  static inline int starts_ = 0;
  std::string ready_;
  std::unique_ptr<Process> process_;
  bool ok_ = false;
  int grpc_port_ = 0, http_port_ = 0;
};

testing::CommandResult Ctl(const Sheafd& d, std::vector<std::string> args) {
  std::vector<std::string> argv = {Bin("SHEAFCTL"), "--addr", d.addr()};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, seconds(30));
}

int64_t StoredSamples(const Sheafd& d) { return Field(Ctl(d, {"stats", "--format", "json"}).output, "samples"); }

TEST(EndToEndTest, AgentMetricsFlowToQueryAndScrape) {
  testing::TempDir dir;
  Sheafd daemon(dir, dir.Sub("data"));
  ASSERT_TRUE(daemon.ok()) << daemon.log();
  // The identity is generated in the state directory; the host label is
  // set explicitly (by default it is the machine's host name).
  auto agent =
      Process::Start({Bin("SHEAF_AGENT"), "--daemon", daemon.addr(), "--interval", "1s", "--stream-max-age", "1s",
                      "--state-dir", dir.Sub("agent-state"), "--label", "host=e2e-host", "--label", "region=test"},
                     dir.Sub("agent.log"));
  // The agent's load average arrives and is queryable.
  testing::CommandResult q;
  ASSERT_TRUE(WaitFor(
      [&] {
        q = Ctl(daemon, {"query", "node_load1", "--since", "5m", "--format", "csv"});
        return q.exit_code == 0 &&
               q.output.find("node_load1{host=\"\"e2e-host\"\", region=\"\"test\"\"}") != std::string::npos;
      },
      seconds(30)))
      << q.output << testing::ReadFile(dir.Sub("agent.log"));
  // Counters keep their type and the host's CPU modes are there.
  auto series = Ctl(daemon, {"series", R"(node_cpu_seconds_total{mode="idle"})"});
  EXPECT_EQ(series.exit_code, 0);
  EXPECT_NE(series.output.find("host=\"e2e-host\""), std::string::npos) << series.output;
  auto json = Ctl(daemon, {"query", R"(node_cpu_seconds_total{mode="idle"})", "--format", "json"});
  EXPECT_NE(json.output.find("\"type\":\"counter\""), std::string::npos) << json.output;
  EXPECT_EQ(Ctl(daemon, {"health"}).output, "SERVING\n");

  auto metrics = testing::HttpGet(daemon.http_port(), "/metrics");
  ASSERT_EQ(metrics.status, 200);
  EXPECT_GT(Field(metrics.body, "sheaf_ingest_samples_total"), 0) << metrics.body;
  std::ofstream(dir.Sub("metrics.txt")) << metrics.body;
  EXPECT_EQ(std::system(("promtool check metrics < " + dir.Sub("metrics.txt")).c_str()), 0);

  agent->Signal(SIGTERM);
  EXPECT_EQ(agent->Wait(seconds(15)), 0) << testing::ReadFile(dir.Sub("agent.log"));
  daemon.process().Signal(SIGTERM);
  EXPECT_EQ(daemon.process().Wait(seconds(15)), 0) << daemon.log();
}

// The agent keeps its identity and its sequences in --state-dir: a second
// run continues the first one's sequences, so nothing it sends is taken for
// a duplicate, and both runs' samples are stored under the same series.
TEST(EndToEndTest, AgentIdentityAndSequencesSurviveRestarts) {
  testing::TempDir dir;
  Sheafd daemon(dir, dir.Sub("data"));
  ASSERT_TRUE(daemon.ok()) << daemon.log();
  const std::string state = dir.Sub("agent-state");
  auto run_agent = [&](const std::string& log) {
    auto agent = Process::Start({Bin("SHEAF_AGENT"), "--daemon", daemon.addr(), "--interval", "1s", "--count", "2",
                                 "--stream-max-age", "1s", "--state-dir", state, "--label", "host=restart-host"},
                                dir.Sub(log));
    EXPECT_EQ(agent->Wait(seconds(30)), 0) << testing::ReadFile(dir.Sub(log));
    return testing::ReadFile(dir.Sub(log));
  };
  const std::string first = run_agent("agent1.log");
  const std::string id = testing::ReadFile(state + "/identity");
  ASSERT_TRUE(std::regex_match(id, std::regex("agent-[0-9a-f]{32}\n"))) << id;
  EXPECT_NE(first.find("as agent \"" + id.substr(0, id.size() - 1) + "\" (new identity"), std::string::npos) << first;
  EXPECT_NE(first.find("next sequence 1;"), std::string::npos) << first;

  const std::string second = run_agent("agent2.log");
  EXPECT_NE(second.find("as agent \"" + id.substr(0, id.size() - 1) + "\" (identity file)"), std::string::npos)
      << second;
  EXPECT_EQ(second.find("next sequence 1;"), std::string::npos) << second;  // continues, never restarts
  EXPECT_EQ(testing::ReadFile(state + "/identity"), id);
  for (const std::string* log : {&first, &second}) {
    EXPECT_EQ(log->find("sequence conflict"), std::string::npos) << *log;
    EXPECT_EQ(log->find("for duplicates"), std::string::npos) << *log;
    EXPECT_NE(log->find("sequence_conflicts=0 unexpected_duplicates=0"), std::string::npos) << *log;
  }
  auto q = Ctl(daemon, {"query", R"(node_load1{host="restart-host"})", "--since", "5m", "--format", "csv"});
  ASSERT_EQ(q.exit_code, 0);
  EXPECT_EQ(std::count(q.output.begin(), q.output.end(), '\n'), 5) << q.output;  // header + 2 runs x 2 samples

  // A second agent on the same state directory is refused: it would share
  // the identity and hand out the same sequences.
  auto holder = Process::Start(
      {Bin("SHEAF_AGENT"), "--daemon", daemon.addr(), "--interval", "1h", "--state-dir", state}, dir.Sub("holder.log"));
  ASSERT_TRUE(WaitFor([&] { return testing::ReadFile(dir.Sub("holder.log")).find("shipping to") != std::string::npos; },
                      seconds(10)))
      << testing::ReadFile(dir.Sub("holder.log"));
  auto second_agent =
      RunCommand({Bin("SHEAF_AGENT"), "--daemon", daemon.addr(), "--state-dir", state, "--count", "1"}, seconds(30));
  EXPECT_EQ(second_agent.exit_code, 1);
  holder->Signal(SIGTERM);
  EXPECT_EQ(holder->Wait(seconds(15)), 0) << testing::ReadFile(dir.Sub("holder.log"));

  // A corrupt state file stops the agent with a message naming it, and is
  // left for the operator (never silently reset).
  { std::ofstream(state + "/sequence", std::ios::trunc) << "garbage"; }
  auto corrupt = Process::Start({Bin("SHEAF_AGENT"), "--daemon", daemon.addr(), "--state-dir", state, "--count", "1"},
                                dir.Sub("corrupt.log"));
  EXPECT_EQ(corrupt->Wait(seconds(15)), 1);
  EXPECT_NE(testing::ReadFile(dir.Sub("corrupt.log")).find(state + "/sequence is corrupt"), std::string::npos)
      << testing::ReadFile(dir.Sub("corrupt.log"));
  EXPECT_EQ(testing::ReadFile(state + "/sequence"), "garbage");

  daemon.process().Signal(SIGTERM);
  EXPECT_EQ(daemon.process().Wait(seconds(15)), 0) << daemon.log();
}

TEST(EndToEndTest, LoadgenSamplesAreCountedExactlyAndSurviveRestart) {
  testing::TempDir dir;
  const std::string data = dir.Sub("data");
  {
    Sheafd daemon(dir, data);
    ASSERT_TRUE(daemon.ok()) << daemon.log();
    auto load = RunCommand({Bin("SHEAF_LOADGEN"), "--addr", daemon.addr(), "--hosts", "100", "--series-per-host", "10",
                            "--points", "100", "--batch", "2000", "--streams", "2"},
                           seconds(120));
    ASSERT_EQ(load.exit_code, 0) << load.output;
    EXPECT_EQ(Field(load.output, "samples_acked"), 100'000);
    EXPECT_EQ(StoredSamples(daemon), 100'000);
    daemon.process().Signal(SIGTERM);
    ASSERT_EQ(daemon.process().Wait(seconds(15)), 0) << daemon.log();
  }
  Sheafd reopened(dir, data);
  ASSERT_TRUE(reopened.ok()) << reopened.log();
  auto stats = Ctl(reopened, {"stats", "--format", "json"});
  EXPECT_EQ(Field(stats.output, "samples"), 100'000) << stats.output;
  EXPECT_EQ(Field(stats.output, "series"), 1'000) << stats.output;
  auto q = Ctl(reopened, {"query", R"(node_load1{host="host-0007"})", "--since", "2h", "--format", "csv"});
  ASSERT_EQ(q.exit_code, 0);
  EXPECT_EQ(std::count(q.output.begin(), q.output.end(), '\n'), 101) << q.output;  // header + 100 points
}

TEST(EndToEndTest, AcknowledgedSamplesSurviveKill9) {
  testing::TempDir dir;
  const std::string data = dir.Sub("data");
  {
    Sheafd daemon(dir, data);
    ASSERT_TRUE(daemon.ok()) << daemon.log();
    auto load = RunCommand({Bin("SHEAF_LOADGEN"), "--addr", daemon.addr(), "--hosts", "20", "--series-per-host", "10",
                            "--points", "100", "--batch", "500", "--streams", "4"},
                           seconds(120));
    ASSERT_EQ(load.exit_code, 0) << load.output;
    ASSERT_EQ(Field(load.output, "samples_acked"), 20'000);
    daemon.process().Signal(SIGKILL);  // no flush, no goodbye
    daemon.process().Wait(seconds(10));
  }
  Sheafd reopened(dir, data);
  ASSERT_TRUE(reopened.ok()) << reopened.log();
  EXPECT_EQ(StoredSamples(reopened), 20'000);
}

// sheafd SIGKILLed five times in the middle of ingestion. Each run sends
// the fleet of the runs before it again (as agents retry what was not
// acknowledged) plus 50 new hosts, and is killed once new samples arrive.
// Nothing acknowledged is lost and nothing is counted twice: a last run to
// completion leaves exactly the fleet in the store, no more.
TEST(EndToEndTest, FiveKill9sDuringIngestLoseAndDuplicateNothing) {
  testing::TempDir dir;
  const std::string data = dir.Sub("data");
  const int64_t start_ms =
      (std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
           .count() /
       10'000) *
          10'000 -
      200 * 10'000;
  // A fleet's data does not depend on its size: host-0001 is the same in
  // a fleet of 50 and of 300.
  auto load = [&](const Sheafd& daemon, int hosts) {
    return std::vector<std::string>{Bin("SHEAF_LOADGEN"),
                                    "--addr",
                                    daemon.addr(),
                                    "--hosts",
                                    std::to_string(hosts),
                                    "--series-per-host",
                                    "10",
                                    "--points",
                                    "200",
                                    "--batch",
                                    "500",
                                    "--streams",
                                    "2",
                                    "--start-ms",
                                    std::to_string(start_ms)};
  };
  int64_t acked_before = 0;
  for (int kill = 1; kill <= 5; ++kill) {
    Sheafd daemon(dir, data);
    ASSERT_TRUE(daemon.ok()) << daemon.log();
    const int64_t stored = StoredSamples(daemon);
    EXPECT_GE(stored, acked_before) << "kill " << kill << ": acknowledged samples were lost";
    EXPECT_LE(stored, 2'000 * 50 * kill) << "kill " << kill << ": more samples than were ever sent";
    auto loadgen = Process::Start(load(daemon, 50 * kill), dir.Sub("loadgen-" + std::to_string(kill) + ".log"));
    WaitFor([&] { return StoredSamples(daemon) > stored + 5'000 || !loadgen->running(); }, seconds(60));
    daemon.process().Signal(SIGKILL);  // mid-ingest: no flush, no goodbye
    daemon.process().Wait(seconds(10));
    loadgen->Wait(seconds(30));
    std::printf("kill %d: %lld samples stored before this run\n", kill, static_cast<long long>(stored));
    acked_before = stored;
  }
  Sheafd daemon(dir, data);
  ASSERT_TRUE(daemon.ok()) << daemon.log();
  EXPECT_GE(StoredSamples(daemon), acked_before);
  auto last = RunCommand(load(daemon, 300), seconds(120));
  ASSERT_EQ(last.exit_code, 0) << last.output;
  EXPECT_EQ(StoredSamples(daemon), 300 * 10 * 200);  // the fleet exactly: nothing lost, nothing twice
  auto q = Ctl(daemon, {"query", R"(node_load1{host="host-0007"})", "--start", std::to_string(start_ms - 1), "--end",
                        std::to_string(start_ms + 200 * 10'000), "--format", "csv"});
  ASSERT_EQ(q.exit_code, 0) << q.output;
  EXPECT_EQ(std::count(q.output.begin(), q.output.end(), '\n'), 201) << q.output;  // header + 200 points
}

// Flag mistakes are exit code 2 with a message naming the flag: a rollup
// resolution given twice (once an obscure RocksDB error at open) and a
// 20-digit time (once an uncaught exception in sheafctl).
TEST(EndToEndTest, BadFlagsExitWithCodeTwoNamingTheFlag) {
  testing::TempDir dir;
  // Through sh, for stderr too: that is where the message goes.
  auto with_stderr = [](std::vector<std::string> argv) {
    argv.insert(argv.begin(), {"/bin/sh", "-c", "exec \"$@\" 2>&1", "sh"});
    return RunCommand(argv, seconds(30));
  };
  auto d = with_stderr({Bin("SHEAFD"), "--data-dir", dir.Sub("data"), "--rollups", "1m:1d,1m:2d"});
  EXPECT_EQ(d.exit_code, 2) << d.output;
  EXPECT_NE(d.output.find("--rollups"), std::string::npos) << d.output;
  auto c = with_stderr({Bin("SHEAFCTL"), "--addr", "127.0.0.1:1", "--start", "12345678901234567890", "query", "up"});
  EXPECT_EQ(c.exit_code, 2) << c.output;
  EXPECT_NE(c.output.find("--start"), std::string::npos) << c.output;
}

TEST(EndToEndTest, TakenPortExitsWithCodeOneAndAClearMessage) {
  testing::TempDir dir;
  Sheafd first(dir, dir.Sub("a"));
  ASSERT_TRUE(first.ok());
  auto second = Process::Start(
      {Bin("SHEAFD"), "--grpc-listen", first.addr(), "--http-listen", "127.0.0.1:0", "--data-dir", dir.Sub("b")},
      dir.Sub("second.log"));
  EXPECT_EQ(second->Wait(seconds(20)), 1);
  EXPECT_NE(testing::ReadFile(dir.Sub("second.log")).find("is the port taken"), std::string::npos)
      << testing::ReadFile(dir.Sub("second.log"));
}

TEST(EndToEndTest, RealPrometheusScrapesSheafd) {
  testing::TempDir dir;
  Sheafd daemon(dir, dir.Sub("data"));
  ASSERT_TRUE(daemon.ok()) << daemon.log();
  int prom_port = testing::FreePort();
  std::ofstream(dir.Sub("prometheus.yml")) << "global:\n  scrape_interval: 1s\nscrape_configs:\n"
                                           << "  - job_name: sheafd\n    static_configs:\n"
                                           << "      - targets: ['127.0.0.1:" << daemon.http_port() << "']\n";
  auto prom = Process::Start(
      {"/usr/bin/prometheus", "--config.file=" + dir.Sub("prometheus.yml"), "--storage.tsdb.path=" + dir.Sub("prom"),
       "--web.listen-address=127.0.0.1:" + std::to_string(prom_port)},
      dir.Sub("prometheus.log"));
  testing::HttpResponse r;
  bool scraped = WaitFor(
      [&] {
        r = testing::HttpGet(prom_port, "/api/v1/query?query=sheaf_storage_series%7Bjob%3D%22sheafd%22%7D");
        return r.status == 200 && r.body.find("\"result\":[{") != std::string::npos;
      },
      seconds(60));
  EXPECT_TRUE(scraped) << r.body << testing::ReadFile(dir.Sub("prometheus.log"));
  auto up = testing::HttpGet(prom_port, "/api/v1/query?query=up%7Bjob%3D%22sheafd%22%7D");
  EXPECT_NE(up.body.find("\"1\"]"), std::string::npos) << up.body;
  prom->Signal(SIGTERM);
  prom->Wait(seconds(15));
}

// `sheafctl tail` as a user runs it: the matching samples are printed as
// sheafd stores them, one line each, and Ctrl-C (SIGINT) ends it with 0.
TEST(EndToEndTest, SheafctlTailPrintsSamplesLiveUntilCtrlC) {
  testing::TempDir dir;
  Sheafd daemon(dir, dir.Sub("data"));
  ASSERT_TRUE(daemon.ok()) << daemon.log();
  auto tail = Process::Start({Bin("SHEAFCTL"), "--addr", daemon.addr(), "tail", R"(node_load1{host=~"host-000[12]"})"},
                             dir.Sub("tail.log"));
  // Subscribed once sheafd counts the subscription.
  ASSERT_TRUE(WaitFor(
      [&] { return Field(testing::HttpGet(daemon.http_port(), "/metrics").body, "sheaf_tail_subscriptions") == 1; },
      seconds(10)))
      << testing::ReadFile(dir.Sub("tail.log"));
  auto load = RunCommand({Bin("SHEAF_LOADGEN"), "--addr", daemon.addr(), "--hosts", "3", "--series-per-host", "3",
                          "--points", "2", "--streams", "1"},
                         seconds(60));
  ASSERT_EQ(load.exit_code, 0) << load.output;
  // node_load1 of two of the three hosts, two points each.
  const std::regex line(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z  node_load1\{host="host-000[12]", job="node", )"
                        R"(region="[a-z0-9-]+"\}  [0-9.e+-]+)");
  auto lines = [&] {
    std::vector<std::string> out;
    std::istringstream in(testing::ReadFile(dir.Sub("tail.log")));
    for (std::string l; std::getline(in, l);) out.push_back(l);
    return out;
  };
  ASSERT_TRUE(WaitFor([&] { return lines().size() >= 4; }, seconds(10))) << testing::ReadFile(dir.Sub("tail.log"));
  tail->Signal(SIGINT);
  EXPECT_EQ(tail->Wait(seconds(10)), 0) << testing::ReadFile(dir.Sub("tail.log"));
  const std::vector<std::string> printed = lines();
  EXPECT_EQ(printed.size(), 4u);
  int per_host[2] = {0, 0};
  for (const std::string& l : printed) {
    EXPECT_TRUE(std::regex_match(l, line)) << l;
    ++per_host[l.find("host-0001") != std::string::npos ? 0 : 1];
  }
  EXPECT_EQ(per_host[0], 2);
  EXPECT_EQ(per_host[1], 2);
  daemon.process().Signal(SIGTERM);
  EXPECT_EQ(daemon.process().Wait(seconds(15)), 0) << daemon.log();
}

}  // namespace
}  // namespace sheaf
