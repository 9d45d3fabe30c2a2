// Unit tests of the collectors that read /proc text files (cpu, stat,
// meminfo, vmstat, loadavg, pressure, diskstats, netdev, filefd), on a fake
// /proc tree and on their parsers directly.
#include <unistd.h>

#include <memory>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "agent/collectors/collectors.h"
#include "tests/agent/collectors/test_util.h"

namespace sheaf::agent {
namespace {

using namespace collectors_test;  // NOLINT: test helpers
constexpr MetricKind kCounter = MetricKind::kCounter;
constexpr MetricKind kGauge = MetricKind::kGauge;

class ProcCollectorsTest : public FakeTree {
 protected:
  void SetUp() override {
    FakeTree::SetUp();
    WriteFakeProc();
  }
  // Runs `collector`, expecting success and no error line.
  Metrics RunClean(Collector& collector) {
    Errors errors;
    bool ok = false;
    Metrics metrics = Run(collector, &errors, &ok);
    EXPECT_TRUE(ok) << collector.name();
    EXPECT_TRUE(errors.empty()) << ::testing::PrintToString(errors);
    ExpectWellFormed(metrics);
    return metrics;
  }
};

// ---------------------------------------------------------------------------
// cpu
// ---------------------------------------------------------------------------

TEST_F(ProcCollectorsTest, CpuPerCpuConvertsTicksToSeconds) {
  auto collector = NewCpuCollector(paths_, 100.0, /*per_cpu=*/true);
  EXPECT_EQ(collector->name(), "cpu");
  const Metrics metrics = RunClean(*collector);
  const auto cpu = [&](const char* n, const char* mode, double seconds) {
    return HasMetric(metrics, "node_cpu_seconds_total", {{"cpu", n}, {"mode", mode}}, kCounter, seconds);
  };
  EXPECT_TRUE(cpu("0", "user", 4.24));  // Guest time is not subtracted.
  EXPECT_TRUE(cpu("0", "nice", 0));
  EXPECT_TRUE(cpu("0", "system", 4.36));
  EXPECT_TRUE(cpu("0", "idle", 235.68));
  EXPECT_TRUE(cpu("0", "iowait", 0.03));
  EXPECT_TRUE(cpu("0", "irq", 0));
  EXPECT_TRUE(cpu("0", "softirq", 0.04));
  EXPECT_TRUE(cpu("0", "steal", 0.01));
  EXPECT_TRUE(cpu("1", "user", 8.63));
  EXPECT_TRUE(cpu("1", "nice", 0.03));
  EXPECT_TRUE(cpu("1", "system", 7.35));
  EXPECT_TRUE(cpu("1", "steal", 0.05));
  EXPECT_TRUE(HasMetric(metrics, "node_cpu_guest_seconds_total", {{"cpu", "0"}, {"mode", "user"}}, kCounter, 0.3));
  EXPECT_TRUE(HasMetric(metrics, "node_cpu_guest_seconds_total", {{"cpu", "1"}, {"mode", "nice"}}, kCounter, 0));
  // 2 cpus x 8 modes + 2 x 2 guest modes; nothing from the "cpu" line or the
  // other lines of /proc/stat.
  EXPECT_EQ(Count(metrics, "node_cpu_seconds_total"), 16u);
  EXPECT_EQ(Count(metrics, "node_cpu_guest_seconds_total"), 4u);
  EXPECT_EQ(metrics.size(), 20u);
}

TEST_F(ProcCollectorsTest, CpuAggregatedHasNoCpuLabel) {
  auto collector = NewCpuCollector(paths_, 100.0, /*per_cpu=*/false);
  const Metrics metrics = RunClean(*collector);
  EXPECT_TRUE(HasMetric(metrics, "node_cpu_seconds_total", {{"mode", "user"}}, kCounter, 12.87));
  EXPECT_TRUE(HasMetric(metrics, "node_cpu_seconds_total", {{"mode", "idle"}}, kCounter, 462.04));
  EXPECT_TRUE(HasMetric(metrics, "node_cpu_seconds_total", {{"mode", "steal"}}, kCounter, 0.06));
  EXPECT_TRUE(HasMetric(metrics, "node_cpu_guest_seconds_total", {{"mode", "user"}}, kCounter, 0.3));
  EXPECT_EQ(Count(metrics, "node_cpu_seconds_total"), 8u);
  EXPECT_EQ(metrics.size(), 10u);
}

TEST(ParseCpuStatTest, OldKernelWithoutGuestColumns) {
  Metrics out;
  Errors errors;
  EXPECT_TRUE(ParseCpuStat("cpu 1 2 3 4 5 6 7 8\ncpu0 1 2 3 4 5 6 7 8\n", "stat", 100, true, &out, &errors));
  EXPECT_TRUE(errors.empty()) << ::testing::PrintToString(errors);
  EXPECT_EQ(Count(out, "node_cpu_seconds_total"), 8u);
  EXPECT_EQ(Count(out, "node_cpu_guest_seconds_total"), 0u);
}

// ---------------------------------------------------------------------------
// stat
// ---------------------------------------------------------------------------

TEST_F(ProcCollectorsTest, StatExportsKernelCounters) {
  auto collector = NewStatCollector(paths_);
  EXPECT_EQ(collector->name(), "stat");
  const Metrics metrics = RunClean(*collector);
  EXPECT_TRUE(HasMetric(metrics, "node_context_switches_total", {}, kCounter, 257828));
  EXPECT_TRUE(HasMetric(metrics, "node_intr_total", {}, kCounter, 111683));
  EXPECT_TRUE(HasMetric(metrics, "node_forks_total", {}, kCounter, 3522));
  EXPECT_TRUE(HasMetric(metrics, "node_procs_running", {}, kGauge, 2));
  EXPECT_TRUE(HasMetric(metrics, "node_procs_blocked", {}, kGauge, 1));
  EXPECT_TRUE(HasMetric(metrics, "node_boot_time_seconds", {}, kGauge, 1795488538));
  EXPECT_EQ(metrics.size(), 6u);

  double boot = 0;
  EXPECT_TRUE(ParseBootTime(kStat, &boot));
  EXPECT_EQ(boot, 1795488538);
  EXPECT_FALSE(ParseBootTime("cpu 1\nbtime 17954", &boot));  // Truncated.
  EXPECT_FALSE(ParseBootTime("cpu 1\nbtime x\n", &boot));
}

// ---------------------------------------------------------------------------
// meminfo
// ---------------------------------------------------------------------------

TEST_F(ProcCollectorsTest, MeminfoConvertsKilobytesAndRenamesParentheses) {
  auto collector = NewMeminfoCollector(paths_);
  EXPECT_EQ(collector->name(), "meminfo");
  const Metrics metrics = RunClean(*collector);
  const auto mem = [&](const char* name, double kb) { return HasMetric(metrics, name, {}, kGauge, kb * 1024); };
  EXPECT_TRUE(mem("node_memory_MemTotal_bytes", 24684092));
  EXPECT_TRUE(mem("node_memory_MemFree_bytes", 24400860));
  EXPECT_TRUE(mem("node_memory_MemAvailable_bytes", 24368568));
  EXPECT_TRUE(mem("node_memory_Buffers_bytes", 2680));
  EXPECT_TRUE(mem("node_memory_Cached_bytes", 131732));
  EXPECT_TRUE(mem("node_memory_SwapTotal_bytes", 2097148));
  EXPECT_TRUE(mem("node_memory_SwapFree_bytes", 2097000));
  EXPECT_TRUE(mem("node_memory_SwapCached_bytes", 0));
  EXPECT_TRUE(mem("node_memory_Active_anon_bytes", 1520));
  EXPECT_TRUE(mem("node_memory_Inactive_file_bytes", 53520));
  EXPECT_TRUE(mem("node_memory_Committed_AS_bytes", 52440));
  EXPECT_TRUE(mem("node_memory_VmallocTotal_bytes", 34359738367.0));
  EXPECT_TRUE(mem("node_memory_Hugepagesize_bytes", 2048));
  // Unitless fields keep their value and get no _bytes suffix.
  EXPECT_TRUE(HasMetric(metrics, "node_memory_HugePages_Total", {}, kGauge, 4));
  EXPECT_EQ(Find(metrics, "node_memory_Active(anon)_bytes"), nullptr);
  EXPECT_EQ(Count(metrics, "node_memory_HugePages_Total_bytes"), 0u);
  EXPECT_EQ(metrics.size(), 25u);  // One per line of kMeminfo.
}

// ---------------------------------------------------------------------------
// vmstat
// ---------------------------------------------------------------------------

TEST_F(ProcCollectorsTest, VmstatExportsNodeExporterDefaultFields) {
  auto collector = NewVmstatCollector(paths_);
  EXPECT_EQ(collector->name(), "vmstat");
  const Metrics metrics = RunClean(*collector);
  EXPECT_TRUE(HasMetric(metrics, "node_vmstat_pgpgin", {}, kCounter, 10945001));
  EXPECT_TRUE(HasMetric(metrics, "node_vmstat_pgpgout", {}, kCounter, 114418324));
  EXPECT_TRUE(HasMetric(metrics, "node_vmstat_pswpin", {}, kCounter, 7));
  EXPECT_TRUE(HasMetric(metrics, "node_vmstat_pswpout", {}, kCounter, 11));
  EXPECT_TRUE(HasMetric(metrics, "node_vmstat_pgfault", {}, kCounter, 652243844));
  EXPECT_TRUE(HasMetric(metrics, "node_vmstat_pgmajfault", {}, kCounter, 15698));
  EXPECT_TRUE(HasMetric(metrics, "node_vmstat_oom_kill", {}, kCounter, 2));
  EXPECT_EQ(metrics.size(), 7u);  // Not nr_free_pages, pgalloc_normal, pgscan_kswapd, thp_fault_alloc.
}

TEST(IsExportedVmstatFieldTest, MatchesNodeExporterDefaultRegex) {
  for (const char* yes :
       {"oom_kill", "pgpgin", "pgpgout", "pswpin", "pswpout", "pgfault", "pgmajfault", "pgmajfault_s", "pg_fault"}) {
    EXPECT_TRUE(IsExportedVmstatField(yes)) << yes;
  }
  for (const char* no : {"nr_free_pages", "thp_fault_alloc", "pgalloc_normal", "pgsteal_kswapd", "pg", "oom"}) {
    EXPECT_FALSE(IsExportedVmstatField(no)) << no;
  }
}

// ---------------------------------------------------------------------------
// loadavg
// ---------------------------------------------------------------------------

TEST_F(ProcCollectorsTest, LoadavgExportsThreeGauges) {
  auto collector = NewLoadavgCollector(paths_);
  EXPECT_EQ(collector->name(), "loadavg");
  const Metrics metrics = RunClean(*collector);
  ASSERT_EQ(metrics.size(), 3u);
  EXPECT_TRUE(HasMetric(metrics, "node_load1", {}, kGauge, 0.01));
  EXPECT_TRUE(HasMetric(metrics, "node_load5", {}, kGauge, 0.03));
  EXPECT_TRUE(HasMetric(metrics, "node_load15", {}, kGauge, 1.5));
}

// ---------------------------------------------------------------------------
// pressure
// ---------------------------------------------------------------------------

TEST_F(ProcCollectorsTest, PressureConvertsMicrosecondsAndSkipsCpuFull) {
  auto collector = NewPressureCollector(paths_);
  EXPECT_EQ(collector->name(), "pressure");
  const Metrics metrics = RunClean(*collector);
  EXPECT_TRUE(HasMetric(metrics, "node_pressure_cpu_waiting_seconds_total", {}, kCounter, 4738.654914));
  EXPECT_TRUE(HasMetric(metrics, "node_pressure_io_waiting_seconds_total", {}, kCounter, 132.064168));
  EXPECT_TRUE(HasMetric(metrics, "node_pressure_io_stalled_seconds_total", {}, kCounter, 46.155997));
  EXPECT_TRUE(HasMetric(metrics, "node_pressure_memory_waiting_seconds_total", {}, kCounter, 1.5));
  EXPECT_TRUE(HasMetric(metrics, "node_pressure_memory_stalled_seconds_total", {}, kCounter, 0.00025));
  EXPECT_EQ(Find(metrics, "node_pressure_cpu_stalled_seconds_total"), nullptr);
  EXPECT_EQ(metrics.size(), 5u);
}

TEST_F(ProcCollectorsTest, PressureAbsentFromKernelIsNotAnError) {
  Remove("proc/pressure");
  auto collector = NewPressureCollector(paths_);
  Errors errors;
  bool ok = false;
  EXPECT_TRUE(Run(*collector, &errors, &ok).empty());
  EXPECT_TRUE(ok);
  EXPECT_TRUE(errors.empty()) << ::testing::PrintToString(errors);
}

TEST_F(ProcCollectorsTest, PressureUnreadableIsAnError) {
  // A directory where a file belongs fails with EISDIR-like errors, not
  // ENOENT: that is a broken host, not a kernel without PSI.
  Remove("proc/pressure/io");
  std::filesystem::create_directories(root_ + "/proc/pressure/io");
  auto collector = NewPressureCollector(paths_);
  Errors errors;
  bool ok = true;
  const Metrics metrics = Run(*collector, &errors, &ok);
  EXPECT_FALSE(ok);
  ASSERT_EQ(errors.size(), 1u) << ::testing::PrintToString(errors);
  EXPECT_NE(errors[0].find(paths_.proc + "/pressure/io: not a regular file"), std::string::npos) << errors[0];
  // cpu and memory still come through.
  EXPECT_EQ(metrics.size(), 3u);
}

// ---------------------------------------------------------------------------
// diskstats
// ---------------------------------------------------------------------------

TEST(IsIgnoredDiskDeviceTest, MatchesNodeExporterDefaultRegex) {
  for (const char* ignored : {"ram0", "ram15", "loop0", "loop12", "fd0", "sda1", "sdz15", "hda2", "vda1", "xvda1",
                              "nvme0n1p1", "nvme10n2p13"}) {
    EXPECT_TRUE(IsIgnoredDiskDevice(ignored)) << ignored;
  }
  for (const char* kept : {"sda", "vda", "xvda", "nvme0n1", "nvme0n1p", "dm-0", "sr0", "md127", "mmcblk0", "sdaa1",
                           "ram", "loop", "nvmen1p1", "nvme0p1", "xvd1", "sd1", "zram0", ""}) {
    EXPECT_FALSE(IsIgnoredDiskDevice(kept)) << kept;
  }
}

TEST_F(ProcCollectorsTest, DiskstatsSkipsPartitionsAndConvertsUnits) {
  auto collector = NewDiskstatsCollector(paths_);
  EXPECT_EQ(collector->name(), "diskstats");
  const Metrics metrics = RunClean(*collector);

  const Labels vda = {{"device", "vda"}};
  EXPECT_TRUE(HasMetric(metrics, "node_disk_reads_completed_total", vda, kCounter, 29538));
  EXPECT_TRUE(HasMetric(metrics, "node_disk_reads_merged_total", vda, kCounter, 6494));
  EXPECT_TRUE(HasMetric(metrics, "node_disk_read_bytes_total", vda, kCounter, 2282994.0 * 512));
  EXPECT_TRUE(HasMetric(metrics, "node_disk_read_time_seconds_total", vda, kCounter, 5.735));
  EXPECT_TRUE(HasMetric(metrics, "node_disk_writes_completed_total", vda, kCounter, 8204));
  EXPECT_TRUE(HasMetric(metrics, "node_disk_writes_merged_total", vda, kCounter, 6233));
  EXPECT_TRUE(HasMetric(metrics, "node_disk_written_bytes_total", vda, kCounter, 1172072.0 * 512));
  EXPECT_TRUE(HasMetric(metrics, "node_disk_write_time_seconds_total", vda, kCounter, 1.805));
  EXPECT_TRUE(HasMetric(metrics, "node_disk_io_now", vda, kGauge, 2));
  EXPECT_TRUE(HasMetric(metrics, "node_disk_io_time_seconds_total", vda, kCounter, 3.068));
  EXPECT_TRUE(HasMetric(metrics, "node_disk_io_time_weighted_seconds_total", vda, kCounter, 7.771));
  EXPECT_TRUE(HasMetric(metrics, "node_disk_discards_completed_total", vda, kCounter, 4297));
  EXPECT_TRUE(HasMetric(metrics, "node_disk_discards_merged_total", vda, kCounter, 23));
  EXPECT_TRUE(HasMetric(metrics, "node_disk_discarded_sectors_total", vda, kCounter, 109960));
  EXPECT_TRUE(HasMetric(metrics, "node_disk_discard_time_seconds_total", vda, kCounter, 0.195));
  EXPECT_TRUE(HasMetric(metrics, "node_disk_flush_requests_total", vda, kCounter, 1121));
  EXPECT_TRUE(HasMetric(metrics, "node_disk_flush_requests_time_seconds_total", vda, kCounter, 0.035));

  // The old 11-statistics format: no discard or flush series.
  const Labels sda = {{"device", "sda"}};
  EXPECT_TRUE(HasMetric(metrics, "node_disk_written_bytes_total", sda, kCounter, 640.0 * 512));
  EXPECT_TRUE(HasMetric(metrics, "node_disk_write_time_seconds_total", sda, kCounter, 1.5));
  EXPECT_EQ(Find(metrics, "node_disk_discards_completed_total", sda), nullptr);
  // 15 statistics (4.18 to 5.4): discards, no flushes.
  const Labels nvme = {{"device", "nvme0n1"}};
  EXPECT_NE(Find(metrics, "node_disk_discard_time_seconds_total", nvme), nullptr);
  EXPECT_EQ(Find(metrics, "node_disk_flush_requests_total", nvme), nullptr);

  std::set<std::string> devices;
  for (const HostMetric& m : metrics) devices.insert(m.labels.at(0).second);
  EXPECT_EQ(devices, (std::set<std::string>{"vda", "sda", "nvme0n1", "dm-0", "sr0"}));
  EXPECT_EQ(Count(metrics, "node_disk_io_now"), 5u);
  EXPECT_EQ(metrics.size(), 17u * 3 + 11 + 15);  // vda, dm-0, sr0; sda; nvme0n1
}

TEST(ParseDiskstatsTest, NoDisksIsNotAFailure) {
  Metrics out;
  Errors errors;
  EXPECT_TRUE(ParseDiskstats("", "diskstats", &out, &errors));
  EXPECT_TRUE(ParseDiskstats("   7       0 loop0 57 0 2100 12 0 0 0 0 0 20 12\n", "diskstats", &out, &errors));
  EXPECT_TRUE(out.empty());
  EXPECT_TRUE(errors.empty());
  EXPECT_FALSE(ParseDiskstats("garbage\n", "diskstats", &out, &errors));
}

// ---------------------------------------------------------------------------
// netdev
// ---------------------------------------------------------------------------

TEST_F(ProcCollectorsTest, NetDevExportsEveryColumnAndAcceptsNoSpaceAfterColon) {
  auto collector = NewNetdevCollector(paths_);
  EXPECT_EQ(collector->name(), "netdev");
  const Metrics metrics = RunClean(*collector);

  const Labels eth0 = {{"device", "eth0"}};
  const std::vector<std::pair<const char*, double>> eth0_values = {
      {"receive_bytes", 43711425}, {"receive_packets", 962},  {"receive_errs", 1},       {"receive_drop", 2},
      {"receive_fifo", 3},         {"receive_frame", 4},      {"receive_compressed", 5}, {"receive_multicast", 6},
      {"transmit_bytes", 45066},   {"transmit_packets", 550}, {"transmit_errs", 7},      {"transmit_drop", 8},
      {"transmit_fifo", 9},        {"transmit_colls", 10},    {"transmit_carrier", 11},  {"transmit_compressed", 12},
  };
  for (const auto& [column, value] : eth0_values) {
    EXPECT_TRUE(HasMetric(metrics, std::string("node_network_") + column + "_total", eth0, kCounter, value));
  }

  const Labels eth1 = {{"device", "eth1"}};
  EXPECT_TRUE(HasMetric(metrics, "node_network_receive_bytes_total", eth1, kCounter, 12345678901.0));
  EXPECT_TRUE(HasMetric(metrics, "node_network_receive_packets_total", eth1, kCounter, 9876543));
  EXPECT_TRUE(HasMetric(metrics, "node_network_receive_multicast_total", eth1, kCounter, 12));
  EXPECT_TRUE(HasMetric(metrics, "node_network_transmit_bytes_total", eth1, kCounter, 1098765432));
  EXPECT_TRUE(HasMetric(metrics, "node_network_transmit_drop_total", eth1, kCounter, 8));

  // lo is kept (node_exporter's upstream default).
  EXPECT_TRUE(HasMetric(metrics, "node_network_receive_bytes_total", {{"device", "lo"}}, kCounter, 3267));
  // lo, eth0, eth1 and nothing from the header lines.
  EXPECT_EQ(metrics.size(), 3u * 16);
}

// ---------------------------------------------------------------------------
// filefd
// ---------------------------------------------------------------------------

TEST_F(ProcCollectorsTest, FilefdExportsAllocatedAndMaximum) {
  auto collector = NewFilefdCollector(paths_);
  EXPECT_EQ(collector->name(), "filefd");
  const Metrics metrics = RunClean(*collector);
  EXPECT_TRUE(HasMetric(metrics, "node_filefd_allocated", {}, kGauge, 561));
  EXPECT_TRUE(HasMetric(metrics, "node_filefd_maximum", {}, kGauge, 2466183));
  EXPECT_EQ(metrics.size(), 2u);
}

// ---------------------------------------------------------------------------
// Every file collector: missing file, damaged lines, truncation, garbage.
// ---------------------------------------------------------------------------

using ParserFn = bool (*)(std::string_view, std::string_view, Metrics*, Errors*);

struct ParserCase {
  const char* name;
  ParserFn parse;
  std::string_view good;  // a whole, valid file
};

const std::vector<ParserCase>& ParserCases() {
  static const std::vector<ParserCase> cases = {
      {"cpu",
       [](std::string_view t, std::string_view s, Metrics* o, Errors* e) {
         return ParseCpuStat(t, s, 100, true, o, e);
       },
       kStat},
      {"stat", ParseStat, kStat},
      {"meminfo", ParseMeminfo, kMeminfo},
      {"vmstat", ParseVmstat, kVmstat},
      {"loadavg", ParseLoadavg, kLoadavg},
      {"pressure",
       [](std::string_view t, std::string_view s, Metrics* o, Errors* e) { return ParsePressure(t, s, "io", o, e); },
       kPressureIo},
      {"diskstats", ParseDiskstats, kDiskstats},
      {"netdev", ParseNetDev, kNetDev},
      {"filefd", ParseFileNr, kFileNr},
  };
  return cases;
}

TEST(ParseTest, EmptyInputFailsWithOneLineExceptWhereEmptyIsNormal) {
  for (const ParserCase& c : ParserCases()) {
    Metrics out;
    Errors errors;
    const bool ok = c.parse("", "src", &out, &errors);
    EXPECT_TRUE(out.empty()) << c.name;
    // A host may have no block device and a network namespace no interface.
    const bool empty_is_normal = std::string_view(c.name) == "diskstats" || std::string_view(c.name) == "netdev";
    EXPECT_EQ(ok, empty_is_normal) << c.name;
    EXPECT_EQ(errors.size(), empty_is_normal ? 0u : 1u) << c.name << ": " << ::testing::PrintToString(errors);
    if (!errors.empty()) {
      EXPECT_TRUE(errors[0].starts_with("src: no ")) << errors[0];
    }
  }
}

TEST(ParseTest, GoodInputAppendsWithoutTouchingWhatIsThere) {
  for (const ParserCase& c : ParserCases()) {
    Metrics out = {HostMetric{"already_there", {}, MetricKind::kGauge, 7}};
    Errors errors;
    EXPECT_TRUE(c.parse(c.good, "src", &out, &errors)) << c.name;
    EXPECT_TRUE(errors.empty()) << c.name << ": " << ::testing::PrintToString(errors);
    ASSERT_GT(out.size(), 1u) << c.name;
    EXPECT_EQ(out[0].name, "already_there");
    EXPECT_EQ(out[0].value, 7);
  }
}

// Cutting a file at any byte must never yield a value that the whole file
// does not have: a cut-off "24502528" must not be exported as 2450.
TEST(ParseTest, EveryTruncationYieldsOnlyTrueValues) {
  for (const ParserCase& c : ParserCases()) {
    Metrics full;
    ASSERT_TRUE(c.parse(c.good, "full", &full, nullptr)) << c.name;
    for (size_t len = 0; len <= c.good.size(); ++len) {
      Metrics part;
      Errors errors;
      c.parse(c.good.substr(0, len), "cut", &part, &errors);
      for (const HostMetric& m : part) {
        const HostMetric* want = Find(full, m.name, m.labels);
        ASSERT_NE(want, nullptr) << c.name << " len " << len << ": " << ::testing::PrintToString(m);
        ASSERT_EQ(m.value, want->value) << c.name << " len " << len << ": " << m.name;
        ASSERT_EQ(m.kind, want->kind);
      }
      ASSERT_LE(errors.size(), 2u) << c.name;
    }
  }
}

// Random bytes drawn from the characters the parsers care about: nothing may
// crash, and whatever comes out must be well-formed.
TEST(ParseTest, RandomInputDoesNotCrash) {
  using namespace std::string_view_literals;
  // Built with ""sv so the embedded NUL is part of it.
  constexpr std::string_view kAlphabet = "0123456789     \t\n\n::||()\\-.=abcpukBntrxvdeh_/sol\x00\xff"sv;
  std::mt19937 rng(12345);
  std::uniform_int_distribution<size_t> pick(0, kAlphabet.size() - 1);
  std::uniform_int_distribution<size_t> length(0, 400);
  for (int i = 0; i < 2000; ++i) {
    std::string text(length(rng), ' ');
    for (char& c : text) c = kAlphabet[pick(rng)];
    Errors errors;
    Metrics metrics;
    for (const ParserCase& c : ParserCases()) c.parse(text, "s", &metrics, &errors);
    for (const MountEntry& m : SelectMounts(ParseMounts(text, "s", &errors))) {
      ASSERT_FALSE(m.mount_point.empty());
      ASSERT_EQ(m.mount_point.front(), '/');
    }
    ProcessStat stat;
    ParseProcessStat(text, &stat);
    double a = 0;
    double b = 0;
    ParseLimits(text, &a, &b);
    ParseBootTime(text, &a);
    ExpectWellFormed(metrics);
    ASSERT_LE(errors.size(), 2 * ParserCases().size() + 1);
    if (::testing::Test::HasFailure()) FAIL() << "input: " << text;
  }
}

TEST_F(ProcCollectorsTest, GarbageAndTruncatedLinesProduceNoBogusMetrics) {
  Write("proc/stat",
        "cpu  1287 0 1171 46204 190 0 22 6 0 0\n"
        "cpu0 424 0 436 23568 3 0 4 1 0 0\n"
        "cpu1 862 0 73\n"              // Too few columns.
        "cpu2 1 2 3 4 5 6 7 x 0 0\n"   // Not a number.
        "cpu3 -1 2 3 4 5 6 7 8 0 0\n"  // Negative.
        "ctxt 25x828\n"
        "ctxt\n"
        "procs_running 1 2\n"
        "\x01\xff\xfe garbage \x7f\n"
        "\n"
        "processes 3522\n"
        "btime 17954");  // Truncated: no newline.
  Write("proc/meminfo",
        "MemTotal:       24684092 kB\n"
        "MemFree:        abc kB\n"
        "Buffers 2680 kB\n"              // No colon.
        "Cached:           131732 MB\n"  // Unknown unit.
        "Weird-Key:            5 kB\n"   // Not a metric name.
        ":                     5 kB\n"
        "Dirty:              224 kB extra\n"
        "SwapTotal:             0 kB\n"
        "MemAvailable:   2436");  // Truncated.
  Write("proc/loadavg", "0.5 nan 0.1 1/84 3525\n-1 0 0\n0.5 0.");
  Write("proc/diskstats",
        " 254       0 vda 29538 6494 2282994 5735 8204 6233 1172072 1805 0 "
        "3068 7771\n"
        " 254      16 vdb 1 2 3\n"
        " 254      32 vdc 1 2 3 4 5 6 7 8 9 10 eleven\n"
        " x 48 vdd 1 2 3 4 5 6 7 8 9 10 11\n"
        " 254      64 vde 1 2 3 4 5 6 7 8 9 1");
  Write("proc/net/dev",
        "Inter-|   Receive |  Transmit\n"
        " face |bytes    packets|bytes\n"
        "  eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n"
        "  no colon here 1 2 3\n"
        "     : 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n"
        " bad name: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n"
        "  eth1: 1 2 3\n"
        "  eth2: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 x\n"
        "  eth3:1 2 3 4 5 6 7 8 9 10 11 12 13 14 1");
  Write("proc/vmstat", "pgfault 12\npgmajfault x\npswpin\nnr_free_pages 1\npswpout 3");
  Write("proc/pressure/memory", "some avg10=0.00 total=12\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=250\n");
  Write("proc/sys/fs/file-nr", "561 0\n");

  std::vector<std::unique_ptr<Collector>> collectors;
  collectors.push_back(NewCpuCollector(paths_, 100, true));
  collectors.push_back(NewStatCollector(paths_));
  collectors.push_back(NewMeminfoCollector(paths_));
  collectors.push_back(NewLoadavgCollector(paths_));
  collectors.push_back(NewDiskstatsCollector(paths_));
  collectors.push_back(NewNetdevCollector(paths_));
  collectors.push_back(NewVmstatCollector(paths_));
  collectors.push_back(NewPressureCollector(paths_));
  collectors.push_back(NewFilefdCollector(paths_));
  Metrics metrics;
  Errors errors;
  std::set<std::string> failed;
  for (auto& c : collectors) {
    if (!c->Collect(reader_, &metrics, &errors)) failed.insert(std::string(c->name()));
  }
  ExpectWellFormed(metrics);
  // Collectors with good lines left succeed; loadavg and filefd have none.
  EXPECT_EQ(failed, (std::set<std::string>{"loadavg", "filefd"}));

  EXPECT_EQ(Count(metrics, "node_cpu_seconds_total"), 8u);
  EXPECT_NE(Find(metrics, "node_cpu_seconds_total", {{"cpu", "0"}, {"mode", "user"}}), nullptr);
  EXPECT_EQ(Count(metrics, "node_context_switches_total"), 0u);
  EXPECT_EQ(Count(metrics, "node_procs_running"), 0u);
  EXPECT_EQ(Count(metrics, "node_boot_time_seconds"), 0u);
  EXPECT_TRUE(HasMetric(metrics, "node_forks_total", {}, kCounter, 3522));

  std::set<std::string> memory;
  for (const HostMetric& m : metrics) {
    if (m.name.starts_with("node_memory_")) memory.insert(m.name);
  }
  EXPECT_EQ(memory, (std::set<std::string>{"node_memory_MemTotal_bytes", "node_memory_SwapTotal_bytes"}));
  EXPECT_EQ(CountPrefix(metrics, "node_load"), 0u);
  EXPECT_EQ(Count(metrics, "node_disk_io_now"), 1u);
  EXPECT_TRUE(HasMetric(metrics, "node_disk_reads_completed_total", {{"device", "vda"}}, kCounter, 29538));
  EXPECT_EQ(Count(metrics, "node_network_receive_bytes_total"), 1u);
  EXPECT_TRUE(HasMetric(metrics, "node_network_transmit_drop_total", {{"device", "eth0"}}, kCounter, 12));
  EXPECT_EQ(CountPrefix(metrics, "node_vmstat_"), 1u);
  EXPECT_TRUE(HasMetric(metrics, "node_vmstat_pgfault", {}, kCounter, 12));
  EXPECT_EQ(Find(metrics, "node_pressure_memory_waiting_seconds_total"), nullptr);
  EXPECT_TRUE(HasMetric(metrics, "node_pressure_memory_stalled_seconds_total", {}, kCounter, 0.00025));
  EXPECT_EQ(CountPrefix(metrics, "node_filefd_"), 0u);

  // One summary line per damaged file, naming it and its first bad line;
  // loadavg and filefd also report that nothing usable was left.
  for (const std::string& line :
       {paths_.proc + "/stat:3: malformed cpu1 line; line skipped (3 more malformed line(s) skipped)",
        paths_.proc + "/stat:6: malformed ctxt line; line skipped (3 more malformed line(s) skipped)",
        paths_.proc + "/meminfo:2:", paths_.proc + "/loadavg:1:", paths_.proc + "/loadavg: no load averages found",
        paths_.proc + "/diskstats:2:", paths_.proc + "/net/dev:4:", paths_.proc + "/vmstat:2:",
        paths_.proc + "/pressure/memory:1:", paths_.proc + "/sys/fs/file-nr:1:",
        paths_.proc + "/sys/fs/file-nr: no file handle counts found"}) {
    EXPECT_TRUE(AnyErrorContains(errors, line)) << line << " in " << ::testing::PrintToString(errors);
  }
  EXPECT_EQ(errors.size(), 11u) << ::testing::PrintToString(errors);
}

}  // namespace
}  // namespace sheaf::agent
