// The remote-write sender against an in-process fake receiver (the
// daemon's own HttpServer): the request's form, selection and order,
// retries on 5xx and 429 with Retry-After honoured, 4xx dropped and
// counted, the queue kept across a restart and sent exactly once, the
// bounds (queue and buffer) with their drops counted; and the config file.
#include "daemon/remote_write_sender.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <snappy.h>

#include <chrono>
#include <cmath>
#include <deque>
#include <fstream>
#include <map>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "daemon/http_server.h"
#include "prometheus/remote.pb.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace sheaf::daemon {
namespace {

using namespace std::chrono_literals;
using testing::FreePort;
using testing::WaitFor;
using Clock = std::chrono::steady_clock;

HttpResponse Answer(int status, std::string body = "", std::string retry_after = "") {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  if (!retry_after.empty()) r.headers.push_back({"Retry-After", retry_after});
  return r;
}

// A remote-write receiver that answers from a script (then 204), and keeps
// what each request carried.
class FakeReceiver {
 public:
  struct Request {
    Clock::time_point at;
    std::map<std::string, std::string> headers;
    prompb::WriteRequest body;
    int answered = 0;
  };

  FakeReceiver() : server_(Options()) {
    server_.Handle("/api/v1/write", {"POST"}, [this](const HttpRequest& r) { return Serve(r); });
    EXPECT_TRUE(server_.Start().ok());
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(server_.port()) + "/api/v1/write"; }

  // The next answers, in order; 204 once they are used up (or `fallback`).
  void Script(std::vector<HttpResponse> answers) {
    absl::MutexLock lock(&mu_);
    script_.insert(script_.end(), answers.begin(), answers.end());
  }
  void SetFallback(int status) {
    absl::MutexLock lock(&mu_);
    fallback_ = status;
  }
  // Each answer is held this long (a receiver that hangs).
  void SetDelay(std::chrono::milliseconds delay) {
    absl::MutexLock lock(&mu_);
    delay_ = delay;
  }
  int arrived() const {  // requests that reached the handler, answered or not
    absl::MutexLock lock(&mu_);
    return arrived_;
  }
  std::vector<Request> requests() const {
    absl::MutexLock lock(&mu_);
    return requests_;
  }
  // Samples of 2xx-answered requests, by series (its labels, formatted).
  std::map<std::string, std::vector<std::pair<int64_t, double>>> Accepted() const {
    std::map<std::string, std::vector<std::pair<int64_t, double>>> out;
    for (const Request& r : requests()) {
      if (r.answered / 100 != 2) continue;
      for (const prompb::TimeSeries& ts : r.body.timeseries()) {
        std::string key;
        for (const prompb::Label& l : ts.labels()) key += l.name() + "=" + l.value() + ",";
        for (const prompb::Sample& s : ts.samples()) out[key].push_back({s.timestamp(), s.value()});
      }
    }
    return out;
  }
  size_t AcceptedSamples() const {
    size_t n = 0;
    for (const auto& [k, v] : Accepted()) n += v.size();
    return n;
  }

 private:
  static HttpServerOptions Options() {
    HttpServerOptions o;
    o.listen = "127.0.0.1:0";
    o.threads = 4;
    return o;
  }
  HttpResponse Serve(const HttpRequest& r) {
    std::chrono::milliseconds delay;
    {
      absl::MutexLock lock(&mu_);
      delay = delay_;
      ++arrived_;
    }
    std::this_thread::sleep_for(delay);
    Request req;
    req.at = Clock::now();
    for (const auto& [k, v] : r.headers) {
      std::string lower = k;
      for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      req.headers[lower] = v;
    }
    std::string raw;
    if (!snappy::Uncompress(r.body.data(), r.body.size(), &raw) || !req.body.ParseFromString(raw)) {
      req.answered = 400;
      absl::MutexLock lock(&mu_);
      requests_.push_back(req);
      return HttpResponse::Text(400, "not a snappy WriteRequest");
    }
    absl::MutexLock lock(&mu_);
    HttpResponse answer;
    if (!script_.empty()) {
      answer = script_.front();
      script_.pop_front();
    } else {
      answer = Answer(fallback_, fallback_ / 100 == 2 ? "" : "fallback");
    }
    req.answered = answer.status;
    requests_.push_back(std::move(req));
    return answer;
  }

