// Opening an existing store: the series index and counters into memory
// (agent sequence sets are only counted: store.h), and the log replayed
// into the heads.
#include "storage/store.h"

namespace sheaf::storage {

absl::Status RocksSeriesStore::Load() {
  std::string v;
  auto s = db_->Get(rocksdb::ReadOptions(), meta_, keys::SchemaVersionKey(), &v);
  if (s.IsNotFound()) {
    std::string ver;
    keys::PutFixed64BE(ver, keys::kSchemaVersion);
    s = db_->Put(rocksdb::WriteOptions(), meta_, keys::SchemaVersionKey(), ver);
    if (!s.ok()) return FromRocks(s, "writing schema version");
  } else if (!s.ok()) {
    return FromRocks(s, "reading schema version");
  } else if (v.size() != 8 || keys::GetFixed64BE(v) != keys::kSchemaVersion) {
    return absl::FailedPreconditionError("data directory " + options_.path + " has an unsupported schema version");
  }
  s = db_->Get(rocksdb::ReadOptions(), meta_, keys::SampleCountKey(), &v);
  if (s.ok() && v.size() == 8)
    sample_count_ = keys::GetFixed64BE(v);
  else if (!s.ok() && !s.IsNotFound())
    return FromRocks(s, "reading sample count");
  s = db_->Get(rocksdb::ReadOptions(), meta_, keys::RolledUpUntilKey(), &v);
  if (s.ok() && v.size() == 8)
    rolled_up_until_ = keys::DecodeTime(v);
  else if (!s.ok() && !s.IsNotFound())
    return FromRocks(s, "reading the roll-up watermark");

  s = db_->Get(rocksdb::ReadOptions(), meta_, keys::KeptRawKey(), &v);
  std::optional<std::vector<keys::KeptRange>> kept = std::vector<keys::KeptRange>{};
  if (s.ok()) {
    kept = keys::DecodeKeptRanges(v);
    if (!kept) return absl::DataLossError("corrupt record of kept raw ranges");
  } else if (!s.IsNotFound()) {
    return FromRocks(s, "reading kept raw ranges");
  }
  {
    absl::MutexLock lock(&kept_mu_);
    kept_raw_ = *std::move(kept);  // was: keep everything
  }

  absl::MutexLock lock(&mu_);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), index_));
  std::string prefix(1, keys::kSeriesByIdPrefix);
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    std::string_view key = View(it->key());
    std::string_view value = View(it->value());
    if (key.size() != 9 || value.size() < 5) return absl::DataLossError("corrupt series index entry");
    SeriesId id = keys::GetFixed64BE(key.substr(1));
    if (id != entries_.size() + 1) return absl::DataLossError("series ids in the index are not dense");
    TenantId tenant = 0;
    for (int i = 0; i < 4; ++i) tenant = (tenant << 8) | static_cast<unsigned char>(value[i]);
    const auto type = static_cast<uint8_t>(value[4]);
    std::string canonical(value.substr(5));
    if (type == kDeletedType) {
      entries_.push_back(Entry{tenant, true, "", MetricType::kUnspecified, kNoSamples, kNoSamples, {}});
      continue;
    }
    by_labels_.emplace(TenantLabelsKey(tenant, canonical), id);
    ++tenant_series_[tenant];
    entries_.push_back(
        Entry{tenant, false, std::move(canonical), static_cast<MetricType>(type), kMaxTsUnknown, kMaxTsUnknown, {}});
  }
  if (!it->status().ok()) return FromRocks(it->status(), "loading series index");
  return CountAgents();
}

absl::Status RocksSeriesStore::CountAgents() {
  // Every tenant's: AgentSequenceKey starts with one prefix byte, then the
  // tenant. The sets are only decoded (a corrupt one fails the open, as
  // when they were all loaded), not kept; not filling the block cache.
  rocksdb::ReadOptions ro;
  ro.fill_cache = false;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, meta_));
  const std::string agent_prefix = keys::AgentSequenceKey(kDefaultTenant, "").substr(0, 1);
  uint64_t agents = 0;
  for (it->Seek(agent_prefix); it->Valid() && it->key().starts_with(agent_prefix); it->Next()) {
    if (!SequenceSet::Decode(View(it->value()))) return CorruptAgentSet(View(it->key()));
    ++agents;
  }
  if (!it->status().ok()) return FromRocks(it->status(), "counting agent sequences");
  absl::MutexLock lock(&agents_mu_);
  agents_ = agents;
  return absl::OkStatus();
}

absl::Status RocksSeriesStore::ReplayLog() {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), log_));
  bool first = true;
  absl::MutexLock append_lock(&append_mu_);
  absl::MutexLock lock(&mu_);
  absl::MutexLock head_lock(&head_mu_);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (it->key().size() != 8) return absl::DataLossError("corrupt log key");
    uint64_t seq = keys::GetFixed64BE(View(it->key()));
    if (first) first_log_seq_ = seq;
    first = false;
    next_log_seq_ = seq + 1;
    bool bad_id = false;
    bool ok = keys::DecodeLogRecord(
        View(it->value()), [&](SeriesId id, const Sample& x) ABSL_EXCLUSIVE_LOCKS_REQUIRED(append_mu_, mu_, head_mu_) {
          if (id == 0 || id > entries_.size()) {
            bad_id = true;
            return;
          }
          if (!entries_[id - 1].deleted) AddToHead(entries_[id - 1], x);
        });
    if (!ok || bad_id) return absl::DataLossError("corrupt log record " + std::to_string(seq));
  }
  if (!it->status().ok()) return FromRocks(it->status(), "replaying the log");
  // max_ts is "unknown" until blocks are consulted too.
  for (Entry& e : entries_) e.max_ts = e.blocks_max = kMaxTsUnknown;
  if (first) first_log_seq_ = next_log_seq_;
  return absl::OkStatus();
}

}  // namespace sheaf::storage
