#include "spool/spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>
#include <optional>

#include "common/atomic_file.h"
#include "common/clock.h"
#include "common/coding.h"
#include "common/log.h"

namespace sheaf::spool {
namespace {

constexpr char kSegmentMagic[] = "SHEAFSP1";  // 8 bytes, no terminator written
constexpr char kSegmentSuffix[] = ".spool";
constexpr size_t kSegmentNameDigits = 20;
constexpr char kAckedFile[] = "acked";
constexpr char kLockFile[] = "lock";
// One index entry per this many bytes of records: a Read starts at most
// this far before the first record it wants.
constexpr uint64_t kIndexInterval = 64 << 10;
constexpr size_t kReadBufferBytes = 64 << 10;
// Past this many skipped records in one segment, the rest of it is
// treated as unreadable (so the list stays small).
constexpr size_t kMaxHoles = 16;
constexpr uint64_t kMinSegmentBytes = 4 << 10;
constexpr uint64_t kMaxSegmentBytes = 1ull << 30;  // the length field is 32 bits
// A larger acked file is not one this spool wrote.
constexpr uint64_t kMaxAckedFileBytes = 64 << 20;

using Range = SequenceSet::Range;

std::string Errno(int err) { return std::strerror(err); }

void PutFixed32BE(std::string& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>(v >> shift));
}

uint32_t GetFixed32BE(std::string_view in) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(in[i]);
  return v;
}

uint32_t Crc(uint32_t crc, std::string_view bytes) {
  return static_cast<uint32_t>(crc32_z(crc, reinterpret_cast<const Bytef*>(bytes.data()), bytes.size()));
}

// The record as it goes to disk (see spool.h).
std::string EncodeRecord(uint64_t sequence, int64_t appended_ms, std::string_view payload) {
  std::string out;
  out.reserve(Spool::kRecordHeaderBytes + payload.size());
  out.append(4, '\0');
  PutFixed32BE(out, static_cast<uint32_t>(payload.size()));
  PutFixed64BE(out, sequence);
  PutFixed64BE(out, static_cast<uint64_t>(appended_ms));
  out.append(payload);
  const uint32_t crc = Crc(0, std::string_view(out).substr(4));
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>(crc >> (24 - 8 * i));
  return out;
}

// How many of [first, last] are in `s`.
uint64_t CountIn(const SequenceSet& s, uint64_t first, uint64_t last) {
  const auto& rs = s.ranges();
  auto it = std::lower_bound(rs.begin(), rs.end(), first, [](const Range& r, uint64_t v) { return r.last < v; });
  uint64_t n = 0;
  for (; it != rs.end() && it->first <= last; ++it) n += std::min(it->last, last) - std::max(it->first, first) + 1;
  return n;
}

// Appends the runs of [first, last] that are not in `s` to *out, stopping
// at `cap` runs.
void AppendMissing(const SequenceSet& s, uint64_t first, uint64_t last, size_t cap, std::vector<Range>* out) {
  const auto& rs = s.ranges();
  auto it = std::lower_bound(rs.begin(), rs.end(), first, [](const Range& r, uint64_t v) { return r.last < v; });
  uint64_t a = first;
  while (out->size() < cap) {
    if (it != rs.end() && it->first <= a) {
      if (it->last >= last) return;
      a = it->last + 1;
      ++it;
      continue;
    }
    const uint64_t e = (it != rs.end() && it->first <= last) ? it->first - 1 : last;
    out->push_back({a, e});
    if (e >= last) return;
    a = e + 1;
  }
}

// "00000000000000000042.spool" -> 42; nullopt for any other name.
std::optional<uint64_t> ParseSegmentName(std::string_view name) {
  const std::string_view suffix = kSegmentSuffix;
  if (name.size() != kSegmentNameDigits + suffix.size() || !name.ends_with(suffix)) return std::nullopt;
  uint64_t v = 0;
  for (size_t i = 0; i < kSegmentNameDigits; ++i) {
    const char c = name[i];
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (c < '0' || c > '9' || v > (std::numeric_limits<uint64_t>::max() - digit) / 10) return std::nullopt;
    v = v * 10 + digit;
  }
  return v;
}

struct Header {
  uint32_t crc = 0;
  uint32_t length = 0;
  uint64_t sequence = 0;
  int64_t appended_ms = 0;
};

enum class Verdict { kGood, kEnd, kBad };

// Reads a byte range of a file through a bounded buffer, so scanning a
// segment costs one read(2) per 64 KiB however small its records are.
class FileReader {
 public:
  FileReader(int fd, uint64_t offset, uint64_t end) : fd_(fd), offset_(offset), end_(end) {}

  uint64_t offset() const { return offset_; }
  uint64_t remaining() const { return end_ > offset_ ? end_ - offset_ : 0; }
  void Seek(uint64_t offset) { offset_ = offset; }
  const std::string& error() const { return error_; }

