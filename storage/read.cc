// The read path: selection, sample and rollup reads, label listings.
#include <algorithm>
#include <bit>
#include <functional>
#include <map>

#include "storage/sample_codec.h"
#include "storage/store.h"

namespace sheaf::storage {
namespace {

// One series' blocks up to an upper key bound (decoded one at a time, kept
// to [start, end]), merged in time order with its head snapshot (already
// kept to [start, end]; a timestamp is never in both, and the head's would
// win).
class BlockSampleIterator : public SampleIterator {
 public:
  BlockSampleIterator(std::unique_ptr<rocksdb::Iterator> it, std::string upper, std::vector<Sample> head,
                      int64_t window_ms, int64_t start, int64_t end)
      : it_(std::move(it)),
        upper_(std::move(upper)),
        head_(std::move(head)),
        window_ms_(window_ms),
        start_(start),
        end_(end) {
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
      auto key = keys::DecodeSeriesTimeKey(View(it_->key()));
      const int64_t window_end = key ? AddClamped(key->time_ms, window_ms_) : INT64_MAX;
      it_->Next();
      // The block, and the head's samples before its window ends.
      size_t b = 0;
      for (;;) {
        const bool block_left = b < block_.size();
        const bool head_left = head_pos_ < head_.size() && head_[head_pos_].timestamp_ms < window_end;
        if (!block_left && !head_left) break;
        if (head_left && (!block_left || head_[head_pos_].timestamp_ms <= block_[b].timestamp_ms)) {
          if (block_left && block_[b].timestamp_ms == head_[head_pos_].timestamp_ms) ++b;
          buffer_.push_back(head_[head_pos_++]);
        } else if (const Sample& x = block_[b++]; x.timestamp_ms >= start_ && x.timestamp_ms <= end_) {
          buffer_.push_back(x);
        }
      }
    }
    if (it_ && (!it_->Valid() || View(it_->key()) >= upper_)) {
      if (!it_->status().ok()) status_ = FromRocks(it_->status(), "reading blocks");
      it_.reset();
    }
    if (buffer_.empty() && !it_ && head_pos_ < head_.size()) {
      buffer_.assign(head_.begin() + head_pos_, head_.end());
      head_pos_ = head_.size();
    }
  }

  std::unique_ptr<rocksdb::Iterator> it_;
  std::string upper_;
  std::vector<Sample> head_;
  size_t head_pos_ = 0;
  int64_t window_ms_, start_, end_;
  std::vector<Sample> block_, buffer_;
  size_t pos_ = 0;
  absl::Status status_;
};

// The first key after every posting key that starts with prefix + lp(part):
// a length varint ends in a byte < 0x80 and an id is 8 bytes, so only
// `part`'s own keys start with prefix + lp(part), and they all sort before
// it followed by ten 0xFF bytes.
std::string PastPart(const std::string& prefix, std::string_view part) {
  std::string next = prefix;
  keys::PutVarint(next, part.size());
  next += part;
  next.append(10, '\xff');
  return next;
}

// Prefix of the posting keys of every value of `name`: 'P' tenant lp(name).
std::string NamePrefix(TenantId tenant, std::string_view name) {
  std::string prefix = keys::PostingPrefix(tenant, "", "").substr(0, 5);  // 'P' tenant
  keys::PutVarint(prefix, name.size());
  prefix.append(name);
  return prefix;
}

// The value of label `name` in canonical labels (key_codec.h), "" if it
// has none; false if the bytes are corrupt.
bool LabelValue(std::string_view canonical, std::string_view name, std::string_view* value) {
  *value = {};
  while (!canonical.empty()) {
    std::string_view parts[2];
    for (std::string_view& part : parts) {
      auto n = keys::GetVarint(&canonical);
      if (!n || *n > canonical.size()) return false;
      part = canonical.substr(0, *n);
      canonical.remove_prefix(*n);
    }
    if (parts[0] == name) {
      *value = parts[1];
      return true;
    }
    if (parts[0] > name) return true;  // sorted by name: not there
  }
  return true;
}

// a ∩ b, both ascending. A list much longer than the other is searched
// (each search starting where the last ended) rather than walked.
std::vector<SeriesId> Intersect(const std::vector<SeriesId>& a, const std::vector<SeriesId>& b) {
  const auto& small = a.size() <= b.size() ? a : b;
  const auto& large = a.size() <= b.size() ? b : a;
  std::vector<SeriesId> out;
  if (large.size() / 16 > small.size()) {
    auto from = large.begin();
    for (SeriesId id : small) {
      from = std::lower_bound(from, large.end(), id);
      if (from == large.end()) break;
      if (*from == id) out.push_back(id);
    }
  } else {
    std::set_intersection(small.begin(), small.end(), large.begin(), large.end(), std::back_inserter(out));
  }
  return out;
}

// a \ b, both ascending.
std::vector<SeriesId> Subtract(const std::vector<SeriesId>& a, const std::vector<SeriesId>& b) {
  std::vector<SeriesId> out;
  std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(out));
  return out;
}

