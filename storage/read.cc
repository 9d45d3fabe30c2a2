// The read path: selection, sample and rollup reads, label listings.
#include <algorithm>
#include <map>

#include "storage/sample_codec.h"
#include "storage/store.h"

namespace sheaf::storage {
namespace {

// One series' blocks up to an upper key bound (decoded one at a time, kept
// to [start, end]), then its head snapshot.
class BlockSampleIterator : public SampleIterator {
 public:
  BlockSampleIterator(std::unique_ptr<rocksdb::Iterator> it, std::string upper, std::vector<Sample> head, int64_t start,
                      int64_t end)
      : it_(std::move(it)), upper_(std::move(upper)), head_(std::move(head)), start_(start), end_(end) {
    Fill();
  }
  bool Valid() const override { return pos_ < buffer_.size(); }
  void Next() override {
    if (++pos_ >= buffer_.size()) Fill();
  }
  Sample sample() const override { return buffer_[pos_]; }
  absl::Status status() const override { return status_; }

 private:
  void Fill() {
    buffer_.clear();
    pos_ = 0;
    while (buffer_.empty() && it_ && it_->Valid() && View(it_->key()) < upper_) {
      block_.clear();
      if (auto s = DecodeBlockAppend(View(it_->value()), &block_); !s.ok()) {
        status_ = absl::DataLossError("corrupt block: " + std::string(s.message()));
        it_.reset();
        return;
      }
      for (const Sample& x : block_) {
        if (x.timestamp_ms >= start_ && x.timestamp_ms <= end_) buffer_.push_back(x);
      }
      it_->Next();
    }
    if (it_ && (!it_->Valid() || View(it_->key()) >= upper_)) {
      if (!it_->status().ok()) status_ = FromRocks(it_->status(), "reading blocks");
      it_.reset();
    }
    if (buffer_.empty() && !it_ && !head_done_) {
      head_done_ = true;
      buffer_ = std::move(head_);
    }
  }

  std::unique_ptr<rocksdb::Iterator> it_;
  std::string upper_;
  std::vector<Sample> head_;
  int64_t start_, end_;
  std::vector<Sample> block_, buffer_;
  size_t pos_ = 0;
  bool head_done_ = false;
  absl::Status status_;
};

}  // namespace

absl::StatusOr<std::vector<SeriesId>> RocksSeriesStore::Select(TenantId tenant, const std::vector<Matcher>& matchers) {
  // Candidates from the postings of every `name="value"` matcher
  // (intersected); without one, every series of the tenant. Then each
  // candidate is checked against all matchers.
  std::optional<std::vector<SeriesId>> candidates;
  for (const Matcher& m : matchers) {
    if (m.op() != Matcher::Op::kEqual || m.value().empty()) continue;
    auto postings = Postings(tenant, m.name(), m.value());
    if (!postings.ok()) return postings.status();
    if (!candidates) {
      candidates = *std::move(postings);
    } else {
      std::vector<SeriesId> both;
      std::set_intersection(candidates->begin(), candidates->end(), postings->begin(), postings->end(),
                            std::back_inserter(both));
      candidates = std::move(both);
    }
    if (candidates->empty()) return std::vector<SeriesId>{};
  }
  std::vector<SeriesId> out;
  absl::ReaderMutexLock lock(&mu_);
  auto consider = [&](SeriesId id) ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    const Entry& e = entries_[id - 1];
    if (e.deleted || e.tenant != tenant) return;
    auto labels = keys::DecodeCanonicalLabels(e.canonical);
    if (labels && model::MatchesAll(matchers, *labels)) out.push_back(id);
  };
  if (candidates) {
    for (SeriesId id : *candidates) {
      if (id >= 1 && id <= entries_.size()) consider(id);
    }
  } else {
    for (SeriesId id = 1; id <= entries_.size(); ++id) consider(id);
  }
  return out;
}

