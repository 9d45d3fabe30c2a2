#include "tools/fleet_generator.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace sheaf::tools {
namespace {

// ---------------------------------------------------------------------------
// Randomness. Everything is integer mixing plus +, -, *, / and sqrt on
// doubles (all correctly rounded under IEEE-754), so the same seed gives the
// same fleet with any compiler or standard library.

constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ULL;

constexpr uint64_t Mix64(uint64_t z) {  // splitmix64 finalizer
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Distinct salts keep the streams for host profiles, series noise, initial
// offsets and activity independent even though they share (seed, host).
enum Salt : uint64_t {
  kSaltHost = 1,
  kSaltRegion = 2,
  kSaltSeries = 3,
  kSaltInit = 4,
  kSaltActivity = 5,
};

uint64_t Hash(uint64_t seed, uint64_t a, uint64_t b, uint64_t c) {
  uint64_t h = Mix64(seed + kGolden);
  h = Mix64(h + kGolden + a);
  h = Mix64(h + kGolden + b);
  return Mix64(h + kGolden + c);
}

double ToUnit(uint64_t x) {  // [0, 1) with 53 random bits
  return static_cast<double>(x >> 11) * 0x1.0p-53;
}

// xoshiro256**: fast, small, and its output is fully specified.
class Rng {
 public:
  Rng() = default;
  explicit Rng(uint64_t seed) {
    uint64_t x = seed;
    for (uint64_t& s : s_) {
      x += kGolden;
      s = Mix64(x);
    }
  }

  uint64_t Next() {
    const uint64_t result = std::rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = std::rotl(s_[3], 45);
    return result;
  }

  double Uniform() { return ToUnit(Next()); }
  double Uniform(double lo, double hi) { return lo + (hi - lo) * Uniform(); }
  bool Chance(double p) { return Uniform() < p; }

  // Approximately standard normal (Irwin-Hall of 4 uniforms). Bell-shaped
  // and bounded at +-3.46, which avoids log/cos whose last bits vary by libm.
  double Normal() {
    const double sum = Uniform() + Uniform() + Uniform() + Uniform();
    return (sum - 2.0) * 1.7320508075688772;
  }

  template <typename T, size_t N>
  const T& Pick(const std::array<T, N>& table) {
    return table[static_cast<size_t>(Next() % N)];
  }

 private:
  std::array<uint64_t, 4> s_{};
};

// ---------------------------------------------------------------------------
// Catalogue.

enum class Family : uint8_t {
  kCpu,          // counter, hundredths of a second, one non-idle mode of cpu0
  kCpuIdle,      // counter, hundredths; cpu0's interval minus its busy time
  kLoad,         // gauge, hundredths
  kMemory,       // gauge, KiB
  kFilesystem,   // gauge, 4096-byte blocks
  kDiskBytes,    // counter, 512-byte sectors
  kDiskOps,      // counter, integer
  kNetBytes,     // counter, integer
  kNetPackets,   // counter, integer
  kHostCounter,  // counter, integer (context switches, interrupts)
  kProcs,        // gauge, integer
  kFilefd,       // gauge, integer
};

enum CpuMode { kUser, kSystem, kIowait, kSoftirq, kNice, kIrq, kSteal, kNumBusyModes };
constexpr std::array<const char*, kNumBusyModes> kCpuModeNames = {"user", "system", "iowait", "softirq",
                                                                  "nice", "irq",    "steal"};
// Typical split of busy time across modes; perturbed per host.
constexpr std::array<double, kNumBusyModes> kCpuModeShare = {0.60, 0.22, 0.05, 0.05, 0.03, 0.015, 0.02};

// node_cpu_seconds_total is exported per cpu; the fleet carries cpu0 only.
constexpr const char* kCpuLabel = "0";

double CpuModeNoise(int mode) { return mode == kUser || mode == kSystem ? 0.35 : 0.6; }
double CpuModeActivityWeight(int mode) { return mode == kSteal ? 0.2 : 1.0; }
constexpr double kCpuBurstProb = 0.01;

enum MemField { kAvailable, kCached, kFree, kBuffers, kActive, kInactive, kDirty };
struct MemSpec {
  const char* name;
  double frac_lo, frac_hi;  // share of MemTotal the field hovers around
  double step_frac;         // per-step walk, as a share of MemTotal
  double activity_weight;   // busier host => less available, more active
};
constexpr std::array<MemSpec, 7> kMemSpecs = {{
    {"node_memory_MemAvailable_bytes", 0.25, 0.85, 0.0015, -0.3},
    {"node_memory_Cached_bytes", 0.10, 0.50, 0.0008, 0.1},
    {"node_memory_MemFree_bytes", 0.02, 0.25, 0.0015, -0.3},
    {"node_memory_Buffers_bytes", 0.003, 0.03, 0.0001, 0.05},
    {"node_memory_Active_bytes", 0.15, 0.50, 0.0010, 0.2},
    {"node_memory_Inactive_bytes", 0.10, 0.35, 0.0008, 0.1},
    {"node_memory_Dirty_bytes", 0.00005, 0.002, 0.0, 1.0},  // see MakeGen
}};

enum Direction { kIn, kOut };  // disk read / net receive vs write / transmit

struct Entry {
  std::string name;
  std::vector<std::pair<std::string, std::string>> labels;  // beyond the 4
  Family family;
  int variant = 0;        // cpu mode, load window, mem field, direction...
  double share_lo = 1.0;  // this device's share of the host's traffic
  double share_hi = 1.0;
  bool secondary_fs = false;
};

Entry Cpu(int mode) {
  return {"node_cpu_seconds_total", {{"cpu", kCpuLabel}, {"mode", kCpuModeNames[mode]}}, Family::kCpu, mode};
}
Entry CpuIdle() { return {"node_cpu_seconds_total", {{"cpu", kCpuLabel}, {"mode", "idle"}}, Family::kCpuIdle}; }
Entry Load(int minutes) { return {"node_load" + std::to_string(minutes), {}, Family::kLoad, minutes}; }
Entry Mem(int field) { return {kMemSpecs[field].name, {}, Family::kMemory, field}; }
Entry Dev(Family family, int dir, const std::string& device, double lo, double hi) {
  std::string name;
  switch (family) {
    case Family::kDiskBytes:
      name = dir == kIn ? "node_disk_read_bytes_total" : "node_disk_written_bytes_total";
      break;
    case Family::kDiskOps:
      name = dir == kIn ? "node_disk_reads_completed_total" : "node_disk_writes_completed_total";
      break;
    case Family::kNetBytes:
      name = dir == kIn ? "node_network_receive_bytes_total" : "node_network_transmit_bytes_total";
      break;
    default:
      name = dir == kIn ? "node_network_receive_packets_total" : "node_network_transmit_packets_total";
      break;
  }
  return {name, {{"device", device}}, family, dir, lo, hi};
}
Entry Fs(const char* device, const char* fstype, const char* mountpoint, bool secondary) {
  Entry e{"node_filesystem_avail_bytes",
          {{"device", device}, {"fstype", fstype}, {"mountpoint", mountpoint}},
          Family::kFilesystem};
  e.secondary_fs = secondary;
  return e;
}

// The fixed part of the catalogue. The first 10 are the default mix and are
// interleaved so that every short prefix still mixes families.
std::vector<Entry> BaseCatalogue() {
  using F = Family;
  return {
      Cpu(kUser),                                 // 0
      Load(1),                                    // 1
      Mem(kAvailable),                            // 2
      Dev(F::kDiskBytes, kIn, "sda", 0.8, 1.2),   // 3
      Dev(F::kNetBytes, kIn, "eth0", 0.8, 1.2),   // 4
      Cpu(kSystem),                               // 5
      Dev(F::kDiskBytes, kOut, "sda", 0.8, 1.2),  // 6
      Dev(F::kNetBytes, kOut, "eth0", 0.8, 1.2),  // 7
      CpuIdle(),                                  // 8
      Cpu(kIowait),                               // 9
      Load(5),
      Mem(kCached),
      Fs("/dev/sda1", "ext4", "/", false),
      Cpu(kSoftirq),
      Dev(F::kNetPackets, kIn, "eth0", 0.8, 1.2),
      Dev(F::kNetPackets, kOut, "eth0", 0.8, 1.2),
      Dev(F::kDiskOps, kIn, "sda", 0.8, 1.2),
      Dev(F::kDiskOps, kOut, "sda", 0.8, 1.2),
      Load(15),
      Mem(kFree),
      Mem(kBuffers),
      Cpu(kNice),
      Cpu(kIrq),
      Cpu(kSteal),
      {"node_context_switches_total", {}, F::kHostCounter, 0},
      {"node_intr_total", {}, F::kHostCounter, 1},
      {"node_procs_running", {}, F::kProcs},
      {"node_filefd_allocated", {}, F::kFilefd},
      Mem(kActive),
      Mem(kInactive),
      Mem(kDirty),
      Fs("/dev/sdb1", "xfs", "/data", true),
      Dev(F::kDiskBytes, kIn, "sdb", 0.1, 0.6),
      Dev(F::kDiskBytes, kOut, "sdb", 0.1, 0.6),
      Dev(F::kNetBytes, kIn, "lo", 0.02, 0.2),
      Dev(F::kNetBytes, kOut, "lo", 0.02, 0.2),
      Dev(F::kDiskOps, kIn, "sdb", 0.1, 0.6),
      Dev(F::kDiskOps, kOut, "sdb", 0.1, 0.6),
      Dev(F::kNetPackets, kIn, "lo", 0.02, 0.2),
      Dev(F::kNetPackets, kOut, "lo", 0.02, 0.2),
  };
}

// Catalogue entry k: the base list, then an unbounded run of extra devices
// (nvme<g>n1, eth<g+1>; neither appears in the base) so that any
// series_per_host yields distinct label sets.
Entry CatalogueEntry(const std::vector<Entry>& base, int k) {
  if (k < static_cast<int>(base.size())) return base[k];
  const int j = k - static_cast<int>(base.size());
  const int group = j / 8;
  const int slot = j % 8;
  const int dir = slot % 2 == 0 ? kIn : kOut;
  const std::string nvme = "nvme" + std::to_string(group) + "n1";
  const std::string eth = "eth" + std::to_string(group + 1);
  switch (slot / 2) {
    case 0:
      return Dev(Family::kDiskBytes, dir, nvme, 0.05, 0.5);
    case 1:
      return Dev(Family::kDiskOps, dir, nvme, 0.05, 0.5);
    case 2:
      return Dev(Family::kNetBytes, dir, eth, 0.01, 0.3);
    default:
      return Dev(Family::kNetPackets, dir, eth, 0.01, 0.3);
  }
}

constexpr std::array<const char*, 6> kRegions = {"us-east-1",    "us-west-2",  "eu-west-1",
                                                 "eu-central-1", "ap-south-1", "ap-northeast-1"};

// ---------------------------------------------------------------------------
// Host profile: what makes host-0007 a busy 32-core database and host-0008 an
// idle 2-core bastion. Drawn once per host from (seed, host).

struct HostProfile {
  int ncpu;
  double util;                                   // mean busy fraction of each cpu
  double load_factor;                            // load average per busy cpu
  std::array<double, kNumBusyModes> mode_share;  // sums to 1
  double mem_kib;                                // MemTotal
  double net_rx_bps, net_tx_bps;                 // bytes/s on the main nic
  double disk_read_bps, disk_write_bps;          // bytes/s on the main disk
  double root_fs_blocks, data_fs_blocks;         // 4096-byte blocks
  double ctx_per_cpu_s, intr_per_cpu_s;
  double uptime_s;
};

HostProfile MakeHostProfile(uint64_t seed, int host) {
  Rng rng(Hash(seed, static_cast<uint64_t>(host), kSaltHost, 0));
  HostProfile p;
  constexpr std::array<int, 14> kCpus = {2, 2, 4, 4, 4, 8, 8, 8, 16, 16, 32, 48, 64, 96};
  p.ncpu = rng.Pick(kCpus);
  // Squared uniform: most hosts are lightly loaded, a few are hot.
  const double u = rng.Uniform();
  p.util = 0.02 + 0.55 * u * u;
  p.load_factor = rng.Uniform(0.7, 1.5);
  double total = 0;
  for (int m = 0; m < kNumBusyModes; ++m) {
    p.mode_share[m] = kCpuModeShare[m] * rng.Uniform(0.4, 1.6);
    total += p.mode_share[m];
  }
  for (double& s : p.mode_share) s /= total;
  constexpr std::array<double, 4> kGibPerCpu = {2, 4, 4, 8};
  p.mem_kib = p.ncpu * rng.Pick(kGibPerCpu) * 1024.0 * 1024.0;
  // Traffic spans four orders of magnitude across a real fleet.
  constexpr std::array<double, 6> kNetBps = {3e3, 2e4, 1.5e5, 1e6, 6e6, 3e7};
  p.net_rx_bps = rng.Pick(kNetBps) * rng.Uniform(0.6, 1.4);
  const double tx_ratio = rng.Uniform();
  p.net_tx_bps = p.net_rx_bps * (0.2 + 2.8 * tx_ratio * tx_ratio);
  // Bigger machines tend to run heavier storage workloads.
  constexpr std::array<double, 5> kDiskBps = {2e4, 2e5, 1e6, 5e6, 2e7};
  p.disk_write_bps = rng.Pick(kDiskBps) * rng.Uniform(0.6, 1.4) * std::sqrt(p.ncpu / 8.0);
  // Reads are mostly served by the page cache: often far below writes.
  p.disk_read_bps = p.disk_write_bps * rng.Uniform(0.05, 2.0);
  constexpr std::array<double, 4> kRootGib = {20, 40, 50, 100};
  constexpr std::array<double, 6> kDataGib = {100, 250, 500, 1000, 2000, 4000};
  p.root_fs_blocks = rng.Pick(kRootGib) * 262144.0;
  p.data_fs_blocks = rng.Pick(kDataGib) * 262144.0;
  p.ctx_per_cpu_s = 300 + 4000 * rng.Uniform() * rng.Uniform();
  p.intr_per_cpu_s = 200 + 2000 * rng.Uniform() * rng.Uniform();
  // Up between a few hours and ~200 days, skewed towards recent reboots.
  const double up = rng.Uniform();
  p.uptime_s = 86400.0 * (0.3 + 200.0 * up * up) + rng.Uniform(0, 3600);
  return p;
}

std::string HostName(int host, int hosts) {
  const std::string number = std::to_string(host + 1);
  const size_t width = std::max<size_t>(4, std::to_string(hosts).size());
  return "host-" + std::string(width - number.size(), '0') + number;
}

}  // namespace

// ---------------------------------------------------------------------------
// Per-series parameters and cursor state.
//
// Every series is an integer count of its /proc unit (hundredths, sectors,
// KiB, blocks, bytes); the double returned by Value() is that integer times an
// exact scale, so 0.01 steps never accumulate float error.
namespace internal {

// One busy cpu mode as the idle series replays it (see kCpuIdle in Step).
struct FleetCpuModeGen {
  int mode = 0;
  double mean_step = 0;
  double cap = 0;
  int64_t initial_units = 0;
  uint64_t noise_seed = 0;
  Rng rng;
};

struct FleetSeriesGen {
  Family family;
  int host;
  int cpu_mode = 0;  // kCpu: which busy mode
  double divisor;    // value = units / divisor * multiplier; both exact
  double multiplier;

