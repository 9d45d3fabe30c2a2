#include "common/flags.h"

#include <gtest/gtest.h>

#include <fstream>

#include "tests/support/temp_dir.h"

namespace sheaf {
namespace {

struct Parsed {
  std::string addr = "default:1";
  int64_t n = 3;
  bool on = false;
  std::chrono::milliseconds every = std::chrono::seconds(10);
  std::vector<std::string> labels;
};

absl::Status ParseArgs(FlagSet& flags, std::vector<std::string> args, std::vector<std::string>* positional = nullptr) {
  std::vector<char*> argv = {const_cast<char*>("prog")};
  for (auto& a : args) argv.push_back(a.data());
  return flags.Parse(static_cast<int>(argv.size()), argv.data(), positional);
}

void Register(FlagSet& f, Parsed& p) {
  f.String("addr", &p.addr, "address");
  f.Int("n", &p.n, "number");
  f.Bool("on", &p.on, "switch");
  f.Duration("every", &p.every, "interval");
  f.StringList("label", &p.labels, "labels");
}

TEST(FlagsTest, ParsesBothFormsAndPositionals) {
  Parsed p;
  FlagSet f("prog", "prog");
  Register(f, p);
  std::vector<std::string> pos;
  ASSERT_TRUE(ParseArgs(f,
                        {"query", "--addr", "h:2", "--n=7", "--on", "--every=1m", "--label", "a=b", "--label=c=d", "x"},
                        &pos)
                  .ok());
  EXPECT_EQ(p.addr, "h:2");
  EXPECT_EQ(p.n, 7);
  EXPECT_TRUE(p.on);
  EXPECT_EQ(p.every, std::chrono::minutes(1));
  EXPECT_EQ(p.labels, (std::vector<std::string>{"a=b", "c=d"}));
  EXPECT_EQ(pos, (std::vector<std::string>{"query", "x"}));
}

TEST(FlagsTest, ErrorsNameTheFlag) {
  Parsed p;
  FlagSet f("prog", "prog");
  Register(f, p);
  auto unknown = ParseArgs(f, {"--nope"});
  EXPECT_NE(unknown.message().find("--nope"), std::string::npos);
  auto bad_number = ParseArgs(f, {"--n", "seven"});
  EXPECT_NE(bad_number.message().find("--n"), std::string::npos);
  auto missing = ParseArgs(f, {"--addr"});
  EXPECT_NE(missing.message().find("needs a value"), std::string::npos);
  auto bad_duration = ParseArgs(f, {"--every", "soon"});
  EXPECT_NE(bad_duration.message().find("--every"), std::string::npos);
  EXPECT_FALSE(ParseArgs(f, {"stray"}).ok());  // no positionals wanted
}

TEST(FlagsTest, YamlConfigAppliesButCommandLineWins) {
  testing::TempDir dir;
  std::string path = dir.Sub("c.yaml");
  std::ofstream(path) << "addr: from-file:1\nn: 9\nevery: 5s\nlabel: [x=1, y=2]\n";
  Parsed p;
  FlagSet f("prog", "prog");
  Register(f, p);
  ASSERT_TRUE(ParseArgs(f, {"--n", "4"}).ok());
  ASSERT_TRUE(f.ApplyYamlFile(path).ok());
  EXPECT_EQ(p.addr, "from-file:1");
  EXPECT_EQ(p.n, 4);
  EXPECT_EQ(p.every, std::chrono::seconds(5));
  EXPECT_EQ(p.labels, (std::vector<std::string>{"x=1", "y=2"}));
}

TEST(FlagsTest, YamlUnknownKeysAndBadValuesAreErrors) {
  testing::TempDir dir;
  Parsed p;
  FlagSet f("prog", "prog");
  Register(f, p);
  std::ofstream(dir.Sub("a.yaml")) << "adr: typo\n";
  auto s = f.ApplyYamlFile(dir.Sub("a.yaml"));
  EXPECT_NE(s.message().find("unknown setting \"adr\""), std::string::npos) << s;
  std::ofstream(dir.Sub("b.yaml")) << "n: many\n";
  EXPECT_FALSE(f.ApplyYamlFile(dir.Sub("b.yaml")).ok());
  std::ofstream(dir.Sub("c.yaml")) << "a: [unclosed\n";
  EXPECT_FALSE(f.ApplyYamlFile(dir.Sub("c.yaml")).ok());
  EXPECT_FALSE(f.ApplyYamlFile(dir.Sub("missing.yaml")).ok());
}

TEST(FlagsTest, UsageListsFlagsWithDefaults) {
  Parsed p;
  FlagSet f("prog", "prog [flags]");
  Register(f, p);
  std::string u = f.Usage();
  EXPECT_NE(u.find("--addr VALUE"), std::string::npos);
  EXPECT_NE(u.find("(default: default:1)"), std::string::npos);
  EXPECT_NE(u.find("(default: 10s)"), std::string::npos);
}

}  // namespace
}  // namespace sheaf
