#include "agent/host_collector.h"

#include <gtest/gtest.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sheaf::agent {

// Lets gtest print metrics readably in failure messages (found through ADL).
void PrintTo(const HostMetric& m, std::ostream* os) {
  *os << m.name << "{";
  for (size_t i = 0; i < m.labels.size(); ++i) {
    *os << (i ? "," : "") << m.labels[i].first << "=\"" << m.labels[i].second << "\"";
  }
  *os << "} " << (m.kind == MetricKind::kCounter ? "counter " : "gauge ") << m.value;
}

namespace {

using Labels = std::vector<std::pair<std::string, std::string>>;
namespace fs = std::filesystem;

// ---------------------------------------------------------------------------
// Fake /proc contents, copied in shape from a real Debian 12 / Linux 6.x host.
// ---------------------------------------------------------------------------

// cpu0 has guest time (30 ticks) to show that user time is exported as is.
constexpr std::string_view kStat =
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

constexpr std::string_view kMeminfo =
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

constexpr std::string_view kLoadavg = "0.01 0.03 1.50 1/84 3525\n";

// Whole disks: vda (17 fields, kernel >= 5.5), sda (old 11-stat format),
// nvme0n1, dm-0, sr0. Everything else is a partition, ram, loop or fd device.
constexpr std::string_view kDiskstats =
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
    "15000 0 0 0 0 0 0\n"
    " 259       1 nvme0n1p1 4900 10 390000 2900 6900 20 890000 11900 0 8900 "
    "14800 0 0 0 0 0 0\n"
    " 253       0 dm-0 1 0 8 0 2 0 16 4 0 4 4 0 0 0 0 0 0\n"
    "  11       0 sr0 3 0 24 1 0 0 0 0 0 1 1 0 0 0 0 0 0\n";

// eth1 shows the kernel's format once a byte count fills its column: no
// space after the colon.
constexpr std::string_view kNetDev =
    "Inter-|   Receive                                                |  "
    "Transmit\n"
    " face |bytes    packets errs drop fifo frame compressed multicast|bytes  "
    "  packets errs drop fifo colls carrier compressed\n"
    "    lo:    3267      29    0    0    0     0          0         0     "
    "3267      29    0    0    0     0       0          0\n"
    "  eth0: 43711425     962    1    2    0     0          0         0    "
    "45066     550    3    4    0     0       0          0\n"
    "  eth1:12345678901 9876543 5 6 0 0 0 12 1098765432 123456 7 8 0 0 0 0\n";

// A mounts file whose only real (statvfs-able) mount points are "/" and
// `real_dir`; everything else must be filtered out before statvfs.
std::string MountsFile(const std::string& escaped_real_dir) {
  return "proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0\n"
         "sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0\n"
         "udev /dev devtmpfs rw,nosuid,relatime,size=8123456k,mode=755 0 0\n"
         "devpts /dev/pts devpts rw,nosuid,noexec,relatime,mode=620 0 0\n"
         "tmpfs /dev/shm tmpfs rw,nosuid,nodev 0 0\n"
         "/dev/vda1 / ext4 rw,relatime,errors=remount-ro 0 0\n"
         "securityfs /sys/kernel/security securityfs rw,relatime 0 0\n"
         "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime 0 0\n"
         "bpf /bpffs bpf rw,relatime,mode=700 0 0\n"
         "systemd-1 /proc/sys/fs/binfmt_misc autofs rw,relatime,fd=30 0 0\n"
         "mqueue /mqueue mqueue rw,relatime 0 0\n"
         "/dev/loop3 /snap/core22/1033 squashfs ro,nodev,relatime 0 0\n"
         "/dev/vdb /var/lib/docker ext4 rw,relatime 0 0\n"
         "overlay /merged overlay rw,relatime,lowerdir=/l,upperdir=/u 0 0\n"
         "ramfs /run/credentials/systemd-sysctl.service ramfs ro,nosuid 0 0\n"
         "nsfs /netns nsfs rw 0 0\n"
         "tmpfs " +
         escaped_real_dir + " tmpfs rw,nosuid,nodev,size=1024k 0 0\n";
}

// ---------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------

const HostMetric* Find(const std::vector<HostMetric>& metrics, std::string_view name, const Labels& labels = {}) {
  for (const HostMetric& m : metrics) {
    if (m.name == name && m.labels == labels) return &m;
  }
  return nullptr;
}

size_t Count(const std::vector<HostMetric>& metrics, std::string_view name) {
  return std::count_if(metrics.begin(), metrics.end(), [&](const HostMetric& m) { return m.name == name; });
}

bool Near(double a, double b) { return std::fabs(a - b) <= 1e-12 * std::max(1.0, std::fabs(b)); }

// Asserts that exactly this series exists with this kind and value.
::testing::AssertionResult HasMetric(const std::vector<HostMetric>& metrics, std::string_view name,
                                     const Labels& labels, MetricKind kind, double value) {
  const HostMetric* m = Find(metrics, name, labels);
  if (m == nullptr) {
    return ::testing::AssertionFailure() << "no " << name << " with the given labels among "
                                         << ::testing::PrintToString(metrics);
  }
  if (m->kind != kind) {
    return ::testing::AssertionFailure() << "wrong kind: " << ::testing::PrintToString(*m);
  }
  if (!Near(m->value, value)) {
    return ::testing::AssertionFailure() << "wrong value: " << ::testing::PrintToString(*m) << ", want " << value;
  }
  return ::testing::AssertionSuccess();
}

bool AnyErrorContains(const std::vector<std::string>& errors, std::string_view needle) {
  return std::any_of(errors.begin(), errors.end(),
                     [&](const std::string& e) { return e.find(needle) != std::string::npos; });
}

// Every metric the collector may emit must have a Prometheus-valid name,
// sorted labels and a finite, non-negative value.
void ExpectWellFormed(const std::vector<HostMetric>& metrics) {
  for (const HostMetric& m : metrics) {
    EXPECT_FALSE(m.name.empty());
    EXPECT_TRUE(std::all_of(m.name.begin(), m.name.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    })) << m.name;
    EXPECT_TRUE(std::is_sorted(m.labels.begin(), m.labels.end(), [](const auto& a, const auto& b) {
      return a.first < b.first;
    })) << ::testing::PrintToString(m);
    EXPECT_TRUE(std::isfinite(m.value) && m.value >= 0) << ::testing::PrintToString(m);
  }
}

class HostCollectorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "sheaf_host_collector_test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    root_ = pattern;
    paths_.proc = root_ + "/proc";
    paths_.mounts = root_ + "/mounts";
  }

  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  // Writes `content` to root_/relative, creating parent directories.
  void Write(const std::string& relative, std::string_view content) {
    const fs::path path = fs::path(root_) / relative;
    fs::create_directories(path.parent_path());
    std::ofstream out(path, std::ios::binary);
    out << content;
    ASSERT_TRUE(out.good()) << path;
  }

  void WriteFakeProc() {
    Write("proc/stat", kStat);
    Write("proc/meminfo", kMeminfo);
    Write("proc/loadavg", kLoadavg);
    Write("proc/diskstats", kDiskstats);
    Write("proc/net/dev", kNetDev);
  }

  std::vector<HostMetric> Collect(std::vector<std::string>* errors) { return HostCollector(paths_).Collect(errors); }

  std::string root_;
  HostPaths paths_;
};

// ---------------------------------------------------------------------------
// /proc/stat
// ---------------------------------------------------------------------------

TEST_F(HostCollectorTest, ProcStatConvertsCpuTicksToSeconds) {
  WriteFakeProc();
  Write("mounts", "");
  std::vector<std::string> errors;
  const std::vector<HostMetric> metrics = Collect(&errors);
  EXPECT_TRUE(errors.empty()) << ::testing::PrintToString(errors);

  // The collector divides by the host's USER_HZ.
  const double hz = static_cast<double>(::sysconf(_SC_CLK_TCK));
  const auto cpu = [&](const char* n, const char* mode, double ticks) {
    return HasMetric(metrics, "node_cpu_seconds_total", {{"cpu", n}, {"mode", mode}}, MetricKind::kCounter, ticks / hz);
  };
  EXPECT_TRUE(cpu("0", "user", 424));  // Guest time is not subtracted.
  EXPECT_TRUE(cpu("0", "nice", 0));
  EXPECT_TRUE(cpu("0", "system", 436));
  EXPECT_TRUE(cpu("0", "idle", 23568));
  EXPECT_TRUE(cpu("0", "iowait", 3));
  EXPECT_TRUE(cpu("0", "irq", 0));
  EXPECT_TRUE(cpu("0", "softirq", 4));
  EXPECT_TRUE(cpu("0", "steal", 1));
  EXPECT_TRUE(cpu("1", "user", 863));
  EXPECT_TRUE(cpu("1", "nice", 3));
  EXPECT_TRUE(cpu("1", "steal", 5));
  // 2 cpus x 8 modes; the aggregate "cpu" line and guest modes are not
  // exported.
  EXPECT_EQ(Count(metrics, "node_cpu_seconds_total"), 16u);

  EXPECT_TRUE(HasMetric(metrics, "node_context_switches_total", {}, MetricKind::kCounter, 257828));
  EXPECT_TRUE(HasMetric(metrics, "node_intr_total", {}, MetricKind::kCounter, 111683));
  EXPECT_TRUE(HasMetric(metrics, "node_forks_total", {}, MetricKind::kCounter, 3522));
  EXPECT_TRUE(HasMetric(metrics, "node_procs_running", {}, MetricKind::kGauge, 2));
  EXPECT_TRUE(HasMetric(metrics, "node_procs_blocked", {}, MetricKind::kGauge, 1));
  EXPECT_TRUE(HasMetric(metrics, "node_boot_time_seconds", {}, MetricKind::kGauge, 1795488538));
  ExpectWellFormed(metrics);
}

