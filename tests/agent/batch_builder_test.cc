// The batch builder sends only what the daemon accepts: label values that
// are not UTF-8 are repaired (and then stored by a real daemon), series that
// break the daemon's rules are dropped and counted by reason, and the good
// series of the same collection go through. Includes the case that had a
// whole host's batches refused: one mount point with a stray byte.
#include "agent/batch_builder.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "agent/shipper.h"
#include "common/clock.h"
#include "tests/agent/agent_fixture.h"
#include "tests/agent/daemon_fixture.h"
#include "tests/support/temp_dir.h"

namespace sheaf::agent {
namespace {

constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD

HostMetric Gauge(std::string name, std::vector<std::pair<std::string, std::string>> labels, double value = 1) {
  return HostMetric{std::move(name), std::move(labels), MetricKind::kGauge, value};
}

const SeriesData* Find(const std::vector<SeriesData>& batch, const std::string& name) {
  for (const SeriesData& s : batch) {
    for (const auto& l : s.labels) {
      if (l.first == "__name__" && l.second == name) return &s;
    }
  }
  return nullptr;
}

std::string Label(const SeriesData& s, const std::string& name) {
  for (const auto& l : s.labels) {
    if (l.first == name) return l.second;
  }
  return "";
}

TEST(BatchBuilderTest, AddsExtraLabelsSortsAndKeepsTypes) {
  BatchBuilder b(LabelPairs{{"region", "eu"}, {"host", "h1"}});
  std::vector<HostMetric> metrics = {
      Gauge("node_load1", {}, 0.5),
      HostMetric{"node_cpu_seconds_total", {{"cpu", "0"}, {"mode", "idle"}}, MetricKind::kCounter, 10},
      Gauge("node_x", {{"host", "own"}})};  // its own host label wins
  auto batch = b.Build(metrics, 1234);
  ASSERT_EQ(batch.size(), 3u);
  const SeriesData* load = Find(batch, "node_load1");
  ASSERT_NE(load, nullptr);
  EXPECT_EQ(load->labels, (LabelPairs{{"__name__", "node_load1"}, {"host", "h1"}, {"region", "eu"}}));
  EXPECT_EQ(load->key, SeriesKey(load->labels));
  EXPECT_EQ(load->timestamps_ms, std::vector<int64_t>{1234});
  EXPECT_EQ(load->values, std::vector<double>{0.5});
  EXPECT_EQ(load->type, v1::METRIC_TYPE_GAUGE);
  EXPECT_EQ(Find(batch, "node_cpu_seconds_total")->type, v1::METRIC_TYPE_COUNTER);
  EXPECT_EQ(Label(*Find(batch, "node_x"), "host"), "own");
  EXPECT_EQ(b.stats().series_built, 3u);
  EXPECT_EQ(b.stats().series_dropped, 0u);
}

TEST(BatchBuilderTest, RepairsInvalidUtf8DropsInvalidSeriesKeepsTheRest) {
  BatchBuilder b(LabelPairs{{"host", "h1"}});
  std::vector<HostMetric> metrics = {
      Gauge("node_filesystem_size_bytes", {{"mountpoint", "/mnt/bad\xff\xfe"}}, 100),
      Gauge("node_load1", {}, 0.5),
      Gauge("node_bad_label", {{"1nvalid", "x"}}),
      Gauge("node_reserved_label", {{"__secret", "x"}}),
      Gauge("bad-name", {}),
      Gauge("node_nan", {}, std::nan("")),
      HostMetric{"node_negative_total", {}, MetricKind::kCounter, -1},
      Gauge("node_filesystem_free_bytes", {{"mountpoint", "/ok"}}, 5),
  };
  for (int collection = 0; collection < 3; ++collection) {
    auto batch = b.Build(metrics, WallClockMs());
    ASSERT_EQ(batch.size(), 3u);
    const SeriesData* fs = Find(batch, "node_filesystem_size_bytes");
    ASSERT_NE(fs, nullptr);
    EXPECT_EQ(Label(*fs, "mountpoint"), std::string("/mnt/bad") + kReplacement + kReplacement);
    EXPECT_NE(Find(batch, "node_load1"), nullptr);
    EXPECT_NE(Find(batch, "node_filesystem_free_bytes"), nullptr);
  }
  const auto& st = b.stats();
  EXPECT_EQ(st.series_built, 9u);
  EXPECT_EQ(st.series_sanitized, 3u);
  EXPECT_EQ(st.labels_sanitized, 3u);
  EXPECT_EQ(st.series_dropped, 15u);
  EXPECT_EQ(st.dropped_by_reason.at(model::RejectReason::kInvalidLabelName), 6u);
  EXPECT_EQ(st.dropped_by_reason.at(model::RejectReason::kInvalidMetricName), 3u);
  EXPECT_EQ(st.dropped_by_reason.at(model::RejectReason::kInvalidValue), 6u);
}

TEST(BatchBuilderTest, OverlongValuesAndTooManyLabelsAreDropped) {
  model::ValidationLimits limits;
  limits.max_label_value_bytes = 8;
  limits.max_labels = 3;
  BatchBuilder b(LabelPairs{{"host", "h1"}}, limits);
  auto batch = b.Build({Gauge("node_long", {{"device", "0123456789"}}), Gauge("node_many", {{"a", "1"}, {"b", "2"}}),
                        Gauge("node_ok", {{"a", "1"}})},
                       WallClockMs());
  ASSERT_EQ(batch.size(), 1u);
  EXPECT_NE(Find(batch, "node_ok"), nullptr);
  EXPECT_EQ(b.stats().dropped_by_reason.at(model::RejectReason::kInvalidLabelValue), 1u);
  EXPECT_EQ(b.stats().dropped_by_reason.at(model::RejectReason::kTooManyLabels), 1u);
}

// Through a real daemon: the repaired value is stored (with U+FFFD), and the
// good series of the same batch are stored with it; nothing is rejected.
TEST(BatchBuilderTest, RepairedSeriesAreStoredByTheDaemon) {
  sheaf::testing::TempDir dir;
  auto d = sheaf::testing::StartDaemon(dir.Sub("data"), 0);
  ASSERT_NE(d, nullptr);
  auto state = AgentState::Open({.dir = dir.Sub("state")});
  ASSERT_TRUE(state.ok()) << state.status();
  ShipperOptions o;
  o.agent_id = (*state)->identity();
  o.stream_max_age = std::chrono::milliseconds(200);
  TestAgent agent(dir.path(), d->grpc_port(), state->get(), o);
  Shipper& shipper = *agent.shipper;
  BatchBuilder b(LabelPairs{{"host", "h1"}});
  (void)shipper.Enqueue(b.Build({Gauge("node_filesystem_size_bytes", {{"mountpoint", "/mnt/bad\xff\xfe"}}, 100),
                           Gauge("node_bad_label", {{"1nvalid", "x"}}), Gauge("node_load1", {}, 0.5)},
                          WallClockMs()));
  ASSERT_TRUE(shipper.WaitAcked(std::chrono::seconds(10)));
  EXPECT_EQ(shipper.stats().samples_rejected, 0u);
  auto fs = sheaf::testing::Query(d->grpc_port(), "node_filesystem_size_bytes");
  ASSERT_EQ(fs.size(), 1u);
  EXPECT_EQ(sheaf::testing::LabelValue(fs[0], "mountpoint"), std::string("/mnt/bad") + kReplacement + kReplacement);
  EXPECT_EQ(sheaf::testing::SamplesOf(d->grpc_port(), "node_load1"), 1u);
  EXPECT_EQ(sheaf::testing::StoredSamples(d->grpc_port()), 2u);
  EXPECT_EQ(b.stats().dropped_by_reason.at(model::RejectReason::kInvalidLabelName), 1u);
}

// The host that had all its batches refused: the real collector, a mount
// table with one mount point whose name is not UTF-8, everything stored.
TEST(BatchBuilderTest, HostWithANonUtf8MountPointShipsAllItsMetrics) {
  sheaf::testing::TempDir dir;
  const std::string bad_mount = dir.Sub("disk\xff");
  std::filesystem::create_directories(bad_mount);
  std::ofstream(dir.Sub("mounts")) << "/dev/sda1 / ext4 rw 0 0\n/dev/sdb1 " << bad_mount << " ext4 rw 0 0\n";
  HostCollector collector(HostPaths{"/proc", dir.Sub("mounts"), ""});
  std::vector<std::string> errors;
  auto metrics = collector.Collect(&errors);
  BatchBuilder b(LabelPairs{{"host", "h1"}});
  auto batch = b.Build(metrics, WallClockMs());
  EXPECT_EQ(b.stats().series_dropped, 0u);
  EXPECT_GE(b.stats().series_sanitized, 5u);  // size, free, avail, files, files_free of the bad mount
  EXPECT_EQ(batch.size(), metrics.size());

  auto d = sheaf::testing::StartDaemon(dir.Sub("data"), 0);
  ASSERT_NE(d, nullptr);
  auto state = AgentState::Open({.dir = dir.Sub("state")});
  ASSERT_TRUE(state.ok()) << state.status();
  ShipperOptions o;
  o.agent_id = (*state)->identity();
  o.stream_max_age = std::chrono::milliseconds(200);
  TestAgent agent(dir.path(), d->grpc_port(), state->get(), o);
  Shipper& shipper = *agent.shipper;
  ASSERT_TRUE(shipper.Enqueue(batch).ok());
  ASSERT_TRUE(shipper.WaitAcked(std::chrono::seconds(10)));
  EXPECT_EQ(shipper.stats().samples_rejected, 0u);
  EXPECT_EQ(sheaf::testing::StoredSamples(d->grpc_port()), metrics.size());
  bool found = false;
  for (const auto& c : sheaf::testing::Query(d->grpc_port(), "node_filesystem_size_bytes")) {
    found = found || sheaf::testing::LabelValue(c, "mountpoint").ends_with(std::string("disk") + kReplacement);
  }
  EXPECT_TRUE(found);
}

}  // namespace
}  // namespace sheaf::agent
