// Opening and closing the store, statistics, flush and compaction, and the
// background maintenance thread. See store.h for the design.
#include "storage/store.h"

#include <fmt/format.h>
#include <rocksdb/sst_file_manager.h>
#include <rocksdb/table.h>
#include <rocksdb/utilities/checkpoint.h>
#include <rocksdb/write_buffer_manager.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <filesystem>

#include "common/clock.h"
#include "common/log.h"
#include "storage/rocksdb_operators.h"

namespace sheaf::storage {

absl::Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return absl::OkStatus();
  std::string msg = std::string(what) + ": " + s.ToString();
  if (s.IsNotFound()) return absl::NotFoundError(msg);
  if (s.IsCorruption()) return absl::DataLossError(msg);
  if (s.IsInvalidArgument()) return absl::InvalidArgumentError(msg);
  if (s.IsManualCompactionPaused()) {
    return absl::CancelledError(std::string(what) + ": cancelled (shutting down)");
  }
  // A full disk or an I/O error is not the caller's fault and may pass:
  // UNAVAILABLE tells clients to retry, and the message names the disk.
  if (s.IsNoSpace()) {
    return absl::UnavailableError(msg +
                                  " (the disk holding the data directory is full; free space and "
                                  "sheafd resumes writing by itself)");
  }
  if (s.IsIOError() || s.IsBusy() || s.IsTimedOut() || s.IsTryAgain()) return absl::UnavailableError(msg);
  return absl::InternalError(msg);
}

void StoreEventListener::OnStallConditionsChanged(const rocksdb::WriteStallInfo& info) {
  if (info.condition.cur != rocksdb::WriteStallCondition::kNormal) ++stalls;
}

void StoreEventListener::OnBackgroundError(rocksdb::BackgroundErrorReason reason, rocksdb::Status* error) {
  LogError("store: RocksDB background error ({}): {}; writes are refused until it recovers", static_cast<int>(reason),
           error->ToString());
}

void StoreEventListener::OnErrorRecoveryEnd(const rocksdb::BackgroundErrorRecoveryInfo& info) {
  if (info.new_bg_error.ok()) {
    LogInfo("store: recovered from \"{}\"; writes resume", info.old_bg_error.ToString());
  } else {
    LogError("store: could not recover from \"{}\": {}", info.old_bg_error.ToString(), info.new_bg_error.ToString());
  }
}

RollupWindows Aggregates(const std::vector<Sample>& samples, int64_t res, bool counter) {
  RollupWindows windows;
  size_t i = 0;
  while (i < samples.size()) {
    int64_t w = keys::WindowStart(samples[i].timestamp_ms, res);
    size_t j = i;
    while (j < samples.size() && samples[j].timestamp_ms < w + res) ++j;
    windows.emplace_back(w, Aggregate::Of(std::span<const Sample>(&samples[i], j - i), counter));
    i = j;
  }
  return windows;
}

RocksSeriesStore::~RocksSeriesStore() {
  if (bg_thread_.joinable()) {
    {
      absl::MutexLock lock(&bg_mu_);
      bg_stop_ = true;
    }
    bg_cv_.SignalAll();
    bg_thread_.join();
  }
  if (!db_) return;  // Open failed
  // Handles must go before the DB (RocksDB asserts on it).
  for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h);
  db_->Close().PermitUncheckedError();
}

