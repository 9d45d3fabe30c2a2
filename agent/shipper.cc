#include "agent/shipper.h"

#include <grpcpp/grpcpp.h>

#include <random>

#include "common/log.h"
#include "sheaf/v1/ingest.grpc.pb.h"

namespace sheaf::agent {
namespace {

uint64_t NowMicros() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

}  // namespace

std::shared_ptr<grpc::Channel> MakeDaemonChannel(const std::string& address, const ChannelOptions& options) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(options.keepalive_time.count()));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, static_cast<int>(options.keepalive_timeout.count()));
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, static_cast<int>(options.max_reconnect_backoff.count()));
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

Shipper::Shipper(ShipperOptions options, std::shared_ptr<grpc::Channel> channel)
    : options_(std::move(options)),
      channel_(std::move(channel)),
      // Sequences must rise across restarts of the agent too, or the daemon
      // would take new batches for retries of old ones. Starting from the
      // wall clock in microseconds does that without a state file: an agent
      // never sends a batch per microsecond.
      next_sequence_(NowMicros()) {
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
    pending_.push_back({next_sequence_++, std::make_shared<const std::vector<SeriesData>>(std::move(series))});
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
      return std::chrono::steady_clock::now() >= until || (stopping_ && std::chrono::steady_clock::now() >= stop_deadline_);
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
  uint64_t last_sent = 0;
  size_t sent = 0;
  for (;;) {
    Pending next{0, nullptr};
    {
      std::unique_lock lock(mu_);
      auto has_next = [&] { return !pending_.empty() && pending_.back().sequence > last_sent; };
      cv_.wait_until(lock, stream_end, [&] { return has_next() || stopping_; });
      if (has_next()) {
        for (const Pending& p : pending_) {
          if (p.sequence > last_sent) {
            next = p;
            break;
          }
        }
      }
    }
    if (next.series == nullptr) break;  // stream aged out, or stopping with all sent
    encoder.BeginBatch(options_.agent_id, next.sequence, &batch);
    for (const SeriesData& s : *next.series) {
      encoder.Add(s.key, s.labels, s.type, s.timestamps_ms.data(), s.values.data(), s.values.size());
    }
    if (!writer->Write(batch)) break;  // the call failed; Finish says why
    last_sent = next.sequence;
    ++sent;
  }
  writer->WritesDone();
  grpc::Status status = writer->Finish();
  std::lock_guard lock(mu_);
  active_ = nullptr;
  cv_.notify_all();
  if (!status.ok()) {
    ++stats_.streams_failed;
    LogWarn("push to daemon failed after {} batches: {} ({}); {} batches wait for a retry", sent,
            status.error_message(), static_cast<int>(status.error_code()), pending_.size());
    return false;
  }
  ++stats_.streams_ok;
  stats_.acked_sequence = std::max<uint64_t>(stats_.acked_sequence, ack.durable_sequence());
  while (!pending_.empty() && pending_.front().sequence <= ack.durable_sequence()) pending_.pop_front();
  stats_.pending = pending_.size();
  for (const v1::RejectCount& r : ack.rejected()) {
    stats_.samples_rejected += r.samples();
    LogWarn("daemon rejected {} series ({} samples): {}", r.series(), r.samples(), r.example());
  }
  LogDebug("push ok: {} batches sent, durable up to {}, {} pending", sent, ack.durable_sequence(), pending_.size());
  return true;
}

}  // namespace sheaf::agent
