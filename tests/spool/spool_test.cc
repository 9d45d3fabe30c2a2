// The durable spool: order, non-contiguous acks across reopen, segment
// rolling and removal, the byte and age bounds, torn tails, corruption found
// at Open and at Read, kill -9 of an appending process, a large spool's
// index, and an appender and a reader/acker on two threads.
#include "spool/spool.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <limits>
#include <thread>

#include "common/clock.h"
#include "tests/support/temp_dir.h"

namespace sheaf::spool {
namespace {

using sheaf::testing::TempDir;
constexpr size_t kAll = std::numeric_limits<size_t>::max();
constexpr uint64_t kSegment = 4096;
// Records of 200-byte payloads in one such segment.
constexpr uint64_t kPerSegment = (kSegment - Spool::kSegmentHeaderBytes) / (Spool::kRecordHeaderBytes + 200);

// A payload that tells which sequence it belongs to, `size` bytes long.
std::string Payload(uint64_t seq, size_t size = 200) {
  std::string p = fmt::format("record {} ", seq);
  while (p.size() < size) p += static_cast<char>('a' + (seq + p.size()) % 26);
  p.resize(size);
  return p;
}

SpoolOptions Options(const std::string& dir) {
  SpoolOptions o;
  o.dir = dir;
  o.segment_bytes = kSegment;
  o.max_bytes = 1 << 20;
  o.sync = false;  // kill -9 does not need it; the crash test turns it on
  return o;
}

std::unique_ptr<Spool> OpenOrDie(const SpoolOptions& options) {
  auto spool = Spool::Open(options);
  EXPECT_TRUE(spool.ok()) << spool.status();
  return spool.ok() ? *std::move(spool) : nullptr;
}

std::vector<uint64_t> Sequences(const std::vector<SpoolRecord>& records) {
  std::vector<uint64_t> out;
  for (const auto& r : records) out.push_back(r.sequence);
  return out;
}

// Every unacknowledged record, checking that each payload is intact.
std::vector<uint64_t> ReadAll(Spool& spool, size_t payload_size = 200) {
  auto records = spool.Read(0, kAll, kAll);
  EXPECT_TRUE(records.ok()) << records.status();
  if (!records.ok()) return {};
  for (const auto& r : *records) EXPECT_EQ(r.payload, Payload(r.sequence, payload_size)) << r.sequence;
  return Sequences(*records);
}

std::vector<uint64_t> Range(uint64_t first, uint64_t last) {
  std::vector<uint64_t> out;
  for (uint64_t s = first; s <= last; ++s) out.push_back(s);
  return out;
}

void AppendRange(Spool& spool, uint64_t first, uint64_t last, size_t payload_size = 200) {
  for (uint64_t s = first; s <= last; ++s) ASSERT_TRUE(spool.Append(s, Payload(s, payload_size)).ok()) << s;
}

std::vector<std::string> SegmentFiles(const std::string& dir);

// A closed spool in `dir` holding records 1..n; its segment files.
std::vector<std::string> WriteSpool(const std::string& dir, uint64_t n) {
  auto spool = OpenOrDie(Options(dir));
  if (spool) AppendRange(*spool, 1, n);
  return SegmentFiles(dir);
}

std::vector<std::string> SegmentFiles(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() == ".spool") out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

uint64_t SegmentBytes(const std::string& dir) {
  uint64_t n = 0;
  for (const auto& f : SegmentFiles(dir)) n += std::filesystem::file_size(f);
  return n;
}

// Where the k-th record (from 0) of a segment of equal records starts.
uint64_t RecordOffset(size_t k, size_t payload_size = 200) {
  return Spool::kSegmentHeaderBytes + k * (Spool::kRecordHeaderBytes + payload_size);
}

void FlipByte(const std::string& path, uint64_t offset) {
  int fd = open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0) << path;
  char c = 0;
  ASSERT_EQ(pread(fd, &c, 1, static_cast<off_t>(offset)), 1);
  c = static_cast<char>(c ^ 0x5a);
  ASSERT_EQ(pwrite(fd, &c, 1, static_cast<off_t>(offset)), 1);
  close(fd);
}

TEST(SpoolTest, AppendsAndReadsInOrder) {
  TempDir dir;
  auto spool = OpenOrDie(Options(dir.path()));
  ASSERT_NE(spool, nullptr);
  EXPECT_EQ(spool->Floor(), 1u);
  // Sequences need not be contiguous (an agent skips some across restarts).
  std::vector<uint64_t> seqs;
  for (uint64_t s = 3; s < 120; s += (s % 7 == 0 ? 5 : 1)) seqs.push_back(s);
  for (uint64_t s : seqs) ASSERT_TRUE(spool->Append(s, Payload(s)).ok());
  EXPECT_GT(SegmentFiles(dir.path()).size(), 1u);
  EXPECT_EQ(ReadAll(*spool), seqs);
  EXPECT_EQ(spool->Floor(), 3u);
  EXPECT_EQ(spool->last_sequence(), seqs.back());

  // From the middle, bounded by count and by bytes (at least one record).
  auto some = spool->Read(50, 4, kAll);
  ASSERT_TRUE(some.ok());
  auto from = std::lower_bound(seqs.begin(), seqs.end(), 50);
  EXPECT_EQ(Sequences(*some), std::vector<uint64_t>(from, from + 4));
  auto by_bytes = spool->Read(0, kAll, 450);
  ASSERT_TRUE(by_bytes.ok());
  EXPECT_EQ(Sequences(*by_bytes), std::vector<uint64_t>(seqs.begin(), seqs.begin() + 2));
  auto one = spool->Read(0, kAll, 1);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(Sequences(*one), std::vector<uint64_t>{3});
  auto none = spool->Read(seqs.back() + 1, kAll, kAll);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());

