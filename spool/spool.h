// A durable, bounded spool of records: every record is written here
// (write-ahead) before it is sent, and stays until the receiver
// acknowledges it, so neither an outage of the receiver nor kill -9 / power
// loss of the sender loses data. Two users: the agent's batches on their
// way to sheafd (agent/shipper.h), and sheafd's remote-write queues
// (daemon/remote_write_sender.h); hence its own folder, below both.
// Bounded in bytes and in age; when a bound is hit the oldest data goes,
// counted and logged. Payloads are opaque bytes; no gRPC, no protobuf.
//
// On-disk format (all integers big-endian). The directory holds:
//
//   lock       flock(2)ed while a process has the spool open.
//   acked      the sequences that will never be returned again (acknowledged,
//              dropped, or below the lowest record held), replaced atomically
//              (acked.tmp, fsync, rename, fsync of the directory):
//                fixed32 crc32 of the rest | SequenceSet::Encode() bytes
//              Missing: nothing acknowledged. Corrupt: logged, read as
//              missing (records are then sent again; the daemon applies a
//              sequence once, so that costs bandwidth, not correctness).
//   NNNNNNNNNNNNNNNNNNNN.spool   segments, named by the sequence of their
//              first record, 20 zero-padded decimal digits, so the name
//              order is the sequence order. A segment is:
//                "SHEAFSP1"                          8-byte file header
//                record*
//              and a record is:
//                fixed32  crc32 (zlib) of the next 20 + N bytes
//                fixed32  N, the payload length
//                fixed64  sequence (strictly increasing through the spool)
//                fixed64  appended_ms (wall clock, two's complement)
//                N bytes  payload
//
// Records are appended to the newest segment and fdatasynced before Append
// returns; a segment is rolled at segment_bytes or when its first record is
// max_age/24 old. The directory is fsynced when a segment is created or
// removed. Whole segments are removed: when all their records are acked,
// when the byte bound needs room (oldest first), when their newest record is
// older than max_age.
//
// Damage found by Open (or later by Read) is never returned and never a
// crash. In the newest segment, a record that does not verify (short,
// running past the end of the file, bad crc, sequence out of order) with
// nothing verifiable after it is a torn tail — a write cut short by kill -9
// or power loss, which was never acknowledged to the caller: the file is
// truncated there and appends continue. Elsewhere it is corruption, counted
// as dropped "corrupt" and logged with file and offset: if the record after
// it verifies, only the damaged record is skipped (its length was intact);
// otherwise the rest of that segment is unreadable and later segments are
// read as usual.
//
// Memory: per segment a few dozen bytes, one 24-byte index entry per 64 KiB
// of records and one 16-byte range per gap in its sequences (sequences skip
// only across agent restarts); plus the acked set (a few ranges). Never the
// payloads. Stats::index_bytes reports it.
//
// Thread-safe. Meant for one appending thread (Append, Trim) and readers /
// ackers on other threads; Append does its disk writes and fdatasync
// outside the lock that Read and Ack take.
#ifndef SHEAF_SPOOL_SPOOL_H_
#define SHEAF_SPOOL_SPOOL_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/sequence_set.h"

namespace sheaf::spool {

struct SpoolOptions {
  std::string dir;  // created if missing
  // Bound on the segment files' bytes. Must be >= 2 * segment_bytes.
  uint64_t max_bytes = 512ull << 20;
  // Records older than this are dropped (with their segment).
  std::chrono::milliseconds max_age = std::chrono::hours(24);
  // A segment rolls when the next record would take it past this. A record
  // (payload + 24 bytes) must fit in one segment with its 8-byte header.
  // At least 4 KiB.
  uint64_t segment_bytes = 8ull << 20;
  // fdatasync each record before Append returns. Off only for tests and
  // benchmarks: then a power loss can lose or damage recent records.
  bool sync = true;
  // Wall clock in milliseconds since the epoch; WallClockMs when empty.
  std::function<int64_t()> now_ms;
};

struct SpoolRecord {
  uint64_t sequence = 0;
  int64_t appended_ms = 0;
  std::string payload;
};

class Spool {
 public:
  // Bytes a record takes on disk besides its payload, and a segment's header.
  static constexpr uint64_t kRecordHeaderBytes = 24;
  static constexpr uint64_t kSegmentHeaderBytes = 8;

