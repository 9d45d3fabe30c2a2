// Durability under kill -9: a child process appends batches (WAL fsync on)
// and reports each acknowledged sequence through a pipe; the parent kills
// it with SIGKILL at a random moment, reopens the store and checks that
// every acknowledged sample is there exactly once. Many rounds on the same
// store, so crashes land in appends, head cuts and compactions alike.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <random>
#include <thread>

#include "model/labels.h"
#include "storage/series_store.h"
#include "tests/support/temp_dir.h"

namespace sheaf::storage {
namespace {

constexpr int kSeries = 20;
constexpr char kAgent[] = "crash-agent";

StoreOptions Options(const std::string& path) {
  StoreOptions o;
  o.path = path;
  o.sync = true;
  o.max_head_samples = 200;  // cut into blocks every ~10 batches
  return o;
}

int64_t Ts(uint64_t seq) { return 1'800'000'000'000 + static_cast<int64_t>(seq) * 1000; }

// The child: appends forever, reporting each acknowledged sequence.
[[noreturn]] void Writer(const std::string& path, int fd) {
  auto store = SeriesStore::Open(Options(path));
  if (!store.ok()) _exit(3);
  std::vector<SeriesId> ids;
  for (int i = 0; i < kSeries; ++i) {
    Labels l = {{"__name__", "crash_metric"}, {"i", std::to_string(i)}};
    auto id = (*store)->GetOrCreateSeries(l, MetricType::kCounter);
    if (!id.ok()) _exit(4);
    ids.push_back(*id);
  }
  for (uint64_t seq = (*store)->AgentSequence(kAgent) + 1;; ++seq) {
    AppendBatch b{kAgent, seq, {}};
    for (SeriesId id : ids) b.series.push_back({id, {{Ts(seq), static_cast<double>(seq)}}});
    auto r = (*store)->Append(b);
    if (!r.ok()) _exit(5);
    if (write(fd, &seq, sizeof(seq)) != sizeof(seq)) _exit(6);
    if (seq % 97 == 0) (void)(*store)->Compact();  // crash in compactions too
  }
}

TEST(CrashTest, AcknowledgedSamplesSurviveSigkillExactlyOnce) {
  testing::TempDir dir;
  const std::string path = dir.Sub("db");
  std::mt19937 rng(12345);
  uint64_t acked = 0;
  const int rounds = 25;
  for (int round = 0; round < rounds; ++round) {
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(fds[0]);
      Writer(path, fds[1]);
    }
    close(fds[1]);
    // Once it has appended (opening the store and creating the series can
    // take long on a loaded machine), let it run 20-150 ms more, then kill.
    pollfd first{fds[0], POLLIN, 0};
    ASSERT_EQ(poll(&first, 1, 30'000), 1) << "round " << round << ": the writer appended nothing in 30 s";
    std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(20, 150)(rng)));
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "writer exited by itself with " << WEXITSTATUS(status);
    uint64_t seq;
    while (read(fds[0], &seq, sizeof(seq)) == sizeof(seq)) acked = std::max(acked, seq);
    close(fds[0]);

    auto store = SeriesStore::Open(Options(path));
    ASSERT_TRUE(store.ok()) << "round " << round << ": " << store.status();
    const uint64_t durable = (*store)->AgentSequence(kAgent);
    // Everything acknowledged is durable; at most the batch in flight more.
    ASSERT_GE(durable, acked) << "round " << round;
    ASSERT_LE(durable, acked + 1) << "round " << round;
    auto st = (*store)->Stats();
    ASSERT_EQ(st.samples, durable * kSeries) << "round " << round;
    auto ids = (*store)->Select(*model::ParseSelector("crash_metric"));
    ASSERT_TRUE(ids.ok());
    ASSERT_EQ(ids->size(), static_cast<size_t>(kSeries));
    for (SeriesId id : *ids) {
      uint64_t expect = 1;
      for (auto it = (*store)->Read(id, INT64_MIN, INT64_MAX); it->Valid(); it->Next(), ++expect) {
        ASSERT_EQ(it->sample().timestamp_ms, Ts(expect)) << "round " << round << " series " << id;
        ASSERT_EQ(it->sample().value, static_cast<double>(expect));
      }
      ASSERT_EQ(expect - 1, durable) << "round " << round << " series " << id;
    }
    acked = durable;
  }
  EXPECT_GT(acked, static_cast<uint64_t>(rounds));  // the writers got real work done
}

}  // namespace
}  // namespace sheaf::storage
