// `sheafctl import` end to end: a real sheafd on loopback, files written
// here or by `sheaf-loadgen --export`, counts read back with `sheafctl
// stats` and `sheafctl query`. Binaries come from the environment (set by
// meson): SHEAFD, SHEAFCTL, SHEAF_LOADGEN.
#include <gtest/gtest.h>
#include <signal.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace sheaf {
namespace {

using std::chrono::seconds;
using testing::Process;
using testing::WaitFor;

constexpr int64_t kMinute = 60'000;
constexpr int64_t kHour = 3'600'000;
constexpr int64_t kDay = 86'400'000;

std::string Bin(const char* env) {
  const char* v = std::getenv(env);
  return v ? v : "";
}

// The number after `key` at the start of a line (`key   N`, `key=N`,
// indented or not) or after `"key":` in JSON; -1 if absent.
int64_t Number(const std::string& out, const std::string& key) {
  std::smatch m;
  std::regex re("(^|[\\n{,]) *\"?" + key + "\"?[ :=]+([0-9]+)");
  return std::regex_search(out, m, re) ? std::stoll(m[2]) : -1;
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class ImportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string ready = dir_.Sub("ready");
    sheafd_ = Process::Start({Bin("SHEAFD"), "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
                              "--data-dir", dir_.Sub("data"), "--ready-file", ready, "--grace-period", "5s"},
                             dir_.Sub("sheafd.log"));
    ASSERT_TRUE(WaitFor([&] { return !testing::ReadFile(ready).empty() || !sheafd_->running(); }, seconds(30)));
    ASSERT_TRUE(sheafd_->running()) << testing::ReadFile(dir_.Sub("sheafd.log"));
    addr_ = "127.0.0.1:" + std::to_string(Number(testing::ReadFile(ready), "grpc_port"));
  }

  void TearDown() override {
    if (sheafd_ != nullptr && sheafd_->running()) {
      sheafd_->Signal(SIGTERM);
      EXPECT_EQ(sheafd_->Wait(seconds(20)), 0) << testing::ReadFile(dir_.Sub("sheafd.log"));
    }
  }

  // sheafctl with its stderr in the output too (the hints are there).
  testing::CommandResult Ctl(std::vector<std::string> args) {
    std::vector<std::string> argv = {"/bin/sh", "-c", "exec \"$0\" \"$@\" 2>&1", Bin("SHEAFCTL"), "--addr", addr_};
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::RunCommand(argv, seconds(120));
  }

  int64_t Stat(const std::string& key) { return Number(Ctl({"stats", "--format", "json"}).output, key); }

  // (timestamp, value) of every point of `sheafctl query ... --format csv`.
  std::map<int64_t, double> Points(std::vector<std::string> query_args) {
    query_args.insert(query_args.begin(), "query");
    query_args.insert(query_args.end(), {"--format", "csv"});
    auto r = Ctl(query_args);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    std::map<int64_t, double> out;
    std::istringstream lines(r.output);
    std::string line;
    std::smatch m;
    static const std::regex kRow(",(-?[0-9]+),([^,]+)$");
    while (std::getline(lines, line)) {
      if (std::regex_search(line, m, kRow)) out[std::stoll(m[1])] = std::strtod(m[2].str().c_str(), nullptr);
    }
    return out;
  }

  void Write(const std::string& name, const std::string& text) { std::ofstream(dir_.Sub(name)) << text; }

  testing::TempDir dir_;
  std::unique_ptr<Process> sheafd_;
  std::string addr_;
};