TEST(ParseProcStatTest, UsesGivenTicksPerSecond) {
  std::vector<std::string> errors;
  const std::vector<HostMetric> metrics = ParseProcStat(kStat, "/proc/stat", 100.0, &errors);
  EXPECT_TRUE(errors.empty()) << ::testing::PrintToString(errors);
  EXPECT_TRUE(
      HasMetric(metrics, "node_cpu_seconds_total", {{"cpu", "0"}, {"mode", "user"}}, MetricKind::kCounter, 4.24));
  EXPECT_TRUE(
      HasMetric(metrics, "node_cpu_seconds_total", {{"cpu", "0"}, {"mode", "idle"}}, MetricKind::kCounter, 235.68));
  EXPECT_TRUE(
      HasMetric(metrics, "node_cpu_seconds_total", {{"cpu", "1"}, {"mode", "system"}}, MetricKind::kCounter, 7.35));
  EXPECT_EQ(metrics.size(), 16u + 6u);
}

// ---------------------------------------------------------------------------
// /proc/meminfo
// ---------------------------------------------------------------------------

TEST_F(HostCollectorTest, MeminfoConvertsKilobytesAndRenamesParentheses) {
  WriteFakeProc();
  Write("mounts", "");
  std::vector<std::string> errors;
  const std::vector<HostMetric> metrics = Collect(&errors);
  EXPECT_TRUE(errors.empty()) << ::testing::PrintToString(errors);

  const auto mem = [&](const char* name, double kb) {
    return HasMetric(metrics, name, {}, MetricKind::kGauge, kb * 1024);
  };
  EXPECT_TRUE(mem("node_memory_MemTotal_bytes", 24684092));
  EXPECT_TRUE(mem("node_memory_MemFree_bytes", 24400860));
  EXPECT_TRUE(mem("node_memory_MemAvailable_bytes", 24368568));
  EXPECT_TRUE(mem("node_memory_Buffers_bytes", 2680));
  EXPECT_TRUE(mem("node_memory_Cached_bytes", 131732));
  EXPECT_TRUE(mem("node_memory_SwapTotal_bytes", 2097148));
  EXPECT_TRUE(mem("node_memory_SwapFree_bytes", 2097000));
  EXPECT_TRUE(mem("node_memory_Active_bytes", 73552));
  EXPECT_TRUE(mem("node_memory_Inactive_bytes", 57396));
  EXPECT_TRUE(mem("node_memory_Dirty_bytes", 224));
  EXPECT_TRUE(mem("node_memory_Active_anon_bytes", 1520));
  EXPECT_TRUE(mem("node_memory_Inactive_file_bytes", 53520));
  EXPECT_TRUE(mem("node_memory_Committed_AS_bytes", 52440));
  EXPECT_TRUE(mem("node_memory_VmallocTotal_bytes", 34359738367.0));
  EXPECT_TRUE(mem("node_memory_Hugepagesize_bytes", 2048));
  // Unitless fields keep their value and get no _bytes suffix.
  EXPECT_TRUE(HasMetric(metrics, "node_memory_HugePages_Total", {}, MetricKind::kGauge, 4));
  EXPECT_EQ(Find(metrics, "node_memory_Active(anon)_bytes"), nullptr);
  EXPECT_EQ(Count(metrics, "node_memory_HugePages_Total_bytes"), 0u);
}

TEST(ParseMeminfoTest, ExportsEveryField) {
  std::vector<std::string> errors;
  const std::vector<HostMetric> metrics = ParseMeminfo(kMeminfo, "meminfo", &errors);
  EXPECT_TRUE(errors.empty()) << ::testing::PrintToString(errors);
  EXPECT_EQ(metrics.size(), 25u);  // One per line of kMeminfo.
  ExpectWellFormed(metrics);
}

// ---------------------------------------------------------------------------
// /proc/loadavg
// ---------------------------------------------------------------------------

TEST(ParseLoadavgTest, ExportsThreeGauges) {
  std::vector<std::string> errors;
  const std::vector<HostMetric> metrics = ParseLoadavg(kLoadavg, "loadavg", &errors);
  EXPECT_TRUE(errors.empty()) << ::testing::PrintToString(errors);
  ASSERT_EQ(metrics.size(), 3u);
  EXPECT_TRUE(HasMetric(metrics, "node_load1", {}, MetricKind::kGauge, 0.01));
  EXPECT_TRUE(HasMetric(metrics, "node_load5", {}, MetricKind::kGauge, 0.03));
  EXPECT_TRUE(HasMetric(metrics, "node_load15", {}, MetricKind::kGauge, 1.5));
}

// ---------------------------------------------------------------------------
// /proc/diskstats
// ---------------------------------------------------------------------------

TEST(IsIgnoredDiskDeviceTest, MatchesNodeExporterDefaultRegex) {
  for (const char* ignored : {"ram0", "ram15", "loop0", "loop12", "fd0", "sda1", "sdz15", "hda2", "vda1", "xvda1",
                              "nvme0n1p1", "nvme10n2p13"}) {
    EXPECT_TRUE(IsIgnoredDiskDevice(ignored)) << ignored;
  }
  for (const char* kept : {"sda", "vda", "xvda", "nvme0n1", "nvme0n1p", "dm-0", "sr0", "md127", "mmcblk0", "sdaa1",
                           "ram", "loop", "nvmen1p1", "nvme0p1", "xvd1", "sd1", ""}) {
    EXPECT_FALSE(IsIgnoredDiskDevice(kept)) << kept;
  }
}