  // The next n bytes (REQUIRES: n <= remaining()): appended to *out when
  // set, fed to *crc when set. False on a read error (see error()).
  bool Read(uint64_t n, std::string* out, uint32_t* crc) {
    while (n > 0) {
      if (offset_ < buf_start_ || offset_ >= buf_start_ + buf_len_) {
        if (!Fill()) return false;
      }
      const size_t at = offset_ - buf_start_;
      const size_t take = static_cast<size_t>(std::min<uint64_t>(n, buf_len_ - at));
      const std::string_view chunk(buf_.get() + at, take);
      if (out != nullptr) out->append(chunk);
      if (crc != nullptr) *crc = Crc(*crc, chunk);
      offset_ += take;
      n -= take;
    }
    return true;
  }

 private:
  bool Fill() {
    if (!buf_) buf_ = std::make_unique<char[]>(kReadBufferBytes);
    const size_t want = static_cast<size_t>(std::min<uint64_t>(kReadBufferBytes, remaining()));
    size_t got = 0;
    while (got < want) {
      ssize_t r = pread(fd_, buf_.get() + got, want - got, static_cast<off_t>(offset_ + got));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) {
        error_ = fmt::format("read error: {}", Errno(errno));
        return false;
      }
      if (r == 0) break;
      got += static_cast<size_t>(r);
    }
    if (got == 0) {
      error_ = fmt::format("the file ends at offset {}", offset_);
      return false;
    }
    buf_start_ = offset_;
    buf_len_ = got;
    return true;
  }

  const int fd_;
  uint64_t offset_;
  const uint64_t end_;
  std::unique_ptr<char[]> buf_;
  uint64_t buf_start_ = 0;
  size_t buf_len_ = 0;
  std::string error_;
};

// Reads the header of the record at r's offset. *crc gets the checksum of
// its last 20 bytes (the payload's is added by FinishRecord). *length_fits
// tells whether the record's extent lies within the readable range, i.e.
// whether the record after it can be looked for.
Verdict ReadHeader(FileReader& r, uint64_t prev_sequence, Header* h, uint32_t* crc, std::string* why,
                   bool* length_fits) {
  *length_fits = false;
  const uint64_t left = r.remaining();
  if (left == 0) return Verdict::kEnd;
  if (left < Spool::kRecordHeaderBytes) {
    *why = fmt::format("a record header cut short ({} of {} bytes)", left, Spool::kRecordHeaderBytes);
    return Verdict::kBad;
  }
  std::string bytes;
  if (!r.Read(Spool::kRecordHeaderBytes, &bytes, nullptr)) {
    *why = r.error();
    return Verdict::kBad;
  }
  h->crc = GetFixed32BE(bytes);
  h->length = GetFixed32BE(std::string_view(bytes).substr(4));
  h->sequence = GetFixed64BE(std::string_view(bytes).substr(8));
  h->appended_ms = static_cast<int64_t>(GetFixed64BE(std::string_view(bytes).substr(16)));
  *crc = Crc(0, std::string_view(bytes).substr(4));
  if (h->length > r.remaining()) {
    *why = fmt::format("a record of {} bytes runs past the end ({} bytes left)", h->length, r.remaining());
    return Verdict::kBad;
  }
  *length_fits = true;
  if (h->sequence <= prev_sequence) {
    *why = fmt::format("sequence {} is not above the previous one, {}", h->sequence, prev_sequence);
    return Verdict::kBad;
  }
  return Verdict::kGood;
}

// Reads the payload of the record whose header was just read (into
// *payload when set) and checks the checksum.
bool FinishRecord(FileReader& r, const Header& h, uint32_t crc, std::string* payload, std::string* why) {
  if (payload != nullptr) payload->reserve(h.length);
  if (!r.Read(h.length, payload, &crc)) {
    *why = r.error();
    return false;
  }
  if (crc != h.crc) {
    *why = fmt::format("checksum mismatch (stored {:08x}, computed {:08x})", h.crc, crc);
    return false;
  }
  return true;
}

// Reads and checks one whole record.
Verdict VerifyRecord(FileReader& r, uint64_t prev_sequence, Header* h, std::string* why, bool* length_fits) {
  uint32_t crc = 0;
  Verdict v = ReadHeader(r, prev_sequence, h, &crc, why, length_fits);
  if (v != Verdict::kGood) return v;
  return FinishRecord(r, *h, crc, nullptr, why) ? Verdict::kGood : Verdict::kBad;
}

}  // namespace

void Spool::Segment::AddRecord(uint64_t sequence, uint64_t offset, uint64_t bytes, int64_t appended_ms) {
  if (records == 0) first_ms = appended_ms;
  present.Insert(sequence);
  ++records;
  record_bytes += bytes;
  newest_ms = std::max(newest_ms, appended_ms);
  if (index.empty() || offset - index.back().offset >= kIndexInterval) index.push_back({sequence, offset, appended_ms});
}

struct Spool::ReadPlan {
  uint64_t key = 0;
  std::string path;
  uint64_t start = 0;          // offset of the first record to look at
  uint64_t prev_sequence = 0;  // below the first record's sequence
  uint64_t end = 0;
  uint64_t last_sequence = 0;  // the segment's highest
  std::vector<Hole> holes;
  std::vector<Range> wanted;  // unacknowledged sequences to return
};

