#include "agent/shipper.h"

#include <grpcpp/grpcpp.h>

#include <random>

#include "common/log.h"
#include "sheaf/v1/ingest.grpc.pb.h"

namespace sheaf::agent {

std::shared_ptr<grpc::Channel> MakeDaemonChannel(const std::string& address, const ChannelOptions& options) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(options.keepalive_time.count()));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, static_cast<int>(options.keepalive_timeout.count()));
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, static_cast<int>(options.max_reconnect_backoff.count()));
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

Shipper::Shipper(ShipperOptions options, std::shared_ptr<grpc::Channel> channel, SequenceSource* sequences)
    : options_(std::move(options)), channel_(std::move(channel)), sequences_(sequences) {
  thread_ = std::thread([this] { Run(); });
}

Shipper::~Shipper() { Stop(std::chrono::milliseconds(0)); }

void Shipper::Enqueue(std::vector<SeriesData> series) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    if (pending_.size() >= options_.max_pending_batches) {
      pending_.pop_front();
      if (stats_.dropped++ % 100 == 0) {
        LogWarn("agent queue full ({} batches unacknowledged): dropping the oldest batch", pending_.size() + 1);
      }
    }
    auto batch = std::make_shared<Pending>();
    batch->id = next_id_++;
    batch->series = std::move(series);
    pending_.push_back(std::move(batch));
    stats_.pending = pending_.size();
  }
  cv_.notify_all();
}

size_t Shipper::Stop(std::chrono::milliseconds timeout) {
  {
    std::unique_lock lock(mu_);
    if (!stopping_) {
      stopping_ = true;
      stop_deadline_ = std::chrono::steady_clock::now() + timeout;
    }
    cv_.notify_all();
    // Give the sender until the deadline to drain; then cancel its call.
    cv_.wait_until(lock, stop_deadline_, [this] { return run_done_; });
    if (!run_done_ && active_ != nullptr) active_->TryCancel();
  }
  if (thread_.joinable()) thread_.join();
  std::lock_guard lock(mu_);
  return pending_.size();
}

Shipper::Stats Shipper::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

bool Shipper::WaitAcked(std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [this] { return pending_.empty(); });
}

std::chrono::milliseconds Shipper::NextBackoff() {
  // Equal jitter: uniform in [cap/2, cap], cap = min(max, initial * 2^failures),
  // so a fleet of agents does not come back in lockstep after a daemon restart.
  thread_local std::mt19937_64 rng(std::random_device{}());
  int64_t cap = options_.backoff_initial.count() << std::min(failures_in_a_row_, 16);
  cap = std::min<int64_t>(cap, options_.backoff_max.count());
  return std::chrono::milliseconds(std::uniform_int_distribution<int64_t>(cap / 2, cap)(rng));
}

void Shipper::Run() {
  RunLoop();
  std::lock_guard lock(mu_);
  run_done_ = true;
  cv_.notify_all();
}

void Shipper::RunLoop() {
  for (;;) {
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !pending_.empty(); });
      if (pending_.empty()) return;  // stopping, nothing left
      if (stopping_ && std::chrono::steady_clock::now() >= stop_deadline_) return;
    }
    if (RunStream()) {
      failures_in_a_row_ = 0;
      continue;
    }
    auto wait = NextBackoff();
    ++failures_in_a_row_;
    std::unique_lock lock(mu_);
    auto until = std::chrono::steady_clock::now() + wait;
    if (stopping_) until = std::min(until, stop_deadline_);
    cv_.wait_until(lock, until, [this, until] {
      return std::chrono::steady_clock::now() >= until ||
             (stopping_ && std::chrono::steady_clock::now() >= stop_deadline_);
    });
  }
}

