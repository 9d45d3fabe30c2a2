#include "promql/series_reader.h"

#include <algorithm>

#include "storage/series_store.h"

namespace sheaf::promql::internal {

absl::Status ReadSeriesSamples(storage::SeriesStore* store, storage::SeriesId id, int64_t min_ms, int64_t max_ms,
                               std::vector<model::Sample>* samples) {
  samples->clear();
  auto it = store->Read(id, min_ms, max_ms);
  for (; it->Valid(); it->Next()) samples->push_back(it->sample());
  if (!it->status().ok()) return it->status();
  // Blocks come before the head; a late sample in the head can be older
  // than the newest block's. Time order, last write wins.
  auto by_time = [](const model::Sample& a, const model::Sample& b) { return a.timestamp_ms < b.timestamp_ms; };
  if (!std::is_sorted(samples->begin(), samples->end(), by_time)) {
    std::stable_sort(samples->begin(), samples->end(), by_time);
    std::vector<model::Sample> unique;
    for (const model::Sample& x : *samples) {
      if (!unique.empty() && unique.back().timestamp_ms == x.timestamp_ms) {
        unique.back() = x;
      } else {
        unique.push_back(x);
      }
    }
    *samples = std::move(unique);
  }
  return absl::OkStatus();
}

SeriesReader::SeriesReader(storage::SeriesStore* store, std::vector<storage::SeriesId> ids, int64_t min_ms,
                           int64_t max_ms, size_t threads)
    : store_(store),
      ids_(std::move(ids)),
      min_ms_(min_ms),
      max_ms_(max_ms),
      threads_(ids_.size() >= 2 * kChunk ? std::max<size_t>(threads, 1) : 1),
      ahead_(2 * threads_) {
  if (threads_ <= 1) return;
  absl::MutexLock lock(&mu_);
  chunks_.resize((ids_.size() + kChunk - 1) / kChunk);
  for (size_t w = 0; w < threads_; ++w) workers_.emplace_back([this, w] { Work(w); });
}

SeriesReader::~SeriesReader() {
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
    const size_t end = std::min(ids_.size(), (k + 1) * kChunk);
    for (size_t i = k * kChunk; i < end && chunk.status.ok(); ++i) {
      chunk.samples.emplace_back();
      chunk.status = ReadSeriesSamples(store_, ids_[i], min_ms_, max_ms_, &chunk.samples.back());
    }
    chunk.done = true;
    absl::MutexLock lock(&mu_);
    chunks_[k] = std::move(chunk);
    changed_.SignalAll();
  }
}

absl::Status SeriesReader::Next(std::vector<model::Sample>* samples) {
  const size_t i = next_++;
  if (threads_ <= 1) return ReadSeriesSamples(store_, ids_[i], min_ms_, max_ms_, samples);
  const size_t k = i / kChunk;
  absl::MutexLock lock(&mu_);
  while (!chunks_[k].done) changed_.Wait(&mu_);
  Chunk& chunk = chunks_[k];
  const size_t j = i - k * kChunk;
  if (j >= chunk.samples.size()) return chunk.status;  // the read failed before this series
  *samples = std::move(chunk.samples[j]);
  if (j + 1 < chunk.samples.size()) return absl::OkStatus();
  // The chunk's last series (or the one whose read failed).
  absl::Status status = chunk.status;
  chunk.samples = {};  // its memory back
  consumed_ = k + 1;
  changed_.SignalAll();
  return status;
}

}  // namespace sheaf::promql::internal
