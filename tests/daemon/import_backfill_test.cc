// Backfill through Push (MetricBatch.backfill): history older than the live
// window is stored when, and only when, a batch asks for it; everything
// else is validated as usual; the store takes it behind the out-of-order
// window; roll-ups of the backfilled range come out right.
#include <google/protobuf/descriptor.h>
#include <gtest/gtest.h>

#include <map>

#include "sheaf/v1/ingest_decode.pb.h"
#include "tests/daemon/daemon_fixture.h"
#include "tests/support/net.h"
#include "tests/support/process.h"

namespace sheaf::daemon {
namespace {

constexpr int64_t kMinute = 60'000;
constexpr int64_t kHour = 3'600'000;
constexpr int64_t kDay = 86'400'000;

class ImportBackfillTest : public DaemonTest {
 protected:
  void SetUp() override {
    DaemonConfig config;
    // The store's clock is the ingest clock, so retention, the roll-up
    // watermark and the window all agree on "now".
    config.store.now_ms = [] { return kNow; };
    config.store.maintenance_interval_ms = 50;
    Start(config);
    admin_ = v1::AdminService::NewStub(channel_);
  }

  v1::MetricBatch Backfill(uint64_t seq, std::vector<v1::Series> series) {
    v1::MetricBatch b = Batch("importer", seq, std::move(series));
    b.set_backfill(true);
    return b;
  }

  // reason -> samples rejected, from an ack.
  static std::map<v1::RejectReason, uint64_t> Rejected(const v1::PushAck& ack) {
    std::map<v1::RejectReason, uint64_t> out;
    for (const auto& r : ack.rejected()) out[r.reason()] += r.samples();
    return out;
  }

  static std::string Example(const v1::PushAck& ack, v1::RejectReason reason) {
    for (const auto& r : ack.rejected()) {
      if (r.reason() == reason) return r.example();
    }
    return "";
  }

  void Compact() {
    grpc::ClientContext ctx;
    v1::CompactResponse resp;
    ASSERT_TRUE(admin_->Compact(&ctx, v1::CompactRequest(), &resp).ok());
  }