  // Counters: increment per interval ~ mean_step * activity * noise.
  double mean_step = 0;
  double noise = 0;       // counters: relative sd; gauges: sd in units
  double zero_prob = 0;   // chance of an interval with nothing to count
  double burst_prob = 0;  // counters: x3..x10 bursts; gauges: jumps
  int64_t quantum = 1;    // disk: most increments are whole 4 KiB pages
  double cap = 0;         // cpu: most one mode (kCpu) or all modes
                          // (kCpuIdle) of cpu0 can use per interval
  double activity_weight = 1;

  // Gauges: mean-reverting walk towards target with rate alpha in [lo, hi].
  double target = 0;
  double alpha = 0;
  double lo = 0;
  double hi = 0;

  uint64_t noise_seed = 0;
  int64_t initial_units = 0;
  double initial_level = 0;

  // kCpuIdle only: the busy modes of cpu0, stepped in lockstep with the same
  // seeds as their own series, so that idle gets exactly what they leave of
  // the interval. Empty for every other family.
  std::vector<FleetCpuModeGen> busy;

  // Cursor: the series' state at `point`.
  int point = 0;
  int64_t units = 0;
  double level = 0;
  Rng rng;
};
}  // namespace internal

namespace {

using SeriesGen = internal::FleetSeriesGen;
using CpuModeGen = internal::FleetCpuModeGen;

// Rounds a non-negative expected count to an integer without bias, so that a
// rate of 0.3 units per interval gives the realistic 0,0,1,0,0,1,... pattern.
int64_t StochasticRound(double x, Rng& rng) { return static_cast<int64_t>(std::floor(x + rng.Uniform())); }

// What MakeGen needs besides the host profile and the entry.
struct GenContext {
  uint64_t seed;
  int host;
  double interval_s;
  // Catalogue index of each busy cpu mode: the idle series replays them.
  std::array<int, kNumBusyModes> busy_k;
};

// Busy mode `mode` of cpu0: per-interval mean, cap and offset at point 0.
CpuModeGen MakeCpuModeGen(const HostProfile& p, const GenContext& c, int mode) {
  const auto hu = static_cast<uint64_t>(c.host);
  const auto ku = static_cast<uint64_t>(c.busy_k[mode]);
  Rng init(Hash(c.seed, hu, ku, kSaltInit));
  init.Uniform();  // the draw other families use for their device share
  const double uptime_steps = p.uptime_s / c.interval_s * init.Uniform(0.85, 1.15);
  const double capacity = c.interval_s * 100.0;  // one cpu, hundredths
  CpuModeGen m;
  m.mode = mode;
  m.noise_seed = Hash(c.seed, hu, ku, kSaltSeries);
  // The shares sum to 1, so the modes' caps together are the interval: the
  // busy modes can never take more than the whole cpu.
  m.cap = capacity * p.mode_share[mode];
  // Floor keeps e.g. steal on an idle host moving, if slowly.
  m.mean_step = std::max(0.3, capacity * p.util * p.mode_share[mode]);
  m.initial_units = std::llround(std::min(m.mean_step, m.cap) * uptime_steps);
  return m;
}

// Hundredths busy mode m spends in the next interval. Shared by the mode's
// own series and by the idle series' replay of it, so both see the same
// increments.
int64_t CpuModeIncrement(int mode, double mean_step, double cap, Rng& rng, double host_activity) {
  const double act = 1.0 + CpuModeActivityWeight(mode) * (host_activity - 1.0);
  double x = mean_step * act * std::max(0.05, 1.0 + CpuModeNoise(mode) * rng.Normal());
  if (rng.Chance(kCpuBurstProb)) x *= rng.Uniform(3.0, 10.0);
  // Soft limit at cap, x / sqrt(1 + (x/cap)^2): barely changes a lightly
  // loaded cpu and never lets a hot one flat-line at exactly cap.
  const double r = x / cap;
  x /= std::sqrt(1.0 + r * r);
  return StochasticRound(x, rng);
}

SeriesGen MakeGen(const HostProfile& p, const Entry& e, const GenContext& c, int k) {
  const auto hu = static_cast<uint64_t>(c.host);
  const auto ku = static_cast<uint64_t>(k);
  const double interval_s = c.interval_s;
  Rng init(Hash(c.seed, hu, ku, kSaltInit));
  SeriesGen g{};
  g.family = e.family;
  g.host = c.host;
  g.divisor = 1;
  g.multiplier = 1;
  g.noise_seed = Hash(c.seed, hu, ku, kSaltSeries);
  const double share = init.Uniform(e.share_lo, e.share_hi);
  // Counters start where `rate * uptime` would have left them.
  const double uptime_steps = p.uptime_s / interval_s * init.Uniform(0.85, 1.15);
  switch (e.family) {
    case Family::kCpu: {
      // Same stream as the idle series' replay of this mode (k is the
      // mode's catalogue index, busy_k[mode]; see the constructor).
      const CpuModeGen m = MakeCpuModeGen(p, c, e.variant);
      g.divisor = 100;
      g.cpu_mode = e.variant;
      g.cap = m.cap;
      g.mean_step = m.mean_step;
      g.initial_units = m.initial_units;
      break;
    }
    case Family::kCpuIdle: {
      g.divisor = 100;
      g.cap = interval_s * 100.0;  // all of cpu0's time in one interval
      // cpu0 has been up for uptime_s: its modes add up to that at point 0.
      int64_t busy_units = 0;
      for (int mode = 0; mode < kNumBusyModes; ++mode) {
        g.busy.push_back(MakeCpuModeGen(p, c, mode));
        busy_units += g.busy.back().initial_units;
      }
      g.initial_units = std::max<int64_t>(0, std::llround(p.uptime_s * 100.0) - busy_units);
      break;
    }
    case Family::kLoad: {
      g.divisor = 100;
      const double tau_s = 60.0 * e.variant;
      // First-order discretization of the kernel's exponential average;
      // avoids exp() so the walk is bit-reproducible.
      g.alpha = interval_s / (tau_s + interval_s);
      const double alpha1 = interval_s / (60.0 + interval_s);
      const double load = p.ncpu * p.util * p.load_factor;
      g.target = load * 100.0;
      g.noise = 100.0 * (0.04 + 0.08 * std::sqrt(load)) * std::sqrt(g.alpha / alpha1);
      g.burst_prob = e.variant == 1 ? 0.005 : 0.0;
      g.hi = p.ncpu * 400.0;
      g.initial_level = g.target * init.Uniform(0.7, 1.3);
      break;
    }
    case Family::kMemory: {
      g.multiplier = 1024;
      const MemSpec& m = kMemSpecs[e.variant];
      g.target = p.mem_kib * init.Uniform(m.frac_lo, m.frac_hi);
      if (e.variant == kDirty) {
        // Dirty pages fill and get flushed within seconds: fast and jumpy.
        g.alpha = 0.3;
        g.noise = g.target * 0.3;
      } else {
        g.alpha = 0.05;
        g.noise = p.mem_kib * m.step_frac;
      }
      g.activity_weight = m.activity_weight;
      g.burst_prob = 0.01;
      g.hi = p.mem_kib;
      g.initial_level = g.target * init.Uniform(0.9, 1.1);
      break;
    }
    case Family::kFilesystem: {
      g.multiplier = 4096;
      const double size = e.secondary_fs ? p.data_fs_blocks : p.root_fs_blocks;
      g.target = size * init.Uniform(0.1, 0.8);
      // Net fill: a small share of what is written sticks around; the rest
      // overwrites or is deleted, and occasional cleanups free a lot.
      g.mean_step = p.disk_write_bps * (e.secondary_fs ? 0.5 : 0.1) * interval_s * 0.02 / 4096.0;
      g.noise = 1.0;
      g.zero_prob = 0.2;
      g.burst_prob = 0.003;
      // Only a faint pull towards target, to stay bounded over days-long
      // runs; within an hour the fill/cleanup pattern dominates.
      g.alpha = 2e-5;
      g.lo = size * 0.01;
      g.hi = size;
      g.initial_level = g.target * init.Uniform(0.98, 1.02);
      break;
    }
    case Family::kDiskBytes:
    case Family::kDiskOps: {
      const double bps = (e.variant == kIn ? p.disk_read_bps : p.disk_write_bps) * share * interval_s;
      if (e.family == Family::kDiskBytes) {
        g.multiplier = 512;  // the kernel counts 512-byte sectors
        g.mean_step = bps / 512.0;
        g.quantum = 8;
      } else {
        const double io_size = e.variant == kIn ? init.Uniform(16e3, 128e3) : init.Uniform(8e3, 64e3);
        g.mean_step = bps / io_size;
      }
      g.mean_step = std::max(g.mean_step, 0.5);
      g.noise = 0.6;
      g.zero_prob = e.variant == kIn ? 0.25 : 0.08;
      g.burst_prob = 0.03;  // writeback flushes
      g.activity_weight = 0.8;
      g.initial_units = std::llround(g.mean_step * uptime_steps);
      break;
    }
    case Family::kNetBytes:
    case Family::kNetPackets: {
      const double bps = (e.variant == kIn ? p.net_rx_bps : p.net_tx_bps) * share * interval_s;
      if (e.family == Family::kNetBytes) {
        g.mean_step = bps;
      } else {
        const double packet = e.variant == kIn ? init.Uniform(600, 1200) : init.Uniform(300, 1400);
        g.mean_step = bps / packet;
      }
      g.mean_step = std::max(g.mean_step, 0.5);
      g.noise = 0.3;
      g.zero_prob = 0.002;
      g.burst_prob = 0.01;
      g.initial_units = std::llround(g.mean_step * uptime_steps);
      break;
    }
    case Family::kHostCounter: {
      const double per_cpu = e.variant == 0 ? p.ctx_per_cpu_s : p.intr_per_cpu_s;
      g.mean_step = p.ncpu * per_cpu * interval_s;
      g.noise = e.variant == 0 ? 0.2 : 0.15;
      g.activity_weight = 0.7;
      g.initial_units = std::llround(g.mean_step * uptime_steps);
      break;
    }
    case Family::kProcs: {
      // Sampled each scrape: nearly independent draws around the run queue.
      g.target = 1 + p.ncpu * p.util * p.load_factor;
      g.alpha = 0.6;
      g.noise = 0.5 + 0.5 * std::sqrt(g.target);
      g.lo = 1;
      g.hi = p.ncpu * 4.0;
      g.initial_level = g.target;
      break;
    }
    case Family::kFilefd: {
      g.target = p.ncpu * init.Uniform(200, 3000);
      g.alpha = 0.02;
      g.noise = 3 + 0.002 * g.target;
      g.burst_prob = 0.01;
      g.lo = 64;
      g.hi = g.target * 10;
      g.initial_level = g.target * init.Uniform(0.9, 1.1);
      break;
    }
  }
  return g;
}

bool IsCounter(Family f) {
  switch (f) {
    case Family::kLoad:
    case Family::kMemory:
    case Family::kFilesystem:
    case Family::kProcs:
    case Family::kFilefd:
      return false;
    default:
      return true;
  }
}

double Output(const SeriesGen& g) {
  // Both scales are exact; dividing an exact integer by 100 yields the double
  // nearest to the decimal, which is what a /proc parser would produce.
  return static_cast<double>(g.units) / g.divisor * g.multiplier;
}

}  // namespace

FleetGenerator::FleetGenerator(const FleetOptions& options) : options_(options) {
  if (options.hosts < 1) throw std::invalid_argument("hosts must be >= 1");
  if (options.series_per_host < 1) {
    throw std::invalid_argument("series_per_host must be >= 1");
  }
  if (options.points < 0) throw std::invalid_argument("points must be >= 0");
  if (options.interval_ms <= 0) {
    throw std::invalid_argument("interval_ms must be > 0");
  }

  const std::vector<Entry> base = BaseCatalogue();
  std::vector<Entry> entries;
  entries.reserve(options.series_per_host);
  for (int k = 0; k < options.series_per_host; ++k) {
    entries.push_back(CatalogueEntry(base, k));
  }

  GenContext context{options.seed, 0, static_cast<double>(options.interval_ms) / 1000.0, {}};
  context.busy_k.fill(-1);
  // A busy mode's stream is keyed by its catalogue index, which the idle
  // series must know even when series_per_host leaves the mode out. Each
  // mode appears exactly once (extra catalogue entries are devices only).
  for (size_t k = 0; k < base.size(); ++k) {
    if (base[k].family != Family::kCpu) continue;
    int& slot = context.busy_k[base[k].variant];
    if (slot >= 0) throw std::logic_error("FleetGenerator: cpu mode twice");
    slot = static_cast<int>(k);
  }
  for (int k : context.busy_k) {
    if (k < 0) throw std::logic_error("FleetGenerator: cpu mode missing");
  }

  const size_t total = static_cast<size_t>(options.hosts) * static_cast<size_t>(options.series_per_host);
  series_.reserve(total);
  gens_.reserve(total);
  for (int h = 0; h < options.hosts; ++h) {
    const HostProfile profile = MakeHostProfile(options.seed, h);
    context.host = h;
    const std::string host = HostName(h, options.hosts);
    const char* region = kRegions[Hash(options.seed, static_cast<uint64_t>(h), kSaltRegion, 0) % kRegions.size()];
    for (int k = 0; k < options.series_per_host; ++k) {
      const Entry& e = entries[k];
      FleetSeries s;
      s.kind = IsCounter(e.family) ? FleetMetricKind::kCounter : FleetMetricKind::kGauge;
      s.labels = {{"__name__", e.name}, {"host", host}, {"region", region}, {"job", "node"}};
      s.labels.insert(s.labels.end(), e.labels.begin(), e.labels.end());
      std::sort(s.labels.begin(), s.labels.end());
      series_.push_back(std::move(s));

      // Keyed by (host, k), not by index, so a host's data does not change
      // with the fleet's shape.
      gens_.push_back(MakeGen(profile, e, context, k));
      Reset(gens_.back());
    }
  }
}

FleetGenerator::~FleetGenerator() = default;
FleetGenerator::FleetGenerator(const FleetGenerator&) = default;
FleetGenerator& FleetGenerator::operator=(const FleetGenerator&) = default;
FleetGenerator::FleetGenerator(FleetGenerator&&) noexcept = default;
FleetGenerator& FleetGenerator::operator=(FleetGenerator&&) noexcept = default;

int64_t FleetGenerator::TimestampMs(int point) const {
  return options_.start_ms + static_cast<int64_t>(point) * options_.interval_ms;
}

double FleetGenerator::Value(size_t index, int point) {
  if (index >= gens_.size()) {
    throw std::out_of_range("FleetGenerator: series index out of range");
  }
  if (point < 0) throw std::out_of_range("FleetGenerator: negative point");
  SeriesGen& g = gens_[index];
  if (point < g.point) Reset(g);
  while (g.point < point) Step(g);
  return Output(g);
}

void FleetGenerator::Reset(SeriesGen& g) const {
  g.point = 0;
  g.rng = Rng(g.noise_seed);
  g.level = std::clamp(g.initial_level, g.lo, std::max(g.lo, g.hi));
  g.units = IsCounter(g.family) ? g.initial_units : std::llround(g.level);
  for (CpuModeGen& m : g.busy) m.rng = Rng(m.noise_seed);
}

double FleetGenerator::Activity(int host, int point) const {
  // Smoothly interpolated random knots every 5 minutes of wall time: a
  // deploy, a batch job or a traffic swing lifts every series of the host.
  // Stateless, so random access costs the same as sequential access.
  constexpr int64_t kKnotMs = 5 * 60 * 1000;
  const int64_t t = static_cast<int64_t>(point) * options_.interval_ms;
  const int64_t knot = t / kKnotMs;
  const double frac = static_cast<double>(t % kKnotMs) / kKnotMs;
  const auto knot_value = [&](int64_t k) {
    return 0.55 +
           0.9 * ToUnit(Hash(options_.seed, static_cast<uint64_t>(host), kSaltActivity, static_cast<uint64_t>(k)));
  };
  const double a0 = knot_value(knot);
  const double a1 = knot_value(knot + 1);
  const double s = frac * frac * (3.0 - 2.0 * frac);  // smoothstep
  return a0 + (a1 - a0) * s;
}

void FleetGenerator::Step(SeriesGen& g) const {
  ++g.point;
  const double host_activity = Activity(g.host, g.point);
  const double act = 1.0 + g.activity_weight * (host_activity - 1.0);
  Rng& rng = g.rng;
  switch (g.family) {
    case Family::kCpu: {
      g.units += CpuModeIncrement(g.cpu_mode, g.mean_step, g.cap, rng, host_activity);
      break;
    }
    case Family::kCpuIdle: {
      // Idle is what cpu0's busy modes actually used leaves of the interval
      // (replayed here from their own seeds: O(kNumBusyModes) per step), with
      // a little scrape-timing and tick-accounting jitter on top.
      int64_t busy = 0;
      for (CpuModeGen& m : g.busy) {
        busy += CpuModeIncrement(m.mode, m.mean_step, m.cap, m.rng, host_activity);
      }
      double idle = g.cap - static_cast<double>(busy) + 0.002 * g.cap * rng.Normal();
      idle = std::clamp(idle, 0.0, g.cap);
      g.units += StochasticRound(idle, rng);
      break;
    }
    case Family::kDiskBytes:
    case Family::kDiskOps:
    case Family::kNetBytes:
    case Family::kNetPackets:
    case Family::kHostCounter: {
      if (rng.Chance(g.zero_prob)) break;  // an interval with nothing to count
      double x = g.mean_step * act * std::max(0.05, 1.0 + g.noise * rng.Normal());
      if (rng.Chance(g.burst_prob)) x *= rng.Uniform(3.0, 10.0);
      int64_t inc = StochasticRound(x, rng);
      // Page-cache I/O moves whole pages; direct and metadata I/O does not.
      if (g.quantum > 1 && inc > 0 && rng.Chance(0.85)) {
        inc = (inc + g.quantum - 1) / g.quantum * g.quantum;
      }
      g.units += inc;
      break;
    }
    case Family::kFilesystem: {
      if (rng.Chance(g.zero_prob)) break;
      double delta = -g.mean_step * act * std::max(0.0, 1.0 + g.noise * rng.Normal());
      if (rng.Chance(g.burst_prob)) {
        delta += g.mean_step * rng.Uniform(50.0, 500.0);  // cleanup, rotation
      }
      delta += g.alpha * (g.target - g.level);
      g.level = std::clamp(g.level + delta, g.lo, g.hi);
      g.units = std::llround(g.level);
      break;
    }
    case Family::kLoad:
    case Family::kMemory:
    case Family::kProcs:
    case Family::kFilefd: {
      double step = g.alpha * (g.target * act - g.level) + g.noise * rng.Normal();
      if (rng.Chance(g.burst_prob)) step += 10.0 * g.noise * rng.Normal();
      g.level = std::clamp(g.level + step, g.lo, g.hi);
      g.units = std::llround(g.level);
      break;
    }
  }
}

}  // namespace sheaf::tools
