#include "agent/shipper.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <charconv>
#include <random>

#include "common/log.h"
#include "sheaf/v1/ingest.grpc.pb.h"

namespace sheaf::agent {
namespace {

using Clock = std::chrono::steady_clock;

// Trailing metadata with which a daemon may ask for a longer wait.
constexpr char kRetryAfterKey[] = "sheaf-retry-after-ms";
constexpr char kPushbackKey[] = "grpc-retry-pushback-ms";  // gRPC's standard name; sheafd's limits send it

size_t SampleCount(const std::vector<SeriesData>& series) {
  size_t n = 0;
  for (const SeriesData& s : series) n += s.values.size();
  return n;
}

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

std::string EncodeSpoolPayload(const std::vector<SeriesData>& series) {
  v1::MetricBatch batch;
  for (const SeriesData& s : series) {
    v1::Series* out = batch.add_series();
    for (const auto& [name, value] : s.labels) {
      v1::Label* l = out->add_labels();
      l->set_name(name);
      l->set_value(value);
    }
    out->set_type(s.type);
    for (size_t i = 0; i < s.values.size(); ++i) {
      v1::Sample* x = out->add_samples();
      x->set_timestamp_ms(s.timestamps_ms[i]);
      x->set_value(s.values[i]);
    }
  }
  return batch.SerializeAsString();
}

absl::Status DecodeSpoolPayload(std::string_view payload, std::vector<SeriesData>* series) {
  v1::MetricBatch batch;
  if (!batch.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return absl::InternalError("a spooled batch does not parse");
  }
  series->clear();
  series->reserve(batch.series_size());
  for (const v1::Series& in : batch.series()) {
    SeriesData s;
    for (const v1::Label& l : in.labels()) s.labels.emplace_back(l.name(), l.value());
    s.key = SeriesKey(s.labels);
    s.type = in.type();
    for (const v1::Sample& x : in.samples()) {
      s.timestamps_ms.push_back(x.timestamp_ms());
      s.values.push_back(x.value());
    }
    series->push_back(std::move(s));
  }
  return absl::OkStatus();
}

Shipper::Shipper(ShipperOptions options, discovery::DaemonPicker* picker, Spool* spool, SequenceSource* sequences)
    : options_(std::move(options)),
      picker_(picker),
      spool_(spool),
      sequences_(sequences),
      first_own_sequence_(sequences->PeekNextSequence()) {
  thread_ = std::thread([this] { Run(); });
}

Shipper::~Shipper() { Stop(std::chrono::milliseconds(0)); }

absl::Status Shipper::Enqueue(const std::vector<SeriesData>& series) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return absl::FailedPreconditionError("the shipper is stopping");
  }
  std::string payload = EncodeSpoolPayload(series);
  absl::Status s;
  {
    // Sequences go to the spool in the order they are handed out.
    std::lock_guard append_lock(append_mu_);
    auto seq = sequences_->NextSequence();
    s = seq.ok() ? spool_->Append(*seq, payload) : seq.status();
  }
  std::lock_guard lock(mu_);
  if (!s.ok()) {
    ++stats_.enqueue_errors;
    return s;
  }
  ++stats_.batches_spooled;
  stats_.samples_spooled += SampleCount(series);
  cv_.notify_all();
  return absl::OkStatus();
}

size_t Shipper::Stop(std::chrono::milliseconds timeout) {
  {
    std::unique_lock lock(mu_);
    if (!stopping_) {
      stopping_ = true;
      stop_deadline_ = Clock::now() + timeout;
    }
    cv_.notify_all();
    // The open stream ends at once and waits for its ack until the
    // deadline; then the call is cancelled.
    cv_.wait_until(lock, stop_deadline_, [this] { return run_done_; });
    if (!run_done_ && active_ != nullptr) active_->TryCancel();
  }
  if (thread_.joinable()) thread_.join();
  return spool_->stats().records_unacked;
}

Shipper::Stats Shipper::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

bool Shipper::WaitAcked(std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [this] { return spool_->Floor() > spool_->last_sequence(); });
}

