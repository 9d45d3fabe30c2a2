// sheaf-agent's configuration: flags and the --config file (with its
// scrape: and relabel: sections) load alike at start and on SIGHUP; bad
// settings are errors that say what is wrong; the example in deploy/ loads;
// and the real binary exits 2 on a bad file at start but keeps running on
// a bad file at reload.
#include "agent/agent_config.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>

#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace sheaf::agent {
namespace {

absl::StatusOr<AgentConfig> Load(std::vector<std::string> args) {
  args.insert(args.begin(), "sheaf-agent");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  return LoadAgentConfig(static_cast<int>(argv.size()), argv.data(), "testhost");
}

void Write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

TEST(AgentConfigTest, TheShippedExampleLoads) {
  const char* root = std::getenv("SHEAF_SOURCE_ROOT");
  ASSERT_NE(root, nullptr);
  auto c = Load({"--config", std::string(root) + "/deploy/sheaf-agent.yaml"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->daemon, "127.0.0.1:7470");
  EXPECT_EQ(c->scrape.size(), 1u);
  EXPECT_EQ(c->relabel.size(), 1u);
  EXPECT_EQ(c->spool_dir, "/var/lib/sheaf-agent/spool");
  // --label region/env, and host from the host name.
  EXPECT_EQ(c->extra_labels.size(), 3u);
}

TEST(AgentConfigTest, FlagsWinOverTheFileAndSectionsAreParsed) {
  testing::TempDir dir;
  Write(dir.Sub("a.yaml"),
        "interval: 5s\n"
        "daemon: dns:///sheafd.example:7470\n"
        "label: [region=eu]\n"
        "scrape:\n"
        "  - url: http://127.0.0.1:9100/metrics\n"
        "    job: node\n"
        "relabel:\n"
        "  - target_label: team\n"
        "    replacement: infra\n");
  auto c = Load({"--config", dir.Sub("a.yaml"), "--interval", "2s", "--state-dir", dir.Sub("state")});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->interval, std::chrono::seconds(2));
  EXPECT_EQ(c->daemon, "dns:///sheafd.example:7470");
  EXPECT_EQ(c->spool_dir, dir.Sub("state") + "/spool");
  ASSERT_EQ(c->scrape.size(), 1u);
  EXPECT_EQ(c->scrape[0].job, "node");
  EXPECT_EQ(c->relabel.size(), 1u);
  EXPECT_EQ(c->extra_labels, (LabelPairs{{"region", "eu"}, {"host", "testhost"}}));
}

TEST(AgentConfigTest, BadSettingsSayWhatIsWrong) {
  testing::TempDir dir;
  struct Case {
    std::string yaml;
    std::vector<std::string> flags;
    std::string want;
  };
  for (const Case& c : std::vector<Case>{
           {"intervall: 5s\n", {}, "unknown setting \"intervall\""},
           {"relabel:\n  - action: kepp\n", {}, "unknown action \"kepp\""},
           {"scrape:\n  - url: ftp://x/metrics\n    job: j\n", {}, "scrape[0]"},
           {"daemon: nowhere\n", {}, "--daemon"},
           {"", {"--label", "1bad=x"}, "not a valid label name"},
           {"", {"--disable-collector", "cpux"}, "cpux"},
           {"", {"--interval", "0s"}, "--interval must be > 0"},
           {"", {"--log-level", "loud"}, "--log-level"},
           {"", {"--spool-max-bytes", "1000"}, "at least 262144"},
           {"scrape: [\n", {}, "a.yaml"},
       }) {
    Write(dir.Sub("a.yaml"), c.yaml);
    std::vector<std::string> args = {"--config", dir.Sub("a.yaml")};
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    auto got = Load(args);
    ASSERT_FALSE(got.ok()) << c.yaml;
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument) << c.yaml;
    EXPECT_NE(got.status().message().find(c.want), std::string_view::npos)
        << "want \"" << c.want << "\" in: " << got.status().message();
  }
}

TEST(AgentConfigTest, ReloadNamesWhatNeedsARestart) {
  auto a = Load({"--daemon", "127.0.0.1:1", "--interval", "1s"});
  auto b = Load({"--daemon", "127.0.0.1:2", "--interval", "2s"});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(SettingsNeedingRestart(*a, *b), std::vector<std::string>{"daemon"});
  EXPECT_TRUE(SettingsNeedingRestart(*a, *a).empty());
}

// The binary: a bad file at start is exit code 2 and a message; at reload
// (SIGHUP) it is logged and the agent keeps running on the old settings,
// and a good file is taken.
TEST(AgentConfigTest, TheAgentExitsTwoOnABadFileAndSurvivesABadReload) {
  const char* agent = std::getenv("SHEAF_AGENT");
  ASSERT_NE(agent, nullptr);
  testing::TempDir dir;
  Write(dir.Sub("bad.yaml"), "relabel:\n  - action: kepp\n");
  auto bad = testing::Process::Start({agent, "--config", dir.Sub("bad.yaml"), "--state-dir", dir.Sub("state")},
                                     dir.Sub("bad.log"));
  ASSERT_NE(bad, nullptr);
  EXPECT_EQ(bad->Wait(std::chrono::seconds(10)), 2);
  EXPECT_NE(testing::ReadFile(dir.Sub("bad.log")).find("unknown action \"kepp\""), std::string::npos);

  const std::string cfg = dir.Sub("agent.yaml");
  Write(cfg, "interval: 1s\nlabel: [stage=one]\n");
  auto p = testing::Process::Start({agent, "--config", cfg, "--state-dir", dir.Sub("state"), "--daemon",
                                    "127.0.0.1:" + std::to_string(testing::FreePort())},
                                   dir.Sub("agent.log"));
  ASSERT_NE(p, nullptr);
  auto log_has = [&](const std::string& text) {
    return testing::WaitFor([&] { return testing::ReadFile(dir.Sub("agent.log")).find(text) != std::string::npos; },
                            std::chrono::seconds(10));
  };
  ASSERT_TRUE(log_has("shipping to"));
  Write(cfg, "interval: 1s\nrelabel:\n  - action: kepp\n");
  p->Signal(SIGHUP);
  EXPECT_TRUE(log_has("the configuration is not valid, so the running one stays"));
  EXPECT_TRUE(p->running());
  Write(cfg, "interval: 1s\nlabel: [stage=two]\nrelabel:\n  - source_labels: [__name__]\n    regex: go_.*\n"
             "    action: drop\n");
  p->Signal(SIGHUP);
  EXPECT_TRUE(log_has("SIGHUP: reloaded: every 1000 ms, 0 scrape targets, 1 relabel rules"));
  p->Signal(SIGTERM);
  EXPECT_EQ(p->Wait(std::chrono::seconds(15)), 0);
}

}  // namespace
}  // namespace sheaf::agent
