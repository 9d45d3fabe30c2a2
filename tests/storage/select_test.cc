// Series selection (SeriesStore::Select) against a brute-force reference:
// every matcher kind, matchers that accept the empty value (and so select
// series without the label), tenants, deleted series, random data and
// random selectors, and the promise that a matcher runs once per distinct
// label value rather than once per series.
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <future>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "model/labels.h"
#include "model/matcher.h"
#include "storage/series_store.h"
#include "tests/support/temp_dir.h"

namespace sheaf::storage {
namespace {

using model::Matcher;
using Op = Matcher::Op;

Matcher M(Op op, const std::string& name, const std::string& value) {
  auto m = Matcher::Create(op, name, value);
  EXPECT_TRUE(m.ok()) << m.status();
  return *m;
}

std::string Describe(const std::vector<Matcher>& matchers) {
  std::string out = "{";
  for (const Matcher& m : matchers) out += (out.size() > 1 ? ", " : "") + m.ToString();
  return out + "}";
}

// The store and what it should hold, side by side.
class SelectTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  void Reopen() {
    store_.reset();
    StoreOptions o;
    o.path = dir_.Sub("db");
    o.sync = false;
    o.test_fault = [this](std::string_view point) {
      if (point == "select_match") ++matcher_runs_;
      if (point == "delete_series" && on_delete_) on_delete_();
      return absl::OkStatus();
    };
    auto s = SeriesStore::Open(o);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
  }

  SeriesId Add(TenantId tenant, Labels labels) {
    EXPECT_TRUE(model::Canonicalize(labels).ok());
    auto id = store_->GetOrCreateSeries(tenant, labels, MetricType::kGauge);
    EXPECT_TRUE(id.ok()) << id.status();
    if (!id.ok()) return 0;
    reference_[*id] = {tenant, labels};
    return *id;
  }

  void Delete(TenantId tenant, const std::vector<Matcher>& matchers) {
    auto n = store_->DeleteSeries(tenant, matchers);
    ASSERT_TRUE(n.ok()) << n.status();
    uint64_t expected = 0;
    for (SeriesId id : Expected(tenant, matchers)) {
      reference_.erase(id);
      ++expected;
    }
    EXPECT_EQ(*n, expected) << Describe(matchers);
  }

  // Brute force: every live series of the tenant, every matcher, a missing
  // label being "".
  std::vector<SeriesId> Expected(TenantId tenant, const std::vector<Matcher>& matchers) const {
    std::vector<SeriesId> out;
    for (const auto& [id, series] : reference_) {
      if (series.first == tenant && model::MatchesAll(matchers, series.second)) out.push_back(id);
    }
    return out;
  }

  std::vector<SeriesId> Select(TenantId tenant, const std::vector<Matcher>& matchers) {
    auto got = store_->Select(tenant, matchers);
    EXPECT_TRUE(got.ok()) << got.status();
    return got.value_or(std::vector<SeriesId>{});
  }

  void ExpectSameAsReference(TenantId tenant, const std::vector<Matcher>& matchers) {
    EXPECT_EQ(Select(tenant, matchers), Expected(tenant, matchers)) << Describe(matchers) << " tenant " << tenant;
  }

