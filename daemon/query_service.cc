#include "daemon/query_service.h"

#include <fmt/format.h>

#include <deque>
#include <optional>

#include "absl/synchronization/mutex.h"

#include "common/clock.h"
#include "common/work_queue.h"
#include "daemon/convert.h"
#include "daemon/grpc_codec.h"
#include "daemon/status_convert.h"
#include "daemon/unary_call.h"
#include "sheaf_version.h"
#include "storage/series_store.h"

namespace sheaf::daemon {
namespace {

constexpr uint32_t kDefaultChunkSamples = 1000;
constexpr uint32_t kMaxChunkSamples = 10'000;
// Points of a PromQL answer evaluated but not yet written: past this the
// evaluation waits for the client to read (one series over it still goes).
constexpr size_t kMaxQueuedPoints = 4 * kMaxChunkSamples;
constexpr int64_t kDefaultRangeMs = 3'600'000;
// Times and steps beyond ~285,000 years are refused: within this bound no
// step arithmetic can overflow (end=INT64_MAX once answered OK, empty).
constexpr int64_t kMaxAbsTimeMs = int64_t{1} << 53;

grpc::Status CheckTime(const char* field, int64_t value) {
  if (value > kMaxAbsTimeMs || value < -kMaxAbsTimeMs) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        fmt::format("{} {} is out of range: use Unix milliseconds within +-2^53", field, value));
  }
  return grpc::Status::OK;
}

v1::ResultType ResultTypeToProto(promql::ValueType t) {
  switch (t) {
    case promql::ValueType::kMatrix:
      return v1::RESULT_TYPE_MATRIX;
    case promql::ValueType::kVector:
      return v1::RESULT_TYPE_VECTOR;
    case promql::ValueType::kScalar:
      return v1::RESULT_TYPE_SCALAR;
    case promql::ValueType::kString:
      return v1::RESULT_TYPE_STRING;
    default:
      return v1::RESULT_TYPE_UNSPECIFIED;
  }
}