std::optional<SeriesInfo> RocksSeriesStore::GetSeries(SeriesId id) {
  absl::ReaderMutexLock lock(&mu_);
  if (id == 0 || id > entries_.size() || entries_[id - 1].deleted) return std::nullopt;
  const Entry& e = entries_[id - 1];
  auto labels = keys::DecodeCanonicalLabels(e.canonical);
  if (!labels) return std::nullopt;
  return SeriesInfo{e.tenant, *std::move(labels), e.type};
}

std::unique_ptr<SampleIterator> RocksSeriesStore::Read(SeriesId id, int64_t start_ms, int64_t end_ms) {
  return ReadImpl(id, start_ms, end_ms, /*with_head=*/true);
}

std::unique_ptr<SampleIterator> RocksSeriesStore::ReadImpl(SeriesId id, int64_t start_ms, int64_t end_ms,
                                                           bool with_head) {
  std::string upper =
      end_ms == INT64_MAX ? keys::SeriesTimeKey(id + 1, INT64_MIN) : keys::SeriesTimeKey(id, end_ms + 1);
  std::vector<Sample> head;
  std::unique_ptr<rocksdb::Iterator> it;
  {
    absl::ReaderMutexLock lock(&mu_);
    // The head is copied and the blocks' snapshot taken under head_mu_, so
    // a concurrent cut is seen whole or not at all.
    absl::MutexLock head_lock(&head_mu_);
    if (with_head && id >= 1 && id <= entries_.size()) {
      for (const Sample& x : entries_[id - 1].head) {
        if (x.timestamp_ms >= start_ms && x.timestamp_ms <= end_ms) head.push_back(x);
      }
    }
    it.reset(db_->NewIterator(rocksdb::ReadOptions(), samples_));
  }
  it->Seek(keys::SeriesTimeKey(id, keys::WindowStart(start_ms, options_.block_window_ms)));
  return std::make_unique<BlockSampleIterator>(std::move(it), std::move(upper), std::move(head), start_ms, end_ms);
}

