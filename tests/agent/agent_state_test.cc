// The agent's persistent state: an identity generated once and kept, and
// sequences that rise across restarts (and crashes) without the clock.
#include "agent/agent_state.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <regex>
#include <set>
#include <thread>

#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace sheaf::agent {
namespace {

std::unique_ptr<AgentState> MustOpen(const std::string& dir, uint64_t block = 4096, bool identity = true) {
  auto s = AgentState::Open({.dir = dir, .use_identity_file = identity, .reserve_block = block});
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *std::move(s) : nullptr;
}

uint64_t Next(AgentState& s) {
  auto seq = s.NextSequence();
  EXPECT_TRUE(seq.ok()) << seq.status();
  return seq.ok() ? *seq : 0;
}

void WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << contents;
}

TEST(AgentStateTest, IdentityIsGeneratedOnceAndKept) {
  testing::TempDir dir;
  const std::string state = dir.Sub("state/nested");  // created, parents too
  std::string id;
  {
    auto s = MustOpen(state);
    ASSERT_NE(s, nullptr);
    EXPECT_TRUE(s->identity_created());
    id = s->identity();
    EXPECT_TRUE(std::regex_match(id, std::regex("agent-[0-9a-f]{32}"))) << id;
    EXPECT_EQ(testing::ReadFile(state + "/identity"), id + "\n");
  }
  for (int i = 0; i < 3; ++i) {
    auto s = MustOpen(state);
    ASSERT_NE(s, nullptr);
    EXPECT_FALSE(s->identity_created());
    EXPECT_EQ(s->identity(), id);
  }
}

TEST(AgentStateTest, TwoStateDirectoriesHaveDifferentIdentities) {
  testing::TempDir dir;
  std::set<std::string> ids;
  for (int i = 0; i < 8; ++i) {
    auto s = MustOpen(dir.Sub(std::string("s") + std::to_string(i)));
    ASSERT_NE(s, nullptr);
    ids.insert(s->identity());
  }
  EXPECT_EQ(ids.size(), 8u);
}

TEST(AgentStateTest, ExplicitIdentityLeavesTheIdentityFileAlone) {
  testing::TempDir dir;
  auto s = MustOpen(dir.Sub("st"), 4096, /*identity=*/false);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->identity(), "");
  EXPECT_FALSE(std::filesystem::exists(dir.Sub("st/identity")));
  EXPECT_EQ(Next(*s), 1u);  // sequences are kept all the same
}

TEST(AgentStateTest, SequencesStartAtOneWhateverTheTime) {
  // The old agent started at the wall clock in microseconds (~1.7e15); a
  // new state starts at 1, dense.
  testing::TempDir dir;
  auto s = MustOpen(dir.Sub("st"));
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->PeekNextSequence(), 1u);
  for (uint64_t want = 1; want <= 10; ++want) EXPECT_EQ(Next(*s), want);
  EXPECT_EQ(s->reserved(), 4096u);  // one block reserved, written before the first was handed out
  EXPECT_EQ(testing::ReadFile(dir.Sub("st/sequence")), "4096\n");
}

TEST(AgentStateTest, SequencesRiseAcrossManyRestartsAndCrashes) {
  testing::TempDir dir;
  const std::string state = dir.Sub("st");
  uint64_t last = 0;
  for (int cycle = 0; cycle < 50; ++cycle) {
    auto s = MustOpen(state, /*block=*/7);
    ASSERT_NE(s, nullptr);
    // Some cycles hand out nothing, some stop inside a block, some cross
    // several blocks. Dropping the object without anything else is a crash:
    // AgentState writes nothing on close.
    const int n = (cycle * 5) % 17;
    for (int i = 0; i < n; ++i) {
      uint64_t seq = Next(*s);
      ASSERT_GT(seq, last) << "cycle " << cycle;
      last = seq;
      ASSERT_LE(seq, s->reserved());  // never handed out beyond what is on disk
      ASSERT_EQ(testing::ReadFile(state + "/sequence"), std::to_string(s->reserved()) + "\n");
    }
  }
  EXPECT_GT(last, 0u);
}

TEST(AgentStateTest, ACrashMidWriteLeavesTheOldMark) {
  testing::TempDir dir;
  const std::string state = dir.Sub("st");
  uint64_t last;
  {
    auto s = MustOpen(state, 10);
    ASSERT_NE(s, nullptr);
    for (int i = 0; i < 3; ++i) last = Next(*s);
  }
  // A process that died while writing the next reservation leaves only the
  // temporary file; the real one is intact.
  WriteFile(state + "/sequence.tmp", "99");
  auto s = MustOpen(state, 10);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->PeekNextSequence(), 11u);  // the reserved 4..10 are skipped, never reused
  EXPECT_GT(Next(*s), last);
}

