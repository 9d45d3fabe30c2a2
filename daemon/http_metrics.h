// The requests of one HTTP endpoint counted by the status code of their
// answer (`<name>{code="204"}`), as remote write and remote read export
// them. A code's series is created the first time it is answered, so only
// codes that happened are listed.
#ifndef SHEAF_DAEMON_HTTP_METRICS_H_
#define SHEAF_DAEMON_HTTP_METRICS_H_

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>

#include <map>
#include <string>

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

}  // namespace sheaf::daemon

#endif  // SHEAF_DAEMON_HTTP_METRICS_H_