absl::Status RocksSeriesStore::Init(const StoreOptions& options) {
  options_ = options;
  if (!options_.now_ms) options_.now_ms = WallClockMs;
  if (options_.block_window_ms <= 0 || options_.out_of_order_window_ms < 0) {
    return absl::InvalidArgumentError("block window must be > 0 and out-of-order window >= 0");
  }
  if (options_.rollup_chunk_series == 0) options_.rollup_chunk_series = 1;
  // Ingestion pauses below min_free_disk_bytes, but the memtables it filled
  // are still flushed: the flush must fit in what is kept free. A full disk
  // under RocksDB 7.8.3 (Debian) aborts sheafd on an assertion in the
  // WAL/SST writer's error path (tests/e2e/disk_full_test.py's notes), so
  // this is refused, not warned about.
  if (options_.min_free_disk_bytes < options_.write_buffer_bytes) {
    return absl::InvalidArgumentError(
        "--min-free-disk-bytes (" + std::to_string(options_.min_free_disk_bytes) +
        ") is below --write-buffer-bytes (" + std::to_string(options_.write_buffer_bytes) +
        "): a flush of the memtables could meet a full disk, which RocksDB does not survive; raise "
        "--min-free-disk-bytes to at least --write-buffer-bytes");
  }
  for (size_t i = 0; i < options_.rollups.size(); ++i) {
    const RollupSpec& r = options_.rollups[i];
    // Roll-up slabs are whole blocks; a window must not straddle two.
    if (r.resolution_ms <= 0 || options_.block_window_ms % r.resolution_ms != 0) {
      return absl::InvalidArgumentError("rollup resolution " + std::to_string(r.resolution_ms) +
                                        " ms must divide the block window of " +
                                        std::to_string(options_.block_window_ms) + " ms");
    }
    for (size_t j = 0; j < i; ++j) {
      if (options_.rollups[j].resolution_ms == r.resolution_ms) {
        return absl::InvalidArgumentError("rollup resolution " + std::to_string(r.resolution_ms) +
                                          " ms is configured twice");
      }
    }
  }
  std::error_code ec;
  std::filesystem::create_directories(options.path, ec);
  if (ec) {
    return absl::FailedPreconditionError("cannot create data directory " + options.path + ": " + ec.message());
  }

  rocksdb::Options db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.max_background_jobs = 2;
  db_options.write_buffer_manager = std::make_shared<rocksdb::WriteBufferManager>(options.write_buffer_bytes);
  // After a "disk full" error RocksDB stops writes; it retries on its own
  // and resumes once space is back (SstFileManager polls free space).
  db_options.max_bgerror_resume_count = INT_MAX;
  db_options.bgerror_resume_retry_interval = 1'000'000;  // 1 s
  db_options.sst_file_manager.reset(rocksdb::NewSstFileManager(rocksdb::Env::Default()));
  // Opening replays the write-ahead log into memtables without flushing
  // them to new files first: sheafd can start (and serve reads) on a disk
  // too full to take a flush.
  db_options.avoid_flush_during_recovery = true;
  events_ = std::make_shared<StoreEventListener>();
  db_options.listeners.push_back(events_);
  block_cache_ = rocksdb::NewLRUCache(options.block_cache_bytes);
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = block_cache_;
  auto base = [&] {
    rocksdb::ColumnFamilyOptions cf;
    cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
    cf.compression = rocksdb::kLZ4Compression;
    cf.bottommost_compression = rocksdb::kZSTD;
    return cf;
  };
  std::vector<rocksdb::ColumnFamilyDescriptor> families = {
      {rocksdb::kDefaultColumnFamilyName, base()},
      {keys::kIndexFamily, base()},
  };
  rocksdb::ColumnFamilyOptions samples_cf = base();
  samples_cf.merge_operator = NewBlockMergeOperator();
  // Raw data goes only once it is rolled up (or if there are no rollups).
  // Backfilled raw data is kept a while longer (KeepRaw).
  // NOTE: reads rolled_up_until_ and kept_raw_, loaded before any compaction can start.
  samples_cf.compaction_filter_factory = NewRetentionFilterFactory(options_.block_window_ms, [this] {
    const int64_t now = options_.now_ms();
    int64_t cutoff = now - options_.raw_retention_ms;
    if (!options_.rollups.empty()) cutoff = std::min(cutoff, rolled_up_until_.load());
    return RetentionCutoff{cutoff, KeptRawRanges(now)};
  });
  families.push_back({keys::kSamplesFamily, samples_cf});
  rocksdb::ColumnFamilyOptions log_cf = base();
  log_cf.compression = rocksdb::kNoCompression;  // short-lived: deleted at the next head cut
  families.push_back({keys::kLogFamily, log_cf});
  for (const RollupSpec& r : options_.rollups) {
    rocksdb::ColumnFamilyOptions cf = base();
    cf.merge_operator = NewRollupMergeOperator();
    const int64_t retention = r.retention_ms;
    cf.compaction_filter_factory = NewRetentionFilterFactory(RollupBlockMs(r.resolution_ms), [this, retention] {
      return RetentionCutoff{options_.now_ms() - retention, {}};
    });
    families.push_back({keys::RollupFamily(r.resolution_ms), cf});
  }
  rocksdb::DB* db = nullptr;
  auto s = rocksdb::DB::Open(rocksdb::DBOptions(db_options), options.path, families, &handles_, &db);
  if (!s.ok()) {
    std::string hint = s.IsIOError() && s.ToString().find("lock") != std::string::npos
                           ? " (is another sheafd using this data directory?)"
                           : "";
    if (s.IsNoSpace()) hint = " (the disk is full: free some space and start sheafd again)";
    return FromRocks(s, "opening store at " + options.path + hint);
  }
  db_.reset(db);
  meta_ = handles_[0];
  index_ = handles_[1];
  samples_ = handles_[2];
  log_ = handles_[3];
  rollups_.assign(handles_.begin() + 4, handles_.end());
  last_cut_ms_ = options_.now_ms();
  if (auto st = Load(); !st.ok()) return st;
  if (auto st = LoadTenants(); !st.ok()) return st;
  if (auto st = ReplayLog(); !st.ok()) return st;
  bg_thread_ = std::thread([this] { BackgroundLoop(); });
  return absl::OkStatus();
}

