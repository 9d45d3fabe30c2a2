// QueryService.Tail against an in-process sheafd: subscribe, push, receive
// exactly what was stored; subscriptions changed mid-stream; bad
// requests; cancellation, deadlines and limits; shutdown with open tails;
// and a subscriber that stops reading while sheaf-loadgen pushes.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <regex>
#include <set>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "daemon/convert.h"
#include "model/labels.h"
#include "tests/daemon/daemon_fixture.h"
#include "tests/support/net.h"
#include "tests/support/process.h"

namespace sheaf::daemon {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// What a Tail client received so far.
struct Received {
  std::vector<v1::TailAck> acks;
  // By series (`name{labels}`): samples, and the subscription ids seen.
  std::map<std::string, std::vector<std::pair<int64_t, double>>> samples;
  std::map<std::string, std::set<uint64_t>> ids;
  uint64_t samples_total = 0;
  uint64_t missed = 0;
  uint64_t responses_with_missed = 0;
  bool ended = false;
  grpc::Status status;
  std::chrono::steady_clock::time_point ended_at;
};

// A Tail stream read by a thread of its own, which can be paused (a client
// that stops reading). Waits are bounded.
class TailClient {
 public:
  explicit TailClient(const std::shared_ptr<grpc::Channel>& channel, milliseconds deadline = milliseconds(0))
      : stub_(v1::QueryService::NewStub(channel)) {
    if (deadline.count() > 0) context_.set_deadline(std::chrono::system_clock::now() + deadline);
    stream_ = stub_->Tail(&context_);
    reader_ = std::thread([this] { ReadLoop(); });
  }
  ~TailClient() {
    context_.TryCancel();
    Resume();
    reader_.join();
  }

  bool Subscribe(uint64_t id, const std::string& selector) {
    v1::TailRequest request;
    request.mutable_subscribe()->set_subscription_id(id);
    request.mutable_subscribe()->set_selector(selector);
    return stream_->Write(request);
  }
  bool Unsubscribe(uint64_t id) {
    v1::TailRequest request;
    request.mutable_unsubscribe()->set_subscription_id(id);
    return stream_->Write(request);
  }
  void Pause() {
    absl::MutexLock lock(&mu_);
    paused_ = true;
  }
  void Resume() {
    absl::MutexLock lock(&mu_);
    paused_ = false;
  }
  void Cancel() { context_.TryCancel(); }

  bool WaitUntil(const std::function<bool(const Received&)>& done, milliseconds timeout = seconds(10)) {
    absl::MutexLock lock(&mu_);
    auto reached = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done(received_); };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), absl::FromChrono(timeout));
  }
  Received Snapshot() {
    absl::MutexLock lock(&mu_);
    return received_;
  }

 private:
  void ReadLoop() {
    v1::TailResponse response;
    for (;;) {
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(
            +[](bool* paused) { return !*paused; }, &paused_));
      }
      if (!stream_->Read(&response)) break;
      absl::MutexLock lock(&mu_);
      for (const auto& ack : response.acks()) received_.acks.push_back(ack);
      for (const auto& series : response.series()) {
        std::string key = model::FormatLabels(FromProto(series.labels()));
        for (const auto& s : series.samples()) received_.samples[key].emplace_back(s.timestamp_ms(), s.value());
        received_.ids[key].insert(series.subscription_ids().begin(), series.subscription_ids().end());
        received_.samples_total += series.samples_size();
      }
      received_.missed += response.missed_samples();
      if (response.missed_samples() > 0) ++received_.responses_with_missed;
    }
    grpc::Status status = stream_->Finish();
    absl::MutexLock lock(&mu_);
    received_.status = status;
    received_.ended = true;
    received_.ended_at = std::chrono::steady_clock::now();
  }

  std::unique_ptr<v1::QueryService::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::TailRequest, v1::TailResponse>> stream_;
  absl::Mutex mu_;
  Received received_ ABSL_GUARDED_BY(mu_);
  bool paused_ ABSL_GUARDED_BY(mu_) = false;
  std::thread reader_;
};

auto Acks(size_t n) {
  return [n](const Received& r) { return r.acks.size() >= n || r.ended; };
}

auto Has(const std::string& series, size_t n = 1) {
  return [series, n](const Received& r) {
    auto it = r.samples.find(series);
    return (it != r.samples.end() && it->second.size() >= n) || r.ended;
  };
}

v1::Series Gauge(const std::string& name, const std::string& host, std::vector<std::pair<int64_t, double>> samples) {
  return MakeSeries({{"__name__", name}, {"host", host}}, v1::METRIC_TYPE_GAUGE, std::move(samples));
}

class TailTest : public DaemonTest {
 protected:
  void SetUp() override { Start(DaemonConfig{}); }