absl::StatusOr<std::unique_ptr<Spool>> Spool::Open(SpoolOptions options) {
  if (options.dir.empty()) return absl::InvalidArgumentError("the spool directory is not set");
  if (options.segment_bytes < kMinSegmentBytes || options.segment_bytes > kMaxSegmentBytes) {
    return absl::InvalidArgumentError(fmt::format("spool {}: segment_bytes {} is outside [{}, {}]", options.dir,
                                                  options.segment_bytes, kMinSegmentBytes, kMaxSegmentBytes));
  }
  if (options.max_bytes / 2 < options.segment_bytes) {
    return absl::InvalidArgumentError(
        fmt::format("spool {}: max_bytes {} must be at least twice segment_bytes {}, so that dropping the oldest "
                    "segment always makes room",
                    options.dir, options.max_bytes, options.segment_bytes));
  }
  if (options.max_age.count() <= 0) {
    return absl::InvalidArgumentError(fmt::format("spool {}: max_age must be positive", options.dir));
  }
  if (!options.now_ms) options.now_ms = WallClockMs;
  std::error_code ec;
  std::filesystem::create_directories(options.dir, ec);
  if (ec || !std::filesystem::is_directory(options.dir, ec)) {
    return absl::FailedPreconditionError(
        fmt::format("cannot create the spool directory {}: {}", options.dir, ec ? ec.message() : "not a directory"));
  }
  const std::string lock_path = options.dir + "/" + kLockFile;
  int fd = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::FailedPreconditionError(fmt::format("the spool directory {} is not writable: cannot create {}: {}",
                                                     options.dir, lock_path, Errno(errno)));
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    close(fd);
    if (err == EWOULDBLOCK) {
      return absl::FailedPreconditionError(fmt::format(
          "the spool directory {} is in use by another process (it holds {}); give every agent and every "
          "remote-write queue its own spool directory",
          options.dir, lock_path));
    }
    return absl::FailedPreconditionError(fmt::format("cannot lock {}: {}", lock_path, Errno(err)));
  }
  std::unique_ptr<Spool> spool(new Spool(std::move(options), fd));
  if (auto s = spool->Load(); !s.ok()) return s;
  return spool;
}

Spool::Spool(SpoolOptions options, int lock_fd) : options_(std::move(options)), lock_fd_(lock_fd) {}

Spool::~Spool() {
  absl::MutexLock w(&append_mu_);
  CloseActive();
  close(lock_fd_);  // releases the flock
}

std::string Spool::SegmentPath(uint64_t first_sequence) const {
  return fmt::format("{}/{:0{}}{}", options_.dir, first_sequence, kSegmentNameDigits, kSegmentSuffix);
}

absl::Status Spool::Load() {
  const std::string& dir = options_.dir;
  // The acked set: a damaged one only costs re-sending.
  const std::string acked_path = dir + "/" + kAckedFile;
  std::error_code ec;
  const uint64_t acked_size = std::filesystem::file_size(acked_path, ec);
  if (!ec) {
    std::string bytes;
    int fd = acked_size <= kMaxAckedFileBytes ? open(acked_path.c_str(), O_RDONLY | O_CLOEXEC) : -1;
    bool ok = fd >= 0;
    if (ok) {
      FileReader r(fd, 0, acked_size);
      ok = r.Read(acked_size, &bytes, nullptr);
      close(fd);
    }
    std::optional<SequenceSet> set;
    if (ok && bytes.size() >= 4 && GetFixed32BE(bytes) == Crc(0, std::string_view(bytes).substr(4))) {
      set = SequenceSet::Decode(std::string_view(bytes).substr(4));
    }
    if (set) {
      absl::MutexLock l(&mu_);
      done_ = *std::move(set);
    } else {
      LogError(
          "spool {}: {} is unreadable or damaged; treating every spooled record as unacknowledged (they are sent "
          "again, and the daemon applies each sequence once)",
          dir, acked_path);
    }
  }

  std::vector<uint64_t> keys;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) {
    return absl::FailedPreconditionError(fmt::format("cannot read the spool directory {}: {}", dir, Errno(errno)));
  }
  while (struct dirent* e = readdir(d)) {
    if (auto key = ParseSegmentName(e->d_name)) keys.push_back(*key);
  }
  closedir(d);
  std::sort(keys.begin(), keys.end());

  uint64_t prev = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (auto s = LoadSegment(keys[i], i + 1 == keys.size(), &prev); !s.ok()) return s;
  }

  std::vector<std::string> removed;
  absl::MutexLock w(&append_mu_);
  absl::MutexLock l(&mu_);
  last_sequence_ = std::max(prev, done_.Max());
  for (auto it = segments_.begin(); it != segments_.end();) {  // nothing readable left
    auto cur = it++;
    if (cur->second.records == 0 && cur->first != active_) RemoveSegmentLocked(cur, nullptr, &removed);
  }
  RemoveAckedLocked(&removed);
  ForgetBelowHeldLocked();
  if (auto s = RemoveFiles(removed); !s.ok()) LogError("spool {}: {}", dir, std::string(s.message()));
  uint64_t unacked = 0;
  for (const auto& [key, seg] : segments_) unacked += Unacked(seg);
  LogInfo("spool {}: {} segments, {} bytes, {} unacknowledged records, sequences up to {}", dir, segments_.size(),
          bytes_, unacked, last_sequence_);
  return absl::OkStatus();
}

