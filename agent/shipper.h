// Ships batches to sheafd: one long-lived channel, client-streaming Push
// calls with gzip, a bounded queue of batches not yet acknowledged, and
// retries with exponential backoff and full jitter.
//
// Sequences come from a SequenceSource (the agent's persistent state), never
// from the clock. A batch gets its sequence when it is first written to a
// stream and keeps it for every retry, so the daemon can tell a retry from a
// new batch. When an ack shows that the daemon holds sequences this agent
// never assigned (another agent with the same identity, a restored state
// directory, a forged batch), the shipper says so in an ERROR line, counts a
// sequence conflict, moves its sequences past the daemon's and sends again,
// under new sequences, the batches the daemon took for duplicates.
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

#include "agent/agent_state.h"
#include "agent/batch_builder.h"
#include "proto/batch_encoder.h"

namespace grpc {
class Channel;
class ClientContext;
}  // namespace grpc

namespace sheaf::agent {

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
  // REQUIRES: `sequences` outlives the Shipper.
  Shipper(ShipperOptions options, std::shared_ptr<grpc::Channel> channel, SequenceSource* sequences);
  ~Shipper();  // Stop(0)

  // Queues a batch; it gets the next sequence number when it is first sent.
  // Thread-safe.
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
    // Acks whose durable sequence was at or above the next sequence this
    // agent would assign: the daemon has seen sequences this agent never sent.
    uint64_t sequence_conflicts = 0;
    // Batches the daemon called duplicates although this agent sent them for
    // the first time (beyond what retries of failed streams explain).
    uint64_t unexpected_duplicates = 0;
    uint64_t batches_resent = 0;   // sent again under new sequences after the above
    uint64_t sequence_errors = 0;  // the state could not hand out or advance a sequence
  };
  Stats stats() const;

  // Blocks until every batch queued so far is acknowledged or `timeout`
  // passes. True if acknowledged.
  bool WaitAcked(std::chrono::milliseconds timeout) const;

 private:
  struct Pending {
    uint64_t id = 0;  // order of Enqueue, 1, 2, ...
    // 0 until the batch is first written to a stream; kept for retries.
    // Only the sender thread reads or writes it (and `sends`).
    uint64_t sequence = 0;
    int sends = 0;  // streams it was written to under this sequence
    std::vector<SeriesData> series;
  };
  void Run();
  void RunLoop();
  bool RunStream();  // one Push call; false if it failed
  // After a successful stream: drops what is acknowledged, or detects a
  // conflict and renumbers. False if the state could not be advanced.
  // REQUIRES: mu_ held, on the sender thread.
  bool HandleAck(const v1::PushAck& ack, size_t sent, size_t retried);
  std::chrono::milliseconds NextBackoff();

  const ShipperOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  SequenceSource* const sequences_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  // Invariants: ids increase from front to back; the batches with a
  // sequence are a prefix, their sequences increasing.
  std::deque<std::shared_ptr<Pending>> pending_;
  uint64_t next_id_ = 1;
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