  testing::TempDir dir_;
  std::unique_ptr<SeriesStore> store_;
  std::map<SeriesId, std::pair<TenantId, Labels>> reference_;
  std::atomic<uint64_t> matcher_runs_ = 0;
  std::function<void()> on_delete_;  // in DeleteSeries, between its write and the series leaving memory
};

TEST_F(SelectTest, EveryMatcherKindWithAndWithoutTheLabel) {
  SeriesId a = Add(0, {{"__name__", "m"}, {"a", "x"}, {"b", "1"}});
  SeriesId b = Add(0, {{"__name__", "m"}, {"a", "y"}});
  SeriesId c = Add(0, {{"__name__", "m"}, {"b", "2"}});  // no `a`
  SeriesId d = Add(0, {{"__name__", "n"}, {"a", "xy"}});
  using V = std::vector<SeriesId>;
  auto select = [&](std::vector<Matcher> m) { return Select(0, m); };
  // Positive (rejects the empty value): series with the label only.
  EXPECT_EQ(select({M(Op::kEqual, "a", "x")}), (V{a}));
  EXPECT_EQ(select({M(Op::kRegex, "a", "x|y")}), (V{a, b}));
  EXPECT_EQ(select({M(Op::kRegex, "a", "x.*")}), (V{a, d}));  // anchored: xy too, not y
  EXPECT_EQ(select({M(Op::kRegex, "a", ".+")}), (V{a, b, d}));
  EXPECT_EQ(select({M(Op::kNotEqual, "a", "")}), (V{a, b, d}));
  EXPECT_EQ(select({M(Op::kNotRegex, "a", ".*")}), (V{}));
  EXPECT_EQ(select({M(Op::kNotRegex, "a", "|x")}), (V{b, d}));
  // Accepting the empty value: series without the label too.
  EXPECT_EQ(select({M(Op::kNotEqual, "a", "x")}), (V{b, c, d}));
  EXPECT_EQ(select({M(Op::kRegex, "a", "x|")}), (V{a, c}));
  EXPECT_EQ(select({M(Op::kNotRegex, "a", "y|xy")}), (V{a, c}));
  EXPECT_EQ(select({M(Op::kEqual, "a", "")}), (V{c}));
  EXPECT_EQ(select({M(Op::kRegex, "a", ".*")}), (V{a, b, c, d}));
  EXPECT_EQ(select({M(Op::kEqual, "nope", "")}), (V{a, b, c, d}));
  // Combinations, positive and not.
  EXPECT_EQ(select({M(Op::kEqual, "__name__", "m"), M(Op::kNotEqual, "a", "x")}), (V{b, c}));
  EXPECT_EQ(select({M(Op::kEqual, "__name__", "m"), M(Op::kEqual, "a", "")}), (V{c}));
  EXPECT_EQ(select({M(Op::kRegex, "a", "x|y|xy"), M(Op::kRegex, "b", "1|")}), (V{a, b, d}));
  EXPECT_EQ(select({M(Op::kNotEqual, "a", "y"), M(Op::kNotRegex, "b", "2")}), (V{a, d}));
  EXPECT_EQ(select({M(Op::kEqual, "__name__", "m"), M(Op::kEqual, "__name__", "n")}), (V{}));
  EXPECT_EQ(select({M(Op::kEqual, "nope", "z")}), (V{}));
  EXPECT_EQ(select({}), (V{a, b, c, d}));
}

// A label with few values over many series: each matcher runs once per
// distinct value (the test_fault hook counts the runs), not per series.
TEST_F(SelectTest, AMatcherRunsOncePerDistinctValueNotPerSeries) {
  constexpr int kSeries = 2000, kValues = 10;
  for (int i = 0; i < kSeries; ++i) {
    Add(0, {{"__name__", "m"}, {"host", "h" + std::to_string(i)}, {"v", "v" + std::to_string(i % kValues)}});
  }
  Add(0, {{"__name__", "other"}, {"v", "v3"}});
  for (const auto& matchers : std::vector<std::vector<Matcher>>{
           {M(Op::kRegex, "v", "v[1-3]")},
           {M(Op::kEqual, "__name__", "m"), M(Op::kRegex, "v", "v1|v7")},
           {M(Op::kEqual, "__name__", "m"), M(Op::kNotRegex, "v", "v[0-8]")},
           {M(Op::kRegex, "v", "v1|"), M(Op::kEqual, "__name__", "m")},
       }) {
    matcher_runs_ = 0;
    ExpectSameAsReference(0, matchers);
    EXPECT_GT(matcher_runs_, 0u) << Describe(matchers);
    // At most every value of `v` and of `__name__` ("m", "other") once.
    EXPECT_LE(matcher_runs_, static_cast<uint64_t>(kValues + 2)) << Describe(matchers);
  }
  // Few candidates: the matchers left run on their labels in memory, still
  // once per distinct value.
  for (const auto& matchers : std::vector<std::vector<Matcher>>{
           {M(Op::kEqual, "__name__", "other"), M(Op::kRegex, "v", "v3|v4")},
           {M(Op::kEqual, "v", "v4"), M(Op::kRegex, "__name__", "m|x"), M(Op::kNotRegex, "__name__", "x.*")},
       }) {
    matcher_runs_ = 0;
    ExpectSameAsReference(0, matchers);
    EXPECT_GT(matcher_runs_, 0u) << Describe(matchers);
    EXPECT_LE(matcher_runs_, 2u) << Describe(matchers);
  }
  // `=` and `!=` over the postings need no run at all: one list each.
  matcher_runs_ = 0;
  ExpectSameAsReference(0, {M(Op::kEqual, "__name__", "m"), M(Op::kNotEqual, "v", "v4")});
  EXPECT_EQ(matcher_runs_, 0u);
}

// Random series (labels present or not, values from small pools) in two
// tenants, some deleted, against random selectors of one to three matchers.
TEST_F(SelectTest, RandomSelectorsMatchTheBruteForceReference) {
  std::mt19937 rng(20261129);
  const std::vector<std::string> names = {"__name__", "a", "b", "c"};
  const std::vector<std::string> values = {"x", "y", "z", "xy", "x1", "x2", "yy", "w"};
  auto pick = [&](const auto& v) { return v[rng() % v.size()]; };
  for (int i = 0; i < 600; ++i) {
    Labels l = {{"i", std::to_string(i)}};  // every label set distinct
    for (const std::string& n : names) {
      if (rng() % 10 < 7) l.push_back({n, pick(values)});
    }
    Add(i % 5 == 0 ? 1 : 0, l);
  }
  const std::vector<std::string> regexes = {"x|y", "x.*", ".*", ".+", "", "x|", "y.?", "(z|w)|", "[xy]+", "nope"};
  auto random_matcher = [&] {
    const Op op = static_cast<Op>(rng() % 4);
    std::string value;
    if (op == Op::kEqual || op == Op::kNotEqual) {
      value = rng() % 6 == 0 ? "" : rng() % 9 == 0 ? "nope" : pick(values);
    } else {
      value = pick(regexes);
    }
    return M(op, rng() % 12 == 0 ? "missing" : pick(names), value);
  };
  auto check_random = [&](int rounds) {
    for (int round = 0; round < rounds; ++round) {
      std::vector<Matcher> matchers;
      for (int n = 1 + rng() % 3; n > 0; --n) matchers.push_back(random_matcher());
      ExpectSameAsReference(round % 3 == 0 ? 1 : 0, matchers);
      if (HasFailure()) return;
    }
  };
  check_random(1500);
  // Deleted series leave every answer, also across a reopen.
  Delete(0, {M(Op::kEqual, "a", "x")});
  Delete(0, {M(Op::kRegex, "b", "y.*"), M(Op::kNotEqual, "c", "z")});
  Delete(1, {M(Op::kEqual, "__name__", "")});
  check_random(500);
  Reopen();
  check_random(500);
}

// A series whose deletion is written (its postings gone) but which is still
// in memory must not pass for one without its labels.
TEST_F(SelectTest, AHalfDeletedSeriesIsNotTakenForOneWithoutItsLabels) {
  SeriesId x = Add(0, {{"__name__", "m"}, {"a", "x"}});
  SeriesId y = Add(0, {{"__name__", "m"}, {"a", "y"}});
  std::promise<void> reached, release;
  on_delete_ = [&] {
    reached.set_value();
    release.get_future().wait();
  };
  std::thread deleter([&] { EXPECT_EQ(*store_->DeleteSeries(0, {M(Op::kEqual, "a", "x")}), 1u); });
  reached.get_future().wait();
  EXPECT_EQ(Select(0, {M(Op::kNotEqual, "a", "x")}), std::vector<SeriesId>{y});
  EXPECT_EQ(Select(0, {M(Op::kEqual, "a", "")}), std::vector<SeriesId>{});
  EXPECT_EQ(Select(0, {M(Op::kRegex, "a", "x|y")}), std::vector<SeriesId>{y});
  release.set_value();
  deleter.join();
  EXPECT_TRUE(Select(0, {M(Op::kEqual, "a", "x")}).empty());
  EXPECT_FALSE(store_->GetSeries(x).has_value());
}

// Selection while series are created and deleted: an answer never holds a
// series that does not match (a half-deleted series must not pass for one
// without the label), nor another tenant's.
TEST_F(SelectTest, ConcurrentCreationAndDeletionNeverYieldAWrongSeries) {
  for (int i = 0; i < 200; ++i) Add(0, {{"__name__", "m"}, {"a", i % 2 ? "x" : "y"}, {"i", std::to_string(i)}});
  std::atomic<bool> stop = false;
  std::thread writer([&] {
    for (int i = 200; i < 600 && !stop; ++i) {
      auto id =
          store_->GetOrCreateSeries(0, {{"__name__", "m"}, {"a", "x"}, {"i", std::to_string(i)}}, MetricType::kGauge);
      auto other = store_->GetOrCreateSeries(1, {{"__name__", "m"}, {"i", std::to_string(i)}}, MetricType::kGauge);
      ASSERT_TRUE(id.ok() && other.ok());
      auto gone = store_->DeleteSeries(0, {M(Op::kEqual, "i", std::to_string(i - 100))});
      ASSERT_TRUE(gone.ok());
    }
  });
  const std::vector<Matcher> not_x = {M(Op::kNotEqual, "a", "x")};
  const std::vector<Matcher> no_i = {M(Op::kEqual, "a", "x"), M(Op::kRegex, "i", "1.*|")};
  for (int round = 0; round < 300; ++round) {
    for (const auto* matchers : {&not_x, &no_i}) {
      for (SeriesId id : Select(0, *matchers)) {
        auto info = store_->GetSeries(id);
        if (!info) continue;  // deleted since
        EXPECT_EQ(info->tenant, 0u);
        EXPECT_TRUE(model::MatchesAll(*matchers, info->labels)) << model::FormatLabels(info->labels);
      }
    }
    if (HasFailure()) break;
  }
  stop = true;
  writer.join();
}

}  // namespace
}  // namespace sheaf::storage
