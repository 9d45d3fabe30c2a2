// Background maintenance: cutting heads into blocks and rolling up raw
// blocks. See store.h for the design and the locking.
#include "common/log.h"
#include "storage/store.h"

namespace sheaf::storage {

absl::Status RocksSeriesStore::CutHeads() {
  last_cut_ms_ = options_.now_ms();
  if (head_samples_ == 0 && next_log_seq_ == first_log_seq_) return absl::OkStatus();
  if (auto f = Fault("cut"); !f.ok()) return f;
  rocksdb::WriteBatch wb;
  {
    absl::ReaderMutexLock lock(&mu_);
    for (size_t i = 0; i < entries_.size(); ++i) {
      const Entry& e = entries_[i];
      if (!e.deleted && !e.head.empty()) WriteBlocks(wb, i + 1, e.type, e.head);
    }
  }
  wb.DeleteRange(log_, keys::LogKey(0), keys::LogKey(next_log_seq_));
  ForgetKnownBlocks();  // the heads join blocks
  {
    // Readers see the cut whole or not at all. The write is not synced:
    // it moves samples that are durable in the log already, in one atomic
    // batch, so losing it loses nothing (the log is replayed). And with
    // append_mu_ held no synced write can be ahead of it: readers never
    // wait for a disk sync on head_mu_.
    absl::ReaderMutexLock lock(&mu_);
    absl::MutexLock head_lock(&head_mu_);
    auto s = db_->Write(rocksdb::WriteOptions(), &wb);
    NoteWrite(s);
    if (!s.ok()) return FromRocks(s, "cutting heads into blocks");
    for (Entry& e : entries_) {
      if (e.head.empty()) continue;
      if (e.blocks_max != kMaxTsUnknown) e.blocks_max = std::max(e.blocks_max, e.head.back().timestamp_ms);
      e.head.clear();
      e.head.shrink_to_fit();
    }
    head_samples_ = 0;
  }
  first_log_seq_ = next_log_seq_;
  return absl::OkStatus();
}

absl::Status RocksSeriesStore::DropExpiredKeptRaw() {
  const int64_t now = options_.now_ms();
  std::vector<keys::KeptRange> ranges;
  {
    absl::MutexLock lock(&kept_mu_);
    ranges = kept_raw_;
  }
  if (std::erase_if(ranges, [now](const keys::KeptRange& r) { return r.until_ms <= now; }) == 0) {
    return absl::OkStatus();
  }
  rocksdb::WriteBatch wb;
  if (ranges.empty()) {
    wb.Delete(meta_, keys::KeptRawKey());
  } else {
    wb.Put(meta_, keys::KeptRawKey(), keys::EncodeKeptRanges(ranges));
  }
  auto s = db_->Write(rocksdb::WriteOptions(), &wb);
  NoteWrite(s);
  if (!s.ok()) return FromRocks(s, "forgetting kept raw ranges");
  absl::MutexLock lock(&kept_mu_);
  kept_raw_ = std::move(ranges);
  return absl::OkStatus();
}

absl::Status RocksSeriesStore::RollUp() {
  if (options_.rollups.empty()) return absl::OkStatus();
  // A roll-up that was interrupted (crash, error) is finished first, to the
  // target it recorded and from the series it got to: starting over at
  // series 1 towards a newer target would add its windows twice.
  std::string progress;
  auto s = db_->Get(rocksdb::ReadOptions(), meta_, keys::RollupProgressKey(), &progress);
  if (s.ok()) {
    if (progress.size() != 16) return absl::DataLossError("corrupt roll-up progress record");
    const int64_t target = keys::DecodeTime(progress);
    const SeriesId next = keys::GetFixed64BE(std::string_view(progress).substr(8));
    LogInfo("store: resuming the roll-up to {} ms at series {}", target, next);
    if (auto st = RollUpTo(target, next); !st.ok()) return st;
  } else if (!s.IsNotFound()) {
    return FromRocks(s, "reading roll-up progress");
  }
  const int64_t target = keys::WindowStart(options_.now_ms() - options_.downsample_after_ms, options_.block_window_ms);
  if (target <= rolled_up_until_) return absl::OkStatus();
  return RollUpTo(target, 1);
}

absl::Status RocksSeriesStore::RollUpTo(int64_t target, SeriesId next) {
  const int64_t from = rolled_up_until_;
  size_t count;
  {
    absl::ReaderMutexLock lock(&mu_);
    count = entries_.size();
  }
  if (target > from) {
    {
      absl::MutexLock append(&append_mu_);
      rollup_target_ = target;
      rollup_next_ = next;
      rollup_last_ = count;
    }
    const SeriesId chunk = options_.rollup_chunk_series;
    for (; next <= count; next += chunk) {
      // One chunk at a time under the append lock: appends wait for one
      // chunk at most, and a late sample of these series is either read
      // here or gets its rollup operands in WriteBlocks, never both.
      absl::MutexLock append(&append_mu_);
      rocksdb::WriteBatch wb;
      for (SeriesId id = next; id < next + chunk && id <= count; ++id) {
        MetricType type;
        {
          absl::ReaderMutexLock lock(&mu_);
          if (entries_[id - 1].deleted) continue;
          type = entries_[id - 1].type;
        }
        std::vector<Sample> raw;
        auto it = ReadImpl(id, from, target - 1, /*with_head=*/false);
        for (; it->Valid(); it->Next()) raw.push_back(it->sample());
        if (!it->status().ok()) return it->status();
        if (!raw.empty()) WriteRollups(wb, id, type, raw);
      }
      // The chunk and the progress in one atomic write: resumed after a
      // crash, the roll-up neither skips nor repeats a chunk.
      std::string p = keys::EncodeTime(target);
      keys::PutFixed64BE(p, next + chunk);
      wb.Put(meta_, keys::RollupProgressKey(), p);
      auto w = db_->Write(rocksdb::WriteOptions(), &wb);
      NoteWrite(w);
      if (!w.ok()) return FromRocks(w, "writing rollups");
      rollup_next_ = next + chunk;
      if (auto f = Fault("rollup_chunk"); !f.ok()) return f;
    }
  }
  absl::MutexLock append(&append_mu_);
  rocksdb::WriteBatch done;
  if (target > from) done.Put(meta_, keys::RolledUpUntilKey(), keys::EncodeTime(target));
  done.Delete(meta_, keys::RollupProgressKey());
  auto w = db_->Write(rocksdb::WriteOptions(), &done);
  NoteWrite(w);
  if (!w.ok()) return FromRocks(w, "writing the roll-up watermark");
  if (target > from) rolled_up_until_ = target;
  rollup_target_ = INT64_MIN;
  rollup_next_ = 0;
  rollup_last_ = 0;
  return absl::OkStatus();
}

}  // namespace sheaf::storage
