// HTTP request metrics. RequestsByCode: the requests of one endpoint
// counted by the status code of their answer (`<name>{code="204"}`), as
// remote write and remote read export them. HttpServerMetrics: every
// answer of sheafd's HTTP server by route and code, and its latency by
// route, as Prometheus' prometheus_http_* series (fed by
// HttpServerOptions::on_answer). Series are created the first time a
// route or code is answered, so only what happened is listed; routes are
// the registered paths, a bounded set.
#ifndef SHEAF_DAEMON_HTTP_METRICS_H_
#define SHEAF_DAEMON_HTTP_METRICS_H_

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <map>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace sheaf::daemon {

// Thread-safe. Without a registry, counts nothing.
class RequestsByCode {
 public:
  RequestsByCode(prometheus::Registry* registry, const std::string& name, const std::string& help) {
    if (registry != nullptr) family_ = &prometheus::BuildCounter().Name(name).Help(help).Register(*registry);
  }

  void Count(int status) {
    if (family_ == nullptr) return;
    absl::MutexLock lock(&mu_);
    auto [it, added] = by_code_.try_emplace(status, nullptr);
    if (added) it->second = &family_->Add({{"code", std::to_string(status)}});
    it->second->Increment();
  }

 private:
  prometheus::Family<prometheus::Counter>* family_ = nullptr;
  absl::Mutex mu_;
  std::map<int, prometheus::Counter*> by_code_ ABSL_GUARDED_BY(mu_);
};

// Thread-safe.
class HttpServerMetrics {
 public:
  explicit HttpServerMetrics(prometheus::Registry* registry)
      : requests_(&prometheus::BuildCounter()
                       .Name("sheaf_http_requests_total")
                       .Help("HTTP requests answered, by route (handler; \"\" when none matched) and status code.")
                       .Register(*registry)),
        latency_(&prometheus::BuildHistogram()
                      .Name("sheaf_http_request_duration_seconds")
                      .Help("Time from an HTTP request to its answer sent, by route.")
                      .Register(*registry)) {}

  void Observe(const std::string& route, int status, double seconds) {
    absl::MutexLock lock(&mu_);
    auto [count, added] = requests_by_.try_emplace({route, status}, nullptr);
    if (added) count->second = &requests_->Add({{"handler", route}, {"code", std::to_string(status)}});
    count->second->Increment();
    auto [hist, new_route] = latency_by_.try_emplace(route, nullptr);
    if (new_route) {
      hist->second = &latency_->Add({{"handler", route}},
                                    prometheus::Histogram::BucketBoundaries{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                                            0.5, 1, 2.5, 5, 10, 30, 60});
    }
    hist->second->Observe(seconds);
  }

 private:
  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Family<prometheus::Histogram>* latency_;
  absl::Mutex mu_;
  std::map<std::pair<std::string, int>, prometheus::Counter*> requests_by_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, prometheus::Histogram*> latency_by_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sheaf::daemon

#endif  // SHEAF_DAEMON_HTTP_METRICS_H_