// What sheaf-loadgen writes (Prometheus text, ms timestamps, no # TYPE)
// imports cleanly: every sample stored once, the values as in the file,
// `_total` series as counters; the same import id again stores nothing.
TEST_F(ImportTest, LoadgenExportImportsExactlyAndOnlyOnce) {
  const std::string file = dir_.Sub("fleet.prom");
  auto gen = testing::RunCommand({Bin("SHEAF_LOADGEN"), "--export", file, "--hosts", "20", "--points", "60"});
  ASSERT_EQ(gen.exit_code, 0);
  ASSERT_EQ(Number(gen.output, "samples"), 12000);

  auto first = Ctl({"import", file, "--import-id", "fleet-once", "--batch-size", "1000"});
  EXPECT_EQ(first.exit_code, 0) << first.output;
  EXPECT_EQ(Number(first.output, "samples_read"), 12000) << first.output;
  EXPECT_EQ(Number(first.output, "samples_stored"), 12000);
  EXPECT_EQ(Number(first.output, "samples_rejected"), 0);
  EXPECT_EQ(Number(first.output, "parse_errors"), 0);
  EXPECT_EQ(Number(first.output, "batches_applied"), 12);
  EXPECT_NE(first.output.find("format                    prometheus"), std::string::npos);
  EXPECT_EQ(Stat("samples"), 12000);
  EXPECT_EQ(Stat("series"), 200);

  // One series read back equals the file's lines for it, value for value.
  std::map<int64_t, double> want;
  std::ifstream in(file);
  std::string line;
  const std::string prefix = "node_load1{host=\"host-0003\",";
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) != 0) continue;
    std::istringstream fields(line.substr(line.find('}') + 1));
    double v;
    int64_t t;
    fields >> v >> t;
    want[t] = v;
  }
  ASSERT_EQ(want.size(), 60u);
  EXPECT_EQ(Points({R"(node_load1{host="host-0003"})", "--start", std::to_string(want.begin()->first), "--end",
                    std::to_string(want.rbegin()->first)}),
            want);
  auto types = Ctl({"query", R"(node_cpu_seconds_total{host="host-0003",mode="idle"})", "--format", "json"});
  EXPECT_NE(types.output.find("\"type\":\"counter\""), std::string::npos) << types.output;

  // The same import id again: every batch is a duplicate, nothing stored twice.
  auto again = Ctl({"import", file, "--import-id", "fleet-once", "--batch-size", "1000"});
  EXPECT_EQ(again.exit_code, 0) << again.output;
  EXPECT_EQ(Number(again.output, "samples_stored"), 0);
  EXPECT_EQ(Number(again.output, "samples_duplicate"), 12000);
  EXPECT_EQ(Number(again.output, "batches_duplicate"), 12);
  EXPECT_NE(again.output.find("already stored under --import-id fleet-once"), std::string::npos);
  EXPECT_EQ(Stat("samples"), 12000);
}

// An import cut short resumes under its id: the batches sheafd has are
// skipped, the rest stored. From standard input, too.
TEST_F(ImportTest, SameImportIdResumes) {
  std::string half, whole;
  for (int i = 0; i < 1000; ++i) {
    const std::string line = "resume_gauge{k=\"" + std::to_string(i % 10) + "\"} " + std::to_string(i) + " " +
                             std::to_string(NowMs() / 1000 * 1000 - (1000 - i) * 1000) + "\n";
    (i < 500 ? half : whole) += line;
  }
  whole = half + whole;
  Write("half.prom", half);
  Write("whole.prom", whole);
  auto cut = Ctl({"import", dir_.Sub("half.prom"), "--import-id", "resumable", "--batch-size", "100"});
  ASSERT_EQ(cut.exit_code, 0) << cut.output;
  ASSERT_EQ(Number(cut.output, "samples_stored"), 500);
  auto resumed = testing::RunCommand({"/bin/sh", "-c",
                                      "exec \"$0\" --addr \"$1\" import - --import-id resumable --batch-size 100 "
                                      "--format prometheus < \"$2\"",
                                      Bin("SHEAFCTL"), addr_, dir_.Sub("whole.prom")},
                                     seconds(60));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_EQ(Number(resumed.output, "samples_duplicate"), 500) << resumed.output;
  EXPECT_EQ(Number(resumed.output, "samples_stored"), 500);
  EXPECT_EQ(Number(resumed.output, "batches_duplicate"), 5);
  EXPECT_EQ(Stat("samples"), 1000);
}