TEST_F(HostCollectorTest, DiskstatsSkipsPartitionsAndConvertsUnits) {
  WriteFakeProc();
  Write("mounts", "");
  std::vector<std::string> errors;
  const std::vector<HostMetric> metrics = Collect(&errors);
  EXPECT_TRUE(errors.empty()) << ::testing::PrintToString(errors);

  const Labels vda = {{"device", "vda"}};
  const auto c = MetricKind::kCounter;
  EXPECT_TRUE(HasMetric(metrics, "node_disk_reads_completed_total", vda, c, 29538));
  EXPECT_TRUE(HasMetric(metrics, "node_disk_read_bytes_total", vda, c, 2282994.0 * 512));
  EXPECT_TRUE(HasMetric(metrics, "node_disk_read_time_seconds_total", vda, c, 5.735));
  EXPECT_TRUE(HasMetric(metrics, "node_disk_writes_completed_total", vda, c, 8204));
  EXPECT_TRUE(HasMetric(metrics, "node_disk_written_bytes_total", vda, c, 1172072.0 * 512));
  EXPECT_TRUE(HasMetric(metrics, "node_disk_write_time_seconds_total", vda, c, 1.805));
  EXPECT_TRUE(HasMetric(metrics, "node_disk_io_time_seconds_total", vda, c, 3.068));
  EXPECT_TRUE(HasMetric(metrics, "node_disk_io_now", vda, MetricKind::kGauge, 2));

  // The old 11-statistics format is still parsed.
  const Labels sda = {{"device", "sda"}};
  EXPECT_TRUE(HasMetric(metrics, "node_disk_written_bytes_total", sda, c, 640.0 * 512));
  EXPECT_TRUE(HasMetric(metrics, "node_disk_write_time_seconds_total", sda, c, 1.5));

  std::set<std::string> devices;
  for (const HostMetric& m : metrics) {
    if (m.name.rfind("node_disk_", 0) == 0) devices.insert(m.labels.at(0).second);
  }
  EXPECT_EQ(devices, (std::set<std::string>{"vda", "sda", "nvme0n1", "dm-0", "sr0"}));
  EXPECT_EQ(Count(metrics, "node_disk_io_now"), 5u);
  EXPECT_EQ(Count(metrics, "node_disk_reads_completed_total"), 5u);
}

// ---------------------------------------------------------------------------
// /proc/net/dev
// ---------------------------------------------------------------------------

TEST_F(HostCollectorTest, NetDevSkipsHeadersAndAcceptsNoSpaceAfterColon) {
  WriteFakeProc();
  Write("mounts", "");
  std::vector<std::string> errors;
  const std::vector<HostMetric> metrics = Collect(&errors);
  EXPECT_TRUE(errors.empty()) << ::testing::PrintToString(errors);

  const auto c = MetricKind::kCounter;
  const Labels eth0 = {{"device", "eth0"}};
  EXPECT_TRUE(HasMetric(metrics, "node_network_receive_bytes_total", eth0, c, 43711425));
  EXPECT_TRUE(HasMetric(metrics, "node_network_receive_packets_total", eth0, c, 962));
  EXPECT_TRUE(HasMetric(metrics, "node_network_receive_errs_total", eth0, c, 1));
  EXPECT_TRUE(HasMetric(metrics, "node_network_receive_drop_total", eth0, c, 2));
  EXPECT_TRUE(HasMetric(metrics, "node_network_transmit_bytes_total", eth0, c, 45066));
  EXPECT_TRUE(HasMetric(metrics, "node_network_transmit_packets_total", eth0, c, 550));
  EXPECT_TRUE(HasMetric(metrics, "node_network_transmit_errs_total", eth0, c, 3));
  EXPECT_TRUE(HasMetric(metrics, "node_network_transmit_drop_total", eth0, c, 4));

  const Labels eth1 = {{"device", "eth1"}};
  EXPECT_TRUE(HasMetric(metrics, "node_network_receive_bytes_total", eth1, c, 12345678901.0));
  EXPECT_TRUE(HasMetric(metrics, "node_network_receive_packets_total", eth1, c, 9876543));
  EXPECT_TRUE(HasMetric(metrics, "node_network_transmit_bytes_total", eth1, c, 1098765432));
  EXPECT_TRUE(HasMetric(metrics, "node_network_transmit_drop_total", eth1, c, 8));

  EXPECT_TRUE(HasMetric(metrics, "node_network_receive_bytes_total", {{"device", "lo"}}, c, 3267));
  // lo, eth0, eth1 and nothing from the header lines.
  EXPECT_EQ(Count(metrics, "node_network_receive_bytes_total"), 3u);
  EXPECT_EQ(Count(metrics, "node_network_transmit_errs_total"), 3u);
}