absl::Status RocksSeriesStore::CheckDiskSpace() {
  const int64_t now = MonotonicMs();
  const int64_t checked = disk_checked_ms_;
  if (checked == kNeverChecked || now - checked >= 500) {
    struct statvfs fs;
    if (statvfs(options_.path.c_str(), &fs) == 0) {
      free_disk_bytes_ = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
      total_disk_bytes_ = static_cast<uint64_t>(fs.f_blocks) * fs.f_frsize;
    }
    disk_checked_ms_ = now;
  }
  const uint64_t free = free_disk_bytes_;
  if (free >= options_.min_free_disk_bytes) return absl::OkStatus();
  return absl::UnavailableError("the data disk is full: the disk holding " + options_.path + " has " +
                                std::to_string(free >> 20) +
                                " MiB free, less than --min-free-disk-bytes (" +
                                std::to_string(options_.min_free_disk_bytes >> 20) +
                                " MiB): ingestion is paused and resumes by itself once space is freed; "
                                "reads keep working");
}

uint64_t RocksSeriesStore::AgentSequence(TenantId tenant, std::string_view agent_id) {
  // An error reading it (logged) reads as 0: an acknowledgement too low
  // only makes the agent re-send, and its re-sent batches are duplicates.
  auto set = StoredAgentSet(keys::AgentSequenceKey(tenant, agent_id));
  if (!set.ok()) {
    static LogRateLimiter limiter(5, std::chrono::minutes(1));
    LogLimited(limiter, LogLevel::kWarn, "agent \"{}\": acknowledging sequence 0: {}", agent_id,
               std::string(set.status().message()));
  }
  return set.ok() ? set->Max() : 0;
}

bool RocksSeriesStore::AgentSequenceApplied(TenantId tenant, std::string_view agent_id, uint64_t sequence,
                                            uint64_t floor) {
  // On an error, "not applied": Append checks again and fails with it.
  auto set = StoredAgentSet(keys::AgentSequenceKey(tenant, agent_id));
  if (!set.ok()) return false;
  CloseBelowFloor(*set, sequence, floor);
  return set->Contains(sequence);
}

