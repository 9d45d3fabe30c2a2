// Remote write out: sheafd forwards the samples it accepts, for the series
// that a remote's `match` selectors pick (by default the fleet aggregates:
// series whose name has a ':', as recording rules name them), to any
// Prometheus remote-write 1.0 receiver (Prometheus, VictoriaMetrics, Mimir,
// Thanos receive). docs/REMOTE_WRITE.md is the user's description.
//
// Path of a sample, per remote:
//   ingest (IngestService::Append, after the store accepted it)
//     -> RemoteWriteFanout::Publish: matching (cached per series id), then
//        RemoteWriteSender::Enqueue into a bounded in-memory buffer; a full
//        buffer drops the samples (counted "buffer_full", logged), so ingest
//        never waits for a disk or a network
//     -> the queue thread cuts the buffer into requests (max_samples_per_send
//        samples, or what waited batch_send_deadline), each a snappy
//        WriteRequest, samples in time order per series, and appends it to
//        the remote's spool (spool/spool.h: durable, bounded by
//        queue_max_bytes; the oldest requests go when it is full, counted
//        "queue_full")
//     -> the send thread POSTs the spool's requests in order, one at a time
//        (so each series' samples arrive in order), and acks a request only
//        after a 2xx. 4xx other than 429: the request is dropped (counted
//        "rejected", logged with the receiver's message), never retried.
//        429, 5xx and network errors: retried with capped exponential
//        backoff and jitter, waiting at least what a Retry-After header says
//        (seconds or an HTTP date; at most kMaxRetryAfter).
// Shutdown (Stop) writes the buffer to the spool, aborts a request in
// flight and returns in a bounded time; what is not acknowledged stays in
// the spool and is sent after the next start. A crash loses at most the
// in-memory buffer (batch_send_deadline's worth); a request acknowledged by
// the receiver but not yet in the spool's acked file is sent again after a
// crash (receivers keep one sample per series and timestamp).
//
// Metrics (prometheus-cpp, label remote = the remote's name):
// sheaf_remote_write_samples_sent_total, _samples_dropped_total{reason},
// _samples_pending, _queue_bytes, _lag_seconds (age of the oldest sample
// waiting, since sheafd accepted it; 0 when none), _requests_total{code}
// (HTTP status, or "error" when no answer came), _retries_total.
//
// No gRPC. libcurl for HTTP.
#ifndef SHEAF_DAEMON_REMOTE_WRITE_SENDER_H_
#define SHEAF_DAEMON_REMOTE_WRITE_SENDER_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/log.h"
#include "model/matcher.h"
#include "model/types.h"
#include "storage/series_store.h"

namespace prometheus {
class Registry;
}

namespace sheaf::spool {
class Spool;
}

namespace sheaf::daemon {

// One entry of the `remote_write:` list of sheafd's config file.
struct RemoteWriteConfig {
  std::string url;   // required: http:// or https://
  std::string name;  // the `remote` label and the queue's folder; default derived from url
  // The tenant whose series this remote forwards (with --auth-tokens;
  // one remote per tenant, e.g. each with its X-Scope-OrgID header).
  std::string tenant = "default";
  // PromQL series selectors; a series is forwarded if any matches.
  std::vector<std::string> match = {kDefaultMatch};
  std::string queue_dir;  // default <data-dir>/remote_write/<name>
  uint64_t queue_max_bytes = 256ull << 20;
  std::chrono::milliseconds queue_max_age = std::chrono::hours(24);
  size_t max_samples_per_send = 2000;
  std::chrono::milliseconds batch_send_deadline = std::chrono::seconds(5);
  std::chrono::milliseconds remote_timeout = std::chrono::seconds(30);
  std::chrono::milliseconds min_backoff = std::chrono::milliseconds(30);
  std::chrono::milliseconds max_backoff = std::chrono::seconds(5);
  std::vector<std::pair<std::string, std::string>> headers;
  std::string bearer_token_file;  // read again for every request (rotation works)
  std::string basic_auth_username;
  std::string basic_auth_password_file;
  // Samples waiting in memory for the queue thread (~100 bytes each at
  // worst); past it new samples are dropped ("buffer_full").
  size_t buffer_max_samples = 200'000;
  // fdatasync each request written to the queue: a power loss then loses
  // nothing acknowledged to the buffer. Off: ~20% more throughput
  // (docs/REMOTE_WRITE.md), and a power cut may lose the newest requests
  // (kill -9 does not: they are in the page cache).
  bool queue_sync = true;