  mutable absl::Mutex mu_;
  std::deque<HttpResponse> script_ ABSL_GUARDED_BY(mu_);
  int fallback_ ABSL_GUARDED_BY(mu_) = 204;
  std::chrono::milliseconds delay_ ABSL_GUARDED_BY(mu_){0};
  int arrived_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Request> requests_ ABSL_GUARDED_BY(mu_);
  HttpServer server_;
};

RemoteWriteConfig Config(const std::string& url, const std::string& dir) {
  RemoteWriteConfig c;
  c.url = url;
  c.queue_dir = dir;
  c.queue_sync = false;  // the tests need no fsync
  c.batch_send_deadline = 50ms;
  c.min_backoff = 10ms;
  c.max_backoff = 100ms;
  c.remote_timeout = 5s;
  EXPECT_TRUE(ValidateRemoteWriteConfig(&c, dir, "test").ok());
  return c;
}

std::shared_ptr<const ForwardedSeries> Series(storage::SeriesId id, const std::string& name,
                                              const std::string& host = "a") {
  return std::make_shared<const ForwardedSeries>(ForwardedSeries{id, {{"__name__", name}, {"host", host}}});
}

std::vector<model::Sample> Samples(int64_t from, int n, double value = 1) {
  std::vector<model::Sample> out;
  for (int i = 0; i < n; ++i) out.push_back({from + i * 1000, value + i});
  return out;
}

uint64_t Dropped(const RemoteWriteSender::Stats& s, const std::string& reason) {
  auto it = s.samples_dropped.find(reason);
  return it == s.samples_dropped.end() ? 0 : it->second;
}

TEST(RemoteWriteSenderTest, SendsWhatTheStoreKeptForSelectedSeriesInTimeOrder) {
  testing::TempDir dir;
  FakeReceiver receiver;
  prometheus::Registry registry;
  auto sender = RemoteWriteSender::Start(Config(receiver.url(), dir.Sub("q")), &registry);
  ASSERT_TRUE(sender.ok()) << sender.status();
  std::vector<std::unique_ptr<RemoteWriteSender>> senders;
  senders.push_back(*std::move(sender));
  std::map<storage::SeriesId, model::Labels> series = {
      {1, {{"__name__", "job:requests:rate5m"}, {"region", "eu"}}},
      {2, {{"__name__", "node_cpu_seconds_total"}, {"host", "a"}}},  // not an aggregate: not forwarded
      {3, {{"__name__", "region:load:avg"}, {"region", "us"}}},
  };
  RemoteWriteFanout fanout(
      [&](storage::SeriesId id) -> std::optional<storage::SeriesInfo> {
        auto it = series.find(id);
        if (it == series.end()) return std::nullopt;
        return storage::SeriesInfo{storage::kDefaultTenant, it->second, model::MetricType::kGauge};
      },
      std::move(senders));

  // Series 1 twice in one batch, out of time order, with one timestamp
  // twice (the later wins) and one sample the store refused as too old
  // (the oldest); series 3 deleted meanwhile; series 2 not selected.
  storage::AppendBatch batch;
  batch.series = {{1, {{5000, 5}, {3000, 3}}}, {2, {{1000, 1}}}, {1, {{4000, 4}, {3000, 33}, {1000, 1}}}, {3, {{1, 1}}}};
  storage::AppendResult result;
  result.too_old = {{1, 1}};
  result.deleted = {{3, 1}};
  fanout.Publish(batch, result);
  // A second batch later: series 3 is back.
  storage::AppendBatch later;
  later.series = {{3, {{7000, 7}, {8000, 8}}}, {1, {{6000, 6}}}};
  fanout.Publish(later, {});
  // Another tenant's series are not forwarded.
  storage::AppendBatch other;
  other.tenant = 7;
  other.series = {{1, {{9000, 9}}}};
  fanout.Publish(other, {});

  RemoteWriteSender* s = fanout.senders()[0].get();
  ASSERT_TRUE(WaitFor([&] { return s->stats().samples_sent == 6; }, 10s)) << s->stats().samples_sent;
  auto accepted = receiver.Accepted();
  EXPECT_EQ(accepted.size(), 2u);
  EXPECT_EQ(accepted["__name__=job:requests:rate5m,region=eu,"],
            (std::vector<std::pair<int64_t, double>>{{3000, 33}, {4000, 4}, {5000, 5}, {6000, 6}}));
  EXPECT_EQ(accepted["__name__=region:load:avg,region=us,"],
            (std::vector<std::pair<int64_t, double>>{{7000, 7}, {8000, 8}}));

  // The protocol's headers.
  const auto requests = receiver.requests();
  ASSERT_FALSE(requests.empty());
  const auto& h = requests[0].headers;
  EXPECT_EQ(h.at("content-encoding"), "snappy");
  EXPECT_EQ(h.at("content-type"), "application/x-protobuf");
  EXPECT_EQ(h.at("x-prometheus-remote-write-version"), "0.1.0");
  EXPECT_EQ(h.at("user-agent").rfind("sheafd/", 0), 0u) << h.at("user-agent");

  ASSERT_TRUE(WaitFor([&] { return s->stats().samples_pending == 0 && s->stats().lag_seconds == 0; }, 5s));
  const std::string text = prometheus::TextSerializer().Serialize(registry.Collect());
  EXPECT_NE(text.find("sheaf_remote_write_samples_sent_total{remote=\"" + s->config().name + "\"} 6"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("sheaf_remote_write_samples_dropped_total{reason=\"buffer_full\",remote=\"" +
                      s->config().name + "\"} 0"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("sheaf_remote_write_lag_seconds{remote=\"" + s->config().name + "\"} 0"), std::string::npos);
}

// With tenants, each remote forwards its tenant's series only (`tenant:`),
// e.g. one Mimir tenant per sheafd tenant.
TEST(RemoteWriteSenderTest, EachRemoteForwardsItsTenantsSeriesOnly) {
  testing::TempDir dir;
  FakeReceiver for_default, for_team;
  prometheus::Registry registry;
  std::vector<std::unique_ptr<RemoteWriteSender>> senders;
  for (auto [receiver, queue] : {std::pair{&for_default, "q0"}, std::pair{&for_team, "q7"}}) {
    auto sender = RemoteWriteSender::Start(Config(receiver->url(), dir.Sub(queue)), &registry);
    ASSERT_TRUE(sender.ok()) << sender.status();
    senders.push_back(*std::move(sender));
  }
  const std::map<storage::SeriesId, model::Labels> series = {
      {1, {{"__name__", "job:up:sum"}, {"team", "ops"}}},    // tenant 0
      {2, {{"__name__", "job:up:sum"}, {"team", "web"}}},    // tenant 7
  };
  RemoteWriteFanout fanout(
      [&](storage::SeriesId id) -> std::optional<storage::SeriesInfo> {
        return storage::SeriesInfo{id == 1 ? storage::kDefaultTenant : storage::TenantId{7}, series.at(id),
                                   model::MetricType::kGauge};
      },
      std::move(senders), {storage::kDefaultTenant, storage::TenantId{7}});
  storage::AppendBatch ops;
  ops.series = {{1, {{1000, 1}}}};
  storage::AppendBatch web;
  web.tenant = 7;
  web.series = {{2, {{1000, 2}}}, {2, {{2000, 3}}}};
  fanout.Publish(ops, {});
  fanout.Publish(web, {});
  ops.series = {{1, {{2000, 4}}}};
  fanout.Publish(ops, {});  // again: the answer cached per series id holds

  ASSERT_TRUE(WaitFor([&] { return fanout.senders()[1]->stats().samples_sent == 2; }, 10s));
  ASSERT_TRUE(WaitFor([&] { return fanout.senders()[0]->stats().samples_sent == 2; }, 10s));
  EXPECT_EQ(for_default.Accepted(), (std::map<std::string, std::vector<std::pair<int64_t, double>>>{
                                        {"__name__=job:up:sum,team=ops,", {{1000, 1}, {2000, 4}}}}));
  EXPECT_EQ(for_team.Accepted(), (std::map<std::string, std::vector<std::pair<int64_t, double>>>{
                                     {"__name__=job:up:sum,team=web,", {{1000, 2}, {2000, 3}}}}));
}

TEST(RemoteWriteSenderTest, RetriesOn5xxAnd429HonouringRetryAfterAndDropsOtherwise4xx) {
  testing::TempDir dir;
  FakeReceiver receiver;
  // Request 1: 500, 503, 429 with Retry-After 1 (seconds), then 204.
  // Request 2: 400: dropped, never retried. Request 3: 429 with an HTTP
  // date 2 s ahead, then 204.
  receiver.Script({Answer(500, "boom"), Answer(503, "busy"), Answer(429, "slow down", "1"), Answer(204),
                   Answer(400, "out of order sample")});
  auto started = RemoteWriteSender::Start(Config(receiver.url(), dir.Sub("q")));
  ASSERT_TRUE(started.ok()) << started.status();
  RemoteWriteSender& s = **started;
  s.Enqueue(Series(1, "a:b"), Samples(1000, 10));
  ASSERT_TRUE(WaitFor([&] { return s.stats().samples_sent == 10; }, 10s));
  s.Enqueue(Series(1, "a:b"), Samples(100000, 5));
  ASSERT_TRUE(WaitFor([&] { return Dropped(s.stats(), "rejected") == 5; }, 10s));

  char date[64];
  const time_t at = time(nullptr) + 3;
  struct tm gmt;
  gmtime_r(&at, &gmt);
  strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &gmt);
  receiver.Script({Answer(429, "later", date), Answer(200)});
  s.Enqueue(Series(1, "a:b"), Samples(200000, 3));
  ASSERT_TRUE(WaitFor([&] { return s.stats().samples_sent == 13; }, 10s));

  const auto r = receiver.requests();
  ASSERT_EQ(r.size(), 7u);
  // Backoff after 500 and 503 (10-100 ms), at least a second after the 429.
  EXPECT_LT(r[1].at - r[0].at, 1s);
  EXPECT_GE(r[3].at - r[2].at, 1s);
  EXPECT_LT(r[3].at - r[2].at, 3s);
  // The date was 2-3 s ahead when the 429 came (second granularity).
  EXPECT_GE(r[6].at - r[5].at, 1500ms);
  EXPECT_LT(r[6].at - r[5].at, 5s);
  // The retried request is the same request each time.
  for (int i = 1; i < 4; ++i) EXPECT_EQ(r[i].body.SerializeAsString(), r[0].body.SerializeAsString());

  const auto st = s.stats();
  EXPECT_EQ(st.retries, 4u);
  EXPECT_EQ(st.requests.at("500"), 1u);
  EXPECT_EQ(st.requests.at("503"), 1u);
  EXPECT_EQ(st.requests.at("429"), 2u);
  EXPECT_EQ(st.requests.at("400"), 1u);
  EXPECT_EQ(st.requests.at("204"), 1u);
  EXPECT_EQ(st.requests.at("200"), 1u);
  EXPECT_EQ(receiver.AcceptedSamples(), 13u);
}

TEST(RemoteWriteSenderTest, UnreachableReceiverIsRetriedAndStopIsPrompt) {
  testing::TempDir dir;
  const int port = FreePort();  // nobody listens
  RemoteWriteConfig c = Config(fmt::format("http://127.0.0.1:{}/api/v1/write", port), dir.Sub("q"));
  auto s = RemoteWriteSender::Start(c);
  ASSERT_TRUE(s.ok());
  (*s)->Enqueue(Series(1, "a:b"), Samples(0, 5));
  ASSERT_TRUE(WaitFor([&] { return (*s)->stats().retries >= 3; }, 10s));
  EXPECT_GE((*s)->stats().requests.at("error"), 3u);
  EXPECT_EQ((*s)->stats().samples_pending, 5u);
  const auto t0 = Clock::now();
  (*s)->Stop();
  EXPECT_LT(Clock::now() - t0, 1s);
}

TEST(RemoteWriteSenderTest, StopAbortsARequestInFlight) {
  testing::TempDir dir;
  FakeReceiver receiver;
  receiver.SetDelay(3s);  // longer than Stop may take
  auto s = RemoteWriteSender::Start(Config(receiver.url(), dir.Sub("q")));
  ASSERT_TRUE(s.ok());
  (*s)->Enqueue(Series(1, "a:b"), Samples(0, 5));
  ASSERT_TRUE(WaitFor([&] { return receiver.arrived() == 1; }, 5s));  // the receiver holds the request
  // libcurl calls its progress function (which aborts) about once a second
  // while a transfer waits.
  const auto t0 = Clock::now();
  (*s)->Stop();
  EXPECT_LT(Clock::now() - t0, 2s);
  EXPECT_EQ((*s)->stats().samples_sent, 0u);
  EXPECT_EQ((*s)->stats().samples_pending, 5u);  // still queued for the next start
}

TEST(RemoteWriteSenderTest, RestartSendsTheUnacknowledgedQueueExactlyOnce) {
  testing::TempDir dir;
  FakeReceiver receiver;
  receiver.SetFallback(500);
  const RemoteWriteConfig c = Config(receiver.url(), dir.Sub("q"));
  {
    auto s = RemoteWriteSender::Start(c);
    ASSERT_TRUE(s.ok());
    for (int i = 0; i < 20; ++i) (*s)->Enqueue(Series(i, "a:b", std::to_string(i)), Samples(0, 150, i));
    ASSERT_TRUE(WaitFor([&] { return (*s)->stats().retries >= 2; }, 10s));
    // Stop writes what is still buffered to the queue and keeps it.
    const auto t0 = Clock::now();
    (*s)->Stop();
    EXPECT_LT(Clock::now() - t0, 2s);
    EXPECT_EQ((*s)->stats().samples_sent, 0u);
    EXPECT_EQ((*s)->stats().samples_pending, 3000u);
  }
  receiver.SetFallback(204);
  {
    auto s = RemoteWriteSender::Start(c);
    ASSERT_TRUE(s.ok());
    ASSERT_TRUE(WaitFor([&] { return (*s)->stats().samples_sent == 3000; }, 10s)) << (*s)->stats().samples_sent;
    ASSERT_TRUE(WaitFor([&] { return (*s)->stats().samples_pending == 0; }, 5s));
  }
  {
    auto s = RemoteWriteSender::Start(c);  // nothing left to send
    ASSERT_TRUE(s.ok());
    EXPECT_EQ((*s)->stats().samples_pending, 0u);
  }
  // Every sample arrived once, in order per series.
  const auto accepted = receiver.Accepted();
  ASSERT_EQ(accepted.size(), 20u);
  for (const auto& [series, samples] : accepted) {
    ASSERT_EQ(samples.size(), 150u) << series;
    for (size_t i = 0; i < samples.size(); ++i) EXPECT_EQ(samples[i].first, static_cast<int64_t>(i) * 1000);
  }
  // Requests hold at most max_samples_per_send samples.
  for (const auto& r : receiver.requests()) {
    size_t n = 0;
    for (const auto& ts : r.body.timeseries()) n += ts.samples_size();
    EXPECT_LE(n, c.max_samples_per_send);
  }
}

TEST(RemoteWriteSenderTest, QueueBoundDropsTheOldestCounted) {
  testing::TempDir dir;
  FakeReceiver receiver;
  receiver.SetFallback(503);
  RemoteWriteConfig c = Config(receiver.url(), dir.Sub("q"));
  c.queue_max_bytes = 64 << 10;
  c.max_samples_per_send = 100;
  ASSERT_TRUE(ValidateRemoteWriteConfig(&c, dir.path(), "test").ok());
  auto started = RemoteWriteSender::Start(c);
  ASSERT_TRUE(started.ok());
  RemoteWriteSender& s = **started;
  // Random values compress badly: ~1 KiB a request, 200 requests.
  uint64_t total = 0;
  for (int i = 0; i < 200; ++i) {
    std::vector<model::Sample> v;
    for (int k = 0; k < 100; ++k) v.push_back({int64_t{i} * 100'000 + k, std::sin(i * 100.0 + k) * 1e6});
    s.Enqueue(Series(1, "a:b"), v);
    total += v.size();
  }
  ASSERT_TRUE(WaitFor([&] { return s.stats().samples_pending + Dropped(s.stats(), "queue_full") == total; }, 5s));
  const auto st = s.stats();
  EXPECT_GT(Dropped(st, "queue_full"), 0u);
  EXPECT_LE(st.queue_bytes, c.queue_max_bytes);
  receiver.SetFallback(204);
  ASSERT_TRUE(WaitFor([&] { return s.stats().samples_pending == 0; }, 10s));
  // Everything is accounted for: sent or dropped, and the newest were kept.
  const auto end = s.stats();
  EXPECT_EQ(end.samples_sent + Dropped(end, "queue_full"), total);
  EXPECT_EQ(receiver.AcceptedSamples(), end.samples_sent);
  const auto accepted = receiver.Accepted();
  ASSERT_EQ(accepted.size(), 1u);
  EXPECT_EQ(accepted.begin()->second.back().first, 199 * 100'000 + 99);
}

TEST(RemoteWriteSenderTest, FullBufferDropsWithoutBlocking) {
  testing::TempDir dir;
  FakeReceiver receiver;
  RemoteWriteConfig c = Config(receiver.url(), dir.Sub("q"));
  c.max_samples_per_send = 100;
  c.buffer_max_samples = 100;
  auto s = RemoteWriteSender::Start(c);
  ASSERT_TRUE(s.ok());
  (*s)->Enqueue(Series(1, "a:b"), Samples(0, 150));  // more than the buffer holds
  (*s)->Enqueue(Series(1, "a:b"), Samples(1'000'000, 40));
  ASSERT_TRUE(WaitFor([&] { return (*s)->stats().samples_sent == 40; }, 10s));
  EXPECT_EQ(Dropped((*s)->stats(), "buffer_full"), 150u);
}

TEST(RemoteWriteSenderTest, QueueDirInUseIsAnError) {
  testing::TempDir dir;
  FakeReceiver receiver;
  const RemoteWriteConfig c = Config(receiver.url(), dir.Sub("q"));
  auto first = RemoteWriteSender::Start(c);
  ASSERT_TRUE(first.ok());
  auto second = RemoteWriteSender::Start(c);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find(dir.Sub("q")), std::string::npos) << second.status();
}

class RemoteWriteConfigTest : public ::testing::Test {
 protected:
  absl::StatusOr<std::vector<RemoteWriteConfig>> Load(const std::string& yaml) {
    const std::string path = dir_.Sub("sheafd.yaml");
    std::ofstream(path) << yaml;
    return LoadRemoteWriteConfig(path, "/data");
  }
  std::string Error(const std::string& yaml) {
    auto c = Load(yaml);
    return c.ok() ? "(accepted)" : std::string(c.status().message());
  }
  testing::TempDir dir_;
};

TEST_F(RemoteWriteConfigTest, DefaultsAndEveryKey) {
  const std::string token = dir_.Sub("token");
  std::ofstream(token) << "secret\n";
  auto c = Load(fmt::format(R"(
grpc_listen: 127.0.0.1:0
remote_write:
  - url: http://127.0.0.1:8428/api/v1/write
  - url: https://mimir.example:443/api/v1/push
    name: mimir
    match: ['{{__name__=~".+"}}', 'up']
    queue_dir: /q
    queue_max_bytes: 1048576
    queue_max_age: 2h
    queue_sync: false
    buffer_max_samples: 10000
    max_samples_per_send: 500
    batch_send_deadline: 1s
    remote_timeout: 10s
    min_backoff: 100ms
    max_backoff: 10s
    headers: {{X-Scope-OrgID: fleet}}
    bearer_token_file: {}
    tenant: team-a
)",
                                token));
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->size(), 2u);
  const RemoteWriteConfig& d = (*c)[0];
  EXPECT_EQ(d.name, "127.0.0.1:8428_api_v1_write");
  EXPECT_EQ(d.queue_dir, "/data/remote_write/127.0.0.1:8428_api_v1_write");
  EXPECT_EQ(d.match, std::vector<std::string>{RemoteWriteConfig::kDefaultMatch});
  EXPECT_EQ(d.queue_max_bytes, 256u << 20);
  EXPECT_EQ(d.max_samples_per_send, 2000u);
  EXPECT_EQ(d.batch_send_deadline, 5s);
  EXPECT_EQ(d.remote_timeout, 30s);
  EXPECT_EQ(d.min_backoff, 30ms);
  EXPECT_EQ(d.max_backoff, 5s);
  const RemoteWriteConfig& m = (*c)[1];
  EXPECT_EQ(m.name, "mimir");
  EXPECT_EQ(m.match, (std::vector<std::string>{"{__name__=~\".+\"}", "up"}));
  EXPECT_EQ(m.queue_dir, "/q");
  EXPECT_EQ(m.queue_max_bytes, 1u << 20);
  EXPECT_EQ(m.queue_max_age, 2h);
  EXPECT_FALSE(m.queue_sync);
  EXPECT_EQ(m.buffer_max_samples, 10000u);
  EXPECT_TRUE(d.queue_sync);
  EXPECT_EQ(d.buffer_max_samples, 200000u);
  EXPECT_EQ(m.max_samples_per_send, 500u);
  EXPECT_EQ(m.batch_send_deadline, 1s);
  EXPECT_EQ(m.remote_timeout, 10s);
  EXPECT_EQ(m.min_backoff, 100ms);
  EXPECT_EQ(m.max_backoff, 10s);
  EXPECT_EQ(m.headers, (std::vector<std::pair<std::string, std::string>>{{"X-Scope-OrgID", "fleet"}}));
  EXPECT_EQ(m.bearer_token_file, token);
  EXPECT_EQ(d.tenant, "default");
  EXPECT_EQ(m.tenant, "team-a");

  auto none = Load("grpc_listen: 127.0.0.1:0\n");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TEST_F(RemoteWriteConfigTest, ErrorsNameTheEntryTheKeyAndTheValue) {
  const std::pair<std::string, std::string> cases[] = {
      {"- name: x", "remote_write[0]: url is required"},
      {"- url: ftp://x/", "url: ftp://x/ is not an http"},
      {"- url: http://a/\n  - url: http://b/\n    min_backoff: soon",
       "remote_write[1]: min_backoff: \"soon\" is not a duration"},
      {"- url: http://a/\n    max_samples_per_send: 0", "max_samples_per_send: 0 must be"},
      {"- url: http://a/\n    buffer_max_samples: 10", "buffer_max_samples: 10 must be from max_samples_per_send"},
      {"- url: http://a/\n    queue_sync: maybe", "queue_sync: \"maybe\" is not true or false"},
      {"- url: http://a/\n    match: ['{a=']", "match: \"{a=\" is not a series"},
      {"- url: http://a/\n    headers: {Content-Type: text/plain}", "headers: Content-Type is set by sheafd"},
      {"- url: http://a/\n    qeue_dir: /x", "unknown key \"qeue_dir\""},
      {"- url: http://a/\n    min_backoff: 10s\n    max_backoff: 1s", "min_backoff: 10s is above max_backoff 1s"},
      {"- url: http://a/\n    bearer_token_file: /nonexistent", "bearer_token_file /nonexistent: cannot read"},
      {"- url: http://a/\n    basic_auth: {username: u}", "basic_auth needs both username and password_file"},
      {"- url: http://a/x\n  - url: http://a/x", "is used twice"},
      {"- url: http://a/\n    tenant: 'team a'", "tenant: \"team a\" is not a tenant name"},
  };
  for (const auto& [entries, message] : cases) {
    EXPECT_NE(Error("remote_write:\n  " + entries + "\n").find(message), std::string::npos)
        << entries << " -> " << Error("remote_write:\n  " + entries + "\n");
  }
  EXPECT_NE(Error("remote_write: {url: http://a/}\n").find("expected a list"), std::string::npos);
}

}  // namespace
}  // namespace sheaf::daemon
