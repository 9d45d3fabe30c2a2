// Address sources: a fixed list, DNS resolved again and again (real
// getaddrinfo for localhost, a scripted resolver for changes and failures),
// and a watched YAML file (changes without restart, bad edits kept out).
#include "agent/discovery/address_source.h"

#include <gtest/gtest.h>

#include <fstream>

#include "absl/status/status.h"
#include "tests/support/temp_dir.h"

namespace sheaf::agent::discovery {
namespace {

using std::chrono::milliseconds;
using Strings = std::vector<std::string>;

std::unique_ptr<AddressSource> Open(const std::string& text, const SourceOptions& options = {}) {
  auto target = ParseTarget(text);
  EXPECT_TRUE(target.ok()) << target.status();
  if (!target.ok()) return nullptr;
  auto source = OpenAddressSource(*target, options);
  EXPECT_TRUE(source.ok()) << source.status();
  return source.ok() ? *std::move(source) : nullptr;
}

void Write(const std::string& path, const std::string& text) {
  // Written beside and renamed over, as config management tools do.
  std::ofstream(path + ".tmp") << text;
  std::rename((path + ".tmp").c_str(), path.c_str());
}

TEST(AddressSourceTest, StaticListSortedOnce) {
  auto s = Open("b:2,[::1]:7470,a:1,b:2");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->Addresses(), (Strings{"[::1]:7470", "a:1", "b:2"}));
  EXPECT_EQ(s->version(), 1u);
}

TEST(AddressSourceTest, DnsResolvesLocalhost) {
  auto s = Open("dns:///localhost:7470");
  ASSERT_NE(s, nullptr);
  ASSERT_TRUE(s->WaitForVersion(1, milliseconds(5000)));
  Strings got = s->Addresses();
  EXPECT_NE(std::find(got.begin(), got.end(), "127.0.0.1:7470"), got.end()) << ::testing::PrintToString(got);
}

TEST(AddressSourceTest, DnsFollowsChangesAndKeepsTheListOnFailure) {
  absl::Mutex mu;
  absl::StatusOr<Strings> answer = Strings{"10.0.0.1:7470", "10.0.0.2:7470"};
  int calls = 0;
  SourceOptions options;
  options.dns_refresh = milliseconds(20);
  options.resolve = [&](const std::string& host, int port) -> absl::StatusOr<Strings> {
    EXPECT_EQ(host, "sheafd.example");
    EXPECT_EQ(port, 7470);
    absl::MutexLock lock(&mu);
    ++calls;
    return answer;
  };
  auto s = Open("dns:///sheafd.example:7470", options);
  ASSERT_NE(s, nullptr);
  ASSERT_TRUE(s->WaitForVersion(1, milliseconds(5000)));
  EXPECT_EQ(s->Addresses(), (Strings{"10.0.0.1:7470", "10.0.0.2:7470"}));

  // A daemon is added to the headless service.
  {
    absl::MutexLock lock(&mu);
    answer = Strings{"10.0.0.3:7470", "10.0.0.1:7470", "10.0.0.2:7470"};
  }
  ASSERT_TRUE(s->WaitForVersion(2, milliseconds(5000)));
  EXPECT_EQ(s->Addresses().size(), 3u);

  // DNS fails, then answers nothing: the list stays, errors are counted.
  {
    absl::MutexLock lock(&mu);
    answer = absl::UnavailableError("resolving sheafd.example: Temporary failure in name resolution");
  }
  auto wait_errors = [&](uint64_t n) {
    for (int i = 0; i < 250 && s->stats().errors < n; ++i) std::this_thread::sleep_for(milliseconds(20));
    return s->stats().errors >= n;
  };
  ASSERT_TRUE(wait_errors(3));
  {
    absl::MutexLock lock(&mu);
    answer = Strings{};
  }
  ASSERT_TRUE(wait_errors(s->stats().errors + 3));
  EXPECT_EQ(s->Addresses().size(), 3u);
  EXPECT_EQ(s->version(), 2u);
  EXPECT_NE(s->stats().last_error.find("no address"), std::string::npos) << s->stats().last_error;
}

TEST(AddressSourceTest, FileIsWatched) {
  testing::TempDir dir;
  std::string path = dir.Sub("daemons.yaml");
  Write(path, "- 10.0.0.1:7470\n- 10.0.0.2:7470\n");
  SourceOptions options;
  options.file_poll = milliseconds(50);
  auto s = Open("file://" + path, options);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->Addresses(), (Strings{"10.0.0.1:7470", "10.0.0.2:7470"}));

