// Ships batches to sheafd: one long-lived channel, client-streaming Push
// calls with gzip, a bounded queue of batches not yet acknowledged, and
// retries with exponential backoff and full jitter.
#ifndef SHEAF_AGENT_SHIPPER_H_
#define SHEAF_AGENT_SHIPPER_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "proto/batch_encoder.h"

namespace grpc {
class Channel;
class ClientContext;
}  // namespace grpc

namespace sheaf::agent {

struct SeriesData {
  std::string key;     // SeriesKey(labels)
  LabelPairs labels;   // sorted by name, including __name__
  v1::MetricType type = v1::METRIC_TYPE_GAUGE;
  std::vector<int64_t> timestamps_ms;
  std::vector<double> values;
};

struct ShipperOptions {
  std::string agent_id;
  // A Push stream stays open this long, carrying each batch as it is
  // queued; closing it returns the ack that lets queued batches go.
  std::chrono::milliseconds stream_max_age = std::chrono::seconds(60);
  size_t max_pending_batches = 8640;  // a day at 10 s; the oldest go first past it
  std::chrono::milliseconds backoff_initial = std::chrono::milliseconds(500);
  std::chrono::milliseconds backoff_max = std::chrono::seconds(30);
  bool gzip = true;
};

// Channel arguments for an agent's long-lived channel: keepalive pings so a
// dead daemon or a silently dropped connection is noticed, and reconnect
// backoff bounds.
struct ChannelOptions {
  std::chrono::milliseconds keepalive_time = std::chrono::seconds(30);
  std::chrono::milliseconds keepalive_timeout = std::chrono::seconds(10);
  std::chrono::milliseconds max_reconnect_backoff = std::chrono::seconds(30);
};
std::shared_ptr<grpc::Channel> MakeDaemonChannel(const std::string& address, const ChannelOptions& options);

class Shipper {
 public:
  Shipper(ShipperOptions options, std::shared_ptr<grpc::Channel> channel);
  ~Shipper();  // Stop(0)

  // Queues a batch; it gets the next sequence number. Thread-safe.
  void Enqueue(std::vector<SeriesData> series);

  // Stops taking batches and tries, for at most `timeout`, to get all queued
  // ones acknowledged. Returns the number left unacknowledged.
  size_t Stop(std::chrono::milliseconds timeout);

  struct Stats {
    uint64_t acked_sequence = 0;  // highest sequence the daemon reported durable
    size_t pending = 0;           // queued, not yet acknowledged
    uint64_t dropped = 0;         // batches dropped because the queue was full
    uint64_t streams_ok = 0;
    uint64_t streams_failed = 0;
    uint64_t samples_rejected = 0;  // by the daemon's validation
  };
  Stats stats() const;

  // Blocks until every batch queued so far is acknowledged or `timeout`
  // passes. True if acknowledged.
  bool WaitAcked(std::chrono::milliseconds timeout) const;

 private:
  struct Pending {
    uint64_t sequence;
    std::shared_ptr<const std::vector<SeriesData>> series;
  };
  void Run();
  void RunLoop();
  bool RunStream();  // one Push call; false if it failed
  std::chrono::milliseconds NextBackoff();

  const ShipperOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::deque<Pending> pending_;
  uint64_t next_sequence_;
  bool stopping_ = false;
  bool run_done_ = false;
  std::chrono::steady_clock::time_point stop_deadline_;
  grpc::ClientContext* active_ = nullptr;  // the open stream, for cancelling on stop
  Stats stats_;
  int failures_in_a_row_ = 0;
  std::thread thread_;
};

}  // namespace sheaf::agent

#endif  // SHEAF_AGENT_SHIPPER_H_
