// QueryService.Tail: the bidi live tail over the tail hub (tail_hub.h).
//
// One reactor per stream, owned by a shared pointer to itself until OnDone
// (the hub's delivery thread holds a weak one, so a late call finds it
// alive or not at all). Requests are handled in OnReadDone, one read in
// flight: decoding is bounded and matchers are compiled there, nothing
// waits on the disk. Writes happen only on the hub's delivery thread, one
// in flight: OnTailReady takes at most one response's worth from the
// subscriber's buffer; a completed write asks for the next call. Finish is
// never called with a write in flight (gRPC forbids it); it waits for the
// write to complete, which a cancelled call does at once.
#include <fmt/format.h>

#include <algorithm>
#include <memory>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "daemon/convert.h"
#include "daemon/grpc_auth.h"
#include "daemon/grpc_codec.h"
#include "daemon/query_service.h"
#include "daemon/status_convert.h"
#include "daemon/tail_hub.h"

namespace sheaf::daemon {
namespace {

// One response: at most this many samples, about this many bytes.
constexpr size_t kMaxResponseSamples = 10'000;
constexpr size_t kMaxResponseBytes = 1 << 20;
// Acks waiting to be sent: a client that keeps sending requests without
// reading the answers is stopped here.
constexpr size_t kMaxPendingAcks = 1024;

}  // namespace

class QueryService::TailReactor : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>,
                                  public TailListener,
                                  public std::enable_shared_from_this<TailReactor> {
 public:
  static TailReactor* Create(QueryService* service, absl::StatusOr<Principal> principal) {
    std::shared_ptr<TailReactor> reactor(new TailReactor(service));
    {
      absl::MutexLock lock(&reactor->mu_);
      reactor->self_ = reactor;
    }
    reactor->Begin(std::move(principal));
    return reactor.get();
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The client closed its side (or the call is gone: OnCancel follows).
      // Its subscriptions go on; with none, there is nothing left to do.
      absl::MutexLock lock(&mu_);
      if (subscriber_ != nullptr && subscriber_->subscriptions() == 0) {
        End(grpc::Status::OK);
      }
      return;
    }
    v1::TailRequest request;
    grpc::Status s = DecodeMessage(request_, service_->limits_.max_request_bytes,
                                   fmt::format("request {} of the stream", ++requests_), &request);
    request_.Clear();
    {
      absl::MutexLock lock(&mu_);
      if (ending_) return;
      if (!s.ok()) {
        End(s);
        return;
      }
      // The ack is queued before the change takes effect, both under mu_,
      // and OnTailReady takes acks and samples under mu_ too: an ack always
      // goes out before (or with) the first samples it affects.
      acks_.push_back(Handle(request));
      if (acks_.size() > kMaxPendingAcks) {
        End(grpc::Status(
            grpc::StatusCode::RESOURCE_EXHAUSTED,
            fmt::format("more than {} Tail requests are waiting to be answered: read the responses", kMaxPendingAcks)));
        return;
      }
    }
    subscriber_->RequestReady();
    StartRead(&request_);
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) End(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
    if (ending_) {
      FinishIfIdle();
      return;
    }
    subscriber_->RequestReady();
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    End(grpc::Status(grpc::StatusCode::CANCELLED, "the call was cancelled (the client left or its deadline passed)"));
  }

  void OnDone() override {
    std::shared_ptr<TailReactor> self;
    {
      absl::MutexLock lock(&mu_);
      if (subscriber_ != nullptr) subscriber_->Leave();
      self = std::move(self_);
    }
    // `self` may be the last owner: this object ends with this function.
  }