  // The map form, one more daemon: taken without restart.
  Write(path, "daemons:\n  - 10.0.0.1:7470\n  - 10.0.0.2:7470\n  - \"[fd00::3]:7470\"\n");
  ASSERT_TRUE(s->WaitForVersion(2, milliseconds(5000)));
  EXPECT_EQ(s->Addresses(), (Strings{"10.0.0.1:7470", "10.0.0.2:7470", "[fd00::3]:7470"}));

  // Broken edits: each logged and counted, the list kept.
  uint64_t errors = 0;
  for (const char* bad : {"daemons: [10.0.0.1:7470, nope]\n", "- [unclosed\n", "[]\n", "hosts: [a:1]\n"}) {
    Write(path, bad);
    for (int i = 0; i < 250 && s->stats().errors == errors; ++i) std::this_thread::sleep_for(milliseconds(20));
    ASSERT_GT(s->stats().errors, errors) << bad;
    errors = s->stats().errors;
    EXPECT_NE(s->stats().last_error.find(path), std::string::npos) << s->stats().last_error;
    EXPECT_EQ(s->Addresses().size(), 3u) << bad;
  }
  // Removed: kept too.
  std::remove(path.c_str());
  for (int i = 0; i < 250 && s->stats().errors == errors; ++i) std::this_thread::sleep_for(milliseconds(20));
  EXPECT_NE(s->stats().last_error.find("gone"), std::string::npos) << s->stats().last_error;
  EXPECT_EQ(s->version(), 2u);

  // Fixed: taken again.
  Write(path, "- 10.0.0.9:7470\n");
  ASSERT_TRUE(s->WaitForVersion(3, milliseconds(5000)));
  EXPECT_EQ(s->Addresses(), (Strings{"10.0.0.9:7470"}));
  EXPECT_EQ(s->stats().last_error, "");
}

TEST(AddressSourceTest, EditInPlaceIsSeen) {
  testing::TempDir dir;
  std::string path = dir.Sub("daemons.yaml");
  std::ofstream(path) << "- 10.0.0.1:7470\n";
  SourceOptions options;
  options.file_poll = milliseconds(50);
  auto s = Open("file://" + path, options);
  ASSERT_NE(s, nullptr);
  std::ofstream(path, std::ios::app) << "- 10.0.0.2:7470\n";
  ASSERT_TRUE(s->WaitForVersion(2, milliseconds(5000)));
  EXPECT_EQ(s->Addresses().size(), 2u);
}

TEST(AddressSourceTest, BadFileAtStartIsAnErrorNamingIt) {
  testing::TempDir dir;
  std::string path = dir.Sub("daemons.yaml");
  Write(path, "- 10.0.0.1\n");
  auto target = ParseTarget("file://" + path);
  ASSERT_TRUE(target.ok());
  auto s = OpenAddressSource(*target);
  ASSERT_FALSE(s.ok());
  std::string message(s.status().message());
  EXPECT_NE(message.find(path), std::string::npos) << message;
  EXPECT_NE(message.find("line 1"), std::string::npos) << message;
  EXPECT_NE(message.find("no port"), std::string::npos) << message;

  auto missing = ParseTarget("file://" + dir.Sub("missing.yaml"));
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(OpenAddressSource(*missing).ok());
}

}  // namespace
}  // namespace sheaf::agent::discovery
