// Sample block codec speed on fleet data. Items are samples, so the
// reported items_per_second is samples/s on one core.
//
//   BM_EncodeBlock/<points>   encode one series' block (all series in turn)
//   BM_DecodeBlock/<points>   decode it back (into a reused vector)
//   BM_MergeBlocks/<points>   merge 3 overlapping blocks of one series, as
//                             the RocksDB merge operator does; items count
//                             the input samples
#include <benchmark/benchmark.h>

#include <array>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "storage/sample_codec.h"
#include "tools/fleet_generator.h"

namespace sheaf::storage {
namespace {

// One block per series of a 100-host fleet (1000 series): enough variety
// (every metric kind and host size) to keep branch predictors honest, small
// enough to stay in cache like a merge operator's working set.
struct CodecFleet {
  std::vector<std::vector<Sample>> series;
  std::vector<std::string> blocks;
  size_t samples = 0;
};

const CodecFleet& Fleet(int points) {
  static std::vector<std::pair<int, CodecFleet>> cache;
  for (const auto& [p, fleet] : cache) {
    if (p == points) return fleet;
  }
  tools::FleetOptions options;
  options.hosts = 100;
  options.points = points;
  options.start_ms = 1'700'000'000'000;
  tools::FleetGenerator generator(options);
  CodecFleet fleet;
  for (size_t i = 0; i < generator.series().size(); ++i) {
    std::vector<Sample> s;
    for (int p = 0; p < points; ++p) s.push_back({generator.TimestampMs(p), generator.Value(i, p)});
    fleet.samples += s.size();
    fleet.blocks.push_back(EncodeBlock(s));
    fleet.series.push_back(std::move(s));
  }
  cache.emplace_back(points, std::move(fleet));
  return cache.back().second;
}

void BM_EncodeBlock(benchmark::State& state) {
  const CodecFleet& fleet = Fleet(static_cast<int>(state.range(0)));
  std::string out;
  size_t bytes = 0;
  for (auto _ : state) {
    for (const auto& s : fleet.series) {
      EncodeBlock(s, &out);
      bytes += out.size();
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * fleet.samples));
  state.counters["bytes/sample"] = static_cast<double>(bytes) / static_cast<double>(state.iterations() * fleet.samples);
}
BENCHMARK(BM_EncodeBlock)->Arg(120)->Arg(360);

void BM_DecodeBlock(benchmark::State& state) {
  const CodecFleet& fleet = Fleet(static_cast<int>(state.range(0)));
  std::vector<Sample> out;
  for (auto _ : state) {
    for (const std::string& block : fleet.blocks) {
      out.clear();
      if (!DecodeBlockAppend(block, &out).ok()) state.SkipWithError("decode failed");
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * fleet.samples));
}
BENCHMARK(BM_DecodeBlock)->Arg(120)->Arg(360);

void BM_MergeBlocks(benchmark::State& state) {
  // Per series: the block, a late rewrite of its second half, and a block
  // that straddles the end (a third of it new): overlapping, out of order.
  const int points = static_cast<int>(state.range(0));
  const CodecFleet& fleet = Fleet(points);
  std::vector<std::array<std::string, 3>> inputs;
  size_t samples = 0;
  for (const auto& s : fleet.series) {
    const auto half = std::span<const Sample>(s).subspan(s.size() / 2);
    std::vector<Sample> straddle(s.end() - points / 3, s.end());
    for (Sample& x : straddle) x.timestamp_ms += points / 6 * 10'000;
    inputs.push_back({EncodeBlock(s), EncodeBlock(half), EncodeBlock(straddle)});
    samples += s.size() + half.size() + straddle.size();
  }
  std::string out;
  for (auto _ : state) {
    for (const auto& blocks : inputs) {
      const std::array<std::string_view, 3> views = {blocks[1], blocks[0], blocks[2]};
      if (!MergeBlocks(views, &out).ok()) state.SkipWithError("merge failed");
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * samples));
}
BENCHMARK(BM_MergeBlocks)->Arg(120)->Arg(360);

}  // namespace
}  // namespace sheaf::storage
