// Deterministic, realistic node_exporter-like fleet data.
//
// Used by sheaf-loadgen and by the storage benchmarks. Compression figures
// (bytes/sample) are measured on this data, so it is built to look like real
// hosts rather than to compress well: counters rise by randomized increments
// at /proc resolution from non-zero "up for days" offsets, gauges random-walk,
// hosts differ in size and traffic, and nothing is constant or sequential.
//
// Only the C++ standard library is used (no gRPC/protobuf), and no standard
// <random> distributions: their output differs across standard libraries, and
// the figures must be reproducible anywhere. All randomness comes from an
// inline splitmix64/xoshiro256** and plain IEEE-754 arithmetic.

#ifndef SHEAF_TOOLS_FLEET_GENERATOR_H_
#define SHEAF_TOOLS_FLEET_GENERATOR_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "model/types.h"

namespace sheaf::tools {

namespace internal {
struct FleetSeriesGen;  // per-series parameters and cursor; see the .cc
}  // namespace internal

// The model's one metric type; the fleet has counters and gauges.
using FleetMetricKind = model::MetricType;

struct FleetOptions {
  int hosts = 1000;              // >= 1
  int series_per_host = 10;      // >= 1; any value gives distinct label sets
  int points = 360;              // >= 0; points per series the caller means to
                                 // read; advisory, Value() accepts any point
  int64_t interval_ms = 10'000;  // > 0
  int64_t start_ms = 0;          // timestamp of point 0
  uint64_t seed = 1;
};

struct FleetSeries {
  // Sorted by label name (so "__name__" comes first). Always __name__, host,
  // region and job; plus cpu and mode (node_cpu_seconds_total, always
  // cpu="0"), device (disk, network, filesystem) and fstype/mountpoint
  // (filesystem) where they apply. Label sets are unique across the fleet.
  std::vector<std::pair<std::string, std::string>> labels;
  FleetMetricKind kind;
};

// Generates hosts * series_per_host series.
//
// Series catalogue, per host, in this order (series k of every host is the
// same metric; index = host * series_per_host + k):
//   0 node_cpu_seconds_total{mode="user"}       5 cpu{mode="system"}
//     (all node_cpu_seconds_total entries carry cpu="0"; see below)
//   1 node_load1                                6 node_disk_written_bytes{sda}
//   2 node_memory_MemAvailable_bytes            7 node_network_transmit{eth0}
//   3 node_disk_read_bytes_total{device="sda"}  8 cpu{mode="idle"}
//   4 node_network_receive_bytes_total{eth0}    9 cpu{mode="iowait"}
// so series_per_host = 10 is 4 cpu modes, 1 load, 1 memory, 2 disk, 2 network
// and any smaller prefix still mixes metric families. Entries 10..39 add
// load5/load15, more memory fields, filesystem avail, the remaining cpu modes,
// packet/op/context-switch/interrupt counters, procs_running, filefd, and
// devices sdb and lo. From 40 on the catalogue is unbounded: groups of 8
// series for extra devices nvme<g>n1 and eth<g+1>.
//
// Value precision (exact decimals, the way /proc reports them):
//   cpu seconds           multiples of 0.01 (kept as integer hundredths)
//   load1/5/15            2 decimals (integer hundredths)
//   disk bytes            multiples of 512 (sectors; mostly 4096 pages)
//   network bytes, packets, ops, procs, fds: integers
//   memory bytes          multiples of 1024
//   filesystem avail      multiples of 4096
//
// Determinism: values depend only on (seed, host, k, point, interval_ms) --
// not on hosts, series_per_host or access order -- so a host's series are the
// same in a 10-host and a 1000-host fleet. Only integer mixing and correctly
// rounded IEEE-754 operations are used, so they do not depend on the
// compiler or standard library either.
//
// CPU: node_exporter exports node_cpu_seconds_total per cpu, and the fleet
// carries cpu="0" of each host (one series per mode, not ncpu of them). Its
// modes (user, system, idle, iowait, softirq, nice, irq, steal) add up to
// the host's uptime at point 0 (a few hours to ~200 days, so < 1.8e7 s) and
// advance by interval seconds per step in total, give or take ~0.2% of
// jitter: idle is exactly what the busy modes left of the interval. The
// host's ncpu still drives load, procs, memory and traffic; its utilization
// drives cpu0's busy share.
//
// Magnitudes are realistic, not small: cpu counters are bounded by uptime
// plus the run's length, and byte counters reach ~1e15; all stay below 2^53,
// so every value is exact. Cpu values stay below 2^26 s (~776 days) for any
// run shorter than a year, so v * 100 is also within 1e-6 of an integer.
//
// Thread safety: Value() mutates only the state of the series it is asked
// for, so concurrent calls for *different* indices are safe; calls for the
// same index must be serialized.
class FleetGenerator {
 public:
  // Throws std::invalid_argument if an option is out of range.
  explicit FleetGenerator(const FleetOptions& options);
  ~FleetGenerator();
  FleetGenerator(const FleetGenerator&);
  FleetGenerator& operator=(const FleetGenerator&);
  FleetGenerator(FleetGenerator&&) noexcept;
  FleetGenerator& operator=(FleetGenerator&&) noexcept;

  const FleetOptions& options() const { return options_; }

  // All hosts * series_per_host series, host-major:
  // index = host * series_per_host + k.
  const std::vector<FleetSeries>& series() const { return series_; }

  // start_ms + point * interval_ms. Regular on purpose, without jitter: the
  // reference systems we compare against were measured that way.
  int64_t TimestampMs(int point) const;

  // Value of series `index` at `point` (>= 0). Random access: any order gives
  // the same value. Each series keeps a cursor, so asking for the next point
  // of a series (e.g. for point: for series: Value(series, point)) costs O(1);
  // jumping forward by d costs O(d), and going back replays from point 0.
  // (A cpu idle series also replays cpu0's 7 busy modes: a constant factor.)
  // Throws std::out_of_range for a bad index or a negative point.
  double Value(size_t index, int point);

 private:
  using SeriesGen = internal::FleetSeriesGen;

  void Reset(SeriesGen& gen) const;
  void Step(SeriesGen& gen) const;
  // Host-wide busy-ness around 1.0 that drifts smoothly over minutes, shared
  // by all series of a host so that cpu, load and traffic rise together.
  double Activity(int host, int point) const;

  FleetOptions options_;
  std::vector<FleetSeries> series_;
  std::vector<SeriesGen> gens_;
};

}  // namespace sheaf::tools

#endif  // SHEAF_TOOLS_FLEET_GENERATOR_H_