absl::StatusOr<std::vector<SeriesStore::Window>> RocksSeriesStore::ReadRollup(SeriesId id, int64_t resolution_ms,
                                                                              int64_t start_ms, int64_t end_ms) {
  size_t r = 0;
  while (r < options_.rollups.size() && options_.rollups[r].resolution_ms != resolution_ms) ++r;
  if (r == options_.rollups.size()) {
    return absl::InvalidArgumentError("no rollup at resolution " + std::to_string(resolution_ms) + " ms");
  }
  const int64_t first_window = keys::WindowStart(start_ms, resolution_ms);
  bool counter = false;
  std::unique_ptr<rocksdb::Iterator> it;
  int64_t until;
  std::vector<Sample> late;  // head samples older than the watermark: not in the rollups until the next cut
  {
    absl::ReaderMutexLock lock(&mu_);
    // Watermark, head and snapshot together, so a cut can't slip between.
    absl::MutexLock head_lock(&head_mu_);
    until = rolled_up_until_;
    if (id >= 1 && id <= entries_.size()) {
      counter = entries_[id - 1].type == MetricType::kCounter;
      for (const Sample& x : entries_[id - 1].head) {
        if (x.timestamp_ms < until) late.push_back(x);
      }
    }
    it.reset(db_->NewIterator(rocksdb::ReadOptions(), rollups_[r]));
  }
  std::vector<Window> out;
  // Rolled up: the stored windows.
  if (first_window < until) {
    const std::string upper = keys::SeriesTimeKey(id, std::min(end_ms, until - 1));
    RollupWindows stored;
    for (it->Seek(keys::SeriesTimeKey(id, keys::WindowStart(first_window, RollupBlockMs(resolution_ms))));
         it->Valid() && View(it->key()) <= upper; it->Next()) {
      stored.clear();
      if (auto s = DecodeRollupBlock(View(it->value()), &stored); !s.ok()) {
        return absl::DataLossError("series " + std::to_string(id) + ": " + std::string(s.message()));
      }
      for (auto& [w, a] : stored) {
        if (w >= first_window && w <= end_ms && w < until) out.emplace_back(w, a);
      }
    }
    if (!it->status().ok()) return FromRocks(it->status(), "reading rollups");
    if (!late.empty()) {
      std::map<int64_t, Aggregate> merged(out.begin(), out.end());
      for (auto& [w, a] : Aggregates(late, resolution_ms, counter)) {
        if (w < first_window || w > end_ms) continue;
        auto [pos, inserted] = merged.try_emplace(w, a);
        if (!inserted) pos->second = Aggregate::Merge(pos->second, a);
      }
      out.assign(merged.begin(), merged.end());
    }
  }
  // Not rolled up yet: computed from raw samples, head included.
  if (end_ms >= until) {
    const int64_t from = std::max(first_window, until);
    const int64_t to = keys::WindowStart(end_ms, resolution_ms) + (resolution_ms - 1);
    std::vector<Sample> raw;
    auto samples = Read(id, from, to);
    for (; samples->Valid(); samples->Next()) raw.push_back(samples->sample());
    if (!samples->status().ok()) return samples->status();
    for (auto& w : Aggregates(raw, resolution_ms, counter)) out.push_back(std::move(w));
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> RocksSeriesStore::LabelNames(TenantId tenant, size_t limit, bool* truncated) {
  return DistinctPostingParts(keys::PostingPrefix(tenant, "", "").substr(0, 5), limit, truncated);  // 'P' tenant
}

absl::StatusOr<std::vector<std::string>> RocksSeriesStore::LabelValues(TenantId tenant, std::string_view name,
                                                                       size_t limit, bool* truncated) {
  std::string prefix = keys::PostingPrefix(tenant, "", "").substr(0, 5);
  keys::PutVarint(prefix, name.size());
  prefix.append(name);
  return DistinctPostingParts(prefix, limit, truncated);
}

// One seek per distinct string: all keys of a string start with prefix +
// lp(s), and the next string's keys sort after prefix + lp(s) + 0xFF x 10 (a
// length varint ends in a byte < 0x80; an id is 8 bytes). Keys order by
// length first, so with a limit the scan goes on to find the smallest
// `limit` strings in byte order, keeping at most `limit` in memory.
absl::StatusOr<std::vector<std::string>> RocksSeriesStore::DistinctPostingParts(const std::string& prefix, size_t limit,
                                                                                bool* truncated) {
  std::vector<std::string> out;
  bool more = false;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), index_));
  it->Seek(prefix);
  while (it->Valid() && it->key().starts_with(prefix)) {
    std::string_view rest = View(it->key()).substr(prefix.size());
    auto n = keys::GetVarint(&rest);
    if (!n || *n > rest.size()) return absl::DataLossError("corrupt posting key");
    std::string part(rest.substr(0, *n));
    std::string next = prefix;
    keys::PutVarint(next, part.size());
    next += part;
    next.append(10, '\xff');
    out.push_back(std::move(part));
    if (limit > 0 && out.size() > 2 * limit) {
      std::sort(out.begin(), out.end());
      out.resize(limit);
      more = true;
    }
    it->Seek(next);
  }
  if (!it->status().ok()) return FromRocks(it->status(), "listing labels");
  std::sort(out.begin(), out.end());
  if (limit > 0 && out.size() > limit) {
    out.resize(limit);
    more = true;
  }
  if (truncated) *truncated = more;
  return out;
}

absl::StatusOr<std::vector<SeriesId>> RocksSeriesStore::Postings(TenantId tenant, const std::string& name,
                                                                 const std::string& value) {
  std::vector<SeriesId> ids;
  std::string prefix = keys::PostingPrefix(tenant, name, value);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), index_));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    if (it->key().size() != prefix.size() + 8) continue;
    ids.push_back(keys::GetFixed64BE(View(it->key()).substr(prefix.size())));
  }
  if (!it->status().ok()) return FromRocks(it->status(), "reading postings");
  return ids;
}

}  // namespace sheaf::storage