absl::StatusOr<SequenceSet> RocksSeriesStore::StoredAgentSet(const std::string& key, bool* found) {
  {
    absl::MutexLock lock(&agents_mu_);
    if (auto it = agent_sets_.find(key); it != agent_sets_.end()) {
      agent_lru_.splice(agent_lru_.begin(), agent_lru_, it->second);
      if (found != nullptr) *found = true;
      return it->second->set;
    }
    ++agent_set_loads_;
  }
  // Read without agents_mu_: other agents' lookups need not wait for the
  // disk. The set read is not cached here (see CacheAgentSet).
  std::string value;
  auto s = db_->Get(rocksdb::ReadOptions(), meta_, key, &value);
  if (auto fault = Fault("agent_set_read"); !fault.ok()) return fault;
  if (found != nullptr) *found = s.ok();
  if (s.IsNotFound()) return SequenceSet();
  if (!s.ok()) return FromRocks(s, "reading an agent's applied batch sequences");
  auto set = SequenceSet::Decode(value);
  if (!set) return CorruptAgentSet(key);
  return *std::move(set);
}

absl::Status RocksSeriesStore::CorruptAgentSet(std::string_view key) const {
  return absl::DataLossError(fmt::format("corrupt applied-sequence record of agent \"{}\" in {}: its batches cannot "
                                         "be checked for duplicates; restore the data directory from a checkpoint",
                                         key.substr(std::min<size_t>(5, key.size())), options_.path));
}

void RocksSeriesStore::CacheAgentSet(const std::string& key, SequenceSet set, bool new_agent) {
  absl::MutexLock lock(&agents_mu_);
  if (new_agent) ++agents_;
  if (auto it = agent_sets_.find(key); it != agent_sets_.end()) {
    it->second->set = std::move(set);
    agent_lru_.splice(agent_lru_.begin(), agent_lru_, it->second);
    return;
  }
  agent_lru_.push_front(CachedAgentSet{key, std::move(set)});
  agent_sets_.emplace(agent_lru_.front().key, agent_lru_.begin());
  while (agent_lru_.size() > options_.max_cached_agent_sets) {
    agent_sets_.erase(agent_lru_.back().key);
    agent_lru_.pop_back();
  }
}

std::vector<std::pair<int64_t, int64_t>> RocksSeriesStore::KeptRawRanges(int64_t now) {
  std::vector<std::pair<int64_t, int64_t>> out;
  absl::MutexLock lock(&kept_mu_);
  for (const keys::KeptRange& r : kept_raw_) {
    if (r.until_ms > now) out.emplace_back(r.from_ms, r.to_ms);
  }
  return out;
}

std::vector<int64_t> RocksSeriesStore::RollupResolutions() const {
  std::vector<int64_t> out;
  for (const auto& r : options_.rollups) out.push_back(r.resolution_ms);
  return out;
}

