// A live list of daemon addresses behind one --daemon target (target.h):
// fixed, resolved from DNS again and again, read from a watched YAML file,
// or watched in etcd (etcd_source.h). Each source that changes runs a
// thread of its own; the picker (daemon_picker.h) reads the list and is
// told when it changes.
//
// A source never empties its list because of an error: a failed DNS lookup,
// an invalid or missing file or an unreachable etcd is logged (once per
// distinct error, with the target) and counted, and the last good list
// stays. Only a good answer that really changes the list changes it (etcd:
// a daemon that deregisters or whose lease expires).
//
// No gRPC here (etcd's source lives in etcd_source.cc).
#ifndef SHEAF_AGENT_DISCOVERY_ADDRESS_SOURCE_H_
#define SHEAF_AGENT_DISCOVERY_ADDRESS_SOURCE_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "agent/discovery/target.h"

namespace sheaf::agent::discovery {

struct SourceOptions {
  // dns: how often the name is resolved again.
  std::chrono::milliseconds dns_refresh = std::chrono::seconds(30);
  // file: how often the file's modification time, size and inode are
  // compared with the last read (a change is read at once).
  std::chrono::milliseconds file_poll = std::chrono::seconds(2);
  // etcd: retries of a failed Range or Watch (doubling, with jitter), the
  // deadline of a Range, and the keepalive of the watch's channel (a watch
  // on a dead connection would otherwise wait forever).
  std::chrono::milliseconds etcd_retry_initial = std::chrono::milliseconds(500);
  std::chrono::milliseconds etcd_retry_max = std::chrono::seconds(10);
  std::chrono::milliseconds etcd_rpc_timeout = std::chrono::seconds(5);
  std::chrono::milliseconds etcd_keepalive_time = std::chrono::seconds(10);
  // Addresses a source holds at most; more are an error (kept: the first).
  size_t max_addresses = 1024;
  // Tests: replaces getaddrinfo(3). Returns host:port strings.
  std::function<absl::StatusOr<std::vector<std::string>>(const std::string& host, int port)> resolve;
};

class AddressSource {
 public:
  virtual ~AddressSource();
  AddressSource(const AddressSource&) = delete;
  AddressSource& operator=(const AddressSource&) = delete;

  // The addresses now: sorted, no duplicates, host:port each (IPv6 in
  // brackets). Empty until the first good answer. Thread-safe.
  std::vector<std::string> Addresses() const;
  // Goes up by one each time Addresses() changes.
  uint64_t version() const;
  // Blocks until version() >= `version` or `timeout` passes; true if it is.
  bool WaitForVersion(uint64_t version, std::chrono::milliseconds timeout) const;

  // Called (on the source's thread, no lock of the source held) after each
  // change. Replaces the previous listener; once SetListener returns, the
  // previous one is not running and will not be called again.
  void SetListener(std::function<void()> listener);

  struct Stats {
    uint64_t updates = 0;  // changes of the list
    uint64_t errors = 0;   // failed lookups, reads, watches
    std::string last_error;  // empty after a good answer
  };
  Stats stats() const;
  const std::string& target() const { return target_; }

 protected:
  explicit AddressSource(std::string target) : target_(std::move(target)) {}

  // Replaces the list (sorted and deduplicated here) if it differs.
  void Set(std::vector<std::string> addresses);
  // Counts an error; logs it unless it is the same as the last one.
  void RecordError(const std::string& message);

  // Runs `loop` on the source's thread. The loop returns once stopping().
  void StartThread(std::function<void()> loop);
  // Asks the loop to stop, calls `interrupt` (to cancel a blocking call)
  // and joins the thread. Subclasses call it first in their destructor.
  void StopThread(const std::function<void()>& interrupt = nullptr);
  bool stopping() const;
  // Waits `d` or until stopping; true if stopping.
  bool WaitStopping(std::chrono::milliseconds d) const;

 private:
  const std::string target_;
  mutable absl::Mutex mu_;
  std::vector<std::string> addresses_ ABSL_GUARDED_BY(mu_);
  uint64_t version_ ABSL_GUARDED_BY(mu_) = 0;
  Stats stats_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Held while the listener runs, so SetListener can wait it out.
  absl::Mutex listener_mu_;
  std::function<void()> listener_ ABSL_GUARDED_BY(listener_mu_);
  std::thread thread_;
};

// The source for a parsed target. A file target whose file cannot be read
// or parsed is an error now (naming the file and what is wrong); later
// changes that break it are logged and the last good list kept. DNS and
// etcd targets open without waiting for an answer.
absl::StatusOr<std::unique_ptr<AddressSource>> OpenAddressSource(const Target& target,
                                                                 const SourceOptions& options = {});

// Reads a daemons file: a YAML list of host:port strings, or a map whose
// `daemons` key holds that list. At least one address. Errors name the file
// and the entry.
absl::StatusOr<std::vector<std::string>> ReadDaemonsFile(const std::string& path, size_t max_addresses);

// Every A/AAAA address of `host` with `port`, as host:port (getaddrinfo).
absl::StatusOr<std::vector<std::string>> ResolveHost(const std::string& host, int port);

}  // namespace sheaf::agent::discovery

#endif  // SHEAF_AGENT_DISCOVERY_ADDRESS_SOURCE_H_