  // Opens (creating if needed) the spool in options.dir, scanning every
  // segment: torn tails are truncated, damage counted and logged.
  // INVALID_ARGUMENT for bad options; FAILED_PRECONDITION naming the
  // directory when it cannot be created, read, written or locked (another
  // agent holds it).
  static absl::StatusOr<std::unique_ptr<Spool>> Open(SpoolOptions options);
  ~Spool();

  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  // Appends a record durably (see SpoolOptions::sync), first dropping what
  // is too old and, if the record would pass max_bytes, the oldest segments.
  // INVALID_ARGUMENT when `sequence` is 0 or not above last_sequence(), or
  // the payload cannot fit in a segment; FAILED_PRECONDITION (naming the
  // file) when the disk refuses — nothing is appended then and the same
  // sequence may be appended again.
  absl::Status Append(uint64_t sequence, std::string_view payload);

  // Unacknowledged records with sequence >= from, ascending: at most
  // max_records, and no more payload bytes than max_bytes unless that is
  // needed to return one record. Empty when there are none. Records
  // acknowledged while a Read runs may still be returned. Damage found here
  // is counted and skipped, never returned.
  absl::StatusOr<std::vector<SpoolRecord>> Read(uint64_t from, size_t max_records, size_t max_bytes);

  // Marks sequences acknowledged (any set: acks need not be contiguous;
  // sequences above last_sequence() or not held are ignored), persists the
  // acked set and removes segments that hold nothing unacknowledged any
  // more. An error (the acked file could not be written) leaves the acks in
  // effect in memory; they are written with the next Ack.
  absl::Status Ack(const SequenceSet& acked);
  absl::Status Ack(uint64_t sequence);

  // The lowest sequence still held unacknowledged or, when there is none,
  // last_sequence() + 1: no sequence below it will ever be returned, so the
  // daemon may forget the ones it has not seen below it.
  uint64_t Floor() const;
  uint64_t last_sequence() const;

  // Drops segments whose newest record is older than max_age (the agent
  // calls this periodically; Append does it too).
  void Trim();

  struct Stats {
    uint64_t bytes = 0;  // segment files on disk
    uint64_t segments = 0;
    uint64_t records = 0;  // readable records held (acked or not)
    uint64_t records_unacked = 0;
    int64_t oldest_unacked_ms = 0;  // appended_ms, to within 64 KiB of records; 0 if none
    uint64_t last_sequence = 0;
    uint64_t floor = 0;
    // Unacknowledged records dropped since Open, and their bytes (header +
    // payload; for a segment only partly acknowledged, prorated), by reason.
    uint64_t dropped_records_full = 0, dropped_bytes_full = 0;
    uint64_t dropped_records_too_old = 0, dropped_bytes_too_old = 0;
    uint64_t dropped_records_corrupt = 0, dropped_bytes_corrupt = 0;
    uint64_t torn_tails = 0, torn_bytes = 0;  // truncated by Open
    uint64_t index_bytes = 0;                 // memory held by the in-memory index
  };
  Stats stats() const;

  const std::string& dir() const { return options_.dir; }

 private:
  struct IndexEntry {
    uint64_t sequence;
    uint64_t offset;
    int64_t appended_ms;
  };
  struct Hole {  // a damaged record whose length was intact: skipped
    uint64_t offset;
    uint64_t bytes;
  };
  struct Segment {
    std::string path;
    uint64_t size = 0;          // bytes of the file in use (published)
    uint64_t readable_end = 0;  // nothing at or after it can be read
    bool sealed = false;        // damaged: no more appends
    SequenceSet present;        // sequences of its readable records
    uint64_t records = 0;
    uint64_t record_bytes = 0;  // header + payload of its readable records
    int64_t newest_ms = 0;
    int64_t first_ms = 0;
    std::vector<IndexEntry> index;  // first record, then one per 64 KiB
    std::vector<Hole> holes;        // sorted by offset