// Scans one segment file at Open, building its index entry (see spool.h for
// what counts as a torn tail and what as corruption).
absl::Status Spool::LoadSegment(uint64_t key, bool newest, uint64_t* prev_seq) {
  const std::string path = SegmentPath(key);
  int fd = open(path.c_str(), (newest ? O_RDWR : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) return absl::FailedPreconditionError(fmt::format("cannot open spool segment {}: {}", path, Errno(errno)));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    close(fd);
    return absl::FailedPreconditionError(fmt::format("cannot stat spool segment {}: {}", path, Errno(err)));
  }
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  Segment seg;
  seg.path = path;
  seg.size = file_size;

  std::string why;
  uint64_t bad_at = 0;  // where the readable part ends; 0: it does not
  {
    FileReader header(fd, 0, file_size);
    std::string magic;
    if (file_size < kSegmentHeaderBytes || !header.Read(kSegmentHeaderBytes, &magic, nullptr) ||
        magic != std::string_view(kSegmentMagic, kSegmentHeaderBytes)) {
      why = "no segment header";
      bad_at = 1;  // nothing readable, not even the header
    }
  }
  FileReader r(fd, kSegmentHeaderBytes, file_size);
  uint64_t prev = *prev_seq;
  while (bad_at == 0) {
    const uint64_t offset = r.offset();
    Header h;
    bool length_fits = false;
    const Verdict v = VerifyRecord(r, prev, &h, &why, &length_fits);
    if (v == Verdict::kEnd) break;
    if (v == Verdict::kGood) {
      seg.AddRecord(h.sequence, offset, kRecordHeaderBytes + h.length, h.appended_ms);
      prev = h.sequence;
      continue;
    }
    // A damaged record whose length held: if the record after it verifies,
    // skip just this one.
    const uint64_t next = offset + kRecordHeaderBytes + h.length;
    bool skip = false;
    if (length_fits && next < file_size && seg.holes.size() < kMaxHoles) {
      FileReader probe(fd, next, file_size);
      Header nh;
      std::string probe_why;
      bool fits = false;
      skip = VerifyRecord(probe, prev, &nh, &probe_why, &fits) == Verdict::kGood;
    }
    if (skip) {
      seg.holes.push_back({offset, next - offset});
      LogError(
          "spool: {} is damaged at offset {} ({}); that record ({} bytes) is dropped, the records after it are "
          "kept",
          path, offset, why, next - offset);
      absl::MutexLock l(&mu_);
      CountDropLocked(DropReason::kCorrupt, 1, next - offset);
      r.Seek(next);
      continue;
    }
    bad_at = offset;
  }

  if (bad_at != 0 && newest) {
    // A write cut short: Append never returned for it.
    const uint64_t keep = bad_at == 1 ? 0 : bad_at;
    LogWarn(
        "spool: {} ends in a torn record at offset {} ({}): {} bytes truncated (a write cut short by a crash or "
        "power loss; it was never reported appended)",
        path, keep, why, file_size - keep);
    if (seg.records > 0 && (ftruncate(fd, static_cast<off_t>(keep)) != 0 || fdatasync(fd) != 0)) {
      const int err = errno;
      close(fd);
      return absl::FailedPreconditionError(
          fmt::format("cannot truncate the torn tail of spool segment {}: {}", path, Errno(err)));
    }
    absl::MutexLock l(&mu_);
    ++counters_.torn_tails;
    counters_.torn_bytes += file_size - keep;
    seg.size = keep;
  } else if (bad_at != 0) {
    const uint64_t from = bad_at == 1 ? 0 : bad_at;
    LogError(
        "spool: {} is damaged at offset {} ({}); the rest of it ({} bytes, at least one record) cannot be read "
        "and is dropped; later segments are read as usual",
        path, from, why, file_size - from);
    seg.sealed = true;
    absl::MutexLock l(&mu_);
    CountDropLocked(DropReason::kCorrupt, 1, file_size - from);
  }
  seg.readable_end = bad_at == 0 ? seg.size : std::min(seg.size, bad_at);
  *prev_seq = prev;

  absl::MutexLock w(&append_mu_);
  absl::MutexLock l(&mu_);
  if (newest && seg.records > 0) {
    active_fd_ = fd;  // appends continue in the newest segment
    active_ = key;
  } else {
    close(fd);
  }
  bytes_ += seg.size;
  segments_.emplace(key, std::move(seg));
  return absl::OkStatus();
}

uint64_t Spool::Unacked(const Segment& s) const {
  uint64_t n = 0;
  for (const Range& r : s.present.ranges()) n += r.last - r.first + 1 - CountIn(done_, r.first, r.last);
  return n;
}

