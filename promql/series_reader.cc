#include "promql/series_reader.h"

#include <algorithm>

#include "storage/series_store.h"

namespace sheaf::promql::internal {

void SortByTime(std::vector<model::Sample>& samples) {
  // The store answers in time order; this only guards the evaluation's
  // assumptions (sorted, one value per timestamp: the last write wins).
  auto before = [](const model::Sample& a, const model::Sample& b) { return a.timestamp_ms < b.timestamp_ms; };
  auto out_of_order = [](const model::Sample& a, const model::Sample& b) { return a.timestamp_ms >= b.timestamp_ms; };
  if (std::adjacent_find(samples.begin(), samples.end(), out_of_order) == samples.end()) return;
  std::stable_sort(samples.begin(), samples.end(), before);
  std::vector<model::Sample> unique;
  for (const model::Sample& x : samples) {
    if (!unique.empty() && unique.back().timestamp_ms == x.timestamp_ms) {
      unique.back() = x;
    } else {
      unique.push_back(x);
    }
  }
  samples = std::move(unique);
}

absl::Status ReadSeriesSamples(storage::SeriesStore* store, storage::SeriesId id, int64_t min_ms, int64_t max_ms,
                               std::vector<model::Sample>* samples) {
  std::vector<std::vector<model::Sample>> out;
  absl::Status s = store->ReadMany(std::span(&id, 1), min_ms, max_ms, &out);
  if (!s.ok()) return s;
  *samples = std::move(out[0]);
  SortByTime(*samples);
  return absl::OkStatus();
}

SeriesReader::SeriesReader(storage::SeriesStore* store, std::vector<storage::SeriesId> ids, int64_t min_ms,
                           int64_t max_ms, size_t threads, Prepare prepare, std::function<absl::Status()> check)
    : store_(store),
      ids_(std::move(ids)),
      min_ms_(min_ms),
      max_ms_(max_ms),
      threads_(ids_.size() >= 2 * kChunk ? std::max<size_t>(threads, 1) : 1),
      ahead_(2 * threads_),
      prepare_(std::move(prepare)),
      check_(std::move(check)) {
  absl::MutexLock lock(&mu_);
  chunks_.resize((ids_.size() + kChunk - 1) / kChunk);
  if (threads_ <= 1) return;
  for (size_t w = 0; w < threads_; ++w) workers_.emplace_back([this, w] { Work(w); });
}

SeriesReader::~SeriesReader() {
  abandon_ = true;
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    changed_.SignalAll();
  }
  for (std::thread& t : workers_) t.join();
}

void SeriesReader::Work(size_t worker) {
  for (size_t k = worker;; k += threads_) {
    {
      absl::MutexLock lock(&mu_);
      while (!stop_ && k >= consumed_ + ahead_) changed_.Wait(&mu_);
      if (stop_ || k >= chunks_.size()) return;
    }
    Chunk chunk;
    {
      absl::MutexLock lock(&mu_);
      const size_t n = std::min(spare_.size(), kChunk);
      chunk.samples.reserve(kChunk);
      for (size_t i = 0; i < n; ++i) {
        chunk.samples.push_back(std::move(spare_.back()));
        spare_.pop_back();
      }
    }
    ReadChunk(k, &chunk, /*poll=*/false);
    absl::MutexLock lock(&mu_);
    chunks_[k] = std::move(chunk);
    changed_.SignalAll();
  }
}

void SeriesReader::ReadChunk(size_t k, Chunk* chunk, bool poll) const {
  const size_t begin = k * kChunk, end = std::min(ids_.size(), begin + kChunk);
  chunk->status = store_->ReadMany(std::span(ids_).subspan(begin, end - begin), min_ms_, max_ms_, &chunk->samples);
  if (!chunk->status.ok()) chunk->samples.clear();
  for (size_t j = 0; j < chunk->samples.size(); ++j) {
    absl::Status stop = abandon_ ? absl::CancelledError("the query stopped") : absl::OkStatus();
    if (stop.ok() && poll && check_) stop = check_();
    if (!stop.ok()) {
      chunk->status = stop;
      chunk->samples.resize(j);
      break;
    }
    SortByTime(chunk->samples[j]);
    if (prepare_) prepare_(begin + j, &chunk->samples[j]);
  }
  chunk->done = true;
}

absl::Status SeriesReader::Next(std::vector<model::Sample>* samples) {
  const size_t i = next_++;
  const size_t k = i / kChunk;
  absl::MutexLock lock(&mu_);
  if (threads_ <= 1 && !chunks_[k].done) ReadChunk(k, &chunks_[k], /*poll=*/true);
  while (!chunks_[k].done) {
    changed_.WaitWithTimeout(&mu_, absl::Milliseconds(20));
    if (!chunks_[k].done && check_) {
      if (absl::Status s = check_(); !s.ok()) {
        abandon_ = true;
        return s;
      }
    }
  }
  Chunk& chunk = chunks_[k];
  const size_t j = i - k * kChunk;
  if (j >= chunk.samples.size()) return chunk.status;  // the read failed before this series
  // The caller's previous vector goes back to the readers.
  if (samples->capacity() > 0 && spare_.size() < ahead_ * kChunk) {
    samples->clear();
    spare_.push_back(std::move(*samples));
  }
  std::swap(*samples, chunk.samples[j]);
  if (j + 1 < chunk.samples.size()) return absl::OkStatus();
  // The chunk's last series (or the one whose read failed).
  absl::Status status = chunk.status;
  chunk.samples = {};  // its memory back
  consumed_ = k + 1;
  changed_.SignalAll();
  return status;
}

}  // namespace sheaf::promql::internal
