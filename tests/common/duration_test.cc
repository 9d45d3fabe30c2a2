#include "common/duration.h"

#include <gtest/gtest.h>

namespace sheaf {
namespace {

using std::chrono::milliseconds;

TEST(DurationTest, ParsesPrometheusStyle) {
  EXPECT_EQ(*ParseDuration("500ms"), milliseconds(500));
  EXPECT_EQ(*ParseDuration("10s"), milliseconds(10'000));
  EXPECT_EQ(*ParseDuration("15m"), milliseconds(900'000));
  EXPECT_EQ(*ParseDuration("1h30m"), milliseconds(5'400'000));
  EXPECT_EQ(*ParseDuration("7d"), milliseconds(604'800'000));
  EXPECT_EQ(*ParseDuration("2w"), milliseconds(1'209'600'000));
  EXPECT_EQ(*ParseDuration("0"), milliseconds(0));
}

TEST(DurationTest, RejectsGarbageWithTheText) {
  for (const char* bad : {"", "10", "s", "1x", "-5s", "1.5h", "99999999999999999999s"}) {
    auto d = ParseDuration(bad);
    ASSERT_FALSE(d.ok()) << bad;
    EXPECT_NE(d.status().message().find("not a duration"), std::string::npos);
  }
}

TEST(DurationTest, FormatReadsBack) {
  for (int64_t ms : {1LL, 999LL, 1000LL, 61'000LL, 5'400'000LL, 90'061'001LL}) {
    EXPECT_EQ(*ParseDuration(FormatDuration(milliseconds(ms))), milliseconds(ms)) << FormatDuration(milliseconds(ms));
  }
  EXPECT_EQ(FormatDuration(milliseconds(5'400'000)), "1h30m");
}

}  // namespace
}  // namespace sheaf