uint64_t Spool::FirstUnacked(const Segment& s, uint64_t from) const {
  for (const Range& r : s.present.ranges()) {
    if (r.last < from) continue;
    std::vector<Range> missing;
    AppendMissing(done_, std::max(r.first, from), r.last, 1, &missing);
    if (!missing.empty()) return missing[0].first;
  }
  return 0;
}

uint64_t Spool::FloorLocked() const {
  for (const auto& [key, seg] : segments_) {
    if (uint64_t first = FirstUnacked(seg, 0); first != 0) return first;
  }
  return last_sequence_ + 1;
}

void Spool::CountDropLocked(DropReason reason, uint64_t records, uint64_t bytes) {
  switch (reason) {
    case DropReason::kFull:
      counters_.dropped_records_full += records;
      counters_.dropped_bytes_full += bytes;
      break;
    case DropReason::kTooOld:
      counters_.dropped_records_too_old += records;
      counters_.dropped_bytes_too_old += bytes;
      break;
    case DropReason::kCorrupt:
      counters_.dropped_records_corrupt += records;
      counters_.dropped_bytes_corrupt += bytes;
      break;
  }
}

void Spool::RemoveSegmentLocked(std::map<uint64_t, Segment>::iterator it, const DropReason* reason,
                                std::vector<std::string>* removed) {
  const Segment& s = it->second;
  if (reason != nullptr) {
    const uint64_t unacked = Unacked(s);
    // Per-record sizes are not kept in memory: a partly acknowledged
    // segment's dropped bytes are prorated.
    const uint64_t bytes = s.records == 0 ? 0 : s.record_bytes / s.records * unacked;
    CountDropLocked(*reason, unacked, bytes);
    Episode& e = *reason == DropReason::kFull ? full_episode_ : too_old_episode_;
    if (unacked > 0 && !e.active) {
      e.active = true;
      if (*reason == DropReason::kFull) {
        LogWarn(
            "spool {} is full (max_bytes {}): dropping its oldest segment {} with {} unacknowledged records ({} "
            "bytes) to make room; further drops are counted and summed up when the backlog is delivered",
            options_.dir, options_.max_bytes, s.path, unacked, bytes);
      } else {
        LogWarn(
            "spool {}: dropping segment {}: its {} unacknowledged records ({} bytes) are older than max_age ({} "
            "s); further drops are counted and summed up when the backlog is delivered",
            options_.dir, s.path, unacked, bytes, options_.max_age.count() / 1000);
      }
    }
    e.records += unacked;
    e.bytes += bytes;
  }
  // Its sequences will never be returned.
  for (const Range& r : s.present.ranges()) done_.InsertRange(r.first, r.last);
  bytes_ -= s.size;
  removed->push_back(s.path);
  if (active_ == it->first) active_ = 0;
  segments_.erase(it);
}

void Spool::ForgetBelowHeldLocked() {
  uint64_t lowest = last_sequence_ + 1;
  if (!segments_.empty()) {
    const auto& [key, seg] = *segments_.begin();
    lowest = seg.present.empty() ? key : std::min(key, seg.present.ranges()[0].first);
  }
  done_.ForgetBelow(lowest);
}

void Spool::DropTooOldLocked(int64_t now, std::vector<std::string>* removed) {
  const int64_t cutoff = now - options_.max_age.count();
  static constexpr DropReason kReason = DropReason::kTooOld;
  for (auto it = segments_.begin(); it != segments_.end();) {
    auto cur = it++;
    if (cur->second.newest_ms < cutoff) RemoveSegmentLocked(cur, &kReason, removed);
  }
}

void Spool::RemoveAckedLocked(std::vector<std::string>* removed) {
  for (auto it = segments_.begin(); it != segments_.end();) {
    auto cur = it++;
    if (cur->first != active_ && Unacked(cur->second) == 0) RemoveSegmentLocked(cur, nullptr, removed);
  }
}

void Spool::EndEpisodesLocked() {
  if (!full_episode_.active && !too_old_episode_.active) return;
  for (const auto& [key, seg] : segments_) {
    if (Unacked(seg) > 0) return;
  }
  const std::pair<Episode*, const char*> episodes[] = {{&full_episode_, "the spool was full"},
                                                       {&too_old_episode_, "they were older than max_age"}};
  for (auto [e, why] : episodes) {
    if (!e->active) continue;
    LogInfo("spool {}: backlog delivered; {} unacknowledged records ({} bytes) were dropped before it because {}",
            options_.dir, e->records, e->bytes, why);
    *e = Episode{};
  }
}

