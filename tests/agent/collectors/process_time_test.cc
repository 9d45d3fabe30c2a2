// Unit tests of the process collector (the agent's own figures, from a fake
// <proc>/self and from this test process) and the time collector.
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <limits>
#include <string>
#include <vector>

#include "agent/collectors/collectors.h"
#include "tests/agent/collectors/test_util.h"

namespace sheaf::agent {
namespace {

using namespace collectors_test;  // NOLINT: test helpers
constexpr MetricKind kGauge = MetricKind::kGauge;

TEST(ParseProcessStatTest, CountsFieldsFromTheLastParenthesis) {
  ProcessStat stat;
  ASSERT_TRUE(ParseProcessStat(kSelfStat, &stat));
  EXPECT_EQ(stat.utime_ticks, 250u);
  EXPECT_EQ(stat.stime_ticks, 130u);
  EXPECT_EQ(stat.start_ticks, 123456u);
  EXPECT_EQ(stat.virtual_bytes, 104857600u);
  EXPECT_EQ(stat.resident_pages, 2560u);
  EXPECT_FALSE(ParseProcessStat("4242 (x) S 1 2 3\n", &stat));
  EXPECT_FALSE(ParseProcessStat(kSelfStat.substr(0, kSelfStat.size() - 1), &stat));  // Truncated.
  EXPECT_FALSE(ParseProcessStat("", &stat));
}

TEST(ParseLimitsTest, SoftLimitsAndUnlimited) {
  double files = 0;
  double address = 0;
  ASSERT_TRUE(ParseLimits(kSelfLimits, &files, &address));
  EXPECT_EQ(files, 20000);  // The soft limit, not the hard one.
  EXPECT_EQ(address, static_cast<double>(std::numeric_limits<uint64_t>::max()));
  EXPECT_FALSE(
      ParseLimits("Max open files            20000                524288               files\n", &files, &address));
}

class ProcessCollectorTest : public FakeTree {};

TEST_F(ProcessCollectorTest, FakeSelf) {
  WriteFakeProc();
  auto collector = NewProcessCollector(paths_, 100.0, 4096.0);
  EXPECT_EQ(collector->name(), "process");
  Errors errors;
  bool ok = false;
  const Metrics metrics = Run(*collector, &errors, &ok);
  EXPECT_TRUE(ok);
  EXPECT_TRUE(errors.empty()) << ::testing::PrintToString(errors);
  EXPECT_TRUE(HasMetric(metrics, "process_cpu_seconds_total", {}, MetricKind::kCounter, 3.8));
  EXPECT_TRUE(HasMetric(metrics, "process_virtual_memory_bytes", {}, kGauge, 104857600));
  EXPECT_TRUE(HasMetric(metrics, "process_resident_memory_bytes", {}, kGauge, 2560.0 * 4096));
  EXPECT_TRUE(HasMetric(metrics, "process_start_time_seconds", {}, kGauge, 1795488538 + 1234.56));
  EXPECT_TRUE(HasMetric(metrics, "process_open_fds", {}, kGauge, 3));
  EXPECT_TRUE(HasMetric(metrics, "process_max_fds", {}, kGauge, 20000));
  EXPECT_TRUE(HasMetric(metrics, "process_virtual_memory_max_bytes", {}, kGauge,
                        static_cast<double>(std::numeric_limits<uint64_t>::max())));
  EXPECT_EQ(metrics.size(), 7u);
  ExpectWellFormed(metrics);
}

TEST_F(ProcessCollectorTest, MissingExtrasAreErrorsButTheCoreStays) {
  WriteFakeProc();
  Remove("proc/self/limits");
  Remove("proc/self/fd");
  Write("proc/stat", "cpu 1 2 3 4 5 6 7 8\n");  // No btime.
  auto collector = NewProcessCollector(paths_, 100.0, 4096.0);
  Errors errors;
  bool ok = false;
  const Metrics metrics = Run(*collector, &errors, &ok);
  EXPECT_TRUE(ok);
  EXPECT_EQ(errors.size(), 3u) << ::testing::PrintToString(errors);
  EXPECT_TRUE(AnyErrorContains(errors, paths_.proc + "/stat: no btime line"));
  EXPECT_TRUE(AnyErrorContains(errors, paths_.proc + "/self/fd: cannot open"));
  EXPECT_TRUE(AnyErrorContains(errors, paths_.proc + "/self/limits: cannot open"));
  EXPECT_NE(Find(metrics, "process_cpu_seconds_total"), nullptr);
  EXPECT_NE(Find(metrics, "process_resident_memory_bytes"), nullptr);
  EXPECT_EQ(metrics.size(), 3u);

  // Without its own stat file the collector has nothing.
  Remove("proc/self/stat");
  errors.clear();
  EXPECT_TRUE(Run(*collector, &errors, &ok).empty());
  EXPECT_FALSE(ok);
}

TEST(ProcessCollectorRealTest, ThisProcess) {
  auto collector = NewProcessCollector(HostPaths{}, static_cast<double>(::sysconf(_SC_CLK_TCK)),
                                       static_cast<double>(::sysconf(_SC_PAGESIZE)));
  SourceReader reader;
  Metrics metrics;
  Errors errors;
  ASSERT_TRUE(collector->Collect(reader, &metrics, &errors));
  EXPECT_TRUE(errors.empty()) << ::testing::PrintToString(errors);
  ASSERT_EQ(metrics.size(), 7u) << ::testing::PrintToString(metrics);

  struct rlimit files {};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &files), 0);
  EXPECT_TRUE(HasMetric(metrics, "process_max_fds", {}, kGauge, static_cast<double>(files.rlim_cur)));
  const HostMetric* rss = Find(metrics, "process_resident_memory_bytes");
  ASSERT_NE(rss, nullptr);
  EXPECT_GT(rss->value, 1 << 20);
  EXPECT_LT(rss->value, 1 << 30);
  const HostMetric* fds = Find(metrics, "process_open_fds");
  ASSERT_NE(fds, nullptr);
  EXPECT_GE(fds->value, 3);  // stdin, stdout, stderr
  // Started in the last hour, and not in the future.
  const HostMetric* start = Find(metrics, "process_start_time_seconds");
  ASSERT_NE(start, nullptr);
  const double now = static_cast<double>(::time(nullptr));
  EXPECT_LE(start->value, now + 1);
  EXPECT_GT(start->value, now - 3600);
}