  EXPECT_EQ(spool->Append(seqs.back(), "x").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(spool->Append(0, "x").code(), absl::StatusCode::kInvalidArgument);
  auto too_big = spool->Append(1000, std::string(kSegment, 'x'));
  EXPECT_EQ(too_big.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(too_big.message().find("segment_bytes"), std::string::npos) << too_big;
  // The largest payload that fits is accepted.
  EXPECT_TRUE(spool->Append(1000, std::string(kSegment - 32, 'x')).ok());
}

TEST(SpoolTest, NonContiguousAcksSurviveReopen) {
  TempDir dir;
  std::vector<uint64_t> expect;
  {
    auto spool = OpenOrDie(Options(dir.path()));
    AppendRange(*spool, 1, 100);
    SequenceSet acked;
    acked.InsertRange(1, 10);
    acked.InsertRange(20, 30);   // the backlog lane
    acked.InsertRange(90, 100);  // the fresh lane, ahead of it
    ASSERT_TRUE(spool->Ack(acked).ok());
    ASSERT_TRUE(spool->Ack(50).ok());
    for (uint64_t s = 11; s < 90; ++s) {
      if (!(s >= 20 && s <= 30) && s != 50) expect.push_back(s);
    }
    EXPECT_EQ(ReadAll(*spool), expect);
    EXPECT_EQ(spool->Floor(), 11u);
    EXPECT_EQ(spool->stats().records_unacked, expect.size());
  }
  auto spool = OpenOrDie(Options(dir.path()));
  EXPECT_EQ(ReadAll(*spool), expect);
  EXPECT_EQ(spool->Floor(), 11u);
  EXPECT_EQ(spool->last_sequence(), 100u);
  // Reading from inside an acked run starts at the next unacked record.
  auto from = spool->Read(20, 2, kAll);
  ASSERT_TRUE(from.ok());
  EXPECT_EQ(Sequences(*from), (std::vector<uint64_t>{31, 32}));
  // Acks above the last appended sequence are ignored: they would hide the
  // record that comes with that sequence later.
  ASSERT_TRUE(spool->Ack(SequenceSet::UpTo(200)).ok());
  EXPECT_EQ(spool->Floor(), 101u);
  AppendRange(*spool, 101, 102);
  EXPECT_EQ(ReadAll(*spool), Range(101, 102));
}

TEST(SpoolTest, RollsSegmentsAndRemovesFullyAckedOnes) {
  TempDir dir;
  auto spool = OpenOrDie(Options(dir.path()));
  AppendRange(*spool, 1, 200);
  const auto files = SegmentFiles(dir.path());
  ASSERT_EQ(files.size(), (200 + kPerSegment - 1) / kPerSegment);
  EXPECT_EQ(std::filesystem::path(files[0]).filename(), "00000000000000000001.spool");
  EXPECT_EQ(std::filesystem::path(files[1]).filename(), fmt::format("{:020}.spool", kPerSegment + 1));
  for (const auto& f : files) EXPECT_LE(std::filesystem::file_size(f), kSegment);
  EXPECT_EQ(spool->stats().bytes, SegmentBytes(dir.path()));

  // Acking the fresh end and a middle segment removes only the segments
  // whose every record is acked.
  SequenceSet acked;
  acked.InsertRange(kPerSegment + 1, 2 * kPerSegment);          // all of the second segment
  acked.InsertRange(2 * kPerSegment + 1, 3 * kPerSegment - 1);  // the third but its last record
  ASSERT_TRUE(spool->Ack(acked).ok());
  auto after = SegmentFiles(dir.path());
  ASSERT_EQ(after.size(), files.size() - 1);
  EXPECT_FALSE(std::filesystem::exists(files[1]));
  EXPECT_TRUE(std::filesystem::exists(files[2]));

  // Acking everything leaves only the segment being appended to.
  ASSERT_TRUE(spool->Ack(SequenceSet::UpTo(200)).ok());
  ASSERT_EQ(SegmentFiles(dir.path()), std::vector<std::string>{files.back()});
  EXPECT_EQ(spool->stats().bytes, SegmentBytes(dir.path()));
  EXPECT_EQ(spool->Floor(), 201u);
  EXPECT_TRUE(ReadAll(*spool).empty());
  // Nothing acked comes back after a reopen, and sequences go on.
  spool.reset();
  spool = OpenOrDie(Options(dir.path()));
  EXPECT_TRUE(ReadAll(*spool).empty());
  EXPECT_EQ(spool->Floor(), 201u);
  EXPECT_EQ(spool->Append(200, "x").code(), absl::StatusCode::kInvalidArgument);
  AppendRange(*spool, 201, 210);
  EXPECT_EQ(ReadAll(*spool), Range(201, 210));
}

TEST(SpoolTest, ByteBoundDropsTheOldestAndCountsIt) {
  TempDir dir;
  SpoolOptions options = Options(dir.path());
  options.max_bytes = 4 * kSegment;
  auto spool = OpenOrDie(options);
  ASSERT_TRUE(spool->Ack(0).ok());
  for (uint64_t s = 1; s <= 500; ++s) {
    ASSERT_TRUE(spool->Append(s, Payload(s)).ok());
    ASSERT_LE(SegmentBytes(dir.path()), options.max_bytes) << s;
  }
  const auto st = spool->stats();
  EXPECT_GT(st.dropped_records_full, 400u);
  EXPECT_EQ(st.dropped_records_full + st.records_unacked, 500u);
  EXPECT_EQ(st.dropped_bytes_full, st.dropped_records_full * (Spool::kRecordHeaderBytes + 200));
  EXPECT_EQ(st.dropped_records_too_old + st.dropped_records_corrupt, 0u);
  // What is left is the newest records, without a gap, from the floor.
  const auto left = ReadAll(*spool);
  ASSERT_FALSE(left.empty());
  EXPECT_EQ(left, Range(501 - left.size(), 500));
  EXPECT_EQ(spool->Floor(), left.front());
  EXPECT_EQ(st.floor, left.front());

  // Acked records are not counted when their segment is dropped.
  ASSERT_TRUE(spool->Ack(SequenceSet::UpTo(500)).ok());
  AppendRange(*spool, 501, 700);
  const auto st2 = spool->stats();
  EXPECT_EQ(st2.dropped_records_full + st2.records_unacked, st.dropped_records_full + 200);
}

TEST(SpoolTest, AgeBoundDropsOldRecordsWithAnInjectedClock) {
  TempDir dir;
  std::atomic<int64_t> now{1'700'000'000'000};
  SpoolOptions options = Options(dir.path());
  options.max_age = std::chrono::hours(1);
  options.now_ms = [&] { return now.load(); };
  auto spool = OpenOrDie(options);
  AppendRange(*spool, 1, 10);
  ASSERT_TRUE(spool->Ack(5).ok());
  now += 30 * 60 * 1000;  // half an hour later (past the 150 s roll age)
  AppendRange(*spool, 11, 20);
  EXPECT_EQ(spool->stats().oldest_unacked_ms, now.load() - 30 * 60 * 1000);
  now += 40 * 60 * 1000;  // records 1..10 are now 70 min old, 11..20 40 min
  spool->Trim();
  auto st = spool->stats();
  EXPECT_EQ(st.dropped_records_too_old, 9u);  // 5 was acked
  EXPECT_EQ(st.dropped_bytes_too_old, 9u * (Spool::kRecordHeaderBytes + 200));
  EXPECT_EQ(ReadAll(*spool), Range(11, 20));
  EXPECT_EQ(spool->Floor(), 11u);
  EXPECT_EQ(st.oldest_unacked_ms, now.load() - 40 * 60 * 1000);
  EXPECT_EQ(SegmentFiles(dir.path()).size(), 1u);

  // Append drops too-old records as well, even those of the segment it
  // appended to.
  now += 3 * 60 * 60 * 1000;
  ASSERT_TRUE(spool->Append(21, Payload(21)).ok());
  st = spool->stats();
  EXPECT_EQ(st.dropped_records_too_old, 19u);
  EXPECT_EQ(ReadAll(*spool), std::vector<uint64_t>{21});
  EXPECT_EQ(spool->Floor(), 21u);
  EXPECT_EQ(SegmentFiles(dir.path()).size(), 1u);
}

TEST(SpoolTest, TornTailIsTruncatedCountedAndAppendsContinue) {
  TempDir dir;
  // kill -9 during the write of record 30: half of it on disk, then garbage.
  const std::string last = WriteSpool(dir.path(), 30).back();
  const uint64_t size = std::filesystem::file_size(last);
  std::filesystem::resize_file(last, size - 100);
  {
    int fd = open(last.c_str(), O_WRONLY | O_APPEND);
    ASSERT_GE(fd, 0);
    const std::string garbage(300, '\xab');
    ASSERT_EQ(write(fd, garbage.data(), garbage.size()), static_cast<ssize_t>(garbage.size()));
    close(fd);
  }
  {
    auto spool = OpenOrDie(Options(dir.path()));
    EXPECT_EQ(ReadAll(*spool), Range(1, 29));
    const auto st = spool->stats();
    EXPECT_EQ(st.torn_tails, 1u);
    EXPECT_EQ(st.torn_bytes, 224u - 100u + 300u);
    EXPECT_EQ(st.dropped_records_corrupt, 0u);
    EXPECT_EQ(std::filesystem::file_size(last), size - 224);
    EXPECT_EQ(spool->last_sequence(), 29u);
    AppendRange(*spool, 30, 31);
  }
  auto spool = OpenOrDie(Options(dir.path()));
  EXPECT_EQ(ReadAll(*spool), Range(1, 31));
  EXPECT_EQ(spool->stats().torn_tails, 0u);
}

TEST(SpoolTest, TornNewSegmentIsRemoved) {
  TempDir dir;
  WriteSpool(dir.path(), 5);
  // A crash right after the next segment was created, before its header.
  const std::string torn = fmt::format("{}/{:020}.spool", dir.path(), 6);
  {
    std::FILE* f = std::fopen(torn.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("SHE", f);
    std::fclose(f);
  }
  auto spool = OpenOrDie(Options(dir.path()));
  EXPECT_EQ(ReadAll(*spool), Range(1, 5));
  EXPECT_EQ(spool->stats().torn_tails, 1u);
  EXPECT_FALSE(std::filesystem::exists(torn));
  AppendRange(*spool, 6, 8);
  EXPECT_EQ(ReadAll(*spool), Range(1, 8));
}

TEST(SpoolTest, DamagedPayloadInTheMiddleLosesOnlyThatRecord) {
  TempDir dir;
  const auto files = WriteSpool(dir.path(), 60);
  ASSERT_GE(files.size(), 3u);
  FlipByte(files[0], RecordOffset(5) + Spool::kRecordHeaderBytes + 17);  // payload of record 6
  FlipByte(files.back(), RecordOffset(1) + Spool::kRecordHeaderBytes);   // newest segment, its 2nd record
  auto spool = OpenOrDie(Options(dir.path()));
  std::vector<uint64_t> expect = Range(1, 60);
  const uint64_t newest_second = std::stoull(std::filesystem::path(files.back()).stem().string()) + 1;
  std::erase(expect, 6);
  std::erase(expect, newest_second);
  EXPECT_EQ(ReadAll(*spool), expect);
  const auto st = spool->stats();
  EXPECT_EQ(st.dropped_records_corrupt, 2u);
  EXPECT_EQ(st.dropped_bytes_corrupt, 2u * 224);
  EXPECT_EQ(st.torn_tails, 0u);  // records after it verified: not a torn tail
  EXPECT_EQ(spool->Floor(), 1u);
  // The holes stay skipped when reading from any point, and appends go on.
  auto from = spool->Read(5, 3, kAll);
  ASSERT_TRUE(from.ok());
  EXPECT_EQ(Sequences(*from), (std::vector<uint64_t>{5, 7, 8}));
  AppendRange(*spool, 61, 62);
  ASSERT_TRUE(spool->Ack(SequenceSet::UpTo(5)).ok());
  EXPECT_EQ(spool->Floor(), 7u);  // 6 can never come
}

TEST(SpoolTest, DamagedLengthMakesTheRestOfThatSegmentUnreadable) {
  TempDir dir;
  const auto files = WriteSpool(dir.path(), 60);
  ASSERT_GE(files.size(), 3u);
  FlipByte(files[0], RecordOffset(5) + 5);  // the length of record 6
  auto spool = OpenOrDie(Options(dir.path()));
  std::vector<uint64_t> expect = Range(1, 5);
  for (uint64_t s = kPerSegment + 1; s <= 60; ++s) expect.push_back(s);
  EXPECT_EQ(ReadAll(*spool), expect);
  const auto st = spool->stats();
  EXPECT_GE(st.dropped_records_corrupt, 1u);
  EXPECT_EQ(st.dropped_bytes_corrupt, std::filesystem::file_size(files[0]) - RecordOffset(5));
  ASSERT_TRUE(spool->Ack(SequenceSet::UpTo(5)).ok());
  EXPECT_EQ(spool->Floor(), kPerSegment + 1);
  EXPECT_FALSE(std::filesystem::exists(files[0]));  // nothing readable left to deliver in it
}

TEST(SpoolTest, DamageFoundByReadIsSkippedAndCounted) {
  TempDir dir;
  auto spool = OpenOrDie(Options(dir.path()));
  AppendRange(*spool, 1, 60);
  const auto files = SegmentFiles(dir.path());
  FlipByte(files[1], RecordOffset(3) + Spool::kRecordHeaderBytes + 1);  // a payload in the 2nd segment
  const uint64_t damaged = kPerSegment + 4;
  std::vector<uint64_t> expect = Range(1, damaged - 1);
  for (uint64_t s = 2 * kPerSegment + 1; s <= 60; ++s) expect.push_back(s);
  EXPECT_EQ(ReadAll(*spool), expect);
  EXPECT_EQ(spool->stats().dropped_records_corrupt, kPerSegment - 3);
  // Counted once, however often it is read.
  EXPECT_EQ(ReadAll(*spool), expect);
  EXPECT_EQ(spool->stats().dropped_records_corrupt, kPerSegment - 3);
  ASSERT_TRUE(spool->Ack(SequenceSet::UpTo(damaged - 1)).ok());
  EXPECT_EQ(spool->Floor(), 2 * kPerSegment + 1);
}

TEST(SpoolTest, DamagedAckedFileMeansSendingAgainNotACrash) {
  TempDir dir;
  {
    auto spool = OpenOrDie(Options(dir.path()));
    AppendRange(*spool, 1, 10);
    ASSERT_TRUE(spool->Ack(SequenceSet::UpTo(4)).ok());
  }
  FlipByte(dir.Sub("acked"), 0);
  auto spool = OpenOrDie(Options(dir.path()));
  EXPECT_EQ(ReadAll(*spool), Range(1, 10));
}

TEST(SpoolTest, OpenErrorsNameTheDirectory) {
  TempDir dir;
  auto first = OpenOrDie(Options(dir.path()));
  auto second = Spool::Open(Options(dir.path()));
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(second.status().message().find(dir.path()), std::string::npos) << second.status();
  EXPECT_NE(second.status().message().find("in use"), std::string::npos) << second.status();

  {
    std::FILE* f = std::fopen(dir.Sub("file").c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fclose(f);
  }
  auto not_dir = Spool::Open(Options(dir.Sub("file") + "/spool"));
  ASSERT_FALSE(not_dir.ok());
  EXPECT_EQ(not_dir.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(not_dir.status().message().find(dir.Sub("file")), std::string::npos) << not_dir.status();

  SpoolOptions small = Options(dir.Sub("other"));
  small.max_bytes = kSegment;
  EXPECT_EQ(Spool::Open(small).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Spool::Open(SpoolOptions{}).status().code(), absl::StatusCode::kInvalidArgument);
}

// A child appends with fdatasync and reports each Append that returned;
// after SIGKILL every reported record must be there, intact.
TEST(SpoolTest, SurvivesKill9OfTheAppender) {
  TempDir dir;
  constexpr size_t kPayload = 1000;
  SpoolOptions options = Options(dir.path());
  options.segment_bytes = 64 << 10;
  options.max_bytes = 256 << 20;  // the child may write a few MB before it is killed
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(fds[0]);
    options.sync = true;
    auto spool = Spool::Open(options);
    if (!spool.ok()) _exit(2);
    for (uint64_t s = 1;; ++s) {
      if (!(*spool)->Append(s, Payload(s, kPayload)).ok()) _exit(3);
      if (write(fds[1], &s, sizeof(s)) != sizeof(s)) _exit(4);
    }
  }
  close(fds[1]);
  uint64_t reported = 0;
  const int64_t deadline = MonotonicMs() + 30000;
  while (reported < 300 && MonotonicMs() < deadline) {
    pollfd p{fds[0], POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    uint64_t s;
    if (read(fds[0], &s, sizeof(s)) != sizeof(s)) break;
    reported = s;
  }
  kill(pid, SIGKILL);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the child stopped by itself: " << status;
  for (uint64_t s; read(fds[0], &s, sizeof(s)) == sizeof(s);) reported = s;  // the rest, up to EOF
  close(fds[0]);
  ASSERT_GE(reported, 300u);

  auto spool = OpenOrDie(options);
  const auto got = ReadAll(*spool, kPayload);
  // Everything reported, and at most the one record in flight.
  ASSERT_GE(got.size(), reported);
  ASSERT_LE(got.size(), reported + 1);
  EXPECT_EQ(got, Range(1, got.size()));
  EXPECT_TRUE(spool->Append(got.size() + 1, Payload(got.size() + 1, kPayload)).ok());
}

// The index holds per-segment figures and one entry per 64 KiB, never the
// records: 200k records (25 MB on disk) take about 20 KiB of it.
TEST(SpoolTest, LargeSpoolKeepsTheIndexSmall) {
  TempDir dir;
  SpoolOptions options = Options(dir.path());
  options.segment_bytes = 8 << 20;
  options.max_bytes = 512 << 20;
  constexpr uint64_t kRecords = 200'000;
  constexpr size_t kPayload = 100;
  {
    auto spool = OpenOrDie(options);
    AppendRange(*spool, 1, kRecords, kPayload);
    const auto st = spool->stats();
    EXPECT_EQ(st.records, kRecords);
    EXPECT_EQ(st.bytes, SegmentBytes(dir.path()));
    EXPECT_LT(st.index_bytes, 64u << 10) << st.index_bytes;
  }
  auto spool = OpenOrDie(options);
  const auto st = spool->stats();
  EXPECT_EQ(st.records_unacked, kRecords);
  EXPECT_LT(st.index_bytes, 64u << 10) << st.index_bytes;
  auto middle = spool->Read(123'456, 5, kAll);
  ASSERT_TRUE(middle.ok());
  EXPECT_EQ(Sequences(*middle), Range(123'456, 123'460));
  for (const auto& r : *middle) EXPECT_EQ(r.payload, Payload(r.sequence, kPayload));
  auto bounded = spool->Read(0, kAll, 64 << 10);
  ASSERT_TRUE(bounded.ok());
  EXPECT_EQ(bounded->size(), (64u << 10) / kPayload);
  // Acks of the fresh lane ahead of the backlog keep the acked set small.
  SequenceSet acked;
  acked.InsertRange(1, 1000);
  acked.InsertRange(150'000, kRecords);
  ASSERT_TRUE(spool->Ack(acked).ok());
  EXPECT_EQ(spool->Floor(), 1001u);
  EXPECT_LT(spool->stats().index_bytes, 64u << 10);
}

// One thread appends (the collector), another reads from its cursor and
// acks (the sender): each record is delivered once, in order.
TEST(SpoolTest, AppenderAndReaderOnTwoThreads) {
  TempDir dir;
  SpoolOptions options = Options(dir.path());
  options.max_bytes = 16 << 20;  // room for all: the reader may lag
  auto spool = OpenOrDie(options);
  constexpr uint64_t kRecords = 3000;
  std::thread appender([&] {
    for (uint64_t s = 1; s <= kRecords; ++s) ASSERT_TRUE(spool->Append(s, Payload(s)).ok());
  });
  std::vector<uint64_t> seen;
  uint64_t cursor = 1;
  const int64_t deadline = MonotonicMs() + 60000;
  while (cursor <= kRecords && MonotonicMs() < deadline) {
    auto batch = spool->Read(cursor, 16, kAll);
    ASSERT_TRUE(batch.ok());
    SequenceSet acked;
    for (const auto& r : *batch) {
      ASSERT_EQ(r.payload, Payload(r.sequence));
      seen.push_back(r.sequence);
      acked.Insert(r.sequence);
      cursor = r.sequence + 1;
    }
    if (!acked.empty()) {
      ASSERT_TRUE(spool->Ack(acked).ok());
    }
    if (batch->empty()) std::this_thread::yield();
  }
  appender.join();
  EXPECT_EQ(seen, Range(1, kRecords));
  const auto st = spool->stats();
  EXPECT_EQ(st.records_unacked, 0u);
  EXPECT_EQ(st.dropped_records_full, 0u);
  EXPECT_EQ(spool->Floor(), kRecords + 1);
  EXPECT_EQ(SegmentFiles(dir.path()).size(), 1u);
}

}  // namespace
}  // namespace sheaf::spool