void Spool::MarkDamagedLocked(uint64_t key, uint64_t offset, uint64_t last_good, const std::string& why) {
  auto it = segments_.find(key);
  if (it == segments_.end() || offset >= it->second.readable_end) return;  // gone, or already known
  Segment& s = it->second;
  SequenceSet kept;
  uint64_t lost = 0, lost_unacked = 0;
  for (const Range& r : s.present.ranges()) {
    if (r.first <= last_good) kept.InsertRange(r.first, std::min(r.last, last_good));
    if (r.last <= last_good) continue;
    const uint64_t first = std::max(r.first, last_good + 1);
    lost += r.last - first + 1;
    lost_unacked += r.last - first + 1 - CountIn(done_, first, r.last);
    done_.InsertRange(first, r.last);  // never returned
  }
  const uint64_t bytes = s.records == 0 ? 0 : s.record_bytes / s.records * lost;
  LogError(
      "spool: {} is damaged at offset {} ({}); its {} records after sequence {} cannot be read ({} of them "
      "unacknowledged, dropped); later segments are read as usual",
      s.path, offset, why, lost, last_good, lost_unacked);
  s.present = std::move(kept);
  s.records -= lost;
  s.record_bytes -= bytes;
  s.readable_end = offset;
  s.sealed = true;  // the next Append starts a new segment
  CountDropLocked(DropReason::kCorrupt, lost_unacked, lost == 0 ? 0 : bytes / lost * lost_unacked);
}

void Spool::CloseActive() {
  if (active_fd_ >= 0) close(active_fd_);
  active_fd_ = -1;
}

absl::Status Spool::RemoveFiles(const std::vector<std::string>& paths) {
  absl::Status status;
  for (const std::string& path : paths) {
    if (unlink(path.c_str()) != 0 && errno != ENOENT && status.ok()) {
      status = absl::FailedPreconditionError(fmt::format("cannot remove spool segment {}: {}", path, Errno(errno)));
    }
  }
  if (!paths.empty() && options_.sync) {
    if (auto s = SyncDirectory(options_.dir); !s.ok() && status.ok()) status = s;
  }
  return status;
}

