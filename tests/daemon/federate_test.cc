// /federate over a real store: match[] parsing and union, the latest
// sample within the lookback, stale markers, escaping, grouping by name,
// errors and limits; the output passes `promtool check metrics`.
#include "daemon/federate.h"

#include <gtest/gtest.h>

#include <bit>
#include <cstdio>
#include <cstdlib>

#include "model/labels.h"
#include "storage/series_store.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace sheaf::daemon {
namespace {

constexpr int64_t kNow = 1'800'000'000'000;
const double kStaleMarker = std::bit_cast<double>(0x7ff0000000000002ull);

// `promtool check metrics` on `text`: its exit code and what it printed.
testing::CommandResult Promtool(const std::string& text) {
  testing::TempDir tmp;
  const std::string file = tmp.Sub("federate.txt");
  FILE* f = std::fopen(file.c_str(), "w");
  std::fwrite(text.data(), 1, text.size(), f);
  std::fclose(f);
  return testing::RunCommand({"/bin/sh", "-c", "promtool check metrics < " + file + " 2>&1"});
}

class FederateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    storage::StoreOptions o;
    o.path = dir_.Sub("db");
    o.sync = false;
    o.now_ms = [] { return kNow; };
    auto s = storage::SeriesStore::Open(o);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
  }

  void Add(model::Labels labels, std::vector<model::Sample> samples) {
    ASSERT_TRUE(model::Canonicalize(labels).ok());
    auto id = store_->GetOrCreateSeries(labels, model::MetricType::kGauge);
    ASSERT_TRUE(id.ok()) << id.status();
    storage::AppendBatch batch;
    batch.series.push_back({*id, std::move(samples)});
    ASSERT_TRUE(store_->Append(batch).ok());
  }

  HttpResponse Get(std::vector<std::string> selectors, FederateOptions options = {}) {
    options.now_ms = [] { return kNow; };
    HttpRequest request;
    request.method = "GET";
    request.path = "/federate";
    for (auto& s : selectors) request.params.emplace_back("match[]", std::move(s));
    request.params.emplace_back("other", "ignored");
    return FederateHandler(store_.get(), options)(request);
  }

  testing::TempDir dir_;
  std::unique_ptr<storage::SeriesStore> store_;
};