bool Shipper::RunStream() {
  auto stub = v1::IngestService::NewStub(channel_);
  grpc::ClientContext context;
  if (options_.gzip) context.set_compression_algorithm(GRPC_COMPRESS_GZIP);
  const auto stream_end = std::chrono::steady_clock::now() + options_.stream_max_age;
  // The call's own deadline bounds a hung daemon: the stream's age plus a
  // margin for the last write and the ack.
  context.set_deadline(std::chrono::system_clock::now() + options_.stream_max_age + std::chrono::seconds(30));
  v1::PushAck ack;
  std::unique_ptr<grpc::ClientWriter<v1::MetricBatch>> writer;
  {
    std::lock_guard lock(mu_);
    if (stopping_ && std::chrono::steady_clock::now() >= stop_deadline_) return false;
    active_ = &context;
  }
  writer = stub->Push(&context, &ack);

  StreamEncoder encoder;
  v1::MetricBatch batch;
  uint64_t last_id = 0;
  size_t sent = 0;
  size_t retried = 0;  // of those, already written to an earlier (failed) stream
  bool sequence_failed = false;
  for (;;) {
    std::shared_ptr<Pending> next;
    {
      std::unique_lock lock(mu_);
      auto has_next = [&] { return !pending_.empty() && pending_.back()->id > last_id; };
      cv_.wait_until(lock, stream_end, [&] { return has_next() || stopping_; });
      if (has_next()) {
        for (const auto& p : pending_) {
          if (p->id > last_id) {
            next = p;
            break;
          }
        }
      }
    }
    if (next == nullptr) break;  // stream aged out, or stopping with all sent
    if (next->sequence == 0) {
      // Batches without a sequence come after every batch with one, so the
      // stream's sequences keep increasing.
      auto seq = sequences_->NextSequence();
      if (!seq.ok()) {
        std::lock_guard lock(mu_);
        if (stats_.sequence_errors++ % 100 == 0) {
          LogError("cannot assign a sequence to the next batch, so it waits (and the queue fills): {}",
                   seq.status().ToString());
        }
        sequence_failed = true;
        break;
      }
      next->sequence = *seq;
      next->sends = 0;
    }
    encoder.BeginBatch(options_.agent_id, next->sequence, &batch);
    for (const SeriesData& s : next->series) {
      encoder.Add(s.key, s.labels, s.type, s.timestamps_ms.data(), s.values.data(), s.values.size());
    }
    if (next->sends++ > 0) ++retried;
    if (!writer->Write(batch)) break;  // the call failed; Finish says why
    last_id = next->id;
    ++sent;
  }
  writer->WritesDone();
  grpc::Status status = writer->Finish();
  bool ok = false;
  {
    std::lock_guard lock(mu_);
    active_ = nullptr;
    if (!status.ok()) {
      ++stats_.streams_failed;
      LogWarn("push to daemon failed after {} batches: {} ({}); {} batches wait for a retry", sent,
              status.error_message(), static_cast<int>(status.error_code()), pending_.size());
    } else {
      ++stats_.streams_ok;
      ok = HandleAck(ack, sent, retried) && !sequence_failed;
    }
  }
  cv_.notify_all();
  return ok;
}

bool Shipper::HandleAck(const v1::PushAck& ack, size_t sent, size_t retried) {
  const uint64_t durable = ack.durable_sequence();
  stats_.acked_sequence = std::max<uint64_t>(stats_.acked_sequence, durable);
  for (const v1::RejectCount& r : ack.rejected()) {
    stats_.samples_rejected += r.samples();
    LogWarn("daemon rejected {} series ({} samples): {}", r.series(), r.samples(), r.example());
  }
  // Every sequence this agent ever assigned is below `next`. A durable
  // sequence at or above it was sent by someone else under our identity.
  const uint64_t next = sequences_->PeekNextSequence();
  const bool conflict = sent > 0 && durable >= next;
  // Retried batches may be duplicates: the failed stream may have been
  // stored before it broke. Duplicates beyond those are not ours.
  const uint64_t duplicates = ack.batches_duplicate();
  const uint64_t unexpected = duplicates > retried ? duplicates - retried : 0;
  bool advanced = true;
  if (conflict) {
    ++stats_.sequence_conflicts;
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
                                     "they are sent again under new sequences",
                                     duplicates, sent)
                       : fmt::format("This stream's {} batches were stored", sent),
        durable);
    if (absl::Status s = sequences_->AdvancePast(durable); !s.ok()) {
      ++stats_.sequence_errors;
      LogError("cannot continue after the daemon's sequence {}: {}", durable, s.ToString());
      advanced = false;
    }
  }
  if (unexpected > 0) {
    stats_.unexpected_duplicates += unexpected;
    if (!conflict) {  // the conflict line above already says it
      LogWarn(
          "the daemon took {} of {} batches of agent \"{}\" for duplicates although this agent sent them for the "
          "first time (durable sequence {}, next sequence {}): another agent sends or sent under the same id (a "
          "copied state directory, the same --agent-id on two hosts) or this state directory was restored from a "
          "backup. They are sent again under new sequences. Give every agent its own identity.",
          unexpected, sent, options_.agent_id, durable, next);
    }
  }
  if (duplicates > 0 && (conflict || unexpected > 0)) {
    // The ack does not say which batches were duplicates: send every batch
    // of the stream again under new sequences. Nothing is counted twice:
    // the store keeps one sample per series and timestamp.
    size_t renumbered = 0;
    for (auto& p : pending_) {
      if (p->sequence == 0) break;  // the rest were not sent yet
      p->sequence = 0;
      p->sends = 0;
      ++renumbered;
    }
    stats_.batches_resent += renumbered;
  } else {
    while (!pending_.empty() && pending_.front()->sequence != 0 && pending_.front()->sequence <= durable) {
      pending_.pop_front();
    }
  }
  stats_.pending = pending_.size();
  LogDebug("push ok: {} batches sent ({} applied, {} duplicate), durable up to {}, {} pending", sent,
           ack.batches_applied(), duplicates, durable, pending_.size());
  return advanced;
}

}  // namespace sheaf::agent