TEST(TimeCollectorTest, NowAndZone) {
  auto collector = NewTimeCollector();
  EXPECT_EQ(collector->name(), "time");
  SourceReader reader;
  Metrics metrics;
  Errors errors;
  struct timespec before {};
  ::clock_gettime(CLOCK_REALTIME, &before);
  ASSERT_TRUE(collector->Collect(reader, &metrics, &errors));
  struct timespec after {};
  ::clock_gettime(CLOCK_REALTIME, &after);
  EXPECT_TRUE(errors.empty());
  ASSERT_EQ(metrics.size(), 2u);
  const HostMetric* now = Find(metrics, "node_time_seconds");
  ASSERT_NE(now, nullptr);
  EXPECT_GE(now->value, static_cast<double>(before.tv_sec) + before.tv_nsec * 1e-9);
  EXPECT_LE(now->value, static_cast<double>(after.tv_sec) + after.tv_nsec * 1e-9);
  // The zone and offset of the local time, as localtime_r gives them.
  struct tm local {};
  ASSERT_NE(::localtime_r(&before.tv_sec, &local), nullptr);
  EXPECT_TRUE(HasMetric(metrics, "node_time_zone_offset_seconds", {{"time_zone", local.tm_zone}}, kGauge,
                        static_cast<double>(local.tm_gmtoff)));
}

}  // namespace
}  // namespace sheaf::agent