    // Takes a readable record at `offset` into the index.
    void AddRecord(uint64_t sequence, uint64_t offset, uint64_t bytes, int64_t appended_ms);
  };
  enum class DropReason { kFull, kTooOld, kCorrupt };
  struct Episode {  // a run of drops for one reason, logged once
    bool active = false;
    uint64_t records = 0, bytes = 0;
  };
  // What Read needs of one segment, copied under the lock.
  struct ReadPlan;

  explicit Spool(SpoolOptions options, int lock_fd);
  absl::Status Load();
  absl::Status LoadSegment(uint64_t name_seq, bool newest, uint64_t* prev_seq);

  std::string SegmentPath(uint64_t first_sequence) const;
  uint64_t Unacked(const Segment& s) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  uint64_t FirstUnacked(const Segment& s, uint64_t from) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  uint64_t FloorLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Removes a segment from the index, counting its unacknowledged records
  // as dropped for `reason` (kFull or kTooOld; none for a fully acked
  // segment); the file joins *removed.
  void RemoveSegmentLocked(std::map<uint64_t, Segment>::iterator it, const DropReason* reason,
                           std::vector<std::string>* removed) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Every sequence below the lowest one held joins done_ (so it stays a few
  // ranges).
  void ForgetBelowHeldLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DropTooOldLocked(int64_t now, std::vector<std::string>* removed) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RemoveAckedLocked(std::vector<std::string>* removed) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CountDropLocked(DropReason reason, uint64_t records, uint64_t bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EndEpisodesLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The readable part of segment `key` ends at `offset` (found damaged by a
  // Read); records after `last_good` there are dropped as corrupt.
  void MarkDamagedLocked(uint64_t key, uint64_t offset, uint64_t last_good, const std::string& why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CloseActive() ABSL_EXCLUSIVE_LOCKS_REQUIRED(append_mu_);
  absl::Status RemoveFiles(const std::vector<std::string>& paths);
  absl::Status PersistAcked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(ack_mu_) ABSL_LOCKS_EXCLUDED(mu_);
  // Reads the wanted records of one segment into *out; *full when a limit
  // stopped it.
  absl::Status ReadSegment(const ReadPlan& plan, size_t max_records, size_t max_bytes, size_t* bytes,
                           std::vector<SpoolRecord>* out, bool* full);

  const SpoolOptions options_;
  const int lock_fd_;

  absl::Mutex append_mu_ ABSL_ACQUIRED_BEFORE(mu_);  // the writer: Append, Trim
  int active_fd_ ABSL_GUARDED_BY(append_mu_) = -1;
  absl::Status broken_ ABSL_GUARDED_BY(append_mu_);  // a failed write that could not be undone

  absl::Mutex ack_mu_ ABSL_ACQUIRED_BEFORE(mu_);  // serializes writes of the acked file
  std::string persisted_acked_ ABSL_GUARDED_BY(ack_mu_);

  mutable absl::Mutex mu_;
  std::map<uint64_t, Segment> segments_ ABSL_GUARDED_BY(mu_);  // by first sequence (file name)
  uint64_t active_ ABSL_GUARDED_BY(mu_) = 0;                   // key of the segment appended to; 0: none
  SequenceSet done_ ABSL_GUARDED_BY(mu_);                      // acked, dropped or below the floor
  uint64_t last_sequence_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  Stats counters_ ABSL_GUARDED_BY(mu_);  // the drop and torn-tail counters
  Episode full_episode_ ABSL_GUARDED_BY(mu_);
  Episode too_old_episode_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sheaf::spool

#endif  // SHEAF_SPOOL_SPOOL_H_
