#include "daemon/query_service.h"

#include <fmt/format.h>

#include <optional>

#include "common/clock.h"
#include "daemon/convert.h"
#include "daemon/status_convert.h"
#include "sheaf_version.h"
#include "storage/series_store.h"

namespace sheaf::daemon {
namespace {

constexpr uint32_t kDefaultChunkSamples = 1000;
constexpr uint32_t kMaxChunkSamples = 10'000;
constexpr uint32_t kDefaultSeriesLimit = 10'000;
constexpr int64_t kDefaultRangeMs = 3'600'000;

}  // namespace

absl::StatusOr<std::vector<model::Matcher>> RequestMatchers(
    const google::protobuf::RepeatedPtrField<v1::LabelMatcher>& matchers, const std::string& selector) {
  std::vector<model::Matcher> out;
  if (!selector.empty()) {
    auto parsed = model::ParseSelector(selector);
    if (!parsed.ok()) return parsed.status();
    out = *std::move(parsed);
  }
  for (const v1::LabelMatcher& m : matchers) {
    if (m.name().empty()) return absl::InvalidArgumentError("a label matcher has an empty label name");
    auto op = static_cast<model::Matcher::Op>(m.type());
    if (m.type() < v1::LabelMatcher::EQUAL || m.type() > v1::LabelMatcher::NOT_REGEX) {
      return absl::InvalidArgumentError(fmt::format("unknown matcher type {} for label \"{}\"",
                                                    static_cast<int>(m.type()), m.name()));
    }
    auto matcher = model::Matcher::Create(op, m.name(), m.value());
    if (!matcher.ok()) return matcher.status();
    out.push_back(*std::move(matcher));
  }
  if (out.empty()) {
    return absl::InvalidArgumentError("no selector or matchers given; e.g. selector: 'node_load1{host=\"web-1\"}'");
  }
  bool selective = false;
  for (const auto& m : out) selective |= !m.MatchesEmpty();
  if (!selective) {
    return absl::InvalidArgumentError(
        "the selector would match every series: at least one matcher must not match the empty string "
        "(e.g. add __name__=\"...\" or job=~\".+\")");
  }
  return out;
}

// Streams the answer series by series, in chunks of at most
// max_samples_per_chunk samples per message, reading from the store only as
// fast as the client takes messages (one write in flight).
class QueryService::QueryReactor : public grpc::ServerWriteReactor<v1::QueryResponse> {
 public:
  QueryReactor(storage::SeriesStore* store, const v1::QueryRequest& request) : store_(store) {
    auto matchers = RequestMatchers(request.matchers(), request.selector());
    if (!matchers.ok()) {
      Finish(ToGrpcStatus(matchers.status()));
      return;
    }
    end_ = request.end_ms() == 0 ? WallClockMs() : request.end_ms();
    start_ = request.start_ms() == 0 ? end_ - kDefaultRangeMs : request.start_ms();
    step_ = request.step_ms();
    if (start_ > end_) {
      Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          fmt::format("start_ms {} is after end_ms {}", start_, end_)));
      return;
    }
    if (step_ < 0) {
      Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "step_ms must be >= 0"));
      return;
    }
    chunk_samples_ = request.max_samples_per_chunk() == 0
                         ? kDefaultChunkSamples
                         : std::min(request.max_samples_per_chunk(), kMaxChunkSamples);
    auto ids = store_->Select(*matchers);
    if (!ids.ok()) {
      Finish(ToGrpcStatus(ids.status()));
      return;
    }
    ids_ = *std::move(ids);
    // A step of at least a rollup resolution reads the coarsest such rollup.
    if (step_ > 0) {
      for (int64_t r : store_->RollupResolutions()) {
        if (r <= step_) resolution_ = std::max(resolution_, r);
      }
    }
    WriteNext();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {  // cancelled by the client or its deadline passed
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
      return;
    }
    WriteNext();
  }

  void OnDone() override { delete this; }

 private:
  void WriteNext() {
    response_.Clear();
    uint32_t budget = chunk_samples_;
    while (budget > 0 && (iter_ || next_ < ids_.size())) {
      if (!iter_) {
        storage::SeriesId id = ids_[next_++];
        auto info = store_->GetSeries(id);
        if (!info) continue;
        iter_ = OpenSeries(id);
        chunk_ = response_.add_chunks();
        ToProto(info->labels, chunk_->mutable_labels());
        chunk_->set_type(ToProto(info->type));
        pending_.reset();
      } else if (chunk_ == nullptr) {  // continuing a series in a new message
        chunk_ = response_.add_chunks();
        *chunk_->mutable_labels() = last_labels_;
        chunk_->set_type(last_type_);
      }
      for (; iter_->Valid() && budget > 0; iter_->Next()) {
        model::Sample s = iter_->sample();
        if (step_ <= 0) {
          Emit(s);
          --budget;
          continue;
        }
        // The output point for s is the first start_ + k*step_ > s, so point
        // t holds the last sample of [t - step, t): the same windows as the
        // rollups', hence the same answer from raw samples or rollups.
        int64_t d = s.timestamp_ms - start_;
        int64_t k = (d >= 0 ? d / step_ : -((-d + step_ - 1) / step_)) + 1;
        int64_t t = start_ + k * step_;
        if (t > end_) continue;
        if (pending_ && pending_->timestamp_ms != t) {
          Emit(*pending_);
          --budget;
        }
        pending_ = model::Sample{t, s.value};
      }
      if (!iter_->status().ok()) {
        Finish(ToGrpcStatus(iter_->status()));
        return;
      }
      if (!iter_->Valid()) {
        if (pending_) {
          Emit(*pending_);
          pending_.reset();
          if (budget > 0) --budget;
        }
        iter_.reset();
        if (chunk_->samples_size() == 0 && !continued_) {
          response_.mutable_chunks()->RemoveLast();  // nothing in range: not part of the answer
        } else {
          chunk_->set_last_chunk(true);
        }
        chunk_ = nullptr;
        continued_ = false;
      }
    }
    if (chunk_ != nullptr) {  // budget ran out mid-series
      last_labels_ = chunk_->labels();
      last_type_ = chunk_->type();
      continued_ = true;
      chunk_ = nullptr;
    }
    if (response_.chunks_size() == 0) {
      Finish(grpc::Status::OK);
      return;
    }
    StartWrite(&response_);
  }

  // The samples of one series to answer from: raw, or the last sample of
  // each rollup window (the same as raw when the step is a multiple of the
  // resolution and start is aligned to it).
  std::unique_ptr<storage::SampleIterator> OpenSeries(storage::SeriesId id) {
    // For a step, the first output point at start_ covers [start_ - step_, start_).
    const int64_t from = step_ > 0 ? start_ - step_ : start_;
    if (resolution_ == 0) return store_->Read(id, from, end_);
    auto windows = store_->ReadRollup(id, resolution_, from, end_);
    if (!windows.ok()) return std::make_unique<storage::VectorSampleIterator>(windows.status());
    std::vector<model::Sample> samples;
    samples.reserve(windows->size());
    for (const auto& [start, agg] : *windows) {
      if (agg.last_ts >= from && agg.last_ts <= end_) samples.push_back({agg.last_ts, agg.last});
    }
    return std::make_unique<storage::VectorSampleIterator>(std::move(samples));
  }

  void Emit(const model::Sample& s) {
    v1::Sample* out = chunk_->add_samples();
    out->set_timestamp_ms(s.timestamp_ms);
    out->set_value(s.value);
  }

  storage::SeriesStore* store_;
  int64_t start_ = 0, end_ = 0, step_ = 0;
  int64_t resolution_ = 0;  // rollup read for a step, 0 for raw samples
  uint32_t chunk_samples_ = kDefaultChunkSamples;
  std::vector<storage::SeriesId> ids_;
  size_t next_ = 0;  // index into ids_ of the next series to open
  std::unique_ptr<storage::SampleIterator> iter_;
  std::optional<model::Sample> pending_;  // step output not yet emitted
  v1::QueryResponse response_;
  v1::SeriesChunk* chunk_ = nullptr;  // in response_
  bool continued_ = false;            // the open series already sent a chunk
  google::protobuf::RepeatedPtrField<v1::Label> last_labels_;
  v1::MetricType last_type_ = v1::METRIC_TYPE_UNSPECIFIED;
};

