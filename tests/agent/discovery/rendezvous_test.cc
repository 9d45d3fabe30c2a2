// The rendezvous order: fixed values (the order must never change between
// versions), an even spread, and minimal movement when daemons come and go.
#include "agent/discovery/rendezvous.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>

namespace sheaf::agent::discovery {
namespace {

std::vector<std::string> Daemons(int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back(fmt::format("10.0.0.{}:7470", i + 1));
  return out;
}

// Identities as agent_state.h makes them ("agent-" + 32 random hex digits),
// from a fixed seed (mt19937_64's sequence is fixed by the standard).
std::string Identity(int i) {
  std::mt19937_64 rng(static_cast<uint64_t>(i));
  uint64_t hi = rng(), lo = rng();
  return fmt::format("agent-{:016x}{:016x}", hi, lo);
}

std::map<std::string, std::string> FirstChoice(const std::vector<std::string>& daemons, int agents) {
  std::map<std::string, std::string> out;
  for (int i = 0; i < agents; ++i) out[Identity(i)] = RendezvousOrder(Identity(i), daemons).front();
  return out;
}

// Pinned: agents of every version must rank daemons alike. If this fails,
// the hash changed, and a mixed fleet would split one host's history.
TEST(RendezvousTest, WeightsArePinned) {
  // Computed independently (a few lines of Python: FNV-1a 64 over
  // identity, 0, address; then splitmix64's finaliser).
  EXPECT_EQ(RendezvousWeight("", ""), 0x25fc6dd36ce04b20ull);
  EXPECT_EQ(RendezvousWeight("agent-1", "10.0.0.1:7470"), 0xcdfeb56de13b9bebull);
  EXPECT_NE(RendezvousWeight("ab", "c"), RendezvousWeight("a", "bc"));
}

TEST(RendezvousTest, OrderIsAPermutationWithoutDuplicates) {
  auto order = RendezvousOrder("agent-x", {"b:1", "a:1", "c:1", "a:1"});
  ASSERT_EQ(order.size(), 3u);
  std::vector<std::string> sorted = order;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, (std::vector<std::string>{"a:1", "b:1", "c:1"}));
  // The same set in another input order gives the same order.
  EXPECT_EQ(RendezvousOrder("agent-x", {"c:1", "b:1", "a:1"}), order);
}

TEST(RendezvousTest, SpreadsEvenly) {
  constexpr int kAgents = 1000;
  // Within 20% of 1/N: about 3 standard deviations of a fair split for
  // these N (the test is deterministic; a poor hash would fail it).
  for (int n : {2, 3, 4, 5}) {
    std::map<std::string, int> per_daemon;
    for (const auto& [agent, daemon] : FirstChoice(Daemons(n), kAgents)) ++per_daemon[daemon];
    ASSERT_EQ(per_daemon.size(), static_cast<size_t>(n));
    for (const auto& [daemon, count] : per_daemon) {
      EXPECT_GE(count, 0.8 * kAgents / n) << n << " daemons: " << daemon;
      EXPECT_LE(count, 1.2 * kAgents / n) << n << " daemons: " << daemon;
    }
  }
}

TEST(RendezvousTest, AddingADaemonMovesOnlyItsShare) {
  constexpr int kAgents = 1000;
  for (int n : {3, 5, 8}) {
    auto before = FirstChoice(Daemons(n), kAgents);
    auto after = FirstChoice(Daemons(n + 1), kAgents);
    std::string added = Daemons(n + 1).back();
    int moved = 0;
    for (const auto& [agent, daemon] : before) {
      if (after[agent] != daemon) {
        ++moved;
        EXPECT_EQ(after[agent], added) << "an agent moved between two old daemons";
      }
    }
    double share = 1.0 / (n + 1);
    EXPECT_GE(moved, 0.8 * share * kAgents) << n;
    EXPECT_LE(moved, 1.2 * share * kAgents) << n;
  }
}

TEST(RendezvousTest, RemovingADaemonMovesOnlyItsAgents) {
  constexpr int kAgents = 1000;
  auto daemons = Daemons(5);
  auto before = FirstChoice(daemons, kAgents);
  std::string removed = daemons[2];
  daemons.erase(daemons.begin() + 2);
  auto after = FirstChoice(daemons, kAgents);
  int moved = 0;
  for (const auto& [agent, daemon] : before) {
    if (daemon == removed) {
      ++moved;
      // It goes to its second choice.
      EXPECT_EQ(after[agent], RendezvousOrder(agent, Daemons(5))[1]);
    } else {
      EXPECT_EQ(after[agent], daemon) << "an agent of a daemon that stayed moved";
    }
  }
  EXPECT_GT(moved, 0);
}

}  // namespace
}  // namespace sheaf::agent::discovery