  void PushOk(std::vector<v1::MetricBatch> batches) {
    v1::PushAck ack;
    grpc::Status s = Push(batches, &ack);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
};

TEST_F(TailTest, DeliversExactlyTheSamplesStored) {
  TailClient tail(channel_);
  ASSERT_TRUE(tail.Subscribe(1, R"(cpu{host=~"a|c"})"));
  ASSERT_TRUE(tail.Subscribe(2, "fence"));
  ASSERT_TRUE(tail.WaitUntil(Acks(2)));
  for (const auto& ack : tail.Snapshot().acks) {
    EXPECT_EQ(ack.action(), v1::TailAck::SUBSCRIBE);
    EXPECT_EQ(ack.code(), 0) << ack.error();
  }
  const v1::MetricBatch batch =
      Batch("agent-t", 1,
            {Gauge("cpu", "a", {{kNow - 3000, 1}, {kNow - 2000, 2.5}, {kNow - 1000, 3}}),
             Gauge("cpu", "b", {{kNow, 1}}), Gauge("mem", "a", {{kNow, 1}}),
             // Rejected (a counter may not be negative): never tailed.
             MakeSeries({{"__name__", "cpu"}, {"host", "c"}}, v1::METRIC_TYPE_COUNTER, {{kNow, -1}})});
  PushOk({batch});
  PushOk({batch});  // already durable: acknowledged, not stored, not tailed again
  PushOk({Batch("agent-t", 2, {Gauge("fence", "x", {{kNow, 0}})})});
  ASSERT_TRUE(tail.WaitUntil(Has(R"(fence{host="x"})")));

  // Samples of one stream arrive in the order they were stored, so once
  // the fence is here everything before it is too.
  Received r = tail.Snapshot();
  ASSERT_FALSE(r.ended) << r.status.error_message();
  ASSERT_EQ(r.samples.size(), 2u);
  EXPECT_EQ(r.samples[R"(cpu{host="a"})"],
            (std::vector<std::pair<int64_t, double>>{{kNow - 3000, 1}, {kNow - 2000, 2.5}, {kNow - 1000, 3}}));
  EXPECT_EQ(r.ids[R"(cpu{host="a"})"], (std::set<uint64_t>{1}));
  EXPECT_EQ(r.ids[R"(fence{host="x"})"], (std::set<uint64_t>{2}));
  EXPECT_EQ(r.missed, 0u);

  auto metrics = testing::HttpGet(daemon_->http_port(), "/metrics");
  ASSERT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find("sheaf_tail_subscribers 1"), std::string::npos) << metrics.body;
  EXPECT_NE(metrics.body.find("sheaf_tail_subscriptions 2"), std::string::npos);
  EXPECT_NE(metrics.body.find("sheaf_tail_samples_delivered_total 4"), std::string::npos);
  EXPECT_NE(metrics.body.find("sheaf_tail_samples_missed_total 0"), std::string::npos);
}

TEST_F(TailTest, SubscriptionsChangeMidStream) {
  TailClient tail(channel_);
  ASSERT_TRUE(tail.Subscribe(1, "cpu"));
  ASSERT_TRUE(tail.WaitUntil(Acks(1)));
  PushOk({Batch("agent-m", 1, {Gauge("cpu", "a", {{kNow - 5000, 1}})})});
  ASSERT_TRUE(tail.WaitUntil(Has(R"(cpu{host="a"})")));

  ASSERT_TRUE(tail.Subscribe(1, "mem"));  // same id: replaced
  ASSERT_TRUE(tail.Subscribe(2, "disk"));
  ASSERT_TRUE(tail.Unsubscribe(2));
  ASSERT_TRUE(tail.Subscribe(3, "disk"));
  ASSERT_TRUE(tail.WaitUntil(Acks(5)));
  Received acked = tail.Snapshot();
  for (size_t i = 1; i < 5; ++i) EXPECT_EQ(acked.acks[i].code(), 0) << acked.acks[i].error();
  EXPECT_EQ(acked.acks[3].action(), v1::TailAck::UNSUBSCRIBE);
  EXPECT_EQ(acked.acks[3].subscription_id(), 2u);

  PushOk({Batch("agent-m", 2,
                {Gauge("cpu", "a", {{kNow - 4000, 2}}), Gauge("mem", "a", {{kNow - 4000, 3}}),
                 Gauge("disk", "a", {{kNow - 4000, 4}})})});
  ASSERT_TRUE(tail.WaitUntil([](const Received& r) { return r.samples.size() == 3 || r.ended; }));
  Received r = tail.Snapshot();
  EXPECT_EQ(r.samples[R"(cpu{host="a"})"].size(), 1u);  // only the sample from before the change
  EXPECT_EQ(r.ids[R"(mem{host="a"})"], (std::set<uint64_t>{1}));
  EXPECT_EQ(r.ids[R"(disk{host="a"})"], (std::set<uint64_t>{3}));
  EXPECT_EQ(daemon_->tail_stats().subscriptions, 2u);
}