uint32_t ListLimit(uint32_t requested, const QueryLimits& limits) {
  return requested == 0 ? limits.default_list_limit : std::min(requested, limits.max_list_limit);
}

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
      return absl::InvalidArgumentError(
          fmt::format("unknown matcher type {} for label \"{}\"", static_cast<int>(m.type()), m.name()));
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
// fast as the client takes messages (one write in flight). Each step runs
// on the executor; gRPC's threads only hand over.
class QueryService::QueryReactor : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  QueryReactor(QueryService* service, grpc::CallbackServerContext* context, const grpc::ByteBuffer& request)
      : service_(service), store_(service->store_), executor_(service->executor_), context_(context) {
    auto principal = AuthorizeCall(service->auth_, *context, "/sheaf.v1.QueryService/Query");
    if (!principal.ok()) {
      Finish(ToGrpcStatus(principal.status()));
      return;
    }
    tenant_ = principal->tenant;
    tenant_name_ = principal->tenant_name;
    grpc::Status s = DecodeMessage(request, service->limits_.max_request_bytes, "the QueryRequest", &request_);
    if (!s.ok()) {
      Finish(s);
      return;
    }
    Submit([this] { Start(); });
  }

  void OnWriteDone(bool ok) override {
    if (promql_mode_) {
      PromQLWriteDone(ok);
      return;
    }
    if (!ok) {  // cancelled by the client or its deadline passed
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
      return;
    }
    Submit([this] { WriteNext(); });
  }

  void OnDone() override { delete this; }

 private:
  void Submit(std::function<void()> step) {
    if (!executor_->TrySubmit(std::move(step))) {
      Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          "sheafd's query executor is full or shutting down; retry with backoff"));
    }
  }

  void Start() {
    if (context_->IsCancelled()) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
      return;
    }
    if (!request_.expr().empty()) {
      StartPromQL();
      return;
    }
    auto matchers = RequestMatchers(request_.matchers(), request_.selector());
    if (!matchers.ok()) {
      Finish(ToGrpcStatus(matchers.status()));
      return;
    }
    for (auto [field, value] : {std::pair{"start_ms", request_.start_ms()}, std::pair{"end_ms", request_.end_ms()},
                                std::pair{"step_ms", request_.step_ms()}}) {
      if (auto s = CheckTime(field, value); !s.ok()) {
        Finish(s);
        return;
      }
    }
    end_ = request_.end_ms() == 0 ? WallClockMs() : request_.end_ms();
    start_ = request_.start_ms() == 0 ? end_ - kDefaultRangeMs : request_.start_ms();
    step_ = request_.step_ms();
    if (start_ > end_) {
      Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          fmt::format("start_ms {} is after end_ms {}", start_, end_)));
      return;
    }
    if (step_ < 0) {
      Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "step_ms must be >= 0"));
      return;
    }
    chunk_samples_ = request_.max_samples_per_chunk() == 0
                         ? kDefaultChunkSamples
                         : std::min(request_.max_samples_per_chunk(), kMaxChunkSamples);
    auto ids = store_->Select(tenant_, *matchers);
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

  // A PromQL query, evaluated here on the executor. The engine hands the
  // answer's series over as each completes (a selector or a range
  // function over one streams; an aggregation completes at the end); they
  // wait in a queue of at most kMaxQueuedPoints for the client to read,
  // one write in flight, and the evaluation waits when the queue is full.
  // The evaluation polls the call: a cancelled call, a passed client
  // deadline or the query timeout stop the evaluation itself.
  //
  // Lifetime: while the evaluation runs it uses the reactor, so the
  // reactor is finished only once the evaluation has ended (by the
  // evaluating thread, or by the write callback after it).
  void StartPromQL() {
    if (request_.matchers_size() > 0 || !request_.selector().empty()) {
      Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "give either expr (PromQL) or selector/matchers (a raw read), not both"));
      return;
    }
    for (auto [field, value] : {std::pair{"start_ms", request_.start_ms()}, std::pair{"end_ms", request_.end_ms()},
                                std::pair{"step_ms", request_.step_ms()}, std::pair{"time_ms", request_.time_ms()}}) {
      if (auto s = CheckTime(field, value); !s.ok()) {
        Finish(s);
        return;
      }
    }
    if (request_.step_ms() < 0) {
      Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "step_ms must be >= 0"));
      return;
    }
    if (auto s = service_->AcquireQuerySlot(); !s.ok()) {
      Finish(ToGrpcStatus(s));
      return;
    }
    // The tenant's own share of the slots (limits.h): one tenant's
    // queries cannot take them all.
    if (auto slot = service_->AcquireTenantQuerySlot(tenant_name_); !slot.ok()) {
      service_->ReleaseQuerySlot();
      const std::string hint = std::to_string(RetryAfterMs(slot.status()));
      context_->AddTrailingMetadata("grpc-retry-pushback-ms", hint);
      context_->AddTrailingMetadata("sheaf-retry-after-ms", hint);
      Finish(ToGrpcStatus(slot.status()));
      return;
    } else {
      tenant_slot_ = *std::move(slot);
    }
    promql::QueryParams params;
    params.tenant = tenant_;
    const int64_t now = WallClockMs();
    if (request_.step_ms() > 0) {
      params.end_ms = request_.end_ms() == 0 ? now : request_.end_ms();
      params.start_ms = request_.start_ms() == 0 ? params.end_ms - kDefaultRangeMs : request_.start_ms();
      params.step_ms = request_.step_ms();
    } else {
      params.start_ms = params.end_ms = request_.time_ms() == 0 ? now : request_.time_ms();
    }
    const auto timeout = service_->limits_.query_timeout;
    const auto give_up = std::chrono::steady_clock::now() + timeout;
    const auto client_deadline = context_->deadline();
    params.check = [this, give_up, timeout, client_deadline]() -> absl::Status {
      if (std::chrono::system_clock::now() > client_deadline) {
        return absl::DeadlineExceededError("the client's deadline passed during the evaluation");
      }
      if (context_->IsCancelled()) return absl::CancelledError("the client cancelled the query");
      if (std::chrono::steady_clock::now() > give_up) {
        return absl::DeadlineExceededError(
            fmt::format("the query ran longer than {} ms (the --query-timeout limit)", timeout.count()));
      }
      return absl::OkStatus();
    };
    chunk_samples_ = request_.max_samples_per_chunk() == 0
                         ? kDefaultChunkSamples
                         : std::min(request_.max_samples_per_chunk(), kMaxChunkSamples);
    promql_mode_ = true;
    {
      absl::MutexLock lock(&pq_mu_);
      pq_evaluating_ = true;
    }
    auto result = service_->engine_.Query(
        request_.expr(), params, [&](promql::ValueType type, promql::ResultSeries&& series) -> absl::Status {
          Step next;
          {
            absl::MutexLock lock(&pq_mu_);
            while (!pq_gone_ && !pq_queue_.empty() &&
                   pq_queued_points_ + series.points.size() > kMaxQueuedPoints) {
              pq_room_.WaitWithTimeout(&pq_mu_, absl::Milliseconds(100));
              if (auto s = params.check(); !s.ok()) return s;  // the deadline may pass while the client dawdles
            }
            if (pq_gone_) return absl::CancelledError("the client went away");
            pq_type_ = type;
            pq_queued_points_ += series.points.size();
            pq_queue_.push_back(std::move(series));
            if (!pq_writing_) next = NextPromQLStep();
          }
          Take(next);
          return absl::OkStatus();
        });
    service_->ReleaseQuerySlot();
    tenant_slot_.Release();
    Step next;
    {
      absl::MutexLock lock(&pq_mu_);
      pq_evaluating_ = false;
      if (result.ok()) {
        promql_ = *std::move(result);
        pq_end_ = grpc::Status::OK;
      } else {
        pq_end_ = ToGrpcStatus(result.status());
      }
      if (pq_gone_ && !pq_writing_) {
        next = {Step::kFinish, grpc::Status(grpc::StatusCode::CANCELLED, "the client went away")};
      } else if (!pq_writing_) {
        next = NextPromQLStep();
      }  // else the write's callback goes on
    }
    // Nothing to do: the write's callback may already have finished the
    // call and deleted this reactor, so it must not be touched.
    if (next.what != Step::kNothing) Take(next);
  }

  void PromQLWriteDone(bool ok) {
    Step next;
    {
      absl::MutexLock lock(&pq_mu_);
      pq_writing_ = false;
      pq_room_.SignalAll();
      if (!ok) {  // cancelled by the client or its deadline passed
        pq_gone_ = true;
        // While the evaluation runs, it sees the cancelled call, stops and
        // finishes.
        if (!pq_evaluating_) next = {Step::kFinish, grpc::Status(grpc::StatusCode::CANCELLED, "the client went away")};
      } else {
        next = NextPromQLStep();
      }
    }
    // Nothing to do: the evaluating thread may already have finished the
    // call and deleted this reactor, so it must not be touched.
    if (next.what != Step::kNothing) Take(next);
  }

  // What to do next for a PromQL answer. Decided under pq_mu_, done after
  // releasing it: gRPC may run this reactor's callbacks (and delete it)
  // as soon as Finish is called.
  struct Step {
    enum { kNothing, kWrite, kFinish } what = kNothing;
    grpc::Status status;  // for kFinish
  };
  void Take(const Step& step) {
    if (step.what == Step::kWrite) StartWrite(&buffer_);
    if (step.what == Step::kFinish) Finish(step.status);
  }

  // The next message of a PromQL answer (into buffer_, and a write is then
  // in flight), or the end of the call. Cheap — one chunk of at most
  // chunk_samples_ points — so it runs on whichever thread gets here: the
  // evaluation's or a write callback. REQUIRES: no write in flight.
  Step NextPromQLStep() ABSL_EXCLUSIVE_LOCKS_REQUIRED(pq_mu_) {
    if (pq_end_ && !pq_end_->ok()) {
      // An error ends the answer. The series the engine handed over before
      // it (e.g. up to the max-points limit) still go out first, unless the
      // client is gone or out of time.
      const auto code = pq_end_->error_code();
      if (pq_queue_.empty() || code == grpc::StatusCode::CANCELLED || code == grpc::StatusCode::DEADLINE_EXCEEDED) {
        return {Step::kFinish, *pq_end_};
      }
    }
    const bool ended = pq_end_.has_value() && pq_end_->ok();  // promql_ holds the answer's type and stats
    if (pq_queue_.empty() && !ended) return {};  // the next series wakes us
    response_.Clear();
    if (first_) {
      response_.set_result_type(ResultTypeToProto(ended ? promql_->type : pq_type_));
      if (ended) response_.set_string_result(promql_->string_value);
    }
    uint32_t budget = chunk_samples_;
    while (budget > 0 && !pq_queue_.empty()) {
      const promql::ResultSeries& s = pq_queue_.front();
      v1::SeriesChunk* chunk = response_.add_chunks();
      ToProto(s.labels, chunk->mutable_labels());
      for (; point_ < s.points.size() && budget > 0; ++point_, --budget) {
        v1::Sample* out = chunk->add_samples();
        out->set_timestamp_ms(s.points[point_].timestamp_ms);
        out->set_value(s.points[point_].value);
      }
      if (point_ == s.points.size()) {
        chunk->set_last_chunk(true);
        pq_queued_points_ -= s.points.size();
        pq_queue_.pop_front();
        point_ = 0;
      }
    }
    pq_room_.SignalAll();
    if (ended && pq_queue_.empty()) {
      if (done_) return {Step::kFinish, grpc::Status::OK};
      done_ = true;
      const promql::QueryStats& st = promql_->stats;
      v1::QueryStats* out = response_.mutable_stats();
      out->set_series_selected(st.series_selected);
      out->set_samples_read(st.samples_read);
      out->set_windows_read(st.windows_read);
      out->set_points_returned(st.points_returned);
      out->set_rollup_resolution_ms(st.rollup_resolution_ms);
      out->set_eval_seconds(std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count());
      for (const std::string& w : promql_->warnings) response_.add_warnings(w);
    }
    first_ = false;
    buffer_ = EncodeMessage(response_);
    pq_writing_ = true;
    return {Step::kWrite, grpc::Status::OK};
  }

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
    buffer_ = EncodeMessage(response_);
    StartWrite(&buffer_);
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

  QueryService* service_;
  storage::SeriesStore* store_;
  WorkQueue* executor_;
  grpc::CallbackServerContext* context_;
  storage::TenantId tenant_ = storage::kDefaultTenant;  // the caller's: what Select and the engine see
  std::string tenant_name_ = "default";                 // the caller's: the key of its limits
  Limiter::Slot tenant_slot_;                           // held while the query evaluates
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  v1::QueryRequest request_;
  // A PromQL answer (see StartPromQL). Set before the evaluation starts,
  // never changed after: OnWriteDone reads it without the lock.
  bool promql_mode_ = false;
  absl::Mutex pq_mu_;
  absl::CondVar pq_room_;  // series left the queue, or the client went away
  std::deque<promql::ResultSeries> pq_queue_ ABSL_GUARDED_BY(pq_mu_);
  size_t pq_queued_points_ ABSL_GUARDED_BY(pq_mu_) = 0;
  promql::ValueType pq_type_ ABSL_GUARDED_BY(pq_mu_) = promql::ValueType::kNone;
  bool pq_evaluating_ ABSL_GUARDED_BY(pq_mu_) = false;
  bool pq_writing_ ABSL_GUARDED_BY(pq_mu_) = false;  // a write is in flight
  bool pq_gone_ ABSL_GUARDED_BY(pq_mu_) = false;     // a write failed: the client is gone
  // Set when the evaluation ends: OK (promql_ holds type, stats and
  // warnings) or the error to finish with.
  std::optional<grpc::Status> pq_end_ ABSL_GUARDED_BY(pq_mu_);
  std::optional<promql::QueryResult> promql_ ABSL_GUARDED_BY(pq_mu_);
  size_t point_ = 0;     // next point of the queue's front series
  bool first_ = true;    // the next message is the first
  bool done_ = false;    // the last message (with the stats) went out
  int64_t start_ = 0, end_ = 0, step_ = 0;
  int64_t resolution_ = 0;  // rollup read for a step, 0 for raw samples
  uint32_t chunk_samples_ = kDefaultChunkSamples;
  std::vector<storage::SeriesId> ids_;
  size_t next_ = 0;  // index into ids_ of the next series to open
  std::unique_ptr<storage::SampleIterator> iter_;
  std::optional<model::Sample> pending_;  // step output not yet emitted
  v1::QueryResponse response_;
  grpc::ByteBuffer buffer_;           // response_ encoded, while its write is in flight
  v1::SeriesChunk* chunk_ = nullptr;  // in response_
  bool continued_ = false;            // the open series already sent a chunk
  google::protobuf::RepeatedPtrField<v1::Label> last_labels_;
  v1::MetricType last_type_ = v1::METRIC_TYPE_UNSPECIFIED;
};

