// See memory_limit.h.
#include "daemon/memory_limit.h"

#include <fmt/format.h>
#include <malloc.h>
#include <unistd.h>

#include <cstdio>

#include "common/clock.h"
#include "common/log.h"

namespace sheaf::daemon {
namespace {

constexpr int64_t kReadEveryMs = 50;
// malloc_trim walks every arena: at most once a second, and only while
// over the level (freed heap the allocator keeps counts as resident and
// would keep sheafd refusing after the load is gone).
constexpr int64_t kTrimEveryMs = 1000;

}  // namespace

MemoryLimit::MemoryLimit(uint64_t limit_bytes, std::function<uint64_t()> rss_bytes)
    : limit_(limit_bytes), shed_(limit_bytes - limit_bytes / 8), read_rss_(std::move(rss_bytes)) {
  if (!read_rss_) read_rss_ = ReadRss;
}

absl::Status MemoryLimit::Validate(uint64_t limit_bytes, uint64_t write_buffer_bytes, uint64_t block_cache_bytes) {
  const uint64_t least = write_buffer_bytes + block_cache_bytes + kBaseBytes;
  if (limit_bytes == 0 || limit_bytes >= least) return absl::OkStatus();
  return absl::InvalidArgumentError(fmt::format(
      "--memory-limit={} is below what sheafd holds anyway: --write-buffer-bytes={} + --block-cache-bytes={} + "
      "{} for the rest = {}; raise it or lower those",
      limit_bytes, write_buffer_bytes, block_cache_bytes, kBaseBytes, least));
}

uint64_t MemoryLimit::ReadRss() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long long size = 0, resident = 0;
  const int n = std::fscanf(f, "%llu %llu", &size, &resident);
  std::fclose(f);
  return n == 2 ? resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE)) : 0;
}

void MemoryLimit::Refresh(int64_t now_ms) {
  int64_t read = read_ms_.load(std::memory_order_relaxed);
  // One caller reads; the others use the last reading.
  if (now_ms - read < kReadEveryMs || !read_ms_.compare_exchange_strong(read, now_ms)) return;
  uint64_t rss = read_rss_();
  if (rss >= shed_) {
    int64_t trimmed = trimmed_ms_.load(std::memory_order_relaxed);
    if (now_ms - trimmed >= kTrimEveryMs && trimmed_ms_.compare_exchange_strong(trimmed, now_ms)) {
      malloc_trim(0);
      rss = read_rss_();
    }
  }
  rss_.store(rss, std::memory_order_relaxed);
}

absl::Status MemoryLimit::Check() {
  if (limit_ == 0) return absl::OkStatus();
  Refresh(MonotonicMs());
  const uint64_t rss = rss_.load(std::memory_order_relaxed);
  // Logged once per episode: when shedding starts and when it ends.
  if (rss < shed_) {
    if (shedding_.exchange(false)) LogInfo("sheafd is below 7/8 of --memory-limit={} again; taking batches", limit_);
    return absl::OkStatus();
  }
  refusals_.fetch_add(1, std::memory_order_relaxed);
  if (!shedding_.exchange(true)) {
    LogWarn("sheafd reached 7/8 of --memory-limit={} (resident {} bytes): refusing new Push batches until it is below",
            limit_, rss);
  }
  return absl::ResourceExhaustedError(
      fmt::format("sheafd is over --memory-limit={} bytes: resident memory is {} bytes, above the {} bytes (7/8 of "
                  "the limit) where it refuses new batches; retry with backoff",
                  limit_, rss, shed_));
}

}  // namespace sheaf::daemon