  std::unique_ptr<v1::AdminService::Stub> admin_;
};

TEST_F(ImportBackfillTest, ThirtyDayOldBatchIsStoredOnlyAsBackfill) {
  const int64_t t0 = kNow - 30 * kDay;
  auto series = [&] {
    return MakeSeries({{"__name__", "imported_temperature"}, {"site", "a"}}, v1::METRIC_TYPE_GAUGE,
                      {{t0, 20.5}, {t0 + 10'000, 21}, {t0 + 20'000, 21.5}});
  };
  // Without the flag, the live window (--accept-past 7d) rejects it.
  v1::PushAck ack;
  ASSERT_TRUE(Push({Batch("importer", 1, {series()})}, &ack).ok());
  EXPECT_EQ(ack.samples_stored(), 0u);
  EXPECT_EQ(Rejected(ack), (std::map<v1::RejectReason, uint64_t>{{v1::REJECT_REASON_TIMESTAMP_OUT_OF_WINDOW, 3}}));
  EXPECT_NE(Example(ack, v1::REJECT_REASON_TIMESTAMP_OUT_OF_WINDOW).find("outside the accepted window"),
            std::string::npos);

  // With it, stored.
  ASSERT_TRUE(Push({Backfill(2, {series()})}, &ack).ok());
  EXPECT_EQ(ack.batches_applied(), 1u);
  EXPECT_EQ(ack.samples_stored(), 3u);
  EXPECT_EQ(ack.rejected_size(), 0) << ack.rejected(0).example();
  auto r = Query("imported_temperature", t0 - kMinute, t0 + kMinute);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  ASSERT_EQ(r.samples.size(), 1u);
  EXPECT_EQ(r.samples.begin()->second,
            (std::vector<std::pair<int64_t, double>>{{t0, 20.5}, {t0 + 10'000, 21}, {t0 + 20'000, 21.5}}));
  EXPECT_EQ(Stats().samples(), 3u);

  // A retried backfill batch is a duplicate like any other.
  ASSERT_TRUE(Push({Backfill(2, {series()})}, &ack).ok());
  EXPECT_EQ(ack.batches_duplicate(), 1u);
  EXPECT_EQ(Stats().samples(), 3u);

  // Counted on /metrics.
  auto metrics = testing::HttpGet(daemon_->http_port(), "/metrics");
  ASSERT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find("\nsheaf_ingest_backfill_samples_total 3\n"), std::string::npos) << metrics.body;
  EXPECT_NE(metrics.body.find("\nsheaf_ingest_backfill_batches_total 1\n"), std::string::npos);
  EXPECT_NE(metrics.body.find("\nsheaf_ingest_samples_total 3\n"), std::string::npos);
}

TEST_F(ImportBackfillTest, BackfillIsValidatedLikeAnyBatchButThePastBound) {
  // The store keeps 1h roll-ups for 730 days (the longest retention by
  // default): that is how far back a backfill may go.
  const int64_t oldest = kNow - 730 * kDay;
  v1::PushAck ack;
  ASSERT_TRUE(
      Push({Backfill(
               1,
               {
                   MakeSeries({{"__name__", "ok_oldest"}}, v1::METRIC_TYPE_GAUGE, {{oldest, 1}}),
                   MakeSeries({{"__name__", "too_old"}}, v1::METRIC_TYPE_GAUGE, {{oldest - 1, 1}}),
                   MakeSeries({{"__name__", "future"}}, v1::METRIC_TYPE_GAUGE, {{kNow + kHour, 1}}),
                   MakeSeries({{"__name__", "nan"}}, v1::METRIC_TYPE_GAUGE, {{kNow - 30 * kDay, std::nan("")}}),
                   MakeSeries({{"__name__", "negative_total"}}, v1::METRIC_TYPE_COUNTER, {{kNow - 30 * kDay, -1}}),
                   MakeSeries({{"__name__", "m"}, {"bad-label", "x"}}, v1::METRIC_TYPE_GAUGE, {{kNow - 30 * kDay, 1}}),
               })},
           &ack)
          .ok());
  EXPECT_EQ(ack.samples_stored(), 1u);
  EXPECT_EQ(Rejected(ack), (std::map<v1::RejectReason, uint64_t>{
                               {v1::REJECT_REASON_TIMESTAMP_OUT_OF_WINDOW, 2},
                               {v1::REJECT_REASON_INVALID_VALUE, 2},
                               {v1::REJECT_REASON_INVALID_LABEL_NAME, 1},
                           }));
  const std::string window = Example(ack, v1::REJECT_REASON_TIMESTAMP_OUT_OF_WINDOW);
  EXPECT_NE(window.find("too_old"), std::string::npos) << window;
  EXPECT_NE(window.find("older than anything sheafd keeps"), std::string::npos) << window;
  EXPECT_NE(window.find("730 days"), std::string::npos) << window;
}

TEST_F(ImportBackfillTest, BackfillGoesBehindTheOutOfOrderWindow) {
  auto at = [](int64_t t, double v) {
    return MakeSeries({{"__name__", "requests_total"}, {"job", "api"}}, v1::METRIC_TYPE_COUNTER, {{t, v}});
  };
  v1::PushAck ack;
  ASSERT_TRUE(Push({Batch("live", 1, {at(kNow, 500)})}, &ack).ok());
  ASSERT_EQ(ack.samples_stored(), 1u);
  // Live data two hours behind the series' newest sample: out of order.
  ASSERT_TRUE(Push({Batch("live", 2, {at(kNow - 2 * kHour, 400)})}, &ack).ok());
  EXPECT_EQ(Rejected(ack), (std::map<v1::RejectReason, uint64_t>{{v1::REJECT_REASON_OUT_OF_ORDER, 1}}));
  // The same as a backfill, and a month further back: stored.
  ASSERT_TRUE(Push({Backfill(1, {at(kNow - 2 * kHour, 400), at(kNow - 30 * kDay, 10)})}, &ack).ok());
  EXPECT_EQ(ack.rejected_size(), 0) << ack.rejected(0).example();
  EXPECT_EQ(ack.samples_stored(), 2u);
  auto r = Query("requests_total", kNow - 31 * kDay, kNow);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  ASSERT_EQ(r.samples.size(), 1u);
  EXPECT_EQ(r.samples.begin()->second,
            (std::vector<std::pair<int64_t, double>>{{kNow - 30 * kDay, 10}, {kNow - 2 * kHour, 400}, {kNow, 500}}));
}

// The range is rolled up (behind the store's roll-up watermark) before the
// history arrives, in two imports whose samples interleave: the 1h and 1m
// roll-ups must show the union, as raw samples do.
TEST_F(ImportBackfillTest, RollupsOfABackfilledRangeAreRight) {
  // The store rolls up everything older than 2 days at start: wait for it,
  // so the backfilled range is behind the watermark.
  ASSERT_TRUE(testing::WaitFor([&] { return Stats().rollups() >= 1; }, std::chrono::seconds(20)));
  const int64_t h0 = (kNow - 30 * kDay) / kHour * kHour;
  std::map<int64_t, double> all;  // every sample imported
  auto batch = [&](uint64_t seq, std::vector<int> minutes) {
    std::vector<std::pair<int64_t, double>> samples;
    for (int h = 0; h < 6; ++h) {
      for (int m : minutes) {
        const int64_t t = h0 + h * kHour + m * kMinute;
        const double v = h * 100 + m + 0.5;
        samples.emplace_back(t, v);
        all[t] = v;
      }
    }
    return Backfill(seq, {MakeSeries({{"__name__", "history"}}, v1::METRIC_TYPE_GAUGE, samples)});
  };
  v1::PushAck ack;
  ASSERT_TRUE(Push({batch(1, {0, 10, 20, 30, 40, 50})}, &ack).ok());
  ASSERT_EQ(ack.samples_stored(), 36u);
  Compact();  // into blocks (and their roll-ups)
  ASSERT_TRUE(Push({batch(2, {5, 55})}, &ack).ok());
  ASSERT_EQ(ack.samples_stored(), 12u);
  Compact();

  // Raw: all 48.
  auto raw = Query("history", h0, h0 + 6 * kHour);
  ASSERT_TRUE(raw.status.ok()) << raw.status.error_message();
  ASSERT_EQ(raw.samples.size(), 1u);
  const std::vector<std::pair<int64_t, double>> want_raw(all.begin(), all.end());
  EXPECT_EQ(raw.samples.begin()->second, want_raw);

  // The last sample of [t - step, t), stamped t, for every step with data.
  auto expected = [&](int64_t start, int64_t end, int64_t step) {
    std::vector<std::pair<int64_t, double>> out;
    for (int64_t t = start; t <= end; t += step) {
      auto it = all.lower_bound(t);
      if (it == all.begin()) continue;
      --it;
      if (it->first >= t - step) out.emplace_back(t, it->second);
    }
    return out;
  };
  for (int64_t step : {kHour, kMinute}) {
    const int64_t start = h0 + step, end = h0 + 6 * kHour;
    auto r = Query("history", start, end, step);
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    ASSERT_EQ(r.samples.size(), 1u) << step;
    EXPECT_EQ(r.samples.begin()->second, expected(start, end, step)) << "step " << step;
  }
}

// The store has the last word on what is too old to keep (its clock may be
// ahead of the one validation used, or its retention shorter): what it
// drops is counted as a window rejection, not lost silently.
class StoreClockAheadTest : public ImportBackfillTest {
 protected:
  void SetUp() override {
    DaemonConfig config;
    config.store.now_ms = [] { return kNow + 10 * kDay; };
    Start(config);
  }
};

TEST_F(StoreClockAheadTest, SamplesBeyondTheStoresRetentionAreRejected) {
  // 725 days old for validation, 735 for the store (which keeps 730).
  v1::PushAck ack;
  ASSERT_TRUE(Push({Backfill(1, {MakeSeries({{"__name__", "ancient"}}, v1::METRIC_TYPE_GAUGE,
                                            {{kNow - 725 * kDay, 1}, {kNow - 30 * kDay, 2}})})},
                   &ack)
                  .ok());
  EXPECT_EQ(ack.samples_stored(), 1u);
  EXPECT_EQ(Rejected(ack), (std::map<v1::RejectReason, uint64_t>{{v1::REJECT_REASON_TIMESTAMP_OUT_OF_WINDOW, 1}}));
  EXPECT_NE(Example(ack, v1::REJECT_REASON_TIMESTAMP_OUT_OF_WINDOW)
                .find("ancient{} has 1 samples older than anything the store keeps"),
            std::string::npos)
      << Example(ack, v1::REJECT_REASON_TIMESTAMP_OUT_OF_WINDOW);
}

// sheafd decodes batches through ingest_decode.proto: every field of the
// public MetricBatch (backfill included) must be there with the same
// number and a wire-compatible type, or a client's flag would be dropped
// silently.
void ExpectSameWire(const google::protobuf::Descriptor* pub, const google::protobuf::Descriptor* view) {
  using FD = google::protobuf::FieldDescriptor;
  for (int i = 0; i < pub->field_count(); ++i) {
    const FD* f = pub->field(i);
    const FD* g = view->FindFieldByNumber(f->number());
    ASSERT_NE(g, nullptr) << view->full_name() << " lacks field " << f->number() << " (" << f->name() << ")";
    EXPECT_EQ(g->name(), f->name()) << view->full_name();
    EXPECT_EQ(g->is_repeated(), f->is_repeated()) << f->full_name();
    switch (f->type()) {
      case FD::TYPE_STRING:
        EXPECT_EQ(g->type(), FD::TYPE_BYTES) << f->full_name();
        break;
      case FD::TYPE_ENUM:
        EXPECT_EQ(g->type(), FD::TYPE_INT32) << f->full_name();
        break;
      case FD::TYPE_MESSAGE:
        ASSERT_EQ(g->type(), FD::TYPE_MESSAGE) << f->full_name();
        ExpectSameWire(f->message_type(), g->message_type());
        break;
      default:
        EXPECT_EQ(g->type(), f->type()) << f->full_name();
    }
  }
}

TEST(IngestDecodeViewTest, MatchesThePublicMetricBatch) {
  ExpectSameWire(v1::MetricBatch::descriptor(), v1::decode::MetricBatch::descriptor());
  v1::MetricBatch b;
  b.set_backfill(true);
  v1::decode::MetricBatch d;
  ASSERT_TRUE(d.ParseFromString(b.SerializeAsString()));
  EXPECT_TRUE(d.backfill());
}

}  // namespace
}  // namespace sheaf::daemon