StoreStats RocksSeriesStore::Stats() {
  StoreStats st;
  {
    absl::ReaderMutexLock lock(&mu_);
    st.series = by_labels_.size();  // live series only: deleted ones leave it
  }
  st.samples = sample_count_;
  st.head_samples = head_samples_;
  {
    absl::MutexLock lock(&agents_mu_);
    st.agents = agents_;
    st.agent_sets_cached = agent_lru_.size();
    st.agent_set_loads = agent_set_loads_;
  }
  for (auto* h : handles_) {
    uint64_t v = 0;
    if (db_->GetIntProperty(h, "rocksdb.live-sst-files-size", &v)) {
      st.family_disk_bytes[h->GetName() == rocksdb::kDefaultColumnFamilyName ? "meta" : h->GetName()] = v;
      st.disk_bytes += v;
    }
    if (db_->GetIntProperty(h, "rocksdb.estimate-pending-compaction-bytes", &v)) st.pending_compaction_bytes += v;
    if (db_->GetIntProperty(h, "rocksdb.cur-size-all-mem-tables", &v)) st.memtable_bytes += v;
  }
  rocksdb::VectorLogPtr wal;
  if (db_->GetSortedWalFiles(wal).ok()) {
    for (const auto& f : wal) st.wal_bytes += f->SizeFileBytes();
  }
  st.disk_bytes += st.wal_bytes;
  st.write_stalls = events_->stalls;
  st.block_cache_bytes = block_cache_->GetUsage();
  st.rolled_up_until_ms = rolled_up_until_;
  {
    absl::MutexLock lock(&write_error_mu_);
    st.writable = write_error_.ok();
    st.write_error = write_error_.ok() ? "" : std::string(write_error_.message());
  }
  if (auto disk = CheckDiskSpace(); !disk.ok()) {
    st.writable = false;
    st.write_error = std::string(disk.message());
  }
  st.disk_free_bytes = free_disk_bytes_ == UINT64_MAX ? 0 : free_disk_bytes_.load();
  st.disk_total_bytes = total_disk_bytes_;
  absl::MutexLock lock(&bg_mu_);
  st.cuts = cuts_;
  st.rollups = rollup_runs_;
  st.maintenance_failures = maintenance_failures_;
  st.last_cut_seconds = last_cut_seconds_;
  st.last_rollup_seconds = last_rollup_seconds_;
  st.last_maintenance_error = bg_error_.ok() ? "" : std::string(bg_error_.message());
  return st;
}

absl::Status RocksSeriesStore::Flush() {
  if (auto s = Maintain(/*force=*/true); !s.ok()) return s;
  rocksdb::FlushOptions fo;
  fo.wait = true;
  return FromRocks(db_->Flush(fo, handles_), "flushing memtables");
}

absl::Status RocksSeriesStore::Compact() {
  if (auto s = Flush(); !s.ok()) return s;
  if (compaction_disabled_.exchange(false)) db_->EnableManualCompaction();  // after a CancelCompaction
  for (auto* h : handles_) {
    if (auto f = Fault("compact"); !f.ok()) return f;
    // A cancel between two families (RocksDB stops one in progress itself).
    if (compaction_disabled_) return absl::CancelledError("compacting: cancelled (shutting down)");
    rocksdb::CompactRangeOptions co;
    co.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
    auto s = db_->CompactRange(co, h, nullptr, nullptr);
    if (!s.ok()) return FromRocks(s, "compacting");
  }
  return absl::OkStatus();
}

void RocksSeriesStore::CancelCompaction() {
  // Disable/Enable calls must pair up (RocksDB counts them).
  if (!compaction_disabled_.exchange(true)) db_->DisableManualCompaction();
}

absl::Status RocksSeriesStore::Checkpoint(const std::string& dir) {
  std::error_code ec;
  if (std::filesystem::exists(dir, ec)) {
    return absl::AlreadyExistsError("snapshot directory " + dir + " already exists; choose another name");
  }
  if (auto f = Fault("checkpoint"); !f.ok()) return f;
  rocksdb::Checkpoint* raw = nullptr;
  if (auto s = rocksdb::Checkpoint::Create(db_.get(), &raw); !s.ok()) return FromRocks(s, "starting a snapshot");
  std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
  // log_size_for_flush 0: memtables are flushed first, so the snapshot is
  // mostly table files (hard links) and little log to replay on open; the
  // log that is copied keeps it consistent across column families.
  auto s = checkpoint->CreateCheckpoint(dir, /*log_size_for_flush=*/0);
  if (!s.ok()) {
    std::filesystem::remove_all(dir, ec);  // RocksDB leaves a partial "<dir>.tmp" or nothing; never a half snapshot
    std::filesystem::remove_all(dir + ".tmp", ec);
    return FromRocks(s, "writing a snapshot to " + dir);
  }
  return absl::OkStatus();
}