TEST_F(TailTest, BadRequestsAnswerThatSubscriptionAndTheStreamGoesOn) {
  TailClient tail(channel_);
  ASSERT_TRUE(tail.Subscribe(1, "cpu{"));
  ASSERT_TRUE(tail.Subscribe(2, R"({host=~".*"})"));
  ASSERT_TRUE(tail.Unsubscribe(5));
  ASSERT_TRUE(tail.Subscribe(3, "cpu"));
  ASSERT_TRUE(tail.WaitUntil(Acks(4)));
  Received r = tail.Snapshot();
  EXPECT_EQ(r.acks[0].code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(r.acks[0].subscription_id(), 1u);
  EXPECT_FALSE(r.acks[0].error().empty());
  EXPECT_EQ(r.acks[1].code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(r.acks[1].error().find("every series"), std::string::npos) << r.acks[1].error();
  EXPECT_EQ(r.acks[2].code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(r.acks[2].error().find("no subscription 5"), std::string::npos) << r.acks[2].error();
  EXPECT_EQ(r.acks[3].code(), 0);
  PushOk({Batch("agent-b", 1, {Gauge("cpu", "a", {{kNow, 1}})})});
  ASSERT_TRUE(tail.WaitUntil(Has(R"(cpu{host="a"})")));
  EXPECT_EQ(tail.Snapshot().ids[R"(cpu{host="a"})"], (std::set<uint64_t>{3}));
}

TEST_F(TailTest, UndecodableRequestEndsTheCallAndHalfCloseWithoutSubscriptionsIsOk) {
  grpc::Status s = RawCall("/sheaf.v1.QueryService/Tail", {std::string("\xff\xff\xff", 3)}, nullptr);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  s = RawCall("/sheaf.v1.QueryService/Tail", {}, nullptr);
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(testing::WaitFor([&] { return daemon_->tail_stats().subscribers == 0; }, seconds(5)));
}

TEST_F(TailTest, CancellationAndDeadlineEndTheStreamAndFreeItsSlot) {
  {
    TailClient tail(channel_);
    ASSERT_TRUE(tail.Subscribe(1, "cpu"));
    ASSERT_TRUE(tail.WaitUntil(Acks(1)));
    EXPECT_EQ(daemon_->tail_stats().subscribers, 1u);
    tail.Cancel();
    ASSERT_TRUE(tail.WaitUntil([](const Received& r) { return r.ended; }));
    EXPECT_EQ(tail.Snapshot().status.error_code(), grpc::StatusCode::CANCELLED);
  }
  EXPECT_TRUE(testing::WaitFor([&] { return daemon_->tail_stats().subscribers == 0; }, seconds(5)));
  {
    TailClient tail(channel_, milliseconds(300));
    ASSERT_TRUE(tail.Subscribe(1, "cpu"));
    ASSERT_TRUE(tail.WaitUntil([](const Received& r) { return r.ended; }));
    EXPECT_EQ(tail.Snapshot().status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  }
  EXPECT_TRUE(testing::WaitFor([&] { return daemon_->tail_stats().subscribers == 0; }, seconds(5)));
  EXPECT_EQ(daemon_->tail_stats().subscriptions, 0u);
}

TEST_F(TailTest, TooManyStreamsIsResourceExhaustedNamingTheLimit) {
  daemon_.reset();
  DaemonConfig config;
  config.tail.max_subscribers = 1;
  Start(config);
  TailClient first(channel_);
  ASSERT_TRUE(first.Subscribe(1, "cpu"));
  ASSERT_TRUE(first.WaitUntil(Acks(1)));
  TailClient second(channel_);
  ASSERT_TRUE(second.WaitUntil([](const Received& r) { return r.ended; }));
  Received r = second.Snapshot();
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(r.status.error_message().find("--max-tail-subscribers"), std::string::npos) << r.status.error_message();
}

// Shutdown ends open tails at once with UNAVAILABLE. Were they left to the
// grace period (1 s here), the server would cancel them at its end
// (CANCELLED) and only then stop.
TEST_F(TailTest, ShutdownEndsOpenTailsWithUnavailableBeforeTheGracePeriod) {
  // Over TCP, as users tail (an in-process channel can lose the status
  // when the server closes its transport right after the call finished).
  auto channel =
      grpc::CreateChannel("127.0.0.1:" + std::to_string(daemon_->grpc_port()), grpc::InsecureChannelCredentials());
  TailClient idle(channel);
  TailClient unsubscribed(channel);
  ASSERT_TRUE(idle.Subscribe(1, "cpu"));
  ASSERT_TRUE(idle.WaitUntil(Acks(1)));
  ASSERT_TRUE(testing::WaitFor([&] { return daemon_->tail_stats().subscribers == 2; }, seconds(5)));

  const auto started = std::chrono::steady_clock::now();
  daemon_->Shutdown();
  for (TailClient* tail : {&idle, &unsubscribed}) {
    ASSERT_TRUE(tail->WaitUntil([](const Received& r) { return r.ended; }, seconds(5)));
    Received r = tail->Snapshot();
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE) << r.status.error_message();
    EXPECT_NE(r.status.error_message().find("shutting down"), std::string::npos) << r.status.error_message();
    EXPECT_LT(r.ended_at - started, seconds(1));
  }
}

// sheaf-loadgen's "samples_per_second N" etc.
int64_t Field(const std::string& out, const std::string& key) {
  std::smatch m;
  return std::regex_search(out, m, std::regex(key + " ([0-9]+)")) ? std::stoll(m[1]) : -1;
}

// The issue's test: a subscriber to everything stops reading while
// sheaf-loadgen pushes. Ingestion completes and stores everything, at
// about the speed it has without the subscriber; the tail's memory stays
// within its buffer; when the subscriber reads again it is told what it
// missed, and what it received plus what it missed is exactly what was
// stored while it was subscribed.
TEST_F(TailTest, StalledSubscriberNeverSlowsIngestion) {
  const char* loadgen = std::getenv("SHEAF_LOADGEN");
  if (loadgen == nullptr) GTEST_SKIP() << "SHEAF_LOADGEN is not set (run through meson test)";
  daemon_.reset();
  DaemonConfig config;
  config.tail.max_buffer_samples = 20'000;
  config.tail.max_buffer_bytes = 4 << 20;
  Start(config);
  const std::string addr = "127.0.0.1:" + std::to_string(daemon_->grpc_port());
  constexpr int64_t kHosts = 500, kSeriesPerHost = 10, kPoints = 60, kIntervalMs = 10'000;
  constexpr int64_t kRunSamples = kHosts * kSeriesPerHost * kPoints;
  auto run = [&](const std::string& prefix, int64_t start_ms, int64_t points) {
    auto r = testing::RunCommand(
        {loadgen, "--addr", addr, "--hosts", std::to_string(kHosts), "--series-per-host",
         std::to_string(kSeriesPerHost), "--points", std::to_string(points), "--interval", "10s", "--start-ms",
         std::to_string(start_ms), "--agent-prefix", prefix, "--streams", "2", "--timeout", "2m"},
        seconds(150));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(Field(r.output, "samples_acked"), kHosts * kSeriesPerHost * points) << r.output;
    return Field(r.output, "samples_per_second");
  };
  // Series exist before the timed runs; each run's timestamps follow the
  // previous run's.
  int64_t start = kNow - 6 * 3'600'000;
  run("warm", start, 1);
  start += kIntervalMs;
  const int64_t baseline = run("baseline", start, kPoints);
  start += kPoints * kIntervalMs;

  TailClient tail(grpc::CreateChannel(addr, grpc::InsecureChannelCredentials()));
  ASSERT_TRUE(tail.Subscribe(1, R"({__name__=~".+"})"));
  ASSERT_TRUE(tail.WaitUntil(Acks(1)));
  ASSERT_EQ(tail.Snapshot().acks[0].code(), 0);
  tail.Pause();
  const int64_t stalled = run("stalled", start, kPoints);
  std::printf("sheaf-loadgen samples/s: %lld without a subscriber, %lld with a stalled one\n",
              static_cast<long long>(baseline), static_cast<long long>(stalled));
  EXPECT_EQ(Stats().samples(), static_cast<uint64_t>(kHosts * kSeriesPerHost + 2 * kRunSamples));
  // Generous: the machine is shared; a tail that held ingestion up would
  // make the stalled run take as long as the subscriber sleeps (forever).
  EXPECT_GT(stalled, baseline / 3);
  const TailStats during = daemon_->tail_stats();
  EXPECT_LE(during.peak_buffered_bytes, config.tail.max_buffer_bytes);
  EXPECT_GT(during.samples_missed, 0u);

  tail.Resume();
  ASSERT_TRUE(tail.WaitUntil([&](const Received& r) { return r.samples_total + r.missed >= kRunSamples || r.ended; },
                             seconds(60)));
  Received r = tail.Snapshot();
  ASSERT_FALSE(r.ended) << r.status.error_message();
  EXPECT_EQ(r.samples_total + r.missed, static_cast<uint64_t>(kRunSamples));
  EXPECT_GT(r.missed, 0u);
  EXPECT_GT(r.responses_with_missed, 0u);
  EXPECT_GT(r.samples_total, 0u);
  EXPECT_EQ(daemon_->tail_stats().buffered_bytes, 0u);
}

}  // namespace
}  // namespace sheaf::daemon