std::chrono::milliseconds Shipper::NextBackoff() {
  // Equal jitter: uniform in [cap/2, cap], cap = min(max, initial * 2^failures),
  // so a fleet of agents does not come back in lockstep after a daemon restart.
  thread_local std::mt19937_64 rng(std::random_device{}());
  int64_t cap = options_.backoff_initial.count() << std::min(failures_in_a_row_, 16);
  cap = std::min<int64_t>(cap, options_.backoff_max.count());
  return std::chrono::milliseconds(std::uniform_int_distribution<int64_t>(cap / 2, cap)(rng));
}

std::chrono::milliseconds Shipper::ReplayDelay() {
  thread_local std::mt19937_64 rng(std::random_device{}());
  if (options_.replay_jitter.count() <= 0) return std::chrono::milliseconds(0);
  return std::chrono::milliseconds(
      std::uniform_int_distribution<int64_t>(0, options_.replay_jitter.count())(rng));
}

void Shipper::Run() {
  bool last_stream = false;  // stopping: one stream sends what is spooled, then the sender ends
  for (;;) {
    bool stopping;
    std::chrono::milliseconds pick_wait;
    {
      std::unique_lock lock(mu_);
      // Something to send: a record of the spool not yet acknowledged.
      cv_.wait_for(lock, std::chrono::seconds(1),
                   [this] { return stopping_ || spool_->Floor() <= spool_->last_sequence(); });
      const bool idle = spool_->Floor() > spool_->last_sequence();
      if (stopping_ && (idle || last_stream || Clock::now() >= stop_deadline_)) break;
      if (idle) continue;
      stopping = stopping_;
      // Stopping before any daemon has answered its first health check (an
      // agent run with --count 1, a TLS handshake still going): the
      // shutdown timeout is the time to find one, not only to send.
      pick_wait = stopping ? std::chrono::duration_cast<std::chrono::milliseconds>(stop_deadline_ - Clock::now())
                           : std::chrono::milliseconds(500);
    }
    std::optional<discovery::Pick> pick = picker_->WaitForPick(std::max(pick_wait, std::chrono::milliseconds(0)));
    if (!pick) {
      if (stopping) break;
      continue;  // no healthy daemon: batches wait in the spool
    }
    last_stream = stopping;
    std::chrono::milliseconds hint(0);
    bool pushback = false;
    if (RunStream(*pick, &hint, &pushback)) {
      failures_in_a_row_ = 0;
      continue;
    }
    if (stopping) break;
    std::chrono::milliseconds wait;
    if (pushback && hint.count() > 0) {
      // Over a limit: the daemon said when to come back. Sooner would be
      // refused again; the backoff's growth would only let the spool fill.
      // The daemon is fine: the picker keeps it.
      thread_local std::mt19937_64 rng(std::random_device{}());
      wait = hint + std::chrono::milliseconds(std::uniform_int_distribution<int64_t>(0, hint.count() / 10)(rng));
      std::lock_guard lock(mu_);
      ++stats_.streams_limited;
    } else {
      picker_->ReportFailure(pick->address);
      wait = std::max(NextBackoff(), hint);
      ++failures_in_a_row_;
    }
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, wait, [this] { return stopping_; });
  }
  std::lock_guard lock(mu_);
  run_done_ = true;
  cv_.notify_all();
}