absl::Status Spool::Append(uint64_t sequence, std::string_view payload) {
  const uint64_t record_bytes = kRecordHeaderBytes + payload.size();
  if (sequence == 0) return absl::InvalidArgumentError(fmt::format("spool {}: sequence 0 is not valid", options_.dir));
  if (kSegmentHeaderBytes + record_bytes > options_.segment_bytes) {
    return absl::InvalidArgumentError(fmt::format(
        "spool {}: a payload of {} bytes does not fit in a segment of {} bytes (segment_bytes); the largest is {}",
        options_.dir, payload.size(), options_.segment_bytes,
        options_.segment_bytes - kSegmentHeaderBytes - kRecordHeaderBytes));
  }
  absl::MutexLock w(&append_mu_);
  if (!broken_.ok()) return broken_;
  const int64_t now = options_.now_ms();
  // Rolling by age as well keeps the age bound close: a segment goes when
  // its newest record is max_age old, so its oldest is at most 1/24 older.
  const int64_t roll_age = std::max<int64_t>(1, options_.max_age.count() / 24);
  std::vector<std::string> removed;
  bool roll = false;
  uint64_t key = 0, offset = 0;
  {
    absl::MutexLock l(&mu_);
    if (sequence <= last_sequence_) {
      return absl::InvalidArgumentError(fmt::format("spool {}: sequence {} is not above the last one appended, {}",
                                                    options_.dir, sequence, last_sequence_));
    }
    DropTooOldLocked(now, &removed);
    roll = active_ == 0;
    if (!roll) {
      const Segment& a = segments_.at(active_);
      roll = a.sealed || a.size + record_bytes > options_.segment_bytes || now - a.first_ms >= roll_age;
    }
    if (roll) active_ = 0;
    const uint64_t need = record_bytes + (roll ? kSegmentHeaderBytes : 0);
    // Oldest first; never the segment appended to (max_bytes >= 2 segments
    // guarantees that the others make room).
    static constexpr DropReason kReason = DropReason::kFull;
    while (bytes_ + need > options_.max_bytes && !segments_.empty() && segments_.begin()->first != active_) {
      RemoveSegmentLocked(segments_.begin(), &kReason, &removed);
    }
    ForgetBelowHeldLocked();
    key = roll ? sequence : active_;
    offset = roll ? kSegmentHeaderBytes : segments_.at(active_).size;
  }
  if (roll) CloseActive();
  if (auto s = RemoveFiles(removed); !s.ok()) LogError("spool {}: {}", options_.dir, std::string(s.message()));

  const std::string path = SegmentPath(key);
  if (roll) {
    // A file of this name can only be left over from a failed Append of
    // this same sequence: its name is above every segment's in the index.
    int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
      return absl::FailedPreconditionError(fmt::format("cannot create spool segment {}: {}", path, Errno(errno)));
    }
    const std::string_view magic(kSegmentMagic, kSegmentHeaderBytes);
    absl::Status s;
    if (pwrite(fd, magic.data(), magic.size(), 0) != static_cast<ssize_t>(magic.size())) {
      s = absl::FailedPreconditionError(fmt::format("cannot write spool segment {}: {}", path, Errno(errno)));
    } else if (options_.sync) {
      if (fdatasync(fd) != 0) {
        s = absl::FailedPreconditionError(fmt::format("cannot fdatasync spool segment {}: {}", path, Errno(errno)));
      } else {
        s = SyncDirectory(options_.dir);
      }
    }
    if (!s.ok()) {
      close(fd);
      unlink(path.c_str());
      return s;
    }
    active_fd_ = fd;
  }

  const std::string record = EncodeRecord(sequence, now, payload);
  absl::Status s;
  for (size_t done = 0; done < record.size() && s.ok();) {
    ssize_t n = pwrite(active_fd_, record.data() + done, record.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) s = absl::FailedPreconditionError(fmt::format("cannot write spool segment {}: {}", path, Errno(errno)));
    if (n > 0) done += static_cast<size_t>(n);
  }
  if (s.ok() && options_.sync && fdatasync(active_fd_) != 0) {
    s = absl::FailedPreconditionError(fmt::format("cannot fdatasync spool segment {}: {}", path, Errno(errno)));
  }
  if (!s.ok()) {
    // Undo, so that the same sequence can be appended again at the same
    // place. If even that fails, a later record could follow a partial one
    // in the same file: stop appending until the spool is reopened (Open
    // then truncates the tail).
    if (ftruncate(active_fd_, static_cast<off_t>(offset)) != 0) {
      broken_ = absl::FailedPreconditionError(fmt::format(
          "spool segment {} could not be written nor truncated back ({}); the spool takes no more records until "
          "the process restarts",
          path, Errno(errno)));
      LogError("{}", std::string(broken_.message()));
    }
    if (roll) {
      CloseActive();
      unlink(path.c_str());
    }
    return s;
  }

  absl::MutexLock l(&mu_);
  if (roll) {
    Segment seg;
    seg.path = path;
    seg.size = seg.readable_end = kSegmentHeaderBytes;
    segments_.emplace(key, std::move(seg));
    bytes_ += kSegmentHeaderBytes;
    active_ = key;
  }
  Segment& a = segments_.at(key);
  last_sequence_ = sequence;
  bytes_ += record_bytes;
  a.size = offset + record_bytes;
  if (a.sealed) {
    // A Read found this segment damaged while the record was being written:
    // it lies past the readable part.
    LogError("spool: record {} was appended to {} after that file was found damaged; it is dropped", sequence, a.path);
    done_.Insert(sequence);
    CountDropLocked(DropReason::kCorrupt, 1, record_bytes);
    return absl::OkStatus();
  }
  a.readable_end = a.size;
  a.AddRecord(sequence, offset, record_bytes, now);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<SpoolRecord>> Spool::Read(uint64_t from, size_t max_records, size_t max_bytes) {
  std::vector<SpoolRecord> out;
  size_t bytes = 0;
  max_records = std::max<size_t>(max_records, 1);
  uint64_t cursor = std::max<uint64_t>(from, 1);
  while (out.size() < max_records) {
    ReadPlan plan;
    {
      absl::ReaderMutexLock l(&mu_);
      // The segment that may hold `cursor`, then the ones after it.
      auto it = segments_.upper_bound(cursor);
      if (it != segments_.begin()) --it;
      for (; it != segments_.end() && plan.wanted.empty(); ++it) {
        const Segment& s = it->second;
        for (const Range& r : s.present.ranges()) {
          if (r.last >= cursor) AppendMissing(done_, std::max(r.first, cursor), r.last, max_records, &plan.wanted);
          if (plan.wanted.size() >= max_records) break;
        }
        if (plan.wanted.empty()) continue;
        plan.key = it->first;
        plan.path = s.path;
        plan.end = s.readable_end;
        plan.last_sequence = s.present.Max();
        plan.holes = s.holes;
        plan.start = kSegmentHeaderBytes;
        // The last index entry at or before the first wanted record.
        auto e = std::upper_bound(s.index.begin(), s.index.end(), plan.wanted[0].first,
                                  [](uint64_t v, const IndexEntry& x) { return v < x.sequence; });
        if (e != s.index.begin()) {
          --e;
          plan.start = e->offset;
          plan.prev_sequence = e->sequence - 1;
        }
      }
    }
    if (plan.wanted.empty()) break;
    bool full = false;
    if (auto s = ReadSegment(plan, max_records, max_bytes, &bytes, &out, &full); !s.ok()) return s;
    if (full) break;
    cursor = plan.last_sequence + 1;
  }
  return out;
}

