// The process collector: the agent's own CPU time, memory and file
// descriptors, under the names every Prometheus client library's process
// collector uses, so the agent's footprint is watched like any other
// service's.
#include <dirent.h>

#include <cerrno>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "agent/collectors/collectors.h"
#include "agent/collectors/proc_text.h"
#include "fmt/format.h"

namespace sheaf::agent {

namespace {

// What client_golang reports for "unlimited".
constexpr double kUnlimited = static_cast<double>(std::numeric_limits<uint64_t>::max());

class ProcessCollector : public Collector {
 public:
  ProcessCollector(const HostPaths& paths, double ticks_per_second, double page_size)
      : stat_path_(paths.proc + "/self/stat"),
        limits_path_(paths.proc + "/self/limits"),
        fd_dir_(paths.proc + "/self/fd"),
        boot_path_(paths.proc + "/stat"),
        ticks_per_second_(ticks_per_second),
        page_size_(page_size) {}

  std::string_view name() const override { return "process"; }

  bool Collect(SourceReader& reader, std::vector<HostMetric>* out, std::vector<std::string>* errors) override {
    const std::string* text = proc_text::ReadOrReport(reader, stat_path_, errors);
    if (text == nullptr) return false;
    ProcessStat stat;
    if (!ParseProcessStat(*text, &stat)) {
      proc_text::AddError(errors, fmt::format("{}: malformed", stat_path_));
      return false;
    }
    auto add = [&](std::string_view name, MetricKind kind, double value) {
      proc_text::Emit(out, name, {}, kind, value);
    };
    add("process_cpu_seconds_total", MetricKind::kCounter,
        static_cast<double>(stat.utime_ticks + stat.stime_ticks) / ticks_per_second_);
    add("process_virtual_memory_bytes", MetricKind::kGauge, static_cast<double>(stat.virtual_bytes));
    add("process_resident_memory_bytes", MetricKind::kGauge, static_cast<double>(stat.resident_pages) * page_size_);

    // The start time is in ticks since boot; the boot time is read once, it
    // does not change.
    if (boot_time_ < 0) {
      const std::string* proc_stat = proc_text::ReadOrReport(reader, boot_path_, errors);
      if (proc_stat != nullptr && !ParseBootTime(*proc_stat, &boot_time_)) {
        proc_text::AddError(errors, fmt::format("{}: no btime line", boot_path_));
        boot_time_ = -1;
      }
    }
    if (boot_time_ >= 0) {
      add("process_start_time_seconds", MetricKind::kGauge,
          boot_time_ + static_cast<double>(stat.start_ticks) / ticks_per_second_);
    }

    if (const int open_fds = CountOpenFds(errors); open_fds >= 0) {
      add("process_open_fds", MetricKind::kGauge, open_fds);
    }
    double max_fds = 0;
    double max_address_space = 0;
    const std::string* limits = proc_text::ReadOrReport(reader, limits_path_, errors);
    if (limits != nullptr && ParseLimits(*limits, &max_fds, &max_address_space)) {
      add("process_max_fds", MetricKind::kGauge, max_fds);
      add("process_virtual_memory_max_bytes", MetricKind::kGauge, max_address_space);
    } else if (limits != nullptr) {
      proc_text::AddError(errors, fmt::format("{}: no \"Max open files\" or \"Max address space\" line", limits_path_));
    }
    return true;
  }

 private:
  // Entries of <proc>/self/fd, or -1. The directory's own descriptor is
  // counted, as client libraries count it.
  int CountOpenFds(std::vector<std::string>* errors) const {
    DIR* dir = ::opendir(fd_dir_.c_str());
    if (dir == nullptr) {
      proc_text::AddError(errors, fmt::format("{}: cannot open: {}", fd_dir_, proc_text::ErrnoText(errno)));
      return -1;
    }
    int count = 0;
    while (const struct dirent* e = ::readdir(dir)) {
      if (e->d_name[0] != '.') ++count;
    }
    ::closedir(dir);
    return count;
  }

  const std::string stat_path_;
  const std::string limits_path_;
  const std::string fd_dir_;
  const std::string boot_path_;
  const double ticks_per_second_;
  const double page_size_;
  double boot_time_ = -1;  // seconds since the epoch, once known
};

// "Max open files            20000                20000                files"
bool SoftLimit(std::string_view line, std::string_view name, double* out) {
  if (!line.starts_with(name)) return false;
  std::vector<std::string_view> fields;
  proc_text::SplitFields(line.substr(name.size()), &fields);
  uint64_t v = 0;
  if (fields.empty()) return false;
  if (fields[0] == "unlimited") {
    *out = kUnlimited;
    return true;
  }
  if (!proc_text::ParseU64(fields[0], &v)) return false;
  *out = static_cast<double>(v);
  return true;
}

}  // namespace

bool ParseProcessStat(std::string_view text, ProcessStat* stat) {
  const size_t close = text.rfind(')');
  if (close == std::string_view::npos || text.empty() || text.back() != '\n') return false;
  std::vector<std::string_view> fields;
  proc_text::SplitFields(proc_text::Trim(text.substr(close + 1, text.size() - close - 2)), &fields);
  // fields[0] is field 3 (state) of proc(5); field N is fields[N - 3].
  constexpr size_t kUtime = 14 - 3;
  constexpr size_t kStime = 15 - 3;
  constexpr size_t kStartTime = 22 - 3;
  constexpr size_t kVsize = 23 - 3;
  constexpr size_t kRss = 24 - 3;
  if (fields.size() <= kRss) return false;
  return proc_text::ParseU64(fields[kUtime], &stat->utime_ticks) &&
         proc_text::ParseU64(fields[kStime], &stat->stime_ticks) &&
         proc_text::ParseU64(fields[kStartTime], &stat->start_ticks) &&
         proc_text::ParseU64(fields[kVsize], &stat->virtual_bytes) &&
         proc_text::ParseU64(fields[kRss], &stat->resident_pages);
}

bool ParseLimits(std::string_view text, double* max_open_files, double* max_address_space) {
  bool files = false;
  bool address = false;
  while (!text.empty()) {
    const size_t end = text.find('\n');
    if (end == std::string_view::npos) break;  // Truncated.
    const std::string_view line = text.substr(0, end);
    files = SoftLimit(line, "Max open files", max_open_files) || files;
    address = SoftLimit(line, "Max address space", max_address_space) || address;
    text.remove_prefix(end + 1);
  }
  return files && address;
}

std::unique_ptr<Collector> NewProcessCollector(const HostPaths& paths, double ticks_per_second, double page_size) {
  return std::make_unique<ProcessCollector>(paths, ticks_per_second, page_size);
}

}  // namespace sheaf::agent