  // Not in the file: bounds and seams.
  size_t max_request_bytes = 8ull << 20;  // a request before compression (lowered to fit a spool segment)
  std::function<int64_t()> now_ms;        // wall clock when empty

  static constexpr const char* kDefaultMatch = "{__name__=~\".*:.*\"}";
};

// The `remote_write:` section of config file `path` (none: an empty list),
// with defaults filled in and every value checked. INVALID_ARGUMENT naming
// the file, the entry, the key and the value otherwise.
absl::StatusOr<std::vector<RemoteWriteConfig>> LoadRemoteWriteConfig(const std::string& path,
                                                                     const std::string& data_dir);

// The same checks for configs built in code (tests); fills in name and
// queue_dir. `where` prefixes messages.
absl::Status ValidateRemoteWriteConfig(RemoteWriteConfig* config, const std::string& data_dir,
                                       const std::string& where);

// Longest wait a Retry-After header may ask for; longer is cut to this.
inline constexpr std::chrono::minutes kMaxRetryAfter{5};

// A series as the senders see it (shared by the buffers that hold its samples).
struct ForwardedSeries {
  storage::SeriesId id = 0;
  model::Labels labels;
};

// One remote. Thread-safe.
class RemoteWriteSender {
 public:
  // Opens the queue (the spool in config.queue_dir; FAILED_PRECONDITION
  // naming it when it cannot) and starts the queue and send threads.
  // Metrics go to `registry` when given.
  static absl::StatusOr<std::unique_ptr<RemoteWriteSender>> Start(RemoteWriteConfig config,
                                                                  prometheus::Registry* registry = nullptr);
  ~RemoteWriteSender();  // Stop()s

  RemoteWriteSender(const RemoteWriteSender&) = delete;
  RemoteWriteSender& operator=(const RemoteWriteSender&) = delete;

  const RemoteWriteConfig& config() const { return config_; }
  // True if any of the `match` selectors selects `labels`.
  bool Selects(const model::Labels& labels) const;

  // Buffers `samples` (time order) of `series`. Never blocks on disk or
  // network: past buffer_max_samples they are dropped and counted.
  void Enqueue(const std::shared_ptr<const ForwardedSeries>& series, std::vector<model::Sample> samples);

  // Writes the buffer to the queue, stops sending (a request in flight is
  // aborted within about a second, when libcurl next calls its progress
  // function; it stays queued) and joins the threads. Bounded by that and
  // the disk writes of the buffer. Idempotent.
  void Stop();

  struct Stats {
    uint64_t samples_sent = 0;
    std::map<std::string, uint64_t> samples_dropped;  // by reason
    uint64_t samples_pending = 0;                     // buffered + queued
    uint64_t queue_bytes = 0;
    double lag_seconds = 0;
    std::map<std::string, uint64_t> requests;  // by code
    uint64_t retries = 0;
  };
  Stats stats() const;

 private:
  struct Metrics;
  struct Http;
  struct Pending {  // samples of one series waiting in the buffer
    std::shared_ptr<const ForwardedSeries> series;
    std::vector<model::Sample> samples;
    int64_t enqueued_ms;
  };
  struct Queued {  // a request in the spool, not yet acknowledged
    uint64_t samples;
    int64_t oldest_ms;  // when sheafd accepted its oldest sample
  };
  // What one HTTP attempt gave.
  struct Attempt {
    long code = 0;  // 0: no answer
    std::string error;
    std::chrono::milliseconds retry_after{0};
  };

  RemoteWriteSender(RemoteWriteConfig config, std::unique_ptr<spool::Spool> spool, prometheus::Registry* registry);
  absl::Status LoadQueue();
  void QueueLoop();
  void SendLoop();
  // Takes a request's worth out of the buffer (nothing if it is empty) and
  // encodes it: header + snappy WriteRequest. *samples, *oldest_ms describe it.
  std::string CutRequest(uint64_t* samples, int64_t* oldest_ms) ABSL_EXCLUSIVE_LOCKS_REQUIRED(buffer_mu_);
  // Appends a cut request to the spool (retrying while the disk refuses,
  // unless stopping).
  void AppendToQueue(std::string payload, uint64_t samples, int64_t oldest_ms);
  // Counts queued requests the spool dropped (full, too old, damaged).
  void ReconcileDrops() ABSL_LOCKS_EXCLUDED(queue_mu_);
  Attempt Post(const std::string& body);
  void Finish(uint64_t sequence, uint64_t samples, const char* dropped_reason);
  void CountDropped(const std::string& reason, uint64_t samples);
  void CountRequest(const Attempt& a);
  void UpdateGauges();
  int64_t Now() const;
  // Waits up to `wait` or until Stop; false when stopping.
  bool SleepUnlessStopping(std::chrono::milliseconds wait);