// OpenMetrics from a month ago: the live window rejects all of it (exit 3,
// and the report says to use --backfill); with --backfill everything is
// stored, into a range sheafd had already rolled up, and the 1h step
// answers (from the roll-ups) match the file.
TEST_F(ImportTest, OldOpenMetricsNeedsBackfillAndRollsUpRight) {
  // sheafd rolls up everything older than 2 days shortly after it starts:
  // the month-old range is then behind its roll-up watermark.
  ASSERT_TRUE(WaitFor([&] { return Stat("rollups") >= 1; }, seconds(40)));
  const int64_t h0 = (NowMs() - 30 * kDay) / kHour * kHour;
  auto seconds_text = [](int64_t ms) {
    return std::to_string(ms / 1000) + "." + std::to_string(ms % 1000 + 1000).substr(1);
  };
  // Points at these minutes of 6 hours: the last one of each hour within 5
  // minutes of the next hour, so a PromQL range query and a raw step read
  // give the same value at every hour.
  const int kMinutes[] = {2, 12, 22, 32, 42, 57};
  std::string om = "# TYPE backfill_requests counter\n# HELP backfill_requests Requests served.\n";
  std::map<int64_t, double> temperature;
  std::string gauge = "# TYPE backfill_temperature_celsius gauge\n# UNIT backfill_temperature_celsius celsius\n";
  std::string histogram = "# TYPE backfill_latency_seconds histogram\n";
  int n = 0;
  for (int h = 0; h < 6; ++h) {
    for (int m : kMinutes) {
      const int64_t t = h0 + h * kHour + m * kMinute + 250;
      const std::string ts = seconds_text(t);
      om += "backfill_requests_total{path=\"/a\"} " + std::to_string(100 + 7 * n) + " " + ts + "\n";
      if (n == 0) om += "backfill_requests_created{path=\"/a\"} " + seconds_text(h0 - kHour) + " " + ts + "\n";
      const double celsius = 20 + h + m / 100.0;
      temperature[t] = celsius;
      gauge += "backfill_temperature_celsius{room=\"lab\"} " + std::to_string(celsius) + " " + ts + "\n";
      histogram += "backfill_latency_seconds_bucket{le=\"0.5\"} " + std::to_string(n) + " " + ts + " # {trace_id=\"t" +
                   std::to_string(n) + "\"} 0.2 " + ts + "\n";
      histogram += "backfill_latency_seconds_bucket{le=\"+Inf\"} " + std::to_string(2 * n) + " " + ts + "\n";
      histogram += "backfill_latency_seconds_sum " + std::to_string(0.25 * n) + " " + ts + "\n";
      histogram += "backfill_latency_seconds_count " + std::to_string(2 * n) + " " + ts + "\n";
      ++n;
    }
  }
  // Families are contiguous in OpenMetrics; 36 points each.
  Write("old.om", om + gauge + histogram + "# EOF\n");
  const int64_t stored = 36 * 6;  // counter, gauge, two buckets, sum, count; _created skipped

  auto live = Ctl({"import", dir_.Sub("old.om")});
  EXPECT_EQ(live.exit_code, 3) << live.output;
  EXPECT_NE(live.output.find("format                    openmetrics"), std::string::npos) << live.output;
  EXPECT_EQ(Number(live.output, "samples_stored"), 0);
  EXPECT_EQ(Number(live.output, "samples_rejected"), stored);
  EXPECT_EQ(Number(live.output, "timestamp_out_of_window"), stored);
  EXPECT_NE(live.output.find("run again with --backfill"), std::string::npos) << live.output;
  EXPECT_EQ(Stat("samples"), 0);

  auto backfill = Ctl({"import", dir_.Sub("old.om"), "--backfill"});
  EXPECT_EQ(backfill.exit_code, 0) << backfill.output;
  EXPECT_EQ(Number(backfill.output, "samples_stored"), stored) << backfill.output;
  EXPECT_EQ(Number(backfill.output, "created_skipped"), 1);
  EXPECT_EQ(Number(backfill.output, "samples_rejected"), 0);
  EXPECT_EQ(Stat("samples"), stored);

  const std::vector<std::string> range = {"--start", std::to_string(h0), "--end", std::to_string(h0 + 6 * kHour)};
  auto raw_args = range;
  raw_args.insert(raw_args.begin(), "backfill_temperature_celsius");
  EXPECT_EQ(Points(raw_args), temperature);
  auto counter = Ctl({"query", "backfill_requests_total", "--format", "json", "--start", std::to_string(h0), "--end",
                      std::to_string(h0 + 6 * kHour)});
  EXPECT_NE(counter.output.find("\"type\":\"counter\""), std::string::npos) << counter.output;

  // The last point of each hour, at the next hour: from the roll-ups,
  // whether the heads are still in memory or cut into blocks.
  std::map<int64_t, double> hourly;
  for (int h = 1; h <= 6; ++h) hourly[h0 + h * kHour] = std::prev(temperature.lower_bound(h0 + h * kHour))->second;
  const std::vector<std::string> step_args = {"backfill_temperature_celsius",
                                              "--start",
                                              std::to_string(h0 + kHour),
                                              "--end",
                                              std::to_string(h0 + 6 * kHour),
                                              "--step",
                                              "1h"};
  EXPECT_EQ(Points(step_args), hourly);
  ASSERT_EQ(Ctl({"compact"}).exit_code, 0);
  EXPECT_EQ(Points(step_args), hourly);
  EXPECT_EQ(Stat("samples"), stored);

  // PromQL over whole hours reads the 1h roll-ups, no raw sample, and each
  // hour's count, min, max and sum agree with the file.
  std::map<std::string, std::map<int64_t, double>> per_hour;  // function -> hour end -> value
  for (const auto& [t, v] : temperature) {
    const int64_t end = t / kHour * kHour + kHour;
    auto& count = per_hour["count_over_time"][end];
    auto& min = per_hour["min_over_time"][end];
    auto& max = per_hour["max_over_time"][end];
    min = count == 0 ? v : std::min(min, v);
    max = count == 0 ? v : std::max(max, v);
    per_hour["sum_over_time"][end] += v;
    count += 1;
  }
  for (const auto& [function, want] : per_hour) {
    const std::string expr = function + "(backfill_temperature_celsius[1h])";
    auto got =
        Points({expr, "--start", std::to_string(h0 + kHour), "--end", std::to_string(h0 + 6 * kHour), "--step", "1h"});
    ASSERT_EQ(got.size(), want.size()) << expr;
    for (const auto& [t, v] : want) EXPECT_NEAR(got[t], v, 1e-9 * std::abs(v)) << expr << " at " << t;
    auto table = Ctl({"query", expr, "--start", std::to_string(h0 + kHour), "--end", std::to_string(h0 + 6 * kHour),
                      "--step", "1h"});
    EXPECT_NE(table.output.find("read 1 series, 0 samples, 6 rollup windows"), std::string::npos) << table.output;
  }
}

