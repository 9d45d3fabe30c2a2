// The console's agent registry under many agents (its basics, with one
// or two of them, are in console_test.cc): past max_agents it forgets the
// ones that pushed longest ago, a slice at a time, and an agent pushing
// fast keeps its rate right with a bounded number of entries.
#include "daemon/agent_registry.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace sheaf::daemon {
namespace {

TEST(AgentRegistryTest, PastTheBoundForgetsTheOldestSliceAtOnce) {
  int64_t now = 1'000'000;
  AgentRegistryOptions options;
  options.max_agents = 640;  // a slice is 1/64: 10 agents
  options.now_ms = [&] { return now; };
  AgentRegistry registry(options);
  for (int i = 0; i < 640; ++i) {
    registry.Applied("agent-" + std::to_string(i), "x", "", 1, 1, now);
    now += 1000;
  }
  // agent-3 pushes again: it is no longer among the oldest.
  registry.Applied("agent-3", "x", "", 2, 1, now);
  now += 1000;
  registry.Applied("new-0", "x", "", 1, 1, now);
  EXPECT_EQ(registry.forgotten(), 10u);
  std::set<std::string> kept;
  for (const AgentInfo& a : registry.Agents()) kept.insert(a.id);
  EXPECT_EQ(kept.size(), 631u);
  for (int i : {0, 1, 2, 4, 5, 6, 7, 8, 9, 10}) EXPECT_EQ(kept.count("agent-" + std::to_string(i)), 0u) << i;
  EXPECT_EQ(kept.count("agent-3"), 1u);
  EXPECT_EQ(kept.count("agent-11"), 1u);
  EXPECT_EQ(kept.count("new-0"), 1u);
  // The next nine new agents fit without another scan.
  for (int i = 1; i <= 9; ++i) registry.Applied("new-" + std::to_string(i), "x", "", 1, 1, now);
  EXPECT_EQ(registry.forgotten(), 10u);
  registry.Applied("new-10", "x", "", 1, 1, now);
  EXPECT_EQ(registry.forgotten(), 20u);
  EXPECT_EQ(registry.Agents().size(), 631u);
}

TEST(AgentRegistryTest, FastPusherKeepsItsRate) {
  int64_t now = 1'000'000;
  AgentRegistryOptions options;
  options.now_ms = [&] { return now; };
  AgentRegistry registry(options);
  // 100 pushes a second for 30 s, 5 samples each: 500 samples/s.
  for (int i = 0; i < 3000; ++i) {
    registry.Applied("fast", "x", "", static_cast<uint64_t>(i + 1), 5, now);
    now += 10;
  }
  EXPECT_NEAR(registry.Agents()[0].samples_per_second, 500.0, 1.0);
  // A minute and a slot (3.75 s) later everything has left the window.
  now += 60'000 + 3'750;
  EXPECT_EQ(registry.SamplesPerSecond(), 0);
  EXPECT_EQ(registry.Agents()[0].samples, 15'000u);
}

}  // namespace
}  // namespace sheaf::daemon