// ---------------------------------------------------------------------------
// Mounts and filesystems
// ---------------------------------------------------------------------------

TEST(UnescapeMountFieldTest, UndoesOctalEscapes) {
  EXPECT_EQ(UnescapeMountField("/mnt/my\\040disk"), "/mnt/my disk");
  EXPECT_EQ(UnescapeMountField("/a\\011b\\012c\\134d"), "/a\tb\nc\\d");
  EXPECT_EQ(UnescapeMountField("/plain"), "/plain");
  // Not an escape: kept literally.
  EXPECT_EQ(UnescapeMountField("/x\\09y"), "/x\\09y");
  EXPECT_EQ(UnescapeMountField("/x\\04"), "/x\\04");
  EXPECT_EQ(UnescapeMountField("trailing\\"), "trailing\\");
  EXPECT_EQ(UnescapeMountField("\\777"), "\\777");
}

TEST(IsIgnoredTest, PseudoFilesystemsAndSystemMountPoints) {
  for (const char* t :
       {"autofs",   "binfmt_misc", "bpf",        "cgroup",     "cgroup2",   "configfs", "debugfs", "devpts",
        "devtmpfs", "fusectl",     "hugetlbfs",  "iso9660",    "mqueue",    "nsfs",     "overlay", "proc",
        "procfs",   "pstore",      "rpc_pipefs", "securityfs", "selinuxfs", "squashfs", "sysfs",   "tracefs"}) {
    EXPECT_TRUE(IsIgnoredFilesystemType(t)) << t;
  }
  for (const char* t : {"ext4", "xfs", "btrfs", "tmpfs", "nfs4", "vfat", "zfs"}) {
    EXPECT_FALSE(IsIgnoredFilesystemType(t)) << t;
  }
  for (const char* mp :
       {"/dev", "/dev/shm", "/proc", "/proc/sys/fs/binfmt_misc", "/sys", "/sys/fs/cgroup", "/run/credentials",
        "/run/credentials/x.service", "/var/lib/docker", "/var/lib/docker/overlay2/abc/merged"}) {
    EXPECT_TRUE(IsIgnoredMountPoint(mp)) << mp;
  }
  for (const char* mp : {"/", "/devices", "/home", "/run", "/var/lib/dockerd", "/srv/sys", "/boot/efi"}) {
    EXPECT_FALSE(IsIgnoredMountPoint(mp)) << mp;
  }
}

TEST(ParseMountsTest, ParsesAndUnescapesFields) {
  std::vector<std::string> errors;
  const std::vector<MountEntry> mounts = ParseMounts(
      "/dev/sdb1 /media/usb\\040stick vfat rw,relatime 0 0\n"
      "server:/export\\040dir /mnt/nfs\\134share nfs4 rw 0 0\n",
      "mounts", &errors);
  EXPECT_TRUE(errors.empty()) << ::testing::PrintToString(errors);
  ASSERT_EQ(mounts.size(), 2u);
  EXPECT_EQ(mounts[0].device, "/dev/sdb1");
  EXPECT_EQ(mounts[0].mount_point, "/media/usb stick");
  EXPECT_EQ(mounts[0].fstype, "vfat");
  EXPECT_EQ(mounts[1].device, "server:/export dir");
  EXPECT_EQ(mounts[1].mount_point, "/mnt/nfs\\share");
  EXPECT_EQ(mounts[1].fstype, "nfs4");
}

TEST(SelectMountsTest, KeepsLastEntryPerMountPointThenFilters) {
  const std::vector<MountEntry> selected = SelectMounts({
      {"/dev/vda1", "/data", "ext4"},
      {"/dev/vdb", "/", "ext4"},
      {"tmpfs", "/data", "tmpfs"},  // Shadows the ext4 mount at /data.
      {"overlay", "/", "overlay"},  // Shadows /; / is then ignored.
      {"/dev/vdc", "/srv", "xfs"},
  });
  ASSERT_EQ(selected.size(), 2u);
  EXPECT_EQ(selected[0].device, "tmpfs");
  EXPECT_EQ(selected[0].mount_point, "/data");
  EXPECT_EQ(selected[0].fstype, "tmpfs");
  EXPECT_EQ(selected[1].mount_point, "/srv");
}