  // On the hub's delivery thread.
  void OnTailReady() override {
    absl::MutexLock lock(&mu_);
    if (ending_ || writing_) return;  // a completed write asks again
    TailDelivery delivery = subscriber_->Take(kMaxResponseSamples, kMaxResponseBytes);
    if (delivery.closed) {
      End(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                       "sheafd is shutting down; tail again when it is back (or tail another sheafd)"));
      return;
    }
    if (acks_.empty() && delivery.empty()) return;
    v1::TailResponse response;
    for (v1::TailAck& ack : acks_) *response.add_acks() = std::move(ack);
    acks_.clear();
    AddSamples(delivery, &response);
    response.set_missed_samples(delivery.missed);
    buffer_ = EncodeMessage(response);
    writing_ = true;
    // StartWrite may complete (and call OnWriteDone) before it returns:
    // never under mu_.
    mu_.Unlock();
    StartWrite(&buffer_);
    mu_.Lock();
  }

 private:
  explicit TailReactor(QueryService* service) : service_(service) {}

  // A caller without the query role ends here, before it can subscribe;
  // the others see their tenant's series only.
  void Begin(absl::StatusOr<Principal> principal) {
    absl::MutexLock lock(&mu_);
    if (!principal.ok()) {
      End(ToGrpcStatus(principal.status()));
      return;
    }
    if (service_->tail_hub_ == nullptr) {
      End(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "this sheafd serves no live tail"));
      return;
    }
    auto subscriber = service_->tail_hub_->Join(weak_from_this(), principal->tenant);
    if (!subscriber.ok()) {
      End(ToGrpcStatus(subscriber.status()));
      return;
    }
    subscriber_ = *std::move(subscriber);
    mu_.Unlock();
    StartRead(&request_);
    mu_.Lock();
  }

  v1::TailAck Handle(const v1::TailRequest& request) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    v1::TailAck ack;
    absl::Status status;
    switch (request.request_case()) {
      case v1::TailRequest::kSubscribe: {
        const v1::TailSubscribe& sub = request.subscribe();
        ack.set_action(v1::TailAck::SUBSCRIBE);
        ack.set_subscription_id(sub.subscription_id());
        auto matchers = RequestMatchers(sub.matchers(), sub.selector());
        status =
            matchers.ok() ? subscriber_->Subscribe(sub.subscription_id(), *std::move(matchers)) : matchers.status();
        break;
      }
      case v1::TailRequest::kUnsubscribe:
        ack.set_action(v1::TailAck::UNSUBSCRIBE);
        ack.set_subscription_id(request.unsubscribe().subscription_id());
        if (!subscriber_->Unsubscribe(ack.subscription_id())) {
          status = absl::InvalidArgumentError(
              fmt::format("there is no subscription {} on this stream", ack.subscription_id()));
        }
        break;
      default:
        status = absl::InvalidArgumentError("a TailRequest must set subscribe or unsubscribe");
    }
    ack.set_code(static_cast<int32_t>(status.code()));
    ack.set_error(std::string(status.message()));
    return ack;
  }

  // Runs become TailSeries: one per series and set of subscription ids,
  // its samples in the order they were stored.
  static void AddSamples(const TailDelivery& delivery, v1::TailResponse* response) {
    std::unordered_map<storage::SeriesId, std::vector<int>> entries;  // series id -> indices in response
    for (const TailRun& run : delivery.runs) {
      v1::TailSeries* out = nullptr;
      std::vector<int>& indices = entries[run.series->id];
      for (int i : indices) {
        const auto& ids = response->series(i).subscription_ids();
        if (std::equal(ids.begin(), ids.end(), run.subscription_ids->begin(), run.subscription_ids->end())) {
          out = response->mutable_series(i);
          break;
        }
      }
      if (out == nullptr) {
        indices.push_back(response->series_size());
        out = response->add_series();
        ToProto(run.series->labels, out->mutable_labels());
        out->set_type(ToProto(run.series->type));
        out->mutable_subscription_ids()->Add(run.subscription_ids->begin(), run.subscription_ids->end());
      }
      for (size_t i = run.begin; i < run.end; ++i) {
        v1::Sample* s = out->add_samples();
        s->set_timestamp_ms((*run.samples)[i].timestamp_ms);
        s->set_value((*run.samples)[i].value);
      }
    }
  }

  // Ends the stream with `status` (the first reason wins): leaves the hub
  // at once, and finishes as soon as no write is in flight.
  void End(grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (ending_) return;
    ending_ = true;
    status_ = std::move(status);
    if (subscriber_ != nullptr) subscriber_->Leave();
    FinishIfIdle();
  }

  void FinishIfIdle() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || writing_) return;
    finished_ = true;
    // Finish may run OnDone before it returns: never under mu_.
    grpc::Status status = status_;
    mu_.Unlock();
    Finish(status);
    mu_.Lock();
  }

  QueryService* const service_;
  grpc::ByteBuffer request_;  // the read in flight (only touched by the read callbacks)
  uint64_t requests_ = 0;

  absl::Mutex mu_;
  std::shared_ptr<TailReactor> self_ ABSL_GUARDED_BY(mu_);  // until OnDone
  std::shared_ptr<TailSubscriber> subscriber_;              // set once in Begin
  std::vector<v1::TailAck> acks_ ABSL_GUARDED_BY(mu_);
  grpc::ByteBuffer buffer_;  // the write in flight
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool ending_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
};

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* QueryService::Tail(grpc::CallbackServerContext* context) {
  return TailReactor::Create(this, AuthorizeCall(auth_, *context, "/sheaf.v1.QueryService/Tail"));
}

}  // namespace sheaf::daemon