bool Shipper::NextRecord(uint64_t* fresh_from, uint64_t stream_start, uint64_t* backlog_from,
                         Clock::time_point* next_replay, Clock::time_point stream_end, uint64_t generation,
                         SpoolRecord* out) {
  const auto period = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(1.0 / std::max(options_.replay_rate, 0.001)));
  for (;;) {
    bool stopping;
    {
      std::lock_guard lock(mu_);
      stopping = stopping_;
    }
    const auto now = Clock::now();
    // Stopping: what is spooled goes now, the backlog without its rate,
    // then the stream ends (Stop bounds the wait for its ack).
    if (stopping) *next_replay = now;
    if (now >= stream_end && !stopping) return false;
    // A better daemon is healthy again, or this one is not: move.
    auto current = picker_->Current();
    if (!current || current->generation != generation) return false;
    // Fresh batches first.
    if (spool_->last_sequence() >= *fresh_from) {
      auto records = spool_->Read(*fresh_from, 1, options_.read_bytes);
      if (!records.ok()) {
        LogWarn("cannot read the spool: {}", records.status().ToString());
        return false;
      }
      if (!records->empty()) {
        *out = std::move(records->front());
        *fresh_from = out->sequence + 1;
        return true;
      }
      *fresh_from = spool_->last_sequence() + 1;  // dropped by a bound meanwhile
    }
    // Then the backlog, at its rate.
    if (*backlog_from < stream_start && now >= *next_replay) {
      auto records = spool_->Read(*backlog_from, 1, options_.read_bytes);
      if (!records.ok()) {
        LogWarn("cannot read the spool: {}", records.status().ToString());
        return false;
      }
      if (!records->empty() && records->front().sequence < stream_start) {
        *out = std::move(records->front());
        *backlog_from = out->sequence + 1;
        // No burst after a pause: the schedule never lags by more than a period.
        *next_replay = std::max(*next_replay + period, now - period);
        return true;
      }
      *backlog_from = stream_start;  // the backlog is sent
    }
    if (stopping) return false;  // everything spooled is sent
    auto until = stream_end;
    if (*backlog_from < stream_start) until = std::min(until, *next_replay);
    std::unique_lock lock(mu_);
    cv_.wait_until(lock, std::min(until, now + std::chrono::milliseconds(500)),
                   [&] { return stopping_ || spool_->last_sequence() >= *fresh_from; });
  }
}

