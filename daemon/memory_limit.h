// MemoryLimit: sheafd's --memory-limit, a bound on its resident memory that
// ingestion respects. Under load beyond what sheafd can take (many agents
// replaying backlogs, a burst of new series) its memory would otherwise
// grow with what it is handed until the kernel's OOM killer ends it; with
// a limit, new Push batches are refused with RESOURCE_EXHAUSTED (retry
// with backoff; agents keep them in their spool) while the resident set
// is above the shedding level, so sheafd sheds load and stays alive,
// answering queries.
//
// The shedding level is 7/8 of the limit: the last eighth is headroom for
// work already admitted (batches in flight, memtable flushes, queries), so
// the resident set stays under the limit itself. The check is cheap: the
// resident set (/proc/self/statm) is read at most every 50 ms, other calls
// load one atomic. No gRPC here.
#ifndef SHEAF_DAEMON_MEMORY_LIMIT_H_
#define SHEAF_DAEMON_MEMORY_LIMIT_H_

#include <atomic>
#include <cstdint>
#include <functional>

#include "absl/status/status.h"

namespace sheaf::daemon {

class MemoryLimit {
 public:
  // `limit_bytes` 0 means no limit (Check is always OK). `rss_bytes` reads
  // the resident set; /proc/self/statm when empty (tests inject one).
  explicit MemoryLimit(uint64_t limit_bytes, std::function<uint64_t()> rss_bytes = {});

  // OK while the resident set is below the shedding level; otherwise
  // RESOURCE_EXHAUSTED naming --memory-limit, its value and the resident
  // set, and counts the refusal. Safe from any thread.
  absl::Status Check();

  uint64_t limit_bytes() const { return limit_; }
  uint64_t shed_bytes() const { return shed_; }
  // Resident set at the last reading (0 before the first).
  uint64_t last_rss_bytes() const { return rss_.load(std::memory_order_relaxed); }
  uint64_t refusals() const { return refusals_.load(std::memory_order_relaxed); }

  // A limit sheafd can live under: 0, or at least its fixed budgets
  // (RocksDB's memtables and block cache) plus kBaseBytes for the rest;
  // otherwise INVALID_ARGUMENT saying which flags to change.
  static constexpr uint64_t kBaseBytes = 64ull << 20;
  static absl::Status Validate(uint64_t limit_bytes, uint64_t write_buffer_bytes, uint64_t block_cache_bytes);

  // The resident set of this process from /proc/self/statm; 0 if unreadable.
  static uint64_t ReadRss();

 private:
  void Refresh(int64_t now_ms);

  const uint64_t limit_;
  const uint64_t shed_;
  std::function<uint64_t()> read_rss_;
  std::atomic<uint64_t> rss_ = 0;
  std::atomic<int64_t> read_ms_ = INT64_MIN / 2;   // when rss_ was read (monotonic)
  std::atomic<int64_t> trimmed_ms_ = INT64_MIN / 2;  // when freed heap was last given back
  std::atomic<uint64_t> refusals_ = 0;
  std::atomic<bool> shedding_ = false;
};

}  // namespace sheaf::daemon

#endif  // SHEAF_DAEMON_MEMORY_LIMIT_H_
