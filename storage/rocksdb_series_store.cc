// SeriesStore on RocksDB. Key layouts: storage/key_codec.h.
#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>
#include <rocksdb/write_buffer_manager.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>

#include "storage/key_codec.h"
#include "storage/series_store.h"

namespace sheaf::storage {
namespace {

using keys::kDefaultTenant;

absl::Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return absl::OkStatus();
  std::string msg = std::string(what) + ": " + s.ToString();
  if (s.IsNotFound()) return absl::NotFoundError(msg);
  if (s.IsCorruption()) return absl::DataLossError(msg);
  if (s.IsInvalidArgument()) return absl::InvalidArgumentError(msg);
  if (s.IsBusy() || s.IsTimedOut() || s.IsTryAgain()) return absl::UnavailableError(msg);
  if (s.IsNoSpace()) return absl::ResourceExhaustedError(msg);
  return absl::InternalError(msg);
}

constexpr int64_t kMaxTsUnknown = INT64_MIN;

class RocksSampleIterator : public SampleIterator {
 public:
  RocksSampleIterator(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf, SeriesId id,
                      int64_t start_ms, int64_t end_ms) {
    // The upper bound is exclusive; end_ms is inclusive, so bound at end+1
    // (or at the next series when end is the largest timestamp).
    upper_key_ = end_ms == INT64_MAX ? keys::SampleKey(id + 1, INT64_MIN)
                                     : keys::SampleKey(id, end_ms + 1);
    upper_ = rocksdb::Slice(upper_key_);
    rocksdb::ReadOptions ro;
    ro.iterate_upper_bound = &upper_;
    it_.reset(db->NewIterator(ro, cf));
    it_->Seek(keys::SampleKey(id, start_ms));
  }
  bool Valid() const override { return it_->Valid(); }
  void Next() override { it_->Next(); }
  Sample sample() const override {
    auto k = keys::DecodeSampleKey(std::string_view(it_->key().data(), it_->key().size()));
    return Sample{k ? k->timestamp_ms : 0,
                  keys::DecodeDouble(std::string_view(it_->value().data(), it_->value().size()))};
  }
  absl::Status status() const override { return FromRocks(it_->status(), "reading samples"); }

 private:
  std::string upper_key_;
  rocksdb::Slice upper_;
  std::unique_ptr<rocksdb::Iterator> it_;
};

class RocksSeriesStore : public SeriesStore {
 public:
  ~RocksSeriesStore() override {
    if (!db_) return;  // Open failed
    // Handles must go before the DB (RocksDB asserts on it).
    for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h);
    db_->Close().PermitUncheckedError();
  }

  absl::Status Init(const StoreOptions& options) {
    options_ = options;
    std::error_code ec;
    std::filesystem::create_directories(options.path, ec);
    if (ec) return absl::FailedPreconditionError("cannot create data directory " + options.path + ": " + ec.message());

    rocksdb::Options db_options;
    db_options.create_if_missing = true;
    db_options.create_missing_column_families = true;
    db_options.max_background_jobs = 2;
    db_options.write_buffer_manager = std::make_shared<rocksdb::WriteBufferManager>(
        options.write_buffer_bytes);
    rocksdb::BlockBasedTableOptions table;
    table.block_cache = rocksdb::NewLRUCache(options.block_cache_bytes);
    rocksdb::ColumnFamilyOptions cf_options;
    cf_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
    cf_options.compression = rocksdb::kLZ4Compression;
    cf_options.bottommost_compression = rocksdb::kZSTD;

    std::vector<rocksdb::ColumnFamilyDescriptor> families = {
        {rocksdb::kDefaultColumnFamilyName, cf_options},
        {keys::kIndexFamily, cf_options},
        {keys::kSamplesFamily, cf_options},
    };
    rocksdb::DB* db = nullptr;
    auto s = rocksdb::DB::Open(rocksdb::DBOptions(db_options), options.path, families, &handles_, &db);
    if (!s.ok()) {
      std::string hint = s.IsIOError() && s.ToString().find("lock") != std::string::npos
                             ? " (is another sheafd using this data directory?)"
                             : "";
      return FromRocks(s, "opening store at " + options.path + hint);
    }
    db_.reset(db);
    meta_ = handles_[0];
    index_ = handles_[1];
    samples_ = handles_[2];
    return Load();
  }