bool Shipper::RunStream(const discovery::Pick& pick, std::chrono::milliseconds* retry_hint, bool* pushback) {
  auto stub = v1::IngestService::NewStub(pick.channel);
  grpc::ClientContext context;
  if (options_.gzip) context.set_compression_algorithm(GRPC_COMPRESS_GZIP);
  const auto started = Clock::now();
  const auto stream_end = started + options_.stream_max_age;
  // The call's own deadline bounds a hung daemon: the stream's age plus a
  // margin for the last write and the ack.
  context.set_deadline(std::chrono::system_clock::now() + options_.stream_max_age + std::chrono::seconds(30));
  std::set<uint64_t> suspects;
  {
    std::lock_guard lock(mu_);
    active_ = &context;
    stats_.daemon = pick.address;
    // A stream after a failed one, or to another daemon, is a reconnection.
    if (!last_daemon_.empty() && (new_episode_ || last_daemon_ != pick.address)) ++stats_.reconnects;
    last_daemon_ = pick.address;
    suspects = suspects_;
  }
  v1::PushAck ack;
  std::unique_ptr<grpc::ClientWriter<v1::MetricBatch>> writer = stub->Push(&context, &ack);

  // An episode is a run of successful streams to one daemon. Records
  // spooled before it began are its backlog: an outage's, a restart's, a
  // failed stream's. Its replay starts after a random delay and keeps its
  // rate across the episode's streams.
  if (new_episode_ || pick.address != episode_daemon_) {
    episode_start_ = spool_->last_sequence() + 1;
    next_replay_ = spool_->Floor() < episode_start_ ? started + ReplayDelay() : started;
    episode_daemon_ = pick.address;
    new_episode_ = false;
  }
  const uint64_t stream_start = episode_start_;
  uint64_t fresh_from = stream_start;
  uint64_t backlog_from = spool_->Floor();
  auto& next_replay = next_replay_;
  StreamEncoder encoder;
  v1::MetricBatch batch;
  std::vector<Sent> sent;
  std::vector<SeriesData> series;
  size_t retried = 0;
  SpoolRecord record;
  for (;;) {
    if (!suspects.empty()) {
      // Isolating a refused stream: its batches one per stream, oldest first.
      if (!sent.empty()) break;
      auto records = spool_->Read(*suspects.begin(), 1, options_.read_bytes);
      if (!records.ok() || records->empty() || records->front().sequence != *suspects.begin()) {
        std::lock_guard lock(mu_);
        suspects_.erase(*suspects.begin());  // acknowledged or dropped meanwhile
        break;
      }
      record = std::move(records->front());
    } else if (!NextRecord(&fresh_from, stream_start, &backlog_from, &next_replay, stream_end, pick.generation,
                           &record)) {
      break;
    }
    if (absl::Status s = DecodeSpoolPayload(record.payload, &series); !s.ok()) {
      LogError("spooled batch {} is damaged ({}); dropped", record.sequence, s.ToString());
      (void)spool_->Ack(record.sequence);
      continue;
    }
    encoder.BeginBatch(options_.agent_id, record.sequence, &batch);
    batch.set_sequence_floor(std::min(spool_->Floor(), record.sequence));
    for (const SeriesData& s : series) {
      encoder.Add(s.key, s.labels, s.type, s.timestamps_ms.data(), s.values.data(), s.values.size());
    }
    {
      std::lock_guard lock(mu_);
      if (record.sequence < first_own_sequence_ || !sent_before_.insert(record.sequence).second) ++retried;
      ++stats_.batches_sent;
      stats_.samples_sent += SampleCount(series);
      if (record.sequence < stream_start) ++stats_.batches_replayed;
    }
    if (!writer->Write(batch)) break;  // the call failed; Finish says why
    sent.push_back({record.sequence, SampleCount(series), Clock::now(), std::move(record.payload)});
  }
  writer->WritesDone();
  grpc::Status status = writer->Finish();
  const auto& trailers = context.GetServerTrailingMetadata();
  auto limit = trailers.find(kPushbackKey);
  *pushback = status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED && limit != trailers.end();
  if (auto it = *pushback ? limit : trailers.find(kRetryAfterKey); it != trailers.end()) {
    int64_t ms = 0;
    std::from_chars(it->second.data(), it->second.data() + it->second.size(), ms);
    *retry_hint = std::chrono::milliseconds(std::clamp<int64_t>(ms, 0, options_.max_pushback.count()));
  }
  {
    std::lock_guard lock(mu_);
    active_ = nullptr;
  }
  if (!status.ok()) {
    const bool invalid = status.error_code() == grpc::StatusCode::INVALID_ARGUMENT;
    std::lock_guard lock(mu_);
    ++stats_.streams_failed;
    if (invalid && !suspects.empty() && sent.size() == 1) {
      // Refused alone: this batch is what the daemon will not take.
      const Sent& bad = sent.front();
      suspects_.erase(bad.sequence);
      sent_before_.erase(bad.sequence);
      ++stats_.batches_dropped_invalid;
      stats_.samples_dropped_invalid += bad.samples;
      // Logged for the first and then every 100th: counted always.
      if (stats_.batches_dropped_invalid % 100 == 1) {
        LogError(
            "the daemon refuses batch {} ({} samples) with INVALID_ARGUMENT, so it is dropped, not retried ({} so "
            "far): {}",
            bad.sequence, bad.samples, stats_.batches_dropped_invalid, status.error_message());
      }
      (void)spool_->Ack(bad.sequence);
      cv_.notify_all();
      return true;
    }
    if (invalid && !sent.empty()) {
      LogWarn("the daemon refused a stream of {} batches with INVALID_ARGUMENT ({}); resending them one per stream "
              "to find the one it refuses",
              sent.size(), status.error_message());
      for (const Sent& s : sent) suspects_.insert(s.sequence);
      return true;
    }
    LogWarn("push to {} failed after {} batches: {} ({}); they stay in the spool and are sent again", pick.address,
            sent.size(), status.error_message(), static_cast<int>(status.error_code()));
    new_episode_ = true;
    return false;
  }
  SequenceSet acked;
  for (const Sent& s : sent) acked.Insert(s.sequence);
  if (absl::Status s = spool_->Ack(acked); !s.ok()) {
    LogWarn("cannot record the acknowledgement in the spool ({}); those batches may be sent again", s.ToString());
  }
  {
    std::lock_guard lock(mu_);
    ++stats_.streams_ok;
    const auto now = Clock::now();
    for (const Sent& s : sent) {
      sent_before_.erase(s.sequence);
      if (!suspects.empty()) suspects_.erase(s.sequence);
      ++stats_.batches_acked;
      stats_.samples_acked += s.samples;
      stats_.ack_latency.Observe(Seconds(now - s.first_sent));
    }
  }
  HandleAck(ack, sent, retried);
  cv_.notify_all();
  return true;
}