// Sorts `ids`, made of `runs` ascending runs with no id in two (a series
// has one value per label name). Ids are dense, so a bitmap over their
// range does it in linear time when the range is not much sparser.
void UnionOfRuns(std::vector<SeriesId>& ids, size_t runs) {
  if (runs <= 1 || ids.empty()) return;
  const auto [lo, hi] = std::minmax_element(ids.begin(), ids.end());
  const SeriesId first = *lo, span = *hi - *lo + 1;
  if (span / 64 > ids.size()) {
    std::sort(ids.begin(), ids.end());
    return;
  }
  std::vector<uint64_t> bits(span / 64 + 1);
  for (SeriesId id : ids) bits[(id - first) / 64] |= uint64_t{1} << ((id - first) % 64);
  ids.clear();
  for (size_t w = 0; w < bits.size(); ++w) {
    for (uint64_t word = bits[w]; word != 0; word &= word - 1) {
      ids.push_back(first + w * 64 + std::countr_zero(word));
    }
  }
}

// Reads the ids a positive matcher selects, a step (a key, or a seek) at a
// time on its own iterator: one name=value posting list, or the union of
// the lists of those values of a label that keep() accepts (keep runs once
// per distinct value; the keys of a rejected value are stepped over, or
// skipped with one seek when there are many).
class PostingCursor {
 public:
  // name=value: `prefix` is its PostingPrefix.
  PostingCursor(rocksdb::Iterator* it, std::string prefix) : it_(it), prefix_(std::move(prefix)) { it_->Seek(prefix_); }
  // The values of a label: `prefix` is its NamePrefix.
  PostingCursor(rocksdb::Iterator* it, std::string prefix, std::function<bool(std::string_view)> keep)
      : PostingCursor(it, std::move(prefix)) {
    keep_ = std::move(keep);
  }

  // Takes up to n more steps; false once the selection is complete (or
  // reading failed: status()).
  bool Step(size_t n) {
    for (; n > 0 && status_.ok() && it_->Valid() && it_->key().starts_with(prefix_); --n) {
      std::string_view rest = View(it_->key()).substr(prefix_.size());
      if (!keep_) {
        if (rest.size() == 8) ids_.push_back(keys::GetFixed64BE(rest));
        it_->Next();
        continue;
      }
      auto len = keys::GetVarint(&rest);
      if (!len || *len + 8 != rest.size()) {
        status_ = absl::DataLossError("corrupt posting key");
        break;
      }
      const std::string_view value = rest.substr(0, *len);
      if (verdicts_.empty() || value != verdicts_.back().first) {
        verdicts_.emplace_back(value, keep_(value));
        runs_ += verdicts_.back().second;
        skipped_ = 0;
      }
      if (verdicts_.back().second) {
        ids_.push_back(keys::GetFixed64BE(rest.substr(*len)));
        it_->Next();
      } else if (++skipped_ < 8) {
        it_->Next();  // a value with few series: cheaper than a seek
      } else {
        it_->Seek(PastPart(prefix_, value));  // the rest of its series at once
      }
    }
    if (status_.ok() && !it_->status().ok()) status_ = FromRocks(it_->status(), "reading postings");
    return n == 0 && status_.ok() && it_->Valid() && it_->key().starts_with(prefix_);
  }
  absl::Status status() const { return status_; }
  // Steps per turn when lists are read in turns: a scan's steps (with
  // matcher runs and seeks) cost about twice a list's.
  size_t turn() const { return keep_ ? 32 : 64; }
  // What keep() said of each value so far, in key order.
  std::vector<std::pair<std::string, bool>>& verdicts() { return verdicts_; }
  // The whole selection, ascending.
  absl::StatusOr<std::vector<SeriesId>> Rest() {
    while (Step(SIZE_MAX)) {
    }
    if (!status_.ok()) return status_;
    UnionOfRuns(ids_, runs_);
    return std::move(ids_);
  }