TEST_F(HostCollectorTest, FilesystemsUnescapeFilterAndStatvfs) {
  const std::string real_dir = root_ + "/with space";
  fs::create_directories(real_dir);
  Write("mounts", MountsFile(root_ + "/with\\040space"));
  std::vector<std::string> errors;
  const std::vector<HostMetric> metrics = Collect(&errors);
  // The fake /proc tree is absent here, so only those five sources fail.
  EXPECT_EQ(errors.size(), 5u) << ::testing::PrintToString(errors);
  EXPECT_FALSE(AnyErrorContains(errors, "mounts")) << ::testing::PrintToString(errors);
  EXPECT_FALSE(AnyErrorContains(errors, "statvfs")) << ::testing::PrintToString(errors);

  // Only "/" and the temp dir survive the pseudo-fs and mount point filters.
  std::set<std::string> mount_points;
  for (const HostMetric& m : metrics) mount_points.insert(m.labels.at(2).second);
  EXPECT_EQ(mount_points, (std::set<std::string>{"/", real_dir}));
  EXPECT_EQ(metrics.size(), 2u * 5u);

  const Labels labels = {{"device", "tmpfs"}, {"fstype", "tmpfs"}, {"mountpoint", real_dir}};
  struct statvfs st {};
  ASSERT_EQ(::statvfs(real_dir.c_str(), &st), 0);
  const double block = static_cast<double>(st.f_frsize ? st.f_frsize : st.f_bsize);
  EXPECT_TRUE(HasMetric(metrics, "node_filesystem_size_bytes", labels, MetricKind::kGauge,
                        static_cast<double>(st.f_blocks) * block));
  EXPECT_TRUE(HasMetric(metrics, "node_filesystem_files", labels, MetricKind::kGauge, static_cast<double>(st.f_files)));
  const HostMetric* size = Find(metrics, "node_filesystem_size_bytes", labels);
  const HostMetric* free = Find(metrics, "node_filesystem_free_bytes", labels);
  const HostMetric* avail = Find(metrics, "node_filesystem_avail_bytes", labels);
  ASSERT_NE(size, nullptr);
  ASSERT_NE(free, nullptr);
  ASSERT_NE(avail, nullptr);
  EXPECT_GT(size->value, 0);
  EXPECT_LE(free->value, size->value);
  EXPECT_LE(avail->value, free->value);
  EXPECT_NE(Find(metrics, "node_filesystem_files_free", labels), nullptr);

  const Labels root = {{"device", "/dev/vda1"}, {"fstype", "ext4"}, {"mountpoint", "/"}};
  const HostMetric* root_size = Find(metrics, "node_filesystem_size_bytes", root);
  ASSERT_NE(root_size, nullptr);
  EXPECT_GT(root_size->value, 0);
  for (const HostMetric& m : metrics) EXPECT_EQ(m.kind, MetricKind::kGauge);
  ExpectWellFormed(metrics);
}

TEST_F(HostCollectorTest, StatvfsFailureIsAnErrorLineNotAStop) {
  WriteFakeProc();
  const std::string missing = root_ + "/not-mounted-here";
  Write("mounts", "/dev/vdz " + missing + " ext4 rw,relatime 0 0\n" + "/dev/vda1 / ext4 rw,relatime 0 0\n");
  std::vector<std::string> errors;
  const std::vector<HostMetric> metrics = Collect(&errors);

  ASSERT_EQ(errors.size(), 1u) << ::testing::PrintToString(errors);
  EXPECT_NE(errors[0].find(missing), std::string::npos) << errors[0];
  EXPECT_NE(errors[0].find("No such file or directory"), std::string::npos) << errors[0];

  EXPECT_EQ(Count(metrics, "node_filesystem_size_bytes"), 1u);
  EXPECT_NE(
      Find(metrics, "node_filesystem_size_bytes", {{"device", "/dev/vda1"}, {"fstype", "ext4"}, {"mountpoint", "/"}}),
      nullptr);
  // Every other source still comes through.
  EXPECT_NE(Find(metrics, "node_load1"), nullptr);
  EXPECT_NE(Find(metrics, "node_memory_MemTotal_bytes"), nullptr);
  EXPECT_EQ(Count(metrics, "node_cpu_seconds_total"), 16u);
  EXPECT_EQ(Count(metrics, "node_disk_io_now"), 5u);
  EXPECT_EQ(Count(metrics, "node_network_receive_bytes_total"), 3u);
}

TEST_F(HostCollectorTest, DuplicateMountPointKeepsLastEntry) {
  Write("mounts",
        "/dev/vda1 " + root_ + " ext4 rw 0 0\n" + "/dev/vda1 / ext4 rw 0 0\n" + "tmpfs " + root_ + " tmpfs rw 0 0\n");
  std::vector<std::string> errors;
  const std::vector<HostMetric> metrics = Collect(&errors);
  EXPECT_EQ(Count(metrics, "node_filesystem_size_bytes"), 2u);
  EXPECT_NE(
      Find(metrics, "node_filesystem_size_bytes", {{"device", "tmpfs"}, {"fstype", "tmpfs"}, {"mountpoint", root_}}),
      nullptr);
  EXPECT_EQ(
      Find(metrics, "node_filesystem_size_bytes", {{"device", "/dev/vda1"}, {"fstype", "ext4"}, {"mountpoint", root_}}),
      nullptr);
}

// ---------------------------------------------------------------------------
// Failure handling
// ---------------------------------------------------------------------------

TEST_F(HostCollectorTest, MissingFilesAreErrorLinesNamingTheFile) {
  std::vector<std::string> errors;
  const std::vector<HostMetric> metrics = Collect(&errors);
  EXPECT_TRUE(metrics.empty()) << ::testing::PrintToString(metrics);
  ASSERT_EQ(errors.size(), 6u) << ::testing::PrintToString(errors);
  for (const std::string& file : {paths_.proc + "/stat", paths_.proc + "/meminfo", paths_.proc + "/loadavg",
                                  paths_.proc + "/diskstats", paths_.proc + "/net/dev", paths_.mounts}) {
    EXPECT_TRUE(AnyErrorContains(errors, file + ": cannot open: No such file"))
        << file << " in " << ::testing::PrintToString(errors);
  }
  // A null error sink is allowed.
  EXPECT_TRUE(Collect(nullptr).empty());
}