  const RemoteWriteConfig config_;
  std::vector<std::vector<model::Matcher>> selectors_;
  const std::unique_ptr<spool::Spool> spool_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<Http> http_;
  std::atomic<bool> stopping_{false};
  LogRateLimiter drop_log_{1, std::chrono::minutes(1)};  // queue drops: the counter has them all

  mutable absl::Mutex buffer_mu_;
  absl::CondVar buffer_cv_;  // something buffered, or stopping
  std::deque<Pending> buffer_ ABSL_GUARDED_BY(buffer_mu_);
  size_t buffered_samples_ ABSL_GUARDED_BY(buffer_mu_) = 0;
  bool buffer_full_logged_ ABSL_GUARDED_BY(buffer_mu_) = false;
  bool queue_done_ ABSL_GUARDED_BY(buffer_mu_) = false;  // the queue thread flushed and ended

  mutable absl::Mutex queue_mu_;
  absl::CondVar queue_cv_;                                // a request was queued, or stopping
  std::map<uint64_t, Queued> queued_ ABSL_GUARDED_BY(queue_mu_);  // by spool sequence
  uint64_t queued_samples_ ABSL_GUARDED_BY(queue_mu_) = 0;
  uint64_t in_flight_ ABSL_GUARDED_BY(queue_mu_) = 0;             // sequence being sent (0: none)
  uint64_t next_sequence_ ABSL_GUARDED_BY(queue_mu_) = 1;
  uint64_t seen_full_ ABSL_GUARDED_BY(queue_mu_) = 0;  // the spool's drop counters already attributed
  uint64_t seen_too_old_ ABSL_GUARDED_BY(queue_mu_) = 0;

  mutable absl::Mutex stats_mu_;
  Stats stats_ ABSL_GUARDED_BY(stats_mu_);

  std::thread queue_thread_;
  std::thread send_thread_;
  std::once_flag stop_once_;
};

// Every remote, fed by the ingest path (IngestService::Append, after the
// store accepted a live batch). Publish costs a lookup of a per-series
// answer (which remotes want it) and, for wanted series, a copy of the
// stored samples into the remotes' buffers.
class RemoteWriteFanout {
 public:
  using SeriesLookup = std::function<std::optional<storage::SeriesInfo>(storage::SeriesId)>;
  // tenants[i]: the tenant senders[i] forwards (RemoteWriteConfig::tenant,
  // resolved by the store); empty: all of them the default tenant.
  RemoteWriteFanout(SeriesLookup lookup, std::vector<std::unique_ptr<RemoteWriteSender>> senders,
                    std::vector<storage::TenantId> tenants = {});
  ~RemoteWriteFanout();

  // What the store accepted for `batch` (its series minus the samples the
  // result reports too old or deleted), to the remotes of batch.tenant.
  void Publish(const storage::AppendBatch& batch, const storage::AppendResult& result);
  void Stop();  // stops every sender
  const std::vector<std::unique_ptr<RemoteWriteSender>>& senders() const { return senders_; }

 private:
  struct Answer {
    uint32_t remotes = 0;  // bit i: senders_[i] wants the series
    std::shared_ptr<const ForwardedSeries> series;
  };
  const SeriesLookup lookup_;
  const std::vector<std::unique_ptr<RemoteWriteSender>> senders_;
  const std::vector<storage::TenantId> tenants_;  // one per sender
  absl::Mutex mu_;
  // Per series id (dense): 0 not known, 1 no remote wants it, 2 its
  // answer is in answers_ (wanted series, with their labels; emptied when
  // the labels held pass a bound, then looked up again).
  std::vector<uint8_t> known_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<storage::SeriesId, Answer> answers_ ABSL_GUARDED_BY(mu_);
  size_t cached_bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace sheaf::daemon

#endif  // SHEAF_DAEMON_REMOTE_WRITE_SENDER_H_