 private:
  std::unique_ptr<rocksdb::Iterator> it_;
  std::string prefix_;
  std::function<bool(std::string_view)> keep_;  // empty: one value's list
  std::vector<SeriesId> ids_;
  absl::Status status_;
  std::vector<std::pair<std::string, bool>> verdicts_;
  size_t runs_ = 0;  // values kept
  int skipped_ = 0;  // keys of the last value, rejected, stepped over
};

}  // namespace

absl::StatusOr<std::vector<SeriesId>> RocksSeriesStore::Select(TenantId tenant, const std::vector<Matcher>& matchers) {
  // As Prometheus' PostingsForMatchers. A matcher that rejects the empty
  // value ("positive") selects the union of the postings of the values it
  // accepts; these lists are intersected, smallest first. A matcher that
  // accepts it (a!="x", a=~"x|", a="") also selects the series without the
  // label, so the postings of the values it rejects are subtracted instead
  // (from every series of the tenant if no matcher is positive). A matcher
  // runs once per distinct value of its label, never per series.
  //
  // The positive lists are read in turns, a few keys each, so the smallest
  // is whole before much of the others is read. Once the candidates are few
  // (kFewCandidates), the matchers left are checked on the candidates'
  // labels in memory (still once per distinct value) instead of reading
  // their lists: `node_cpu{host="a"}` should not read every CPU series of
  // the fleet, nor `{job="x", host=~"web-.*"}` seek to every host.
  std::vector<const Matcher*> positive, negative;
  for (const Matcher& m : matchers) (m.MatchesEmpty() ? negative : positive).push_back(&m);
  const uint64_t deletions = delete_generation_;
  std::optional<std::vector<SeriesId>> candidates;
  size_t series_count;
  {
    absl::ReaderMutexLock lock(&mu_);
    series_count = entries_.size();
    if (positive.empty()) {
      candidates.emplace();
      for (SeriesId id = 1; id <= entries_.size(); ++id) {
        if (!entries_[id - 1].deleted && entries_[id - 1].tenant == tenant) candidates->push_back(id);
      }
    }
  }
  auto few = [&] { return candidates && candidates->size() * kFewCandidates <= series_count; };
  // Every list from one snapshot, taken after the series above were
  // listed (their postings are in it), so the lists agree with each other
  // about series created meanwhile.
  rocksdb::ManagedSnapshot snapshot(db_.get());
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot.snapshot();
  absl::Status fault;  // from the test hook, counting runs
  auto run = [&](const Matcher& m, std::string_view value) {
    if (fault.ok()) fault = Fault("select_match");
    return m.Matches(value);
  };
  // The ids m selects (want: Matches) or, for a negative one, rejects
  // (want: !Matches).
  auto cursor = [&](const Matcher& m, bool want) {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, index_));
    if (m.op() == (want ? Matcher::Op::kEqual : Matcher::Op::kNotEqual)) {
      return PostingCursor(it.release(), keys::PostingPrefix(tenant, m.name(), m.value()));
    }
    return PostingCursor(it.release(), NamePrefix(tenant, m.name()),
                         [&run, matcher = &m, want](std::string_view v) { return run(*matcher, v) == want; });
  };
  // What each matcher checked in memory said of each value (with what a
  // scan given up for it had found), so it runs once per distinct value.
  std::map<const Matcher*, std::map<std::string, bool, std::less<>>> verdicts;
  std::vector<const Matcher*> in_memory;  // checked on the candidates' labels
  std::vector<std::pair<const Matcher*, PostingCursor>> reading;
  for (const Matcher* m : positive) reading.emplace_back(m, cursor(*m, true));
  while (!reading.empty()) {
    if (few()) {
      for (auto& [m, c] : reading) {
        in_memory.push_back(m);
        for (auto& [value, kept] : c.verdicts()) verdicts[m].emplace(std::move(value), kept);  // positive: Matches
      }
      break;
    }
    // In turns until one list is whole: the smallest of those left.
    size_t done = reading.size();
    while (done == reading.size()) {
      for (size_t i = 0; i < reading.size() && done == reading.size(); ++i) {
        if (!reading[i].second.Step(reading[i].second.turn())) done = i;
      }
    }
    auto ids = reading[done].second.Rest();
    if (!fault.ok()) return fault;
    if (!ids.ok()) return ids.status();
    candidates = candidates ? Intersect(*candidates, *ids) : *std::move(ids);
    if (candidates->empty()) return std::vector<SeriesId>{};
    reading.erase(reading.begin() + done);
  }
  if (few()) {
    in_memory.insert(in_memory.end(), negative.begin(), negative.end());
  } else {
    for (const Matcher* m : negative) {
      if (candidates->empty()) break;
      auto ids = cursor(*m, false).Rest();
      if (!fault.ok()) return fault;
      if (!ids.ok()) return ids.status();
      candidates = Subtract(*candidates, *ids);
    }
  }
  absl::ReaderMutexLock lock(&mu_);
  // Postings of a series not yet published (creation in progress) or being
  // deleted may be in the snapshot: live series of the tenant only.
  std::erase_if(*candidates, [&](SeriesId id) ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return id == 0 || id > entries_.size() || entries_[id - 1].deleted || entries_[id - 1].tenant != tenant;
  });
  // The matchers left, on each candidate's value of their label (a missing
  // label is "").
  std::erase_if(*candidates, [&](SeriesId id) ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    for (const Matcher* m : in_memory) {
      std::string_view value;
      if (!LabelValue(entries_[id - 1].canonical, m->name(), &value)) return true;  // corrupt
      auto& seen = verdicts[m];
      auto it = seen.find(value);
      if (it == seen.end()) it = seen.emplace(std::string(value), run(*m, value)).first;
      if (!it->second) return true;
    }
    return false;
  });
  if (!fault.ok()) return fault;
  // A series listed above whose deletion wrote before the snapshot has no
  // postings left, so it seems to lack every label: only then (rare) is
  // each result checked against its labels.
  if (positive.empty() && (deletions % 2 == 1 || deletions != delete_generation_)) {
    std::erase_if(*candidates, [&](SeriesId id) ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      auto labels = keys::DecodeCanonicalLabels(entries_[id - 1].canonical);
      return !labels || !model::MatchesAll(matchers, *labels);
    });
  }
  return *std::move(candidates);
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
  return std::make_unique<BlockSampleIterator>(std::move(it), std::move(upper), std::move(head),
                                               options_.block_window_ms, start_ms, end_ms);
}

