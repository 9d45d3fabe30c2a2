// Ships the agent's batches to sheafd, exactly once, through the spool.
//
// Every batch is first appended to the durable spool (agent/spool) under
// the next sequence of the agent's persistent state, then sent on a
// client-streaming Push call to the daemon the picker chooses
// (agent/discovery: rendezvous order over the healthy daemons). A stream
// stays open for stream_max_age, carrying batches as they come; its ack
// (an OK status) makes every batch of the stream durable in the daemon, and
// only then are they acknowledged in the spool. So:
//  - nothing acknowledged is ever sent again, even after kill -9 (the
//    spool's acked set is durable);
//  - nothing is lost while no daemon answers: batches wait in the spool,
//    bounded in bytes and age (the oldest go first, counted);
//  - a batch sent but not acknowledged (the stream broke) is sent again
//    under the same sequence, and the daemon applies a sequence once.
//
// Two lanes share each stream. Fresh batches — appended since the stream
// opened — go at once. The backlog — batches older than the stream: an
// outage, a restart, a failed stream — is replayed oldest first at
// replay_rate batches per second, after a random delay of up to
// replay_jitter, so a fleet coming back does not stampede its daemons
// while their recent data keeps flowing. Out of order is safe: every batch
// carries sequence_floor, the oldest sequence the spool still holds, and
// the daemon keeps the set of sequences it applied.
//
// Errors: UNAVAILABLE, RESOURCE_EXHAUSTED and others are retried with
// capped exponential backoff and jitter (at least the daemon's retry hint,
// trailing metadata `sheaf-retry-after-ms`, when it sends one), and the
// picker is told so it re-checks the daemon. RESOURCE_EXHAUSTED with
// gRPC's `grpc-retry-pushback-ms` is a limit of this agent or its tenant
// (sheafd --limits): the daemon is healthy, so the shipper waits the
// pushback (at most max_pushback, plus up to a tenth for jitter) instead
// of its backoff, tells the picker nothing, and resends the refused
// batches from the spool (the daemon applied none of them). INVALID_ARGUMENT is not
// retried as is: the stream's batches are resent one per stream, and a
// batch the daemon still refuses alone is dropped, counted and logged —
// never retried forever.
//
// When an ack shows that the daemon holds sequences this agent never
// assigned (another agent with the same identity, a restored state
// directory, a forged batch), the shipper says so in an ERROR line, counts
// a sequence conflict, moves its sequences past the daemon's and appends
// the stream's batches again under new sequences, so none is lost.
#ifndef SHEAF_AGENT_SHIPPER_H_
#define SHEAF_AGENT_SHIPPER_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "agent/agent_metrics.h"
#include "agent/agent_state.h"
#include "agent/batch_builder.h"
#include "agent/discovery/daemon_picker.h"
#include "spool/spool.h"

namespace sheaf::v1 {
class PushAck;
}

namespace grpc {
class ClientContext;
}

namespace sheaf::agent {

// The spool lives in spool/ (sheafd's remote-write queues use it too).
using spool::Spool;
using spool::SpoolOptions;
using spool::SpoolRecord;

struct ShipperOptions {
  std::string agent_id;
  // A Push stream stays open this long, carrying each batch as it is
  // spooled; closing it returns the ack that lets the spool forget them.
  std::chrono::milliseconds stream_max_age = std::chrono::seconds(10);
  std::chrono::milliseconds backoff_initial = std::chrono::milliseconds(500);
  std::chrono::milliseconds backoff_max = std::chrono::seconds(30);
  // The longest a daemon's pushback (a limit's retry hint) can make the
  // shipper wait before it tries again.
  std::chrono::milliseconds max_pushback = std::chrono::minutes(5);
  // Backlog replay: batches per second, and the longest random delay
  // before a backlog starts after a (re)connection.
  double replay_rate = 20;
  std::chrono::milliseconds replay_jitter = std::chrono::seconds(5);
  // Bytes of batches read from the spool at a time.
  size_t read_bytes = 1 << 20;
  bool gzip = true;
};

class Shipper {
 public:
  // REQUIRES: `picker`, `spool` and `sequences` outlive the Shipper.
  Shipper(ShipperOptions options, discovery::DaemonPicker* picker, Spool* spool, SequenceSource* sequences);
  ~Shipper();  // Stop(0)

  // Appends a batch to the spool under the next sequence (durable when this
  // returns OK); the sender sends it. An error (no sequence could be handed
  // out, the spool could not write) means the batch is not kept: the
  // caller counts and logs it. Thread-safe.
  absl::Status Enqueue(const std::vector<SeriesData>& series);

  // Stops taking batches and tries, for at most `timeout`, to get what was
  // sent acknowledged (the stream is closed politely). Returns the number
  // of batches left unacknowledged: they stay in the spool and go at the
  // next start.
  size_t Stop(std::chrono::milliseconds timeout);