QueryService::QueryService(storage::SeriesStore* store)
    : store_(store), started_(std::chrono::steady_clock::now()) {}

grpc::ServerWriteReactor<v1::QueryResponse>* QueryService::Query(grpc::CallbackServerContext* /*context*/,
                                                                  const v1::QueryRequest* request) {
  return new QueryReactor(store_, *request);
}

grpc::ServerUnaryReactor* QueryService::ListSeries(grpc::CallbackServerContext* context,
                                                   const v1::ListSeriesRequest* request,
                                                   v1::ListSeriesResponse* response) {
  auto* reactor = context->DefaultReactor();
  auto matchers = RequestMatchers(request->matchers(), request->selector());
  if (!matchers.ok()) {
    reactor->Finish(ToGrpcStatus(matchers.status()));
    return reactor;
  }
  auto ids = store_->Select(*matchers);
  if (!ids.ok()) {
    reactor->Finish(ToGrpcStatus(ids.status()));
    return reactor;
  }
  const size_t limit = request->limit() == 0 ? kDefaultSeriesLimit : request->limit();
  for (storage::SeriesId id : *ids) {
    if (static_cast<size_t>(response->series_size()) >= limit) {
      response->set_truncated(true);
      break;
    }
    auto info = store_->GetSeries(id);
    if (!info) continue;
    v1::LabelSet* set = response->add_series();
    ToProto(info->labels, set->mutable_labels());
    set->set_type(ToProto(info->type));
  }
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* QueryService::Stats(grpc::CallbackServerContext* context,
                                              const v1::StatsRequest* /*request*/, v1::StatsResponse* response) {
  storage::StoreStats st = store_->Stats();
  response->set_series(st.series);
  response->set_samples(st.samples);
  response->set_storage_bytes(st.disk_bytes);
  response->set_agents(st.agents);
  response->set_head_samples(st.head_samples);
  response->set_pending_compaction_bytes(st.pending_compaction_bytes);
  response->set_write_stalls(st.write_stalls);
  for (const auto& [family, bytes] : st.family_disk_bytes) (*response->mutable_column_family_bytes())[family] = bytes;
  response->set_uptime_seconds(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count());
  response->set_version(SHEAF_VERSION);
  auto* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* QueryService::LabelNames(grpc::CallbackServerContext* context,
                                                   const v1::LabelNamesRequest* /*request*/,
                                                   v1::LabelNamesResponse* response) {
  auto* reactor = context->DefaultReactor();
  auto names = store_->LabelNames();
  if (names.ok()) {
    for (auto& n : *names) response->add_names(std::move(n));
  }
  reactor->Finish(ToGrpcStatus(names.status()));
  return reactor;
}

grpc::ServerUnaryReactor* QueryService::LabelValues(grpc::CallbackServerContext* context,
                                                    const v1::LabelValuesRequest* request,
                                                    v1::LabelValuesResponse* response) {
  auto* reactor = context->DefaultReactor();
  if (request->name().empty()) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "name is required, e.g. \"host\""));
    return reactor;
  }
  auto values = store_->LabelValues(request->name());
  if (values.ok()) {
    for (auto& v : *values) response->add_values(std::move(v));
  }
  reactor->Finish(ToGrpcStatus(values.status()));
  return reactor;
}

grpc::ServerUnaryReactor* AdminService::Compact(grpc::CallbackServerContext* context,
                                                const v1::CompactRequest* /*request*/, v1::CompactResponse* response) {
  auto* reactor = context->DefaultReactor();
  std::lock_guard lock(mu_);
  if (running_) {
    reactor->Finish(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                 "a compaction is already running; wait for it to finish"));
    return reactor;
  }
  if (worker_.joinable()) worker_.join();
  running_ = true;
  worker_ = std::thread([this, reactor, response] {
    auto started = std::chrono::steady_clock::now();
    response->set_storage_bytes_before(store_->Stats().disk_bytes);
    absl::Status s = store_->Compact();
    response->set_storage_bytes_after(store_->Stats().disk_bytes);
    response->set_seconds(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    {
      std::lock_guard lock(mu_);
      running_ = false;
    }
    reactor->Finish(ToGrpcStatus(s));
  });
  return reactor;
}

void AdminService::Stop() {
  std::thread worker;
  {
    std::lock_guard lock(mu_);
    worker = std::move(worker_);
  }
  if (worker.joinable()) worker.join();
}

}  // namespace sheaf::daemon
