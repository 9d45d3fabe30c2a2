// The agent's persistent state: who it is and which batch sequences it has
// used, kept in a directory (--state-dir) so both survive restarts without
// trusting the clock or the host name.
//
// Files in the directory (each replaced atomically: written to NAME.tmp,
// fsynced, renamed over NAME, then the directory fsynced):
//
//   identity   "agent-" followed by 32 lowercase hex digits and '\n',
//              generated once from getrandom(2) and kept forever. Unused
//              (neither read nor created) when the identity is given
//              explicitly (--agent-id).
//   sequence   the reserved high-water mark M as decimal digits and '\n':
//              every sequence this state ever handed out is <= M. Sequences
//              are reserved in blocks, the new mark written (and fsynced)
//              before any sequence of the block is handed out; on open,
//              sequences continue at M + 1, so the ones a crashed process had
//              reserved but not used are skipped, never reused. Missing in a
//              new state: sequences start at 1.
//   lock       flock(2)ed while a process holds the state, so two agents
//              cannot share one directory (they would share an identity and
//              hand out the same sequences).
//
// A file that exists but cannot be read or parsed is an error naming the
// file; the state is never silently reset.
#ifndef SHEAF_AGENT_AGENT_STATE_H_
#define SHEAF_AGENT_AGENT_STATE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace sheaf::agent {

// Where a shipper takes its batch sequences from. Implementations are
// thread-safe.
class SequenceSource {
 public:
  virtual ~SequenceSource() = default;

  // The next sequence (> every sequence returned before, by this process or
  // an earlier one). An error (e.g. the state could not be written) hands
  // out nothing; calling again later may succeed.
  virtual absl::StatusOr<uint64_t> NextSequence() = 0;

  // What NextSequence would return now (without reserving anything). Every
  // sequence ever handed out is < PeekNextSequence().
  virtual uint64_t PeekNextSequence() const = 0;

  // Makes every later sequence > `sequence`, durably. No-op if they already
  // are. RESOURCE_EXHAUSTED when `sequence` leaves no room (>= 2^64 - 2).
  virtual absl::Status AdvancePast(uint64_t sequence) = 0;
};

struct AgentStateOptions {
  std::string dir;
  // False: the identity is given elsewhere (--agent-id); the `identity`
  // file is neither read nor created.
  bool use_identity_file = true;
  // Sequences reserved per write of the `sequence` file (>= 1).
  uint64_t reserve_block = 4096;
};

class AgentState : public SequenceSource {
 public:
  // Opens the state in options.dir, creating the directory (and the
  // identity, if used and absent). Errors name the directory or file:
  // FAILED_PRECONDITION when the directory cannot be created or written or
  // another process holds it, DATA_LOSS when a state file is corrupt.
  static absl::StatusOr<std::unique_ptr<AgentState>> Open(AgentStateOptions options);
  ~AgentState() override;  // releases the lock; writes nothing

  AgentState(const AgentState&) = delete;
  AgentState& operator=(const AgentState&) = delete;

  // "agent-<32 hex>"; empty when use_identity_file is false.
  const std::string& identity() const { return identity_; }
  // True if Open generated the identity (this is the state's first start).
  bool identity_created() const { return identity_created_; }
  const std::string& dir() const { return options_.dir; }

  absl::StatusOr<uint64_t> NextSequence() override;
  uint64_t PeekNextSequence() const override;
  absl::Status AdvancePast(uint64_t sequence) override;

  // The mark in the `sequence` file (0 when there is none yet).
  uint64_t reserved() const;

 private:
  AgentState(AgentStateOptions options, int lock_fd);
  absl::Status Load();
  // Writes `mark` to the sequence file; on success it is the new reserved_.
  absl::Status Reserve(uint64_t mark) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const AgentStateOptions options_;
  const int lock_fd_;
  std::string identity_;
  bool identity_created_ = false;
  mutable absl::Mutex mu_;
  uint64_t next_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t reserved_ ABSL_GUARDED_BY(mu_) = 0;
};

// A fresh identity: "agent-" + 32 lowercase hex digits from getrandom(2)
// (or /dev/urandom where getrandom is missing).
absl::StatusOr<std::string> GenerateAgentId();

}  // namespace sheaf::agent

#endif  // SHEAF_AGENT_AGENT_STATE_H_
