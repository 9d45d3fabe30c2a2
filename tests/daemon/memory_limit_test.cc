// daemon/memory_limit.h on an injected resident-set reader: OK below 7/8 of
// the limit, RESOURCE_EXHAUSTED naming the flag from there on, back to OK
// once the resident set falls, readings throttled, and the limits sheafd
// refuses at start. (The whole path, with real memory under a flood of new
// series: tests/e2e/overload_test.py.)
#include "daemon/memory_limit.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

namespace sheaf::daemon {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kMiB = 1ull << 20;

// Past the reader's throttle (50 ms), so the next Check reads again.
void PastThrottle() { std::this_thread::sleep_for(std::chrono::milliseconds(60)); }

TEST(MemoryLimitTest, RefusesFromSevenEighthsOfTheLimitUntilBelowAgain) {
  std::atomic<uint64_t> rss = 100 * kMiB;
  std::atomic<int> reads = 0;
  MemoryLimit limit(128 * kMiB, [&] {
    ++reads;
    return rss.load();
  });
  EXPECT_EQ(limit.shed_bytes(), 112 * kMiB);
  EXPECT_TRUE(limit.Check().ok());

  rss = 112 * kMiB;  // exactly the shedding level
  PastThrottle();
  absl::Status s = limit.Check();
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(s.message()), HasSubstr("sheafd is over --memory-limit=134217728 bytes"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("resident memory is 117440512 bytes"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("retry with backoff"));
  EXPECT_EQ(limit.refusals(), 1u);

  rss = 64 * kMiB;
  PastThrottle();
  EXPECT_TRUE(limit.Check().ok());
  EXPECT_EQ(limit.last_rss_bytes(), 64 * kMiB);
  EXPECT_EQ(limit.refusals(), 1u);
}

TEST(MemoryLimitTest, ReadsTheResidentSetAtMostEveryFiftyMilliseconds) {
  std::atomic<int> reads = 0;
  MemoryLimit limit(1024 * kMiB, [&] {
    ++reads;
    return 10 * kMiB;
  });
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(limit.Check().ok());
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
  // One read per 50 ms the loop took (however slow the machine), not 1000.
  EXPECT_LE(reads.load(), 2 + ms / 50) << ms << " ms";
  PastThrottle();
  ASSERT_TRUE(limit.Check().ok());
  EXPECT_GE(reads.load(), 2);
}

TEST(MemoryLimitTest, NoLimitNeverReadsOrRefuses) {
  std::atomic<int> reads = 0;
  MemoryLimit limit(0, [&] {
    ++reads;
    return ~uint64_t{0};
  });
  EXPECT_TRUE(limit.Check().ok());
  EXPECT_EQ(reads.load(), 0);
}

TEST(MemoryLimitTest, TheRealResidentSetIsRead) {
  const uint64_t rss = MemoryLimit::ReadRss();
  EXPECT_GT(rss, 1 * kMiB);
  EXPECT_LT(rss, 64ull * 1024 * kMiB);
}

TEST(MemoryLimitTest, LimitsBelowTheFixedBudgetsAreRefused) {
  EXPECT_TRUE(MemoryLimit::Validate(0, 64 * kMiB, 64 * kMiB).ok());
  EXPECT_TRUE(MemoryLimit::Validate(192 * kMiB, 64 * kMiB, 64 * kMiB).ok());
  absl::Status s = MemoryLimit::Validate(191 * kMiB, 64 * kMiB, 64 * kMiB);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("--memory-limit=200278016"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("--write-buffer-bytes"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("--block-cache-bytes"));
}

}  // namespace
}  // namespace sheaf::daemon