TEST_F(HostCollectorTest, OneMissingFileDoesNotAffectTheOthers) {
  WriteFakeProc();
  fs::remove(fs::path(root_) / "proc/meminfo");
  Write("mounts", "");
  std::vector<std::string> errors;
  const std::vector<HostMetric> metrics = Collect(&errors);
  ASSERT_EQ(errors.size(), 1u) << ::testing::PrintToString(errors);
  EXPECT_NE(errors[0].find(paths_.proc + "/meminfo"), std::string::npos);
  EXPECT_EQ(Find(metrics, "node_memory_MemTotal_bytes"), nullptr);
  EXPECT_NE(Find(metrics, "node_load15"), nullptr);
  EXPECT_EQ(Count(metrics, "node_cpu_seconds_total"), 16u);
}

TEST_F(HostCollectorTest, NonRegularFileIsRefused) {
  // /dev/null stands in for a misconfigured path such as /dev/zero, which
  // would never reach EOF.
  paths_.proc = "/dev/null/nonexistent";
  paths_.mounts = "/dev/null";
  std::vector<std::string> errors;
  EXPECT_TRUE(Collect(&errors).empty());
  EXPECT_TRUE(AnyErrorContains(errors, "/dev/null: not a regular file")) << ::testing::PrintToString(errors);
}

TEST_F(HostCollectorTest, GarbageAndTruncatedLinesProduceNoBogusMetrics) {
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
  Write("mounts",
        "garbage\n"
        "tmpfs relative/path tmpfs rw 0 0\n"
        "/dev/vda1 / ext4 rw,relatime 0 0\n"
        "/dev/vdb /da");
  std::vector<std::string> errors;
  const std::vector<HostMetric> metrics = Collect(&errors);
  ExpectWellFormed(metrics);

  EXPECT_EQ(Count(metrics, "node_cpu_seconds_total"), 8u);
  EXPECT_NE(Find(metrics, "node_cpu_seconds_total", {{"cpu", "0"}, {"mode", "user"}}), nullptr);
  EXPECT_EQ(Count(metrics, "node_context_switches_total"), 0u);
  EXPECT_EQ(Count(metrics, "node_procs_running"), 0u);
  EXPECT_EQ(Count(metrics, "node_boot_time_seconds"), 0u);
  EXPECT_TRUE(HasMetric(metrics, "node_forks_total", {}, MetricKind::kCounter, 3522));

  std::set<std::string> memory;
  for (const HostMetric& m : metrics) {
    if (m.name.rfind("node_memory_", 0) == 0) memory.insert(m.name);
  }
  EXPECT_EQ(memory, (std::set<std::string>{"node_memory_MemTotal_bytes", "node_memory_SwapTotal_bytes"}));

  EXPECT_EQ(Count(metrics, "node_load1"), 0u);
  EXPECT_EQ(Count(metrics, "node_load5"), 0u);

  EXPECT_EQ(Count(metrics, "node_disk_io_now"), 1u);
  EXPECT_TRUE(HasMetric(metrics, "node_disk_reads_completed_total", {{"device", "vda"}}, MetricKind::kCounter, 29538));

  EXPECT_EQ(Count(metrics, "node_network_receive_bytes_total"), 1u);
  EXPECT_TRUE(HasMetric(metrics, "node_network_transmit_drop_total", {{"device", "eth0"}}, MetricKind::kCounter, 12));

  EXPECT_EQ(Count(metrics, "node_filesystem_size_bytes"), 1u);

  // One summary line per damaged file, naming it and its first bad line;
  // loadavg also reports that nothing usable was left.
  ASSERT_EQ(errors.size(), 7u) << ::testing::PrintToString(errors);
  for (const std::string& file : {paths_.proc + "/stat:3:", paths_.proc + "/meminfo:2:", paths_.proc + "/loadavg:1:",
                                  paths_.proc + "/diskstats:2:", paths_.proc + "/net/dev:4:", paths_.mounts + ":1:"}) {
    EXPECT_TRUE(AnyErrorContains(errors, file)) << file << " in " << ::testing::PrintToString(errors);
  }
  EXPECT_TRUE(AnyErrorContains(errors, paths_.proc + "/loadavg: no load averages found"))
      << ::testing::PrintToString(errors);
  EXPECT_EQ(errors[0], paths_.proc +
                           "/stat:3: malformed cpu1 line; line skipped (6 more "
                           "malformed line(s) skipped)");
}