QueryService::QueryService(storage::SeriesStore* store, WorkQueue* executor, QueryLimits limits)
    : store_(store),
      executor_(executor),
      limits_(limits),
      engine_(store, limits_.promql),
      started_(std::chrono::steady_clock::now()) {}

absl::Status QueryService::AcquireQuerySlot() {
  const size_t limit = limits_.max_concurrent_queries;
  if (running_queries_.fetch_add(1) >= limit) {
    running_queries_.fetch_sub(1);
    return absl::ResourceExhaustedError(fmt::format(
        "{} PromQL queries are already running (the --query-max-concurrent limit); retry with backoff", limit));
  }
  return absl::OkStatus();
}

absl::StatusOr<Limiter::Slot> QueryService::AcquireTenantQuerySlot(std::string_view tenant_name) {
  if (limiter_ == nullptr) return Limiter::Slot();
  return limiter_->AcquireQuery(tenant_name);
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* QueryService::Query(grpc::CallbackServerContext* context,
                                                                const grpc::ByteBuffer* request) {
  return new QueryReactor(this, context, *request);
}

grpc::ServerUnaryReactor* QueryService::ListSeries(grpc::CallbackServerContext* context,
                                                   const grpc::ByteBuffer* request, grpc::ByteBuffer* response) {
  return RunUnary<v1::ListSeriesRequest, v1::ListSeriesResponse>(
      auth_, "/sheaf.v1.QueryService/ListSeries", executor_, context, *request, response, limits_.max_request_bytes,
      [this](const Principal& principal, const v1::ListSeriesRequest& req, v1::ListSeriesResponse* resp) {
        auto matchers = RequestMatchers(req.matchers(), req.selector());
        if (!matchers.ok()) return ToGrpcStatus(matchers.status());
        auto ids = store_->Select(principal.tenant, *matchers);
        if (!ids.ok()) return ToGrpcStatus(ids.status());
        const size_t limit = ListLimit(req.limit(), limits_);
        size_t bytes = 0;
        for (storage::SeriesId id : *ids) {
          if (static_cast<size_t>(resp->series_size()) >= limit || bytes > limits_.max_response_bytes) {
            resp->set_truncated(true);
            break;
          }
          auto info = store_->GetSeries(id);
          if (!info) continue;
          v1::LabelSet* set = resp->add_series();
          ToProto(info->labels, set->mutable_labels());
          set->set_type(ToProto(info->type));
          bytes += set->ByteSizeLong();
        }
        return grpc::Status::OK;
      });
}

grpc::ServerUnaryReactor* QueryService::Stats(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                                              grpc::ByteBuffer* response) {
  return RunUnary<v1::StatsRequest, v1::StatsResponse>(
      auth_, "/sheaf.v1.QueryService/Stats", executor_, context, *request, response, limits_.max_request_bytes,
      [this](const Principal& principal, const v1::StatsRequest&, v1::StatsResponse* resp) {
        storage::StoreStats st = store_->Stats();
        // The store's totals count every tenant's data: a caller who is
        // not the operator (admin of the default tenant) sees its
        // tenant's series count instead, and no sample or agent totals.
        if (!principal.IsOperator()) {
          auto ids = store_->Select(principal.tenant, {});
          if (!ids.ok()) return ToGrpcStatus(ids.status());
          st.series = ids->size();
          st.samples = 0;
          st.agents = 0;
        }
        resp->set_series(st.series);
        resp->set_samples(st.samples);
        resp->set_storage_bytes(st.disk_bytes);
        resp->set_agents(st.agents);
        resp->set_head_samples(st.head_samples);
        resp->set_pending_compaction_bytes(st.pending_compaction_bytes);
        resp->set_write_stalls(st.write_stalls);
        for (const auto& [family, bytes] : st.family_disk_bytes) (*resp->mutable_column_family_bytes())[family] = bytes;
        resp->set_cuts(st.cuts);
        resp->set_rollups(st.rollups);
        resp->set_maintenance_failures(st.maintenance_failures);
        resp->set_last_maintenance_error(st.last_maintenance_error);
        resp->set_writable(st.writable);
        resp->set_write_error(st.write_error);
        resp->set_uptime_seconds(std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count());
        resp->set_version(SHEAF_VERSION);
        return grpc::Status::OK;
      });
}

namespace {

// Copies up to the response byte budget; marks the rest as truncated.
void AddBounded(std::vector<std::string>& in, bool truncated, size_t max_bytes,
                google::protobuf::RepeatedPtrField<std::string>* out, bool* out_truncated) {
  size_t bytes = 0;
  for (std::string& s : in) {
    bytes += s.size() + 4;
    if (bytes > max_bytes) {
      truncated = true;
      break;
    }
    out->Add(std::move(s));
  }
  *out_truncated = truncated;
}

}  // namespace

grpc::ServerUnaryReactor* QueryService::LabelNames(grpc::CallbackServerContext* context,
                                                   const grpc::ByteBuffer* request, grpc::ByteBuffer* response) {
  return RunUnary<v1::LabelNamesRequest, v1::LabelNamesResponse>(
      auth_, "/sheaf.v1.QueryService/LabelNames", executor_, context, *request, response, limits_.max_request_bytes,
      [this](const Principal& principal, const v1::LabelNamesRequest& req, v1::LabelNamesResponse* resp) {
        bool truncated = false;
        auto names = store_->LabelNames(principal.tenant, ListLimit(req.limit(), limits_), &truncated);
        if (!names.ok()) return ToGrpcStatus(names.status());
        bool out_truncated = false;
        AddBounded(*names, truncated, limits_.max_response_bytes, resp->mutable_names(), &out_truncated);
        resp->set_truncated(out_truncated);
        return grpc::Status::OK;
      });
}

grpc::ServerUnaryReactor* QueryService::LabelValues(grpc::CallbackServerContext* context,
                                                    const grpc::ByteBuffer* request, grpc::ByteBuffer* response) {
  return RunUnary<v1::LabelValuesRequest, v1::LabelValuesResponse>(
      auth_, "/sheaf.v1.QueryService/LabelValues", executor_, context, *request, response, limits_.max_request_bytes,
      [this](const Principal& principal, const v1::LabelValuesRequest& req, v1::LabelValuesResponse* resp) {
        if (req.name().empty()) {
          return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "name is required, e.g. \"host\"");
        }
        bool truncated = false;
        auto values =
            store_->LabelValues(principal.tenant, req.name(), ListLimit(req.limit(), limits_), &truncated);
        if (!values.ok()) return ToGrpcStatus(values.status());
        bool out_truncated = false;
        AddBounded(*values, truncated, limits_.max_response_bytes, resp->mutable_values(), &out_truncated);
        resp->set_truncated(out_truncated);
        return grpc::Status::OK;
      });
}

}  // namespace sheaf::daemon