absl::Status Spool::ReadSegment(const ReadPlan& plan, size_t max_records, size_t max_bytes, size_t* bytes,
                                std::vector<SpoolRecord>* out, bool* full) {
  int fd = open(plan.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return absl::OkStatus();  // removed since the plan was made (all acked or dropped)
    absl::MutexLock l(&mu_);
    MarkDamagedLocked(plan.key, kSegmentHeaderBytes, plan.prev_sequence, fmt::format("cannot open: {}", Errno(errno)));
    return absl::OkStatus();
  }
  FileReader r(fd, plan.start, plan.end);
  auto hole = std::lower_bound(plan.holes.begin(), plan.holes.end(), plan.start,
                               [](const Hole& h, uint64_t v) { return h.offset < v; });
  auto want = plan.wanted.begin();
  uint64_t prev = plan.prev_sequence;
  std::string why;
  uint64_t bad_at = 0;
  while (r.remaining() > 0 && want != plan.wanted.end()) {
    const uint64_t offset = r.offset();
    if (hole != plan.holes.end() && hole->offset == offset) {
      r.Seek(offset + hole->bytes);
      ++hole;
      continue;
    }
    Header h;
    uint32_t crc = 0;
    bool length_fits = false;
    if (ReadHeader(r, prev, &h, &crc, &why, &length_fits) != Verdict::kGood) {
      bad_at = offset;
      break;
    }
    while (want != plan.wanted.end() && want->last < h.sequence) ++want;
    if (want == plan.wanted.end()) break;
    if (h.sequence < want->first) {
      r.Seek(r.offset() + h.length);
      prev = h.sequence;
      continue;
    }
    if (!out->empty() && *bytes + h.length > max_bytes) {
      *full = true;
      break;
    }
    SpoolRecord record{h.sequence, h.appended_ms, {}};
    if (!FinishRecord(r, h, crc, &record.payload, &why)) {
      bad_at = offset;
      break;
    }
    *bytes += h.length;
    prev = h.sequence;
    out->push_back(std::move(record));
    if (out->size() >= max_records) {
      *full = true;
      break;
    }
  }
  close(fd);
  if (bad_at != 0) {
    absl::MutexLock l(&mu_);
    MarkDamagedLocked(plan.key, bad_at, prev, why);
  }
  return absl::OkStatus();
}

absl::Status Spool::Ack(uint64_t sequence) {
  SequenceSet one;
  one.Insert(sequence);
  return Ack(one);
}

absl::Status Spool::Ack(const SequenceSet& acked) {
  absl::MutexLock a(&ack_mu_);
  std::vector<std::string> removed;
  {
    absl::MutexLock l(&mu_);
    for (const Range& r : acked.ranges()) {
      if (r.first > last_sequence_) break;  // never appended: acking it would hide a later record
      done_.InsertRange(r.first, std::min(r.last, last_sequence_));
    }
    RemoveAckedLocked(&removed);
    ForgetBelowHeldLocked();
    EndEpisodesLocked();
  }
  // The acked file first: a crash between the two leaves fully acked
  // segments, which the next Open removes.
  absl::Status status = PersistAcked();
  if (auto s = RemoveFiles(removed); !s.ok()) {
    LogError("spool {}: {}", options_.dir, std::string(s.message()));
    if (status.ok()) status = s;
  }
  return status;
}

absl::Status Spool::PersistAcked() {
  std::string body;
  {
    absl::ReaderMutexLock l(&mu_);
    body = done_.Encode();
  }
  if (body == persisted_acked_) return absl::OkStatus();
  std::string contents;
  PutFixed32BE(contents, Crc(0, body));
  contents += body;
  if (auto s = WriteFileAtomically(options_.dir, kAckedFile, contents); !s.ok()) {
    return absl::FailedPreconditionError(
        fmt::format("spool {}: cannot record acknowledgements: {}", options_.dir, std::string(s.message())));
  }
  persisted_acked_ = std::move(body);
  return absl::OkStatus();
}

void Spool::Trim() {
  absl::MutexLock w(&append_mu_);
  std::vector<std::string> removed;
  bool active_gone = false;
  {
    absl::MutexLock l(&mu_);
    DropTooOldLocked(options_.now_ms(), &removed);
    RemoveAckedLocked(&removed);
    ForgetBelowHeldLocked();
    active_gone = active_ == 0;
  }
  if (active_gone) CloseActive();
  if (auto s = RemoveFiles(removed); !s.ok()) LogError("spool {}: {}", options_.dir, std::string(s.message()));
}

uint64_t Spool::Floor() const {
  absl::ReaderMutexLock l(&mu_);
  return FloorLocked();
}

uint64_t Spool::last_sequence() const {
  absl::ReaderMutexLock l(&mu_);
  return last_sequence_;
}

Spool::Stats Spool::stats() const {
  absl::ReaderMutexLock l(&mu_);
  Stats st = counters_;
  st.bytes = bytes_;
  st.segments = segments_.size();
  st.last_sequence = last_sequence_;
  st.floor = FloorLocked();
  // Map nodes: the key, the value and about four pointers of bookkeeping.
  st.index_bytes = sizeof(*this) + done_.ranges().capacity() * sizeof(Range);
  for (const auto& [key, seg] : segments_) {
    st.records += seg.records;
    const uint64_t unacked = Unacked(seg);
    st.records_unacked += unacked;
    if (unacked > 0 && st.oldest_unacked_ms == 0) {
      const uint64_t first = FirstUnacked(seg, 0);
      auto e = std::upper_bound(seg.index.begin(), seg.index.end(), first,
                                [](uint64_t v, const IndexEntry& x) { return v < x.sequence; });
      st.oldest_unacked_ms = e == seg.index.begin() ? seg.first_ms : std::prev(e)->appended_ms;
    }
    st.index_bytes += sizeof(key) + sizeof(seg) + 4 * sizeof(void*) + seg.path.capacity() +
                      seg.index.capacity() * sizeof(IndexEntry) + seg.holes.capacity() * sizeof(Hole) +
                      seg.present.ranges().capacity() * sizeof(Range);
  }
  return st;
}

}  // namespace sheaf::spool
