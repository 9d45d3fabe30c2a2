// The interface every host collector implements, and what they share: where
// they read from (HostPaths) and a reader that keeps each file's buffer from
// one collection to the next (SourceReader).
//
// A collector is one source of node_exporter-compatible metrics ("cpu",
// "meminfo", ...), named as node_exporter names its collector, so that an
// operator who knows `--collector.X` of node_exporter knows ours. The facade
// that runs the enabled ones is agent/collectors/host_collector.h.
//
// Uses only the C++ standard library and POSIX: the agent runs on every host
// and must not drag in gRPC or protobuf just to read a few text files.
#ifndef SHEAF_AGENT_COLLECTORS_COLLECTOR_H_
#define SHEAF_AGENT_COLLECTORS_COLLECTOR_H_

#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "agent/collectors/metric.h"

namespace sheaf::agent {

// Where the collectors read from. These are roots rather than fixed paths so
// tests (and anyone debugging a captured host) can point at a fake tree.
// "<proc>/self" is the agent's own process when <proc> is the real /proc.
struct HostPaths {
  std::string proc = "/proc";
  // Read by the filesystem collector; format of /proc/self/mounts.
  std::string mounts = "/proc/self/mounts";
  // Where the host's root filesystem is, for the filesystem collector's
  // statvfs of each mount point ("" is "/"): in a container with the
  // host's / mounted at /host/root, the host's mount points are reached
  // there, and still reported by their host paths (node_exporter's
  // --path.rootfs).
  std::string rootfs;
};

// Reads whole files for the collectors of one HostCollector.
//
// Each path's content is read at most once per collection round (cpu and stat
// both parse <proc>/stat; process needs its boot time too), and its buffer is
// kept for the next round, so steady-state collections allocate nothing to
// read. The number of buffers is bounded by the number of distinct paths the
// collectors ask for (a fixed set, about fifteen); a file over kMaxFileBytes
// is refused rather than buffered.
//
// Thread-compatible: one collection at a time.
class SourceReader {
 public:
  // Refuse to slurp anything bigger: real /proc sources are at most a few
  // hundred KiB (mounts on a busy container host), and a misconfigured path
  // must not make the agent allocate without bound.
  static constexpr size_t kMaxFileBytes = 16 << 20;

  // Starts a collection round: contents read before are read again on the
  // next Read(); their buffers are kept.
  void NewRound();

  // The content of `path`, or nullptr with *error set to a line naming the
  // path and the problem, and *error_number to errno (0 when it is not an OS
  // error, such as a file that is not a regular file or is too big). The
  // pointer is valid until the next NewRound(). /proc files report st_size 0,
  // so the file is read until EOF; a FIFO or device at the path is refused
  // (a /dev/zero never reaches EOF).
  const std::string* Read(const std::string& path, std::string* error, int* error_number = nullptr);

 private:
  struct Entry {
    std::string path;
    std::string content;
    bool fresh = false;  // read in this round
    int error_number = 0;
    std::string error;  // empty: content is valid
  };
  // A deque: returned pointers stay valid while new paths are added.
  std::deque<Entry> entries_;
};

// One collector. Implementations live in agent/collectors/<name>.cc and are
// made by the factories in agent/collectors/collectors.h.
//
// Thread-compatible: a collector may keep buffers between calls, so one
// collection at a time.
class Collector {
 public:
  virtual ~Collector() = default;

  // node_exporter's name for the same collector ("cpu", "meminfo", ...);
  // the agent's own figures are "process".
  virtual std::string_view name() const = 0;

  // Appends this collector's metrics to *out and one line per problem to
  // *errors (errors may be nullptr). Returns false when the collector's
  // source could not be used at all (its file missing or unreadable, or
  // nothing in it parsed); a problem that costs only part of the output (a
  // malformed line, one mount point's statvfs) is an error line but still
  // success. Never throws on bad input.
  virtual bool Collect(SourceReader& reader, std::vector<HostMetric>* out, std::vector<std::string>* errors) = 0;
};

}  // namespace sheaf::agent

#endif  // SHEAF_AGENT_COLLECTORS_COLLECTOR_H_
