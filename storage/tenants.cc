// The tenant registry: names (from sheafd's token file) -> the TenantIds
// that key series, postings and agent sequences. Ids are handed out once,
// in order, and written before they are used, so a tenant keeps its id (and
// its series) across restarts, and a name never gets a second id.
#include <algorithm>
#include <string>

#include "storage/store.h"

namespace sheaf::storage {

bool ValidTenantName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
              c == '-';
    if (!ok) return false;
  }
  return true;
}

namespace {

std::string EncodeTenantId(TenantId id) {
  std::string out(4, '\0');
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>(id >> (24 - 8 * i));
  return out;
}

TenantId DecodeTenantId(std::string_view in) {
  TenantId id = 0;
  for (int i = 0; i < 4; ++i) id = (id << 8) | static_cast<uint8_t>(in[i]);
  return id;
}

}  // namespace

absl::Status RocksSeriesStore::LoadTenants() {
  absl::MutexLock lock(&tenants_mu_);
  tenants_.clear();
  tenants_.emplace(kDefaultTenantName, kDefaultTenant);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), meta_));
  const std::string prefix(1, keys::kTenantPrefix);
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    std::string_view name = View(it->key()).substr(1);
    if (it->value().size() != 4 || !ValidTenantName(name)) {
      return absl::DataLossError("corrupt tenant registry entry '" + std::string(name) + "'");
    }
    tenants_.emplace(std::string(name), DecodeTenantId(View(it->value())));
  }
  return FromRocks(it->status(), "loading the tenant registry");
}

absl::StatusOr<TenantId> RocksSeriesStore::TenantIdFor(std::string_view name) {
  if (!ValidTenantName(name)) {
    return absl::InvalidArgumentError("tenant name '" + std::string(name.substr(0, 80)) +
                                      "' is not valid: use 1 to 64 of A-Z a-z 0-9 _ . -");
  }
  absl::MutexLock lock(&tenants_mu_);
  if (auto it = tenants_.find(name); it != tenants_.end()) return it->second;
  TenantId next = 1;
  for (const auto& [n, id] : tenants_) next = std::max(next, id + 1);
  if (next == 0) return absl::ResourceExhaustedError("no tenant ids left");  // 2^32 tenants: wrapped
  if (auto disk = CheckDiskSpace(); !disk.ok()) return disk;
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync;
  auto s = db_->Put(wo, meta_, keys::TenantKey(name), EncodeTenantId(next));
  NoteWrite(s);
  if (!s.ok()) return FromRocks(s, "registering tenant '" + std::string(name) + "'");
  tenants_.emplace(std::string(name), next);
  return next;
}

std::map<std::string, TenantId> RocksSeriesStore::Tenants() {
  absl::MutexLock lock(&tenants_mu_);
  return {tenants_.begin(), tenants_.end()};
}

}  // namespace sheaf::storage