void Shipper::HandleAck(const v1::PushAck& ack, const std::vector<Sent>& sent, size_t retried) {
  const uint64_t durable = ack.durable_sequence();
  uint64_t samples_rejected = 0;
  for (const v1::RejectCount& r : ack.rejected()) {
    samples_rejected += r.samples();
    LogWarn("daemon rejected {} series ({} samples): {}", r.series(), r.samples(), r.example());
  }
  // Every sequence this agent ever assigned is below `next`. A durable
  // sequence at or above it was sent by someone else under our identity.
  const uint64_t next = sequences_->PeekNextSequence();
  const bool conflict = !sent.empty() && durable >= next;
  // Retried batches may be duplicates: the failed stream may have been
  // stored before it broke. Duplicates beyond those are not ours.
  const uint64_t duplicates = ack.batches_duplicate();
  const uint64_t unexpected = duplicates > retried ? duplicates - retried : 0;
  {
    std::lock_guard lock(mu_);
    stats_.acked_sequence = std::max<uint64_t>(stats_.acked_sequence, durable);
    stats_.samples_rejected += samples_rejected;
    if (conflict) ++stats_.sequence_conflicts;
    stats_.unexpected_duplicates += unexpected;
  }
  if (conflict) {
    LogError(
        "sequence conflict for agent id \"{}\": the daemon reports sequence {} durable, but this agent has only "
        "assigned sequences below {}. Someone else sent batches under this id: another agent with the same "
        "identity (a copied state directory or machine image, or the same --agent-id on two hosts), a state "
        "directory restored from a backup, a forged batch, or (once, harmless) an older sheaf-agent that numbered "
        "batches by the clock under the same --agent-id. {}. This agent continues after sequence {}. Fix: "
        "give every agent its own identity (remove the `identity` file from copied state directories, or use "
        "unique --agent-id values).",
        options_.agent_id, durable, next,
        duplicates > 0 ? fmt::format("The daemon took {} of this stream's {} batches for duplicates (not stored); "
                                     "they are spooled again under new sequences",
                                     duplicates, sent.size())
                       : fmt::format("This stream's {} batches were stored", sent.size()),
        durable);
    if (absl::Status s = sequences_->AdvancePast(durable); !s.ok()) {
      std::lock_guard lock(mu_);
      ++stats_.sequence_errors;
      LogError("cannot continue after the daemon's sequence {}: {}", durable, s.ToString());
    }
  } else if (unexpected > 0) {
    LogWarn(
        "the daemon took {} of {} batches of agent \"{}\" for duplicates although this agent sent them for the "
        "first time (durable sequence {}, next sequence {}): another agent sends or sent under the same id (a "
        "copied state directory, the same --agent-id on two hosts) or this state directory was restored from a "
        "backup. They are spooled again under new sequences. Give every agent its own identity.",
        unexpected, sent.size(), options_.agent_id, durable, next);
  }
  if (duplicates > 0 && (conflict || unexpected > 0)) {
    // The ack does not say which batches were duplicates: spool every batch
    // of the stream again under new sequences. Nothing is counted twice:
    // the store keeps one sample per series and timestamp.
    size_t resent = 0;
    for (const Sent& s : sent) {
      std::lock_guard append_lock(append_mu_);
      auto seq = sequences_->NextSequence();
      absl::Status st = seq.ok() ? spool_->Append(*seq, s.payload) : seq.status();
      if (!st.ok()) {
        LogError("cannot spool batch {} again: {}; its samples are lost", s.sequence, st.ToString());
        continue;
      }
      ++resent;
    }
    std::lock_guard lock(mu_);
    stats_.batches_resent += resent;
  }
  LogDebug("push ok: {} batches sent ({} applied, {} duplicate), durable up to {}", sent.size(),
           ack.batches_applied(), duplicates, durable);
}

}  // namespace sheaf::agent