TEST(AgentStateTest, ConcurrentCallersGetDistinctIncreasingSequences) {
  testing::TempDir dir;
  auto s = MustOpen(dir.Sub("st"), 16);
  ASSERT_NE(s, nullptr);
  std::vector<std::vector<uint64_t>> got(4);
  std::vector<std::thread> threads;
  for (auto& g : got) {
    threads.emplace_back([&s, &g] {
      for (int i = 0; i < 200; ++i) g.push_back(*s->NextSequence());
    });
  }
  for (auto& t : threads) t.join();
  std::set<uint64_t> all;
  for (const auto& g : got) {
    EXPECT_TRUE(std::is_sorted(g.begin(), g.end()));
    all.insert(g.begin(), g.end());
  }
  EXPECT_EQ(all.size(), 800u);
  EXPECT_EQ(*all.rbegin(), 800u);
}

TEST(AgentStateTest, AdvancePastIsDurable) {
  testing::TempDir dir;
  const std::string state = dir.Sub("st");
  {
    auto s = MustOpen(state);
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(Next(*s), 1u);
    ASSERT_TRUE(s->AdvancePast(uint64_t{1} << 40).ok());
    EXPECT_EQ(s->PeekNextSequence(), (uint64_t{1} << 40) + 1);
    ASSERT_TRUE(s->AdvancePast(5).ok());  // behind: nothing changes
    EXPECT_EQ(Next(*s), (uint64_t{1} << 40) + 1);
  }
  auto s = MustOpen(state);
  ASSERT_NE(s, nullptr);
  EXPECT_GT(Next(*s), (uint64_t{1} << 40) + 1);
}

TEST(AgentStateTest, AdvancePastTheEndOfTheSequenceSpaceIsAnError) {
  testing::TempDir dir;
  auto s = MustOpen(dir.Sub("st"));
  ASSERT_NE(s, nullptr);
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  absl::Status st = s->AdvancePast(max);
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted) << st;
  EXPECT_NE(st.message().find("new identity"), std::string::npos) << st;
  EXPECT_EQ(Next(*s), 1u);  // unchanged
  ASSERT_TRUE(s->AdvancePast(max - 3).ok());
  EXPECT_EQ(Next(*s), max - 2);
  EXPECT_EQ(Next(*s), max - 1);
  EXPECT_EQ(s->NextSequence().status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(AgentStateTest, CorruptSequenceFileIsAnErrorNotAReset) {
  testing::TempDir dir;
  const std::string state = dir.Sub("st");
  {
    auto s = MustOpen(state);
    ASSERT_NE(s, nullptr);
    Next(*s);
  }
  for (std::string bad : {std::string(""), std::string("12x\n"), std::string("\xff\xfe"), std::string("-5\n"),
                          std::string("99999999999999999999999\n"), std::string(1000, '1')}) {
    WriteFile(state + "/sequence", bad);
    auto s = AgentState::Open({.dir = state});
    ASSERT_FALSE(s.ok()) << "accepted " << testing::ReadFile(state + "/sequence");
    EXPECT_EQ(s.status().code(), absl::StatusCode::kDataLoss) << s.status();
    EXPECT_NE(s.status().message().find(state + "/sequence"), std::string::npos) << s.status();
    EXPECT_EQ(testing::ReadFile(state + "/sequence"), bad);  // left as it was, for the operator
  }
}

TEST(AgentStateTest, CorruptIdentityFileIsAnErrorNotANewIdentity) {
  testing::TempDir dir;
  const std::string state = dir.Sub("st");
  ASSERT_NE(MustOpen(state), nullptr);
  for (std::string bad : {std::string(""), std::string("agent-xyz\n"), std::string("\0\0\0\0", 4),
                          std::string("agent-0123456789ABCDEF0123456789abcdef\n")}) {
    WriteFile(state + "/identity", bad);
    auto s = AgentState::Open({.dir = state});
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.status().code(), absl::StatusCode::kDataLoss) << s.status();
    EXPECT_NE(s.status().message().find(state + "/identity"), std::string::npos) << s.status();
    EXPECT_EQ(testing::ReadFile(state + "/identity"), bad);
  }
  // With an explicit identity the file is not used, so it does not matter.
  EXPECT_NE(MustOpen(state, 4096, /*identity=*/false), nullptr);
}

TEST(AgentStateTest, UnusableDirectoryIsAClearError) {
  testing::TempDir dir;
  WriteFile(dir.Sub("file"), "x");
  auto s = AgentState::Open({.dir = dir.Sub("file/state")});  // a parent is a file
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition) << s.status();
  EXPECT_NE(s.status().message().find(dir.Sub("file/state")), std::string::npos) << s.status();
}

TEST(AgentStateTest, TwoProcessesCannotShareAStateDirectory) {
  testing::TempDir dir;
  auto first = MustOpen(dir.Sub("st"));
  ASSERT_NE(first, nullptr);
  auto second = AgentState::Open({.dir = dir.Sub("st")});
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("in use by another sheaf-agent"), std::string::npos) << second.status();
  first.reset();
  EXPECT_NE(MustOpen(dir.Sub("st")), nullptr);  // released with the first
}

}  // namespace
}  // namespace sheaf::agent
