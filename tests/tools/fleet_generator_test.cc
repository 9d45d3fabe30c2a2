#include "tools/fleet_generator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace sheaf::tools {
namespace {

using Labels = std::vector<std::pair<std::string, std::string>>;

std::string Label(const FleetSeries& s, const std::string& name) {
  for (const auto& [k, v] : s.labels) {
    if (k == name) return v;
  }
  return "";
}

std::string Name(const FleetSeries& s) { return Label(s, "__name__"); }

bool StartsWith(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

// values[index][point], generated the way sheaf-loadgen does: point-major.
std::vector<std::vector<double>> Sample(FleetGenerator& gen, int points) {
  const size_t n = gen.series().size();
  std::vector<std::vector<double>> values(n, std::vector<double>(points));
  for (int p = 0; p < points; ++p) {
    for (size_t i = 0; i < n; ++i) values[i][p] = gen.Value(i, p);
  }
  return values;
}

// A fleet that covers the whole base catalogue and a few extra devices.
FleetOptions WideOptions() {
  FleetOptions o;
  o.hosts = 30;
  o.series_per_host = 48;
  o.points = 360;
  o.seed = 42;
  return o;
}

bool IsMultiple(double v, double unit) { return std::fmod(v, unit) == 0.0; }

// v is exactly the double nearest to some decimal with <= 2 places, which is
// what parsing "/proc"-style text yields. The absolute 1e-6 check on v * 100
// needs |v| well below 2^26, where the spacing of doubles alone would exceed
// it; per-cpu seconds (bounded by uptime, ~1.7e7 s) and load averages are.
bool HasAtMostTwoDecimals(double v) {
  return std::round(v * 100) / 100 == v && std::abs(v * 100 - std::round(v * 100)) < 1e-6;
}

bool IsCpu(const FleetSeries& s) { return Name(s) == "node_cpu_seconds_total"; }

TEST(FleetGeneratorTest, SameSeedGivesIdenticalData) {
  FleetOptions o = WideOptions();
  o.hosts = 10;
  o.points = 60;
  FleetGenerator a(o);
  FleetGenerator b(o);
  ASSERT_EQ(a.series().size(), b.series().size());
  for (size_t i = 0; i < a.series().size(); ++i) {
    EXPECT_EQ(a.series()[i].labels, b.series()[i].labels);
  }
  EXPECT_EQ(Sample(a, o.points), Sample(b, o.points));
}

TEST(FleetGeneratorTest, DifferentSeedsGiveDifferentData) {
  FleetOptions o = WideOptions();
  o.hosts = 10;
  o.points = 20;
  FleetGenerator a(o);
  o.seed = 43;
  FleetGenerator b(o);
  const auto va = Sample(a, o.points);
  const auto vb = Sample(b, o.points);
  size_t differ = 0, total = 0;
  for (size_t i = 0; i < va.size(); ++i) {
    for (int p = 0; p < o.points; ++p, ++total) differ += va[i][p] != vb[i][p];
  }
  EXPECT_GT(differ, total * 9 / 10);
}

TEST(FleetGeneratorTest, RandomAccessMatchesSequential) {
  FleetOptions o = WideOptions();
  o.hosts = 4;
  o.points = 50;
  FleetGenerator sequential(o);
  const auto expected = Sample(sequential, o.points);
  FleetGenerator random_access(o);
  for (size_t i = 0; i < expected.size(); ++i) {
    // Backwards (replays), then a forward jump, then a repeat.
    for (int p = o.points - 1; p >= 0; p -= 7) {
      ASSERT_EQ(random_access.Value(i, p), expected[i][p]) << i << " " << p;
    }
    ASSERT_EQ(random_access.Value(i, 33), expected[i][33]);
    ASSERT_EQ(random_access.Value(i, 33), expected[i][33]);
    ASSERT_EQ(random_access.Value(i, 0), expected[i][0]);
  }
}

TEST(FleetGeneratorTest, HostDataDoesNotDependOnFleetShape) {
  FleetOptions small;
  small.hosts = 5;
  small.series_per_host = 10;
  FleetOptions big = small;
  big.hosts = 40;
  big.series_per_host = 30;
  FleetGenerator a(small);
  FleetGenerator b(big);
  for (int host = 0; host < small.hosts; ++host) {
    for (int k = 0; k < small.series_per_host; ++k) {
      const size_t ia = host * small.series_per_host + k;
      const size_t ib = host * big.series_per_host + k;
      EXPECT_EQ(a.series()[ia].labels, b.series()[ib].labels);
      for (int p = 0; p < 20; ++p) EXPECT_EQ(a.Value(ia, p), b.Value(ib, p));
    }
  }
}

TEST(FleetGeneratorTest, SeriesCountAndUniqueLabelSets) {
  for (int per_host : {1, 2, 5, 10, 11, 17, 40, 41, 48, 100, 130}) {
    FleetOptions o;
    o.hosts = 7;
    o.series_per_host = per_host;
    FleetGenerator gen(o);
    ASSERT_EQ(gen.series().size(), static_cast<size_t>(7 * per_host));
    std::set<Labels> unique;
    for (const FleetSeries& s : gen.series()) unique.insert(s.labels);
    EXPECT_EQ(unique.size(), gen.series().size()) << per_host;
  }
}

TEST(FleetGeneratorTest, DefaultMixIsTenDistinctMetrics) {
  FleetOptions o;
  o.hosts = 3;
  FleetGenerator gen(o);
  ASSERT_EQ(gen.series().size(), 30u);
  for (int host = 0; host < o.hosts; ++host) {
    std::multiset<std::string> modes;
    std::map<std::string, int> families;
    for (int k = 0; k < 10; ++k) {
      const FleetSeries& s = gen.series()[host * 10 + k];
      const std::string name = Name(s);
      if (name == "node_cpu_seconds_total") {
        modes.insert(Label(s, "mode"));
        ++families["cpu"];
      } else if (StartsWith(name, "node_load")) {
        ++families["load"];
      } else if (StartsWith(name, "node_memory_")) {
        ++families["memory"];
      } else if (StartsWith(name, "node_disk_")) {
        ++families["disk"];
      } else if (StartsWith(name, "node_network_")) {
        ++families["network"];
      }
    }
    EXPECT_EQ(modes, (std::multiset<std::string>{"idle", "iowait", "system", "user"}));
    EXPECT_EQ(families,
              (std::map<std::string, int>{{"cpu", 4}, {"disk", 2}, {"load", 1}, {"memory", 1}, {"network", 2}}));
  }
}

TEST(FleetGeneratorTest, LabelsSortedAndComplete) {
  FleetOptions o = WideOptions();
  o.hosts = 1000;
  FleetGenerator gen(o);
  const std::set<std::string> regions = {"us-east-1",    "us-west-2",  "eu-west-1",
                                         "eu-central-1", "ap-south-1", "ap-northeast-1"};
  std::set<std::string> seen_regions;
  for (size_t i = 0; i < gen.series().size(); ++i) {
    const FleetSeries& s = gen.series()[i];
    ASSERT_FALSE(s.labels.empty());
    EXPECT_EQ(s.labels.front().first, "__name__");
    EXPECT_TRUE(std::is_sorted(s.labels.begin(), s.labels.end()));
    for (size_t j = 1; j < s.labels.size(); ++j) {
      EXPECT_NE(s.labels[j - 1].first, s.labels[j].first);
    }
    char host[32];
    std::snprintf(host, sizeof(host), "host-%04zu", i / o.series_per_host + 1);
    EXPECT_EQ(Label(s, "host"), host);
    EXPECT_EQ(Label(s, "job"), "node");
    EXPECT_EQ(regions.count(Label(s, "region")), 1u) << Label(s, "region");
    seen_regions.insert(Label(s, "region"));
    const std::string name = Name(s);
    if (name == "node_cpu_seconds_total") {
      // Per cpu, like node_exporter: cpu0 of every host.
      EXPECT_FALSE(Label(s, "mode").empty());
      EXPECT_EQ(Label(s, "cpu"), "0");
      std::vector<std::string> keys;
      for (const auto& [k, v] : s.labels) keys.push_back(k);
      EXPECT_EQ(keys, (std::vector<std::string>{"__name__", "cpu", "host", "job", "mode", "region"}));
    } else {
      EXPECT_EQ(Label(s, "cpu"), "") << name;
    }
    if (StartsWith(name, "node_disk_") || StartsWith(name, "node_network_") || StartsWith(name, "node_filesystem_")) {
      EXPECT_FALSE(Label(s, "device").empty()) << name;
    }
    const bool total = name.size() > 6 && name.ends_with("_total");
    EXPECT_EQ(s.kind == FleetMetricKind::kCounter, total) << name;
  }
  EXPECT_EQ(Label(gen.series().front(), "host"), "host-0001");
  EXPECT_EQ(Label(gen.series().back(), "host"), "host-1000");
  EXPECT_EQ(seen_regions, regions);

  FleetOptions many;
  many.hosts = 12345;
  many.series_per_host = 1;
  FleetGenerator wide(many);
  EXPECT_EQ(Label(wide.series().front(), "host"), "host-00001");
  EXPECT_EQ(Label(wide.series().back(), "host"), "host-12345");
}

TEST(FleetGeneratorTest, CountersNeverDecreaseAndAreNotConstant) {
  const FleetOptions o = WideOptions();
  FleetGenerator gen(o);
  const auto values = Sample(gen, o.points);
  int counters = 0;
  for (size_t i = 0; i < values.size(); ++i) {
    if (gen.series()[i].kind != FleetMetricKind::kCounter) continue;
    ++counters;
    const auto& v = values[i];
    // Started at a "host up for days" offset, not at zero.
    EXPECT_GT(v[0], 0.0) << i;
    std::set<double> increments;
    for (int p = 1; p < o.points; ++p) {
      ASSERT_GE(v[p], v[p - 1]) << i << " point " << p;
      increments.insert(v[p] - v[p - 1]);
    }
    EXPECT_GT(v.back(), v.front()) << i;
    // Randomized increments, not a constant rate.
    EXPECT_GE(increments.size(), 3u) << Name(gen.series()[i]);
  }
  EXPECT_GT(counters, 0);
}

TEST(FleetGeneratorTest, SomeIncrementsAreZero) {
  const FleetOptions o = WideOptions();
  FleetGenerator gen(o);
  const auto values = Sample(gen, o.points);
  size_t zero = 0, total = 0;
  for (size_t i = 0; i < values.size(); ++i) {
    if (!StartsWith(Name(gen.series()[i]), "node_disk_")) continue;
    for (int p = 1; p < o.points; ++p, ++total) {
      zero += values[i][p] == values[i][p - 1];
    }
  }
  EXPECT_GT(zero, 0u);
  EXPECT_LT(zero, total / 2);
}

TEST(FleetGeneratorTest, GaugesRandomWalk) {
  const FleetOptions o = WideOptions();
  FleetGenerator gen(o);
  const auto values = Sample(gen, o.points);
  for (size_t i = 0; i < values.size(); ++i) {
    if (gen.series()[i].kind != FleetMetricKind::kGauge) continue;
    const auto& v = values[i];
    std::set<double> distinct(v.begin(), v.end());
    EXPECT_GE(distinct.size(), 3u) << Name(gen.series()[i]);
    bool up = false, down = false;
    for (int p = 1; p < o.points; ++p) {
      up |= v[p] > v[p - 1];
      down |= v[p] < v[p - 1];
    }
    // Filesystems mostly fill up; everything else goes both ways.
    if (!StartsWith(Name(gen.series()[i]), "node_filesystem_")) {
      EXPECT_TRUE(up && down) << Name(gen.series()[i]);
    }
    EXPECT_GE(*distinct.begin(), 0.0);
  }
}

TEST(FleetGeneratorTest, CpuSecondsAreHundredths) {
  const FleetOptions o = WideOptions();
  FleetGenerator gen(o);
  const auto values = Sample(gen, o.points);
  std::set<std::string> modes;
  for (size_t i = 0; i < values.size(); ++i) {
    if (!IsCpu(gen.series()[i])) continue;
    modes.insert(Label(gen.series()[i], "mode"));
    bool fractional = false;
    for (double v : values[i]) {
      // One cpu's seconds: at most its uptime, far below 2^26, so the
      // strict hundredths check applies to every value.
      ASSERT_LT(v, 1e8);
      ASSERT_TRUE(HasAtMostTwoDecimals(v)) << v;
      fractional |= v != std::floor(v);
    }
    EXPECT_TRUE(fractional);  // genuinely 0.01 resolution, not whole seconds
  }
  EXPECT_EQ(modes, (std::set<std::string>{"idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user"}));
}

TEST(FleetGeneratorTest, CpuModesAddUpToHostCapacity) {
  // Per cpu, like /proc/stat: the eight modes of cpu0 together advance by
  // the wall time of each step (idle is what the busy modes leave), up to a
  // little scrape/tick jitter, and start from the host's uptime.
  for (int64_t interval_ms : {10'000, 1'000, 60'000}) {
    FleetOptions o = WideOptions();
    o.series_per_host = 24;  // all eight modes
    o.points = 120;
    o.interval_ms = interval_ms;
    FleetGenerator gen(o);
    const auto values = Sample(gen, o.points);
    const double interval_s = o.interval_ms / 1000.0;
    for (int host = 0; host < o.hosts; ++host) {
      std::vector<size_t> cpu;
      size_t idle = 0;
      for (int k = 0; k < o.series_per_host; ++k) {
        const size_t i = host * o.series_per_host + k;
        if (!IsCpu(gen.series()[i])) continue;
        ASSERT_EQ(Label(gen.series()[i], "cpu"), "0");
        cpu.push_back(i);
        if (Label(gen.series()[i], "mode") == "idle") idle = i;
      }
      ASSERT_EQ(cpu.size(), 8u);

      // Up between ~7 hours and ~200 days.
      double uptime = 0;
      for (size_t i : cpu) uptime += values[i][0];
      EXPECT_GE(uptime, 0.3 * 86400) << host;
      EXPECT_LE(uptime, 200.3 * 86400 + 3600) << host;

      double total = 0;
      for (int p = 1; p < o.points; ++p) {
        double step = 0;
        for (size_t i : cpu) {
          const double delta = values[i][p] - values[i][p - 1];
          EXPECT_LE(delta, interval_s * 1.01 + 0.01) << host << " " << p;
          step += delta;
        }
        // Jitter is ~0.2% of the interval, bounded at 0.7%, plus rounding.
        ASSERT_NEAR(step, interval_s, 0.01 * interval_s + 0.05)
            << "interval " << interval_s << " host " << host << " point " << p;
        total += step;
      }
      const double wall = interval_s * (o.points - 1);
      EXPECT_NEAR(total, wall, 0.002 * wall) << host;
      const double idle_s = values[idle].back() - values[idle].front();
      EXPECT_GT(idle_s, 0.3 * total) << host;
      EXPECT_LT(idle_s, total) << host;
    }
  }
}

TEST(FleetGeneratorTest, DiskBytesAreSectorMultiples) {
  const FleetOptions o = WideOptions();
  FleetGenerator gen(o);
  const auto values = Sample(gen, o.points);
  int disk = 0;
  for (size_t i = 0; i < values.size(); ++i) {
    const std::string name = Name(gen.series()[i]);
    if (name != "node_disk_read_bytes_total" && name != "node_disk_written_bytes_total") {
      continue;
    }
    ++disk;
    for (double v : values[i]) ASSERT_TRUE(IsMultiple(v, 512)) << v;
  }
  EXPECT_GT(disk, 0);
}

TEST(FleetGeneratorTest, NetworkCountersAreIntegral) {
  const FleetOptions o = WideOptions();
  FleetGenerator gen(o);
  const auto values = Sample(gen, o.points);
  int net = 0;
  for (size_t i = 0; i < values.size(); ++i) {
    if (!StartsWith(Name(gen.series()[i]), "node_network_")) continue;
    ++net;
    for (double v : values[i]) ASSERT_EQ(v, std::floor(v)) << v;
  }
  EXPECT_GT(net, 0);
}

TEST(FleetGeneratorTest, MemoryIsKibibytesAndFilesystemIsBlocks) {
  const FleetOptions o = WideOptions();
  FleetGenerator gen(o);
  const auto values = Sample(gen, o.points);
  int memory = 0, filesystem = 0;
  for (size_t i = 0; i < values.size(); ++i) {
    const std::string name = Name(gen.series()[i]);
    if (StartsWith(name, "node_memory_")) {
      ++memory;
      for (double v : values[i]) ASSERT_TRUE(IsMultiple(v, 1024)) << v;
    } else if (name == "node_filesystem_avail_bytes") {
      ++filesystem;
      for (double v : values[i]) ASSERT_TRUE(IsMultiple(v, 4096)) << v;
    }
  }
  EXPECT_GT(memory, 0);
  EXPECT_GT(filesystem, 0);
}

TEST(FleetGeneratorTest, LoadHasTwoDecimalsAndWalks) {
  const FleetOptions o = WideOptions();
  FleetGenerator gen(o);
  const auto values = Sample(gen, o.points);
  int loads = 0;
  for (size_t i = 0; i < values.size(); ++i) {
    if (!StartsWith(Name(gen.series()[i]), "node_load")) continue;
    ++loads;
    std::set<double> distinct;
    for (double v : values[i]) {
      ASSERT_TRUE(HasAtMostTwoDecimals(v)) << v;
      ASSERT_GE(v, 0.0);
      distinct.insert(v);
    }
    EXPECT_GE(distinct.size(), 3u);
  }
  EXPECT_EQ(loads, 3 * o.hosts);
}

TEST(FleetGeneratorTest, TimestampsAreRegular) {
  FleetOptions o;
  o.hosts = 1;
  o.start_ms = 1'700'000'000'000;
  o.interval_ms = 15'000;
  FleetGenerator gen(o);
  EXPECT_EQ(gen.TimestampMs(0), o.start_ms);
  for (int p = 1; p < o.points; ++p) {
    EXPECT_EQ(gen.TimestampMs(p) - gen.TimestampMs(p - 1), o.interval_ms);
  }
  EXPECT_EQ(gen.TimestampMs(1000), o.start_ms + 1000 * o.interval_ms);
}

TEST(FleetGeneratorTest, HostsHaveDifferentRates) {
  FleetOptions o;
  o.hosts = 50;
  o.points = 60;
  FleetGenerator gen(o);
  const auto values = Sample(gen, o.points);
  std::map<std::string, std::vector<double>> rates;  // metric -> per host
  for (size_t i = 0; i < values.size(); ++i) {
    const FleetSeries& s = gen.series()[i];
    if (s.kind != FleetMetricKind::kCounter) continue;
    const std::string key = Name(s) + Label(s, "mode");
    rates[key].push_back(values[i].back() - values[i].front());
  }
  for (const auto& [metric, per_host] : rates) {
    ASSERT_EQ(per_host.size(), static_cast<size_t>(o.hosts)) << metric;
    const std::set<double> distinct(per_host.begin(), per_host.end());
    EXPECT_GE(distinct.size(), per_host.size() * 9 / 10) << metric;
    const auto [lo, hi] = std::minmax_element(per_host.begin(), per_host.end());
    ASSERT_GT(*lo, 0.0) << metric;
    // Fleet spans small and big, idle and busy hosts. Idle seconds of one
    // cpu are what its busy time leaves of the wall time, so they only range
    // from "mostly busy" to "all idle".
    const bool cpu_idle = metric == "node_cpu_seconds_totalidle";
    EXPECT_GT(*hi / *lo, cpu_idle ? 1.3 : 4.0) << metric;
  }
}

TEST(FleetGeneratorTest, RejectsBadArguments) {
  FleetOptions o;
  o.hosts = 0;
  EXPECT_THROW(FleetGenerator{o}, std::invalid_argument);
  o = FleetOptions();
  o.series_per_host = 0;
  EXPECT_THROW(FleetGenerator{o}, std::invalid_argument);
  o = FleetOptions();
  o.interval_ms = 0;
  EXPECT_THROW(FleetGenerator{o}, std::invalid_argument);
  o = FleetOptions();
  o.hosts = 2;
  FleetGenerator gen(o);
  EXPECT_THROW(gen.Value(gen.series().size(), 0), std::out_of_range);
  EXPECT_THROW(gen.Value(0, -1), std::out_of_range);
}

}  // namespace
}  // namespace sheaf::tools