TEST(ParseTest, EmptyInputIsHandled) {
  std::vector<std::string> errors;
  EXPECT_TRUE(ParseProcStat("", "stat", 100, &errors).empty());
  EXPECT_TRUE(ParseMeminfo("", "meminfo", &errors).empty());
  EXPECT_TRUE(ParseLoadavg("", "loadavg", &errors).empty());
  EXPECT_TRUE(ParseDiskstats("", "diskstats", &errors).empty());
  EXPECT_TRUE(ParseNetDev("", "net/dev", &errors).empty());
  EXPECT_TRUE(ParseMounts("", "mounts", &errors).empty());
  // stat and loadavg always have content on a real host; empty means broken.
  EXPECT_EQ(errors, (std::vector<std::string>{"stat: no per-cpu lines found", "loadavg: no load averages found"}));
}

// Cutting a file at any byte must never yield a value that the whole file
// does not have: a cut-off "24502528" must not be exported as 2450.
TEST(ParseTest, EveryTruncationYieldsOnlyTrueValues) {
  using Parser = std::vector<HostMetric> (*)(std::string_view, std::string_view, std::vector<std::string>*);
  const std::vector<std::pair<Parser, std::string_view>> cases = {
      {[](std::string_view t, std::string_view s, std::vector<std::string>* e) { return ParseProcStat(t, s, 100, e); },
       kStat},
      {ParseMeminfo, kMeminfo},
      {ParseLoadavg, kLoadavg},
      {ParseDiskstats, kDiskstats},
      {ParseNetDev, kNetDev},
  };
  for (const auto& [parse, text] : cases) {
    const std::vector<HostMetric> full = parse(text, "full", nullptr);
    for (size_t len = 0; len <= text.size(); ++len) {
      std::vector<std::string> errors;
      const std::vector<HostMetric> part = parse(text.substr(0, len), "cut", &errors);
      for (const HostMetric& m : part) {
        const HostMetric* want = Find(full, m.name, m.labels);
        ASSERT_NE(want, nullptr) << "len " << len << ": " << ::testing::PrintToString(m);
        ASSERT_EQ(m.value, want->value) << "len " << len << ": " << m.name;
        ASSERT_EQ(m.kind, want->kind);
      }
      ASSERT_LE(errors.size(), 2u);
    }
  }
}

// Random bytes drawn from the characters the parsers care about: nothing may
// crash, and whatever comes out must be well-formed.
TEST(ParseTest, RandomInputDoesNotCrash) {
  using namespace std::string_view_literals;
  // Built with ""sv so the embedded NUL is part of it.
  constexpr std::string_view kAlphabet = "0123456789     \t\n\n::||()\\-.abcpukBntrxvdeh_/\x00\xff"sv;
  std::mt19937 rng(12345);
  std::uniform_int_distribution<size_t> pick(0, kAlphabet.size() - 1);
  std::uniform_int_distribution<size_t> length(0, 400);
  for (int i = 0; i < 2000; ++i) {
    std::string text(length(rng), ' ');
    for (char& c : text) c = kAlphabet[pick(rng)];
    std::vector<std::string> errors;
    std::vector<HostMetric> metrics = ParseProcStat(text, "s", 100, &errors);
    for (auto parse : {ParseMeminfo, ParseLoadavg, ParseDiskstats, ParseNetDev}) {
      std::vector<HostMetric> more = parse(text, "s", &errors);
      metrics.insert(metrics.end(), more.begin(), more.end());
    }
    for (const MountEntry& m : SelectMounts(ParseMounts(text, "s", &errors))) {
      ASSERT_FALSE(m.mount_point.empty());
      ASSERT_EQ(m.mount_point.front(), '/');
    }
    ExpectWellFormed(metrics);
    ASSERT_LE(errors.size(), 8u);
    if (::testing::Test::HasFailure()) FAIL() << "input: " << text;
  }
}

// ---------------------------------------------------------------------------
// This machine
// ---------------------------------------------------------------------------

TEST(HostCollectorRealProcTest, CollectsFromThisHost) {
  std::vector<std::string> errors;
  const std::vector<HostMetric> metrics = HostCollector().Collect(&errors);
  // Mount points can legitimately fail statvfs (permissions, stale mounts),
  // but the core /proc files must parse cleanly on a real kernel.
  for (const char* file :
       {"/proc/stat", "/proc/meminfo", "/proc/loadavg", "/proc/diskstats", "/proc/net/dev", "/proc/self/mounts"}) {
    EXPECT_FALSE(AnyErrorContains(errors, std::string(file) + ":")) << ::testing::PrintToString(errors);
  }
  EXPECT_NE(Find(metrics, "node_load1"), nullptr);
  const HostMetric* mem_total = Find(metrics, "node_memory_MemTotal_bytes");
  ASSERT_NE(mem_total, nullptr);
  EXPECT_GT(mem_total->value, 0);
  EXPECT_GE(Count(metrics, "node_cpu_seconds_total"), 8u);
  ExpectWellFormed(metrics);

  // No series appears twice.
  std::set<std::pair<std::string, Labels>> series;
  for (const HostMetric& m : metrics) {
    EXPECT_TRUE(series.emplace(m.name, m.labels).second) << "duplicate " << ::testing::PrintToString(m);
  }
}

}  // namespace
}  // namespace sheaf::agent
