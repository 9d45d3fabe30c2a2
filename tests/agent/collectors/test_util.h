// Helpers for the host collector tests: a fake /proc tree in a temporary
// directory, and assertions on collected metrics that print them readably.
#ifndef SHEAF_TESTS_AGENT_COLLECTORS_TEST_UTIL_H_
#define SHEAF_TESTS_AGENT_COLLECTORS_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/collectors/collector.h"
#include "agent/collectors/metric.h"

namespace sheaf::agent {

// Lets gtest print metrics readably in failure messages (found through ADL).
inline void PrintTo(const HostMetric& m, std::ostream* os) {
  *os << m.name << "{";
  for (size_t i = 0; i < m.labels.size(); ++i) {
    *os << (i ? "," : "") << m.labels[i].first << "=\"" << m.labels[i].second << "\"";
  }
  *os << "} " << (m.kind == MetricKind::kCounter ? "counter " : "gauge ") << m.value;
}

namespace collectors_test {

// ---------------------------------------------------------------------------
// Fake /proc contents, copied in shape from a real Debian 12 / Linux 6.x host.
// ---------------------------------------------------------------------------

// cpu0 has guest time (30 ticks) to show that user time is exported as is.
inline constexpr std::string_view kStat =
    "cpu  1287 3 1171 46204 190 5 22 6 30 0\n"
    "cpu0 424 0 436 23568 3 0 4 1 30 0\n"
    "cpu1 863 3 735 22636 187 5 18 5 0 0\n"
    "intr 111683 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1 1 15 0 0 0 "
    "48 30 0 16 1 35176 0 772 487 0 730 1906 1 0 0 0\n"
    "ctxt 257828\n"
    "btime 1795488538\n"
    "processes 3522\n"
    "procs_running 2\n"
    "procs_blocked 1\n"
    "softirq 96452 0 21384 1 1208 0 0 3 36129 0 37727\n";

inline constexpr std::string_view kMeminfo =
    "MemTotal:       24684092 kB\n"
    "MemFree:        24400860 kB\n"
    "MemAvailable:   24368568 kB\n"
    "Buffers:            2680 kB\n"
    "Cached:           131732 kB\n"
    "SwapCached:            0 kB\n"
    "Active:            73552 kB\n"
    "Inactive:          57396 kB\n"
    "Active(anon):       1520 kB\n"
    "Inactive(anon):     3876 kB\n"
    "Active(file):      72032 kB\n"
    "Inactive(file):    53520 kB\n"
    "Unevictable:       11992 kB\n"
    "Mlocked:           11084 kB\n"
    "SwapTotal:       2097148 kB\n"
    "SwapFree:        2097000 kB\n"
    "Dirty:               224 kB\n"
    "Writeback:             0 kB\n"
    "AnonPages:          8660 kB\n"
    "Committed_AS:      52440 kB\n"
    "VmallocTotal:   34359738367 kB\n"
    "HugePages_Total:       4\n"
    "HugePages_Free:        0\n"
    "Hugepagesize:       2048 kB\n"
    "DirectMap2M:     2070528 kB\n";

// Fields node_exporter exports by default, and some it does not.
inline constexpr std::string_view kVmstat =
    "nr_free_pages 6100215\n"
    "pgpgin 10945001\n"
    "pgpgout 114418324\n"
    "pswpin 7\n"
    "pswpout 11\n"
    "pgalloc_normal 914312312\n"
    "pgfault 652243844\n"
    "pgmajfault 15698\n"
    "pgscan_kswapd 0\n"
    "oom_kill 2\n"
    "thp_fault_alloc 4\n";

inline constexpr std::string_view kLoadavg = "0.01 0.03 1.50 1/84 3525\n";

inline constexpr std::string_view kPressureCpu =
    "some avg10=0.34 avg60=0.45 avg300=1.22 total=4738654914\n"
    "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
inline constexpr std::string_view kPressureIo =
    "some avg10=0.00 avg60=0.03 avg300=0.24 total=132064168\n"
    "full avg10=0.00 avg60=0.03 avg300=0.21 total=46155997\n";
inline constexpr std::string_view kPressureMemory =
    "some avg10=0.00 avg60=0.00 avg300=0.00 total=1500000\n"
    "full avg10=0.00 avg60=0.00 avg300=0.00 total=250\n";

// Whole disks: vda (17 fields, kernel >= 5.5), sda (old 11-stat format),
// nvme0n1 (15 fields: discards, no flushes), dm-0, sr0. Everything else is a
// partition, ram, loop or fd device.
inline constexpr std::string_view kDiskstats =
    "   7       0 loop0 57 0 2100 12 0 0 0 0 0 20 12 0 0 0 0 0 0\n"
    "   1       0 ram0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
    "   2       0 fd0 1 0 8 100 0 0 0 0 0 100 100\n"
    " 254       0 vda 29538 6494 2282994 5735 8204 6233 1172072 1805 2 3068 "
    "7771 4297 23 109960 195 1121 35\n"
    " 254       1 vda1 29000 6400 2280000 5700 8200 6200 1172000 1800 0 3000 "
    "7700 4297 23 109960 195 0 0\n"
    "   8       0 sda 100 1 800 250 40 2 640 1500 0 1750 1750\n"
    "   8       1 sda1 90 1 720 240 40 2 640 1500 0 1700 1700\n"
    "   8      16 xvda1 90 1 720 240 40 2 640 1500 0 1700 1700\n"
    " 259       0 nvme0n1 5000 10 400000 3000 7000 20 900000 12000 1 9000 "
    "15000 0 0 0 0\n"
    " 259       1 nvme0n1p1 4900 10 390000 2900 6900 20 890000 11900 0 8900 "
    "14800 0 0 0 0 0 0\n"
    " 253       0 dm-0 1 0 8 0 2 0 16 4 0 4 4 0 0 0 0 0 0\n"
    "  11       0 sr0 3 0 24 1 0 0 0 0 0 1 1 0 0 0 0 0 0\n";

// eth1 shows the kernel's format once a byte count fills its column: no
// space after the colon.
inline constexpr std::string_view kNetDev =
    "Inter-|   Receive                                                |  "
    "Transmit\n"
    " face |bytes    packets errs drop fifo frame compressed multicast|bytes  "
    "  packets errs drop fifo colls carrier compressed\n"
    "    lo:    3267      29    0    0    0     0          0         0     "
    "3267      29    0    0    0     0       0          0\n"
    "  eth0: 43711425     962    1    2    3     4          5         6    "
    "45066     550    7    8    9    10      11         12\n"
    "  eth1:12345678901 9876543 5 6 0 0 0 12 1098765432 123456 7 8 0 0 0 0\n";

inline constexpr std::string_view kFileNr = "561\t0\t2466183\n";

// The command name has a space and ") (" in it: fields count from the last
// ')'. utime 250, stime 130, starttime 123456, vsize 104857600, rss 2560.
inline constexpr std::string_view kSelfStat =
    "4242 (sheaf) (agent) S 1 4242 4242 0 -1 4194560 1500 0 0 0 250 130 0 0 20 0 5 0 123456 104857600 2560 "
    "18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";

inline constexpr std::string_view kSelfLimits =
    "Limit                     Soft Limit           Hard Limit           Units     \n"
    "Max cpu time              unlimited            unlimited            seconds   \n"
    "Max open files            20000                524288               files     \n"
    "Max address space         unlimited            unlimited            bytes     \n";

using Labels = std::vector<std::pair<std::string, std::string>>;
using Metrics = std::vector<HostMetric>;
using Errors = std::vector<std::string>;

inline const HostMetric* Find(const Metrics& metrics, std::string_view name, const Labels& labels = {}) {
  for (const HostMetric& m : metrics) {
    if (m.name == name && m.labels == labels) return &m;
  }
  return nullptr;
}

inline size_t Count(const Metrics& metrics, std::string_view name) {
  return std::count_if(metrics.begin(), metrics.end(), [&](const HostMetric& m) { return m.name == name; });
}

// Metrics whose name starts with `prefix`.
inline size_t CountPrefix(const Metrics& metrics, std::string_view prefix) {
  return std::count_if(metrics.begin(), metrics.end(), [&](const HostMetric& m) { return m.name.starts_with(prefix); });
}

inline bool Near(double a, double b) { return std::fabs(a - b) <= 1e-12 * std::max(1.0, std::fabs(b)); }

// Asserts that exactly this series exists with this kind and value.
inline ::testing::AssertionResult HasMetric(const Metrics& metrics, std::string_view name, const Labels& labels,
                                            MetricKind kind, double value) {
  const HostMetric* m = Find(metrics, name, labels);
  if (m == nullptr) {
    return ::testing::AssertionFailure() << "no " << name << " with the given labels among "
                                         << ::testing::PrintToString(metrics);
  }
  if (m->kind != kind) return ::testing::AssertionFailure() << "wrong kind: " << ::testing::PrintToString(*m);
  if (!Near(m->value, value)) {
    return ::testing::AssertionFailure() << "wrong value: " << ::testing::PrintToString(*m) << ", want " << value;
  }
  return ::testing::AssertionSuccess();
}

inline bool AnyErrorContains(const Errors& errors, std::string_view needle) {
  return std::any_of(errors.begin(), errors.end(),
                     [&](const std::string& e) { return e.find(needle) != std::string::npos; });
}

// Every metric a collector may emit must have a Prometheus-valid name,
// sorted labels, a finite value, and a counter must not be negative.
inline void ExpectWellFormed(const Metrics& metrics) {
  for (const HostMetric& m : metrics) {
    EXPECT_FALSE(m.name.empty());
    EXPECT_TRUE(std::all_of(m.name.begin(), m.name.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    })) << m.name;
    EXPECT_TRUE(std::is_sorted(m.labels.begin(), m.labels.end(), [](const auto& a, const auto& b) {
      return a.first < b.first;
    })) << ::testing::PrintToString(m);
    EXPECT_TRUE(std::isfinite(m.value)) << ::testing::PrintToString(m);
    if (m.kind == MetricKind::kCounter) {
      EXPECT_GE(m.value, 0) << ::testing::PrintToString(m);
    }
  }
}

// A temporary directory standing in for / : paths() points proc at
// <root>/proc and the mounts file at <root>/mounts.
class FakeTree : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "sheaf_collectors_test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    root_ = pattern;
    paths_.proc = root_ + "/proc";
    paths_.mounts = root_ + "/mounts";
  }

  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }

  // Writes `content` to root_/relative, creating parent directories.
  void Write(const std::string& relative, std::string_view content) {
    const std::filesystem::path path = std::filesystem::path(root_) / relative;
    std::filesystem::create_directories(path.parent_path());
    std::ofstream out(path, std::ios::binary);
    out << content;
    ASSERT_TRUE(out.good()) << path;
  }

  // Every /proc file the collectors read, with the contents above, and
  // three open descriptors in proc/self/fd.
  void WriteFakeProc() {
    Write("proc/stat", kStat);
    Write("proc/meminfo", kMeminfo);
    Write("proc/vmstat", kVmstat);
    Write("proc/loadavg", kLoadavg);
    Write("proc/pressure/cpu", kPressureCpu);
    Write("proc/pressure/io", kPressureIo);
    Write("proc/pressure/memory", kPressureMemory);
    Write("proc/diskstats", kDiskstats);
    Write("proc/net/dev", kNetDev);
    Write("proc/sys/fs/file-nr", kFileNr);
    Write("proc/self/stat", kSelfStat);
    Write("proc/self/limits", kSelfLimits);
    for (const char* fd : {"0", "1", "2"}) Write(std::string("proc/self/fd/") + fd, "");
    Write("mounts", "");
  }

  void Remove(const std::string& relative) { std::filesystem::remove_all(std::filesystem::path(root_) / relative); }

  // Runs one collector once; *ok is its success.
  Metrics Run(Collector& collector, Errors* errors, bool* ok = nullptr) {
    Metrics out;
    const bool success = collector.Collect(reader_, &out, errors);
    if (ok != nullptr) *ok = success;
    reader_.NewRound();
    return out;
  }

  std::string root_;
  HostPaths paths_;
  SourceReader reader_;
};

}  // namespace collectors_test
}  // namespace sheaf::agent

#endif  // SHEAF_TESTS_AGENT_COLLECTORS_TEST_UTIL_H_