void RocksSeriesStore::ScheduleMaintenance() {
  absl::MutexLock lock(&bg_mu_);
  bg_wake_ = true;
  bg_cv_.Signal();
}

void RocksSeriesStore::BackgroundLoop() {
  for (;;) {
    {
      absl::MutexLock lock(&bg_mu_);
      const absl::Time deadline = absl::Now() + absl::Milliseconds(options_.maintenance_interval_ms);
      while (!bg_stop_ && !bg_wake_) {
        if (bg_cv_.WaitWithDeadline(&bg_mu_, deadline)) break;  // timed out
      }
      if (bg_stop_) return;
      bg_wake_ = false;
    }
    // Errors are recorded and logged by Maintain; the next round retries.
    Maintain(/*force=*/false).IgnoreError();
  }
}

absl::Status RocksSeriesStore::Maintain(bool force) {
  absl::MutexLock maintenance(&maintenance_mu_);
  // After a write error (disk full, I/O error) RocksDB refuses writes until
  // it recovers; with space back, ask it to now rather than wait.
  bool write_failed;
  {
    absl::MutexLock lock(&write_error_mu_);
    write_failed = !write_error_.ok();
  }
  if (write_failed && CheckDiskSpace().ok()) {
    if (auto r = db_->Resume(); r.ok()) {
      LogInfo("store: writes resume (RocksDB recovered from the earlier write error)");
      NoteWrite(rocksdb::Status::OK());
    } else {
      LogDebug("store: RocksDB Resume: {} (retried each maintenance round)", r.ToString());
    }
  }
  // Cuts and roll-ups write too: they wait for disk space like appends
  // (the heads stay in memory and the log; backpressure bounds them).
  if (auto disk = CheckDiskSpace(); !disk.ok()) {
    absl::MutexLock lock(&bg_mu_);
    if (bg_error_.ToString() != disk.ToString()) LogError("store maintenance paused: {}", std::string(disk.message()));
    bg_error_ = disk;
    bg_cv_.SignalAll();
    return disk;
  }
  const bool cut_due = force || head_samples_ >= options_.max_head_samples ||
                       options_.now_ms() - last_cut_ms_ >= options_.head_flush_interval_ms;
  absl::Status status;
  if (cut_due) {
    auto started = std::chrono::steady_clock::now();
    {
      absl::MutexLock append(&append_mu_);
      status = CutHeads();
      if (status.ok()) status = DropExpiredKeptRaw();
    }
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    absl::MutexLock lock(&bg_mu_);
    if (status.ok()) {
      ++cuts_;
      last_cut_seconds_ = seconds;
    }
    bg_cv_.SignalAll();  // appends waiting for room in the heads
  }
  if (status.ok()) {
    auto started = std::chrono::steady_clock::now();
    int64_t before = rolled_up_until_;
    status = RollUp();
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    if (status.ok() && rolled_up_until_ != before) {
      absl::MutexLock lock(&bg_mu_);
      ++rollup_runs_;
      last_rollup_seconds_ = seconds;
    }
  }
  absl::MutexLock lock(&bg_mu_);
  if (!status.ok()) {
    ++maintenance_failures_;
    // Logged when the error changes, not every round while it persists.
    if (bg_error_.ToString() != status.ToString()) {
      LogError("store maintenance failed (heads are kept in memory and the log; retrying): {}", status.ToString());
    }
    bg_error_ = status;
    bg_cv_.SignalAll();
  } else if (!bg_error_.ok()) {
    LogInfo("store maintenance works again after: {}", bg_error_.ToString());
    bg_error_ = absl::OkStatus();
  }
  return status;
}

}  // namespace sheaf::storage

namespace sheaf::storage {

absl::StatusOr<std::unique_ptr<SeriesStore>> SeriesStore::Open(const StoreOptions& options) {
  auto store = std::make_unique<RocksSeriesStore>();
  if (auto s = store->Init(options); !s.ok()) return s;
  return store;
}

}  // namespace sheaf::storage