absl::Status RocksSeriesStore::ReadMany(std::span<const SeriesId> ids, int64_t start_ms, int64_t end_ms,
                                        std::vector<std::vector<Sample>>* out) {
  // The caller's vectors keep their memory: a reader that passes the same
  // ones again decodes without allocating.
  // Each series' head part goes straight into its output vector; blocks,
  // read after, are merged in only where a series has both.
  out->resize(ids.size());
  std::unique_ptr<rocksdb::Iterator> it;
  {
    absl::ReaderMutexLock lock(&mu_);
    // Heads and the blocks' snapshot together, as in ReadImpl.
    absl::MutexLock head_lock(&head_mu_);
    for (size_t i = 0; i < ids.size(); ++i) {
      std::vector<Sample>& dest = (*out)[i];
      dest.clear();
      if (ids[i] < 1 || ids[i] > entries_.size()) continue;
      const std::vector<Sample>& head = entries_[ids[i] - 1].head;  // in time order
      auto lo = std::lower_bound(head.begin(), head.end(), start_ms,
                                 [](const Sample& x, int64_t t) { return x.timestamp_ms < t; });
      auto hi = std::upper_bound(lo, head.end(), end_ms,
                                 [](int64_t t, const Sample& x) { return t < x.timestamp_ms; });
      dest.assign(lo, hi);
    }
    it.reset(db_->NewIterator(rocksdb::ReadOptions(), samples_));
  }
  // In key order (ascending ids): the iterator then mostly moves forward,
  // and a few Next()s past other series' blocks cost less than a Seek.
  std::vector<size_t> order(ids.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ids[a] < ids[b]; });
  constexpr int kMaxSteps = 16;
  SeriesId previous = 0;
  std::vector<Sample> blocks, merged;
  for (size_t i : order) {
    const SeriesId id = ids[i];
    const std::string from = keys::SeriesTimeKey(id, keys::WindowStart(start_ms, options_.block_window_ms));
    const std::string upper =
        end_ms == INT64_MAX ? keys::SeriesTimeKey(id + 1, INT64_MIN) : keys::SeriesTimeKey(id, end_ms + 1);
    blocks.clear();
    int steps = 0;
    while (it->Valid() && View(it->key()) < from && steps < kMaxSteps) {
      it->Next();
      ++steps;
    }
    // Past `from` is fine: the iterator stands on the first key after the
    // previous (smaller) id's range, so nothing of this id was skipped.
    if (!it->Valid() || View(it->key()) < from || id == previous) it->Seek(from);
    previous = id;
    for (; it->Valid() && View(it->key()) < upper; it->Next()) {
      const size_t before = blocks.size();
      if (auto s = DecodeBlockAppend(View(it->value()), &blocks); !s.ok()) {
        return absl::DataLossError("corrupt block: " + std::string(s.message()));
      }
      // Only the block's first and last windows can reach out of range.
      auto outside = [&](const Sample& x) { return x.timestamp_ms < start_ms || x.timestamp_ms > end_ms; };
      if (before < blocks.size() && (outside(blocks[before]) || outside(blocks.back()))) {
        blocks.erase(std::remove_if(blocks.begin() + static_cast<ptrdiff_t>(before), blocks.end(), outside),
                     blocks.end());
      }
    }
    if (!it->status().ok()) return FromRocks(it->status(), "reading blocks");
    // Blocks are in time order, and so is the head; a timestamp in both
    // takes the head's value (the newer write).
    std::vector<Sample>& dest = (*out)[i];
    if (blocks.empty()) continue;  // dest holds the head's part, if any
    if (dest.empty()) {
      dest.swap(blocks);  // blocks takes dest's (empty) memory for the next series
      continue;
    }
    const std::vector<Sample>& head = dest;
    merged.clear();
    merged.reserve(blocks.size() + head.size());
    size_t b = 0, h = 0;
    while (b < blocks.size() || h < head.size()) {
      if (h < head.size() && (b == blocks.size() || head[h].timestamp_ms <= blocks[b].timestamp_ms)) {
        if (b < blocks.size() && blocks[b].timestamp_ms == head[h].timestamp_ms) ++b;
        merged.push_back(head[h++]);
      } else {
        merged.push_back(blocks[b++]);
      }
    }
    dest.swap(merged);
  }
  return absl::OkStatus();
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
  return DistinctPostingParts(NamePrefix(tenant, name), limit, truncated);
}

// One seek per distinct string (PastPart). Keys order by length first, so
// with a limit the scan goes on to find the smallest `limit` strings in byte
// order, keeping at most `limit` in memory.
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
    it->Seek(PastPart(prefix, part));
    out.push_back(std::move(part));
    if (limit > 0 && out.size() > 2 * limit) {
      std::sort(out.begin(), out.end());
      out.resize(limit);
      more = true;
    }
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

}  // namespace sheaf::storage