  absl::StatusOr<SeriesId> GetOrCreateSeries(const Labels& labels, MetricType type) override {
    std::string canonical = keys::CanonicalLabels(labels);
    {
      std::shared_lock lock(mu_);
      auto it = by_labels_.find(canonical);
      if (it != by_labels_.end()) return it->second;
    }
    std::unique_lock lock(mu_);
    auto it = by_labels_.find(canonical);
    if (it != by_labels_.end()) return it->second;
    if (entries_.size() >= options_.max_series) {
      return absl::ResourceExhaustedError("series limit of " + std::to_string(options_.max_series) +
                                          " reached; raise --max-series or drop high-cardinality labels");
    }
    SeriesId id = entries_.size() + 1;
    rocksdb::WriteBatch wb;
    std::string value;
    keys::PutFixed64BE(value, id);
    value.push_back(static_cast<char>(type));
    wb.Put(index_, keys::SeriesByLabelsKey(kDefaultTenant, canonical), value);
    std::string reverse(4, '\0');  // tenant
    reverse.push_back(static_cast<char>(type));
    reverse += canonical;
    wb.Put(index_, keys::SeriesByIdKey(id), reverse);
    for (const Label& l : labels) {
      wb.Put(index_, keys::PostingKey(kDefaultTenant, l.name, l.value, id), "");
    }
    std::string next;
    keys::PutFixed64BE(next, id + 1);
    wb.Put(meta_, keys::NextSeriesIdKey(), next);
    // Not synced on its own: the WAL is sequential, so the synced write of
    // the samples that use this id makes it durable too.
    auto s = db_->Write(rocksdb::WriteOptions(), &wb);
    if (!s.ok()) return FromRocks(s, "creating series");
    entries_.push_back(Entry{canonical, type, kMaxTsUnknown});
    by_labels_.emplace(std::move(canonical), id);
    return id;
  }

  absl::StatusOr<AppendResult> Append(const AppendBatch& batch) override {
    std::lock_guard append_lock(append_mu_);
    AppendResult result;
    const bool idempotent = !batch.agent_id.empty();
    if (idempotent) {
      uint64_t seq = AgentSequence(batch.agent_id);
      if (batch.sequence <= seq) {
        result.duplicate = true;
        result.durable_sequence = seq;
        return result;
      }
    }
    rocksdb::WriteBatch wb;
    std::vector<std::pair<SeriesId, int64_t>> new_max;  // applied only after a good write
    {
      std::shared_lock lock(mu_);
      std::vector<Sample> sorted;
      for (const SeriesSamples& ss : batch.series) {
        if (ss.id == 0 || ss.id > entries_.size()) {
          return absl::InvalidArgumentError("unknown series id " + std::to_string(ss.id));
        }
        Entry& entry = entries_[ss.id - 1];
        if (entry.max_ts == kMaxTsUnknown) entry.max_ts = LoadMaxTimestamp(ss.id);
        // Sort and keep the last of equal timestamps, so counting below sees
        // each (series, timestamp) once.
        sorted.assign(ss.samples.begin(), ss.samples.end());
        std::stable_sort(sorted.begin(), sorted.end(),
                         [](const Sample& a, const Sample& b) { return a.timestamp_ms < b.timestamp_ms; });
        int64_t max_ts = entry.max_ts;
        for (size_t i = 0; i < sorted.size(); ++i) {
          if (i + 1 < sorted.size() && sorted[i + 1].timestamp_ms == sorted[i].timestamp_ms) continue;
          std::string key = keys::SampleKey(ss.id, sorted[i].timestamp_ms);
          if (sorted[i].timestamp_ms > max_ts) {
            ++result.samples_added;
          } else {
            // Older than the newest sample: new only if not stored yet.
            std::string existing;
            auto s = db_->Get(rocksdb::ReadOptions(), samples_, key, &existing);
            if (s.IsNotFound()) ++result.samples_added;
            else if (!s.ok()) return FromRocks(s, "checking for an existing sample");
          }
          wb.Put(samples_, key, keys::EncodeDouble(sorted[i].value));
        }
        if (!sorted.empty() && sorted.back().timestamp_ms > max_ts) {
          new_max.emplace_back(ss.id, sorted.back().timestamp_ms);
        }
      }
    }
    std::string count;
    keys::PutFixed64BE(count, sample_count_ + result.samples_added);
    wb.Put(meta_, keys::SampleCountKey(), count);
    if (idempotent) {
      std::string seq;
      keys::PutFixed64BE(seq, batch.sequence);
      wb.Put(meta_, keys::AgentSequenceKey(kDefaultTenant, batch.agent_id), seq);
    }
    rocksdb::WriteOptions wo;
    wo.sync = options_.sync;
    auto s = db_->Write(wo, &wb);
    if (!s.ok()) return FromRocks(s, "writing samples");
    sample_count_ += result.samples_added;
    {
      std::shared_lock lock(mu_);
      for (auto [id, ts] : new_max) entries_[id - 1].max_ts = std::max(entries_[id - 1].max_ts, ts);
    }
    if (idempotent) {
      std::lock_guard lock(agents_mu_);
      agent_seq_[batch.agent_id] = batch.sequence;
      result.durable_sequence = batch.sequence;
    }
    return result;
  }