TEST_F(FederateTest, LatestSampleOfEachMatchingSeriesGroupedByName) {
  Add({{"__name__", "job:cpu:rate1m"}, {"region", "eu"}}, {{kNow - 120'000, 1}, {kNow - 60'000, 2.5}});
  Add({{"__name__", "job:cpu:rate1m"}, {"region", "us"}}, {{kNow - 30'000, 0.125}});
  Add({{"__name__", "a:first"}}, {{kNow - 1'000, 7}});
  Add({{"__name__", "job:cpu:rate1m"}, {"region", "ap"}}, {{kNow - 10 * 60'000, 9}});  // older than the lookback
  Add({{"__name__", "job:cpu:rate1m"}, {"region", "sa"}}, {{kNow - 60'000, 3}, {kNow - 30'000, kStaleMarker}});
  Add({{"__name__", "job:cpu:rate1m"}, {"region", "af"}}, {{kNow + 60'000, 4}});  // after now
  Add({{"__name__", "other"}}, {{kNow, 1}});

  HttpResponse r = Get({R"({__name__=~"job:.*"})", "a:first"});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(r.body,
            "# HELP a:first Federated from sheafd.\n# TYPE a:first untyped\n"
            "a:first 7 1799999999000\n"
            "# HELP job:cpu:rate1m Federated from sheafd.\n# TYPE job:cpu:rate1m untyped\n"
            "job:cpu:rate1m{region=\"eu\"} 2.5 1799999940000\n"
            "job:cpu:rate1m{region=\"us\"} 0.125 1799999970000\n");
  // The text parses; promtool's lint objects only to the ':' in the names,
  // which recording rules use by convention (level:metric:operations) and
  // Prometheus' own /federate writes the same way.
  auto lint = Promtool(r.body);
  EXPECT_EQ(lint.exit_code, 3) << lint.output;
  EXPECT_EQ(lint.output,
            "a:first metric names should not contain ':'\njob:cpu:rate1m metric names should not contain ':'\n");
  // Overlapping selectors name each series once.
  EXPECT_EQ(Get({"a:first", "a:first", R"({__name__="a:first"})"}).body,
            "# HELP a:first Federated from sheafd.\n# TYPE a:first untyped\na:first 7 1799999999000\n");
  // The lookback is an option (Prometheus' --query.lookback-delta).
  FederateOptions longer;
  longer.lookback_ms = 15 * 60'000;
  EXPECT_NE(Get({R"(job:cpu:rate1m{region="ap"})"}, longer).body.find("region=\"ap\"} 9 "), std::string::npos);
}

TEST_F(FederateTest, LabelValuesAreEscapedAndNumbersWrittenAsPrometheusDoes) {
  Add({{"__name__", "esc"}, {"path", "C:\\dir\\\"quoted\"\nnext"}, {"utf8", "é€"}}, {{kNow, 1e-7}});
  Add({{"__name__", "num"}, {"k", "big"}}, {{kNow, 1234567890123}});
  Add({{"__name__", "num"}, {"k", "inf"}}, {{kNow, std::numeric_limits<double>::infinity()}});
  Add({{"__name__", "num"}, {"k", "neg"}}, {{kNow, -0.5}});
  HttpResponse r = Get({"esc", "num"});
  EXPECT_EQ(r.body,
            "# HELP esc Federated from sheafd.\n# TYPE esc untyped\n"
            "esc{path=\"C:\\\\dir\\\\\\\"quoted\\\"\\nnext\",utf8=\"é€\"} 1e-07 1800000000000\n"
            "# HELP num Federated from sheafd.\n# TYPE num untyped\n"
            "num{k=\"big\"} 1.234567890123e+12 1800000000000\n"
            "num{k=\"inf\"} +Inf 1800000000000\n"
            "num{k=\"neg\"} -0.5 1800000000000\n");

  // promtool, the reference linter of the format, agrees.
  auto lint = Promtool(r.body);
  EXPECT_EQ(lint.exit_code, 0) << lint.output;
}

TEST_F(FederateTest, MissingOrBadMatchIs400) {
  HttpResponse none = Get({});
  EXPECT_EQ(none.status, 400);
  EXPECT_NE(none.body.find("no match[] parameter"), std::string::npos) << none.body;
  for (const char* bad : {"up{", R"({job=~".*"})", "rate(up[5m])", "up offset 5m", ""}) {
    HttpResponse r = Get({"up", bad});
    EXPECT_EQ(r.status, 400) << bad;
    EXPECT_NE(r.body.find("match[]"), std::string::npos) << r.body;
  }
}

TEST_F(FederateTest, ABroadMatchPastTheLimitIsRefusedNamingIt) {
  for (int i = 0; i < 5; ++i) Add({{"__name__", "m"}, {"i", std::to_string(i)}}, {{kNow, 1}});
  FederateOptions options;
  options.max_series = 4;
  HttpResponse r = Get({"m"}, options);
  EXPECT_EQ(r.status, 422);
  EXPECT_NE(r.body.find("more than 4 series"), std::string::npos) << r.body;
  options.max_series = 5;
  EXPECT_EQ(Get({"m"}, options).status, 200);
  options.max_bytes = 100;
  r = Get({"m"}, options);
  EXPECT_EQ(r.status, 422);
  EXPECT_NE(r.body.find("larger than 100 bytes"), std::string::npos) << r.body;
}

TEST(AppendTextSampleTest, OneLinePerSample) {
  std::string out;
  AppendTextSample({{"__name__", "x"}}, {5, 0}, &out);
  AppendTextSample({{"__name__", "y"}, {"a", "1"}, {"b", ""}}, {-5, -1.5}, &out);
  EXPECT_EQ(out, "x 0 5\ny{a=\"1\",b=\"\"} -1.5 -5\n");
}

}  // namespace
}  // namespace sheaf::daemon
