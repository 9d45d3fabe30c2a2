// Tests of the host collector facade: the registry of collectors, enabling
// and disabling them by name, failure isolation between collectors, the
// per-collector success and duration figures, and a run on this host.
#include "agent/host_collector.h"  // The forwarding header main.cc includes.

#include <filesystem>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "tests/agent/collectors/test_util.h"

namespace sheaf::agent {
namespace {

using namespace collectors_test;  // NOLINT: test helpers

const std::vector<std::string> kAllCollectors = {"cpu",       "stat",   "meminfo",    "vmstat", "loadavg", "pressure",
                                                 "diskstats", "netdev", "filesystem", "time",   "filefd",  "process"};

// The value of node_scrape_collector_success{collector=name}, or -1.
double Success(const Metrics& metrics, const std::string& name) {
  const HostMetric* m = Find(metrics, "node_scrape_collector_success", {{"collector", name}});
  return m == nullptr ? -1 : m->value;
}

std::set<std::string> Families(const Metrics& metrics) {
  std::set<std::string> names;
  for (const HostMetric& m : metrics) names.insert(m.name);
  return names;
}

TEST(HostCollectorNamesTest, NodeExporterNamesInRunOrder) {
  EXPECT_EQ(HostCollectorNames(), kAllCollectors);
  EXPECT_EQ(HostCollector(HostPaths{}).enabled().size(), kAllCollectors.size());
}

TEST(ValidateHostCollectorOptionsTest, UnknownNameIsAnErrorListingTheKnownOnes) {
  EXPECT_TRUE(ValidateHostCollectorOptions({}).ok());
  EXPECT_TRUE(ValidateHostCollectorOptions({.disabled = {"cpu", "process"}}).ok());
  const absl::Status status = ValidateHostCollectorOptions({.disabled = {"cpu", "diskstat"}});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "unknown collector \"diskstat\"; the collectors are: cpu, stat, meminfo, vmstat, loadavg, pressure, "
            "diskstats, netdev, filesystem, time, filefd, process");
}

class HostCollectorTest : public FakeTree {
 protected:
  Metrics Collect(Errors* errors, HostCollectorOptions options = {}) {
    return HostCollector(paths_, std::move(options)).Collect(errors);
  }
};

TEST_F(HostCollectorTest, FakeTreeGivesEveryCollectorsMetrics) {
  WriteFakeProc();
  Errors errors;
  const Metrics metrics = Collect(&errors);
  EXPECT_TRUE(errors.empty()) << ::testing::PrintToString(errors);
  ExpectWellFormed(metrics);
  for (const std::string& name : kAllCollectors) EXPECT_EQ(Success(metrics, name), 1) << name;
  EXPECT_EQ(Count(metrics, "node_scrape_collector_duration_seconds"), kAllCollectors.size());
  // A sample of each collector (the collectors' own tests check values).
  for (const char* family :
       {"node_cpu_seconds_total", "node_boot_time_seconds", "node_memory_MemTotal_bytes", "node_vmstat_pswpin",
        "node_load1", "node_pressure_io_stalled_seconds_total", "node_disk_io_now", "node_network_receive_bytes_total",
        "node_time_seconds", "node_filefd_maximum", "process_open_fds"}) {
    EXPECT_EQ(Families(metrics).count(family), 1u) << family;
  }
  EXPECT_EQ(Count(metrics, "node_cpu_seconds_total"), 16u);
  EXPECT_EQ(CountPrefix(metrics, "node_filesystem_"), 0u);  // The mounts file is empty.

  // No series appears twice.
  std::set<std::pair<std::string, Labels>> series;
  for (const HostMetric& m : metrics) {
    EXPECT_TRUE(series.emplace(m.name, m.labels).second) << "duplicate " << ::testing::PrintToString(m);
  }
}

TEST_F(HostCollectorTest, DisabledCollectorsDoNotRun) {
  WriteFakeProc();
  HostCollectorOptions options{.disabled = {"cpu", "meminfo", "process"}};
  EXPECT_EQ(HostCollector(paths_, options).enabled(),
            (std::vector<std::string_view>{"stat", "vmstat", "loadavg", "pressure", "diskstats", "netdev", "filesystem",
                                           "time", "filefd"}));
  Errors errors;
  const Metrics metrics = Collect(&errors, options);
  EXPECT_TRUE(errors.empty()) << ::testing::PrintToString(errors);
  EXPECT_EQ(CountPrefix(metrics, "node_cpu_"), 0u);
  EXPECT_EQ(CountPrefix(metrics, "node_memory_"), 0u);
  EXPECT_EQ(CountPrefix(metrics, "process_"), 0u);
  EXPECT_EQ(Success(metrics, "cpu"), -1);  // Not run, so no figure at all.
  EXPECT_EQ(Success(metrics, "stat"), 1);
  EXPECT_EQ(Count(metrics, "node_scrape_collector_success"), 9u);
  EXPECT_NE(Find(metrics, "node_boot_time_seconds"), nullptr);
}

TEST_F(HostCollectorTest, CpuAggregateOption) {
  WriteFakeProc();
  Errors errors;
  const Metrics metrics = Collect(&errors, {.disabled = {}, .cpu_per_cpu = false});
  EXPECT_TRUE(errors.empty()) << ::testing::PrintToString(errors);
  EXPECT_EQ(Count(metrics, "node_cpu_seconds_total"), 8u);
  EXPECT_NE(Find(metrics, "node_cpu_seconds_total", {{"mode", "idle"}}), nullptr);
}

TEST_F(HostCollectorTest, MissingFilesAreErrorLinesNamingTheFile) {
  Errors errors;
  const Metrics metrics = Collect(&errors);
  const std::vector<std::pair<std::string, std::string>> failing = {
      {"cpu", paths_.proc + "/stat"},
      {"stat", paths_.proc + "/stat"},
      {"meminfo", paths_.proc + "/meminfo"},
      {"vmstat", paths_.proc + "/vmstat"},
      {"loadavg", paths_.proc + "/loadavg"},
      {"diskstats", paths_.proc + "/diskstats"},
      {"netdev", paths_.proc + "/net/dev"},
      {"filesystem", paths_.mounts},
      {"filefd", paths_.proc + "/sys/fs/file-nr"},
      {"process", paths_.proc + "/self/stat"},
  };
  for (const auto& [name, file] : failing) {
    EXPECT_EQ(Success(metrics, name), 0) << name;
    EXPECT_TRUE(AnyErrorContains(errors, file + ": cannot open: No such file or directory"))
        << file << " in " << ::testing::PrintToString(errors);
  }
  EXPECT_EQ(errors.size(), failing.size()) << ::testing::PrintToString(errors);
  // No PSI is a kernel without it, not a failure; the clock needs no file.
  EXPECT_EQ(Success(metrics, "pressure"), 1);
  EXPECT_EQ(Success(metrics, "time"), 1);
  EXPECT_EQ(Families(metrics),
            (std::set<std::string>{"node_scrape_collector_success", "node_scrape_collector_duration_seconds",
                                   "node_time_seconds", "node_time_zone_offset_seconds"}));
  // A null error sink is allowed.
  EXPECT_EQ(HostCollector(paths_).Collect(nullptr).size(), metrics.size());
}

TEST_F(HostCollectorTest, OneMissingFileDoesNotAffectTheOthers) {
  WriteFakeProc();
  Remove("proc/meminfo");
  Errors errors;
  const Metrics metrics = Collect(&errors);
  ASSERT_EQ(errors.size(), 1u) << ::testing::PrintToString(errors);
  EXPECT_NE(errors[0].find(paths_.proc + "/meminfo"), std::string::npos);
  EXPECT_EQ(CountPrefix(metrics, "node_memory_"), 0u);
  EXPECT_EQ(Success(metrics, "meminfo"), 0);
  EXPECT_NE(Find(metrics, "node_load15"), nullptr);
  EXPECT_EQ(Count(metrics, "node_cpu_seconds_total"), 16u);
  for (const std::string& name : kAllCollectors) {
    if (name != "meminfo") {
      EXPECT_EQ(Success(metrics, name), 1) << name;
    }
  }
}

TEST_F(HostCollectorTest, NonRegularFileIsRefused) {
  // /dev/null stands in for a misconfigured path such as /dev/zero, which
  // would never reach EOF.
  paths_.proc = "/dev/null/nonexistent";
  paths_.mounts = "/dev/null";
  Errors errors;
  const Metrics metrics = Collect(&errors);
  EXPECT_EQ(Success(metrics, "filesystem"), 0);
  EXPECT_TRUE(AnyErrorContains(errors, "/dev/null: not a regular file")) << ::testing::PrintToString(errors);
}

TEST_F(HostCollectorTest, EveryCollectionRereadsTheFiles) {
  WriteFakeProc();
  HostCollector collector(paths_);
  Errors errors;
  EXPECT_TRUE(HasMetric(collector.Collect(&errors), "node_load1", {}, MetricKind::kGauge, 0.01));
  Write("proc/loadavg", "7.5 0.03 1.50 1/84 3525\n");
  // Bigger than the reader's first buffer, to make it grow.
  Write("proc/meminfo", std::string(kMeminfo) + std::string(64 << 10, '\n'));
  const Metrics second = collector.Collect(&errors);
  EXPECT_TRUE(HasMetric(second, "node_load1", {}, MetricKind::kGauge, 7.5));
  EXPECT_NE(Find(second, "node_memory_MemTotal_bytes"), nullptr);
  Remove("proc/loadavg");
  errors.clear();
  const Metrics third = collector.Collect(&errors);
  EXPECT_EQ(Find(third, "node_load1"), nullptr);
  EXPECT_EQ(errors.size(), 1u) << ::testing::PrintToString(errors);
  EXPECT_TRUE(errors.empty() || errors[0].starts_with(paths_.proc + "/loadavg: cannot open"));
}

TEST(SourceReaderTest, RefusesFilesOverTheLimit) {
  sheaf::agent::SourceReader reader;
  const std::string path = (std::filesystem::temp_directory_path() / "sheaf_source_reader_big").string();
  {
    std::ofstream out(path, std::ios::binary);
    out << std::string(SourceReader::kMaxFileBytes + 1, 'x');
  }
  std::string error;
  EXPECT_EQ(reader.Read(path, &error), nullptr);
  EXPECT_EQ(error, path + ": larger than 16777216 bytes, not read");
  std::filesystem::resize_file(path, SourceReader::kMaxFileBytes);
  // Still this round's answer until the next round.
  EXPECT_EQ(reader.Read(path, &error), nullptr);
  reader.NewRound();
  const std::string* content = reader.Read(path, &error);
  ASSERT_NE(content, nullptr) << error;
  EXPECT_EQ(content->size(), SourceReader::kMaxFileBytes);
  std::filesystem::remove(path);
}

// ---------------------------------------------------------------------------
// This machine
// ---------------------------------------------------------------------------

TEST(HostCollectorRealProcTest, CollectsFromThisHost) {
  HostCollector collector;
  Errors errors;
  const Metrics metrics = collector.Collect(&errors);
  // Mount points can legitimately fail statvfs (permissions, stale mounts),
  // but every collector must work on a real kernel.
  for (const std::string& name : kAllCollectors) {
    EXPECT_EQ(Success(metrics, name), 1) << name << ": " << ::testing::PrintToString(errors);
  }
  for (const char* file : {"/proc/stat", "/proc/meminfo", "/proc/loadavg", "/proc/diskstats", "/proc/net/dev",
                           "/proc/self/mounts", "/proc/vmstat", "/proc/sys/fs/file-nr", "/proc/self/"}) {
    EXPECT_FALSE(AnyErrorContains(errors, file)) << ::testing::PrintToString(errors);
  }
  EXPECT_NE(Find(metrics, "node_load1"), nullptr);
  const HostMetric* mem_total = Find(metrics, "node_memory_MemTotal_bytes");
  ASSERT_NE(mem_total, nullptr);
  EXPECT_GT(mem_total->value, 0);
  EXPECT_GE(Count(metrics, "node_cpu_seconds_total"), 8u);
  EXPECT_GE(Count(metrics, "node_filesystem_size_bytes"), 1u);
  ExpectWellFormed(metrics);

  // No series appears twice.
  std::set<std::pair<std::string, Labels>> series;
  for (const HostMetric& m : metrics) {
    EXPECT_TRUE(series.emplace(m.name, m.labels).second) << "duplicate " << ::testing::PrintToString(m);
  }
  // A second collection finds the same series.
  Errors again;
  const Metrics second = collector.Collect(&again);
  EXPECT_EQ(Families(second), Families(metrics));
}

}  // namespace
}  // namespace sheaf::agent