  uint64_t AgentSequence(std::string_view agent_id) override {
    std::lock_guard lock(agents_mu_);
    auto it = agent_seq_.find(std::string(agent_id));
    return it == agent_seq_.end() ? 0 : it->second;
  }

  absl::StatusOr<std::vector<SeriesId>> Select(const std::vector<Matcher>& matchers) override {
    // Candidates from the postings of every `name="value"` matcher
    // (intersected); without one, every series. Then each candidate is
    // checked against all matchers.
    std::optional<std::vector<SeriesId>> candidates;
    for (const Matcher& m : matchers) {
      if (m.op() != Matcher::Op::kEqual || m.value().empty()) continue;
      auto postings = Postings(m.name(), m.value());
      if (!postings.ok()) return postings.status();
      if (!candidates) {
        candidates = *std::move(postings);
      } else {
        std::vector<SeriesId> both;
        std::set_intersection(candidates->begin(), candidates->end(), postings->begin(),
                              postings->end(), std::back_inserter(both));
        candidates = std::move(both);
      }
      if (candidates->empty()) return std::vector<SeriesId>{};
    }
    std::vector<SeriesId> out;
    std::shared_lock lock(mu_);
    auto consider = [&](SeriesId id) {
      auto labels = keys::DecodeCanonicalLabels(entries_[id - 1].canonical);
      if (labels && MatchesAll(matchers, *labels)) out.push_back(id);
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

  std::optional<SeriesInfo> GetSeries(SeriesId id) override {
    std::shared_lock lock(mu_);
    if (id == 0 || id > entries_.size()) return std::nullopt;
    auto labels = keys::DecodeCanonicalLabels(entries_[id - 1].canonical);
    if (!labels) return std::nullopt;
    return SeriesInfo{*std::move(labels), entries_[id - 1].type};
  }

  std::unique_ptr<SampleIterator> Read(SeriesId id, int64_t start_ms, int64_t end_ms) override {
    return std::make_unique<RocksSampleIterator>(db_.get(), samples_, id, start_ms, end_ms);
  }

  StoreStats Stats() override {
    StoreStats st;
    {
      std::shared_lock lock(mu_);
      st.series = entries_.size();
    }
    st.samples = sample_count_;
    {
      std::lock_guard lock(agents_mu_);
      st.agents = agent_seq_.size();
    }
    for (auto* h : handles_) {
      uint64_t v = 0;
      if (db_->GetIntProperty(h, "rocksdb.live-sst-files-size", &v)) st.disk_bytes += v;
    }
    rocksdb::VectorLogPtr wal;
    if (db_->GetSortedWalFiles(wal).ok()) {
      for (const auto& f : wal) st.disk_bytes += f->SizeFileBytes();
    }
    return st;
  }

  absl::Status Flush() override {
    rocksdb::FlushOptions fo;
    fo.wait = true;
    return FromRocks(db_->Flush(fo, handles_), "flushing memtables");
  }

  absl::Status Compact() override {
    for (auto* h : handles_) {
      rocksdb::CompactRangeOptions co;
      co.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
      auto s = db_->CompactRange(co, h, nullptr, nullptr);
      if (!s.ok()) return FromRocks(s, "compacting");
    }
    return absl::OkStatus();
  }

 private:
  struct Entry {
    std::string canonical;
    MetricType type;
    int64_t max_ts;  // newest stored timestamp; kMaxTsUnknown until first append after open
  };

  // Reads the series table, agent sequences and counters into memory.
  absl::Status Load() {
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
      return absl::FailedPreconditionError("data directory " + options_.path +
                                           " has an unsupported schema version");
    }
    s = db_->Get(rocksdb::ReadOptions(), meta_, keys::SampleCountKey(), &v);
    if (s.ok() && v.size() == 8) sample_count_ = keys::GetFixed64BE(v);
    else if (!s.ok() && !s.IsNotFound()) return FromRocks(s, "reading sample count");

    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), index_));
    std::string prefix(1, keys::kSeriesByIdPrefix);
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      std::string_view key(it->key().data(), it->key().size());
      std::string_view value(it->value().data(), it->value().size());
      if (key.size() != 9 || value.size() < 5) return absl::DataLossError("corrupt series index entry");
      SeriesId id = keys::GetFixed64BE(key.substr(1));
      if (id != entries_.size() + 1) return absl::DataLossError("series ids in the index are not dense");
      std::string canonical(value.substr(5));
      entries_.push_back(Entry{canonical, static_cast<MetricType>(value[4]), kMaxTsUnknown});
      by_labels_.emplace(std::move(canonical), id);
    }
    if (!it->status().ok()) return FromRocks(it->status(), "loading series index");

    it.reset(db_->NewIterator(rocksdb::ReadOptions(), meta_));
    std::string agent_prefix = keys::AgentSequenceKey(kDefaultTenant, "");
    for (it->Seek(agent_prefix); it->Valid() && it->key().starts_with(agent_prefix); it->Next()) {
      std::string_view key(it->key().data(), it->key().size());
      if (it->value().size() != 8) return absl::DataLossError("corrupt agent sequence");
      agent_seq_[std::string(key.substr(agent_prefix.size()))] =
          keys::GetFixed64BE(std::string_view(it->value().data(), 8));
    }
    return FromRocks(it->status(), "loading agent sequences");
  }

  int64_t LoadMaxTimestamp(SeriesId id) {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), samples_));
    it->SeekForPrev(keys::SampleKey(id, INT64_MAX));
    if (it->Valid()) {
      auto k = keys::DecodeSampleKey(std::string_view(it->key().data(), it->key().size()));
      if (k && k->id == id) return k->timestamp_ms;
    }
    return INT64_MIN + 1;  // known: no samples
  }

  absl::StatusOr<std::vector<SeriesId>> Postings(const std::string& name, const std::string& value) {
    std::vector<SeriesId> ids;
    std::string prefix = keys::PostingPrefix(kDefaultTenant, name, value);
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), index_));
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      if (it->key().size() != prefix.size() + 8) continue;
      ids.push_back(keys::GetFixed64BE(std::string_view(it->key().data() + prefix.size(), 8)));
    }
    if (!it->status().ok()) return FromRocks(it->status(), "reading postings");
    return ids;
  }

  StoreOptions options_;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  rocksdb::ColumnFamilyHandle* meta_ = nullptr;
  rocksdb::ColumnFamilyHandle* index_ = nullptr;
  rocksdb::ColumnFamilyHandle* samples_ = nullptr;

  std::shared_mutex mu_;  // guards entries_ and by_labels_
  std::vector<Entry> entries_;  // entries_[id - 1]
  std::unordered_map<std::string, SeriesId> by_labels_;

  std::mutex append_mu_;  // one Append at a time (sole writer of sample_count_, max_ts)
  std::atomic<uint64_t> sample_count_ = 0;
  std::mutex agents_mu_;
  std::unordered_map<std::string, uint64_t> agent_seq_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<SeriesStore>> SeriesStore::Open(const StoreOptions& options) {
  auto store = std::make_unique<RocksSeriesStore>();
  if (auto s = store->Init(options); !s.ok()) return s;
  return store;
}

}  // namespace sheaf::storage
