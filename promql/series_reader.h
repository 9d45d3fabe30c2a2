// Private to promql/: reads the raw samples of many series on a few
// threads and hands them out in order, so that a query over thousands of
// series decodes on every core while its evaluation stays single-threaded.
// Work that touches one series only (a range function at every step) can
// run on the reader threads too, through a Prepare hook.
#ifndef SHEAF_PROMQL_SERIES_READER_H_
#define SHEAF_PROMQL_SERIES_READER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <span>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "model/types.h"
#include "storage/types.h"

namespace sheaf::storage {
class SeriesStore;
}

namespace sheaf::promql::internal {

// Sorts samples by time where they are not, the last of a timestamp
// winning.
void SortByTime(std::vector<model::Sample>& samples);

// One series' samples in [min_ms, max_ms], in time order, the last write
// of a timestamp winning. Thread-safe (the store is).
absl::Status ReadSeriesSamples(storage::SeriesStore* store, storage::SeriesId id, int64_t min_ms, int64_t max_ms,
                               std::vector<model::Sample>* samples);

class SeriesReader {
 public:
  // Called once per series, on whichever thread read it, with the index of
  // the series in `ids` and its samples (in time order) before Next hands
  // them out. It must touch only state of that one series (and read-only
  // shared state); Next's return makes its writes visible to the caller.
  using Prepare = std::function<void(size_t index, std::vector<model::Sample>* samples)>;

  // Reads `ids` (in this order) with up to `threads` threads; 1 or a short
  // list reads on the caller's thread. At most a few chunks of series are
  // read ahead of the caller, so memory stays bounded.
  // `check`, when given, is called (on the caller's thread) while Next
  // waits for the readers; its error stops them, between two series, and
  // Next returns it — so a cancelled query stops however much work the
  // readers have left.
  SeriesReader(storage::SeriesStore* store, std::vector<storage::SeriesId> ids, int64_t min_ms, int64_t max_ms,
               size_t threads, Prepare prepare = nullptr, std::function<absl::Status()> check = nullptr);
  ~SeriesReader();  // stops the readers and joins them
  SeriesReader(const SeriesReader&) = delete;
  SeriesReader& operator=(const SeriesReader&) = delete;

  // The samples of the next series, in order. REQUIRES: fewer calls than
  // ids. *samples' memory is recycled for later reads (so keep passing the
  // same vector).
  absl::Status Next(std::vector<model::Sample>* samples);

 private:
  static constexpr size_t kChunk = 64;  // series a reader takes at a time

  struct Chunk {
    std::vector<std::vector<model::Sample>> samples;
    absl::Status status;
    bool done = false;
  };

  void Work(size_t worker);
  // Reads chunk k's series into *chunk (whose vectors' memory is reused).
  // On the caller's thread (`poll`), check_ runs between series.
  void ReadChunk(size_t k, Chunk* chunk, bool poll) const;

  storage::SeriesStore* const store_;
  const std::vector<storage::SeriesId> ids_;
  const int64_t min_ms_, max_ms_;
  const size_t threads_;
  const size_t ahead_;  // chunks a reader may be ahead of the caller
  const Prepare prepare_;
  const std::function<absl::Status()> check_;
  // Set when the readers are to stop (destruction, or check_ failed); read
  // by them between two series.
  std::atomic<bool> abandon_{false};
  size_t next_ = 0;     // the caller's next series
  absl::Mutex mu_;
  absl::CondVar changed_;  // a chunk was read or consumed, or stop_ set
  std::vector<Chunk> chunks_ ABSL_GUARDED_BY(mu_);
  size_t consumed_ ABSL_GUARDED_BY(mu_) = 0;  // chunks the caller is done with
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  // Sample vectors the caller gave back through Next, for the readers to
  // decode into again: a query over thousands of series then allocates a
  // few chunks' worth of memory, not one vector per series.
  std::vector<std::vector<model::Sample>> spare_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> workers_;
};

}  // namespace sheaf::promql::internal

#endif  // SHEAF_PROMQL_SERIES_READER_H_