// Lines that cannot be parsed are named with their line number, counted,
// and the rest is imported (exit 3); a daemon that is gone is exit 1 with
// how to resume.
TEST_F(ImportTest, BadLinesAndAMissingDaemon) {
  const int64_t t = NowMs() / 1000 * 1000;
  Write("bad.prom", "# TYPE ok gauge\nok 1 " + std::to_string(t) + "\nok{a=\"1} 2 " + std::to_string(t + 1000) +
                        "\nok 3 " + std::to_string(t + 2000) + "\n");
  auto r = Ctl({"import", dir_.Sub("bad.prom")});
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_EQ(Number(r.output, "parse_errors"), 1);
  EXPECT_EQ(Number(r.output, "samples_stored"), 2);
  EXPECT_NE(r.output.find("bad.prom: line 3, column 6: the value of label \"a\" has no closing '\"'"),
            std::string::npos)
      << r.output;

  EXPECT_EQ(Ctl({"import", dir_.Sub("missing.prom")}).exit_code, 2);

  sheafd_->Signal(SIGTERM);
  ASSERT_EQ(sheafd_->Wait(seconds(20)), 0);
  auto gone = Ctl({"import", dir_.Sub("bad.prom"), "--import-id", "retry-me"});
  EXPECT_EQ(gone.exit_code, 1) << gone.output;
  EXPECT_NE(gone.output.find("--import-id retry-me to resume"), std::string::npos) << gone.output;
}

}  // namespace
}  // namespace sheaf