  struct Stats {
    uint64_t acked_sequence = 0;  // highest sequence the daemon reported durable
    uint64_t batches_spooled = 0;
    uint64_t samples_spooled = 0;
    uint64_t batches_sent = 0;  // writes to a stream, retries included
    uint64_t samples_sent = 0;
    uint64_t batches_acked = 0;
    uint64_t samples_acked = 0;
    uint64_t batches_replayed = 0;  // of the sent ones, through the backlog lane
    uint64_t streams_ok = 0;
    uint64_t streams_failed = 0;
    uint64_t streams_limited = 0;  // of the failed: over a limit, with a pushback that was waited out
    uint64_t reconnects = 0;        // streams opened after a failed one, or to another daemon
    uint64_t samples_rejected = 0;  // by the daemon's validation (in acks)
    uint64_t batches_dropped_invalid = 0;  // refused alone with INVALID_ARGUMENT
    uint64_t samples_dropped_invalid = 0;
    uint64_t enqueue_errors = 0;  // batches not kept (sequence or spool error)
    // Acks whose durable sequence was at or above the next sequence this
    // agent would assign: the daemon has seen sequences this agent never sent.
    uint64_t sequence_conflicts = 0;
    uint64_t unexpected_duplicates = 0;
    uint64_t batches_resent = 0;   // appended again under new sequences after a conflict
    uint64_t sequence_errors = 0;  // the state could not advance past a conflict
    std::string daemon;            // the daemon of the open (or last) stream
    // Time from a batch's first write to the ack that covered it.
    LatencyHistogram ack_latency;
  };
  Stats stats() const;

  // Blocks until the spool holds nothing unacknowledged or `timeout`
  // passes. True if everything is acknowledged.
  bool WaitAcked(std::chrono::milliseconds timeout) const;

 private:
  // A batch of the open stream.
  struct Sent {
    uint64_t sequence;
    size_t samples;
    std::chrono::steady_clock::time_point first_sent;
    std::string payload;  // kept for a resend after a conflict
  };
  void Run();
  // One Push call to `pick`; false if it failed. Sets *retry_hint from the
  // daemon's trailing metadata, and *pushback when it was a limit's
  // (RESOURCE_EXHAUSTED with grpc-retry-pushback-ms).
  bool RunStream(const discovery::Pick& pick, std::chrono::milliseconds* retry_hint, bool* pushback);
  // The next batch for the open stream, into *out: a fresh one (from
  // *fresh_from) if any, else the next of the backlog (from *backlog_from,
  // below stream_start) when its rate allows; waits for either. False to
  // end the stream: it is old, the pick changed, or the shipper stops.
  bool NextRecord(uint64_t* fresh_from, uint64_t stream_start, uint64_t* backlog_from,
                  std::chrono::steady_clock::time_point* next_replay, std::chrono::steady_clock::time_point stream_end,
                  uint64_t generation, SpoolRecord* out);
  void HandleAck(const v1::PushAck& ack, const std::vector<Sent>& sent, size_t retried);
  std::chrono::milliseconds NextBackoff();
  std::chrono::milliseconds ReplayDelay();

  const ShipperOptions options_;
  discovery::DaemonPicker* const picker_;
  Spool* const spool_;
  SequenceSource* const sequences_;
  // Held while a sequence is handed out and its batch appended, so the
  // spool receives sequences in order (Enqueue, and a resend after a
  // conflict, append from different threads).
  std::mutex append_mu_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;  // a batch was spooled or acked, or stopping
  bool stopping_ = false;
  bool run_done_ = false;
  std::chrono::steady_clock::time_point stop_deadline_;
  grpc::ClientContext* active_ = nullptr;  // the open stream, for cancelling on stop
  Stats stats_;
  // Sequences written to some stream by this process and not acknowledged:
  // sent again, they may be duplicates without anything being wrong.
  std::set<uint64_t> sent_before_;
  // After INVALID_ARGUMENT: the failed stream's batches, resent one per
  // stream until each is acknowledged or refused alone.
  std::set<uint64_t> suspects_;
  // Sequences below this were spooled by an earlier process: each may have
  // been sent before (a duplicate of one of them is expected).
  uint64_t first_own_sequence_ = 0;
  int failures_in_a_row_ = 0;
  std::string last_daemon_;
  // The sender thread's: the current episode (see RunStream).
  bool new_episode_ = true;
  std::string episode_daemon_;
  uint64_t episode_start_ = 0;
  std::chrono::steady_clock::time_point next_replay_;
  std::thread thread_;
};

// What the spool holds for a batch: a MetricBatch with its series inline
// (labels, type, samples), the sender's dictionary encoding being
// per-stream. Decode fails (INTERNAL) on bytes that are not one.
std::string EncodeSpoolPayload(const std::vector<SeriesData>& series);
absl::Status DecodeSpoolPayload(std::string_view payload, std::vector<SeriesData>* series);

}  // namespace sheaf::agent

#endif  // SHEAF_AGENT_SHIPPER_H_
